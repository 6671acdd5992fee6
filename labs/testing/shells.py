"""Running a shell command as a learner would, bounded: one way for every test that pastes commands.

``run_bounded`` starts argv in a session of its own and, past the timeout,
kills that whole process group: a `docker exec` whose container went away can
hold the output pipes open for ever, and only killing the group frees them.
The result says it was killed (returncode -1, a line on stderr).
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path


def run_bounded(argv: list[str], cwd: Path, timeout_s: float) -> subprocess.CompletedProcess[str]:
    process = subprocess.Popen(
        argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        stdout, stderr = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        stderr += f"\n(killed after {timeout_s} s)"
        return subprocess.CompletedProcess(process.args, -1, stdout, stderr)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


__all__ = ["run_bounded"]

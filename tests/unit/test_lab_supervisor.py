"""The lab's supervisor: restarts what ends, with a growing pause, and stops on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from discovery.retry import Backoff
from labs.supervisor import RESTART_MAX_S, RESTART_MIN_S, STEADY_S, restart_pause
from labs.testing.waiting import wait_until


def test_the_pause_doubles_up_to_a_cap_and_resets_after_a_steady_run():
    restarts = Backoff(RESTART_MIN_S, RESTART_MAX_S)
    delays = [restart_pause(restarts, ran_s=1) for _ in range(9)]
    assert delays[:3] == [RESTART_MIN_S, 2 * RESTART_MIN_S, 4 * RESTART_MIN_S]
    assert max(delays) == delays[-1] == RESTART_MAX_S
    assert restart_pause(restarts, ran_s=STEADY_S) == RESTART_MIN_S
    assert restart_pause(restarts, ran_s=1) == 2 * RESTART_MIN_S


def test_a_killed_child_is_started_again_and_sigterm_stops_both(tmp_path: Path):
    pid_file, log = tmp_path / "child.pid", tmp_path / "log"
    with log.open("wb") as out:
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "labs.supervisor", "--name", "sleeper",
             "--pid-file", str(pid_file), "--", "sleep", "300"],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_until(pid_file.exists, 10, "the child's pid file")
        first = int(pid_file.read_text())
        os.kill(first, signal.SIGKILL)
        wait_until(
            lambda: pid_file.exists() and int(pid_file.read_text()) != first,
            10,
            "a new child's pid",
        )
        assert "sleeper: killed by SIGKILL after" in log.read_text()
        second = int(pid_file.read_text())
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=10) == 0
        assert not Path(f"/proc/{second}").exists()
        assert not pid_file.exists()
    finally:
        if supervisor.poll() is None:
            supervisor.kill()

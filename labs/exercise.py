"""The lab exercises: where they are, the steps in their READMEs, and running their checks.

Each exercise is a folder ``labs/exercises/NN-slug/`` with

* ``README.md`` for the learner. Commands the learner types are fenced as
  ``sh step`` blocks; the end-to-end tests run exactly those blocks, in order,
  so the text cannot drift from what works. The ``sh before`` block of its
  "Before you start" section is what every new terminal needs first (it
  points the docker CLI and etcdctl at the lab); the tests run it before
  each step, each step in a new shell;
* ``check``, an executable that looks at the lab and exits 0 when the
  exercise was done, or prints what is missing, in plain words, and exits 1.

``discoveryctl lab check NN`` runs the check with the lab's environment.
Finding and parsing is pure; ``run_check`` is the one function that runs
anything.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from discovery.errors import DiscoveryError

# Package data of labs (pyproject.toml), on disk: the checks are run from their folders.
EXERCISES_DIR = Path(str(resources.files("labs") / "exercises"))
CHECK_TIMEOUT_S = 60
_FOLDER_RE = re.compile(r"^(\d\d)-[a-z0-9-]+$")
# "```sh step" runs on every lab; "```sh step local" only on the local lab (it makes
# or removes hosts, which on the Vagrant lab are VMs that Vagrant makes).
_STEP_RE = re.compile(r"^```sh step( local)?\n(.*?)^```", re.MULTILINE | re.DOTALL)
_BEFORE_RE = re.compile(r"^```sh before\n(.*?)^```", re.MULTILINE | re.DOTALL)


class ExerciseError(DiscoveryError):
    pass


@dataclass(frozen=True)
class Exercise:
    number: str  # "01"
    folder: Path

    @property
    def title(self) -> str:
        for line in self.readme.read_text().splitlines():
            if line.startswith("# "):
                return line[2:].strip()
        return self.folder.name

    @property
    def readme(self) -> Path:
        return self.folder / "README.md"

    @property
    def check(self) -> Path:
        return self.folder / "check"

    def steps(self, lab_kind: str = "local") -> list[str]:
        return steps_in(self.readme.read_text(), lab_kind)

    def before(self) -> str:
        return before_in(self.readme.read_text())


def steps_in(markdown: str, lab_kind: str = "local") -> list[str]:
    """The ```sh step blocks of a README, in order, that run on this kind of lab."""
    return [
        block.strip()
        for only_local, block in _STEP_RE.findall(markdown)
        if not only_local or lab_kind == "local"
    ]


def before_in(markdown: str) -> str:
    """The ```sh before blocks of a README, joined: what each new shell runs first."""
    return "\n".join(block.strip() for block in _BEFORE_RE.findall(markdown))


def all_exercises(root: Path = EXERCISES_DIR) -> list[Exercise]:
    if not root.is_dir():
        return []
    found = []
    for folder in sorted(root.iterdir()):
        match = _FOLDER_RE.match(folder.name)
        if match and folder.is_dir():
            found.append(Exercise(match.group(1), folder))
    return found


def find_exercise(number: str, root: Path = EXERCISES_DIR) -> Exercise:
    wanted = number.zfill(2)
    for exercise in all_exercises(root):
        if exercise.number == wanted:
            return exercise
    known = ", ".join(e.number for e in all_exercises(root)) or "none"
    raise ExerciseError(f"no exercise {number!r} (exercises: {known})")


def run_check(
    exercise: Exercise, env: dict[str, str], timeout_s: float = CHECK_TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    """Run the exercise's check; past ``timeout_s`` its whole process group is killed.

    Killing only the check would not do: a child it started (a `docker exec`,
    a `watch`) keeps the output pipes open, and reading them would hang.
    """
    if not os.access(exercise.check, os.X_OK):
        raise ExerciseError(f"exercise {exercise.number} has no executable check")
    process = subprocess.Popen(
        [str(exercise.check)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
        cwd=exercise.folder,
        start_new_session=True,  # its own process group, to kill as one
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise ExerciseError(
            f"the check of exercise {exercise.number} did not finish in {timeout_s:.0f} s "
            "(stopped); is the lab up and answering? try: discoveryctl lab status"
        ) from None
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)

"""Every exercise, as a learner does it: check fails first, the README's steps run, check passes.

One lab for all exercises (three hosts, three etcd members, because the etcd
exercise takes a member away), on a name, underlay and state dir of its own.
Exercises run in their numbered order, as a learner takes them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from discovery.lab.exercises import all_exercises
from tests.fixtures.lab import LabDriver
from tests.prerequisites import require_binary, require_root

pytestmark = [pytest.mark.root, pytest.mark.docker, pytest.mark.netns, pytest.mark.etcd]

REPO = Path(__file__).resolve().parents[2]
EXERCISES = all_exercises()
STEP_TIMEOUT_S = 240


@pytest.fixture(scope="module")
def exercise_lab(tmp_path_factory):
    require_root()
    require_binary("dockerd", "docker", "ip", "iptables", "nsenter", "dig")
    # Two runs at once (two people writing exercises) need two underlays.
    underlay = os.environ.get("EXERCISE_LAB_UNDERLAY", "192.168.220.0/24")
    driver = LabDriver(tmp_path_factory.mktemp("exercise-lab"), f"x{os.getpid() % 10000}", underlay)
    try:
        driver.lab("up", "--hosts", "3", "--etcd-members", "3", "--underlay", driver.underlay)
        yield driver
    finally:
        driver.lab("down", check=False)


def learner_env(lab: LabDriver) -> dict[str, str]:
    state = lab.state()
    tools = str(Path(sys.executable).parent)
    return {
        **lab.env,
        "PATH": f"{tools}:{os.environ.get('PATH', '')}",
        "LAB_NAME": lab.name,
        "DOCKER_HOST": state.hosts["host1"].docker_url,
        "DISCOVERY_ETCD_ENDPOINTS": ",".join(state.etcd_endpoints),
        # `discoveryctl lab ...` in a step must reach this lab, not the default one.
        "DISCOVERY_LAB_NAME": lab.name,
    }


def run_step(step: str, env: dict[str, str]) -> tuple[int, str, str]:
    """Run one README step with bash; on timeout kill its whole process group.

    A docker CLI whose container was killed under `docker exec` can hold the
    output pipes open forever, so killing bash alone would not end the wait.
    """
    process = subprocess.Popen(
        ["bash", "-e", "-o", "pipefail", "-c", step],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        stdout, stderr = process.communicate(timeout=STEP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        return -1, stdout, f"step timed out after {STEP_TIMEOUT_S} s\n{stderr}"
    return process.returncode, stdout, stderr


def test_there_is_an_exercise_for_every_topic():
    assert [e.number for e in EXERCISES] == [f"{n:02d}" for n in range(1, len(EXERCISES) + 1)]
    assert len(EXERCISES) >= 9


@pytest.mark.parametrize("exercise", EXERCISES, ids=[e.folder.name for e in EXERCISES])
def test_exercise_check_fails_then_steps_run_then_check_passes(exercise_lab, exercise):
    lab = exercise_lab
    steps = exercise.steps()
    assert steps, f"{exercise.readme} has no ```sh step blocks"

    before = lab.lab("check", exercise.number, check=False)
    assert "not done yet" in before, f"check {exercise.number} passed before any step:\n{before}"
    explanation = before.replace("not done yet", "").strip()
    assert len(explanation.splitlines()) >= 2, f"check {exercise.number} says too little:\n{before}"

    before_each = exercise.before()
    assert before_each, f"{exercise.readme} has no ```sh before block (Before you start)"
    env = learner_env(lab)
    for number, step in enumerate(steps, 1):
        # Each step in a new shell, after what every new terminal needs first.
        returncode, stdout, stderr = run_step(f"{before_each}\n{step}", env)
        assert returncode == 0, (
            f"{exercise.folder.name} step {number} failed:\n{step}\n"
            f"--- stdout\n{stdout}\n--- stderr\n{stderr}"
        )

    after = lab.lab("check", exercise.number, check=False)
    assert f"exercise {exercise.number}" in after and "done" in after
    assert "not done yet" not in after, f"check {exercise.number} failed after the steps:\n{after}"

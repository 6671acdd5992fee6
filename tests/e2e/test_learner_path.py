"""A learner's first hour, from a clean environment: only what the README says to type.

Every command runs in a new login shell started by ``env -i`` with a plain
PATH and HOME: no .venv on PATH, no DISCOVERY_* variables, no etcd endpoints.
The lab is the machine's own, made by `scripts/lab up` exactly as the README
gives it, and taken down by `scripts/lab down` at the end. On it the learner
first checks the front door, then does every exercise in order, pasting each
step into a new terminal after the exercise's "Before you start" block, with
`discoveryctl lab check NN` failing before and passing after; then hosts are
stopped, started, created and removed. So this test needs
the machine without a lab of its own, and says so (it fails, never skips).
"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from labs.exercise import all_exercises
from labs.state import DEFAULT_STATE_ROOT
from labs.testing.shells import run_bounded
from labs.testing.waiting import wait_until
from tests.prerequisites import require_binary, require_root

pytestmark = [pytest.mark.root, pytest.mark.docker, pytest.mark.netns, pytest.mark.etcd]

REPO = Path(__file__).resolve().parents[2]
EXERCISES = all_exercises()
STEP_TIMEOUT_S = 240
CLEAN_ENV = {
    "HOME": "/root",
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
}


def new_shell(command: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    """``command`` as typed into a new terminal (a login shell with nothing set up).

    Past the timeout the shell's whole process group is killed: a `docker exec`
    whose container went away can hold the output pipes open for ever.
    """
    env = [f"{key}={value}" for key, value in CLEAN_ENV.items()]
    return run_bounded(["env", "-i", *env, "bash", "-lc", command], REPO, timeout_s)


@pytest.fixture(scope="module")
def lab_up_output() -> Iterator[str]:
    require_root()
    require_binary("env", "bash")
    if (DEFAULT_STATE_ROOT / "lab" / "state.json").exists():
        pytest.fail(
            "this machine already has its own lab (/var/lib/discovery-lab/lab): the learner-path "
            "test brings up and takes down that very lab; run scripts/lab down first",
            pytrace=False,
        )
    result = new_shell("scripts/lab up", timeout_s=900)
    try:
        assert result.returncode == 0, f"scripts/lab up failed:\n{result.stdout}{result.stderr}"
        assert "It works" in result.stdout
        yield result.stdout
    finally:
        down = new_shell("scripts/lab down", timeout_s=300)
        assert down.returncode == 0, down.stdout + down.stderr
    after = new_shell(
        "command -v discoveryctl etcdctl; "
        "ls /etc/discovery/config.toml /etc/profile.d/discovery-lab.sh"
    )
    assert after.stdout.strip() == "", f"lab down left the front door: {after.stdout}"


def lookup_hosts(service: str = "web") -> set[str]:
    result = new_shell(f"discoveryctl lookup {service} -o json")
    return {row["host"] for row in json.loads(result.stdout)} if result.returncode == 0 else set()


def test_a_new_shell_finds_the_commands_and_the_lab(lab_up_output):
    assert lookup_hosts() == {"host2", "host3"}
    result = new_shell("etcdctl get --prefix /coreos.com/network/ --keys-only")
    assert result.returncode == 0, result.stderr
    assert "/coreos.com/network/config" in result.stdout
    assert result.stdout.count("/coreos.com/network/subnets/") == 3
    ls = new_shell("discoveryctl lab ls")
    assert ls.returncode == 0 and ls.stdout.count("Running") == 3, ls.stdout + ls.stderr
    # As docker-machine ls: the active host is the one this shell's docker talks to.
    pointed = new_shell("eval $(discoveryctl lab env host2); discoveryctl lab ls -o json")
    active = [row["name"] for row in json.loads(pointed.stdout) if row["active"]]
    assert active == ["host2"], pointed.stdout + pointed.stderr


def test_a_new_shell_is_the_learner_on_an_etcd_that_speaks_only_tls(lab_up_output):
    """No flags: etcdctl and discoveryctl find the learner's certificate, whose role
    reads everything and writes hand-made records, and nothing else."""
    who = new_shell('openssl x509 -noout -subject -in "$ETCDCTL_CERT"')
    assert who.returncode == 0 and "CN = learner" in who.stdout, who.stdout + who.stderr
    assert new_shell("etcdctl get /coreos.com/network/config").returncode == 0
    refused = new_shell("etcdctl put /coreos.com/network/config '{}'")
    assert refused.returncode != 0 and "permission denied" in refused.stderr, refused.stderr
    hand_made = new_shell(
        "discoveryctl register learner-check --address 10.5.99.9 --ttl 5 && "
        "discoveryctl deregister learner-check --address 10.5.99.9"
    )
    assert hand_made.returncode == 0, hand_made.stdout + hand_made.stderr
    plain = new_shell(
        'ETCDCTL_ENDPOINTS="${ETCDCTL_ENDPOINTS//https:/http:}" '
        "etcdctl --dial-timeout=1s --command-timeout=2s get /coreos.com/network/config"
    )
    assert plain.returncode != 0, plain.stdout
    no_certificate = new_shell(
        "env -u ETCDCTL_CERT -u ETCDCTL_KEY etcdctl --dial-timeout=1s --command-timeout=2s "
        "get /coreos.com/network/config"
    )
    assert no_certificate.returncode != 0 and "bad certificate" in no_certificate.stderr
    # A terminal window's shell is no login shell: it reads no /etc/profile.d, and
    # etcdctl (the lab's few lines in front of it) still finds the lab and the certificate.
    env = [f"{key}={value}" for key, value in CLEAN_ENV.items()]
    command = "etcdctl get --print-value-only /coreos.com/network/config"
    not_login = run_bounded(["env", "-i", *env, "bash", "-c", command], REPO, 60)
    assert not_login.returncode == 0 and "Network" in not_login.stdout, not_login.stderr


@pytest.mark.parametrize("exercise", EXERCISES, ids=[e.folder.name for e in EXERCISES])
def test_every_exercise_as_a_learner_pastes_it(lab_up_output, exercise):
    """The check fails first; each step, in a new terminal after the exercise's
    "Before you start" block, succeeds; then the check passes."""
    before = new_shell(f"discoveryctl lab check {exercise.number}")
    assert before.returncode == 1 and "not done yet" in before.stdout, before.stdout
    explanation = before.stdout.replace("not done yet", "").strip()
    assert len(explanation.splitlines()) >= 2, f"check says too little:\n{before.stdout}"
    prelude = exercise.before()
    assert prelude, f"{exercise.readme} has no ```sh before block (Before you start)"
    steps = exercise.steps()
    assert steps, f"{exercise.readme} has no ```sh step blocks"
    for number, step in enumerate(steps, 1):
        # -e and pipefail: a step passes only if every command in it did.
        result = new_shell(f"set -e -o pipefail\n{prelude}\n{step}", timeout_s=STEP_TIMEOUT_S)
        assert result.returncode == 0, (
            f"{exercise.folder.name} step {number} failed:\n{step}\n"
            f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
        )
    after = new_shell(f"discoveryctl lab check {exercise.number}")
    assert after.returncode == 0 and "not done yet" not in after.stdout, after.stdout


def test_the_exercises_end_with_their_check_and_answer_every_question():
    for exercise in EXERCISES:
        text = exercise.readme.read_text()
        assert f"Check your work: `discoveryctl lab check {exercise.number}`" in text, exercise
        questions = text.split("## Questions", 1)[1].split("\n## ", 1)[0]
        asked = len(re.findall(r"^\d+\. ", questions, re.MULTILINE))
        assert asked and questions.count("<summary>Answer</summary>") == asked, exercise
        assert not any(re.search(r"^\s*exit\b", step, re.MULTILINE) for step in exercise.steps())


def test_a_host_stops_and_starts_with_its_subnet_and_records(lab_up_output):
    before = json.loads(new_shell("discoveryctl lab inspect host2").stdout)
    stopped = new_shell("discoveryctl lab stop host2")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert lookup_hosts() == {"host3"}
    status = new_shell("discoveryctl lab status")
    assert status.returncode == 1 and "agent-services@host2" in status.stdout
    started = new_shell("discoveryctl lab start host2")
    assert started.returncode == 0, started.stdout + started.stderr
    wait_until(lambda: lookup_hosts() == {"host2", "host3"}, 15, "web on host2 back")
    after = json.loads(new_shell("discoveryctl lab inspect host2").stdout)
    assert after["subnet"] == before["subnet"]
    assert new_shell("discoveryctl lab status").returncode == 0


def test_a_host_joins_and_leaves_the_running_lab(lab_up_output):
    refused = new_shell("discoveryctl lab create host9")
    assert refused.returncode == 1 and "lab create takes the next host, host4" in refused.stderr
    created = new_shell("discoveryctl lab create host4", timeout_s=300)
    assert created.returncode == 0, created.stdout + created.stderr
    ls = new_shell("discoveryctl lab ls")
    assert ls.stdout.count("Running") == 4, ls.stdout
    run = new_shell(
        "eval $(discoveryctl lab env host4) && docker run -d --name web-host4 "
        "-e LAB_HOST=host4 discovery-lab/web:0.1.0"
    )
    assert run.returncode == 0, run.stderr
    wait_until(lambda: "host4" in lookup_hosts(), 10, "web on host4 registered")
    subnets = new_shell("discoveryctl subnets -o json")
    assert len(json.loads(subnets.stdout)) == 4

    member = new_shell("discoveryctl lab rm host2")
    assert member.returncode == 1 and "etcd member" in member.stderr
    removed = new_shell("discoveryctl lab rm host4", timeout_s=300)
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert "host4" not in lookup_hosts()
    assert len(json.loads(new_shell("discoveryctl subnets -o json").stdout)) == 3
    assert new_shell("ip netns list").stdout.count("lab-host4") == 0
    assert new_shell("discoveryctl lab status").returncode == 0


def test_an_underlay_in_use_is_refused_in_one_line(lab_up_output):
    routes = json.loads(new_shell("ip -j -4 route show").stdout)
    taken = next(
        ipaddress.IPv4Network(route["dst"])
        for route in routes
        if route.get("dst", "default") != "default" and route.get("dev") != "lab0"
    )
    for command in (
        f"discoveryctl lab up --name second --underlay {taken}",
        f"discoveryctl lab --name second up --underlay {taken}",
        "discoveryctl lab up --name second --underlay 192.168.100.0/24",  # the first lab's
    ):
        result = new_shell(command)
        assert result.returncode == 1, command
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "already in use on this machine" in result.stderr
        assert "choose another with --underlay" in result.stderr
    assert new_shell("ip link show second0").returncode != 0  # nothing was made


def test_the_live_map_answers_at_the_url_lab_up_printed(lab_up_output):
    """The map's URL is a Try-next line; what a browser there gets, and Consul's API."""
    (url,) = re.findall(r"^\s+(http://127\.0\.0\.1:\d+/)\s", lab_up_output, re.MULTILINE)
    assert url == "http://127.0.0.1:8500/"  # Consul's port, free on a machine without Consul
    with urllib.request.urlopen(url, timeout=10) as page:
        assert "live map" in page.read().decode()
    with urllib.request.urlopen(f"{url}v1/health/service/web?passing", timeout=10) as answer:
        nodes = {entry["Node"]["Node"] for entry in json.loads(answer.read())}
    assert nodes == {"host2", "host3"}
    # `lab map` in a new shell names the one lab up runs instead of failing on its port.
    again = new_shell("discoveryctl lab map")
    assert again.returncode == 0 and url in again.stdout, again.stdout + again.stderr


def test_the_demo_s_try_next_lines_work_as_printed(lab_up_output):
    block = lab_up_output.split("Try next:\n", 1)[1]
    lines = [re.sub(r"\s+#.*$", "", line).strip() for line in block.splitlines()]
    lines = [line for line in lines if line.startswith(("discoveryctl", "etcdctl", "eval"))]
    # Interactive (-it), endless (watch) and final (down) lines are for a person.
    runnable = [
        line for line in lines if " -it " not in line and " watch" not in line
        and "lab down" not in line
    ]  # fmt: skip
    assert len(runnable) >= 5, lines
    for line in runnable:
        result = new_shell(line)
        assert result.returncode == 0, f"{line!r}: {result.stdout}{result.stderr}"

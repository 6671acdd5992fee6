"""`discoveryctl lab break` on a real 3-host lab: each scenario seen, diagnosed, fixed, undone.

One lab for the module (its own name, underlay 192.168.241.0/24 and state
dir), a web container and a client container on each host. First exercise
10 as a learner pastes it (its check fails, each step passes in a new shell
after the "Before you start" block, its check passes). Then, for every
scenario: inject it; see the symptom for real from a container; `lab check
break` says not fixed; doctor FAILs on the scenario's checks (the switchable
part, ``DOCTOR``); the write-up's diagnosis commands run as printed; the
write-up's fix makes `lab check break` say fixed; `--reset`; the lab is
healthy again (lookup complete, cross-host wget) and nothing is broken.
Last, `--reset` of scenarios left unfixed or fixed halfway.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labs.breaks.scenarios import SCENARIOS, scenario
from labs.exercise import find_exercise
from labs.testing.lab_driver import LabDriver
from labs.testing.shells import run_bounded
from labs.testing.waiting import wait_until
from tests.prerequisites import require_binary, require_root

pytestmark = [pytest.mark.root, pytest.mark.docker, pytest.mark.netns, pytest.mark.etcd]

LAB = f"bk{os.getpid() % 10000}"
UNDERLAY = "192.168.241.0/24"
REPO = Path(__file__).resolve().parents[2]
HOSTS = ("host1", "host2", "host3")
STEP_TIMEOUT_S = 240
# The doctor contract's assertions (discoveryctl doctor, issue 15): on since doctor is on main.
DOCTOR = True


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    require_root()
    require_binary("dockerd", "docker", "ip", "bridge", "iptables", "nsenter", "dig", "tcpdump")
    driver = LabDriver(tmp_path_factory.mktemp("lab-state"), LAB, UNDERLAY)
    started = time.monotonic()
    try:
        driver.lab("up", "--hosts", "3", "--underlay", UNDERLAY)
        for host in HOSTS:
            driver.docker(host, "run", "-d", "--name", f"web-{host}", "-e", f"LAB_HOST={host}",
                          driver.image("web"))  # fmt: skip
            driver.client(host)
        wait_until(lambda: healthy_lookup(driver), 10, "web on every host in etcd")
        print(f"\nlab up and containers: {time.monotonic() - started:.1f} s")
        yield driver
    finally:
        driver.lab("down", check=False)


def healthy_lookup(lab: LabDriver) -> bool:
    return {row["host"] for row in lab.lookup("web")} == set(HOSTS)


def web(lab: LabDriver, host: str) -> str:
    return lab.address_of(host, f"web-{host}")


def bridge(lab: LabDriver, host: str) -> str:
    return lab.state().hosts[host].dns_ip


def in_client(lab: LabDriver, host: str, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**lab.env, "DOCKER_HOST": lab.state().hosts[host].docker_url}
    return subprocess.run(["docker", "exec", f"client-{host}", *argv], capture_output=True,
                          text=True, env=env, timeout=60)  # fmt: skip


def fetches(lab: LabDriver, source: str, target: str) -> bool:
    """A page of target's web, fetched by address from a container on source (5 s at most)."""
    url = f"http://{web(lab, target)}/"
    result = in_client(lab, source, "timeout", "5", "wget", "-qO-", url)
    return result.returncode == 0 and f"lab host: {target}" in result.stdout


def pings(lab: LabDriver, source: str, address: str, size: int = 56) -> bool:
    return (
        in_client(lab, source, "ping", "-c", "1", "-W", "2", "-s", str(size), address).returncode
        == 0
    )


def shell(lab: LabDriver, command: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    """``command`` in a new shell, as a learner types it: a plain PATH with the
    project's commands, and only what finds this lab (the machine's lab needs
    not even that)."""
    env = {
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "PATH": f"{Path(sys.executable).parent}:/usr/local/sbin:/usr/local/bin:/usr/sbin:"
        "/usr/bin:/sbin:/bin",
        "PYTHONPATH": str(REPO),  # this checkout's code, whatever the venv was installed from
        "DISCOVERY_LAB_STATE": lab.env["DISCOVERY_LAB_STATE"],
        "DISCOVERY_LAB_NAME": LAB,
    }
    argv = ["env", "-i", *[f"{k}={v}" for k, v in env.items()], "bash", "-c", command]
    return run_bounded(argv, REPO, timeout_s)


def check_break(lab: LabDriver) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "discovery.cli", "lab", "--name", LAB, "check", "break"],
        capture_output=True, text=True, env=lab.env, timeout=60,
    )  # fmt: skip


def doctor(lab: LabDriver) -> tuple[int, dict[tuple[str, str], str]]:
    result = subprocess.run(
        [sys.executable, "-m", "discovery.cli", "doctor", "--name", LAB, "-o", "json"],
        capture_output=True, text=True, env=lab.env, timeout=60,
    )  # fmt: skip
    found = json.loads(result.stdout)
    return result.returncode, {(c["check"], c["host"]): c["status"] for c in found["checks"]}


def blocks(markdown: str, kind: str) -> list[str]:
    return re.findall(rf"^```sh {kind}\n(.*?)^```", markdown, re.MULTILINE | re.DOTALL)


PRELUDE = "eval $(discoveryctl lab env host1)\n"
BROKEN_COMMAND = re.compile(r"command not found|invalid choice|unrecognized arguments|usage:")


# ------------------------------------------------------------ exercise 10, first: a fresh lab


def test_exercise_10_as_a_learner_pastes_it(lab):
    exercise = find_exercise("10")
    before = shell(lab, "discoveryctl lab check 10")
    assert before.returncode == 1 and "not done yet" in before.stdout, before.stdout
    assert len(before.stdout.replace("not done yet", "").strip().splitlines()) >= 2
    prelude = exercise.before()
    for number, step in enumerate(exercise.steps(), 1):
        result = shell(lab, f"set -e -o pipefail\n{prelude}\n{step}", timeout_s=STEP_TIMEOUT_S)
        assert result.returncode == 0, (
            f"step {number} failed:\n{step}\n"
            f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
        )
    after = shell(lab, "discoveryctl lab check 10")
    assert after.returncode == 0 and "done" in after.stdout, after.stdout + after.stderr
    assert "nothing is broken" in lab.lab("check", "break") or "fixed" in lab.lab("check", "break")
    lab.lab("break", "--reset")
    assert "nothing is broken" in lab.lab("check", "break")


# ------------------------------------------------------------ each scenario


def see_big_packets(lab: LabDriver) -> None:
    target = bridge(lab, "host2")
    assert pings(lab, "host1", target, 1000)
    assert not pings(lab, "host1", target, 1400)
    assert fetches(lab, "host1", "host2")  # a small page still comes


def see_lost_peer(lab: LabDriver) -> None:
    assert lab.resolve("host1") == {web(lab, h) for h in HOSTS}  # names resolve
    assert not fetches(lab, "host1", "host2")
    assert fetches(lab, "host1", "host3") and fetches(lab, "host3", "host2")


def see_quiet_pair(lab: LabDriver) -> None:
    assert not fetches(lab, "host2", "host3") and not fetches(lab, "host3", "host2")
    assert fetches(lab, "host2", "host1") and fetches(lab, "host1", "host3")


def see_gone_from_dns(lab: LabDriver) -> None:
    others = {web(lab, "host1"), web(lab, "host3")}
    wait_until(lambda: lab.resolve("host1") == others, 20, "host2's web leaving DNS")
    assert fetches(lab, "host1", "host2")  # it runs, and is reached by address


def see_no_answers(lab: LabDriver) -> None:
    assert lab.resolve("host1") == set()
    failed = in_client(lab, "host1", "timeout", "5", "nslookup", "web")
    assert failed.returncode != 0, failed.stdout
    assert fetches(lab, "host1", "host2")
    assert lab.resolve("host3") == {web(lab, h) for h in HOSTS}


def see_frozen_catalog(lab: LabDriver) -> None:
    state = lab.state()
    lookup = subprocess.run(
        [sys.executable, "-m", "discovery.cli", "--etcd-endpoints", ",".join(state.etcd_endpoints),
         *lab.etcd_client().flags(), "lookup", "web"],
        capture_output=True, text=True, env=lab.env, timeout=60,
    )  # fmt: skip
    assert lookup.returncode == 3 and "etcd unreachable" in lookup.stderr, lookup.stderr
    assert lab.resolve("host1") == {web(lab, h) for h in HOSTS}  # from the servers' copy


SYMPTOMS = {
    "big-packets": see_big_packets,
    "lost-peer": see_lost_peer,
    "quiet-pair": see_quiet_pair,
    "gone-from-dns": see_gone_from_dns,
    "no-answers": see_no_answers,
    "frozen-catalog": see_frozen_catalog,
}


def assert_healthy(lab: LabDriver) -> None:
    wait_until(lambda: healthy_lookup(lab), 20, "web on every host in etcd again")
    for source, target in (("host1", "host2"), ("host2", "host3"), ("host3", "host1")):
        wait_until(lambda s=source, t=target: fetches(lab, s, t), 10, f"{source} -> {target}")
    wait_until(lambda: lab.resolve("host1") == {web(lab, h) for h in HOSTS}, 10, "DNS on host1")
    result = check_break(lab)
    assert result.returncode == 0 and "nothing is broken" in result.stdout, result.stdout


def test_every_scenario_has_its_symptom_here():
    assert set(SYMPTOMS) == {s.name for s in SCENARIOS}


@pytest.mark.parametrize("name", list(SYMPTOMS))
def test_scenario_seen_diagnosed_fixed_and_undone(lab, name):
    item = scenario(name)
    started = time.monotonic()
    told = lab.lab("break", name)
    assert item.symptom in told and "lab check break" in told

    SYMPTOMS[name](lab)
    result = check_break(lab)
    assert result.returncode == 1 and "not fixed yet" in result.stdout, result.stdout
    assert len(result.stdout.strip().splitlines()) == 1

    other = next(s.name for s in SCENARIOS if s.name != name)
    refused = subprocess.run(
        [sys.executable, "-m", "discovery.cli", "lab", "--name", LAB, "break", other],
        capture_output=True, text=True, env=lab.env, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 1 and len(refused.stderr.strip().splitlines()) == 1
    assert "still in place" in refused.stderr

    if DOCTOR:
        code, statuses = doctor(lab)
        assert code != 0
        for check, host in item.doctor_fails:
            assert statuses.get((check, host)) == "FAIL", (check, host, statuses)
        for check in item.doctor_passes:
            for host in HOSTS:
                assert statuses.get((check, host)) == "PASS", (check, host, statuses)

    writeup = item.writeup.read_text()
    for block in blocks(writeup, "diagnose") + (blocks(writeup, "doctor") if DOCTOR else []):
        ran = shell(lab, PRELUDE + block)
        assert not BROKEN_COMMAND.search(ran.stderr), f"{name}:\n{block}\n{ran.stderr}"

    (fix,) = blocks(writeup, "fix")
    fixed = shell(lab, f"set -e -o pipefail\n{PRELUDE}{fix}", timeout_s=STEP_TIMEOUT_S)
    assert fixed.returncode == 0, f"{name} fix:\n{fixed.stdout}\n{fixed.stderr}"
    assert f"{name}: fixed" in fixed.stdout and str(item.writeup) in fixed.stdout

    lab.lab("break", "--reset")
    assert_healthy(lab)
    if DOCTOR:
        wait_until(lambda: doctor(lab)[0] == 0, 20, f"doctor all PASS after {name}")
    print(f"\n{name}: {time.monotonic() - started:.1f} s")


@pytest.mark.parametrize("name", ["quiet-pair", "no-answers", "frozen-catalog", "big-packets"])
def test_reset_undoes_a_scenario_left_as_it_is(lab, name):
    lab.lab("break", name)
    assert check_break(lab).returncode == 1
    undone = lab.lab("break", "--reset")
    assert f"{name} undone" in undone
    assert "nothing to undo" in lab.lab("break", "--reset")  # idempotent
    assert_healthy(lab)


def test_reset_after_a_partial_fix_from_a_new_shell(lab):
    """lost-peer: the learner put the FDB entry back by hand, but left the agent paused."""
    lab.lab("break", "lost-peer")
    state = lab.state()
    assert state.broken is not None
    details = state.broken.details
    netns = state.hosts["host1"].netns
    entry = [details["mac"], "dev", "flannel.1", "dst", details["dst"]]
    subprocess.run(["nsenter", f"--net=/run/netns/{netns}", "bridge", "fdb", "append", *entry],
                   check=True)  # fmt: skip
    result = check_break(lab)
    assert result.returncode == 1 and "agent-network@host1 is stopped" in result.stdout
    undone = shell(lab, "discoveryctl lab break --reset")
    assert undone.returncode == 0 and "lost-peer undone" in undone.stdout, undone.stdout
    assert_healthy(lab)


def test_listing_names_symptoms_only_and_nothing_is_broken_at_the_end(lab):
    listing = lab.lab("break")
    for item in SCENARIOS:
        assert item.symptom in listing
    assert "nothing is broken" in lab.lab("check", "break")

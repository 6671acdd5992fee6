"""The `lab break` scenarios as data (pure): symptoms, doctor's checks, when each is fixed."""

from __future__ import annotations

import json
import re

import pytest

from labs.breaks.scenarios import (
    SCENARIOS,
    BreakError,
    Observed,
    judge,
    listing,
    render_tries,
    scenario,
)
from labs.state import BreakRecord, LabState, load_state, save_state

# What the doctor contract names (issue 15); a scenario may only point at these.
DOCTOR_CHECKS = {
    "etcd-quorum", "vtep-macs", "public-ips", "processes", "node-record", "subnet-lease", "mtu",
    "kernel-entries", "overlay-reach", "forward", "dns", "stale-records",
}  # fmt: skip
# Words that name a cause: a symptom (and a scenario's name) must not say them.
CAUSE_WORDS = re.compile(
    r"mtu|fdb|iptables|firewall|8472|udp|vxlan|sigstop|paused|agent|quorum|etcd member|"
    r"stopped dns|dns server|killed|rule",
    re.IGNORECASE,
)
CONTEXT = {
    "lab": "discoveryctl lab",
    "ctl": "discoveryctl",
    "doctor": "discoveryctl doctor",
    "explain": "discoveryctl explain",
    "image": "discovery-lab/base:0.1.0",
    "etcd": "https://192.168.100.11:2379",
    "etcdctl_tls": "",  # the machine's lab: etcdctl's certificate is in /etc/profile.d
    **{f"bridge_host{i}": f"10.5.{i}.1" for i in (1, 2, 3)},
    **{f"ip_host{i}": f"192.168.100.1{i}" for i in (1, 2, 3)},
}


def test_at_least_six_scenarios_with_unique_short_names_and_a_writeup_each():
    names = [s.name for s in SCENARIOS]
    assert len(names) >= 6 and len(set(names)) == len(names)
    for item in SCENARIOS:
        assert re.fullmatch(r"[a-z]+(-[a-z]+)*", item.name) and len(item.name) <= 16
        assert item.writeup.is_file(), item.writeup
        text = item.writeup.read_text()
        for section in ("## Symptom", "## Diagnose", "## Cause", "## Fix", "## In real life"):
            assert section in text, (item.name, section)


@pytest.mark.parametrize("item", SCENARIOS, ids=lambda s: s.name)
def test_names_and_symptoms_say_what_a_learner_sees_never_the_cause(item):
    assert not CAUSE_WORDS.search(item.symptom), item.symptom
    assert not CAUSE_WORDS.search(item.name)
    assert item.symptom in listing()


@pytest.mark.parametrize("item", SCENARIOS, ids=lambda s: s.name)
def test_each_scenario_names_doctor_checks_of_the_contract(item):
    assert item.doctor_fails
    for check, host in item.doctor_fails:
        assert check in DOCTOR_CHECKS
        assert host in ("lab", "host1", "host2", "host3")
        assert (check == "etcd-quorum") == (host == "lab")
    assert set(item.doctor_passes) <= DOCTOR_CHECKS
    assert not set(item.doctor_passes) & {check for check, _ in item.doctor_fails}


@pytest.mark.parametrize("item", SCENARIOS, ids=lambda s: s.name)
def test_the_commands_to_try_fill_in_for_a_lab(item):
    tries = render_tries(item, CONTEXT)
    assert tries and not any("{" in line for line in tries)
    assert all(line.startswith(("discoveryctl", "ETCDCTL_ENDPOINTS=")) for line in tries)


def test_an_unknown_scenario_names_the_known_ones():
    with pytest.raises(BreakError, match="scenarios: big-packets, lost-peer"):
        scenario("nope")


# Judges: (scenario, details, observed, what still looks wrong, or None when fixed).
BIG = {"host": "host2", "underlay": "eth0", "mtu": "1500"}
PEER = {"host": "host1", "peer": "host2", "mac": "aa:bb:cc:dd:ee:02", "dst": "192.168.100.12"}
PAIR = {"host": "host3", "peer": "host2", "peer_ip": "192.168.100.12"}
DROP = "-A INPUT -s 192.168.100.12/32 -p udp -m udp --dport 8472 -j DROP"
MEMBERS = {"members": "etcd@host2,etcd@host3"}
RUNNING = {f"{role}@host{i}": "running" for role in ("etcd", "agent-network", "agent-services",
                                                      "dns") for i in (1, 2, 3)}  # fmt: skip


def mtus(underlay: int, vxlan: int, docker: int = 1450) -> Observed:
    return Observed(
        mtus={"host2": {"eth0": underlay, "flannel.1": vxlan, "lo": 65536}},
        docker_mtu={"host2": docker},
    )


JUDGED = [
    # big-packets: broken, the underlay given back, the overlay sized down (lab restart host2)
    ("big-packets", BIG, mtus(1400, 1450), "big packets"),
    ("big-packets", BIG, mtus(1500, 1450), None),
    ("big-packets", BIG, mtus(1400, 1350, docker=1350), None),
    # flannel.1 lowered by hand, but Docker still hands containers 1450
    ("big-packets", BIG, mtus(1400, 1350), "big packets"),
    ("big-packets", BIG, Observed(mtus={}), "cannot read"),
    # lost-peer: the entry missing; back but the agent still paused; both right
    ("lost-peer", PEER, Observed(fdb={"host1": frozenset()}, processes=RUNNING), "cannot reach"),
    (
        "lost-peer", PEER,
        Observed(fdb={"host1": frozenset({("aa:bb:cc:dd:ee:02", "192.168.100.12")})},
                 processes={**RUNNING, "agent-network@host1": "stopped"}),
        "agent-network@host1 is stopped",
    ),
    (
        "lost-peer", PEER,
        Observed(fdb={"host1": frozenset({("aa:bb:cc:dd:ee:02", "192.168.100.12")})},
                 processes=RUNNING),
        None,
    ),
    # quiet-pair: the rule anywhere is still wrong; a REJECT too; an ACCEPT of 8472 is fine
    ("quiet-pair", PAIR, Observed(firewall={"host3": ("-P INPUT ACCEPT", DROP)}), "cannot reach"),
    ("quiet-pair", PAIR, Observed(firewall={"host2": (DROP.replace("DROP", "REJECT"),)}), "cannot"),
    ("quiet-pair", PAIR, Observed(firewall={"host3": ("-P INPUT ACCEPT",)}), None),
    ("quiet-pair", PAIR, Observed(firewall={"host3": (DROP.replace("DROP", "ACCEPT"),)}), None),
    # gone-from-dns: dead; running but its node record not written yet; back
    ("gone-from-dns", {"host": "host2"},
     Observed(processes={**RUNNING, "agent-services@host2": "not running"}), "not running"),
    ("gone-from-dns", {"host": "host2"},
     Observed(processes=RUNNING, node_records=frozenset({"host1", "host3"})), "no node record"),
    ("gone-from-dns", {"host": "host2"},
     Observed(processes=RUNNING, node_records=frozenset({"host1", "host2", "host3"})), None),
    # no-answers: stopped; restarting (its supervisor waits); running but silent; answering
    ("no-answers", {"host": "host1"},
     Observed(processes={**RUNNING, "dns@host1": "not running"}), "dns@host1 is not running"),
    ("no-answers", {"host": "host1"},
     Observed(processes={**RUNNING, "dns@host1": "restarting"}), "restarting"),
    ("no-answers", {"host": "host1"},
     Observed(processes=RUNNING, dns_answers={"host1": False}), "does not answer"),
    ("no-answers", {"host": "host1"},
     Observed(processes=RUNNING, dns_answers={"host1": True}), None),
    # frozen-catalog: members down; all up but no answer yet; healthy
    ("frozen-catalog", MEMBERS,
     Observed(processes={**RUNNING, "etcd@host3": "not running"}, etcd_healthy=False),
     "etcd@host3"),
    ("frozen-catalog", MEMBERS, Observed(processes=RUNNING, etcd_healthy=False), "does not answer"),
    ("frozen-catalog", MEMBERS, Observed(processes=RUNNING, etcd_healthy=True), None),
]  # fmt: skip


@pytest.mark.parametrize(("name", "details", "observed", "wrong"), JUDGED)
def test_judge_says_what_still_looks_wrong_or_none_when_fixed(name, details, observed, wrong):
    said = judge(name, details, observed)
    if wrong is None:
        assert said is None
    else:
        assert said is not None and wrong in said and "\n" not in said


def test_every_scenario_has_a_broken_and_a_fixed_row():
    judged = {(name, wrong is None) for name, _, _, wrong in JUDGED}
    for item in SCENARIOS:
        assert {(item.name, True), (item.name, False)} <= judged, item.name


def test_a_state_file_from_before_lab_break_still_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("DISCOVERY_LAB_STATE", str(tmp_path))
    old = {"name": "old", "host_count": 3, "etcd_members": 3, "underlay": "192.168.100.0/24",
           "overlay": "10.5.0.0/16", "etcd_endpoints": [], "hosts": {},
           "processes": []}  # fmt: skip
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "state.json").write_text(json.dumps(old))
    state = load_state("old")
    assert state is not None and state.broken is None and state.breaks_fixed == []
    state.broken = BreakRecord("lost-peer", "2026-01-01T00:00:00+00:00", dict(PEER))
    state.breaks_fixed.append("big-packets")
    save_state(state)
    again = load_state("old")
    assert again is not None and again.broken == state.broken
    assert again.breaks_fixed == ["big-packets"]
    assert isinstance(again, LabState)

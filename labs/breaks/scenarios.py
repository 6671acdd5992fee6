"""The `lab break` scenarios, as data: what the learner sees, what doctor says, when it is fixed.

Pure: nothing here touches the lab. ``faults.py`` injects and undoes each
scenario and reads the facts a scenario's judge needs (``Observed``);
``judge`` turns those facts into one line of what still looks wrong, or
None once the scenario is fixed.

A scenario's name and symptom describe what a learner notices, never the
cause: the cause is in its write-up (``labs/breaks/<name>.md``), which
`lab check break` points to once it is fixed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from discovery.errors import DiscoveryError

WRITEUPS_DIR = Path(__file__).parent
# As agent.network.netlink's: outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8.
VXLAN_OVERHEAD_BYTES = 50
VXLAN_DEVICE = "flannel.1"
VXLAN_PORT = 8472
# big-packets: the MTU host2's underlay gets, below what the overlay was sized for.
SMALL_UNDERLAY_MTU = 1400


class BreakError(DiscoveryError):
    """A scenario cannot be injected, undone or judged on this lab."""


@dataclass(frozen=True)
class Observed:
    """The facts `lab check break` read from the lab, only those its scenario needs.

    ``mtus``: host -> {interface: MTU}; ``docker_mtu``: host -> the MTU of
    Docker's default bridge network; ``fdb``: host -> the (MAC, destination)
    entries of its VXLAN device; ``firewall``: host -> `iptables -S` lines;
    ``processes``: "role@host" -> condition (running, stopped, restarting,
    not running); ``dns_answers``: host -> its DNS server answered;
    ``node_records``: hosts with a node record in etcd; ``etcd_healthy``:
    every member answered a quorum read.
    """

    mtus: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    docker_mtu: Mapping[str, int] = field(default_factory=dict)
    fdb: Mapping[str, frozenset[tuple[str, str]]] = field(default_factory=dict)
    firewall: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    processes: Mapping[str, str] = field(default_factory=dict)
    dns_answers: Mapping[str, bool] = field(default_factory=dict)
    node_records: frozenset[str] = frozenset()
    etcd_healthy: bool | None = None


Judge = Callable[[Mapping[str, str], Observed], "str | None"]


@dataclass(frozen=True)
class Scenario:
    name: str
    symptom: str  # what a learner notices; never the cause
    # Commands to start from, as printed: format fields {lab} (discoveryctl lab [--name X]),
    # {ctl} (discoveryctl [--etcd-endpoints ...]), {doctor}, {explain}, {image}, {etcd}, and
    # {bridge_host1} ... (each host's docker bridge address).
    tries: tuple[str, ...]
    # Which of doctor's checks FAIL, on which host ("lab" for the lab-wide ones) ...
    doctor_fails: tuple[tuple[str, str], ...]
    # ... and which stay PASS on every host (so a learner is not sent the wrong way).
    doctor_passes: tuple[str, ...]
    needs: frozenset[str]  # the Observed fields its judge reads
    fixed_when: str  # the fixed condition, in words
    fixes: tuple[str, ...]  # what a learner may do that counts as fixed
    judge: Judge

    @property
    def writeup(self) -> Path:
        return WRITEUPS_DIR / f"{self.name}.md"


def _process(observed: Observed, what: str) -> str | None:
    condition = observed.processes.get(what, "not running")
    if condition != "running":
        return f"{what} is {condition}"
    return None


def _judge_big_packets(details: Mapping[str, str], observed: Observed) -> str | None:
    host, underlay = details["host"], details["underlay"]
    links = observed.mtus.get(host, {})
    if underlay not in links or VXLAN_DEVICE not in links:
        return f"{host}: cannot read the MTU of {underlay} and {VXLAN_DEVICE}"
    # Said as the learner sees it: the cause is theirs to find.
    lost = f"big packets between {host}'s containers and the other hosts are still lost"
    if links[VXLAN_DEVICE] > links[underlay] - VXLAN_OVERHEAD_BYTES:
        return lost
    docker = observed.docker_mtu.get(host)
    if docker is not None and docker > links[VXLAN_DEVICE]:
        return lost
    return None


def _judge_lost_peer(details: Mapping[str, str], observed: Observed) -> str | None:
    host = details["host"]
    entry = (details["mac"], details["dst"])
    if entry not in observed.fdb.get(host, frozenset()):
        return (
            f"{host}'s containers still cannot reach {details['peer']}'s: {host}'s kernel "
            f"has no way to {details['peer']} yet"
        )
    return _process(observed, f"agent-network@{host}")


def _drops_vxlan(line: str) -> bool:
    return bool(re.search(rf"--dport {VXLAN_PORT}\b", line)) and bool(
        re.search(r"-j (DROP|REJECT)\b", line)
    )


def _judge_quiet_pair(details: Mapping[str, str], observed: Observed) -> str | None:
    for lines in observed.firewall.values():
        for line in lines:
            if _drops_vxlan(line):
                return f"{details['peer']} and {details['host']} still cannot reach each other"
    return None


def _judge_gone_from_dns(details: Mapping[str, str], observed: Observed) -> str | None:
    host = details["host"]
    problem = _process(observed, f"agent-services@{host}")
    if problem:
        return problem
    if host not in observed.node_records:
        return f"{host} has no node record in etcd yet: its containers are not registered"
    return None


def _judge_no_answers(details: Mapping[str, str], observed: Observed) -> str | None:
    host = details["host"]
    problem = _process(observed, f"dns@{host}")
    if problem:
        return problem
    if not observed.dns_answers.get(host, False):
        return f"the DNS server of {host}'s containers does not answer yet"
    return None


def _judge_frozen_catalog(details: Mapping[str, str], observed: Observed) -> str | None:
    for what in details["members"].split(","):
        problem = _process(observed, what)
        if problem:
            return problem
    if not observed.etcd_healthy:
        return "etcd does not answer a read on every member yet"
    return None


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        name="big-packets",
        symptom=(
            "Containers on host1 ping containers on host2 with small packets, but big "
            "pings get no answer, and big downloads between host2's containers and other "
            "hosts stall while small pages load."
        ),
        tries=(
            "{lab} exec host1 -- docker run --rm {image} ping -c 2 -W 2 -s 1000 {bridge_host2}",
            "{lab} exec host1 -- docker run --rm {image} ping -c 2 -W 2 -s 1400 {bridge_host2}",
            "{doctor} host2",
            "{lab} exec host2 -- ip link",
        ),
        doctor_fails=(("mtu", "host2"),),
        doctor_passes=("kernel-entries",),
        needs=frozenset({"mtus", "docker_mtu"}),
        fixed_when=(
            "on the host, the VXLAN device's MTU is at most its underlay's minus 50, and "
            "Docker's bridge MTU at most the VXLAN device's"
        ),
        fixes=(
            "give host2's underlay its MTU back: {lab} exec host2 -- ip link set eth0 mtu 1500",
            "or size the overlay to the underlay: {lab} restart host2 (the network agent "
            "reads the underlay's MTU at start, dockerd takes it from subnet.env)",
        ),
        judge=_judge_big_packets,
    ),
    Scenario(
        name="lost-peer",
        symptom=(
            "Containers on host1 cannot reach any container on host2 (names still resolve, "
            "but connections and pings get no answer); host1 reaches host3, and host3 "
            "reaches host2."
        ),
        tries=(
            "{lab} exec host1 -- docker run --rm {image} ping -c 2 -W 2 {bridge_host2}",
            "{lab} exec host1 -- docker run --rm {image} ping -c 2 -W 2 {bridge_host3}",
            "{lab} status",
            "{doctor} host1",
            "{explain} web --from host1   # with web on host2 (lab demo starts one)",
            "{lab} exec host1 -- ip route",
            "{lab} exec host1 -- ip neigh show dev flannel.1",
            "{lab} exec host1 -- bridge fdb show dev flannel.1",
        ),
        doctor_fails=(("kernel-entries", "host1"), ("processes", "host1")),
        doctor_passes=(),
        needs=frozenset({"fdb", "processes"}),
        fixed_when=(
            "host1's VXLAN device has the FDB entry for host2's VTEP again, and host1's "
            "network agent runs (not stopped)"
        ),
        fixes=(
            "{lab} up (resumes the stopped network agent; its next full pass, within 10 s, "
            "puts the entry back)",
            "or kill -CONT the agent's PID (lab status names it stopped), and optionally "
            "bridge fdb append MAC dev flannel.1 dst HOST2_IP by hand first",
        ),
        judge=_judge_lost_peer,
    ),
    Scenario(
        name="quiet-pair",
        symptom=(
            "Containers on host2 and on host3 cannot reach each other, while both reach "
            "host1's containers and host1 reaches both."
        ),
        tries=(
            "{lab} exec host2 -- docker run --rm {image} ping -c 2 -W 2 {bridge_host3}",
            "{lab} exec host2 -- docker run --rm {image} ping -c 2 -W 2 {bridge_host1}",
            "{doctor}",
            "{lab} exec host2 -- bridge fdb show dev flannel.1",
            "{lab} exec host3 -- tcpdump -ni eth0 -c 4 udp",
        ),
        doctor_fails=(("overlay-reach", "host2"),),
        doctor_passes=("kernel-entries",),
        needs=frozenset({"firewall"}),
        fixed_when="no host's firewall drops or rejects VXLAN's UDP port 8472",
        fixes=(
            "delete the rule: {lab} exec host3 -- iptables -D INPUT -s HOST2_IP/32 -p udp "
            "-m udp --dport 8472 -j DROP (iptables -S shows it as written)",
        ),
        judge=_judge_quiet_pair,
    ),
    Scenario(
        name="gone-from-dns",
        symptom=(
            "host2's containers keep running, but within about ten seconds every name "
            "they had leaves DNS and the catalog, and containers started on host2 now "
            "are never found by name."
        ),
        tries=(
            "{lab} exec host2 -- docker ps",
            "{ctl} hosts",
            "{ctl} services",
            "{lab} status",
            "{doctor} host2",
        ),
        doctor_fails=(("processes", "host2"), ("node-record", "host2")),
        doctor_passes=(),
        needs=frozenset({"processes", "node_records"}),
        fixed_when="host2's services agent runs and host2's node record is back in etcd",
        fixes=("{lab} up (starts the lab processes that are not running)",),
        judge=_judge_gone_from_dns,
    ),
    Scenario(
        name="no-answers",
        symptom=(
            "Containers on host1 cannot resolve any name (nslookup gets no answer), "
            "though they still reach other containers by address; containers on the "
            "other hosts resolve names as before."
        ),
        tries=(
            "{lab} exec host1 -- docker run --rm {image} nslookup host2.node.lab",
            "{lab} exec host3 -- docker run --rm {image} nslookup host2.node.lab",
            "{lab} exec host1 -- docker run --rm {image} ping -c 2 -W 2 {bridge_host2}",
            "{lab} exec host1 -- docker run --rm {image} cat /etc/resolv.conf",
            "{lab} status",
            "{doctor} host1",
        ),
        doctor_fails=(("dns", "host1"), ("processes", "host1")),
        doctor_passes=(),
        needs=frozenset({"processes", "dns_answers"}),
        fixed_when="host1's DNS server runs and answers on its docker bridge address",
        fixes=("{lab} up (starts the lab processes that are not running)",),
        judge=_judge_no_answers,
    ),
    Scenario(
        name="frozen-catalog",
        symptom=(
            "Names that existed keep resolving, but nothing changes any more: a container "
            "started now is never found, one stopped stays in DNS, and discoveryctl "
            "lookup gives up after a few seconds."
        ),
        tries=(
            "{ctl} lookup web",
            "ETCDCTL_ENDPOINTS={etcd} {etcdctl_tls}etcdctl endpoint health",
            "{lab} status",
            "{doctor}",
        ),
        doctor_fails=(("etcd-quorum", "lab"),),
        doctor_passes=(),
        needs=frozenset({"processes", "etcd_healthy"}),
        fixed_when="every etcd member runs and the cluster answers quorum reads",
        fixes=("{lab} up (starts the lab processes that are not running)",),
        judge=_judge_frozen_catalog,
    ),
)


def scenario(name: str) -> Scenario:
    for candidate in SCENARIOS:
        if candidate.name == name:
            return candidate
    known = ", ".join(s.name for s in SCENARIOS)
    raise BreakError(f"no scenario {name!r} (scenarios: {known})")


def judge(scenario_name: str, details: Mapping[str, str], observed: Observed) -> str | None:
    """One line of what still looks wrong, or None when the scenario is fixed."""
    return scenario(scenario_name).judge(details, observed)


def listing() -> str:
    """`lab break` with no scenario: each one with its symptom, never its cause."""
    width = max(len(s.name) for s in SCENARIOS)
    lines = ["Scenarios (discoveryctl lab break NAME injects one; --reset undoes it):", ""]
    for item in SCENARIOS:
        lines.append(f"  {item.name:<{width}}  {item.symptom}")
    return "\n".join(lines)


def render_tries(item: Scenario, context: Mapping[str, str]) -> list[str]:
    """The scenario's commands to start from, for this lab."""
    return [line.format(**context) for line in item.tries]


def render_fixes(item: Scenario, context: Mapping[str, str]) -> list[str]:
    return [line.format(**context) for line in item.fixes]

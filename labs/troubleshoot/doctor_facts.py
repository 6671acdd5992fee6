"""What doctor reads from a lab, raw, as each tool gave it. Pure data (and its JSON).

``doctor_gather.py`` fills it (etcd, etcdctl, ip, bridge, iptables, the docker
CLI, dig, ping, the lab's process records); ``doctor.py`` judges it. Keeping
the raw outputs (``ip -j``'s JSON, ``iptables -S``'s lines, dig's text) means a
check's evidence is what a learner's own command shows.
"""

from __future__ import annotations

import base64
import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class MemberFacts:
    """One etcd member, asked on its own (etcdctl endpoint status)."""

    endpoint: str
    answered: bool
    leader: str = ""  # the member id it follows (hex), "" when it has none
    member_id: str = ""
    error: str = ""  # why it did not answer, in one line


@dataclass
class EtcdFacts:
    members: list[MemberFacts] = field(default_factory=list)
    reachable: bool = False
    error: str = ""  # why the lab's keys could not be read
    config: bytes | None = None  # <network prefix>/config
    subnet_leases: dict[str, bytes] = field(default_factory=dict)  # key -> value
    records: dict[str, bytes] = field(default_factory=dict)  # service records
    nodes: dict[str, bytes] = field(default_factory=dict)  # node name -> its record


@dataclass
class Ping:
    target: str
    ok: bool
    detail: str  # ping's summary line, or why it failed


@dataclass
class PeerReach:
    """From this host to one other host: over the overlay, and over the underlay."""

    peer: str
    vtep: Ping  # the peer's VXLAN device address: needs UDP 8472 both ways
    underlay: Ping  # the peer's underlay address: plain IP


@dataclass
class HostFacts:
    name: str
    underlay_ip: str
    # role -> "running" | "stopped" | "restarting" | "not running" (unit states on a VM)
    processes: dict[str, str] | None = None  # None: not known on this lab
    links: list[dict[str, Any]] = field(default_factory=list)  # ip -j -d link show
    addresses: list[dict[str, Any]] = field(default_factory=list)  # ip -j addr show
    routes: list[dict[str, Any]] = field(default_factory=list)  # ip -j route show
    neighbours: list[dict[str, Any]] = field(default_factory=list)  # ip -j neigh show
    fdb: list[dict[str, Any]] = field(default_factory=list)  # bridge -j fdb show dev VXLAN
    forward_rules: str = ""  # iptables -S FORWARD
    lab_forward_rules: str = ""  # iptables -S FLANNEL-FWD ("" when the chain is missing)
    docker_bridge: dict[str, Any] | None = None  # docker network inspect bridge
    running_containers: list[str] = field(default_factory=list)  # docker ps -q --no-trunc
    subnet_env: str | None = None  # the network agent's subnet.env, None when unreadable
    dns_server: str = ""  # where the host's containers send DNS (Docker's bridge address)
    dns_soa: str = ""  # dig's output for the domain's SOA: does the server answer at all
    dns: dict[str, str] = field(default_factory=dict)  # service FQDN -> dig's output (A)
    reach: list[PeerReach] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # commands that failed, one line each


@dataclass
class LabFacts:
    lab: str
    kind: str  # local or vagrant
    prefix: str  # the records' prefix (/skydns)
    domain: str  # lab
    network_prefix: str  # /coreos.com/network
    etcd: EtcdFacts
    hosts: list[HostFacts] = field(default_factory=list)
    all_hosts: dict[str, str] = field(default_factory=dict)  # every host -> underlay address
    seconds: float = 0.0


def to_json(facts: LabFacts) -> str:
    """The facts as JSON; etcd's values (any bytes) in base64, so garbage survives too."""
    data = asdict(facts)
    etcd = data["etcd"]
    b64 = _b64
    etcd["config"] = None if facts.etcd.config is None else b64(facts.etcd.config)
    for name in ("subnet_leases", "records", "nodes"):
        etcd[name] = {key: b64(value) for key, value in getattr(facts.etcd, name).items()}
    return json.dumps(data, indent=1, sort_keys=True)


def from_json(text: str) -> LabFacts:
    data = json.loads(text)
    etcd = data.pop("etcd")
    config = etcd.pop("config")
    members = [MemberFacts(**member) for member in etcd.pop("members")]

    def values(name: str) -> dict[str, bytes]:
        return {key: base64.b64decode(value) for key, value in etcd.pop(name).items()}

    hosts = []
    for host in data.pop("hosts"):
        reach = [
            PeerReach(one["peer"], Ping(**one["vtep"]), Ping(**one["underlay"]))
            for one in host.pop("reach")
        ]
        hosts.append(HostFacts(**host, reach=reach))
    return LabFacts(
        **data,
        etcd=EtcdFacts(
            members=members, config=None if config is None else base64.b64decode(config),
            subnet_leases=values("subnet_leases"), records=values("records"),
            nodes=values("nodes"), reachable=etcd["reachable"], error=etcd["error"],
        ),
        hosts=hosts,
    )  # fmt: skip


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


__all__ = [
    "EtcdFacts",
    "HostFacts",
    "LabFacts",
    "MemberFacts",
    "PeerReach",
    "Ping",
    "from_json",
    "to_json",
]

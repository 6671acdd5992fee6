"""The facts gathered from a lab host, raw, as each tool gave them.

Pure data. The shells (``gather.py`` and the one-client modules it calls) fill
it; ``explanation.py`` reads it; ``to_json``/``from_json`` let a test record the
facts of a real lab once and explain them again in milliseconds. Outputs stay
as the tools printed them (resolv.conf and dig as text, ``ip -j`` and
``bridge -j`` as their JSON, the capture as pcap bytes in hex), so what is
explained is what a learner's own commands show.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class CommandOutput:
    """One command run on a host, and what came back."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    elapsed_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.returncode == 0


@dataclass
class DnsQuery:
    """One question put to the host's DNS server, with dig's whole output."""

    qname: str
    qtype: str
    server: str
    output: CommandOutput


@dataclass
class EtcdItem:
    """One key as etcd holds it, with the etcd lease it is attached to."""

    key: str
    value: str
    mod_revision: int
    lease_id: int  # 0: no lease, the key stays until deleted
    lease_ttl_s: int | None = None  # seconds left when read; -1: the lease is gone


@dataclass
class KernelFacts:
    """What the host's kernel holds on the way to one address (``ip -j``, ``bridge -j``)."""

    address: str
    route_get: list[dict[str, Any]]  # ip -j route get ADDRESS
    routes: list[dict[str, Any]] = field(default_factory=list)  # ip -j route show
    link: list[dict[str, Any]] = field(default_factory=list)  # ip -j -d link show dev DEV
    neighbours: list[dict[str, Any]] = field(default_factory=list)  # ip -j neigh show dev DEV
    fdb: list[dict[str, Any]] = field(default_factory=list)  # bridge -j fdb show dev|br DEV
    underlay_route_get: list[dict[str, Any]] = field(default_factory=list)
    underlay_link: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # commands that failed, in one line


@dataclass
class TraceFacts:
    """A probe from a container on the host, and the one packet tcpdump caught."""

    address: str
    interface: str
    capture_filter: str
    pcap_hex: str  # what tcpdump -w - wrote
    tcpdump_text: str  # tcpdump -r - -n -v of the same bytes, for the learner
    probe: CommandOutput | None
    elapsed_ms: float = 0.0
    problem: str = ""


@dataclass
class Facts:
    lab: str
    lab_kind: str  # local or vagrant
    host: str
    reached_by: str
    hosts: dict[str, str]  # every lab host's underlay address
    name: str
    qtype: str
    probe_image: str
    resolv_conf: CommandOutput
    dns: list[DnsQuery] = field(default_factory=list)
    records: list[EtcdItem] = field(default_factory=list)  # the service records
    subnet_leases: list[EtcdItem] = field(default_factory=list)
    etcd_endpoints: list[str] = field(default_factory=list)
    network_prefix: str = "/coreos.com/network"  # where the subnet leases' keys start
    kernel: list[KernelFacts] = field(default_factory=list)
    traces: list[TraceFacts] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    # iptables -t nat -S DOCKER of each lab host whose underlay address was answered
    # (a record registered in host-address mode), by host name
    dnat: dict[str, CommandOutput] = field(default_factory=dict)


def to_json(facts: Facts) -> str:
    return json.dumps(asdict(facts), indent=2)


def _command(data: dict[str, Any] | None) -> CommandOutput | None:
    return CommandOutput(**data) if data is not None else None


def from_json(text: str) -> Facts:
    data = json.loads(text)
    data["resolv_conf"] = CommandOutput(**data["resolv_conf"])
    data["dns"] = [DnsQuery(**{**q, "output": CommandOutput(**q["output"])}) for q in data["dns"]]
    data["records"] = [EtcdItem(**item) for item in data["records"]]
    data["subnet_leases"] = [EtcdItem(**item) for item in data["subnet_leases"]]
    data["kernel"] = [KernelFacts(**item) for item in data["kernel"]]
    data["traces"] = [
        TraceFacts(**{**item, "probe": _command(item["probe"])}) for item in data["traces"]
    ]
    data["dnat"] = {host: CommandOutput(**out) for host, out in data.get("dnat", {}).items()}
    return Facts(**data)

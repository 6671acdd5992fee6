"""The local lab's state on disk: one JSON file every `discoveryctl lab` command reads.

It records what `lab up` made (hosts, their subnets, processes with their
PIDs) so that `lab ls`, `lab env`, `lab down` work from any shell, and so
that `lab down` stops exactly the processes the lab started and no others.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from discovery.settings import Settings
from labs.etcd_tls import LEARNER, ClientFiles, EtcdCertLayout

DEFAULT_STATE_ROOT = Path("/var/lib/discovery-lab")


def state_root() -> Path:
    return Path(os.environ.get("DISCOVERY_LAB_STATE", str(DEFAULT_STATE_ROOT)))


@dataclass
class ProcessRecord:
    """One process the lab started: its supervisor's PID, and who that PID is.

    A PID alone names a process only until it exits: after a reboot, or once
    the numbers wrap, it may be someone else's. So the record also keeps the
    machine's boot id and the process's start time (field 22 of
    /proc/PID/stat), and the lab signals a PID only when all of them, and the
    marker word in its command line, still match.
    """

    role: str  # etcd, agent-network, agent-services, dns
    host: str  # host1 ..., or "lab" for the root-namespace etcd
    pid: int  # the supervisor's (labs.supervisor)
    marker: str  # a word of its command line, checked before signalling the PID
    log: str
    command: list[str] = field(default_factory=list)  # to start it again
    boot_id: str = ""
    start_time: str = ""
    child_pid_file: str = ""  # where the supervisor keeps the process's own PID


@dataclass
class HostState:
    name: str
    netns: str
    underlay_ip: str
    subnet: str = ""  # FLANNEL_SUBNET once leased, e.g. 10.5.1.1/24
    mtu: int = 0
    docker_state_dir: str = ""
    docker_url: str = ""  # its unix socket: the lab's own processes use it
    # Its TLS endpoint (tcp://IP:2376) and the client files for it, as docker-machine's
    # url and DOCKER_CERT_PATH; empty on a lab made before the daemons had TLS.
    docker_tls_url: str = ""
    docker_cert_path: str = ""
    dns_ip: str = ""
    up: bool = False
    stopped_containers: list[str] = field(default_factory=list)  # running when lab stop came
    userns_remap: bool = False  # its dockerd maps container root to an unprivileged range


@dataclass
class BreakRecord:
    """The fault `lab break` injected (one at a time), and what undoing it needs.

    ``details`` holds what the injection changed, as strings (the host, the
    MTU it replaced, the FDB entry it deleted, the PID it paused ...), so that
    `lab break --reset` can undo it from any shell.
    """

    scenario: str
    injected_at: str  # ISO 8601, UTC
    details: dict[str, str] = field(default_factory=dict)
    fixed: bool = False  # `lab check break` saw it fixed


@dataclass
class LabState:
    name: str
    host_count: int
    etcd_members: int
    underlay: str
    overlay: str
    etcd_endpoints: list[str]
    hosts: dict[str, HostState] = field(default_factory=dict)
    processes: list[ProcessRecord] = field(default_factory=list)
    images: dict[str, str] = field(default_factory=dict)
    active_host: str = "host1"
    front_door: list[str] = field(default_factory=list)  # links and files lab up made outside
    removed: list[str] = field(default_factory=list)  # hosts taken away with lab rm
    map_url: str = ""  # the live map and Consul-shaped catalog (discoveryctl map), on loopback
    broken: BreakRecord | None = None  # the `lab break` scenario in place, if any
    breaks_fixed: list[str] = field(default_factory=list)  # scenarios the learner fixed

    def processes_of(self, host: str, role: str | None = None) -> list[ProcessRecord]:
        return [p for p in self.processes if p.host == host and role in (None, p.role)]


def lab_dir(name: str) -> Path:
    return state_root() / name


def etcd_client(state: LabState, component: str = LEARNER) -> ClientFiles | None:
    """The certificate a client of this lab's etcd shows, which names its etcd user:
    the learner's unless said otherwise; None for an etcd on plain HTTP."""
    if not any(url.startswith("https://") for url in state.etcd_endpoints):
        return None
    return EtcdCertLayout(lab_dir(state.name)).client(component)


def etcd_settings(state: LabState, component: str = LEARNER) -> Settings:
    """Settings that reach this lab's etcd as ``component`` (default prefix and domain)."""
    settings = Settings(etcd_endpoints=tuple(state.etcd_endpoints))
    files = etcd_client(state, component)
    return files.settings(settings) if files else settings


def state_file(name: str) -> Path:
    return lab_dir(name) / "state.json"


def save_state(state: LabState) -> None:
    path = state_file(state.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(asdict(state), indent=2))
    temporary.replace(path)  # atomic: a reader never sees half a file


def load_state(name: str) -> LabState | None:
    path = state_file(name)
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    data["hosts"] = {key: HostState(**value) for key, value in data.get("hosts", {}).items()}
    data["processes"] = [ProcessRecord(**value) for value in data.get("processes", [])]
    # A state file written before `lab break` existed has neither key.
    data["broken"] = BreakRecord(**data["broken"]) if data.get("broken") else None
    return LabState(**data)

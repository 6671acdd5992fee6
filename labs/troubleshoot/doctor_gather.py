"""Reading everything doctor judges, from a lab as it is now. I/O, orchestration only.

etcd first (each member on its own with etcdctl, then the lab's keys through
the core's ``Store``), since which peers to ping follows from the leases; then
every host at once, each asking its tools in parallel: ``ip`` and ``bridge``
(JSON), ``iptables -S``, the docker CLI (the bridge network, the running
containers), subnet.env, ``dig`` at the host's DNS server for every service
etcd holds, and ``ping`` to every peer's VTEP and underlay address. What a
tool could not say goes into the host's ``problems``; nothing here judges.
"""

from __future__ import annotations

import asyncio
import json
import time

from discovery import flannel, schema
from discovery.cli import COMMAND_BUDGET_S  # a dead cluster is reported, not waited on
from discovery.errors import DiscoveryError
from discovery.settings import Settings
from discovery.store_api import KeyValue, Store
from labs.etcd_server import etcd_binary
from labs.etcd_tls import ETCDCTL_TLS_VARIABLES
from labs.runner import process_condition
from labs.state import LabState
from labs.troubleshoot import doctor
from labs.troubleshoot.dns_query import ask
from labs.troubleshoot.doctor_facts import (
    EtcdFacts,
    HostFacts,
    LabFacts,
    MemberFacts,
    PeerReach,
    Ping,
)
from labs.troubleshoot.host_shell import docker_env, run_command, run_on
from labs.troubleshoot.hosts import LabHost, LabHosts
from labs.troubleshoot.kernel import read_json
from labs.vm_provision import UNIT_DNS, UNIT_ETCD, UNIT_NETWORK, UNIT_SERVICES

# The network agent's subnet.env on a VM (flannel's default path).
VM_SUBNET_ENV = "/run/flannel/subnet.env"
VM_UNITS = {
    "etcd": UNIT_ETCD, "agent-network": UNIT_NETWORK,
    "agent-services": UNIT_SERVICES, "dns": UNIT_DNS, "docker": "docker.service",
}  # fmt: skip


async def gather_lab(
    lab: LabHosts,
    state: LabState | None,
    settings: Settings,
    store: Store,
    only: str | None = None,
) -> LabFacts:
    started = time.monotonic()
    etcd = await _etcd(lab, settings, store)
    facts = LabFacts(
        lab=lab.lab, kind=lab.kind, prefix=settings.prefix, domain=settings.domain,
        network_prefix=settings.network_prefix, etcd=etcd,
        all_hosts={h.name: h.underlay_ip for h in lab.hosts.values()},
    )  # fmt: skip
    if not etcd.reachable:
        # Without etcd there is no lease to check against: say which processes run.
        chosen = [lab.host(only)] if only else list(lab.hosts.values())
        facts.hosts = list(await asyncio.gather(*(_processes_only(h, state) for h in chosen)))
    else:
        overlay = doctor.overlay_of(facts)
        names = sorted(doctor.wanted_answers(facts))
        chosen = [lab.host(only)] if only else list(lab.hosts.values())
        domain = settings.domain
        facts.hosts = list(
            await asyncio.gather(*(_host(lab, h, state, overlay, names, domain) for h in chosen))
        )
    facts.seconds = time.monotonic() - started
    return facts


# ---------------------------------------------------------------- etcd


async def _member(endpoint: str, settings: Settings) -> MemberFacts:
    # The member through ETCDCTL_ENDPOINTS, not --endpoints: etcdctl refuses the flag
    # while the variable is set, as it is in a shell after `eval $(discoveryctl lab env)`;
    # the same for the TLS files.
    tls = {
        variable: path
        for variable, path in zip(
            ETCDCTL_TLS_VARIABLES,
            (settings.tls_ca_file, settings.tls_cert_file, settings.tls_key_file),
            strict=True,
        )
        if path
    }
    result = await run_command(
        [etcd_binary("etcdctl"), "--dial-timeout=1s", "--command-timeout=2s",
         "endpoint", "status", "-w", "json"],
        timeout_s=5,
        env={"ETCDCTL_ENDPOINTS": endpoint, **tls},
    )  # fmt: skip
    if not result.ok:
        lines = (result.stderr or "no answer").strip().splitlines()
        return MemberFacts(endpoint, False, error=lines[-1][:160] if lines else "no answer")
    try:
        (status,) = json.loads(result.stdout)
        leader = int(status["Status"]["leader"])
        member = int(status["Status"]["header"]["member_id"])
    except (ValueError, KeyError, TypeError) as error:
        return MemberFacts(endpoint, False, error=f"unexpected etcdctl output: {error}")
    return MemberFacts(
        endpoint, True, leader=f"{leader:x}" if leader else "", member_id=f"{member:x}"
    )


async def _read_etcd(
    store: Store, settings: Settings, nodes_root: str
) -> tuple[KeyValue | None, dict[str, KeyValue], dict[str, KeyValue], dict[str, KeyValue]]:
    # One after the other: a few milliseconds each. Read side by side, the first
    # failure would leave the others running, to fail unheard at exit.
    config = await store.get(flannel.config_key(settings.network_prefix))
    leases, _ = await store.get_prefix(flannel.subnets_prefix(settings.network_prefix))
    records, _ = await store.get_prefix(schema.services_prefix(settings.prefix, settings.domain))
    nodes, _ = await store.get_prefix(nodes_root)
    return config, leases, records, nodes


async def _etcd(lab: LabHosts, settings: Settings, store: Store) -> EtcdFacts:
    members = list(await asyncio.gather(*(_member(url, settings) for url in lab.etcd_endpoints)))
    facts = EtcdFacts(members=members)
    nodes_root = schema.nodes_prefix(settings.prefix, settings.domain)
    try:
        config, leases, records, nodes = await asyncio.wait_for(
            _read_etcd(store, settings, nodes_root), COMMAND_BUDGET_S
        )
    except (DiscoveryError, TimeoutError) as error:
        facts.error = str(error) or f"no answer within {COMMAND_BUDGET_S:.0f} s"
        return facts
    facts.reachable = True
    facts.config = config.value if config is not None else None
    facts.subnet_leases = {key: kv.value for key, kv in leases.items()}
    facts.records = {key: kv.value for key, kv in records.items()}
    facts.nodes = {key[len(nodes_root) :]: kv.value for key, kv in nodes.items()}
    return facts


# ---------------------------------------------------------------- one host


async def _text(host: LabHost, argv: list[str], problems: list[str] | None = None) -> str:
    result = await run_on(host, argv)
    if not result.ok:
        if problems is not None:
            problems.append(f"{' '.join(argv)}: {result.stderr.strip()[:160] or 'failed'}")
        return ""
    return result.stdout


async def _docker(host: LabHost, argv: list[str], problems: list[str]) -> str | None:
    result = await run_command(["docker", *argv], env=docker_env(host))
    if not result.ok:
        problems.append(f"docker {' '.join(argv)}: {result.stderr.strip()[:160] or 'failed'}")
        return None
    return result.stdout


async def _ping(host: LabHost, target: str) -> Ping:
    result = await run_on(host, ["ping", "-n", "-c", "1", "-W", "1", target], timeout_s=4)
    lines = [line for line in result.stdout.splitlines() if "transmitted" in line]
    detail = lines[0] if lines else (result.stderr.strip() or "no reply")
    return Ping(target, result.ok, detail)


async def _reach(host: LabHost, peer: str, vtep: str, underlay: str) -> PeerReach:
    vtep_ping, underlay_ping = await asyncio.gather(_ping(host, vtep), _ping(host, underlay))
    return PeerReach(peer, vtep_ping, underlay_ping)


def _processes(host: LabHost, state: LabState | None) -> dict[str, str] | None:
    if state is None:
        return None
    return {record.role: process_condition(record) for record in state.processes_of(host.name)}


async def _unit_states(host: LabHost, problems: list[str]) -> dict[str, str]:
    units = list(VM_UNITS.values())
    text = await _text(host, ["systemctl", "is-active", *units])  # non-zero when one is not
    states = text.split()
    if len(states) != len(units):
        problems.append("systemctl is-active: unexpected output")
        return {}
    pairs = zip(VM_UNITS, states, strict=True)
    return {role: "running" if state == "active" else state for role, state in pairs}


async def _processes_only(host: LabHost, state: LabState | None) -> HostFacts:
    facts = HostFacts(host.name, host.underlay_ip, processes=_processes(host, state))
    if state is None:
        facts.processes = await _unit_states(host, facts.problems)
    return facts


def _subnet_env_path(host: LabHost, state: LabState | None) -> str:
    if state is None:
        return VM_SUBNET_ENV
    for record in state.processes_of(host.name, "agent-network"):
        if "--subnet-file" in record.command:
            return record.command[record.command.index("--subnet-file") + 1]
    return VM_SUBNET_ENV


async def _host(
    lab: LabHosts,
    host: LabHost,
    state: LabState | None,
    overlay: doctor.Overlay,
    names: list[str],
    domain: str,
) -> HostFacts:
    facts = HostFacts(host.name, host.underlay_ip)
    problems = facts.problems
    facts.processes = _processes(host, state)
    tables = asyncio.gather(
        read_json(host, ["ip", "-j", "-d", "link", "show"], problems),
        read_json(host, ["ip", "-j", "addr", "show"], problems),
        read_json(host, ["ip", "-j", "route", "show"], problems),
        read_json(host, ["ip", "-j", "neigh", "show"], problems),
    )
    texts = asyncio.gather(
        _text(host, ["iptables", "-w", "-S", "FORWARD"], problems),
        _text(host, ["iptables", "-w", "-S", doctor.FORWARD_CHAIN]),  # missing: ""
        _text(host, ["cat", _subnet_env_path(host, state)], problems),
    )
    docker = asyncio.gather(
        _docker(host, ["network", "inspect", "bridge"], problems),
        _docker(host, ["ps", "-q", "--no-trunc"], problems),
    )
    kernel, rules, (bridge, running) = await asyncio.gather(tables, texts, docker)
    facts.links, facts.addresses, facts.routes, facts.neighbours = kernel
    facts.forward_rules, facts.lab_forward_rules, subnet_env = rules
    facts.subnet_env = subnet_env or None
    if state is None:
        facts.processes = await _unit_states(host, problems)
    if bridge is not None:
        try:
            facts.docker_bridge = dict(json.loads(bridge)[0])
        except (ValueError, KeyError, IndexError, TypeError) as error:
            problems.append(f"docker network inspect bridge: unexpected output ({error})")
    facts.running_containers = (running or "").split()
    vxlan = doctor.vxlan_link(facts)
    if vxlan is not None:
        facts.fdb = await read_json(
            host, ["bridge", "-j", "fdb", "show", "dev", str(vxlan.get("ifname"))], problems
        )
    _, gateway = doctor.docker_bridge_subnet(facts)
    facts.dns_server = gateway
    own = doctor.own_lease(overlay, facts)
    peers = [
        lease for lease in overlay.valid.values()
        if own is not None and lease.subnet != own.subnet and lease.public_ip != own.public_ip
    ]  # fmt: skip
    questions = [(domain, "SOA"), *((name, "A") for name in names)] if gateway else []
    dns_answers, reach = await asyncio.gather(
        asyncio.gather(*(ask(host, gateway, name, qtype) for name, qtype in questions)),
        asyncio.gather(
            *(_reach(host, lab.name_of_underlay_ip(str(p.public_ip)) or str(p.public_ip),
                     str(p.subnet.network_address), str(p.public_ip)) for p in peers)
        ),
    )  # fmt: skip
    said = {query.qname: query.output.stdout or query.output.stderr for query in dns_answers}
    facts.dns_soa = said.pop(domain, "")
    facts.dns = said
    facts.reach = sorted(reach, key=lambda r: r.peer)
    return facts


__all__ = ["gather_lab"]

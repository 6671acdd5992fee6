"""doctor's checks: from a lab's facts to one verdict per check, with evidence and a fix. Pure.

Each check answers one question a person operating flannel, registrator and
CoreDNS would ask, from what the tools printed (``doctor_facts``), never from
what should be: is etcd quorate, is every process alive, does the host's lease
match Docker's bridge and subnet.env, is the VXLAN MTU right, does the kernel
hold one route, neighbour and FDB entry per remote lease (and nothing
stale), do two leases share a VTEP MAC or a PublicIP, does the overlay carry
packets to every peer, does FORWARD let them through, does DNS answer what
etcd holds, are there records of containers that no longer run.

Verdicts: PASS, WARN (works, but not as it should), FAIL (something a
learner would notice is broken). Check ids are stable: ``lab break`` and the
tests name them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from agent.network.desired import (
    FdbEntry,
    KernelEntries,
    NeighbourEntry,
    RouteEntry,
    desired_entries,
)
from agent.network.diff import plan_steps
from agent.network.iptables_rules import FORWARD_CHAIN
from discovery import flannel, schema
from discovery.errors import SchemaError
from labs.troubleshoot import dig_text
from labs.troubleshoot.doctor_facts import HostFacts, LabFacts

PASS, WARN, FAIL = "PASS", "WARN", "FAIL"
VXLAN_OVERHEAD_BYTES = 50  # outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8
LAB_CHECKS = ("etcd-quorum", "vtep-macs", "public-ips")
HOST_CHECKS = (
    "processes",
    "node-record",
    "subnet-lease",
    "mtu",
    "kernel-entries",
    "overlay-reach",
    "forward",
    "dns",
    "stale-records",
)
# What to type to start again every lab process that is not running.
START_MISSING = "discoveryctl lab up (starts every lab process that is not running)"


@dataclass(frozen=True)
class Verdict:
    check: str
    host: str  # a host's name, or "lab"
    status: str
    evidence: str
    fix: str = ""


@dataclass
class Overlay:
    """The overlay as etcd describes it, parsed once for every check."""

    config: flannel.NetworkConfig | None
    leases: dict[str, flannel.SubnetLease]  # key -> lease, every one that parses
    valid: dict[str, flannel.SubnetLease]  # those that may reach a kernel
    problems: list[str]  # keys that do not parse, or are refused, and why


def overlay_of(facts: LabFacts) -> Overlay:
    config = None
    problems = []
    if facts.etcd.config is not None:
        try:
            config = flannel.parse_network_config(facts.etcd.config)
        except SchemaError as error:
            problems.append(f"network config: {error}")
    leases = {}
    for key, raw in sorted(facts.etcd.subnet_leases.items()):
        try:
            leases[key] = flannel.parse_subnet_lease(facts.network_prefix, key, raw)
        except SchemaError as error:
            problems.append(str(error))
    valid = leases
    if config is not None:
        valid, refused = flannel.screen_subnet_leases(config, leases)
        problems += [f"{key}: {why}" for key, why in sorted(refused.items())]
    return Overlay(config, leases, valid, problems)


def own_lease(overlay: Overlay, host: HostFacts) -> flannel.SubnetLease | None:
    leases = overlay.valid.values()
    return next((lease for lease in leases if str(lease.public_ip) == host.underlay_ip), None)


# ---------------------------------------------------------------- lab-wide


def check_etcd_quorum(facts: LabFacts) -> Verdict:
    members = facts.etcd.members
    up = [m for m in members if m.answered]
    needed = len(members) // 2 + 1
    leaders = {m.leader for m in up if m.leader}
    said = "; ".join(
        f"{m.endpoint}: " + (f"follows {m.leader}" if m.leader else "no leader")
        if m.answered
        else f"{m.endpoint}: {m.error or 'no answer'}"
        for m in members
    )
    fix = f"{START_MISSING}; each member's log is in the lab's state dir (discoveryctl lab ls)"
    if len(up) < needed or not leaders:
        return Verdict(
            "etcd-quorum", "lab", FAIL,
            f"{len(up)} of {len(members)} members answer, {needed} needed for a quorum: "
            f"no writes, no lease renewals ({said})", fix,
        )  # fmt: skip
    if len(leaders) > 1:
        return Verdict("etcd-quorum", "lab", FAIL, f"members disagree on the leader ({said})", fix)
    if len(up) < len(members):
        return Verdict(
            "etcd-quorum", "lab", WARN,
            f"quorum holds with {len(up)} of {len(members)} members; one more lost stops "
            f"the lab ({said})", fix,
        )  # fmt: skip
    return Verdict("etcd-quorum", "lab", PASS, f"{len(up)} of {len(members)} members, one leader")


def _shared(overlay: Overlay, what: Callable[[flannel.SubnetLease], str]) -> tuple[int, str]:
    """How many distinct values of ``what`` the leases have, and those held by two or
    more leases, said as "VALUE in SUBNET, SUBNET; ..." ("" when none is)."""
    by_value: dict[str, list[str]] = {}
    for lease in overlay.leases.values():
        by_value.setdefault(what(lease), []).append(str(lease.subnet))
    shared = sorted((v, s) for v, s in by_value.items() if len(s) > 1)
    return len(by_value), "; ".join(f"{value} in {', '.join(s)}" for value, s in shared)


def check_vtep_macs(overlay: Overlay) -> Verdict:
    count, said = _shared(overlay, lambda lease: lease.vtep_mac)
    if said:
        return Verdict(
            "vtep-macs", "lab", FAIL,
            f"leases share a VTEP MAC ({said}): no host can tell them apart, and the "
            "agents program neither", "delete the leftover lease with etcdctl del KEY (the "
            "one whose PublicIP is no longer a lab host); each agent keeps its MAC in its "
            "--state-dir",
        )  # fmt: skip
    return Verdict("vtep-macs", "lab", PASS, f"{count} leases, every VTEP MAC its own")


def check_public_ips(overlay: Overlay) -> Verdict:
    count, said = _shared(overlay, lambda lease: str(lease.public_ip))
    if said:
        return Verdict(
            "public-ips", "lab", FAIL,
            f"two leases name the same PublicIP ({said}): packets for both go to one host "
            "(on Vagrant: every VM's NAT address is 10.0.2.15)",
            "start each network agent with --public-ip (or --iface) naming the host's own "
            "underlay address: on Vagrant the private network's, eth1",
        )  # fmt: skip
    return Verdict("public-ips", "lab", PASS, f"{count} hosts, every PublicIP its own")


# ---------------------------------------------------------------- per host


def check_processes(host: HostFacts) -> Verdict:
    if host.processes is None:
        return Verdict("processes", host.name, WARN, "not known on this lab")
    bad = {role: state for role, state in host.processes.items() if state != "running"}
    if not bad:
        return Verdict("processes", host.name, PASS, ", ".join(host.processes) + " running")
    said = ", ".join(f"{role} {state}" for role, state in sorted(bad.items()))
    fix = START_MISSING
    if any(state == "stopped" for state in bad.values()):
        fix = f"a stopped (SIGSTOP) process: discoveryctl lab restart {host.name}; " + fix
    return Verdict("processes", host.name, FAIL, said, fix)


def check_node_record(facts: LabFacts, host: HostFacts) -> Verdict:
    raw = facts.etcd.nodes.get(host.name)
    key = schema.node_key(facts.prefix, facts.domain, host.name)
    if raw is None:
        return Verdict(
            "node-record", host.name, FAIL,
            f"no {key}: the services agent is not writing (dead, frozen, or cut off from etcd): "
            "its records expire with its lease",
            f"see processes; {START_MISSING}",
        )  # fmt: skip
    try:
        node = schema.decode_node(raw)
    except SchemaError as error:
        return Verdict("node-record", host.name, FAIL, f"{key}: {error}", "etcdctl del " + key)
    critical = [name for name, status in node.checks if status != "passing"]
    if critical:
        return Verdict(
            "node-record", host.name, WARN,
            f"{key} present; its agent reports {', '.join(critical)} critical",
            "see processes and dns",
        )  # fmt: skip
    return Verdict("node-record", host.name, PASS, f"{key} present, underlay {node.address}")


def docker_bridge_subnet(host: HostFacts) -> tuple[str, str]:
    """(subnet, gateway) of Docker's default bridge, as docker network inspect shows it."""
    configs = ((host.docker_bridge or {}).get("IPAM") or {}).get("Config") or [{}]
    first = configs[0] if isinstance(configs[0], dict) else {}
    return str(first.get("Subnet", "")), str(first.get("Gateway", ""))


def check_subnet_lease(overlay: Overlay, host: HostFacts) -> Verdict:
    own = own_lease(overlay, host)
    if own is None:
        return Verdict(
            "subnet-lease", host.name, FAIL,
            f"no valid subnet lease with PublicIP {host.underlay_ip}"
            + (f" ({'; '.join(overlay.problems)})" if overlay.problems else ""),
            f"the network agent claims one at start: see processes; {START_MISSING}",
        )  # fmt: skip
    problems = []
    env = flannel.parse_subnet_env(host.subnet_env or "") if host.subnet_env else {}
    env_subnet = env.get("FLANNEL_SUBNET", "")
    if not env_subnet:
        problems.append("subnet.env unreadable or without FLANNEL_SUBNET")
    elif not _same_network(env_subnet, own.subnet):
        problems.append(f"subnet.env says FLANNEL_SUBNET={env_subnet}")
    docker_subnet, gateway = docker_bridge_subnet(host)
    # docker0 holds the lease's first half, Docker's address pool the second
    bridge_subnet, _ = flannel.split_lease(own.subnet)
    if host.docker_bridge is None:
        problems.append("Docker's bridge network could not be read")
    elif not _same_network(docker_subnet, bridge_subnet):
        problems.append(
            f"Docker's bridge is {docker_subnet or 'unset'} (its bip), not {bridge_subnet}"
        )
    elif env_subnet and gateway != env_subnet.split("/")[0]:
        problems.append(f"Docker's bridge gateway is {gateway}, subnet.env's {env_subnet}")
    evidence = f"lease {own.subnet} (VTEP {own.vtep_mac})"
    if problems:
        return Verdict(
            "subnet-lease", host.name, FAIL, evidence + ", but " + "; ".join(problems),
            f"restart Docker with the options subnet.env implies: discoveryctl lab restart "
            f"{host.name}",
        )  # fmt: skip
    return Verdict(
        "subnet-lease", host.name, PASS,
        f"{evidence} = subnet.env's FLANNEL_SUBNET {env_subnet}; Docker's bridge "
        f"{docker_subnet} (bip {gateway}) is cut from it",
    )  # fmt: skip


def _same_network(text: str, subnet: ipaddress.IPv4Network) -> bool:
    try:
        return ipaddress.ip_network(text, strict=False) == subnet
    except ValueError:
        return False


def vxlan_link(host: HostFacts) -> dict[str, Any] | None:
    return next(
        (link for link in host.links
         if (link.get("linkinfo") or {}).get("info_kind") == "vxlan"),
        None,
    )  # fmt: skip


def underlay_link(host: HostFacts) -> dict[str, Any] | None:
    for entry in host.addresses:
        for info in entry.get("addr_info", []):
            if info.get("local") == host.underlay_ip:
                return entry
    return None


def check_mtu(host: HostFacts) -> Verdict:
    vxlan, underlay = vxlan_link(host), underlay_link(host)
    if vxlan is None or underlay is None:
        missing = "no VXLAN device" if vxlan is None else f"no device with {host.underlay_ip}"
        return Verdict(
            "mtu", host.name, FAIL, missing,
            f"the network agent makes the device at start: see processes; {START_MISSING}",
        )  # fmt: skip
    name, mtu = vxlan.get("ifname", "?"), vxlan.get("mtu")
    under_name, under_mtu = underlay.get("ifname", "?"), underlay.get("mtu")
    wanted = (under_mtu or 0) - VXLAN_OVERHEAD_BYTES
    options = (host.docker_bridge or {}).get("Options") or {}
    docker_mtu = options.get("com.docker.network.driver.mtu", "1500")
    problems = []
    if mtu != wanted:
        problems.append(
            f"{name} mtu {mtu}, {under_name} mtu {under_mtu}: VXLAN adds "
            f"{VXLAN_OVERHEAD_BYTES} bytes, so {name} must be {wanted}"
        )
    if host.docker_bridge is not None and str(docker_mtu) != str(mtu):
        problems.append(f"Docker's bridge mtu {docker_mtu}, {name} mtu {mtu}")
    if problems:
        return Verdict(
            "mtu", host.name, FAIL, "; ".join(problems) + ": big packets are dropped, "
            "small ones (ping, DNS) pass",
            f"make them agree: put {under_name}'s mtu back, or discoveryctl lab exec "
            f"{host.name} -- ip link set {name} mtu {wanted} (the network agent sets it at "
            "start; Docker takes --mtu from subnet.env's FLANNEL_MTU)",
        )  # fmt: skip
    return Verdict(
        "mtu", host.name, PASS,
        f"{name} {mtu} = {under_name} {under_mtu} - {VXLAN_OVERHEAD_BYTES}; "
        f"Docker's bridge {docker_mtu}",
    )  # fmt: skip


def kernel_entries(host: HostFacts, network: ipaddress.IPv4Network) -> KernelEntries:
    """The entries the network agent owns on the VXLAN device, from ip and bridge's JSON."""
    vxlan = vxlan_link(host)
    device = vxlan.get("ifname") if vxlan else None
    neighbours, fdb, routes = set(), set(), set()
    for entry in host.neighbours:
        if entry.get("dev") != device or "PERMANENT" not in entry.get("state", []):
            continue
        try:
            address = ipaddress.IPv4Address(entry.get("dst", ""))
        except ValueError:
            continue
        if address in network and entry.get("lladdr"):
            neighbours.add(NeighbourEntry(address, str(entry["lladdr"]).lower()))
    for entry in host.fdb:
        mac, dst = str(entry.get("mac", "")).lower(), entry.get("dst")
        # `bridge -j fdb show dev X` leaves "dev" out: the entries are X's.
        if entry.get("dev", device) != device or not dst or mac == "00:00:00:00:00:00":
            continue
        try:
            fdb.add(FdbEntry(mac, ipaddress.IPv4Address(dst)))
        except ValueError:
            continue
    for entry in host.routes:
        if entry.get("dev") != device or not entry.get("gateway"):
            continue
        try:
            destination = ipaddress.IPv4Network(entry.get("dst", ""))
            gateway = ipaddress.IPv4Address(entry["gateway"])
        except ValueError:
            continue
        if destination.subnet_of(network):
            routes.add(RouteEntry(destination, gateway))
    return KernelEntries(frozenset(neighbours), frozenset(fdb), frozenset(routes))


def check_kernel_entries(overlay: Overlay, host: HostFacts) -> Verdict:
    own = own_lease(overlay, host)
    if overlay.config is None or own is None:
        return Verdict(
            "kernel-entries", host.name, FAIL,
            "no network config" if overlay.config is None else "no subnet lease of its own",
            "see subnet-lease",
        )  # fmt: skip
    network = overlay.config.network
    desired = desired_entries(own, overlay.valid.values(), network)
    actual = kernel_entries(host, network)
    steps = plan_steps(desired, actual)
    remotes = len(desired.routes)
    if steps:
        missing = [s for s in steps if s.action != "delete"]
        stale = [s for s in steps if s.action == "delete"]
        said = []
        if missing:
            said.append("missing or wrong: " + "; ".join(str(s).split(" ", 1)[1] for s in missing))
        if stale:
            said.append("stale (no lease): " + "; ".join(str(s).split(" ", 1)[1] for s in stale))
        return Verdict(
            "kernel-entries", host.name, FAIL,
            f"{remotes} remote leases; " + " | ".join(said),
            "the network agent puts them right within its reconcile interval (10 s) while it "
            "runs: see processes; by hand, e.g. discoveryctl lab exec "
            f"{host.name} -- bridge fdb append MAC dev flannel.1 dst UNDERLAY-IP",
        )  # fmt: skip
    return Verdict(
        "kernel-entries", host.name, PASS,
        f"{remotes} remote leases: a route, a neighbour and an FDB entry for each, none stale",
    )  # fmt: skip


def check_overlay_reach(host: HostFacts) -> Verdict:
    if not host.reach:
        return Verdict("overlay-reach", host.name, PASS, "no other leased host to reach")
    failed = [r for r in host.reach if not r.vtep.ok]
    if not failed:
        peers = ", ".join(f"{r.peer} ({r.vtep.target})" for r in host.reach)
        return Verdict("overlay-reach", host.name, PASS, f"VTEPs answer over VXLAN: {peers}")
    said = []
    for reach in failed:
        if reach.underlay.ok:
            said.append(
                f"{reach.peer}: no reply from its VTEP {reach.vtep.target} over VXLAN, though "
                f"its underlay address {reach.underlay.target} answers: UDP 8472 does not get "
                "through (a firewall rule, or a wrong FDB entry)"
            )
        else:
            said.append(
                f"{reach.peer}: neither its VTEP {reach.vtep.target} nor its underlay address "
                f"{reach.underlay.target} answers: the underlay itself does not reach it"
            )
    return Verdict(
        "overlay-reach", host.name, FAIL, "; ".join(said),
        "look for a DROP of UDP 8472 on both hosts: discoveryctl lab exec HOST -- iptables -S; "
        "check kernel-entries; capture: discoveryctl lab exec HOST -- "
        "tcpdump -ni eth0 udp port 8472",
    )  # fmt: skip


def check_forward(overlay: Overlay, host: HostFacts) -> Verdict:
    lines = host.forward_rules.splitlines()
    policy = next((line.split()[-1] for line in lines if line.startswith("-P FORWARD")), "")
    if not policy:
        return Verdict("forward", host.name, WARN, "iptables -S FORWARD could not be read")
    network = str(overlay.config.network) if overlay.config else ""
    jump = any(line.endswith(f"-j {FORWARD_CHAIN}") for line in lines)
    accepts = [
        line for line in host.lab_forward_rules.splitlines()
        if line.startswith(f"-A {FORWARD_CHAIN}") and "-j ACCEPT" in line and network in line
    ]  # fmt: skip
    if jump and len(accepts) >= 2:
        return Verdict(
            "forward", host.name, PASS,
            f"FORWARD policy {policy}; jumps to {FORWARD_CHAIN}, which accepts {network} both ways",
        )  # fmt: skip
    if policy == "ACCEPT":
        return Verdict(
            "forward", host.name, WARN,
            f"FORWARD policy ACCEPT, without {FORWARD_CHAIN}: works, but only while nothing "
            "(Docker does) sets the policy to DROP",
            f"the network agent writes {FORWARD_CHAIN} at start and every reconcile: see processes",
        )  # fmt: skip
    return Verdict(
        "forward", host.name, FAIL,
        f"FORWARD policy {policy} and "
        + ("no jump to " + FORWARD_CHAIN if not jump else f"{FORWARD_CHAIN} lacks its ACCEPTs")
        + ": packets between the overlay and the containers are dropped",
        f"the network agent writes {FORWARD_CHAIN} at start and every reconcile: see processes; "
        f"by hand: iptables -I FORWARD -s {network} -j ACCEPT; iptables -I FORWARD -d {network} "
        "-j ACCEPT",
    )  # fmt: skip


def wanted_answers(facts: LabFacts) -> dict[str, set[str]]:
    """Each service's FQDN and the addresses its serving endpoints give, as the DNS
    server should answer (A records)."""
    wanted: dict[str, set[str]] = {}
    for key, raw in facts.etcd.records.items():
        try:
            record = schema.decode_service_record(
                schema.parse_record_key(facts.prefix, facts.domain, key), raw
            )
        except SchemaError:
            continue
        name = f"{record.service}.service.{facts.domain}"
        answer = wanted.setdefault(name, set())
        if record.serving and ":" not in record.address:
            answer.add(record.address)
    return wanted


def check_dns(facts: LabFacts, host: HostFacts) -> Verdict:
    fix = (
        f"{START_MISSING}; a server that answers but differs from etcd: its log "
        "(discoveryctl lab ls shows where)"
    )
    if not host.dns_server:
        return Verdict("dns", host.name, FAIL, "no DNS server address (Docker's bridge unknown)")
    soa = dig_text.parse_dig(host.dns_soa)
    if soa.status != "NOERROR":
        said = soa.status or soa.problem or "dig failed"
        return Verdict(
            "dns", host.name, FAIL,
            f"{host.dns_server}:53 does not answer for {facts.domain} ({said}): containers on "
            f"{host.name} cannot resolve any lab name",
            fix,
        )  # fmt: skip
    problems = []
    wanted = wanted_answers(facts)
    for name, output in sorted(host.dns.items()):
        reply = dig_text.parse_dig(output)
        if not reply.status:
            why = reply.problem or "dig failed"
            problems.append(f"{name}: no answer from {host.dns_server} ({why})")
            continue
        got = {r.data for r in reply.answer if r.rtype == "A"}
        should = wanted.get(name, set())
        if got != should:
            problems.append(
                f"{name}: answers {', '.join(sorted(got)) or reply.status}, etcd says "
                f"{', '.join(sorted(should)) or 'nothing serving'}"
            )
    if problems:
        return Verdict("dns", host.name, FAIL, "; ".join(problems), fix)
    return Verdict(
        "dns", host.name, PASS,
        f"{host.dns_server} answers for {facts.domain}, and {len(host.dns)} service "
        f"name{'' if len(host.dns) == 1 else 's'} as etcd says",
    )  # fmt: skip


def check_stale_records(facts: LabFacts, host: HostFacts) -> Verdict:
    running = set(host.running_containers)
    stale = []
    for key, raw in sorted(facts.etcd.records.items()):
        try:
            record = schema.decode_service_record(
                schema.parse_record_key(facts.prefix, facts.domain, key), raw
            )
        except SchemaError:
            continue
        if record.node != host.name or not record.container_id:
            continue
        if not any(cid.startswith(record.container_id) for cid in running):
            stale.append(key)
    if stale:
        return Verdict(
            "stale-records", host.name, FAIL,
            f"{len(stale)} records of containers not running on {host.name}: "
            + ", ".join(stale[:3]) + (" ..." if len(stale) > 3 else ""),
            "the services agent deletes them once it runs and reaches etcd: see processes; "
            "by hand: etcdctl del KEY",
        )  # fmt: skip
    return Verdict(
        "stale-records", host.name, PASS,
        f"every record naming {host.name} stands for a running container",
    )  # fmt: skip


def diagnose(facts: LabFacts) -> list[Verdict]:
    """Every check, the lab's first, then each host's in a fixed order."""
    overlay = overlay_of(facts)
    verdicts = [check_etcd_quorum(facts)]
    if not facts.etcd.reachable:
        unread = Verdict(
            "etcd", "lab", FAIL, f"the lab's keys could not be read: {facts.etcd.error}",
            f"see etcd-quorum; {START_MISSING}",
        )  # fmt: skip
        return [*verdicts, unread, *(check_processes(host) for host in facts.hosts)]
    verdicts += [check_vtep_macs(overlay), check_public_ips(overlay)]
    per_host: list[Callable[[HostFacts], Verdict]] = [
        check_processes,
        lambda h: check_node_record(facts, h),
        lambda h: check_subnet_lease(overlay, h),
        check_mtu,
        lambda h: check_kernel_entries(overlay, h),
        check_overlay_reach,
        lambda h: check_forward(overlay, h),
        lambda h: check_dns(facts, h),
        lambda h: check_stale_records(facts, h),
    ]
    for host in facts.hosts:
        verdicts += [check(host) for check in per_host]
    return verdicts


def to_json(verdicts: list[Verdict], seconds: float) -> dict[str, Any]:
    return {
        "checks": [asdict(v) for v in verdicts],
        "fails": sum(v.status == FAIL for v in verdicts),
        "warns": sum(v.status == WARN for v in verdicts),
        "seconds": round(seconds, 2),
    }


__all__ = ["FAIL", "HOST_CHECKS", "LAB_CHECKS", "PASS", "WARN", "Verdict", "diagnose", "to_json"]

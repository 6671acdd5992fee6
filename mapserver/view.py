"""The live map's model: pure functions from the catalog and the subnet leases to JSON.

``build_model`` turns what the map server holds (endpoints, node records,
flannel subnet leases, the network agents' tunnel reports, the leases' TTLs)
into the page's model: every host (its node record and its lease, matched by
subnet or underlay address) with what is alive on it, the containers on each
host, every service with the answer a container would get for it now (the
addresses of its serving endpoints, as the DNS server answers), and one
tunnel per pair of leased hosts, complete only when each side's kernel holds
the route, neighbour and FDB entry for the other (``discovery.tunnels``).
``diff_models`` compares two models and says what happened between them:
the timeline's events. Neither does I/O or reads a clock; the server stamps
events with the time it saw them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from discovery.flannel import SubnetLease
from discovery.schema import Endpoint, Node
from discovery.tunnels import TunnelReport, tunnel_problems

Model = dict[str, Any]
Event = dict[str, str]

UNKNOWN_HOST = "(no host)"  # endpoints that name no node
# Network agents republish their report every reconcile interval (10 s by
# default) even when nothing changed: one unseen for this long has stopped.
REPORT_SILENT_AFTER_S = 25.0


@dataclass(frozen=True)
class Observed:
    """What the map knows beyond the records: the tunnel reports (by the reporting
    host's subnet, with how long ago each was last written) and the seconds left
    on each subnet lease's and node record's etcd lease."""

    reports: dict[str, tuple[TunnelReport, float]] = field(default_factory=dict)
    subnet_ttls: dict[str, int] = field(default_factory=dict)  # subnet -> seconds left
    node_ttls: dict[str, int] = field(default_factory=dict)  # node name -> seconds left


def _endpoint_row(endpoint: Endpoint) -> dict[str, Any]:
    return {
        "id": f"{endpoint.service}/{endpoint.endpoint_id}",
        "service": endpoint.service,
        "container": endpoint.container_name,
        "address": endpoint.address,
        "port": endpoint.port,
        "protocol": endpoint.protocol,
        "tags": list(endpoint.tags),
        "health": endpoint.health,
        "serving": endpoint.serving,
    }


def _lease_row(lease: SubnetLease) -> dict[str, Any]:
    return {
        "subnet": str(lease.subnet),
        "public_ip": str(lease.public_ip),
        "vtep_mac": lease.vtep_mac,
        "vni": lease.vni,
    }


def _same_subnet(text: str, lease: SubnetLease) -> bool:
    try:
        return ipaddress.ip_network(text, strict=False) == lease.subnet
    except ValueError:
        return False


def build_model(
    endpoints: Iterable[Endpoint],
    nodes: Iterable[Node],
    leases: Iterable[SubnetLease],
    observed: Observed | None = None,
) -> Model:
    """The page's model (without the etcd status and timeline the server adds).

    A host is a node record, a subnet lease, or both: a lease belongs to the node
    whose record names its subnet, else to the node at its PublicIP. A lease
    with no node is shown as a host named by its underlay address; endpoints
    naming an unknown node get a host of that name with no record."""
    hosts: dict[str, dict[str, Any]] = {}
    for node in sorted(nodes, key=lambda n: n.node):
        hosts[node.node] = {
            "name": node.node,
            "address": node.address,
            "subnet": node.subnet,
            "record": True,
            "lease": None,
            "containers": [],
            "checks": dict(node.checks),
        }
    observed = observed or Observed()
    leases = list(leases)
    for lease in sorted(leases, key=lambda lease: lease.subnet):
        owner = next(
            (h for h in hosts.values() if h["lease"] is None and _same_subnet(h["subnet"], lease)),
            None,
        ) or next(
            (
                h
                for h in hosts.values()
                if h["lease"] is None and h["record"] and h["address"] == str(lease.public_ip)
            ),
            None,
        )
        if owner is None:
            name = f"{lease.public_ip} ({lease.subnet})"
            owner = hosts.setdefault(
                name,
                {
                    "name": name,
                    "address": str(lease.public_ip),
                    "subnet": str(lease.subnet),
                    "record": False,
                    "lease": None,
                    "containers": [],
                },
            )
        owner["lease"] = _lease_row(lease)
        owner["lease"]["ttl_s"] = observed.subnet_ttls.get(str(lease.subnet))
    services: dict[str, dict[str, Any]] = {}
    for endpoint in sorted(endpoints, key=lambda e: (e.node, e.service, e.address, e.port)):
        name = endpoint.node or UNKNOWN_HOST
        host = hosts.setdefault(
            name,
            {
                "name": name,
                "address": "",
                "subnet": "",
                "record": False,
                "lease": None,
                "containers": [],
            },
        )
        host["containers"].append(_endpoint_row(endpoint))
        service = services.setdefault(
            endpoint.service, {"name": endpoint.service, "answer": [], "endpoints": 0}
        )
        service["endpoints"] += 1
        if endpoint.serving and endpoint.address not in service["answer"]:
            service["answer"].append(endpoint.address)
    for service in services.values():
        service["answer"].sort(key=_address_order)
    for host in hosts.values():
        host.setdefault("checks", {})
        host["node_ttl_s"] = observed.node_ttls.get(host["name"]) if host["record"] else None
        host["network_agent"] = _network_agent(host, observed)
    leased = [h for h in hosts.values() if h["lease"] is not None]
    return {
        "hosts": sorted(hosts.values(), key=lambda h: (not h["record"], h["name"])),
        "services": [services[name] for name in sorted(services)],
        "tunnels": _tunnels(leased, leases, observed),
    }


def _network_agent(host: dict[str, Any], observed: Observed) -> dict[str, Any]:
    """Is the host's network agent reporting? By its tunnel report's freshness."""
    if host["lease"] is None:
        return {"state": "no lease", "age_s": None}
    seen = observed.reports.get(host["lease"]["subnet"])
    if seen is None:
        return {"state": "no report", "age_s": None}
    age = round(seen[1], 1)
    return {"state": "reporting" if age <= REPORT_SILENT_AFTER_S else "silent", "age_s": age}


def _tunnels(
    leased: list[dict[str, Any]], leases: list[SubnetLease], observed: Observed
) -> list[dict[str, Any]]:
    """One tunnel per pair of leased hosts, judged on each side by its kernel's report.

    complete: both kernels hold all three entries for the other; partial: a
    kernel lacks one (named); unobserved: a side sent no report (or stopped)."""
    by_subnet = {str(lease.subnet): lease for lease in leases}
    tunnels = []
    ordered = sorted(leased, key=lambda h: h["name"])
    for i, a in enumerate(ordered):
        for b in ordered[i + 1 :]:
            problems: dict[str, list[str]] = {}
            silent = []
            for side, peer in ((a, b), (b, a)):
                if side["network_agent"]["state"] != "reporting":
                    silent.append(side["name"])
                    continue
                report, _ = observed.reports[side["lease"]["subnet"]]
                found = tunnel_problems(report, by_subnet[peer["lease"]["subnet"]])
                if found:
                    problems[side["name"]] = found
            state = "unobserved" if silent else "partial" if problems else "complete"
            tunnels.append(
                {"a": a["name"], "b": b["name"], "state": state,
                 "problems": problems, "silent": silent}
            )  # fmt: skip
    return tunnels


def _address_order(text: str) -> tuple[int, Any]:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return (2, text)
    return (address.version, address)


def _containers(model: Model) -> dict[str, tuple[str, dict[str, Any]]]:
    return {
        row["id"]: (host["name"], row)
        for host in model.get("hosts", [])
        for row in host["containers"]
    }


def _leases(model: Model) -> dict[str, tuple[str, dict[str, Any]]]:
    return {
        host["lease"]["subnet"]: (host["name"], host["lease"])
        for host in model.get("hosts", [])
        if host["lease"] is not None
    }


def _recorded_hosts(model: Model) -> dict[str, dict[str, Any]]:
    return {host["name"]: host for host in model.get("hosts", []) if host["record"]}


def diff_models(old: Model, new: Model) -> list[Event]:
    """What happened between two models, as timeline events (kind, subject, detail).

    kinds: host-joined, host-left (node records), lease-taken, lease-expired
    (subnet leases), registered, deregistered, health (endpoints), tunnel-up,
    tunnel-down (a tunnel became complete, or stopped being so), check (a node
    check or a network agent's reporting changed state)."""
    events: list[Event] = []
    old_hosts, new_hosts = _recorded_hosts(old), _recorded_hosts(new)
    for name in sorted(new_hosts.keys() - old_hosts.keys()):
        events.append(event("host-joined", name, f"underlay {new_hosts[name]['address']}"))
    for name in sorted(old_hosts.keys() - new_hosts.keys()):
        events.append(event("host-left", name, f"underlay {old_hosts[name]['address']}"))
    old_leases, new_leases = _leases(old), _leases(new)
    for subnet in sorted(new_leases.keys() - old_leases.keys()):
        host, lease = new_leases[subnet]
        events.append(event("lease-taken", subnet, f"by {host} (VTEP {lease['vtep_mac']})"))
    for subnet in sorted(old_leases.keys() - new_leases.keys()):
        host, _ = old_leases[subnet]
        events.append(event("lease-expired", subnet, f"held by {host}"))
    events += _tunnel_events(old, new) + _check_events(old, new)
    old_rows, new_rows = _containers(old), _containers(new)
    for key in sorted(new_rows.keys() - old_rows.keys()):
        host, row = new_rows[key]
        events.append(event("registered", row["service"], f"{_where(row)} on {host}"))
    for key in sorted(old_rows.keys() - new_rows.keys()):
        host, row = old_rows[key]
        events.append(event("deregistered", row["service"], f"{_where(row)} on {host}"))
    for key in sorted(old_rows.keys() & new_rows.keys()):
        (_, before), (host, after) = old_rows[key], new_rows[key]
        if before["health"] != after["health"]:
            detail = f"{_where(after)} on {host}: {before['health']} -> {after['health']}"
            events.append(event("health", after["service"], detail))
    return events


def _tunnel_events(old: Model, new: Model) -> list[Event]:
    before = {(t["a"], t["b"]): t for t in old.get("tunnels", [])}
    events = []
    for tunnel in new.get("tunnels", []):
        pair = (tunnel["a"], tunnel["b"])
        was = before.get(pair)
        subject = f"{pair[0]} <-> {pair[1]}"
        if tunnel["state"] == "complete" and (was is None or was["state"] != "complete"):
            events.append(event("tunnel-up", subject, "both kernels hold route, neighbour, FDB"))
        elif tunnel["state"] != "complete" and was is not None and was["state"] == "complete":
            events.append(event("tunnel-down", subject, _tunnel_detail(tunnel)))
    return events


def _tunnel_detail(tunnel: dict[str, Any]) -> str:
    if tunnel["silent"]:
        return "no report from " + ", ".join(tunnel["silent"])
    return "; ".join(f"{host}: {', '.join(found)}" for host, found in tunnel["problems"].items())


def _check_events(old: Model, new: Model) -> list[Event]:
    before = {host["name"]: host for host in old.get("hosts", [])}
    events = []
    for host in new.get("hosts", []):
        was = before.get(host["name"])
        if was is None:
            continue
        for name, status in sorted(host["checks"].items()):
            if was["checks"].get(name, status) != status:
                events.append(event("check", host["name"], f"{name}: {status}"))
        agent, was_agent = host["network_agent"]["state"], was["network_agent"]["state"]
        if agent != was_agent and "no lease" not in (agent, was_agent):
            events.append(event("check", host["name"], f"network agent: {agent}"))
    return events


def _where(row: dict[str, Any]) -> str:
    place = f"{row['address']}:{row['port']}" if row["port"] else row["address"]
    return f"{row['container']} {place}" if row["container"] else place


def event(kind: str, subject: str, detail: str) -> Event:
    return {"kind": kind, "subject": subject, "detail": detail}


__all__ = [
    "REPORT_SILENT_AFTER_S",
    "UNKNOWN_HOST",
    "Event",
    "Model",
    "Observed",
    "build_model",
    "diff_models",
    "event",
]

"""The live map's model: pure functions from the catalog and the subnet leases to JSON.

``build_model`` turns what the map server holds (endpoints, node records,
flannel subnet leases) into the page's model: every host (its node record
and its lease, matched by subnet or underlay address), the containers on
each host, and every service with the answer a container would get for it
now (the addresses of its serving endpoints, as the DNS server answers).
``diff_models`` compares two models and says what happened between them:
the timeline's events. Neither does I/O or reads a clock; the server stamps
events with the time it saw them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from discovery.flannel import SubnetLease
from discovery.schema import Endpoint, Node

Model = dict[str, Any]
Event = dict[str, str]

UNKNOWN_HOST = "(no host)"  # endpoints that name no node


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
    endpoints: Iterable[Endpoint], nodes: Iterable[Node], leases: Iterable[SubnetLease]
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
        }
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
    leased = [h for h in hosts.values() if h["lease"] is not None]
    peers = [
        [a["name"], b["name"]] for i, a in enumerate(leased) for b in leased[i + 1 :]
    ]  # every pair of leased hosts: the overlay's peers as etcd says, not as observed
    return {
        "hosts": sorted(hosts.values(), key=lambda h: (not h["record"], h["name"])),
        "services": [services[name] for name in sorted(services)],
        "lease_peers": peers,
    }


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
    (subnet leases), registered, deregistered, health (endpoints)."""
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


def _where(row: dict[str, Any]) -> str:
    place = f"{row['address']}:{row['port']}" if row["port"] else row["address"]
    return f"{row['container']} {place}" if row["container"] else place


def event(kind: str, subject: str, detail: str) -> Event:
    return {"kind": kind, "subject": subject, "detail": detail}


__all__ = ["UNKNOWN_HOST", "Event", "Model", "build_model", "diff_models", "event"]

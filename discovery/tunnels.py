"""The overlay as the kernels hold it: each network agent's report, and what it proves.

flannel's subnet leases say which tunnels there should be; they say nothing
of whether a host's kernel really has them. So each network agent reads back
the entries on its VXLAN device and publishes what it found, under its own
subnet lease (the report goes when the host does)::

    /coreos.com/network/observed/10.5.1.0-24
        {"PublicIP": "192.168.100.11", "VtepMAC": "7a:1b:...", "Device": "flannel.1",
         "Routes": {"10.5.2.0/24": "10.5.2.0"},          destination -> gateway (onlink)
         "Neighbours": {"10.5.2.0": "0e:44:..."},         address -> VTEP MAC
         "Fdb": {"0e:44:...": "192.168.100.12"}}          VTEP MAC -> underlay address

The report is the kernel's raw facts, not a verdict: ``tunnel_problems``
compares one host's report with a peer's lease, and a tunnel between two
hosts is complete only when neither side has a problem. Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, field
from typing import Any

from discovery.errors import SchemaError
from discovery.flannel import SubnetLease, parse_subnet_key, subnet_key, subnets_prefix
from discovery.jsonvalue import load_json_object

# One entry of each kind per peer: far more than any lab has hosts.
MAX_ENTRIES = 1000
_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def observed_prefix(network_prefix: str) -> str:
    return network_prefix.rstrip("/") + "/observed/"


def observed_key(network_prefix: str, subnet: ipaddress.IPv4Network) -> str:
    """The report of the host holding ``subnet``: flannel's spelling of the subnet."""
    lease_key = subnet_key(network_prefix, subnet)
    return observed_prefix(network_prefix) + lease_key.rsplit("/", 1)[1]


def parse_observed_key(network_prefix: str, key: str) -> ipaddress.IPv4Network:
    prefix = observed_prefix(network_prefix)
    if not key.startswith(prefix):
        raise SchemaError(f"key {key!r} is not under {prefix!r}")
    # The same spelling as a subnet lease's key: parse it as one.
    return parse_subnet_key(network_prefix, subnets_prefix(network_prefix) + key[len(prefix) :])


@dataclass(frozen=True)
class TunnelReport:
    """What one host's kernel holds on its VXLAN device, as its agent read it back."""

    subnet: ipaddress.IPv4Network  # the reporting host's own lease (from the key)
    public_ip: ipaddress.IPv4Address
    vtep_mac: str
    device: str
    routes: dict[ipaddress.IPv4Network, ipaddress.IPv4Address] = field(default_factory=dict)
    neighbours: dict[ipaddress.IPv4Address, str] = field(default_factory=dict)
    fdb: dict[str, ipaddress.IPv4Address] = field(default_factory=dict)


def encode_tunnel_report(report: TunnelReport) -> bytes:
    """Sorted, so that the same kernel state is always the same bytes (republishing an
    unchanged report changes no reader's view)."""
    data = {
        "PublicIP": str(report.public_ip),
        "VtepMAC": report.vtep_mac,
        "Device": report.device,
        "Routes": {str(k): str(v) for k, v in sorted(report.routes.items())},
        "Neighbours": {str(k): v for k, v in sorted(report.neighbours.items())},
        "Fdb": {k: str(v) for k, v in sorted(report.fdb.items())},
    }
    return json.dumps(data, separators=(",", ":")).encode()


def _table(data: dict[str, Any], name: str, where: str) -> dict[str, Any]:
    table = data.get(name, {})
    if not isinstance(table, dict):
        raise SchemaError(f"{where}: {name} must be a JSON object")
    if len(table) > MAX_ENTRIES:
        raise SchemaError(f"{where}: {name} has {len(table)} entries (the limit is {MAX_ENTRIES})")
    return table


def _mac(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _MAC_RE.match(value.lower()):
        raise SchemaError(f"{what}: {str(value)[:40]!r} is not a MAC address")
    return value.lower()


def _ipv4(value: Any, what: str) -> ipaddress.IPv4Address:
    try:
        if not isinstance(value, str):
            raise ValueError
        return ipaddress.IPv4Address(value)
    except ValueError:
        raise SchemaError(f"{what}: {str(value)[:40]!r} is not an IPv4 address") from None


def parse_tunnel_report(network_prefix: str, key: str, raw: bytes | str) -> TunnelReport:
    subnet = parse_observed_key(network_prefix, key)
    where = f"tunnel report of {subnet}"
    data = load_json_object(raw, where)
    device = data.get("Device", "")
    if not isinstance(device, str) or len(device) > 15:
        raise SchemaError(f"{where}: Device must be an interface name")
    routes = {}
    for destination, gateway in _table(data, "Routes", where).items():
        try:
            network = ipaddress.IPv4Network(destination)
        except ValueError:
            raise SchemaError(f"{where}: route {destination[:40]!r} is not a network") from None
        routes[network] = _ipv4(gateway, f"{where}: gateway of {network}")
    neighbours = {
        _ipv4(address, f"{where}: neighbour"): _mac(mac, f"{where}: neighbour {address}")
        for address, mac in _table(data, "Neighbours", where).items()
    }
    fdb = {
        _mac(mac, f"{where}: FDB entry"): _ipv4(remote, f"{where}: FDB entry {mac}")
        for mac, remote in _table(data, "Fdb", where).items()
    }
    return TunnelReport(
        subnet=subnet,
        public_ip=_ipv4(data.get("PublicIP"), f"{where}: PublicIP"),
        vtep_mac=_mac(data.get("VtepMAC"), f"{where}: VtepMAC"),
        device=device,
        routes=routes,
        neighbours=neighbours,
        fdb=fdb,
    )


def tunnel_problems(report: TunnelReport, peer: SubnetLease) -> list[str]:
    """What the reporting host's kernel lacks (or holds wrong) to reach ``peer``:
    the three entries flannel's vxlan backend needs. [] when it has them all."""
    gateway = peer.subnet.network_address
    problems = []
    route = report.routes.get(peer.subnet)
    if route is None:
        problems.append(f"no route to {peer.subnet}")
    elif route != gateway:
        problems.append(f"route to {peer.subnet} goes via {route}, not {gateway}")
    mac = report.neighbours.get(gateway)
    if mac is None:
        problems.append(f"no neighbour entry for {gateway}")
    elif mac != peer.vtep_mac:
        problems.append(f"neighbour {gateway} is {mac}, the lease says {peer.vtep_mac}")
    remote = report.fdb.get(peer.vtep_mac)
    if remote is None:
        problems.append(f"no FDB entry for {peer.vtep_mac}")
    elif remote != peer.public_ip:
        problems.append(f"FDB sends {peer.vtep_mac} to {remote}, the lease says {peer.public_ip}")
    return problems


__all__ = [
    "TunnelReport",
    "encode_tunnel_report",
    "observed_key",
    "observed_prefix",
    "parse_observed_key",
    "parse_tunnel_report",
    "tunnel_problems",
]

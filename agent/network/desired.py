"""Which kernel entries this host should hold, given the leases. Pure: no I/O.

For every other host's lease, three entries on the VXLAN device (flannel's
vxlan backend, "directRouting" off):

* a neighbour entry: the remote subnet's network address -> the remote VTEP
  MAC (so the kernel never ARPs across the overlay),
* an FDB entry: the remote VTEP MAC -> the remote host's PublicIP (where to
  send the encapsulated frame),
* a route: the remote subnet via its network address, onlink, on the device.

This host's own lease, leases on another VNI or backend, and leases that carry
this host's PublicIP (stale ones of our own) produce nothing; so does a
lease outside the Network, or one whose network address another lease
already uses (a leftover of a different SubnetLen: the shorter prefix wins).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from discovery.flannel import SubnetLease


@dataclass(frozen=True, order=True)
class NeighbourEntry:
    """Permanent ARP entry on the VXLAN device: address -> VTEP MAC."""

    address: ipaddress.IPv4Address
    mac: str


@dataclass(frozen=True, order=True)
class FdbEntry:
    """Permanent forwarding entry on the VXLAN device: VTEP MAC -> remote host."""

    mac: str
    remote_ip: ipaddress.IPv4Address


@dataclass(frozen=True, order=True)
class RouteEntry:
    """Route to a remote subnet via its VTEP address, onlink, on the VXLAN device."""

    destination: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Address


Entry = NeighbourEntry | FdbEntry | RouteEntry


@dataclass(frozen=True)
class KernelEntries:
    neighbours: frozenset[NeighbourEntry] = field(default_factory=frozenset)
    fdb: frozenset[FdbEntry] = field(default_factory=frozenset)
    routes: frozenset[RouteEntry] = field(default_factory=frozenset)

    def __len__(self) -> int:
        return len(self.neighbours) + len(self.fdb) + len(self.routes)


def entries_for_subnet_lease(lease: SubnetLease) -> tuple[NeighbourEntry, FdbEntry, RouteEntry]:
    """The three entries one remote lease needs, in the order they are added."""
    vtep_address = lease.subnet.network_address
    return (
        NeighbourEntry(vtep_address, lease.vtep_mac),
        FdbEntry(lease.vtep_mac, lease.public_ip),
        RouteEntry(lease.subnet, vtep_address),
    )


def desired_entries(
    own: SubnetLease,
    leases: Iterable[SubnetLease],
    network: ipaddress.IPv4Network,
) -> KernelEntries:
    """The entries this host (holding ``own``) should have for ``leases``."""
    neighbours: set[NeighbourEntry] = set()
    fdb: set[FdbEntry] = set()
    routes: set[RouteEntry] = set()
    used_addresses: set[ipaddress.IPv4Address] = set()
    ordered = sorted(
        leases, key=lambda lease: (lease.subnet.network_address, lease.subnet.prefixlen)
    )
    for lease in ordered:
        if (
            lease.subnet == own.subnet
            or lease.public_ip == own.public_ip
            or lease.backend_type != own.backend_type
            or lease.vni != own.vni
            or not lease.subnet.subnet_of(network)
            or lease.subnet.network_address in used_addresses  # one neighbour per address
        ):
            continue
        used_addresses.add(lease.subnet.network_address)
        neighbour, forwarding, route = entries_for_subnet_lease(lease)
        neighbours.add(neighbour)
        fdb.add(forwarding)
        routes.add(route)
    return KernelEntries(frozenset(neighbours), frozenset(fdb), frozenset(routes))


@dataclass(frozen=True)
class Scope:
    """The keys of the entries some leases touch: neighbour addresses, VTEP
    MACs, route destinations. Reconciling only these is what a single lease
    event needs; the periodic pass covers everything."""

    addresses: frozenset[ipaddress.IPv4Address] = frozenset()
    macs: frozenset[str] = frozenset()
    destinations: frozenset[ipaddress.IPv4Network] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.addresses or self.macs or self.destinations)


def scope_of(leases: Iterable[SubnetLease]) -> Scope:
    items = list(leases)
    return Scope(
        frozenset(lease.subnet.network_address for lease in items),
        frozenset(lease.vtep_mac for lease in items),
        frozenset(lease.subnet for lease in items),
    )


def restrict(entries: KernelEntries, scope: Scope) -> KernelEntries:
    """Only the entries whose key lies in ``scope``."""
    return KernelEntries(
        frozenset(e for e in entries.neighbours if e.address in scope.addresses),
        frozenset(e for e in entries.fdb if e.mac in scope.macs),
        frozenset(e for e in entries.routes if e.destination in scope.destinations),
    )

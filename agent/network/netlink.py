"""The VXLAN dataplane: every netlink call of the network half, and the only
module that imports pyroute2.

How the overlay works, in three steps (flannel's vxlan backend):

1. **One VXLAN device per host.** ``flannel.1`` (``flannel.<VNI>``) is bound
   to the host's underlay address and interface. It carries the network
   address of the host's own subnet as a /32 (10.5.1.0/32 for 10.5.1.0/24)
   and has a MAC address of its own, the VTEP MAC, which the host publishes
   in its lease in etcd. The MAC stays the same across restarts, because
   other hosts have written it into their tables. MAC learning is off: the
   agent, not the wire, says who is where. The device's MTU is the
   underlay's minus 50 bytes, the size of the outer Ethernet, IP, UDP and
   VXLAN headers.

2. **Three entries per remote host.** For host B's lease (10.5.2.0/24,
   PublicIP 192.168.213.12, VtepMAC b2:...), host A writes, in this order::

       neighbour  10.5.2.0 lladdr b2:... dev flannel.1 nud permanent
       fdb        b2:... dst 192.168.213.12 dev flannel.1 self permanent
       route      10.5.2.0/24 via 10.5.2.0 dev flannel.1 onlink

   Neighbour and FDB first, route last: once the route exists the kernel
   uses it, and without the neighbour entry it would send ARP requests for
   10.5.2.0 into the overlay, where nobody answers them. Removal is the
   reverse order, route first.

3. **A packet's journey.** A container on A sends to 10.5.2.7. The route
   sends it to gateway 10.5.2.0 on flannel.1 ("onlink": the gateway is
   reachable on that device although no address of ours covers it). The
   neighbour entry gives the gateway's MAC, b2:..., with no ARP. The FDB
   entry tells the VXLAN driver which host owns that MAC, so it wraps the
   Ethernet frame in UDP to 192.168.213.12 port 8472 with VNI 1 in the
   header. B's flannel.1 unwraps it, and B's kernel routes the inner packet
   to its container bridge.

Every method here is one small operation named after what it does, turning
pyroute2's errors into ``DataplaneError`` at this boundary. Deciding *which*
entries should exist is done elsewhere (``agent.network.desired`` and
``agent.network.diff``); this module only reads and writes them.

A namespace is opened by name with ``flags=0``, so a typo is an error rather
than a new, empty namespace created by accident.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTMGRP_IPV4_ROUTE

from agent.network.desired import FdbEntry, KernelEntries, NeighbourEntry, RouteEntry, Scope
from agent.network.errors import DataplaneError

VXLAN_OVERHEAD_BYTES = 50  # outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8
NUD_PERMANENT = 0x80
NTF_SELF = 0x02
RTNH_F_ONLINK = 4
RT_TABLE_MAIN = 254
RTM_F_FIB_MATCH = 0x2000  # "ip route get fibmatch": return the route, not a lookup result
RTPROT_KERNEL = 2
IFF_UP = 0x1
AF_BRIDGE = 7
_GONE = {errno.ENOENT, errno.ESRCH, errno.ENODEV, errno.EADDRNOTAVAIL}
_NO_ROUTE = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENOENT, errno.ESRCH}


@dataclass(frozen=True)
class Underlay:
    """The host's link to the other hosts: where VXLAN packets leave."""

    ifindex: int
    ifname: str
    address: ipaddress.IPv4Address
    mtu: int


@dataclass(frozen=True)
class RouteEvent:
    """The kernel announced an IPv4 route added or deleted."""

    action: Literal["add", "delete"]
    destination: ipaddress.IPv4Network
    ifindex: int | None


@dataclass(frozen=True)
class VxlanSpec:
    name: str
    vni: int
    port: int
    local: ipaddress.IPv4Address
    underlay_index: int
    mac: str
    mtu: int


@dataclass(frozen=True)
class VxlanLink:
    """A VXLAN device as the kernel reports it."""

    ifindex: int
    name: str
    mac: str
    mtu: int
    up: bool
    vni: int | None
    port: int | None
    local: ipaddress.IPv4Address | None
    underlay_index: int | None
    learning: bool

    def compatible_with(self, spec: VxlanSpec) -> bool:
        """Same tunnel (VNI, port, local address, underlay link, no learning):
        reusable; MAC, MTU and state can be changed in place."""
        return (
            self.vni == spec.vni
            and self.port == spec.port
            and self.local == spec.local
            and self.underlay_index == spec.underlay_index
            and not self.learning
        )


def _attr(message: Any, name: str) -> Any:
    return message.get_attr(name)


def _is_unicast_mac(mac: str) -> bool:
    return mac != "00:00:00:00:00:00" and not int(mac.split(":")[0], 16) & 1


class Netlink:
    """One netlink socket, in this process's network namespace or in ``netns``."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        self._ipr: AsyncIPRoute | None = None

    async def open(self) -> Netlink:
        try:
            if self.netns is None:
                self._ipr = AsyncIPRoute()
            else:
                # flags=0: fail if /run/netns/NAME is missing, never create it.
                self._ipr = AsyncIPRoute(netns=self.netns, flags=0)
            await self._ipr.setup_endpoint()
        except (OSError, NetlinkError) as error:
            self._ipr = None
            where = f"network namespace {self.netns!r}" if self.netns else "this namespace"
            raise DataplaneError(f"cannot open netlink in {where}: {error}") from error
        return self

    def close(self) -> None:
        ipr, self._ipr = self._ipr, None
        if ipr is not None:
            ipr.close()

    async def __aenter__(self) -> Netlink:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    @property
    def ipr(self) -> AsyncIPRoute:
        if self._ipr is None:
            raise DataplaneError("netlink socket is not open")
        return self._ipr

    async def _dump(self, what: str, method: str, *args: Any, **filters: Any) -> list[Any]:
        try:
            return [
                item async for item in await getattr(self.ipr, method)("dump", *args, **filters)
            ]
        except (OSError, NetlinkError) as error:
            raise DataplaneError(f"{what}: {error}") from error

    async def _request(self, what: str, method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return await getattr(self.ipr, method)(*args, **kwargs)
        except (OSError, NetlinkError) as error:
            raise DataplaneError(f"{what}: {error}") from error

    async def _request_unless(
        self, codes: set[int], what: str, method: str, *args: Any, **kwargs: Any
    ) -> bool:
        """Like _request, but an error with one of ``codes`` means "already so":
        returns False instead of raising."""
        try:
            await getattr(self.ipr, method)(*args, **kwargs)
            return True
        except NetlinkError as error:
            if error.code in codes:
                return False
            raise DataplaneError(f"{what}: {error}") from error
        except OSError as error:
            raise DataplaneError(f"{what}: {error}") from error

    # ------------------------------------------------------------ links

    async def link_index(self, name: str) -> int | None:
        for link in await self._dump(f"list links for {name}", "link"):
            if _attr(link, "IFLA_IFNAME") == name:
                return int(link["index"])
        return None

    async def ipv4_addresses(self, ifindex: int) -> list[ipaddress.IPv4Interface]:
        found = []
        for message in await self._dump("list addresses", "addr", family=socket.AF_INET):
            if message["index"] == ifindex:
                found.append(
                    ipaddress.IPv4Interface(
                        f"{_attr(message, 'IFA_ADDRESS')}/{message['prefixlen']}"
                    )
                )
        return found

    async def find_underlay(
        self, iface: str | None, public_ip: ipaddress.IPv4Address | None
    ) -> Underlay:
        """The underlay link and address, from --iface and/or --public-ip (flannel's
        --iface and --public-ip); with neither, the default route's interface."""
        links = {int(link["index"]): link for link in await self._dump("list links", "link")}
        if iface is not None:
            matches = [i for i, link in links.items() if _attr(link, "IFLA_IFNAME") == iface]
            if not matches:
                raise DataplaneError(f"--iface {iface}: no such interface in this namespace")
            index = matches[0]
        elif public_ip is not None:
            addresses = await self._dump("list addresses", "addr", family=socket.AF_INET)
            owners = [a["index"] for a in addresses if _attr(a, "IFA_ADDRESS") == str(public_ip)]
            if not owners:
                raise DataplaneError(
                    f"--public-ip {public_ip} is on no interface here; give --iface too"
                )
            index = int(owners[0])
        else:
            routes = await self._dump(
                "list routes", "route", family=socket.AF_INET, table=RT_TABLE_MAIN
            )
            defaults = [r for r in routes if r["dst_len"] == 0 and _attr(r, "RTA_OIF")]
            if not defaults:
                raise DataplaneError("no default route: give --iface or --public-ip")
            index = int(_attr(defaults[0], "RTA_OIF"))
        link = links[index]
        if public_ip is None:
            addresses = await self.ipv4_addresses(index)
            if not addresses:
                raise DataplaneError(
                    f"interface {_attr(link, 'IFLA_IFNAME')} has no IPv4 address; give --public-ip"
                )
            public_ip = addresses[0].ip
        return Underlay(index, _attr(link, "IFLA_IFNAME"), public_ip, int(_attr(link, "IFLA_MTU")))

    async def find_vxlan(self, name: str) -> VxlanLink | None:
        """The device called ``name``, or None. A non-VXLAN device of that name
        is reported with vni None (so it is never 'compatible')."""
        for link in await self._dump(f"look up {name}", "link"):
            if _attr(link, "IFLA_IFNAME") != name:
                continue
            info = _attr(link, "IFLA_LINKINFO")
            data = info.get_attr("IFLA_INFO_DATA") if info else None
            if info is None or info.get_attr("IFLA_INFO_KIND") != "vxlan" or data is None:
                data = None  # some other kind of device holds the name

            def vxlan(attr: str, data: Any = data) -> Any:
                return None if data is None else data.get_attr(attr)

            local = vxlan("IFLA_VXLAN_LOCAL")
            return VxlanLink(
                ifindex=int(link["index"]),
                name=name,
                mac=str(_attr(link, "IFLA_ADDRESS")).lower(),
                mtu=int(_attr(link, "IFLA_MTU")),
                up=bool(link["flags"] & IFF_UP),
                vni=vxlan("IFLA_VXLAN_ID"),
                port=vxlan("IFLA_VXLAN_PORT"),
                local=ipaddress.IPv4Address(local) if local else None,
                underlay_index=vxlan("IFLA_VXLAN_LINK"),
                learning=bool(vxlan("IFLA_VXLAN_LEARNING")),
            )
        return None

    async def ensure_vxlan(self, spec: VxlanSpec) -> int:
        """Make the VXLAN device match ``spec``; returns its ifindex.

        A compatible device is kept (so its entries survive a restart) and only
        its MAC, MTU and state are corrected; an incompatible one is deleted
        and created again, as flannel does.
        """
        existing = await self.find_vxlan(spec.name)
        if existing is not None and not existing.compatible_with(spec):
            await self.delete_link(spec.name)
            existing = None
        if existing is None:
            await self._request(
                f"create VXLAN device {spec.name}",
                "link",
                "add",
                ifname=spec.name,
                kind="vxlan",
                vxlan_id=spec.vni,
                vxlan_port=spec.port,
                vxlan_local=str(spec.local),
                vxlan_link=spec.underlay_index,
                vxlan_learning=0,
                address=spec.mac,
                mtu=spec.mtu,
            )
            existing = await self.find_vxlan(spec.name)
            if existing is None:
                raise DataplaneError(f"VXLAN device {spec.name} vanished right after creation")
        changes: dict[str, Any] = {}
        if existing.mac != spec.mac:
            changes["address"] = spec.mac
        if existing.mtu != spec.mtu:
            changes["mtu"] = spec.mtu
        if changes:
            await self._request(
                f"set {spec.name} {changes}", "link", "set", index=existing.ifindex, **changes
            )
        if not existing.up:
            await self._request(
                f"bring {spec.name} up", "link", "set", index=existing.ifindex, state="up"
            )
        return existing.ifindex

    async def ensure_address(self, ifindex: int, address: ipaddress.IPv4Address) -> None:
        """Exactly one IPv4 address, ``address``/32, on the (our) VXLAN device."""
        wanted = ipaddress.IPv4Interface(f"{address}/32")
        present = await self.ipv4_addresses(ifindex)
        for other in present:
            if other != wanted:
                await self._request_unless(
                    _GONE, f"remove {other}", "addr", "del",
                    index=ifindex, address=str(other.ip), prefixlen=other.network.prefixlen,
                )  # fmt: skip
        if wanted not in present:
            await self._request_unless(
                {errno.EEXIST}, f"add {wanted}", "addr", "add",
                index=ifindex, address=str(address), prefixlen=32,
            )  # fmt: skip

    async def delete_link(self, name: str) -> bool:
        index = await self.link_index(name)
        if index is None:
            return False
        return await self._request_unless(_GONE, f"delete {name}", "link", "del", index=index)

    # ------------------------------------------------------------ reading entries

    async def read_entries(self, ifindex: int, network: ipaddress.IPv4Network) -> KernelEntries:
        """The neighbour, FDB and route entries on our device that we own.

        Owned: permanent IPv4 neighbours with an address in the overlay
        network; unicast FDB entries with a remote IPv4 destination; main-table
        routes out of the device into the overlay network with a gateway, not
        added by the kernel itself. Anything else on the device is left alone.
        """
        return KernelEntries(
            frozenset(await self.read_neighbours(ifindex, network)),
            frozenset(await self.read_fdb(ifindex)),
            frozenset(await self.read_routes(ifindex, network)),
        )

    async def read_neighbours(
        self, ifindex: int, network: ipaddress.IPv4Network
    ) -> list[NeighbourEntry]:
        found = []
        for message in await self._dump(
            "list neighbours", "neigh", ifindex=ifindex, family=socket.AF_INET
        ):
            address, mac = _attr(message, "NDA_DST"), _attr(message, "NDA_LLADDR")
            if message["ifindex"] != ifindex or not message["state"] & NUD_PERMANENT or not mac:
                continue
            ip = ipaddress.IPv4Address(address)
            if ip in network:
                found.append(NeighbourEntry(ip, str(mac).lower()))
        return found

    async def read_fdb(self, ifindex: int) -> list[FdbEntry]:
        found = []
        for message in await self._dump("list FDB entries", "fdb", ifindex=ifindex):
            mac, remote = _attr(message, "NDA_LLADDR"), _attr(message, "NDA_DST")
            if message["ifindex"] != ifindex or not mac or not remote:
                continue
            mac = str(mac).lower()
            try:
                remote_ip = ipaddress.IPv4Address(remote)
            except ValueError:
                continue  # an IPv6 remote: not one of ours
            if _is_unicast_mac(mac):
                found.append(FdbEntry(mac, remote_ip))
        return found

    async def read_routes(self, ifindex: int, network: ipaddress.IPv4Network) -> list[RouteEntry]:
        found = []
        for message in await self._dump(
            "list routes", "route", family=socket.AF_INET, table=RT_TABLE_MAIN
        ):
            gateway, destination = _attr(message, "RTA_GATEWAY"), _attr(message, "RTA_DST")
            if (
                _attr(message, "RTA_OIF") != ifindex
                or message["proto"] == RTPROT_KERNEL
                or not gateway
                or not destination
            ):
                continue
            subnet = ipaddress.IPv4Network(f"{destination}/{message['dst_len']}")
            if subnet.subnet_of(network):
                found.append(RouteEntry(subnet, ipaddress.IPv4Address(gateway)))
        return found

    async def _get(self, codes: set[int], what: str, method: str, **kwargs: Any) -> list[Any]:
        """One non-dump request; an error in ``codes`` means "not there": []."""
        try:
            return list(await getattr(self.ipr, method)("get", **kwargs))
        except NetlinkError as error:
            if error.code in codes:
                return []
            raise DataplaneError(f"{what}: {error}") from error
        except OSError as error:
            raise DataplaneError(f"{what}: {error}") from error

    async def read_entries_in(
        self, ifindex: int, network: ipaddress.IPv4Network, scope: Scope
    ) -> KernelEntries:
        """Like read_entries, restricted to the keys in ``scope``, with one small
        request per key (``ip neigh get``, ``bridge fdb get``, ``ip route get
        fibmatch``) instead of three full dumps: what one lease event needs.

        ``bridge fdb get`` shows one remote per MAC; a MAC with several is
        set right by the periodic full pass.
        """
        neighbours, fdb, routes = [], [], []
        for address in sorted(scope.addresses):
            for message in await self._get(
                _GONE, f"get neighbour {address}", "neigh", dst=str(address), ifindex=ifindex
            ):
                mac = _attr(message, "NDA_LLADDR")
                permanent = message["state"] & NUD_PERMANENT
                if message["ifindex"] == ifindex and permanent and mac and address in network:
                    neighbours.append(NeighbourEntry(address, str(mac).lower()))
        for mac in sorted(scope.macs):
            for message in await self._get(
                _GONE, f"get fdb {mac}", "fdb", ifindex=ifindex, lladdr=mac, flags=NTF_SELF
            ):
                remote = _attr(message, "NDA_DST")
                if message["ifindex"] == ifindex and remote and ":" not in str(remote):
                    fdb.append(FdbEntry(mac, ipaddress.IPv4Address(remote)))
        for destination in sorted(scope.destinations):
            for message in await self._get(
                _NO_ROUTE, f"get route {destination}", "route",
                dst=str(destination.network_address), flags=RTM_F_FIB_MATCH,
            ):  # fmt: skip
                found = _attr(message, "RTA_DST")
                gateway = _attr(message, "RTA_GATEWAY")
                if (
                    found == str(destination.network_address)
                    and message["dst_len"] == destination.prefixlen
                    and message["table"] == RT_TABLE_MAIN
                    and _attr(message, "RTA_OIF") == ifindex
                    and message["proto"] != RTPROT_KERNEL
                    and gateway
                    and destination.subnet_of(network)
                ):
                    routes.append(RouteEntry(destination, ipaddress.IPv4Address(gateway)))
        return KernelEntries(frozenset(neighbours), frozenset(fdb), frozenset(routes))

    # ------------------------------------------------------------ writing entries
    # Order when adding: neighbour, FDB, route (see step 2 above). The
    # reconciler's plan (agent.network.diff) already comes in that order.

    async def add_neighbour(self, ifindex: int, entry: NeighbourEntry) -> None:
        """Add, or replace in place (``ip neigh replace``): idempotent."""
        await self._request(
            f"add neighbour {entry.address} lladdr {entry.mac}", "neigh", "replace",
            dst=str(entry.address), lladdr=entry.mac, ifindex=ifindex, state=NUD_PERMANENT,
        )  # fmt: skip

    async def delete_neighbour(self, ifindex: int, entry: NeighbourEntry) -> None:
        await self._request_unless(
            _GONE, f"delete neighbour {entry.address}", "neigh", "del",
            dst=str(entry.address), lladdr=entry.mac, ifindex=ifindex,
        )  # fmt: skip

    async def add_fdb(self, ifindex: int, entry: FdbEntry) -> None:
        """``bridge fdb append MAC dst IP dev DEV self permanent``; present is fine."""
        await self._request_unless(
            {errno.EEXIST}, f"add fdb {entry.mac} dst {entry.remote_ip}", "fdb", "append",
            ifindex=ifindex, lladdr=entry.mac, dst=str(entry.remote_ip),
            flags=NTF_SELF, state=NUD_PERMANENT,
        )  # fmt: skip

    async def delete_fdb(self, ifindex: int, entry: FdbEntry) -> None:
        await self._request_unless(
            _GONE, f"delete fdb {entry.mac} dst {entry.remote_ip}", "fdb", "del",
            ifindex=ifindex, lladdr=entry.mac, dst=str(entry.remote_ip), flags=NTF_SELF,
        )  # fmt: skip

    async def add_route(self, ifindex: int, entry: RouteEntry) -> None:
        """Add, or replace in place (``ip route replace ... onlink``): idempotent."""
        await self._request(
            f"add route {entry.destination} via {entry.gateway}", "route", "replace",
            dst=str(entry.destination), gateway=str(entry.gateway), oif=ifindex,
            flags=RTNH_F_ONLINK, table=RT_TABLE_MAIN,
        )  # fmt: skip

    async def delete_route(self, ifindex: int, entry: RouteEntry) -> None:
        await self._request_unless(
            _GONE, f"delete route {entry.destination}", "route", "del",
            dst=str(entry.destination), gateway=str(entry.gateway), oif=ifindex,
            table=RT_TABLE_MAIN,
        )  # fmt: skip

    # ------------------------------------------------------------ events

    async def route_events(self) -> AsyncIterator[RouteEvent]:
        """Follow the kernel's IPv4 route announcements, as ``ip monitor route`` does.

        Binds this socket to the route multicast group, so give it a Netlink
        of its own (requests and events do not share a socket well).
        """
        try:
            await self.ipr.bind(groups=RTMGRP_IPV4_ROUTE)
        except (OSError, NetlinkError) as error:
            raise DataplaneError(f"cannot follow route events: {error}") from error
        while True:
            async for message in self.ipr.get():
                event = message.get("event")
                if event not in ("RTM_NEWROUTE", "RTM_DELROUTE"):
                    continue
                destination = _attr(message, "RTA_DST") or "0.0.0.0"
                oif = _attr(message, "RTA_OIF")
                yield RouteEvent(
                    "add" if event == "RTM_NEWROUTE" else "delete",
                    ipaddress.IPv4Network(f"{destination}/{message['dst_len']}"),
                    int(oif) if oif is not None else None,
                )

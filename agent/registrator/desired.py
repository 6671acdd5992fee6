"""Desired registrations: one container's inspect data in, its endpoint records out.

Pure: the input is the dict Docker's API returns for ``GET /containers/ID/json``
(what ``docker inspect`` prints), the output a list of ``Endpoint`` records.
Nothing here talks to Docker or etcd, so every rule below is a table test.

What an endpoint is, in two modes:

* container-address mode (the default, registrator's ``-internal``): one
  endpoint per (address on each of the container's networks, exposed port).
  Clients on the overlay reach the container directly.
* host-address mode (registrator without ``-internal``): one endpoint per
  published port, at the host's address and the host port; host_ports.py says
  which bindings count. A container asks for it with the label
  ``discovery.address=host`` (or ``internal``); ``address_mode`` is the agent's
  default (``--address-mode``). Ports exposed but not published cannot be
  reached through the host and are left out; a container with no published
  port that other hosts reach is not registered at all, and ``not_offered``
  says why, for the runner to log once.

Which addresses other hosts can reach (container-address mode): the overlay
routes each host's flannel lease and nothing else, so an address inside this
host's lease (``FLANNEL_SUBNET`` of subnet.env: the default bridge, a network
Docker cut from an address pool inside the lease, as the lab's dockerd has, or
a network made from a range of the lease) is reachable from every host, and
any other address (a user-defined bridge from Docker's stock pools 172.17.0.0/16...,
a ``--subnet`` of one's own, or an IPv6 address) is reachable from this host
only. Such an address is not registered: it is returned in ``unreachable``,
with its network, for the runner to log once with the way out. When the lease
is not known (``lease`` None: no subnet.env), every address is registered, as
on a host without an overlay. Host-address mode and ``--network host``
containers register the host's address, which is always reachable.

A container with no usable port still gets one endpoint per address with port
0, so its name resolves (an A record without SRV); not in host-address mode,
where only a published port is reachable. A container on the host's own
network (``--network host``) has no address of its own: it is registered at
the host's address. Only running containers are registered; a paused one
stays registered with health ``paused`` so DNS stops answering it but the
record, and its registration time, survive the pause.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agent.registrator.host_ports import (
    HOST,
    INTERNAL,
    NotOffered,
    container_address_mode,
    published_host_ports,
)
from agent.registrator.naming import (
    NamingRefused,
    PortNaming,
    environment_map,
    ignore_reason,
    name_port,
)
from discovery.errors import SchemaError
from discovery.schema import PROTOCOLS, Endpoint, endpoint_key

# SRV port names (``_http._tcp.web.service.lab``) for ports everyone knows;
# any other port is named by its number (``_8081._tcp.web.service.lab``).
WELL_KNOWN_PORT_NAMES = {
    22: "ssh",
    53: "domain",
    80: "http",
    443: "https",
    2379: "etcd-client",
    3306: "mysql",
    5432: "postgresql",
    6379: "redis",
    8080: "http-alt",
}
_DOCKER_HEALTH = ("starting", "healthy", "unhealthy")


@dataclass(frozen=True)
class Unreachable:
    """A container address that other hosts cannot route, on the network that gave it."""

    network: str
    address: str


@dataclass(frozen=True)
class Desired:
    """What one container should have in etcd, and why, when that is nothing."""

    container_id: str
    container_name: str
    endpoints: tuple[Endpoint, ...] = ()
    refused: str = ""  # it runs, but its naming is invalid: log a warning
    ignored: str = ""  # it asked not to be registered
    notes: tuple[str, ...] = ()  # problems that did not stop registration
    # addresses left out because no other host can reach them (outside the lease)
    unreachable: tuple[Unreachable, ...] = ()
    # host-address mode: published ports left out, and why (host_ports.py)
    not_offered: tuple[NotOffered, ...] = ()

    def records(self, prefix: str, domain: str) -> dict[str, Endpoint]:
        """The endpoints by etcd key."""
        return {endpoint_key(prefix, domain, e.service, e.endpoint_id): e for e in self.endpoints}


@dataclass(frozen=True)
class _Target:
    address: str
    port: int  # the port clients connect to (the host port in host-address mode)
    protocol: str
    container_port: int  # the port the naming rules use (SERVICE_<port>_NAME)


def port_name(port: int) -> str:
    return WELL_KNOWN_PORT_NAMES.get(port, str(port))


def container_health(state: Mapping[str, Any]) -> str:
    """Docker's state as one of the record's health words."""
    if state.get("Paused"):
        return "paused"
    status = (state.get("Health") or {}).get("Status")
    # No HEALTHCHECK (or HEALTHCHECK NONE): Docker reports no health at all,
    # and the container counts as passing, as Consul treats a service without checks.
    return status if status in _DOCKER_HEALTH else "passing"


def _parse_port(key: str) -> tuple[int, str] | None:
    """'80/tcp' -> (80, 'tcp'); None for what a record cannot carry ('sctp')."""
    number, _, protocol = key.partition("/")
    protocol = protocol or "tcp"
    if not number.isdigit() or protocol not in PROTOCOLS:
        return None
    return int(number), protocol


def _container_ports(inspect: Mapping[str, Any], notes: list[str]) -> list[tuple[int, str]]:
    config = inspect.get("Config") or {}
    published = (inspect.get("NetworkSettings") or {}).get("Ports") or {}
    found = set()
    for key in set(config.get("ExposedPorts") or {}) | set(published):
        parsed = _parse_port(key)
        if parsed is None:
            notes.append(f"port {key} left out: records carry only tcp and udp")
        else:
            found.add(parsed)
    return sorted(found)


def container_networks(inspect: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(network name, address) of the container's IPv4 and global IPv6 addresses,
    by network name; an address on two networks counts once, on the first."""
    settings = inspect.get("NetworkSettings") or {}
    networks = settings.get("Networks") or {}
    found: dict[str, str] = {}
    for name in sorted(networks):
        network = networks[name] or {}
        for field_name in ("IPAddress", "GlobalIPv6Address"):
            address = network.get(field_name) or ""
            if address and address not in found:
                found[address] = name
    if not found and settings.get("IPAddress"):  # API versions without Networks
        found[settings["IPAddress"]] = "bridge"
    return [(name, address) for address, name in found.items()]


def container_addresses(inspect: Mapping[str, Any]) -> list[str]:
    """The container's IPv4 and global IPv6 address on each network, by network name."""
    return [address for _, address in container_networks(inspect)]


def overlay_reachable(address: str, lease: ipaddress.IPv4Network) -> bool:
    """Whether other hosts route ``address`` to this host: it lies in this host's lease."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return ip.version == 4 and ip in lease


def split_reachable(
    pairs: Sequence[tuple[str, str]], lease: ipaddress.IPv4Network | None
) -> tuple[list[str], list[Unreachable]]:
    """(network, address) pairs -> (addresses other hosts reach, those they cannot).
    With no lease known, every address counts as reachable."""
    if lease is None:
        return [address for _, address in pairs], []
    reachable: list[str] = []
    unreachable: list[Unreachable] = []
    for network, address in pairs:
        if overlay_reachable(address, lease):
            reachable.append(address)
        else:
            unreachable.append(Unreachable(network, address))
    return reachable, unreachable


def unreachable_advice(lease: ipaddress.IPv4Network) -> str:
    """What to do about an address outside the lease, in one line."""
    return (
        f"attach the container to a network inside this host's lease {lease} (the default "
        "bridge; a network made without --subnet where dockerd's address pool is in the "
        f"lease, as on the lab's hosts; or docker network create --subnet <a free range of "
        f"{lease}>), or publish its ports and register it at the host's address "
        "(label discovery.address=host, or the agent's --address-mode host)"
    )


def _host_network(inspect: Mapping[str, Any]) -> bool:
    return (inspect.get("HostConfig") or {}).get("NetworkMode") == "host"


def _host_mode_targets(
    inspect: Mapping[str, Any], ports: list[tuple[int, str]], host_ip: str
) -> tuple[list[_Target], list[NotOffered]]:
    """Host-address mode: the published ports other hosts reach at ``host_ip``."""
    if _host_network(inspect):
        # Its ports are the host's ports: every exposed port is reachable.
        return [_Target(host_ip, port, proto, port) for port, proto in ports], []
    published = (inspect.get("NetworkSettings") or {}).get("Ports") or {}
    offered, not_offered = published_host_ports(published, ports, host_ip)
    targets = [_Target(host_ip, p.host_port, p.protocol, p.container_port) for p in offered]
    return targets, not_offered


def _targets(
    inspect: Mapping[str, Any],
    ports: list[tuple[int, str]],
    host_address: str | None,
    lease: ipaddress.IPv4Network | None,
) -> tuple[list[_Target], list[str], list[Unreachable]]:
    """Container-address mode: (address, port) pairs to register, the addresses used
    for A-record fallback, and the addresses left out as unreachable from other hosts."""
    addresses, unreachable = split_reachable(container_networks(inspect), lease)
    if not addresses and not unreachable and _host_network(inspect) and host_address:
        addresses = [host_address]
    targets = [
        _Target(address, port, proto, port) for address in addresses for port, proto in ports
    ]
    return targets, addresses, unreachable


def desired_registrations(
    inspect: Mapping[str, Any],
    node: str,
    *,
    registered_at: str,
    advertise_ip: str | None = None,
    host_address: str | None = None,
    record_ttl_s: int = 5,
    lease: ipaddress.IPv4Network | None = None,
    address_mode: str = INTERNAL,
) -> Desired:
    """The endpoints one container should have; see the module docstring.

    ``registered_at`` is passed in (not read from the clock) to keep this pure.
    ``host_address`` is the host's own address, used for ``--network host``
    containers, and in host-address mode unless ``advertise_ip`` is given.
    ``lease`` is this host's subnet lease (subnet.env's FLANNEL_SUBNET):
    container addresses outside it are left out and listed in ``unreachable``;
    None registers every address. ``address_mode`` (``internal`` or ``host``)
    is the agent's default; a container's label ``discovery.address`` wins.
    """
    container_id = str(inspect.get("Id") or "")
    container_name = str(inspect.get("Name") or "").lstrip("/")
    state = inspect.get("State") or {}
    if not state.get("Running") or state.get("Restarting"):
        return Desired(container_id, container_name)
    config = inspect.get("Config") or {}
    labels: dict[str, str] = dict(config.get("Labels") or {})
    env = environment_map(config.get("Env"))
    image = str(config.get("Image") or "")

    ignored = ignore_reason(labels, env)
    if ignored:
        return Desired(container_id, container_name, ignored=ignored)

    notes: list[str] = []
    ports = _container_ports(inspect, notes)
    try:
        mode = container_address_mode(labels, address_mode)
    except NamingRefused as error:
        return Desired(container_id, container_name, refused=str(error), notes=tuple(notes))
    not_offered: tuple[NotOffered, ...] = ()
    unreachable_list: list[Unreachable]
    if mode == HOST:
        host_ip = advertise_ip or host_address
        if host_ip is None:
            return Desired(
                container_id,
                container_name,
                refused="host-address mode, but this host's address is not known (--node-ip)",
                notes=tuple(notes),
            )
        targets, not_offered_list = _host_mode_targets(inspect, ports, host_ip)
        not_offered = tuple(not_offered_list)
        if not targets and not _host_network(inspect):
            return Desired(
                container_id, container_name, notes=tuple(notes), not_offered=not_offered
            )
        # A --network host container without ports still gets an A record at the host.
        addresses, unreachable_list = [host_ip], []
    else:
        targets, addresses, unreachable_list = _targets(inspect, ports, host_address, lease)
    unreachable = tuple(unreachable_list)
    if not addresses and unreachable:
        # It has addresses, but none that another host could reach.
        return Desired(container_id, container_name, notes=tuple(notes), unreachable=unreachable)
    if not addresses:
        return Desired(
            container_id,
            container_name,
            refused="no IP address on any network (network mode none?)",
            notes=tuple(notes),
        )

    port_ignored = [t for t in targets if ignore_reason(labels, env, t.container_port)]
    targets = [t for t in targets if t not in port_ignored]
    if not targets and port_ignored:
        reasons = sorted({str(ignore_reason(labels, env, t.container_port)) for t in port_ignored})
        return Desired(container_id, container_name, ignored=", ".join(reasons))
    if not targets:
        # No usable port: still resolvable by name, an A-record-only endpoint.
        targets = [_Target(address, 0, "tcp", 0) for address in addresses]

    health = container_health(state)
    endpoints: list[Endpoint] = []
    try:
        namings: dict[int, PortNaming] = {}
        for target in targets:
            port_key = target.container_port or None
            if target.container_port not in namings:
                namings[target.container_port] = name_port(labels, env, image, port_key)
            naming = namings[target.container_port]
            endpoints.append(
                Endpoint(
                    service=naming.service,
                    address=target.address,
                    port=target.port,
                    protocol=target.protocol,
                    port_name=port_name(target.container_port) if target.port else "",
                    node=node,
                    container_id=container_id,
                    container_name=container_name,
                    image=image,
                    tags=naming.tags,
                    health=health,
                    registered_at=registered_at,
                    ttl=record_ttl_s,
                )
            )
    except (NamingRefused, SchemaError) as error:
        return Desired(container_id, container_name, refused=str(error), notes=tuple(notes))
    for naming in namings.values():
        notes.extend(
            f"tag {tag!r} dropped: it cannot be made a DNS label" for tag in naming.dropped_tags
        )
    return Desired(
        container_id,
        container_name,
        tuple(endpoints),
        notes=tuple(dict.fromkeys(notes)),
        unreachable=unreachable,
        not_offered=not_offered,
    )


__all__ = [
    "WELL_KNOWN_PORT_NAMES",
    "Desired",
    "Unreachable",
    "container_addresses",
    "container_health",
    "container_networks",
    "desired_registrations",
    "overlay_reachable",
    "port_name",
    "split_reachable",
    "unreachable_advice",
]

"""Host-address mode: the published ports other hosts reach at this host's address.

Pure: a container's labels and ``NetworkSettings.Ports`` in, the (container
port, host port) pairs to register at the host's address out, with every
published port left out and why. registrator registers so without
``-internal``; this agent does it for the containers that ask for it with the
label ``discovery.address=host``, or for all when the agent runs with
``--address-mode host``.

How a published port is reached from another host: the client connects to
this host's underlay address and the host port; Docker's DNAT rule (``iptables
-t nat -S DOCKER``: ``-A DOCKER ! -i docker0 -p tcp --dport 8080 -j DNAT
--to-destination 10.5.75.2:80``) rewrites the destination to the container's
address and port, and the host forwards the packet to its bridge. No overlay is
involved, so the container's own address may lie anywhere (a Compose project's
network included).

Which bindings count (``docker port`` lists them; ``-P`` picks the host ports
and they are read from the same place once the container runs):

* on every address (``-p 8080:80``: HostIp ``0.0.0.0``, and ``::`` beside it),
  or on exactly the host's address (``-p 192.168.100.11:8080:80``): registered,
  one record per host port and protocol (the IPv6 twin of a binding is the same
  port);
* on loopback (``-p 127.0.0.1:8080:80``), on another address of the host, or on
  ``::`` alone when the host's address is IPv4: other hosts cannot reach the
  record's address and port, so the binding is left out, with the reason;
* a port exposed but not published: not reachable through the host, left out
  silently (the container's other ports may be published);
* no published port at all: nothing is registered, and the container is
  reported once with the way out (``docker run -p HOSTPORT:PORT`` or ``-P``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agent.registrator.naming import NamingRefused

LABEL_ADDRESS = "discovery.address"
INTERNAL = "internal"  # the container's own addresses (registrator -internal)
HOST = "host"  # the host's address and the published ports
ADDRESS_MODES = (INTERNAL, HOST)

NOTHING_PUBLISHED = (
    "no port published: host-address mode registers published ports only "
    "(docker run -p HOSTPORT:PORT, or -P)"
)


@dataclass(frozen=True)
class HostPort:
    """One published port to register at the host's address."""

    container_port: int  # what the naming rules use (SERVICE_<port>_NAME)
    protocol: str
    host_port: int  # what the record carries


@dataclass(frozen=True)
class NotOffered:
    """A published port left out in host-address mode (``port`` '' : the whole container)."""

    port: str  # '80/tcp'
    binding: str  # '127.0.0.1:8080'; '' when nothing is published
    reason: str


def container_address_mode(labels: Mapping[str, str], default: str) -> str:
    """The label ``discovery.address`` (``host`` or ``internal``), else the agent's default.

    Raises NamingRefused for any other value: registering at an address the
    container did not ask for would be worse than not registering it."""
    if LABEL_ADDRESS not in labels:
        return default
    value = labels[LABEL_ADDRESS].strip().lower()
    if value not in ADDRESS_MODES:
        choices = " or ".join(ADDRESS_MODES)
        raise NamingRefused(f"label {LABEL_ADDRESS}={labels[LABEL_ADDRESS]!r}: expected {choices}")
    return value


def binding_text(host_ip: str, host_port: str) -> str:
    """'127.0.0.1:8080', '[::]:8080', '*:8080' (no address given), as ``docker port`` shows."""
    shown = host_ip or "*"
    return f"[{shown}]:{host_port}" if ":" in shown else f"{shown}:{host_port}"


def binding_problem(host_ip: str, host_address: str) -> str | None:
    """Why other hosts cannot reach a binding on ``host_ip`` at ``host_address``;
    None when they can."""
    if not host_ip:
        return None
    try:
        bound = ipaddress.ip_address(host_ip)
    except ValueError:
        return f"published on {host_ip!r}, which is not an IP address"
    advertised = ipaddress.ip_address(host_address)
    if bound == advertised:
        return None
    if bound.is_unspecified:
        if bound.version == advertised.version:
            return None
        return (
            f"published on {host_ip} (IPv{bound.version} only), and the host's address "
            f"{host_address} is IPv{advertised.version}"
        )
    if bound.is_loopback:
        return f"published only on {host_ip} (loopback): reachable from this host only"
    return (
        f"published only on {host_ip}, not on the host's address {host_address} "
        "that the record would carry"
    )


def published_host_ports(
    published: Mapping[str, Any], ports: Sequence[tuple[int, str]], host_address: str
) -> tuple[list[HostPort], list[NotOffered]]:
    """The container ports' bindings (``NetworkSettings.Ports``) that reach ``host_address``,
    and the bindings that do not; see the module docstring."""
    offered: list[HostPort] = []
    seen: set[tuple[int, str]] = set()
    left_out: list[tuple[str, str, str, str]] = []
    any_binding = False
    for container_port, protocol in ports:
        for binding in published.get(f"{container_port}/{protocol}") or ():
            host_ip = str((binding or {}).get("HostIp") or "")
            host_port = str((binding or {}).get("HostPort") or "")
            if not host_port.isdigit():
                continue
            any_binding = True
            problem = binding_problem(host_ip, host_address)
            if problem is not None:
                left_out.append((f"{container_port}/{protocol}", host_ip, host_port, problem))
            elif (int(host_port), protocol) not in seen:
                seen.add((int(host_port), protocol))
                offered.append(HostPort(container_port, protocol, int(host_port)))
    if not any_binding:
        return [], [NotOffered("", "", NOTHING_PUBLISHED)]
    not_offered = [
        NotOffered(port, binding_text(host_ip, host_port), problem)
        for port, host_ip, host_port, problem in left_out
        # The same host port offered on another address (0.0.0.0 beside ::) is offered.
        if (int(host_port), port.split("/")[1]) not in seen
    ]
    return offered, not_offered


__all__ = [
    "ADDRESS_MODES",
    "HOST",
    "INTERNAL",
    "LABEL_ADDRESS",
    "NOTHING_PUBLISHED",
    "HostPort",
    "NotOffered",
    "binding_problem",
    "binding_text",
    "container_address_mode",
    "published_host_ports",
]

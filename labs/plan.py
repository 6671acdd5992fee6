"""The local lab's plan: which hosts, names and addresses, decided before anything runs.

Every VM of the Vagrant lab becomes a network namespace here, wired to one
Linux bridge (the "underlay", the lab's physical network)::

    root namespace:   bridge lab0 192.168.100.1/24   etcd listens here
                        |-- veth lab-h1 ... eth0 192.168.100.11  netns lab-host1
                        |-- veth lab-h2 ... eth0 192.168.100.12  netns lab-host2
                        `-- veth lab-h3 ... eth0 192.168.100.13  netns lab-host3

Hosts get no default route: the lab cannot reach out of the machine. All of
it is derived from a lab name and a host count, so a test lab and a learner's
lab can stand side by side under different names. Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace

DEFAULT_LAB_NAME = "lab"
DEFAULT_UNDERLAY = ipaddress.IPv4Network("192.168.100.0/24")
DEFAULT_OVERLAY = ipaddress.IPv4Network("10.5.0.0/16")
HOST_ADDRESS_OFFSET = 10  # host1 is .11, host2 .12 ...
ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380
DNS_PORT = 53
MAX_HOSTS = 50
IFNAME_MAX_LEN = 15  # the kernel's limit on interface names


class PlanError(ValueError):
    pass


@dataclass(frozen=True)
class HostPlan:
    name: str  # host1
    index: int
    netns: str  # lab-host1
    veth_outside: str  # lab-h1, on the bridge in the root namespace
    veth_inside: str  # eth0, inside the host's namespace
    underlay_ip: ipaddress.IPv4Address
    underlay_prefixlen: int = DEFAULT_UNDERLAY.prefixlen  # the underlay network's

    @property
    def underlay_cidr(self) -> str:
        return f"{self.underlay_ip}/{self.underlay_prefixlen}"


@dataclass(frozen=True)
class LabPlan:
    name: str
    bridge: str
    underlay: ipaddress.IPv4Network
    bridge_ip: ipaddress.IPv4Address
    overlay: ipaddress.IPv4Network
    hosts: tuple[HostPlan, ...]
    etcd_members: int  # 1: etcd on the bridge address; 3: one on each of host1..3

    @property
    def etcd_hosts(self) -> tuple[HostPlan, ...]:
        return self.hosts[: self.etcd_members] if self.etcd_members > 1 else ()

    @property
    def etcd_endpoints(self) -> list[str]:
        # TLS only: every client shows a certificate the lab's CA signed (labs.etcd_tls)
        if self.etcd_members == 1:
            return [f"https://{self.bridge_ip}:{ETCD_CLIENT_PORT}"]
        return [f"https://{host.underlay_ip}:{ETCD_CLIENT_PORT}" for host in self.etcd_hosts]

    def etcd_endpoints_for(self, host: HostPlan) -> list[str]:
        """The endpoints in the order ``host``'s processes should try them: its own
        member first, else starting one further along for each host, so that
        one member's trouble does not reach every host at once."""
        endpoints = self.etcd_endpoints
        hosts = self.etcd_hosts
        first = hosts.index(host) if host in hosts else (host.index - 1) % len(endpoints)
        return endpoints[first:] + endpoints[:first]

    def without(self, removed: list[str]) -> LabPlan:
        """The plan less the hosts taken away with `lab rm` (their names stay free)."""
        return replace(self, hosts=tuple(h for h in self.hosts if h.name not in removed))

    def host(self, name: str) -> HostPlan:
        for host in self.hosts:
            if host.name == name:
                return host
        known = ", ".join(host.name for host in self.hosts)
        raise PlanError(f"no host {name!r} in lab {self.name!r} (hosts: {known})")


def plan_lab(
    host_count: int = 3,
    name: str = DEFAULT_LAB_NAME,
    underlay: ipaddress.IPv4Network = DEFAULT_UNDERLAY,
    overlay: ipaddress.IPv4Network = DEFAULT_OVERLAY,
    etcd_members: int = 1,
) -> LabPlan:
    if not 1 <= host_count <= MAX_HOSTS:
        raise PlanError(f"--hosts must be 1..{MAX_HOSTS}, got {host_count}")
    if etcd_members not in (1, 3):
        raise PlanError(f"--etcd-members must be 1 or 3, got {etcd_members}")
    if etcd_members > host_count:
        raise PlanError(f"--etcd-members {etcd_members} needs at least {etcd_members} hosts")
    if not name.isalnum() or not name[0].isalpha() or not name.islower():
        raise PlanError(f"lab name {name!r} must be lower-case letters and digits")
    if len(f"{name}-h{host_count}") > IFNAME_MAX_LEN:
        raise PlanError(f"lab name {name!r} is too long for interface names (15 characters)")
    if underlay.num_addresses < HOST_ADDRESS_OFFSET + host_count + 2:
        raise PlanError(f"underlay {underlay} is too small for {host_count} hosts")
    if underlay.overlaps(overlay):
        raise PlanError(f"underlay {underlay} overlaps the overlay network {overlay}")
    hosts = tuple(
        HostPlan(
            name=f"host{index}",
            index=index,
            netns=f"{name}-host{index}",
            veth_outside=f"{name}-h{index}",
            veth_inside="eth0",
            underlay_ip=underlay.network_address + HOST_ADDRESS_OFFSET + index,
            underlay_prefixlen=underlay.prefixlen,
        )
        for index in range(1, host_count + 1)
    )
    return LabPlan(
        name=name,
        bridge=f"{name}0",
        underlay=underlay,
        bridge_ip=underlay.network_address + 1,
        overlay=overlay,
        hosts=hosts,
        etcd_members=etcd_members,
    )


@dataclass(frozen=True)
class NetworkInUse:
    """A network this machine already uses: an interface's, a route's, another lab's."""

    network: ipaddress.IPv4Network
    what: str  # "eth0 has 192.0.2.10/24", "route 10.0.0.0/8 via eth1", "lab 'two'"


def underlay_conflicts(
    underlay: ipaddress.IPv4Network, bridge: str, in_use: list[NetworkInUse]
) -> list[str]:
    """What already uses (part of) ``underlay``; the lab's own bridge does not count.

    Putting the lab's gateway address on a bridge in a range the machine
    already routes would take that range away from the machine's own network.
    The default route (0.0.0.0/0) overlaps everything and is not a use.
    """
    return [
        use.what
        for use in in_use
        if use.network.prefixlen > 0
        and use.network.overlaps(underlay)
        and not use.what.startswith(f"{bridge} ")
    ]


def free_underlay(in_use: list[NetworkInUse]) -> ipaddress.IPv4Network | None:
    """The first 192.168.X.0/24 (X from 100) that nothing here uses, to suggest."""
    for third in range(100, 255):
        candidate = ipaddress.IPv4Network(f"192.168.{third}.0/24")
        if not any(u.network.prefixlen and u.network.overlaps(candidate) for u in in_use):
            return candidate
    return None


def forward_accept_rules(plan: LabPlan) -> list[list[str]]:
    """iptables rules (FORWARD) that let traffic in and out of the lab bridge.

    A Docker daemon in the root namespace sets FORWARD's policy to DROP, and
    with br_netfilter loaded bridged frames pass through FORWARD too: without
    these two rules nothing crosses the underlay. They carry a comment naming
    the lab, so `lab down` removes exactly these and nothing else.
    """
    comment = ["-m", "comment", "--comment", f"discovery-lab {plan.name}"]
    return [
        ["FORWARD", "-i", plan.bridge, "-j", "ACCEPT", *comment],
        ["FORWARD", "-o", plan.bridge, "-j", "ACCEPT", *comment],
    ]

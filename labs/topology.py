"""Build and tear down the lab's underlay: a bridge, one namespace per host, veths.

This is provisioning, so it runs the same ``ip`` and ``iptables`` commands a
learner would type (and the Vagrant provisioning uses), each one printed in
the lab log. Every step checks first and acts only when needed, so running
``lab up`` twice is safe and ``lab down`` on a half-made lab works.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import subprocess

from discovery.errors import DiscoveryError
from labs.plan import HostPlan, LabPlan, NetworkInUse, forward_accept_rules

log = logging.getLogger(__name__)


class TopologyError(DiscoveryError):
    pass


def run(*command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    log.debug("+ %s", " ".join(command))
    result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise TopologyError(f"`{' '.join(command)}` failed: {result.stderr.strip()}")
    return result


def link_exists(name: str, netns: str | None = None) -> bool:
    prefix = ["ip", "-n", netns] if netns else ["ip"]
    return run(*prefix, "link", "show", "dev", name, check=False).returncode == 0


def netns_exists(name: str) -> bool:
    result = run("ip", "-json", "netns", "list", check=False)
    if result.returncode != 0 or not result.stdout.strip():
        return False
    return any(entry.get("name") == name for entry in json.loads(result.stdout))


def _has_address(device: str, cidr: str, netns: str | None = None) -> bool:
    prefix = ["ip", "-n", netns] if netns else ["ip"]
    result = run(*prefix, "-json", "addr", "show", "dev", device)
    address, length = cidr.split("/")
    return any(
        info.get("local") == address and str(info.get("prefixlen")) == length
        for entry in json.loads(result.stdout or "[]")
        for info in entry.get("addr_info", [])
    )


def networks_in_use() -> list[NetworkInUse]:
    """Every IPv4 network the root namespace has an address in or a route to."""
    found = []
    addresses = json.loads(run("ip", "-json", "-4", "addr", "show").stdout or "[]")
    for entry in addresses:
        for info in entry.get("addr_info", []):
            interface = ipaddress.IPv4Interface(f"{info['local']}/{info['prefixlen']}")
            found.append(
                NetworkInUse(interface.network, f"{entry.get('ifname', '?')} has {interface}")
            )
    routes = json.loads(run("ip", "-json", "-4", "route", "show", "table", "all").stdout or "[]")
    for route in routes:
        destination = route.get("dst", "")
        if destination in ("", "default") or route.get("type") in ("broadcast", "local"):
            continue
        try:
            network = ipaddress.IPv4Network(destination, strict=False)
        except ValueError:
            continue
        via = f" via {route['gateway']}" if route.get("gateway") else ""
        found.append(NetworkInUse(network, f"{route.get('dev', '?')} route {network}{via}"))
    return found


def ensure_bridge(plan: LabPlan) -> None:
    if not link_exists(plan.bridge):
        run("ip", "link", "add", plan.bridge, "type", "bridge")
    cidr = f"{plan.bridge_ip}/{plan.underlay.prefixlen}"
    if not _has_address(plan.bridge, cidr):
        run("ip", "addr", "add", cidr, "dev", plan.bridge)
    run("ip", "link", "set", plan.bridge, "up")


def ensure_forward_rules(plan: LabPlan) -> None:
    for rule in forward_accept_rules(plan):
        if run("iptables", "-C", *rule, check=False).returncode != 0:
            run("iptables", "-I", *rule)


def remove_forward_rules(plan: LabPlan) -> None:
    for rule in forward_accept_rules(plan):
        while run("iptables", "-C", *rule, check=False).returncode == 0:
            run("iptables", "-D", *rule)


def ensure_host(plan: LabPlan, host: HostPlan) -> None:
    if not netns_exists(host.netns):
        run("ip", "netns", "add", host.netns)
    if not link_exists(host.veth_inside, host.netns):
        if link_exists(host.veth_outside):  # half of a pair from an interrupted run
            run("ip", "link", "del", host.veth_outside)
        run(
            "ip", "link", "add", host.veth_outside, "type", "veth",
            "peer", "name", host.veth_inside, "netns", host.netns,
        )  # fmt: skip
    run("ip", "link", "set", host.veth_outside, "master", plan.bridge, "up")
    run("ip", "-n", host.netns, "link", "set", "lo", "up")
    if not _has_address(host.veth_inside, host.underlay_cidr, host.netns):
        run("ip", "-n", host.netns, "addr", "add", host.underlay_cidr, "dev", host.veth_inside)
    run("ip", "-n", host.netns, "link", "set", host.veth_inside, "up")


def remove_host(host: HostPlan) -> None:
    if link_exists(host.veth_outside):
        run("ip", "link", "del", host.veth_outside)
    if netns_exists(host.netns):
        run("ip", "netns", "del", host.netns)


def remove_bridge(plan: LabPlan) -> None:
    if link_exists(plan.bridge):
        run("ip", "link", "del", plan.bridge)


def leftovers(plan: LabPlan) -> list[str]:
    """What of this lab's topology still exists (empty after a clean `lab down`)."""
    found = []
    if link_exists(plan.bridge):
        found.append(f"bridge {plan.bridge}")
    for host in plan.hosts:
        if netns_exists(host.netns):
            found.append(f"namespace {host.netns}")
        if link_exists(host.veth_outside):
            found.append(f"veth {host.veth_outside}")
    for rule in forward_accept_rules(plan):
        if run("iptables", "-C", *rule, check=False).returncode == 0:
            found.append(f"iptables rule {' '.join(rule)}")
    return found

"""The lab's underlay for real: namespaces on a bridge reach each other, and go away cleanly."""

import ipaddress
import os
import subprocess

import pytest

from labs import topology
from labs.plan import plan_lab
from tests.prerequisites import require_binary, require_root

pytestmark = [pytest.mark.root, pytest.mark.netns]


@pytest.fixture
def plan():
    require_root()
    require_binary("ip", "iptables", "busybox", "nsenter")
    plan = plan_lab(
        2, name=f"tp{os.getpid() % 10000}", underlay=ipaddress.IPv4Network("192.168.215.0/24")
    )
    yield plan
    for host in plan.hosts:
        topology.remove_host(host)
    topology.remove_bridge(plan)
    topology.remove_forward_rules(plan)


def ping(host, address):
    return subprocess.run(
        ["nsenter", f"--net=/run/netns/{host.netns}", "busybox", "ping", "-c", "1", "-W", "2",
         str(address)],
        capture_output=True, text=True, timeout=10,
    )  # fmt: skip


def test_hosts_reach_each_other_and_down_leaves_nothing(plan):
    for _ in range(2):  # the second pass must be a no-op, not an error
        topology.ensure_bridge(plan)
        topology.ensure_forward_rules(plan)
        for host in plan.hosts:
            topology.ensure_host(plan, host)
    host1, host2 = plan.hosts
    assert ping(host1, host2.underlay_ip).returncode == 0
    assert ping(host2, plan.bridge_ip).returncode == 0
    # No route out of the machine: a lab host has no default route.
    routes = subprocess.run(
        ["ip", "-n", host1.netns, "route", "show", "default"], capture_output=True, text=True
    )
    assert routes.stdout.strip() == ""
    rules = subprocess.run(["iptables", "-S", "FORWARD"], capture_output=True, text=True).stdout
    assert rules.count(f"discovery-lab {plan.name}") == 2

    for host in plan.hosts:
        topology.remove_host(host)
    topology.remove_bridge(plan)
    topology.remove_forward_rules(plan)
    assert topology.leftovers(plan) == []


def test_a_half_made_host_is_completed(plan):
    topology.ensure_bridge(plan)
    host = plan.hosts[0]
    subprocess.run(["ip", "netns", "add", host.netns], check=True)  # as if interrupted here
    topology.ensure_host(plan, host)
    assert ping(host, plan.bridge_ip).returncode == 0
    assert set(topology.leftovers(plan)) >= {f"namespace {host.netns}", f"bridge {plan.bridge}"}

"""The local lab's plan: names and addresses derived from a lab name and host count."""

import ipaddress

import pytest

from labs.plan import (
    NetworkInUse,
    PlanError,
    forward_accept_rules,
    free_underlay,
    plan_lab,
    underlay_conflicts,
)


def test_three_host_plan():
    plan = plan_lab(3)
    assert plan.bridge == "lab0" and str(plan.bridge_ip) == "192.168.100.1"
    assert [(h.name, h.netns, h.veth_outside, str(h.underlay_ip)) for h in plan.hosts] == [
        ("host1", "lab-host1", "lab-h1", "192.168.100.11"),
        ("host2", "lab-host2", "lab-h2", "192.168.100.12"),
        ("host3", "lab-host3", "lab-h3", "192.168.100.13"),
    ]
    assert plan.etcd_endpoints == ["https://192.168.100.1:2379"]
    assert plan.host("host2").underlay_cidr == "192.168.100.12/24"


def test_three_etcd_members_live_on_the_first_three_hosts():
    plan = plan_lab(4, etcd_members=3)
    assert plan.etcd_endpoints == [f"https://192.168.100.1{n}:2379" for n in (1, 2, 3)]


def test_each_host_tries_its_own_etcd_member_first_and_the_others_spread_out():
    plan = plan_lab(4, etcd_members=3)
    member = [f"https://192.168.100.1{n}:2379" for n in (1, 2, 3)]
    firsts = [plan.etcd_endpoints_for(host)[0] for host in plan.hosts]
    assert firsts == [member[0], member[1], member[2], member[0]]
    assert all(sorted(plan.etcd_endpoints_for(host)) == member for host in plan.hosts)
    single = plan_lab(2)
    assert single.etcd_endpoints_for(single.hosts[1]) == ["https://192.168.100.1:2379"]


def test_hosts_take_the_underlay_s_own_prefix_length():
    plan = plan_lab(3, underlay=ipaddress.IPv4Network("10.250.0.0/22"))
    assert plan.host("host3").underlay_cidr == "10.250.0.13/22"


def test_a_second_lab_gets_its_own_names():
    plan = plan_lab(2, name="t123", underlay=ipaddress.IPv4Network("192.168.214.0/24"))
    assert plan.bridge == "t1230" and plan.hosts[1].netns == "t123-host2"
    assert all("t123" in " ".join(rule) for rule in forward_accept_rules(plan))


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"host_count": 0}, "--hosts must be"),
        ({"host_count": 51}, "--hosts must be"),
        ({"host_count": 2, "etcd_members": 3}, "needs at least 3 hosts"),
        ({"host_count": 3, "etcd_members": 2}, "must be 1 or 3"),
        ({"name": "Lab"}, "lower-case"),
        ({"name": "verylonglabname1"}, "too long"),
        ({"overlay": ipaddress.IPv4Network("192.168.0.0/16")}, "overlaps"),
    ],
)
def test_impossible_plans_say_why(kwargs, reason):
    with pytest.raises(PlanError, match=reason):
        plan_lab(**kwargs)


def test_unknown_host_names_the_hosts():
    with pytest.raises(PlanError, match="hosts: host1, host2"):
        plan_lab(2).host("host9")


def test_an_underlay_the_machine_uses_is_refused_and_a_free_one_suggested():
    in_use = [
        NetworkInUse(ipaddress.IPv4Network("0.0.0.0/0"), "eth0 route default via 192.0.2.1"),
        NetworkInUse(ipaddress.IPv4Network("192.0.2.0/24"), "eth0 has 192.0.2.10/24"),
        NetworkInUse(ipaddress.IPv4Network("192.168.100.0/24"), "lab0 has 192.168.100.1/24"),
        NetworkInUse(ipaddress.IPv4Network("192.168.101.0/24"), "lab 'two' (192.168.101.0/24)"),
    ]
    machine = ipaddress.IPv4Network("192.0.2.0/25")
    assert underlay_conflicts(machine, "lab0", in_use) == ["eth0 has 192.0.2.10/24"]
    # The lab's own bridge is not a conflict (lab up again on the same lab) ...
    assert underlay_conflicts(ipaddress.IPv4Network("192.168.100.0/24"), "lab0", in_use) == []
    # ... but the same range under another lab's name is.
    assert underlay_conflicts(ipaddress.IPv4Network("192.168.100.0/24"), "two0", in_use) == [
        "lab0 has 192.168.100.1/24"
    ]
    assert free_underlay(in_use) == ipaddress.IPv4Network("192.168.102.0/24")

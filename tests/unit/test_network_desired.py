"""Desired kernel entries, the diff against the kernel, the iptables rules and
subnet.env: all pure, all tables."""

import ipaddress
import json

import pytest

from agent.network.desired import (
    FdbEntry,
    KernelEntries,
    NeighbourEntry,
    RouteEntry,
    desired_entries,
)
from agent.network.diff import Step, plan_steps
from agent.network.iptables_rules import chains_for
from agent.network.subnet_env import (
    SubnetEnv,
    bip,
    render_docker_env,
    render_docker_options,
    render_subnet_env,
    subnet_from_env,
)
from discovery.flannel import SubnetLease, parse_subnet_env

N = ipaddress.IPv4Network
A = ipaddress.IPv4Address
NETWORK = N("10.5.0.0/16")
MAC1, MAC2, MAC3, MAC4 = (f"0e:00:00:00:00:0{i}" for i in range(1, 5))


def lease(subnet, public_ip, mac, **kw):
    return SubnetLease(N(subnet), A(public_ip), mac, **kw)


OWN = lease("10.5.1.0/24", "192.168.213.11", MAC1)
H2 = lease("10.5.2.0/24", "192.168.213.12", MAC2)
H3 = lease("10.5.3.0/24", "192.168.213.13", MAC3)


def entries(*leases):
    neighbours, fdb, routes = set(), set(), set()
    for item in leases:
        address = item.subnet.network_address
        neighbours.add(NeighbourEntry(address, item.vtep_mac))
        fdb.add(FdbEntry(item.vtep_mac, item.public_ip))
        routes.add(RouteEntry(item.subnet, address))
    return KernelEntries(frozenset(neighbours), frozenset(fdb), frozenset(routes))


@pytest.mark.parametrize(
    ("leases", "expected"),
    [
        ([], []),
        ([OWN], []),  # never our own subnet
        ([OWN, H2, H3], [H2, H3]),
        ([OWN, lease("10.5.7.0/24", "192.168.213.11", MAC4)], []),  # a stale lease of ours
        ([OWN, lease("10.5.2.0/24", "192.168.213.12", MAC2, vni=2)], []),  # another VNI
        ([OWN, lease("10.5.2.0/24", "192.168.213.12", MAC2, backend_type="udp")], []),
        ([OWN, lease("10.6.2.0/24", "192.168.213.12", MAC2)], []),  # outside the network
        # a leftover /25 sharing 10.5.2.0 with a /24: one neighbour per address
        ([OWN, H2, lease("10.5.2.0/25", "192.168.213.14", MAC4)], [H2]),
    ],
)
def test_desired_entries(leases, expected):
    assert desired_entries(OWN, leases, NETWORK) == entries(*expected)


def test_one_lease_gives_the_three_flannel_entries():
    assert desired_entries(OWN, [H2], NETWORK) == KernelEntries(
        frozenset({NeighbourEntry(A("10.5.2.0"), MAC2)}),
        frozenset({FdbEntry(MAC2, A("192.168.213.12"))}),
        frozenset({RouteEntry(N("10.5.2.0/24"), A("10.5.2.0"))}),
    )


def kinds(steps):
    return [(step.action, type(step.entry).__name__) for step in steps]


def test_equal_means_nothing_to_do():
    assert plan_steps(entries(H2, H3), entries(H2, H3)) == []


def test_adding_goes_neighbour_then_fdb_then_route():
    assert kinds(plan_steps(entries(H2), entries())) == [
        ("add", "NeighbourEntry"),
        ("add", "FdbEntry"),
        ("add", "RouteEntry"),
    ]


def test_removing_goes_route_then_fdb_then_neighbour():
    assert kinds(plan_steps(entries(H2), entries(H2, H3))) == [
        ("delete", "RouteEntry"),
        ("delete", "FdbEntry"),
        ("delete", "NeighbourEntry"),
    ]


def test_only_the_missing_entries_are_added_back():
    actual = entries(H2, H3)
    actual = KernelEntries(
        actual.neighbours,
        actual.fdb - {FdbEntry(MAC3, A("192.168.213.13"))},
        actual.routes - {RouteEntry(N("10.5.2.0/24"), A("10.5.2.0"))},
    )
    assert plan_steps(entries(H2, H3), actual) == [
        Step("add", FdbEntry(MAC3, A("192.168.213.13"))),
        Step("add", RouteEntry(N("10.5.2.0/24"), A("10.5.2.0"))),
    ]


def test_a_new_vtep_mac_replaces_the_neighbour_and_moves_the_fdb_entry():
    moved = lease("10.5.2.0/24", "192.168.213.12", MAC4)
    assert plan_steps(entries(moved), entries(H2)) == [
        Step("delete", FdbEntry(MAC2, A("192.168.213.12"))),
        Step("replace", NeighbourEntry(A("10.5.2.0"), MAC4)),
        Step("add", FdbEntry(MAC4, A("192.168.213.12"))),
    ]


def test_a_new_public_ip_only_moves_the_fdb_entry():
    moved = lease("10.5.2.0/24", "192.168.213.99", MAC2)
    assert plan_steps(entries(moved), entries(H2)) == [
        Step("delete", FdbEntry(MAC2, A("192.168.213.12"))),
        Step("add", FdbEntry(MAC2, A("192.168.213.99"))),
    ]


def test_a_route_with_a_wrong_gateway_is_replaced():
    actual = KernelEntries(
        entries(H2).neighbours,
        entries(H2).fdb,
        frozenset({RouteEntry(N("10.5.2.0/24"), A("10.5.2.9"))}),
    )
    assert plan_steps(entries(H2), actual) == [
        Step("replace", RouteEntry(N("10.5.2.0/24"), A("10.5.2.0")))
    ]


def test_step_text_reads_like_iproute2():
    assert str(Step("add", RouteEntry(N("10.5.2.0/24"), A("10.5.2.0")))) == (
        "add route 10.5.2.0/24 via 10.5.2.0 onlink"
    )


def rule_lines(chains):
    return [" ".join([r.table, r.chain, *r.spec]) for c in chains for r in (c.jump, *c.rules)]


def test_forward_rules_are_flannels():
    wanted, unwanted = chains_for(NETWORK, N("10.5.1.0/24"), ip_masq=False)
    c = "-m comment --comment flanneld forward"
    assert rule_lines(wanted) == [
        f"filter FORWARD {c} -j FLANNEL-FWD",
        f"filter FLANNEL-FWD -s 10.5.0.0/16 {c} -j ACCEPT",
        f"filter FLANNEL-FWD -d 10.5.0.0/16 {c} -j ACCEPT",
        # Docker's isolation between its bridges is lifted inside this host's lease only
        "filter DOCKER-USER -m comment --comment discovery lease networks -j DISCOVERY-LEASE",
        "filter DISCOVERY-LEASE -s 10.5.1.0/24 -d 10.5.1.0/24 -m comment --comment discovery "
        "lease networks -j ACCEPT",
    ]
    assert [chain.chain for chain in unwanted] == ["FLANNEL-POSTRTG"]


def test_masquerade_rules_are_flannels():
    wanted, unwanted = chains_for(NETWORK, N("10.5.1.0/24"), ip_masq=True)
    c = "-m comment --comment flanneld masq"
    assert unwanted == []
    assert rule_lines(wanted)[5:] == [
        f"nat POSTROUTING {c} -j FLANNEL-POSTRTG",
        f"nat FLANNEL-POSTRTG -s 10.5.0.0/16 -d 10.5.0.0/16 {c} -j RETURN",
        f"nat FLANNEL-POSTRTG ! -s 10.5.0.0/16 -d 10.5.1.0/24 {c} -j RETURN",
        f"nat FLANNEL-POSTRTG -s 10.5.0.0/16 ! -d 224.0.0.0/4 {c} -j MASQUERADE --random-fully",
        f"nat FLANNEL-POSTRTG ! -s 10.5.0.0/16 -d 10.5.0.0/16 {c} -j MASQUERADE --random-fully",
    ]


ENV = SubnetEnv(NETWORK, N("10.5.1.0/24"), 1450, ip_masq=True)


def test_subnet_env_is_flannels_format():
    assert render_subnet_env(ENV) == (
        "FLANNEL_NETWORK=10.5.0.0/16\n"
        "FLANNEL_SUBNET=10.5.1.1/24\n"
        "FLANNEL_MTU=1450\n"
        "FLANNEL_IPMASQ=true\n"
    )


def test_subnet_env_round_trips_to_the_remembered_subnet():
    assert subnet_from_env(parse_subnet_env(render_subnet_env(ENV))) == N("10.5.1.0/24")
    assert subnet_from_env({}) is None
    assert subnet_from_env({"FLANNEL_SUBNET": "nonsense"}) is None


def test_docker_options():
    assert bip(N("10.5.7.0/24")) == "10.5.7.1/24"
    assert json.loads(render_docker_options(ENV, "daemon.json")) == {
        "bip": "10.5.1.1/25",
        "mtu": 1450,
        "default-address-pools": [{"base": "10.5.1.128/25", "size": 28}],
        "ip-masq": False,
    }
    plain = SubnetEnv(NETWORK, N("10.5.1.0/24"), 1450, ip_masq=False)
    assert "ip-masq" not in json.loads(render_docker_options(plain, "daemon.json"))
    env = parse_subnet_env(render_docker_env(ENV))
    pool = "--default-address-pool=base=10.5.1.128/25,size=28"
    assert env["DOCKER_OPTS"] == f'" --bip=10.5.1.1/25 --ip-masq=false --mtu=1450 {pool}"'
    assert env["DOCKER_OPT_ADDRESS_POOL"] == f'"{pool}"'
    assert render_docker_options(ENV, "docker") == render_docker_env(ENV)


def test_a_scoped_pass_sees_only_the_changed_leases_keys():
    from agent.network.desired import restrict, scope_of

    scope = scope_of([H3])
    assert restrict(entries(H2, H3), scope) == entries(H3)
    assert not scope_of([])
    # H3 gone: the scoped plan removes exactly its three entries, nothing of H2's.
    steps = plan_steps(
        restrict(desired_entries(OWN, [H2], NETWORK), scope), restrict(entries(H2, H3), scope)
    )
    assert [step.action for step in steps] == ["delete"] * 3
    assert {step.entry for step in steps} == set(
        entries(H3).neighbours | entries(H3).fdb | entries(H3).routes
    )

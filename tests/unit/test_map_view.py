"""The live map's model and timeline: pure, from endpoints, nodes and subnet leases."""

from __future__ import annotations

import ipaddress

from agent.network.desired import FdbEntry, KernelEntries, NeighbourEntry, RouteEntry
from agent.network.observed import tunnel_report
from discovery.flannel import SubnetLease
from discovery.schema import Endpoint, Node
from mapserver.view import REPORT_SILENT_AFTER_S, Observed, build_model, diff_models

HOST2 = Node(node="host2", address="192.168.57.12", subnet="10.5.2.0/24")
HOST3 = Node(node="host3", address="192.168.57.13", subnet="10.5.3.0/24")
LEASE2 = SubnetLease(
    ipaddress.IPv4Network("10.5.2.0/24"),
    ipaddress.IPv4Address("192.168.57.12"),
    "aa:bb:cc:00:00:02",
)
LEASE3 = SubnetLease(
    ipaddress.IPv4Network("10.5.3.0/24"),
    ipaddress.IPv4Address("192.168.57.13"),
    "aa:bb:cc:00:00:03",
)
ORPHAN = SubnetLease(
    ipaddress.IPv4Network("10.5.9.0/24"),
    ipaddress.IPv4Address("192.168.57.19"),
    "aa:bb:cc:00:00:09",
)
WEB2 = Endpoint(service="web", address="10.5.2.2", port=80, node="host2", container_name="web-1",
                tags=("http",))  # fmt: skip
WEB3 = Endpoint(service="web", address="10.5.3.2", port=80, node="host3", container_name="web-2")
SICK = Endpoint(service="web", address="10.5.3.9", port=80, node="host3", health="unhealthy")
DB = Endpoint(service="db", address="10.5.2.3", port=5432, node="host2")


def host(model, name):
    return next(h for h in model["hosts"] if h["name"] == name)


def test_hosts_join_records_and_leases_and_carry_their_containers():
    model = build_model([WEB2, WEB3, SICK, DB], [HOST2, HOST3], [LEASE2, LEASE3])
    assert [h["name"] for h in model["hosts"]] == ["host2", "host3"]
    h2 = host(model, "host2")
    assert h2["address"] == "192.168.57.12" and h2["subnet"] == "10.5.2.0/24"
    assert h2["lease"] == {
        "subnet": "10.5.2.0/24", "public_ip": "192.168.57.12",
        "vtep_mac": "aa:bb:cc:00:00:02", "vni": 1, "ttl_s": None,
    }  # fmt: skip
    rows = {row["address"]: row for row in h2["containers"]}
    assert rows["10.5.2.2"]["container"] == "web-1" and rows["10.5.2.2"]["tags"] == ["http"]
    assert rows["10.5.2.3"]["service"] == "db" and rows["10.5.2.3"]["port"] == 5432
    assert {row["health"] for row in host(model, "host3")["containers"]} == {"passing", "unhealthy"}
    # No agent has reported: the tunnel the leases call for is not taken on faith.
    assert model["tunnels"] == [{"a": "host2", "b": "host3", "state": "unobserved",
                                 "problems": {}, "silent": ["host2", "host3"]}]  # fmt: skip


def test_a_service_answers_with_its_serving_endpoints_only():
    model = build_model([WEB2, WEB3, SICK, DB], [HOST2, HOST3], [])
    services = {s["name"]: s for s in model["services"]}
    assert services["web"]["answer"] == ["10.5.2.2", "10.5.3.2"]  # not the unhealthy 10.5.3.9
    assert services["web"]["endpoints"] == 3
    assert services["db"]["answer"] == ["10.5.2.3"]


def test_leases_without_records_and_endpoints_without_hosts_are_still_shown():
    model = build_model([Endpoint(service="x", address="10.5.9.2", node="ghost")], [HOST2],
                        [LEASE2, ORPHAN])  # fmt: skip
    names = [h["name"] for h in model["hosts"]]
    assert names[0] == "host2"  # recorded hosts first
    orphan = next(h for h in model["hosts"] if h["lease"] and h["lease"]["subnet"] == "10.5.9.0/24")
    assert not orphan["record"] and orphan["address"] == "192.168.57.19"
    assert host(model, "ghost")["containers"][0]["service"] == "x"


def test_a_lease_matches_a_node_by_underlay_address_when_the_record_names_no_subnet():
    bare = Node(node="host2", address="192.168.57.12")
    model = build_model([], [bare], [LEASE2])
    assert [h["name"] for h in model["hosts"]] == ["host2"]
    assert host(model, "host2")["lease"]["vtep_mac"] == "aa:bb:cc:00:00:02"


def kinds(events):
    return [(e["kind"], e["subject"]) for e in events]


def test_the_timeline_of_two_models():
    empty = build_model([], [], [])
    lab = build_model([WEB2, DB], [HOST2], [LEASE2])
    assert kinds(diff_models(empty, lab)) == [
        ("host-joined", "host2"), ("lease-taken", "10.5.2.0/24"),
        ("registered", "db"), ("registered", "web"),
    ]  # fmt: skip
    assert kinds(diff_models(lab, empty)) == [
        ("host-left", "host2"), ("lease-expired", "10.5.2.0/24"),
        ("deregistered", "db"), ("deregistered", "web"),
    ]  # fmt: skip
    assert diff_models(lab, lab) == []


def test_a_health_change_is_one_event_not_a_deregistration():
    before = build_model([WEB3], [HOST3], [LEASE3])
    after = build_model([Endpoint(**{**WEB3.__dict__, "health": "unhealthy"})], [HOST3], [LEASE3])
    events = diff_models(before, after)
    assert kinds(events) == [("health", "web")]
    assert "passing -> unhealthy" in events[0]["detail"] and "host3" in events[0]["detail"]


def kernel_for(*peers: SubnetLease) -> KernelEntries:
    return KernelEntries(
        frozenset(NeighbourEntry(p.subnet.network_address, p.vtep_mac) for p in peers),
        frozenset(FdbEntry(p.vtep_mac, p.public_ip) for p in peers),
        frozenset(RouteEntry(p.subnet, p.subnet.network_address) for p in peers),
    )


def observed(reports, age_s=1.0, **kwargs):
    return Observed(
        reports={str(own.subnet): (tunnel_report(own, "flannel.1", entries), age_s)
                 for own, entries in reports},
        **kwargs,
    )  # fmt: skip


def tunnel(model):
    (only,) = model["tunnels"]
    return only


def test_a_tunnel_is_complete_only_when_both_kernels_hold_all_three_entries():
    both = observed([(LEASE2, kernel_for(LEASE3)), (LEASE3, kernel_for(LEASE2))])
    model = build_model([], [HOST2, HOST3], [LEASE2, LEASE3], both)
    assert tunnel(model)["state"] == "complete"
    assert host(model, "host2")["network_agent"] == {"state": "reporting", "age_s": 1.0}

    no_fdb = KernelEntries(kernel_for(LEASE3).neighbours, frozenset(), kernel_for(LEASE3).routes)
    half = observed([(LEASE2, no_fdb), (LEASE3, kernel_for(LEASE2))])
    broken = build_model([], [HOST2, HOST3], [LEASE2, LEASE3], half)
    assert tunnel(broken)["state"] == "partial"
    assert tunnel(broken)["problems"] == {"host2": ["no FDB entry for aa:bb:cc:00:00:03"]}
    events = diff_models(model, broken)
    assert kinds(events) == [("tunnel-down", "host2 <-> host3")]
    assert "host2: no FDB entry" in events[0]["detail"]
    assert kinds(diff_models(broken, model)) == [("tunnel-up", "host2 <-> host3")]

    # One side silent (its agent stopped writing): unobserved, whatever the other says.
    silent = observed([(LEASE2, kernel_for(LEASE3))])
    silent.reports[str(LEASE3.subnet)] = (
        tunnel_report(LEASE3, "flannel.1", kernel_for(LEASE2)),
        REPORT_SILENT_AFTER_S + 1,
    )
    quiet = build_model([], [HOST2, HOST3], [LEASE2, LEASE3], silent)
    assert tunnel(quiet)["state"] == "unobserved" and tunnel(quiet)["silent"] == ["host3"]
    assert host(quiet, "host3")["network_agent"]["state"] == "silent"
    assert ("check", "host3") in kinds(diff_models(model, quiet))


def test_hosts_carry_their_checks_and_the_ttls_left_and_a_check_change_is_an_event():
    checked = Node(node="host2", address="192.168.57.12", subnet="10.5.2.0/24",
                   checks=(("dns", "passing"), ("docker", "passing")))  # fmt: skip
    ttls = observed([], subnet_ttls={"10.5.2.0/24": 52}, node_ttls={"host2": 8})
    model = build_model([], [checked], [LEASE2], ttls)
    h2 = host(model, "host2")
    assert h2["checks"] == {"dns": "passing", "docker": "passing"}
    assert h2["lease"]["ttl_s"] == 52 and h2["node_ttl_s"] == 8
    assert h2["network_agent"] == {"state": "no report", "age_s": None}
    down = Node(**{**checked.__dict__, "checks": (("dns", "critical"), ("docker", "passing"))})
    events = diff_models(model, build_model([], [down], [LEASE2], ttls))
    assert [(e["kind"], e["subject"], e["detail"]) for e in events] == [
        ("check", "host2", "dns: critical")
    ]

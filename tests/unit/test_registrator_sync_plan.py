"""The diff between the agent's wanted records and what etcd holds; event classification."""

from __future__ import annotations

import dataclasses

from agent.registrator.events import classify_event
from agent.registrator.sync_plan import (
    Held,
    carry_registered_at,
    container_changes,
    foreign_leases,
    held_for_node,
    plan_sync,
    same_record,
)
from discovery.schema import Endpoint, encode_endpoint, endpoint_key, node_key

LEASE = 0x1234
OLD_LEASE = 0x999
T1 = "2026-11-23T10:00:00.000Z"
T2 = "2026-11-23T10:05:00.000Z"


def endpoint(address: str = "10.5.1.2", port: int = 80, **fields: object) -> Endpoint:
    values: dict = {
        "service": "web",
        "address": address,
        "port": port,
        "node": "host1",
        "container_id": "c" * 64,
        "container_name": "web1",
        "registered_at": T1,
    }
    values.update(fields)
    return Endpoint(**values)


def key(e: Endpoint) -> str:
    return endpoint_key("/skydns", "lab", e.service, e.endpoint_id)


def test_same_record_ignores_registration_time() -> None:
    assert same_record(endpoint(), endpoint(registered_at=T2))
    assert not same_record(endpoint(), endpoint(health="unhealthy"))


def test_carry_registered_at() -> None:
    assert carry_registered_at(endpoint(registered_at=T2), endpoint()).registered_at == T1
    assert carry_registered_at(endpoint(registered_at=T2), None).registered_at == T2
    other = endpoint(container_id="d" * 64)
    assert carry_registered_at(endpoint(registered_at=T2), other).registered_at == T2


def test_plan_puts_what_is_missing_and_deletes_what_matches_no_container() -> None:
    keep, new, stale = endpoint("10.5.1.2"), endpoint("10.5.1.3"), endpoint("10.5.1.4")
    wanted = {key(keep): keep, key(new): new}
    held = {key(keep): Held(keep, LEASE), key(stale): Held(stale, LEASE)}
    plan = plan_sync(wanted, held, LEASE)
    assert plan.puts == {key(new): new}
    assert plan.deletes == (key(stale),)


def test_plan_deletes_a_previous_run_s_stale_record_only_when_that_lease_was_ours() -> None:
    stale = endpoint("10.5.1.4")
    held = {key(stale): Held(stale, OLD_LEASE)}
    assert plan_sync({}, held, LEASE, own_leases={OLD_LEASE}).deletes == (key(stale),)
    assert plan_sync({}, held, LEASE).deletes == ()


def test_plan_never_touches_hand_made_records_nor_another_agent_s() -> None:
    by_hand = endpoint("10.5.1.8", container_id="", container_name="")
    twin = endpoint("10.5.1.9", container_id="e" * 64)
    held = {key(by_hand): Held(by_hand, 0), key(twin): Held(twin, OLD_LEASE)}
    plan = plan_sync({}, held, LEASE, own_leases={0})
    assert not plan
    assert foreign_leases(held, {LEASE}) == {0: 1, OLD_LEASE: 1}


def test_plan_puts_again_under_our_lease_keeping_the_registration_time() -> None:
    mine = endpoint(registered_at=T2)
    held = {key(mine): Held(endpoint(registered_at=T1), OLD_LEASE)}
    plan = plan_sync({key(mine): mine}, held, LEASE)
    assert plan.puts == {key(mine): dataclasses.replace(mine, registered_at=T1)}


def test_plan_replaces_a_changed_record() -> None:
    mine = endpoint(health="unhealthy")
    plan = plan_sync({key(mine): mine}, {key(mine): Held(endpoint(), LEASE)}, LEASE)
    assert plan.puts[key(mine)].health == "unhealthy"


def test_plan_in_sync_is_empty() -> None:
    mine = endpoint()
    assert not plan_sync({key(mine): mine}, {key(mine): Held(mine, LEASE)}, LEASE)


def test_held_for_node_keeps_only_parsable_records_of_this_host() -> None:
    mine, theirs = endpoint("10.5.1.2"), endpoint("10.5.2.2", node="host2")
    items = {
        key(mine): (encode_endpoint(mine), LEASE),
        key(theirs): (encode_endpoint(theirs), 7),
        "/skydns/lab/service/web/garbage": (b"not json", 0),
        node_key("/skydns", "lab", "host1"): (b'{"node":"host1","host":"10.0.0.1"}', LEASE),
    }
    assert held_for_node(items, "/skydns", "lab", "host1") == {key(mine): Held(mine, LEASE)}


def test_container_changes() -> None:
    a, b, c = endpoint("10.5.1.2"), endpoint("10.5.1.3"), endpoint("10.5.1.4")
    old = {key(a): a, key(b): b}
    new = {
        key(a): dataclasses.replace(a, registered_at=T2),
        key(b): b.__class__(**{**dataclasses.asdict(b), "tags": (), "health": "paused"}),
        key(c): c,
    }
    changes = [(change.kind, change.key) for change in container_changes(old, new)]
    assert sorted(changes) == sorted([("updated", key(b)), ("registered", key(c))])
    gone = container_changes(old, {})
    assert {(change.kind, change.endpoint) for change in gone} == {
        ("deregistered", a),
        ("deregistered", b),
    }


# ---------------------------------------------------------------- events

CID = "4efc5f562a52642fe15675d9a06cc3628fbe88ee867d2f8ca8552b522b99d27b"
NET = "8ba140635f6112211c70738e50f7de5641cdeae4057747b538b9468c36c5d236"


def container_event(action: str) -> dict:
    # As dockerd 28 sends them (docker events --format '{{json .}}').
    return {
        "status": action,
        "id": CID,
        "from": "discovery-lab/base:0.1.0",
        "Type": "container",
        "Action": action,
        "Actor": {"ID": CID, "Attributes": {"image": "discovery-lab/base:0.1.0", "name": "x2"}},
        "scope": "local",
        "time": 1795430162,
        "timeNano": 1795430162141281503,
    }


def test_container_events() -> None:
    start = classify_event(container_event("start"))
    assert start is not None
    assert (start.container_id, start.action, start.gone) == (CID, "start", False)
    assert start.time_nano == 1795430162141281503
    for action in ("die", "stop", "destroy"):
        event = classify_event(container_event(action))
        assert event is not None and event.gone
    for action in ("pause", "unpause", "kill", "rename", "restart"):
        event = classify_event(container_event(action))
        assert event is not None and not event.gone
    health = classify_event(container_event("health_status: unhealthy"))
    assert health is not None and health.action == "health_status"


def test_irrelevant_events_are_dropped() -> None:
    assert classify_event(container_event("exec_start: /bin/sh -c true")) is None
    assert classify_event(container_event("create")) is None
    assert classify_event({"Type": "image", "Action": "pull", "Actor": {"ID": "x"}}) is None


def test_network_events_name_the_container() -> None:
    event = classify_event(
        {
            "Type": "network",
            "Action": "disconnect",
            "Actor": {"ID": NET, "Attributes": {"container": CID, "name": "n2", "type": "bridge"}},
            "scope": "local",
            "time": 1795430162,
            "timeNano": 1795430162700000000,
        }
    )
    assert event is not None
    assert (event.container_id, event.action, event.gone) == (CID, "disconnect", False)

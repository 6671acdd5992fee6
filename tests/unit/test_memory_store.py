"""MemoryStore's own controls, which the contract suite (tests/contract) cannot share with etcd:
clients cut off one at a time, leases expired on demand, bounded history, the loop's clock."""

from __future__ import annotations

import asyncio

import pytest

from discovery.errors import DiscoveryError, EtcdUnavailable, LeaseLost
from discovery.memory_store import MemoryStore
from discovery.store_api import Change, ConnectionLost, Resumed, Snapshot
from tests.fixtures.virtual_clock import in_virtual_time


@in_virtual_time
async def test_going_down_cuts_off_one_client_while_the_others_and_the_leases_go_on() -> None:
    store = MemoryStore()
    other = store.new_client()
    lease_id = await store.grant_lease(30)
    await store.put("/k", b"v", lease_id)
    store.go_down()
    with pytest.raises(EtcdUnavailable, match="unreachable"):
        await store.get("/k")
    assert (await other.get("/k")) is not None
    await asyncio.sleep(31)  # nobody can keep it alive: it runs out on the loop's clock
    assert await other.get("/k") is None
    store.come_back()
    with pytest.raises(LeaseLost):
        await store.keep_alive(lease_id)


@in_virtual_time
async def test_expire_lease_deletes_its_keys_now_and_watches_see_it() -> None:
    store = MemoryStore()
    lease_id = await store.grant_lease(3600)
    await store.put("/p/a", b"1", lease_id)
    items = store.follow_prefix("/p/")
    snapshot = await anext(items)
    assert isinstance(snapshot, Snapshot)
    store.expire_lease(lease_id)
    assert await anext(items) == Change("/p/a", None, snapshot.revision + 1)
    assert await store.lease_ttl(lease_id) == -1
    await items.aclose()


@in_virtual_time
async def test_a_watch_behind_a_cut_reports_once_and_resumes_on_its_own() -> None:
    store = MemoryStore()
    other = store.new_client()
    items = store.follow_prefix("/p/")
    snapshot = await anext(items)
    assert isinstance(snapshot, Snapshot)
    store.go_down()
    assert isinstance(await anext(items), ConnectionLost)
    waiting = asyncio.ensure_future(anext(items))
    await asyncio.sleep(60)  # retried all along, reported once
    assert not waiting.done()
    revision = await other.put("/p/x", b"1")
    store.come_back()
    assert await asyncio.wait_for(waiting, 5) == Resumed(snapshot.revision)
    assert await anext(items) == Change("/p/x", b"1", revision)
    await items.aclose()


async def test_history_is_compacted_on_its_own_past_its_limit() -> None:
    store = MemoryStore(history_limit=10)
    for n in range(100):
        await store.put("/k", str(n).encode())
    items = store.follow_prefix("/k")
    snapshot = await anext(items)
    assert isinstance(snapshot, Snapshot) and snapshot.items["/k"].value == b"99"
    # Fewer than 2 x limit events are kept; older revisions are compacted away.
    assert len(store._etcd.history) <= 20
    with pytest.raises(DiscoveryError, match="compacted"):
        await store.compact(2)
    await items.aclose()


async def test_closing_marks_the_client_closed_and_keeps_etcd() -> None:
    store = MemoryStore()
    other = store.new_client()
    async with store:
        await store.put("/k", b"v")
    assert store.closed and not other.closed
    assert (await other.get("/k")) is not None

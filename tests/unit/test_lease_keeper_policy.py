"""The lease keeper's policy against MemoryStore, in virtual time.

Outages shorter and longer than the TTL, a lease lost behind its back, an
owner that keeps failing, a rewrite asked for.

tests/integration/test_lease_keeper.py checks the same promises against a
real etcd, in real seconds; these take milliseconds, and reach the cases
that are slow or hard to stage there (an outage longer than the TTL, an
owner that keeps failing).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from discovery.errors import DiscoveryError
from discovery.lease_keeper import LeaseKeeper
from discovery.memory_store import MemoryStore
from tests.fixtures.virtual_clock import eventually, in_virtual_time

TTL_S = 10
KEY = "/policy/agent-record"


class Owner:
    """An agent's side of the keeper: writes its one record under each new lease."""

    def __init__(self, store: MemoryStore, failures: int = 0) -> None:
        self.store = store
        self.calls: list[int] = []  # every call's lease, failed or not
        self.leases: list[int] = []  # the leases it wrote under
        self.failures = failures  # how many calls fail before one succeeds

    async def on_new_lease(self, lease_id: int) -> None:
        self.calls.append(lease_id)
        if self.failures:
            self.failures -= 1
            raise DiscoveryError("owner cannot write yet")
        await self.store.put(KEY, b"wanted", lease_id)
        self.leases.append(lease_id)


@asynccontextmanager
async def running(keeper: LeaseKeeper) -> AsyncIterator[LeaseKeeper]:
    task = asyncio.create_task(keeper.run())
    try:
        await asyncio.wait_for(keeper.ready.wait(), 30)
        yield keeper
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def record_lease(store: MemoryStore) -> int | None:
    kv = await store.get(KEY)
    return None if kv is None else kv.lease


@in_virtual_time
async def test_an_outage_shorter_than_the_ttl_keeps_the_lease_and_writes_nothing_again() -> None:
    store = MemoryStore()
    observer = store.new_client()
    owner = Owner(store)
    async with running(LeaseKeeper(store, TTL_S, owner.on_new_lease, name="t")) as keeper:
        first = keeper.lease_id
        store.go_down()
        await asyncio.sleep(TTL_S * 0.7)  # several refreshes fail meanwhile
        assert await record_lease(observer) == first  # etcd kept it all along
        store.come_back()
        await asyncio.sleep(2 * keeper.refresh_interval_s)
        assert keeper.lease_id == first and keeper.ready.is_set()
        assert owner.leases == [first]
        assert await store.keep_alive(first) == TTL_S


@in_virtual_time
async def test_an_outage_longer_than_the_ttl_grants_a_new_lease_and_writes_again() -> None:
    store = MemoryStore()
    observer = store.new_client()
    owner = Owner(store)
    async with running(LeaseKeeper(store, TTL_S, owner.on_new_lease, name="t")) as keeper:
        first = keeper.lease_id
        store.go_down()
        # etcd lets the lease run out while the keeper cannot reach it.
        await eventually(lambda: _gone(observer))
        assert keeper.lease_id == first, "the keeper cannot know yet"
        store.come_back()
        second = await eventually(lambda: _record_under_new_lease(observer, first))
        assert owner.leases == [first, second]
        assert keeper.lease_id == second and keeper.ready.is_set()


@in_virtual_time
async def test_a_lease_revoked_behind_its_back_is_replaced_within_one_refresh() -> None:
    store = MemoryStore()
    observer = store.new_client()
    owner = Owner(store)
    async with running(LeaseKeeper(store, TTL_S, owner.on_new_lease, name="t")) as keeper:
        first = keeper.lease_id
        assert first is not None
        lost_at = asyncio.get_running_loop().time()
        store.expire_lease(first)
        assert await observer.get(KEY) is None
        second = await eventually(lambda: _record_under_new_lease(observer, first))
        took = asyncio.get_running_loop().time() - lost_at
        assert took <= keeper.refresh_interval_s + 0.5
        assert owner.leases == [first, second] and keeper.lease_id == second


@in_virtual_time
async def test_a_failing_owner_is_called_again_and_the_pending_lease_kept_alive() -> None:
    store = MemoryStore()
    observer = store.new_client()
    owner = Owner(store, failures=50)  # fails for longer than the TTL
    keeper = LeaseKeeper(store, TTL_S, owner.on_new_lease, name="t")
    task = asyncio.create_task(keeper.run())
    try:
        await asyncio.sleep(TTL_S * 2)
        assert not keeper.ready.is_set() and keeper.lease_id is None  # never published early
        assert owner.failures > 0
        await eventually(keeper.ready.is_set)
        # Kept alive while the owner failed: the one lease granted is the one written under.
        assert len(owner.calls) == 51 and set(owner.calls) == {keeper.lease_id}
        assert owner.leases == [keeper.lease_id]
        assert await record_lease(observer) == keeper.lease_id
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@in_virtual_time
async def test_request_rewrite_writes_again_under_the_same_lease_and_revoke_deletes() -> None:
    store = MemoryStore()
    observer = store.new_client()
    owner = Owner(store)
    async with running(LeaseKeeper(store, TTL_S, owner.on_new_lease, name="t")) as keeper:
        first = keeper.lease_id
        await observer.delete(KEY)  # by hand, the lease untouched
        keeper.request_rewrite()
        await eventually(lambda: _record_under(observer, first))
        assert owner.leases == [first, first]
        await keeper.revoke()
        assert await observer.get(KEY) is None
        assert await observer.lease_ttl(first or 0) == -1


async def _gone(store: MemoryStore) -> bool:
    return await store.get(KEY) is None


async def _record_under(store: MemoryStore, lease_id: int | None) -> bool:
    return await record_lease(store) == lease_id


async def _record_under_new_lease(store: MemoryStore, old: int | None) -> int | None:
    lease = await record_lease(store)
    return lease if lease not in (None, old) else None

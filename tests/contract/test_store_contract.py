"""One contract for both stores: every test here runs against a real etcd and against MemoryStore.

The orchestrators' policy tests (tests/unit/test_*_policy.py) run against
MemoryStore alone; this suite is what makes their verdicts hold for etcd.
Each test gets a ``Backend``:

* ``store``: the client under test, which ``cut()`` separates from etcd and
  ``heal()`` reconnects (real etcd: through a TCP proxy that resets its
  connections, ``cut_proxy``; memory: ``go_down`` / ``come_back``);
* ``other``: another client of the same etcd that is never cut, for the
  writes, compactions and reads that go on during an outage.

Waits on real conditions are bounded polls (``eventually``), never bare sleeps.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from discovery.errors import DiscoveryError, EtcdUnavailable, LeaseLost
from discovery.memory_store import MemoryStore
from discovery.store import EtcdStore
from discovery.store_api import (
    Change,
    ConnectionLost,
    Resumed,
    Snapshot,
    Store,
    WatchItem,
)
from labs.etcd_server import EtcdCluster
from tests.contract.cut_proxy import CutProxy
from tests.fixtures.etcd import settings_for

# Generous for etcd (a lease is reaped up to ~0.5 s after its TTL, a cut
# request takes its 1 s request timeout); MemoryStore needs far less.
WAIT_S = 10.0
LEASE_TTL_S = 2  # etcd's minimum with its default election timeout


@dataclass
class Backend:
    name: str
    store: Store
    other: Store
    prefix: str
    cut: Callable[[], None]
    heal: Callable[[], None]


@pytest.fixture(scope="module")
def contract_etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    """A member of its own: these tests compact its history."""
    cluster = EtcdCluster(1, base_dir=tmp_path_factory.mktemp("etcd-contract"))
    cluster.start()
    yield cluster
    cluster.remove()


@pytest.fixture(params=["memory", pytest.param("etcd", marks=pytest.mark.etcd)])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    prefix = f"/contract-{uuid.uuid4().hex[:8]}/"
    if request.param == "memory":
        memory = MemoryStore()
        yield Backend(
            "memory", memory, memory.new_client(), prefix, memory.go_down, memory.come_back
        )
        return
    cluster: EtcdCluster = request.getfixturevalue("contract_etcd")
    host, port = cluster.members[0].host, cluster.members[0].client_port
    proxy = await CutProxy(host, port).start()
    direct = settings_for(cluster.endpoints)
    through_proxy = dataclasses.replace(direct, etcd_endpoints=(proxy.url,))
    try:
        async with EtcdStore(through_proxy) as store, EtcdStore(direct) as other:
            yield Backend("etcd", store, other, prefix, proxy.cut, proxy.heal)
    finally:
        await proxy.close()


async def next_item(items: AsyncIterator[WatchItem], timeout_s: float = WAIT_S) -> WatchItem:
    return await asyncio.wait_for(items.__anext__(), timeout_s)


async def eventually(check: Callable[[], Awaitable[Any]], timeout_s: float = WAIT_S) -> Any:
    """Poll ``check`` until it returns something true; fail after ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        result = await check()
        if result:
            return result
        assert loop.time() < deadline, f"condition not met within {timeout_s} s"
        await asyncio.sleep(0.05)


def values(items: dict[str, Any]) -> dict[str, bytes]:
    return {key: kv.value for key, kv in items.items()}


# ---------------------------------------------------------------- key-value


async def test_put_get_list_delete_and_revisions(backend: Backend) -> None:
    store, p = backend.store, backend.prefix
    first = await store.put(p + "a", b"1")
    second = await store.put(p + "b", b"2")
    await store.put(p[:-1] + "-outside", b"x")  # shares the prefix's text, not its slash
    assert second == first + 1
    a = await store.get(p + "a")
    assert a is not None and (a.value, a.mod_revision, a.create_revision, a.lease) == (
        b"1", first, first, 0,
    )  # fmt: skip
    updated = await store.put(p + "a", b"1bis")
    a = await store.get(p + "a")
    assert a is not None and (a.mod_revision, a.create_revision) == (updated, first)

    items, listed_at = await store.get_prefix(p)
    assert list(items) == [p + "a", p + "b"]  # sorted, nothing outside the prefix
    assert values(items) == {p + "a": b"1bis", p + "b": b"2"}
    assert listed_at == updated

    assert await store.delete(p + "a") is True
    _, after_delete = await store.get_prefix(p)
    assert after_delete == updated + 1
    assert await store.delete(p + "a") is False
    assert await store.get(p + "a") is None
    _, unchanged = await store.get_prefix(p)
    assert unchanged == after_delete, "deleting nothing moved the revision"


async def test_delete_prefix_deletes_everything_under_it_in_one_revision(backend: Backend) -> None:
    store, p = backend.store, backend.prefix
    for name in ("x/1", "x/2", "x/3", "y"):
        await store.put(p + name, b"v")
    items = store.follow_prefix(p)
    snapshot = await next_item(items)
    assert isinstance(snapshot, Snapshot) and len(snapshot.items) == 4
    assert await store.delete_prefix(p + "x/") == 3
    deletes = [await next_item(items) for _ in range(3)]
    assert [(c.key, c.value) for c in deletes if isinstance(c, Change)] == [
        (p + "x/1", None), (p + "x/2", None), (p + "x/3", None),
    ]  # fmt: skip
    assert {c.revision for c in deletes if isinstance(c, Change)} == {snapshot.revision + 1}
    assert values((await store.get_prefix(p))[0]) == {p + "y": b"v"}
    assert await store.delete_prefix(p + "x/") == 0
    await items.aclose()


async def test_create_if_absent_lets_exactly_one_of_many_racing_writers_win(
    backend: Backend,
) -> None:
    store, other, key = backend.store, backend.other, backend.prefix + "claimed"
    results = await asyncio.gather(
        *((store if n % 2 else other).create_if_absent(key, str(n).encode()) for n in range(10))
    )
    assert results.count(True) == 1
    current = await store.get(key)
    assert current is not None and current.value == str(results.index(True)).encode()
    assert await store.create_if_absent(key, b"again") is False
    assert (await store.get(key)) == current


async def test_put_if_revision_lets_one_writer_replace_what_it_read(backend: Backend) -> None:
    store, other, key = backend.store, backend.other, backend.prefix + "k"
    await store.put(key, b"v1")
    read = await store.get(key)
    assert read is not None
    results = await asyncio.gather(
        store.put_if_revision(key, b"from-store", read.mod_revision),
        other.put_if_revision(key, b"from-other", read.mod_revision),
    )
    assert sorted(results) == [False, True]
    winner = b"from-store" if results[0] else b"from-other"
    now = await store.get(key)
    assert now is not None and now.value == winner and now.create_revision == read.create_revision
    assert await store.put_if_revision(key, b"stale", read.mod_revision) is False
    # An absent key has mod revision 0: "replace it if nobody wrote it" creates it.
    assert await store.put_if_revision(backend.prefix + "new", b"n", 0) is True
    assert await store.put_if_revision(backend.prefix + "new", b"n2", 0) is False


async def test_write_guarded_applies_all_at_once_only_while_the_guard_is_unmoved(
    backend: Backend,
) -> None:
    store, other, p = backend.store, backend.other, backend.prefix
    guard = await store.put(p + "guard", b"g")
    await store.put(p + "old", b"o")
    lease_id = await store.grant_lease(60)
    written = await store.write_guarded(p + "guard", guard, {p + "a": b"1", p + "b": b"2"},
                                        [p + "old", p + "never-there"], lease_id)  # fmt: skip
    assert written.applied and not written.resent
    items, revision = await other.get_prefix(p)
    assert set(items) == {p + "guard", p + "a", p + "b"}
    # One transaction: both puts at the same revision, under the lease.
    assert items[p + "a"].mod_revision == items[p + "b"].mod_revision == revision
    assert items[p + "a"].lease == items[p + "b"].lease == lease_id
    # The guard moves on (put again, even with the same value): nothing is written.
    await other.put(p + "guard", b"g")
    stale = await store.write_guarded(p + "guard", guard, {p + "c": b"3"}, [p + "a"], lease_id)
    assert not stale.applied
    assert set((await other.get_prefix(p))[0]) == {p + "guard", p + "a", p + "b"}
    # Deleted and made again, a key never returns to an old mod revision.
    await other.delete(p + "guard")
    assert not (await store.write_guarded(p + "guard", guard, {p + "c": b"3"})).applied
    assert (await store.write_guarded(p + "guard", 0, {p + "c": b"3"})).applied
    again = await other.put(p + "guard", b"g")
    assert not (await store.write_guarded(p + "guard", 0, {p + "d": b"4"})).applied
    assert (await store.write_guarded(p + "guard", again, {}, [p + "c"])).applied
    assert set((await other.get_prefix(p))[0]) == {p + "guard", p + "a", p + "b"}
    # Under a lease that is gone, with the guard holding: LeaseLost.
    await store.revoke_lease(lease_id)
    with pytest.raises(LeaseLost):
        await store.write_guarded(p + "guard", again, {p + "e": b"5"}, [], lease_id)


async def test_writes_under_a_lease_that_does_not_exist_raise_lease_lost(backend: Backend) -> None:
    store, p = backend.store, backend.prefix
    lease_id = await store.grant_lease(LEASE_TTL_S)
    await store.revoke_lease(lease_id)
    with pytest.raises(LeaseLost):
        await store.put(p + "a", b"x", lease_id)
    with pytest.raises(LeaseLost):
        await store.create_if_absent(p + "b", b"x", lease_id)
    with pytest.raises(LeaseLost):
        await store.put_if_revision(p + "c", b"x", 0, lease_id)
    # The lease is only looked at when the write happens: a failed compare is just False.
    await store.put(p + "d", b"there")
    assert await store.create_if_absent(p + "d", b"x", lease_id) is False
    assert (await store.get_prefix(p))[0].keys() == {p + "d"}


# ---------------------------------------------------------------- leases


async def test_lease_grant_ttl_keep_alive_and_revoke(backend: Backend) -> None:
    store, other, p = backend.store, backend.other, backend.prefix
    lease_id = await store.grant_lease(LEASE_TTL_S)
    assert lease_id > 0
    assert 0 <= await store.lease_ttl(lease_id) <= LEASE_TTL_S
    await store.put(p + "leased", b"x", lease_id)
    await store.put(p + "free", b"y")
    leased = await other.get(p + "leased")
    assert leased is not None and leased.lease == lease_id
    assert await store.keep_alive(lease_id) == LEASE_TTL_S

    # A put without a lease takes the key out from under it.
    await store.put(p + "moved", b"z", lease_id)
    await store.put(p + "moved", b"z")
    await store.revoke_lease(lease_id)
    assert await other.get(p + "leased") is None
    assert values((await other.get_prefix(p))[0]) == {p + "free": b"y", p + "moved": b"z"}
    assert await store.lease_ttl(lease_id) == -1
    with pytest.raises(LeaseLost):
        await store.keep_alive(lease_id)
    await store.revoke_lease(lease_id)  # gone already: not an error


async def test_a_lease_shorter_than_the_minimum_is_granted_the_minimum(backend: Backend) -> None:
    lease_id = await backend.store.grant_lease(1)
    assert await backend.store.keep_alive(lease_id) == LEASE_TTL_S
    await backend.store.revoke_lease(lease_id)


async def test_an_expiring_lease_deletes_its_keys_in_one_revision(backend: Backend) -> None:
    store, other, p = backend.store, backend.other, backend.prefix
    await store.put(p + "stays", b"s")
    items = other.follow_prefix(p)
    snapshot = await next_item(items)
    assert isinstance(snapshot, Snapshot)
    lease_id = await store.grant_lease(LEASE_TTL_S)
    for name in ("b", "a"):
        await store.put(p + name, b"x", lease_id)
    puts = [await next_item(items) for _ in range(2)]
    assert [item.key for item in puts if isinstance(item, Change)] == [p + "b", p + "a"]
    # Nobody keeps it alive: within its TTL (and etcd's reaping delay) both keys go.
    deletes = [await next_item(items, WAIT_S) for _ in range(2)]
    assert [(c.key, c.value) for c in deletes if isinstance(c, Change)] == [
        (p + "a", None), (p + "b", None),
    ]  # fmt: skip
    assert len({c.revision for c in deletes if isinstance(c, Change)}) == 1
    assert await store.lease_ttl(lease_id) == -1
    with pytest.raises(LeaseLost):
        await store.keep_alive(lease_id)
    assert values((await other.get_prefix(p))[0]) == {p + "stays": b"s"}
    await items.aclose()


async def test_keep_alive_holds_a_lease_past_its_ttl(backend: Backend) -> None:
    store, p = backend.store, backend.prefix
    lease_id = await store.grant_lease(LEASE_TTL_S)
    await store.put(p + "kept", b"x", lease_id)
    loop = asyncio.get_running_loop()
    until = loop.time() + LEASE_TTL_S * 1.5
    while loop.time() < until:  # refreshed every TTL/3, past the TTL
        await asyncio.sleep(LEASE_TTL_S / 3)
        assert await store.keep_alive(lease_id) == LEASE_TTL_S
    assert (await backend.other.get(p + "kept")) is not None
    await store.revoke_lease(lease_id)


# ---------------------------------------------------------------- outages


async def test_a_cut_client_gets_etcd_unavailable_and_a_short_outage_keeps_the_lease(
    backend: Backend,
) -> None:
    store, p = backend.store, backend.prefix
    lease_id = await store.grant_lease(10)
    await store.put(p + "k", b"v", lease_id)
    backend.cut()
    for request in (
        store.get(p + "k"),
        store.put(p + "k", b"v2"),
        store.keep_alive(lease_id),
        store.get_prefix(p),
    ):
        with pytest.raises(EtcdUnavailable):
            await request
    assert (await backend.other.get(p + "k")) is not None  # etcd itself went on
    backend.heal()
    await eventually(lambda: _answers(store, p + "k"))
    assert await store.keep_alive(lease_id) == 10
    kv = await store.get(p + "k")
    assert kv is not None and kv.value == b"v" and kv.lease == lease_id
    await store.revoke_lease(lease_id)


async def test_a_lease_runs_out_while_its_client_is_cut_off(backend: Backend) -> None:
    store, other, p = backend.store, backend.other, backend.prefix
    lease_id = await store.grant_lease(LEASE_TTL_S)
    await store.put(p + "record", b"r", lease_id)
    backend.cut()
    await eventually(lambda: _gone(other, p + "record"))
    backend.heal()
    await eventually(lambda: _answers(store, p + "anything"))
    with pytest.raises(LeaseLost):
        await store.keep_alive(lease_id)
    with pytest.raises(LeaseLost):
        await store.put(p + "record", b"r", lease_id)


# ---------------------------------------------------------------- watching


async def test_follow_prefix_starts_with_a_snapshot_then_changes_in_revision_order(
    backend: Backend,
) -> None:
    store, other, p = backend.store, backend.other, backend.prefix
    await other.put(p + "before", b"0")
    await other.put(p[:-1] + "-outside", b"x")
    items = store.follow_prefix(p)
    snapshot = await next_item(items)
    assert isinstance(snapshot, Snapshot)
    assert values(snapshot.items) == {p + "before": b"0"}
    written = [
        await other.put(p + "one", b"1"),
        await other.put(p[:-1] + "-outside", b"y"),  # not ours: never seen
        await other.put(p + "two", b"2"),
        await other.put(p + "one", b"1bis"),
    ]
    await other.delete(p + "before")
    _, deleted_at = await other.get_prefix(p)
    seen = [await next_item(items) for _ in range(4)]
    assert seen == [
        Change(p + "one", b"1", written[0]),
        Change(p + "two", b"2", written[2]),
        Change(p + "one", b"1bis", written[3]),
        Change(p + "before", None, deleted_at),
    ]
    assert snapshot.revision < written[0]
    await items.aclose()


async def test_a_watch_resumes_from_its_revision_after_an_outage(backend: Backend) -> None:
    store, other, p = backend.store, backend.other, backend.prefix
    await other.put(p + "before", b"0")
    items = store.follow_prefix(p)
    snapshot = await next_item(items)
    assert isinstance(snapshot, Snapshot)
    live = await other.put(p + "live", b"1")
    assert await next_item(items) == Change(p + "live", b"1", live)

    backend.cut()
    lost = await next_item(items)
    assert isinstance(lost, ConnectionLost) and lost.reason
    # Written while this client is cut off: it must see each, in order, once back.
    during = await other.put(p + "during", b"2")
    await other.delete(p + "before")
    _, deleted_at = await other.get_prefix(p)
    backend.heal()
    seen = [await next_item(items) for _ in range(3)]
    assert seen == [
        Resumed(live),
        Change(p + "during", b"2", during),
        Change(p + "before", None, deleted_at),
    ]
    after = await other.put(p + "after", b"3")
    assert await next_item(items) == Change(p + "after", b"3", after)
    await items.aclose()


async def test_a_watch_lists_again_when_its_revision_was_compacted(backend: Backend) -> None:
    store, other, p = backend.store, backend.other, backend.prefix
    await other.put(p + "a", b"1")
    items = store.follow_prefix(p)
    first = await next_item(items)
    assert isinstance(first, Snapshot)
    # While this consumer has not opened its watch yet, history moves on and
    # is compacted past the revision it will ask to resume from.
    await other.put(p + "b", b"2")
    await other.delete(p + "a")
    latest = await other.put(p + "c", b"3")
    await other.compact(latest)
    again = await next_item(items)
    assert isinstance(again, Snapshot)
    assert again.revision >= latest
    assert values(again.items) == {p + "b": b"2", p + "c": b"3"}
    later = await other.put(p + "d", b"4")
    assert await next_item(items) == Change(p + "d", b"4", later)
    await items.aclose()


async def test_compaction_during_an_outage_is_answered_by_resumed_then_a_relist(
    backend: Backend,
) -> None:
    """etcd accepts the watch from the compacted revision and only then cancels
    it: the consumer sees Resumed, then a whole new Snapshot, never a gap."""
    store, other, p = backend.store, backend.other, backend.prefix
    await other.put(p + "a", b"1")
    items = store.follow_prefix(p)
    snapshot = await next_item(items)
    assert isinstance(snapshot, Snapshot)
    backend.cut()
    assert isinstance(await next_item(items), ConnectionLost)
    await other.put(p + "b", b"2")
    await other.delete(p + "a")
    latest = await other.put(p + "c", b"3")
    await other.compact(latest)
    backend.heal()
    assert await next_item(items) == Resumed(snapshot.revision)
    relisted = await next_item(items)
    assert isinstance(relisted, Snapshot) and relisted.revision >= latest
    assert values(relisted.items) == {p + "b": b"2", p + "c": b"3"}
    later = await other.put(p + "d", b"4")
    assert await next_item(items) == Change(p + "d", b"4", later)
    await items.aclose()


async def test_compact_refuses_a_future_or_already_compacted_revision(backend: Backend) -> None:
    store, p = backend.store, backend.prefix
    first = await store.put(p + "k", b"1")
    latest = await store.put(p + "k", b"2")
    with pytest.raises(DiscoveryError, match="future revision") as future:
        await store.compact(latest + 100)
    assert not isinstance(future.value, EtcdUnavailable)
    await store.compact(latest)
    with pytest.raises(DiscoveryError, match="compacted"):
        await store.compact(first)
    kv = await store.get(p + "k")  # the latest values outlive the history
    assert kv is not None and (kv.value, kv.create_revision, kv.mod_revision) == (
        b"2", first, latest,
    )  # fmt: skip


async def _answers(store: Store, key: str) -> bool:
    try:
        await store.get(key)
    except EtcdUnavailable:
        return False
    return True


async def _gone(store: Store, key: str) -> bool:
    return await store.get(key) is None


def test_both_backends_are_stores() -> None:
    """The contract's premise, as mypy checks it in both modules: same methods, same shapes."""
    import inspect

    wanted = {
        name
        for name, member in inspect.getmembers(Store)
        if not name.startswith("_") and callable(member)
    }
    for implementation in (EtcdStore, MemoryStore):
        for name in wanted:
            theirs = inspect.signature(getattr(implementation, name))
            ours = inspect.signature(getattr(Store, name))
            assert list(theirs.parameters) == list(ours.parameters), (implementation, name)
    assert {"get", "put", "follow_prefix", "keep_alive", "compact"} <= wanted

"""The etcd store against a real etcd: leases, transactions, watch resume and re-list."""

import asyncio
import time

import pytest

from discovery.errors import EtcdUnavailable, LeaseLost
from discovery.store import Change, ConnectionLost, EtcdStore, Resumed, Snapshot
from tests.fixtures.etcd import settings_for

pytestmark = pytest.mark.etcd


async def next_item(items, timeout_s=10.0):
    return await asyncio.wait_for(items.__anext__(), timeout_s)


async def test_put_get_list_delete(etcd_settings):
    async with EtcdStore(etcd_settings) as store:
        root = etcd_settings.prefix
        revision = await store.put(f"{root}/a", b"1")
        await store.put(f"{root}/b", b"2")
        value = await store.get(f"{root}/a")
        assert value is not None and value.value == b"1" and value.mod_revision == revision
        items, listed_at = await store.get_prefix(f"{root}/")
        assert {k: kv.value for k, kv in items.items()} == {f"{root}/a": b"1", f"{root}/b": b"2"}
        assert listed_at > revision
        assert await store.delete(f"{root}/a") is True
        assert await store.delete(f"{root}/a") is False
        assert await store.get(f"{root}/a") is None
        assert await store.delete_prefix(f"{root}/") == 1


async def test_key_under_a_two_second_lease_disappears_after_expiry(etcd_settings):
    async with EtcdStore(etcd_settings) as store:
        key = f"{etcd_settings.prefix}/leased"
        lease_id = await store.grant_lease(2)
        await store.put(key, b"x", lease_id)
        assert (await store.get(key)).lease == lease_id
        deadline = time.monotonic() + 5
        while await store.get(key) is not None:
            assert time.monotonic() < deadline, "key outlived its 2 s lease by 3 s"
            await asyncio.sleep(0.1)
        assert await store.lease_ttl(lease_id) == -1
        with pytest.raises(LeaseLost):
            await store.keep_alive(lease_id)


async def test_keep_alive_extends_and_revoke_deletes(etcd_settings):
    async with EtcdStore(etcd_settings) as store:
        key = f"{etcd_settings.prefix}/kept"
        lease_id = await store.grant_lease(2)
        await store.put(key, b"x", lease_id)
        for _ in range(4):  # 3 s in all: past the TTL, kept alive
            await asyncio.sleep(0.75)
            assert await store.keep_alive(lease_id) == 2
        assert await store.get(key) is not None
        await store.revoke_lease(lease_id)
        assert await store.get(key) is None
        await store.revoke_lease(lease_id)  # already gone: not an error


async def test_create_if_absent_lets_exactly_one_writer_win(etcd_settings):
    async with EtcdStore(etcd_settings) as store:
        key = f"{etcd_settings.prefix}/claimed"
        results = await asyncio.gather(
            *(store.create_if_absent(key, str(n).encode()) for n in range(10))
        )
        assert results.count(True) == 1
        winner = results.index(True)
        assert (await store.get(key)).value == str(winner).encode()
        current = await store.get(key)
        assert await store.put_if_revision(key, b"new", current.mod_revision) is True
        assert await store.put_if_revision(key, b"stale", current.mod_revision) is False


async def test_watch_resumes_from_last_revision_after_etcd_restarts(own_etcd):
    settings = settings_for(own_etcd.endpoints)
    member = own_etcd.members[0]
    prefix = f"{settings.prefix}/"
    async with EtcdStore(settings) as store, EtcdStore(settings) as writer:
        await writer.put(prefix + "before", b"1")
        items = store.follow_prefix(prefix)
        snapshot = await next_item(items)
        assert isinstance(snapshot, Snapshot) and set(snapshot.items) == {prefix + "before"}
        await writer.put(prefix + "live", b"2")
        assert await next_item(items) == Change(prefix + "live", b"2", snapshot.revision + 1)

        member.stop()
        lost = await next_item(items)
        assert isinstance(lost, ConnectionLost)
        member.start()
        await writer.put(prefix + "after", b"3")  # written before the watcher is back
        await writer.delete(prefix + "before")
        seen = [await next_item(items) for _ in range(3)]
        assert isinstance(seen[0], Resumed) and seen[0].revision == snapshot.revision + 1
        assert [(c.key, c.value) for c in seen[1:]] == [
            (prefix + "after", b"3"),
            (prefix + "before", None),
        ]
        await items.aclose()


async def test_watch_lists_again_when_its_revision_was_compacted(own_etcd):
    settings = settings_for(own_etcd.endpoints)
    prefix = f"{settings.prefix}/"
    async with EtcdStore(settings) as store, EtcdStore(settings) as writer:
        await writer.put(prefix + "a", b"1")
        items = store.follow_prefix(prefix)
        first = await next_item(items)
        assert isinstance(first, Snapshot)
        # While this consumer has not opened its watch yet, history moves on
        # and is compacted past the revision it will ask to resume from.
        await writer.put(prefix + "b", b"2")
        await writer.delete(prefix + "a")
        latest = await writer.put(prefix + "c", b"3")
        await writer.compact(latest)
        again = await next_item(items)
        assert isinstance(again, Snapshot)
        assert {k: kv.value for k, kv in again.items.items()} == {
            prefix + "b": b"2",
            prefix + "c": b"3",
        }
        await writer.put(prefix + "d", b"4")
        assert (await next_item(items)).key == prefix + "d"
        await items.aclose()


async def test_requests_move_to_the_next_endpoint_when_one_is_down(etcd_server):
    dead = "http://127.0.0.1:1"
    settings = settings_for([dead, *etcd_server.endpoints])
    async with EtcdStore(settings) as store:
        await store.put(f"{settings.prefix}/x", b"1")
        assert store.current_endpoint == etcd_server.endpoints[0]


async def test_no_endpoint_answering_names_every_endpoint_tried():
    settings = settings_for(["http://127.0.0.1:1", "http://127.0.0.1:2"])
    async with EtcdStore(settings) as store:
        started = time.monotonic()
        with pytest.raises(EtcdUnavailable) as caught:
            await store.get("/x")
        assert time.monotonic() - started < 5
    assert "http://127.0.0.1:1" in str(caught.value) and "http://127.0.0.1:2" in str(caught.value)


async def test_watch_follows_a_member_that_moves_in_a_cluster(tmp_path):
    from labs.etcd_server import EtcdCluster

    with EtcdCluster(3, base_dir=tmp_path / "cluster") as cluster:
        settings = settings_for(cluster.endpoints)
        prefix = f"{settings.prefix}/"
        async with EtcdStore(settings) as store:
            items = store.follow_prefix(prefix)
            assert isinstance(await next_item(items), Snapshot)
            cluster.members[0].stop()  # the member the watcher talks to
            writer_settings = settings_for(cluster.endpoints[1:], prefix=settings.prefix)
            async with EtcdStore(writer_settings) as writer:
                await writer.put(prefix + "k", b"v")
            seen = []
            while not any(isinstance(item, Change) for item in seen):
                seen.append(await next_item(items))
            assert seen[-1] == Change(prefix + "k", b"v", seen[-1].revision)
            await items.aclose()


async def test_a_burst_of_concurrent_first_requests_all_land(etcd_settings):
    async with EtcdStore(etcd_settings) as store:
        keys = [f"{etcd_settings.prefix}/burst/{n}" for n in range(200)]
        await asyncio.gather(*(store.put(key, b"x") for key in keys))
        items, _ = await store.get_prefix(f"{etcd_settings.prefix}/burst/")
        assert sorted(items) == sorted(keys)

"""The lease keeper holds a lease through an outage and replaces a lost one."""

import asyncio
import logging

import pytest

from discovery.errors import DiscoveryError
from discovery.lease_keeper import LeaseKeeper
from discovery.store import EtcdStore
from labs.etcd_server import etcdctl
from labs.testing.waiting import eventually
from tests.fixtures.etcd import settings_for

pytestmark = pytest.mark.etcd


async def test_outage_shorter_than_ttl_keeps_the_lease_and_a_revoked_lease_is_replaced(own_etcd):
    settings = settings_for(own_etcd.endpoints)
    key = f"{settings.prefix}/agent-record"
    leases_seen: list[int] = []
    async with EtcdStore(settings) as store, EtcdStore(settings) as observer:

        async def write_records(lease_id: int) -> None:
            leases_seen.append(lease_id)
            await store.put(key, b"wanted", lease_id)

        keeper = LeaseKeeper(store, ttl_s=3, on_new_lease=write_records, name="test")
        task = asyncio.create_task(keeper.run())
        try:
            await asyncio.wait_for(keeper.ready.wait(), 5)
            first = keeper.lease_id
            own_etcd.members[0].stop()
            await asyncio.sleep(1.0)
            own_etcd.members[0].start()
            await asyncio.sleep(2 * keeper.refresh_interval_s)
            assert keeper.lease_id == first and leases_seen == [first]
            assert (await observer.get(key)).lease == first

            # Someone revokes the lease: the record goes, and comes back under a new one.
            etcdctl(own_etcd.endpoints, "lease", "revoke", f"{first:x}")
            record = await eventually(
                lambda: _record_with_new_lease(observer, key, first), 5, "the record re-leased"
            )
            assert record.value == b"wanted"
            assert leases_seen == [first, record.lease]
        finally:
            task.cancel()
            await keeper.revoke()
        assert await observer.get(key) is None


async def _record_with_new_lease(store, key, old_lease):
    record = await store.get(key)
    return record if record is not None and record.lease not in (0, old_lease) else None


async def test_lease_is_published_only_after_its_callback_succeeded_and_a_failed_one_is_retried(
    own_etcd,
):
    settings = settings_for(own_etcd.endpoints)
    calls: list[int] = []
    may_succeed = asyncio.Event()

    async def flaky_write(lease_id: int) -> None:
        calls.append(lease_id)
        if not may_succeed.is_set():
            raise DiscoveryError("records could not be written yet")

    async with EtcdStore(settings) as store:
        keeper = LeaseKeeper(store, ttl_s=2, on_new_lease=flaky_write, name="test")
        task = asyncio.create_task(keeper.run())
        try:
            await eventually(lambda: len(calls) >= 3, 10, "three tries of the callback")
            # Retried under the same lease, kept alive meanwhile (3 tries > 1 TTL
            # would have lost a lease nobody refreshed), never published.
            assert len(set(calls)) == 1
            assert keeper.lease_id is None and not keeper.ready.is_set()
            await asyncio.sleep(2.5)  # longer than the TTL: the lease must survive
            assert await store.lease_ttl(calls[0]) > 0
            may_succeed.set()
            await asyncio.wait_for(keeper.ready.wait(), 5)
            assert keeper.lease_id == calls[0]
            assert not task.done()
        finally:
            task.cancel()
            await keeper.revoke()


async def test_etcd_gone_longer_than_the_ttl_is_survived_and_logged_once_each_way(own_etcd, caplog):
    settings = settings_for(own_etcd.endpoints)
    leases_seen: list[int] = []

    async def write_records(lease_id: int) -> None:
        leases_seen.append(lease_id)

    caplog.set_level(logging.INFO, logger="discovery.lease_keeper")
    async with EtcdStore(settings) as store:
        keeper = LeaseKeeper(store, ttl_s=2, on_new_lease=write_records, name="test")
        task = asyncio.create_task(keeper.run())
        try:
            await asyncio.wait_for(keeper.ready.wait(), 5)
            first = keeper.lease_id
            own_etcd.members[0].stop()
            await eventually(lambda: "lost etcd" in caplog.text, 10, "the outage logged")
            await asyncio.sleep(3)  # past the TTL, with the keeper retrying all along
            own_etcd.members[0].start()
            await eventually(lambda: "etcd reachable again" in caplog.text, 15, "the end logged")
            # etcd gives surviving leases a fresh TTL when it restarts, so the
            # first lease may still be there; either way the records are
            # written under the lease the keeper holds.
            await asyncio.wait_for(keeper.ready.wait(), 5)
            assert leases_seen[0] == first and leases_seen[-1] == keeper.lease_id
            assert await store.lease_ttl(keeper.lease_id) > 0
            assert not task.done()
            assert caplog.text.count("lost etcd") == 1
            assert caplog.text.count("etcd reachable again") == 1
        finally:
            task.cancel()
            await keeper.revoke()

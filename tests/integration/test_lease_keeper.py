"""The lease keeper holds a lease through an outage and replaces a lost one."""

import asyncio
import time

import pytest

from discovery.etcd_server import etcdctl
from discovery.lease_keeper import LeaseKeeper
from discovery.store import EtcdStore
from tests.fixtures.etcd import settings_for

pytestmark = pytest.mark.etcd


async def eventually(check, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


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
                lambda: _record_with_new_lease(observer, key, first), timeout_s=5
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

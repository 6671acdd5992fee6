"""The subnet allocator against a real etcd: races, exhaustion, reuse, memory, config."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import random

import pytest

from agent.network.allocator import SubnetAllocator
from agent.network.errors import SubnetExhausted
from discovery import flannel
from discovery.settings import Settings
from discovery.store import EtcdStore

pytestmark = pytest.mark.etcd

A = ipaddress.IPv4Address
N = ipaddress.IPv4Network


async def put_config(settings: Settings, config: str) -> None:
    async with EtcdStore(settings) as store:
        await store.put(flannel.config_key(settings.network_prefix), config.encode())


async def acquire_as(
    settings: Settings, host: int, *, seed: int | None = None, remembered: N | None = None
) -> flannel.SubnetLease:
    """One host's allocation, with its own etcd connection and etcd lease."""
    async with EtcdStore(settings) as store:
        allocator = SubnetAllocator(
            store, settings.network_prefix, A(f"192.168.50.{host}"), random.Random(seed)
        )
        config = await allocator.read_config()
        lease_id = await store.grant_lease(60)
        return await allocator.acquire(config, lease_id, f"0e:00:00:00:00:{host:02x}", remembered)


async def lease_keys(settings: Settings) -> dict:
    async with EtcdStore(settings) as store:
        items, _ = await store.get_prefix(flannel.subnets_prefix(settings.network_prefix))
    return items


async def test_twenty_agents_at_once_get_twenty_distinct_subnets(etcd_settings):
    # 31 subnets for 20 hosts: plenty of collisions for the transactions to sort out.
    await put_config(etcd_settings, '{"Network": "10.20.0.0/19", "Backend": {"Type": "vxlan"}}')
    leases = await asyncio.gather(*(acquire_as(etcd_settings, host) for host in range(1, 21)))
    subnets = [lease.subnet for lease in leases]
    assert len(set(subnets)) == 20
    stored = await lease_keys(etcd_settings)
    assert len(stored) == 20
    for lease in leases:
        kv = stored[flannel.subnet_key(etcd_settings.network_prefix, lease.subnet)]
        assert flannel.parse_subnet_lease(etcd_settings.network_prefix, kv.key, kv.value) == lease
        assert kv.lease != 0  # attached to an etcd lease


async def test_lease_value_is_flannels_json(etcd_settings):
    await put_config(
        etcd_settings, '{"Network": "10.21.0.0/16", "Backend": {"Type": "vxlan", "VNI": 3}}'
    )
    lease = await acquire_as(etcd_settings, 7)
    kv = (await lease_keys(etcd_settings))[
        flannel.subnet_key(etcd_settings.network_prefix, lease.subnet)
    ]
    assert kv.key.endswith(f"/subnets/{lease.subnet.network_address}-24")
    assert json.loads(kv.value) == {
        "PublicIP": "192.168.50.7",
        "BackendType": "vxlan",
        "BackendData": {"VNI": 3, "VtepMAC": "0e:00:00:00:00:07"},
    }


async def test_a_22_with_24s_holds_four_hosts_and_the_fifth_gets_a_clear_error(etcd_settings):
    await put_config(
        etcd_settings,
        '{"Network": "10.22.0.0/22", "SubnetLen": 24, "SubnetMin": "10.22.0.0", '
        '"Backend": {"Type": "vxlan"}}',
    )
    leases = await asyncio.gather(*(acquire_as(etcd_settings, host) for host in range(1, 5)))
    assert {lease.subnet for lease in leases} == {N(f"10.22.{i}.0/24") for i in range(4)}
    with pytest.raises(
        SubnetExhausted, match=r"no free subnet: all 4 /24 subnets .* 10\.22\.0\.0/22"
    ):
        await acquire_as(etcd_settings, 5)


async def test_with_flannels_default_subnet_min_a_22_holds_three(etcd_settings):
    await put_config(etcd_settings, '{"Network": "10.23.0.0/22"}')
    for host in range(1, 4):
        await acquire_as(etcd_settings, host)
    with pytest.raises(SubnetExhausted, match="all 3 /24 subnets"):
        await acquire_as(etcd_settings, 4)


async def test_a_restarted_host_takes_its_existing_lease_under_its_new_etcd_lease(etcd_settings):
    await put_config(etcd_settings, '{"Network": "10.24.0.0/16"}')
    first = await acquire_as(etcd_settings, 9, seed=1)
    before = (await lease_keys(etcd_settings))[
        flannel.subnet_key(etcd_settings.network_prefix, first.subnet)
    ]
    second = await acquire_as(etcd_settings, 9, seed=2)  # another random pick if it had to choose
    after = await lease_keys(etcd_settings)
    assert second.subnet == first.subnet
    assert len(after) == 1
    assert after[before.key].lease != before.lease  # moved onto the new etcd lease


async def test_the_remembered_subnet_is_taken_back_when_free(etcd_settings):
    await put_config(etcd_settings, '{"Network": "10.25.0.0/16"}')
    wanted = N("10.25.77.0/24")
    lease = await acquire_as(etcd_settings, 3, remembered=wanted)
    assert lease.subnet == wanted
    # Another host remembering the same subnet gets a different one.
    other = await acquire_as(etcd_settings, 4, remembered=wanted)
    assert other.subnet != wanted


async def test_an_old_lease_of_this_host_is_deleted_when_it_claims_another(etcd_settings):
    await put_config(etcd_settings, '{"Network": "10.26.0.0/16"}')
    async with EtcdStore(etcd_settings) as store:
        stale = flannel.SubnetLease(N("10.26.5.0/25"), A("192.168.50.3"), "0e:00:00:00:00:03")
        await store.put(
            flannel.subnet_key(etcd_settings.network_prefix, stale.subnet),
            flannel.encode_subnet_lease(stale),
        )
    lease = await acquire_as(etcd_settings, 3)
    assert list(await lease_keys(etcd_settings)) == [
        flannel.subnet_key(etcd_settings.network_prefix, lease.subnet)
    ]


async def test_renew_rewrites_a_deleted_lease_but_not_one_taken_over(etcd_settings):
    await put_config(etcd_settings, '{"Network": "10.27.0.0/16"}')
    async with EtcdStore(etcd_settings) as store:
        allocator = SubnetAllocator(store, etcd_settings.network_prefix, A("192.168.50.1"))
        config = await allocator.read_config()
        lease_id = await store.grant_lease(60)
        lease = await allocator.acquire(config, lease_id, "0e:00:00:00:00:01")
        key = flannel.subnet_key(etcd_settings.network_prefix, lease.subnet)
        await store.delete(key)
        assert await allocator.renew(lease, lease_id)
        assert (await store.get(key)) is not None
        thief = flannel.SubnetLease(lease.subnet, A("192.168.50.2"), "0e:00:00:00:00:02")
        await store.put(key, flannel.encode_subnet_lease(thief))
        assert not await allocator.renew(lease, lease_id)


async def test_waits_for_a_valid_config_and_names_the_bad_field(etcd_settings):
    problems: list[str] = []
    async with EtcdStore(etcd_settings) as store:
        allocator = SubnetAllocator(store, etcd_settings.network_prefix, A("192.168.50.1"))
        waiting = asyncio.create_task(allocator.wait_for_config(0.05, problems.append))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        await put_config(etcd_settings, '{"Network": "10.28.0.0/16", "SubnetLen": 8}')
        await asyncio.sleep(0.3)
        assert not waiting.done()
        await put_config(etcd_settings, '{"Network": "10.28.0.0/16"}')
        config = await asyncio.wait_for(waiting, 5)
    assert config.network == N("10.28.0.0/16")
    assert len(problems) == 2  # each problem once, not once per poll
    assert "no network config at" in problems[0]
    assert "SubnetLen 8" in problems[1]

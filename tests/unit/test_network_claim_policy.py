"""The network agent's subnet claims against MemoryStore, in virtual time, without netlink.

The allocator (list, choose, claim in one transaction) and the agent's two
callers of it that touch no kernel state: the start-up claim, which waits
out etcd, and the lease keeper's callback, which claims the same subnet
again under a new etcd lease. (Moving to another subnet reprograms the
device: tests/integration/test_network_overlay.py covers that, as root.)
"""

from __future__ import annotations

import asyncio
import ipaddress
import random

from agent.network.agent import NetworkAgent, NetworkOptions
from agent.network.allocator import SubnetAllocator
from discovery import flannel
from discovery.flannel import NetworkConfig, SubnetLease
from discovery.lease_keeper import LeaseKeeper
from discovery.memory_store import MemoryStore
from discovery.settings import Settings
from tests.fixtures.virtual_clock import eventually, in_virtual_time

SETTINGS = Settings(network_prefix="/policy/coreos.com/network")
PREFIX = SETTINGS.network_prefix
CONFIG = b'{"Network": "10.5.0.0/16", "Backend": {"Type": "vxlan"}}'
REMEMBERED = ipaddress.IPv4Network("10.5.7.0/24")
LEASE_TTL_S = 60


def address(host: int) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(f"192.168.100.{10 + host}")


def mac(host: int) -> str:
    return f"0e:00:00:00:00:{host:02x}"


async def network(store: MemoryStore) -> NetworkConfig:
    await store.put(flannel.config_key(PREFIX), CONFIG)
    return flannel.parse_network_config(CONFIG)


def allocator(store: MemoryStore, host: int) -> SubnetAllocator:
    return SubnetAllocator(store, PREFIX, address(host), random.Random(host))


async def claim(
    store: MemoryStore, config: NetworkConfig, host: int, remembered: ipaddress.IPv4Network | None
) -> tuple[SubnetLease, int]:
    lease_id = await store.grant_lease(LEASE_TTL_S)
    lease = await allocator(store, host).acquire(config, lease_id, mac(host), remembered)
    return lease, lease_id


async def holder(store: MemoryStore, subnet: ipaddress.IPv4Network) -> tuple[str, int] | None:
    """(PublicIP, etcd lease) of the key holding ``subnet``, or None."""
    kv = await store.get(flannel.subnet_key(PREFIX, subnet))
    if kv is None:
        return None
    return str(flannel.parse_subnet_lease(PREFIX, kv.key, kv.value).public_ip), kv.lease


@in_virtual_time
async def test_hosts_racing_for_one_remembered_subnet_each_end_up_with_their_own() -> None:
    etcd = MemoryStore()
    config = await network(etcd)
    clients = {host: etcd.new_client() for host in range(1, 7)}
    claims = await asyncio.gather(
        *(claim(client, config, host, REMEMBERED) for host, client in clients.items())
    )
    subnets = [lease.subnet for lease, _ in claims]
    assert len(set(subnets)) == len(clients)
    assert subnets.count(REMEMBERED) == 1
    for host, (lease, lease_id) in zip(clients, claims, strict=True):
        assert await holder(etcd, lease.subnet) == (str(address(host)), lease_id)


@in_virtual_time
async def test_a_subnet_another_host_holds_is_never_taken_over() -> None:
    etcd = MemoryStore()
    config = await network(etcd)
    first, first_lease = await claim(etcd.new_client(), config, 1, REMEMBERED)
    assert first.subnet == REMEMBERED
    second, _ = await claim(etcd.new_client(), config, 2, REMEMBERED)
    assert second.subnet != REMEMBERED
    assert await holder(etcd, REMEMBERED) == (str(address(1)), first_lease)


@in_virtual_time
async def test_start_up_waits_out_an_etcd_outage_and_claims_the_remembered_subnet() -> None:
    store = MemoryStore()
    config = await network(store.new_client())
    agent = NetworkAgent(NetworkOptions(subnet_lease_ttl_s=LEASE_TTL_S), SETTINGS, store)
    agent.allocator, agent.config, agent.vtep_mac = allocator(store, 1), config, mac(1)
    # The etcd lease was granted, then etcd was lost for longer than its TTL.
    granted = agent.lease_id = await store.grant_lease(LEASE_TTL_S)
    store.go_down()
    claiming = asyncio.create_task(agent._first_claim(REMEMBERED))
    await asyncio.sleep(2 * LEASE_TTL_S)
    assert not claiming.done(), "an unreachable etcd is waited out, not an error"
    store.come_back()
    lease = await asyncio.wait_for(claiming, 30)
    assert lease.subnet == REMEMBERED
    assert agent.lease_id not in (None, granted), "the expired lease was replaced"
    assert await holder(store, REMEMBERED) == (str(address(1)), agent.lease_id)


@in_virtual_time
async def test_after_a_lost_lease_the_same_subnet_is_claimed_again_when_still_free() -> None:
    store = MemoryStore()
    observer = store.new_client()
    config = await network(store)
    own, first = await claim(store, config, 1, REMEMBERED)
    agent = NetworkAgent(NetworkOptions(subnet_lease_ttl_s=LEASE_TTL_S), SETTINGS, store)
    agent.allocator, agent.config, agent.vtep_mac = allocator(store, 1), config, mac(1)
    agent.own, agent.lease_id = own, first
    keeper = LeaseKeeper(store, LEASE_TTL_S, agent._claim_under, name="network", lease_id=first)
    task = asyncio.create_task(keeper.run())
    try:
        store.go_down()  # cut off for longer than the TTL: etcd drops the subnet key
        await eventually(lambda: _free(observer, REMEMBERED), timeout_s=2 * LEASE_TTL_S)
        store.come_back()
        second = await eventually(lambda: _held_under_new_lease(observer, first))
        assert keeper.lease_id == agent.lease_id == second
        assert agent.own == own  # same subnet, same MAC: nothing to reprogram
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@in_virtual_time
async def test_after_a_lost_lease_a_subnet_taken_meanwhile_is_left_to_its_new_holder() -> None:
    store = MemoryStore()
    config = await network(store)
    own, first = await claim(store, config, 1, REMEMBERED)
    store.expire_lease(first)
    other = store.new_client()
    taken, taker_lease = await claim(other, config, 2, REMEMBERED)  # it remembered it too
    assert taken.subnet == REMEMBERED
    second = await store.grant_lease(LEASE_TTL_S)
    host1 = allocator(store, 1)
    assert await host1.renew(own, second) is False
    moved = await host1.acquire(config, second, mac(1), None)
    assert moved.subnet != REMEMBERED
    assert await holder(store, REMEMBERED) == (str(address(2)), taker_lease)
    assert await holder(store, moved.subnet) == (str(address(1)), second)


async def _free(store: MemoryStore, subnet: ipaddress.IPv4Network) -> bool:
    return await holder(store, subnet) is None


async def _held_under_new_lease(store: MemoryStore, old: int) -> int | None:
    found = await holder(store, REMEMBERED)
    if found is None or found[1] == old:
        return None
    assert found[0] == str(address(1))
    return found[1]

"""The registrator's record writer against MemoryStore, in virtual time.

The writer and its lease keeper run as the agent runs them; the Docker side
is played by calling ``set_container`` (what the container workers do) and
setting ``docker_listed``. tests/integration/test_registrator_agent.py
checks the same promises end to end, with a real dockerd and etcd.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.registrator.lease_file import save_lease
from agent.registrator.writer import RecordWriter
from discovery.lease_keeper import LeaseKeeper
from discovery.memory_store import MemoryStore
from discovery.schema import (
    Endpoint,
    decode_node,
    encode_endpoint,
    endpoint_key,
    node_key,
    services_prefix,
)
from discovery.settings import Settings
from discovery.store_api import GuardedWrite
from tests.fixtures.virtual_clock import eventually, in_virtual_time

SETTINGS = Settings(prefix="/policy/skydns", lease_ttl_s=10)
NODE = "host1"
NODE_ADDRESS = "192.168.100.11"
SERVICES = services_prefix(SETTINGS.prefix, SETTINGS.domain)
NODE_KEY = node_key(SETTINGS.prefix, SETTINGS.domain, NODE)


def container(n: int, service: str) -> tuple[str, dict[str, Endpoint]]:
    """A container id and the one record the container workers would want for it."""
    container_id = f"{n:02x}" * 32
    endpoint = Endpoint(
        service=service, address=f"10.5.1.{n}", port=80, node=NODE, container_id=container_id
    )
    key = endpoint_key(SETTINGS.prefix, SETTINGS.domain, service, endpoint.endpoint_id)
    return container_id, {key: endpoint}


@dataclass
class Agent:
    writer: RecordWriter
    keeper: LeaseKeeper

    @property
    def lease_id(self) -> int:
        assert self.keeper.lease_id is not None
        return self.keeper.lease_id

    def set(self, n: int, service: str | None) -> None:
        container_id, records = container(n, service or "gone")
        self.writer.set_container(container_id, records if service else {})

    async def in_sync(self) -> None:
        await asyncio.wait_for(self.writer.in_sync.wait(), 60)


@asynccontextmanager
async def running_agent(
    store: MemoryStore, services: dict[int, str], lease_file: Path | None = None
) -> AsyncIterator[Agent]:
    writer = RecordWriter(store, SETTINGS, NODE, NODE_ADDRESS, lease_file)
    keeper = LeaseKeeper(store, SETTINGS.lease_ttl_s, writer.on_new_lease, name="services")
    agent = Agent(writer, keeper)
    for n, service in services.items():
        agent.set(n, service)
    writer.docker_listed.set()  # the Docker side has listed the containers
    tasks = [asyncio.create_task(keeper.run()), asyncio.create_task(writer.run())]
    try:
        await agent.in_sync()
        yield agent
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def held(store: MemoryStore) -> dict[str, int]:
    """Service name -> lease of every record in etcd (one record per service here)."""
    items, _ = await store.get_prefix(SERVICES)
    return {key.split("/")[-2]: kv.lease for key, kv in items.items()}


@in_virtual_time
async def test_after_an_outage_etcd_is_made_equal_to_the_wanted_records() -> None:
    store = MemoryStore()
    observer = store.new_client()
    async with running_agent(store, {1: "stays", 2: "leaves", 3: "deleted-by-hand"}) as agent:
        lease = agent.lease_id
        store.go_down()
        agent.set(2, None)  # a container stops
        agent.set(4, "arrives")  # another starts
        await observer.delete_prefix(SERVICES + "deleted-by-hand/")
        await observer.delete(NODE_KEY)
        await asyncio.sleep(3)  # writes fail and back off meanwhile
        assert not agent.writer.in_sync.is_set()
        assert set(await held(observer)) == {"stays", "leaves"}  # nothing got through
        store.come_back()
        await agent.in_sync()
        assert await held(observer) == {"stays": lease, "deleted-by-hand": lease, "arrives": lease}
        node = await observer.get(NODE_KEY)
        assert node is not None and node.lease == lease
        assert decode_node(node.value).address == NODE_ADDRESS
        assert agent.lease_id == lease, "an outage shorter than the TTL keeps the lease"


@in_virtual_time
async def test_a_lost_lease_has_every_record_written_again_under_the_new_one() -> None:
    store = MemoryStore()
    observer = store.new_client()
    async with running_agent(store, {1: "web", 2: "db"}) as agent:
        first = agent.lease_id
        before, _ = await observer.get_prefix(SERVICES)
        store.expire_lease(first)
        assert await held(observer) == {}
        await eventually(lambda: _all_under_a_new_lease(observer, first, {"web", "db"}))
        after, _ = await observer.get_prefix(SERVICES)
        assert {k: kv.value for k, kv in after.items()} == {k: kv.value for k, kv in before.items()}
        assert agent.lease_id != first
        node = await observer.get(NODE_KEY)
        assert node is not None and node.lease == agent.lease_id


@in_virtual_time
async def test_an_outage_longer_than_the_ttl_loses_nothing_wanted() -> None:
    store = MemoryStore()
    observer = store.new_client()
    async with running_agent(store, {1: "stays", 2: "leaves"}) as agent:
        first = agent.lease_id
        store.go_down()
        agent.set(2, None)
        agent.set(3, "arrives")
        # etcd lets the lease expire: this host's records vanish meanwhile.
        await eventually(lambda: _nothing_held(observer))
        store.come_back()
        await eventually(lambda: _all_under_a_new_lease(observer, first, {"stays", "arrives"}))
        await agent.in_sync()


@in_virtual_time
async def test_records_under_a_foreign_lease_or_made_by_hand_are_left_alone(tmp_path: Path) -> None:
    store = MemoryStore()
    other_agent = store.new_client()
    # A previous run of this agent (its lease in the lease file) left a record
    # for a container that is gone now: that one is ours to delete.
    lease_file = tmp_path / "leases.json"
    previous = await store.grant_lease(60)
    save_lease(lease_file, previous, [])
    await _put_record(store, 7, "stale", previous)
    # Another agent started with the same host name, and a record made by hand
    # (`discoveryctl register --host host1`): they name this host, but are not ours.
    twin_lease = await other_agent.grant_lease(60)
    twin_key = await _put_record(other_agent, 8, "twin", twin_lease)
    hand_key = await _put_record(other_agent, 9, "byhand", None)
    twin_before, hand_before = await store.get(twin_key), await store.get(hand_key)

    async with running_agent(store, {1: "mine"}, lease_file) as agent:
        lease = agent.lease_id
        # "stale" is gone; the two that are not ours are as they were.
        assert await held(store) == {"mine": lease, "twin": twin_lease, "byhand": 0}
        # A resync under a new lease leaves them alone too.
        store.expire_lease(lease)
        await eventually(
            lambda: _all_under_a_new_lease(store, lease, {"mine"}, frozenset({twin_lease, 0}))
        )
        assert await store.get(twin_key) == twin_before
        assert await store.get(hand_key) == hand_before


@in_virtual_time
async def test_a_wanted_record_held_under_another_lease_is_taken_over() -> None:
    """A conflicting record at one of our keys (an earlier run's, or a twin's):
    what this agent wants wins, under its own lease."""
    store = MemoryStore()
    other_agent = store.new_client()
    twin_lease = await other_agent.grant_lease(60)
    container_id, records = container(1, "web")
    (key,) = records
    conflicting = Endpoint(
        service="web", address="10.5.1.1", port=80, node=NODE, container_id=container_id,
        tags=("old",),
    )  # fmt: skip
    await other_agent.put(key, encode_endpoint(conflicting), twin_lease)
    async with running_agent(store, {1: "web"}) as agent:
        kv = await store.get(key)
        assert kv is not None and kv.lease == agent.lease_id
        assert kv.value == encode_endpoint(agent.writer.wanted[key])
        assert kv.value != encode_endpoint(conflicting)


@in_virtual_time
async def test_a_change_of_the_node_checks_rewrites_the_node_record() -> None:
    store = MemoryStore()
    async with running_agent(store, {1: "web"}) as agent:
        agent.writer.set_node_checks({"docker": "passing", "dns": "critical"})
        await agent.in_sync()
        node = await store.get(NODE_KEY)
        assert node is not None
        assert decode_node(node.value).checks == (("dns", "critical"), ("docker", "passing"))
        # The same checks again: nothing to write.
        agent.writer.set_node_checks({"dns": "critical", "docker": "passing"})
        assert agent.writer.in_sync.is_set()
        assert await store.get(NODE_KEY) == node
        assert await held(store) == {"web": agent.lease_id}


class LateStore(MemoryStore):
    """A client whose guarded writes each time out once and are resent, as
    EtcdStore's are when a member does not answer; the unanswered first
    attempts are kept, for the test to deliver late, as etcd may."""

    def __init__(self, memory: MemoryStore) -> None:
        super().__init__(_etcd=memory._etcd)
        self.unanswered: list[tuple[Any, ...]] = []

    async def write_guarded(self, *args: Any) -> GuardedWrite:
        self.unanswered.append(args)
        written = await super().write_guarded(*args)
        return dataclasses.replace(written, resent=True)

    async def deliver_late(self) -> list[bool]:
        """Apply every unanswered attempt now; whether each was applied."""
        attempts, self.unanswered = self.unanswered, []
        return [(await MemoryStore.write_guarded(self, *args)).applied for args in attempts]


@in_virtual_time
async def test_a_write_delivered_late_never_brings_back_a_deleted_record() -> None:
    """Seen in the fault suite: a put sent to a cut-off member was applied when
    the partition healed, after the record's delete, and stayed for good."""
    memory = MemoryStore()
    store = LateStore(memory)
    async with running_agent(store, {}) as agent:
        agent.set(1, "web")
        await agent.in_sync()
        assert set(await held(memory)) == {"web"}
        agent.set(1, None)  # the container stops
        await agent.in_sync()
        assert await held(memory) == {}
        applied = await store.deliver_late()  # the put of "web", among others
        assert applied and not any(applied)
        assert await held(memory) == {}


@in_virtual_time
async def test_a_node_record_moved_by_someone_else_makes_the_writer_list_again() -> None:
    store = MemoryStore()
    observer = store.new_client()
    async with running_agent(store, {1: "web"}) as agent:
        moved = await observer.get(NODE_KEY)
        assert moved is not None
        await observer.put(NODE_KEY, moved.value, agent.lease_id)  # the guard moves on
        await observer.delete_prefix(SERVICES)  # and the records went meanwhile
        agent.set(2, "db")
        await agent.in_sync()
        assert await held(observer) == {"web": agent.lease_id, "db": agent.lease_id}


async def _put_record(store: MemoryStore, n: int, service: str, lease: int | None) -> str:
    _, records = container(n, service)
    ((key, endpoint),) = records.items()
    await store.put(key, encode_endpoint(endpoint), lease)
    return key


async def _nothing_held(store: MemoryStore) -> bool:
    return await held(store) == {}


async def _all_under_a_new_lease(
    store: MemoryStore, old: int, services: set[str], foreign: frozenset[int] = frozenset()
) -> bool:
    """Exactly ``services`` held (besides records under ``foreign`` leases), all
    under one lease that is neither ``old`` nor none."""
    mine = {
        service: lease for service, lease in (await held(store)).items() if lease not in foreign
    }
    leases = set(mine.values())
    return set(mine) == services and len(leases) == 1 and leases.isdisjoint({0, old})

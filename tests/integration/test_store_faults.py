"""The etcd store under faults, against real etcd: frozen members, dead members, lost quorum.

Each test here reproduces a failure seen in the lab (issue 10) without the lab:
a request timing out while others share its channel, several requests failing
over at once, and a member that is cut off from its cluster's leader.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import pytest

from discovery.errors import EtcdUnavailable
from discovery.store import Change, EtcdStore, Snapshot
from labs.etcd_server import EtcdCluster, etcdctl
from tests.fixtures.etcd import settings_for

pytestmark = pytest.mark.etcd


def freeze(cluster: EtcdCluster, index: int) -> int:
    process = cluster.members[index].process
    assert process is not None
    os.kill(process.pid, signal.SIGSTOP)
    return process.pid


def thaw(pid: int) -> None:
    os.kill(pid, signal.SIGCONT)


async def put_when_quorate(store: EtcdStore, key: str, value: bytes, timeout_s: float = 15) -> None:
    """Put once the members reached elect a leader (they may be mid-election)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            await store.put(key, value)
            return
        except EtcdUnavailable:
            if time.monotonic() > deadline:
                raise


async def test_a_timed_out_request_never_cancels_the_others_sharing_its_channel(own_etcd):
    """Issue 10, item 1: one request's timeout closed the shared channel, and gRPC
    cancelled every request still in flight with a CancelledError that passed
    every ``except Exception`` and ended the agents' tasks."""
    settings = settings_for(own_etcd.endpoints, request_timeout_s=0.5)
    async with EtcdStore(settings) as store:
        await store.put(f"{settings.prefix}/k", b"v")
        pid = freeze(own_etcd, 0)
        try:
            # Staggered, so that some are still in flight when the first times out.
            async def one(delay_s: float) -> BaseException | None:
                await asyncio.sleep(delay_s)
                try:
                    await store.get(f"{settings.prefix}/k")
                except BaseException as error:  # CancelledError is the bug
                    return error
                return None

            results = await asyncio.gather(*(one(i * 0.02) for i in range(40)))
        finally:
            thaw(pid)
        kinds = {type(result).__name__ for result in results}
        assert kinds == {"EtcdUnavailable"}, kinds
        value = await store.get(f"{settings.prefix}/k")
        assert value is not None and value.value == b"v"


async def test_concurrent_failures_fail_over_once_and_land_on_the_healthy_member(tmp_path: Path):
    """Issue 10, item 7: many writes failing at once each dropped the others'
    fresh connection and moved on, skipping the healthy member and reporting
    a false "etcd unreachable". The member killed is a follower, so no
    election muddies the picture: every write must land on the next one."""
    with EtcdCluster(3, base_dir=tmp_path / "etcd") as cluster:
        leader = leader_endpoint(cluster.endpoints)
        followers = [endpoint for endpoint in cluster.endpoints if endpoint != leader]
        settings = settings_for([*followers, leader], request_timeout_s=1.0)
        async with EtcdStore(settings) as store:
            await store.put(f"{settings.prefix}/warm", b"1")  # connected to followers[0]
            next(m for m in cluster.members if m.client_url == followers[0]).kill()
            results = await asyncio.gather(
                *(store.put(f"{settings.prefix}/k{i}", b"x") for i in range(200)),
                return_exceptions=True,
            )
            failed = [r for r in results if isinstance(r, BaseException)]
            assert failed == []
            assert store.current_endpoint == followers[1]
            items, _ = await store.get_prefix(f"{settings.prefix}/k")
            assert len(items) == 200


def leader_endpoint(endpoints: list[str]) -> str:
    status = json.loads(etcdctl(endpoints, "endpoint", "status", "-w", "json"))
    leaders = {entry["Status"]["leader"] for entry in status}
    assert len(leaders) == 1, status
    (leader,) = leaders
    return next(e["Endpoint"] for e in status if e["Status"]["header"]["member_id"] == leader)


async def test_a_cancelled_caller_is_still_cancelled(own_etcd):
    """Turning gRPC's CancelledError into EtcdUnavailable must not swallow a
    real cancellation of the task that called the store."""
    settings = settings_for(own_etcd.endpoints, request_timeout_s=5.0)
    async with EtcdStore(settings) as store:
        await store.put(f"{settings.prefix}/k", b"v")
        pid = freeze(own_etcd, 0)
        try:
            task = asyncio.create_task(store.get(f"{settings.prefix}/k"))
            await asyncio.sleep(0.2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        finally:
            thaw(pid)


async def test_a_watch_on_a_member_without_a_leader_moves_to_one_with_a_leader(tmp_path: Path):
    """Issue 10, item 8: without etcd's require-leader, a watch attached to a
    member cut off from quorum went on reading old data with no error. Here
    the other two members are frozen first (member 1 loses its leader), then
    thawed while member 1 is frozen instead: the watch must notice member 1's
    lost leader, move on, and deliver what was written meanwhile."""
    with EtcdCluster(3, base_dir=tmp_path / "etcd") as cluster:
        settings = settings_for(cluster.endpoints, request_timeout_s=1.0)
        prefix = f"{settings.prefix}/w/"
        async with EtcdStore(settings) as writer, EtcdStore(settings) as watcher:
            items = watcher.follow_prefix(prefix)
            first = await asyncio.wait_for(items.__anext__(), 10)
            assert isinstance(first, Snapshot)
            # Members 2 and 3 leave: member 1 has no quorum and, soon, no leader.
            frozen = [freeze(cluster, 1), freeze(cluster, 2)]
            lost_at = time.monotonic()
            try:
                seen = []
                while time.monotonic() - lost_at < 15:
                    item = await asyncio.wait_for(items.__anext__(), 20)
                    seen.append(type(item).__name__)
                    if seen[-1] == "ConnectionLost":
                        break
                assert seen and seen[-1] == "ConnectionLost", seen
                took = time.monotonic() - lost_at
            finally:
                for pid in frozen:
                    thaw(pid)
            # Member 1 stays cut off (frozen); 2 and 3 have quorum again.
            member1 = freeze(cluster, 0)
            try:
                writer_settings = settings_for(cluster.endpoints[1:], prefix=settings.prefix)
                async with EtcdStore(writer_settings) as healthy:
                    await put_when_quorate(healthy, f"{prefix}a", b"1")
                change = None
                while change is None:
                    item = await asyncio.wait_for(items.__anext__(), 20)
                    if isinstance(item, Change):
                        change = item
                    elif isinstance(item, Snapshot) and f"{prefix}a" in item.items:
                        change = Change(f"{prefix}a", item.items[f"{prefix}a"].value, 0)
                assert change.key == f"{prefix}a" and change.value == b"1"
            finally:
                thaw(member1)
            await items.aclose()
        print(f"\nwatch noticed the lost leader after {took:.1f} s")
    assert writer is not None


async def test_unavailable_is_reported_when_every_member_is_frozen(own_etcd):
    settings = settings_for(own_etcd.endpoints, request_timeout_s=0.3)
    async with EtcdStore(settings) as store:
        pid = freeze(own_etcd, 0)
        try:
            with pytest.raises(EtcdUnavailable, match="tried"):
                await store.put(f"{settings.prefix}/k", b"v")
        finally:
            thaw(pid)


async def test_a_guarded_write_resent_to_another_member_says_so(own_etcd):
    """A member that takes the request and never answers (frozen here) may
    still apply it later: the writer must be told, to move its guard on."""
    with EtcdCluster(1, base_dir=own_etcd.base_dir / "second") as second:
        # Two independent one-member clusters stand in for two members: the
        # first is frozen, so the write goes unanswered there and is resent.
        settings = settings_for([*own_etcd.endpoints, *second.endpoints], request_timeout_s=0.5)
        guard_key = f"{settings.prefix}/guard"
        async with EtcdStore(settings) as store:
            await store.get(guard_key)  # connected to the first
            pid = freeze(own_etcd, 0)
            try:
                written = await store.write_guarded(guard_key, 0, {f"{settings.prefix}/k": b"v"})
            finally:
                thaw(pid)
            assert written.applied and written.resent
            assert store.current_endpoint == second.endpoints[0]
            again = await store.write_guarded(guard_key, 0, {f"{settings.prefix}/k2": b"v"})
            assert again.applied and not again.resent

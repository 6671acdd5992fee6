"""discovery.tasks.gather_every: every call ended before a failure is raised."""

from __future__ import annotations

import asyncio

import pytest

from discovery.errors import EtcdUnavailable
from discovery.tasks import gather_every


async def test_results_come_in_order():
    async def value(v: int, delay: float) -> int:
        await asyncio.sleep(delay)
        return v

    assert await gather_every(value(1, 0.02), value(2, 0)) == [1, 2]


async def test_the_first_failure_is_raised_only_after_the_slower_call_ended():
    ended: list[str] = []

    async def fails(name: str, delay: float) -> int:
        await asyncio.sleep(delay)
        ended.append(name)
        raise EtcdUnavailable(f"{name}: etcd unreachable")

    with pytest.raises(EtcdUnavailable, match="fast"):
        await gather_every(fails("fast", 0), fails("slow", 0.05))
    # asyncio.gather would have raised with "slow" still running, to fail unheard
    assert ended == ["fast", "slow"]
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []

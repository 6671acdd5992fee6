"""keep_following: a feed that fails is logged, marked stale and started again."""

from __future__ import annotations

import asyncio

import pytest

from discovery.feed import keep_following


async def test_a_failing_feed_is_marked_stale_and_started_again():
    runs: list[int] = []
    stale: list[int] = []
    third = asyncio.Event()

    async def follow() -> None:
        runs.append(len(runs))
        if len(runs) == 3:
            third.set()
            await asyncio.Event().wait()  # the third one keeps following
        raise ValueError("a value the consumer choked on")

    task = asyncio.create_task(keep_following(follow, lambda: stale.append(len(runs)), "test feed"))
    await asyncio.wait_for(third.wait(), 5)
    assert runs == [0, 1, 2]
    assert stale == [1, 2]  # once after each failure, before the feed starts again
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task  # cancelling the owner ends it; no restart

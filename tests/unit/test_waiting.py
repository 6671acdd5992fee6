"""labs.testing.waiting: the one way tests wait for something to become true."""

from __future__ import annotations

import itertools
import time

import pytest

from labs.testing.waiting import eventually, wait_until


def test_wait_until_returns_the_first_truthy_value():
    values = iter([None, 0, [], "found"])
    assert wait_until(lambda: next(values), 5, "a value", interval_s=0.001) == "found"


def test_wait_until_names_what_and_the_timeout_and_tries_once_more_at_the_deadline():
    calls = itertools.count(1)
    started = time.monotonic()
    with pytest.raises(AssertionError, match=r"the thing: not within 0\.2 s \(last value \[\]\)"):
        wait_until(lambda: next(calls) and [], 0.2, "the thing", interval_s=0.05)
    assert 0.2 <= time.monotonic() - started < 2
    assert next(calls) >= 4  # tried from the start to (and at) the deadline


def test_a_condition_true_at_once_never_sleeps():
    started = time.monotonic()
    assert wait_until(lambda: 7, 10, "seven", interval_s=5) == 7
    assert time.monotonic() - started < 1


async def test_eventually_takes_plain_and_async_conditions():
    values = iter([False, False, 3])
    assert await eventually(lambda: next(values), 5, "plain", interval_s=0.001) == 3

    async def check() -> str:
        return "ready"

    assert await eventually(check, 5, "async") == "ready"


async def test_eventually_fails_like_wait_until():
    async def never() -> None:
        return None

    with pytest.raises(AssertionError, match=r"never true: not within 0\.1 s \(last value None\)"):
        await eventually(never, 0.1, "never true", interval_s=0.02)

"""Waiting for something to become true, for tests and benchmarks: one way, sync and async.

    wait_until(lambda: lab.resolve("host1") == {web}, 10, "web on host2 from host1")
    lease = await eventually(read_lease, 20, "a lease for host1")

Each polls ``condition`` every ``interval_s`` until it returns something truthy
and returns that value; after ``timeout_s`` it raises AssertionError naming
``what``, the timeout and the last value seen. The condition is always tried
once more at the deadline, so a slow single check never fails by itself.
``eventually`` takes a plain function or a coroutine function.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

DEFAULT_INTERVAL_S = 0.05


def _timed_out(what: str, timeout_s: float, last: object) -> AssertionError:
    return AssertionError(f"{what}: not within {timeout_s:g} s (last value {last!r})")


def wait_until(
    condition: Callable[[], T],
    timeout_s: float,
    what: str,
    interval_s: float = DEFAULT_INTERVAL_S,
) -> T:
    """Poll ``condition`` until it returns something truthy; return that value."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise _timed_out(what, timeout_s, result)
        time.sleep(interval_s)


async def eventually(
    condition: Callable[[], T | Awaitable[T]],
    timeout_s: float,
    what: str,
    interval_s: float = DEFAULT_INTERVAL_S,
) -> T:
    """``wait_until`` for a running event loop: ``condition`` may be a coroutine function."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() >= deadline:
            raise _timed_out(what, timeout_s, result)
        await asyncio.sleep(interval_s)


__all__ = ["eventually", "wait_until"]

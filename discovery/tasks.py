"""Run a process's long-lived loops side by side, and notice when one ends; and
wait for a few calls together without leaving one behind (``gather_every``).

An agent is a few loops that should run for as long as the process does
(keep the lease, follow etcd, follow Docker, reconcile). ``asyncio.TaskGroup``
is not enough for that: it treats a child that ended cancelled, which a
client library can cause by cancelling its own calls, as simply finished, and
the process runs on without it, looking healthy. Here any end of any loop,
return, exception or a cancellation nobody asked for, ends all of them with
one ``DiscoveryError`` that names the loop, so the process exits 1 and its
supervisor (systemd, or the local lab's) starts it again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine, Mapping
from typing import Any, TypeVar, cast

from discovery.errors import DiscoveryError

T = TypeVar("T")


async def gather_every(*calls: Awaitable[T]) -> list[T]:
    """Each call's result, in order; the first failure is raised once every call has
    ended. ``asyncio.gather`` raises at the first and leaves the others running: with
    etcd gone they fail a moment later, unheard, and ``asyncio.run`` prints each one
    ("unhandled exception during asyncio.run() shutdown") under the command's own
    one-line error."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return cast(list[T], results)


async def run_until_one_ends(loops: Mapping[str, Coroutine[Any, Any, Any]]) -> None:
    """Run the named coroutines until one ends; raise saying which and how.

    Cancelling the caller cancels them all and is passed on as usual.
    """
    tasks = {asyncio.create_task(coroutine, name=name): name for name, coroutine in loops.items()}
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    ended = next(iter(done))
    name = tasks[ended]
    if ended.cancelled():
        raise DiscoveryError(f"{name} stopped: cancelled from inside")
    error = ended.exception()
    if error is None:
        raise DiscoveryError(f"{name} stopped without an error")
    if isinstance(error, DiscoveryError):
        raise DiscoveryError(f"{name} stopped: {error}") from error
    raise error  # a bug: let its traceback show where

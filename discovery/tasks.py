"""Run a process's long-lived loops side by side, and notice when one ends.

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
from collections.abc import Coroutine, Mapping
from typing import Any

from discovery.errors import DiscoveryError


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

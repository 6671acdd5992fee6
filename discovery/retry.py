"""The pause between two tries of something that failed: one helper for every retry loop.

    backoff = Backoff(0.1, 0.5)        # 0.1, 0.2, 0.4, 0.5, 0.5 ... seconds
    while True:
        try:
            await do_it()
        except EtcdUnavailable:
            await backoff.wait()           # sleep the next pause, then grow it
            continue
        backoff.reset()                    # worked: the next outage starts short

A pause starts at ``initial_s`` and doubles (``factor``) up to ``maximum_s``;
``maximum_s`` left out means a constant pause. ``jitter`` draws each pause
uniformly from [0, pause] instead ("full jitter"), so hosts that lost the same
race do not retry in step. ``next_delay`` is the policy alone (no sleeping),
for a synchronous caller or a test; ``wait`` sleeps it, through an injectable
``sleep`` (default ``asyncio.sleep``, looked up at each call).

Each loop keeps its own limits, named where the loop is: they were tuned for
what that loop waits on (a lease keeper retries at most every 0.5 s so a host
is back within seconds of an etcd partition ending; a Docker reconnect may
wait 2 s).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable


class Backoff:
    """Pauses for a retry loop: ``initial_s``, growing by ``factor`` up to ``maximum_s``."""

    def __init__(
        self,
        initial_s: float,
        maximum_s: float | None = None,
        *,
        factor: float = 2.0,
        jitter: bool = False,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[object]] | None = None,
    ) -> None:
        maximum = initial_s if maximum_s is None else maximum_s
        if initial_s < 0 or maximum < initial_s:
            raise ValueError(f"backoff needs 0 <= initial ({initial_s}) <= maximum ({maximum})")
        if factor < 1:
            raise ValueError(f"backoff factor {factor} would shrink the pause")
        self.initial_s = initial_s
        self.maximum_s = maximum
        self.factor = factor
        self.jitter = jitter
        self._rng = rng  # None: the random module's own generator
        self._sleep = sleep
        self._next_s = initial_s

    def next_delay(self) -> float:
        """The pause to take now; the one after it grows (up to the maximum)."""
        delay = self._next_s
        self._next_s = min(self._next_s * self.factor, self.maximum_s)
        if not self.jitter:
            return delay
        return (self._rng or random).uniform(0, delay)

    async def wait(self) -> float:
        """Sleep the next pause; returns how long that was."""
        delay = self.next_delay()
        await (self._sleep or asyncio.sleep)(delay)
        return delay

    def reset(self) -> None:
        """A try worked: the next failure waits ``initial_s`` again."""
        self._next_s = self.initial_s


__all__ = ["Backoff"]

"""Keep one watch's data in memory for as long as the process lives: one way, for every feed.

A store's ``follow_prefix`` never ends by itself: it reports an outage as
``ConnectionLost`` and carries on. Only a bug (or a value a consumer chokes
on) can end a feed; then the process must not go blind: ``keep_following``
logs it once, lets the owner mark what it holds as stale, pauses (capped
backoff) and starts the feed again, which begins with a fresh snapshot.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from discovery.retry import Backoff

log = logging.getLogger(__name__)

FEED_RETRY_MIN_S = 0.1
FEED_RETRY_MAX_S = 5.0


async def keep_following(
    follow: Callable[[], Awaitable[None]],
    on_failure: Callable[[], None],
    what: str,
) -> None:
    """Run ``follow`` until cancelled; each time it fails, log ``what`` failed,
    call ``on_failure`` and start it again after a pause."""
    backoff = Backoff(FEED_RETRY_MIN_S, FEED_RETRY_MAX_S)
    while True:
        try:
            await follow()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s failed; serving the last known state", what)
            on_failure()
            await backoff.wait()

"""One stop signal for the whole agent process.

`discovery-agent run` runs both halves in one event loop. If each half
installed its own SIGTERM handler, the last one installed would win and the
other half would never hear the signal. Instead the first caller installs
SIGTERM and SIGINT handlers on the loop, and every half awaits the same event.
"""

from __future__ import annotations

import asyncio
import signal
import weakref

_STOP_EVENTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Event] = (
    weakref.WeakKeyDictionary()
)


def stop_event() -> asyncio.Event:
    """The event set by SIGTERM or SIGINT in this process's running loop."""
    loop = asyncio.get_running_loop()
    event = _STOP_EVENTS.get(loop)
    if event is None:
        event = asyncio.Event()
        _STOP_EVENTS[loop] = event
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, event.set)
    return event

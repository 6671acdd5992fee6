"""Which Docker events matter to the registrator, and for which container. Pure.

The agent is level-triggered: an event only says "look at container X again";
what to register is always decided from a fresh inspect of X (desired.py). So
events may be repeated, replayed after a reconnect or arrive coalesced, and
the records still come out right. The one shortcut: after ``die``, ``stop``
or ``destroy`` the container certainly runs no more, so its records go at
once, without waiting for an inspect.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Container actions that can change what a container registers. Docker sends
# ``health_status: healthy`` etc., matched by the part before ':'.
CONTAINER_ACTIONS = frozenset(
    {
        "start",
        "restart",
        "die",
        "stop",
        "kill",
        "destroy",
        "pause",
        "unpause",
        "health_status",
        "rename",
        "update",
    }
)
GONE_ACTIONS = frozenset({"die", "stop", "destroy"})
NETWORK_ACTIONS = frozenset({"connect", "disconnect"})
# What to ask the daemon for; everything else (images, volumes, exec_*) is noise.
EVENT_FILTERS = {"type": ["container", "network"]}


@dataclass(frozen=True)
class ContainerEvent:
    container_id: str
    action: str
    gone: bool  # the container certainly no longer runs
    time_nano: int  # the daemon's timestamp, to resume a stream from


def classify_event(event: Mapping[str, Any]) -> ContainerEvent | None:
    """The container an event is about and whether it is gone; None if irrelevant."""
    kind = event.get("Type")
    action = str(event.get("Action") or event.get("status") or "").split(":", 1)[0].strip()
    actor = event.get("Actor") or {}
    time_nano = int(event.get("timeNano") or int(event.get("time") or 0) * 1_000_000_000)
    if kind == "container" and action in CONTAINER_ACTIONS:
        container_id = str(actor.get("ID") or event.get("id") or "")
    elif kind == "network" and action in NETWORK_ACTIONS:
        container_id = str((actor.get("Attributes") or {}).get("container") or "")
    else:
        return None
    if not container_id:
        return None
    return ContainerEvent(container_id, action, action in GONE_ACTIONS, time_nano)


__all__ = [
    "CONTAINER_ACTIONS",
    "EVENT_FILTERS",
    "GONE_ACTIONS",
    "NETWORK_ACTIONS",
    "ContainerEvent",
    "classify_event",
]

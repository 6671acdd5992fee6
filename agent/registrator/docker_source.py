"""The Docker side: list, inspect and follow events. The only agent module importing ``docker``.

The Docker SDK is blocking, so every call runs in a small thread pool and the
event stream is read by a thread of its own that hands each event to the
asyncio loop. Docker's errors are turned into this project's at this
boundary: a container that no longer exists is ``None``, a daemon that does
not answer is ``DockerUnavailable``.

The event stream is opened *before* the agent lists the containers, so an
event that happens while the listing runs is still delivered afterwards:
nothing falls in the gap between "list" and "follow". The stream ends when
the daemon restarts or the connection drops; the caller then opens a new one
(replaying from the last event's time) and lists again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import docker
import docker.errors
import requests

from agent.registrator.events import EVENT_FILTERS
from discovery.errors import DiscoveryError

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_REQUEST_TIMEOUT_S = 10.0
# Docker 20.10's API (Debian 12's docker.io); every later daemon speaks it too.
DOCKER_API_VERSION = "1.41"
# Inspects run in parallel at start-up and after a reconnect (one per
# container); more threads than this only queue up on a 2-core lab VM.
DEFAULT_WORKER_THREADS = 8


class DockerUnavailable(DiscoveryError):
    """The Docker daemon did not answer, or its event stream ended."""


def _since_text(time_nano: int) -> str:
    # Docker takes "seconds.nanoseconds" for a sub-second resume point.
    return f"{time_nano // 1_000_000_000}.{time_nano % 1_000_000_000:09d}"


class EventStream:
    """One open ``GET /events``, read by a thread, consumed with ``await next()``."""

    _END = object()

    def __init__(self, stream: Any, loop: asyncio.AbstractEventLoop, url: str) -> None:
        self._stream = stream
        self._loop = loop
        self._url = url
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._closed = False
        self._thread = threading.Thread(target=self._read, name="docker-events", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        reason = "event stream ended"
        try:
            for event in self._stream:
                self._loop.call_soon_threadsafe(self._queue.put_nowait, event)
        except Exception as error:  # a broken connection ends the stream either way
            reason = f"event stream failed: {error!r}"
        with contextlib.suppress(RuntimeError):  # the loop may already be closed
            self._loop.call_soon_threadsafe(self._queue.put_nowait, (self._END, reason))

    async def next(self) -> dict[str, Any]:
        """The next event; raises DockerUnavailable once the stream has ended."""
        item = await self._queue.get()
        if isinstance(item, tuple) and item and item[0] is self._END:
            raise DockerUnavailable(f"{self._url}: {item[1]}")
        return dict(item)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):  # closing a dead connection may fail
            self._stream.close()


class DockerSource:
    def __init__(
        self,
        url: str,
        *,
        request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S,
        worker_threads: int = DEFAULT_WORKER_THREADS,
    ) -> None:
        self.url = url
        try:
            # A fixed API version: "auto" would ask the daemon at construction,
            # and the agent must start (and wait) while Docker is still down.
            self._api = docker.APIClient(
                base_url=url,
                version=DOCKER_API_VERSION,
                timeout=request_timeout_s,
                max_pool_size=worker_threads + 2,
            )
            # The event stream holds its connection open for ever: its own client.
            self._events_api = docker.APIClient(
                base_url=url, version=DOCKER_API_VERSION, timeout=None
            )
        except docker.errors.DockerException as error:
            raise DiscoveryError(f"bad Docker host {url!r}: {error}") from error
        self._pool = ThreadPoolExecutor(max_workers=worker_threads, thread_name_prefix="docker")

    async def _call(self, what: str, function: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, function)
        except docker.errors.NotFound:
            raise
        except (docker.errors.DockerException, requests.RequestException, OSError) as error:
            raise DockerUnavailable(f"{self.url}: {what}: {_short(error)}") from error

    async def running_container_ids(self) -> list[str]:
        """Ids of the running (and paused) containers."""
        listed = await self._call("list containers", lambda: self._api.containers(quiet=True))
        return [str(item["Id"]) for item in listed]

    async def inspect(self, container_id: str) -> dict[str, Any] | None:
        """``docker inspect`` as a dict, or None when the container no longer exists."""
        try:
            found = await self._call(
                f"inspect {container_id[:12]}",
                lambda: self._api.inspect_container(container_id),
            )
        except docker.errors.NotFound:
            return None
        return dict(found)

    async def open_events(self, since_nano: int | None = None) -> EventStream:
        """Subscribe to container and network events (replaying from since_nano, if given)."""
        since = None if since_nano is None else _since_text(since_nano)
        stream = await self._call(
            "open event stream",
            lambda: self._events_api.events(since=since, filters=EVENT_FILTERS, decode=True),
        )
        return EventStream(stream, asyncio.get_running_loop(), self.url)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        for api in (self._api, self._events_api):
            with contextlib.suppress(Exception):
                api.close()


def _short(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:200]


__all__ = ["DockerSource", "DockerUnavailable", "EventStream"]

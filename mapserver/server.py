"""The map server: one etcd watch -> the catalog -> Consul's catalog API over HTTP.

``MapServer`` owns a ``Catalog`` fed by ONE ``follow_prefix`` watch (as the
DNS server's is): no request reads etcd. Every answer comes from memory, with
the etcd revision it reflects as ``X-Consul-Index``: the catalog's last
change, or for a query on one service, that service's last change (as
Consul keeps an index per service), so a watcher of web is not woken by db.

Blocking queries (``?index=N&wait=10s``): a request whose ``index`` is not
below the current one waits on an ``asyncio.Event`` that every catalog change
sets (and replaces), so it answers as soon as the watch delivers a change, or
after ``wait`` (plus Consul's jitter, up to wait/16) with the same index. The
runner cancels the handler of a client that goes away
(``handler_cancellation``), so a viewer that disconnects mid-wait leaves no
waiter behind (``waiting`` counts them; the tests check it drops to 0).

When etcd is unreachable the server keeps answering from the last known
catalog and says so as Consul says it has lost its leader:
``X-Consul-KnownLeader: false`` and ``X-Consul-LastContact`` the milliseconds
since etcd was last reachable; besides, ``X-Lab-Etcd: unreachable`` and
``X-Lab-Stale-Seconds``, and the JSON of ``GET /v1/lab/status``.

The live map: ``GET /`` is one self-contained page (``mapserver.page``), which
opens ``GET /map/events``, a server-sent event stream: the whole model on
connect, then the model and the new timeline events on every change. The
model (``mapserver.view``) is built from the catalog, the flannel subnet
leases, which a second watch (on ``<network_prefix>/subnets/``) follows, and
the network agents' tunnel reports, which a third follows
(``<network_prefix>/observed/``); the watches are shared by every viewer, none
reads etcd. One more task reads the TTL left on each subnet lease's and node
record's etcd lease every TTL_POLL_S (etcd sends no event as a TTL runs down),
for the whole server, not per viewer. A change is published
once, on the next turn of the loop after the watch delivers it, to a bounded
queue per viewer; a viewer that disconnects has its handler cancelled and its
queue dropped (``viewers`` counts them). ``GET /map/state`` is the model.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from discovery.catalog import Catalog, CatalogChange, follow_catalog
from discovery.errors import DiscoveryError, SchemaError
from discovery.feed import keep_following
from discovery.flannel import SubnetLease, parse_subnet_key, parse_subnet_lease, subnets_prefix
from discovery.schema import nodes_prefix
from discovery.settings import Settings
from discovery.store import EtcdStore
from discovery.store_api import Change, ConnectionLost, Resumed, Snapshot, Store, WatchItem
from discovery.tunnels import TunnelReport, observed_prefix, parse_observed_key, parse_tunnel_report
from mapserver.consul import (
    JITTER_FRACTION,
    BadRequest,
    BlockingQuery,
    Shapes,
    consul_index,
    error_body,
    flag,
    parse_blocking,
    select,
)
from mapserver.page import PAGE
from mapserver.view import Model, Observed, build_model, diff_models

log = logging.getLogger(__name__)
DEFAULT_LISTEN = ("127.0.0.1", 8500)  # Consul's HTTP port
AGENT_NAME = "discovery-map"
TIMELINE_LENGTH = 200  # the timeline's last events, kept and sent
VIEWER_QUEUE = 16  # messages a slow viewer may lag behind before it gets only the latest
KEEPALIVE_S = 15.0  # an SSE comment this often, so a dead viewer is noticed
TTL_POLL_S = 2.0  # how often the leases' remaining TTLs are read (etcd never pushes them)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class MapOptions:
    listen: tuple[str, int] = DEFAULT_LISTEN
    datacenter: str | None = None  # default: the lab's domain ("lab")
    jitter_fraction: float = JITTER_FRACTION


def json_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(error_body(status, message), status=status, headers=headers)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error as JSON ({"error": ..., "status": ...}), aiohttp's own 404/405 too."""
    try:
        return await handler(request)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        keep = {k: v for k, v in error.headers.items() if k.lower() == "allow"}
        return json_error(error.status, f"{error.reason}: {request.method} {request.path}", keep)
    except Exception:
        log.exception("map: %s %s failed", request.method, request.path_qs)
        return json_error(500, f"internal error answering {request.path}")


class MapServer:
    def __init__(
        self, settings: Settings, options: MapOptions | None = None, store: Store | None = None
    ) -> None:
        """``store``: where the catalog comes from, owned by the caller; without one,
        ``start`` opens an ``EtcdStore`` on the settings' endpoints, ``close`` closes it."""
        self.settings = settings
        self.options = options or MapOptions()
        self.datacenter = self.options.datacenter or settings.domain
        self.catalog = Catalog(settings.prefix, settings.domain)
        self.catalog.subscribe(self._changed)
        self.loaded = False
        self.known_services: set[str] = set()  # every service seen since start
        self.lost_since: float | None = None  # monotonic time etcd was lost, when it is
        self.waiting = 0  # blocking queries waiting now
        # Per-service indexes, as Consul keeps them: the revision at which each service
        # last changed, so a query on web neither wakes for nor reports a change of db.
        self._service_index: dict[str, int] = {}
        self._index_floor = 0  # the revision of the last whole snapshot: every service's
        self._pending: list[CatalogChange] = []  # changes whose revision is not noted yet
        self._closing = False
        self.port: int | None = None
        self._changed_event = asyncio.Event()
        self._given_store = store
        self._own_store: EtcdStore | None = None
        self._feed: asyncio.Task[None] | None = None
        # The live map: the subnet leases (key -> lease), the model, its timeline, the viewers.
        self.network_root = subnets_prefix(settings.network_prefix)
        self.leases: dict[str, SubnetLease] = {}
        self.leases_loaded = False
        self.leases_revision = 0
        self.leases_lost_since: float | None = None
        self._lease_feed: asyncio.Task[None] | None = None
        # subnet -> (the tunnel report of the host holding it, monotonic time last written)
        self.reports: dict[str, tuple[TunnelReport, float]] = {}
        self.reports_revision = 0
        self._report_feed: asyncio.Task[None] | None = None
        self.subnet_ttls: dict[str, int] = {}
        self.node_ttls: dict[str, int] = {}
        self._ttl_poller: asyncio.Task[None] | None = None
        self.model: Model = build_model([], [], [])
        self.timeline: deque[dict[str, Any]] = deque(maxlen=TIMELINE_LENGTH)
        self._published: tuple[str, str] | None = None  # (model JSON, etcd state) last sent
        self._publish_pending = False
        self._viewers: set[asyncio.Queue[bytes | None]] = set()
        self.catalog.subscribe(lambda change: self._schedule_publish())
        self._runner: web.AppRunner | None = None
        self.app = self._make_app()

    # ------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        host = self.options.listen[0]
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Bind, then start the feed; on any failure undo what was done."""
        try:
            await self._start()
        except BaseException:
            await self.close()
            raise

    async def _start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        host, port = self.options.listen
        try:
            await web.TCPSite(self._runner, host, port).start()
        except OSError as error:
            raise OSError(error.errno, f"cannot serve on {host}:{port}: {error}") from error
        self.port = int(self._runner.addresses[0][1])
        store = self._given_store
        if store is None:
            store = self._own_store = EtcdStore(self.settings)
        loop = asyncio.get_running_loop()
        self._feed = loop.create_task(self._run_feed(store))
        self._lease_feed = loop.create_task(self._run_lease_feed(store))
        self._report_feed = loop.create_task(self._run_report_feed(store))
        self._ttl_poller = loop.create_task(self._poll_ttls(store))

    async def wait_loaded(self, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.loaded:
            if time.monotonic() > deadline:
                raise TimeoutError("the catalog did not load from etcd in time")
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        """Stop everything that was started; safe after a half-done start.

        Blocking queries still waiting are answered first (with the index they
        had), or aiohttp's shutdown would wait up to a minute for each."""
        self._closing = True
        self._changed_event.set()
        for queue in list(self._viewers):  # end every event stream
            self._offer(queue, None)
        for name in ("_feed", "_lease_feed", "_report_feed", "_ttl_poller"):
            feed = getattr(self, name)
            setattr(self, name, None)
            if feed is not None:
                feed.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await feed
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        store, self._own_store = self._own_store, None
        if store is not None:
            await store.close()

    async def __aenter__(self) -> MapServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------ catalog feed

    def _changed(self, change: CatalogChange) -> None:
        self.known_services.update(change.services)
        # The catalog notifies before it sets a snapshot's revision: noted when next read.
        self._pending.append(change)
        # Wake every waiter, and give the next ones a fresh event to wait on.
        event, self._changed_event = self._changed_event, asyncio.Event()
        event.set()

    async def _run_feed(self, store: Store) -> None:
        """follow_catalog, restarted should it ever fail (answering from the last catalog)."""

        def failed() -> None:
            self.catalog.apply(ConnectionLost("catalog feed failed"))
            self._lost()

        await keep_following(
            lambda: follow_catalog(self.catalog, self._tracked(store)), failed, "map: catalog feed"
        )

    async def _tracked(self, store: Store) -> AsyncIterator[WatchItem]:
        async for item in store.follow_prefix(self.catalog.root):
            if isinstance(item, ConnectionLost):
                self._lost()
            elif isinstance(item, Snapshot | Resumed):
                self.lost_since = None
                self._schedule_publish()
            yield item
            if isinstance(item, Snapshot):
                self.loaded = True
                self._schedule_publish()

    def _lost(self) -> None:
        if self.lost_since is None:
            self.lost_since = time.monotonic()
            self._schedule_publish()

    # ------------------------------------------------------------ subnet leases (the map)

    async def _run_lease_feed(self, store: Store) -> None:
        """Follow <network_prefix>/subnets/ into ``leases``, restarted should it fail."""

        async def follow() -> None:
            async for item in store.follow_prefix(self.network_root):
                self.apply_lease_item(item)

        await keep_following(
            follow,
            lambda: self.apply_lease_item(ConnectionLost("lease feed failed")),
            "map: subnet lease feed",
        )

    def apply_lease_item(self, item: WatchItem) -> None:
        if isinstance(item, ConnectionLost):
            if self.leases_lost_since is None:
                self.leases_lost_since = time.monotonic()
        elif isinstance(item, Resumed):
            self.leases_lost_since = None
        elif isinstance(item, Snapshot):
            self.leases_lost_since = None
            self.leases.clear()
            for kv in item.items.values():
                self._set_lease(kv.key, kv.value)
            self.leases_revision = item.revision
            self.leases_loaded = True
        elif isinstance(item, Change):
            self._set_lease(item.key, item.value)
            self.leases_revision = max(self.leases_revision, item.revision)
        self._schedule_publish()

    def _set_lease(self, key: str, value: bytes | None) -> None:
        self.leases.pop(key, None)
        if value is None:
            return
        try:
            self.leases[key] = parse_subnet_lease(self.settings.network_prefix, key, value)
        except SchemaError as error:
            log.warning("map: skipping subnet lease %s: %s", key, error)

    # ------------------------------------------------------------ tunnel reports and TTLs

    async def _run_report_feed(self, store: Store) -> None:
        """Follow <network_prefix>/observed/ into ``reports``, restarted should it fail."""
        prefix = observed_prefix(self.settings.network_prefix)

        async def follow() -> None:
            async for item in store.follow_prefix(prefix):
                self.apply_report_item(item)

        # An outage is the other feeds' to report (they watch the same etcd).
        await keep_following(follow, lambda: None, "map: tunnel report feed")

    def apply_report_item(self, item: WatchItem) -> None:
        now = time.monotonic()
        if isinstance(item, Snapshot):
            self.reports.clear()
            for kv in item.items.values():
                self._set_report(kv.key, kv.value, now)
            self.reports_revision = item.revision
        elif isinstance(item, Change):
            self._set_report(item.key, item.value, now)
            self.reports_revision = max(self.reports_revision, item.revision)
        else:
            return
        self._schedule_publish()

    def _set_report(self, key: str, value: bytes | None, seen: float) -> None:
        prefix = self.settings.network_prefix
        try:
            subnet = str(parse_observed_key(prefix, key))
            self.reports.pop(subnet, None)
            if value is not None:
                self.reports[subnet] = (parse_tunnel_report(prefix, key, value), seen)
        except SchemaError as error:
            log.warning("map: skipping tunnel report %s: %s", key, error)

    async def _poll_ttls(self, store: Store) -> None:
        """Every TTL_POLL_S: the seconds left on each subnet lease's and node record's
        etcd lease. A failed read keeps the last figures (the page says etcd is lost)."""
        nodes_root = nodes_prefix(self.settings.prefix, self.settings.domain)
        while True:
            with contextlib.suppress(DiscoveryError):
                subnets, _ = await store.get_prefix(self.network_root)
                nodes, _ = await store.get_prefix(nodes_root)
                leases = {kv.lease for kv in [*subnets.values(), *nodes.values()] if kv.lease}
                ordered = sorted(leases)
                ttls = dict(zip(ordered, await asyncio.gather(
                    *(store.lease_ttl(lease) for lease in ordered)), strict=True))  # fmt: skip
                subnet_ttls = {}
                for key, kv in subnets.items():
                    with contextlib.suppress(SchemaError):
                        subnet = parse_subnet_key(self.settings.network_prefix, key)
                        subnet_ttls[str(subnet)] = ttls.get(kv.lease, -1)
                self.subnet_ttls = subnet_ttls
                self.node_ttls = {
                    key[len(nodes_root) :]: ttls.get(kv.lease, -1) for key, kv in nodes.items()
                }
                self._schedule_publish()
            await asyncio.sleep(TTL_POLL_S)

    # ------------------------------------------------------------ the model and its viewers

    @property
    def revision(self) -> int:
        """The etcd revision the model reflects: the newest any of its watches delivered."""
        return max(self.catalog.revision, self.leases_revision, self.reports_revision)

    def etcd_state(self) -> tuple[str, float | None]:
        """("loading" | "reachable" | "unreachable", seconds since it was lost)."""
        lost = [t for t in (self.lost_since, self.leases_lost_since) if t is not None]
        if lost:
            return "unreachable", time.monotonic() - min(lost)
        if not (self.loaded and self.leases_loaded):
            return "loading", None
        return "reachable", None

    def state(self) -> dict[str, Any]:
        """The page's model: hosts, services, timeline, and etcd's reachability."""
        etcd, since = self.etcd_state()
        return {
            "etcd": etcd,
            "since": None if since is None else round(since, 1),
            "revision": self.revision,
            "sent_at": time.time(),
            **self.model,
            "timeline": list(self.timeline),
        }

    @property
    def viewers(self) -> int:
        return len(self._viewers)

    def _schedule_publish(self) -> None:
        """Publish on the next turn of the loop: a burst of changes makes one message."""
        if self._publish_pending or self._closing:
            return
        self._publish_pending = True
        asyncio.get_running_loop().call_soon(self._publish)

    def _publish(self) -> None:
        self._publish_pending = False
        now = time.monotonic()
        observed = Observed(
            reports={subnet: (report, now - at) for subnet, (report, at) in self.reports.items()},
            subnet_ttls=self.subnet_ttls,
            node_ttls=self.node_ttls,
        )
        model = build_model(
            self.catalog.all_endpoints(), self.catalog.nodes(), self.leases.values(), observed
        )
        ready = self.loaded and self.leases_loaded
        # Before both watches have loaded, the model is filling up: no events for that.
        new = diff_models(self.model, model) if ready and self._published is not None else []
        self.model = model
        now = time.time()
        revision = self.revision
        stamped = [{"at": now, "revision": revision, **event} for event in new]
        self.timeline.extend(stamped)
        etcd, _ = self.etcd_state()
        key = (json.dumps(model, sort_keys=True), etcd)
        if key == self._published and not stamped:
            return
        if ready or self._published is not None:
            self._published = key
        message = sse_message({"model": self.state(), "new": stamped})
        for queue in list(self._viewers):
            self._offer(queue, message)

    @staticmethod
    def _offer(queue: asyncio.Queue[bytes | None], message: bytes | None) -> None:
        """Queue a message; a viewer that lags VIEWER_QUEUE behind keeps only the latest
        (each message carries the whole model and timeline, so nothing is lost for good)."""
        if queue.full():
            while not queue.empty():
                queue.get_nowait()
        queue.put_nowait(message)

    # ------------------------------------------------------------ HTTP

    def _make_app(self) -> web.Application:
        app = web.Application(middlewares=[json_errors])
        app.router.add_get("/v1/catalog/services", self.catalog_services)
        app.router.add_get("/v1/catalog/service/{name}", self.catalog_service)
        app.router.add_get("/v1/health/service/{name}", self.health_service)
        app.router.add_get("/v1/catalog/nodes", self.catalog_nodes)
        app.router.add_get("/v1/catalog/datacenters", self.catalog_datacenters)
        app.router.add_get("/v1/agent/self", self.agent_self)
        app.router.add_get("/v1/status/leader", self.status_leader)
        app.router.add_get("/v1/lab/status", self.lab_status)
        app.router.add_get("/", self.page)
        app.router.add_get("/map/state", self.map_state)
        app.router.add_get("/map/events", self.map_events)
        return app

    def index_of(self, service: str | None) -> int:
        """X-Consul-Index of a query: the whole catalog's, or one service's last change."""
        if self._pending:
            revision = self.catalog.revision
            for change in self._pending:
                if change.full:
                    self._index_floor = revision
                for name in change.services:
                    self._service_index[name] = revision
            self._pending.clear()
        if service is None:
            return consul_index(self.catalog)
        return max(1, self._index_floor, self._service_index.get(service, 0))

    def stale_seconds(self) -> float | None:
        if self.lost_since is None:
            return None
        return time.monotonic() - self.lost_since

    def headers(self, service: str | None = None) -> dict[str, str]:
        """Consul's query-meta headers, and the lab's word on etcd's reachability."""
        stale = self.stale_seconds()
        headers = {
            "X-Consul-Index": str(self.index_of(service)),
            "X-Consul-KnownLeader": "true" if stale is None else "false",
            "X-Consul-LastContact": "0" if stale is None else str(int(stale * 1000)),
            "X-Lab-Etcd": "reachable" if stale is None else "unreachable",
        }
        if stale is not None:
            headers["X-Lab-Stale-Seconds"] = f"{stale:.1f}"
        return headers

    async def _answer(
        self,
        request: web.Request,
        body: Callable[[Shapes], Any],
        *,
        blocks: bool = True,
        service: str | None = None,
    ) -> web.Response:
        """Validate, block if asked, then answer body(shapes) with the headers.

        ``service``: the one service asked about, 404 when it was never seen."""
        try:
            query = parse_blocking(request.query)
        except BadRequest as error:
            return json_error(400, str(error))
        dc = request.query.get("dc")
        if dc and dc != self.datacenter:
            return json_error(
                404, f"No path to datacenter {dc!r}: this lab's is {self.datacenter!r}"
            )
        if not self.loaded:
            return json_error(
                503, "the catalog has not loaded from etcd yet", {"X-Consul-KnownLeader": "false"}
            )
        if service is not None and (missing := self._unknown(service)) is not None:
            return missing
        if blocks and query.blocking:
            await self._block(query, service)
        return web.json_response(
            body(Shapes(self.catalog, self.datacenter, self.index_of(service))),
            headers=self.headers(service),
        )

    async def _block(self, query: BlockingQuery, service: str | None) -> None:
        """Until the index passes query.index, or wait (plus jitter) is over."""
        jitter = random.uniform(0, query.wait_s * self.options.jitter_fraction)
        deadline = time.monotonic() + query.wait_s + jitter
        self.waiting += 1
        try:
            while self.index_of(service) <= query.index and not self._closing:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed_event.wait(), remaining)
        finally:
            self.waiting -= 1

    def _unknown(self, name: str) -> web.Response | None:
        """404 for a service never seen (one whose endpoints all left answers [], as Consul)."""
        if name in self.known_services or self.catalog.endpoints(name):
            return None
        return json_error(
            404,
            f"unknown service {name!r}: no endpoint of it is registered",
            self.headers(name),
        )

    async def catalog_services(self, request: web.Request) -> web.Response:
        return await self._answer(request, lambda shapes: shapes.services())

    async def catalog_service(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        tags = request.query.getall("tag", [])
        return await self._answer(
            request,
            lambda shapes: shapes.catalog_service(select(self.catalog.endpoints(name), tags=tags)),
            service=name,
        )

    async def health_service(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        tags = request.query.getall("tag", [])
        passing = flag(request.query, "passing")
        return await self._answer(
            request,
            lambda shapes: shapes.health_service(
                select(self.catalog.endpoints(name), tags=tags, passing=passing)
            ),
            service=name,
        )

    async def catalog_nodes(self, request: web.Request) -> web.Response:
        return await self._answer(request, lambda shapes: shapes.nodes())

    async def catalog_datacenters(self, request: web.Request) -> web.Response:
        return web.json_response([self.datacenter])

    async def agent_self(self, request: web.Request) -> web.Response:
        return await self._answer(
            request, lambda shapes: shapes.agent_self(AGENT_NAME), blocks=False
        )

    async def status_leader(self, request: web.Request) -> web.Response:
        # Consul answers "" when there is no leader; here: etcd unreachable.
        return web.json_response("" if self.lost_since is not None else f"{self.url[7:]}")

    async def lab_status(self, request: web.Request) -> web.Response:
        stale = self.stale_seconds()
        return web.json_response(
            {
                "loaded": self.loaded,
                "etcd_reachable": stale is None,
                "stale_seconds": None if stale is None else round(stale, 1),
                "revision": self.catalog.revision,
                "services": len(self.catalog.services()),
                "endpoints": len(self.catalog),
                "nodes": len(self.catalog.nodes()),
                "waiting": self.waiting,
                "datacenter": self.datacenter,
                "etcd_endpoints": list(self.settings.etcd_endpoints),
            },
            headers=self.headers(),
        )

    # ------------------------------------------------------------ the live map

    async def page(self, request: web.Request) -> web.Response:
        return web.Response(
            text=PAGE, content_type="text/html", charset="utf-8",
            headers={"Cache-Control": "no-cache"},
        )  # fmt: skip

    async def map_state(self, request: web.Request) -> web.Response:
        return web.json_response(self.state(), headers={"Cache-Control": "no-cache"})

    async def map_events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: the model now, then each change, until the viewer leaves."""
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=VIEWER_QUEUE)
        self._viewers.add(queue)
        try:
            await response.write(sse_message({"model": self.state(), "new": []}))
            while not self._closing:
                try:
                    message = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    await response.write(b": keepalive\n\n")
                    continue
                if message is None:
                    break
                await response.write(message)
        except ConnectionError:  # the viewer went away mid-write
            pass
        finally:
            self._viewers.discard(queue)
        return response


def sse_message(data: dict[str, Any]) -> bytes:
    """One server-sent event: its data is one line of JSON."""
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


__all__ = ["DEFAULT_LISTEN", "MapOptions", "MapServer", "sse_message"]

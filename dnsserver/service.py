"""The DNS server process, wired: etcd watch -> catalog -> packed-answer cache -> sockets.

``DnsService`` owns one of each part and starts them in order: the sockets
first (names outside the domain can be forwarded at once; lab names get
SERVFAIL until the first catalog snapshot, never a false NXDOMAIN), then the
catalog feed, then the optional metrics endpoint. The catalog is only ever
read from memory: no query reads etcd.

When etcd becomes unreachable the feed says so in a log line (``etcd
unreachable ... serving the last known catalog``) and in the metrics
(``etcd_unreachable 1``, ``etcd_outages_total``); answers keep coming from the
last known catalog, and when etcd is back the watch resumes from the last
revision seen, so every change made meanwhile arrives and invalidates what it
must.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from discovery.catalog import Catalog, CatalogChange, follow_catalog
from discovery.feed import keep_following
from discovery.metrics import MetricsServer, new_registry, serve_metrics
from discovery.settings import Settings
from discovery.store import EtcdStore
from discovery.store_api import ConnectionLost, Store, WatchItem
from dnsserver.answers import Zone
from dnsserver.cache import PackedCache
from dnsserver.forwarder import FORWARD_TIMEOUT_S, Forwarder
from dnsserver.handler import QueryHandler, Stats
from dnsserver.metrics import DnsCollector
from dnsserver.server import MAX_TCP_CONNECTIONS, TCP_IDLE_TIMEOUT_S, DnsServer
from dnsserver.view import IndexedCatalog

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DnsOptions:
    listen: tuple[tuple[str, int], ...] = (("127.0.0.1", 53),)
    upstreams: tuple[tuple[str, int], ...] = ()
    forward_timeout_s: float = FORWARD_TIMEOUT_S
    idle_timeout_s: float = TCP_IDLE_TIMEOUT_S
    max_tcp_connections: int = MAX_TCP_CONNECTIONS
    metrics: tuple[str, int] | None = None


def _freeze_after_snapshot(change: CatalogChange) -> None:
    """Keep the catalog out of the garbage collector's full collections.

    A full collection walks every tracked object: about 45 ms with 50,000
    endpoints, a pause every query waiting behind it would see. The catalog's
    records hold no reference cycles (reference counting frees them), so after
    a whole snapshot is in, everything alive moves to gc's permanent generation.
    """
    if change.full:
        gc.freeze()


def _own_addresses(listen: tuple[tuple[str, int], ...]) -> tuple[str, ...]:
    """The listen addresses a client could use, for ns.<domain> (no 0.0.0.0 or ::)."""
    return tuple(host for host, _ in listen if not ipaddress.ip_address(host).is_unspecified)


class DnsService:
    def __init__(self, settings: Settings, options: DnsOptions, store: Store | None = None) -> None:
        """``store``: where the catalog comes from, owned by the caller; without
        one, ``start`` opens an ``EtcdStore`` on the settings' endpoints and
        ``close`` closes it."""
        self.settings = settings
        self.options = options
        self.catalog = Catalog(settings.prefix, settings.domain)
        self.view = IndexedCatalog(self.catalog)
        self.cache = PackedCache()
        self.catalog.subscribe(self.cache.invalidate)
        self.catalog.subscribe(_freeze_after_snapshot)
        self.zone = Zone(settings.domain, settings.record_ttl_s, _own_addresses(options.listen))
        forwarder = (
            Forwarder(options.upstreams, options.forward_timeout_s) if options.upstreams else None
        )
        self.stats = Stats()
        self.handler = QueryHandler(self.zone, self.view, self.cache, forwarder, self.stats)
        self.server = DnsServer(
            self.handler,
            options.listen,
            idle_timeout_s=options.idle_timeout_s,
            max_tcp_connections=options.max_tcp_connections,
        )
        self.etcd_outages = 0
        self.registry = new_registry()
        self.registry.register(DnsCollector(self.metrics))
        self.metrics_port: int | None = None
        self._given_store = store
        self._own_store: EtcdStore | None = None
        self._feed: asyncio.Task[None] | None = None
        self._metrics: MetricsServer | None = None
        self._started = time.monotonic()

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return self.server.addresses

    async def start(self) -> None:
        """Bind, start the feed, then metrics; on any failure undo what was done."""
        try:
            await self._start()
        except BaseException:
            await self.close()
            raise

    async def _start(self) -> None:
        await self.server.start()
        store = self._given_store
        if store is None:
            store = self._own_store = EtcdStore(self.settings)
        self._feed = asyncio.get_running_loop().create_task(self._run_feed(store))
        if self.options.metrics is not None:
            host, port = self.options.metrics
            self._metrics = await serve_metrics(self.registry, host, port)
            self.metrics_port = self._metrics.port

    async def wait_loaded(self, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.view.loaded:
            if time.monotonic() > deadline:
                raise TimeoutError("the catalog did not load from etcd in time")
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        """Stop everything that was started; safe after a half-done start."""
        feed, self._feed = self._feed, None
        if feed is not None:
            feed.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await feed
        await self.server.close()
        metrics, self._metrics = self._metrics, None
        if metrics is not None:
            await metrics.close()
        store, self._own_store = self._own_store, None
        if store is not None:
            await store.close()

    async def __aenter__(self) -> DnsService:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------ catalog feed

    async def _run_feed(self, store: Store) -> None:
        """follow_catalog, restarted should it ever fail (answering from the last catalog)."""
        await keep_following(
            lambda: follow_catalog(
                self.catalog, self._counted(store.follow_prefix(self.catalog.root))
            ),
            lambda: self.catalog.apply(ConnectionLost("catalog feed failed")),
            "dns: catalog feed",
        )

    async def _counted(self, items: AsyncIterator[WatchItem]) -> AsyncIterator[WatchItem]:
        async for item in items:
            if isinstance(item, ConnectionLost):
                self.etcd_outages += 1
            yield item

    # ------------------------------------------------------------ metrics

    def metrics(self) -> dict[str, tuple[str, float]]:
        figures: dict[str, tuple[str, float]] = {
            f"{name}_total": ("counter", value) for name, value in self.stats.as_dict().items()
        }
        figures.update(
            {
                "catalog_connected": ("gauge", int(self.catalog.connected)),
                "etcd_unreachable": ("gauge", int(not self.catalog.connected)),
                "etcd_outages_total": ("counter", self.etcd_outages),
                "catalog_revision": ("gauge", self.catalog.revision),
                "catalog_endpoints": ("gauge", len(self.catalog)),
                "catalog_nodes": ("gauge", len(self.catalog.nodes())),
                "cache_entries": ("gauge", len(self.cache)),
                "tcp_connections": ("gauge", self.server.tcp_connections),
                "tcp_refused_total": ("counter", self.server.tcp_refused),
                "uptime_seconds": ("gauge", round(time.monotonic() - self._started, 3)),
            }
        )
        return figures

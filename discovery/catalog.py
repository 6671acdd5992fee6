"""The catalog: every service endpoint and lab node, in memory, kept current by a watch.

``Catalog`` is a plain index with no I/O: hand it a ``Snapshot`` (replace all)
or a ``Change`` (one key) from ``EtcdStore.follow_prefix`` and it updates its
maps. A value that does not parse is logged once and left out, never fatal: a
learner who writes garbage with etcdctl sees a log line naming the key and
the reason, and everything else keeps working.

Readers (the DNS server, the CLI) ask it by service, by node or by address,
and may subscribe to hear which services changed, to drop cached answers.
``follow_catalog`` is the small loop that connects the two.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field

from discovery.errors import SchemaError
from discovery.schema import (
    Endpoint,
    Node,
    decode_node,
    decode_service_record,
    domain_root,
    parse_record_key,
)
from discovery.store_api import ConnectionLost, Resumed, Snapshot, WatchItem

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CatalogChange:
    services: frozenset[str]  # services whose endpoints changed
    nodes: bool  # whether any node record changed
    full: bool = False  # a whole new snapshot: drop everything cached


@dataclass
class Catalog:
    prefix: str
    domain: str
    revision: int = 0
    connected: bool = False
    skipped: dict[str, str] = field(default_factory=dict)  # key -> reason it was left out
    _endpoints: dict[str, dict[str, Endpoint]] = field(default_factory=dict)  # service -> key ->
    _service_of_key: dict[str, str] = field(default_factory=dict)
    _nodes: dict[str, Node] = field(default_factory=dict)  # key -> node
    _listeners: list[Callable[[CatalogChange], None]] = field(default_factory=list)

    @property
    def root(self) -> str:
        """The etcd prefix this catalog mirrors."""
        return domain_root(self.prefix, self.domain) + "/"

    # ------------------------------------------------------------ reading

    def services(self) -> list[str]:
        return sorted(self._endpoints)

    def endpoints(self, service: str) -> list[Endpoint]:
        by_key = self._endpoints.get(service, {})
        return [by_key[key] for key in sorted(by_key)]

    def all_endpoints(self) -> list[Endpoint]:
        return [endpoint for service in self.services() for endpoint in self.endpoints(service)]

    def nodes(self) -> list[Node]:
        return sorted(self._nodes.values(), key=lambda node: node.node)

    def __len__(self) -> int:
        return sum(len(by_key) for by_key in self._endpoints.values())

    def subscribe(self, listener: Callable[[CatalogChange], None]) -> None:
        self._listeners.append(listener)

    # ------------------------------------------------------------ updating

    def apply(self, item: WatchItem) -> None:
        """Fold one item of EtcdStore.follow_prefix into the index."""
        if isinstance(item, Snapshot):
            # Revision and connection first: listeners read them when told of the change.
            self.revision = item.revision
            self.connected = True
            self.replace_all((kv.key, kv.value) for kv in item.items.values())
        elif isinstance(item, ConnectionLost):
            self.connected = False
        elif isinstance(item, Resumed):
            self.connected = True
        else:
            services, nodes = self._set(item.key, item.value)
            self.revision = max(self.revision, item.revision)
            self._notify(CatalogChange(frozenset(services), nodes))

    def replace_all(self, items: Iterable[tuple[str, bytes]]) -> None:
        self._endpoints.clear()
        self._service_of_key.clear()
        self._nodes.clear()
        self.skipped.clear()
        for key, value in items:
            self._set(key, value)
        self._notify(CatalogChange(frozenset(self._endpoints), True, full=True))

    def _set(self, key: str, value: bytes | None) -> tuple[set[str], bool]:
        """Put or delete one key; returns (services touched, whether nodes changed)."""
        touched: set[str] = set()
        old_service = self._service_of_key.pop(key, None)
        if old_service is not None:
            by_key = self._endpoints[old_service]
            del by_key[key]
            if not by_key:
                del self._endpoints[old_service]
            touched.add(old_service)
        nodes_changed = self._nodes.pop(key, None) is not None
        self.skipped.pop(key, None)
        if value is None:
            return touched, nodes_changed
        try:
            record_key = parse_record_key(self.prefix, self.domain, key)
            if record_key.kind == "service":
                endpoint = decode_service_record(record_key, value)
                self._endpoints.setdefault(endpoint.service, {})[key] = endpoint
                self._service_of_key[key] = endpoint.service
                touched.add(endpoint.service)
            else:
                self._nodes[key] = decode_node(value)
                nodes_changed = True
        except SchemaError as error:
            self.skipped[key] = str(error)
            log.warning("catalog: skipping %s: %s", key, error)
        return touched, nodes_changed

    def _notify(self, change: CatalogChange) -> None:
        for listener in self._listeners:
            try:
                listener(change)
            except Exception:  # one broken listener must not stop the catalog
                log.exception("catalog listener failed")


async def follow_catalog(catalog: Catalog, items: AsyncIterator[WatchItem]) -> None:
    """Apply a follow_prefix stream to the catalog, logging outages, until cancelled."""
    async for item in items:
        if isinstance(item, ConnectionLost):
            log.warning("etcd unreachable (%s): serving the last known catalog", item.reason)
        elif isinstance(item, Resumed):
            log.info("etcd reachable again: catching up from revision %d", item.revision)
        catalog.apply(item)

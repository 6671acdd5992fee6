"""The catalog as the DNS answers read it: the catalog itself, plus an address index.

``discovery.catalog.Catalog`` indexes endpoints by service and nodes by name.
PTR answers also need "who has this address", and the empty non-terminals
``_tcp.service.lab`` and ``_<tag>.service.lab`` need "does any serving endpoint
make a name below me"; ``IndexedCatalog`` keeps both indexes beside the
catalog, dropped on every catalog change and rebuilt on the next lookup that
needs them (rare next to forward lookups, and O(endpoints) to build). Only
serving endpoints are indexed: the others are in no answer. No I/O.
"""

from __future__ import annotations

import ipaddress

from discovery.catalog import Catalog, CatalogChange
from discovery.schema import Endpoint, Node


class IndexedCatalog:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._by_address: dict[str, tuple[list[str], list[str]]] | None = None
        # (any serving endpoint, srv_branches), built on first use after a change
        self._tree: tuple[bool, frozenset[str]] | None = None
        catalog.subscribe(self._changed)

    def _changed(self, change: CatalogChange) -> None:
        self._by_address = None
        self._tree = None

    @property
    def revision(self) -> int:
        return self.catalog.revision

    @property
    def loaded(self) -> bool:
        """True once a first snapshot arrived: before that every answer would be a lie."""
        return self.catalog.connected or self.catalog.revision > 0

    def endpoints(self, service: str) -> list[Endpoint]:
        return self.catalog.endpoints(service)

    def nodes(self) -> list[Node]:
        return self.catalog.nodes()

    def names_of_address(self, address: str) -> tuple[list[str], list[str]]:
        if self._by_address is None:
            self._by_address = self._build()
        return self._by_address.get(address, ([], []))

    def srv_branches(self) -> frozenset[str]:
        """X for every _X.service.<domain> with an SRV name below it: the protocols
        and the tags of serving endpoints that have a port."""
        return self._service_tree()[1]

    def any_serving(self) -> bool:
        """Whether service.<domain> has any name below it."""
        return self._service_tree()[0]

    def _service_tree(self) -> tuple[bool, frozenset[str]]:
        if self._tree is None:
            serving = [e for e in self.catalog.all_endpoints() if e.serving]
            branches = frozenset(
                label for e in serving if e.port for label in (e.protocol, *e.tags)
            )
            self._tree = (bool(serving), branches)
        return self._tree

    def _build(self) -> dict[str, tuple[list[str], list[str]]]:
        index: dict[str, tuple[list[str], list[str]]] = {}
        for endpoint in self.catalog.all_endpoints():
            if not endpoint.serving:
                continue
            services = index.setdefault(_canonical(endpoint.address), ([], []))[0]
            if endpoint.service not in services:
                services.append(endpoint.service)
        for node in self.catalog.nodes():
            index.setdefault(_canonical(node.address), ([], []))[1].append(node.node)
        return index


def _canonical(address: str) -> str:
    return str(ipaddress.ip_address(address))

"""The catalog as the DNS answers read it: the catalog itself, plus an address index.

``discovery.catalog.Catalog`` indexes endpoints by service and nodes by name.
PTR answers also need "who has this address"; ``IndexedCatalog`` keeps that
index beside the catalog, dropped on every catalog change and rebuilt on the
next reverse lookup (rare next to forward lookups, and O(endpoints) to build).
No I/O.
"""

from __future__ import annotations

import ipaddress

from discovery.catalog import Catalog, CatalogChange
from discovery.schema import Endpoint, Node


class IndexedCatalog:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._by_address: dict[str, tuple[list[str], list[str]]] | None = None
        catalog.subscribe(self._changed)

    def _changed(self, change: CatalogChange) -> None:
        self._by_address = None

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

    def _build(self) -> dict[str, tuple[list[str], list[str]]]:
        index: dict[str, tuple[list[str], list[str]]] = {}
        for endpoint in self.catalog.all_endpoints():
            services = index.setdefault(_canonical(endpoint.host), ([], []))[0]
            if endpoint.service not in services:
                services.append(endpoint.service)
        for node in self.catalog.nodes():
            index.setdefault(_canonical(node.host), ([], []))[1].append(node.node)
        return index


def _canonical(address: str) -> str:
    return str(ipaddress.ip_address(address))

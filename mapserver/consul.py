"""The catalog in Consul's HTTP API shapes, and the parsing of a blocking query's parameters.

Pure: a ``Catalog`` (and its etcd revision) in, JSON-ready lists and dicts
out, no I/O. ``mapserver.server`` serves them; the unit tests check them
field by field against Consul's documented responses, so a tool written for
Consul's catalog (Prometheus's ``consul_sd_configs``, consul-template, the Go
``api`` package) reads them unchanged.

How the lab maps onto Consul's model:

* a Consul *node* is a lab host (its node record: name and underlay address);
  an endpoint registered without a host sits on the made-up node
  ``external``, as Consul's "external services" do;
* a Consul *service instance* is one endpoint: ``ServiceAddress`` is the
  endpoint's (container) address, ``Address`` the host's underlay address
  when its node record is known, else the endpoint's own address;
* the one *check* of an instance is Docker's health, mapped onto Consul's
  states: passing/healthy -> passing, starting -> warning,
  unhealthy/paused -> critical;
* every index (``X-Consul-Index``, ``CreateIndex``, ``ModifyIndex``) is an
  etcd revision (it rises on every write, as Consul's Raft index does): the
  catalog's last change, or for one service's queries that service's last
  change (``mapserver.server`` keeps those). The catalog keeps no revision
  per key, so an instance's Create/ModifyIndex are its service's index too.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from discovery.catalog import Catalog
from discovery.schema import Endpoint, Node

EXTERNAL_NODE = "external"
# Consul's limits on a blocking query: 5 minutes when no wait is given, at most 10.
DEFAULT_WAIT_S = 300.0
MAX_WAIT_S = 600.0
# Consul adds up to wait/16 to spread the wake-ups of concurrent waiters.
JITTER_FRACTION = 1 / 16

CONSUL_HEALTH = {
    "passing": "passing",
    "healthy": "passing",
    "starting": "warning",
    "unhealthy": "critical",
    "paused": "critical",
}


class BadRequest(ValueError):
    """A query parameter Consul would refuse with 400; the message says which and why."""


# ------------------------------------------------------------------ parameters

# Go's time.ParseDuration units, which Consul's ?wait= takes ("10s", "1m30s", "500ms").
_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(text: str) -> float:
    """Seconds in a Go duration ("10s", "5m", "1m30s", "250ms"); ValueError otherwise."""
    if text == "0":
        return 0.0
    if not text or text.startswith(("-", "+")):
        raise ValueError(f"invalid duration {text!r}")
    total, position = 0.0, 0
    while position < len(text):
        match = _DURATION_PART.match(text, position)
        if match is None:
            raise ValueError(f"invalid duration {text!r} (a number and a unit: 10s, 5m, 250ms)")
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    return total


@dataclass(frozen=True)
class BlockingQuery:
    """What ``?index=N&wait=D`` asked for: ``index`` 0 means answer at once."""

    index: int = 0
    wait_s: float = DEFAULT_WAIT_S

    @property
    def blocking(self) -> bool:
        return self.index > 0


def parse_blocking(query: Mapping[str, str]) -> BlockingQuery:
    """``index`` and ``wait`` from a query string; BadRequest (400) when malformed.

    As Consul: ``wait`` defaults to 5 minutes and is capped at 10; without an
    ``index`` (or with 0) the query does not block."""
    index = 0
    raw_index = query.get("index")
    if raw_index is not None and raw_index != "":
        if not raw_index.isascii() or not raw_index.isdigit():
            raise BadRequest(f"Invalid index: {raw_index!r} is not a non-negative integer")
        index = int(raw_index)
        if index >= 2**64:
            raise BadRequest(f"Invalid index: {raw_index!r} is larger than 64 bits")
    wait_s = DEFAULT_WAIT_S
    raw_wait = query.get("wait")
    if raw_wait is not None and raw_wait != "":
        try:
            wait_s = parse_duration(raw_wait)
        except ValueError as error:
            raise BadRequest(f"Invalid wait time: {error}") from None
        wait_s = min(wait_s, MAX_WAIT_S)
    return BlockingQuery(index, wait_s)


def flag(query: Mapping[str, str], name: str) -> bool:
    """A Consul boolean parameter: present (``?passing``) or true-ish (``?passing=true``)."""
    if name not in query:
        return False
    return query[name].lower() not in ("false", "0", "no")


# ------------------------------------------------------------------ shapes


def consul_index(catalog: Catalog) -> int:
    """X-Consul-Index: the etcd revision, never 0 (Consul clients treat 0 as 'no index')."""
    return max(1, catalog.revision)


def node_id(name: str) -> str:
    """A stable UUID for a node name (Consul's node IDs are UUIDs)."""
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{name}.node.discovery-lab"))


def _tagged(address: str) -> dict[str, str]:
    family = "ipv6" if ":" in address else "ipv4"
    return {"lan": address, f"lan_{family}": address, "wan": address, f"wan_{family}": address}


@dataclass(frozen=True)
class NodeView:
    name: str
    address: str
    meta: dict[str, str]


class Shapes:
    """Consul's responses, made from one catalog at its current revision."""

    def __init__(self, catalog: Catalog, datacenter: str, index: int | None = None) -> None:
        """``index``: the CreateIndex/ModifyIndex to show (default: the catalog's)."""
        self.catalog = catalog
        self.datacenter = datacenter
        self.index = consul_index(catalog) if index is None else index
        self._nodes: dict[str, Node] = {node.node: node for node in catalog.nodes()}

    def node_of(self, endpoint: Endpoint) -> NodeView:
        name = endpoint.node or EXTERNAL_NODE
        record = self._nodes.get(endpoint.node) if endpoint.node else None
        if record is None:
            meta = {"external-node": "true"} if not endpoint.node else {}
            return NodeView(name, endpoint.address, meta)
        return NodeView(name, record.address, _node_meta(record))

    def _node_json(self, view: NodeView, meta_key: str) -> dict[str, Any]:
        return {
            "ID": node_id(view.name),
            "Node": view.name,
            "Address": view.address,
            "Datacenter": self.datacenter,
            "TaggedAddresses": _tagged(view.address),
            meta_key: view.meta,
            "CreateIndex": self.index,
            "ModifyIndex": self.index,
        }

    # /v1/catalog/services
    def services(self) -> dict[str, list[str]]:
        return {
            name: sorted({tag for e in self.catalog.endpoints(name) for tag in e.tags})
            for name in self.catalog.services()
        }

    # /v1/catalog/service/<name>
    def catalog_service(self, endpoints: Iterable[Endpoint]) -> list[dict[str, Any]]:
        rows = []
        for endpoint in endpoints:
            view = self.node_of(endpoint)
            row = self._node_json(view, "NodeMeta")
            del row["CreateIndex"], row["ModifyIndex"]
            row.update(
                {
                    "ServiceKind": "",
                    "ServiceID": endpoint.endpoint_id,
                    "ServiceName": endpoint.service,
                    "ServiceTags": list(endpoint.tags),
                    "ServiceAddress": endpoint.address,
                    "ServiceTaggedAddresses": _service_tagged(endpoint),
                    "ServiceWeights": {"Passing": endpoint.weight, "Warning": 1},
                    "ServiceMeta": service_meta(endpoint),
                    "ServicePort": endpoint.port,
                    "ServiceEnableTagOverride": False,
                    "ServiceProxy": {},
                    "ServiceConnect": {},
                    "CreateIndex": self.index,
                    "ModifyIndex": self.index,
                }
            )
            rows.append(row)
        return rows

    # /v1/health/service/<name>
    def health_service(self, endpoints: Iterable[Endpoint]) -> list[dict[str, Any]]:
        entries = []
        for endpoint in endpoints:
            view = self.node_of(endpoint)
            status = CONSUL_HEALTH.get(endpoint.health, "critical")
            entries.append(
                {
                    "Node": self._node_json(view, "Meta"),
                    "Service": {
                        "Kind": "",
                        "ID": endpoint.endpoint_id,
                        "Service": endpoint.service,
                        "Tags": list(endpoint.tags),
                        "Address": endpoint.address,
                        "TaggedAddresses": _service_tagged(endpoint),
                        "Meta": service_meta(endpoint),
                        "Port": endpoint.port,
                        "Weights": {"Passing": endpoint.weight, "Warning": 1},
                        "EnableTagOverride": False,
                        "Proxy": {},
                        "Connect": {},
                        "CreateIndex": self.index,
                        "ModifyIndex": self.index,
                    },
                    "Checks": [
                        {
                            "Node": view.name,
                            "CheckID": f"service:{endpoint.endpoint_id}",
                            "Name": f"Service '{endpoint.service}' check",
                            "Status": status,
                            "Notes": "the container's Docker health, as its agent registered it",
                            "Output": f"docker health: {endpoint.health}",
                            "ServiceID": endpoint.endpoint_id,
                            "ServiceName": endpoint.service,
                            "ServiceTags": list(endpoint.tags),
                            "Type": "docker",
                            "Definition": {},
                            "CreateIndex": self.index,
                            "ModifyIndex": self.index,
                        }
                    ],
                }
            )
        return entries

    # /v1/catalog/nodes
    def nodes(self) -> list[dict[str, Any]]:
        """Every node record, and the nodes endpoints name without one (sorted by name)."""
        views: dict[str, NodeView] = {
            node.node: NodeView(node.node, node.address, _node_meta(node))
            for node in self.catalog.nodes()
        }
        for endpoint in self.catalog.all_endpoints():
            view = self.node_of(endpoint)
            views.setdefault(view.name, view)
        return [self._node_json(views[name], "Meta") for name in sorted(views)]

    # /v1/agent/self (only what clients read: Prometheus asks it for the datacenter)
    def agent_self(self, node_name: str) -> dict[str, Any]:
        return {
            "Config": {
                "Datacenter": self.datacenter,
                "NodeName": node_name,
                "NodeID": node_id(node_name),
                "Server": False,
                "Revision": "",
                "Version": "discovery-lab",
            },
            "Member": {"Name": node_name, "Addr": "127.0.0.1", "Port": 0, "Tags": {}},
            "Meta": {},
        }


def _node_meta(node: Node) -> dict[str, str]:
    return {"subnet": node.subnet} if node.subnet else {}


def _service_tagged(endpoint: Endpoint) -> dict[str, dict[str, Any]]:
    family = "ipv6" if ":" in endpoint.address else "ipv4"
    where = {"Address": endpoint.address, "Port": endpoint.port}
    return {f"lan_{family}": where, f"wan_{family}": where}


def service_meta(endpoint: Endpoint) -> dict[str, str]:
    """What the lab knows beyond Consul's fields; Prometheus shows each as
    ``__meta_consul_service_metadata_<key>`` (so: label-safe keys, string values)."""
    meta = {
        "protocol": endpoint.protocol,
        "port_name": endpoint.port_name,
        "health": endpoint.health,
        "container_name": endpoint.container_name,
        "container_id": endpoint.container_id,
        "image": endpoint.image,
        "registered_at": endpoint.registered_at,
    }
    return {key: value for key, value in meta.items() if value}


def select(
    endpoints: Iterable[Endpoint], *, tags: Iterable[str] = (), passing: bool = False
) -> list[Endpoint]:
    """Consul's ``?tag=`` (every one given must be present) and ``?passing`` filters."""
    wanted = set(tags)
    return [
        endpoint
        for endpoint in endpoints
        if wanted <= set(endpoint.tags)
        and (not passing or CONSUL_HEALTH.get(endpoint.health) == "passing")
    ]


def error_body(status: int, message: str) -> dict[str, Any]:
    """The JSON body of every error this API answers."""
    return {"error": message, "status": status}


__all__ = [
    "DEFAULT_WAIT_S",
    "EXTERNAL_NODE",
    "JITTER_FRACTION",
    "MAX_WAIT_S",
    "BadRequest",
    "BlockingQuery",
    "Shapes",
    "consul_index",
    "error_body",
    "flag",
    "node_id",
    "parse_blocking",
    "parse_duration",
    "select",
    "service_meta",
]

"""Where service and node records live in etcd, and what they look like.

The layout is the one CoreDNS's etcd plugin (and SkyDNS before it) reads: the
DNS name, labels reversed, under a prefix. So with the defaults (prefix
``/skydns``, domain ``lab``)::

    /skydns/lab/service/web/3f2a9c1b2d4e-10-5-2-3-80tcp   one endpoint of web
    /skydns/lab/node/host2                                 one lab host

A CoreDNS pointed at the same etcd (``etcd lab { path /skydns }``) answers
``web.service.lab`` from these keys without any help from this project.

Values are JSON. The fields CoreDNS reads come first (``host``, ``port``,
``priority``, ``weight``, ``ttl``); the rest are ours and CoreDNS ignores them.
Every record is written under the registering agent's etcd lease, so it
disappears when the agent stops renewing it.

Everything here is pure: encode, decode, build keys, parse keys. Decoders
reject malformed input with a ``SchemaError`` whose message names the field.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from discovery.errors import SchemaError
from discovery.jsonvalue import load_json_object

# Docker's health states, plus "passing" for containers without a HEALTHCHECK
# (Consul's word) and "paused" for paused containers.
HEALTH_STATES = ("passing", "healthy", "starting", "unhealthy", "paused")
# Only these are answered in DNS, as Consul answers only passing checks.
SERVING_HEALTH = frozenset({"passing", "healthy"})
PROTOCOLS = ("tcp", "udp")
DEFAULT_PRIORITY = 10
DEFAULT_WEIGHT = 10
DNS_LABEL_MAX_LEN = 63

_LABEL_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


# ---------------------------------------------------------------- DNS labels


def is_dns_label(text: str) -> bool:
    return bool(_LABEL_RE.match(text))


def normalise_dns_label(name: str) -> str:
    """Make a service or tag name a valid DNS label, or say why it cannot be.

    Lower-case; runs of anything but letters, digits and '-' become one '-';
    leading and trailing '-' are dropped. 'My_Web.App' -> 'my-web-app'.
    Names longer than 63 characters are refused rather than cut, because two
    cut names could collide.
    """
    label = re.sub(r"[^a-z0-9-]+", "-", name.strip().lower())
    label = re.sub(r"-{2,}", "-", label).strip("-")
    if not label:
        raise SchemaError(f"name {name!r} has no letters or digits to make a DNS label from")
    if len(label) > DNS_LABEL_MAX_LEN:
        raise SchemaError(
            f"name {name!r} is {len(label)} characters as a DNS label; the limit is 63"
        )
    return label


# ---------------------------------------------------------------- keys


def domain_root(prefix: str, domain: str) -> str:
    """'/skydns', 'lab.example' -> '/skydns/example/lab'."""
    labels = [label for label in domain.lower().split(".") if label]
    return prefix.rstrip("/") + "/" + "/".join(reversed(labels))


def services_prefix(prefix: str, domain: str) -> str:
    return domain_root(prefix, domain) + "/service/"


def service_prefix(prefix: str, domain: str, service: str) -> str:
    return services_prefix(prefix, domain) + service + "/"


def endpoint_key(prefix: str, domain: str, service: str, endpoint_id: str) -> str:
    return service_prefix(prefix, domain, service) + endpoint_id


def nodes_prefix(prefix: str, domain: str) -> str:
    return domain_root(prefix, domain) + "/node/"


def node_key(prefix: str, domain: str, node: str) -> str:
    return nodes_prefix(prefix, domain) + node


@dataclass(frozen=True)
class RecordKey:
    kind: Literal["service", "node"]
    name: str  # the service name, or the node name
    endpoint_id: str = ""  # only for kind "service"


def parse_record_key(prefix: str, domain: str, key: str) -> RecordKey:
    """Inverse of endpoint_key / node_key; rejects anything else under the root."""
    root = domain_root(prefix, domain) + "/"
    if not key.startswith(root):
        raise SchemaError(f"key {key!r} is not under {root!r}")
    parts = key[len(root) :].split("/")
    if parts[0] == "service":
        if len(parts) != 3:
            raise SchemaError(f"key {key!r}: expected {root}service/<service>/<endpoint id>")
        _, service, endpoint_id = parts
        if not is_dns_label(service):
            raise SchemaError(f"key {key!r}: service {service!r} is not a valid DNS label")
        if not is_dns_label(endpoint_id):
            raise SchemaError(f"key {key!r}: endpoint id {endpoint_id!r} is not a valid DNS label")
        return RecordKey("service", service, endpoint_id)
    if parts[0] == "node":
        if len(parts) != 2 or not is_dns_label(parts[1]):
            raise SchemaError(f"key {key!r}: expected {root}node/<node name as a DNS label>")
        return RecordKey("node", parts[1])
    raise SchemaError(f"key {key!r}: expected 'service' or 'node' after {root!r}")


def _dashed_address(address: str) -> str:
    return address.replace(".", "-").replace(":", "-")


def container_endpoint_id(container_id: str, address: str, port: int, protocol: str) -> str:
    """Stable id of one (container, address, port): the same on every reconcile."""
    suffix = f"{port}{protocol}" if port else "ip"
    return f"{container_id[:12]}-{_dashed_address(address)}-{suffix}"


def manual_endpoint_id(address: str, port: int, protocol: str) -> str:
    suffix = f"{port}{protocol}" if port else "ip"
    return f"manual-{_dashed_address(address)}-{suffix}"


# ---------------------------------------------------------------- records


def utc_now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Endpoint:
    """One reachable address (and port) of one service."""

    service: str
    # The IP address clients connect to. Stored as "host", CoreDNS's (SkyDNS's) name
    # for it; `node` is the lab host.
    address: str
    port: int = 0  # 0: no port, an A-record-only endpoint
    protocol: str = "tcp"
    port_name: str = ""  # for _<port_name>._<protocol>.<service>.service.<domain>
    node: str = ""  # the lab host that registered it
    container_id: str = ""
    container_name: str = ""
    image: str = ""
    tags: tuple[str, ...] = ()
    health: str = "passing"
    registered_at: str = field(default_factory=utc_now_text)
    priority: int = DEFAULT_PRIORITY
    weight: int = DEFAULT_WEIGHT
    ttl: int = 5

    def __post_init__(self) -> None:
        validate_endpoint(self)

    @property
    def serving(self) -> bool:
        return self.health in SERVING_HEALTH

    @property
    def endpoint_id(self) -> str:
        if self.container_id:
            return container_endpoint_id(self.container_id, self.address, self.port, self.protocol)
        return manual_endpoint_id(self.address, self.port, self.protocol)


# Consul's check states, and as many checks as a node record may carry.
CHECK_STATUSES = ("passing", "warning", "critical")
MAX_NODE_CHECKS = 16


@dataclass(frozen=True)
class Node:
    """One lab host, as its agent announces it."""

    node: str
    address: str  # the host's underlay (public) address; stored as "host"
    subnet: str = ""  # its container subnet lease, once it has one
    registered_at: str = field(default_factory=utc_now_text)
    ttl: int = 5
    # Consul's node checks, as its agent sees them: ("docker", "passing"),
    # ("dns", "critical"), ... sorted by name. Stored as {"docker": "passing"}.
    checks: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not is_dns_label(self.node):
            raise SchemaError(f"node name {self.node!r} is not a valid DNS label")
        if len(self.checks) > MAX_NODE_CHECKS:
            raise SchemaError(f"checks: {len(self.checks)} (the limit is {MAX_NODE_CHECKS})")
        for name, status in self.checks:
            if not is_dns_label(name) or status not in CHECK_STATUSES:
                raise SchemaError(
                    f"check {str(name)[:40]!r}: {str(status)[:40]!r} is not one of "
                    + ", ".join(CHECK_STATUSES)
                )
        _check_address("host", self.address)
        if self.subnet:
            try:
                ipaddress.ip_network(self.subnet)
            except ValueError as error:
                raise SchemaError(f"subnet {self.subnet!r} is not a network: {error}") from error
        _check_int("ttl", self.ttl, 0, 2**31 - 1)
        _check_time("registered_at", self.registered_at)


def _check_int(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SchemaError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    if not low <= value <= high:
        raise SchemaError(f"{name} must be between {low} and {high}, got {value}")


def _check_address(name: str, value: Any) -> None:
    if not isinstance(value, str):
        raise SchemaError(f"{name} must be an IP address string, got {type(value).__name__}")
    try:
        ipaddress.ip_address(value)
    except ValueError as error:
        raise SchemaError(f"{name} {value!r} is not an IP address") from error


def _check_time(name: str, value: Any) -> None:
    if not isinstance(value, str):
        raise SchemaError(f"{name} must be an ISO 8601 time string")
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as error:
        raise SchemaError(f"{name} {value!r} is not an ISO 8601 time") from error


def validate_endpoint(endpoint: Endpoint) -> None:
    if not isinstance(endpoint.service, str) or not is_dns_label(endpoint.service):
        raise SchemaError(f"service {endpoint.service!r} is not a valid DNS label")
    _check_address("host", endpoint.address)
    _check_int("port", endpoint.port, 0, 65535)
    _check_int("priority", endpoint.priority, 0, 65535)
    _check_int("weight", endpoint.weight, 0, 65535)
    _check_int("ttl", endpoint.ttl, 0, 2**31 - 1)
    if endpoint.protocol not in PROTOCOLS:
        raise SchemaError(f"protocol must be one of {PROTOCOLS}, got {endpoint.protocol!r}")
    if endpoint.port_name and not is_dns_label(endpoint.port_name):
        raise SchemaError(f"port_name {endpoint.port_name!r} is not a valid DNS label")
    if endpoint.health not in HEALTH_STATES:
        raise SchemaError(f"health must be one of {HEALTH_STATES}, got {endpoint.health!r}")
    for name in ("node", "container_id", "container_name", "image"):
        if not isinstance(getattr(endpoint, name), str):
            raise SchemaError(f"{name} must be a string")
    if endpoint.node and not is_dns_label(endpoint.node):
        raise SchemaError(f"node {endpoint.node!r} is not a valid DNS label")
    if not isinstance(endpoint.tags, tuple):
        raise SchemaError("tags must be a list of strings")
    for tag in endpoint.tags:
        if not isinstance(tag, str) or not is_dns_label(tag):
            raise SchemaError(f"tag {tag!r} is not a valid DNS label")
    _check_time("registered_at", endpoint.registered_at)


def encode_endpoint(endpoint: Endpoint) -> bytes:
    data = asdict(endpoint)
    data["tags"] = list(endpoint.tags)
    data["host"] = data.pop("address")
    # CoreDNS's fields first, so `etcdctl get` reads naturally.
    ordered = {key: data.pop(key) for key in ("host", "port", "priority", "weight", "ttl")}
    ordered.update(data)
    return json.dumps(ordered, separators=(",", ":")).encode()


_ENDPOINT_FIELDS = {
    "service": str,
    "host": str,
    "port": int,
    "protocol": str,
    "port_name": str,
    "node": str,
    "container_id": str,
    "container_name": str,
    "image": str,
    "tags": list,
    "health": str,
    "registered_at": str,
    "priority": int,
    "weight": int,
    "ttl": int,
}
_ENDPOINT_REQUIRED = ("service", "host")


def decode_endpoint(raw: bytes | str) -> Endpoint:
    data = load_json_object(raw, "endpoint")
    for name in _ENDPOINT_REQUIRED:
        if name not in data:
            raise SchemaError(f"endpoint value has no {name!r} field")
    known = {name: value for name, value in data.items() if name in _ENDPOINT_FIELDS}
    for name, value in known.items():
        expected = _ENDPOINT_FIELDS[name]
        if not isinstance(value, expected) or isinstance(value, bool):
            raise SchemaError(
                f"endpoint field {name!r} must be {expected.__name__}, got {type(value).__name__}"
            )
    if "tags" in known:
        known["tags"] = tuple(known["tags"])
    known["address"] = known.pop("host")
    return Endpoint(**known)


def decode_service_record(key: RecordKey, raw: bytes | str) -> Endpoint:
    """Decode a value found at a service key, checking it agrees with the key."""
    endpoint = decode_endpoint(raw)
    if endpoint.service != key.name:
        raise SchemaError(
            f"record for service {endpoint.service!r} is stored under service {key.name!r}"
        )
    return endpoint


def encode_node(node: Node) -> bytes:
    data = asdict(node)
    data["host"] = data.pop("address")
    checks = data.pop("checks")
    if checks:
        data["checks"] = dict(checks)
    return json.dumps(data, separators=(",", ":")).encode()


def decode_node(raw: bytes | str) -> Node:
    data = load_json_object(raw, "node")
    for name in ("node", "host"):
        if not isinstance(data.get(name), str):
            raise SchemaError(f"node value has no string {name!r} field")
    allowed = {"node", "host", "subnet", "registered_at", "ttl"}
    known = {name: value for name, value in data.items() if name in allowed}
    known["address"] = known.pop("host")
    checks = data.get("checks", {})
    if not isinstance(checks, dict):
        raise SchemaError("node value: checks must be a JSON object")
    if len(checks) > MAX_NODE_CHECKS:
        raise SchemaError(f"node value: {len(checks)} checks (the limit is {MAX_NODE_CHECKS})")
    return Node(**known, checks=tuple(sorted(checks.items())))

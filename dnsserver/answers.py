"""From a question to an answer: the lab domain's DNS semantics, with no I/O.

``resolve(name, qtype, zone, view)`` takes a question (the name as a tuple of
lower-case labels) and a read-only view of the catalog, and returns an
``Answer``: the rcode and the records of each section. ``None`` means "not our
name": the caller forwards it upstream or refuses it.

The names, with the default domain ``lab`` (Consul's DNS interface and CoreDNS's
etcd plugin are the models)::

    lab                          SOA, NS (the zone apex)
    ns.lab                       A/AAAA of the server itself, when it knows them
    web.service.lab              A/AAAA/SRV of every serving endpoint of web
    TAG.web.service.lab          the same, only endpoints tagged TAG
    ID.web.service.lab           A/AAAA of one endpoint (the targets of SRV records)
    _web._tcp.service.lab        SRV, RFC 2782 style (_tcp/_udp, or a tag, as Consul)
    _http._tcp.web.service.lab   SRV of the endpoints whose port is named http
    HOST.node.lab                A/AAAA of a lab host's underlay address
    7.1.5.10.in-addr.arpa        PTR to web.service.lab (and HOST.node.lab)

A name that exists but has no record of the asked type gets NODATA (NOERROR,
empty answer); a name that does not exist gets NXDOMAIN. Both carry the zone's
SOA in the authority section; its minimum (and TTL) is the negative TTL.
Only serving endpoints (health passing or healthy) make names, as Consul leaves
endpoints with failing checks out: a service, tag or endpoint name exists while
a serving endpoint puts a record at it or below it. ``_tcp.service.lab``,
``_<tag>.service.lab`` and ``_tcp.web.service.lab`` are empty non-terminals
(NODATA, never NXDOMAIN, since RFC 8020 reads NXDOMAIN as "nothing below").

Every answer also says what it depends on (``depends_on``), so a cache of
packed answers knows which entries a catalog change makes stale.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from dnslib import AAAA, NS, PTR, QTYPE, RCODE, RR, SOA, SRV, TXT, A

from discovery.schema import PROTOCOLS, Endpoint, Node

SOA_REFRESH_S = 3600
SOA_RETRY_S = 600
SOA_EXPIRE_S = 86400
# Cache dependency of answers that any catalog change may alter (apex, PTR ...).
DEPENDS_ON_EVERYTHING = "*"
DEPENDS_ON_NODES = "nodes"

Labels = tuple[bytes, ...]


def service_dependency(service: str) -> str:
    return "service:" + service


class CatalogView(Protocol):
    """What resolve reads: dns.view.IndexedCatalog over discovery.catalog.Catalog."""

    @property
    def revision(self) -> int: ...

    def endpoints(self, service: str) -> list[Endpoint]: ...

    def nodes(self) -> list[Node]: ...

    def names_of_address(self, address: str) -> tuple[list[str], list[str]]:
        """(services with a serving endpoint at this address, nodes with this underlay
        address)."""
        ...

    def srv_branches(self) -> frozenset[str]:
        """X for every _X.service.<domain> that has an SRV name below it."""
        ...

    def any_serving(self) -> bool:
        """Whether any endpoint serves, so service.<domain> has names below it."""
        ...


@dataclass(frozen=True)
class Zone:
    domain: str = "lab"
    ttl_s: int = 5
    # Addresses of this server, answered for ns.<domain> (glue of the NS record).
    ns_addresses: tuple[str, ...] = ()

    @property
    def labels(self) -> Labels:
        return labels_of(self.domain)

    def name(self, *labels: str) -> str:
        return ".".join((*labels, self.domain)) + "."


@dataclass(frozen=True)
class Answer:
    rcode: int = RCODE.NOERROR
    answer: tuple[RR, ...] = ()
    authority: tuple[RR, ...] = ()
    additional: tuple[RR, ...] = ()
    depends_on: str = DEPENDS_ON_EVERYTHING
    # The answer section is one RRset that may be served in any order (round robin).
    rotate: bool = False


def labels_of(name: str) -> Labels:
    return tuple(label.lower().encode() for label in name.strip(".").split(".") if label)


def _text(label: bytes) -> str | None:
    """A label as text, or None when it cannot be a service, tag or node name."""
    try:
        return label.decode("ascii")
    except UnicodeDecodeError:
        return None


# ------------------------------------------------------------------ records


def _soa(zone: Zone, view: CatalogView) -> RR:
    serial = view.revision & 0xFFFFFFFF or 1
    return RR(
        zone.name(),
        QTYPE.SOA,
        ttl=zone.ttl_s,
        rdata=SOA(
            zone.name("ns"),
            zone.name("hostmaster"),
            (serial, SOA_REFRESH_S, SOA_RETRY_S, SOA_EXPIRE_S, zone.ttl_s),
        ),
    )


def _address_records(owner: str, addresses: Iterable[str], qtype: int, ttl: int) -> list[RR]:
    """A or AAAA records for the addresses of that family, duplicates dropped."""
    records = []
    seen = set()
    for text in addresses:
        address = ipaddress.ip_address(text)
        if address in seen:
            continue
        if qtype == QTYPE.A and address.version == 4:
            records.append(RR(owner, QTYPE.A, ttl=ttl, rdata=A(str(address))))
        elif qtype == QTYPE.AAAA and address.version == 6:
            records.append(RR(owner, QTYPE.AAAA, ttl=ttl, rdata=AAAA(str(address))))
        else:
            continue
        seen.add(address)
    return records


def _both_families(owner: str, address: str, ttl: int) -> list[RR]:
    return _address_records(owner, [address], QTYPE.A, ttl) + _address_records(
        owner, [address], QTYPE.AAAA, ttl
    )


def _minimal_any(owner: str, zone: Zone) -> RR:
    """RFC 8482: answer ANY with one synthesised HINFO record, CPU "RFC8482", OS "".

    HINFO's data is two character-strings, TXT's wire format, so dnslib's TXT packs it.
    """
    return RR(owner, QTYPE.HINFO, ttl=zone.ttl_s, rdata=TXT([b"RFC8482", b""]))


# ------------------------------------------------------------------ outcomes


def _negative(rcode: int, zone: Zone, view: CatalogView, depends_on: str) -> Answer:
    return Answer(rcode=rcode, authority=(_soa(zone, view),), depends_on=depends_on)


def _nxdomain(zone: Zone, view: CatalogView, depends_on: str) -> Answer:
    return _negative(RCODE.NXDOMAIN, zone, view, depends_on)


def _nodata(zone: Zone, view: CatalogView, depends_on: str) -> Answer:
    return _negative(RCODE.NOERROR, zone, view, depends_on)


def _negative_for(exists: bool, zone: Zone, view: CatalogView, depends_on: str) -> Answer:
    """NODATA at a name that exists without records of its own, else NXDOMAIN."""
    return _nodata(zone, view, depends_on) if exists else _nxdomain(zone, view, depends_on)


def _records(
    records: Sequence[RR],
    zone: Zone,
    view: CatalogView,
    depends_on: str,
    additional: Sequence[RR] = (),
) -> Answer:
    if not records:
        return _nodata(zone, view, depends_on)
    return Answer(
        answer=tuple(records),
        additional=tuple(additional),
        depends_on=depends_on,
        rotate=len(records) > 1,
    )


def _endpoint_name(zone: Zone, endpoint: Endpoint) -> str:
    return zone.name(endpoint.endpoint_id, endpoint.service, "service")


def _endpoint_answer(
    owner: str,
    qtype: int,
    endpoints: Sequence[Endpoint],
    zone: Zone,
    view: CatalogView,
    depends_on: str,
) -> Answer:
    """A/AAAA/SRV/ANY at a name that stands for these endpoints (all serving)."""
    if qtype in (QTYPE.A, QTYPE.AAAA):
        records = _address_records(owner, (e.address for e in endpoints), qtype, zone.ttl_s)
        return _records(records, zone, view, depends_on)
    if qtype == QTYPE.SRV:
        return _srv_answer(owner, endpoints, zone, view, depends_on)
    if qtype == QTYPE.ANY:
        return _records([_minimal_any(owner, zone)], zone, view, depends_on)
    return _nodata(zone, view, depends_on)


def _srv_answer(
    owner: str, endpoints: Sequence[Endpoint], zone: Zone, view: CatalogView, depends_on: str
) -> Answer:
    records = []
    additional = []
    for endpoint in endpoints:
        if not endpoint.port:
            continue
        target = _endpoint_name(zone, endpoint)
        records.append(
            RR(
                owner,
                QTYPE.SRV,
                ttl=zone.ttl_s,
                rdata=SRV(endpoint.priority, endpoint.weight, endpoint.port, target),
            )
        )
        additional.extend(_both_families(target, endpoint.address, zone.ttl_s))
    return _records(records, zone, view, depends_on, additional)


def _not_srv(owner: str, qtype: int, zone: Zone, view: CatalogView, depends_on: str) -> Answer:
    """Any other type at an SRV-only name: RFC 8482's HINFO for ANY, else NODATA."""
    if qtype == QTYPE.ANY:
        return _records([_minimal_any(owner, zone)], zone, view, depends_on)
    return _nodata(zone, view, depends_on)


# ------------------------------------------------------------------ names


def resolve(name: Labels, qtype: int, zone: Zone, view: CatalogView) -> Answer | None:
    """The answer to (name, qtype, class IN), or None when the name is not ours."""
    domain = zone.labels
    if name[len(name) - len(domain) :] != domain or len(name) < len(domain):
        return _reverse(name, qtype, zone, view)
    relative = name[: len(name) - len(domain)]
    if not relative:
        return _apex(qtype, zone, view)
    kind = relative[-1]
    body = relative[:-1]
    if kind == b"service":
        return _service_names(body, qtype, zone, view)
    if kind == b"node":
        return _node_names(body, qtype, zone, view)
    if relative == (b"ns",):
        owner = zone.name("ns")
        if qtype == QTYPE.ANY:
            return _records([_minimal_any(owner, zone)], zone, view, DEPENDS_ON_EVERYTHING)
        records = _address_records(owner, zone.ns_addresses, qtype, zone.ttl_s)
        return _records(records, zone, view, DEPENDS_ON_EVERYTHING)
    return _nxdomain(zone, view, DEPENDS_ON_EVERYTHING)


def _apex(qtype: int, zone: Zone, view: CatalogView) -> Answer:
    if qtype == QTYPE.SOA:
        return Answer(answer=(_soa(zone, view),))
    if qtype == QTYPE.NS:
        ns_name = zone.name("ns")
        glue = [r for a in zone.ns_addresses for r in _both_families(ns_name, a, zone.ttl_s)]
        record = RR(zone.name(), QTYPE.NS, ttl=zone.ttl_s, rdata=NS(ns_name))
        return Answer(answer=(record,), additional=tuple(glue))
    if qtype == QTYPE.ANY:
        return Answer(answer=(_minimal_any(zone.name(), zone),))
    return _nodata(zone, view, DEPENDS_ON_EVERYTHING)


def _service_names(body: Labels, qtype: int, zone: Zone, view: CatalogView) -> Answer:
    """Names under service.<domain>. Only serving endpoints make names: a name with
    neither records nor a name below it is NXDOMAIN, one with names below it but no
    records of its own (an empty non-terminal) is NODATA (RFC 8020)."""
    if not body:  # service.<domain>: an empty non-terminal while any endpoint serves
        exists = view.any_serving()
        return _negative_for(exists, zone, view, DEPENDS_ON_EVERYTHING)
    if len(body) == 1 and body[0].startswith(b"_"):
        # _tcp.service.lab / _blue.service.lab: empty non-terminals above _web._tcp ...
        branch = _text(body[0][1:])
        exists = branch is not None and branch in view.srv_branches()
        return _negative_for(exists, zone, view, DEPENDS_ON_EVERYTHING)
    service = _text(body[-1])
    if service is None:
        return _nxdomain(zone, view, DEPENDS_ON_EVERYTHING)
    if len(body) == 2 and body[0].startswith(b"_") and service.startswith("_"):
        return _rfc2782(body[0][1:], service[1:], qtype, zone, view)
    depends = service_dependency(service)
    serving = [e for e in view.endpoints(service) if e.serving]
    if not serving:
        return _nxdomain(zone, view, depends)
    owner = zone.name(*(label.decode("ascii", "replace") for label in body), "service")
    if len(body) == 1:
        return _endpoint_answer(owner, qtype, serving, zone, view, depends)
    if len(body) == 2:
        label = _text(body[0])
        one = [e for e in serving if e.endpoint_id == label]
        if one:  # an endpoint's own name, the target of its SRV records
            records = _address_records(owner, [one[0].address], qtype, zone.ttl_s)
            if qtype == QTYPE.ANY:
                records = [_minimal_any(owner, zone)]
            return _records(records, zone, view, depends)
        tagged = [e for e in serving if label in e.tags]
        if tagged:
            return _endpoint_answer(owner, qtype, tagged, zone, view, depends)
        if label is not None and label.startswith("_"):
            # _tcp.web.service.lab: an empty non-terminal above _http._tcp.web.service.lab.
            protocol = label[1:]
            if any(e.protocol == protocol and e.port_name and e.port for e in serving):
                return _nodata(zone, view, depends)
        return _nxdomain(zone, view, depends)
    if len(body) == 3 and body[0].startswith(b"_") and body[1].startswith(b"_"):
        port_name = _text(body[0][1:])
        transport = _text(body[1][1:])
        named = [
            e for e in serving if e.port_name == port_name and e.protocol == transport and e.port
        ]
        if named:
            if qtype != QTYPE.SRV:
                return _not_srv(owner, qtype, zone, view, depends)
            return _srv_answer(owner, named, zone, view, depends)
    return _nxdomain(zone, view, depends)


def _rfc2782(
    service_label: bytes, second: str, qtype: int, zone: Zone, view: CatalogView
) -> Answer:
    """_web._tcp.service.lab (a protocol) or _web._TAG.service.lab (a tag, as Consul).

    The name exists while it has SRV records: serving endpoints with a port."""
    service = _text(service_label)
    if service is None:
        return _nxdomain(zone, view, DEPENDS_ON_EVERYTHING)
    depends = service_dependency(service)
    with_port = [e for e in view.endpoints(service) if e.serving and e.port]
    if second in PROTOCOLS:
        chosen = [e for e in with_port if e.protocol == second]
    else:
        chosen = [e for e in with_port if second in e.tags]
    if not chosen:
        return _nxdomain(zone, view, depends)
    owner = zone.name("_" + service, "_" + second, "service")
    if qtype != QTYPE.SRV:
        return _not_srv(owner, qtype, zone, view, depends)
    return _srv_answer(owner, chosen, zone, view, depends)


def _node_names(body: Labels, qtype: int, zone: Zone, view: CatalogView) -> Answer:
    if not body:  # node.<domain>: an empty non-terminal while there are nodes
        return _negative_for(bool(view.nodes()), zone, view, DEPENDS_ON_NODES)
    host = _text(body[0]) if len(body) == 1 else None
    node = next((n for n in view.nodes() if n.node == host), None)
    if node is None:
        return _nxdomain(zone, view, DEPENDS_ON_NODES)
    owner = zone.name(node.node, "node")
    if qtype == QTYPE.ANY:
        return _records([_minimal_any(owner, zone)], zone, view, DEPENDS_ON_NODES)
    records = _address_records(owner, [node.address], qtype, zone.ttl_s)
    return _records(records, zone, view, DEPENDS_ON_NODES)


def reverse_address(name: Labels) -> str | None:
    """'7.1.5.10.in-addr.arpa' -> '10.5.1.7' (and ip6.arpa nibbles), else None."""
    try:
        text = [label.decode("ascii") for label in name]
    except UnicodeDecodeError:
        return None
    if len(text) == 6 and text[4:] == ["in-addr", "arpa"]:
        candidate = ".".join(reversed(text[:4]))
    elif len(text) == 34 and text[32:] == ["ip6", "arpa"]:
        nibbles = "".join(reversed(text[:32]))
        candidate = ":".join(nibbles[i : i + 4] for i in range(0, 32, 4))
    else:
        return None
    try:
        address = ipaddress.ip_address(candidate)
    except ValueError:
        return None
    # Refuse non-canonical spellings such as '07.1.5.10.in-addr.arpa'.
    if address.reverse_pointer.encode() != b".".join(name):
        return None
    return str(address)


def _reverse(name: Labels, qtype: int, zone: Zone, view: CatalogView) -> Answer | None:
    """PTR for addresses the catalog knows; every other reverse name is not ours."""
    address = reverse_address(name)
    if address is None or qtype != QTYPE.PTR:
        return None
    services, nodes = view.names_of_address(address)
    if not services and not nodes:
        return None
    owner = ".".join(label.decode("ascii") for label in name) + "."
    targets = [zone.name(s, "service") for s in services] + [zone.name(n, "node") for n in nodes]
    records = [RR(owner, QTYPE.PTR, ttl=zone.ttl_s, rdata=PTR(t)) for t in targets]
    return Answer(answer=tuple(records), depends_on=DEPENDS_ON_EVERYTHING)


__all__ = [
    "DEPENDS_ON_EVERYTHING",
    "DEPENDS_ON_NODES",
    "Answer",
    "CatalogView",
    "Zone",
    "labels_of",
    "resolve",
    "reverse_address",
    "service_dependency",
]

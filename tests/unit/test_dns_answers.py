"""Table tests of the pure query-to-answer function, CoreDNS style.

One catalog of records, then rows of (name, type, expected rcode, expected
answer records in zone-file text). Negative rows also check the SOA in the
authority section.
"""

from __future__ import annotations

import pytest
from dnslib import QTYPE, RCODE, RR

from discovery import schema
from discovery.catalog import Catalog
from discovery.store import Change
from dnsserver.answers import (
    DEPENDS_ON_EVERYTHING,
    DEPENDS_ON_NODES,
    Zone,
    labels_of,
    resolve,
    reverse_address,
    service_dependency,
)
from dnsserver.view import IndexedCatalog

PREFIX = "/skydns"
DOMAIN = "lab"
ZONE = Zone(DOMAIN, ttl_s=5, ns_addresses=("127.0.0.53",))


def endpoint(service: str, host: str, port: int = 80, **fields) -> schema.Endpoint:
    return schema.Endpoint(
        service=service, address=host, port=port, registered_at="2026-01-01T00:00:00Z", **fields
    )


ENDPOINTS = [
    endpoint("web", "10.5.1.7", 80, port_name="http", tags=("blue",), container_id="a" * 12),
    endpoint("web", "10.5.2.3", 80, port_name="http", tags=("green",), container_id="b" * 12),
    endpoint("web", "10.5.2.9", 80, health="unhealthy", tags=("blue",), container_id="c" * 12),
    endpoint("web", "fd00::7", 80, port_name="http", container_id="d" * 12),
    endpoint("db", "10.5.3.4", 5432, protocol="tcp", priority=1, weight=5),
    endpoint("dns", "10.5.3.5", 53, protocol="udp", port_name="dns"),
    endpoint("plain", "10.5.3.6", 0),
    endpoint("sick", "10.5.3.8", 80, health="starting"),
]
NODES = [
    schema.Node(node="host1", address="192.168.50.11", registered_at="2026-01-01T00:00:00Z"),
    schema.Node(node="host6", address="fd50::12", registered_at="2026-01-01T00:00:00Z"),
]
WEB_A = ENDPOINTS[0].endpoint_id  # aaaaaaaaaaaa-10-5-1-7-80tcp
WEB_B = ENDPOINTS[1].endpoint_id
WEB_C = ENDPOINTS[2].endpoint_id  # unhealthy
WEB_D = ENDPOINTS[3].endpoint_id
DB = ENDPOINTS[4].endpoint_id
DNS_E = ENDPOINTS[5].endpoint_id


def make_catalog() -> Catalog:
    catalog = Catalog(PREFIX, DOMAIN)
    items = [
        (schema.endpoint_key(PREFIX, DOMAIN, e.service, e.endpoint_id), schema.encode_endpoint(e))
        for e in ENDPOINTS
    ] + [(schema.node_key(PREFIX, DOMAIN, n.node), schema.encode_node(n)) for n in NODES]
    catalog.replace_all(items)
    catalog.revision = 42
    return catalog


VIEW = IndexedCatalog(make_catalog())
SOA = "lab. 5 IN SOA ns.lab. hostmaster.lab. 42 3600 600 86400 5"

# name, type, rcode, expected answer (zone text, order free)
ROWS: list[tuple[str, str, int, list[str]]] = [
    # the apex
    ("lab", "SOA", RCODE.NOERROR, [SOA]),
    ("lab", "NS", RCODE.NOERROR, ["lab. 5 IN NS ns.lab."]),
    ("lab", "A", RCODE.NOERROR, []),
    ("ns.lab", "A", RCODE.NOERROR, ["ns.lab. 5 IN A 127.0.0.53"]),
    ("ns.lab", "AAAA", RCODE.NOERROR, []),
    ("nothing.lab", "A", RCODE.NXDOMAIN, []),
    ("lab", "ANY", RCODE.NOERROR, ['lab. 5 IN HINFO "RFC8482" ""']),
    # services: only serving endpoints, A and AAAA by family
    ("web.service.lab", "A", RCODE.NOERROR, [
        "web.service.lab. 5 IN A 10.5.1.7",
        "web.service.lab. 5 IN A 10.5.2.3",
    ]),
    ("WEB.Service.LAB", "A", RCODE.NOERROR, [
        "web.service.lab. 5 IN A 10.5.1.7",
        "web.service.lab. 5 IN A 10.5.2.3",
    ]),
    ("web.service.lab", "AAAA", RCODE.NOERROR, ["web.service.lab. 5 IN AAAA fd00::7"]),
    ("db.service.lab", "AAAA", RCODE.NOERROR, []),
    ("web.service.lab", "TXT", RCODE.NOERROR, []),
    ("web.service.lab", "ANY", RCODE.NOERROR, ['web.service.lab. 5 IN HINFO "RFC8482" ""']),
    ("plain.service.lab", "A", RCODE.NOERROR, ["plain.service.lab. 5 IN A 10.5.3.6"]),
    ("plain.service.lab", "SRV", RCODE.NOERROR, []),
    # a service whose every endpoint is out of service makes no name at all
    ("sick.service.lab", "A", RCODE.NXDOMAIN, []),
    ("sick.service.lab", "ANY", RCODE.NXDOMAIN, []),
    ("_sick._tcp.service.lab", "SRV", RCODE.NXDOMAIN, []),
    ("nosuch.service.lab", "A", RCODE.NXDOMAIN, []),
    ("service.lab", "A", RCODE.NOERROR, []),
    # tags
    ("blue.web.service.lab", "A", RCODE.NOERROR, ["blue.web.service.lab. 5 IN A 10.5.1.7"]),
    ("green.web.service.lab", "A", RCODE.NOERROR, ["green.web.service.lab. 5 IN A 10.5.2.3"]),
    ("red.web.service.lab", "A", RCODE.NXDOMAIN, []),
    # SRV at the service name, RFC 2782 style and port-name style
    ("db.service.lab", "SRV", RCODE.NOERROR, [
        f"db.service.lab. 5 IN SRV 1 5 5432 {DB}.db.service.lab."
    ]),
    ("_db._tcp.service.lab", "SRV", RCODE.NOERROR, [
        f"_db._tcp.service.lab. 5 IN SRV 1 5 5432 {DB}.db.service.lab."
    ]),
    ("_db._udp.service.lab", "SRV", RCODE.NXDOMAIN, []),  # db has no UDP port
    ("_db._tcp.service.lab", "A", RCODE.NOERROR, []),
    ("_nosuch._tcp.service.lab", "SRV", RCODE.NXDOMAIN, []),
    ("_web._blue.service.lab", "SRV", RCODE.NOERROR, [
        f"_web._blue.service.lab. 5 IN SRV 10 10 80 {WEB_A}.web.service.lab."
    ]),
    ("_web._red.service.lab", "SRV", RCODE.NXDOMAIN, []),
    ("_http._tcp.web.service.lab", "SRV", RCODE.NOERROR, [
        f"_http._tcp.web.service.lab. 5 IN SRV 10 10 80 {WEB_A}.web.service.lab.",
        f"_http._tcp.web.service.lab. 5 IN SRV 10 10 80 {WEB_B}.web.service.lab.",
        f"_http._tcp.web.service.lab. 5 IN SRV 10 10 80 {WEB_D}.web.service.lab.",
    ]),
    ("_dns._udp.dns.service.lab", "SRV", RCODE.NOERROR, [
        f"_dns._udp.dns.service.lab. 5 IN SRV 10 10 53 {DNS_E}.dns.service.lab."
    ]),
    ("_dns._tcp.dns.service.lab", "SRV", RCODE.NXDOMAIN, []),
    ("_http._tcp.web.service.lab", "A", RCODE.NOERROR, []),
    ("_tcp.web.service.lab", "A", RCODE.NOERROR, []),
    ("_grpc._tcp.web.service.lab", "SRV", RCODE.NXDOMAIN, []),
    # empty non-terminals above the RFC 2782 names: NODATA for every type (RFC 8020)
    ("_tcp.service.lab", "A", RCODE.NOERROR, []),
    ("_tcp.service.lab", "SRV", RCODE.NOERROR, []),
    ("_TCP.service.lab", "ANY", RCODE.NOERROR, []),
    ("_udp.service.lab", "TXT", RCODE.NOERROR, []),
    ("_blue.service.lab", "SRV", RCODE.NOERROR, []),
    ("_green.service.lab", "A", RCODE.NOERROR, []),
    ("_red.service.lab", "A", RCODE.NXDOMAIN, []),
    ("_sctp.service.lab", "A", RCODE.NXDOMAIN, []),
    ("x._tcp.service.lab", "A", RCODE.NXDOMAIN, []),
    # SRV targets
    (f"{WEB_A}.web.service.lab", "A", RCODE.NOERROR, [f"{WEB_A}.web.service.lab. 5 IN A 10.5.1.7"]),
    (f"{WEB_D}.web.service.lab", "AAAA", RCODE.NOERROR, [
        f"{WEB_D}.web.service.lab. 5 IN AAAA fd00::7"
    ]),
    (f"{WEB_D}.web.service.lab", "A", RCODE.NOERROR, []),
    # an unhealthy endpoint leaves every answer, its own name included
    (f"{WEB_C}.web.service.lab", "A", RCODE.NXDOMAIN, []),
    (f"{WEB_C}.web.service.lab", "AAAA", RCODE.NXDOMAIN, []),
    # nodes
    ("host1.node.lab", "A", RCODE.NOERROR, ["host1.node.lab. 5 IN A 192.168.50.11"]),
    ("host6.node.lab", "AAAA", RCODE.NOERROR, ["host6.node.lab. 5 IN AAAA fd50::12"]),
    ("host6.node.lab", "A", RCODE.NOERROR, []),
    ("host9.node.lab", "A", RCODE.NXDOMAIN, []),
    ("node.lab", "A", RCODE.NOERROR, []),
    ("x.host1.node.lab", "A", RCODE.NXDOMAIN, []),
    # reverse
    ("7.1.5.10.in-addr.arpa", "PTR", RCODE.NOERROR, [
        "7.1.5.10.in-addr.arpa. 5 IN PTR web.service.lab."
    ]),
    ("11.50.168.192.in-addr.arpa", "PTR", RCODE.NOERROR, [
        "11.50.168.192.in-addr.arpa. 5 IN PTR host1.node.lab."
    ]),
]  # fmt: skip


def zone_text(records) -> list[str]:
    return sorted(" ".join(str(record).split()) for record in records)


def expected_text(lines: list[str]) -> list[str]:
    # dnslib cannot read HINFO from zone text; those lines are compared as written.
    return sorted(
        " ".join((line if " HINFO " in line else str(RR.fromZone(line)[0])).split())
        for line in lines
    )


@pytest.mark.parametrize(("name", "qtype", "rcode", "records"), ROWS)
def test_answer_table(name: str, qtype: str, rcode: int, records: list[str]) -> None:
    answer = resolve(labels_of(name), getattr(QTYPE, qtype), ZONE, VIEW)
    assert answer is not None
    assert answer.rcode == rcode
    assert zone_text(answer.answer) == expected_text(records)
    if not records:  # NXDOMAIN and NODATA carry the SOA, whose minimum is the negative TTL
        assert zone_text(answer.authority) == expected_text([SOA])


def test_srv_additionals_hold_the_targets_addresses() -> None:
    answer = resolve(labels_of("_http._tcp.web.service.lab"), QTYPE.SRV, ZONE, VIEW)
    assert answer is not None
    assert zone_text(answer.additional) == expected_text(
        [
            f"{WEB_A}.web.service.lab. 5 IN A 10.5.1.7",
            f"{WEB_B}.web.service.lab. 5 IN A 10.5.2.3",
            f"{WEB_D}.web.service.lab. 5 IN AAAA fd00::7",
        ]
    )
    assert answer.rotate


def test_ns_at_the_apex_has_glue() -> None:
    answer = resolve(labels_of("lab"), QTYPE.NS, ZONE, VIEW)
    assert answer is not None
    assert zone_text(answer.additional) == expected_text(["ns.lab. 5 IN A 127.0.0.53"])


@pytest.mark.parametrize(
    ("name", "qtype"),
    [
        ("example.com", "A"),
        ("labx", "A"),
        ("lab.example.com", "A"),
        ("9.9.9.10.in-addr.arpa", "PTR"),  # an address the catalog does not know
        ("7.1.5.10.in-addr.arpa", "A"),  # reverse names are ours for PTR only
        ("9.2.5.10.in-addr.arpa", "PTR"),  # an unhealthy endpoint's address
        (".", "NS"),
    ],
)
def test_names_outside_the_domain_are_not_ours(name: str, qtype: str) -> None:
    assert resolve(labels_of(name), getattr(QTYPE, qtype), ZONE, VIEW) is None


@pytest.mark.parametrize(
    ("name", "dependency"),
    [
        ("web.service.lab", service_dependency("web")),
        ("nosuch.service.lab", service_dependency("nosuch")),
        ("_db._tcp.service.lab", service_dependency("db")),
        ("host1.node.lab", DEPENDS_ON_NODES),
        ("lab", DEPENDS_ON_EVERYTHING),
        ("nothing.lab", DEPENDS_ON_EVERYTHING),
    ],
)
def test_answers_say_what_they_depend_on(name: str, dependency: str) -> None:
    answer = resolve(labels_of(name), QTYPE.A, ZONE, VIEW)
    assert answer is not None
    assert answer.depends_on == dependency


def test_another_domain_and_ttl() -> None:
    zone = Zone("corp.example", ttl_s=30)
    catalog = Catalog(PREFIX, "corp.example")
    web = endpoint("web", "10.0.0.1")
    key = schema.endpoint_key(PREFIX, "corp.example", "web", web.endpoint_id)
    catalog.replace_all([(key, schema.encode_endpoint(web))])
    answer = resolve(labels_of("web.service.corp.example"), QTYPE.A, zone, IndexedCatalog(catalog))
    assert answer is not None
    assert zone_text(answer.answer) == expected_text(["web.service.corp.example. 30 IN A 10.0.0.1"])
    assert resolve(labels_of("web.service.lab"), QTYPE.A, zone, IndexedCatalog(catalog)) is None


@pytest.mark.parametrize(
    ("name", "address"),
    [
        ("7.1.5.10.in-addr.arpa", "10.5.1.7"),
        ("07.1.5.10.in-addr.arpa", None),
        ("1.5.10.in-addr.arpa", None),
        ("300.1.5.10.in-addr.arpa", None),
        (".".join("7000000000000000000000000000d0f") + ".ip6.arpa", None),
        (".".join(reversed("fd00" + "0" * 27 + "7")) + ".ip6.arpa", "fd00::7"),
    ],
)
def test_reverse_names(name: str, address: str | None) -> None:
    assert reverse_address(labels_of(name)) == address


def test_ptr_for_an_ipv6_endpoint() -> None:
    name = labels_of(".".join(reversed("fd00" + "0" * 27 + "7")) + ".ip6.arpa")
    answer = resolve(name, QTYPE.PTR, ZONE, VIEW)
    assert answer is not None
    assert [str(r.rdata) for r in answer.answer] == ["web.service.lab."]


def test_the_address_index_follows_the_catalog() -> None:
    catalog = make_catalog()
    view = IndexedCatalog(catalog)
    assert view.names_of_address("10.5.1.7") == (["web"], [])
    key = schema.endpoint_key(PREFIX, DOMAIN, "web", WEB_A)
    catalog.apply(Change(key, None, 43))
    assert view.names_of_address("10.5.1.7") == ([], [])


def test_without_serving_endpoints_or_nodes_the_branches_do_not_exist() -> None:
    catalog = Catalog(PREFIX, DOMAIN)
    sick = endpoint("web", "10.0.0.1", health="unhealthy")
    catalog.replace_all(
        [
            (
                schema.endpoint_key(PREFIX, DOMAIN, "web", sick.endpoint_id),
                schema.encode_endpoint(sick),
            )
        ]
    )
    view = IndexedCatalog(catalog)
    for name in ("service.lab", "node.lab", "_tcp.service.lab", "web.service.lab"):
        answer = resolve(labels_of(name), QTYPE.A, ZONE, view)
        assert answer is not None
        assert answer.rcode == RCODE.NXDOMAIN, name

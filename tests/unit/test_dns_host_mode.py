"""DNS answers for records in host-address mode: a host's underlay address and a host port.

Two containers on host1 publish port 80 (``-p 8080:80`` and ``-P``, which got
32768) and are registered at host1's underlay address, the same address as
host1's node record. A and SRV must answer with that address and the host
ports; the reverse name names both the service and the node.
"""

from __future__ import annotations

import pytest
from dnslib import QTYPE, RCODE

from discovery import schema
from discovery.catalog import Catalog
from dnsserver.answers import Zone, labels_of, resolve
from dnsserver.view import IndexedCatalog
from tests.unit.test_dns_answers import expected_text, zone_text

PREFIX = "/skydns"
DOMAIN = "lab"
ZONE = Zone(DOMAIN, ttl_s=5, ns_addresses=("127.0.0.53",))
HOST1 = "192.168.100.11"
AT = "2026-01-01T00:00:00Z"

ENDPOINTS = [
    schema.Endpoint(service="shop", address=HOST1, port=8080, port_name="http", node="host1",
                    container_id="a" * 12, registered_at=AT),
    schema.Endpoint(service="shop", address=HOST1, port=32768, port_name="http", node="host1",
                    container_id="b" * 12, registered_at=AT),
]  # fmt: skip
SHOP_A, SHOP_B = (e.endpoint_id for e in ENDPOINTS)


def view() -> IndexedCatalog:
    catalog = Catalog(PREFIX, DOMAIN)
    node = schema.Node(node="host1", address=HOST1, registered_at=AT)
    catalog.replace_all(
        [
            *(
                (schema.endpoint_key(PREFIX, DOMAIN, e.service, e.endpoint_id),
                 schema.encode_endpoint(e))
                for e in ENDPOINTS
            ),
            (schema.node_key(PREFIX, DOMAIN, "host1"), schema.encode_node(node)),
        ]
    )  # fmt: skip
    catalog.revision = 7
    return IndexedCatalog(catalog)


@pytest.mark.parametrize(
    ("name", "qtype", "records"),
    [
        # Two endpoints at one address: one A record for it.
        ("shop.service.lab", "A", ["shop.service.lab. 5 IN A 192.168.100.11"]),
        ("shop.service.lab", "SRV", [
            f"shop.service.lab. 5 IN SRV 10 10 8080 {SHOP_A}.shop.service.lab.",
            f"shop.service.lab. 5 IN SRV 10 10 32768 {SHOP_B}.shop.service.lab.",
        ]),
        ("_http._tcp.shop.service.lab", "SRV", [
            f"_http._tcp.shop.service.lab. 5 IN SRV 10 10 8080 {SHOP_A}.shop.service.lab.",
            f"_http._tcp.shop.service.lab. 5 IN SRV 10 10 32768 {SHOP_B}.shop.service.lab.",
        ]),
        (f"{SHOP_B}.shop.service.lab", "A", [
            f"{SHOP_B}.shop.service.lab. 5 IN A 192.168.100.11",
        ]),
        ("host1.node.lab", "A", ["host1.node.lab. 5 IN A 192.168.100.11"]),
        ("11.100.168.192.in-addr.arpa", "PTR", [
            "11.100.168.192.in-addr.arpa. 5 IN PTR shop.service.lab.",
            "11.100.168.192.in-addr.arpa. 5 IN PTR host1.node.lab.",
        ]),
    ],
)  # fmt: skip
def test_host_mode_answers(name: str, qtype: str, records: list[str]) -> None:
    answer = resolve(labels_of(name), getattr(QTYPE, qtype), ZONE, view())
    assert answer is not None
    assert answer.rcode == RCODE.NOERROR
    assert zone_text(answer.answer) == expected_text(records)


def test_srv_additionals_give_the_host_address_once_per_target() -> None:
    answer = resolve(labels_of("shop.service.lab"), QTYPE.SRV, ZONE, view())
    assert answer is not None
    assert zone_text(answer.additional) == expected_text(
        [
            f"{SHOP_A}.shop.service.lab. 5 IN A 192.168.100.11",
            f"{SHOP_B}.shop.service.lab. 5 IN A 192.168.100.11",
        ]
    )

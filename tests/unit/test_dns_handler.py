"""The query handler on raw bytes: fast path, slow path, EDNS, truncation, errors, cache."""

from __future__ import annotations

import logging
import random
import struct

import pytest
from dnslib import CLASS, EDNS0, QTYPE, RCODE, DNSHeader, DNSQuestion, DNSRecord
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from discovery import schema
from discovery.catalog import Catalog
from discovery.store import Change
from dnsserver.answers import Zone
from dnsserver.cache import PackedCache
from dnsserver.handler import QueryHandler
from dnsserver.metrics import DnsCollector
from dnsserver.view import IndexedCatalog
from dnsserver.wire import query_shape
from tests.unit.test_dns_answers import DOMAIN, PREFIX, make_catalog


def make_handler(catalog: Catalog | None = None, ttl_s: int = 5) -> QueryHandler:
    catalog = catalog if catalog is not None else make_catalog()
    view = IndexedCatalog(catalog)
    cache = PackedCache()
    catalog.subscribe(cache.invalidate)
    return QueryHandler(Zone(DOMAIN, ttl_s), view, cache, rng=random.Random(1))


def query(
    name: str,
    qtype: str = "A",
    *,
    message_id: int = 4242,
    rd: bool = True,
    edns: int | None = None,
    qclass: int = CLASS.IN,
) -> bytes:
    record = DNSRecord(
        DNSHeader(id=message_id, rd=int(rd)), q=DNSQuestion(name, getattr(QTYPE, qtype), qclass)
    )
    if edns is not None:
        record.add_ar(EDNS0(udp_len=edns))
    return bytes(record.pack())


def ask(handler: QueryHandler, data: bytes, tcp: bool = False) -> DNSRecord:
    reply = handler.respond(data, tcp)
    assert isinstance(reply, bytes)
    return DNSRecord.parse(reply)


def addresses(reply: DNSRecord) -> list[str]:
    return sorted(str(rr.rdata) for rr in reply.rr)


def add_endpoints(catalog: Catalog, service: str, count: int, revision: int = 100) -> None:
    for n in range(count):
        item = schema.Endpoint(service=service, address=f"10.9.{n // 250}.{n % 250 + 1}", port=80)
        key = schema.endpoint_key(PREFIX, DOMAIN, service, item.endpoint_id)
        catalog.apply(Change(key, schema.encode_endpoint(item), revision + n))


def test_fast_path_serves_the_same_answer_as_the_slow_path() -> None:
    handler = make_handler()
    first = ask(handler, query("web.service.lab"))
    assert handler.stats.cache_hits == 0
    second = ask(handler, query("web.service.lab", message_id=7))
    assert handler.stats.cache_hits == 1
    assert second.header.id == 7
    assert addresses(first) == addresses(second) == ["10.5.1.7", "10.5.2.3"]
    assert first.header.aa and second.header.aa
    assert first.header.rcode == second.header.rcode == RCODE.NOERROR


@pytest.mark.parametrize("asked", ["WeB.sErViCe.LaB", "web.service.lab", "WEB.SERVICE.LAB"])
def test_question_is_echoed_exactly_as_asked(asked: str) -> None:
    handler = make_handler()
    ask(handler, query("web.service.lab"))  # warm the cache in another case
    data = query(asked)
    reply = handler.respond(data, False)
    assert isinstance(reply, bytes)
    name_end = data.index(b"\x00", 12) + 1
    assert reply[12:name_end] == data[12:name_end]
    parsed = DNSRecord.parse(reply)
    assert str(parsed.q.qname) == asked + "."
    assert {str(rr.rname) for rr in parsed.rr} == {asked + "."}


def test_rd_flag_is_copied_and_aa_set() -> None:
    handler = make_handler()
    for rd in (True, False, True):
        reply = ask(handler, query("web.service.lab", rd=rd))
        assert reply.header.rd == int(rd)
        assert reply.header.aa == 1
        assert reply.header.qr == 1


def test_round_robin_rotates_the_first_address() -> None:
    catalog = make_catalog()
    add_endpoints(catalog, "big", 5)
    handler = make_handler(catalog)
    firsts = [str(ask(handler, query("big.service.lab")).rr[0].rdata) for _ in range(10)]
    assert len(set(firsts)) == 5
    assert all(len(ask(handler, query("big.service.lab")).rr) == 5 for _ in range(3))


def test_negative_answers_carry_the_soa_and_negative_ttl() -> None:
    handler = make_handler(ttl_s=7)
    nx = ask(handler, query("nosuch.service.lab"))
    nodata = ask(handler, query("web.service.lab", "MX"))
    assert nx.header.rcode == RCODE.NXDOMAIN
    assert nodata.header.rcode == RCODE.NOERROR and not nodata.rr
    for reply in (nx, nodata):
        assert [QTYPE[rr.rtype] for rr in reply.auth] == ["SOA"]
        assert reply.auth[0].ttl == 7
        assert reply.auth[0].rdata.times[-1] == 7


def test_a_change_in_the_catalog_is_answered_on_the_next_query() -> None:
    catalog = make_catalog()
    handler = make_handler(catalog)
    assert ask(handler, query("new.service.lab")).header.rcode == RCODE.NXDOMAIN
    assert ask(handler, query("new.service.lab")).header.rcode == RCODE.NXDOMAIN  # cached
    add_endpoints(catalog, "new", 1)
    reply = ask(handler, query("new.service.lab"))
    assert reply.header.rcode == RCODE.NOERROR
    assert addresses(reply) == ["10.9.0.1"]
    key = next(k for k in catalog._service_of_key if catalog._service_of_key[k] == "new")
    catalog.apply(Change(key, None, 999))
    assert ask(handler, query("new.service.lab")).header.rcode == RCODE.NXDOMAIN


def test_a_change_to_one_service_keeps_the_others_cached() -> None:
    catalog = make_catalog()
    handler = make_handler(catalog)
    ask(handler, query("web.service.lab"))
    ask(handler, query("db.service.lab"))
    add_endpoints(catalog, "db", 1)
    hits = handler.stats.cache_hits
    ask(handler, query("web.service.lab"))
    assert handler.stats.cache_hits == hits + 1
    assert "10.9.0.1" in addresses(ask(handler, query("db.service.lab")))


@pytest.mark.parametrize("edns", [None, 512, 1232])
def test_a_reply_that_does_not_fit_is_truncated_and_whole_over_tcp(edns: int | None) -> None:
    catalog = make_catalog()
    add_endpoints(catalog, "many", 100)  # 100 A records: about 1,650 bytes
    handler = make_handler(catalog)
    for _ in range(2):  # slow path, then fast path
        udp = ask(handler, query("many.service.lab", edns=edns))
        assert udp.header.tc == 1
        assert not udp.rr
        assert str(udp.q.qname) == "many.service.lab."
        assert (len(udp.ar) == 1) == (edns is not None)
        tcp = ask(handler, query("many.service.lab", edns=edns), tcp=True)
        assert tcp.header.tc == 0
        assert len(tcp.rr) == 100


@pytest.mark.parametrize("edns", [None, 512])
def test_additional_records_are_dropped_before_tc_is_set(edns: int | None) -> None:
    """RFC 2181 9: TC only when the answer section itself does not fit."""
    catalog = make_catalog()
    add_endpoints(catalog, "seven", 7)  # 7 SRV fit 512 bytes; with 7 A additionals they do not
    handler = make_handler(catalog)
    for _ in range(2):  # slow path, then fast path
        udp = ask(handler, query("seven.service.lab", "SRV", edns=edns))
        assert udp.header.tc == 0
        assert len(udp.rr) == 7
        assert [QTYPE[rr.rtype] for rr in udp.ar] == ([] if edns is None else ["OPT"])
        tcp = ask(handler, query("seven.service.lab", "SRV", edns=edns), tcp=True)
        assert len([rr for rr in tcp.ar if rr.rtype == QTYPE.A]) == 7
    assert handler.stats.truncated == 0


@pytest.mark.parametrize(("count", "edns", "truncated"), [(60, 4096, False), (100, 4096, True)])
def test_the_clients_edns_size_is_honoured_up_to_our_own(
    count: int, edns: int, truncated: bool
) -> None:
    """A UDP reply fits min(client's size, our advertised 1232) (RFC 6891, RFC 9715)."""
    catalog = make_catalog()
    add_endpoints(catalog, "many", count)  # 16 bytes per A record
    handler = make_handler(catalog)
    for _ in range(2):  # slow path, then fast path
        data = handler.respond(query("many.service.lab", edns=edns), False)
        assert isinstance(data, bytes)
        reply = DNSRecord.parse(data)
        assert len(data) <= 1232
        assert reply.header.tc == int(truncated)
        assert len(reply.rr) == (0 if truncated else count)
        assert reply.ar[-1].rtype == QTYPE.OPT
        assert reply.ar[-1].rclass == 1232


def with_do_bit(data: bytes) -> bytes:
    """The query with the DO bit set in its OPT record (the last 11 bytes)."""
    opt = bytearray(data[-11:])
    assert opt[:3] == b"\x00\x00\x29"
    opt[7] |= 0x80
    return data[:-11] + bytes(opt)


@pytest.mark.parametrize(
    ("name", "qtype", "rcode"),
    [
        ("web.service.lab", "A", RCODE.NOERROR),
        ("nosuch.service.lab", "A", RCODE.NXDOMAIN),
        ("example.com", "A", RCODE.REFUSED),
    ],
)
def test_the_do_bit_is_copied_into_the_reply(name: str, qtype: str, rcode: int) -> None:
    """RFC 3225 3: the DO bit of the query is copied into the reply, set or clear."""
    handler = make_handler()
    for _ in range(2):  # slow path, then fast path: a DO query has its own cache entry
        for dnssec_ok in (True, False):
            data = query(name, qtype, edns=1232)
            reply = ask(handler, with_do_bit(data) if dnssec_ok else data)
            assert reply.header.rcode == rcode
            opt = reply.ar[-1]
            assert opt.rtype == QTYPE.OPT
            assert bool(opt.ttl & 0x8000) == dnssec_ok


def test_the_do_bit_is_copied_into_badvers_and_notimp() -> None:
    handler = make_handler()
    record = DNSRecord(q=DNSQuestion("web.service.lab"))
    record.add_ar(EDNS0(udp_len=1232, version=1, flags="do"))
    notimp = bytearray(with_do_bit(query("web.service.lab", edns=1232)))
    notimp[2] |= 2 << 3  # opcode STATUS
    for data in (bytes(record.pack()), bytes(notimp)):
        reply = ask(handler, data)
        assert reply.ar[-1].ttl & 0x8000


def test_class_any_is_answered_from_the_in_data() -> None:
    handler = make_handler()
    for _ in range(2):  # slow path, then fast path
        reply = ask(handler, query("web.service.lab", qclass=255))
        assert reply.header.rcode == RCODE.NOERROR
        assert reply.header.aa == 1
        assert reply.q.qclass == 255
        assert addresses(reply) == ["10.5.1.7", "10.5.2.3"]
        assert {rr.rclass for rr in reply.rr} == {CLASS.IN}
    nx = ask(handler, query("nosuch.service.lab", qclass=255))
    assert nx.header.rcode == RCODE.NXDOMAIN
    assert [QTYPE[rr.rtype] for rr in nx.auth] == ["SOA"]


def test_edns_version_other_than_0_gets_badvers() -> None:
    handler = make_handler()
    record = DNSRecord(q=DNSQuestion("web.service.lab"))
    record.add_ar(EDNS0(udp_len=1232, version=1))
    reply = ask(handler, bytes(record.pack()))
    opt = reply.ar[0]
    assert opt.rtype == QTYPE.OPT
    assert (opt.ttl >> 24) == 1  # extended rcode 1 + header rcode 0 = BADVERS (16)
    assert reply.header.rcode == 0


def test_any_gets_a_minimal_answer() -> None:
    reply = ask(make_handler(), query("web.service.lab", "ANY"))
    assert [QTYPE[rr.rtype] for rr in reply.rr] == ["HINFO"]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", None),
        (b"\x12\x34\x01", None),  # shorter than a header: silence
        (b"\x12\x34\x81\x00" + bytes(8), None),  # QR set: a reply, never answered
        (b"\x12\x34\x28\x00" + b"\x00\x01" + bytes(6) + b"\x00\x00\x06\x00\x01", RCODE.NOTIMP),
        (b"\x12\x34\x10\x00" + bytes(8), RCODE.NOTIMP),  # STATUS
        (b"\x12\x34\x01\x00\x00\x01" + bytes(6) + b"\x03web", RCODE.FORMERR),  # cut name
        (b"\x12\x34\x01\x00\x00\x00" + bytes(6), RCODE.FORMERR),  # no question
        (b"\x12\x34\x01\x00\x00\x02" + bytes(6) + (b"\x00\x00\x01\x00\x01" * 2), RCODE.FORMERR),
        (b"\x12\x34\x01\x00\xff\xff\xff\xff\xff\xff\xff\xff" + b"\x00", RCODE.FORMERR),  # counts
        (b"\x12\x34\x01\x00\x00\x01" + bytes(6) + b"\xc0\x0c\x00\x01\x00\x01", RCODE.FORMERR),
    ],
)
def test_bad_input(data: bytes, expected: int | None) -> None:
    handler = make_handler()
    reply = handler.respond(data, False)
    if expected is None:
        assert reply is None
    else:
        assert isinstance(reply, bytes)
        parsed = DNSRecord.parse(reply)
        assert parsed.header.rcode == expected
        assert parsed.header.id == 0x1234
        assert parsed.header.qr == 1
    assert handler.stats.handler_errors == 0


@pytest.mark.parametrize("length_byte", [0x40, 0x41, 0x7F, 0x80, 0xBF])
def test_a_label_type_in_the_reserved_range_is_formerr_without_a_traceback(
    length_byte: int, caplog: pytest.LogCaptureFixture
) -> None:
    name = bytes([length_byte]) + b"a" * length_byte + b"\x03lab\x00"
    data = b"\x12\x34\x01\x00\x00\x01" + bytes(6) + name + b"\x00\x01\x00\x01"
    handler = make_handler()
    reply = ask(handler, data)
    assert reply.header.rcode == RCODE.FORMERR
    assert handler.stats.handler_errors == 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


OPT_1232 = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"  # an OPT record: EDNS 0, 1232 bytes
WITH_OPT = b"\x00\x00\x00\x01"  # NSCOUNT 0, ARCOUNT 1


@pytest.mark.parametrize(
    ("data", "rcode", "question"),
    [
        (b"\x12\x34\x28\x00\x00\x01\x00\x00" + WITH_OPT + b"\x00\x00\x06\x00\x01" + OPT_1232,
         RCODE.NOTIMP, True),  # UPDATE
        (b"\x12\x34\x08\x00\x00\x01\x00\x00" + WITH_OPT + b"\x03lab\x00\x00\x01\x00\x01" + OPT_1232,
         RCODE.NOTIMP, True),  # IQUERY
        (b"\x12\x34\x01\x00\x00\x00\x00\x00" + WITH_OPT + OPT_1232, RCODE.FORMERR, False),
        (b"\x12\x34\x01\x00\x00\x02\x00\x00" + WITH_OPT + b"\x00\x00\x01\x00\x01" * 2 + OPT_1232,
         RCODE.FORMERR, False),
        (b"\x12\x34\x01\x00\x00\x01\x00\x00" + WITH_OPT + b"\x40" + b"a" * 64
         + b"\x00\x00\x01\x00\x01" + OPT_1232, RCODE.FORMERR, False),
    ],
    ids=["update", "iquery", "qdcount-0", "qdcount-2", "reserved-label-type"],
)  # fmt: skip
def test_error_replies_to_a_query_with_opt_carry_opt(
    data: bytes, rcode: int, question: bool
) -> None:
    """RFC 6891 6.1.1: a reply to a query with OPT has OPT, NOTIMP and FORMERR too."""
    reply = ask(make_handler(), data)
    assert reply.header.rcode == rcode
    assert reply.header.opcode == (data[2] >> 3) & 0xF
    assert [QTYPE[rr.rtype] for rr in reply.ar] == ["OPT"]
    assert reply.ar[0].rclass == 1232
    assert len(reply.questions) == int(question)
    if question:
        assert reply.q.qname == DNSRecord.parse(data).q.qname


def test_a_compression_loop_is_formerr() -> None:
    # The question name points at itself (offset 12), then at the other pointer.
    looping = b"\x12\x34\x01\x00\x00\x01" + bytes(6) + b"\xc0\x0c\x00\x01\x00\x01"
    two_way = b"\x12\x34\x01\x00\x00\x01" + bytes(6) + b"\xc0\x0e\xc0\x0c\x00\x01\x00\x01"
    handler = make_handler()
    for data in (looping, two_way):
        assert DNSRecord.parse(handler.respond(data, False)).header.rcode == RCODE.FORMERR  # type: ignore[arg-type]


def test_two_opt_records_are_formerr() -> None:
    record = DNSRecord(q=DNSQuestion("web.service.lab"))
    record.add_ar(EDNS0(udp_len=1232))
    record.add_ar(EDNS0(udp_len=1232))
    assert ask(make_handler(), bytes(record.pack())).header.rcode == RCODE.FORMERR


def test_names_outside_the_domain_are_refused_without_upstreams() -> None:
    handler = make_handler()
    reply = ask(handler, query("example.com"))
    assert reply.header.rcode == RCODE.REFUSED
    assert str(reply.q.qname) == "example.com."


def test_other_classes_and_zone_transfers_are_refused() -> None:
    handler = make_handler()
    assert ask(handler, query("version.bind", "TXT", qclass=CLASS.CH)).header.rcode == RCODE.REFUSED
    assert ask(handler, query("lab", "AXFR"), tcp=True).header.rcode == RCODE.REFUSED


def test_lab_names_get_servfail_until_the_catalog_has_loaded() -> None:
    handler = make_handler(Catalog(PREFIX, DOMAIN))
    assert ask(handler, query("web.service.lab")).header.rcode == RCODE.SERVFAIL
    assert handler.cache.entries == {}


def test_a_handler_bug_is_servfail_not_an_exception(monkeypatch: pytest.MonkeyPatch) -> None:
    handler = make_handler()

    def broken(*args: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("dnsserver.handler.resolve", broken)
    reply = ask(handler, query("web.service.lab"))
    assert reply.header.rcode == RCODE.SERVFAIL
    assert str(reply.q.qname) == "web.service.lab."
    assert handler.stats.handler_errors == 1


@pytest.mark.parametrize(
    ("data", "ordinary"),
    [
        (query("web.service.lab"), True),
        (query("web.service.lab", edns=1232), True),
        (query("web.service.lab")[:-1], False),
        (query("web.service.lab") + b"\x00", False),
        (b"\x00\x01\x80\x00" + query("web.service.lab")[4:], False),
    ],
)
def test_query_shape(data: bytes, ordinary: bool) -> None:
    assert (query_shape(data) is not None) == ordinary


def test_query_shape_key_ignores_case_and_keeps_type() -> None:
    questions = [("Web.service.lab", "A"), ("web.SERVICE.lab", "A"), ("web.service.lab", "AAAA")]
    shapes = [query_shape(query(name, qtype)) for name, qtype in questions]
    keys = [shape[0] for shape in shapes if shape is not None]
    assert keys[0] == keys[1] != keys[2]
    assert struct.unpack("!H", keys[2][-5:-3])[0] == QTYPE.AAAA


def test_metrics_collector_reads_live_figures_as_counters_and_gauges() -> None:
    figures = {"queries_total": ("counter", 123_456_789), "cache_entries": ("gauge", 0.5)}
    registry = CollectorRegistry()
    registry.register(DnsCollector(lambda: figures))
    families = {
        f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())
    }
    assert families["discovery_dns_queries"].type == "counter"
    assert [s.value for s in families["discovery_dns_queries"].samples] == [123_456_789]
    assert families["discovery_dns_cache_entries"].type == "gauge"
    figures["queries_total"] = ("counter", 123_456_790)  # read again at every scrape
    assert registry.get_sample_value("discovery_dns_queries_total") == 123_456_790
    assert registry.get_sample_value("discovery_dns_cache_entries") == 0.5

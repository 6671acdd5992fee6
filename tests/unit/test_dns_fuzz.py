"""Fuzz the query handler with random and mutated packets (hypothesis).

Whatever comes in, the handler must not raise, must not hit its own error path
(``handler_errors`` stays 0: every bad packet is handled on purpose), must
reply with a well-formed message carrying the query's id, or stay silent; and
afterwards a valid query must still get the right answer.
"""

from __future__ import annotations

from dnslib import QTYPE, RCODE, DNSRecord
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dnsserver.handler import QueryHandler
from tests.unit.test_dns_handler import make_handler, query

FUZZ_EXAMPLES = 300

SEEDS = [
    query("web.service.lab"),
    query("WeB.service.lab", "AAAA", edns=1232),
    query("_http._tcp.web.service.lab", "SRV", edns=512),
    query("7.1.5.10.in-addr.arpa", "PTR"),
    query("lab", "SOA"),
    query("example.com", "A", edns=4096),
]


def check_reply(handler: QueryHandler, data: bytes, tcp: bool) -> None:
    reply = handler.respond(data, tcp)
    assert reply is None or isinstance(reply, bytes)  # no forwarder: never an awaitable
    if reply is not None:
        parsed = DNSRecord.parse(reply)
        assert parsed.header.qr == 1
        assert reply[:2] == data[:2]
    assert handler.stats.handler_errors == 0


def check_still_answers(handler: QueryHandler) -> None:
    reply = handler.respond(query("WEB.service.lab", message_id=99), False)
    assert isinstance(reply, bytes)
    parsed = DNSRecord.parse(reply)
    assert parsed.header.id == 99
    assert parsed.header.rcode == RCODE.NOERROR
    assert sorted(str(rr.rdata) for rr in parsed.rr) == ["10.5.1.7", "10.5.2.3"]


HANDLER = make_handler()


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=600), tcp=st.booleans())
def test_random_packets(data: bytes, tcp: bool) -> None:
    check_reply(HANDLER, data, tcp)
    check_still_answers(HANDLER)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    packet = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "set", "cut", "insert", "count", "pointer"]))
        if kind == "cut":
            packet = packet[: draw(st.integers(0, len(packet)))]
        elif not packet:
            continue
        elif kind == "flip":
            at = draw(st.integers(0, len(packet) - 1))
            packet[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            packet[draw(st.integers(0, len(packet) - 1))] = draw(st.integers(0, 255))
        elif kind == "insert":
            at = draw(st.integers(0, len(packet)))
            packet[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "count" and len(packet) >= 12:
            at = draw(st.sampled_from([4, 6, 8, 10]))
            packet[at : at + 2] = draw(st.integers(0, 0xFFFF)).to_bytes(2, "big")
        elif kind == "pointer" and len(packet) > 14:
            at = draw(st.integers(12, len(packet) - 2))
            target = draw(st.integers(0, len(packet) + 4))
            packet[at : at + 2] = (0xC000 | target).to_bytes(2, "big")
    return bytes(packet)


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=mutated(), tcp=st.booleans())
def test_mutated_queries(data: bytes, tcp: bool) -> None:
    check_reply(HANDLER, data, tcp)
    check_still_answers(HANDLER)


def test_the_fuzzed_handler_still_answers_srv_with_additionals() -> None:
    reply = HANDLER.respond(query("_http._tcp.web.service.lab", "SRV"), False)
    assert isinstance(reply, bytes)
    parsed = DNSRecord.parse(reply)
    assert {QTYPE[rr.rtype] for rr in parsed.rr} == {"SRV"}
    assert {QTYPE[rr.rtype] for rr in parsed.ar} == {"A", "AAAA"}

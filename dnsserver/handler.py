"""One query in, one reply out (or none): the fast path, the slow path, the errors.

``QueryHandler.respond(data, tcp)`` is what both socket loops call. It returns
the reply bytes, or None for silence, or an awaitable for a name that is
forwarded upstream. It never raises: a query it cannot read gets FORMERR, an
opcode other than QUERY gets NOTIMP, a message with QR set (a reply, not a
query) or shorter than a header gets silence, and a bug gets SERVFAIL and a
log line.

Fast path: ``wire.query_shape`` gives the cache key of an ordinary query and
the packed reply is patched and sent, with no parsing. Slow path: dnslib
parses the message, ``answers.resolve`` decides, the reply is packed into the
cache (when the query was ordinary) and served from there.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable
from dataclasses import dataclass, fields

from dnslib import CLASS, QTYPE, RCODE, DNSRecord

from dnsserver.answers import Zone, resolve
from dnsserver.cache import Entry, PackedCache, pack_answer
from dnsserver.forwarder import Forwarder
from dnsserver.view import IndexedCatalog
from dnsserver.wire import (
    BADVERS,
    FLAG_QR,
    MAX_LABEL_LEN,
    MAX_NAME_WIRE_LEN,
    MIN_UDP_PAYLOAD,
    OPCODE_MASK,
    assemble,
    bare_reply,
    build_message,
    query_shape,
    question_reply,
    reply_to_record,
    udp_reply_limit,
)

log = logging.getLogger(__name__)
ERROR_LOG_INTERVAL_S = 1.0
CLASS_ANY = 255  # QCLASS * (RFC 1035 3.2.5); dnslib names it '*'
ZONE_TRANSFER_TYPES = frozenset({QTYPE.AXFR, QTYPE.IXFR})

Reply = bytes | None | Awaitable[bytes | None]


@dataclass
class Stats:
    """Counters since start; the metrics endpoint shows them."""

    queries: int = 0
    cache_hits: int = 0
    truncated: int = 0
    formerr: int = 0
    notimp: int = 0
    refused: int = 0
    servfail: int = 0
    dropped: int = 0
    forwarded: int = 0
    forward_failures: int = 0
    handler_errors: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _patched_reply(
    data: bytes, entry: Entry, name_end: int, limit: int, tcp: bool, stats: Stats
) -> bytes:
    """A packed answer with this query's id, RD bit and question bytes (0x20 case as
    asked). Over UDP, the fullest variant that fits the limit: the whole reply, else
    without its additional section, else TC with no records (RFC 2181 9)."""
    reply = assemble(data, name_end, next(entry.whole))
    if tcp or len(reply) <= limit:
        return reply
    if entry.lean is not None:
        reply = assemble(data, name_end, next(entry.lean))
        if len(reply) <= limit:
            return reply
    stats.truncated += 1
    return assemble(data, name_end, entry.truncated)


class QueryHandler:
    def __init__(
        self,
        zone: Zone,
        view: IndexedCatalog,
        cache: PackedCache,
        forwarder: Forwarder | None = None,
        stats: Stats | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.zone = zone
        self.view = view
        self.cache = cache
        self.forwarder = forwarder
        self.stats = stats or Stats()
        self.rng = rng or random.Random()
        self.recursion_available = forwarder is not None
        self._zone_labels = zone.labels
        self._last_error_log = 0.0

    def respond(self, data: bytes, tcp: bool) -> Reply:
        """The reply to one message; never raises."""
        stats = self.stats
        stats.queries += 1
        shape = None
        try:
            shape = query_shape(data)
            if shape is not None:
                key, name_end, limit = shape
                entry = self.cache.entries.get(key)
                if entry is not None:
                    stats.cache_hits += 1
                    return _patched_reply(data, entry, name_end, limit, tcp, stats)
            return self._slow(data, tcp, shape)
        except Exception:
            stats.handler_errors += 1
            stats.servfail += 1
            now = time.monotonic()
            if now - self._last_error_log >= ERROR_LOG_INTERVAL_S:
                self._last_error_log = now
                log.exception("dns: handler failed; answering SERVFAIL")
            if shape is not None:
                return question_reply(data, shape[1], RCODE.SERVFAIL, self.recursion_available)
            return bare_reply(data, RCODE.SERVFAIL) if len(data) >= 12 else None

    def _slow(self, data: bytes, tcp: bool, shape: tuple[bytes, int, int] | None) -> Reply:
        stats = self.stats
        if len(data) < 12 or data[2] & FLAG_QR:
            stats.dropped += 1
            return None
        try:
            query = DNSRecord.parse(data)
        except Exception:  # any way a message can be broken, dnslib's errors or others
            stats.formerr += 1
            # Whether it carried an OPT is unknowable: a bare header (as for QDCOUNT 0).
            return bare_reply(data, RCODE.FORMERR)
        options = [rr for rr in query.ar if rr.rtype == QTYPE.OPT]
        edns = bool(options)
        dnssec_ok = edns and bool(options[0].ttl & 0x8000)
        if data[2] & OPCODE_MASK:
            stats.notimp += 1
            return bare_reply(
                data, RCODE.NOTIMP, echo_question=True, edns=edns, dnssec_ok=dnssec_ok
            )
        misplaced = any(rr.rtype == QTYPE.OPT for rr in (*query.rr, *query.auth))
        if len(query.questions) != 1 or len(options) > 1 or misplaced:
            stats.formerr += 1
            return bare_reply(data, RCODE.FORMERR, edns=edns, dnssec_ok=dnssec_ok)
        limit = MIN_UDP_PAYLOAD
        if options:
            if (options[0].ttl >> 16) & 0xFF:
                return reply_to_record(
                    query, BADVERS, ra=self.recursion_available, edns=True, dnssec_ok=dnssec_ok
                )
            limit = udp_reply_limit(options[0].rclass)
        question = query.questions[0]
        labels = tuple(label.lower() for label in question.qname.label)
        # dnslib reads a length byte in the reserved range 0x40-0xBF (RFC 6891 obsoleted
        # the extended label types) as a label longer than 63: not a name we can echo.
        too_long = any(len(label) > MAX_LABEL_LEN for label in labels)
        if too_long or sum(len(label) + 1 for label in labels) + 1 > MAX_NAME_WIRE_LEN:
            stats.formerr += 1
            return bare_reply(data, RCODE.FORMERR, edns=edns, dnssec_ok=dnssec_ok)
        ours = labels[len(labels) - len(self._zone_labels) :] == self._zone_labels
        # Class ANY is answered from the IN data, as an authoritative server does.
        known_class = question.qclass in (CLASS.IN, CLASS_ANY)
        if not known_class or (ours and question.qtype in ZONE_TRANSFER_TYPES):
            stats.refused += 1
            return reply_to_record(
                query, RCODE.REFUSED, ra=self.recursion_available, edns=edns, dnssec_ok=dnssec_ok
            )
        if ours and not self.view.loaded:
            # No catalog yet (etcd not reached since start): do not deny names that may exist.
            stats.servfail += 1
            return reply_to_record(
                query, RCODE.SERVFAIL, ra=self.recursion_available, edns=edns, dnssec_ok=dnssec_ok
            )
        answer = resolve(labels, question.qtype, self.zone, self.view)
        if answer is None:
            if self.forwarder is None:
                stats.refused += 1
                return reply_to_record(
                    query, RCODE.REFUSED, ra=False, edns=edns, dnssec_ok=dnssec_ok
                )
            stats.forwarded += 1
            return self._forward(data, tcp, query, edns)
        if shape is not None:
            key, name_end, _ = shape
            entry = pack_answer(
                answer,
                data[12:name_end].lower(),
                question.qtype,
                question.qclass,
                edns=edns,
                ra=self.recursion_available,
                rng=self.rng,
                dnssec_ok=dnssec_ok,
            )
            if entry is not None:
                self.cache.put(key, entry, answer.depends_on)
                return _patched_reply(data, entry, name_end, limit, tcp, stats)
        header = query.header

        def built(answer_records: bool, additional_records: bool) -> bytes:
            return build_message(
                question.qname,
                question.qtype,
                question.qclass,
                answer.rcode,
                answer=answer.answer if answer_records else (),
                authority=answer.authority if answer_records else (),
                additional=answer.additional if additional_records else (),
                message_id=header.id,
                rd=bool(header.rd),
                ra=self.recursion_available,
                tc=not answer_records,
                edns=edns,
                dnssec_ok=dnssec_ok,
            )

        reply = built(True, True)
        if tcp or len(reply) <= limit:
            return reply
        if answer.additional:  # RFC 2181 9: drop the additional section before setting TC
            reply = built(True, False)
            if len(reply) <= limit:
                return reply
        stats.truncated += 1
        return built(False, False)

    async def _forward(self, data: bytes, tcp: bool, query: DNSRecord, edns: bool) -> bytes:
        assert self.forwarder is not None
        reply = await self.forwarder.forward(data, tcp)
        if reply is None:
            self.stats.forward_failures += 1
            self.stats.servfail += 1
            return reply_to_record(query, RCODE.SERVFAIL, ra=True, edns=edns)
        return reply

"""Packed replies per (name, type, class, EDNS), dropped when the catalog changes. Pure.

An entry holds a few packed variants of one reply, each with the answer RRset
in another order, served in turn: round robin without packing per query.
Every entry is filed under what its answer depends on (a service, the nodes,
or everything), and ``invalidate`` drops exactly the entries a
``CatalogChange`` makes stale, so a registration is answered on the very next
query. The size is bounded: past ``max_entries`` the cache starts over.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from typing import NamedTuple

from dnslib import RR, DNSLabel

from discovery.catalog import CatalogChange
from dnsserver.answers import DEPENDS_ON_EVERYTHING, DEPENDS_ON_NODES, Answer, service_dependency
from dnsserver.wire import Variant, build_message, labels_from_wire, split_packed

MAX_VARIANTS = 8
MAX_ENTRIES = 200_000


class Entry(NamedTuple):
    """The packed replies to one question, from the fullest to the emptiest."""

    # the reply in each answer order, served in turn
    whole: Iterator[Variant]
    # the same without the additional section, for a UDP limit that the whole
    # reply does not fit but the answer does (RFC 2181 9: drop additional records
    # before setting TC); None when there is no additional section to drop
    lean: Iterator[Variant] | None
    # TC and no records: not even the answer fits
    truncated: Variant


def pack_answer(
    answer: Answer,
    name: bytes,
    qtype: int,
    qclass: int,
    *,
    edns: bool,
    ra: bool,
    rng: random.Random,
    dnssec_ok: bool = False,
) -> Entry | None:
    """Pack an answer to the question (lower-case wire name, type, class) into an entry.

    None if the packed question would not be byte-for-byte the name given (a
    label dnslib would spell differently), so the caller builds that reply whole.
    """
    qname = DNSLabel(list(labels_from_wire(name)))
    orders = [answer.answer]
    if answer.rotate:
        shuffled = list(answer.answer)
        rng.shuffle(shuffled)
        if len(shuffled) <= MAX_VARIANTS:
            orders = [tuple(shuffled[i:] + shuffled[:i]) for i in range(len(shuffled))]
        else:
            orders = [tuple(rng.sample(shuffled, len(shuffled))) for _ in range(MAX_VARIANTS)]

    def packed(additional: tuple[RR, ...]) -> list[Variant] | None:
        variants = []
        for records in orders:
            message = build_message(
                qname,
                qtype,
                qclass,
                answer.rcode,
                answer=records,
                authority=answer.authority,
                additional=additional,
                ra=ra,
                edns=edns,
                dnssec_ok=dnssec_ok,
            )
            if message[12 : 12 + len(name)] != name:
                return None
            variants.append(split_packed(message, len(name)))
        return variants

    whole = packed(answer.additional)
    lean = packed(()) if answer.additional else None
    if whole is None:
        return None
    truncated = build_message(
        qname, qtype, qclass, answer.rcode, ra=ra, tc=True, edns=edns, dnssec_ok=dnssec_ok
    )
    return Entry(
        itertools.cycle(whole),
        itertools.cycle(lean) if lean else None,
        split_packed(truncated, len(name)),
    )


class PackedCache:
    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self.entries: dict[bytes, Entry] = {}
        self._keys: dict[str, set[bytes]] = {}  # dependency -> keys of entries
        self.invalidations = 0

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, key: bytes) -> Entry | None:
        return self.entries.get(key)

    def put(self, key: bytes, entry: Entry, depends_on: str) -> None:
        if len(self.entries) >= self.max_entries:
            self.clear()
        self.entries[key] = entry
        self._keys.setdefault(depends_on, set()).add(key)

    def clear(self) -> None:
        self.entries.clear()
        self._keys.clear()

    def _drop(self, dependency: str) -> None:
        for key in self._keys.pop(dependency, ()):
            self.entries.pop(key, None)

    def invalidate(self, change: CatalogChange) -> None:
        """Catalog listener: drop what the change makes stale."""
        self.invalidations += 1
        if change.full:
            self.clear()
            return
        for service in change.services:
            self._drop(service_dependency(service))
        if change.nodes:
            self._drop(DEPENDS_ON_NODES)
        # Apex (SOA serial), PTR and names outside service/node: any change may alter them.
        self._drop(DEPENDS_ON_EVERYTHING)

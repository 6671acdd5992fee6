"""DNS messages as bytes: a quick look at a query, and replies packed for reuse. Pure.

The fast path rests on one observation. For an ordinary query (one question,
no records but an optional EDNS OPT), the reply to (name, type, class, EDNS
or not) is the same bytes every time except for:

* the 2-byte message id, copied from the query;
* the RD flag, copied from the query;
* the question name's letter case (0x20 randomisation), copied from the query.

So a reply is packed once, with the question name in lower case, and kept as
``(head without RD, head with RD, tail)``: the 10 header bytes after the id, and
everything after the question name. Serving it is
``id + head + name as asked + tail``. The answer records' owner names are
compression pointers to offset 12, the question name, so they come out in the
client's own case too, and pointers into the name stay valid because a name
that matches case-insensitively has the same length.

``query_shape`` tells whether a query is ordinary and gives its cache key;
anything else (and every cache miss) takes the slow path through dnslib.
"""

from __future__ import annotations

from collections.abc import Sequence

from dnslib import CLASS, EDNS0, QTYPE, RCODE, RR, DNSHeader, DNSLabel, DNSQuestion, DNSRecord

HEADER_LEN = 12
MIN_UDP_PAYLOAD = 512  # RFC 1035; also the floor for an EDNS size below it (RFC 6891)
# What we tell clients we accept, and the most we send in one datagram whatever the
# client offers (RFC 6891 6.2.5, RFC 9715): 1232 fits the lab's 1450-byte VXLAN MTU
# without IP fragmentation (DNS flag day 2020).
OWN_UDP_PAYLOAD = 1232
MAX_NAME_WIRE_LEN = 255
MAX_LABEL_LEN = 63
BADVERS = 16

# flags, first byte: QR opcode(4) AA TC RD; second byte: RA Z AD CD rcode(4)
FLAG_QR = 0x80
FLAG_AA = 0x04
FLAG_TC = 0x02
FLAG_RD = 0x01
FLAG_RA = 0x80
OPCODE_MASK = 0x78
OPT_FLAG_DO = 0x80  # the first byte of the OPT record's flags (RFC 3225)

_ONE_QUESTION_NO_RECORDS = b"\x00\x01\x00\x00\x00\x00"

# (head with RD clear, head with RD set, tail after the question name)
Variant = tuple[bytes, bytes, bytes]


def query_shape(data: bytes) -> tuple[bytes, int, int] | None:
    """(cache key, offset just past the question name, UDP reply size limit) of an
    ordinary query, else None.

    Ordinary: QR clear, opcode QUERY, one question whose name has no compression
    pointers, no answer or authority records, and at most one additional record,
    a well-formed EDNS version 0 OPT. The key is the lower-cased name, type,
    class, and whether there was an OPT and its DO bit (the reply copies both).
    """
    size = len(data)
    if size < 17 or data[2] & 0xF8 or data[4:10] != _ONE_QUESTION_NO_RECORDS:
        return None
    position = 12
    try:
        length = data[12]
        while length:
            if length > MAX_LABEL_LEN:  # a compression pointer or a reserved label type
                return None
            position += length + 1
            length = data[position]
    except IndexError:
        return None
    name_end = position + 1
    if name_end - 12 > MAX_NAME_WIRE_LEN:
        return None
    end = name_end + 4
    additional = data[10:12]
    if additional == b"\x00\x00":
        if end != size:
            return None
        return data[12:name_end].lower() + data[name_end:end] + b"N", name_end, MIN_UDP_PAYLOAD
    # One OPT: root name, type 41, class = UDP size, ttl = ext-rcode, version, flags.
    if additional != b"\x00\x01" or size < end + 11 or data[end : end + 3] != b"\x00\x00\x29":
        return None
    if data[end + 6] != 0:  # EDNS version: anything but 0 gets BADVERS on the slow path
        return None
    option = end + 11
    if option + int.from_bytes(data[end + 9 : end + 11], "big") != size:
        return None
    while option < size:
        if option + 4 > size:
            return None
        option += 4 + int.from_bytes(data[option + 2 : option + 4], "big")
    if option != size:
        return None
    offered = int.from_bytes(data[end + 3 : end + 5], "big")
    limit = udp_reply_limit(offered)
    edns_marker = b"D" if data[end + 7] & OPT_FLAG_DO else b"E"
    return data[12:name_end].lower() + data[name_end:end] + edns_marker, name_end, limit


def udp_reply_limit(offered: int) -> int:
    """The largest UDP reply for a client that offered this EDNS payload size."""
    return min(max(offered, MIN_UDP_PAYLOAD), OWN_UDP_PAYLOAD)


def assemble(data: bytes, name_end: int, variant: Variant) -> bytes:
    """A packed reply, patched with the query's id, RD flag and question name."""
    return data[:2] + variant[data[2] & FLAG_RD] + data[12:name_end] + variant[2]


def labels_from_wire(name: bytes) -> tuple[bytes, ...]:
    """The labels of an uncompressed wire name (as query_shape has checked it)."""
    labels = []
    position = 0
    while name[position]:
        length = name[position]
        labels.append(name[position + 1 : position + 1 + length])
        position += length + 1
    return tuple(labels)


# ------------------------------------------------------------------ building


def build_message(
    qname: DNSLabel,
    qtype: int,
    qclass: int,
    rcode: int,
    *,
    answer: Sequence[RR] = (),
    authority: Sequence[RR] = (),
    additional: Sequence[RR] = (),
    message_id: int = 0,
    rd: bool = False,
    ra: bool = False,
    aa: bool = True,
    tc: bool = False,
    edns: bool = False,
    dnssec_ok: bool = False,
) -> bytes:
    header = DNSHeader(
        id=message_id, qr=1, aa=int(aa), tc=int(tc), rd=int(rd), ra=int(ra), rcode=rcode & 0xF
    )
    record = DNSRecord(header, questions=[DNSQuestion(qname, qtype, qclass)])
    record.rr = list(answer)
    record.auth = list(authority)
    record.ar = list(additional)
    if edns:
        # RFC 3225: the DO bit of the query is copied into the reply.
        flags = "do" if dnssec_ok else ""
        record.ar.append(EDNS0(udp_len=OWN_UDP_PAYLOAD, ext_rcode=rcode >> 4, flags=flags))
    return bytes(record.pack())


def split_packed(packed: bytes, name_length: int) -> Variant:
    """Cut a packed reply (id 0, RD clear) into a reusable variant."""
    head = packed[2:12]
    with_rd = bytes([head[0] | FLAG_RD]) + head[1:]
    return head, with_rd, packed[12 + name_length :]


def opt_record(ext_rcode: int = 0, dnssec_ok: bool = False) -> bytes:
    """Our OPT record: root owner, our UDP size, extended rcode, version 0, DO as asked."""
    flags = bytes([OPT_FLAG_DO if dnssec_ok else 0, 0])
    return (
        b"\x00\x00\x29"
        + OWN_UDP_PAYLOAD.to_bytes(2, "big")
        + bytes([ext_rcode & 0xFF, 0])
        + flags
        + b"\x00\x00"
    )


def question_end(data: bytes) -> int | None:
    """The offset just past the first question, when it is there and its name is plain
    labels (no compression pointer, no reserved label type), else None."""
    position = HEADER_LEN
    try:
        while data[position]:
            if data[position] > MAX_LABEL_LEN:
                return None
            position += data[position] + 1
    except IndexError:
        return None
    end = position + 5
    if data[4:6] == b"\x00\x00" or end > len(data) or end - HEADER_LEN - 4 > MAX_NAME_WIRE_LEN:
        return None
    return end


def bare_reply(
    data: bytes,
    rcode: int,
    *,
    echo_question: bool = False,
    edns: bool = False,
    dnssec_ok: bool = False,
) -> bytes:
    """A reply with no records to a query we will not answer (FORMERR, NOTIMP, SERVFAIL):
    the query's id, opcode and RD; its question when asked to echo it and it can be
    echoed; an OPT when the query carried one (RFC 6891 6.1.1)."""
    first = FLAG_QR | (data[2] & (OPCODE_MASK | FLAG_RD))
    end = question_end(data) if echo_question else None
    question = data[HEADER_LEN:end] if end is not None else b""
    counts = (b"\x00\x01" if question else b"\x00\x00") + bytes(4)
    counts += b"\x00\x01" if edns else b"\x00\x00"
    opt = opt_record(rcode >> 4, dnssec_ok) if edns else b""
    return data[:2] + bytes([first, rcode & 0xF]) + counts + question + opt


def question_reply(data: bytes, name_end: int, rcode: int, ra: bool) -> bytes:
    """A reply with the question echoed and no records, for an ordinary query."""
    first = FLAG_QR | (data[2] & FLAG_RD)
    second = (FLAG_RA if ra else 0) | (rcode & 0xF)
    return data[:2] + bytes([first, second]) + b"\x00\x01" + bytes(6) + data[12 : name_end + 4]


def reply_to_record(
    query: DNSRecord,
    rcode: int,
    *,
    ra: bool,
    edns: bool,
    dnssec_ok: bool = False,
    aa: bool = False,
) -> bytes:
    """A reply with no records to a parsed query, keeping its question as asked."""
    question = query.questions[0] if query.questions else DNSQuestion(".", QTYPE.A, CLASS.IN)
    return build_message(
        question.qname,
        question.qtype,
        question.qclass,
        rcode,
        message_id=query.header.id,
        rd=bool(query.header.rd),
        ra=ra,
        aa=aa,
        edns=edns,
        dnssec_ok=dnssec_ok,
    )


__all__ = [
    "BADVERS",
    "MIN_UDP_PAYLOAD",
    "OWN_UDP_PAYLOAD",
    "RCODE",
    "Variant",
    "assemble",
    "bare_reply",
    "build_message",
    "labels_from_wire",
    "opt_record",
    "query_shape",
    "question_end",
    "question_reply",
    "reply_to_record",
    "split_packed",
    "udp_reply_limit",
]

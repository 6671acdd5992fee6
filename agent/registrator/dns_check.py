"""Ask this host's DNS server one question, as a health check: the only DNS client here.

The services agent reports in its node record whether the host's DNS server
answers (``node_checks``), so that the map and doctor see it through etcd,
where the DNS server itself, a reader only, leaves no trace. The question is
the SOA of the lab's domain, which the server answers from its own zone
whatever etcd holds: a reply with any rcode but SERVFAIL means it is serving.
"""

from __future__ import annotations

import asyncio
import secrets
import socket

import dnslib

TIMEOUT_S = 1.0


class _Reply(asyncio.DatagramProtocol):
    def __init__(self, query_id: int) -> None:
        self.query_id = query_id
        self.answer: asyncio.Future[dnslib.DNSRecord] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: object) -> None:
        try:
            record = dnslib.DNSRecord.parse(data)
        except Exception:  # anything unparsable is not our answer
            return
        if record.header.id == self.query_id and not self.answer.done():
            self.answer.set_result(record)

    def error_received(self, exc: Exception) -> None:  # ICMP port unreachable: nobody listens
        if not self.answer.done():
            self.answer.set_exception(exc)


async def dns_answers(address: str, port: int, domain: str, timeout_s: float = TIMEOUT_S) -> str:
    """ "" when the server answered, else one line saying what went wrong."""
    query_id = secrets.randbelow(65536)
    question = dnslib.DNSRecord.question(domain, "SOA")
    question.header.id = query_id
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: _Reply(query_id), remote_addr=(address, port), family=family
        )
    except OSError as error:
        return f"cannot send to {address}:{port}: {error.strerror or error}"
    try:
        transport.sendto(question.pack())
        reply = await asyncio.wait_for(protocol.answer, timeout_s)
    except TimeoutError:
        return f"no answer from {address}:{port} within {timeout_s:g} s"
    except OSError as error:
        return f"{address}:{port}: {error.strerror or error}"
    finally:
        transport.close()
    if reply.header.rcode == dnslib.RCODE.SERVFAIL:
        return f"{address}:{port} answered SERVFAIL"
    return ""


__all__ = ["dns_answers"]

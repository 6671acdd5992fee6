"""Forwarding names outside the lab domain to upstream resolvers, with a timeout.

The client's query goes upstream as it came (so the upstream sees the client's
EDNS size and 0x20 case), under a fresh random message id; the reply goes back
with the client's id. Upstreams are tried in the order given, each for at most
``timeout_s``; when none answers the caller replies SERVFAIL. A query that came
over TCP is forwarded over TCP; a UDP reply with TC set is passed back as it
is, so the client retries over TCP and that retry is forwarded over TCP.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence

log = logging.getLogger(__name__)
FORWARD_TIMEOUT_S = 2.0


class _OneReply(asyncio.DatagramProtocol):
    """Wait on a connected UDP socket for the reply carrying our message id."""

    def __init__(self, message_id: bytes) -> None:
        self.message_id = message_id
        self.reply: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: object) -> None:
        ours = len(data) >= 12 and data[:2] == self.message_id and data[2] & 0x80
        if ours and not self.reply.done():
            self.reply.set_result(data)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like: this upstream is not there.
        if not self.reply.done():
            self.reply.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.reply.done():
            self.reply.set_result(None)


class Forwarder:
    def __init__(
        self,
        upstreams: Sequence[tuple[str, int]],
        timeout_s: float = FORWARD_TIMEOUT_S,
        rng: random.Random | None = None,
    ) -> None:
        self.upstreams = list(upstreams)
        self.timeout_s = timeout_s
        self.rng = rng or random.SystemRandom()

    async def forward(self, query: bytes, tcp: bool) -> bytes | None:
        """The upstream reply with the client's id, or None when no upstream answered."""
        for host, port in self.upstreams:
            message_id = self.rng.getrandbits(16).to_bytes(2, "big")
            outgoing = message_id + query[2:]
            exchange = self._tcp if tcp else self._udp
            try:
                reply = await asyncio.wait_for(exchange(host, port, outgoing), self.timeout_s)
            except (TimeoutError, OSError, asyncio.IncompleteReadError) as error:
                log.info("dns: upstream %s:%d did not answer: %r", host, port, error)
                continue
            if reply is not None and reply[:2] == message_id:
                return query[:2] + reply[2:]
            log.info("dns: upstream %s:%d gave no usable reply", host, port)
        return None

    async def _udp(self, host: str, port: int, outgoing: bytes) -> bytes | None:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: _OneReply(outgoing[:2]), remote_addr=(host, port)
        )
        try:
            transport.sendto(outgoing)
            return await protocol.reply
        finally:
            transport.close()

    async def _tcp(self, host: str, port: int, outgoing: bytes) -> bytes | None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(len(outgoing).to_bytes(2, "big") + outgoing)
            await writer.drain()
            length = int.from_bytes(await reader.readexactly(2), "big")
            reply = await reader.readexactly(length)
            return reply if len(reply) >= 12 and reply[2] & 0x80 else None
        finally:
            writer.close()

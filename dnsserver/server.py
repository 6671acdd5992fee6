"""The DNS sockets: UDP and TCP on asyncio. They only move bytes.

Every ``--listen`` address gets a UDP and a TCP socket on the same port (port 0
picks a free one, the same for both, so tests need no guessing). Each message
goes to ``QueryHandler.respond`` and whatever comes back is sent; the handler
never raises, and this module adds no DNS logic of its own.

UDP: the socket is read directly from the event loop's selector, draining up
to ``UDP_BATCH`` datagrams per wake-up (asyncio's datagram transport reads one
per loop iteration, which costs more than the answer itself). Forwarded
queries finish in tasks, at most ``MAX_PENDING_FORWARDS`` at once.

TCP (RFC 7766): length-prefixed messages, several per connection, answered in
order. A connection that sends nothing for ``idle_timeout_s`` (or dribbles a
message slower than that) is closed, a declared length shorter than a header
or longer than ``MAX_TCP_QUERY_BYTES`` closes it at once, and at most
``max_tcp_connections`` are served at a time: one more is closed on accept.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import Awaitable, Sequence
from typing import Any

from discovery.metrics import parse_address
from dnsserver.handler import QueryHandler

log = logging.getLogger(__name__)

UDP_BATCH = 64
UDP_RECEIVE_BUFFER_BYTES = 4 << 20
TCP_IDLE_TIMEOUT_S = 10.0
MAX_TCP_CONNECTIONS = 128
MAX_TCP_QUERY_BYTES = 16384
MAX_PENDING_FORWARDS = 1024
BIND_ATTEMPTS = 20


def parse_listen(text: str, default_port: int = 53) -> tuple[str, int]:
    """'127.0.0.1:5353' / '[::1]:53' / '127.0.0.1' -> (host, port)."""
    return parse_address(text, default_port)


def bind_pair(host: str, port: int) -> tuple[socket.socket, socket.socket]:
    """A UDP and a TCP socket bound to the same address and port (free one for 0)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(BIND_ATTEMPTS):
        udp = socket.socket(family, socket.SOCK_DGRAM)
        tcp = socket.socket(family, socket.SOCK_STREAM)
        try:
            with contextlib.suppress(OSError):
                udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER_BYTES)
            udp.bind((host, port))
            chosen = udp.getsockname()[1]
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind((host, chosen))
            tcp.listen(128)
        except OSError as error:
            udp.close()
            tcp.close()
            if port == 0 and error.errno == errno.EADDRINUSE:
                continue  # the free UDP port is taken for TCP: try another
            raise
        udp.setblocking(False)
        tcp.setblocking(False)
        return udp, tcp
    raise OSError(errno.EADDRINUSE, f"no port free for both UDP and TCP on {host}")


class DnsServer:
    def __init__(
        self,
        handler: QueryHandler,
        listen: Sequence[tuple[str, int]],
        *,
        idle_timeout_s: float = TCP_IDLE_TIMEOUT_S,
        max_tcp_connections: int = MAX_TCP_CONNECTIONS,
    ) -> None:
        self.handler = handler
        self.listen = list(listen)
        self.idle_timeout_s = idle_timeout_s
        self.max_tcp_connections = max_tcp_connections
        self.addresses: list[tuple[str, int]] = []
        self.tcp_connections = 0
        self.tcp_refused = 0
        self._udp_sockets: list[socket.socket] = []
        self._tcp_servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            for host, port in self.listen:
                udp, tcp = bind_pair(host, port)
                self._udp_sockets.append(udp)
                loop.add_reader(udp.fileno(), self._udp_readable, udp)
                server = await asyncio.start_server(self._tcp_client, sock=tcp)
                self._tcp_servers.append(server)
                self.addresses.append((host, udp.getsockname()[1]))
        except BaseException:
            await self.close()
            raise
        for host, port in self.addresses:
            log.info(
                "dns: listening", extra={"fields": {"address": host, "port": port, "on": "udp,tcp"}}
            )

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        for udp in self._udp_sockets:
            loop.remove_reader(udp.fileno())
            udp.close()
        self._udp_sockets.clear()
        for server in self._tcp_servers:
            server.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        for server in self._tcp_servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), timeout=2)
        self._tcp_servers.clear()

    # ------------------------------------------------------------ UDP

    def _udp_readable(self, udp: socket.socket) -> None:
        receive = udp.recvfrom
        send = udp.sendto
        respond = self.handler.respond
        for _ in range(UDP_BATCH):
            try:
                data, address = receive(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                log.debug("dns: udp receive failed: %r", error)
                return
            reply = respond(data, False)
            if reply is None:
                continue
            if isinstance(reply, bytes):
                try:
                    send(reply, address)
                except OSError:  # a full socket buffer: UDP may drop, the client retries
                    self.handler.stats.dropped += 1
            else:
                self._finish_later(reply, udp, address)

    def _finish_later(
        self, pending: Awaitable[bytes | None], udp: socket.socket, address: Any
    ) -> None:
        if len(self._tasks) >= MAX_PENDING_FORWARDS:
            self.handler.stats.dropped += 1
            close = getattr(pending, "close", None)
            if close is not None:
                close()  # a coroutine never started must be closed, not left to warn
            return

        async def finish() -> None:
            try:
                reply = await pending
                if reply is not None:
                    udp.sendto(reply, address)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # a closed socket at shutdown, a forwarder bug
                log.warning("dns: finishing a forwarded udp query failed: %r", error)

        task = asyncio.get_running_loop().create_task(finish())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------ TCP

    async def _tcp_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.tcp_connections >= self.max_tcp_connections:
            self.tcp_refused += 1
            writer.close()
            return
        self.tcp_connections += 1
        self._writers.add(writer)
        idle = self.idle_timeout_s
        try:
            while True:
                prefix = await asyncio.wait_for(reader.readexactly(2), idle)
                length = int.from_bytes(prefix, "big")
                if length < 12 or length > MAX_TCP_QUERY_BYTES:
                    break
                data = await asyncio.wait_for(reader.readexactly(length), idle)
                reply = self.handler.respond(data, True)
                if reply is not None and not isinstance(reply, bytes):
                    reply = await reply
                if reply is None:
                    continue
                writer.write(len(reply).to_bytes(2, "big") + reply)
                await asyncio.wait_for(writer.drain(), idle)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, OSError):
            pass  # idle, gone, or reset: just close
        except Exception:
            log.exception("dns: tcp connection failed")
        finally:
            self.tcp_connections -= 1
            self._writers.discard(writer)
            writer.close()

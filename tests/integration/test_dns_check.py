"""The services agent's check of its host's DNS server, against the real DNS server."""

from __future__ import annotations

import asyncio
import socket

import pytest
from dnslib import RCODE, DNSRecord

from agent.registrator.dns_check import dns_answers
from discovery.settings import Settings
from tests.integration.test_dns_server import port_of, start_dns

pytestmark = pytest.mark.etcd


async def test_a_serving_dns_server_passes(etcd_settings: Settings) -> None:
    service = await start_dns(etcd_settings)
    try:
        assert await dns_answers("127.0.0.1", port_of(service), etcd_settings.domain) == ""
    finally:
        await service.close()


async def test_one_line_for_each_way_the_check_fails() -> None:
    # Nobody on the port: the kernel's ICMP port unreachable, at once.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    assert "Connection refused" in await dns_answers("127.0.0.1", closed_port, "lab")
    # Something on the port that never answers (a frozen server).
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        said = await dns_answers("127.0.0.1", port, "lab", timeout_s=0.3)
    assert said == f"no answer from 127.0.0.1:{port} within 0.3 s"
    # A server that answers SERVFAIL (as ours does before it has reached etcd, which
    # tests/integration/test_dns_server.py checks): a peer here that answers nothing else.
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(ServfailPeer, local_addr=("127.0.0.1", 0))
    try:
        port = transport.get_extra_info("sockname")[1]
        assert await dns_answers("127.0.0.1", port, "lab") == f"127.0.0.1:{port} answered SERVFAIL"
    finally:
        transport.close()


class ServfailPeer(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = DNSRecord.parse(data).reply()
        reply.header.rcode = RCODE.SERVFAIL
        self.transport.sendto(reply.pack(), addr)  # type: ignore[attr-defined]

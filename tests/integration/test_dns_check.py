"""The services agent's check of its host's DNS server, against the real DNS server."""

from __future__ import annotations

import socket

import pytest

from agent.registrator.dns_check import dns_answers
from discovery.settings import Settings
from dnsserver.service import DnsOptions, DnsService
from labs.etcd_server import EtcdCluster
from tests.fixtures.etcd import settings_for
from tests.integration.test_dns_server import port_of, start_dns

pytestmark = pytest.mark.etcd


async def test_a_serving_dns_server_passes(etcd_settings: Settings) -> None:
    service = await start_dns(etcd_settings)
    try:
        assert await dns_answers("127.0.0.1", port_of(service), etcd_settings.domain) == ""
    finally:
        await service.close()


async def test_one_line_for_each_way_the_check_fails(etcd_server: EtcdCluster) -> None:
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
    # A server that has never reached etcd cannot answer for the lab: SERVFAIL.
    unreachable = settings_for(["http://127.0.0.1:9"], request_timeout_s=0.3)
    service = DnsService(unreachable, DnsOptions(listen=(("127.0.0.1", 0),)))
    await service.start()
    try:
        said = await dns_answers("127.0.0.1", port_of(service), unreachable.domain)
        assert said == f"127.0.0.1:{port_of(service)} answered SERVFAIL"
    finally:
        await service.close()

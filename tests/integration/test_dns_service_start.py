"""A DNS server whose metrics port is taken fails to start, and leaves nothing behind."""

from __future__ import annotations

import asyncio
import socket

import pytest

from dnsserver.service import DnsOptions, DnsService
from labs.etcd_server import EtcdCluster
from tests.fixtures.etcd import settings_for

pytestmark = pytest.mark.etcd


async def test_a_taken_metrics_port_fails_the_start_and_frees_the_dns_port(
    etcd_server: EtcdCluster,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        metrics_port = taken.getsockname()[1]
        tasks_before = asyncio.all_tasks()
        service = DnsService(
            settings_for(etcd_server.endpoints),
            DnsOptions(listen=(("127.0.0.1", 0),), metrics=("127.0.0.1", metrics_port)),
        )
        with pytest.raises(OSError):
            await service.start()
    # The DNS sockets it bound are closed and its catalog feed is gone.
    assert service.addresses, "the DNS sockets were bound before the metrics port"
    assert all(_free(host, port) for host, port in service.addresses)
    await asyncio.sleep(0)  # let cancelled tasks finish
    assert asyncio.all_tasks() == tasks_before


def _free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind((host, port))
    with socket.socket() as tcp:
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind((host, port))
    return True

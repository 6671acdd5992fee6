"""discovery.metrics: a registry served at /metrics on loopback, the ADDR:PORT parser,
and the etcd pair every process keeps."""

from __future__ import annotations

import asyncio
import os
import socket

import aiohttp
import pytest
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from discovery.metrics import EtcdHealth, new_registry, parse_address, serve_metrics


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


async def get(url: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, response.headers["Content-Type"], await response.text()


async def test_serves_its_own_registry_on_a_free_port_and_closes() -> None:
    registry = new_registry()
    hits = Counter("test_hits", "hits", registry=registry)
    hits.inc(3)
    server = await serve_metrics(registry, "127.0.0.1", 0)
    try:
        assert server.port != 0
        assert server.url == f"http://127.0.0.1:{server.port}/metrics"
        status, content_type, text = await get(server.url)
        assert status == 200
        assert content_type == CONTENT_TYPE_LATEST
        families = {f.name: f for f in text_string_to_metric_families(text)}
        assert families["test_hits"].type == "counter"
        assert [s.value for s in families["test_hits"].samples if s.name == "test_hits_total"] == [
            3
        ]
        # The process figures a default registry has, without using the global one.
        assert "process_cpu_seconds" in families
        assert "python_info" in families
        assert "_created" not in text  # no start-time gauge beside every counter
        hits.inc()
        assert "test_hits_total 4.0" in (await get(server.url))[2]  # live, not a snapshot
        status, _, _ = await get(f"http://127.0.0.1:{server.port}/other")
        assert status == 404
    finally:
        await server.close()
    assert port_is_free(server.port)


async def test_two_servers_in_one_process_keep_their_figures_apart() -> None:
    first, second = CollectorRegistry(), CollectorRegistry()
    Counter("test_same_name", "one", registry=first).inc(1)
    Counter("test_same_name", "two", registry=second).inc(2)
    async with (
        await serve_metrics(first, "127.0.0.1", 0) as one,
        await serve_metrics(second, "127.0.0.1", 0) as two,
    ):
        assert "test_same_name_total 1.0" in (await get(one.url))[2]
        assert "test_same_name_total 2.0" in (await get(two.url))[2]


async def test_a_taken_port_is_a_clear_error_and_leaves_nothing_open() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        fds, tasks = open_fds(), asyncio.all_tasks()
        with pytest.raises(OSError, match=rf"cannot serve /metrics on 127\.0\.0\.1:{port}: "):
            await serve_metrics(CollectorRegistry(), "127.0.0.1", port)
        await asyncio.sleep(0)  # let anything cancelled finish
        assert open_fds() == fds
        assert asyncio.all_tasks() == tasks


@pytest.mark.parametrize(
    ("text", "default", "expected"),
    [
        ("127.0.0.1:9153", None, ("127.0.0.1", 9153)),
        ("0.0.0.0:0", None, ("0.0.0.0", 0)),
        ("[::1]:9100", None, ("::1", 9100)),
        ("127.0.0.1", 9153, ("127.0.0.1", 9153)),
        ("[::1]", 53, ("::1", 53)),
    ],
)
def test_parse_address(text: str, default: int | None, expected: tuple[str, int]) -> None:
    assert parse_address(text, default) == expected


@pytest.mark.parametrize(
    ("text", "default"),
    [
        ("127.0.0.1", None),  # no port, none by default
        ("localhost:9100", None),  # names are not addresses
        ("127.0.0.1:65536", None),
        ("127.0.0.1:http", None),
        ("[::1]9100", None),
    ],
)
def test_parse_address_refuses(text: str, default: int | None) -> None:
    with pytest.raises(ValueError):
        parse_address(text, default)


def test_etcd_health_counts_outages_and_says_whether_etcd_answers_now() -> None:
    registry = CollectorRegistry()
    health = EtcdHealth(registry, "test_")
    assert registry.get_sample_value("test_etcd_reachable") == 0  # not reached yet
    health.reached()
    health.lost()
    assert registry.get_sample_value("test_etcd_reachable") == 0
    health.reached()
    health.reached()
    health.lost()
    assert registry.get_sample_value("test_etcd_outages_total") == 2
    health.reached()
    assert registry.get_sample_value("test_etcd_reachable") == 1

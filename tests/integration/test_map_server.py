"""The map server against a real etcd: Consul's shapes, blocking queries, errors, outages."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from discovery import schema
from discovery.settings import Settings
from discovery.store import EtcdStore
from labs.etcd_server import EtcdCluster
from labs.testing.waiting import eventually
from mapserver.server import MapServer
from tests.fixtures.etcd import settings_for
from tests.integration.map_support import (
    DB,
    HOST2,
    SICK,
    WEB2,
    WEB3,
    put_endpoint,
    start_map,
    write_lab,
)

pytestmark = pytest.mark.etcd


@pytest.fixture
async def lab(etcd_settings: Settings) -> AsyncIterator[tuple[Settings, MapServer, int]]:
    revision = await write_lab(etcd_settings)
    server = await start_map(etcd_settings)
    try:
        yield etcd_settings, server, revision
    finally:
        await server.close()


async def fetch(server: MapServer, path: str) -> tuple[int, dict[str, str], object]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(server.url + path) as response,
    ):
        return response.status, dict(response.headers), await response.json()


async def test_the_catalog_in_consuls_shapes(lab):
    _, server, revision = lab
    status, headers, services = await fetch(server, "/v1/catalog/services")
    assert status == 200
    assert services == {"db": ["sql"], "web": ["http"]}
    assert int(headers["X-Consul-Index"]) == revision  # the etcd revision of the last write
    assert headers["X-Consul-KnownLeader"] == "true"
    assert headers["X-Consul-LastContact"] == "0"
    assert headers["Content-Type"].startswith("application/json")

    status, headers, rows = await fetch(server, "/v1/catalog/service/web")
    assert status == 200 and isinstance(rows, list)
    by_address = {row["ServiceAddress"]: row for row in rows}
    assert set(by_address) == {WEB2.address, WEB3.address, SICK.address}
    web2 = by_address[WEB2.address]
    assert web2["Node"] == "host2" and web2["Address"] == HOST2.address
    assert web2["ServiceName"] == "web" and web2["ServicePort"] == 80
    assert web2["ServiceID"] == WEB2.endpoint_id and web2["Datacenter"] == "lab"
    assert web2["ServiceMeta"]["container_name"] == "web-1"

    status, _, entries = await fetch(server, "/v1/health/service/web")
    assert status == 200 and len(entries) == 3
    status, _, entries = await fetch(server, "/v1/health/service/web?passing")
    assert status == 200
    assert sorted(e["Service"]["Address"] for e in entries) == [WEB2.address, WEB3.address]
    assert all(e["Checks"][0]["Status"] == "passing" for e in entries)
    assert {e["Node"]["Address"] for e in entries} == {"192.168.57.12", "192.168.57.13"}

    status, _, tagged = await fetch(server, "/v1/catalog/service/db?tag=sql")
    assert status == 200 and [r["ServiceAddress"] for r in tagged] == [DB.address]

    status, _, nodes = await fetch(server, "/v1/catalog/nodes")
    assert status == 200
    assert [(n["Node"], n["Address"]) for n in nodes] == [
        ("host2", "192.168.57.12"),
        ("host3", "192.168.57.13"),
    ]

    status, _, lab_status = await fetch(server, "/v1/lab/status")
    assert lab_status["etcd_reachable"] is True and lab_status["endpoints"] == 4


async def test_bad_requests_get_json_errors(lab):
    _, server, _ = lab
    status, _, body = await fetch(server, "/v1/catalog/service/nope")
    assert status == 404 and "unknown service 'nope'" in body["error"] and body["status"] == 404
    status, _, body = await fetch(server, "/v1/health/service/nope?passing")
    assert status == 404 and "nope" in body["error"]
    status, _, body = await fetch(server, "/v1/health/service/nope?index=x")
    assert status == 400 and body["error"].startswith("Invalid index")  # checked first
    for query in ("index=abc", "index=-3", "index=1&wait=10", "index=1&wait=soon"):
        status, _, body = await fetch(server, f"/v1/catalog/services?{query}")
        assert status == 400, query
        assert body["error"].startswith(("Invalid index", "Invalid wait")), body
    status, _, body = await fetch(server, "/v1/no/such/thing")
    assert status == 404 and body["status"] == 404
    status, _, body = await fetch(server, "/v1/catalog/services?dc=elsewhere")
    assert status == 404 and "datacenter" in body["error"]
    async with (
        aiohttp.ClientSession() as session,
        session.post(server.url + "/v1/catalog/services") as response,
    ):
        assert response.status == 405 and (await response.json())["status"] == 405


async def test_a_service_whose_endpoints_all_left_is_empty_not_unknown(lab):
    settings, server, _ = lab
    async with EtcdStore(settings) as store:
        await store.delete_prefix(schema.service_prefix(settings.prefix, settings.domain, "db"))
    await eventually(lambda: not server.catalog.endpoints("db"), 10, "db gone")
    status, _, rows = await fetch(server, "/v1/catalog/service/db")
    assert (status, rows) == (200, [])  # as Consul: a watcher sees it empty, not an error


async def blocking_get(server: MapServer, path: str, index: int, wait: str):
    """(seconds taken, status, X-Consul-Index, body) of one blocking query."""
    async with aiohttp.ClientSession() as session:
        started = time.perf_counter()
        async with session.get(f"{server.url}{path}?index={index}&wait={wait}") as response:
            body = await response.json()
            taken = time.perf_counter() - started
            return taken, response.status, int(response.headers["X-Consul-Index"]), body


async def test_a_blocking_query_answers_within_100_ms_of_a_change(lab, capsys):
    settings, server, revision = lab
    wakeups = []
    async with EtcdStore(settings) as store:
        index = revision
        for n in range(50):
            query = asyncio.create_task(
                blocking_get(server, "/v1/health/service/web", index, "30s")
            )
            await eventually(lambda: server.waiting == 1, 5, "the query waiting")
            endpoint = schema.Endpoint(
                service="web", address=f"10.5.4.{n + 1}", port=80, node="host2"
            )
            changed = time.perf_counter()  # before the write: its round trip counts too
            written = await put_endpoint(store, settings, endpoint)
            _, status, new_index, body = await query
            wakeups.append(time.perf_counter() - changed)
            assert status == 200 and new_index == written > index
            assert endpoint.address in {e["Service"]["Address"] for e in body}
            index = new_index
    wakeups.sort()
    p50 = statistics.median(wakeups)
    p99 = wakeups[min(len(wakeups) - 1, round(0.99 * len(wakeups)))]
    with capsys.disabled():
        print(
            f"\nblocking-query wake-up after a put, {len(wakeups)} changes: "
            f"p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, max {wakeups[-1] * 1000:.1f} ms"
        )
    assert wakeups[-1] < 0.1, wakeups


async def test_a_blocking_query_without_a_change_answers_after_wait(lab):
    _, server, revision = lab
    taken, status, index, body = await blocking_get(server, "/v1/catalog/services", revision, "1s")
    assert status == 200 and index == revision and "web" in body
    assert 1.0 <= taken < 1.0 + 1 / 16 + 0.5  # wait, plus at most Consul's jitter (wait/16)
    # An index already passed answers at once.
    taken, status, index, _ = await blocking_get(server, "/v1/catalog/services", 1, "30s")
    assert status == 200 and index == revision and taken < 0.5


async def test_a_viewer_that_disconnects_mid_wait_leaves_nothing_behind(lab):
    _, server, revision = lab
    await fetch(server, "/v1/catalog/services")  # warm up: aiohttp's own first-request state
    await asyncio.sleep(0.1)
    before = {task for task in asyncio.all_tasks() if not task.done()}
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(
        f"GET /v1/health/service/web?index={revision}&wait=5m HTTP/1.1\r\n"
        f"Host: 127.0.0.1\r\n\r\n".encode()
    )
    await writer.drain()
    await eventually(lambda: server.waiting == 1, 5, "the query waiting")
    writer.close()
    await writer.wait_closed()
    await eventually(lambda: server.waiting == 0, 5, "the waiter gone with its viewer")

    def leftovers() -> set[asyncio.Task]:
        return {t for t in asyncio.all_tasks() if not t.done()} - before - {asyncio.current_task()}

    await eventually(lambda: not leftovers(), 5, "no task left behind")
    del reader


async def test_etcd_down_answers_from_the_last_known_catalog_and_says_so(own_etcd: EtcdCluster):
    settings = settings_for(own_etcd.endpoints, request_timeout_s=0.5)
    await write_lab(settings)
    server = await start_map(settings)
    try:
        own_etcd.members[0].stop()
        await eventually(lambda: server.lost_since is not None, 15, "the outage noticed")
        await asyncio.sleep(0.2)
        status, headers, entries = await fetch(server, "/v1/health/service/web?passing")
        assert status == 200
        assert sorted(e["Service"]["Address"] for e in entries) == [WEB2.address, WEB3.address]
        assert headers["X-Consul-KnownLeader"] == "false"
        assert int(headers["X-Consul-LastContact"]) >= 200  # ms since etcd was last reached
        assert headers["X-Lab-Etcd"] == "unreachable"
        assert float(headers["X-Lab-Stale-Seconds"]) >= 0.2
        _, _, lab_status = await fetch(server, "/v1/lab/status")
        assert lab_status["etcd_reachable"] is False and lab_status["stale_seconds"] >= 0.2
        # A blocking query still ends after its wait.
        taken, status, _, _ = await blocking_get(server, "/v1/catalog/nodes", 10**9, "300ms")
        assert status == 200 and 0.3 <= taken < 1.0
        own_etcd.members[0].start()
        await eventually(lambda: server.lost_since is None, 20, "etcd reachable again")
        _, headers, _ = await fetch(server, "/v1/catalog/services")
        assert headers["X-Consul-KnownLeader"] == "true"
    finally:
        await server.close()


async def test_closing_answers_the_waiting_queries_at_once(etcd_settings):
    revision = await write_lab(etcd_settings)
    server = await start_map(etcd_settings)
    query = asyncio.create_task(blocking_get(server, "/v1/catalog/services", revision, "5m"))
    try:
        await eventually(lambda: server.waiting == 1, 5, "the query waiting")
        started = time.perf_counter()
        await server.close()  # without the wake-up, aiohttp's shutdown waits a minute
        assert time.perf_counter() - started < 2
        _, status, index, _ = await asyncio.wait_for(query, 5)
        assert status == 200 and index == revision
    finally:
        query.cancel()
        await server.close()


async def test_a_query_on_one_service_sleeps_through_changes_of_another(lab):
    settings, server, _ = lab
    _, headers, _ = await fetch(server, "/v1/health/service/web")
    web_index = int(headers["X-Consul-Index"])
    query = asyncio.create_task(blocking_get(server, "/v1/health/service/web", web_index, "10s"))
    async with EtcdStore(settings) as store:
        await eventually(lambda: server.waiting == 1, 5, "the query waiting")
        other = schema.Endpoint(service="db", address="10.5.3.3", port=5432, node="host3")
        db_revision = await put_endpoint(store, settings, other)
        await eventually(lambda: server.catalog.revision >= db_revision, 5, "db's change in")
        await asyncio.sleep(0.2)
        assert not query.done() and server.waiting == 1  # db changed, web did not
        _, headers, _ = await fetch(server, "/v1/health/service/web")
        assert int(headers["X-Consul-Index"]) == web_index
        _, headers, _ = await fetch(server, "/v1/catalog/services")
        assert int(headers["X-Consul-Index"]) == db_revision  # the whole catalog's moved on
        newcomer = schema.Endpoint(service="web", address="10.5.3.7", port=80, node="host3")
        web_revision = await put_endpoint(store, settings, newcomer)
    _, status, index, body = await asyncio.wait_for(query, 5)
    assert status == 200 and index == web_revision
    assert all(e["Service"]["ModifyIndex"] == web_revision for e in body)

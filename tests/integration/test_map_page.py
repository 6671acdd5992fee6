"""The live map's model and event stream against a real etcd: hosts, changes, viewers, outages."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from discovery import flannel, schema
from discovery.settings import Settings
from discovery.store import EtcdStore
from labs.etcd_server import EtcdCluster
from labs.testing.waiting import eventually
from mapserver.server import MapServer
from tests.fixtures.etcd import settings_for
from tests.integration.map_support import (
    HOST2,
    HOST3,
    LEASE2,
    LEASE3,
    WEB3,
    endpoint_key,
    put_endpoint,
    put_lease,
    put_node,
    start_map,
    write_lab,
)

pytestmark = pytest.mark.etcd


async def write_hosts(settings: Settings) -> None:
    async with EtcdStore(settings) as store:
        for node, lease in ((HOST2, LEASE2), (HOST3, LEASE3)):
            await put_node(store, settings, node)
            await put_lease(store, settings, lease)


@pytest.fixture
async def hosts(etcd_settings: Settings) -> AsyncIterator[tuple[Settings, MapServer]]:
    await write_hosts(etcd_settings)
    server = await start_map(etcd_settings)
    try:
        await eventually(lambda: server.leases_loaded, 5, "the leases loaded")
        yield etcd_settings, server
    finally:
        await server.close()


async def events(response: aiohttp.ClientResponse) -> AsyncIterator[dict[str, Any]]:
    """The data of each server-sent event (keep-alive comments skipped)."""
    async for line in response.content:
        if line.startswith(b"data: "):
            yield json.loads(line[6:])


async def next_event(stream: AsyncIterator[dict[str, Any]], timeout_s: float) -> dict[str, Any]:
    return await asyncio.wait_for(anext(stream), timeout_s)


async def test_the_state_shows_hosts_with_leases_and_the_page_is_served(hosts):
    _, server = hosts
    async with aiohttp.ClientSession() as session:
        async with session.get(server.url + "/map/state") as response:
            state = await response.json()
        async with session.get(server.url + "/") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/html")
            assert "live map" in await response.text()
    assert state["etcd"] == "reachable" and state["since"] is None
    by_name = {host["name"]: host for host in state["hosts"]}
    assert set(by_name) == {"host2", "host3"}
    assert by_name["host3"]["address"] == HOST3.address
    assert by_name["host3"]["lease"]["vtep_mac"] == LEASE3.vtep_mac
    # No network agent runs here, so none reports: the tunnel is not taken on faith.
    (tunnel,) = state["tunnels"]
    assert (tunnel["a"], tunnel["b"], tunnel["state"]) == ("host2", "host3", "unobserved")


async def test_changes_reach_the_stream_with_their_timeline_events(hosts):
    settings, server = hosts
    async with (
        aiohttp.ClientSession() as session,
        session.get(server.url + "/map/events") as response,
        EtcdStore(settings) as store,
    ):
        assert response.headers["Content-Type"] == "text/event-stream"
        stream = events(response)
        first = await next_event(stream, 5)
        assert first["new"] == [] and {h["name"] for h in first["model"]["hosts"]} == {
            "host2",
            "host3",
        }
        assert server.viewers == 1
        started = time.perf_counter()
        await put_endpoint(store, settings, WEB3)
        message = await next_event(stream, 1)
        assert time.perf_counter() - started < 1
        assert [(e["kind"], e["subject"]) for e in message["new"]] == [("registered", "web")]
        host3 = next(h for h in message["model"]["hosts"] if h["name"] == "host3")
        assert [c["address"] for c in host3["containers"]] == [WEB3.address]
        assert message["model"]["services"] == [
            {"name": "web", "answer": [WEB3.address], "endpoints": 1}
        ]
        sick = schema.Endpoint(**{**WEB3.__dict__, "health": "unhealthy"})
        await put_endpoint(store, settings, sick)
        message = await next_event(stream, 1)
        assert [e["kind"] for e in message["new"]] == ["health"]
        assert message["model"]["services"][0]["answer"] == []
        await store.delete(endpoint_key(settings, WEB3))
        message = await next_event(stream, 1)
        assert [e["kind"] for e in message["new"]] == ["deregistered"]
        await store.delete(flannel.subnet_key(settings.network_prefix, LEASE3.subnet))
        message = await next_event(stream, 1)
        assert [(e["kind"], e["subject"]) for e in message["new"]] == [
            ("lease-expired", "10.5.3.0/24")
        ]
        assert [e["kind"] for e in message["model"]["timeline"]] == [
            "registered",
            "health",
            "deregistered",
            "lease-expired",
        ]


async def test_a_viewer_that_disconnects_leaves_no_queue_and_no_task(hosts):
    _, server = hosts
    async with aiohttp.ClientSession() as session, session.get(server.url + "/") as response:
        await response.read()  # warm up: aiohttp's own first-request state
    await asyncio.sleep(0.1)
    before = {task for task in asyncio.all_tasks() if not task.done()}
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /map/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    await writer.drain()
    await asyncio.wait_for(reader.readuntil(b"data: "), 5)
    assert server.viewers == 1
    writer.close()
    await writer.wait_closed()
    await eventually(lambda: server.viewers == 0, 5, "the viewer's queue dropped")

    def leftovers() -> set[asyncio.Task]:
        return {t for t in asyncio.all_tasks() if not t.done()} - before - {asyncio.current_task()}

    await eventually(lambda: not leftovers(), 5, "no task left behind")


async def test_closing_ends_every_stream_at_once(etcd_settings):
    await write_hosts(etcd_settings)
    server = await start_map(etcd_settings)
    async with aiohttp.ClientSession() as session:
        response = await session.get(server.url + "/map/events")
        await next_event(events(response), 5)
        started = time.perf_counter()
        await server.close()
        assert time.perf_counter() - started < 2
        assert server.viewers == 0
        response.close()


async def test_etcd_down_the_model_says_so_and_keeps_the_last_state(own_etcd: EtcdCluster):
    settings = settings_for(own_etcd.endpoints, request_timeout_s=0.5)
    await write_hosts(settings)
    await write_lab(settings)
    server = await start_map(settings)
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(server.url + "/map/events") as response,
        ):
            stream = events(response)
            assert (await next_event(stream, 5))["model"]["etcd"] == "reachable"
            own_etcd.members[0].stop()
            message = await next_event(stream, 15)  # the outage is pushed, not polled for
            assert message["model"]["etcd"] == "unreachable"
            assert {h["name"] for h in message["model"]["hosts"]} == {"host2", "host3"}
            await asyncio.sleep(0.3)
            async with session.get(server.url + "/map/state") as state_response:
                state = await state_response.json()
            assert state["etcd"] == "unreachable" and state["since"] >= 0.3
            assert {s["name"] for s in state["services"]} == {"db", "web"}
            own_etcd.members[0].start()
            deadline = time.monotonic() + 20
            while message["model"]["etcd"] != "reachable":  # each watch resumes on its own
                message = await next_event(stream, deadline - time.monotonic())
            assert message["model"]["since"] is None
    finally:
        await server.close()

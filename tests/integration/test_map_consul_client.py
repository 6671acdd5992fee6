"""A real Consul client library (py-consul, consul.aio) reads the map server unchanged.

The wire-format proof that runs everywhere: the same calls a program written
for Consul makes (catalog services, health with ?passing, catalog nodes, a
blocking query with index and wait), against the map server on a real etcd.
"""

from __future__ import annotations

import asyncio
import time

import consul
import consul.aio
import pytest

from discovery import schema
from discovery.settings import Settings
from discovery.store import EtcdStore
from tests.integration.map_support import WEB2, WEB3, put_endpoint, start_map, write_lab

pytestmark = [
    pytest.mark.etcd,
    # py-consul's own aiohttp call, not ours
    pytest.mark.filterwarnings("ignore:ssl_context is deprecated:DeprecationWarning"),
]


async def test_py_consul_lists_blocks_and_sees_a_change(etcd_settings: Settings) -> None:
    settings = etcd_settings
    revision = await write_lab(settings)
    server = await start_map(settings)
    client = consul.aio.Consul(host="127.0.0.1", port=server.port)
    try:
        index, services = await client.catalog.services()
        assert services == {"db": ["sql"], "web": ["http"]}
        assert int(index) == revision

        index, entries = await client.health.service("web", passing=True)
        assert sorted(e["Service"]["Address"] for e in entries) == [WEB2.address, WEB3.address]

        _, nodes = await client.catalog.nodes()
        assert [n["Node"] for n in nodes] == ["host2", "host3"]

        _, rows = await client.catalog.service("web", tag="http")
        assert {r["ServiceAddress"] for r in rows} == {WEB2.address, WEB3.address}

        # A blocking query, as consul-template or Prometheus hold one, woken by a registration.
        waiting = asyncio.create_task(
            client.health.service("web", index=index, wait="20s", passing=True)
        )
        await asyncio.sleep(0.2)
        assert not waiting.done() and server.waiting == 1
        newcomer = schema.Endpoint(service="web", address="10.5.2.7", port=8080, node="host2")
        async with EtcdStore(settings) as store:
            written = await put_endpoint(store, settings, newcomer)
        started = time.perf_counter()
        new_index, entries = await asyncio.wait_for(waiting, 5)
        assert time.perf_counter() - started < 0.1
        assert int(new_index) == written
        assert newcomer.address in {e["Service"]["Address"] for e in entries}

        # Bad input surfaces as the client's own errors.
        with pytest.raises(consul.ConsulException, match="Invalid wait"):
            await client.catalog.services(index=new_index, wait="10")
        assert (await client.catalog.service("nope"))[1] is None  # 404: the client's "none"
    finally:
        await client.close()
        await server.close()

"""The catalog, fed by a real etcd watch, stays equal to etcd."""

import asyncio
import logging
import random

import pytest

from discovery import schema
from discovery.catalog import Catalog, follow_catalog
from discovery.store import EtcdStore
from labs.etcd_server import etcdctl
from labs.testing.waiting import eventually

pytestmark = pytest.mark.etcd


def endpoint(service, n):
    return schema.Endpoint(service=service, address=f"10.5.{n // 250}.{n % 250 + 1}", port=80)


async def test_catalog_stays_correct_through_1000_register_and_deregister(etcd_settings):
    settings = etcd_settings
    catalog = Catalog(settings.prefix, settings.domain)
    rng = random.Random(7)
    async with EtcdStore(settings) as store:
        feeder = asyncio.create_task(follow_catalog(catalog, store.follow_prefix(catalog.root)))
        try:
            live: dict[str, schema.Endpoint] = {}
            last_revision = 0
            for n in range(1000):
                if live and rng.random() < 0.4:
                    key = rng.choice(sorted(live))
                    del live[key]
                    await store.delete(key)
                else:
                    item = endpoint(rng.choice(["web", "db", "api", "cache"]), n)
                    key = schema.endpoint_key(
                        settings.prefix, settings.domain, item.service, item.endpoint_id
                    )
                    live[key] = item
                    last_revision = await store.put(key, schema.encode_endpoint(item))
            await eventually(
                lambda: catalog.revision >= last_revision, 10, "the catalog at the last write"
            )
            await asyncio.sleep(0.2)  # any trailing deletes
            items, _ = await store.get_prefix(catalog.root)
            assert len(catalog) == len(live) == len(items)
            assert sorted(catalog.all_endpoints(), key=lambda e: e.address) == sorted(
                live.values(), key=lambda e: e.address
            )
            for service in catalog.services():
                assert {e.service for e in catalog.endpoints(service)} == {service}
        finally:
            feeder.cancel()


async def test_garbage_written_with_etcdctl_is_skipped_with_a_log_line(
    etcd_server, etcd_settings, caplog
):
    settings = etcd_settings
    catalog = Catalog(settings.prefix, settings.domain)
    good = endpoint("web", 1)
    good_key = schema.endpoint_key(settings.prefix, settings.domain, "web", good.endpoint_id)
    bad_key = schema.endpoint_key(settings.prefix, settings.domain, "web", "garbage")
    async with EtcdStore(settings) as store:
        await store.put(good_key, schema.encode_endpoint(good))
        caplog.set_level(logging.WARNING, logger="discovery.catalog")
        feeder = asyncio.create_task(follow_catalog(catalog, store.follow_prefix(catalog.root)))
        try:
            await eventually(lambda: len(catalog) == 1, 10, "the good record")
            etcdctl(etcd_server.endpoints, "put", bad_key, '{"host": "10.0.0.1", "port": "x"')
            await eventually(lambda: bad_key in catalog.skipped, 10, "the garbage skipped")
            assert "not JSON" in catalog.skipped[bad_key]
            assert catalog.endpoints("web") == [good]
            assert any(bad_key in r.getMessage() for r in caplog.records)
            # Fixing the value makes it count; deleting it clears the complaint.
            fixed = schema.Endpoint(service="web", address="10.0.0.1", port=81)
            etcdctl(etcd_server.endpoints, "put", bad_key, schema.encode_endpoint(fixed).decode())
            await eventually(lambda: len(catalog) == 2, 10, "the fixed record")
            assert bad_key not in catalog.skipped
        finally:
            feeder.cancel()


def test_catalog_tells_listeners_which_services_changed():
    catalog = Catalog("/skydns", "lab")
    heard = []
    catalog.subscribe(heard.append)
    web = endpoint("web", 1)
    key = schema.endpoint_key("/skydns", "lab", "web", web.endpoint_id)
    from discovery.store import Change

    catalog.apply(Change(key, schema.encode_endpoint(web), 5))
    catalog.apply(Change(key, None, 6))
    assert [(sorted(c.services), c.nodes) for c in heard] == [(["web"], False), (["web"], False)]
    assert catalog.revision == 6 and len(catalog) == 0

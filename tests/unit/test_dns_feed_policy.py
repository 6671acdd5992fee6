"""The DNS server's catalog feed against MemoryStore, in virtual time, answering without sockets.

The service is started with no listen address: queries go straight to its
query handler, so what is checked is what a client would be answered.
tests/integration/test_dns_server.py and test_dns_propagation.py do the
same over real sockets and a real etcd.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from dnslib import QTYPE, RCODE, DNSRecord

from discovery.memory_store import MemoryStore
from discovery.schema import Endpoint, encode_endpoint, endpoint_key
from discovery.settings import Settings
from dnsserver.service import DnsOptions, DnsService
from tests.fixtures.virtual_clock import eventually, in_virtual_time

SETTINGS = Settings(prefix="/policy/skydns")


async def register(store: MemoryStore, service: str, address: str) -> str:
    endpoint = Endpoint(service=service, address=address, port=80)
    key = endpoint_key(SETTINGS.prefix, SETTINGS.domain, service, endpoint.endpoint_id)
    await store.put(key, encode_endpoint(endpoint))
    return key


def ask(service: DnsService, name: str) -> tuple[int, set[str]]:
    """(rcode, A addresses) of the answer to ``name``."""
    query = DNSRecord.question(f"{name}.service.{SETTINGS.domain}", "A")
    reply = service.handler.respond(bytes(query.pack()), tcp=False)
    assert isinstance(reply, bytes)
    parsed = DNSRecord.parse(reply)
    return parsed.header.rcode, {str(rr.rdata) for rr in parsed.rr if rr.rtype == QTYPE.A}


@asynccontextmanager
async def dns_on(store: MemoryStore) -> AsyncIterator[DnsService]:
    async with DnsService(SETTINGS, DnsOptions(listen=()), store) as service:
        yield service
    assert not store.closed, "the store is its owner's to close"


@in_virtual_time
async def test_an_outage_serves_the_last_known_catalog_then_catches_up() -> None:
    store = MemoryStore()
    other = store.new_client()
    first = await register(other, "web", "10.5.1.1")
    await register(other, "web", "10.5.2.1")
    async with dns_on(store) as dns:
        await dns.wait_loaded()
        assert ask(dns, "web") == (RCODE.NOERROR, {"10.5.1.1", "10.5.2.1"})
        store.go_down()
        await eventually(lambda: not dns.catalog.connected)
        await other.delete(first)
        await register(other, "web", "10.5.3.1")
        await register(other, "api", "10.5.3.2")
        # Cut off: every answer still comes, from what was known.
        assert ask(dns, "web") == (RCODE.NOERROR, {"10.5.1.1", "10.5.2.1"})
        assert ask(dns, "api")[0] == RCODE.NXDOMAIN
        store.come_back()
        await eventually(lambda: ask(dns, "web") == (RCODE.NOERROR, {"10.5.2.1", "10.5.3.1"}))
        assert ask(dns, "api") == (RCODE.NOERROR, {"10.5.3.2"})
        assert dns.catalog.connected


@in_virtual_time
async def test_compaction_during_an_outage_is_answered_by_a_relist() -> None:
    store = MemoryStore()
    other = store.new_client()
    web = await register(other, "web", "10.5.1.1")
    async with dns_on(store) as dns:
        await dns.wait_loaded()
        assert ask(dns, "web") == (RCODE.NOERROR, {"10.5.1.1"})  # now cached
        store.go_down()
        await eventually(lambda: not dns.catalog.connected)
        await other.delete(web)
        await register(other, "db", "10.5.1.2")
        latest = await register(other, "db", "10.5.1.3")
        kv = await other.get(latest)
        assert kv is not None
        await other.compact(kv.mod_revision)  # the deletion of web is no longer in history
        store.come_back()
        await eventually(lambda: dns.catalog.connected and dns.catalog.revision >= kv.mod_revision)
        assert ask(dns, "web")[0] == RCODE.NXDOMAIN, "the cached answer went with the re-list"
        assert ask(dns, "db") == (RCODE.NOERROR, {"10.5.1.2", "10.5.1.3"})


@in_virtual_time
async def test_lab_names_are_servfail_never_nxdomain_until_the_first_listing() -> None:
    store = MemoryStore()
    await register(store.new_client(), "web", "10.5.1.1")
    store.go_down()
    async with dns_on(store) as dns:
        for _ in range(3):  # and a while later, the feed retrying meanwhile
            assert ask(dns, "web")[0] == RCODE.SERVFAIL
            assert ask(dns, "nosuch")[0] == RCODE.SERVFAIL
            await asyncio.sleep(10)
        store.come_back()
        await dns.wait_loaded()
        assert ask(dns, "web") == (RCODE.NOERROR, {"10.5.1.1"})
        assert ask(dns, "nosuch")[0] == RCODE.NXDOMAIN

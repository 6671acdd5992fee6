"""The running DNS server, fed by a real etcd, asked by the real clients dig and kdig."""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from collections.abc import AsyncIterator

import pytest
from dnslib import RCODE, DNSRecord

from discovery import schema
from discovery.settings import Settings
from discovery.store import EtcdStore
from dnsserver.service import DnsOptions, DnsService
from labs.etcd_server import EtcdCluster
from labs.testing.waiting import eventually
from tests.fixtures.etcd import settings_for
from tests.integration.dns_clients import dig, exchange, kdig, run_client
from tests.integration.metrics_support import Scraped, scrape

pytestmark = pytest.mark.etcd

CLIENTS = ["dig", "kdig"]
IDLE_TIMEOUT_S = 0.5
MANY = 60  # endpoints of "many": about 1 KB of A records, more than 512 bytes
FUZZ_PACKETS = 500
FUZZ_TCP_CONNECTIONS = 20
SEED_QUESTIONS = [("web.service.lab", "A"), ("_http._tcp.web.service.lab", "SRV"), ("lab", "SOA")]


def endpoint(service: str, host: str, port: int = 80, **fields: object) -> schema.Endpoint:
    return schema.Endpoint(service=service, address=host, port=port, **fields)  # type: ignore[arg-type]


ENDPOINTS = [
    endpoint("web", "10.5.1.7", port_name="http", tags=("blue",), container_id="a" * 12),
    endpoint("web", "10.5.2.3", port_name="http", container_id="b" * 12),
    endpoint("web", "10.5.2.4", port_name="http", tags=("blue",), container_id="c" * 12),
    endpoint("web", "10.5.2.9", health="unhealthy", container_id="e" * 12),
    endpoint("web", "fd00::7", port_name="http", container_id="d" * 12),
    endpoint("db", "10.5.3.4", 5432, priority=1, weight=5),
] + [endpoint("many", f"10.6.0.{n + 1}") for n in range(MANY)]
NODES = [schema.Node(node="host1", address="192.168.50.11", subnet="10.5.1.0/24")]


async def write_records(settings: Settings, endpoints: list[schema.Endpoint]) -> None:
    async with EtcdStore(settings) as store:
        for item in endpoints:
            key = schema.endpoint_key(
                settings.prefix, settings.domain, item.service, item.endpoint_id
            )
            await store.put(key, schema.encode_endpoint(item))
        for node in NODES:
            await store.put(
                schema.node_key(settings.prefix, settings.domain, node.node),
                schema.encode_node(node),
            )


async def start_dns(settings: Settings, **options: object) -> DnsService:
    values: dict[str, object] = {
        "listen": (("127.0.0.1", 0),),
        "idle_timeout_s": IDLE_TIMEOUT_S,
        "metrics": ("127.0.0.1", 0),
    }
    values.update(options)
    service = DnsService(settings, DnsOptions(**values))  # type: ignore[arg-type]
    await service.start()
    await service.wait_loaded()
    return service


@pytest.fixture
async def lab_dns(etcd_settings: Settings) -> AsyncIterator[DnsService]:
    await write_records(etcd_settings, ENDPOINTS)
    service = await start_dns(etcd_settings, max_tcp_connections=3)
    try:
        yield service
    finally:
        await service.close()


def port_of(service: DnsService) -> int:
    return service.addresses[0][1]


# ------------------------------------------------------------------ answers


@pytest.mark.parametrize("client", CLIENTS)
async def test_service_a_and_aaaa(lab_dns: DnsService, client: str) -> None:
    port = port_of(lab_dns)
    a = await run_client(client, port, "web.service.lab", "A")
    assert a.status == "NOERROR"
    assert "aa" in a.flags
    assert a.rdata() == ["10.5.1.7", "10.5.2.3", "10.5.2.4"]  # not the unhealthy one
    assert {r[1] for r in a.records()} == {"5"}  # the TTL from settings
    aaaa = await run_client(client, port, "web.service.lab", "AAAA")
    assert aaaa.rdata() == ["fd00::7"]


@pytest.mark.parametrize("client", CLIENTS)
async def test_tag_filters(lab_dns: DnsService, client: str) -> None:
    reply = await run_client(client, port_of(lab_dns), "blue.web.service.lab")
    assert reply.rdata() == ["10.5.1.7", "10.5.2.4"]
    missing = await run_client(client, port_of(lab_dns), "red.web.service.lab")
    assert missing.status == "NXDOMAIN"


async def test_answers_are_shuffled_for_round_robin(lab_dns: DnsService) -> None:
    firsts = set()
    for _ in range(8):
        reply = await dig(port_of(lab_dns), "web.service.lab")
        assert len(reply.records()) == 3
        firsts.add(reply.records()[0][4])
    assert len(firsts) > 1


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize(
    ("name", "targets"),
    [
        ("_web._tcp.service.lab", 4),  # RFC 2782 style
        ("_http._tcp.web.service.lab", 4),  # port-name style
        ("_db._tcp.service.lab", 1),
    ],
)
async def test_srv_with_target_addresses_in_the_additional_section(
    lab_dns: DnsService, client: str, name: str, targets: int
) -> None:
    reply = await run_client(client, port_of(lab_dns), name, "SRV")
    assert reply.status == "NOERROR"
    srv = reply.records()
    assert len(srv) == targets
    additional = {r[0]: r[4] for r in reply.records("ADDITIONAL") if r[3] in ("A", "AAAA")}
    for record in srv:
        target = record[7]
        assert target.endswith(".service.lab.")
        assert target in additional, f"no address for {target} in {reply.text}"
    if name == "_db._tcp.service.lab":
        assert srv[0][4:7] == ["1", "5", "5432"]
        assert list(additional.values()) == ["10.5.3.4"]


@pytest.mark.parametrize("client", CLIENTS)
async def test_node_names_and_ptr(lab_dns: DnsService, client: str) -> None:
    port = port_of(lab_dns)
    node = await run_client(client, port, "host1.node.lab")
    assert node.rdata() == ["192.168.50.11"]
    ptr = await run_client(client, port, "-x", "10.5.1.7")
    assert ptr.rdata() == ["web.service.lab."]
    node_ptr = await run_client(client, port, "-x", "192.168.50.11")
    assert node_ptr.rdata() == ["host1.node.lab."]


@pytest.mark.parametrize("client", CLIENTS)
async def test_soa_and_ns_at_the_apex(lab_dns: DnsService, client: str) -> None:
    port = port_of(lab_dns)
    soa = await run_client(client, port, "lab", "SOA")
    assert soa.status == "NOERROR"
    [record] = soa.records()
    assert record[3] == "SOA" and record[4:6] == ["ns.lab.", "hostmaster.lab."]
    ns = await run_client(client, port, "lab", "NS")
    assert ns.rdata() == ["ns.lab."]
    assert ns.rdata("ADDITIONAL", "A") == ["127.0.0.1"]


@pytest.mark.parametrize("client", CLIENTS)
async def test_nxdomain_and_nodata_both_carry_the_soa(lab_dns: DnsService, client: str) -> None:
    port = port_of(lab_dns)
    nxdomain = await run_client(client, port, "nosuch.service.lab", "A")
    nodata = await run_client(client, port, "db.service.lab", "AAAA")
    assert nxdomain.status == "NXDOMAIN"
    assert nodata.status == "NOERROR"
    for reply in (nxdomain, nodata):
        assert reply.records() == []
        [soa] = reply.records("AUTHORITY")
        assert soa[0] == "lab." and soa[3] == "SOA"
        assert soa[1] == "5" and soa[-1] == "5"  # negative TTL: SOA TTL and minimum


async def test_0x20_case_is_echoed(lab_dns: DnsService) -> None:
    reply = await dig(port_of(lab_dns), "WeB.sErViCe.LaB", "A")
    assert reply.question == ";WeB.sErViCe.LaB." or reply.question == "WeB.sErViCe.LaB."
    assert {r[0] for r in reply.records()} == {"WeB.sErViCe.LaB."}
    # And byte for byte, on a raw socket, for the fast path and the first answer alike.
    for name in ("mAnY.SeRvIcE.lAb", "mAnY.SeRvIcE.lAb", "HOST1.node.LAB"):
        query = DNSRecord.question(name).pack()
        data = await asyncio.to_thread(exchange, port_of(lab_dns), query, timeout_s=2)
        assert data is not None
        assert data[12 : 12 + len(name) + 2] == query[12 : 12 + len(name) + 2]


@pytest.mark.parametrize("client", CLIENTS)
async def test_any_gets_a_minimal_answer(lab_dns: DnsService, client: str) -> None:
    reply = await run_client(client, port_of(lab_dns), "web.service.lab", "ANY")
    assert [r[3] for r in reply.records()] == ["HINFO"]


# ------------------------------------------------------------------ EDNS, TC and TCP


@pytest.mark.parametrize("client", CLIENTS)
async def test_truncated_over_udp_whole_over_tcp(lab_dns: DnsService, client: str) -> None:
    port = port_of(lab_dns)
    truncated = await run_client(client, port, "many.service.lab", "+bufsize=512", "+ignore")
    assert "tc" in truncated.flags
    assert truncated.records() == []
    retried = await run_client(client, port, "many.service.lab", "+bufsize=512")  # retries on TCP
    assert len(retried.records()) == MANY
    tcp = await run_client(client, port, "many.service.lab", "+tcp")
    assert "tc" not in tcp.flags
    assert len(tcp.records()) == MANY
    no_edns = await run_client(client, port, "many.service.lab", "+noedns", "+ignore")
    assert "tc" in no_edns.flags


@pytest.mark.parametrize("client", CLIENTS)
async def test_the_clients_udp_size_is_honoured(lab_dns: DnsService, client: str) -> None:
    reply = await run_client(
        client, port_of(lab_dns), "many.service.lab", "+bufsize=4096", "+ignore"
    )
    assert "tc" not in reply.flags
    assert len(reply.records()) == MANY


# ------------------------------------------------------------------ forwarding


@pytest.fixture
async def upstream(etcd_server: EtcdCluster) -> AsyncIterator[DnsService]:
    """A second resolver on loopback: another instance of this server, for 'example'."""
    settings = settings_for(etcd_server.endpoints, domain="example")
    await write_records(settings, [endpoint("www", "10.8.0.1")])
    service = await start_dns(settings, metrics=None)
    try:
        yield service
    finally:
        await service.close()


@pytest.mark.parametrize("client", CLIENTS)
async def test_other_names_are_forwarded_to_the_upstream(
    etcd_settings: Settings, upstream: DnsService, client: str
) -> None:
    await write_records(etcd_settings, ENDPOINTS[:1])
    service = await start_dns(etcd_settings, upstreams=(("127.0.0.1", port_of(upstream)),))
    try:
        port = port_of(service)
        for extra in ((), ("+tcp",)):
            reply = await run_client(client, port, "WwW.service.example", *extra)
            assert reply.status == "NOERROR"
            assert reply.rdata() == ["10.8.0.1"]
            if client == "dig":  # kdig prints names in lower case
                assert {r[0] for r in reply.records()} == {"WwW.service.example."}
        missing = await run_client(client, port, "nosuch.service.example")
        assert missing.status == "NXDOMAIN"
        own = await run_client(client, port, "web.service.lab")
        assert own.rdata() == ["10.5.1.7"]
        assert service.stats.forwarded >= 3
    finally:
        await service.close()


async def test_an_upstream_that_does_not_answer_gives_servfail(etcd_settings: Settings) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))  # takes queries, never answers
        upstreams = (("127.0.0.1", silent.getsockname()[1]),)
        service = await start_dns(etcd_settings, upstreams=upstreams, forward_timeout_s=0.3)
        try:
            started = time.monotonic()
            reply = await dig(port_of(service), "www.example.com")
            assert reply.status == "SERVFAIL"
            assert time.monotonic() - started < 2.0  # forward timeout 0.3 s, dig waits 2 s
            assert service.stats.forward_failures == 1
        finally:
            await service.close()


async def test_without_upstreams_other_names_are_refused(lab_dns: DnsService) -> None:
    reply = await kdig(port_of(lab_dns), "www.example.com")
    assert reply.status == "REFUSED"


# ------------------------------------------------------------------ bad input on the wire


async def test_bad_packets_over_udp_then_a_good_query(lab_dns: DnsService) -> None:
    port = port_of(lab_dns)
    bad = {
        b"\x12\x34\x01\x00\x00\x01" + bytes(6) + b"\x03web": RCODE.FORMERR,
        b"\x12\x34\x01\x00\x00\x01" + bytes(6) + b"\xc0\x0c\x00\x01\x00\x01": RCODE.FORMERR,
        b"\x12\x34\x01\x00\xff\xff\xff\xff\xff\xff\xff\xff": RCODE.FORMERR,
        b"\x12\x34\x28\x00\x00\x01" + bytes(6) + b"\x00\x00\x06\x00\x01": RCODE.NOTIMP,
    }
    for data, rcode in bad.items():
        reply = await asyncio.to_thread(exchange, port, data)
        assert reply is not None
        assert DNSRecord.parse(reply).header.rcode == rcode
    for silent in (b"\x12", b"\x12\x34\x81\x80" + bytes(8)):
        assert await asyncio.to_thread(exchange, port, silent, timeout_s=0.2) is None
    good = await dig(port, "web.service.lab")
    assert good.rdata() == ["10.5.1.7", "10.5.2.3", "10.5.2.4"]
    assert lab_dns.stats.handler_errors == 0


async def test_an_idle_tcp_client_is_dropped_and_frees_its_slot(lab_dns: DnsService) -> None:
    port = port_of(lab_dns)
    clients = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]  # the limit
    await eventually(lambda: lab_dns.server.tcp_connections == 3, 2, "3 connections")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)  # one too many
    assert await asyncio.wait_for(reader.read(), 2) == b""  # closed at once
    writer.close()
    started = time.monotonic()
    for reader, writer in clients:
        assert await asyncio.wait_for(reader.read(), IDLE_TIMEOUT_S + 2) == b""
        writer.close()
    assert time.monotonic() - started < IDLE_TIMEOUT_S + 1.5
    await eventually(lambda: lab_dns.server.tcp_connections == 0, 2, "slots freed")
    reply = await dig(port, "web.service.lab", "+tcp")
    assert len(reply.records()) == 3


async def test_tcp_oversize_and_short_lengths_close_the_connection(lab_dns: DnsService) -> None:
    port = port_of(lab_dns)
    for prefix in (b"\xff\xff", b"\x00\x05hello", b"\x00\x00"):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(prefix)
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 2) == b""
        writer.close()
    # A declared length never delivered: dropped after the idle timeout.
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"\x01\x00\x12\x34")
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), IDLE_TIMEOUT_S + 2) == b""
    writer.close()
    # Two queries pipelined on one connection are both answered.
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for _ in (1, 2):
        query = DNSRecord.question("web.service.lab").pack()
        writer.write(len(query).to_bytes(2, "big") + query)
    await writer.drain()
    for _ in (1, 2):
        length = int.from_bytes(await asyncio.wait_for(reader.readexactly(2), 2), "big")
        reply = DNSRecord.parse(await reader.readexactly(length))
        assert len(reply.rr) == 3
    writer.close()


# ------------------------------------------------------------------ etcd and metrics


async def metrics_of(service: DnsService) -> Scraped:
    return await scrape(f"http://127.0.0.1:{service.metrics_port}/metrics")


async def test_metrics_endpoint(lab_dns: DnsService) -> None:
    await dig(port_of(lab_dns), "web.service.lab")
    figures = await metrics_of(lab_dns)
    assert figures["discovery_dns_catalog_connected"] == 1
    assert figures["discovery_dns_etcd_unreachable"] == 0
    assert figures["discovery_dns_queries_total"] >= 1
    assert figures["discovery_dns_catalog_endpoints"] == len(ENDPOINTS)
    assert figures.types["discovery_dns_queries"] == "counter"
    assert figures.types["discovery_dns_catalog_endpoints"] == "gauge"


async def test_metrics_count_exactly_the_queries_asked(lab_dns: DnsService) -> None:
    port, asked = port_of(lab_dns), 7
    before = await metrics_of(lab_dns)
    for _ in range(asked):
        assert (await dig(port, "web.service.lab")).status == "NOERROR"
    assert (await dig(port, "nothing.service.lab")).status == "NXDOMAIN"
    after = await metrics_of(lab_dns)
    assert after["discovery_dns_queries_total"] - before["discovery_dns_queries_total"] == asked + 1
    # The first web query packs the answer into the cache; the other six are served from it.
    hits = after["discovery_dns_cache_hits_total"] - before["discovery_dns_cache_hits_total"]
    assert hits == asked - 1
    assert after["discovery_dns_uptime_seconds"] >= before["discovery_dns_uptime_seconds"]


async def test_etcd_outage_keeps_answering_then_catches_up(
    own_etcd: EtcdCluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    settings = settings_for(own_etcd.endpoints, request_timeout_s=0.5)
    await write_records(settings, ENDPOINTS[:2])
    service = await start_dns(settings)
    try:
        port = port_of(service)
        assert (await dig(port, "web.service.lab")).rdata() == ["10.5.1.7", "10.5.2.3"]
        own_etcd.members[0].stop()
        await eventually(lambda: not service.catalog.connected, 10, "outage noticed")
        figures = await metrics_of(service)
        assert figures["discovery_dns_etcd_unreachable"] == 1
        assert figures["discovery_dns_etcd_outages_total"] == 1
        assert any("serving the last known catalog" in r.getMessage() for r in caplog.records)
        during = await dig(port, "web.service.lab")  # from the last known catalog
        assert during.rdata() == ["10.5.1.7", "10.5.2.3"]
        own_etcd.members[0].start()
        await write_records(settings, [endpoint("web", "10.5.9.9")])

        async def answered() -> bool:
            return "10.5.9.9" in (await dig(port, "web.service.lab")).rdata()

        await eventually(answered, 15, "catch-up answer")
        assert service.catalog.connected
    finally:
        await service.close()


async def test_lab_names_are_servfail_until_etcd_is_reached(etcd_server: EtcdCluster) -> None:
    settings = settings_for(["http://127.0.0.1:9"], request_timeout_s=0.3)  # nobody there
    service = DnsService(settings, DnsOptions(listen=(("127.0.0.1", 0),)))
    await service.start()
    try:
        reply = await dig(port_of(service), "web.service.lab")
        assert reply.status == "SERVFAIL"  # not NXDOMAIN: the name may well exist
        assert not service.view.loaded
    finally:
        await service.close()


async def test_random_and_mutated_packets_on_the_wire_do_not_stop_the_server(
    lab_dns: DnsService,
) -> None:
    port = port_of(lab_dns)
    rng = random.Random(20)
    seeds = [DNSRecord.question(n, t).pack() for n, t in SEED_QUESTIONS]

    def packet() -> bytes:
        if rng.random() < 0.3:
            return rng.randbytes(rng.randrange(0, 300))
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randrange(1, 5)):
            at = rng.randrange(len(data))
            data[at] = rng.randrange(256)
        return bytes(data[: rng.randrange(len(data) + 1)] if rng.random() < 0.3 else data)

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        for _ in range(FUZZ_PACKETS):
            client.sendto(packet(), ("127.0.0.1", port))
    for _ in range(FUZZ_TCP_CONNECTIONS):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(3):
            data = packet()
            writer.write(len(data).to_bytes(2, "big") + data)
        await writer.drain()
        writer.close()
    reply = await dig(port, "_http._tcp.web.service.lab", "SRV")
    assert reply.status == "NOERROR" and len(reply.records()) == 4
    assert lab_dns.stats.handler_errors == 0
    assert lab_dns.stats.queries >= FUZZ_PACKETS
    await eventually(lambda: lab_dns.server.tcp_connections == 0, 3, "tcp slots freed")

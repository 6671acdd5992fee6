"""Shared by the map server's tests: records written to a real etcd, a server on a free port."""

from __future__ import annotations

import ipaddress

from discovery import flannel, schema, tunnels
from discovery.settings import Settings
from discovery.store import EtcdStore
from mapserver.server import MapOptions, MapServer

HOST2 = schema.Node(node="host2", address="192.168.57.12", subnet="10.5.2.0/24")
HOST3 = schema.Node(node="host3", address="192.168.57.13", subnet="10.5.3.0/24")
WEB2 = schema.Endpoint(
    service="web", address="10.5.2.2", port=80, node="host2", tags=("http",),
    container_id="a" * 64, container_name="web-1", port_name="http",
)  # fmt: skip
WEB3 = schema.Endpoint(
    service="web", address="10.5.3.2", port=80, node="host3", tags=("http",),
    container_id="b" * 64, container_name="web-2", port_name="http",
)  # fmt: skip
SICK = schema.Endpoint(service="web", address="10.5.3.9", port=80, node="host3", health="unhealthy")
DB = schema.Endpoint(service="db", address="10.5.2.3", port=5432, node="host2", tags=("sql",))


def endpoint_key(settings: Settings, endpoint: schema.Endpoint) -> str:
    return schema.endpoint_key(
        settings.prefix, settings.domain, endpoint.service, endpoint.endpoint_id
    )


async def put_endpoint(store: EtcdStore, settings: Settings, endpoint: schema.Endpoint) -> int:
    """Register one endpoint; the etcd revision of the write."""
    return await store.put(endpoint_key(settings, endpoint), schema.encode_endpoint(endpoint))


async def put_node(store: EtcdStore, settings: Settings, node: schema.Node) -> int:
    key = schema.node_key(settings.prefix, settings.domain, node.node)
    return await store.put(key, schema.encode_node(node))


LEASE2 = flannel.SubnetLease(
    ipaddress.IPv4Network(HOST2.subnet), ipaddress.IPv4Address(HOST2.address), "0a:00:00:00:00:02"
)
LEASE3 = flannel.SubnetLease(
    ipaddress.IPv4Network(HOST3.subnet), ipaddress.IPv4Address(HOST3.address), "0a:00:00:00:00:03"
)


async def put_lease(store: EtcdStore, settings: Settings, lease: flannel.SubnetLease) -> int:
    """A flannel subnet lease (under no etcd lease: it stays until deleted)."""
    key = flannel.subnet_key(settings.network_prefix, lease.subnet)
    return await store.put(key, flannel.encode_subnet_lease(lease))


async def put_report(
    store: EtcdStore,
    settings: Settings,
    own: flannel.SubnetLease,
    peers: tuple[flannel.SubnetLease, ...],
    without_fdb: bool = False,
) -> int:
    """The tunnel report a network agent holding ``own`` would publish when its
    kernel holds the entries for ``peers`` (all but the FDB ones: ``without_fdb``)."""
    report = tunnels.TunnelReport(
        subnet=own.subnet, public_ip=own.public_ip, vtep_mac=own.vtep_mac, device="flannel.1",
        routes={p.subnet: p.subnet.network_address for p in peers},
        neighbours={p.subnet.network_address: p.vtep_mac for p in peers},
        fdb={} if without_fdb else {p.vtep_mac: p.public_ip for p in peers},
    )  # fmt: skip
    key = tunnels.observed_key(settings.network_prefix, own.subnet)
    return await store.put(key, tunnels.encode_tunnel_report(report))


async def write_lab(settings: Settings, *, sick: bool = True) -> int:
    """Two hosts, web on both (and a sick one), db on host2; the last revision."""
    async with EtcdStore(settings) as store:
        for node in (HOST2, HOST3):
            await put_node(store, settings, node)
        revision = 0
        for endpoint in (WEB2, WEB3, DB, *((SICK,) if sick else ())):
            revision = await put_endpoint(store, settings, endpoint)
        return revision


async def start_map(settings: Settings) -> MapServer:
    server = MapServer(settings, MapOptions(listen=("127.0.0.1", 0)))
    await server.start()
    try:
        await server.wait_loaded()
    except BaseException:
        await server.close()
        raise
    return server

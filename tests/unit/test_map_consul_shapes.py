"""mapserver.consul: the catalog in Consul's JSON shapes, and ?index/?wait parsing (pure)."""

import uuid

import pytest

from discovery import schema
from discovery.catalog import Catalog
from discovery.store_api import Change, KeyValue, Snapshot
from mapserver.consul import (
    DEFAULT_WAIT_S,
    EXTERNAL_NODE,
    MAX_WAIT_S,
    BadRequest,
    Shapes,
    consul_index,
    error_body,
    flag,
    parse_blocking,
    parse_duration,
    select,
)

PREFIX, DOMAIN = "/skydns", "lab"


def key_of(endpoint: schema.Endpoint) -> str:
    return schema.endpoint_key(PREFIX, DOMAIN, endpoint.service, endpoint.endpoint_id)


def catalog_with(endpoints, nodes=(), revision=42) -> Catalog:
    catalog = Catalog(PREFIX, DOMAIN)
    items = {
        key_of(e): KeyValue(key_of(e), schema.encode_endpoint(e), revision, 1, 0) for e in endpoints
    }
    for node in nodes:
        key = schema.node_key(PREFIX, DOMAIN, node.node)
        items[key] = KeyValue(key, schema.encode_node(node), revision, 1, 0)
    catalog.apply(Snapshot(items, revision))
    return catalog


WEB2 = schema.Endpoint(
    service="web",
    address="10.5.2.2",
    port=80,
    node="host2",
    container_id="a" * 64,
    container_name="web-1",
    image="nginx:1.25",
    tags=("http", "v1"),
    port_name="http",
)
WEB3 = schema.Endpoint(
    service="web", address="10.5.3.2", port=80, node="host3", tags=("http",), health="unhealthy"
)
DB = schema.Endpoint(service="db", address="10.5.2.3", port=5432, node="host2", tags=("sql",))
MANUAL = schema.Endpoint(service="legacy", address="192.0.2.9", port=8080)
HOST2 = schema.Node(node="host2", address="192.168.57.12", subnet="10.5.2.0/24")
HOST3 = schema.Node(node="host3", address="192.168.57.13")


@pytest.fixture
def shapes() -> Shapes:
    return Shapes(catalog_with([WEB2, WEB3, DB, MANUAL], [HOST2, HOST3]), "lab")


def test_services_map_each_name_to_its_tags(shapes):
    assert shapes.services() == {"db": ["sql"], "legacy": [], "web": ["http", "v1"]}


def test_catalog_service_has_consuls_fields(shapes):
    rows = shapes.catalog_service(shapes.catalog.endpoints("web"))
    by_address = {row["ServiceAddress"]: row for row in rows}
    row = by_address["10.5.2.2"]
    assert set(row) >= {
        "ID", "Node", "Address", "Datacenter", "TaggedAddresses", "NodeMeta", "ServiceKind",
        "ServiceID", "ServiceName", "ServiceTags", "ServiceAddress", "ServiceMeta",
        "ServicePort", "ServiceWeights", "ServiceEnableTagOverride", "CreateIndex",
        "ModifyIndex",
    }  # fmt: skip
    assert row["Node"] == "host2"
    assert row["Address"] == "192.168.57.12"  # the host's underlay address, from its record
    assert row["Datacenter"] == "lab"
    assert row["TaggedAddresses"]["lan"] == "192.168.57.12"
    assert row["NodeMeta"] == {"subnet": "10.5.2.0/24"}
    assert row["ServiceID"] == WEB2.endpoint_id
    assert row["ServiceName"] == "web"
    assert row["ServiceTags"] == ["http", "v1"]
    assert row["ServicePort"] == 80
    assert row["ServiceMeta"]["container_name"] == "web-1"
    assert row["ServiceMeta"]["image"] == "nginx:1.25"
    assert row["ServiceWeights"] == {"Passing": WEB2.weight, "Warning": 1}
    assert row["CreateIndex"] == row["ModifyIndex"] == 42
    uuid.UUID(row["ID"])  # Consul's node IDs are UUIDs
    assert by_address["10.5.3.2"]["NodeMeta"] == {}


def test_an_endpoint_without_a_host_sits_on_the_external_node(shapes):
    (row,) = shapes.catalog_service(shapes.catalog.endpoints("legacy"))
    assert row["Node"] == EXTERNAL_NODE
    assert row["Address"] == "192.0.2.9"  # no node record: the endpoint's own address


def test_health_service_entries_carry_node_service_and_checks(shapes):
    entries = shapes.health_service(shapes.catalog.endpoints("web"))
    assert [set(entry) for entry in entries] == [{"Node", "Service", "Checks"}] * 2
    first = next(e for e in entries if e["Service"]["Address"] == "10.5.2.2")
    assert first["Node"]["Node"] == "host2" and first["Node"]["Address"] == "192.168.57.12"
    assert first["Node"]["Meta"] == {"subnet": "10.5.2.0/24"}
    service = first["Service"]
    assert service["Service"] == "web" and service["ID"] == WEB2.endpoint_id
    assert service["Port"] == 80 and service["Tags"] == ["http", "v1"]
    (check,) = first["Checks"]
    assert check["Status"] == "passing" and check["ServiceID"] == WEB2.endpoint_id
    sick = next(e for e in entries if e["Service"]["Address"] == "10.5.3.2")
    assert sick["Checks"][0]["Status"] == "critical"


@pytest.mark.parametrize(
    ("health", "status"),
    [("passing", "passing"), ("healthy", "passing"), ("starting", "warning"),
     ("unhealthy", "critical"), ("paused", "critical")],
)  # fmt: skip
def test_docker_health_maps_onto_consul_check_states(health, status):
    endpoint = schema.Endpoint(service="web", address="10.5.2.2", port=80, health=health)
    shapes = Shapes(catalog_with([endpoint]), "lab")
    (entry,) = shapes.health_service([endpoint])
    assert entry["Checks"][0]["Status"] == status
    assert (select([endpoint], passing=True) == [endpoint]) == (status == "passing")


def test_select_filters_by_every_tag_given(shapes):
    web = shapes.catalog.endpoints("web")
    assert select(web, tags=["http"]) == web
    assert select(web, tags=["http", "v1"]) == [WEB2]
    assert select(web, tags=["nope"]) == []
    assert select(web, passing=True) == [WEB2]


def test_nodes_lists_node_records_and_the_nodes_endpoints_name(shapes):
    nodes = shapes.nodes()
    assert [n["Node"] for n in nodes] == [EXTERNAL_NODE, "host2", "host3"]
    host2 = nodes[1]
    assert set(host2) == {
        "ID", "Node", "Address", "Datacenter", "TaggedAddresses", "Meta", "CreateIndex",
        "ModifyIndex",
    }  # fmt: skip
    assert host2["Address"] == "192.168.57.12" and host2["Meta"] == {"subnet": "10.5.2.0/24"}


def test_index_is_the_etcd_revision_and_follows_changes():
    catalog = catalog_with([WEB2], revision=7)
    assert consul_index(catalog) == 7
    catalog.apply(Change(key_of(DB), schema.encode_endpoint(DB), 9))
    assert consul_index(catalog) == 9
    assert Shapes(catalog, "lab").services() == {"db": ["sql"], "web": ["http", "v1"]}
    assert consul_index(Catalog(PREFIX, DOMAIN)) == 1  # never 0: clients read 0 as none


def test_agent_self_names_the_datacenter(shapes):
    assert shapes.agent_self("discovery-map")["Config"]["Datacenter"] == "lab"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10s", 10), ("5m", 300), ("1h", 3600), ("250ms", 0.25), ("1m30s", 90), ("1.5s", 1.5),
     ("0", 0), ("100us", 1e-4), ("2h45m", 9900)],
)  # fmt: skip
def test_go_durations_parse(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["10", "", "s", "-1s", "10 s", "ten", "1d", "5m garbage", "1.2.3s"]
)
def test_bad_durations_are_refused(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_blocking_parameters():
    assert parse_blocking({}) == parse_blocking({"index": "0"})
    assert not parse_blocking({}).blocking
    query = parse_blocking({"index": "17", "wait": "10s"})
    assert query.blocking and query.index == 17 and query.wait_s == 10
    assert parse_blocking({"index": "17"}).wait_s == DEFAULT_WAIT_S  # Consul's 5 minutes
    assert parse_blocking({"index": "17", "wait": "1h"}).wait_s == MAX_WAIT_S  # capped at 10


@pytest.mark.parametrize(
    ("query", "says"),
    [({"index": "abc"}, "Invalid index"), ({"index": "-1"}, "Invalid index"),
     ({"index": "1.5"}, "Invalid index"), ({"index": str(2**64)}, "Invalid index"),
     ({"index": "5", "wait": "10"}, "Invalid wait"), ({"wait": "soon"}, "Invalid wait"),
     ({"index": "٣"}, "Invalid index")],
)  # fmt: skip
def test_malformed_index_or_wait_is_a_bad_request(query, says):
    with pytest.raises(BadRequest, match=says):
        parse_blocking(query)


def test_flags_and_error_bodies():
    assert flag({"passing": ""}, "passing") and flag({"passing": "true"}, "passing")
    assert not flag({}, "passing") and not flag({"passing": "false"}, "passing")
    assert error_body(404, "unknown service 'x'") == {"error": "unknown service 'x'", "status": 404}

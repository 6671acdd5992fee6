"""Record keys and values: round trips, and rejections that name what is wrong."""

import json

import pytest

from discovery import schema
from discovery.errors import SchemaError

PREFIX, DOMAIN = "/skydns", "lab"


def make_endpoint(**overrides):
    values = dict(
        service="web",
        address="10.5.1.7",
        port=80,
        port_name="http",
        node="host1",
        container_id="3f2a9c1b2d4e" + "0" * 52,
        container_name="web1",
        image="discovery-lab/base:0.1.0",
        tags=("v1", "canary"),
        health="healthy",
    )
    values.update(overrides)
    return schema.Endpoint(**values)


def test_endpoint_round_trips_through_json():
    endpoint = make_endpoint()
    assert schema.decode_endpoint(schema.encode_endpoint(endpoint)) == endpoint


def test_encoded_endpoint_leads_with_the_fields_coredns_reads():
    data = json.loads(schema.encode_endpoint(make_endpoint()))
    assert list(data)[:5] == ["host", "port", "priority", "weight", "ttl"]
    assert data["host"] == "10.5.1.7" and data["port"] == 80


def test_ipv6_endpoint_round_trips():
    endpoint = make_endpoint(address="fd00::7")
    assert schema.decode_endpoint(schema.encode_endpoint(endpoint)).address == "fd00::7"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"[" * 50_000, "nests too deeply"),
        (b'{"service": "web", "host": "10.0.0.1", "port": ' + b"9" * 5001 + b"}", "5001 char"),
        (b'{"service": "web", "host": "10.0.0.1", "tags": [[[[[[[[["x"]]]]]]]]]}', "deeper than 8"),
        (b'{"service": "web", "host": "10.0.0.1", "image": "' + b"x" * 70_000 + b'"}', "bytes"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"host": "10.0.0.1"}', "no 'service' field"),
        (b'{"service": "web"}', "no 'host' field"),
        (b'{"service": "web", "host": "10.0.0.1", "port": "80"}', "'port' must be int"),
        (b'{"service": "web", "host": "10.0.0.1", "port": true}', "'port' must be int"),
        (b'{"service": "web", "host": "10.0.0.1", "port": 70000}', "port must be between"),
        (b'{"service": "web", "host": "web.example"}', "not an IP address"),
        (b'{"service": "Web!", "host": "10.0.0.1"}', "not a valid DNS label"),
        (b'{"service": "web", "host": "10.0.0.1", "health": "ok"}', "health must be one of"),
        (b'{"service": "web", "host": "10.0.0.1", "protocol": "sctp"}', "protocol must be"),
        (b'{"service": "web", "host": "10.0.0.1", "tags": "v1"}', "'tags' must be list"),
        (b'{"service": "web", "host": "10.0.0.1", "tags": ["a b"]}', "tag 'a b'"),
        (b'{"service": "web", "host": "10.0.0.1", "registered_at": "yesterday"}', "ISO 8601"),
        (b"\xff\xfe", "not JSON"),
        (b'{"service": "\xff"}', "not UTF-8"),
    ],
)
def test_bad_endpoint_values_are_rejected_with_the_reason(raw, reason):
    with pytest.raises(SchemaError, match=reason):
        schema.decode_endpoint(raw)


def test_unknown_fields_are_ignored_so_other_writers_can_add_theirs():
    raw = b'{"service": "web", "host": "10.0.0.1", "text": "from coredns", "group": "g"}'
    assert schema.decode_endpoint(raw).address == "10.0.0.1"


def test_keys_follow_the_skydns_layout_and_parse_back():
    key = schema.endpoint_key(PREFIX, DOMAIN, "web", "abc-80tcp")
    assert key == "/skydns/lab/service/web/abc-80tcp"
    assert schema.parse_record_key(PREFIX, DOMAIN, key) == schema.RecordKey(
        "service", "web", "abc-80tcp"
    )
    assert schema.node_key(PREFIX, "lab.example", "host1") == "/skydns/example/lab/node/host1"
    assert schema.parse_record_key(PREFIX, "lab.example", "/skydns/example/lab/node/host1") == (
        schema.RecordKey("node", "host1")
    )


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("/other/lab/service/web/x", "is not under"),
        ("/skydns/lab/service/web", "expected"),
        ("/skydns/lab/service/web/x/y", "expected"),
        ("/skydns/lab/service/We_b/x", "not a valid DNS label"),
        ("/skydns/lab/service/web/x_y", "endpoint id"),
        ("/skydns/lab/misc/web", "expected 'service' or 'node'"),
        ("/skydns/lab/node/a/b", "node name"),
    ],
)
def test_malformed_keys_are_rejected(key, reason):
    with pytest.raises(SchemaError, match=reason):
        schema.parse_record_key(PREFIX, DOMAIN, key)


def test_record_stored_under_another_service_is_rejected():
    key = schema.parse_record_key(PREFIX, DOMAIN, "/skydns/lab/service/db/x1")
    with pytest.raises(SchemaError, match="stored under service 'db'"):
        schema.decode_service_record(key, schema.encode_endpoint(make_endpoint()))


@pytest.mark.parametrize(
    ("name", "label"),
    [("web", "web"), ("My_Web.App", "my-web-app"), ("  api v2 ", "api-v2"), ("a--b", "a-b")],
)
def test_names_normalise_to_dns_labels(name, label):
    assert schema.normalise_dns_label(name) == label


@pytest.mark.parametrize(("name", "reason"), [("___", "no letters"), ("x" * 64, "limit is 63")])
def test_names_that_cannot_be_labels_are_refused(name, reason):
    with pytest.raises(SchemaError, match=reason):
        schema.normalise_dns_label(name)


def test_endpoint_ids_are_stable_labels_even_for_ipv6():
    endpoint = make_endpoint(address="fd00:abcd::1234", port=8080, protocol="udp")
    assert endpoint.endpoint_id == "3f2a9c1b2d4e-fd00-abcd--1234-8080udp"
    assert schema.is_dns_label(endpoint.endpoint_id)
    assert make_endpoint(container_id="", port=0).endpoint_id == "manual-10-5-1-7-ip"


def test_node_round_trips_and_checks_its_fields():
    node = schema.Node(node="host1", address="192.168.100.11", subnet="10.5.1.0/24")
    assert schema.decode_node(schema.encode_node(node)) == node
    with pytest.raises(SchemaError, match="subnet"):
        schema.Node(node="host1", address="192.168.100.11", subnet="10.5.1.0/99")
    with pytest.raises(SchemaError, match="no string 'host'"):
        schema.decode_node(b'{"node": "host1"}')


def test_a_node_record_carries_its_checks_and_refuses_odd_ones() -> None:
    node = schema.Node("host1", "10.0.0.1", checks=(("dns", "critical"), ("docker", "passing")))
    raw = schema.encode_node(node)
    assert json.loads(raw)["checks"] == {"dns": "critical", "docker": "passing"}
    assert schema.decode_node(raw) == node
    assert "checks" not in json.loads(schema.encode_node(schema.Node("host1", "10.0.0.1")))
    base = {"node": "host1", "host": "10.0.0.1"}
    for checks, said in [
        ([], "must be a JSON object"),
        ({"dns": "ok"}, "not one of passing, warning, critical"),
        ({"dns": ["passing"]}, "not one of"),
        ({"Not A Label": "passing"}, "not one of"),
        ({f"c{i}": "passing" for i in range(17)}, "the limit is 16"),
    ]:
        with pytest.raises(SchemaError, match=said):
            schema.decode_node(json.dumps({**base, "checks": checks}))

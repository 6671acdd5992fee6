"""discoveryctl end to end, as a user runs it: a subprocess against a real etcd."""

import json
import os
import subprocess
import sys
import time

import pytest

from discovery import flannel, schema
from labs.etcd_server import etcdctl

pytestmark = pytest.mark.etcd


@pytest.fixture
def ctl(etcd_settings):
    env = {
        **os.environ,
        "DISCOVERY_ETCD_ENDPOINTS": ",".join(etcd_settings.etcd_endpoints),
        "DISCOVERY_PREFIX": etcd_settings.prefix,
        "DISCOVERY_NETWORK_PREFIX": etcd_settings.network_prefix,
    }
    env.pop("ETCDCTL_ENDPOINTS", None)

    def run(*args, check=True, timeout=15):
        result = subprocess.run(
            [sys.executable, "-m", "discovery.cli", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"discoveryctl {args} failed: {result.stderr}")
        return result

    run.env = env
    return run


def test_register_lookup_and_deregister(ctl):
    ctl(
        "register", "web", "--address", "10.5.1.7", "--port", "80", "--host", "host1", "--tag", "v1"
    )
    ctl("register", "web", "--address", "10.5.2.7", "--port", "80", "--host", "host2")
    table = ctl("lookup", "web").stdout.splitlines()
    assert table[0].split() == [
        "SERVICE",
        "ADDRESS",
        "PORT",
        "HOST",
        "CONTAINER",
        "TAGS",
        "HEALTH",
        "AGE",
    ]
    assert [line.split()[:4] for line in table[1:]] == [
        ["web", "10.5.1.7", "80", "host1"],
        ["web", "10.5.2.7", "80", "host2"],
    ]
    rows = json.loads(ctl("lookup", "web", "-o", "json").stdout)
    assert [(r["address"], r["port"], r["host"], r["tags"], r["health"]) for r in rows] == [
        ("10.5.1.7", 80, "host1", ["v1"], "passing"),
        ("10.5.2.7", 80, "host2", [], "passing"),
    ]
    ctl("deregister", "web", "--address", "10.5.1.7", "--port", "80")
    rows = json.loads(ctl("lookup", "web", "-o", "json").stdout)
    assert [r["address"] for r in rows] == ["10.5.2.7"]


def test_services_counts_endpoints(ctl):
    for address in ("10.5.1.1", "10.5.1.2"):
        ctl("register", "api", "--address", address, "--port", "8080")
    ctl("register", "db", "--address", "10.5.1.3", "--port", "5432", "--tag", "primary")
    rows = json.loads(ctl("services", "-o", "json").stdout)
    assert [(r["service"], r["endpoints"], r["serving"], r["tags"]) for r in rows] == [
        ("api", 2, 2, []),
        ("db", 1, 1, ["primary"]),
    ]
    assert "api" in ctl("services").stdout


def test_register_with_ttl_expires(ctl):
    ctl("register", "temp", "--address", "10.5.1.9", "--ttl", "1")
    assert json.loads(ctl("lookup", "temp", "-o", "json").stdout)[0]["address"] == "10.5.1.9"
    deadline = time.monotonic() + 5
    while ctl("lookup", "temp", check=False).returncode == 0:
        assert time.monotonic() < deadline, "a 1 s registration outlived 5 s"
        time.sleep(0.2)


def test_unknown_service_is_one_line_and_exit_1(ctl):
    result = ctl("lookup", "web", check=False)
    assert result.returncode == 1
    assert result.stderr == "discoveryctl: no endpoints for service web\n"


def test_deregistering_nothing_is_an_error(ctl):
    result = ctl("deregister", "web", "--address", "10.9.9.9", check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == "discoveryctl: no endpoint of service web at 10.9.9.9"


def test_unreachable_etcd_names_the_endpoints_within_5_s(ctl):
    started = time.monotonic()
    result = ctl(
        "--etcd-endpoints", "http://127.0.0.1:1,http://127.0.0.1:2", "lookup", "web", check=False
    )
    assert time.monotonic() - started < 5
    assert result.returncode == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "unreachable" in lines[0]
    assert "http://127.0.0.1:1" in lines[0] and "http://127.0.0.1:2" in lines[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["register", "web", "--address", "10.0.0.1", "--port", "http"], "invalid int value"),
        (["register", "web"], "--address"),
        (["register", "web", "--address", "not-an-ip"], "is not an IP address"),
        (["register", "web", "--address", "10.0.0.1", "--ttl", "0"], "--ttl must be"),
        (["register", "___", "--address", "10.0.0.1"], "no letters or digits"),
        (["lookup"], "service"),
        (["frobnicate"], "invalid choice"),
        (["--lease-ttl", "soon", "services"], "bad value 'soon'"),
    ],
)
def test_malformed_command_lines_are_one_line_and_exit_2(ctl, args, message):
    result = ctl(*args, check=False)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_lookup_skips_garbage_with_a_warning(ctl, etcd_server, etcd_settings):
    ctl("register", "web", "--address", "10.5.1.7")
    bad_key = schema.endpoint_key(etcd_settings.prefix, "lab", "web", "junk")
    etcdctl(etcd_server.endpoints, "put", bad_key, "]]]")
    result = ctl("lookup", "web", "-o", "json")
    assert [r["address"] for r in json.loads(result.stdout)] == ["10.5.1.7"]
    assert f"skipping {bad_key}: endpoint value is not JSON" in result.stderr


def test_subnets_and_hosts_read_flannel_leases_and_node_records(ctl, etcd_server, etcd_settings):
    assert json.loads(ctl("subnets", "-o", "json").stdout) == []
    net = etcd_settings.network_prefix
    lease_value = (
        '{"PublicIP":"192.168.100.11","BackendType":"vxlan",'
        '"BackendData":{"VNI":1,"VtepMAC":"7a:00:00:00:00:01"}}'
    )
    etcdctl(etcd_server.endpoints, "put", f"{net}/subnets/10.5.1.0-24", lease_value)
    node = schema.Node(node="host1", address="192.168.100.11", subnet="10.5.1.0/24")
    etcdctl(
        etcd_server.endpoints,
        "put",
        schema.node_key(etcd_settings.prefix, "lab", "host1"),
        schema.encode_node(node).decode(),
    )
    ctl("register", "web", "--address", "10.5.1.2", "--host", "host1")
    subnets = json.loads(ctl("subnets", "-o", "json").stdout)
    assert [(s["subnet"], s["public_ip"], s["vtep_mac"], s["vni"]) for s in subnets] == [
        ("10.5.1.0/24", "192.168.100.11", "7a:00:00:00:00:01", 1)
    ]
    assert flannel.parse_subnet_key(net, subnets[0]["key"]).prefixlen == 24
    hosts = json.loads(ctl("hosts", "-o", "json").stdout)
    assert hosts == [
        {
            "host": "host1",
            "address": "192.168.100.11",
            "subnet": "10.5.1.0/24",
            "vtep_mac": "7a:00:00:00:00:01",
            "endpoints": 1,
        }
    ]


def test_watch_streams_changes_as_json_lines(ctl):
    process = subprocess.Popen(
        [sys.executable, "-m", "discovery.cli", "watch", "web", "-o", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ctl.env,
    )
    try:
        time.sleep(1.0)  # let it list and open its watch
        ctl("register", "web", "--address", "10.5.3.3", "--port", "80")
        ctl("deregister", "web", "--address", "10.5.3.3")
        events = [json.loads(process.stdout.readline()) for _ in range(2)]
    finally:
        process.terminate()
        process.wait(timeout=5)
    assert [(e["event"], e["address"]) for e in events] == [
        ("added", "10.5.3.3"),
        ("removed", "10.5.3.3"),
    ]

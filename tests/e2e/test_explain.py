"""`discoveryctl explain` on a real 3-host lab: every hop equal to what the tools say.

One lab for the module (its own name, underlay 192.168.239.0/24 and state
dir), a web container on host2 and on host3, then from host1:

* ``explain web -o json``: the resolver equal to a new container's
  resolv.conf, the answer equal to ``dig``'s, each record equal to
  ``etcdctl``'s key, value and lease, each path's route, neighbour, FDB entry,
  VXLAN device and underlay route equal to what ``ip`` and ``bridge`` print;
* ``--trace``: one VXLAN packet per address, with host1's and the right
  host's underlay addresses outside, UDP 8472 and the device's VNI, and the
  address inside;
* the text, printed for the reader of the test output;
* bad input: an unknown name (exit 1), an unknown host (exit 2) and etcd
  unreachable, all three members frozen (exit 3), each one line.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labs.runner import child_pid
from labs.testing.lab_driver import LabDriver
from labs.testing.waiting import wait_until
from labs.troubleshoot.doctor import HOST_CHECKS, LAB_CHECKS
from tests.prerequisites import require_binary, require_root

pytestmark = [pytest.mark.root, pytest.mark.docker, pytest.mark.netns, pytest.mark.etcd]

LAB = f"xp{os.getpid() % 10000}"
UNDERLAY = "192.168.239.0/24"
ETCDCTL = str(Path(sys.executable).parent / "etcdctl")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    require_root()
    require_binary("dockerd", "docker", "ip", "bridge", "nsenter", "dig", "tcpdump")
    driver = LabDriver(tmp_path_factory.mktemp("lab-state"), LAB, UNDERLAY)
    try:
        driver.lab("up", "--hosts", "3", "--underlay", UNDERLAY)
        addresses = {}
        for host in ("host2", "host3"):
            driver.docker(host, "run", "-d", "--name", f"web-{host}", "-e", f"LAB_HOST={host}",
                          driver.image("web"))  # fmt: skip
            addresses[host] = driver.address_of(host, f"web-{host}")
        wait_until(
            lambda: {row["address"] for row in driver.lookup("web")} == set(addresses.values()),
            10,
            "web on host2 and host3 in etcd",
        )
        driver.web = addresses  # type: ignore[attr-defined]
        yield driver
    finally:
        driver.lab("down", check=False)


def discoveryctl(
    lab: LabDriver, verb: str, *args: str
) -> tuple[subprocess.CompletedProcess[str], float]:
    """``discoveryctl VERB --name LAB ARGS`` as the other lab tests run it (the plugin
    through its entry point), and how long it took."""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "discovery.cli", verb, "--name", lab.name, *args],
        capture_output=True, text=True, env=lab.env, timeout=60,
    )  # fmt: skip
    return result, time.monotonic() - started


def explain(lab: LabDriver, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    return discoveryctl(lab, "explain", *args)


def doctor(lab: LabDriver, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    return discoveryctl(lab, "doctor", *args)


def on_host(lab: LabDriver, host: str, *argv: str) -> str:
    netns = lab.state().hosts[host].netns
    return subprocess.run(
        ["nsenter", f"--net=/run/netns/{netns}", *argv],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout  # fmt: skip


def ip_json(lab: LabDriver, host: str, *argv: str) -> list[dict]:
    return json.loads(on_host(lab, host, *argv))


def etcdctl_json(lab: LabDriver, *argv: str) -> dict:
    endpoints = ",".join(lab.state().etcd_endpoints)
    learner = lab.etcd_client().flags()
    result = subprocess.run([ETCDCTL, "--endpoints", endpoints, *learner, *argv, "-w", "json"],
                            capture_output=True, text=True, check=True, timeout=30)  # fmt: skip
    return json.loads(result.stdout)


def hops_of(path: dict) -> dict[str, dict]:
    return {hop["hop"]: hop for hop in path["hops"]}


def test_explain_json_equals_what_the_tools_report(lab):
    result, took = explain(lab, "web", "--from", "host1", "-o", "json")
    assert result.returncode == 0, result.stderr
    print(f"\nexplain web --from host1 -o json: {took:.2f} s wall clock")
    found = json.loads(result.stdout)
    state = lab.state()
    host1 = state.hosts["host1"]

    # 1. the resolver: what a new container on host1 gets, asked by the test itself
    conf = lab.docker("host1", "run", "--rm", lab.image("base"), "cat", "/etc/resolv.conf")
    lines = [line.split() for line in conf.splitlines() if line.strip()]
    assert found["resolver"]["nameservers"] == [w[1] for w in lines if w[0] == "nameserver"]
    assert found["resolver"]["search"] == next(w[1:] for w in lines if w[0] == "search")
    assert found["resolver"]["nameservers"] == [host1.dns_ip]
    assert found["resolver"]["tries"][0] == "web.service.lab."

    # 2. the answer: dig's, from host1's namespace
    reply = found["dns"]["reply"]
    assert reply["question"] == "web.service.lab. IN A" and reply["status"] == "NOERROR"
    dig = on_host(
        lab, "host1", "dig", "+noall", "+answer", f"@{host1.dns_ip}", "web.service.lab", "A"
    )
    assert {tuple(line.split()) for line in dig.splitlines()} == {
        (rr["name"], str(rr["ttl"]), rr["class"], rr["type"], rr["data"]) for rr in reply["answer"]
    }
    assert {rr["data"] for rr in reply["answer"]} == set(lab.web.values())

    # 3. the records: etcdctl's keys, values and leases
    listed = etcdctl_json(lab, "get", "--prefix", "/skydns/lab/service/web/")
    by_key = {base64.b64decode(kv["key"]).decode(): kv for kv in listed["kvs"]}
    assert {r["key"] for r in found["records"]} == set(by_key)
    for record in found["records"]:
        kv = by_key[record["key"]]
        assert record["value"] == json.loads(base64.b64decode(kv["value"]))
        assert record["lease_id"] == kv["lease"]
        host = record["node"]
        assert record["container_name"] == f"web-{host}" and lab.web[host] == record["address"]
        lease = etcdctl_json(lab, "lease", "timetolive", record["lease_hex"])
        assert lease["id"] == kv["lease"]
        # explain read it a moment before: as much left then as now, or a renewal between
        assert 0 <= lease["ttl"] <= lease["granted-ttl"]
        assert 0 <= record["lease_ttl_s"] <= lease["granted-ttl"]

    # 4. the paths: ip and bridge in host1's namespace
    paths = {path["address"]: path for path in found["paths"]}
    assert set(paths) == set(lab.web.values())
    for host, address in lab.web.items():
        path = paths[address]
        assert path["kind"] == "overlay" and path["problems"] == []
        hops = hops_of(path)
        assert list(hops) == ["route", "neighbour", "fdb", "vxlan", "underlay", "lease"]
        route = ip_json(lab, "host1", "ip", "-j", "route", "get", address)[0]
        assert hops["route"]["entry"] == route
        device = route["dev"]
        assert hops["neighbour"]["entry"] in ip_json(
            lab, "host1", "ip", "-j", "neigh", "show", "dev", device
        )
        assert hops["fdb"]["entry"] in ip_json(
            lab, "host1", "bridge", "-j", "fdb", "show", "dev", device
        )
        assert hops["fdb"]["entry"]["dst"] == state.hosts[host].underlay_ip
        link = ip_json(lab, "host1", "ip", "-j", "-d", "link", "show", "dev", device)[0]
        vxlan = link["linkinfo"]["info_data"]
        assert (hops["vxlan"]["entry"]["vni"], hops["vxlan"]["entry"]["port"]) == (
            vxlan["id"],
            vxlan["port"],
        )
        assert hops["vxlan"]["entry"]["mtu"] == link["mtu"]
        assert hops["vxlan"]["entry"]["local"] == vxlan["local"] == host1.underlay_ip
        underlay = ip_json(lab, "host1", "ip", "-j", "route", "get", state.hosts[host].underlay_ip,
                           "from", host1.underlay_ip)[0]  # fmt: skip
        assert {k: v for k, v in hops["underlay"]["entry"].items() if k != "link"} == underlay
        # the lease behind them, as etcdctl reads it
        subnet_key = hops["lease"]["entry"]["key"]
        kv = etcdctl_json(lab, "get", subnet_key)["kvs"][0]
        assert hops["lease"]["entry"]["value"] == json.loads(base64.b64decode(kv["value"]))
        assert (
            hops["lease"]["entry"]["value"]["BackendData"]["VtepMAC"]
            == hops["neighbour"]["entry"]["lladdr"]
        )


def test_trace_catches_a_vxlan_packet_with_the_right_vni_and_outer_addresses(lab):
    result, took = explain(lab, "web", "--from", "host1", "--trace", "-o", "json")
    assert result.returncode == 0, result.stderr
    print(f"\nexplain web --from host1 --trace -o json: {took:.2f} s wall clock")
    found = json.loads(result.stdout)
    state = lab.state()
    link = ip_json(lab, "host1", "ip", "-j", "-d", "link", "show", "dev", "flannel.1")[0]
    traces = {trace["address"]: trace for trace in found["traces"]}
    assert set(traces) == set(lab.web.values())
    for host, address in lab.web.items():
        trace = traces[address]
        assert trace["problem"] == "", trace
        packet = trace["packet"]
        assert packet["ip"]["src"] == state.hosts["host1"].underlay_ip
        assert packet["ip"]["dst"] == state.hosts[host].underlay_ip
        assert packet["transport"]["dst_port"] == 8472 == link["linkinfo"]["info_data"]["port"]
        assert packet["vxlan"]["vni"] == link["linkinfo"]["info_data"]["id"]
        assert packet["inner"]["ip"]["dst"] == address
        host1_subnet = ipaddress.IPv4Interface(state.hosts["host1"].subnet).network
        assert ipaddress.IPv4Address(packet["inner"]["ip"]["src"]) in host1_subnet
        assert packet["inner"]["transport"]["icmp"] == "echo request"
        assert f"vni {packet['vxlan']['vni']}" in trace["tcpdump"]


def test_the_text_teaches_one_line_per_hop(lab):
    result, took = explain(lab, "web", "--from", "host1")
    assert result.returncode == 0, result.stderr
    print(f"\n$ discoveryctl explain web --from host1   ({took:.2f} s)\n{result.stdout}")
    text = result.stdout
    for label in ("1 resolver", "2 question", "3 records", "4 path"):
        assert label in text
    for hop in ("route", "neighbour", "fdb", "vxlan", "underlay", "lease"):
        assert sum(line.split()[0] == hop for line in text.splitlines() if line.strip()) == 2
    result, took = explain(lab, "web", "--from", "host1", "--trace")
    print(f"\n$ discoveryctl explain web --from host1 --trace   ({took:.2f} s)\n{result.stdout}")
    assert result.returncode == 0 and text.count("4 path") == 2


def test_doctor_passes_every_check_on_the_healthy_lab(lab):
    def healthy() -> bool:
        result, _ = doctor(lab, "-o", "json")
        found = json.loads(result.stdout)
        return result.returncode == 0 and found["fails"] == found["warns"] == 0

    # Right after lab up a node's first checks may still say its DNS server was not up yet.
    wait_until(healthy, 15, "doctor all PASS")
    result, took = doctor(lab, "-o", "json")
    found = json.loads(result.stdout)
    checks = {(c["check"], c["host"]) for c in found["checks"]}
    hosts = ("host1", "host2", "host3")
    assert checks == {(c, "lab") for c in LAB_CHECKS} | {(c, h) for c in HOST_CHECKS for h in hosts}
    assert {c["status"] for c in found["checks"]} == {"PASS"}
    text, took_text = doctor(lab)
    assert text.returncode == 0 and text.stdout.splitlines()[-1].startswith("0 FAIL, 0 WARN")
    # the same in a learner's shell after `eval $(discoveryctl lab env host1)`, where
    # ETCDCTL_ENDPOINTS is set (etcdctl then refuses an --endpoints flag)
    learner = {
        **lab.env,
        "ETCDCTL_ENDPOINTS": ",".join(lab.state().etcd_endpoints),
        **lab.etcd_client().etcdctl_env(),
    }
    in_shell = subprocess.run(
        [sys.executable, "-m", "discovery.cli", "doctor", "--name", lab.name],
        capture_output=True, text=True, env=learner, timeout=60,
    )  # fmt: skip
    assert in_shell.returncode == 0, in_shell.stdout + in_shell.stderr
    print(f"\n$ discoveryctl doctor   ({took_text:.2f} s; -o json {took:.2f} s)\n{text.stdout}")
    one, _ = doctor(lab, "host2", "-o", "json")
    assert {c["host"] for c in json.loads(one.stdout)["checks"]} == {"lab", "host2"}
    unknown, _ = doctor(lab, "host9")
    assert unknown.returncode == 2 and unknown.stderr.count("\n") == 1
    assert "no host 'host9'" in unknown.stderr


def test_doctor_names_udp_8472_dropped_between_two_hosts_and_passes_once_it_is_mended(lab):
    """The fault issue 15 names, made for real: host3 drops VXLAN from host1."""
    rule = ["INPUT", "-p", "udp", "--dport", "8472", "-s", lab.state().hosts["host1"].underlay_ip,
            "-j", "DROP"]  # fmt: skip
    on_host(lab, "host3", "iptables", "-w", "-I", *rule)
    try:
        result, _ = doctor(lab, "-o", "json")
        text, _ = doctor(lab)
    finally:
        on_host(lab, "host3", "iptables", "-w", "-D", *rule)
    assert result.returncode == 1
    failed = {(c["check"], c["host"]) for c in json.loads(result.stdout)["checks"]
              if c["status"] == "FAIL"}  # fmt: skip
    assert failed == {("overlay-reach", "host1"), ("overlay-reach", "host3")}
    assert "UDP 8472 does not get through" in text.stdout
    print(f"\n$ discoveryctl doctor   (host3 drops UDP 8472 from host1)\n{text.stdout}")
    mended, _ = doctor(lab)
    assert mended.returncode == 0, mended.stdout


def test_bad_input_is_one_line_with_its_exit_code(lab):
    result, _ = explain(lab, "nosuchservice", "--from", "host1")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "'nosuchservice' has no A answer" in result.stderr
    print(f"\nunknown name: exit 1: {result.stderr.strip()}")

    result, _ = explain(lab, "web", "--from", "host9")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert f"no host 'host9' in lab '{lab.name}' (hosts: host1, host2, host3)" in result.stderr
    print(f"unknown host: exit 2: {result.stderr.strip()}")

    # etcd unreachable, for real: every member frozen; the DNS servers answer from memory.
    members = [child_pid(record) for record in lab.state().processes if record.role == "etcd"]
    assert len(members) == 3 and None not in members
    try:
        for pid in members:
            os.kill(pid, signal.SIGSTOP)
        result, took = explain(lab, "web", "--from", "host1")
        checked, checked_in = doctor(lab, "-o", "json")
    finally:
        for pid in members:
            os.kill(pid, signal.SIGCONT)
    # doctor: quorum lost, nothing else readable, and each host's etcd member is stopped.
    assert checked.returncode == 3, checked.stdout + checked.stderr
    failed = {(c["check"], c["host"]) for c in json.loads(checked.stdout)["checks"]
              if c["status"] == "FAIL"}  # fmt: skip
    assert failed == {("etcd-quorum", "lab"), ("etcd", "lab")} | {
        ("processes", h) for h in ("host1", "host2", "host3")
    }
    print(f"doctor with etcd frozen: exit 3 after {checked_in:.1f} s")
    assert result.returncode == 3 and result.stderr.count("\n") == 1, result.stderr
    assert "etcd unreachable" in result.stderr and took < 10
    print(f"etcd unreachable: exit 3 after {took:.1f} s: {result.stderr.strip()}")

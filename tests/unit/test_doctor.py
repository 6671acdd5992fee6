"""doctor's checks (labs/troubleshoot/doctor.py), on facts recorded from a real 3-host lab.

tests/unit/data/doctor/healthy_lab.json is what doctor_gather read from a
healthy lab with web on host2; each test breaks one fact the way a fault
would show it and expects exactly the right check to FAIL (or WARN), with
evidence naming what is wrong. tests/e2e/test_doctor.py does the same on a
real lab with real faults.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from discovery import flannel
from labs.troubleshoot import doctor
from labs.troubleshoot.doctor_facts import HostFacts, LabFacts, from_json, to_json

RECORDED = Path(__file__).parent / "data" / "doctor" / "healthy_lab.json"


@pytest.fixture
def facts() -> LabFacts:
    return from_json(RECORDED.read_text())


def host(facts: LabFacts, name: str) -> HostFacts:
    return next(h for h in facts.hosts if h.name == name)


def not_passing(facts: LabFacts) -> list[tuple[str, str, str]]:
    return [(v.check, v.host, v.status) for v in doctor.diagnose(facts) if v.status != "PASS"]


def verdict(facts: LabFacts, check: str, host_name: str) -> doctor.Verdict:
    return next(v for v in doctor.diagnose(facts) if (v.check, v.host) == (check, host_name))


def test_a_healthy_lab_passes_every_check_once_per_host(facts: LabFacts) -> None:
    verdicts = doctor.diagnose(facts)
    assert not_passing(facts) == []
    counts = Counter(v.check for v in verdicts)
    assert all(counts[check] == 1 for check in doctor.LAB_CHECKS)
    assert all(counts[check] == 3 for check in doctor.HOST_CHECKS)
    assert "web.service.lab" in host(facts, "host1").dns  # the services etcd holds are asked
    assert from_json(to_json(facts)) == facts


def test_an_underlay_mtu_lowered_under_the_vxlan_device_fails_mtu(facts: LabFacts) -> None:
    eth0 = next(a for a in host(facts, "host2").addresses if a["ifname"] == "eth0")
    eth0["mtu"] = 1400
    assert not_passing(facts) == [("mtu", "host2", "FAIL")]
    said = verdict(facts, "mtu", "host2")
    assert "flannel.1 mtu 1450, eth0 mtu 1400" in said.evidence and "1350" in said.evidence
    assert "ip link set flannel.1 mtu 1350" in said.fix


def test_docker_containers_with_another_mtu_than_the_vxlan_device_fail_mtu(
    facts: LabFacts,
) -> None:
    bridge = host(facts, "host3").docker_bridge
    assert bridge is not None
    del bridge["Options"]["com.docker.network.driver.mtu"]  # Docker's default: 1500
    assert not_passing(facts) == [("mtu", "host3", "FAIL")]
    assert "Docker's bridge mtu 1500, flannel.1 mtu 1450" in verdict(facts, "mtu", "host3").evidence


def test_a_missing_fdb_entry_and_a_stale_route_fail_kernel_entries(facts: LabFacts) -> None:
    host1 = host(facts, "host1")
    gone = host1.fdb.pop(0)
    host1.routes.append(
        {"dst": "10.5.250.0/24", "gateway": "10.5.250.0", "dev": "flannel.1", "flags": ["onlink"]}
    )
    assert not_passing(facts) == [("kernel-entries", "host1", "FAIL")]
    said = verdict(facts, "kernel-entries", "host1").evidence
    assert f"missing or wrong: fdb {gone['mac']} dst {gone['dst']}" in said
    assert "stale (no lease): route 10.5.250.0/24" in said


def test_vxlan_blocked_and_underlay_down_are_told_apart(facts: LabFacts) -> None:
    host1 = host(facts, "host1")
    host1.reach[1].vtep.ok = False  # host3 over VXLAN
    assert not_passing(facts) == [("overlay-reach", "host1", "FAIL")]
    said = verdict(facts, "overlay-reach", "host1").evidence
    assert said.startswith("host3: no reply from its VTEP") and "UDP 8472" in said
    host1.reach[1].underlay.ok = False
    assert (
        "the underlay itself does not reach it" in verdict(facts, "overlay-reach", "host1").evidence
    )


def test_dead_and_frozen_processes_fail_with_the_fix_for_each(facts: LabFacts) -> None:
    processes = host(facts, "host2").processes
    assert processes is not None
    processes["agent-services"] = "not running"
    del facts.etcd.nodes["host2"]  # its node record expired with its lease
    assert not_passing(facts) == [("processes", "host2", "FAIL"), ("node-record", "host2", "FAIL")]
    assert verdict(facts, "processes", "host2").fix.startswith("discoveryctl lab up")
    processes["agent-services"] = "stopped"
    assert "discoveryctl lab restart host2" in verdict(facts, "processes", "host2").fix


def test_a_lease_docker_and_subnet_env_disagreeing_fail_subnet_lease(facts: LabFacts) -> None:
    host2 = host(facts, "host2")
    assert host2.subnet_env is not None and host2.docker_bridge is not None
    host2.docker_bridge["IPAM"]["Config"][0]["Subnet"] = "172.17.0.0/16"
    assert not_passing(facts) == [("subnet-lease", "host2", "FAIL")]
    assert (
        "Docker's bridge is 172.17.0.0/16 (its bip), not 10.5.9.0/25"
        in verdict(facts, "subnet-lease", "host2").evidence
    )
    host2.docker_bridge["IPAM"]["Config"][0]["Subnet"] = "10.5.9.0/25"
    host2.subnet_env = host2.subnet_env.replace(
        "FLANNEL_SUBNET=10.5.9.1/24", "FLANNEL_SUBNET=10.5.77.1/24"
    )
    assert (
        "subnet.env says FLANNEL_SUBNET=10.5.77.1/24"
        in verdict(facts, "subnet-lease", "host2").evidence
    )


def test_leases_sharing_a_vtep_mac_or_a_public_ip_fail_the_lab_checks(facts: LabFacts) -> None:
    prefix = facts.network_prefix
    (key, raw), *_ = sorted(facts.etcd.subnet_leases.items())
    lease = flannel.parse_subnet_lease(prefix, key, raw)
    twin = flannel.SubnetLease(
        flannel.parse_subnet_key(prefix, f"{prefix}/subnets/10.5.250.0-24"),
        lease.public_ip, lease.vtep_mac,
    )  # fmt: skip
    facts.etcd.subnet_leases[flannel.subnet_key(prefix, twin.subnet)] = flannel.encode_subnet_lease(
        twin
    )
    failing = {(check, status) for check, _, status in not_passing(facts)}
    assert {("vtep-macs", "FAIL"), ("public-ips", "FAIL")} <= failing
    assert "10.0.2.15" in verdict(facts, "public-ips", "lab").evidence  # the Vagrant NAT trap


def test_forward_rules(facts: LabFacts) -> None:
    host3 = host(facts, "host3")
    host3.lab_forward_rules = ""
    assert not_passing(facts) == [("forward", "host3", "FAIL")]
    assert "FORWARD policy DROP" in verdict(facts, "forward", "host3").evidence
    host3.forward_rules = host3.forward_rules.replace("-P FORWARD DROP", "-P FORWARD ACCEPT")
    assert not_passing(facts) == [("forward", "host3", "WARN")]


def test_a_silent_dns_server_and_a_wrong_answer_fail_dns(facts: LabFacts) -> None:
    host3 = host(facts, "host3")
    answered = host3.dns_soa
    host3.dns_soa = ";; communications error to 10.5.178.1#53: connection refused\n"
    assert not_passing(facts) == [("dns", "host3", "FAIL")]
    assert "does not answer for lab" in verdict(facts, "dns", "host3").evidence
    host3.dns_soa = answered
    host3.dns["web.service.lab"] = host3.dns["web.service.lab"].replace("10.5.9.2", "10.5.9.99")
    said = verdict(facts, "dns", "host3").evidence
    assert "web.service.lab: answers 10.5.9.99, etcd says 10.5.9.2" in said


def test_a_record_of_a_container_no_longer_running_fails_stale_records(facts: LabFacts) -> None:
    host(facts, "host2").running_containers = []
    assert not_passing(facts) == [("stale-records", "host2", "FAIL")]
    assert "/skydns/lab/service/web/" in verdict(facts, "stale-records", "host2").evidence


def test_quorum_lost_and_etcd_unreachable(facts: LabFacts) -> None:
    facts.etcd.members[2].answered = False
    assert not_passing(facts) == [("etcd-quorum", "lab", "WARN")]
    facts.etcd.members[1].answered = False
    assert not_passing(facts) == [("etcd-quorum", "lab", "FAIL")]
    # Nothing else can be read then; the processes still can.
    facts.etcd.reachable, facts.etcd.error = False, "etcd unreachable for list /skydns"
    processes = host(facts, "host3").processes
    assert processes is not None
    processes["etcd"] = "not running"
    assert not_passing(facts) == [
        ("etcd-quorum", "lab", "FAIL"), ("etcd", "lab", "FAIL"), ("processes", "host3", "FAIL"),
    ]  # fmt: skip


def test_the_json_shape(facts: LabFacts) -> None:
    result = doctor.to_json(doctor.diagnose(facts), 0.25)
    assert result["fails"] == 0 and result["warns"] == 0 and result["seconds"] == 0.25
    assert set(result["checks"][0]) == {"check", "host", "status", "evidence", "fix"}
    json.dumps(result)

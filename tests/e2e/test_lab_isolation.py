"""The lab and the rest of the machine: other labs, and a root-namespace Docker daemon."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from labs.testing.lab_driver import LabDriver
from labs.testing.waiting import wait_until
from tests.prerequisites import require, require_binary, require_root

pytestmark = [pytest.mark.root, pytest.mark.docker, pytest.mark.netns, pytest.mark.etcd]


def test_lab_down_leaves_another_labs_containers_alone(tmp_path_factory):
    require_root()
    require_binary("dockerd", "docker", "ip", "iptables", "nsenter", "dig")
    tag = os.getpid() % 10000
    # Short state roots: dockerd's sockets live under them (108-byte limit).
    first = LabDriver(tmp_path_factory.mktemp("ia"), f"ia{tag}", "192.168.225.0/24")
    second = LabDriver(tmp_path_factory.mktemp("ib"), f"ib{tag}", "192.168.226.0/24")
    try:
        for lab in (first, second):
            lab.lab("up", "--hosts", "1", "--underlay", lab.underlay)
        for lab in (first, second):
            lab.docker("host1", "run", "-d", "--name", "sleeper", lab.image("base"),
                       "sleep", "600")  # fmt: skip
        first.lab("down")
        state = second.docker("host1", "inspect", "--format", "{{.State.Status}}", "sleeper")
        assert state.strip() == "running"
    finally:
        first.lab("down", check=False)
        second.lab("down", check=False)


def test_lab_works_where_a_root_docker_daemon_set_forward_to_drop(tmp_path_factory):
    """What a Docker daemon in the root namespace does to the machine: FORWARD's
    policy DROP, with bridged traffic passing through iptables (br_netfilter).
    The lab's own ACCEPT rules for its bridge must carry the underlay anyway.
    The test sets both conditions and restores the machine's policy afterwards."""
    require_root()
    require_binary("dockerd", "docker", "ip", "iptables", "nsenter", "dig")
    bridge_nf = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")
    require(bridge_nf.exists(), "needs br_netfilter (/proc/sys/net/bridge)")
    policy = forward_policy()
    bridge_nf_before = bridge_nf.read_text().strip()
    lab = LabDriver(tmp_path_factory.mktemp("fd"), f"fd{os.getpid() % 10000}", "192.168.227.0/24")
    try:
        subprocess.run(["iptables", "-P", "FORWARD", "DROP"], check=True)
        bridge_nf.write_text("1")
        lab.lab("up", "--hosts", "2", "--underlay", lab.underlay)
        lab.docker("host2", "run", "-d", "--name", "web-host2", "-e", "LAB_HOST=host2",
                   lab.image("web"))  # fmt: skip
        lab.client("host1")
        web = lab.address_of("host2", "web-host2")
        wait_until(lambda: lab.resolve("host1") == {web}, 10, "web on host2 from host1")
        page = lab.docker("host1", "exec", "client-host1", "wget", "-qO-", "http://web/")
        assert "lab host: host2" in page
    finally:
        lab.lab("down", check=False)
        subprocess.run(["iptables", "-P", "FORWARD", policy], check=True)
        bridge_nf.write_text(bridge_nf_before)
    assert forward_policy() == policy


def forward_policy() -> str:
    rules = subprocess.run(["iptables", "-S", "FORWARD"], capture_output=True, text=True)
    return rules.stdout.splitlines()[0].split()[-1]  # "-P FORWARD ACCEPT"

"""Two labs on one machine: taking one down leaves the other's containers running."""

from __future__ import annotations

import os

import pytest

from tests.e2e.test_local_lab import LabDriver
from tests.prerequisites import require_binary, require_root

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

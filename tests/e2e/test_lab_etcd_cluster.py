"""A lab with a three-member etcd keeps registering and answering with one member down."""

from __future__ import annotations

import os
import signal

import pytest

from labs.testing.lab_driver import LabDriver
from labs.testing.waiting import wait_until
from tests.prerequisites import require_binary, require_root

pytestmark = [pytest.mark.root, pytest.mark.docker, pytest.mark.netns, pytest.mark.etcd]


@pytest.fixture(scope="module")
def cluster_lab(tmp_path_factory):
    require_root()
    require_binary("dockerd", "docker", "ip", "iptables", "nsenter", "dig")
    driver = LabDriver(
        tmp_path_factory.mktemp("lab3-state"), f"c{os.getpid() % 10000}", "192.168.217.0/24"
    )
    try:
        driver.lab("up", "--hosts", "3", "--etcd-members", "3", "--underlay", driver.underlay)
        yield driver
    finally:
        driver.lab("down", check=False)


def test_one_etcd_member_down_and_the_lab_still_works(cluster_lab):
    lab = cluster_lab
    state = lab.state()
    assert len(state.etcd_endpoints) == 3
    etcd_on_host1 = next(p for p in state.processes if p.role == "etcd" and p.host == "host1")
    os.kill(etcd_on_host1.pid, signal.SIGTERM)

    lab.client("host3")
    lab.docker("host2", "run", "-d", "--name", "web-host2", lab.image("web"))
    web = lab.address_of("host2", "web-host2")
    wait_until(lambda: lab.resolve("host3") == {web}, 10, "web on host2 resolving on host3")
    wait_until(lambda: [r["address"] for r in lab.lookup("web")] == [web], 5, "lookup web")

    lab.docker("host2", "stop", "web-host2")
    wait_until(lambda: lab.resolve("host3") == set(), 5, "web leaving DNS with a member down")

"""Host-address mode for real: a published port registered at the host's underlay
address and reached there from another namespace, through Docker's DNAT rule.

The private dockerd of ``docker_host`` gets an "underlay": a veth to a client
namespace of this test's own (both ends inside namespaces, nothing in the
machine's own network). The agent runs with that address as ``--node-ip``, in
the default (internal) mode, as on a lab host; the containers ask for host mode
with the label ``discovery.address=host``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from discovery.settings import Settings, settings_as_environment
from labs.etcd_server import EtcdCluster
from tests.fixtures.docker import DockerHost
from tests.fixtures.etcd import settings_for
from tests.integration.registrator_support import (
    REPO,
    AgentProcess,
    addresses_of,
    expect,
    run_container,
    unique,
    wait_records,
)

pytestmark = [pytest.mark.docker, pytest.mark.root, pytest.mark.etcd]

# Both ends live in namespaces (the daemon's and the client's): no route of
# the machine changes.
HOST_IP = "192.168.247.1"
CLIENT_IP = "192.168.247.2"
WGET_TIMEOUT_S = 5


@dataclass(frozen=True)
class Underlay:
    host_ip: str
    client_netns: str


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def underlay(docker_cleanup: DockerHost) -> Iterator[Underlay]:
    """A client namespace joined to the daemon's namespace by a veth pair."""
    client = f"dlc-{uuid.uuid4().hex[:6]}"
    host_end, client_end = f"u{client[4:]}h", f"u{client[4:]}c"
    _ip("netns", "add", client)
    try:
        _ip("-n", client, "link", "set", "lo", "up")
        _ip("-n", client, "link", "add", client_end, "type", "veth", "peer", "name", host_end)
        _ip("-n", client, "link", "set", host_end, "netns", docker_cleanup.netns)
        _ip("-n", client, "addr", "add", f"{CLIENT_IP}/24", "dev", client_end)
        _ip("-n", client, "link", "set", client_end, "up")
        _ip("-n", docker_cleanup.netns, "addr", "add", f"{HOST_IP}/24", "dev", host_end)
        _ip("-n", docker_cleanup.netns, "link", "set", host_end, "up")
        yield Underlay(HOST_IP, client)
    finally:
        # Deleting the namespace deletes its veth end, and with it the peer.
        _ip("netns", "delete", client)


@pytest.fixture
def settings(etcd_server: EtcdCluster) -> Settings:
    return settings_for(etcd_server.endpoints, lease_ttl_s=3)


@pytest.fixture
def agent(
    docker_cleanup: DockerHost, underlay: Underlay, settings: Settings, tmp_path: Path
) -> Iterator[AgentProcess]:
    subnet_file = tmp_path / "subnet.env"
    subnet_file.write_text(f"FLANNEL_SUBNET={docker_cleanup.daemon.bip}\nFLANNEL_MTU=1450\n")
    process = AgentProcess(
        docker_cleanup.url,
        settings,
        tmp_path / "agent.log",
        extra_args=["--node-ip", underlay.host_ip, "--subnet-file", str(subnet_file)],
    ).start()
    try:
        process.wait_log("etcd in sync")
        yield process
    finally:
        process.stop()


def wget_from(underlay: Underlay, url: str) -> subprocess.CompletedProcess[str]:
    """GET url from the client namespace, bounded: one try, a few seconds."""
    return subprocess.run(
        ["ip", "netns", "exec", underlay.client_netns, "wget", "-q", "-O-", "--tries=1",
         f"--timeout={WGET_TIMEOUT_S}", url],
        capture_output=True, text=True, timeout=WGET_TIMEOUT_S * 3,
    )  # fmt: skip


def lookup_json(settings: Settings, service: str) -> list[dict]:
    env = {**os.environ, **settings_as_environment(settings), "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "discovery.cli", "lookup", service, "-o", "json"],
        capture_output=True, text=True, env=env, cwd=REPO, check=True,
    )  # fmt: skip
    return list(json.loads(done.stdout))


async def test_published_ports_are_registered_at_the_node_ip_and_reached_there(
    docker_cleanup: DockerHost, underlay: Underlay, settings: Settings, agent: AgentProcess
) -> None:
    client, web = docker_cleanup.client, docker_cleanup.images["web"]
    host_mode = {"discovery.address": "host"}
    # -p 18081:80 with the label; -P with the label; -p 127.0.0.1:18082:80 with the
    # label; and, without it, a container registered at its own address, as before.
    published = run_container(
        client, web, name=unique("pub"), command=["/bin/lab-web"],
        labels={**host_mode, "discovery.service": "pub"}, published={80: 18081},
    )  # fmt: skip
    anyport = client.containers.run(
        web, ["/bin/lab-web"], name=unique("anyport"), detach=True, publish_all_ports=True,
        labels={**host_mode, "discovery.service": "anyport"}, stop_signal="SIGKILL",
    )  # fmt: skip
    local = run_container(
        client, web, name=unique("local"), command=["/bin/lab-web"],
        labels={**host_mode, "discovery.service": "local"}, published={80: ("127.0.0.1", 18082)},
    )  # fmt: skip
    internal = run_container(
        client, web, name=unique("own"), command=["/bin/lab-web"],
        labels={"discovery.service": "own"}, published={80: 18083},
    )  # fmt: skip
    anyport.reload()
    chosen = int(anyport.attrs["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"])

    def name(container_id: str) -> str:
        return str(client.api.inspect_container(container_id)["Name"][1:])

    (own_ip,) = addresses_of(client, internal)
    await wait_records(
        settings,
        expect(
            ("pub", name(published), HOST_IP, 18081, "passing"),
            ("anyport", anyport.name, HOST_IP, chosen, "passing"),
            ("own", name(internal), own_ip, 80, "passing"),
        ),
    )
    (record,) = lookup_json(settings, "pub")
    assert (record["address"], record["port"], record["protocol"]) == (HOST_IP, 18081, "tcp")
    assert record["host"] == "host1"  # the lab host, by name

    # From another namespace, at the record's address and port: the container's page
    # (lab-web prints its hostname, the container id's first 12 characters).
    for container_id, port in ((published, 18081), (anyport.id, chosen)):
        got = wget_from(underlay, f"http://{HOST_IP}:{port}/")
        assert got.returncode == 0, got.stderr
        assert container_id[:12] in got.stdout

    # The loopback-only port is not registered, and the log says why, once.
    lines = [line for line in agent.log_text().splitlines() if "127.0.0.1:18082" in line]
    assert len(lines) == 1, agent.log_text()
    assert "level=warning" in lines[0] and f"container={name(local)}" in lines[0]
    assert "loopback" in lines[0]
    # ... and is not reachable from the other namespace indeed.
    assert wget_from(underlay, f"http://{HOST_IP}:18082/").returncode != 0


async def test_host_mode_without_a_published_port_registers_nothing_and_says_so_once(
    docker_cleanup: DockerHost, settings: Settings, agent: AgentProcess
) -> None:
    client, web = docker_cleanup.client, docker_cleanup.images["web"]
    bare = run_container(
        client, web, name=unique("bare"), command=["/bin/lab-web"],
        labels={"discovery.address": "host", "discovery.service": "bare"},
    )  # fmt: skip
    marker = run_container(
        client, web, name=unique("marker"), command=["/bin/lab-web"],
        labels={"discovery.service": "marker"},
    )  # fmt: skip
    (marker_ip,) = addresses_of(client, marker)
    name = str(client.api.inspect_container(bare)["Name"][1:])
    # The marker's record shows the agent has looked at both containers by now.
    await wait_records(
        settings,
        expect(("marker", str(client.api.inspect_container(marker)["Name"][1:]), marker_ip, 80,
                "passing")),
    )  # fmt: skip
    agent.wait_log(f"container={name}")
    lines = [line for line in agent.log_text().splitlines() if f"container={name}" in line]
    assert len(lines) == 1, agent.log_text()
    assert "no port published" in lines[0]

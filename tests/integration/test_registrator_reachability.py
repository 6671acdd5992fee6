"""Only addresses other hosts can reach are registered: the rule of desired.py, for real.

The agent runs as a process against the private dockerd of ``docker_host``
with a subnet.env whose FLANNEL_SUBNET is that daemon's default bridge, as a
lab host's is. A container on the default bridge is registered; one on a
user-defined bridge (a Compose project's network, say) is not, and the log
says which network and address, the lease, and what to do. A new lease in
subnet.env is followed without a restart.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from discovery.settings import Settings
from labs.etcd_server import EtcdCluster
from tests.fixtures.docker import DockerHost
from tests.fixtures.etcd import settings_for
from tests.integration.registrator_support import (
    AgentProcess,
    addresses_of,
    expect,
    run_container,
    unique,
    wait_records,
)

pytestmark = [pytest.mark.docker, pytest.mark.root, pytest.mark.etcd]

# A user-defined bridge outside the daemon's bip (172.31.250.1/24), as Docker's
# default pools give Compose: no other lab host has a route to it.
USER_SUBNET = "172.31.251.0/24"


def subnet_env(subnet: str) -> str:
    return f"FLANNEL_NETWORK=172.31.0.0/16\nFLANNEL_SUBNET={subnet}\nFLANNEL_MTU=1450\n"


@pytest.fixture
def settings(etcd_server: EtcdCluster) -> Settings:
    return settings_for(etcd_server.endpoints, lease_ttl_s=3)


@pytest.fixture
def agent(docker_cleanup: DockerHost, settings: Settings, tmp_path: Path) -> Iterator[AgentProcess]:
    subnet_file = tmp_path / "subnet.env"
    subnet_file.write_text(subnet_env(str(docker_cleanup.daemon.bip)))
    process = AgentProcess(
        docker_cleanup.url,
        settings,
        tmp_path / "agent.log",
        extra_args=["--subnet-file", str(subnet_file)],
    ).start()
    try:
        yield process
    finally:
        process.stop()


def _name(docker_host: DockerHost, container_id: str) -> str:
    return str(docker_host.client.api.inspect_container(container_id)["Name"][1:])


async def test_a_user_bridge_outside_the_lease_is_not_registered_and_the_log_says_why(
    docker_cleanup: DockerHost, settings: Settings, agent: AgentProcess, tmp_path: Path
) -> None:
    client, images = docker_cleanup.client, docker_cleanup.images
    network = client.networks.create(unique("app_default"), driver="bridge", ipam={
        "Config": [{"Subnet": USER_SUBNET}]
    })  # fmt: skip
    on_bridge = run_container(client, images["web"], name=unique("front"), command=["/bin/lab-web"])
    outside = client.containers.create(
        images["web"], ["/bin/lab-web"], name=unique("api"), network=network.name,
        stop_signal="SIGKILL",
    )  # fmt: skip
    outside.start()
    (bridge_ip,) = addresses_of(client, on_bridge)
    (outside_ip,) = addresses_of(client, outside.id)

    # Only the default bridge's container, whose address is in the lease.
    await wait_records(
        settings, expect(("web", _name(docker_cleanup, on_bridge), bridge_ip, 80, "passing"))
    )
    log = agent.log_text()
    lines = [line for line in log.splitlines() if f"{network.name}={outside_ip}" in line]
    assert len(lines) == 1, log  # once per container, not at every event
    line = lines[0]
    assert "level=warning" in line
    assert f"container={outside.name}" in line
    assert f"lease={docker_cleanup.subnet}" in line
    assert "docker network create --subnet" in line and "discovery.address=host" in line

    # Connected to the default bridge too, it is registered there, and only there.
    client.networks.get("bridge").connect(outside.id)
    addresses = addresses_of(client, outside.id)
    (outside_bridge_ip,) = [a for a in addresses if a != outside_ip]
    await wait_records(
        settings,
        expect(
            ("web", _name(docker_cleanup, on_bridge), bridge_ip, 80, "passing"),
            ("web", outside.name, outside_bridge_ip, 80, "passing"),
        ),
    )

    # A new lease in subnet.env is followed without a restart: now the user
    # bridge is the routed one and the default bridge is not.
    (tmp_path / "subnet.env").write_text(subnet_env("172.31.251.1/24"))
    await wait_records(settings, expect(("web", outside.name, outside_ip, 80, "passing")))

"""The command line of a lab host's dockerd (labs/dockerd.py): pure, no daemon run."""

from __future__ import annotations

from pathlib import Path

from discovery import flannel
from labs.dockerd import DockerDaemon


def test_a_lab_host_s_daemon_gets_its_lease_split_and_the_lab_s_dns(tmp_path: Path):
    options = flannel.docker_options(
        {"FLANNEL_SUBNET": "10.5.7.1/24", "FLANNEL_MTU": "1450", "FLANNEL_IPMASQ": "true"}
    )
    assert options.address_pool is not None
    daemon = DockerDaemon(
        name="lab-host1",
        state_dir=tmp_path,
        netns="lab-host1",
        bip=str(options.bip),
        mtu=options.mtu,
        dns=["10.5.7.1"],
        dns_search=["service.lab"],
        extra_args=[options.address_pool.flag()],
    )
    command = daemon.command("/usr/sbin/dockerd")
    assert command[:3] == ["nsenter", "--net=/run/netns/lab-host1", "--"]
    for flag in (
        "--bip=10.5.7.1/25",
        "--mtu=1450",
        "--default-address-pool=base=10.5.7.128/25,size=28",
        "--dns=10.5.7.1",
        "--dns-search=service.lab",
    ):
        assert flag in command, flag

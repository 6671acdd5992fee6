"""`discovery-agent run`: both halves in one process, and one SIGTERM stops both.

A namespace host on a bridge (the overlay tests' recipe) runs the agent as a
real host would, with the network half leasing a subnet and the services
half registering a container of the session's private dockerd.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import time

import docker.types
import pytest

from discovery import flannel, schema
from labs.etcd_server import etcdctl
from labs.testing.overlay_hosts import OverlayLab, agent_binary
from labs.testing.waiting import wait_until
from tests.integration.metrics_support import scrape_in
from tests.prerequisites import require_binary, require_root

pytestmark = [pytest.mark.root, pytest.mark.netns, pytest.mark.etcd, pytest.mark.docker]

NETWORK_PREFIX = "/agent-run/coreos.com/network"
RECORD_PREFIX = "/agent-run/skydns"
CONFIG = json.dumps({"Network": "10.219.0.0/16", "Backend": {"Type": "vxlan", "VNI": 1}})
METRICS_PORT = 9101  # on the namespace host's own loopback


def keys(lab: OverlayLab, prefix: str) -> list[str]:
    return etcdctl(lab.endpoints, "get", "--prefix", "--keys-only", prefix).split()


def test_run_starts_both_halves_and_sigterm_stops_both(docker_cleanup, tmp_path):
    require_root()
    require_binary("ip", "iptables", "nsenter")
    overlay = OverlayLab(
        underlay=ipaddress.IPv4Network("192.168.219.0/24"), prefix=f"ovr{os.getpid() % 10000}"
    )
    with overlay:
        etcdctl(overlay.endpoints, "put", flannel.config_key(NETWORK_PREFIX), CONFIG)
        host = overlay.add_host(1)
        log = (tmp_path / "agent.log").open("wb")
        agent = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{host.netns}", agent_binary(), "run",
             "--public-ip", str(host.address), "--iface", "eth0",
             "--subnet-file", str(host.subnet_file),
             "--docker-opts-file", str(host.docker_opts_file),
             "--state-dir", str(host.state_dir),
             "--docker-host", docker_cleanup.url, "--host-name", "runhost",
             "--etcd-endpoints", ",".join(overlay.endpoints),
             "--network-prefix", NETWORK_PREFIX, "--prefix", RECORD_PREFIX,
             "--lease-ttl", "5", "--metrics", f"127.0.0.1:{METRICS_PORT}"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        cleanups: list = []  # the container first, then its network
        try:
            # Network half: a lease and subnet.env.
            wait_until(host.subnet_file.exists, 15, "subnet.env written")
            assert len(keys(overlay, flannel.subnets_prefix(NETWORK_PREFIX))) == 1
            # Services half: the node record (its address from --public-ip) and a container.
            node_key = schema.node_key(RECORD_PREFIX, "lab", "runhost")
            wait_until(lambda: node_key in keys(overlay, node_key), 15, "the node record")
            node = schema.decode_node(etcdctl(overlay.endpoints, "get", "--print-value-only",
                                              node_key).strip())  # fmt: skip
            assert node.address == str(host.address)
            # The services half registers only addresses other hosts can reach, inside the
            # lease the network half just took: this daemon's bridge is not, so the
            # container joins a network made from a range of the lease.
            env = flannel.parse_subnet_env(host.subnet_file.read_text())
            lease = ipaddress.ip_network(env["FLANNEL_SUBNET"], strict=False)
            inside = list(lease.subnets(new_prefix=28))[-1]
            network = docker_cleanup.client.networks.create(
                f"runnet{os.getpid() % 10000}",
                ipam=docker.types.IPAMConfig(
                    pool_configs=[docker.types.IPAMPool(subnet=str(inside))]
                ),
            )
            cleanups.append(network.remove)
            container = docker_cleanup.client.containers.run(
                docker_cleanup.images["base"], ["sleep", "60"], detach=True,
                labels={"discovery.service": "runsvc"}, network=network.name,
            )  # fmt: skip
            cleanups.insert(0, lambda: container.remove(force=True))
            service = schema.service_prefix(RECORD_PREFIX, "lab", "runsvc")
            wait_until(lambda: keys(overlay, service), 10, "the container's records")

            # One /metrics for both halves: the node record and the container's were put.
            def written_twice():
                figures = scrape_in(host.netns, METRICS_PORT)
                return figures["discovery_agent_services_records_written_total"] >= 2 and figures

            figures = wait_until(written_twice, 10, "both records counted in /metrics")
            assert figures("discovery_agent_services_docker_events_total", action="start") == 1
            for half in ("services", "network"):
                assert figures[f"discovery_agent_{half}_etcd_reachable"] == 1
            assert figures["discovery_agent_services_lease_held"] == 1
            assert figures["discovery_agent_services_docker_reachable"] == 1
            assert figures["discovery_agent_network_subnet_lease_held"] == 1
            assert figures["discovery_agent_network_remote_leases"] == 0  # a host alone
            assert figures("discovery_agent_network_reconcile_passes_total", scope="full") >= 1

            agent.send_signal(signal.SIGTERM)
            stopped = time.monotonic()
            assert agent.wait(timeout=10) == 0
            assert time.monotonic() - stopped < 5
            # Services half: records revoked at once. Network half: lease kept (as flannel).
            assert keys(overlay, service) == []
            assert keys(overlay, node_key) == []
            assert len(keys(overlay, flannel.subnets_prefix(NETWORK_PREFIX))) == 1
        finally:
            if agent.poll() is None:
                agent.kill()
                agent.wait()
            log.close()
            for cleanup in cleanups:
                cleanup()

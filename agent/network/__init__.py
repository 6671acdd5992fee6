"""The network half of the host agent: flannel's etcd mode, rebuilt in Python.

``discovery-agent network --public-ip IP --iface IFACE`` leases a subnet for
this host from etcd (flannel's layout, ``/coreos.com/network/...``), writes
``subnet.env`` and Docker's options, and programs the VXLAN overlay (device,
neighbour, FDB and route entries for every other host) through pyroute2.

Layers, as in flannel: pure decisions (``subnets``, ``desired``, ``diff``,
``iptables_rules``, ``subnet_env``), and thin I/O shells around them
(``allocator`` over etcd, ``netlink`` over pyroute2, ``firewall`` over the
iptables binary, ``files``), wired together in ``agent``.
"""

from __future__ import annotations

import argparse
import ipaddress
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from agent.signals import stop_event
from discovery.errors import SettingsError
from discovery.flannel import DEFAULT_SUBNET_FILE
from discovery.settings import Settings

if TYPE_CHECKING:
    from agent.network.agent import NetworkOptions

DEFAULT_DOCKER_OPTS_FILE = "/run/flannel/docker"
DEFAULT_STATE_DIR = "/var/lib/discovery-agent/network"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from agent.network.agent import RECONCILE_INTERVAL_S, SUBNET_LEASE_TTL_S

    group = parser.add_argument_group("overlay network (flannel-style)")
    group.add_argument(
        "--public-ip",
        metavar="IP",
        help="this host's underlay address, published as PublicIP "
        "(default: the first IPv4 address of --iface)",
    )
    group.add_argument(
        "--iface",
        metavar="IFACE",
        help="underlay interface for VXLAN traffic (default: the one holding --public-ip, "
        "else the default route's)",
    )
    group.add_argument(
        "--subnet-file",
        default=DEFAULT_SUBNET_FILE,
        help=f"where to write subnet.env (default {DEFAULT_SUBNET_FILE})",
    )
    group.add_argument(
        "--docker-opts-file",
        help="where to write Docker's options: daemon.json if the name ends in .json, "
        "else mk-docker-opts's DOCKER_OPTS env file; '' for none (default: 'docker' "
        f"beside --subnet-file, so {DEFAULT_DOCKER_OPTS_FILE})",
    )
    group.add_argument(
        "--state-dir",
        metavar="DIR",
        default=DEFAULT_STATE_DIR,
        help=f"where the subnet and VTEP MAC are remembered (default {DEFAULT_STATE_DIR})",
    )
    group.add_argument(
        "--ip-masq",
        action="store_true",
        help="masquerade traffic leaving the overlay network (flannel's --ip-masq)",
    )
    group.add_argument(
        "--release-on-exit",
        action="store_true",
        help="on shutdown, give the lease back and delete the VXLAN device",
    )
    group.add_argument(
        "--reconcile-interval",
        metavar="SECONDS",
        type=float,
        default=RECONCILE_INTERVAL_S,
        help=f"seconds between full checks of the kernel entries "
        f"(default {RECONCILE_INTERVAL_S:g})",
    )
    group.add_argument(
        "--subnet-lease-ttl",
        metavar="SECONDS",
        type=int,
        default=SUBNET_LEASE_TTL_S,
        help=f"TTL in seconds of the etcd lease under the subnet lease "
        f"(default {SUBNET_LEASE_TTL_S}; flannel uses 24 h)",
    )
    group.add_argument(
        "--vxlan-device", metavar="NAME", help="name of the VXLAN device (default flannel.<VNI>)"
    )
    group.add_argument(
        "--no-iptables",
        action="store_true",
        help="do not set forwarding and masquerade rules",
    )


def options_from_args(args: argparse.Namespace) -> NetworkOptions:
    from agent.network.agent import NetworkOptions

    public_ip = None
    if getattr(args, "public_ip", None):
        try:
            public_ip = ipaddress.IPv4Address(args.public_ip)
        except ValueError as error:
            raise SettingsError(f"--public-ip {args.public_ip!r}: {error}") from error
    if args.reconcile_interval <= 0:
        raise SettingsError("--reconcile-interval must be a positive number of seconds")
    if args.subnet_lease_ttl < 5:
        raise SettingsError("--subnet-lease-ttl must be at least 5 seconds")
    subnet_file = Path(args.subnet_file)
    if args.docker_opts_file is None:  # beside subnet.env: one per host in the local lab
        docker_opts_file: Path | None = subnet_file.parent / "docker"
    else:
        docker_opts_file = Path(args.docker_opts_file) if args.docker_opts_file else None
    return NetworkOptions(
        public_ip=public_ip,
        iface=args.iface or None,
        subnet_file=subnet_file,
        docker_opts_file=docker_opts_file,
        state_dir=Path(args.state_dir),
        ip_masq=bool(args.ip_masq),
        release_on_exit=bool(args.release_on_exit),
        reconcile_interval_s=float(args.reconcile_interval),
        subnet_lease_ttl_s=int(args.subnet_lease_ttl),
        device=args.vxlan_device or None,
        iptables=not args.no_iptables,
    )


async def run(
    args: argparse.Namespace, settings: Settings, registry: CollectorRegistry | None = None
) -> None:
    """Run the network half until SIGTERM or SIGINT (the agent's one shared
    stop signal, agent.signals), then shut down cleanly (agent.network.agent).
    ``registry``: where its metrics go (agent/cli.py serves it for --metrics)."""
    from agent.network.agent import NetworkAgent
    from agent.network.metrics import NetworkMetrics
    from discovery.store import EtcdStore

    options = options_from_args(args)
    async with EtcdStore(settings) as store:
        agent = NetworkAgent(options, settings, store, metrics=NetworkMetrics(registry))
        await agent.run(stop_event())


__all__ = ["add_arguments", "run"]

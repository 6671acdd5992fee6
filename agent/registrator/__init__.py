"""The registrator half of the host agent: this host's containers, as service records in etcd.

    discovery-agent services --docker-host unix:///run/docker.sock --host-name host1

Every running container is registered within milliseconds of starting, under
the agent's etcd lease, and removed when it stops; if the agent dies, the
lease expires and its records go with it. The pieces:

* ``naming``, ``desired``, ``host_ports``, ``events``, ``reconcile``: pure
  decisions (which name, which records, which published ports other hosts
  reach, which event matters, what to write);
* ``docker_source``: the Docker API (list, inspect, events), the only module
  here that imports the Docker SDK;
* ``writer``: the etcd side, through the ``Store`` it is given (``run``
  gives it an ``EtcdStore``) and ``LeaseKeeper``;
* ``runner``: the loop joining them, one worker per container.

``add_arguments`` and ``run`` are what ``agent/cli.py`` calls.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
from pathlib import Path

from prometheus_client import CollectorRegistry

from agent.registrator.docker_source import DockerSource
from agent.registrator.host_ports import ADDRESS_MODES, HOST, INTERNAL, LABEL_ADDRESS
from agent.registrator.lease_file import DEFAULT_STATE_DIR, lease_file_path
from agent.registrator.metrics import ServicesMetrics
from agent.registrator.node_checks import keep_checking
from agent.registrator.runner import Options, Registrator
from agent.registrator.subnet_file import SubnetFile
from agent.registrator.writer import RecordWriter
from agent.signals import stop_event
from discovery.errors import DiscoveryError, SchemaError, SettingsError
from discovery.flannel import DEFAULT_SUBNET_FILE
from discovery.lease_keeper import LeaseKeeper
from discovery.metrics import parse_address
from discovery.schema import normalise_dns_label
from discovery.settings import Settings
from discovery.store import EtcdStore
from discovery.tasks import run_until_one_ends

log = logging.getLogger(__name__)

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
# A TEST-NET-1 address: "connecting" a UDP socket to it sends nothing, but
# makes the kernel pick the source address of the default route.
_ROUTE_PROBE_ADDRESS = ("192.0.2.1", 9)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("registrator (services)")
    group.add_argument(
        "--docker-host",
        metavar="URL",
        default=os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST,
        help=f"Docker daemon URL (default: $DOCKER_HOST, else {DEFAULT_DOCKER_HOST})",
    )
    group.add_argument(
        "--host-name",
        metavar="NAME",
        default=None,
        help="this lab host's name in records (default: the machine's hostname)",
    )
    group.add_argument(
        "--node-ip",
        metavar="IP",
        default=None,
        help="this host's own address for its node record (HOST.node.<domain>); "
        "default: --advertise-ip, else --public-ip, else the default route's source address",
    )
    group.add_argument(
        "--services-state-dir",
        metavar="DIR",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help="where the agent keeps its etcd lease ids, to tell its own records from "
        f"others' after a restart (default {DEFAULT_STATE_DIR})",
    )
    group.add_argument(
        "--check-dns",
        metavar="ADDR[:PORT]",
        default=None,
        help="this host's DNS server: ask it a question every few seconds and report "
        "in the node record whether it answers, as Docker's state is (default: not checked)",
    )
    group.add_argument(
        "--subnet-file",
        metavar="PATH",
        default=DEFAULT_SUBNET_FILE,
        help="this host's subnet.env, as the network half (or flannel) writes it: container "
        "addresses outside its FLANNEL_SUBNET cannot be reached from other hosts and are not "
        "registered; read at start and again when it changes; a missing file registers "
        f"every address; '' turns the rule off (default {DEFAULT_SUBNET_FILE})",
    )
    group.add_argument(
        "--address-mode",
        choices=ADDRESS_MODES,
        default=None,
        help=f"which address a container is registered at, unless its label {LABEL_ADDRESS} "
        f"says otherwise: '{INTERNAL}', its own addresses inside this host's lease "
        f"(registrator -internal), or '{HOST}', this host's address and the container's "
        "published ports (registrator without -internal); default "
        f"'{HOST}' with --advertise-ip, else '{INTERNAL}'",
    )
    group.add_argument(
        "--advertise-ip",
        metavar="IP",
        default=None,
        help="the address host-address mode registers (default: --node-ip, else the "
        "default route's source address); given alone, it makes host-address mode the "
        "default, as it did before --address-mode",
    )


def host_name_from(value: str | None) -> str:
    raw = value if value else socket.gethostname().split(".", 1)[0]
    try:
        return normalise_dns_label(raw)
    except SchemaError as error:
        raise SettingsError(f"--host-name: {error}") from error


def _checked_ip(value: str, flag: str = "--advertise-ip") -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError as error:
        raise SettingsError(f"{flag}: {value!r} is not an IP address") from error


def _dns_address(text: str) -> tuple[str, int]:
    try:
        return parse_address(text, 53)
    except ValueError as error:
        raise SettingsError(f"--check-dns: {text!r}: {error}") from error


def guess_host_address() -> str | None:
    """This machine's address on its default route, or None when it has none."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(_ROUTE_PROBE_ADDRESS)
        address = str(probe.getsockname()[0])
        if not ipaddress.ip_address(address).is_unspecified:
            return address
    return None


async def run(
    args: argparse.Namespace, settings: Settings, registry: CollectorRegistry | None = None
) -> None:
    """Run until SIGTERM or SIGINT, then remove this host's records at once.
    ``registry``: where its metrics go (agent/cli.py serves it for --metrics)."""
    node = host_name_from(getattr(args, "host_name", None))
    advertise_ip = _checked_ip(args.advertise_ip) if args.advertise_ip else None
    address_mode = getattr(args, "address_mode", None) or (HOST if advertise_ip else INTERNAL)
    node_ip = getattr(args, "node_ip", None) or getattr(args, "public_ip", None)
    host_address = (
        advertise_ip
        or (_checked_ip(node_ip, "--node-ip") if node_ip else None)
        or guess_host_address()
    )
    if host_address is None:
        log.warning(
            "no host address found (no --node-ip, --advertise-ip or default route): "
            "no node record is written",
            extra={"fields": {"node": node}},
        )
    dns_check = _dns_address(args.check_dns) if getattr(args, "check_dns", None) else None
    metrics = ServicesMetrics(registry)
    store = EtcdStore(settings)
    lease_file = lease_file_path(args.services_state_dir, node, args.docker_host)
    writer = RecordWriter(store, settings, node, host_address, lease_file, metrics=metrics)
    keeper = LeaseKeeper(
        store, settings.lease_ttl_s, writer.on_new_lease, name=f"services {node}", etcd=metrics.etcd
    )
    metrics.lease_held.set_function(lambda: keeper.lease_id is not None)
    docker = DockerSource(args.docker_host)
    subnet_path = getattr(args, "subnet_file", DEFAULT_SUBNET_FILE)
    # Read in host-address mode too: a container labelled discovery.address=internal
    # is judged by the lease.
    subnet_file = SubnetFile(Path(subnet_path)) if subnet_path else None
    if subnet_file is not None:
        subnet_file.refresh()  # before the first listing, so it already follows the rule
    registrator = Registrator(
        docker,
        writer,
        settings,
        Options(
            node=node,
            advertise_ip=advertise_ip,
            host_address=host_address,
            subnet_file=subnet_file,
            address_mode=address_mode,
        ),
        metrics=metrics,
    )
    log.info(
        "registrator starting",
        extra={
            "fields": {
                "node": node,
                "docker": args.docker_host,
                "address_mode": address_mode,
                "host_address": advertise_ip or host_address or "-",
                "etcd": ",".join(settings.etcd_endpoints),
                "lease_ttl_s": settings.lease_ttl_s,
                "subnet_file": str(subnet_file.path) if subnet_file else "-",
            }
        },
    )

    stop = stop_event()
    # These loops only end by failing; run_until_one_ends says which and why.
    loops = {
        "lease-keeper": keeper.run(),
        "etcd-writer": writer.run(),
        "docker-follower": registrator.follow_docker(),
        "node-checks": keep_checking(
            writer, lambda: registrator.docker_connected, dns_check, settings.domain
        ),
    }
    if subnet_file is not None:
        loops["subnet-file"] = registrator.follow_subnet_file()
    serving = asyncio.create_task(run_until_one_ends(loops), name="services")
    stopping = asyncio.create_task(stop.wait(), name="stop-signal")
    try:
        await asyncio.wait([serving, stopping], return_when=asyncio.FIRST_COMPLETED)
        if serving.done():
            serving.result()
    finally:
        for task in (serving, stopping):
            task.cancel()
        await asyncio.gather(serving, stopping, return_exceptions=True)
        await registrator.close()
        # Revoking the lease deletes every record under it in one request.
        try:
            await asyncio.wait_for(keeper.revoke(), timeout=settings.request_timeout_s + 1)
        except (DiscoveryError, TimeoutError) as error:
            log.warning(
                "could not revoke the lease; records expire with it",
                extra={"fields": {"error": str(error), "ttl_s": settings.lease_ttl_s}},
            )
        log.info("registrator stopped", extra={"fields": {"node": node}})
        docker.close()
        await store.close()


__all__ = ["add_arguments", "run"]

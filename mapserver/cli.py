"""`discoveryctl map`: serve the lab's catalog in Consul's HTTP API shapes.

    discoveryctl map [--listen ADDR:PORT] [--datacenter NAME] [--etcd-endpoints URLS] ...

Serves GET /v1/catalog/services, /v1/catalog/service/NAME,
/v1/health/service/NAME[?passing], /v1/catalog/nodes (blocking queries with
?index=N&wait=10s), fed by one etcd watch, and the live map page at / (its
model at /map/state, server-sent events at /map/events). Prints the URLs it
serves (opens nothing) and runs until SIGINT or SIGTERM. Exit status: 0, 1
when the address cannot be bound, 2 for a usage or settings error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from discovery.cli import EXIT_NOT_FOUND, EXIT_USAGE, Parser
from discovery.errors import DiscoveryError
from discovery.logs import LEVELS, setup_logging
from discovery.metrics import parse_address
from discovery.settings import Settings, add_settings_flags, settings_from_args
from mapserver.server import DEFAULT_LISTEN, MapOptions, MapServer

DEFAULT_LISTEN_TEXT = f"{DEFAULT_LISTEN[0]}:{DEFAULT_LISTEN[1]}"


def _listen(text: str) -> tuple[str, int]:
    try:
        return parse_address(text, DEFAULT_LISTEN[1])
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r}: expected ADDR:PORT ({error})") from error


def add_map_arguments(parser: argparse.ArgumentParser) -> None:
    """The options `discoveryctl map` and `discoveryctl lab map` share."""
    parser.add_argument(
        "--listen",
        metavar="ADDR[:PORT]",
        type=_listen,
        default=DEFAULT_LISTEN,
        help=f"where to serve (default {DEFAULT_LISTEN_TEXT}, Consul's port; "
        "port 0 picks a free one)",
    )
    parser.add_argument(
        "--datacenter", metavar="NAME", help="the datacenter name it answers (default: the domain)"
    )
    parser.add_argument("--log-level", choices=LEVELS, default="warning")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="discoveryctl map",
        description="serve the lab's catalog over HTTP in Consul's API shapes "
        "(for Prometheus's consul_sd_configs, consul-template, curl)",
    )
    add_map_arguments(parser)
    add_settings_flags(parser)
    return parser


async def serve(settings: Settings, options: MapOptions) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with MapServer(settings, options) as server:
        print(
            f"serving the catalog of {','.join(settings.etcd_endpoints)} at "
            f"{server.url}/v1/catalog/services (Ctrl-C stops)\n"
            f"live map: {server.url}/",
            flush=True,
        )
        await stop.wait()


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Serve until stopped; the exit status."""
    setup_logging(args.log_level)
    options = MapOptions(listen=args.listen, datacenter=args.datacenter)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(settings, options))
    except OSError as error:
        print(f"discoveryctl map: {error}", file=sys.stderr)
        return EXIT_NOT_FOUND
    return 0


def main(argv: list[str]) -> int:
    """`discoveryctl map ARGS` (entry point discoveryctl.commands)."""
    args = build_parser().parse_args(argv)
    try:
        settings = settings_from_args(args)
    except DiscoveryError as error:
        print(f"discoveryctl map: {error}", file=sys.stderr)
        return EXIT_USAGE
    return run(settings, args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""discovery-dns: the lab's DNS server.

    discovery-dns [--listen ADDR:PORT ...] [--upstream ADDR:PORT ...] [--metrics ADDR:PORT]
                  [--etcd-endpoints URLS] [--prefix P] [--domain lab] [--record-ttl S] ...

Answers ``web.service.lab`` and the rest of the lab domain from an in-memory
catalog that an etcd watch keeps current, and forwards other names to the
``--upstream`` resolvers (REFUSED when there are none). Runs until SIGINT or
SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from discovery.errors import DiscoveryError
from discovery.logs import LEVELS, setup_logging
from discovery.settings import Settings, add_settings_flags, settings_from_args
from discovery.store import EtcdStore
from dnsserver.forwarder import FORWARD_TIMEOUT_S
from dnsserver.server import MAX_TCP_CONNECTIONS, TCP_IDLE_TIMEOUT_S, parse_listen
from dnsserver.service import DnsOptions, DnsService

log = logging.getLogger("dns.cli")
DEFAULT_LISTEN = "127.0.0.1:53"


def _address(default_port: int) -> object:
    def parse(text: str) -> tuple[str, int]:
        try:
            return parse_listen(text, default_port)
        except ValueError as error:
            raise argparse.ArgumentTypeError(f"{text!r}: expected IP:PORT ({error})") from error

    return parse


def _positive(kind: type[int] | type[float]) -> object:
    def parse(text: str) -> float | int:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text!r}: must be positive")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="discovery-dns", description="DNS server for the lab domain, fed from etcd"
    )
    parser.add_argument(
        "--listen",
        metavar="ADDR[:PORT]",
        action="append",
        type=_address(53),  # type: ignore[arg-type]
        help=f"address to answer on, UDP and TCP (repeatable; default {DEFAULT_LISTEN}; "
        "port 0 picks a free port)",
    )
    parser.add_argument(
        "--upstream",
        metavar="ADDR[:PORT]",
        action="append",
        default=[],
        type=_address(53),  # type: ignore[arg-type]
        help="resolver for names outside the domain (repeatable; none: REFUSED)",
    )
    parser.add_argument(
        "--forward-timeout",
        metavar="SECONDS",
        type=_positive(float),  # type: ignore[arg-type]
        default=FORWARD_TIMEOUT_S,
        help=f"seconds to wait for each upstream (default {FORWARD_TIMEOUT_S:g})",
    )
    parser.add_argument(
        "--tcp-idle-timeout",
        metavar="SECONDS",
        type=_positive(float),  # type: ignore[arg-type]
        default=TCP_IDLE_TIMEOUT_S,
        help=f"close a TCP connection idle this many seconds (default {TCP_IDLE_TIMEOUT_S:g})",
    )
    parser.add_argument(
        "--max-tcp-connections",
        metavar="N",
        type=_positive(int),  # type: ignore[arg-type]
        default=MAX_TCP_CONNECTIONS,
        help=f"TCP connections served at once (default {MAX_TCP_CONNECTIONS})",
    )
    parser.add_argument(
        "--metrics",
        metavar="ADDR[:PORT]",
        type=_address(9153),  # type: ignore[arg-type]
        help="serve /metrics (Prometheus text) on this address, e.g. 127.0.0.1:9153",
    )
    parser.add_argument("--log-level", choices=LEVELS, default="info")
    add_settings_flags(parser)
    return parser


def options_from_args(args: argparse.Namespace) -> DnsOptions:
    return DnsOptions(
        listen=tuple(args.listen or [parse_listen(DEFAULT_LISTEN)]),
        upstreams=tuple(args.upstream),
        forward_timeout_s=args.forward_timeout,
        idle_timeout_s=args.tcp_idle_timeout,
        max_tcp_connections=args.max_tcp_connections,
        metrics=args.metrics,
    )


async def serve(settings: Settings, options: DnsOptions) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with EtcdStore(settings) as store, DnsService(settings, options, store):
        await stop.wait()
    log.info("dns: stopped")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    try:
        settings = settings_from_args(args)
        options = options_from_args(args)
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(settings, options))
    except DiscoveryError as error:
        print(f"discovery-dns: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"discovery-dns: cannot listen: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

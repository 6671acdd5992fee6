"""discovery-agent: the per-host agent.

    discovery-agent services --docker-host URL --host-name NAME   registrator half
    discovery-agent network --public-ip IP --iface IFACE           flannel half
    discovery-agent run ...                                       both halves
    ... --metrics 127.0.0.1:9101                                  GET /metrics there

Each half lives in its own package (agent.registrator, agent.network) and
offers ``add_arguments(parser)`` and ``async run(args, settings, registry)``;
this file only wires them to the command line, and serves the halves'
metrics (one registry, one endpoint, also under ``run``) for ``--metrics``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from types import ModuleType

from discovery.errors import DiscoveryError
from discovery.logs import LEVELS, setup_logging
from discovery.metrics import new_registry, parse_address, serve_metrics
from discovery.settings import add_settings_flags, settings_from_args

HALVES = {
    "services": ("agent.registrator", "register this host's containers in etcd"),
    "network": ("agent.network", "lease a subnet and program the VXLAN overlay"),
}


def _half(name: str) -> ModuleType:
    return importlib.import_module(HALVES[name][0])


def _metrics_address(text: str) -> tuple[str, int]:
    try:
        return parse_address(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r}: expected IP:PORT ({error})") from error


def _add_metrics_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metrics",
        metavar="ADDR:PORT",
        type=_metrics_address,
        help="serve /metrics (Prometheus text) on this address, e.g. 127.0.0.1:9101 "
        "(port 0: a free one, logged); default: none",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="discovery-agent", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (_, help_text) in HALVES.items():
        sub = commands.add_parser(name, help=help_text)
        _half(name).add_arguments(sub)
        add_settings_flags(sub)
        sub.add_argument("--log-level", choices=LEVELS, default="info")
        _add_metrics_flag(sub)
    run = commands.add_parser("run", help="run both halves", conflict_handler="resolve")
    for name in HALVES:
        _half(name).add_arguments(run)
    add_settings_flags(run)
    run.add_argument("--log-level", choices=LEVELS, default="info")
    _add_metrics_flag(run)
    return parser


async def _run(args: argparse.Namespace) -> None:
    settings = settings_from_args(args)
    names = list(HALVES) if args.command == "run" else [args.command]
    registry, server = None, None
    if args.metrics is not None:  # first: a taken port ends the agent before anything starts
        registry = new_registry()
        try:
            server = await serve_metrics(registry, *args.metrics)
        except OSError as error:
            raise DiscoveryError(f"--metrics: {error}") from error
    try:
        # network first: on a real host Docker needs the lease before it starts.
        halves = [_half(name).run(args, settings, registry) for name in reversed(names)]
        await asyncio.gather(*halves)
    finally:
        if server is not None:
            await server.close()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    try:
        asyncio.run(_run(args))
    except KeyboardInterrupt:
        return 130
    except DiscoveryError as error:
        print(f"discovery-agent: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

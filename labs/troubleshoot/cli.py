"""`discoveryctl explain NAME`: follow a name from a container's resolver to the packet.

    discoveryctl explain web                     from the lab's active host (host1)
    discoveryctl explain web --from host3 --type SRV
    discoveryctl explain web -o json             the same facts as JSON
    discoveryctl explain web --trace             and catch one probe packet on the wire

Every step is read from the lab as it is now: a new container's resolv.conf,
a real DNS query, etcd's records and leases, the host's kernel tables, and with
--trace a real packet. Exit codes: 0 explained; 1 the name has no answer (or
the lab is not up); 2 bad command line or unknown host; 3 etcd unreachable.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from discovery.cli import EXIT_NOT_FOUND, EXIT_UNREACHABLE, EXIT_USAGE, Parser
from discovery.errors import DiscoveryError, EtcdUnavailable
from discovery.store import EtcdStore
from labs.troubleshoot import explanation, facts, render
from labs.troubleshoot.gather import gather
from labs.troubleshoot.hosts import UnknownHost
from labs.troubleshoot.lab_access import FoundLab, add_lab_name, find_lab


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="discoveryctl explain", description=__doc__.split("\n")[0])
    parser.add_argument("name", help="a name as a container would use it: web, web.service.lab")
    parser.add_argument(
        "--from",
        dest="host",
        metavar="HOST",
        help="the lab host whose containers ask (default: the active host)",
    )
    parser.add_argument("--type", dest="qtype", choices=("A", "SRV"), default="A", type=str.upper)
    parser.add_argument(
        "-o",
        "--output",
        choices=("text", "json", "facts"),
        default="text",
        help="text (default), json (the same facts), facts (the raw facts gathered, for tools)",
    )
    parser.add_argument(
        "--trace",
        action="store_true",
        help="probe each address from a container and capture one packet "
        "on the host's wire (tcpdump)",
    )
    add_lab_name(parser)
    return parser


def no_answer(result: dict) -> str:
    tried = ", ".join(f"{a['qname']} {a['status']}" for a in result["dns"]["asked"])
    if not result["resolver"]["ok"]:
        return (
            f"cannot read the resolv.conf of a new container on {result['from']}: "
            f"{result['resolver']['problem']}"
        )
    server = ", ".join(result["resolver"]["nameservers"]) or "none in resolv.conf"
    return (
        f"{result['name']!r} has no {result['type']} answer from {result['from']}'s DNS server "
        f"{server} ({tried or 'nothing asked'})"
    )


async def _explain(args: argparse.Namespace, found: FoundLab) -> dict:
    lab, settings = found.hosts, found.settings
    host = lab.host(args.host)
    async with EtcdStore(settings) as store:
        gathered = await gather(
            lab, host, args.name, args.qtype, store, settings, found.probe_image, trace=args.trace
        )
    if args.output == "facts":
        return {"facts": gathered}
    return explanation.explain(gathered)


def main(argv: list[str]) -> int:
    """`discoveryctl explain ARGS` (entry point discoveryctl.commands)."""
    args = build_parser().parse_args(argv)
    try:
        found = find_lab(args.lab)
        if found.hosts.kind == "local" and os.geteuid() != 0:
            raise UnknownHost("explain reads the local lab's namespaces: it needs root (sudo -i)")
        found.hosts.host(args.host)  # an unknown host is one line, before anything runs
        result = asyncio.run(_explain(args, found))
    except UnknownHost as error:
        print(f"discoveryctl explain: {error}", file=sys.stderr)
        return EXIT_USAGE
    except EtcdUnavailable as error:
        said = str(error) if str(error).startswith("etcd") else f"etcd unreachable: {error}"
        print(f"discoveryctl explain: {said}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except DiscoveryError as error:
        print(f"discoveryctl explain: {error}", file=sys.stderr)
        return EXIT_NOT_FOUND
    except KeyboardInterrupt:
        return 130
    if "facts" in result:
        print(facts.to_json(result["facts"]))
        return 0
    if not result["dns"]["answered"]:
        print(f"discoveryctl explain: {no_answer(result)}", file=sys.stderr)
        return EXIT_NOT_FOUND
    print(render.render_json(result) if args.output == "json" else render.render_text(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

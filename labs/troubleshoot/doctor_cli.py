"""`discoveryctl doctor [HOST]`: check the lab and each host, one line per check.

    discoveryctl doctor              the whole lab
    discoveryctl doctor host2        the lab-wide checks and host2's
    discoveryctl doctor -o json      the same verdicts as JSON

Each check says PASS, WARN or FAIL, the evidence it read, and for a WARN or
a FAIL what to do about it. Exit codes: 0 no FAIL; 1 a FAIL (or the lab is not
up); 2 bad command line or unknown host; 3 etcd unreachable, so nothing else
could be checked.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import textwrap

from discovery.cli import EXIT_NOT_FOUND, EXIT_UNREACHABLE, EXIT_USAGE, Parser
from discovery.errors import DiscoveryError
from discovery.store import EtcdStore
from labs.troubleshoot import doctor
from labs.troubleshoot.doctor_gather import gather_lab
from labs.troubleshoot.hosts import UnknownHost
from labs.troubleshoot.lab_access import FoundLab, add_lab_name, find_lab

WIDTH = 100


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="discoveryctl doctor", description=__doc__.split("\n")[0])
    parser.add_argument("host", nargs="?", help="check only this host (and the lab as a whole)")
    parser.add_argument("-o", "--output", choices=("text", "json"), default="text")
    add_lab_name(parser)
    return parser


async def _diagnose(found: FoundLab, host: str | None) -> dict:
    settings = found.settings
    async with EtcdStore(settings) as store:
        facts = await gather_lab(found.hosts, found.state, settings, store, only=host)
    result = doctor.to_json(doctor.diagnose(facts), facts.seconds)
    result["etcd_reachable"] = facts.etcd.reachable
    result["problems"] = {h.name: h.problems for h in facts.hosts if h.problems}
    return result


def render_text(result: dict) -> str:
    lines = []
    for verdict in result["checks"]:
        head = f"{verdict['status']:<4}  {verdict['host']:<6} {verdict['check']:<15} "
        body = textwrap.wrap(
            verdict["evidence"], WIDTH, initial_indent=head, subsequent_indent=" " * len(head)
        )
        if verdict["status"] != doctor.PASS and verdict["fix"]:
            body += textwrap.wrap(
                "fix: " + verdict["fix"], WIDTH,
                initial_indent=" " * len(head), subsequent_indent=" " * (len(head) + 5),
            )  # fmt: skip
        lines += body
    for host, problems in result["problems"].items():
        lines += [f"note  {host:<6} could not read: {problem}" for problem in problems]
    passes = len(result["checks"]) - result["fails"] - result["warns"]
    lines.append(
        f"{result['fails']} FAIL, {result['warns']} WARN, {passes} PASS ({result['seconds']:.1f} s)"
    )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """`discoveryctl doctor ARGS` (entry point discoveryctl.commands)."""
    args = build_parser().parse_args(argv)
    try:
        found = find_lab(args.lab)
        if found.hosts.kind == "local" and os.geteuid() != 0:
            raise DiscoveryError("doctor reads the local lab's namespaces: it needs root (sudo -i)")
        if args.host:
            found.hosts.host(args.host)  # an unknown host is one line, before anything runs
        result = asyncio.run(_diagnose(found, args.host))
    except UnknownHost as error:
        print(f"discoveryctl doctor: {error}", file=sys.stderr)
        return EXIT_USAGE
    except DiscoveryError as error:
        print(f"discoveryctl doctor: {error}", file=sys.stderr)
        return EXIT_NOT_FOUND
    except KeyboardInterrupt:
        return 130
    print(json.dumps(result, indent=2) if args.output == "json" else render_text(result))
    if not result["etcd_reachable"]:
        return EXIT_UNREACHABLE
    return EXIT_NOT_FOUND if result["fails"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

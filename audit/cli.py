"""`discoveryctl audit --docker-host URL`: audit the containers of any Docker daemon.

    discoveryctl audit [--docker-host URL] [--container NAME] [-o json] [--fail-on warn|fail]

Exit status: 0, or 1 when a finding is at least as bad as --fail-on, or 3 when
a daemon did not answer, or 2 for a usage error.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from audit.engine import audit_host
from audit.report import exit_code, render_json, render_text
from audit.rules import HostAudit
from discovery.cli import Parser


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """The options `discoveryctl audit` and `discoveryctl lab audit` share."""
    parser.add_argument(
        "--container",
        metavar="NAME",
        help="audit only the containers of this name, or id prefix, or name pattern ('ex09-*')",
    )
    parser.add_argument("-o", "--output", choices=("text", "json"), default="text")
    parser.add_argument(
        "--fail-on",
        choices=("warn", "fail"),
        default=None,
        help="exit 1 when a finding is this bad or worse (default: exit 0)",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="text: list PASS and N/A rows too"
    )
    parser.add_argument(
        "--no-files",
        action="store_true",
        help="do not export filesystems to look for SUID/SGID files (rule cis-4.8 says INFO)",
    )


def report(hosts: Sequence[HostAudit], args: argparse.Namespace) -> int:
    """Print the audit as asked; the exit status. With JSON, the one-line errors go to stderr."""
    if args.output == "json":
        for host in hosts:
            for line in ([host.error] if host.error else []) + host.notes:
                print(f"discoveryctl: {host.host}: {line}", file=sys.stderr)
        print(render_json(hosts))
    else:
        print(render_text(hosts, verbose=args.verbose))
    return exit_code(hosts, args.fail_on)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="discoveryctl audit",
        description="a container security audit (CIS Docker Benchmark v1.6.0 sections 4 and 5, "
        "and what docker-bench-security misses) of one Docker daemon",
    )
    parser.add_argument(
        "--docker-host",
        metavar="URL",
        default=os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock"),
        help="the daemon (default: $DOCKER_HOST, else unix:///var/run/docker.sock)",
    )
    add_output_arguments(parser)
    return parser


def main(argv: list[str]) -> int:
    """`discoveryctl audit ARGS` (entry point discoveryctl.commands)."""
    args = build_parser().parse_args(argv)
    host = audit_host(
        args.docker_host,
        args.docker_host,
        container=args.container,
        scan_files=not args.no_files,
    )
    return report([host], args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

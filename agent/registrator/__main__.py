"""``python -m agent.registrator``: the registrator half alone.

Same flags and behaviour as ``discovery-agent services``; useful where the
network half is not installed or not wanted (a host without VXLAN, a test).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import agent.registrator
from discovery.errors import DiscoveryError
from discovery.logs import LEVELS, setup_logging
from discovery.settings import add_settings_flags, settings_from_args


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m agent.registrator", description=agent.registrator.__doc__
    )
    agent.registrator.add_arguments(parser)
    add_settings_flags(parser)
    parser.add_argument("--log-level", choices=LEVELS, default="info")
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    try:
        asyncio.run(agent.registrator.run(args, settings_from_args(args)))
    except KeyboardInterrupt:
        return 130
    except DiscoveryError as error:
        print(f"discovery-agent services: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The node's own checks, as Consul's agent keeps them: is Docker reachable, does DNS answer.

The services agent is the one process on a host that writes to etcd for the
host as a whole, so it carries these in its node record (``Node.checks``):
the map and doctor then see, from etcd alone, whether each host's Docker
daemon and DNS server are alive. A change of state is logged once, and
reaches etcd with the next write of the node record (``set_node_checks``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from agent.registrator.dns_check import dns_answers
from agent.registrator.writer import RecordWriter

log = logging.getLogger(__name__)

# How often the checks run: a dead DNS server shows on the map within this.
CHECK_INTERVAL_S = 2.0


async def keep_checking(
    writer: RecordWriter,
    docker_reachable: Callable[[], bool],
    dns: tuple[str, int] | None,
    domain: str,
) -> None:
    """Run the checks every CHECK_INTERVAL_S until cancelled."""
    problems: dict[str, str] | None = None  # the last results; None before the first
    while True:
        found = {"docker": "" if docker_reachable() else "the Docker daemon does not answer"}
        if dns is not None:
            found["dns"] = await dns_answers(dns[0], dns[1], domain)
        for name, problem in found.items():
            if problems is None:
                # At start-up the DNS server may simply not be up yet: not a warning.
                log.info("check %s: %s", name, f"critical: {problem}" if problem else "passing")
            elif problem and problems.get(name) != problem:
                log.warning("check %s: critical: %s", name, problem)
            elif not problem and problems.get(name):
                log.info("check %s: passing again", name)
        problems = found
        writer.set_node_checks(
            {name: "critical" if problem else "passing" for name, problem in found.items()}
        )
        await asyncio.sleep(CHECK_INTERVAL_S)


__all__ = ["CHECK_INTERVAL_S", "keep_checking"]

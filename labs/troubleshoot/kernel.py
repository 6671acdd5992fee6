"""What a host's kernel holds, read with iproute2's JSON output (``ip -j``, ``bridge -j``).

I/O, thin: the one module that runs ``ip`` and ``bridge``. It reads, in the
host's namespace, the same tables a learner would look at by hand; which
entries matter is decided by ``explanation.py`` (pure), which this calls only
to know what to read next (the route's device, the neighbour's MAC).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from labs.troubleshoot import explanation
from labs.troubleshoot.facts import KernelFacts
from labs.troubleshoot.host_shell import run_on
from labs.troubleshoot.hosts import LabHost


async def read_json(host: LabHost, argv: list[str], problems: list[str]) -> list[dict[str, Any]]:
    """An ``ip -j`` or ``bridge -j`` table on the host; [] (and a line in ``problems``)
    when the command fails or prints something other than JSON."""
    result = await run_on(host, argv)
    if not result.ok:
        problems.append(f"{' '.join(argv)}: {result.stderr.strip() or 'failed'}")
        return []
    try:
        data = json.loads(result.stdout or "[]")
    except json.JSONDecodeError:
        problems.append(f"{' '.join(argv)}: not JSON")
        return []
    return data if isinstance(data, list) else [data]


async def kernel_facts(host: LabHost, address: str) -> KernelFacts:
    problems: list[str] = []
    route_get = await read_json(host, ["ip", "-j", "route", "get", address], problems)
    facts = KernelFacts(address, route_get, problems=problems)
    device = explanation.route_device(route_get)
    if not device:
        return facts
    facts.routes, facts.link, facts.neighbours = await asyncio.gather(
        read_json(host, ["ip", "-j", "route", "show"], problems),
        read_json(host, ["ip", "-j", "-d", "link", "show", "dev", device], problems),
        read_json(host, ["ip", "-j", "neigh", "show", "dev", device], problems),
    )
    kind = explanation.link_kind(facts.link)
    if kind == "vxlan":
        facts.fdb = await read_json(host, ["bridge", "-j", "fdb", "show", "dev", device], problems)
        remote = explanation.vxlan_destination(facts)
        local = explanation.vxlan_info(facts.link).get("local", "")
        if remote:
            argv = ["ip", "-j", "route", "get", remote, *(["from", local] if local else [])]
            facts.underlay_route_get = await read_json(host, argv, problems)
            underlay_device = explanation.route_device(facts.underlay_route_get)
            if underlay_device:
                facts.underlay_link = await read_json(
                    host, ["ip", "-j", "link", "show", "dev", underlay_device], problems
                )
    elif kind == "bridge":
        facts.fdb = await read_json(host, ["bridge", "-j", "fdb", "show", "br", device], problems)
    return facts

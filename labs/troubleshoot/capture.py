"""One packet caught on a host's wire while a probe container sends it (tcpdump).

I/O, thin: the one module that runs tcpdump. It starts tcpdump in the host's
namespace (or on its VM) on the interface the packet leaves by, bounded by
``-c 1`` and a deadline, waits until tcpdump says it is listening, then lets
the probe go (again, up to a few times, should the first packet slip past
before the filter was attached). The pcap bytes come back as they are;
``pcap.py`` takes them apart, and a local ``tcpdump -r -`` prints them the
way a learner would see them.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import Awaitable, Callable

from labs.troubleshoot.facts import CommandOutput, TraceFacts
from labs.troubleshoot.host_shell import run_command
from labs.troubleshoot.hosts import LabHost

LISTENING_WITHIN_S = 5.0
PACKET_WITHIN_S = 3.0  # after each probe
PROBES = 3


def tcpdump_argv(interface: str, capture_filter: str) -> list[str]:
    # -U: write the packet out as soon as it is caught; -c 1: then stop.
    return ["tcpdump", "-i", interface, "-n", "-c", "1", "-U", "-w", "-", capture_filter]


async def capture_while(
    host: LabHost,
    address: str,
    interface: str,
    capture_filter: str,
    probe: Callable[[], Awaitable[CommandOutput]],
    decode_as_vxlan: bool,
) -> TraceFacts:
    started = time.monotonic()
    trace = TraceFacts(address, interface, capture_filter, "", "", None)
    process = await asyncio.create_subprocess_exec(
        *host.command(tcpdump_argv(interface, capture_filter)),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    try:
        try:
            await asyncio.wait_for(_listening(process.stderr), LISTENING_WITHIN_S)
        except TimeoutError:
            trace.problem = f"tcpdump did not start listening on {interface} within 5 s"
            return trace
        except EOFError as error:
            trace.problem = f"tcpdump on {interface} ended: {error}"
            return trace
        reading = asyncio.ensure_future(process.stdout.read())
        for _ in range(PROBES):
            trace.probe = await probe()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(process.wait()), PACKET_WITHIN_S)
            if process.returncode is not None:
                break
        if process.returncode is None:
            trace.problem = f"no packet to {address} crossed {interface} ({capture_filter})"
            reading.cancel()
            return trace
        pcap = await reading
        trace.pcap_hex = pcap.hex()
        trace.tcpdump_text = await _readable(pcap, decode_as_vxlan)
        return trace
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
        trace.elapsed_ms = round((time.monotonic() - started) * 1000, 1)


async def _listening(stderr: asyncio.StreamReader) -> None:
    seen: list[str] = []
    while True:
        line = await stderr.readline()
        if not line:
            raise EOFError(" ".join(seen).strip() or "no output")
        text = line.decode(errors="replace").strip()
        seen.append(text)
        if "listening on" in text:
            return


async def _readable(pcap: bytes, decode_as_vxlan: bool) -> str:
    """tcpdump's own words for the packet (empty when tcpdump is not here)."""
    if shutil.which("tcpdump") is None:
        return ""
    argv = ["tcpdump", "-r", "-", "-n", "-v", *(["-T", "vxlan"] if decode_as_vxlan else [])]
    result = await run_command(argv, stdin=pcap)
    return result.stdout.strip()

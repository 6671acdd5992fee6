"""Running a command on a lab host: in its namespace, on its VM, or over ssh.

I/O, thin: ``hosts.LabHost`` says how a host is reached; this runs the command
there with a deadline and hands back what it printed. A command that cannot
start or does not finish in time comes back as a failed ``CommandOutput``
whose stderr says so, never as an exception: explain reports what it could
not read and goes on with the rest.
"""

from __future__ import annotations

import asyncio
import os
import time

from labs.troubleshoot.facts import CommandOutput
from labs.troubleshoot.hosts import LabHost

COMMAND_TIMEOUT_S = 10.0


async def run_command(
    argv: list[str],
    timeout_s: float = COMMAND_TIMEOUT_S,
    env: dict[str, str] | None = None,
    stdin: bytes | None = None,
) -> CommandOutput:
    started = time.monotonic()

    def done(code: int, out: bytes, err: str) -> CommandOutput:
        elapsed = round((time.monotonic() - started) * 1000, 1)
        return CommandOutput(argv, code, out.decode(errors="replace"), err, elapsed)

    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **env} if env else None,
        )
    except OSError as error:
        return done(127, b"", f"{argv[0]}: {error.strerror}")
    try:
        out, err = await asyncio.wait_for(process.communicate(stdin), timeout_s)
    except TimeoutError:
        process.kill()
        await process.wait()
        return done(124, b"", f"{argv[0]}: no answer within {timeout_s:g} s")
    return done(process.returncode or 0, out, err.decode(errors="replace"))


async def run_on(
    host: LabHost, argv: list[str], timeout_s: float = COMMAND_TIMEOUT_S
) -> CommandOutput:
    """argv run on ``host`` (its namespace or VM); the output's argv is the one typed."""
    result = await run_command(host.command(argv), timeout_s)
    result.argv = argv
    return result


def docker_env(host: LabHost) -> dict[str, str]:
    """The docker CLI pointed at the host's daemon, as `lab env HOST` does."""
    return {"DOCKER_HOST": host.docker_url}

"""Short-lived probe containers on a host, through the docker CLI (as `lab demo` uses it).

I/O, thin: a probe is ``docker run --rm`` of the lab's base image on the host's
daemon, so it gets exactly what a learner's container gets there (its
resolv.conf, its address on the host's bridge). Probes carry the label
``discovery.ignore=true`` so the host's agent never registers them.
"""

from __future__ import annotations

from labs.troubleshoot.facts import CommandOutput
from labs.troubleshoot.host_shell import docker_env, run_command
from labs.troubleshoot.hosts import LabHost

PROBE_LABELS = ("--label", "discovery.ignore=true", "--label", "discovery.explain=probe")
PROBE_TIMEOUT_S = 20.0


def probe_argv(image: str, command: list[str]) -> list[str]:
    return ["docker", "run", "--rm", *PROBE_LABELS, image, *command]


async def run_probe(host: LabHost, image: str, command: list[str]) -> CommandOutput:
    return await run_command(probe_argv(image, command), PROBE_TIMEOUT_S, env=docker_env(host))


async def container_resolv_conf(host: LabHost, image: str) -> CommandOutput:
    """The /etc/resolv.conf the host's dockerd writes into a new container."""
    return await run_probe(host, image, ["cat", "/etc/resolv.conf"])


async def ping_from_container(host: LabHost, image: str, address: str) -> CommandOutput:
    return await run_probe(host, image, ["ping", "-c", "1", "-W", "2", address])

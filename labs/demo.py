"""The lab's main job, shown: containers on different hosts find each other by name.

1. a `web` container (busybox httpd serving a page that names its host) on
   host2 and on host3;
2. the agents register both in etcd: `discoveryctl lookup web` lists them;
3. from a container on host1: `nslookup web` lists both addresses, and
   `wget -qO- http://web/` fetches a page across the VXLAN overlay.

Every docker command is printed as a learner would type it, with
DOCKER_HOST pointing at that host's daemon (as `eval $(discoveryctl lab env
hostN)` sets it). The demo checks what it shows and fails loudly if the lab
does not do what it promises.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable

from discovery import schema
from discovery.errors import DiscoveryError
from discovery.settings import Settings
from discovery.store import EtcdStore
from labs import front_door
from labs.docker_tls import without_tls
from labs.state import LabState, etcd_client, etcd_settings

REGISTRATION_TIMEOUT_S = 10.0


class DemoError(DiscoveryError):
    pass


def docker(state: LabState, host: str, *args: str, say: Callable[[str], None]) -> str:
    say(f"   [{host}] docker {shlex.join(args)}")
    # the unix socket, plain: a shell after eval $(lab env) also carries TLS variables
    env = {**without_tls(dict(os.environ)), "DOCKER_HOST": state.hosts[host].docker_url}
    result = subprocess.run(["docker", *args], capture_output=True, text=True, env=env, timeout=60)
    if result.returncode != 0:
        raise DemoError(f"docker {' '.join(args)} on {host} failed: {result.stderr.strip()}")
    return result.stdout


async def _web_addresses(settings: Settings) -> set[str]:
    async with EtcdStore(settings) as store:
        items, _ = await store.get_prefix(
            schema.service_prefix(settings.prefix, settings.domain, "web")
        )
    return {schema.decode_endpoint(kv.value).address for kv in items.values()}


def run_demo(state: LabState, say: Callable[[str], None] = print) -> None:
    if len(state.hosts) < 3:
        raise DemoError("the demo needs 3 hosts: discoveryctl lab up --hosts 3")
    web_image, base_image = state.images["web"], state.images["base"]
    settings = etcd_settings(state)  # as the learner, whose certificate lab up made

    say("== 1. start a web container on host2 and on host3")
    addresses = {}
    for host in ("host2", "host3"):
        name = f"web-{host}"
        docker(state, host, "rm", "-f", name, say=lambda _text: None)
        docker(state, host, "run", "-d", "--name", name, "-e", f"LAB_HOST={host}", web_image,
               say=say)  # fmt: skip
        inspect = docker(
            state, host, "inspect", "--format",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", name, say=say,
        )  # fmt: skip
        addresses[host] = inspect.strip()
        say(f"   {name} has address {addresses[host]} (inside {host}'s subnet)")

    say("== 2. the agents register them in etcd (named 'web' after the image)")
    deadline = time.monotonic() + REGISTRATION_TIMEOUT_S
    while not set(addresses.values()) <= asyncio.run(_web_addresses(settings)):
        if time.monotonic() > deadline:
            raise DemoError(f"web endpoints {sorted(addresses.values())} not in etcd after 10 s")
        time.sleep(0.1)
    say("   $ discoveryctl lookup web")
    lookup = subprocess.run(
        [sys.executable, "-m", "discovery.cli", "--etcd-endpoints", ",".join(state.etcd_endpoints),
         *_tls_flags(state), "lookup", "web"],
        capture_output=True, text=True, timeout=10,
    )  # fmt: skip
    say("   " + lookup.stdout.strip().replace("\n", "\n   "))

    say("== 3. from a container on host1: resolve web and fetch it across the overlay")
    script = "nslookup web && wget -qO- http://web/ && wget -qO- http://web/"
    output = docker(state, "host1", "run", "--rm", base_image, "sh", "-c", script, say=say)
    say("   " + output.strip().replace("\n", "\n   "))
    missing = [address for address in addresses.values() if address not in output]
    if missing:
        raise DemoError(f"nslookup web on host1 did not list {missing}")
    if "lab host: host2" not in output and "lab host: host3" not in output:
        raise DemoError("wget http://web/ from host1 fetched no page from host2 or host3")

    # The machine's lab has a front door (lab up wrote the endpoints where every
    # command finds them); another lab's commands need them spelled out.
    machine = front_door.is_machine_lab(state.name)
    lab_flag = "" if machine else f"--name {state.name} "
    # Another lab's etcd endpoints and the learner's certificate: in the shell, as
    # etcdctl's variables, which discoveryctl reads too.
    lab_env = "" if machine else f"  eval $(discoveryctl lab {lab_flag}env host1)\n"
    say(
        "\nIt works: host1 found web on host2 and host3 by name, over the VXLAN overlay.\n"
        "Try next:\n"
        f"{lab_env}"
        "  discoveryctl lookup web\n"
        f"  discoveryctl lab {lab_flag}ls\n"
        f"  eval $(discoveryctl lab {lab_flag}env host3) && docker stop web-host3"
        "   # gone from DNS at once\n"
        f"  discoveryctl lab {lab_flag}exec host1 -- docker run --rm -it "
        f"{base_image} sh   # then: nslookup web\n"
        "  discoveryctl watch\n"
        "  discoveryctl subnets\n"
        "  etcdctl get --prefix /coreos.com/network/\n"
        f"  discoveryctl lab {lab_flag}exec host1 -- ip -d link show flannel.1\n"
        + (
            f"  {state.map_url}   # the live map, in a browser on this machine\n"
            if state.map_url
            else ""
        )
        + f"  discoveryctl lab {lab_flag}down   # when you are done"
    )


def _tls_flags(state: LabState) -> list[str]:
    """--cacert, --cert and --key of the learner's certificate (etcdctl's flags too)."""
    learner = etcd_client(state)
    return learner.flags() if learner else []

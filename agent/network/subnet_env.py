"""subnet.env and the Docker daemon options it implies. Pure: text in, text out.

flannel writes the lease for the host's other programs as ``subnet.env``::

    FLANNEL_NETWORK=10.5.0.0/16
    FLANNEL_SUBNET=10.5.1.1/24      first address of the subnet, with its length
    FLANNEL_MTU=1450
    FLANNEL_IPMASQ=false

and its ``mk-docker-opts.sh`` turns that into dockerd options: ``--bip`` (the
address docker0 takes: the subnet's first address with its length), ``--mtu``
and, when flannel masquerades, ``--ip-masq=false`` so Docker does not as well.
This project's options differ in one way: docker0 takes the lease's first half,
and ``--default-address-pool`` hands the second half to Docker's other networks,
so that they too are inside the lease the overlay routes (``flannel.split_lease``).
Two formats of those options are offered: an environment file in
mk-docker-opts's own format (for a systemd unit's ``EnvironmentFile=`` and
``dockerd $DOCKER_OPTS``) and a ``daemon.json`` (for ``dockerd --config-file``).
Both come from the subnet.env values through ``discovery.flannel.docker_options``,
as the lab's own Docker options do.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass

from discovery import flannel


@dataclass(frozen=True)
class SubnetEnv:
    network: ipaddress.IPv4Network
    subnet: ipaddress.IPv4Network
    mtu: int
    ip_masq: bool


def bip(subnet: ipaddress.IPv4Network) -> str:
    """10.5.1.0/24 -> '10.5.1.1/24': the bridge's address, as dockerd --bip wants it."""
    return f"{subnet.network_address + 1}/{subnet.prefixlen}"


def subnet_env_values(env: SubnetEnv) -> dict[str, str]:
    """subnet.env's KEY=value pairs, in flannel's order."""
    return {
        "FLANNEL_NETWORK": str(env.network),
        "FLANNEL_SUBNET": bip(env.subnet),
        "FLANNEL_MTU": str(env.mtu),
        "FLANNEL_IPMASQ": "true" if env.ip_masq else "false",
    }


def render_subnet_env(env: SubnetEnv) -> str:
    return "".join(f"{key}={value}\n" for key, value in subnet_env_values(env).items())


def subnet_from_env(values: dict[str, str]) -> ipaddress.IPv4Network | None:
    """The subnet a previous subnet.env recorded (flannel's memory across
    restarts), or None if there is none or it does not parse."""
    text = values.get("FLANNEL_SUBNET")
    if not text:
        return None
    try:
        return ipaddress.IPv4Network(text, strict=False)
    except ValueError:
        return None


def docker_options(env: SubnetEnv) -> dict[str, object]:
    """daemon.json keys: bip, mtu, default-address-pools and, when we masquerade,
    ip-masq false."""
    return flannel.docker_options(subnet_env_values(env)).daemon_json()


def render_docker_env(env: SubnetEnv) -> str:
    """mk-docker-opts.sh's output format."""
    options = flannel.docker_options(subnet_env_values(env))
    ip_masq = "true" if options.ip_masq else "false"
    flags = f"--bip={options.bip} --ip-masq={ip_masq} --mtu={options.mtu}"
    pool = ""
    if options.address_pool is not None:
        flags += f" {options.address_pool.flag()}"
        pool = f'DOCKER_OPT_ADDRESS_POOL="{options.address_pool.flag()}"\n'
    return (
        f'DOCKER_OPT_BIP="--bip={options.bip}"\n'
        f'DOCKER_OPT_IPMASQ="--ip-masq={ip_masq}"\n'
        f'DOCKER_OPT_MTU="--mtu={options.mtu}"\n'
        f"{pool}"
        f'DOCKER_NETWORK_OPTIONS=" {flags}"\n'
        f'DOCKER_OPTS=" {flags}"\n'
    )


def render_docker_json(env: SubnetEnv) -> str:
    return json.dumps(docker_options(env), indent=2, sort_keys=True) + "\n"


def render_docker_options(env: SubnetEnv, file_name: str) -> str:
    """daemon.json for a name ending in .json, mk-docker-opts's env file otherwise."""
    return render_docker_json(env) if file_name.endswith(".json") else render_docker_env(env)

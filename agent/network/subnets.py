"""Subnet arithmetic and the choice of this host's subnet. Pure: no I/O.

The subnets a host may lease are the ``SubnetLen``-sized blocks of ``Network``
from ``SubnetMin`` to ``SubnetMax``, both included (flannel's defaults leave
out the first block of the network). They are numbered 0..count-1, so a free
one can be picked at random without listing millions of them.

Which subnet a host asks for, in flannel's order:

1. ``existing``: a lease in etcd already carries this host's PublicIP and is
   still valid under the current config: keep it (the host restarted);
2. ``remembered``: the subnet this host had before (kept on disk), if free;
3. ``random``: a random free subnet, so that hosts starting together rarely
   ask for the same one (the claim itself is a create-if-absent transaction;
   a lost race just means choosing again).
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from agent.network.errors import SubnetExhausted
from discovery.flannel import NetworkConfig, SubnetLease

IPv4Network = ipaddress.IPv4Network


def subnet_size(config: NetworkConfig) -> int:
    """Addresses per subnet."""
    return 2 ** (32 - config.subnet_len)


def subnet_count(config: NetworkConfig) -> int:
    """How many subnets lie between SubnetMin and SubnetMax, both included."""
    first = int(config.subnet_min.network_address)
    last = int(config.subnet_max.network_address)
    return (last - first) // subnet_size(config) + 1


def subnet_at(config: NetworkConfig, index: int) -> IPv4Network:
    """The index-th subnet counted from SubnetMin."""
    if not 0 <= index < subnet_count(config):
        raise IndexError(f"subnet index {index} outside 0..{subnet_count(config) - 1}")
    address = int(config.subnet_min.network_address) + index * subnet_size(config)
    return IPv4Network((address, config.subnet_len))


def index_of(config: NetworkConfig, subnet: IPv4Network) -> int | None:
    """The subnet's index from SubnetMin, or None if it is not one of ours."""
    if subnet.prefixlen != config.subnet_len:
        return None
    offset = int(subnet.network_address) - int(config.subnet_min.network_address)
    index, remainder = divmod(offset, subnet_size(config))
    if remainder or not 0 <= index < subnet_count(config):
        return None
    return index


def in_range(config: NetworkConfig, subnet: IPv4Network) -> bool:
    """True if the config allows a host to lease exactly this subnet."""
    return index_of(config, subnet) is not None


def pick_free_subnet(
    config: NetworkConfig, taken: Iterable[IPv4Network], rng: random.Random
) -> IPv4Network | None:
    """A uniformly random subnet not in ``taken``; None when all are taken."""
    taken_indices = sorted({i for i in (index_of(config, s) for s in taken) if i is not None})
    free = subnet_count(config) - len(taken_indices)
    if free <= 0:
        return None
    wanted = rng.randrange(free)  # the wanted-th free subnet, counting from 0
    for index in taken_indices:
        if index <= wanted:
            wanted += 1
        else:
            break
    return subnet_at(config, wanted)


def subnet_lease_is_valid(config: NetworkConfig, lease: SubnetLease) -> bool:
    """Still usable under this config: right size, in range, same backend and VNI."""
    return (
        in_range(config, lease.subnet)
        and lease.backend_type == config.backend_type
        and lease.vni == config.vni
    )


@dataclass(frozen=True)
class Choice:
    subnet: IPv4Network
    reason: Literal["existing", "remembered", "random"]


def choose_subnet(
    config: NetworkConfig,
    leases: Mapping[IPv4Network, SubnetLease],
    public_ip: ipaddress.IPv4Address,
    remembered: IPv4Network | None,
    rng: random.Random,
) -> Choice:
    """Which subnet to claim next (see the module docstring for the order).

    Raises SubnetExhausted when every subnet in range is leased by other hosts.
    """
    ours = sorted(
        (lease.subnet for lease in leases.values() if lease.public_ip == public_ip),
        key=lambda subnet: int(subnet.network_address),
    )
    for subnet in ours:
        if subnet_lease_is_valid(config, leases[subnet]):
            return Choice(subnet, "existing")
    if remembered is not None and in_range(config, remembered) and remembered not in leases:
        return Choice(remembered, "remembered")
    picked = pick_free_subnet(config, leases, rng)
    if picked is None:
        raise SubnetExhausted(
            f"no free subnet: all {subnet_count(config)} /{config.subnet_len} subnets "
            f"from SubnetMin {config.subnet_min.network_address} to SubnetMax "
            f"{config.subnet_max.network_address} in Network {config.network} are leased"
        )
    return Choice(picked, "random")


def stale_own_subnet_leases(
    leases: Mapping[IPv4Network, SubnetLease],
    public_ip: ipaddress.IPv4Address,
    keep: IPv4Network,
) -> list[IPv4Network]:
    """This host's leases other than ``keep``: left over from an older config or
    an earlier run. One host holds one lease, so these are deleted, or other
    hosts would keep routing those subnets here."""
    return sorted(
        (s for s, lease in leases.items() if lease.public_ip == public_ip and s != keep),
        key=lambda subnet: int(subnet.network_address),
    )


def random_vtep_mac(rng: random.Random) -> str:
    """A random locally administered unicast MAC (first octet x2, x6, xa or xe)."""
    octets = [rng.randrange(256) for _ in range(6)]
    octets[0] = (octets[0] & 0xFC) | 0x02
    return ":".join(f"{octet:02x}" for octet in octets)

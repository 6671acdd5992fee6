"""Subnet leases in etcd, flannel's way: read the config, claim a subnet, keep it.

The I/O shell around ``agent.network.subnets``. It talks to etcd only through
the ``discovery.store_api.Store`` it is given (``EtcdStore``, or ``MemoryStore`` in tests)::

    <prefix>/config                     the network config (flannel's JSON)
    <prefix>/subnets/10.5.1.0-24        this host's lease, under an etcd lease

A claim is one transaction: "create the key if it does not exist" for a new
subnet, "overwrite it if nobody changed it since I read it" when taking over
this host's own existing lease. Losing either race only means reading the
leases again and choosing again, at most ``MAX_CLAIM_ATTEMPTS`` times, so
hosts starting together never share a subnet.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
from collections.abc import Callable

from agent.network.errors import NetworkConfigMissing, SubnetContention
from agent.network.subnets import choose_subnet, stale_own_subnet_leases
from discovery import flannel
from discovery.errors import DiscoveryError, SchemaError
from discovery.flannel import NetworkConfig, SubnetLease
from discovery.retry import Backoff
from discovery.store_api import KeyValue, Store

log = logging.getLogger(__name__)
MAX_CLAIM_ATTEMPTS = 16
CLAIM_RETRY_MAX_S = 0.05  # random pause before choosing again after a lost race
CONFIG_POLL_S = 1.0

Leases = dict[ipaddress.IPv4Network, tuple[SubnetLease, KeyValue]]


def parse_subnet_leases(network_prefix: str, items: dict[str, KeyValue]) -> Leases:
    """Every lease that parses; a broken one is logged and skipped, not fatal."""
    leases: Leases = {}
    for key, kv in items.items():
        try:
            lease = flannel.parse_subnet_lease(network_prefix, key, kv.value)
        except SchemaError as error:
            log.warning("skipping lease %s: %s", key, error)
            continue
        leases[lease.subnet] = (lease, kv)
    return leases


class SubnetAllocator:
    def __init__(
        self,
        store: Store,
        network_prefix: str,
        public_ip: ipaddress.IPv4Address,
        rng: random.Random | None = None,
        max_attempts: int = MAX_CLAIM_ATTEMPTS,
    ) -> None:
        self.store = store
        self.network_prefix = network_prefix
        self.public_ip = public_ip
        self.rng = rng or random.SystemRandom()
        self.max_attempts = max_attempts

    # ------------------------------------------------------------ config

    async def read_config(self) -> NetworkConfig:
        """The config at <prefix>/config. Raises NetworkConfigMissing, or
        SchemaError naming the bad field."""
        key = flannel.config_key(self.network_prefix)
        kv = await self.store.get(key)
        if kv is None:
            raise NetworkConfigMissing(
                f"no network config at {key}; write one, e.g. etcdctl put {key} "
                '\'{"Network": "10.5.0.0/16", "Backend": {"Type": "vxlan"}}\''
            )
        return flannel.parse_network_config(kv.value)

    async def wait_for_config(
        self, poll_s: float = CONFIG_POLL_S, on_problem: Callable[[str], None] | None = None
    ) -> NetworkConfig:
        """Poll until a valid config is there. Each new problem is reported once
        (through ``on_problem``, default: an error log line), not once a poll."""
        last_problem = None
        while True:
            try:
                return await self.read_config()
            except DiscoveryError as error:  # missing, malformed, or etcd away
                problem = str(error)
            if problem != last_problem:
                (on_problem or _log_error)(f"{problem}; waiting for a valid config")
                last_problem = problem
            await asyncio.sleep(poll_s)

    # ------------------------------------------------------------ leases

    async def list_subnet_leases(self) -> tuple[Leases, int]:
        items, revision = await self.store.get_prefix(flannel.subnets_prefix(self.network_prefix))
        return parse_subnet_leases(self.network_prefix, items), revision

    async def acquire(
        self,
        config: NetworkConfig,
        lease_id: int,
        vtep_mac: str,
        remembered: ipaddress.IPv4Network | None = None,
    ) -> SubnetLease:
        """Claim a subnet under etcd lease ``lease_id``; see the module docstring.

        Raises SubnetExhausted (no free subnet) or SubnetContention (free ones
        exist, but other hosts won every attempt).
        """
        pause = Backoff(CLAIM_RETRY_MAX_S, jitter=True, rng=self.rng)
        for attempt in range(1, self.max_attempts + 1):
            leases, _ = await self.list_subnet_leases()
            plain = {subnet: lease for subnet, (lease, _) in leases.items()}
            choice = choose_subnet(config, plain, self.public_ip, remembered, self.rng)
            lease = SubnetLease(choice.subnet, self.public_ip, vtep_mac, config.vni)
            key = flannel.subnet_key(self.network_prefix, choice.subnet)
            value = flannel.encode_subnet_lease(lease)
            if choice.reason == "existing":
                won = await self.store.put_if_revision(
                    key, value, leases[choice.subnet][1].mod_revision, lease_id
                )
            else:
                won = await self.store.create_if_absent(key, value, lease_id)
            if won:
                log.info(
                    "leased %s (%s subnet, attempt %d)", choice.subnet, choice.reason, attempt,
                    extra={"fields": {"subnet": str(choice.subnet), "key": key}},
                )  # fmt: skip
                for stale in stale_own_subnet_leases(plain, self.public_ip, choice.subnet):
                    stale_key = flannel.subnet_key(self.network_prefix, stale)
                    log.info("deleting this host's old lease %s", stale_key)
                    await self.store.delete(stale_key)
                return lease
            log.debug("lost the race for %s (attempt %d); choosing again", key, attempt)
            if choice.reason == "remembered":
                remembered = None  # someone else has it now
            await pause.wait()
        raise SubnetContention(
            f"could not claim a subnet in {self.max_attempts} attempts: other hosts took "
            "every one chosen; try again"
        )

    async def renew(self, lease: SubnetLease, lease_id: int) -> bool:
        """Write our lease again under ``lease_id`` if the key is free or still
        ours (same PublicIP). False if another host holds the subnet now."""
        key = flannel.subnet_key(self.network_prefix, lease.subnet)
        value = flannel.encode_subnet_lease(lease)
        current = await self.store.get(key)
        if current is None:
            return await self.store.create_if_absent(key, value, lease_id)
        try:
            holder = flannel.parse_subnet_lease(self.network_prefix, key, current.value)
        except SchemaError:
            return False
        if holder.public_ip != self.public_ip:
            return False
        return await self.store.put_if_revision(key, value, current.mod_revision, lease_id)


def _log_error(text: str) -> None:
    log.error(text)

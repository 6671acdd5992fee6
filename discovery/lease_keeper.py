"""Hold an etcd lease for as long as the process lives, through etcd outages.

An agent writes its records under one etcd lease so that they vanish when the
agent dies. ``LeaseKeeper`` grants that lease, refreshes it every TTL/3, and
when the lease is lost (etcd was down longer than the TTL, or someone revoked
it) grants a new one and calls ``on_new_lease`` so the owner writes all of its
records again under it. Losing the lease is logged loudly: for that moment
this host's records were gone from etcd.

An etcd outage shorter than the TTL costs nothing: the keeper keeps trying
and the old lease, and the records under it, survive.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from discovery.errors import DiscoveryError, EtcdUnavailable, LeaseLost
from discovery.store import EtcdStore

log = logging.getLogger(__name__)
RETRY_MIN_S = 0.2
RETRY_MAX_S = 2.0


class LeaseKeeper:
    def __init__(
        self,
        store: EtcdStore,
        ttl_s: int,
        on_new_lease: Callable[[int], Awaitable[None]],
        name: str = "agent",
    ) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self.on_new_lease = on_new_lease
        self.name = name
        self.lease_id: int | None = None
        self.ready = asyncio.Event()  # set while a lease is held and written under

    @property
    def refresh_interval_s(self) -> float:
        return max(self.ttl_s / 3, 0.2)

    async def run(self) -> None:
        """Keep a lease until cancelled."""
        delay = RETRY_MIN_S
        while True:
            try:
                if self.lease_id is None:
                    self.ready.clear()
                    lease_id = await self.store.grant_lease(self.ttl_s)
                    self.lease_id = lease_id
                    log.info(
                        "%s: holding etcd lease %x (TTL %d s)", self.name, lease_id, self.ttl_s
                    )
                    await self.on_new_lease(lease_id)
                    self.ready.set()
                else:
                    await self.store.keep_alive(self.lease_id)
                    self.ready.set()
                delay = RETRY_MIN_S
                await asyncio.sleep(self.refresh_interval_s)
            except LeaseLost as error:
                log.error("%s: LOST etcd lease: %s; granting a new one", self.name, error)
                self.lease_id = None
            except EtcdUnavailable as error:
                log.warning("%s: cannot refresh lease: %s", self.name, error)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
            except DiscoveryError as error:
                log.error("%s: lease keeping failed: %s", self.name, error)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)

    async def revoke(self) -> None:
        """Give the lease back, deleting every key under it at once."""
        lease_id, self.lease_id = self.lease_id, None
        self.ready.clear()
        if lease_id is not None:
            await self.store.revoke_lease(lease_id)
            log.info("%s: revoked etcd lease %x", self.name, lease_id)

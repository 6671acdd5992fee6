"""Hold an etcd lease for as long as the process lives, through etcd outages.

An agent writes its records under one etcd lease so that they vanish when the
agent dies. ``LeaseKeeper`` grants that lease, refreshes it every TTL/3, and
when the lease is lost (etcd was down longer than the TTL, or someone revoked
it) grants a new one and calls ``on_new_lease`` so the owner writes all of its
records again under it. Losing the lease is logged loudly: for that moment
this host's records were gone from etcd.

Three promises the owner can build on:

* ``lease_id`` and ``ready`` are published only after ``on_new_lease`` has
  succeeded for that lease: whoever reads them may assume the records are
  written under it.
* A failing ``on_new_lease`` is called again (with a capped backoff) until it
  succeeds, and the lease is kept alive meanwhile; a keeper never gives up.
* No error read from etcd ends ``run``: losing etcd is logged once when it
  starts and once when it ends, however long it lasts. An outage shorter
  than the TTL costs nothing; the old lease, and the records under it,
  survive.

``request_rewrite`` asks for ``on_new_lease`` to run again under the current
lease, for an owner that finds its records gone while the lease is not (a key
deleted by hand, say).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from discovery.errors import DiscoveryError, EtcdUnavailable, LeaseLost
from discovery.metrics import EtcdHealth
from discovery.retry import Backoff
from discovery.store_api import Store

log = logging.getLogger(__name__)
RETRY_MIN_S = 0.2
# Short: after an outage the records are back as soon as one retry gets
# through, and each attempt is already bounded by the request timeout.
RETRY_MAX_S = 0.5


class LeaseKeeper:
    def __init__(
        self,
        store: Store,
        ttl_s: int,
        on_new_lease: Callable[[int], Awaitable[None]],
        name: str = "agent",
        lease_id: int | None = None,
        etcd: EtcdHealth | None = None,
    ) -> None:
        """``lease_id``: a lease the owner already granted and wrote under; ``etcd``:
        where to count the outages this keeper sees (registered nowhere by default)."""
        self.store = store
        self.ttl_s = ttl_s
        self.on_new_lease = on_new_lease
        self.name = name
        self.lease_id: int | None = lease_id  # published: written under
        self.ready = asyncio.Event()  # set while a lease is held and written under
        if lease_id is not None:
            self.ready.set()
        self._pending: int | None = None  # granted, not yet written under
        self._rewrite = asyncio.Event()
        self._etcd_lost = False
        self._last_failure: str | None = None  # the owner's last callback error, logged once
        self.etcd = etcd or EtcdHealth(None, "")

    @property
    def refresh_interval_s(self) -> float:
        return max(self.ttl_s / 3, 0.2)

    def request_rewrite(self) -> None:
        """Call ``on_new_lease`` again under the current lease, soon."""
        self._rewrite.set()

    async def run(self) -> None:
        """Keep a lease until cancelled. Never returns and never raises otherwise."""
        # Never slower than the refresh: a lease waiting on its callback must
        # still be kept alive.
        backoff = Backoff(RETRY_MIN_S, min(RETRY_MAX_S, self.refresh_interval_s))
        while True:
            try:
                await self._step()
            except LeaseLost as error:
                log.error("%s: LOST etcd lease: %s; granting a new one", self.name, error)
                self.lease_id = self._pending = None
                self.ready.clear()
                backoff.reset()
                continue
            except DiscoveryError as error:
                # EtcdUnavailable, or the owner's callback failing for its own
                # reasons: either way keep what we have and try again.
                self._report_trouble(error)
                await backoff.wait()
                continue
            self._last_failure = None
            self.etcd.reached()
            if self._etcd_lost:
                self._etcd_lost = False
                log.warning("%s: etcd reachable again; lease %x held", self.name, self.lease_id)
            backoff.reset()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._rewrite.wait(), self.refresh_interval_s)

    async def _step(self) -> None:
        """One refresh: grant, write under a new lease, or keep the lease alive."""
        if self.lease_id is None and self._pending is None:
            self._pending = await self.store.grant_lease(self.ttl_s)
            log.info("%s: granted etcd lease %x (TTL %d s)", self.name, self._pending, self.ttl_s)
            await self._write_under_pending()
        elif self._pending is not None:
            # The callback failed last time: keep the lease alive, then retry it.
            await self.store.keep_alive(self._pending)
            await self._write_under_pending()
        elif self._rewrite.is_set():
            self._rewrite.clear()
            assert self.lease_id is not None
            await self.store.keep_alive(self.lease_id)
            try:
                await self.on_new_lease(self.lease_id)
            except BaseException:
                self._rewrite.set()  # not done: ask again on the next step
                raise
        else:
            assert self.lease_id is not None
            await self.store.keep_alive(self.lease_id)
            self.ready.set()

    async def _write_under_pending(self) -> None:
        assert self._pending is not None
        self._rewrite.clear()  # a write under a new lease covers any rewrite asked for
        await self.on_new_lease(self._pending)
        self.lease_id, self._pending = self._pending, None
        self.ready.set()
        log.info("%s: holding etcd lease %x", self.name, self.lease_id)

    def _report_trouble(self, error: DiscoveryError) -> None:
        if isinstance(error, EtcdUnavailable):
            if not self._etcd_lost:
                self._etcd_lost = True
                self.etcd.lost()
                log.warning(
                    "%s: lost etcd (%s); keeping everything and retrying every %.1f s at most",
                    self.name, error, RETRY_MAX_S,
                )  # fmt: skip
            return
        if str(error) != self._last_failure:
            self._last_failure = str(error)
            log.error("%s: writing under the lease failed: %s; retrying", self.name, error)

    async def revoke(self) -> None:
        """Give the lease back, deleting every key under it at once."""
        lease_id = self.lease_id if self.lease_id is not None else self._pending
        self.lease_id = self._pending = None
        self.ready.clear()
        if lease_id is not None:
            await self.store.revoke_lease(lease_id)
            log.info("%s: revoked etcd lease %x", self.name, lease_id)

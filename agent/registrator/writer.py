"""The etcd side: keep etcd's records for this host equal to the wanted state in memory.

How it works, in three steps:

1. Container workers call ``set_container`` with a container's new records.
   That only changes memory (``wanted``) and marks the touched keys dirty, so
   a worker never waits for etcd and one container never holds up another.
2. One writer task (``run``) puts or deletes the dirty keys under the
   agent's lease. Being the only task that writes, it needs no locks, and a
   key's puts and deletes reach etcd in the order they were decided.
3. When a write fails (etcd unreachable, lease gone) or a new lease was
   granted (``on_new_lease``, called by the LeaseKeeper), the writer
   resynchronises: it lists what etcd holds for this host, and puts and
   deletes exactly the difference (reconcile.plan_sync), retrying with a
   capped backoff until it succeeds. Nothing wanted is lost during an etcd
   outage, and since keys are stable, nothing is written twice.

Every write but the node record's is guarded (``Store.write_guarded``): it
applies only while this host's node record is still at the revision the
writer last gave it. etcd may apply a request its client gave up on long
after, even after later writes of the same key (a put stuck in a cut-off
member's queue, delivered when the partition heals, recreated a deleted
record for good). So whenever a write went unanswered, the resync starts by
putting the node record again: every request sent before then that etcd has
not applied yet now fails its compare, and the listing that follows is final.
An agent without a host address writes no node record, and so unguarded.

The first resync waits until the Docker side has listed the containers
(``docker_listed``): before that, "wanted" is not yet known, and a resync
would delete the records of containers that are still running.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Iterable
from pathlib import Path
from typing import TypeVar

from agent.registrator.lease_file import load_leases, save_lease
from agent.registrator.metrics import ServicesMetrics
from agent.registrator.sync_plan import (
    RecordChange,
    carry_registered_at,
    container_changes,
    foreign_leases,
    held_for_node,
    plan_sync,
)
from discovery.errors import DiscoveryError
from discovery.retry import Backoff
from discovery.schema import (
    Endpoint,
    Node,
    encode_endpoint,
    encode_node,
    node_key,
    services_prefix,
)
from discovery.settings import Settings
from discovery.store_api import GuardedWrite, Store

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRY_MIN_S = 0.1
# Short, as the lease keeper's: etcd must equal Docker within a second or two
# of an outage's end; each attempt is already bounded by the request timeout.
RETRY_MAX_S = 0.5
# Requests in flight at once during a resync: enough to fill a round trip,
# few enough not to queue hundreds of RPCs on one channel.
MAX_PARALLEL_WRITES = 64
# Keys per guarded transaction: half etcd's default --max-txn-ops (128).
MAX_KEYS_PER_TRANSACTION = 64


class GuardMoved(DiscoveryError):
    """The node record is no longer at the revision this writer gave it."""


class RecordWriter:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        node: str,
        node_address: str | None,
        lease_file: Path | None = None,
        metrics: ServicesMetrics | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.node = node
        self.node_address = node_address
        self.metrics = metrics or ServicesMetrics()
        self.wanted: dict[str, Endpoint] = {}
        self._keys_of: dict[str, set[str]] = {}  # container id -> its keys in wanted
        self._dirty: set[str] = set()
        self._lease_id: int | None = None
        # Every lease this agent wrote under, this run's and earlier runs': a
        # record under one of them that no container wants is ours to delete.
        self._lease_file = lease_file
        self._own_leases: list[int] = load_leases(lease_file) if lease_file else []
        self._foreign_reported: dict[int, int] = {}
        self._resync = True
        # The node record's mod revision as this writer last put it: the guard
        # of every other write (None: not written yet, or no node record).
        self._guard: int | None = None
        self._failing = False
        self._wake = asyncio.Event()
        self.docker_listed = asyncio.Event()
        self.in_sync = asyncio.Event()  # set after each successful resync or flush
        self._node_record = (
            Node(node, node_address, ttl=settings.record_ttl_s) if node_address else None
        )

    # ------------------------------------------------------------ memory side

    def container_ids(self) -> list[str]:
        return list(self._keys_of)

    def records_of(self, container_id: str) -> dict[str, Endpoint]:
        return {key: self.wanted[key] for key in self._keys_of.get(container_id, ())}

    def set_container(self, container_id: str, records: dict[str, Endpoint]) -> list[RecordChange]:
        """Make ``records`` the container's wanted records; returns what changed."""
        old = self.records_of(container_id)
        new = {key: carry_registered_at(e, old.get(key)) for key, e in records.items()}
        changes = container_changes(old, new)
        if not changes:
            return []
        for change in changes:
            if change.kind == "deregistered":
                del self.wanted[change.key]
            else:
                self.wanted[change.key] = new[change.key]
            self._dirty.add(change.key)
        if new:
            self._keys_of[container_id] = set(new)
        else:
            self._keys_of.pop(container_id, None)
        self.in_sync.clear()
        self._wake.set()
        return changes

    def set_node_checks(self, checks: dict[str, str]) -> None:
        """The node's checks (``node_checks``); a change rewrites the node record
        through a resync, which puts it first anyway."""
        if self._node_record is None:
            return
        wanted = tuple(sorted(checks.items()))
        if wanted == self._node_record.checks:
            return
        self._node_record = dataclasses.replace(self._node_record, checks=wanted)
        self._resync = True
        self.in_sync.clear()
        self._wake.set()

    async def on_new_lease(self, lease_id: int) -> None:
        """LeaseKeeper's callback: write everything again under the new lease.

        Returns at once; the writer task does the writing, with retries, so a
        failure here cannot leave the keeper believing the records are written.
        """
        self._lease_id = lease_id
        if self._lease_file is not None:
            self._own_leases = save_lease(self._lease_file, lease_id, self._own_leases)
        elif lease_id not in self._own_leases:
            self._own_leases.append(lease_id)
        self._resync = True
        self._wake.set()

    # ------------------------------------------------------------ etcd side

    async def run(self) -> None:
        """Write until cancelled."""
        await self.docker_listed.wait()
        backoff = Backoff(RETRY_MIN_S, RETRY_MAX_S)
        while True:
            await self._wake.wait()
            self._wake.clear()
            lease_id = self._lease_id
            if lease_id is None:
                continue  # on_new_lease will wake us
            try:
                if self._resync:
                    # Cleared before the awaits: a new lease granted meanwhile sets it again.
                    self._resync = False
                    self._dirty.clear()  # the resync covers every key
                    await self._resync_all(lease_id)
                elif self._dirty:
                    keys, self._dirty = self._dirty, set()
                    await self._write_keys(keys, lease_id)
                if self._failing:
                    log.info("etcd writes work again", extra={"fields": {"node": self.node}})
                self._failing = False
                backoff.reset()
                if self._resync:
                    self._wake.set()  # a write went unanswered: move the guard on
                elif not self._dirty:
                    self.in_sync.set()
            except GuardMoved:
                self._resync = True
                log.info(
                    "this host's node record changed under the writer (a late write, or "
                    "another agent with the same --host-name): listing etcd again",
                    extra={"fields": {"node": self.node}},
                )
                await backoff.wait()
                self._wake.set()
            except DiscoveryError as error:
                self._resync = True
                if not self._failing:
                    log.warning(
                        "cannot write to etcd; keeping the wanted records in memory",
                        extra={
                            "fields": {"error": str(error), "records": len(self.wanted)},
                        },
                    )
                self._failing = True
                await backoff.wait()
                self._wake.set()

    async def _resync_all(self, lease_id: int) -> None:
        if self._node_record is not None:
            # First, so that the listing below is final: every write sent
            # before this put and not yet applied now fails its guard.
            key = node_key(self.settings.prefix, self.settings.domain, self.node)
            self._guard = await self.store.put(key, encode_node(self._node_record), lease_id)
            self.metrics.wrote(puts=1, deletes=0)
        prefix = services_prefix(self.settings.prefix, self.settings.domain)
        items, _ = await self.store.get_prefix(prefix)
        held = held_for_node(
            {key: (kv.value, kv.lease) for key, kv in items.items()},
            self.settings.prefix,
            self.settings.domain,
            self.node,
        )
        wanted = dict(self.wanted)
        plan = plan_sync(wanted, held, lease_id, self._own_leases)
        self._report_foreign(foreign_leases(held, {lease_id, *self._own_leases}))
        for key, endpoint in plan.puts.items():
            # Adopt the registration time etcd already had for the same endpoint.
            if self.wanted.get(key) == wanted[key]:
                self.wanted[key] = endpoint
        puts = {key: encode_endpoint(e) for key, e in plan.puts.items()}
        await self._write(puts, list(plan.deletes), lease_id)
        log.info(
            "etcd in sync",
            extra={
                "fields": {
                    "node": self.node,
                    "lease": f"{lease_id:x}",
                    "records": len(wanted),
                    "put": len(plan.puts),
                    "deleted": len(plan.deletes),
                }
            },
        )

    def _report_foreign(self, counts: dict[int, int]) -> None:
        """Say once which records name this host but are not this agent's to touch."""
        if counts == self._foreign_reported:
            return
        self._foreign_reported = counts
        for lease, count in sorted(counts.items()):
            if lease == 0:
                log.info(
                    "records made by hand for this host are left alone",
                    extra={"fields": {"node": self.node, "records": count}},
                )
            else:
                log.warning(
                    "records for this host under a lease that is not this agent's are left "
                    "alone: an earlier run's (they expire with its lease), or another agent "
                    "started with the same --host-name",
                    extra={"fields": {"node": self.node, "lease": f"{lease:x}", "records": count}},
                )

    async def _write_keys(self, keys: Iterable[str], lease_id: int) -> None:
        puts: dict[str, bytes] = {}
        deletes: list[str] = []
        for key in keys:
            endpoint = self.wanted.get(key)
            if endpoint is None:
                deletes.append(key)
            else:
                puts[key] = encode_endpoint(endpoint)
        await self._write(puts, deletes, lease_id)

    async def _write(self, puts: dict[str, bytes], deletes: list[str], lease_id: int) -> None:
        """Write, guarded by the node record when there is one; raise GuardMoved
        when it moved on, and ask for a resync when any request was resent."""
        if self._guard is None:
            writes: list[Awaitable[object]] = [
                self.store.put(key, value, lease_id) for key, value in puts.items()
            ]
            writes += [self.store.delete(key) for key in deletes]
            await _all(writes)
        else:
            guard_key = node_key(self.settings.prefix, self.settings.domain, self.node)
            changes: list[tuple[str, bytes | None]] = [*puts.items(), *((k, None) for k in deletes)]
            transactions: list[Awaitable[GuardedWrite]] = []
            for start in range(0, len(changes), MAX_KEYS_PER_TRANSACTION):
                batch = changes[start : start + MAX_KEYS_PER_TRANSACTION]
                transactions.append(
                    self.store.write_guarded(
                        guard_key,
                        self._guard,
                        {key: value for key, value in batch if value is not None},
                        [key for key, value in batch if value is None],
                        lease_id,
                    )
                )
            results = await _all(transactions)
            if any(result.resent for result in results):
                self._resync = True
            if not all(result.applied for result in results):
                raise GuardMoved(f"node record {guard_key} moved on")
        self.metrics.wrote(puts=len(puts), deletes=len(deletes))


async def _all(writes: list[Awaitable[T]]) -> list[T]:
    """Run the writes, MAX_PARALLEL_WRITES at a time; raise the first failure."""
    done: list[T] = []
    for start in range(0, len(writes), MAX_PARALLEL_WRITES):
        batch = writes[start : start + MAX_PARALLEL_WRITES]
        results = await asyncio.gather(*batch, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                # Close the coroutines of later batches that never ran.
                for pending in writes[start + MAX_PARALLEL_WRITES :]:
                    close = getattr(pending, "close", None)
                    if close is not None:
                        close()
                raise result
        done += results  # type: ignore[arg-type]  # no exceptions left
    return done


__all__ = ["RecordWriter"]

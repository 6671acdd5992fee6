"""An etcd in memory: ``MemoryStore`` behaves as ``EtcdStore`` does, as this project uses it.

For tests of the orchestrators' policy (the lease keeper, the record writer,
the subnet allocator, the DNS catalog feed): they take a ``Store``, and with
this one they run in milliseconds, without root, etcd or a network. The
contract suite (``tests/contract/test_store_contract.py``) runs the same
tests against it and against a real etcd, so the two cannot drift apart.

What it keeps, as etcd does:

* one revision counter for the whole store (an empty store is at 1), each
  key's create and mod revisions, and the history of changes since the last
  compaction (``compact``, or on its own once twice ``history_limit`` events
  pile up, down to the last ``history_limit``, as etcd's revision
  auto-compaction does), so memory stays bounded;
* leases whose TTLs really run out, on the event loop's clock (``loop.time()``:
  a test loop with a virtual clock makes minutes pass at once); expiry or
  revocation deletes the keys under the lease in one revision, which watches
  see as delete events. As etcd with its default election timeout, no lease
  is granted for less than 2 s;
* the transactions the project uses (``create_if_absent``,
  ``put_if_revision``), atomic, and "lease not found" as ``LeaseLost`` only
  when the write really happens;
* ``follow_prefix`` exactly as ``EtcdStore.follow_prefix`` behaves: a
  ``Snapshot``, then ``Change`` events in revision order; after an outage
  ``ConnectionLost``, then, once reachable, ``Resumed`` and the changes made
  meanwhile; when the revision to resume from was compacted away, etcd
  accepts the new watch and then cancels it, so ``Resumed`` comes first and
  a new ``Snapshot`` (a re-list) follows, as it does from ``EtcdStore``.

Controls for tests:

* ``new_client()``: another client of the same in-memory etcd (another host,
  or etcdctl), with its own connection;
* ``go_down()`` / ``come_back()``: this client loses etcd (every request
  raises ``EtcdUnavailable``, its watches end with ``ConnectionLost`` and
  resume once it is back), while etcd itself, its leases' clocks and the
  other clients go on, as in a network partition;
* ``expire_lease(lease_id)``: a lease runs out now, as if its TTL had passed.

Requests never block: a request to a client that is down fails at once,
where ``EtcdStore`` first spends its request timeout trying every endpoint.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from discovery.errors import DiscoveryError, EtcdUnavailable, LeaseLost, RevisionCompacted
from discovery.store_api import (
    Change,
    ConnectionLost,
    GuardedWrite,
    KeyValue,
    Resumed,
    Snapshot,
    Store,
    WatchItem,
)

log = logging.getLogger(__name__)

# etcd's minimum lease TTL with its default election timeout (1 s): 3/2 of it, rounded up.
MIN_LEASE_TTL_S = 2
# Events kept before the oldest are compacted away on their own.
HISTORY_LIMIT = 10_000
# As EtcdStore's: how soon a watch tries again after losing etcd.
WATCH_RETRY_MIN_S = 0.1
WATCH_RETRY_MAX_S = 0.5
_FIRST_LEASE_ID = 0x7E57_0000_0001  # etcd's ids are large too; "7e57" says "test"


@dataclass
class _Lease:
    lease_id: int
    ttl_s: int
    expires_at: float
    keys: set[str] = field(default_factory=set)
    timer: asyncio.TimerHandle | None = None


class _Etcd:
    """The server: what every client made from one MemoryStore shares."""

    def __init__(self, history_limit: int) -> None:
        self.revision = 1
        self.compacted = 0  # history below this revision is gone
        self.data: dict[str, KeyValue] = {}
        self.history: list[Change] = []  # in revision order, from ``compacted`` on
        self.history_limit = history_limit
        self.leases: dict[int, _Lease] = {}
        self._next_lease_id = _FIRST_LEASE_ID
        self._changed: asyncio.Event | None = None

    # ------------------------------------------------------------ waking watches

    def changed(self) -> asyncio.Event:
        """Set at the next change (or outage): what a watch waits on."""
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed

    def notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    # ------------------------------------------------------------ writing

    def _record(self, changes: list[Change]) -> None:
        self.history.extend(changes)
        if len(self.history) > 2 * self.history_limit:
            self.compact_to(self.history[-self.history_limit].revision)
        self.notify()

    def put(self, key: str, value: bytes, lease_id: int | None, what: str) -> int:
        if lease_id and lease_id not in self.leases:
            raise LeaseLost(f"{what}: etcd lease not found (expired or revoked)")
        self.write_all({key: value}, [], lease_id)
        return self.revision

    def write_all(self, puts: dict[str, bytes], deletes: list[str], lease_id: int | None) -> None:
        """One transaction: every put and delete at one new revision, as etcd's Txn."""
        lease = lease_id or 0
        if puts and lease and lease not in self.leases:
            raise LeaseLost("transaction: etcd lease not found (expired or revoked)")
        if len(set(puts) | set(deletes)) < len(puts) + len(deletes):
            raise DiscoveryError("etcd refused transaction: duplicate key given in txn request")
        present = [key for key in deletes if key in self.data]
        if not puts and not present:
            return  # nothing changed: etcd's revision stays where it is
        self.revision += 1
        changes = []
        for key, value in puts.items():
            old = self.data.get(key)
            if old is not None and old.lease in self.leases:
                self.leases[old.lease].keys.discard(key)
            if lease:
                self.leases[lease].keys.add(key)
            created = old.create_revision if old is not None else self.revision
            self.data[key] = KeyValue(key, value, self.revision, created, lease)
            changes.append(Change(key, value, self.revision))
        for key in present:
            old = self.data.pop(key)
            if old.lease in self.leases:
                self.leases[old.lease].keys.discard(key)
            changes.append(Change(key, None, self.revision))
        self._record(changes)

    def delete(self, keys: list[str]) -> int:
        """Delete the keys that exist, all in one revision; returns how many."""
        present = sorted(key for key in set(keys) if key in self.data)
        self.write_all({}, present, None)
        return len(present)

    def keys_under(self, prefix: str) -> list[str]:
        return sorted(key for key in self.data if key.startswith(prefix))

    # ------------------------------------------------------------ history

    def compact_to(self, revision: int) -> None:
        cut = bisect.bisect_left(self.history, revision, key=lambda change: change.revision)
        del self.history[:cut]
        self.compacted = revision
        self.notify()  # a watch behind the compaction must hear it now

    def changes_from(self, revision: int, prefix: str) -> list[Change]:
        start = bisect.bisect_left(self.history, revision, key=lambda change: change.revision)
        return [change for change in self.history[start:] if change.key.startswith(prefix)]

    # ------------------------------------------------------------ leases

    def grant(self, ttl_s: int) -> int:
        lease_id = self._next_lease_id
        self._next_lease_id += 1
        ttl_s = max(ttl_s, MIN_LEASE_TTL_S)
        lease = _Lease(lease_id, ttl_s, 0.0)
        self.leases[lease_id] = lease
        self._refresh(lease)
        return lease_id

    def _refresh(self, lease: _Lease) -> None:
        loop = asyncio.get_running_loop()
        lease.expires_at = loop.time() + lease.ttl_s
        if lease.timer is not None:
            lease.timer.cancel()
        lease.timer = loop.call_at(lease.expires_at, self.revoke, lease.lease_id)

    def keep_alive(self, lease_id: int) -> int:
        lease = self.leases.get(lease_id)
        if lease is None:
            raise LeaseLost(f"etcd lease {lease_id:x} has expired or was revoked")
        self._refresh(lease)
        return lease.ttl_s

    def ttl(self, lease_id: int) -> int:
        lease = self.leases.get(lease_id)
        if lease is None:
            return -1
        return max(0, int(lease.expires_at - asyncio.get_running_loop().time()))

    def revoke(self, lease_id: int) -> None:
        """Revoked or expired (etcd does the same for both): its keys go in one revision."""
        lease = self.leases.pop(lease_id, None)
        if lease is None:
            return
        if lease.timer is not None:
            lease.timer.cancel()
        self.delete(list(lease.keys))

    def expire_due(self) -> None:
        """Leases whose time is up, even if their timer has not run yet."""
        now = asyncio.get_running_loop().time()
        for lease in [lease for lease in self.leases.values() if lease.expires_at <= now]:
            self.revoke(lease.lease_id)


class MemoryStore:
    """An in-memory etcd and one client of it; ``new_client`` makes more clients."""

    def __init__(self, history_limit: int = HISTORY_LIMIT, *, _etcd: _Etcd | None = None) -> None:
        self._etcd = _etcd if _etcd is not None else _Etcd(history_limit)
        self.down = False
        self.closed = False  # close() was called (requests still work, as EtcdStore's do)

    # ------------------------------------------------------------ test controls

    def new_client(self) -> MemoryStore:
        """Another client of the same etcd, with a connection of its own."""
        return MemoryStore(_etcd=self._etcd)

    def go_down(self) -> None:
        """This client loses etcd: requests fail, watches report ConnectionLost."""
        self.down = True
        self._etcd.notify()

    def come_back(self) -> None:
        """This client reaches etcd again; its watches resume on their next retry."""
        self.down = False

    def expire_lease(self, lease_id: int) -> None:
        """The lease runs out now (its keys go), whether this client is down or not."""
        self._etcd.revoke(lease_id)

    @property
    def revision(self) -> int:
        """The store's current revision, read without a request (for tests)."""
        return self._etcd.revision

    # ------------------------------------------------------------ plumbing

    async def _reach(self, what: str) -> _Etcd:
        """One request's round trip: a chance for other tasks to run, then etcd or an outage."""
        await asyncio.sleep(0)
        if self.down:
            raise EtcdUnavailable(f"etcd unreachable for {what}; tried memory (down)")
        self._etcd.expire_due()
        return self._etcd

    async def close(self) -> None:
        self.closed = True

    async def __aenter__(self) -> MemoryStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------ key-value

    async def get(self, key: str) -> KeyValue | None:
        etcd = await self._reach(f"get {key}")
        return etcd.data.get(key)

    async def get_prefix(self, prefix: str) -> tuple[dict[str, KeyValue], int]:
        etcd = await self._reach(f"list {prefix}")
        return {key: etcd.data[key] for key in etcd.keys_under(prefix)}, etcd.revision

    async def put(self, key: str, value: bytes, lease_id: int | None = None) -> int:
        etcd = await self._reach(f"put {key}")
        return etcd.put(key, bytes(value), lease_id, f"put {key}")

    async def delete(self, key: str) -> bool:
        etcd = await self._reach(f"delete {key}")
        return etcd.delete([key]) == 1

    async def delete_prefix(self, prefix: str) -> int:
        etcd = await self._reach(f"delete {prefix}*")
        return etcd.delete(etcd.keys_under(prefix))

    async def create_if_absent(self, key: str, value: bytes, lease_id: int | None = None) -> bool:
        etcd = await self._reach(f"create {key}")
        if key in etcd.data:
            return False
        etcd.put(key, bytes(value), lease_id, f"create {key}")
        return True

    async def put_if_revision(
        self, key: str, value: bytes, mod_revision: int, lease_id: int | None = None
    ) -> bool:
        etcd = await self._reach(f"replace {key}")
        current = etcd.data.get(key)
        if (current.mod_revision if current is not None else 0) != mod_revision:
            return False
        etcd.put(key, bytes(value), lease_id, f"replace {key}")
        return True

    async def write_guarded(
        self,
        guard_key: str,
        guard_revision: int,
        puts: Mapping[str, bytes],
        deletes: Collection[str] = (),
        lease_id: int | None = None,
    ) -> GuardedWrite:
        etcd = await self._reach(f"write {len(puts) + len(deletes)} keys guarded by {guard_key}")
        guard = etcd.data.get(guard_key)
        if (guard.mod_revision if guard is not None else 0) != guard_revision:
            return GuardedWrite(applied=False, resent=False)
        etcd.write_all({key: bytes(value) for key, value in puts.items()}, list(deletes), lease_id)
        return GuardedWrite(applied=True, resent=False)

    async def compact(self, revision: int) -> None:
        what = f"compact to {revision}"
        etcd = await self._reach(what)
        if revision > etcd.revision:
            raise DiscoveryError(
                f"etcd refused {what}: mvcc: required revision is a future revision"
            )
        if revision <= etcd.compacted:
            raise DiscoveryError(f"etcd refused {what}: mvcc: required revision has been compacted")
        etcd.compact_to(revision)

    # ------------------------------------------------------------ leases

    async def grant_lease(self, ttl_s: int) -> int:
        etcd = await self._reach(f"grant a {ttl_s} s lease")
        return etcd.grant(ttl_s)

    async def keep_alive(self, lease_id: int) -> int:
        etcd = await self._reach(f"keep lease {lease_id:x} alive")
        return etcd.keep_alive(lease_id)

    async def lease_ttl(self, lease_id: int) -> int:
        etcd = await self._reach(f"read lease {lease_id:x}")
        return etcd.ttl(lease_id)

    async def revoke_lease(self, lease_id: int) -> None:
        etcd = await self._reach(f"revoke lease {lease_id:x}")
        etcd.revoke(lease_id)

    # ------------------------------------------------------------ watching

    async def follow_prefix(self, prefix: str) -> AsyncIterator[WatchItem]:
        """List, then watch; resume after outages; re-list after compaction.

        The same loop as ``EtcdStore.follow_prefix``, item for item.
        """
        revision: int | None = None  # the last revision we have handed out
        lost = False
        delay = WATCH_RETRY_MIN_S
        while True:
            try:
                if revision is None:
                    items, revision = await self.get_prefix(prefix)
                    yield Snapshot(items, revision)
                    if lost:
                        lost = False
                        log.info("watch on %s: etcd reachable again (listed anew)", prefix)
                await self._reach(f"watch {prefix}")  # the watch is open from here
                if lost:
                    lost = False
                    yield Resumed(revision)
                delay = WATCH_RETRY_MIN_S
                async with contextlib.aclosing(self._watch(prefix, revision + 1)) as changes:
                    async for change in changes:
                        revision = max(revision, change.revision)
                        yield change
            except RevisionCompacted as error:
                log.info("watch on %s: %s; listing again", prefix, error)
                revision = None
                continue
            except EtcdUnavailable as error:
                reason = str(error)
            if not lost:
                lost = True
                yield ConnectionLost(reason)
            await asyncio.sleep(delay)
            delay = min(delay * 2, WATCH_RETRY_MAX_S)

    async def _watch(self, prefix: str, start: int) -> AsyncGenerator[Change, None]:
        """Changes under prefix from revision ``start`` on, until this client goes down.

        As etcd's watch: a start already compacted away is refused after the
        watch was opened, with RevisionCompacted.
        """
        etcd = self._etcd
        while True:
            if self.down:
                raise EtcdUnavailable("watch stream to memory closed (down)")
            if start < etcd.compacted:
                raise RevisionCompacted(etcd.compacted)
            changed = etcd.changed()
            changes = etcd.changes_from(start, prefix)
            if changes:
                start = changes[-1].revision + 1
                for change in changes:
                    yield change
            else:
                start = etcd.revision + 1
                await changed.wait()


if TYPE_CHECKING:  # mypy checks that MemoryStore has every method of Store, with the same types
    _conforms: type[Store] = MemoryStore

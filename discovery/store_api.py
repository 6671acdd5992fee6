"""The store interface: what the agents, the DNS feed, the lease keeper and the CLI ask of etcd.

``Store`` is a ``typing.Protocol`` with two implementations:

* ``discovery.store.EtcdStore``, a real etcd through its client library
  (the only module that imports it);
* ``discovery.memory_store.MemoryStore``, an etcd in memory for tests.

One contract suite (``tests/contract/test_store_contract.py``) runs the same
tests against both, so the in-memory one cannot drift from etcd's behaviour.

The values a store hands out (``KeyValue`` and the items of ``follow_prefix``)
live here too, so that neither implementation needs the other's imports;
``discovery.store`` re-exports them for the code that imported them from there.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Mapping
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class KeyValue:
    key: str
    value: bytes
    mod_revision: int
    create_revision: int
    lease: int


@dataclass(frozen=True)
class Snapshot:
    """Everything under the prefix at ``revision``: replace what you hold."""

    items: dict[str, KeyValue]
    revision: int


@dataclass(frozen=True)
class Change:
    """One key put (value set) or deleted (value None) at ``revision``."""

    key: str
    value: bytes | None
    revision: int


@dataclass(frozen=True)
class ConnectionLost:
    reason: str


@dataclass(frozen=True)
class Resumed:
    revision: int


WatchItem = Snapshot | Change | ConnectionLost | Resumed


@dataclass(frozen=True)
class GuardedWrite:
    """What ``Store.write_guarded`` did."""

    applied: bool  # False: the guard key had moved on, and nothing was written
    # An earlier attempt of the same request went unanswered (a member timed
    # out, a channel closed): it may still be applied, late, even after later
    # writes. Only moving the guard key on makes sure it never is.
    resent: bool


class Store(Protocol):
    """Async access to an etcd (or something that behaves as one).

    Errors are the project's own (``discovery.errors``): ``EtcdUnavailable``
    when etcd cannot be reached, ``LeaseLost`` for a lease that expired or
    was revoked, ``DiscoveryError`` for a request etcd refused.
    """

    async def get(self, key: str) -> KeyValue | None: ...

    async def get_prefix(self, prefix: str) -> tuple[dict[str, KeyValue], int]:
        """Everything under prefix, and the store revision it was read at."""
        ...

    async def put(self, key: str, value: bytes, lease_id: int | None = None) -> int:
        """Write key (under lease_id, or under no lease); returns the new revision.
        Raises LeaseLost if the lease does not exist."""
        ...

    async def delete(self, key: str) -> bool:
        """True if the key existed."""
        ...

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every key under prefix in one revision; returns how many."""
        ...

    async def create_if_absent(self, key: str, value: bytes, lease_id: int | None = None) -> bool:
        """Write key only if it does not exist (one transaction). True if written."""
        ...

    async def put_if_revision(
        self, key: str, value: bytes, mod_revision: int, lease_id: int | None = None
    ) -> bool:
        """Overwrite key only if nobody changed it since mod_revision (0: absent)."""
        ...

    async def write_guarded(
        self,
        guard_key: str,
        guard_revision: int,
        puts: Mapping[str, bytes],
        deletes: Collection[str] = (),
        lease_id: int | None = None,
    ) -> GuardedWrite:
        """Put and delete keys in one transaction, only while ``guard_key``'s mod
        revision is still ``guard_revision`` (0: absent). A writer that moves
        its guard key on (puts it again) makes every request it sent earlier
        and that etcd has not yet applied fail, however late it arrives.
        Raises LeaseLost if the lease does not exist and the guard held."""
        ...

    async def compact(self, revision: int) -> None:
        """Forget the history before revision; watches from before it must list again."""
        ...

    async def grant_lease(self, ttl_s: int) -> int: ...

    async def keep_alive(self, lease_id: int) -> int:
        """Refresh a lease once; returns the TTL it now has. Raises LeaseLost if gone."""
        ...

    async def lease_ttl(self, lease_id: int) -> int:
        """Seconds left on a lease, or -1 when it no longer exists."""
        ...

    async def revoke_lease(self, lease_id: int) -> None:
        """Revoke a lease and so delete every key under it. Gone already is fine."""
        ...

    def follow_prefix(self, prefix: str) -> AsyncIterator[WatchItem]:
        """List, then watch; resume after outages; re-list after compaction.

        A ``Snapshot`` first, then ``Change`` events in revision order;
        ``ConnectionLost`` when etcd is lost, then ``Resumed`` (or a new
        ``Snapshot``) when it is back. Never ends and never raises.
        """
        ...

    async def close(self) -> None: ...


__all__ = [
    "Change",
    "ConnectionLost",
    "GuardedWrite",
    "KeyValue",
    "Resumed",
    "Snapshot",
    "Store",
    "WatchItem",
]

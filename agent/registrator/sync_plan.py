"""What to write to etcd: the agent's wanted records against what etcd holds. Pure.

The agent keeps the records it wants in memory (``wanted``: etcd key ->
Endpoint). Two questions are answered here, without any I/O:

* ``plan_sync``: given what etcd holds for this host (read with one prefix
  listing), which keys to put and which to delete so that etcd equals the
  wanted state, under the agent's current lease. Used at start-up (which also
  removes records a crashed run left behind), after an etcd outage and after
  a new lease was granted.
* ``container_changes``: given one container's old and new records, what
  changed, for the one-line-per-change log.

Records are compared without their ``registered_at``: that field says when a
record first appeared, so it is carried over from the record it replaces
(``carry_registered_at``) rather than counted as a change.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Literal

from discovery.errors import SchemaError
from discovery.schema import Endpoint, decode_service_record, parse_record_key

_ANY_TIME = "1970-01-01T00:00:00.000Z"


@dataclass(frozen=True)
class Held:
    """One record etcd holds for this host, and the etcd lease it is attached to."""

    endpoint: Endpoint
    lease: int


@dataclass(frozen=True)
class Plan:
    puts: dict[str, Endpoint]
    deletes: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.puts or self.deletes)


@dataclass(frozen=True)
class RecordChange:
    kind: Literal["registered", "updated", "deregistered"]
    key: str
    endpoint: Endpoint  # the new record, or for "deregistered" the old one


def same_record(a: Endpoint, b: Endpoint) -> bool:
    """Equal apart from when they were registered."""
    return dataclasses.replace(a, registered_at=_ANY_TIME) == dataclasses.replace(
        b, registered_at=_ANY_TIME
    )


def carry_registered_at(new: Endpoint, old: Endpoint | None) -> Endpoint:
    """``new`` with ``old``'s registration time, when it replaces the same endpoint."""
    if old is None or old.container_id != new.container_id:
        return new
    return dataclasses.replace(new, registered_at=old.registered_at)


def held_for_node(
    items: Mapping[str, tuple[bytes, int]], prefix: str, domain: str, node: str
) -> dict[str, Held]:
    """The service records among ``items`` (key -> (value, lease)) that name ``node``.

    Values that do not parse cannot be proved to be ours and are left alone.
    """
    held = {}
    for key, (value, lease) in items.items():
        try:
            record_key = parse_record_key(prefix, domain, key)
            if record_key.kind != "service":
                continue
            endpoint = decode_service_record(record_key, value)
        except SchemaError:
            continue
        if endpoint.node == node:
            held[key] = Held(endpoint, lease)
    return held


def plan_sync(
    wanted: Mapping[str, Endpoint],
    held: Mapping[str, Held],
    lease_id: int,
    own_leases: Collection[int] = (),
) -> Plan:
    """Puts and deletes that make etcd's records for this host equal ``wanted``.

    A wanted record is put when etcd lacks it, holds a different one, or holds
    it under another lease (a previous run's, which will expire).

    A held record that is not wanted is deleted only when this agent wrote
    it: it sits under ``lease_id`` or one of ``own_leases`` (this agent's
    earlier leases, its previous run's among them). Everything else that
    names this host is someone else's and is left alone: a record made by
    hand (``discoveryctl register --host``, lease 0 or its own lease), or one
    of another agent that was given the same host name.
    """
    puts = {}
    for key, endpoint in wanted.items():
        found = held.get(key)
        if found is None:
            puts[key] = endpoint
        elif found.lease != lease_id or not same_record(found.endpoint, endpoint):
            puts[key] = carry_registered_at(endpoint, found.endpoint)
    ours = {lease_id, *own_leases} - {0}
    deletes = tuple(
        sorted(key for key, found in held.items() if key not in wanted and found.lease in ours)
    )
    return Plan(puts, deletes)


def foreign_leases(held: Mapping[str, Held], own_leases: Collection[int]) -> dict[int, int]:
    """Leases other than ours that hold records naming this host, and how many each
    (lease 0 counts records made by hand without a lease)."""
    counts: dict[int, int] = {}
    for found in held.values():
        if found.lease not in own_leases:
            counts[found.lease] = counts.get(found.lease, 0) + 1
    return counts


def container_changes(
    old: Mapping[str, Endpoint], new: Mapping[str, Endpoint]
) -> list[RecordChange]:
    """Registered, updated and deregistered records of one container, by key."""
    changes = []
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key), new.get(key)
        if before is None and after is not None:
            changes.append(RecordChange("registered", key, after))
        elif after is None and before is not None:
            changes.append(RecordChange("deregistered", key, before))
        elif before is not None and after is not None and not same_record(before, after):
            changes.append(RecordChange("updated", key, after))
    return changes


__all__ = [
    "Held",
    "Plan",
    "RecordChange",
    "carry_registered_at",
    "container_changes",
    "foreign_leases",
    "held_for_node",
    "plan_sync",
    "same_record",
]

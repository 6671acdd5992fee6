"""The etcd side: service records and flannel subnet leases, with their etcd leases' TTLs.

I/O, thin, through the core's ``Store`` (an ``EtcdStore`` in the CLI): one
prefix read for the records, one for the subnet leases, and one lease query
per distinct etcd lease, so each record says how long it has left.
"""

from __future__ import annotations

import asyncio

from discovery import flannel, schema
from discovery.cli import COMMAND_BUDGET_S  # a dead cluster is reported, not waited on
from discovery.errors import EtcdUnavailable
from discovery.settings import Settings
from discovery.store_api import KeyValue, Store
from discovery.tasks import gather_every
from labs.troubleshoot.facts import EtcdItem


async def _items(store: Store, prefix: str) -> list[KeyValue]:
    items, _ = await store.get_prefix(prefix)
    return [items[key] for key in sorted(items)]


async def read_etcd(store: Store, settings: Settings) -> tuple[list[EtcdItem], list[EtcdItem]]:
    """(service records, subnet leases), every one with its lease's seconds left."""
    try:
        return await asyncio.wait_for(_read(store, settings), COMMAND_BUDGET_S)
    except TimeoutError as error:
        raise EtcdUnavailable(
            f"etcd did not answer within {COMMAND_BUDGET_S:.0f} s; tried "
            + ", ".join(settings.etcd_endpoints)
        ) from error


async def _read(store: Store, settings: Settings) -> tuple[list[EtcdItem], list[EtcdItem]]:
    records, leases = await gather_every(
        _items(store, schema.services_prefix(settings.prefix, settings.domain)),
        _items(store, flannel.subnets_prefix(settings.network_prefix)),
    )
    lease_ids = sorted({kv.lease for kv in [*records, *leases] if kv.lease})
    ttls = dict(zip(lease_ids, await gather_every(*map(store.lease_ttl, lease_ids)), strict=True))

    def item(kv: KeyValue) -> EtcdItem:
        return EtcdItem(
            key=kv.key,
            value=kv.value.decode(errors="replace"),
            mod_revision=kv.mod_revision,
            lease_id=kv.lease,
            lease_ttl_s=ttls.get(kv.lease),
        )

    return [item(kv) for kv in records], [item(kv) for kv in leases]

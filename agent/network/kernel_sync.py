"""Make the kernel hold the desired entries, with the smallest change.

Reads back what the kernel holds on our VXLAN device (through
``agent.network.netlink``), lets the pure ``plan_steps`` decide, and applies
the steps in their order (neighbour, FDB, route when adding; the reverse when
removing). Entries it does not own (see ``Netlink.read_entries``) are never
read, so never touched.

Two sizes of pass: a full one (every entry on the device: at start, after a
re-list, and every ``--reconcile-interval``) and a scoped one for a lease
event, which reads back only the keys that lease touches. On 20 hosts the
full read-back is about 60 netlink messages for pyroute2 to decode per host;
the scoped one is three, which is what keeps convergence fast when every
host reacts to the same event on a small machine.
"""

from __future__ import annotations

import ipaddress
import logging

from agent.network.desired import (
    FdbEntry,
    KernelEntries,
    NeighbourEntry,
    RouteEntry,
    Scope,
    restrict,
)
from agent.network.diff import Step, plan_steps
from agent.network.metrics import NetworkMetrics
from agent.network.netlink import Netlink

log = logging.getLogger(__name__)


class KernelSync:
    def __init__(
        self,
        netlink: Netlink,
        ifindex: int,
        network: ipaddress.IPv4Network,
        metrics: NetworkMetrics | None = None,
    ) -> None:
        self.netlink = netlink
        self.ifindex = ifindex  # updated by the owner if the device is recreated
        self.network = network
        self.metrics = metrics or NetworkMetrics()

    async def reconcile(self, desired: KernelEntries, scope: Scope | None = None) -> list[Step]:
        """Everything (scope None), or only the entries whose keys are in
        ``scope``: the leases that just changed, read back key by key."""
        if scope is None:
            actual = await self.netlink.read_entries(self.ifindex, self.network)
        else:
            actual = await self.netlink.read_entries_in(self.ifindex, self.network, scope)
            desired = restrict(desired, scope)
        steps = plan_steps(desired, actual)
        for step in steps:
            await self.apply(step)
            self.metrics.programmed(step)
            log.info("%s", step, extra={"fields": {"action": step.action}})
        return steps

    async def apply(self, step: Step) -> None:
        entry, index, netlink = step.entry, self.ifindex, self.netlink
        adding = step.action in ("add", "replace")
        if isinstance(entry, NeighbourEntry):
            await (netlink.add_neighbour if adding else netlink.delete_neighbour)(index, entry)
        elif isinstance(entry, FdbEntry):
            await (netlink.add_fdb if adding else netlink.delete_fdb)(index, entry)
        elif isinstance(entry, RouteEntry):
            await (netlink.add_route if adding else netlink.delete_route)(index, entry)

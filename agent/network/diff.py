"""Desired versus actual kernel entries -> the smallest list of steps. Pure.

Order matters and is the same as flannel's:

* adding: neighbour, then FDB entry, then route last; a route whose gateway
  has no neighbour entry yet would make the kernel ARP across the overlay;
* removing: the reverse, route first, so no route points at a half-removed
  remote.

All removals come before all additions, so an entry that moved (a remote
subnet's VTEP MAC changed) never briefly exists twice. A neighbour or route
whose key (address, destination) stays but whose value changes is replaced
in place rather than deleted and added.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from agent.network.desired import Entry, FdbEntry, KernelEntries, NeighbourEntry

Action = Literal["add", "replace", "delete"]


@dataclass(frozen=True)
class Step:
    action: Action
    entry: Entry

    def __str__(self) -> str:
        return f"{self.action} {describe(self.entry)}"


def describe(entry: Entry) -> str:
    if isinstance(entry, NeighbourEntry):
        return f"neighbour {entry.address} lladdr {entry.mac}"
    if isinstance(entry, FdbEntry):
        return f"fdb {entry.mac} dst {entry.remote_ip}"
    return f"route {entry.destination} via {entry.gateway} onlink"


def plan_steps(desired: KernelEntries, actual: KernelEntries) -> list[Step]:
    """What to do, in order, to turn ``actual`` into ``desired``; [] if equal."""
    actual_neighbours = {entry.address: entry for entry in actual.neighbours}
    wanted_neighbours = {entry.address: entry for entry in desired.neighbours}
    actual_routes = {entry.destination: entry for entry in actual.routes}
    wanted_routes = {entry.destination: entry for entry in desired.routes}

    deletes: list[Step] = []
    deletes += [
        Step("delete", actual_routes[key])
        for key in sorted(actual_routes.keys() - wanted_routes.keys())
    ]
    deletes += [Step("delete", entry) for entry in sorted(actual.fdb - desired.fdb)]
    deletes += [
        Step("delete", actual_neighbours[key])
        for key in sorted(actual_neighbours.keys() - wanted_neighbours.keys())
    ]

    adds: list[Step] = []
    for address in sorted(wanted_neighbours):
        neighbour = wanted_neighbours[address]
        if address not in actual_neighbours:
            adds.append(Step("add", neighbour))
        elif actual_neighbours[address] != neighbour:
            adds.append(Step("replace", neighbour))
    adds += [Step("add", entry) for entry in sorted(desired.fdb - actual.fdb)]
    for destination in sorted(wanted_routes):
        route = wanted_routes[destination]
        if destination not in actual_routes:
            adds.append(Step("add", route))
        elif actual_routes[destination] != route:
            adds.append(Step("replace", route))
    return deletes + adds

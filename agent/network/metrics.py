"""What the network half counts, as prometheus_client metrics.

One ``NetworkMetrics`` per agent: ``NetworkAgent`` counts etcd outages (its
watch on the subnet leases), reconcile passes and repairs, ``KernelSync``
counts every entry it programs. With a registry (``--metrics``) they are
served at /metrics; without one they are registered nowhere.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge

from agent.network.desired import Entry, FdbEntry, NeighbourEntry, RouteEntry
from agent.network.diff import Step
from discovery.metrics import EtcdHealth

PREFIX = "discovery_agent_network_"
KINDS = {NeighbourEntry: "neighbour", FdbEntry: "fdb", RouteEntry: "route"}
ACTIONS = ("add", "replace", "delete")  # diff.Step's
SCOPES = ("full", "scoped")


def kind_of(entry: Entry) -> str:
    return KINDS[type(entry)]


class NetworkMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.etcd = EtcdHealth(registry, PREFIX)  # as the watch on the subnet leases sees it
        self.subnet_lease_held = Gauge(
            f"{PREFIX}subnet_lease_held",
            "1 while this host's subnet lease is held in etcd (written under a live etcd lease)",
            registry=registry,
        )
        self.remote_leases = Gauge(
            f"{PREFIX}remote_leases",
            "Other hosts' subnet leases, as last read from etcd (before screening)",
            registry=registry,
        )
        self.kernel_entries = Counter(
            f"{PREFIX}kernel_entries_programmed",
            "Kernel entries on the VXLAN device added, replaced or deleted, by kind and action",
            ["kind", "action"],
            registry=registry,
        )
        self.kernel_repairs = Counter(
            f"{PREFIX}kernel_entries_repaired",
            "Entries the periodic full check found missing, wrong or extra and fixed "
            "(also counted in kernel_entries_programmed)",
            ["kind", "action"],
            registry=registry,
        )
        self.reconcile_passes = Counter(
            f"{PREFIX}reconcile_passes",
            "Reconcile passes completed: full (every entry read back) or scoped (one change's)",
            ["scope"],
            registry=registry,
        )
        for kind in KINDS.values():  # every series from the start, at 0
            for action in ACTIONS:
                self.kernel_entries.labels(kind, action)
                self.kernel_repairs.labels(kind, action)
        for scope in SCOPES:
            self.reconcile_passes.labels(scope)

    def programmed(self, step: Step) -> None:
        self.kernel_entries.labels(kind_of(step.entry), step.action).inc()

    def repaired(self, steps: Iterable[Step]) -> None:
        for step in steps:
            self.kernel_repairs.labels(kind_of(step.entry), step.action).inc()


__all__ = ["PREFIX", "NetworkMetrics"]

"""What the registrator half counts, as prometheus_client metrics.

One ``ServicesMetrics`` per agent, handed to the writer, the Docker loop and
the lease keeper, which count where things happen. With a registry (``--metrics``)
they are served at /metrics; without one they are registered nowhere and
counting them costs next to nothing.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from agent.registrator.events import CONTAINER_ACTIONS, NETWORK_ACTIONS
from discovery.metrics import EtcdHealth

PREFIX = "discovery_agent_services_"


class ServicesMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.etcd = EtcdHealth(registry, PREFIX)  # as the lease keeper sees it
        self.records_written = Counter(
            f"{PREFIX}records_written",
            "Records put to etcd and acknowledged: service endpoints and this host's node record",
            registry=registry,
        )
        self.records_deleted = Counter(
            f"{PREFIX}records_deleted",
            "Records deleted from etcd and acknowledged (containers gone, leftovers of a crash)",
            registry=registry,
        )
        self.docker_events = Counter(
            f"{PREFIX}docker_events",
            "Docker events that made the agent look at a container again, by action "
            "(events replayed after a reconnect count again)",
            ["action"],
            registry=registry,
        )
        for action in sorted(CONTAINER_ACTIONS | NETWORK_ACTIONS):
            self.docker_events.labels(action)  # every series from the start, at 0
        self.docker_reachable = Gauge(
            f"{PREFIX}docker_reachable",
            "1 while the Docker daemon is followed (listed, events streaming), else 0",
            registry=registry,
        )
        self.lease_held = Gauge(
            f"{PREFIX}lease_held",
            "1 while the agent holds an etcd lease its records are written under, else 0",
            registry=registry,
        )

    def wrote(self, puts: int, deletes: int) -> None:
        self.records_written.inc(puts)
        self.records_deleted.inc(deletes)


__all__ = ["PREFIX", "ServicesMetrics"]

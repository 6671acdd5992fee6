"""The DNS server's figures as prometheus_client metrics (``discovery-dns --metrics ADDR:PORT``).

The hot path keeps counting with plain integers (``handler.Stats``, the
server's and the feed's counters): ``DnsCollector`` reads them when
/metrics is scraped, through a figures function the service hands in, so
this module knows nothing of DNS and answering a query costs no more than
before. discovery.metrics serves the registry the collector is in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

PREFIX = "discovery_dns_"
# name (without PREFIX) -> (kind, value), as DnsService.metrics() returns them
Figures = Mapping[str, tuple[str, float]]

HELP = {
    "queries_total": "DNS messages received, UDP and TCP",
    "cache_hits_total": "Queries answered from the packed-answer cache",
    "truncated_total": "Replies sent with TC set: the answer did not fit over UDP",
    "formerr_total": "Replies with FORMERR (a message that could not be parsed)",
    "notimp_total": "Replies with NOTIMP (an opcode other than QUERY)",
    "refused_total": "Replies with REFUSED: zone transfers, classes other than IN and ANY, "
    "names outside the domain when there is no upstream",
    "servfail_total": "Replies with SERVFAIL: catalog not loaded yet, no upstream answered, bugs",
    "dropped_total": "Messages left unanswered: replies and runts received, replies a full "
    "socket buffer refused, forwards over the pending limit",
    "forwarded_total": "Queries forwarded to an upstream resolver",
    "forward_failures_total": "Forwarded queries no upstream answered",
    "handler_errors_total": "Queries that hit a bug in the handler (answered SERVFAIL, logged)",
    "catalog_connected": "1 while the catalog follows etcd, 0 while it serves the last known copy",
    "etcd_unreachable": "1 while etcd is unreachable (answers come from the last known catalog)",
    "etcd_outages_total": "Times the etcd watch was lost",
    "catalog_revision": "The etcd revision the catalog is at (also the SOA serial)",
    "catalog_endpoints": "Service endpoints in the catalog",
    "catalog_nodes": "Node records in the catalog",
    "cache_entries": "Packed answers in the cache",
    "tcp_connections": "TCP connections open now",
    "tcp_refused_total": "TCP connections refused for being over --max-tcp-connections",
    "uptime_seconds": "Seconds since the service started",
}


class DnsCollector(Collector):
    """Reads the live figures at every scrape; registered in the service's own registry."""

    def __init__(self, figures: Callable[[], Figures], prefix: str = PREFIX) -> None:
        self._figures = figures
        self._prefix = prefix

    def collect(self) -> Iterator[Metric]:
        for name, (kind, value) in self._figures().items():
            family = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            yield family(f"{self._prefix}{name}", HELP.get(name, name), value=value)


__all__ = ["DnsCollector", "Figures"]

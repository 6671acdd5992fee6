"""GET /metrics for every process: a prometheus_client registry, served over aiohttp.

    registry = new_registry()
    records = Counter("discovery_agent_services_records_written", "...", registry=registry)
    server = await serve_metrics(registry, "127.0.0.1", 0)   # 0: a free port
    ... server.port, server.url ...
    await server.close()

Each process (and each service instance a test starts) makes its own
registry with ``new_registry``, never prometheus_client's global one, so
several instances in one process never share or clash over a metric.
Metric objects made with ``registry=None`` are registered nowhere: that is
what an owner gets when nobody serves its metrics, so the code counting
never needs to ask whether anyone is listening.

``parse_address`` reads an ``ADDR:PORT`` flag value (``--metrics``,
``--listen``); ``EtcdHealth`` is the pair of metrics each agent half keeps
about etcd: outages seen, and whether it answers now.
"""

from __future__ import annotations

import ipaddress
import logging
import os

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

log = logging.getLogger(__name__)
# No "<name>_created" gauge beside every counter: a start timestamp per series
# that doubles the text and tells a learner nothing process_start_time_seconds
# does not. A process-wide switch; every metric of this project is made by code
# that imports this module first.
disable_created_metrics()


def parse_address(text: str, default_port: int | None = None) -> tuple[str, int]:
    """'127.0.0.1:9153' / '[::1]:9153' -> (host, port); a bare address takes
    ``default_port``, or is refused when there is none. Raises ValueError."""
    host, port = text, default_port
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"bad address {text!r}: expected [IPv6]:PORT")
            port = int(rest[1:])
    elif text.count(":") == 1:
        host, port_text = text.split(":")
        port = int(port_text)
    ipaddress.ip_address(host)
    if port is None:
        raise ValueError(f"bad address {text!r}: expected ADDR:PORT")
    if not 0 <= port < 65536:
        raise ValueError(f"bad address {text!r}: port {port} outside 0-65535")
    return host, port


def new_registry() -> CollectorRegistry:
    """A registry of one's own, with the process, platform and GC figures that
    prometheus_client's default registry would carry (process_cpu_seconds_total ...)."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


class EtcdHealth:
    """``<prefix>etcd_outages_total`` and ``<prefix>etcd_reachable`` (0 until etcd first answers).

    The owner calls ``lost()`` once per outage, where it logs that etcd is
    gone, and ``reached()`` whenever etcd answered.
    """

    def __init__(self, registry: CollectorRegistry | None, prefix: str) -> None:
        self.outages = Counter(
            f"{prefix}etcd_outages",
            "Times etcd became unreachable (each outage counted once, however long)",
            registry=registry,
        )
        self.reachable = Gauge(
            f"{prefix}etcd_reachable",
            "1 while etcd answers, 0 during an outage and before the first answer",
            registry=registry,
        )

    def lost(self) -> None:
        self.outages.inc()
        self.reachable.set(0)

    def reached(self) -> None:
        self.reachable.set(1)


class MetricsServer:
    """A running /metrics endpoint: ``port`` is the bound port, ``close()`` stops it."""

    def __init__(self, runner: web.AppRunner, host: str, port: int) -> None:
        self._runner = runner
        self.host = host
        self.port = port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    async def close(self) -> None:
        await self._runner.cleanup()

    async def __aenter__(self) -> MetricsServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def serve_metrics(registry: CollectorRegistry, host: str, port: int) -> MetricsServer:
    """Serve ``registry`` at GET /metrics on host:port (0: a free port).

    A port that cannot be bound raises OSError naming the address, with
    nothing left open.
    """

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as error:
        await runner.cleanup()
        why = os.strerror(error.errno) if error.errno else str(error)
        raise OSError(error.errno, f"cannot serve /metrics on {host}:{port}: {why}") from error
    except BaseException:
        await runner.cleanup()
        raise
    server = MetricsServer(runner, host, int(runner.addresses[0][1]))
    log.info("serving metrics", extra={"fields": {"url": server.url}})
    return server


__all__ = [
    "EtcdHealth",
    "MetricsServer",
    "new_registry",
    "parse_address",
    "serve_metrics",
]

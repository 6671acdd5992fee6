"""A tiny metrics endpoint (aiohttp): GET /metrics in the Prometheus text format.

Optional (``discovery-dns --metrics 127.0.0.1:9153``). The figures come from a
render function the service hands in, so this module knows nothing of DNS.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from aiohttp import web

MetricsRender = Callable[[], Mapping[str, tuple[str, float]]]


def prometheus_text(
    metrics: Mapping[str, tuple[str, float]], prefix: str = "discovery_dns_"
) -> str:
    """{'queries_total': ('counter', 12)} -> '# TYPE discovery_dns_queries_total counter\\n...'"""
    lines = []
    for name, (kind, value) in metrics.items():
        lines.append(f"# TYPE {prefix}{name} {kind}")
        text = str(value) if isinstance(value, int) else f"{value:.6g}"
        lines.append(f"{prefix}{name} {text}")
    return "\n".join(lines) + "\n"


async def start_metrics(host: str, port: int, render: MetricsRender) -> tuple[web.AppRunner, int]:
    """Serve /metrics on host:port (0: a free port); returns the runner and the port."""

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(text=prometheus_text(render()), content_type="text/plain")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()  # the port is taken, say: leave nothing behind
        raise
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    bound = sockets[0].getsockname()[1] if sockets else port
    return runner, int(bound)

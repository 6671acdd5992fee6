"""The live map in a real browser (Debian's headless chromium) against a real etcd.

Measures in the browser: the page records Date.now() as it renders each update
(``window.mapRenders``), the test notes the wall clock before each etcd write;
the difference is the change-to-page latency (watch, publish, SSE, render).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import pytest

from discovery import schema
from discovery.settings import Settings
from discovery.store import EtcdStore
from labs.etcd_server import EtcdCluster
from mapserver.server import MapServer
from tests.fixtures.etcd import settings_for
from tests.integration.cdp import CHROMIUM, Page, headless_chromium
from tests.integration.map_support import (
    DB,
    HOST2,
    HOST3,
    LEASE2,
    LEASE3,
    SICK,
    WEB2,
    WEB3,
    endpoint_key,
    put_endpoint,
    put_lease,
    put_node,
    put_report,
    start_map,
)
from tests.prerequisites import require_binary

pytestmark = pytest.mark.etcd
CHANGES = 100


async def rendered_at(page: Page, revision: int, timeout_ms: int = 5000) -> float | None:
    """Date.now() of the first render showing ``revision`` or later (None: not in time)."""
    return await page.evaluate(
        f"""new Promise((resolve) => {{
            const limit = Date.now() + {timeout_ms};
            const look = () => {{
                const render = (window.mapRenders || []).find((r) => r.revision >= {revision});
                if (render) resolve(render.at);
                else if (Date.now() > limit) resolve(null);
                else setTimeout(look, 2);
            }};
            look();
        }})"""
    )


async def shown(page: Page, selector: str) -> bool:
    return bool(await page.evaluate(f"document.querySelector({selector!r}) !== null"))


async def change_latency_ms(page: Page, write) -> float:
    """Milliseconds from just before an etcd write to the page rendering it."""
    before = time.time() * 1000
    revision = await write()
    at = await rendered_at(page, revision)
    assert at is not None, f"revision {revision} never reached the page"
    return at - before


async def test_the_page_shows_hosts_and_changes_within_a_second(
    etcd_settings: Settings, tmp_path: Path
):
    require_binary(Path(CHROMIUM).name)
    settings = etcd_settings
    async with EtcdStore(settings) as store:
        for node, lease in ((HOST2, LEASE2), (HOST3, LEASE3)):
            await put_node(store, settings, node)
            await put_lease(store, settings, lease)
        # host2's kernel lacks its FDB entry for host3: a partial tunnel, until host2 reports it.
        await put_report(store, settings, LEASE2, (LEASE3,), without_fdb=True)
        await put_report(store, settings, LEASE3, (LEASE2,))
        for endpoint in (WEB2, DB, SICK):
            await put_endpoint(store, settings, endpoint)
        server: MapServer = await start_map(settings)
        try:
            async with headless_chromium(tmp_path / "chromium") as page:
                await page.navigate(server.url + "/")
                hosts = await page.evaluate(
                    """new Promise((resolve) => {
                        const limit = Date.now() + 10000;
                        const look = () => {
                            const names = [...document.querySelectorAll("[data-host]")]
                                .map((e) => e.dataset.host);
                            if (names.length >= 2 || Date.now() > limit) resolve(names);
                            else setTimeout(look, 10);
                        };
                        look();
                    })"""
                )
                assert hosts == ["host2", "host3"]
                text = await page.evaluate("document.body.innerText")
                for expected in (HOST3.address, LEASE3.vtep_mac, HOST3.subnet, "Legend"):
                    assert expected.lower() in text.lower()  # headings are upper-cased by CSS
                assert not await shown(page, "#banner.shown")

                # The tunnel, drawn and listed as the reports say: partial, then complete.
                tunnel = '[data-tunnel="host2-host3"][data-state="{}"]'
                assert await shown(page, tunnel.format("partial"))
                assert "host2: no FDB entry for" in text
                fixed_ms = await change_latency_ms(
                    page, lambda: put_report(store, settings, LEASE2, (LEASE3,))
                )
                assert await shown(page, tunnel.format("complete")) and fixed_ms < 1000
                assert await shown(page, 'line.t-complete[data-tunnel="host2-host3"]')

                # web on host3: on the page within 1 s of the put, gone within 1 s of the delete
                row = f'[data-host="host3"] [data-endpoint="web/{WEB3.endpoint_id}"]'
                put_ms = await change_latency_ms(page, lambda: put_endpoint(store, settings, WEB3))
                assert await shown(page, row)
                assert put_ms < 1000
                web_answer = await page.evaluate(
                    "document.querySelector('[data-service=\"web\"]').innerText"
                )
                assert WEB2.address in web_answer and WEB3.address in web_answer
                assert SICK.address not in web_answer  # unhealthy: not in the answer

                async def delete_web3() -> int:
                    assert await store.delete(endpoint_key(settings, WEB3))
                    return (await store.get_prefix(endpoint_key(settings, WEB3)))[1]

                delete_ms = await change_latency_ms(page, delete_web3)
                assert not await shown(page, row)
                assert delete_ms < 1000
                print(f"\nweb on host3: shown {put_ms:.1f} ms after the put, "
                      f"gone {delete_ms:.1f} ms after the delete")  # fmt: skip

                # change-to-page latency over CHANGES changes: health flips of one endpoint
                latencies = []
                for i in range(CHANGES):
                    health = "unhealthy" if i % 2 == 0 else "passing"
                    flipped = schema.Endpoint(**{**WEB2.__dict__, "health": health})
                    latencies.append(
                        await change_latency_ms(
                            page, lambda e=flipped: put_endpoint(store, settings, e)
                        )
                    )
                cuts = statistics.quantiles(latencies, n=100)
                print(
                    f"change-to-page latency, {CHANGES} changes: p50 {cuts[49]:.1f} ms, "
                    f"p99 {cuts[98]:.1f} ms, max {max(latencies):.1f} ms"
                )
                assert cuts[49] < 1000 and max(latencies) < 1000

                await put_endpoint(store, settings, WEB3)
                await rendered_at(page, server.catalog.revision)
                screenshot = await page.screenshot(tmp_path / "map-page.png")
                print(f"screenshot: {screenshot}")
                assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        finally:
            await server.close()


async def test_etcd_down_the_page_shows_a_banner_with_the_age_and_the_last_state(
    own_etcd: EtcdCluster, tmp_path: Path
):
    require_binary(Path(CHROMIUM).name)
    settings = settings_for(own_etcd.endpoints, request_timeout_s=0.5)
    async with EtcdStore(settings) as store:
        for node, lease in ((HOST2, LEASE2), (HOST3, LEASE3)):
            await put_node(store, settings, node)
            await put_lease(store, settings, lease)
        await put_endpoint(store, settings, WEB3)
    server = await start_map(settings)
    try:
        async with headless_chromium(tmp_path / "chromium") as page:
            await page.navigate(server.url + "/")
            assert await rendered_at(page, 1) is not None
            own_etcd.members[0].stop()
            banner = await page.evaluate(
                """new Promise((resolve) => {
                    const limit = Date.now() + 20000;
                    const look = () => {
                        const el = document.querySelector("#banner.shown");
                        if (el && / [1-9][0-9]* s old/.test(el.innerText) || Date.now() > limit)
                            resolve(el ? el.innerText : null);
                        else setTimeout(look, 50);
                    };
                    look();
                })""",
            )
            assert banner is not None and "etcd is unreachable" in banner
            assert "last known state" in banner and " s old" in banner
            assert await shown(page, f'[data-endpoint="web/{WEB3.endpoint_id}"]')
            assert await page.evaluate("document.getElementById('etcd').innerText") == (
                "etcd: unreachable"
            )
            screenshot = await page.screenshot(tmp_path / "map-page-etcd-down.png")
            print(f"\nbanner: {banner!r}\nscreenshot: {screenshot}")
    finally:
        await server.close()

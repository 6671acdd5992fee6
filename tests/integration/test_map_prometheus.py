"""Prometheus discovers the lab's web endpoints through consul_sd_configs.

The proof that a tool built for Consul's catalog reads the map server
unchanged: a real Prometheus, started here on a free loopback port with a
config pointing ``consul_sd_configs`` at the map server, lists the ``web``
endpoints as targets (passing ones kept by relabelling), and a new endpoint
appears after it is registered, through Prometheus's blocking queries.
Prometheus is always killed by its PID at the end.

The binary is Debian's (``/usr/bin/prometheus``, installed by bootstrap), or
``$MAP_TEST_PROMETHEUS``. Debian bookworm's 2.42.0+ds is built WITHOUT Consul
service discovery (its changelog, 2.33.5+ds1-4: "Disable Consul SD until its
Debian package is back in shape"): ``promtool check config`` then says
"field consul_sd_configs not found", and this test skips saying so. With a
Prometheus that has it (upstream's build, or a Debian release that put it
back), it runs. ``test_map_consul_client.py`` meanwhile proves the wire
format with a real Consul client library.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from pathlib import Path

import aiohttp
import pytest

from discovery import schema
from discovery.settings import Settings
from discovery.store import EtcdStore
from labs.etcd_server import free_port
from mapserver.server import MapServer
from tests.integration.map_support import SICK, WEB2, WEB3, put_endpoint, start_map, write_lab

pytestmark = pytest.mark.etcd

PROMETHEUS = os.environ.get("MAP_TEST_PROMETHEUS", "/usr/bin/prometheus")
DISCOVERY_BUDGET_S = 30.0

CONFIG = """\
global:
  scrape_interval: 1h        # the targets are never scraped in this test, only discovered
  evaluation_interval: 1h
scrape_configs:
  - job_name: lab-web
    consul_sd_configs:
      - server: {server}     # the map server, as if it were a Consul agent
        services: [web]
    relabel_configs:
      # Only the endpoints whose Docker health is passing.
      - source_labels: [__meta_consul_health]
        regex: passing
        action: keep
      - source_labels: [__meta_consul_node]
        target_label: host
      - source_labels: [__meta_consul_service_metadata_container_name]
        target_label: container
"""


def require_prometheus_with_consul_sd(config: Path) -> None:
    """Loudly when the binary is missing (bootstrap installs it: a broken set-up, never a
    skip); a skip that says why when this build of Prometheus has no Consul SD."""
    if shutil.which(PROMETHEUS) is None:
        pytest.fail(
            f"needs Prometheus ({PROMETHEUS} is missing): run scripts/bootstrap, "
            "or point MAP_TEST_PROMETHEUS at a prometheus binary",
            pytrace=False,
        )
    promtool = Path(PROMETHEUS).with_name("promtool")
    if not promtool.exists():
        return  # no way to ask beforehand: starting it will tell
    check = subprocess.run(
        [promtool, "check", "config", str(config)], capture_output=True, text=True, timeout=60
    )
    said = check.stdout + check.stderr
    if "consul_sd_configs not found" in said:
        pytest.skip(
            f"{PROMETHEUS} is built without Consul service discovery (Debian bookworm's "
            "2.42.0+ds disables it); set MAP_TEST_PROMETHEUS to a build that has it"
        )
    assert check.returncode == 0, f"promtool check config:\n{said}"


def write_config(server: MapServer, tmp_path: Path) -> Path:
    config = tmp_path / "prometheus.yml"
    config.write_text(CONFIG.format(server=f"127.0.0.1:{server.port}"))
    return config


def start_prometheus(config: Path, tmp_path: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=debug",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    log.close()
    return process, port


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()  # by its PID: only the Prometheus this test started
    process.wait(timeout=10)


async def active_targets(port: int) -> list[dict]:
    url = f"http://127.0.0.1:{port}/api/v1/targets?state=active"
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session,
            session.get(url) as response,
        ):
            if response.status != 200:
                return []
            return (await response.json())["data"]["activeTargets"]
    except (aiohttp.ClientError, TimeoutError):
        return []  # not listening yet


async def wait_for_targets(
    process: subprocess.Popen[bytes], port: int, want: set[str], log: Path
) -> list[dict]:
    deadline = time.monotonic() + DISCOVERY_BUDGET_S
    seen: list[dict] = []
    while time.monotonic() < deadline:
        assert process.poll() is None, "prometheus exited:\n" + log.read_text()[-3000:]
        seen = [t for t in await active_targets(port) if t["labels"].get("job") == "lab-web"]
        if {t["labels"]["instance"] for t in seen} == want:
            return seen
        await asyncio.sleep(0.5)
    tail = "\n".join(log.read_text().splitlines()[-40:])
    raise AssertionError(
        f"prometheus did not list {sorted(want)} within {DISCOVERY_BUDGET_S:g} s; "
        f"it listed {[t['labels'].get('instance') for t in seen]}; its log ends:\n{tail}"
    )


async def test_prometheus_discovers_the_web_endpoints_through_consul_sd(
    etcd_settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = etcd_settings
    await write_lab(settings)
    server = await start_map(settings)
    process = None
    try:
        config = write_config(server, tmp_path)
        require_prometheus_with_consul_sd(config)
        started = time.monotonic()
        process, port = start_prometheus(config, tmp_path)
        want = {f"{WEB2.address}:80", f"{WEB3.address}:80"}  # not SICK: relabelled away
        targets = await wait_for_targets(process, port, want, tmp_path / "prometheus.log")
        found_after = time.monotonic() - started
        by_instance = {t["labels"]["instance"]: t for t in targets}
        web2 = by_instance[f"{WEB2.address}:80"]
        assert web2["labels"]["host"] == "host2" and web2["labels"]["container"] == "web-1"
        assert web2["discoveredLabels"]["__meta_consul_service"] == "web"
        assert web2["discoveredLabels"]["__meta_consul_address"] == "192.168.57.12"
        assert web2["discoveredLabels"]["__meta_consul_dc"] == "lab"
        assert f"{SICK.address}:80" not in by_instance

        # A new endpoint reaches Prometheus through its blocking query on the map server.
        newcomer = schema.Endpoint(service="web", address="10.5.2.7", port=8080, node="host2")
        async with EtcdStore(settings) as store:
            await put_endpoint(store, settings, newcomer)
        registered = time.monotonic()
        await wait_for_targets(process, port, want | {"10.5.2.7:8080"}, tmp_path / "prometheus.log")
        with capsys.disabled():
            print(
                f"\nprometheus listed the web targets {found_after:.1f} s after it started, "
                f"and a new one {time.monotonic() - registered:.1f} s after its registration"
            )
    finally:
        if process is not None:
            stop(process)
        await server.close()

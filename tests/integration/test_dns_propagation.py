"""From `discoveryctl register` to a DNS answer, and from `deregister` to none.

Both commands run as a learner runs them: the console scripts, as subprocesses,
with the DNS server started the same way (`discovery-dns`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from discovery.settings import Settings
from labs.etcd_server import free_port
from labs.testing.waiting import wait_until
from tests.integration.dns_clients import parse_client_output
from tests.prerequisites import require_binary

pytestmark = pytest.mark.etcd

BIN = Path(sys.executable).parent
START_TIMEOUT_S = 15.0


def settings_environment(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "DISCOVERY_ETCD_ENDPOINTS": ",".join(settings.etcd_endpoints),
        "DISCOVERY_PREFIX": settings.prefix,
    }


def dig(port: int, *args: str) -> list[str]:
    result = subprocess.run(
        ["dig", "@127.0.0.1", "-p", str(port), "+time=1", "+tries=1", *args],
        capture_output=True,
        text=True,
        timeout=10,
    )
    reply = parse_client_output(result.stdout)
    return [reply.status, *reply.rdata()]


@pytest.fixture
def dns_process(etcd_settings: Settings, tmp_path: Path) -> Iterator[int]:
    require_binary("dig")
    port = free_port()
    log_path = tmp_path / "discovery-dns.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(BIN / "discovery-dns"), "--listen", f"127.0.0.1:{port}", "--log-level", "debug"],
            env=settings_environment(etcd_settings),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:

        def ready() -> bool:
            assert process.poll() is None, log_path.read_text()
            return dig(port, "lab", "SOA")[0] == "NOERROR"

        wait_until(ready, START_TIMEOUT_S, "discovery-dns answering")
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert process.returncode == 0, log_path.read_text()


def discoveryctl(settings: Settings, *args: str) -> None:
    result = subprocess.run(
        [str(BIN / "discoveryctl"), *args],
        env=settings_environment(settings),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr


def test_register_then_deregister_is_answered_then_not(
    etcd_settings: Settings, dns_process: int
) -> None:
    port = dns_process
    assert dig(port, "shop.service.lab") == ["NXDOMAIN"]
    discoveryctl(etcd_settings, "register", "shop", "--address", "10.5.4.2", "--port", "8080")
    discoveryctl(etcd_settings, "register", "shop", "--address", "10.5.4.3", "--port", "8080")
    wait_until(
        lambda: dig(port, "shop.service.lab") == ["NOERROR", "10.5.4.2", "10.5.4.3"],
        5,
        "registered endpoints answered",
    )
    srv = dig(port, "_shop._tcp.service.lab", "SRV")
    assert srv[0] == "NOERROR" and len(srv) == 3
    discoveryctl(etcd_settings, "deregister", "shop", "--address", "10.5.4.2", "--port", "8080")
    wait_until(
        lambda: dig(port, "shop.service.lab") == ["NOERROR", "10.5.4.3"],
        5,
        "deregistered endpoint gone",
    )
    discoveryctl(etcd_settings, "deregister", "shop", "--address", "10.5.4.3", "--port", "8080")
    wait_until(lambda: dig(port, "shop.service.lab") == ["NXDOMAIN"], 5, "service gone")

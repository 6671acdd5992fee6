"""`discoveryctl map` as a learner runs it: prints its URL, serves, stops on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from discovery.settings import Settings
from labs.etcd_server import free_port
from mapserver.cli import main
from tests.integration.map_support import write_lab

pytestmark = pytest.mark.etcd
DISCOVERYCTL = Path(sys.executable).parent / "discoveryctl"


async def test_discoveryctl_map_prints_its_url_and_serves(etcd_settings: Settings) -> None:
    settings = etcd_settings
    await write_lab(settings)
    port = free_port()
    process = subprocess.Popen(
        [
            DISCOVERYCTL, "map", "--listen", f"127.0.0.1:{port}",
            "--etcd-endpoints", ",".join(settings.etcd_endpoints), "--prefix", settings.prefix,
        ],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"at (http://127\.0\.0\.1:\d+)/v1/catalog/services", line)
        assert match, line
        assert match.group(1) == f"http://127.0.0.1:{port}"
        for _ in range(100):  # the first snapshot: 503 until then
            try:
                with urllib.request.urlopen(f"{match.group(1)}/v1/catalog/services") as response:
                    assert json.load(response) == {"db": ["sql"], "web": ["http"]}
                    break
            except urllib.error.HTTPError as error:
                assert error.code == 503
                await asyncio.sleep(0.05)
        else:
            raise AssertionError("the catalog never loaded")
        process.send_signal(signal.SIGTERM)  # by its PID: the process this test started
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def test_a_bad_listen_address_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["--listen", "not-an-address:80"])
    assert stopped.value.code == 2
    assert "--listen" in capsys.readouterr().err


def test_a_taken_port_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status = main(["--listen", f"127.0.0.1:{port}", "--etcd-endpoints", "http://127.0.0.1:9"])
    assert status == 1
    assert f"cannot serve on 127.0.0.1:{port}" in capsys.readouterr().err

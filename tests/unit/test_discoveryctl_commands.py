"""discoveryctl's commands run against MemoryStore: the same handlers the CLI runs on etcd.

tests/integration/test_discoveryctl.py runs the real program against a real
etcd; here the command runner is handed an in-memory store instead.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from discovery.cli import CommandError, build_parser, run_command
from discovery.errors import EtcdUnavailable
from discovery.memory_store import MemoryStore
from discovery.settings import Settings
from tests.fixtures.virtual_clock import in_virtual_time

SETTINGS = Settings(prefix="/policy/skydns")


async def discoveryctl(store: MemoryStore, *argv: str) -> int:
    return await run_command(store, SETTINGS, build_parser().parse_args(list(argv)))


@in_virtual_time
async def test_register_lookup_and_a_ttl_that_runs_out(capsys: pytest.CaptureFixture[str]) -> None:
    store = MemoryStore()
    assert (
        await discoveryctl(store, "register", "web", "--address", "10.5.1.7", "--port", "80") == 0
    )
    args = ("register", "web", "--address", "10.5.1.8", "--port", "80", "--ttl", "30")
    assert await discoveryctl(store, *args) == 0
    capsys.readouterr()
    assert await discoveryctl(store, "lookup", "web", "-o", "json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert sorted(row["address"] for row in rows) == ["10.5.1.7", "10.5.1.8"]
    await asyncio.sleep(31)  # the --ttl lease runs out
    assert await discoveryctl(store, "lookup", "web", "-o", "json") == 0
    assert [row["address"] for row in json.loads(capsys.readouterr().out)] == ["10.5.1.7"]
    assert await discoveryctl(store, "deregister", "web", "--address", "10.5.1.7") == 0
    with pytest.raises(CommandError, match="no endpoints for service web"):
        await discoveryctl(store, "lookup", "web")


@in_virtual_time
async def test_an_unreachable_etcd_is_reported_as_such() -> None:
    store = MemoryStore()
    store.go_down()
    with pytest.raises(EtcdUnavailable):
        await discoveryctl(store, "services")

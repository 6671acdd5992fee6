"""Helpers for the registrator's integration tests: the agent as a real process,
containers made through the Docker API, and etcd read back through EtcdStore."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import pytest

from discovery.schema import (
    Endpoint,
    decode_service_record,
    parse_record_key,
    services_prefix,
)
from discovery.settings import Settings, settings_as_environment
from discovery.store import EtcdStore

REPO = Path(__file__).resolve().parents[2]
POLL_S = 0.05


@dataclass
class AgentProcess:
    docker_url: str
    settings: Settings
    log_path: Path
    host_name: str = "host1"
    extra_args: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        # discovery-agent services, run by this interpreter so the repo's code is used
        cmd = [sys.executable, "-m", "agent.cli", "services"]
        cmd += ["--docker-host", self.docker_url, "--host-name", self.host_name]
        cmd += ["--lease-ttl", str(self.settings.lease_ttl_s), "--log-level", "debug"]
        # Beside the log: agents of one test share it, as runs of one host would.
        cmd += ["--services-state-dir", str(self.log_path.parent / "services-state")]
        return cmd + self.extra_args

    def start(self) -> AgentProcess:
        env = {**os.environ, **settings_as_environment(self.settings)}
        env["PYTHONPATH"] = str(REPO)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO
            )
        return self

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_log(self, text: str, timeout_s: float = 15, after: int = 0) -> int:
        """Wait until ``text`` appears in the log after offset ``after``; its offset."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = self.log_text().find(text, after)
            if found >= 0:
                return found
            assert self.process is not None
            if self.process.poll() is not None:
                pytest.fail(f"agent exited ({self.process.returncode}):\n{self.log_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {text!r} in the agent log within {timeout_s}s:\n{self.log_text()}")
            time.sleep(POLL_S)

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait_exit(self, timeout_s: float = 10) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout_s)

    def stop(self) -> None:
        """Finalizer: stop our process by its PID, whatever state it is in."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


# ---------------------------------------------------------------- containers


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}"


def run_container(
    client: docker.DockerClient,
    image: str,
    *,
    name: str | None = None,
    command: list[str] | None = None,
    labels: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
    exposed: list[int] | None = None,
    published: dict[int, int | tuple[str, int] | None] | None = None,
    healthcheck: dict[str, Any] | None = None,
    restart_always: bool = False,
) -> str:
    """Create and start a container; returns its id. ``exposed`` ports are not published;
    ``published`` maps a container port to a host port, or to (host address, host port)."""
    api = client.api
    ports: list[int] = [*(exposed or []), *(published or {})]
    host_config = api.create_host_config(
        port_bindings=published or None,
        restart_policy={"Name": "always"} if restart_always else None,
    )
    created = api.create_container(
        image,
        command=command or ["sleep", "1000"],
        name=name or unique("c"),
        labels=labels or {},
        environment=env or {},
        ports=ports or None,
        healthcheck=healthcheck,
        # sleep as PID 1 ignores SIGTERM: KILL straight away keeps stops fast.
        stop_signal="SIGKILL",
        host_config=host_config,
    )
    api.start(created["Id"])
    return str(created["Id"])


def addresses_of(client: docker.DockerClient, container_id: str) -> list[str]:
    networks = client.api.inspect_container(container_id)["NetworkSettings"]["Networks"]
    return sorted(n["IPAddress"] for n in networks.values() if n["IPAddress"])


# ---------------------------------------------------------------- etcd


@dataclass(frozen=True)
class Record:
    key: str
    endpoint: Endpoint
    lease: int


async def read_records(settings: Settings) -> list[Record]:
    async with EtcdStore(settings) as store:
        items, _ = await store.get_prefix(services_prefix(settings.prefix, settings.domain))
    found = []
    for key, kv in sorted(items.items()):
        record_key = parse_record_key(settings.prefix, settings.domain, key)
        found.append(Record(key, decode_service_record(record_key, kv.value), kv.lease))
    return found


def summary(records: list[Record]) -> set[tuple[str, str, str, int, str]]:
    """(service, container name, address, port, health) of each record."""
    return {
        (r.endpoint.service, r.endpoint.container_name, r.endpoint.address, r.endpoint.port,
         r.endpoint.health)
        for r in records
    }  # fmt: skip


async def wait_records(
    settings: Settings,
    check: Callable[[list[Record]], bool],
    timeout_s: float = 10,
    what: str = "records",
) -> list[Record]:
    """Poll etcd until ``check(records)`` holds; fail with what was last seen."""
    deadline = time.monotonic() + timeout_s
    records: list[Record] = []
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):  # etcd may be down on purpose
            records = await read_records(settings)
            if check(records):
                return records
        await asyncio.sleep(POLL_S)
    pytest.fail(f"{what} not reached within {timeout_s}s; last seen:\n" + _show(records))


def _show(records: list[Record]) -> str:
    return "\n".join(sorted(str(row) for row in summary(records))) or "(none)"


def expect(*rows: tuple[str, str, str, int, str]) -> Callable[[list[Record]], bool]:
    """A check: the records are exactly these rows, one record per row (no duplicates)."""
    wanted = set(rows)
    return lambda records: summary(records) == wanted and len(records) == len(wanted)

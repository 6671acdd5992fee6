"""Registrator benchmark: registration and de-registration latency, and the agent's memory.

    sudo .venv/bin/python benchmarks/registrator/bench_registration.py \\
        [--containers 200] [--rss-containers 500]

What it sets up, all private and removed at the end: a network namespace with
its own dockerd (labs.dockerd) and the lab images, one etcd
(labs.etcd_server), and the agent as its own process, exactly as a lab
host runs it.

What it measures, one container at a time so each figure is one container's:

* registration: from ``docker start`` returning to the record being seen by
  an etcd watch on the services prefix (negative when the watch saw the
  record before the start call had returned: Docker emits ``start`` before
  it answers the request);
* de-registration: from ``docker stop`` returning to the watch seeing the
  delete;
* the agent's resident memory (VmRSS of /proc/PID/status) idle, and with
  ``--rss-containers`` containers registered.

Every wait has a deadline; every loop is bounded by the container counts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import docker

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from discovery.schema import services_prefix  # noqa: E402
from discovery.settings import Settings, settings_as_environment  # noqa: E402
from discovery.store import Change, EtcdStore, Snapshot  # noqa: E402
from labs.dockerd import DockerDaemon, mounts_under  # noqa: E402
from labs.etcd_server import EtcdCluster  # noqa: E402
from labs.image_build import build_lab_images, lab_image_names  # noqa: E402

WAIT_S = 10.0  # deadline for one record to appear or vanish
SERVICE = "bench"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def percentiles(values_ms: list[float]) -> str:
    ordered = sorted(values_ms)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    return (
        f"n={len(ordered)} p50={at(0.50):.1f} ms  p99={at(0.99):.1f} ms  "
        f"max={ordered[-1]:.1f} ms  mean={statistics.fmean(ordered):.1f} ms"
    )


class Watcher:
    """Times at which a watch on the services prefix saw each container's record come and go."""

    def __init__(self, store: EtcdStore, prefix: str) -> None:
        self.store, self.prefix = store, prefix
        self.seen: dict[str, float] = {}  # container id[:12] -> first put seen
        self.gone: dict[str, float] = {}  # container id[:12] -> delete seen
        self.ready = asyncio.Event()
        self.count = 0  # records present now

    @staticmethod
    def _container(key: str) -> str:
        return key.rsplit("/", 1)[-1][:12]

    async def run(self) -> None:
        present: set[str] = set()
        async for item in self.store.follow_prefix(self.prefix):
            now = time.monotonic()
            if isinstance(item, Snapshot):
                present = set(item.items)
                self.ready.set()
            elif isinstance(item, Change):
                short = self._container(item.key)
                if item.value is None:
                    present.discard(item.key)
                    self.gone.setdefault(short, now)
                else:
                    present.add(item.key)
                    self.seen.setdefault(short, now)
            self.count = len(present)

    async def wait(self, done: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + WAIT_S
        while not done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} not seen within {WAIT_S}s")
            await asyncio.sleep(0.0005)


def agent_command(docker_url: str, settings: Settings) -> list[str]:
    cmd = [sys.executable, "-m", "agent.cli", "services"]
    cmd += ["--docker-host", docker_url, "--host-name", "bench1"]
    return [*cmd, "--lease-ttl", str(settings.lease_ttl_s)]


async def measure(
    args: argparse.Namespace, docker_url: str, settings: Settings, agent_pid: int
) -> dict[str, Any]:
    client = docker.APIClient(base_url=docker_url)
    image = lab_image_names()["base"]
    pool = ThreadPoolExecutor(max_workers=4)
    loop = asyncio.get_running_loop()
    results: dict[str, Any] = {}
    created: list[str] = []

    def create(index: int) -> str:
        container = client.create_container(
            image,
            command=["sleep", "100000"],
            name=f"bench-{index}",
            labels={"discovery.service": SERVICE},
            stop_signal="SIGKILL",  # sleep as PID 1 ignores SIGTERM
        )
        return str(container["Id"])

    def start_timed(container_id: str) -> tuple[float, float]:
        """(seconds the start call took, when it returned)."""
        began = time.monotonic()
        client.start(container_id)
        returned = time.monotonic()
        return returned - began, returned

    def stop_timed(container_id: str) -> tuple[float, float]:
        began = time.monotonic()
        client.stop(container_id, timeout=0)
        returned = time.monotonic()
        return returned - began, returned

    async with EtcdStore(settings) as store:
        watcher = Watcher(store, services_prefix(settings.prefix, settings.domain))
        watch_task = asyncio.create_task(watcher.run())
        try:
            await asyncio.wait_for(watcher.ready.wait(), WAIT_S)
            await asyncio.sleep(1.0)
            results["rss_idle_kib"] = rss_kib(agent_pid)

            # Latency: one container at a time.
            register_ms: list[float] = []
            deregister_ms: list[float] = []
            start_call_ms: list[float] = []
            stop_call_ms: list[float] = []
            for index in range(args.containers):
                container_id = await loop.run_in_executor(pool, create, index)
                created.append(container_id)
                short = container_id[:12]
                took, returned = await loop.run_in_executor(pool, start_timed, container_id)
                start_call_ms.append(took * 1000)
                await watcher.wait(lambda s=short: s in watcher.seen, f"record of {short}")
                register_ms.append((watcher.seen[short] - returned) * 1000)
            for container_id in created:
                short = container_id[:12]
                took, returned = await loop.run_in_executor(pool, stop_timed, container_id)
                stop_call_ms.append(took * 1000)
                await watcher.wait(lambda s=short: s in watcher.gone, f"delete of {short}")
                deregister_ms.append((watcher.gone[short] - returned) * 1000)
            results["register_ms"] = register_ms
            results["deregister_ms"] = deregister_ms
            results["start_call_ms"] = start_call_ms
            results["stop_call_ms"] = stop_call_ms

            # Memory: many containers registered at once.
            if args.rss_containers:
                for container_id in created:
                    await loop.run_in_executor(pool, client.start, container_id)
                more = [
                    loop.run_in_executor(pool, create, index)
                    for index in range(len(created), args.rss_containers)
                ]
                extra = list(await asyncio.gather(*more))
                created.extend(extra)
                await asyncio.gather(*(loop.run_in_executor(pool, client.start, c) for c in extra))
                deadline = time.monotonic() + 120
                while watcher.count < args.rss_containers:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"only {watcher.count} records registered")
                    await asyncio.sleep(0.1)
                await asyncio.sleep(2.0)  # let the agent settle (lease refresh, GC)
                results["rss_loaded_kib"] = rss_kib(agent_pid)
                results["rss_records"] = watcher.count
        finally:
            watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch_task
            # Remove our containers; the daemon's teardown would also do it, but slower.
            await asyncio.gather(
                *(
                    loop.run_in_executor(pool, lambda c=c: client.remove_container(c, force=True))
                    for c in created
                ),
                return_exceptions=True,
            )
            pool.shutdown()
            client.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--containers", type=int, default=200)
    parser.add_argument("--rss-containers", type=int, default=500)
    parser.add_argument("--lease-ttl", type=int, default=10)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespace, dockerd)", file=sys.stderr)
        return 2

    netns = f"regbench-{os.getpid()}"
    state = Path(tempfile.mkdtemp(prefix=f"{netns}-", dir="/tmp"))
    daemon = DockerDaemon(name=netns, state_dir=state / "d", netns=netns, bip="172.31.240.1/20")
    cluster = EtcdCluster(1, base_dir=state / "etcd")
    agent: subprocess.Popen[bytes] | None = None
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True)
        daemon.start()
        build_lab_images(daemon.url)
        cluster.start()
        settings = Settings(
            etcd_endpoints=tuple(cluster.endpoints),
            prefix="/bench/skydns",
            lease_ttl_s=args.lease_ttl,
        )
        env = {**os.environ, **settings_as_environment(settings), "PYTHONPATH": str(REPO)}
        log_path = state / "agent.log"
        with log_path.open("wb") as log:
            agent = subprocess.Popen(
                agent_command(daemon.url, settings), stdout=log, stderr=log, env=env, cwd=REPO
            )
        results = asyncio.run(measure(args, daemon.url, settings, agent.pid))
        if agent.poll() is not None:
            raise RuntimeError(f"agent exited early; log in {log_path}")
    finally:
        if agent is not None and agent.poll() is None:
            agent.send_signal(signal.SIGTERM)
            try:
                agent.wait(timeout=10)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait()
        with contextlib.suppress(Exception):
            cluster.remove()
        with contextlib.suppress(Exception):
            daemon.remove()
        subprocess.run(["ip", "netns", "delete", netns], check=False)
        # Never delete through a mount the daemon may have left behind.
        if not mounts_under(state):
            shutil.rmtree(state, ignore_errors=True)

    register, deregister = results["register_ms"], results["deregister_ms"]
    print(f"registration   (docker start returned -> watch saw put):    {percentiles(register)}")
    print(f"deregistration (docker stop returned  -> watch saw delete): {percentiles(deregister)}")
    # The reference (benchmarks/README.md): the same run's Docker calls themselves.
    start_calls, stop_calls = results["start_call_ms"], results["stop_call_ms"]
    print(f"reference: docker start call itself:                        {percentiles(start_calls)}")
    print(f"reference: docker stop call itself:                         {percentiles(stop_calls)}")
    print(
        "ratio p50 registration / docker start call: "
        f"{statistics.median(register) / statistics.median(start_calls):.3f}; "
        "p50 de-registration / docker stop call: "
        f"{statistics.median(deregister) / statistics.median(stop_calls):.3f}"
    )
    print(f"agent RSS idle: {results['rss_idle_kib'] / 1024:.1f} MiB")
    if "rss_loaded_kib" in results:
        print(
            f"agent RSS with {results['rss_records']} containers registered: "
            f"{results['rss_loaded_kib'] / 1024:.1f} MiB"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

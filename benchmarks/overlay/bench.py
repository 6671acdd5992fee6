"""Overlay benchmark of issue 5: lease-to-entries convergence, and TCP over VXLAN.

Run it through ``benchmarks/overlay/run.sh`` (which installs iperf3). As root;
everything it creates carries the prefix ``ovb<pid>`` and is removed at the
end, and traffic goes only to addresses inside the namespaces it creates.

1. For N = 3 and N = 20: a bridge with underlay 192.168.214.0/24 (the tests
   use .213, the docker fixture 172.31.250.0/24), N namespace hosts, etcd on
   the bridge address, ``discovery-agent network`` in every namespace (the
   periodic check left at its default of 10 s, so only the watch counts).
2. Convergence, ``--trials`` times: write a new lease into etcd (a made-up
   host: its PublicIP is an unused underlay address, so no packet is ever
   sent to it) and follow every host's route announcements through netlink
   (``ip monitor route``) until each host has added the route for it. The
   agent adds the route last, after the neighbour and FDB entries, so the
   route's arrival is the moment all three are there (checked afterwards on
   every host). One sample per host (write -> entries on that host) and one
   per trial (write -> entries on every host). Then delete the lease and
   time the removal the same way.
3. Throughput (the N = 3 lab): iperf3 between host 1 and host 2, over the
   overlay (host 2's flannel.1 address) and over the underlay (its eth0
   address), ``-t DURATION`` each, ``--rounds`` times alternating; the
   ratio of the medians, overlay / underlay.

The report (markdown) goes to stdout and to ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from agent.network.desired import entries_for_subnet_lease
from agent.network.netlink import Netlink
from discovery import flannel
from discovery.settings import Settings
from discovery.store import EtcdStore
from labs.etcd_server import etcdctl
from labs.testing.overlay_hosts import Host, OverlayLab

UNDERLAY = ipaddress.IPv4Network("192.168.214.0/24")
NETWORK = ipaddress.IPv4Network("10.214.0.0/16")
PREFIX = "/overlay-bench/coreos.com/network"
DEVICE = "flannel.1"
TRIAL_TIMEOUT_S = 10.0
START_TIMEOUT_S = 90.0


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def summary_ms(values: list[float]) -> str:
    p50, p99 = percentile(values, 0.5) * 1000, percentile(values, 0.99) * 1000
    return f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {max(values) * 1000:.1f} ms (n={len(values)})"


class Watchers:
    """Per host: a netlink socket following route announcements (``ip monitor
    route``), stamping when the route to each subnet appears and disappears,
    and one for checking the other two entries. Nothing polls, so nothing
    steals CPU from the agents being measured."""

    def __init__(self, hosts: list[Host]) -> None:
        self.hosts = hosts
        self.readers: dict[str, tuple[Netlink, int]] = {}
        self.monitors: list[Netlink] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.seen: dict[tuple[str, str, ipaddress.IPv4Network], float] = {}
        self.changed = asyncio.Event()

    async def open(self) -> None:
        for host in self.hosts:
            reader = await Netlink(host.netns).open()
            link = await reader.find_vxlan(DEVICE)
            if link is None:
                raise RuntimeError(f"{host.netns} has no {DEVICE}")
            self.readers[host.netns] = (reader, link.ifindex)
            monitor = await Netlink(host.netns).open()
            self.monitors.append(monitor)
            self.tasks.append(asyncio.create_task(self._follow(host.netns, monitor, link.ifindex)))
        await asyncio.sleep(0.2)  # every monitor bound before the first lease is written

    async def _follow(self, netns: str, monitor: Netlink, ifindex: int) -> None:
        async for event in monitor.route_events():
            if event.ifindex == ifindex:
                self.seen[(netns, event.action, event.destination)] = time.perf_counter()
                self.changed.set()

    def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for netlink in [*self.monitors, *(reader for reader, _ in self.readers.values())]:
            netlink.close()

    async def wait(self, action: str, subnet: ipaddress.IPv4Network, t0: float) -> list[float]:
        """Seconds from t0 until every host announced the route change."""
        keys = [(host.netns, action, subnet) for host in self.hosts]
        deadline = t0 + TRIAL_TIMEOUT_S
        while not all(key in self.seen for key in keys):
            self.changed.clear()
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                missing = [key[0] for key in keys if key not in self.seen]
                raise TimeoutError(f"route {action} {subnet} not seen on {missing}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), remaining)
        return [self.seen.pop(key) - t0 for key in keys]

    async def check_entries(self, lease: flannel.SubnetLease, present: bool) -> None:
        """The neighbour and FDB entries must be there with the route (added
        first), and gone soon after it (removed after the route)."""
        neighbour, fdb, route = entries_for_subnet_lease(lease)
        for netns, (reader, ifindex) in self.readers.items():
            deadline = time.perf_counter() + 1.0
            while True:
                entries = await reader.read_entries(ifindex, NETWORK)
                found = (
                    neighbour in entries.neighbours,
                    fdb in entries.fdb,
                    route in entries.routes,
                )
                if found == (present,) * 3:
                    break
                if present or time.perf_counter() > deadline:
                    raise RuntimeError(f"{netns}: entries for {lease.subnet}: {found}")
                await asyncio.sleep(0.01)


async def wait_started(lab: OverlayLab, hosts: list[Host]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    pending = list(hosts)
    while pending:
        if time.monotonic() > deadline:
            names = ", ".join(h.netns for h in pending)
            raise RuntimeError(f"agents not ready: {names}\n{pending[0].log_tail()}")
        pending = [h for h in pending if "network ready" not in h.log_path.read_text()]
        await asyncio.sleep(0.2)


async def converge_all(store: EtcdStore, hosts: list[Host]) -> None:
    """Wait until every host holds routes to every other host (start-up done)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        items, _ = await store.get_prefix(flannel.subnets_prefix(PREFIX))
        subnets = {flannel.parse_subnet_key(PREFIX, key) for key in items}
        done = True
        for host in hosts:
            async with Netlink(host.netns) as netlink:
                link = await netlink.find_vxlan(DEVICE)
                routes = await netlink.read_routes(link.ifindex, NETWORK) if link else []
            if len(routes) != len(subnets) - 1:
                done = False
                break
        if done:
            return
        await asyncio.sleep(0.2)
    raise RuntimeError("the hosts did not converge after start-up")


async def convergence(lab: OverlayLab, hosts: list[Host], trials: int) -> dict[str, list[float]]:
    settings = Settings(etcd_endpoints=tuple(lab.endpoints), network_prefix=PREFIX)
    rng = random.Random(5)
    result: dict[str, list[float]] = {"all": [], "each": [], "gone_all": []}
    async with EtcdStore(settings) as store:
        await converge_all(store, hosts)
        watchers = Watchers(hosts)
        await watchers.open()
        try:
            for trial in range(trials):
                # A made-up host: 10.214.200+.0/24, PublicIP .250 (no such host).
                lease = flannel.SubnetLease(
                    ipaddress.IPv4Network(f"10.214.{200 + trial % 50}.0/24"),
                    UNDERLAY.network_address + 250,
                    "0e:be:" + ":".join(f"{rng.randrange(256):02x}" for _ in range(4)),
                )
                key = flannel.subnet_key(PREFIX, lease.subnet)
                t0 = time.perf_counter()
                await store.put(key, flannel.encode_subnet_lease(lease))
                each = await watchers.wait("add", lease.subnet, t0)
                result["each"].extend(each)
                result["all"].append(max(each))
                await watchers.check_entries(lease, present=True)
                t0 = time.perf_counter()
                await store.delete(key)
                result["gone_all"].append(max(await watchers.wait("delete", lease.subnet, t0)))
                await watchers.check_entries(lease, present=False)
                await asyncio.sleep(0.05)
        finally:
            watchers.close()
    return result


def iperf(client: Host, server: Host, address: str, duration_s: int) -> float:
    """Bits per second received, one bounded iperf3 run (the server serves once)."""
    port = "5299"
    server_process = subprocess.Popen(
        ["nsenter", f"--net=/run/netns/{server.netns}",
         "iperf3", "-s", "-1", "-p", port, "-B", address],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        time.sleep(0.5)
        output = client.run(
            "iperf3", "-c", address, "-p", port, "-t", str(duration_s), "-J",
            timeout_s=duration_s + 20,
        )  # fmt: skip
        data = json.loads(output)
        return float(data["end"]["sum_received"]["bits_per_second"])
    finally:
        try:
            server_process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server_process.kill()
            server_process.wait()


def throughput(lab: OverlayLab, duration_s: int, rounds: int) -> tuple[list[float], list[float]]:
    h1, h2 = lab.hosts[1], lab.hosts[2]
    overlay_address = None
    for line in h2.subnet_file.read_text().splitlines():
        if line.startswith("FLANNEL_SUBNET="):
            overlay_address = str(
                ipaddress.IPv4Interface(line.split("=", 1)[1]).network.network_address
            )
    assert overlay_address is not None
    overlay, underlay = [], []
    for _ in range(rounds):
        overlay.append(iperf(h1, h2, overlay_address, duration_s))
        underlay.append(iperf(h1, h2, str(h2.address), duration_s))
    return overlay, underlay


def run_lab(size: int, trials: int, iperf_duration_s: int, rounds: int, report: list[str]) -> None:
    lab = OverlayLab(underlay=UNDERLAY, prefix=f"ovb{size}")
    with lab:
        config = json.dumps(
            {"Network": str(NETWORK), "SubnetMax": "10.214.199.0", "Backend": {"Type": "vxlan"}}
        )
        etcdctl(lab.endpoints, "put", f"{PREFIX}/config", config)
        hosts = [lab.add_host(index) for index in range(1, size + 1)]
        started = time.perf_counter()
        for host in hosts:
            lab.start_agent(host, PREFIX, reconcile_interval_s=10.0)
        asyncio.run(wait_started(lab, hosts))
        start_up_s = time.perf_counter() - started
        result = asyncio.run(convergence(lab, hosts, trials))
        report.append(f"### {size} hosts\n")
        report.append(f"- agents started and leased: {start_up_s:.1f} s for all {size}")
        report.append(f"- new lease -> entries on every other host: {summary_ms(result['all'])}")
        report.append(
            f"- new lease -> entries on one host (all samples): {summary_ms(result['each'])}"
        )
        report.append(
            f"- deleted lease -> route gone on every host: {summary_ms(result['gone_all'])}"
        )
        if rounds:
            overlay, underlay = throughput(lab, iperf_duration_s, rounds)
            o, u = statistics.median(overlay), statistics.median(underlay)
            report.append(
                f"- iperf3 TCP host1 -> host2, {iperf_duration_s} s x {rounds}: overlay "
                f"{o / 1e9:.2f} Gbit/s, underlay {u / 1e9:.2f} Gbit/s, ratio **{o / u:.2f}** "
                f"(overlay runs {', '.join(f'{x / 1e9:.2f}' for x in overlay)}; "
                f"underlay runs {', '.join(f'{x / 1e9:.2f}' for x in underlay)})"
            )
        report.append("")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="3,20", help="host counts (default 3,20)")
    parser.add_argument("--trials", type=int, default=50, help="leases written per size")
    parser.add_argument("--iperf-duration", type=int, default=5, help="seconds per iperf3 run")
    parser.add_argument("--rounds", type=int, default=5, help="iperf3 runs per path")
    parser.add_argument("--out", default="/tmp/overlay-bench/report.md")
    args = parser.parse_args(argv)
    for tool in ("iperf3", "nsenter", "ip", "iptables"):
        if shutil.which(tool) is None:
            print(f"bench: needs {tool} (run through benchmarks/overlay/run.sh)", file=sys.stderr)
            return 1
    cpu = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    report = [
        "## Overlay benchmark (issue 5)\n",
        f"{time.strftime('%Y-%m-%d %H:%M')} UTC, {cpu} cores, kernel "
        f"{subprocess.run(['uname', '-r'], capture_output=True, text=True).stdout.strip()}, "
        f"`{' '.join(['benchmarks/overlay/run.sh', *(argv or sys.argv[1:])])}`\n",
    ]
    sizes = [int(x) for x in args.sizes.split(",") if x]
    for size in sizes:
        rounds = args.rounds if size == min(sizes) else 0  # throughput once, on the small lab
        run_lab(size, args.trials, args.iperf_duration, rounds, report)
    text = "\n".join(report)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The fault suite: one lab, one fault at a time while containers churn, then the invariants.

A three-host lab with three etcd members, a web and a client container on
every host, and a churn of short-lived containers on random hosts while each
fault lasts. Every fault is injected, held, healed, and then the lab must
come back on its own, checked with real clients only:

* etcd equals `docker ps` on every host within ``ETCD_WITHIN_S`` of the heal
  (no stale record, no missing one, never two records for one endpoint);
* every host's DNS server answers what etcd holds within ``DNS_WITHIN_S``
  of that (dig against each server, inside each host's namespace);
* every host's kernel holds exactly one route, neighbour and FDB entry per
  other host's lease, and nothing for any other value under the prefix;
* a container on each host fetches the web page of every other host's web
  container over the overlay;
* no process died unless the fault killed it (and then its supervisor
  started it again), and no log holds a traceback.

Each fault adds a row to the table printed at the end of the run
(tests/faults/conftest.py). Traffic stays inside the lab's namespaces.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import json
import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from discovery import flannel
from discovery.errors import DiscoveryError
from discovery.schema import Endpoint, decode_service_record, parse_record_key, services_prefix
from discovery.store import EtcdStore
from labs.dockerd import DockerDaemon
from labs.etcd_server import etcd_binary, etcdctl
from labs.etcd_tls import ROOT
from labs.runner import child_pid, process_condition
from labs.state import LabState, ProcessRecord
from labs.testing.lab_driver import LabDriver
from labs.testing.waiting import wait_until
from tests.faults.outcomes import OUTCOMES, Outcome
from tests.prerequisites import require_binary, require_root

pytestmark = [pytest.mark.root, pytest.mark.docker, pytest.mark.netns, pytest.mark.etcd]

LAB = f"f{os.getpid() % 10000}"
UNDERLAY = os.environ.get("FAULT_LAB_UNDERLAY", "192.168.221.0/24")
HOSTS = ("host1", "host2", "host3")
SERVICE_TTL_S = 10  # the lab's service lease TTL
SUBNET_TTL_S = 60  # the network agent's default subnet lease TTL
ETCD_WITHIN_S = 5.0
DNS_WITHIN_S = 1.0
KERNEL_WITHIN_S = 20.0  # a network agent restarted past its TTL claims and reconciles
REACH_WITHIN_S = 10.0
CHURN_PAUSE_S = 0.3
CHURN_MAX_PER_HOST = 4
SETTLE_BEFORE_S = 60.0  # a fault starts only from a lab that holds every invariant


# ------------------------------------------------------------ the lab


class FaultLab:
    def __init__(self, driver: LabDriver):
        self.driver = driver
        self.state: LabState = driver.state()
        # The faults are the lab's own doing: as root, whose role may write anything.
        self.root = driver.etcd_client(ROOT)
        self.settings = dataclasses.replace(driver.etcd_settings(ROOT), domain="lab")
        self.restarts_expected: dict[str, int] = {}  # "role@host" -> restarts the faults caused
        self.churn = Churn(self)

    def refresh(self) -> LabState:
        self.state = self.driver.state()
        return self.state

    def record(self, role: str, host: str) -> ProcessRecord:
        return next(p for p in self.state.processes if p.role == role and p.host == host)

    def pid(self, role: str, host: str) -> int:
        pid = child_pid(self.record(role, host))
        assert pid is not None, f"{role}@{host} is not running"
        return pid

    def netns(self, host: str) -> str:
        return self.state.hosts[host].netns

    def in_host(self, host: str, *command: str, timeout: float = 10) -> str:
        result = subprocess.run(
            ["nsenter", f"--net=/run/netns/{self.netns(host)}", *command],
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        return result.stdout

    def docker(self, host: str, *args: str, check: bool = False, timeout: float = 60) -> str:
        env = {**os.environ, "DOCKER_HOST": self.state.hosts[host].docker_url}
        result = subprocess.run(
            ["docker", *args], capture_output=True, text=True, env=env, timeout=timeout
        )
        if check and result.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} on {host}: {result.stderr}")
        return result.stdout

    def etcdctl(self, *args: str) -> str:
        return etcdctl(self.state.etcd_endpoints, *args, tls=self.root)

    # -------------------------------------------------------- what is true now

    def running_containers(self) -> dict[str, set[str]]:
        """host -> ids of its running containers (`docker ps`)."""
        return {
            host: set(self.docker(host, "ps", "-q", "--no-trunc", timeout=20).split())
            for host in HOSTS
        }

    def _get_prefix(self, prefix: str) -> dict[str, bytes]:
        async def read() -> dict[str, bytes]:
            async with EtcdStore(self.settings) as store:
                items, _ = await store.get_prefix(prefix)
            return {key: kv.value for key, kv in items.items()}

        return asyncio.run(read())

    def records(self) -> list[tuple[str, Endpoint]]:
        """(key, Endpoint) of every valid service record; garbage is not a record."""
        found = []
        for key, value in self._get_prefix(services_prefix("/skydns", "lab")).items():
            try:
                endpoint = decode_service_record(parse_record_key("/skydns", "lab", key), value)
            except DiscoveryError:
                continue
            found.append((key, endpoint))
        return found

    def leases(self) -> dict[str, flannel.SubnetLease]:
        """host -> its lease; only leases whose PublicIP is a lab host's."""
        by_ip = {state.underlay_ip: host for host, state in self.state.hosts.items()}
        found: dict[str, flannel.SubnetLease] = {}
        for key, value in self._get_prefix("/coreos.com/network/subnets/").items():
            try:
                lease = flannel.parse_subnet_lease("/coreos.com/network", key, value)
            except DiscoveryError:
                continue
            host = by_ip.get(str(lease.public_ip))
            if host is not None:
                assert host not in found, f"two leases for {host}: {found[host]} and {lease}"
                found[host] = lease
        return found

    def compare_etcd_with_docker(self) -> tuple[int, int, int]:
        """(stale, missing, duplicate) right now."""
        running = self.running_containers()
        records = self.records()
        per_endpoint: dict[tuple[str, str, int, str], int] = {}
        registered: dict[str, set[str]] = {host: set() for host in HOSTS}
        stale = 0
        for _, e in records:
            if not e.container_id:
                continue  # made by hand: not Docker's to confirm
            ident = (e.container_id, e.address, e.port, e.protocol)
            per_endpoint[ident] = per_endpoint.get(ident, 0) + 1
            if e.node not in running or e.container_id not in running[e.node]:
                stale += 1
            else:
                registered[e.node].add(e.container_id)
        missing = sum(len(running[host] - registered[host]) for host in HOSTS)
        duplicate = max([count - 1 for count in per_endpoint.values()] or [0])
        return stale, missing, duplicate

    def dns_matches_etcd(self) -> list[str]:
        """What every DNS server answers that etcd does not say; [] when all agree."""
        wanted: dict[str, set[str]] = {}
        for _, e in self.records():
            if e.serving:
                wanted.setdefault(e.service, set()).add(e.address)
        problems = []
        for host in HOSTS:
            dns_ip = self.state.hosts[host].dns_ip
            for service, addresses in wanted.items():
                answer = self.in_host(
                    host, "dig", "+short", "+time=1", "+tries=2", f"@{dns_ip}",
                    f"{service}.service.lab", "A",
                )  # fmt: skip
                got = {line for line in answer.split() if line[:1].isdigit()}
                if got != addresses:
                    problems.append(f"{host}: {service} -> {sorted(got)}, etcd {sorted(addresses)}")
        return problems

    def kernel_matches_leases(self) -> list[str]:
        leases = self.leases()
        problems = [f"{host} holds no lease" for host in HOSTS if host not in leases]
        for host in HOSTS:
            others = [lease for other, lease in leases.items() if other != host]
            want_routes = {
                (str(lease.subnet), str(lease.subnet.network_address)) for lease in others
            }
            want_neigh = {(str(lease.subnet.network_address), lease.vtep_mac) for lease in others}
            want_fdb = {(lease.vtep_mac, str(lease.public_ip)) for lease in others}
            routes = self._json(host, "ip", "-j", "route", "show", "dev", "flannel.1")
            neigh = self._json(host, "ip", "-j", "neigh", "show", "dev", "flannel.1")
            fdb = self._json(host, "bridge", "-j", "fdb", "show", "dev", "flannel.1")
            have_routes = [(r["dst"], r.get("gateway", "")) for r in routes]
            have_neigh = [
                (n["dst"], n.get("lladdr", "")) for n in neigh if "PERMANENT" in n.get("state", [])
            ]
            have_fdb = [(f["mac"], f["dst"]) for f in fdb if "dst" in f]
            for what, have, want in (
                ("routes", have_routes, want_routes),
                ("neighbours", have_neigh, want_neigh),
                ("fdb", have_fdb, want_fdb),
            ):
                if sorted(have) != sorted(want):
                    problems.append(f"{host} {what}: {sorted(have)} != {sorted(want)}")
        return problems

    def _json(self, host: str, *command: str) -> list[dict]:
        return list(json.loads(self.in_host(host, *command) or "[]"))

    def web_addresses(self) -> dict[str, str]:
        fmt = "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"
        return {
            host: self.docker(host, "inspect", "--format", fmt, f"web-{host}").strip()
            for host in HOSTS
        }

    def unreachable(self) -> list[str]:
        webs = self.web_addresses()
        failed = []
        for source in HOSTS:
            for target in HOSTS:
                if target == source:
                    continue
                # No -T: the lab image's busybox wget crashes with it (issue 18);
                # the subprocess timeout bounds the wait instead.
                page = ""
                with contextlib.suppress(subprocess.TimeoutExpired):
                    page = self.docker(
                        source, "exec", f"client-{source}", "wget", "-qO-",
                        f"http://{webs[target]}/", timeout=10,
                    )  # fmt: skip
                if f"lab host: {target}" not in page:
                    failed.append(f"{source} -> {target} ({webs[target]})")
        return failed

    def process_problems(self) -> list[str]:
        problems = []
        for record in self.refresh().processes:
            name = f"{record.role}@{record.host}"
            condition = process_condition(record)
            if condition != "running":
                problems.append(f"{name} is {condition}")
            text = Path(record.log).read_text(errors="replace")
            restarts = text.count("; starting it again in ")
            if restarts != self.restarts_expected.get(name, 0):
                problems.append(
                    f"{name} was restarted {restarts} times, "
                    f"{self.restarts_expected.get(name, 0)} by the faults"
                )
            if "Traceback" in text:
                at = text.index("Traceback")
                problems.append(f"{name} logged a traceback: {text[at : at + 600]!r}")
        return problems


# ------------------------------------------------------------ churn


class Churn:
    """Short-lived containers started and removed on random hosts, about three a second."""

    def __init__(self, lab: FaultLab):
        self.lab = lab
        self.rng = random.Random(1702)
        self._run = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.operations = 0

    def _loop(self) -> None:
        image = self.lab.state.images["base"]
        while not self._stop.is_set():
            if not self._run.wait(0.2):
                continue
            host = self.rng.choice(HOSTS)
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                mine = self.lab.docker(
                    host, "ps", "-aq", "--filter", "label=fault-churn", timeout=10
                ).split()
                if len(mine) < CHURN_MAX_PER_HOST and (not mine or self.rng.random() < 0.6):
                    self.lab.docker(
                        host, "run", "-d", "--label", "fault-churn=1",
                        "--label", "discovery.service=churn", image, "sleep", "600",
                        timeout=20,
                    )  # fmt: skip
                else:
                    self.lab.docker(host, "rm", "-f", self.rng.choice(mine), timeout=20)
                self.operations += 1
            self._stop.wait(CHURN_PAUSE_S)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="churn", daemon=True)
            self._thread.start()
        self._run.set()

    def pause(self) -> None:
        self._run.clear()
        time.sleep(CHURN_PAUSE_S + 0.5)  # an operation in flight finishes

    def close(self) -> None:
        self._stop.set()
        self._run.set()
        if self._thread is not None:
            self._thread.join(timeout=30)


# ------------------------------------------------------------ fixture


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Iterator[FaultLab]:
    require_root()
    require_binary("dockerd", "docker", "ip", "bridge", "iptables", "nsenter", "dig")
    driver = LabDriver(tmp_path_factory.mktemp("fault-lab"), LAB, UNDERLAY)
    fault_lab: FaultLab | None = None
    try:
        driver.lab("up", "--hosts", "3", "--etcd-members", "3", "--underlay", UNDERLAY)
        fault_lab = FaultLab(driver)
        image_web, image_base = fault_lab.state.images["web"], fault_lab.state.images["base"]
        for host in HOSTS:
            # --restart always: they come back when their daemon restarts.
            fault_lab.docker(host, "run", "-d", "--restart", "always", "--name", f"web-{host}",
                             "-e", f"LAB_HOST={host}", image_web, check=True)  # fmt: skip
            fault_lab.docker(host, "run", "-d", "--restart", "always", "--name", f"client-{host}",
                             image_base, "sleep", "86400", check=True)  # fmt: skip
        yield fault_lab
    finally:
        if fault_lab is not None:
            fault_lab.churn.close()
        driver.lab("down", check=False)


# ------------------------------------------------------------ one fault


def settled(lab: FaultLab) -> None:
    """Wait until the lab holds every invariant before the next fault."""
    lab.churn.pause()
    wait_until(lambda: lab.compare_etcd_with_docker() == (0, 0, 0), SETTLE_BEFORE_S,
               "etcd equal to docker ps before the fault")  # fmt: skip
    wait_until(lambda: not lab.dns_matches_etcd(), SETTLE_BEFORE_S, "DNS equal to etcd")
    wait_until(lambda: not lab.kernel_matches_leases(), SETTLE_BEFORE_S, "kernels settled")


def run_fault(
    lab: FaultLab,
    name: str,
    inject: Callable[[], None],
    hold_s: float,
    heal: Callable[[], float | None],
    restarted: tuple[str, ...] = (),
) -> Outcome:
    """Inject, hold while containers churn, heal, then check every invariant.

    ``heal`` returns None, or the time (monotonic) from which the lab is to be
    measured when healing itself takes a while (a daemon that must start).
    """
    settled(lab)
    outcome = Outcome(name)
    OUTCOMES.append(outcome)
    inject()
    try:
        lab.churn.start()
        deadline = time.monotonic() + hold_s
        while time.monotonic() < deadline:
            with contextlib.suppress(DiscoveryError, subprocess.SubprocessError):
                outcome.duplicate = max(outcome.duplicate, lab.compare_etcd_with_docker()[2])
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
    finally:
        lab.churn.pause()
        healed_at = heal() or time.monotonic()
    for process in restarted:
        lab.restarts_expected[process] = lab.restarts_expected.get(process, 0) + 1

    # etcd == docker ps
    last = (0, 0, 0)
    while True:
        with contextlib.suppress(DiscoveryError):
            last = lab.compare_etcd_with_docker()
            outcome.duplicate = max(outcome.duplicate, last[2])
            if last == (0, 0, 0):
                outcome.etcd_s = time.monotonic() - healed_at
                break
        if time.monotonic() - healed_at > ETCD_WITHIN_S:
            outcome.stale, outcome.missing, _ = last
            outcome.breaches.append(f"etcd != docker ps {ETCD_WITHIN_S:.0f} s after the heal")
            break
        time.sleep(0.1)

    # DNS == etcd
    dns_from = time.monotonic()
    while problems := lab.dns_matches_etcd():
        if time.monotonic() - dns_from > DNS_WITHIN_S:
            outcome.breaches.append("DNS != etcd: " + "; ".join(problems[:3]))
            break
    else:
        outcome.dns_s = time.monotonic() - dns_from

    # kernels == leases
    while problems := lab.kernel_matches_leases():
        if time.monotonic() - healed_at > KERNEL_WITHIN_S:
            outcome.breaches.append("kernel entries: " + "; ".join(problems[:2]))
            break
        time.sleep(0.2)
    else:
        outcome.kernel_s = time.monotonic() - healed_at

    reach_from = time.monotonic()
    while failed := lab.unreachable():
        if time.monotonic() - reach_from > REACH_WITHIN_S:
            outcome.breaches.append("overlay unreachable: " + ", ".join(failed))
            break
    outcome.breaches += lab.process_problems()
    if outcome.duplicate:
        outcome.breaches.append(f"{outcome.duplicate + 1} records for one endpoint")
    assert not outcome.breaches, f"{name}: " + " | ".join(outcome.breaches)
    return outcome


# ------------------------------------------------------------ signals


def frozen_supervisor_kill(lab: FaultLab, role: str, host: str) -> Callable[[], None]:
    """Kill the process while its supervisor is frozen, so it stays dead for the hold."""
    record = lab.record(role, host)
    child = lab.pid(role, host)

    def inject() -> None:
        os.kill(record.pid, signal.SIGSTOP)
        os.kill(child, signal.SIGKILL)

    return inject


def thaw(pid: int) -> Callable[[], None]:
    def heal() -> None:
        os.kill(pid, signal.SIGCONT)

    return heal


def wait_restarted(lab: FaultLab, role: str, host: str, old_pid: int) -> int:
    record = lab.record(role, host)
    return wait_until(
        lambda: (pid := child_pid(record)) not in (None, old_pid) and pid,
        15, f"{role}@{host} started again",
    )  # fmt: skip


# ------------------------------------------------------------ the faults


# Each agent past the TTL of the lease it writes under (records, subnets), killed
# on one host and frozen on another.
AGENTS_PAST_THEIR_TTL = [
    pytest.param("agent-services", "services agent", SERVICE_TTL_S + 2, "host2", "host3",
                 id="services"),
    pytest.param("agent-network", "network agent", SUBNET_TTL_S + 2, "host1", "host2",
                 id="network"),
]  # fmt: skip
AGENT_PARAMETERS = ("role", "what", "hold_s", "killed_on", "frozen_on")


@pytest.mark.parametrize(AGENT_PARAMETERS, AGENTS_PAST_THEIR_TTL)
def test_agent_killed_past_its_ttl(lab, role, what, hold_s, killed_on, frozen_on):
    host = killed_on
    record = lab.record(role, host)
    run_fault(
        lab, f"{what} SIGKILL, down {hold_s} s", frozen_supervisor_kill(lab, role, host),
        hold_s, thaw(record.pid), restarted=(f"{role}@{host}",),
    )  # fmt: skip


@pytest.mark.parametrize(AGENT_PARAMETERS, AGENTS_PAST_THEIR_TTL)
def test_agent_frozen_past_its_ttl(lab, role, what, hold_s, killed_on, frozen_on):
    pid = lab.pid(role, frozen_on)
    run_fault(
        lab, f"{what} SIGSTOP {hold_s} s",
        lambda: os.kill(pid, signal.SIGSTOP), hold_s, thaw(pid),
    )  # fmt: skip


def test_docker_daemon_restarted(lab):
    host = lab.state.hosts["host3"]
    daemon = DockerDaemon(name=host.netns, state_dir=Path(host.docker_state_dir), netns=host.netns)
    pid = daemon.pid
    assert pid is not None
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")

    def heal() -> float:
        # Started again with the very same command line, as its unit would be.
        with daemon.log_path.open("ab") as log:
            subprocess.Popen(
                [b"nsenter", f"--net=/run/netns/{host.netns}".encode(), *argv],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        wait_until(daemon.ping, 30, "dockerd answering again")
        return time.monotonic()

    run_fault(lab, "dockerd restart", daemon.stop, 3, heal)


def _leader_host(lab: FaultLab) -> str:
    status = json.loads(lab.etcdctl("endpoint", "status", "-w", "json"))
    for entry in status:
        if entry["Status"]["leader"] == entry["Status"]["header"]["member_id"]:
            address = entry["Endpoint"].split("//")[1].split(":")[0]
            return next(h for h, s in lab.state.hosts.items() if s.underlay_ip == address)
    raise AssertionError(f"no etcd leader in {status}")


def test_etcd_leader_killed(lab):
    settled(lab)
    host = _leader_host(lab)
    record = lab.record("etcd", host)
    run_fault(
        lab, f"etcd leader killed ({host}), down 5 s",
        frozen_supervisor_kill(lab, "etcd", host), 5, thaw(record.pid),
        restarted=(f"etcd@{host}",),
    )  # fmt: skip


def test_host_partitioned_from_etcd_past_the_ttl(lab):
    settled(lab)
    host = _leader_host(lab)  # the worst case: the leader's host is cut off
    rules = [
        ["INPUT", "-p", "tcp", "-m", "multiport", "--dports", "2379,2380", "-j", "DROP"],
        ["OUTPUT", "-p", "tcp", "-m", "multiport", "--dports", "2379,2380", "-j", "DROP"],
    ]

    def cut() -> None:
        for rule in rules:
            lab.in_host(host, "iptables", "-w", "-I", *rule)

    def mend() -> None:
        for rule in rules:
            lab.in_host(host, "iptables", "-w", "-D", *rule)

    try:
        run_fault(lab, f"{host} cut off from etcd 20 s", cut, 20, mend)
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            mend()  # a second delete of a gone rule only fails


def test_compaction_while_agents_are_stopped(lab):
    pids = [lab.pid(role, "host1") for role in ("agent-services", "agent-network", "dns")]

    def stop_and_compact() -> None:
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)

    def compact_and_continue() -> None:
        revision = json.loads(lab.etcdctl("endpoint", "status", "-w", "json"))[0]["Status"][
            "header"
        ]["revision"]
        lab.etcdctl("compact", str(revision))
        for pid in pids:
            os.kill(pid, signal.SIGCONT)

    run_fault(
        lab, "compaction while host1's agents and DNS stopped 12 s",
        stop_and_compact, SERVICE_TTL_S + 2, compact_and_continue,
    )  # fmt: skip


def _garbage(lab: FaultLab) -> dict[str, bytes]:
    overlay = ipaddress.IPv4Network(lab.state.overlay)
    spare = list(overlay.subnets(new_prefix=24))[200:206]
    underlay = ipaddress.IPv4Network(lab.state.underlay)
    nobody = [str(underlay.network_address + 200 + i) for i in range(3)]
    services = "/skydns/lab/service"

    def lease(public_ip: str, mac: str) -> bytes:
        return json.dumps({"PublicIP": public_ip, "BackendType": "vxlan",
                           "BackendData": {"VNI": 1, "VtepMAC": mac}}).encode()  # fmt: skip

    def key(subnet: ipaddress.IPv4Network) -> str:
        return flannel.subnet_key("/coreos.com/network", subnet)

    return {
        f"{services}/web/garbage-nested": b"[" * 50_000,
        f"{services}/web/garbage-number": b'{"host": "10.5.9.9", "port": ' + b"9" * 5001 + b"}",
        f"{services}/web/garbage-not-json": b"]]]",
        f"{services}/web/garbage-huge": b'{"host": "10.5.9.9", "x": "' + b"a" * 120_000 + b'"}',
        f"{services}/web/garbage-utf8": b'{"host": "\xff\xfe"}',
        f"{services}/web/garbage-wrong-type": b'{"host": ["10.5.9.9"], "port": "80"}',
        f"{services}/Odd Name!/x": b'{"host": "10.5.9.9"}',
        key(spare[0]): b"[" * 50_000,
        key(spare[1]): b'{"PublicIP": "' + nobody[0].encode() + b'", "N": ' + b"9" * 5001 + b"}",
        key(overlay): lease(nobody[0], "0e:aa:00:00:00:01"),  # the whole Network
        key(spare[2]): lease(nobody[1], "0e:aa:00:00:00:02"),  # two leases, one VtepMAC:
        key(spare[3]): lease(nobody[2], "0e:aa:00:00:00:02"),  # neither is programmed
        key(spare[4]): b"\xff\xfe not json",
        key(spare[5]): lease("127.0.0.1", "0e:aa:00:00:00:03"),
    }  # fmt: skip


def _endpoints_flag(lab: FaultLab) -> str:
    return f"--endpoints={','.join(lab.state.etcd_endpoints)}"


def _put(lab: FaultLab, key: str, value: bytes) -> None:
    subprocess.run(
        [etcd_binary("etcdctl").encode(), _endpoints_flag(lab).encode(),
         *(flag.encode() for flag in lab.root.flags()), b"put", b"--", key.encode(), value],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip


def test_bad_values_under_both_prefixes(lab):
    garbage = _garbage(lab)
    dns2, network2 = lab.pid("dns", "host2"), lab.pid("agent-network", "host2")

    def put_all() -> None:
        for key, value in garbage.items():
            _put(lab, key, value)

    def restart_among_them() -> float:
        # Started again while the garbage is there, they must come up.
        os.kill(dns2, signal.SIGKILL)
        os.kill(network2, signal.SIGKILL)
        wait_restarted(lab, "dns", "host2", dns2)
        wait_restarted(lab, "agent-network", "host2", network2)
        wait_until(
            lambda: "network ready" in Path(lab.record("agent-network", "host2").log)
            .read_text().rsplit("starting it again", 1)[-1],
            20, "host2's network agent ready again",
        )  # fmt: skip
        return time.monotonic()

    try:
        run_fault(
            lab, "bad values under both prefixes (+ restarts among them)",
            put_all, 5, restart_among_them,
            restarted=("dns@host2", "agent-network@host2"),
        )  # fmt: skip
        for host in HOSTS:
            text = Path(lab.record("agent-network", host).log).read_text(errors="replace")
            for key in garbage:
                if key.startswith("/coreos.com/"):
                    assert f"not programming lease {key}" in text, (host, key)
            dns_log = Path(lab.record("dns", host).log).read_text(errors="replace")
            assert "skipping /skydns/lab/service/web/garbage-nested" in dns_log
    finally:
        for key in garbage:
            subprocess.run(
                [etcd_binary("etcdctl"), _endpoints_flag(lab), "del", key],
                capture_output=True, timeout=30,
            )  # fmt: skip
    settled(lab)


def test_dns_server_restarted(lab):
    old = lab.pid("dns", "host1")

    def heal() -> float:
        wait_restarted(lab, "dns", "host1", old)
        dns_ip = lab.state.hosts["host1"].dns_ip
        wait_until(
            lambda: lab.in_host("host1", "dig", "+short", "+time=1", "+tries=1", f"@{dns_ip}",
                                "lab", "SOA").strip(),
            15, "host1's DNS server answering again",
        )  # fmt: skip
        return time.monotonic()

    run_fault(
        lab, "DNS server SIGKILL",
        lambda: os.kill(old, signal.SIGKILL), 3, heal, restarted=("dns@host1",),
    )  # fmt: skip

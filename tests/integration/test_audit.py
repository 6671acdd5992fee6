"""`discoveryctl audit` against a real dockerd: 30 containers, each made to trip or pass a rule.

Every container is made (``docker create``; two are started) on the private
daemon of the ``docker_host`` fixture, from the lab images and two tiny images
built here FROM discovery-lab/base: ``audit-bad:latest`` (a SUID file and a
secret in ENV) and ``audit-hardened:1.0`` (USER and HEALTHCHECK). The audit's
JSON is compared with EXPECTED, the result of every rule for every container.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker.errors
import pytest
from docker.types import Mount

from audit.engine import audit_host
from labs.vagrant_lab import LAB_FILE_ENV, render_lab_file
from tests.fixtures.docker import DockerHost

pytestmark = [pytest.mark.docker, pytest.mark.root]
REPO = Path(__file__).resolve().parents[2]

# One column per rule, one row per container; F W I P - = FAIL WARN INFO PASS N/A.
COLUMNS = [
    *("cis-4.1", "cis-4.6", "cis-4.7", "cis-4.8", "cis-4.9", "lab-secret-env", "lab-image-tag"),
    *("cis-5.2", "cis-5.3", "cis-5.4", "cis-5.5", "cis-5.6", "cis-5.7", "cis-5.8", "cis-5.10"),
    *(
        "cis-5.11",
        "cis-5.12",
        "cis-5.13",
        "cis-5.14",
        "cis-5.15",
        "cis-5.16",
        "cis-5.17",
        "cis-5.18",
    ),
    *("cis-5.20", "cis-5.21", "cis-5.22", "cis-5.25", "cis-5.26", "cis-5.27", "cis-5.29"),
    *("cis-5.30", "cis-5.31", "cis-5.32", "lab-socket-mount"),
    *("cis-5.9", "cis-5.19"),
]
EXPECTED_TEXT = """
# (read each column top down: 4.1 is cis-4.1, 510 cis-5.10, sec tag soc the lab-* rules,
#  then the last two columns: 59 is cis-5.9, 519 cis-5.19)
#                  4 4 4 4 4 s t 5 5 5 5 5 5 5 5 5 5 5 5 5 5 5 5 5 5 5 5 5 5 5 5 5 5 s 5 5
#                            e a               1 1 1 1 1 1 1 1 1 2 2 2 2 2 2 2 3 3 3 o   1
#                  1 6 7 8 9 c g 2 3 4 5 6 7 8 0 1 2 3 4 5 6 7 8 0 1 2 5 6 7 9 0 1 2 c 9 9
hardened           P P P P P P P - - P P P P P P P P P P P P P P P P P P P P P P P P P P P
plain              W W P P P P P - - W P P - P P W W W P P P P P P P P P W W W I P P P P P
root-slash         W W P P P P P - - W P F - P P W W W P P P P P P P P P W W W I P F P P P
privileged         W W P P P P P - - F F P - P P W W W P P P P P P P W P W W W I P P P P P
all-ports          W W P P P P P - - W P P - P P W W W W P P P P P P P P W W W I P P P W P
user-0-0           W W P P P P P - - W P P - P P W W W P P P P P P P P P W W W I P P P P P
user-root-group    W W P P P P P - - W P P - P P W W W P P P P P P P P P W W W I P P P P P
seccomp-off        W W P P P P P - - W P P - P P W W W P P P P P P P W P W W W I P P P P P
nnp-false          W W P P P P P - - W P P - P P W W W P P P P P P P P P W W W I P P P P P
sys-admin          W W P P P P P - - F P P - P P W W W P P P P P P P P P W W W I P P P P P
etc-read-only      W W P P P P P - - W P W - P P W W W P P P P P P P P P W W W I P P P P P
root-home          W W P P P P P - - W P F - P P W W W P P P P P P P P P W W W I P P P P P
run-read-only      W W P P P P P - - W P W - P P W W W P P P P P P P P P W W W I P F P P P
var-run            W W P P P P P - - W P F - P P W W W P P P P P P P P P W W W I P F P P P
home-read-only     W W P P P P P - - W P W - P P W W W P P P P P P P P P W W W I P P P P P
cpu-quota          W W P P P P P - - W P P - P P W P W P P P P P P P P P W W W I P P P P P
cpuset             W W P P P P P - - W P P - P P W P W P P P P P P P P P W W W I P P P P P
ports-wildcard     W W P P P P P - - W P P - W P W W W W P P P P P P P P W W W I P P P P P
port-one-address   W W P P P P P - - W P P - P P W W W P P P P P P P P P W W W I P P P P P
restart-always     W W P P P P P - - W P P - P P W W W P W P P P P P P P W W W I P P P P P
secret-env         W W P P P F P - - W P P - P P W W W P P P P P P P P P W W W I P P P P P
latest-image       W W P W I F W - - W P P - P P W W W P P P P P P P P P W W W I P P P P P
untagged           W W P W I F W - - W P P - P P W W W P P P P P P P P P W W W I P P P P P
socket-dir         W W P P P P P - - W P P - P P W W W P P P P P P P P P W W W I P F P P P
other-socket       W W P P P P P - - W P P - P P W W W P P P P P P P P P W W W I P P W P P
host-namespaces    W W P P P P P - - W P P - P F W W W P P F F P P W P P W W W P W P P P P
device             W W P P P P P - - W P P - P P W W W P P P P W P P P P W W W I P P P P P
shared-mount       W W P P P P P - - W P P - P P W W W P P P P P W P P P W W W I P P P P P
cgroup-parent      W W P P P P P - - W P P - P P W W W P P P P P P P P W W W W I P P P P P
running-web        W W P P P P P - - W P P P P P W W W P P P P P P P P P W W W I P P P P P
"""
CODES = {"F": "FAIL", "W": "WARN", "I": "INFO", "P": "PASS", "-": "N/A"}


def expected_table() -> dict[str, dict[str, str]]:
    table = {}
    for line in EXPECTED_TEXT.strip().splitlines():
        if line.startswith("#"):
            continue
        name, *codes = line.split()
        assert len(codes) == len(COLUMNS), name
        table[name] = {rule: CODES[code] for rule, code in zip(COLUMNS, codes, strict=True)}
    return table


def build_image(client: Any, tag: str, dockerfile: str, files: dict[str, tuple[bytes, int]]) -> str:
    """Build from an in-memory context (a tar of the Dockerfile and files with their modes)."""
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as archive:
        for name, (data, mode) in {"Dockerfile": (dockerfile.encode(), 0o644), **files}.items():
            member = tarfile.TarInfo(name)
            member.size, member.mode = len(data), mode
            archive.addfile(member, io.BytesIO(data))
    context.seek(0)
    image, _ = client.images.build(fileobj=context, custom_context=True, tag=tag, rm=True)
    return str(image.id)


@pytest.fixture
def audit_containers(docker_cleanup: DockerHost, tmp_path: Path) -> Iterator[DockerHost]:
    host = docker_cleanup
    client = host.client
    base, web = host.images["base"], host.images["web"]
    # The classic builder's COPY drops the SUID bit; ADD of a tar keeps its members' modes.
    suid_layer = io.BytesIO()
    with tarfile.open(fileobj=suid_layer, mode="w") as archive:
        member = tarfile.TarInfo("bin/su-helper")
        member.size, member.mode = 10, 0o4755
        archive.addfile(member, io.BytesIO(b"#!/bin/sh\n"))
    bad_id = build_image(
        client,
        "audit-bad:latest",
        f"FROM {base}\nENV API_TOKEN=not-for-your-eyes\nADD suid.tar /\n",
        {"suid.tar": (suid_layer.getvalue(), 0o644)},
    )
    build_image(
        client,
        "audit-hardened:1.0",
        f'FROM {base}\nUSER 1000:1000\nHEALTHCHECK CMD ["true"]\nCMD ["sleep", "600"]\n',
        {},
    )
    network = client.networks.create("audit-net")
    other_socket = tmp_path / "agent.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(other_socket))
    shared_dir = tmp_path / "shared"
    shared_dir.mkdir()
    made: dict[str, dict[str, Any]] = {
        "hardened": dict(
            image="audit-hardened:1.0", cap_drop=["ALL"], read_only=True, mem_limit="64m",
            nano_cpus=500_000_000, pids_limit=64, security_opt=["no-new-privileges=true"],
            restart_policy={"Name": "on-failure", "MaximumRetryCount": 3},
            network=network.name, ports={"80/tcp": ("127.0.0.1", 18080)},
        ),
        "plain": dict(image=base),
        "root-slash": dict(image=base, volumes={"/": {"bind": "/host", "mode": "rw"}}),
        "privileged": dict(image=base, privileged=True),
        "all-ports": dict(image=web, publish_all_ports=True),
        "user-0-0": dict(image=base, user="0:0"),
        "user-root-group": dict(image=base, user="root:daemon"),
        "seccomp-off": dict(image=base, security_opt=["seccomp=unconfined"]),
        "nnp-false": dict(image=base, security_opt=["no-new-privileges=false"]),
        "sys-admin": dict(image=base, cap_add=["SYS_ADMIN"], cap_drop=["ALL"]),
        "etc-read-only": dict(image=base, volumes={"/etc": {"bind": "/host-etc", "mode": "ro"}}),
        "root-home": dict(image=base, volumes={"/root": {"bind": "/host-root", "mode": "rw"}}),
        "run-read-only": dict(image=base, volumes={"/run": {"bind": "/r", "mode": "ro"}}),
        "var-run": dict(image=base, volumes={"/var/run": {"bind": "/r", "mode": "rw"}}),
        "home-read-only": dict(image=base, volumes={"/home": {"bind": "/h", "mode": "ro"}}),
        "cpu-quota": dict(image=base, cpu_period=100_000, cpu_quota=50_000),
        "cpuset": dict(image=base, cpuset_cpus="0"),
        "ports-wildcard": dict(image=web, ports={"80/tcp": [("::", 80), 18081]}),
        "port-one-address": dict(image=web, ports={"80/tcp": ("127.0.0.1", 18082)}),
        "restart-always": dict(image=base, restart_policy={"Name": "always"}),
        "secret-env": dict(
            image=base, environment={"DB_PASSWORD": "hunter2", "PASSWORD_FILE": "/x"}
        ),
        "latest-image": dict(image="audit-bad"),
        "untagged": dict(image=bad_id.removeprefix("sha256:")[:12]),
        "socket-dir": dict(
            image=base, volumes={str(host.daemon.socket_path.parent): {"bind": "/d", "mode": "ro"}}
        ),
        "other-socket": dict(
            image=base, volumes={str(other_socket): {"bind": "/a.sock", "mode": "rw"}}
        ),
        "host-namespaces": dict(
            image=base, network_mode="host", pid_mode="host", ipc_mode="host", uts_mode="host",
            userns_mode="host",
        ),
        "device": dict(image=base, devices=["/dev/null:/dev/xnull:rwm"]),
        "shared-mount": dict(
            image=base,
            mounts=[Mount("/shared", str(shared_dir), type="bind", propagation="rshared")],
        ),
        "cgroup-parent": dict(image=base, cgroup_parent="audit-parent"),
        "running-web": dict(image=web, ports={"80/tcp": ("127.0.0.1", 18083)}),
    }  # fmt: skip
    for name, options in made.items():
        client.containers.create(name=name, detach=True, **options)
    client.containers.get("running-web").start()
    client.containers.get("hardened").start()
    try:
        yield host
    finally:
        listener.close()
        for tag in ("audit-bad:latest", "audit-hardened:1.0"):
            for container in client.containers.list(all=True):
                container.remove(force=True)
            with contextlib.suppress(docker.errors.NotFound):
                client.images.remove(tag, force=True)


def run_audit(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "audit.cli", "--docker-host", url, *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
    )


def test_every_rule_for_every_container(audit_containers: DockerHost) -> None:
    done = run_audit(audit_containers.url, "-o", "json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    (host,) = report["hosts"]
    assert host["error"] is None and host["notes"] == [], host
    got = {c["name"]: {f["rule"]: f["result"] for f in c["findings"]} for c in host["containers"]}
    expected = expected_table()
    security = {f["rule"]: f for f in host["daemon"]}
    if "apparmor" in security["daemon-userns"]["evidence"]:  # a host with AppArmor
        for name, row in expected.items():
            row["cis-5.2"] = "WARN" if name in ("privileged",) else "PASS"
    assert set(got) == set(expected)
    differences = [
        f"{name} {rule}: expected {want}, got {got[name][rule]}"
        for name, row in expected.items()
        for rule, want in row.items()
        if got[name].get(rule) != want
    ]
    assert not differences, "\n".join(differences)
    assert set(COLUMNS) == set(next(iter(got.values())))
    # Worst first, the hardened one clean and last, the secret's value never shown.
    names = [c["name"] for c in host["containers"]]
    assert names[-1] == "hardened" and host["containers"][-1]["score"] == 100
    assert "hunter2" not in done.stdout and "not-for-your-eyes" not in done.stdout
    assert {f["rule"]: f["result"] for f in host["daemon"]} == {
        "daemon-userns": "WARN",
        "daemon-swarm": "PASS",
        "daemon-icc": "WARN",
        "daemon-live-restore": "WARN",
        "daemon-no-new-privileges": "INFO",
        "daemon-tcp-tls": "PASS",
        "daemon-log-driver": "INFO",
    }


def test_text_output_one_container_and_exit_codes(audit_containers: DockerHost) -> None:
    url = audit_containers.url
    done = run_audit(url, "--container", "privileged", "--fail-on", "fail")
    assert done.returncode == 1, done.stderr
    assert "privileged (discovery-lab/base:0.1.0, created): score" in done.stdout
    assert "FAIL cis-5.5" in done.stdout and "-> docker run without --privileged" in done.stdout
    assert "hardened" not in done.stdout
    clean = run_audit(url, "--container", "hardened", "--fail-on", "warn", "--no-files")
    # The daemon's own findings (userns off, icc on) are WARNs: --fail-on warn trips on them.
    assert clean.returncode == 1
    assert "hardened (audit-hardened:1.0, running): score 100/100" in clean.stdout
    # A name pattern picks every container it matches, and only those.
    picked = run_audit(url, "--container", "*ports*", "-o", "json", "--no-files")
    names = {c["name"] for h in json.loads(picked.stdout)["hosts"] for c in h["containers"]}
    assert names and all("ports" in name for name in names), names
    missing = run_audit(url, "--container", "nothing-by-that-name")
    assert missing.returncode == 0
    assert "no container 'nothing-by-that-name'" in missing.stdout


def test_a_daemon_that_does_not_answer_is_one_line(tmp_path: Path) -> None:
    done = run_audit(f"unix://{tmp_path}/docker.sock", "-o", "json")
    assert done.returncode == 3
    assert done.stderr.strip().count("\n") == 0
    assert "did not answer: No such file or directory" in done.stderr


def test_lab_audit_every_host_and_a_dead_one(audit_containers: DockerHost, tmp_path: Path) -> None:
    """`discoveryctl lab audit` reads the state file: host1 answers, host2's daemon is gone."""
    root = tmp_path / "state"
    env = {**os.environ, "PYTHONPATH": str(REPO), "DISCOVERY_LAB_STATE": str(root)}
    code = (
        "import sys; from labs.state import LabState, HostState, save_state\n"
        "hosts = {n: HostState(n, 'netns-' + n, '10.9.0.' + n[-1], docker_url=u)"
        " for n, u in (('host1', sys.argv[1]), ('host2', sys.argv[2]))}\n"
        "save_state(LabState('audit', 2, 1, '10.9.0.0/24', '10.5.0.0/16', [], hosts=hosts))\n"
    )
    dead = f"unix://{tmp_path}/gone.sock"
    subprocess.run([sys.executable, "-c", code, audit_containers.url, dead], env=env, check=True)
    discoveryctl = [sys.executable, "-m", "discovery.cli", "lab", "--name", "audit", "audit"]
    done = subprocess.run(
        [*discoveryctl, "--container", "privileged", "-o", "json"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert done.returncode == 3, done.stderr
    hosts = {h["host"]: h for h in json.loads(done.stdout)["hosts"]}
    assert [c["name"] for c in hosts["host1"]["containers"]] == ["privileged"]
    assert "did not answer" in hosts["host2"]["error"]
    assert done.stderr.count("\n") == 1 and "host2" in done.stderr
    only = subprocess.run(
        [*discoveryctl, "host1", "--container", "hardened", "--no-files"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert only.returncode == 0, only.stderr
    assert only.stdout.startswith("== host1 (unix://") and "host2" not in only.stdout
    unknown = subprocess.run(
        [*discoveryctl, "host9"], capture_output=True, text=True, env=env, cwd=REPO, timeout=60
    )
    assert unknown.returncode != 0 and "no host 'host9'" in unknown.stderr


def test_removed_mid_audit_and_export_too_big(audit_containers: DockerHost) -> None:
    """A container gone between the listing and its inspect, and an export over budget: notes."""
    client = audit_containers.client
    doomed = client.containers.create(audit_containers.images["base"], name="zz-doomed")
    # The daemon lists the newest first: the trigger is audited, then zz-doomed is inspected.
    client.containers.create(audit_containers.images["base"], name="zz-trigger")
    removed: list[str] = []

    def remove_once(line: str) -> None:
        if not removed:
            removed.append(line)
            doomed.remove(force=True)

    result = audit_host("h", audit_containers.url, max_bytes=4096, say=remove_once)
    assert "zz-doomed: removed during the audit, skipped" in result.notes
    assert "zz-doomed" not in [c.name for c in result.containers]
    for container in result.containers:
        setid = {f.rule: f for f in container.findings}["cis-4.8"]
        assert (setid.result, setid.evidence) == (
            "INFO",
            "filesystem not examined: the export is bigger than 4 KB",
        )


def test_lab_audit_on_a_vagrant_vm(audit_containers: DockerHost, tmp_path: Path) -> None:
    """On a VM of the Vagrant lab (its lab file, no local state): this VM's daemon by its URL."""
    lab_file = tmp_path / "lab.toml"
    lab_file.write_text(
        render_lab_file(
            "host1",
            {"host1": "192.0.2.11", "host2": "192.0.2.12"},
            [],
            docker_url=audit_containers.url,
        )
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        LAB_FILE_ENV: str(lab_file),
        "DISCOVERY_LAB_STATE": str(tmp_path / "no-state"),
    }
    discoveryctl = [sys.executable, "-m", "discovery.cli", "lab", "audit"]
    done = subprocess.run(
        [*discoveryctl, "host1", "--container", "privileged", "-o", "json"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (host,) = json.loads(done.stdout)["hosts"]
    assert (host["host"], host["url"]) == ("host1", audit_containers.url)
    assert [c["name"] for c in host["containers"]] == ["privileged"]
    unknown = subprocess.run(
        [*discoveryctl, "host7"], capture_output=True, text=True, env=env, cwd=REPO, timeout=60
    )
    assert unknown.returncode != 0 and "no host 'host7' in the Vagrant lab" in unknown.stderr

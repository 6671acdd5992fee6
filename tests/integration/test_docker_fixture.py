"""The private dockerd fixture, the lab images and DockerDaemon's failure modes, for real."""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from labs.dockerd import DockerDaemon, DockerDaemonError, mounts_under
from labs.image_build import copy_images, project_version
from labs.testing.waiting import wait_until
from tests.fixtures.docker import DOCKER_HOST_BIP, DockerHost

pytestmark = [pytest.mark.docker, pytest.mark.root]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def short_state_dir() -> Iterator[Path]:
    # Under /tmp with a short name: the daemon's containerd sockets live under it.
    path = Path(tempfile.mkdtemp(prefix="dlt-t-", dir="/tmp"))
    yield path
    # remove() stops whatever a failed test left running there, unmounts and deletes.
    DockerDaemon("leftover", path).remove()


def test_container_from_lab_base_image(docker_cleanup: DockerHost) -> None:
    host = docker_cleanup
    name = unique("dlt-base")
    container = host.client.containers.run(
        host.images["base"],
        ["sh", "-c", "hostname; sleep 30"],
        name=name,
        labels={"lab.test": name},
        detach=True,
    )
    container.reload()
    attrs = container.attrs

    assert attrs["Name"] == f"/{name}"
    assert attrs["Config"]["Image"] == host.images["base"]
    assert host.images["base"] in host.client.images.get(attrs["Image"]).tags
    assert host.images["base"] == f"discovery-lab/base:{project_version()}"
    assert attrs["Config"]["Labels"]["lab.test"] == name
    assert attrs["State"]["Status"] == "running"
    assert attrs["State"]["Running"] is True

    bridge = attrs["NetworkSettings"]["Networks"]["bridge"]
    address = ipaddress.IPv4Address(bridge["IPAddress"])
    gateway = ipaddress.IPv4Interface(DOCKER_HOST_BIP).ip  # docker0 holds the bip itself
    assert address in host.subnet
    assert address != gateway
    assert bridge["Gateway"] == str(gateway)

    # The container printed its own hostname, which docker sets to the short id.
    hostname = attrs["Config"]["Hostname"]
    assert container.id.startswith(hostname)
    wait_until(lambda: hostname.encode() in container.logs(), 10, "the hostname in the logs")

    code, out = container.exec_run(["busybox", "--list"])
    assert code == 0
    applets = set(out.decode().split())
    assert {"sh", "nslookup", "wget", "httpd", "ping", "ip", "hostname"} <= applets

    # Installed as commands on PATH, not only inside the busybox binary.
    code, out = container.exec_run(["which", "nslookup", "wget", "httpd", "ping", "ip"])
    assert code == 0, out
    assert out.decode().split() == [
        "/usr/bin/nslookup",
        "/usr/bin/wget",
        "/usr/sbin/httpd",
        "/bin/ping",
        "/sbin/ip",
    ]


def test_web_image_serves_a_page_naming_its_host(docker_cleanup: DockerHost) -> None:
    host = docker_cleanup
    web_image = host.client.images.get(host.images["web"])
    assert web_image.attrs["Config"]["Cmd"] == ["/bin/lab-web"]
    assert "80/tcp" in web_image.attrs["Config"]["ExposedPorts"]

    web = host.client.containers.run(
        host.images["web"],
        name=unique("dlt-web"),
        hostname="web-1",
        environment={"LAB_HOST": "lab-host-a"},
        detach=True,
    )
    web.reload()
    web_ip = web.attrs["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
    assert ipaddress.IPv4Address(web_ip) in host.subnet

    probe = host.client.containers.run(
        host.images["base"], ["sleep", "30"], name=unique("dlt-probe"), detach=True
    )

    def fetch() -> str | None:
        # Not `wget -T`: Debian's static busybox 1.35 segfaults on it (exit 139).
        code, out = probe.exec_run(["timeout", "2", "wget", "-qO-", f"http://{web_ip}/"])
        return out.decode() if code == 0 else None

    page = wait_until(fetch, 10, f"httpd on {web_ip}:80")
    assert "hostname: web-1" in page
    assert "lab host: lab-host-a" in page
    assert "<title>web-1</title>" in page

    # The entrypoint traps SIGTERM, so a docker stop ends it at once instead
    # of after the 10 s kill timeout, and with a clean exit.
    started = time.monotonic()
    web.stop(timeout=10)
    assert time.monotonic() - started < 5
    web.reload()
    assert web.attrs["State"]["ExitCode"] == 0
    # httpd -v logged the probe's request.
    assert b"response:200" in web.logs()


def test_second_daemon_on_a_state_dir_in_use_is_refused(docker_host: DockerHost) -> None:
    running = docker_host.daemon
    config_before = running.config_file.read_bytes()
    intruder = DockerDaemon("intruder", running.state_dir, netns=docker_host.netns)

    with pytest.raises(DockerDaemonError) as raised:
        intruder.start(timeout_s=5)

    message = str(raised.value)
    assert "'intruder'" in message
    assert str(running.state_dir) in message
    assert f"already runs with this state dir (pid {running.pid})" in message
    # The refusal disturbed nothing: the daemon still answers and its files are as they were.
    assert running.ping()
    assert running.config_file.read_bytes() == config_before
    assert docker_host.client.ping() is True


def test_wrong_dockerd_binary_is_named(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    daemon = DockerDaemon("nobinary", state_dir, dockerd_binary="/nonexistent/bin/dockerd")

    with pytest.raises(
        DockerDaemonError, match=r"'nobinary'.*'/nonexistent/bin/dockerd' not found"
    ):
        daemon.start(timeout_s=5)

    assert not daemon.running
    assert not state_dir.exists()


def test_daemon_that_exits_reports_its_log(docker_host: DockerHost, short_state_dir: Path) -> None:
    daemon = DockerDaemon(
        "badflag", short_state_dir, netns=docker_host.netns, extra_args=["--no-such-flag"]
    )

    with pytest.raises(DockerDaemonError) as raised:
        daemon.start(timeout_s=10)

    message = str(raised.value)
    assert "'badflag'" in message
    assert "exited with status" in message
    # The tail of dockerd's own log says why.
    assert "unknown flag: --no-such-flag" in message
    assert not daemon.running


@pytest.fixture
def spare_daemon(docker_host: DockerHost, short_state_dir: Path) -> Iterator[DockerDaemon]:
    """A second started daemon in a namespace of its own, for tests that break or fill it."""
    netns = f"{docker_host.netns}-b"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    daemon = DockerDaemon("spare", short_state_dir, netns=netns, bip="172.31.251.1/24")
    try:
        daemon.start()
        yield daemon
    finally:
        daemon.remove()
        subprocess.run(["ip", "netns", "delete", netns], check=True)


def processes_mentioning(path: Path) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if str(path).encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def test_copy_images_to_another_daemon(docker_host: DockerHost, spare_daemon: DockerDaemon) -> None:
    client = docker.DockerClient(base_url=spare_daemon.url)
    try:
        assert client.images.list() == []
        copy_images(docker_host.url, spare_daemon.url, list(docker_host.images.values()))
        for tag in docker_host.images.values():
            assert client.images.get(tag).id == docker_host.client.images.get(tag).id
    finally:
        client.close()


def test_remove_after_a_crash_leaves_nothing(
    docker_host: DockerHost, spare_daemon: DockerDaemon
) -> None:
    copy_images(docker_host.url, spare_daemon.url, [docker_host.images["base"]])
    client = docker.DockerClient(base_url=spare_daemon.url)
    try:
        container = client.containers.run(docker_host.images["base"], ["sleep", "300"], detach=True)
        container.reload()
        container_pid = container.attrs["State"]["Pid"]
    finally:
        client.close()
    assert mounts_under(spare_daemon.state_dir)

    # A crash: dockerd gets no chance to stop its container or unmount anything.
    assert spare_daemon.pid is not None
    os.kill(spare_daemon.pid, signal.SIGKILL)
    wait_until(lambda: not spare_daemon.running, 10, "dockerd to die")
    assert Path(f"/proc/{container_pid}").exists(), "the container outlives a killed dockerd"

    spare_daemon.remove()

    assert not Path(f"/proc/{container_pid}").exists()
    assert processes_mentioning(spare_daemon.state_dir) == []
    assert mounts_under(spare_daemon.state_dir) == []
    assert not spare_daemon.state_dir.exists()


def test_root_namespace_daemon_leaves_the_machine_network_alone() -> None:
    """Outside a lab namespace: no firewall rules, no ip_forward flip, no bridge."""
    root = DockerDaemon("root", Path("/tmp/dlt-root")).command("/usr/sbin/dockerd")
    assert {"--iptables=false", "--ip-forward=false", "--bridge=none"} <= set(root)
    assert root[0] == "/usr/sbin/dockerd"

    lab = DockerDaemon("lab", Path("/tmp/dlt-lab"), netns="h1", bip="10.5.1.1/24", mtu=1450)
    lab_cmd = lab.command("/usr/sbin/dockerd")
    assert lab_cmd[:3] == ["nsenter", "--net=/run/netns/h1", "--"]
    assert {"--iptables=true", "--bip=10.5.1.1/24", "--mtu=1450"} <= set(lab_cmd)
    assert not any(arg.startswith(("--bridge", "--ip-forward")) for arg in lab_cmd)

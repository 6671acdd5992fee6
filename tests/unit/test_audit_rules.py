"""The audit's rules on hand-written inspect dicts (Engine API 1.41 shapes, Docker 20.10)."""

from __future__ import annotations

import copy
import io
import tarfile
from collections.abc import Iterator
from typing import Any

import pytest

from audit.report import exit_code, render_json, render_text, score
from audit.rules import (
    CONTAINER_RULES,
    DAEMON_RULES,
    ContainerAudit,
    Daemon,
    HostAudit,
    Subject,
    audit_container,
    audit_daemon,
    rule_ids,
)

# `docker info` of a Debian 12 docker.io 20.10 daemon without AppArmor or SELinux.
INFO: dict[str, Any] = {
    "SecurityOptions": ["name=seccomp,profile=default", "name=cgroupns"],
    "LiveRestoreEnabled": False,
    "LoggingDriver": "json-file",
    "ServerVersion": "20.10.24+dfsg1",
}
DAEMON = Daemon(info=INFO, url="unix:///tmp/lab/host1/docker.sock")
APPARMOR = Daemon(info={**INFO, "SecurityOptions": ["name=apparmor", *INFO["SecurityOptions"]]})
SELINUX = Daemon(info={**INFO, "SecurityOptions": ["name=selinux", *INFO["SecurityOptions"]]})

# `docker create discovery-lab/base:0.1.0`, trimmed to what the rules read.
CONTAINER: dict[str, Any] = {
    "Id": "4f" * 32,
    "Name": "/plain",
    "Image": "sha256:" + "ab" * 32,
    "AppArmorProfile": "",
    "State": {"Status": "created", "Running": False},
    "Config": {
        "User": "",
        "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
        "Image": "discovery-lab/base:0.1.0",
        "ExposedPorts": None,
    },
    "HostConfig": {
        "Binds": None,
        "NetworkMode": "default",
        "PortBindings": {},
        "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
        "CapAdd": None,
        "CapDrop": None,
        "CgroupParent": "",
        "IpcMode": "private",
        "PidMode": "",
        "Privileged": False,
        "PublishAllPorts": False,
        "ReadonlyRootfs": False,
        "SecurityOpt": None,
        "UTSMode": "",
        "UsernsMode": "",
        "CpuShares": 0,
        "Memory": 0,
        "NanoCpus": 0,
        "CpuQuota": 0,
        "CpusetCpus": "",
        "Devices": [],
        "PidsLimit": None,
    },
    "Mounts": [],
    "NetworkSettings": {"Ports": {}},
}
IMAGE: dict[str, Any] = {
    "Id": "sha256:" + "ab" * 32,
    "RepoTags": ["discovery-lab/base:0.1.0"],
    "Config": {"Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["sh"]},
}
HISTORY = [{"CreatedBy": "/bin/sh -c #(nop) COPY dir:0123 in / "}]


def subject(
    *,
    config: dict[str, Any] | None = None,
    host: dict[str, Any] | None = None,
    mounts: list[dict[str, Any]] | None = None,
    image_config: dict[str, Any] | None = None,
    daemon: Daemon = DAEMON,
    setid: list[str] | None = None,
    **top: Any,
) -> Subject:
    container = copy.deepcopy(CONTAINER)
    container["Config"].update(config or {})
    container["HostConfig"].update(host or {})
    container["Mounts"] = mounts or []
    container.update(top)
    image = copy.deepcopy(IMAGE)
    image["Config"].update(image_config or {})
    return Subject(container, image, daemon, HISTORY, setid_files=setid)


def result(rule_id: str, s: Subject) -> str:
    return {f.rule: f for f in audit_container(s)}[rule_id].result


def evidence(rule_id: str, s: Subject) -> str:
    return {f.rule: f for f in audit_container(s)}[rule_id].evidence


def bind(source: str, rw: bool = True, propagation: str = "rprivate") -> dict[str, Any]:
    return {"Type": "bind", "Source": source, "Destination": "/mnt", "Mode": "",
            "RW": rw, "Propagation": propagation}  # fmt: skip


def test_rule_ids_are_unique_and_stable() -> None:
    ids = rule_ids()
    assert len(ids) == len(set(ids))
    assert {"cis-4.1", "cis-5.5", "cis-5.32", "lab-secret-env", "daemon-userns"} <= set(ids)
    assert all(r.remedy and r.title for r in CONTAINER_RULES + DAEMON_RULES)


@pytest.mark.parametrize(
    ("user", "expected"),
    [("", "WARN"), ("0", "WARN"), ("root", "WARN"), ("0:0", "WARN"), ("root:staff", "WARN"),
     ("00", "WARN"), ("1000", "PASS"), ("nobody:0", "PASS"), ("1000:1000", "PASS")],
)  # fmt: skip
def test_user_root_in_every_spelling(user: str, expected: str) -> None:
    assert result("cis-4.1", subject(config={"User": user})) == expected


def test_privileged_fails_the_capability_rule_too() -> None:
    s = subject(host={"Privileged": True})
    assert result("cis-5.5", s) == "FAIL"
    assert result("cis-5.4", s) == "FAIL"
    assert result("cis-5.22", s) == "WARN"


@pytest.mark.parametrize(
    ("add", "drop", "expected"),
    [(None, None, "WARN"), (None, ["ALL"], "PASS"), (["NET_BIND_SERVICE"], ["ALL"], "WARN"),
     (["SYS_ADMIN"], None, "FAIL"), (["CAP_SYS_ADMIN"], ["ALL"], "FAIL")],
)  # fmt: skip
def test_capabilities(add: Any, drop: Any, expected: str) -> None:
    assert result("cis-5.4", subject(host={"CapAdd": add, "CapDrop": drop})) == expected


@pytest.mark.parametrize(
    ("source", "rw", "expected"),
    [("/", True, "FAIL"), ("/", False, "WARN"), ("/etc", False, "WARN"), ("/etc/ssl", True, "FAIL"),
     ("/root", True, "FAIL"), ("/run", True, "FAIL"), ("/var/run", False, "WARN"),
     ("/var/lib/docker", True, "FAIL"), ("/home/alice", True, "FAIL"), ("/srv/data", True, "PASS"),
     ("/usrlocal", True, "PASS")],
)  # fmt: skip
def test_sensitive_mounts_read_only_too(source: str, rw: bool, expected: str) -> None:
    assert result("cis-5.6", subject(mounts=[bind(source, rw)])) == expected


def test_volume_is_not_a_sensitive_mount() -> None:
    volume = {"Type": "volume", "Name": "v", "Source": "/var/lib/docker/volumes/v/_data",
              "Destination": "/data", "RW": True, "Propagation": ""}  # fmt: skip
    assert result("cis-5.6", subject(mounts=[volume])) == "PASS"


@pytest.mark.parametrize(
    ("host", "expected"),
    [({}, "WARN"), ({"CpuShares": 1024}, "WARN"), ({"CpuShares": 512}, "PASS"),
     ({"NanoCpus": 500000000}, "PASS"), ({"CpuQuota": 50000}, "PASS"),
     ({"CpusetCpus": "0"}, "PASS")],
)  # fmt: skip
def test_cpu_limit_in_every_form(host: dict[str, Any], expected: str) -> None:
    assert result("cis-5.12", subject(host=host)) == expected


@pytest.mark.parametrize(
    ("host_ip", "expected"),
    [("", "WARN"), ("0.0.0.0", "WARN"), ("::", "WARN"), ("127.0.0.1", "PASS"), ("::1", "PASS")],
)
def test_published_port_wildcards(host_ip: str, expected: str) -> None:
    ports = {"80/tcp": [{"HostIp": host_ip, "HostPort": "8080"}]}
    assert result("cis-5.14", subject(host={"PortBindings": ports})) == expected


def test_publish_all_and_running_ports() -> None:
    assert result("cis-5.14", subject(host={"PublishAllPorts": True})) == "WARN"
    running = subject(NetworkSettings={"Ports": {"80/tcp": [{"HostIp": "::", "HostPort": "80"}]}})
    assert result("cis-5.14", running) == "WARN"
    assert result("cis-5.8", running) == "WARN"
    assert result("cis-5.14", subject()) == "PASS"


def test_only_needed_ports_every_exposed_one_is_not_chosen() -> None:
    exposing = {"ExposedPorts": {"80/tcp": {}, "443/tcp": {}}}
    all_of_them = subject(host={"PublishAllPorts": True}, image_config=exposing)
    assert result("cis-5.9", all_of_them) == "WARN"
    assert "443/tcp" in evidence("cis-5.9", all_of_them)
    one = subject(host={"PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]}})
    assert result("cis-5.9", one) == "PASS"
    assert "127.0.0.1:8080->80/tcp" in evidence("cis-5.9", one)
    assert result("cis-5.9", subject()) == "PASS"


def test_ulimits_overridden_are_listed_for_the_owner() -> None:
    raised = subject(host={"Ulimits": [{"Name": "nofile", "Soft": 1024, "Hard": 2048}]})
    assert result("cis-5.19", raised) == "INFO"
    assert evidence("cis-5.19", raised) == "HostConfig.Ulimits: nofile=1024:2048"
    assert result("cis-5.19", subject()) == "PASS"


@pytest.mark.parametrize(
    ("name", "count", "expected"),
    [("no", 0, "PASS"), ("", 0, "PASS"), ("always", 0, "WARN"), ("unless-stopped", 0, "WARN"),
     ("on-failure", 0, "WARN"), ("on-failure", 5, "PASS"), ("on-failure", 6, "WARN")],
)  # fmt: skip
def test_restart_policy(name: str, count: int, expected: str) -> None:
    policy = {"RestartPolicy": {"Name": name, "MaximumRetryCount": count}}
    assert result("cis-5.15", subject(host=policy)) == expected


@pytest.mark.parametrize(
    ("opts", "expected"),
    [(None, "WARN"), (["no-new-privileges"], "PASS"), (["no-new-privileges=true"], "PASS"),
     (["no-new-privileges:true"], "PASS"), (["no-new-privileges=false"], "WARN"),
     (["label=disable"], "WARN")],
)  # fmt: skip
def test_no_new_privileges(opts: Any, expected: str) -> None:
    assert result("cis-5.26", subject(host={"SecurityOpt": opts})) == expected


@pytest.mark.parametrize(
    ("opts", "expected"),
    [(None, "PASS"), (["seccomp=unconfined"], "WARN"), (["seccomp:unconfined"], "WARN"),
     (["seccomp={\"defaultAction\":\"SCMP_ACT_ERRNO\"}"], "PASS"), (["label=disable"], "PASS")],
)  # fmt: skip
def test_seccomp(opts: Any, expected: str) -> None:
    assert result("cis-5.22", subject(host={"SecurityOpt": opts})) == expected


def test_seccomp_not_applicable_without_seccomp() -> None:
    daemon = Daemon(info={**INFO, "SecurityOptions": []})
    assert result("cis-5.22", subject(daemon=daemon)) == "N/A"


def test_apparmor_only_where_there_is_apparmor() -> None:
    assert result("cis-5.2", subject()) == "N/A"
    assert result("cis-5.2", subject(daemon=APPARMOR)) == "WARN"
    assert result("cis-5.2", subject(daemon=APPARMOR, AppArmorProfile="docker-default")) == "PASS"
    unconfined = subject(daemon=APPARMOR, AppArmorProfile="unconfined")
    assert result("cis-5.2", unconfined) == "WARN"


def test_selinux_label_disable_is_not_a_pass() -> None:
    assert result("cis-5.3", subject(host={"SecurityOpt": ["label=disable"]})) == "N/A"
    assert result("cis-5.3", subject(daemon=SELINUX)) == "PASS"
    disabled = subject(daemon=SELINUX, host={"SecurityOpt": ["label=disable"]})
    assert result("cis-5.3", disabled) == "WARN"
    assert result("cis-5.3", subject(daemon=SELINUX, host={"Privileged": True})) == "WARN"


def test_secret_env_never_shows_the_value() -> None:
    s = subject(
        config={
            "Env": [
                "PATH=/bin",
                "DB_PASSWORD=hunter2",
                "API_KEY=k",
                "TOKEN_FILE=/run/t",
                "EMPTY_SECRET=",
            ]
        },
        image_config={"Env": ["API_KEY=k"]},
    )
    assert result("lab-secret-env", s) == "FAIL"
    text = evidence("lab-secret-env", s)
    assert "hunter2" not in text and "=k" not in text
    assert "DB_PASSWORD=<hidden>" in text and "API_KEY=<hidden> (from the image)" in text
    assert "TOKEN_FILE" not in text and "EMPTY_SECRET" not in text
    assert result("lab-secret-env", subject()) == "PASS"


@pytest.mark.parametrize(
    ("image", "expected"),
    [("discovery-lab/base:0.1.0", "PASS"), ("discovery-lab/base", "WARN"),
     ("discovery-lab/base:latest", "WARN"), ("localhost:5000/base", "WARN"),
     ("localhost:5000/base:1.0", "PASS"), ("ab" * 6, "WARN"), ("sha256:" + "ab" * 32, "WARN"),
     ("base@sha256:" + "ab" * 32, "PASS")],
)  # fmt: skip
def test_image_tag(image: str, expected: str) -> None:
    assert result("lab-image-tag", subject(config={"Image": image})) == expected


def test_setid_files() -> None:
    assert result("cis-4.8", subject()) == "INFO"
    assert result("cis-4.8", subject(setid=[])) == "PASS"
    assert "/bin/su" in evidence("cis-4.8", subject(setid=["/bin/su"]))


def test_docker_socket_under_any_name_and_its_directory() -> None:
    sources = ("/var/run/docker.sock", "/run/docker.sock", "/tmp/lab/host1/docker.sock",
               "/tmp/lab/host1", "/", "/var", "/tmp", "/var/run", "/srv/x-docker.sock")  # fmt: skip
    for source in sources:
        assert result("cis-5.32", subject(mounts=[bind(source, rw=False)])) == "FAIL", source
    other = subject(mounts=[bind("/tmp/app/agent.sock")])
    assert (result("cis-5.32", other), result("lab-socket-mount", other)) == ("PASS", "WARN")


def test_update_alone_and_sshd() -> None:
    alone = [{"CreatedBy": "/bin/sh -c apt-get -q update"}]
    together = [{"CreatedBy": "/bin/sh -c apt-get update && apt-get install -y curl"}]
    base = subject()
    assert result("cis-4.7", base) == "PASS"
    assert result("cis-4.7", Subject(base.container, base.image, DAEMON, alone)) == "WARN"
    assert result("cis-4.7", Subject(base.container, base.image, DAEMON, together)) == "PASS"
    assert result("cis-5.7", base) == "N/A"
    ssh = Subject(base.container, base.image, DAEMON, processes=["/usr/sbin/sshd -D", "sh"])
    assert result("cis-5.7", ssh) == "WARN"
    web = Subject(base.container, base.image, DAEMON, processes=["httpd -f -p 80 -h /www"])
    assert result("cis-5.7", web) == "PASS"


def test_namespaces_devices_propagation_cgroup() -> None:
    assert result("cis-5.10", subject(host={"NetworkMode": "host"})) == "FAIL"
    assert result("cis-5.16", subject(host={"PidMode": "host"})) == "FAIL"
    assert result("cis-5.17", subject(host={"IpcMode": "host"})) == "FAIL"
    assert result("cis-5.21", subject(host={"UTSMode": "host"})) == "WARN"
    assert result("cis-5.31", subject(host={"UsernsMode": "host"})) == "WARN"
    device = {"PathOnHost": "/dev/null", "PathInContainer": "/dev/x", "CgroupPermissions": "rwm"}
    assert result("cis-5.18", subject(host={"Devices": [device]})) == "WARN"
    assert result("cis-5.20", subject(mounts=[bind("/srv", propagation="rshared")])) == "WARN"
    assert result("cis-5.25", subject(host={"CgroupParent": "/mine"})) == "WARN"
    assert result("cis-5.29", subject(host={"PidsLimit": -1})) == "WARN"
    assert result("cis-5.29", subject(host={"PidsLimit": 100})) == "PASS"


def test_daemon_rules() -> None:
    found = {f.rule: f.result for f in audit_daemon(DAEMON)}
    assert found["daemon-userns"] == "WARN"
    assert found["daemon-live-restore"] == "WARN"
    assert found["daemon-tcp-tls"] == "PASS"
    assert found["daemon-log-driver"] == "INFO"
    assert found["daemon-swarm"] == "PASS"
    in_swarm = Daemon(info={**INFO, "Swarm": {"LocalNodeState": "active"}})
    assert {f.rule: f.result for f in audit_daemon(in_swarm)}["daemon-swarm"] == "WARN"
    tcp = Daemon(
        info={**INFO, "SecurityOptions": ["name=userns"], "LiveRestoreEnabled": True},
        url="tcp://10.0.0.1:2375",
        bridge_options={"com.docker.network.bridge.enable_icc": "false"},
    )
    found = {f.rule: f.result for f in audit_daemon(tcp)}
    assert found["daemon-userns"] == found["daemon-live-restore"] == found["daemon-icc"] == "PASS"
    assert found["daemon-tcp-tls"] == "FAIL"


HARDENED = dict(
    config={"User": "1000:1000", "Healthcheck": {"Test": ["CMD", "true"]}},
    host={"CapDrop": ["ALL"], "ReadonlyRootfs": True, "Memory": 64 << 20, "NanoCpus": 10**9 // 2,
          "PidsLimit": 64, "SecurityOpt": ["no-new-privileges=true"],
          "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3},
          "NetworkMode": "lab-net"},
    image_config={"Healthcheck": {"Test": ["CMD", "true"]}},
    setid=[],
)  # fmt: skip


def test_hardened_container_is_clean() -> None:
    findings = audit_container(subject(**HARDENED))  # type: ignore[arg-type]
    assert {f.result for f in findings} <= {"PASS", "N/A"}, [
        (f.rule, f.result) for f in findings if f.result not in ("PASS", "N/A")
    ]
    assert score(findings) == 100


def test_report_worst_first_and_exit_codes() -> None:
    bad = ContainerAudit(
        "bad", "1", "x", "created", audit_container(subject(host={"Privileged": True}))
    )
    good = ContainerAudit("good", "2", "x", "created", audit_container(subject(**HARDENED)))  # type: ignore[arg-type]
    host = HostAudit("host1", DAEMON.url, audit_daemon(DAEMON), [good, bad])
    text = render_text([host])
    assert text.index("bad (x, created)") < text.index("good (x, created)")
    assert "FAIL cis-5.5" in text and "score 100/100" in text
    assert '"rule": "cis-5.5"' in render_json([host])
    assert exit_code([host], None) == 0
    assert exit_code([host], "fail") == 1
    only_good = HostAudit("host1", DAEMON.url, [], [good])
    assert exit_code([only_good], "warn") == 0
    down = HostAudit("host2", "unix:///nowhere", error="did not answer")
    assert exit_code([only_good, down], None) == 3
    assert "not audited: did not answer" in render_text([down])


def test_setid_paths_from_a_tar_stream() -> None:
    from audit.engine import setid_paths

    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as archive:
        for name, mode in (("bin/su", 0o4755), ("bin/ls", 0o755), ("usr/bin/wall", 0o2755)):
            member = tarfile.TarInfo(name)
            member.mode = mode
            archive.addfile(member, io.BytesIO(b""))
    data.seek(0)
    assert setid_paths(data) == ["/bin/su", "/usr/bin/wall"]


def test_export_reader_stops_at_its_byte_and_time_budget() -> None:
    from audit.engine import ExportTooBig, _BoundedStream, setid_paths

    def chunks() -> Iterator[bytes]:
        """A tar stream of one 1 GB file: the header, then its contents, 1 KB at a time."""
        member = tarfile.TarInfo("big")
        member.size = 1 << 30
        yield member.tobuf()
        while True:
            yield b"x" * 1024

    with pytest.raises(ExportTooBig, match="bigger than 8 KB"):
        setid_paths(_BoundedStream(chunks(), max_bytes=8 * 1024, max_seconds=60))
    with pytest.raises(ExportTooBig, match="time budget"):
        setid_paths(_BoundedStream(chunks(), max_bytes=1 << 30, max_seconds=-1))


def test_a_field_of_an_unexpected_shape_is_one_warn_not_the_end_of_the_audit() -> None:
    odd = subject(host={"Memory": "lots", "PidsLimit": "many"})
    findings = {f.rule: f for f in audit_container(odd)}
    assert findings["cis-5.11"].result == "WARN"
    assert findings["cis-5.11"].evidence.startswith("not judged: unexpected inspect data")
    assert findings["cis-5.5"].result == "PASS"  # every other rule still judged

"""The lab's Docker daemons over TLS, as Docker Machine set its hosts up, on a real 3-host lab.

One lab for the module (its own name, underlay 192.168.249.0/24, state dir). Each
client runs as a learner's would: a new shell with a plain PATH, after
``eval $(discoveryctl lab env HOST)`` or with ``docker $(discoveryctl lab config
HOST)``. The daemons answer the lab's client certificate, and refuse a client
without one, with a certificate of another CA, or with an expired one;
``lab env`` says in one line why a certificate it would hand out is refused;
docker-compose 1.29 works through the same environment; ``lab regenerate-certs``
gives a host's daemon a new certificate while the learner's keeps working.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

from labs import docker_tls as tls
from labs import lab_certs
from labs.testing.lab_driver import LabDriver, running_lab
from labs.testing.waiting import wait_until
from tests.prerequisites import require_binary, require_root

pytestmark = [pytest.mark.root, pytest.mark.docker, pytest.mark.netns, pytest.mark.etcd]

LAB = f"tl{os.getpid() % 10000}"
UNDERLAY = "192.168.249.0/24"
LAB_UP_BUDGET_S = 60
TOOLS = str(Path(sys.executable).parent)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    require_root()
    require_binary("dockerd", "docker", "docker-compose", "ip", "nsenter")
    with running_lab(tmp_path_factory.mktemp("lab-state"), LAB, UNDERLAY) as (driver, took):
        print(f"\nlab up (3 hosts, certificates included): {took:.1f} s")
        assert took < LAB_UP_BUDGET_S
        yield driver


def shell(lab: LabDriver, command: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """A new shell as a learner's: a plain PATH with discoveryctl, the lab's name, nothing else."""
    env = {
        "PATH": f"{TOOLS}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/root",
        "DISCOVERY_LAB_STATE": lab.env["DISCOVERY_LAB_STATE"],
        "DISCOVERY_LAB_NAME": LAB,
    }
    argv = ["env", "-i", *[f"{k}={v}" for k, v in env.items()], "bash", "-c",
            f"set -e -o pipefail\n{command}"]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=cwd)


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, f"{result.args[-1]}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def address(lab: LabDriver, host: str) -> str:
    return lab.state().hosts[host].underlay_ip


def refused(result: subprocess.CompletedProcess) -> str:
    """The CLI failed, and said why in TLS terms (never an answer from the daemon)."""
    assert result.returncode != 0, result.stdout
    return result.stderr


def test_env_prints_docker_machine_s_variables_and_the_docker_cli_uses_them(lab):
    printed = ok(shell(lab, "discoveryctl lab env host2"))
    ip = address(lab, "host2")
    cert_path = lab.state().hosts["host2"].docker_cert_path
    assert printed.splitlines()[:4] == [
        'export DOCKER_TLS_VERIFY="1"',
        f'export DOCKER_HOST="tcp://{ip}:2376"',
        f'export DOCKER_CERT_PATH="{cert_path}"',
        'export DOCKER_MACHINE_NAME="host2"',
    ]
    assert 'export DISCOVERY_ETCD_ENDPOINTS="' in printed
    assert printed.splitlines()[-2:] == [
        "# Run this command to configure your shell: ",
        f"# eval $(discoveryctl lab env --name {LAB} host2)",
    ]
    assert ok(shell(lab, "discoveryctl lab url host2")).strip() == f"tcp://{ip}:2376"

    ok(shell(lab, "eval $(discoveryctl lab env host2)\n"
                  "docker run -d --name tls-probe --label discovery.ignore=true "
                  "discovery-lab/base:0.1.0 sleep 600"))  # fmt: skip
    # the container is on host2's daemon, seen through the lab's own unix socket
    assert lab.docker("host2", "ps", "-q", "--filter", "name=tls-probe").strip()
    assert not lab.docker("host1", "ps", "-q", "--filter", "name=tls-probe").strip()
    listed = ok(shell(lab, "eval $(discoveryctl lab env host2)\ndiscoveryctl lab ls"))
    assert any(line.startswith("host2") and " * " in line for line in listed.splitlines())
    lab.docker("host2", "rm", "-f", "tls-probe")


def test_config_s_flags_work_as_docker_machine_config_s(lab):
    flags = ok(shell(lab, "discoveryctl lab config host1"))
    cert_path = lab.state().hosts["host1"].docker_cert_path
    assert flags == (
        f'--tlsverify\n--tlscacert="{cert_path}/ca.pem"\n--tlscert="{cert_path}/cert.pem"\n'
        f'--tlskey="{cert_path}/key.pem"\n-H=tcp://{address(lab, "host1")}:2376\n'
    )
    name = ok(shell(lab, "docker $(discoveryctl lab config host1) info --format '{{.ID}}'"))
    assert name.strip() == lab.docker("host1", "info", "--format", "{{.ID}}").strip()


def test_without_a_client_certificate_the_daemon_refuses(lab, tmp_path):
    url = f"tcp://{address(lab, 'host1')}:2376"
    plain = refused(shell(lab, f"docker -H {url} version --format '{{{{.Server.Version}}}}'"))
    assert "Client sent an HTTP request to an HTTPS server" in plain
    # TLS, the lab's CA trusted, but no certificate of our own to show
    only_ca = tmp_path / "only-ca"
    only_ca.mkdir()
    lab_ca = Path(lab.state().hosts["host1"].docker_cert_path, "ca.pem")
    (only_ca / "ca.pem").write_bytes(lab_ca.read_bytes())
    command = f"docker --tlsverify --tlscacert {only_ca}/ca.pem -H {url} version"
    anonymous = refused(shell(lab, command))
    assert "bad certificate" in anonymous or "certificate required" in anonymous, anonymous


def _client_dir(lab: LabDriver, where: Path, cert: lab_certs.Issued) -> Path:
    """A DOCKER_CERT_PATH that trusts the lab's CA and shows ``cert``."""
    where.mkdir()
    lab_ca = Path(lab.state().hosts["host1"].docker_cert_path, "ca.pem")
    (where / "ca.pem").write_bytes(lab_ca.read_bytes())
    (where / "cert.pem").write_bytes(cert.cert_pem)
    (where / "key.pem").write_bytes(cert.key_pem)
    return where


def _lab_ca(lab: LabDriver) -> lab_certs.Issued:
    layout = tls.CertLayout(Path(lab.env["DISCOVERY_LAB_STATE"]) / LAB)
    return lab_certs.Issued(layout.ca_cert.read_bytes(), layout.ca_key.read_bytes())


def test_a_client_certificate_from_another_ca_is_refused(lab, tmp_path):
    now = lab_certs.now()
    other_ca = lab_certs.issue(tls.ca_spec("other", now))
    stranger = lab_certs.issue(tls.client_spec("other", now), other_ca)
    cert_path = _client_dir(lab, tmp_path / "stranger", stranger)
    result = shell(lab, f"eval $(discoveryctl lab env host1)\nexport DOCKER_CERT_PATH={cert_path}\n"
                        "docker version --format '{{.Server.Version}}'")  # fmt: skip
    assert "bad certificate" in refused(result) or "unknown certificate" in result.stderr


def test_an_expired_client_certificate_is_refused_and_lab_env_says_so_in_one_line(lab, tmp_path):
    now = lab_certs.now()
    month_ago, yesterday = now - dt.timedelta(days=30), now - dt.timedelta(days=1)
    expired_spec = tls.CertSpec("discovery-lab expired client", "client", month_ago, yesterday)
    expired = lab_certs.issue(expired_spec, _lab_ca(lab))
    cert_path = _client_dir(lab, tmp_path / "expired", expired)
    result = shell(lab, f"eval $(discoveryctl lab env host1)\nexport DOCKER_CERT_PATH={cert_path}\n"
                        "docker version --format '{{.Server.Version}}'")  # fmt: skip
    assert "expired" in refused(result) or "bad certificate" in result.stderr, result.stderr

    # the same certificate where lab env hands it out (host3's DOCKER_CERT_PATH)
    host3_path = Path(lab.state().hosts["host3"].docker_cert_path)
    good = (host3_path / "cert.pem").read_bytes(), (host3_path / "key.pem").read_bytes()
    (host3_path / "cert.pem").write_bytes(expired.cert_pem)
    (host3_path / "key.pem").write_bytes(expired.key_pem)
    try:
        said = shell(lab, "discoveryctl lab env host3")
        assert said.returncode != 0 and said.stdout == ""
        lines = said.stderr.strip().splitlines()
        assert len(lines) == 1 and "expired on" in lines[0] and "regenerate-certs" in lines[0]
    finally:
        (host3_path / "cert.pem").write_bytes(good[0])
        (host3_path / "key.pem").write_bytes(good[1])
    ok(shell(lab, "eval $(discoveryctl lab env host3)\ndocker version"))


def _served_serial(ip: str, cert_path: Path) -> int:
    context = ssl.create_default_context(cafile=str(cert_path / "ca.pem"))
    context.load_cert_chain(cert_path / "cert.pem", cert_path / "key.pem")
    with (
        socket.create_connection((ip, tls.DOCKER_TLS_PORT), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=ip) as wrapped,
    ):
        der = wrapped.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def test_regenerate_certs_gives_the_daemon_a_new_certificate_and_the_client_keeps_working(lab):
    ip = address(lab, "host2")
    cert_path = Path(lab.state().hosts["host2"].docker_cert_path)
    client = (cert_path / "cert.pem").read_bytes()
    lab.docker("host2", "run", "-d", "--name", "tls-keeps", "--label", "discovery.ignore=true",
               "discovery-lab/base:0.1.0", "sleep", "600")  # fmt: skip
    before = _served_serial(ip, cert_path)
    ok(shell(lab, "discoveryctl lab regenerate-certs host2"))
    assert _served_serial(ip, cert_path) != before
    assert (cert_path / "cert.pem").read_bytes() == client
    running = ok(shell(lab, "eval $(discoveryctl lab env host2)\n"
                            "docker ps --filter name=tls-keeps --format '{{.Names}}'"))  # fmt: skip
    assert running.strip() == "tls-keeps"
    lab.docker("host2", "rm", "-f", "tls-keeps")
    # the services agent carries on with the restarted daemon
    ok(shell(lab, "eval $(discoveryctl lab env host2)\n"
                  "docker run -d --name tls-after --label discovery.service=tls-after "
                  "discovery-lab/web:0.1.0"))  # fmt: skip
    wait_until(lambda: lab.lookup("tls-after"), 20, "tls-after registered after the restart")
    lab.docker("host2", "rm", "-f", "tls-after")


def test_docker_compose_works_with_lab_env(lab, tmp_path):
    (tmp_path / "docker-compose.yml").write_text(
        'version: "3"\nservices:\n  idle:\n    image: discovery-lab/base:0.1.0\n'
        "    command: sleep 600\n    labels: {discovery.ignore: 'true'}\n"
    )
    prelude = "eval $(discoveryctl lab env host3)\n"
    ok(shell(lab, prelude + "docker-compose -p tlsdemo up -d", cwd=tmp_path))
    assert lab.docker("host3", "ps", "-q", "--filter", "label=com.docker.compose.project=tlsdemo")
    listed = ok(shell(lab, prelude + "docker-compose -p tlsdemo ps", cwd=tmp_path))
    assert "idle" in listed
    ok(shell(lab, prelude + "docker-compose -p tlsdemo down", cwd=tmp_path))

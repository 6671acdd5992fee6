"""The lab's Docker TLS: who gets which certificate, where files live, what env and config
print (labs/docker_tls.py, pure), and the certificates labs/lab_certs.py makes from it."""

from __future__ import annotations

import datetime as dt
import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from labs import docker_tls as tls
from labs import lab_certs
from labs.dockerd import DockerDaemon

NOW = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)
HOST2 = ipaddress.IPv4Address("192.168.100.12")


def test_a_server_certificate_names_the_host_its_address_and_localhost():
    spec = tls.server_spec("host2", HOST2, NOW)
    assert spec.usage == "server"
    assert spec.common_name == "host2"
    assert spec.dns_names == ("host2", "localhost")
    assert spec.ip_addresses == (HOST2, ipaddress.IPv4Address("127.0.0.1"))


@pytest.mark.parametrize(
    ("spec", "usage"),
    [
        (tls.ca_spec("lab", NOW), "ca"),
        (tls.client_spec("lab", NOW), "client"),
        (tls.server_spec("host1", HOST2, NOW), "server"),
    ],
)
def test_every_certificate_is_valid_from_a_little_before_now_for_docker_machine_s_1080_days(
    spec, usage
):
    assert spec.usage == usage
    assert spec.not_before == NOW - tls.BACKDATE
    assert spec.not_after - spec.not_before == dt.timedelta(days=1080)
    assert not spec.dns_names or usage == "server"


def test_a_spec_that_ends_before_it_starts_or_has_no_known_usage_is_refused():
    with pytest.raises(ValueError, match="not after"):
        tls.CertSpec("x", "client", NOW, NOW)
    with pytest.raises(ValueError, match="usage"):
        tls.CertSpec("x", "member", NOW, NOW + dt.timedelta(days=1))


def test_the_files_are_docker_machine_s_tree():
    layout = tls.CertLayout(Path("/var/lib/discovery-lab/lab"))
    root = "/var/lib/discovery-lab/lab"
    assert str(layout.ca_cert) == f"{root}/certs/ca.pem"
    assert str(layout.ca_key) == f"{root}/certs/ca-key.pem"
    assert str(layout.client_cert) == f"{root}/certs/cert.pem"
    assert str(layout.client_key) == f"{root}/certs/key.pem"
    assert str(layout.machine_dir("host2")) == f"{root}/machines/host2"
    assert str(layout.server_cert("host2")) == f"{root}/machines/host2/server.pem"
    assert str(layout.server_key("host2")) == f"{root}/machines/host2/server-key.pem"


def test_the_daemon_s_tls_flags_and_url():
    machine = Path("/s/machines/host2")
    assert tls.tls_url("192.168.100.12") == "tcp://192.168.100.12:2376"
    assert tls.daemon_tls_args("192.168.100.12", machine) == [
        "--host=tcp://192.168.100.12:2376",
        "--tlsverify",
        "--tlscacert=/s/machines/host2/ca.pem",
        "--tlscert=/s/machines/host2/server.pem",
        "--tlskey=/s/machines/host2/server-key.pem",
    ]


def test_a_lab_host_s_dockerd_keeps_its_unix_socket_and_adds_the_tls_endpoint(tmp_path: Path):
    args = tls.daemon_tls_args("192.168.100.12", tmp_path / "machine")
    command = DockerDaemon("lab-host2", tmp_path, netns="lab-host2", tls_args=args).command("d")
    assert f"--host=unix://{tmp_path}/docker.sock" in command
    assert command[command.index("--host=tcp://192.168.100.12:2376") :][:5] == args


def test_env_prints_what_docker_machine_env_prints_then_the_lab_s_variables():
    env = {
        **tls.client_env("tcp://192.168.100.12:2376", "/s/machines/host2", "host2"),
        "LAB_HOST": "host2",
    }
    assert tls.render_env(env, "discoveryctl lab env host2") == (
        'export DOCKER_TLS_VERIFY="1"\n'
        'export DOCKER_HOST="tcp://192.168.100.12:2376"\n'
        'export DOCKER_CERT_PATH="/s/machines/host2"\n'
        'export DOCKER_MACHINE_NAME="host2"\n'
        'export LAB_HOST="host2"\n'
        "# Run this command to configure your shell: \n"
        "# eval $(discoveryctl lab env host2)\n"
    )


def test_config_prints_docker_machine_config_s_flags_one_a_line():
    assert tls.render_config("tcp://192.168.100.12:2376", "/s/machines/host2") == (
        "--tlsverify\n"
        '--tlscacert="/s/machines/host2/ca.pem"\n'
        '--tlscert="/s/machines/host2/cert.pem"\n'
        '--tlskey="/s/machines/host2/key.pem"\n'
        "-H=tcp://192.168.100.12:2376\n"
    )


@pytest.mark.parametrize(
    ("value", "quoted"),
    [("plain", '"plain"'), ('a "b"', '"a \\"b\\""'), ("$HOME", '"\\$HOME"'), ("`x`", '"\\`x\\`"')],
)
def test_values_are_double_quoted_so_the_shell_reads_them_back_unchanged(value, quoted):
    assert tls.shell_quote(value) == quoted


def test_a_client_on_the_unix_socket_gets_no_tls_variables():
    env = {"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": "/x", "DOCKER_TLS": "1", "PATH": "/bin"}
    assert tls.without_tls(env) == {"PATH": "/bin"}


# ------------------------------------------------------------ the certificates made


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_lab_up_s_certificates_are_signed_by_the_lab_ca_with_the_right_names_and_purpose(
    tmp_path: Path,
):
    layout = tls.CertLayout(tmp_path)
    machine = lab_certs.ensure_host_certs(layout, "lab", "host2", "192.168.100.12")
    ca = _cert(layout.ca_cert)
    server = _cert(layout.server_cert("host2"))
    client = _cert(machine / "cert.pem")
    for cert in (server, client):
        cert.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["host2", "localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == [
        "192.168.100.12",
        "127.0.0.1",
    ]
    usage = x509.ExtendedKeyUsage
    assert list(server.extensions.get_extension_for_class(usage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH
    ]
    assert list(client.extensions.get_extension_for_class(usage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH
    ]
    # DOCKER_CERT_PATH holds the learner's client files, the very ones of certs/
    for name in ("ca.pem", "cert.pem", "key.pem"):
        assert (machine / name).read_bytes() == (layout.certs_dir / name).read_bytes()


def test_the_files_are_root_only_and_kept_across_lab_ups(tmp_path: Path):
    layout = tls.CertLayout(tmp_path)
    machine = lab_certs.ensure_host_certs(layout, "lab", "host1", "192.168.100.11")
    for directory in (layout.certs_dir, machine.parent, machine):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    for key in (layout.ca_key, layout.client_key, machine / "key.pem", machine / "server-key.pem"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    before = {path: path.read_bytes() for path in tmp_path.rglob("*.pem")}
    lab_certs.ensure_host_certs(layout, "lab", "host1", "192.168.100.11")
    assert {path: path.read_bytes() for path in tmp_path.rglob("*.pem")} == before


def test_regenerating_makes_a_new_server_certificate_and_keeps_the_ca_and_the_client(
    tmp_path: Path,
):
    layout = tls.CertLayout(tmp_path)
    lab_certs.ensure_host_certs(layout, "lab", "host2", "192.168.100.12")
    ca, client = layout.ca_cert.read_bytes(), layout.client_cert.read_bytes()
    old = _cert(layout.server_cert("host2")).serial_number
    lab_certs.ensure_host_certs(layout, "lab", "host2", "192.168.100.12", renew=True)
    assert _cert(layout.server_cert("host2")).serial_number != old
    assert (layout.ca_cert.read_bytes(), layout.client_cert.read_bytes()) == (ca, client)


def test_a_client_certificate_that_would_be_refused_is_named_in_words(tmp_path: Path):
    layout = tls.CertLayout(tmp_path / "lab")
    machine = lab_certs.ensure_host_certs(layout, "lab", "host1", "192.168.100.11")
    assert lab_certs.client_cert_problem(machine) is None
    later = lab_certs.now() + dt.timedelta(days=1081)
    assert "expired on" in (lab_certs.client_cert_problem(machine, at=later) or "")

    other = tls.CertLayout(tmp_path / "other")
    lab_certs.ensure_lab_ca(other, "other")
    (machine / "cert.pem").write_bytes(other.client_cert.read_bytes())
    assert "not signed by the lab's CA" in (lab_certs.client_cert_problem(machine) or "")
    (machine / "cert.pem").unlink()
    assert "cert.pem is missing" in (lab_certs.client_cert_problem(machine) or "")


def test_a_ca_made_again_after_its_files_were_lost_signs_new_certificates_for_everyone(
    tmp_path: Path,
):
    layout = tls.CertLayout(tmp_path)
    machine = lab_certs.ensure_host_certs(layout, "lab", "host1", "192.168.100.11")
    layout.ca_cert.unlink()
    layout.ca_key.unlink()
    lab_certs.ensure_host_certs(layout, "lab", "host1", "192.168.100.11")
    ca = _cert(layout.ca_cert)
    for cert in (layout.server_cert("host1"), layout.client_cert, machine / "cert.pem"):
        _cert(cert).verify_directly_issued_by(ca)

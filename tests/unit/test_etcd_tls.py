"""The lab's etcd security decisions (labs/etcd_tls.py, pure): roles, the commands that
make them, the certificates' names, and the one-line TLS verdicts of the store."""

from __future__ import annotations

import ipaddress
import subprocess
from pathlib import Path

import pytest

from discovery.settings import Settings
from discovery.store import tls_failure
from labs import etcd_tls, front_door, lab_certs
from labs.docker_tls import CertLayout
from labs.etcd_tls import EtcdCertLayout, Permission, auth_commands, lab_roles
from labs.state import LabState

NOW = lab_certs.now()


def test_a_permission_covers_one_key_a_prefix_or_everything_from_a_key():
    assert Permission("read", "/a/b").covers("/a/b") and not Permission("read", "/a/b").covers(
        "/a/bc"
    )
    prefix = Permission("readwrite", "/a/", prefix=True)
    assert prefix.covers("/a/x") and not prefix.covers("/a") and not prefix.covers("/b/")
    everything = Permission("read", "", from_key=True)
    assert everything.covers("/anything") and everything.describe() == "every key"
    with pytest.raises(ValueError):
        Permission("delete", "/a")
    with pytest.raises(ValueError):
        Permission("read", "/a", prefix=True, from_key=True)


def test_grants_are_etcdctl_s_own_commands():
    assert Permission("readwrite", "/a/", prefix=True).etcdctl_args("r") == [
        "role", "grant-permission", "--prefix", "r", "readwrite", "/a/"
    ]  # fmt: skip
    assert Permission("read", "", from_key=True).etcdctl_args("r")[2] == "--from-key"
    assert Permission("read", "/k").etcdctl_args("r") == [
        "role",
        "grant-permission",
        "r",
        "read",
        "/k",
    ]


def test_the_roles_follow_the_prefixes_and_domain_of_the_settings():
    roles = lab_roles(Settings(prefix="/dns", network_prefix="/net", domain="lab.example"))
    network = etcd_tls.role_of(roles, etcd_tls.NETWORK_AGENT)
    assert network.may_write("/net/subnets/10.5.1.0-24") and not network.may_write("/net/config")
    assert network.may_read("/net/config")
    services = etcd_tls.role_of(roles, etcd_tls.SERVICES_AGENT)
    assert services.may_write("/dns/example/lab/service/web/x")
    assert services.may_write("/dns/example/lab/node/host1")
    assert not services.may_write("/dns/example/lab/other")
    dns = etcd_tls.role_of(roles, etcd_tls.DNS_SERVER)
    assert dns.may_read("/dns/example/lab/node/host1") and not dns.may_read("/net/config")
    assert not any(p.writes for p in dns.permissions)
    assert not any(p.writes for p in etcd_tls.role_of(roles, etcd_tls.MAP).permissions)
    with pytest.raises(KeyError):
        etcd_tls.role_of(roles, "nobody")


def test_users_and_roles_are_made_root_first_and_auth_is_enabled_last():
    commands = auth_commands(lab_roles(Settings()))
    assert commands[0] == ["user", "add", "root", "--no-password"]
    assert commands[-1] == ["auth", "enable"]
    for component in etcd_tls.COMPONENTS:
        add = commands.index(["user", "add", component, "--no-password"])
        role = commands.index(["role", "add", component])
        grant = commands.index(["user", "grant-role", component, component])
        assert add < role < grant < len(commands) - 1
    assert sum(command[:2] == ["user", "add"] for command in commands) == len(etcd_tls.COMPONENTS)


def test_certificates_name_their_user_and_members_serve_and_dial_peers():
    member = etcd_tls.member_spec("etcd2", "192.168.100.12", NOW)
    assert member.usage == "peer" and member.common_name == "etcd2"
    assert ipaddress.IPv4Address("192.168.100.12") in member.ip_addresses
    client = etcd_tls.component_spec(etcd_tls.SERVICES_AGENT, NOW)
    assert client.usage == "client" and client.common_name == "services-agent"


def test_the_files_sit_beside_docker_s_under_one_ca(tmp_path):
    layout = EtcdCertLayout(tmp_path)
    assert layout.ca_file == CertLayout(tmp_path).ca_cert
    learner = layout.client(etcd_tls.LEARNER)
    assert learner.cert_file == tmp_path / "certs" / "etcd" / "learner.pem"
    assert learner.key_file == tmp_path / "certs" / "etcd" / "learner-key.pem"
    assert learner.etcdctl_env() == {
        "ETCDCTL_CACERT": str(layout.ca_file),
        "ETCDCTL_CERT": str(learner.cert_file),
        "ETCDCTL_KEY": str(learner.key_file),
    }
    settings = learner.settings(Settings())
    assert settings.tls_cert_file == str(learner.cert_file)
    assert learner.flags()[::2] == ["--cacert", "--cert", "--key"]


def test_made_certificates_are_signed_by_the_lab_ca_and_private(tmp_path):
    layout = CertLayout(tmp_path)
    etcd = lab_certs.ensure_etcd_certs(layout, "t", {"etcd1": "10.0.0.1"}, etcd_tls.COMPONENTS)
    for name in ("etcd1", *etcd_tls.COMPONENTS):
        facts = lab_certs.read_cert(etcd.cert_file(name), layout.ca_cert)
        assert facts.signed_by_ca and f"CN={name}" in facts.subject
        assert etcd.key_file(name).stat().st_mode & 0o777 == 0o600
    assert etcd.directory.stat().st_mode & 0o777 == 0o700
    serial = lab_certs.read_cert(etcd.cert_file("learner"), layout.ca_cert).serial
    lab_certs.ensure_etcd_certs(layout, "t", {"etcd1": "10.0.0.1"}, etcd_tls.COMPONENTS)
    assert lab_certs.read_cert(etcd.cert_file("learner"), layout.ca_cert).serial == serial  # kept


def test_member_flags_demand_certificates_from_clients_and_peers():
    args = etcd_tls.member_tls_args(Path("/c/ca.pem"), Path("/c/m.pem"), Path("/c/m-key.pem"))
    assert "--client-cert-auth" in args and "--peer-client-cert-auth" in args
    assert args[args.index("--peer-trusted-ca-file") + 1] == "/c/ca.pem"


@pytest.mark.parametrize(
    ("grpc_text", "verdict"),
    [
        ("failed to connect to all addresses; last error: UNKNOWN: ipv4:1.2.3.4:2379: Tls "
         "handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:10000412:SSL "
         "routines:OPENSSL_internal:SSLV3_ALERT_BAD_CERTIFICATE", "refused this client's"),
        ("Ssl handshake failed: SSL_ERROR_SSL: error:1000007d:SSL routines:"
         "OPENSSL_internal:CERTIFICATE_VERIFY_FAILED", "does not trust etcd's certificate"),
        ("Handshake failed with something new", "check --cacert, --cert and --key"),
    ],
)  # fmt: skip
def test_tls_failures_say_which_side_refused_whom(grpc_text, verdict):
    assert verdict in (tls_failure(grpc_text) or "")


def test_other_failures_are_not_tls_verdicts():
    assert tls_failure("Socket closed") is None


def _state(tmp_path: Path, scheme: str) -> LabState:
    return LabState("lab", 3, 1, "192.168.100.0/24", "10.5.0.0/16",
                    [f"{scheme}://192.168.100.1:2379"])  # fmt: skip


def test_the_front_door_gives_new_shells_the_learner_s_certificate(tmp_path, monkeypatch):
    monkeypatch.setenv("DISCOVERY_LAB_STATE", str(tmp_path))
    state = _state(tmp_path, "https")
    learner = EtcdCertLayout(tmp_path / "lab").client(etcd_tls.LEARNER)
    config = front_door.config_text(state)
    assert f'tls_cert_file = "{learner.cert_file}"' in config
    profile = front_door.profile_text(state)
    # a variable the shell has already is kept: etcdctl would refuse both it and a flag
    assert f'export ETCDCTL_CERT="${{ETCDCTL_CERT:-{learner.cert_file}}}"' in profile
    assert 'export ETCDCTL_ENDPOINTS="${ETCDCTL_ENDPOINTS:-https://192.168.100.1:2379}"' in profile
    plain = _state(tmp_path, "http")
    assert "tls_" not in front_door.config_text(plain)
    assert "ETCDCTL_CERT" not in front_door.profile_text(plain)


def _wrapper_run(tmp_path: Path, env: dict[str, str], *args: str) -> dict[str, str]:
    """The etcdctl wrapper run by a real sh, with a stand-in etcdctl that prints its
    environment: what etcdctl would see of ETCDCTL_* variables."""
    stand_in = tmp_path / "real-etcdctl"
    stand_in.write_text("#!/bin/sh\nenv\n")
    stand_in.chmod(0o755)
    wrapper = tmp_path / "etcdctl"
    wrapper.write_text(front_door.etcdctl_wrapper_text(_state(tmp_path, "https"), stand_in))
    result = subprocess.run(["sh", str(wrapper), *args], env={"PATH": "/usr/bin:/bin", **env},
                            capture_output=True, text=True, check=True, timeout=10)  # fmt: skip
    pairs = (line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    return {key: value for key, value in pairs if key.startswith("ETCDCTL_")}


def test_the_etcdctl_wrapper_gives_a_bare_shell_the_lab_and_leaves_any_own_setting(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("DISCOVERY_LAB_STATE", str(tmp_path))
    learner = EtcdCertLayout(tmp_path / "lab").client(etcd_tls.LEARNER)
    bare = _wrapper_run(tmp_path, {}, "get", "--prefix", "--keys-only", "/coreos.com/")
    assert bare == {"ETCDCTL_ENDPOINTS": "https://192.168.100.1:2379", **learner.etcdctl_env()}
    # a shell that set (or emptied on purpose) any of them gets nothing added
    assert _wrapper_run(tmp_path, {"ETCDCTL_CERT": ""}, "get", "/x") == {"ETCDCTL_CERT": ""}
    assert _wrapper_run(tmp_path, {"ETCDCTL_ENDPOINTS": "http://a:2379"}, "get", "/x") == {
        "ETCDCTL_ENDPOINTS": "http://a:2379"
    }
    # nor does a command line that names its own etcd or certificate
    assert _wrapper_run(tmp_path, {}, "--endpoints=http://a:2379", "get", "/x") == {}
    assert _wrapper_run(tmp_path, {}, "--cert", "/c.pem", "--key", "/k.pem", "get", "/x") == {}

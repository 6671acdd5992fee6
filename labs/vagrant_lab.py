"""The Vagrant lab as `discoveryctl lab` sees it from inside one of its VMs.

The local lab keeps its state in a file on the machine that runs it. The Vagrant
lab's hosts are VMs, and provisioning (labs/provision/host.sh) writes on each one
``/etc/discovery/lab.toml``: the lab's hosts with their private-network addresses,
which one this VM is, and the etcd endpoints. With it the verbs that look at or
reach hosts (ls, ip, url, env, inspect, exec, shell, check) work on a VM as root.
Another host is reached over SSH with the lab's own key, as docker-machine reaches
its hosts (``/etc/ssh/ssh_config.d/discovery-lab.conf`` names the key). Every VM's
dockerd also listens on ``tcp://IP:2376`` with TLS, as Docker Machine's hosts did:
the Vagrantfile makes the lab's CA and certificates once, on the machine that runs
vagrant (``labs/provision/lab_certs.rb``), and provisioning gives each VM its
server certificate and the learner's client files (``DOCKER_CERT_PATH``,
``/etc/discovery/docker-certs``); ``lab env HOST`` then prints what
``docker-machine env`` prints. The lab's own tools keep the unix socket here and
``ssh://root@IP`` (the docker CLI's SSH transport) for the others.
etcd is TLS only there too, with the same CA: ``etcd_cert_dir``
(``/etc/discovery/etcd-certs``, root only) holds ``ca.pem`` and each component's
``NAME.pem`` and ``NAME-key.pem``, and ``lab env`` exports the learner's
(``ETCDCTL_CACERT``, ``ETCDCTL_CERT``, ``ETCDCTL_KEY``).

The file's format lives here, both ways: ``render_lab_file`` for provisioning and
``parse_lab_file`` for the CLI.
"""

from __future__ import annotations

import ipaddress
import os
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path

from discovery.errors import DiscoveryError
from discovery.settings import Settings
from labs import docker_tls as tls
from labs.etcd_tls import LEARNER, ClientFiles

LAB_FILE = Path("/etc/discovery/lab.toml")
LAB_FILE_ENV = "DISCOVERY_LAB_FILE"  # another path, for tests
LOCAL_DOCKER_URL = "unix:///var/run/docker.sock"
SSH_DIR = "/etc/discovery/ssh"  # the lab's key and known hosts, root only
SSH_KEY = f"{SSH_DIR}/id_ed25519"
SSH_KNOWN_HOSTS = f"{SSH_DIR}/known_hosts"
SSH_CLIENT_CONFIG = "ssh/ssh_config.d/discovery-lab.conf"  # under /etc
# The learner's client files on a VM (ca.pem, cert.pem, key.pem), root only: DOCKER_CERT_PATH.
DOCKER_CERT_PATH = "/etc/discovery/docker-certs"
# The VM's dockerd's own (ca.pem, server.pem, server-key.pem), root only.
DOCKER_TLS_DIR = "/etc/docker/discovery-lab-tls"
# etcd's TLS on a VM: ca.pem, the members' and every component's NAME.pem and NAME-key.pem
ETCD_CERT_DIR = "/etc/discovery/etcd-certs"

# What the local lab's host verbs become on VMs, said instead of doing them.
VAGRANT_VERBS = {
    "up": "vagrant up (on the machine that runs vagrant)",
    "down": "vagrant destroy -f (on the machine that runs vagrant)",
    "stop": "vagrant halt {host}",
    "start": "vagrant up {host}",
    "restart": "vagrant reload {host}",
    "create": "LAB_HOSTS=<number of hosts> vagrant up",
    "rm": "vagrant destroy -f {host}",
    "status": "vagrant status, and on a VM: systemctl status 'discovery-*' docker",
    "demo": "the demo's steps by hand (README, 'The Vagrant lab')",
    "images": "docker images 'discovery-lab/*' on a VM",
    "regenerate-certs": "rm .vagrant/discovery-lab/tls/machines/{host}/server*.pem, "
    "then vagrant provision {host} (on the machine that runs vagrant: it makes a new one "
    "and restarts the VM's docker)",
}


class VagrantLabError(DiscoveryError):
    pass


def etcd_client_files(cert_dir: str, component: str) -> ClientFiles:
    """A component's etcd client files on a VM: all in one directory, beside the CA."""
    directory = Path(cert_dir)
    return ClientFiles(
        directory / "ca.pem", directory / f"{component}.pem", directory / f"{component}-key.pem"
    )


@dataclass(frozen=True)
class VagrantLab:
    this_host: str
    hosts: dict[str, str]  # name -> private-network address, in host order
    etcd_endpoints: list[str]
    local_docker_url: str = LOCAL_DOCKER_URL
    source: str = str(LAB_FILE)
    docker_cert_path: str = ""  # the client files, when the VMs' daemons have TLS
    etcd_cert_dir: str = ""  # ca.pem and each component's NAME.pem, NAME-key.pem (etcd TLS)

    def etcd_client(self, component: str = LEARNER) -> ClientFiles | None:
        """The certificate a client of the lab's etcd shows (the learner's by default)."""
        if not self.etcd_cert_dir:
            return None  # provisioned before etcd had TLS
        return etcd_client_files(self.etcd_cert_dir, component)

    def etcd_settings(self, component: str = LEARNER) -> Settings:
        settings = Settings(etcd_endpoints=tuple(self.etcd_endpoints))
        files = self.etcd_client(component)
        return files.settings(settings) if files else settings

    def address(self, host: str) -> str:
        if host not in self.hosts:
            known = ", ".join(self.hosts)
            raise VagrantLabError(f"no host {host!r} in the Vagrant lab (hosts: {known})")
        return self.hosts[host]

    def docker_url(self, host: str) -> str:
        address = self.address(host)
        return self.local_docker_url if host == self.this_host else f"ssh://root@{address}"

    def tls_url(self, host: str) -> str:
        """What ``lab url`` says, as docker-machine url: the daemon's TLS endpoint."""
        if not self.docker_cert_path:
            return self.docker_url(host)  # provisioned before the daemons had TLS
        return tls.tls_url(self.address(host))

    def host_env(self, host: str, state_root: str) -> dict[str, str]:
        """What ``lab env HOST`` exports, the local lab's names with the VMs' values."""
        endpoints = ",".join(self.etcd_endpoints)
        docker = (
            tls.client_env(self.tls_url(host), self.docker_cert_path, host)
            if self.docker_cert_path
            else {"DOCKER_HOST": self.docker_url(host)}
        )
        learner = self.etcd_client()
        return {
            **docker,
            "DISCOVERY_ETCD_ENDPOINTS": endpoints,
            "ETCDCTL_ENDPOINTS": endpoints,
            **(learner.etcdctl_env() if learner else {}),
            "LAB_HOST": host,
            "DISCOVERY_LAB_NAME": "lab",
            "DISCOVERY_LAB_STATE": state_root,
        }

    def command_on(self, host: str, argv: list[str], interactive: bool) -> list[str]:
        """argv run on HOST: here as it is, elsewhere through ssh as root."""
        address = self.address(host)
        if host == self.this_host:
            return argv
        # ssh joins its arguments into one line for the remote shell: quote them so
        # `lab exec host2 -- docker inspect --format '{{...}}' x` arrives as typed.
        remote = [shlex.join(argv)] if argv else []
        return ["ssh", "-t" if interactive else "-T", f"root@{address}", *remote]


def lab_file() -> Path:
    return Path(os.environ.get(LAB_FILE_ENV) or LAB_FILE)


def load_vagrant_lab() -> VagrantLab | None:
    """This VM's view of the Vagrant lab, or None when this machine is not one of its VMs."""
    path = lab_file()
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise VagrantLabError(f"cannot read {path}: {error.strerror}") from None
    return parse_lab_file(text, str(path))


def parse_lab_file(text: str, source: str) -> VagrantLab:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise VagrantLabError(f"{source} is not valid TOML: {error}") from None
    hosts = data.get("hosts")
    if not isinstance(hosts, dict) or not hosts:
        raise VagrantLabError(f"{source}: [hosts] must map host names to addresses")
    for name, address in hosts.items():
        try:
            ipaddress.IPv4Address(address)
        except ValueError:
            raise VagrantLabError(
                f"{source}: host {name!r} has {address!r}, not an IPv4 address"
            ) from None
    this_host = data.get("this_host")
    if not isinstance(this_host, str) or this_host not in hosts:
        raise VagrantLabError(f"{source}: this_host {this_host!r} is not one of [hosts]")
    endpoints = data.get("etcd_endpoints")
    if not isinstance(endpoints, list) or not all(isinstance(url, str) for url in endpoints):
        raise VagrantLabError(f"{source}: etcd_endpoints must be a list of URLs")
    docker_url = data.get("docker_url", LOCAL_DOCKER_URL)
    if not isinstance(docker_url, str) or not docker_url.startswith("unix://"):
        raise VagrantLabError(f"{source}: docker_url must be a unix:// URL, got {docker_url!r}")
    cert_path = data.get("docker_cert_path", "")
    if not isinstance(cert_path, str) or (cert_path and not cert_path.startswith("/")):
        raise VagrantLabError(f"{source}: docker_cert_path must be a directory, got {cert_path!r}")
    etcd_cert_dir = data.get("etcd_cert_dir", "")
    if not isinstance(etcd_cert_dir, str) or (etcd_cert_dir and not etcd_cert_dir.startswith("/")):
        raise VagrantLabError(f"{source}: etcd_cert_dir must be a directory, got {etcd_cert_dir!r}")
    return VagrantLab(
        etcd_cert_dir=etcd_cert_dir,
        this_host=this_host,
        hosts=dict(hosts),
        etcd_endpoints=list(endpoints),
        local_docker_url=docker_url,
        source=source,
        docker_cert_path=cert_path,
    )


def render_lab_file(
    this_host: str,
    hosts: dict[str, str],
    etcd_endpoints: list[str],
    docker_url: str = LOCAL_DOCKER_URL,
    docker_cert_path: str = "",
    etcd_cert_dir: str = "",
) -> str:
    lines = [
        "# The Vagrant lab, for `discoveryctl lab` on this VM (labs/provision/host.sh).",
        f'this_host = "{this_host}"',
        "etcd_endpoints = [" + ", ".join(f'"{url}"' for url in etcd_endpoints) + "]",
        f'docker_url = "{docker_url}"  # this VM\'s daemon; the others: ssh://root@ADDRESS',
    ]
    if docker_cert_path:
        lines.append(
            f'docker_cert_path = "{docker_cert_path}"  # every daemon on tcp://ADDRESS:2376, TLS'
        )
    if etcd_cert_dir:
        lines.append(f'etcd_cert_dir = "{etcd_cert_dir}"  # etcd over TLS: NAME.pem per component')
    lines += [
        "",
        "[hosts]",
        *(f'{name} = "{address}"' for name, address in hosts.items()),
    ]
    return "\n".join(lines) + "\n"


def render_ssh_client_config(
    addresses: list[str], key: str = SSH_KEY, known_hosts: str = SSH_KNOWN_HOSTS
) -> str:
    """ssh's settings for the lab's hosts; ssh and docker's ssh:// transport read them."""
    return (
        "# The lab's hosts: root, with the lab's key (labs/provision/host.sh).\n"
        f"Host {' '.join(addresses)}\n"
        "    User root\n"
        f"    IdentityFile {key}\n"
        "    IdentitiesOnly yes\n"
        f"    UserKnownHostsFile {known_hosts}\n"
        # The VMs' host keys are made at their first boot; the lab trusts each on first use.
        "    StrictHostKeyChecking accept-new\n"
        "    BatchMode yes\n"
    )


def parse_lab_hosts(text: str) -> dict[str, str]:
    """'host1=192.168.56.11,host2=192.168.56.12' -> {host1: ..., host2: ...}, in order."""
    hosts = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, address = item.partition("=")
        try:
            ipaddress.IPv4Address(address)
        except ValueError:
            sep = ""
        if not sep or not name:
            raise VagrantLabError(f"expected NAME=IPv4 in --lab-hosts, got {item!r}")
        hosts[name] = address
    if not hosts:
        raise VagrantLabError("--lab-hosts names no host")
    return hosts

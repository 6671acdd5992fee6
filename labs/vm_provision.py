"""Provisioning of one lab host as a machine of its own (a Vagrant VM): pure renderers.

The local lab starts each host's processes itself (``labs.runner``);
a VM runs the same programs as systemd units, in the same order::

    etcd (on the etcd hosts; TLS only, a certificate per member and per component)
      -> discovery-agent-network (subnet lease, subnet.env, VXLAN)
      -> docker (daemon.json from the lease: bip, mtu, --dns at the host's DNS server,
                 the service.<domain> search domain; and tcp://IP:2376 with TLS, as
                 Docker Machine's hosts, from the certificates the Vagrantfile made)
      -> discovery-agent-services (Docker events -> etcd)
      -> discovery-dns (on the docker bridge address, port 53)

Everything here turns a host's name, private address and the etcd member list
into text (unit files, daemon.json, config.toml); the I/O is the small CLI at
the bottom, which the shell scripts in ``labs/provision/`` call::

    python -m labs.vm_provision iface --address 192.168.56.11
    python -m labs.vm_provision render --host-name host1 --ip 192.168.56.11 ...
    python -m labs.vm_provision docker-config --subnet-file /run/flannel/subnet.env ...
    python -m labs.vm_provision set-up-etcd --endpoints https://IP:2379,...  (as etcd's root)

The underlay interface is found by address, never by name: every VirtualBox
VM's first interface is the NAT one, with the same 10.0.2.15 on every VM (the
classic flannel pitfall), so "the default route's interface" is the wrong one.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from discovery import flannel
from discovery.errors import SchemaError
from discovery.flannel import DockerOptions, docker_options, parse_subnet_env
from discovery.settings import Settings
from labs import docker_tls, etcd_tls, vagrant_lab
from labs.etcd_server import EtcdServerError, etcdctl
from labs.etcd_tls import ClientFiles
from labs.plan import DNS_PORT, ETCD_CLIENT_PORT, ETCD_PEER_PORT

DEFAULT_VENV = "/opt/discovery-venv"
DEFAULT_OVERLAY = "10.5.0.0/16"
SUBNET_FILE = "/run/flannel/subnet.env"
AGENT_DOCKER_OPTS_FILE = "/run/flannel/docker"
DOCKER_CONFIG_FILE = "/run/discovery-lab/daemon.json"
DISCOVERY_CONFIG_FILE = "/etc/discovery/config.toml"
# The settings the local lab passes as flags (endpoints, domain, lease TTL) live in
# config.toml on a VM, so that discoveryctl there needs no flags either.
SETTINGS_ARGS = f"--config {DISCOVERY_CONFIG_FILE}"
HOST_ENV_FILE = "/run/discovery-lab/host.env"
ETCD_DATA_DIR = "/var/lib/discovery-lab/etcd"
SUBNET_WAIT_S = 300
LEASE_TTL_S = 10  # as in the local lab

UNIT_ETCD = "discovery-etcd.service"
UNIT_NETWORK = "discovery-agent-network.service"
UNIT_SERVICES = "discovery-agent-services.service"
UNIT_DNS = "discovery-dns.service"
UNIT_IMAGES = "discovery-lab-images.service"
DOCKER_DROP_IN = "docker.service.d/discovery-lab.conf"
PROFILE_FILE = "profile.d/discovery-lab.sh"  # under /etc, as the local lab's front door


class ProvisionError(ValueError):
    pass


@dataclass(frozen=True)
class EtcdPeer:
    name: str  # etcd1
    ip: ipaddress.IPv4Address

    # TLS only, clients and peers alike, as the local lab's etcd (labs.etcd_tls).
    @property
    def client_url(self) -> str:
        return f"https://{self.ip}:{ETCD_CLIENT_PORT}"

    @property
    def peer_url(self) -> str:
        return f"https://{self.ip}:{ETCD_PEER_PORT}"


@dataclass(frozen=True)
class HostSpec:
    """What a VM knows about itself and the lab when it is provisioned."""

    name: str  # host1
    ip: ipaddress.IPv4Address  # the private-network address
    iface: str  # the interface holding ip (eth1 / enp0s8), found by address
    etcd: tuple[EtcdPeer, ...]
    domain: str = "lab"
    overlay: str = DEFAULT_OVERLAY
    venv: str = DEFAULT_VENV
    # Every host of the lab (name, address), for `discoveryctl lab` on this VM.
    lab_hosts: tuple[tuple[str, str], ...] = ()
    # dockerd also on tcp://IP:2376 with TLS (host.sh --docker-certs installed the files)
    docker_tls: bool = False
    # etcd's TLS files (host.sh --etcd-certs installed them): ca.pem, NAME.pem, NAME-key.pem
    etcd_cert_dir: str = vagrant_lab.ETCD_CERT_DIR

    def etcd_client(self, component: str) -> ClientFiles:
        """What ``component`` shows etcd: its certificate names its etcd user."""
        return vagrant_lab.etcd_client_files(self.etcd_cert_dir, component)

    @property
    def etcd_member(self) -> EtcdPeer | None:
        """This host's own etcd member, if it runs one."""
        return next((peer for peer in self.etcd if peer.ip == self.ip), None)

    @property
    def etcd_endpoints(self) -> list[str]:
        return [peer.client_url for peer in self.etcd]

    def tool(self, name: str) -> str:
        return f"{self.venv}/bin/{name}"


def parse_etcd_members(text: str) -> tuple[EtcdPeer, ...]:
    """'etcd1=192.168.56.11,etcd2=192.168.56.12' -> peers, in order."""
    peers = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, address = item.partition("=")
        if not sep or not name or not name.isalnum():
            raise ProvisionError(f"etcd member {item!r} is not NAME=IP")
        try:
            peers.append(EtcdPeer(name, ipaddress.IPv4Address(address)))
        except ValueError as error:
            raise ProvisionError(f"etcd member {item!r}: {error}") from error
    if not peers:
        raise ProvisionError("no etcd members given")
    if len({p.name for p in peers}) != len(peers) or len({p.ip for p in peers}) != len(peers):
        raise ProvisionError(f"etcd members repeat a name or an address: {text!r}")
    return tuple(peers)


# ------------------------------------------------------------ interface by address


def interface_holding(address: str, ip_addr_json: str) -> str:
    """The interface that holds ``address``, from ``ip -j -4 addr show`` output."""
    wanted = ipaddress.IPv4Address(address)
    for link in json.loads(ip_addr_json or "[]"):
        for info in link.get("addr_info", []):
            if info.get("family") == "inet" and ipaddress.IPv4Address(info["local"]) == wanted:
                return str(link["ifname"])
    raise ProvisionError(f"no interface holds {address}: is the private network up?")


# ------------------------------------------------------------ docker options from the lease


def docker_daemon_config(subnet_env: Mapping[str, str], domain: str = "lab") -> dict[str, Any]:
    """daemon.json for this host's dockerd, from its subnet.env: what the local lab
    passes as flags (``--bip``, ``--mtu``, ``--default-address-pool``, ``--dns`` at
    the host's DNS server on the bridge address, ``--dns-search service.<domain>``,
    ``--ip-masq=false`` when the agent masquerades)."""
    options = _docker_options(subnet_env)
    return {
        **options.daemon_json(),
        "dns": [str(options.bip.ip)],
        "dns-search": [f"service.{domain}"],
    }


def _docker_options(subnet_env: Mapping[str, str]) -> DockerOptions:
    try:
        return docker_options(subnet_env)
    except SchemaError as error:
        raise ProvisionError(str(error)) from error


def render_host_env(subnet_env: Mapping[str, str]) -> str:
    """Environment for the DNS unit: where it listens (the bridge address, port 53)."""
    return f"LAB_DNS_LISTEN={_docker_options(subnet_env).bip.ip}:{DNS_PORT}\n"


def render_docker_config(subnet_env: Mapping[str, str], domain: str = "lab") -> str:
    return json.dumps(docker_daemon_config(subnet_env, domain), indent=2, sort_keys=True) + "\n"


# ------------------------------------------------------------ unit files


def render_config_toml(host: HostSpec) -> str:
    endpoints = ", ".join(f'"{url}"' for url in host.etcd_endpoints)
    lines = [
        "# discovery-lab settings for this VM: read by discovery-agent, discovery-dns and",
        "# discoveryctl (flags and DISCOVERY_* variables override them; each unit gives",
        "# its own certificate, --cacert --cert --key).",
        f"etcd_endpoints = [{endpoints}]",
        f'domain = "{host.domain}"',
        f"lease_ttl_s = {LEASE_TTL_S}",
        *etcd_tls.learner_config_lines(host.etcd_client(etcd_tls.LEARNER)),
    ]
    return "\n".join(lines) + "\n"


def render_profile(host: HostSpec) -> str:
    """/etc/profile.d/discovery-lab.sh: etcdctl on this VM reaches the lab's etcd as the
    learner, from any login shell, as the local lab's front door does."""
    lines = ["# The Vagrant lab's etcd for etcdctl (labs/provision/host.sh): TLS, the learner's."]
    lines += etcd_tls.etcdctl_exports(host.etcd_endpoints, host.etcd_client(etcd_tls.LEARNER))
    return "\n".join(lines) + "\n"


def _client_flags(host: HostSpec, component: str) -> str:
    """A unit's etcd certificate flags, continuing its ExecStart: the component's own
    certificate, whose Common Name is its etcd user (and so its role)."""
    return "".join(f" \\\n  {line}" for line in _flag_lines(host.etcd_client(component).flags()))


def render_etcd_unit(host: HostSpec) -> str | None:
    member = host.etcd_member
    if member is None:
        return None
    cluster = ",".join(f"{peer.name}={peer.peer_url}" for peer in host.etcd)
    return f"""\
[Unit]
Description=etcd member {member.name} of the discovery lab
Documentation=https://etcd.io/docs/v3.5/op-guide/clustering/
After=network-online.target
Wants=network-online.target

[Service]
# Type=simple, not notify: a member of a 3-member cluster is not ready until a
# second member is up, and Vagrant provisions the VMs one after the other.
Type=simple
ExecStart={host.tool("etcd")} \\
  --name {member.name} \\
  --data-dir {ETCD_DATA_DIR} \\
  --listen-client-urls {member.client_url},https://127.0.0.1:{ETCD_CLIENT_PORT} \\
  --advertise-client-urls {member.client_url} \\
  --listen-peer-urls {member.peer_url} \\
  --initial-advertise-peer-urls {member.peer_url} \\
  --initial-cluster {cluster} \\
  --initial-cluster-token discovery-lab \\
  --initial-cluster-state new \\
  --log-level warn{_etcd_tls_flags(host, member)}
Restart=always
RestartSec=2

[Install]
WantedBy=multi-user.target
"""


def _etcd_tls_flags(host: HostSpec, member: EtcdPeer) -> str:
    """TLS on both ports, certificates demanded (the member's serves and is a client)."""
    own = host.etcd_client(member.name)
    flags = etcd_tls.member_tls_args(own.ca_file, own.cert_file, own.key_file)
    return "".join(f" \\\n  {line}" for line in _flag_lines(flags))


def _flag_lines(flags: list[str]) -> list[str]:
    """``--flag value`` pairs (and lone switches) one to a line, for a readable unit."""
    lines: list[str] = []
    for flag in flags:
        if flag.startswith("--") or not lines:
            lines.append(flag)
        else:
            lines[-1] += f" {flag}"
    return lines


def _after_etcd(host: HostSpec) -> str:
    return (
        f"After=network-online.target {UNIT_ETCD}\n"
        if host.etcd_member
        else ("After=network-online.target\n")
    )


def render_network_unit(host: HostSpec) -> str:
    wants = f"Wants=network-online.target{' ' + UNIT_ETCD if host.etcd_member else ''}"
    return f"""\
[Unit]
Description=discovery-agent network half: subnet lease, subnet.env, VXLAN (flannel-style)
{_after_etcd(host)}{wants}
Before=docker.service

[Service]
Type=simple
# --public-ip and --iface name the private network: the first interface of a
# VirtualBox VM is NAT with 10.0.2.15 on every VM, useless as an underlay.
ExecStart={host.tool("discovery-agent")} network \\
  --public-ip {host.ip} --iface {host.iface} \\
  --subnet-file {SUBNET_FILE} --docker-opts-file {AGENT_DOCKER_OPTS_FILE} \\
  --ip-masq {SETTINGS_ARGS}{_client_flags(host, etcd_tls.NETWORK_AGENT)}
# etcd may not have quorum yet (its other members boot later): keep trying.
Restart=always
RestartSec=3

[Install]
WantedBy=multi-user.target
"""


def _docker_tls_flags(host: HostSpec) -> str:
    """dockerd's TLS endpoint, as the local lab's (labs.docker_tls), with the VM's files."""
    if not host.docker_tls:
        return ""
    flags = docker_tls.daemon_tls_args(str(host.ip), Path(vagrant_lab.DOCKER_TLS_DIR))
    return "".join(f" \\\n  {flag}" for flag in flags)


def render_docker_drop_in(host: HostSpec) -> str:
    return f"""\
# docker.service, started from this host's subnet lease (as flannel's mk-docker-opts).
[Unit]
After={UNIT_NETWORK}
# Wants=, not Requires=: a restart of the agent must not restart dockerd and
# every container; the agent takes the same subnet again when it comes back.
Wants={UNIT_NETWORK}

[Service]
# Wait for the lease, then write daemon.json from it (bip, mtu, dns, dns-search).
ExecStartPre={host.tool("python")} -m labs.vm_provision docker-config \\
  --subnet-file {SUBNET_FILE} --out {DOCKER_CONFIG_FILE} --host-env {HOST_ENV_FILE} \\
  --domain {host.domain} --wait {SUBNET_WAIT_S}
ExecStart=
ExecStart=/usr/sbin/dockerd -H fd:// --containerd=/run/containerd/containerd.sock \\
  --config-file {DOCKER_CONFIG_FILE}{_docker_tls_flags(host)}
TimeoutStartSec={SUBNET_WAIT_S + 60}
"""


def render_services_unit(host: HostSpec) -> str:
    return f"""\
[Unit]
Description=discovery-agent services half: Docker events -> service records in etcd
After=docker.service {UNIT_NETWORK}
Requires=docker.service

[Service]
Type=simple
# LAB_DNS_LISTEN: this host's DNS server, which the agent checks (see the DNS unit).
EnvironmentFile={HOST_ENV_FILE}
ExecStart={host.tool("discovery-agent")} services \\
  --docker-host unix:///var/run/docker.sock --host-name {host.name} \\
  --node-ip {host.ip} --check-dns ${{LAB_DNS_LISTEN}} --subnet-file {SUBNET_FILE} \\
  {SETTINGS_ARGS}{_client_flags(host, etcd_tls.SERVICES_AGENT)}
Restart=always
RestartSec=3

[Install]
WantedBy=multi-user.target
"""


def render_dns_unit(host: HostSpec) -> str:
    flags = _client_flags(host, etcd_tls.DNS_SERVER)
    return f"""\
[Unit]
Description=discovery-dns: the lab domain from etcd, on the docker bridge address
After=docker.service {UNIT_SERVICES}
Requires=docker.service

[Service]
Type=simple
# LAB_DNS_LISTEN is the bridge address (docker0's, from the lease), where the
# containers send DNS; docker.service's ExecStartPre wrote it from subnet.env.
EnvironmentFile={HOST_ENV_FILE}
ExecStart={host.tool("discovery-dns")} --listen ${{LAB_DNS_LISTEN}} {SETTINGS_ARGS}{flags}
Restart=always
RestartSec=3

[Install]
WantedBy=multi-user.target
"""


def render_images_unit(host: HostSpec) -> str:
    return f"""\
[Unit]
Description=build the discovery lab images into this host's Docker daemon
After=docker.service
Requires=docker.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart={host.tool("python")} -m labs.image_build --host unix:///var/run/docker.sock

[Install]
WantedBy=multi-user.target
"""


def render_all(host: HostSpec) -> dict[str, str]:
    """Relative path under /etc (systemd/system/... or discovery/...) -> file text."""
    files = {
        f"systemd/system/{UNIT_NETWORK}": render_network_unit(host),
        f"systemd/system/{DOCKER_DROP_IN}": render_docker_drop_in(host),
        f"systemd/system/{UNIT_SERVICES}": render_services_unit(host),
        f"systemd/system/{UNIT_DNS}": render_dns_unit(host),
        f"systemd/system/{UNIT_IMAGES}": render_images_unit(host),
        "discovery/config.toml": render_config_toml(host),
        PROFILE_FILE: render_profile(host),
    }
    lab_hosts = dict(host.lab_hosts) or {host.name: str(host.ip)}
    files["discovery/lab.toml"] = vagrant_lab.render_lab_file(
        host.name,
        lab_hosts,
        host.etcd_endpoints,
        docker_cert_path=vagrant_lab.DOCKER_CERT_PATH if host.docker_tls else "",
        etcd_cert_dir=host.etcd_cert_dir,
    )
    others = [address for name, address in lab_hosts.items() if name != host.name]
    if others:
        files[vagrant_lab.SSH_CLIENT_CONFIG] = vagrant_lab.render_ssh_client_config(others)
    etcd = render_etcd_unit(host)
    if etcd is not None:
        files[f"systemd/system/{UNIT_ETCD}"] = etcd
    return files


def overlay_config(overlay: str = DEFAULT_OVERLAY) -> str:
    """flannel's network config, as the local lab writes it."""
    network = ipaddress.IPv4Network(overlay)
    return json.dumps(
        {
            "Network": str(network),
            "SubnetLen": 24,
            "Backend": {"Type": "vxlan", "VNI": 1, "Port": 8472},
        }
    )


# ------------------------------------------------------------ CLI (the I/O)


def set_up_etcd(
    endpoints: list[str], root: ClientFiles, settings: Settings, overlay: str, wait_s: float
) -> None:
    """Once the cluster answers, as etcd's root (by certificate): every component's user
    and role, authentication on, then flannel's network config, as ``lab up`` does.

    Safe to run again (``vagrant provision``): a user or role that exists is kept, a
    grant or ``auth enable`` that holds already changes nothing, and a network config
    that is there stays."""
    deadline, waited = time.monotonic() + wait_s, False
    while True:
        try:
            status = etcdctl(endpoints, "--dial-timeout", "2s", "auth", "status", tls=root)
            break
        except EtcdServerError as error:
            if time.monotonic() >= deadline:
                raise ProvisionError(f"etcd did not answer in {wait_s:.0f} s: {error}") from None
            if not waited:
                print(f"provision: etcd does not answer yet, waiting ({error})", flush=True)
                waited = True
            time.sleep(1)  # no quorum yet: the other members are still booting
    print(f"provision: etcd answers ({' '.join(status.split())})")
    for command in etcd_tls.auth_commands(etcd_tls.lab_roles(settings)):
        try:
            etcdctl(endpoints, *command, tls=root)
            print(f"provision: etcdctl {' '.join(command)}")
        except EtcdServerError as error:
            if "already exists" not in str(error):
                raise ProvisionError(str(error)) from None
            print(f"provision: etcdctl {' '.join(command)}: already there")
    key = flannel.config_key(settings.network_prefix)
    current = etcdctl(endpoints, "get", "--print-value-only", key, tls=root).strip()
    if current:
        print(f"provision: overlay config already there: {current}")
    else:
        etcdctl(endpoints, "put", key, overlay_config(overlay), tls=root)
        print(f"provision: overlay config written (as root): {overlay_config(overlay)}")


def _wait_for(path: Path, wait_s: float) -> str:
    deadline = time.monotonic() + wait_s
    while True:
        try:
            text = path.read_text()
            if "FLANNEL_SUBNET=" in text:
                return text
        except FileNotFoundError:
            pass
        if time.monotonic() >= deadline:
            raise ProvisionError(f"no lease in {path} after {wait_s:.0f} s")
        time.sleep(0.5)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m labs.vm_provision",
        description="Render a lab VM's systemd units and config (used by labs/provision/).",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    iface = commands.add_parser("iface", help="print the interface holding an address")
    iface.add_argument("--address", required=True)

    render = commands.add_parser("render", help="write the units and config.toml under --root")
    render.add_argument("--host-name", required=True)
    render.add_argument("--ip", required=True, type=ipaddress.IPv4Address)
    render.add_argument("--iface", help="default: the interface holding --ip")
    render.add_argument("--etcd-members", required=True, help="etcd1=IP,etcd2=IP,...")
    render.add_argument(
        "--lab-hosts", default="", help="host1=IP,host2=IP,...: every host (default: this one)"
    )
    render.add_argument("--domain", default="lab")
    render.add_argument("--venv", default=DEFAULT_VENV)
    render.add_argument("--root", default="/etc", type=Path)
    render.add_argument(
        "--docker-tls",
        action="store_true",
        help=f"dockerd also on tcp://IP:2376 with TLS (files in {vagrant_lab.DOCKER_TLS_DIR})",
    )

    docker = commands.add_parser("docker-config", help="daemon.json from subnet.env")
    docker.add_argument("--subnet-file", default=SUBNET_FILE, type=Path)
    docker.add_argument("--out", default=DOCKER_CONFIG_FILE, type=Path)
    docker.add_argument("--host-env", default=HOST_ENV_FILE, type=Path)
    docker.add_argument("--domain", default="lab")
    docker.add_argument("--wait", type=float, default=0.0, help="seconds to wait for the lease")

    setup = commands.add_parser(
        "set-up-etcd", help="users, roles, auth enable and the overlay config, as etcd's root"
    )
    setup.add_argument("--endpoints", required=True, help="https://IP:2379,...")
    setup.add_argument("--cert-dir", default=vagrant_lab.ETCD_CERT_DIR, help="ca.pem, root.pem")
    setup.add_argument("--domain", default="lab")
    setup.add_argument("--overlay", default=DEFAULT_OVERLAY)
    setup.add_argument("--wait", type=float, default=0.0, help="seconds to wait for quorum")

    network = commands.add_parser("overlay-config", help="print flannel's network config")
    network.add_argument("--overlay", default=DEFAULT_OVERLAY)

    args = parser.parse_args(argv)
    try:
        if args.command == "iface":
            print(find_interface(args.address))
        elif args.command == "render":
            host = HostSpec(
                name=args.host_name,
                ip=args.ip,
                iface=args.iface or find_interface(str(args.ip)),
                etcd=parse_etcd_members(args.etcd_members),
                domain=args.domain,
                venv=args.venv,
                lab_hosts=tuple(vagrant_lab.parse_lab_hosts(args.lab_hosts).items())
                if args.lab_hosts
                else (),
                docker_tls=args.docker_tls,
            )
            for relative, text in render_all(host).items():
                target = args.root / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text)
                print(target)
        elif args.command == "docker-config":
            env = parse_subnet_env(_wait_for(args.subnet_file, args.wait))
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(render_docker_config(env, args.domain))
            args.host_env.parent.mkdir(parents=True, exist_ok=True)
            args.host_env.write_text(render_host_env(env))
            print(args.out)
        elif args.command == "set-up-etcd":
            set_up_etcd(
                [url for url in args.endpoints.split(",") if url],
                vagrant_lab.etcd_client_files(args.cert_dir, etcd_tls.ROOT),
                Settings(domain=args.domain),
                args.overlay,
                args.wait,
            )
        elif args.command == "overlay-config":
            print(overlay_config(args.overlay))
    except (ProvisionError, vagrant_lab.VagrantLabError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def find_interface(address: str) -> str:
    output = subprocess.run(
        ["ip", "-j", "-4", "addr", "show"], capture_output=True, text=True, check=True
    ).stdout
    return interface_holding(address, output)


if __name__ == "__main__":
    raise SystemExit(main())

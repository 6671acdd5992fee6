"""Where a lab host's commands run: the local lab's namespaces, or the Vagrant lab's VMs.

Pure: built from the local lab's state file or the Vagrant lab's lab.toml, it
only says how to reach a host (a command prefix and a Docker daemon URL); the
shells in this package do the running.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from discovery.errors import DiscoveryError
from labs.etcd_tls import ClientFiles
from labs.state import LabState, etcd_client
from labs.vagrant_lab import VagrantLab


class UnknownHost(DiscoveryError):
    """The host asked for is not one of the lab's."""


@dataclass(frozen=True)
class LabHost:
    name: str
    underlay_ip: str
    # Prepended to every command run "on" the host: nsenter into its network
    # namespace (local lab), ssh to its VM, or nothing (this VM itself).
    command_prefix: tuple[str, ...]
    docker_url: str  # DOCKER_HOST for the docker CLI
    reached_by: str  # said in the output: how the facts were read
    # ssh hands the remote shell one line: the argv must be quoted into it.
    remote_shell: bool = False

    def command(self, argv: list[str]) -> list[str]:
        """argv as run on this host."""
        if self.remote_shell:
            return [*self.command_prefix, shlex.join(argv)]
        return [*self.command_prefix, *argv]


@dataclass(frozen=True)
class LabHosts:
    lab: str  # the lab's name
    kind: str  # "local" or "vagrant"
    hosts: dict[str, LabHost]
    etcd_endpoints: tuple[str, ...]
    default_host: str
    etcd_client: ClientFiles | None = None  # the learner's certificate, when etcd has TLS

    def host(self, name: str | None) -> LabHost:
        name = name or self.default_host
        if name not in self.hosts:
            known = ", ".join(self.hosts)
            raise UnknownHost(f"no host {name!r} in lab {self.lab!r} (hosts: {known})")
        return self.hosts[name]

    def name_of_underlay_ip(self, address: str) -> str:
        """Which lab host has this underlay address ("" if none)."""
        for host in self.hosts.values():
            if host.underlay_ip == address:
                return host.name
        return ""


def local_lab_hosts(state: LabState) -> LabHosts:
    hosts = {
        name: LabHost(
            name=name,
            underlay_ip=host.underlay_ip,
            # As `lab exec` does: only the network namespace, so /sys and the
            # mount namespace stay the root's (ip -j reads through netlink).
            command_prefix=("nsenter", f"--net=/run/netns/{host.netns}"),
            docker_url=host.docker_url,
            reached_by=f"nsenter --net=/run/netns/{host.netns}",
        )
        for name, host in sorted(state.hosts.items(), key=lambda item: _host_order(item[0]))
    }
    default = state.active_host if state.active_host in hosts else next(iter(hosts), "")
    return LabHosts(
        state.name, "local", hosts, tuple(state.etcd_endpoints), default, etcd_client(state)
    )


def vagrant_lab_hosts(lab: VagrantLab) -> LabHosts:
    hosts = {}
    for name, address in lab.hosts.items():
        here = name == lab.this_host
        prefix: tuple[str, ...] = () if here else ("ssh", "-T", f"root@{address}")
        hosts[name] = LabHost(
            name=name,
            underlay_ip=address,
            command_prefix=prefix,
            docker_url=lab.docker_url(name),
            reached_by="this VM" if here else f"ssh root@{address}",
            remote_shell=not here,
        )
    return LabHosts(
        "lab", "vagrant", hosts, tuple(lab.etcd_endpoints), lab.this_host, lab.etcd_client()
    )


def _host_order(name: str) -> tuple[int, str]:
    """host2 before host10."""
    digits = name.removeprefix("host")
    return (int(digits), name) if digits.isdigit() else (10**6, name)

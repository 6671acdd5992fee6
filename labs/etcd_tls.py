"""The lab's etcd, secured: who may read and write what, and which certificate says who. Pure.

etcd checks two things of every client, as any production cluster is set up:

1. **Who are you?** Members serve clients (2379) and each other (2380) over TLS
   and demand a certificate signed by the lab's CA (``--client-cert-auth``,
   ``--peer-client-cert-auth``). A client without one never gets a connection.
   With authentication on, the certificate's Common Name is the etcd user name,
   so no password is needed.
2. **What may you do?** RBAC: each user has one role, and a role is a list of
   key ranges with read, write or readwrite. etcd denies everything a role does
   not grant ("etcdserver: permission denied"). The user ``root`` (role
   ``root``) may do everything, including managing users and roles.

Each component of the lab gets its own certificate and the least its work needs
(``lab_roles``): the network agent leases subnets but cannot touch a service
record; the services agent registers containers but cannot take another host's
subnet; the DNS server and the map only read; the learner's ``discoveryctl``
reads everything and writes hand-made records. This module decides the roles,
the certificates' names, where their files live and the flags and variables
that use them; ``labs.lab_certs`` makes the certificates and
``labs.etcd_server`` runs etcd and etcdctl (the I/O).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from discovery import flannel, schema
from discovery.settings import Settings
from labs import docker_tls

# The etcd users, one per component; each is also its certificate's Common Name.
ROOT = "root"
NETWORK_AGENT = "network-agent"
SERVICES_AGENT = "services-agent"
DNS_SERVER = "dns"
MAP = "map"
LEARNER = "learner"
COMPONENTS = (ROOT, NETWORK_AGENT, SERVICES_AGENT, DNS_SERVER, MAP, LEARNER)

# etcdctl's own variables (and this project's settings read them too).
ETCDCTL_TLS_VARIABLES = ("ETCDCTL_CACERT", "ETCDCTL_CERT", "ETCDCTL_KEY")


# ------------------------------------------------------------ roles


@dataclass(frozen=True)
class Permission:
    """One grant: ``access`` (read, write or readwrite) on one key, or on every key
    starting with it (``prefix``), or on every key from it on (``from_key``)."""

    access: str
    key: str
    prefix: bool = False
    from_key: bool = False

    def __post_init__(self) -> None:
        if self.access not in ("read", "write", "readwrite"):
            raise ValueError(f"access {self.access!r} is not read, write or readwrite")
        if self.prefix and self.from_key:
            raise ValueError("a permission is a prefix or a from-key range, not both")

    @property
    def reads(self) -> bool:
        return self.access in ("read", "readwrite")

    @property
    def writes(self) -> bool:
        return self.access in ("write", "readwrite")

    def covers(self, key: str) -> bool:
        if self.from_key:
            return key >= self.key
        if self.prefix:
            return key.startswith(self.key)
        return key == self.key

    def etcdctl_args(self, role: str) -> list[str]:
        """``etcdctl role grant-permission`` for this grant."""
        range_flag = ["--prefix"] if self.prefix else ["--from-key"] if self.from_key else []
        return ["role", "grant-permission", *range_flag, role, self.access, self.key]

    def describe(self) -> str:
        if self.from_key:
            return "every key" if self.key == "" else f"every key from {self.key}"
        return f"{self.key}*" if self.prefix else self.key


@dataclass(frozen=True)
class EtcdRole:
    """A component's etcd user and role (one name for both) and what it may do."""

    name: str
    permissions: tuple[Permission, ...]
    why: str

    def may_read(self, key: str) -> bool:
        return self.name == ROOT or any(p.reads and p.covers(key) for p in self.permissions)

    def may_write(self, key: str) -> bool:
        return self.name == ROOT or any(p.writes and p.covers(key) for p in self.permissions)


def lab_roles(settings: Settings) -> tuple[EtcdRole, ...]:
    """Every component's role, from where the lab keeps its keys."""
    records = schema.domain_root(settings.prefix, settings.domain) + "/"
    services = schema.services_prefix(settings.prefix, settings.domain)
    nodes = schema.nodes_prefix(settings.prefix, settings.domain)
    network = settings.network_prefix.rstrip("/") + "/"
    observed = network + "observed/"  # each network agent's tunnel report (doctor, map)
    return (
        EtcdRole(ROOT, (), "the lab itself (lab up, rm, break): everything, users and roles"),
        EtcdRole(
            NETWORK_AGENT,
            (
                Permission("read", flannel.config_key(settings.network_prefix)),
                Permission("readwrite", flannel.subnets_prefix(settings.network_prefix), True),
                Permission("readwrite", observed, prefix=True),
            ),
            "leases its host's subnet and follows the others' (flannel's part)",
        ),
        EtcdRole(
            SERVICES_AGENT,
            (Permission("readwrite", services, True), Permission("readwrite", nodes, True)),
            "registers its host's containers and its node record",
        ),
        EtcdRole(DNS_SERVER, (Permission("read", records, True),), "answers from the records"),
        EtcdRole(
            MAP,
            (Permission("read", records, True), Permission("read", network, True)),
            "draws the records, leases and tunnel reports",
        ),
        EtcdRole(
            LEARNER,
            (
                Permission("read", "", from_key=True),
                Permission("readwrite", services, True),
                Permission("readwrite", "/ex08/", True),
            ),
            "you: reads everything, writes hand-made records and exercise 08's keys",
        ),
    )


def role_of(roles: tuple[EtcdRole, ...], name: str) -> EtcdRole:
    for role in roles:
        if role.name == name:
            return role
    raise KeyError(name)


def auth_commands(roles: tuple[EtcdRole, ...]) -> list[list[str]]:
    """The etcdctl commands (after the connection flags) that create every user and
    role and turn authentication on, in the order etcd needs: root first (etcd
    refuses ``auth enable`` without a root user holding the root role), enable last.

    Users have no password (``--no-password``): their certificate names them."""
    commands: list[list[str]] = []
    for role in roles:
        commands.append(["user", "add", role.name, "--no-password"])
        commands.append(["role", "add", role.name])
        commands += [permission.etcdctl_args(role.name) for permission in role.permissions]
        commands.append(["user", "grant-role", role.name, role.name])
    commands.append(["auth", "enable"])
    return commands


# ------------------------------------------------------------ certificates and files


@dataclass(frozen=True)
class ClientFiles:
    """What a client presents to etcd: the CA that signed the members' certificates,
    and its own certificate and key."""

    ca_file: Path
    cert_file: Path
    key_file: Path

    def settings(self, settings: Settings) -> Settings:
        """``settings`` with these files (the project's --cacert, --cert, --key)."""
        return replace(
            settings,
            tls_ca_file=str(self.ca_file),
            tls_cert_file=str(self.cert_file),
            tls_key_file=str(self.key_file),
        )

    def flags(self) -> list[str]:
        """The same flags for etcdctl and for this project's commands."""
        return ["--cacert", str(self.ca_file), "--cert", str(self.cert_file),
                "--key", str(self.key_file)]  # fmt: skip

    def etcdctl_env(self) -> dict[str, str]:
        return dict(
            zip(
                ETCDCTL_TLS_VARIABLES,
                (str(self.ca_file), str(self.cert_file), str(self.key_file)),
                strict=True,
            )
        )


@dataclass(frozen=True)
class EtcdCertLayout:
    """Where the lab keeps etcd's certificates, beside Docker's (same CA)::

    <lab>/certs/ca.pem                      the lab's CA (docker-machine's name)
    <lab>/certs/etcd/etcd1.pem, -key.pem    a member's: serves clients and peers
    <lab>/certs/etcd/learner.pem, -key.pem  a component's client certificate
    """

    root: Path

    @property
    def ca_file(self) -> Path:
        return docker_tls.CertLayout(self.root).ca_cert

    @property
    def directory(self) -> Path:
        return self.root / "certs" / "etcd"

    def cert_file(self, name: str) -> Path:
        return self.directory / f"{name}.pem"

    def key_file(self, name: str) -> Path:
        return self.directory / f"{name}-key.pem"

    def client(self, component: str) -> ClientFiles:
        return ClientFiles(self.ca_file, self.cert_file(component), self.key_file(component))


def learner_config_lines(learner: ClientFiles) -> list[str]:
    """config.toml's lines giving this project's commands the learner's certificate."""
    return [
        "# etcd serves only clients with a certificate from the lab's CA; this one's",
        f"# Common Name is the etcd user '{LEARNER}' (etcdctl user get {LEARNER}).",
        f'tls_ca_file = "{learner.ca_file}"',
        f'tls_cert_file = "{learner.cert_file}"',
        f'tls_key_file = "{learner.key_file}"',
    ]


def etcdctl_variables(endpoints: Sequence[str], client: ClientFiles | None) -> dict[str, str]:
    """etcdctl's own variables for the lab's endpoints and ``client``'s certificate."""
    variables = {"ETCDCTL_ENDPOINTS": ",".join(endpoints)}
    if client:
        variables.update(client.etcdctl_env())
    return variables


def etcdctl_exports(endpoints: Sequence[str], client: ClientFiles | None) -> list[str]:
    """A login shell's lines (``/etc/profile.d/``) giving etcdctl the lab's endpoints and
    ``client``'s certificate, each only if the shell has none of its own: etcdctl has no
    config file, and 3.5 refuses a flag whose variable is set (``unset ETCDCTL_CERT``
    before giving ``--cert``)."""
    variables = etcdctl_variables(endpoints, client)
    return [f'export {key}="${{{key}:-{value}}}"' for key, value in variables.items()]


def member_spec(
    name: str, address: str, now: dt.datetime, days: int = docker_tls.VALIDITY_DAYS
) -> docker_tls.CertSpec:
    """A member's certificate: it serves clients and peers, and is a client of its
    peers, so it is good for both uses; it names the member's address."""
    start, end = docker_tls.window(now, days)
    return docker_tls.CertSpec(
        name,
        "peer",
        start,
        end,
        dns_names=(name, "localhost"),
        ip_addresses=(ipaddress.IPv4Address(address), ipaddress.IPv4Address("127.0.0.1")),
    )


def component_spec(
    component: str, now: dt.datetime, days: int = docker_tls.VALIDITY_DAYS
) -> docker_tls.CertSpec:
    """A component's client certificate: its Common Name is its etcd user."""
    start, end = docker_tls.window(now, days)
    return docker_tls.CertSpec(component, "client", start, end)


def member_tls_args(ca_file: Path, cert_file: Path, key_file: Path) -> list[str]:
    """etcd's flags: TLS with client certificates on both the client and the peer port."""
    return [
        "--cert-file", str(cert_file), "--key-file", str(key_file),
        "--trusted-ca-file", str(ca_file), "--client-cert-auth",
        "--peer-cert-file", str(cert_file), "--peer-key-file", str(key_file),
        "--peer-trusted-ca-file", str(ca_file), "--peer-client-cert-auth",
    ]  # fmt: skip


__all__ = [
    "COMPONENTS",
    "ClientFiles",
    "EtcdCertLayout",
    "EtcdRole",
    "Permission",
    "auth_commands",
    "component_spec",
    "etcdctl_exports",
    "etcdctl_variables",
    "lab_roles",
    "learner_config_lines",
    "member_spec",
    "member_tls_args",
]

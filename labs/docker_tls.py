"""Docker Machine's TLS for the lab's Docker daemons: who gets which certificate. Pure.

Docker Machine made every host it created secure by default, in three steps:

1. once, on the machine you typed ``docker-machine`` on, a CA of its own and a
   client certificate signed by it (``~/.docker/machine/certs/``: ``ca.pem``,
   ``ca-key.pem``, ``cert.pem``, ``key.pem``);
2. per host, a server certificate signed by that CA, naming the host's address
   (``machines/NAME/server.pem``, ``server-key.pem``), and dockerd started with
   ``-H tcp://0.0.0.0:2376 --tlsverify --tlscacert ca.pem --tlscert server.pem
   --tlskey server-key.pem``: it talks only to clients whose certificate the CA
   signed;
3. ``docker-machine env NAME`` pointing the docker CLI there:
   ``DOCKER_TLS_VERIFY=1``, ``DOCKER_HOST=tcp://IP:2376`` and
   ``DOCKER_CERT_PATH=machines/NAME`` (where the CLI finds ``ca.pem``,
   ``cert.pem`` and ``key.pem``: a copy of the client's).

The lab does the same, with the same file names, under its state directory
(``<lab>/certs/`` and ``<lab>/machines/HOST/``, root only). This module decides
what each certificate says (names, addresses, usage, validity), where each file
lives and what ``lab env`` and ``lab config`` print; ``labs.lab_certs`` makes
the keys and signs (the I/O).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

DOCKER_TLS_PORT = 2376  # IANA's docker-s; 2375 is plain HTTP, which the lab never opens
VALIDITY_DAYS = 1080  # as docker-machine's certificates
# A certificate valid from a little before "now", so that a clock a few minutes behind
# on another machine (a VM) does not see it as not yet valid.
BACKDATE = dt.timedelta(minutes=5)
ORGANIZATION = "discovery-lab"

# Files, named as docker-machine names them.
CA_CERT, CA_KEY = "ca.pem", "ca-key.pem"
CLIENT_CERT, CLIENT_KEY = "cert.pem", "key.pem"
SERVER_CERT, SERVER_KEY = "server.pem", "server-key.pem"
# What the docker CLI reads from DOCKER_CERT_PATH (and docker-compose, and the SDK).
CLIENT_FILES = (CA_CERT, CLIENT_CERT, CLIENT_KEY)

# What a TLS connection to a lab daemon sets; a unix socket needs none of it.
TLS_VARIABLES = ("DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_TLS")


@dataclass(frozen=True)
class CertSpec:
    """What one certificate says. ``usage``: ca, server, client, or peer (both server
    and client: an etcd member serves its peers and is their client)."""

    common_name: str
    usage: str
    not_before: dt.datetime
    not_after: dt.datetime
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[ipaddress.IPv4Address, ...] = ()
    organization: str = ORGANIZATION

    def __post_init__(self) -> None:
        if self.usage not in ("ca", "server", "client", "peer"):
            raise ValueError(f"usage {self.usage!r} is not ca, server, client or peer")
        if self.not_after <= self.not_before:
            raise ValueError(f"{self.common_name}: not_after is not after not_before")


def window(now: dt.datetime, days: int) -> tuple[dt.datetime, dt.datetime]:
    start = now - BACKDATE
    return start, start + dt.timedelta(days=days)


def ca_spec(lab_name: str, now: dt.datetime, days: int = VALIDITY_DAYS) -> CertSpec:
    start, end = window(now, days)
    return CertSpec(f"discovery-lab {lab_name} CA", "ca", start, end)


def client_spec(lab_name: str, now: dt.datetime, days: int = VALIDITY_DAYS) -> CertSpec:
    """The learner's certificate (docker-machine's ``certs/cert.pem``): root on this machine
    is the learner, and every lab daemon accepts it."""
    start, end = window(now, days)
    return CertSpec(f"discovery-lab {lab_name} client", "client", start, end)


def server_spec(
    host_name: str, address: ipaddress.IPv4Address, now: dt.datetime, days: int = VALIDITY_DAYS
) -> CertSpec:
    """A host's daemon certificate: its underlay address (what DOCKER_HOST names) and its
    name, plus localhost for a client on the host itself."""
    start, end = window(now, days)
    return CertSpec(
        host_name,
        "server",
        start,
        end,
        dns_names=(host_name, "localhost"),
        ip_addresses=(address, ipaddress.IPv4Address("127.0.0.1")),
    )


@dataclass(frozen=True)
class CertLayout:
    """Where the lab keeps its certificates: docker-machine's tree under ``root``.

    ``root/certs/``                ca.pem ca-key.pem cert.pem key.pem   (CA, learner)
    ``root/machines/HOST/``        ca.pem cert.pem key.pem              (DOCKER_CERT_PATH)
                                   server.pem server-key.pem            (HOST's dockerd)
    """

    root: Path

    @property
    def certs_dir(self) -> Path:
        return self.root / "certs"

    @property
    def ca_cert(self) -> Path:
        return self.certs_dir / CA_CERT

    @property
    def ca_key(self) -> Path:
        return self.certs_dir / CA_KEY

    @property
    def client_cert(self) -> Path:
        return self.certs_dir / CLIENT_CERT

    @property
    def client_key(self) -> Path:
        return self.certs_dir / CLIENT_KEY

    def machine_dir(self, host: str) -> Path:
        return self.root / "machines" / host

    def server_cert(self, host: str) -> Path:
        return self.machine_dir(host) / SERVER_CERT

    def server_key(self, host: str) -> Path:
        return self.machine_dir(host) / SERVER_KEY


def tls_url(address: str, port: int = DOCKER_TLS_PORT) -> str:
    """What ``docker-machine url`` prints: tcp://IP:2376."""
    return f"tcp://{address}:{port}"


def daemon_tls_args(address: str, machine_dir: Path, port: int = DOCKER_TLS_PORT) -> list[str]:
    """dockerd's flags for its TLS endpoint (its unix socket stays as it is)."""
    return [
        f"--host={tls_url(address, port)}",
        "--tlsverify",
        f"--tlscacert={machine_dir / CA_CERT}",
        f"--tlscert={machine_dir / SERVER_CERT}",
        f"--tlskey={machine_dir / SERVER_KEY}",
    ]


def client_env(url: str, cert_path: Path | str, machine_name: str) -> dict[str, str]:
    """The four variables of ``docker-machine env``, in its order."""
    return {
        "DOCKER_TLS_VERIFY": "1",
        "DOCKER_HOST": url,
        "DOCKER_CERT_PATH": str(cert_path),
        "DOCKER_MACHINE_NAME": machine_name,
    }


def shell_quote(value: str) -> str:
    """A double-quoted sh word, as docker-machine env writes its values."""
    escaped = "".join("\\" + char if char in '"\\$`' else char for char in value)
    return f'"{escaped}"'


def render_env(env: dict[str, str], command: str) -> str:
    """``docker-machine env``'s text: the exports, then how to apply them."""
    lines = [f"export {key}={shell_quote(value)}" for key, value in env.items()]
    lines += ["# Run this command to configure your shell: ", f"# eval $({command})"]
    return "\n".join(lines) + "\n"


def render_config(url: str, cert_path: Path | str) -> str:
    """``docker-machine config``'s text, one flag a line: ``docker $(... config HOST) ps``.

    The quotes stay in the words after ``$(...)``; the docker CLI strips them from
    these three flags' values (its QuotedString type exists for this output)."""
    path = Path(cert_path)
    return (
        "--tlsverify\n"
        f'--tlscacert="{path / CA_CERT}"\n'
        f'--tlscert="{path / CLIENT_CERT}"\n'
        f'--tlskey="{path / CLIENT_KEY}"\n'
        f"-H={url}\n"
    )


def without_tls(env: dict[str, str]) -> dict[str, str]:
    """An environment for a docker client on a unix socket: a learner's shell after
    ``eval $(lab env ...)`` carries DOCKER_TLS_VERIFY, which such a client must not see."""
    return {key: value for key, value in env.items() if key not in TLS_VARIABLES}

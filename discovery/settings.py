"""Settings shared by every command: where etcd is, which prefixes, which domain.

Every command (discoveryctl, discovery-agent, discovery-dns) reads its settings
the same way, first match wins:

1. command-line flags (``--etcd-endpoints``, ``--prefix`` ...),
2. environment variables (``DISCOVERY_ETCD_ENDPOINTS`` ..., plus etcdctl's
   own ``ETCDCTL_ENDPOINTS`` so a learner's etcdctl setup carries over),
3. a TOML config file (``--config``, ``DISCOVERY_CONFIG``, else
   ``/etc/discovery/config.toml`` when it exists),
4. the defaults below.

``resolve_settings`` is pure: it takes the three sources as plain mappings, so
the precedence is a table test. ``load_settings`` is the thin shell that reads
the environment and the file.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from discovery.errors import SettingsError

DEFAULT_CONFIG_PATH = Path("/etc/discovery/config.toml")


@dataclass(frozen=True)
class Settings:
    # etcd client URLs, like etcdctl's --endpoints; tried in order on failure.
    etcd_endpoints: tuple[str, ...] = ("http://127.0.0.1:2379",)
    # Service and node records live under this prefix, in the SkyDNS/CoreDNS
    # layout: <prefix>/<domain labels reversed>/service/<name>/<endpoint id>.
    prefix: str = "/skydns"
    # flannel's etcd prefix: <network_prefix>/config and <network_prefix>/subnets/.
    network_prefix: str = "/coreos.com/network"
    domain: str = "lab"
    # TTL of the agent's etcd lease; records vanish this long after a crash.
    lease_ttl_s: int = 10
    # TTL written into records and served in DNS answers.
    record_ttl_s: int = 5
    # Deadline for one etcd request on one endpoint.
    request_timeout_s: float = 2.0
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    etcd_user: str | None = None
    etcd_password: str | None = None


# name -> environment variables, first present wins.
ENVIRONMENT_NAMES: dict[str, tuple[str, ...]] = {
    "etcd_endpoints": ("DISCOVERY_ETCD_ENDPOINTS", "ETCDCTL_ENDPOINTS"),
    "prefix": ("DISCOVERY_PREFIX",),
    "network_prefix": ("DISCOVERY_NETWORK_PREFIX",),
    "domain": ("DISCOVERY_DOMAIN",),
    "lease_ttl_s": ("DISCOVERY_LEASE_TTL",),
    "record_ttl_s": ("DISCOVERY_RECORD_TTL",),
    "request_timeout_s": ("DISCOVERY_REQUEST_TIMEOUT",),
    "tls_ca_file": ("DISCOVERY_ETCD_CACERT", "ETCDCTL_CACERT"),
    "tls_cert_file": ("DISCOVERY_ETCD_CERT", "ETCDCTL_CERT"),
    "tls_key_file": ("DISCOVERY_ETCD_KEY", "ETCDCTL_KEY"),
    "etcd_user": ("DISCOVERY_ETCD_USER",),
    "etcd_password": ("DISCOVERY_ETCD_PASSWORD",),
}

# name -> (flag, help). Every command gets the same flags from add_settings_flags.
FLAGS: dict[str, tuple[str, str]] = {
    "etcd_endpoints": ("--etcd-endpoints", "comma-separated etcd client URLs"),
    "prefix": ("--prefix", "etcd prefix of service and node records (default /skydns)"),
    "network_prefix": ("--network-prefix", "flannel's etcd prefix (default /coreos.com/network)"),
    "domain": ("--domain", "the lab's DNS domain (default lab)"),
    "lease_ttl_s": ("--lease-ttl", "agent lease TTL in seconds (default 10)"),
    "record_ttl_s": ("--record-ttl", "record and DNS answer TTL in seconds (default 5)"),
    "request_timeout_s": ("--request-timeout", "seconds per etcd request (default 2)"),
    "tls_ca_file": ("--cacert", "CA bundle to verify etcd's TLS certificate"),
    "tls_cert_file": ("--cert", "client certificate for etcd TLS"),
    "tls_key_file": ("--key", "client key for etcd TLS"),
    "etcd_user": ("--user", "etcd user name (with --password)"),
    "etcd_password": ("--password", "etcd password"),
}


def add_settings_flags(parser: argparse.ArgumentParser, *, subcommand: bool = False) -> None:
    """Add the shared flags. On a subcommand parser pass subcommand=True, so that
    flags given before the subcommand (``discoveryctl --etcd-endpoints X lookup``)
    are not overwritten by the subcommand's unset defaults."""
    default = argparse.SUPPRESS if subcommand else None
    group = parser.add_argument_group("etcd and naming settings")
    group.add_argument(
        "--config", default=default, help=f"TOML settings file (default {DEFAULT_CONFIG_PATH})"
    )
    for name, (flag, help_text) in FLAGS.items():
        group.add_argument(flag, dest=f"setting_{name}", default=default, help=help_text)


def flag_values(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given as flags on this command line (absent ones omitted)."""
    found = {}
    for name in FLAGS:
        value = getattr(args, f"setting_{name}", None)
        if value is not None:
            found[name] = value
    return found


def _coerce(name: str, raw: Any, source: str) -> Any:
    """Turn a raw value from a flag, variable or file into the field's type."""
    kind = {f.name: f.type for f in fields(Settings)}[name]
    try:
        if name == "etcd_endpoints":
            items = raw.split(",") if isinstance(raw, str) else list(raw)
            endpoints = tuple(str(item).strip() for item in items if str(item).strip())
            if not endpoints:
                raise ValueError("no endpoint given")
            for endpoint in endpoints:
                parse_endpoint(endpoint)
            return endpoints
        if kind == "int":
            value = int(raw)
            if value <= 0:
                raise ValueError("must be a positive number of seconds")
            return value
        if kind == "float":
            number = float(raw)
            if number <= 0:
                raise ValueError("must be a positive number of seconds")
            return number
        if name in ("prefix", "network_prefix"):
            text = str(raw).rstrip("/")
            if not text.startswith("/"):
                raise ValueError("must start with /")
            return text
        if name == "domain":
            text = str(raw).strip(".").lower()
            if not text:
                raise ValueError("must not be empty")
            return text
        return str(raw)
    except (TypeError, ValueError) as error:
        raise SettingsError(f"{source}: bad value {raw!r} for {name}: {error}") from error


def parse_endpoint(endpoint: str) -> tuple[str, int]:
    """'http://127.0.0.1:2379' or '127.0.0.1:2379' -> ('127.0.0.1', 2379)."""
    rest = endpoint.split("://", 1)[1] if "://" in endpoint else endpoint
    rest = rest.rstrip("/")
    host, sep, port_text = rest.rpartition(":")
    if not sep or not host:
        raise ValueError(f"endpoint {endpoint!r} has no host:port")
    host = host.strip("[]")
    port = int(port_text)
    if not 0 < port < 65536:
        raise ValueError(f"endpoint {endpoint!r} has port {port} outside 1-65535")
    return host, port


def resolve_settings(
    flags: Mapping[str, Any],
    environ: Mapping[str, str],
    config: Mapping[str, Any],
) -> Settings:
    """Merge the sources, first match wins: flags > environment > file > defaults."""
    known = {f.name for f in fields(Settings)}
    unknown = sorted(set(config) - known)
    if unknown:
        raise SettingsError(f"config file: unknown setting(s) {', '.join(unknown)}")
    chosen: dict[str, Any] = {}
    for name in known:
        if name in flags:
            chosen[name] = _coerce(name, flags[name], f"flag {FLAGS[name][0]}")
            continue
        variable = next((v for v in ENVIRONMENT_NAMES[name] if environ.get(v)), None)
        if variable is not None:
            chosen[name] = _coerce(name, environ[variable], f"environment {variable}")
        elif name in config:
            chosen[name] = _coerce(name, config[name], "config file")
    settings = Settings(**chosen)
    tls_files = (settings.tls_cert_file, settings.tls_key_file)
    if any(tls_files) and not all(tls_files):
        raise SettingsError("TLS client certificate and key go together: give both or neither")
    if bool(settings.etcd_user) != bool(settings.etcd_password):
        raise SettingsError("etcd user and password go together: give both or neither")
    return settings


def read_config_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except OSError as error:
        raise SettingsError(f"cannot read config file {path}: {error.strerror}") from error
    except tomllib.TOMLDecodeError as error:
        raise SettingsError(f"config file {path} is not valid TOML: {error}") from error


def load_settings(
    flags: Mapping[str, Any] | None = None,
    config_path: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Read the environment and the config file, then resolve."""
    environ = os.environ if environ is None else environ
    explicit = config_path or environ.get("DISCOVERY_CONFIG")
    if explicit:
        config = read_config_file(Path(explicit))
    elif DEFAULT_CONFIG_PATH.exists():
        config = read_config_file(DEFAULT_CONFIG_PATH)
    else:
        config = {}
    return resolve_settings(flags or {}, environ, config)


def settings_from_args(args: argparse.Namespace) -> Settings:
    return load_settings(flag_values(args), getattr(args, "config", None))


def settings_as_environment(settings: Settings) -> dict[str, str]:
    """The environment that makes a child command see these same settings."""
    env = {
        "DISCOVERY_ETCD_ENDPOINTS": ",".join(settings.etcd_endpoints),
        "DISCOVERY_PREFIX": settings.prefix,
        "DISCOVERY_NETWORK_PREFIX": settings.network_prefix,
        "DISCOVERY_DOMAIN": settings.domain,
        "DISCOVERY_LEASE_TTL": str(settings.lease_ttl_s),
        "DISCOVERY_RECORD_TTL": str(settings.record_ttl_s),
        "DISCOVERY_REQUEST_TIMEOUT": str(settings.request_timeout_s),
    }
    optional = {
        "DISCOVERY_ETCD_CACERT": settings.tls_ca_file,
        "DISCOVERY_ETCD_CERT": settings.tls_cert_file,
        "DISCOVERY_ETCD_KEY": settings.tls_key_file,
        "DISCOVERY_ETCD_USER": settings.etcd_user,
        "DISCOVERY_ETCD_PASSWORD": settings.etcd_password,
    }
    env.update({name: value for name, value in optional.items() if value})
    return env


__all__ = [
    "ENVIRONMENT_NAMES",
    "FLAGS",
    "Settings",
    "add_settings_flags",
    "load_settings",
    "parse_endpoint",
    "resolve_settings",
    "settings_as_environment",
    "settings_from_args",
]

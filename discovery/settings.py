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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from discovery.errors import SettingsError

DEFAULT_CONFIG_PATH = Path("/etc/discovery/config.toml")
CONFIG_ENVIRONMENT = "DISCOVERY_CONFIG"


# ------------------------------------------------------------ parsing one raw value
# Each turns a raw value (a flag's or variable's text, or a TOML value) into the
# setting's type, raising ValueError (or TypeError) with the reason.


def _endpoints(raw: Any) -> tuple[str, ...]:
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    endpoints = tuple(str(item).strip() for item in items if str(item).strip())
    if not endpoints:
        raise ValueError("no endpoint given")
    for endpoint in endpoints:
        parse_endpoint(endpoint)
    return endpoints


def _seconds(raw: Any) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("must be a positive number of seconds")
    return value


def _fractional_seconds(raw: Any) -> float:
    number = float(raw)
    if number <= 0:
        raise ValueError("must be a positive number of seconds")
    return number


def _prefix(raw: Any) -> str:
    text = str(raw).rstrip("/")
    if not text.startswith("/"):
        raise ValueError("must start with /")
    return text


def _domain(raw: Any) -> str:
    text = str(raw).strip(".").lower()
    if not text:
        raise ValueError("must not be empty")
    return text


def _text(raw: Any) -> str:
    return str(raw)


# ------------------------------------------------------------ the table


@dataclass(frozen=True)
class Setting:
    """One setting, as every place shows it: flag, environment, TOML file, help.

    ``name`` is the ``Settings`` field and the key in the TOML file; ``env``
    lists the variables read, first present wins (this project's own first,
    then etcdctl's where it has one); ``parse`` turns a raw value into the
    field's type.
    """

    name: str
    flag: str
    metavar: str
    env: tuple[str, ...]
    parse: Callable[[Any], Any]
    default: Any
    help: str

    @property
    def toml_key(self) -> str:
        return self.name

    @property
    def shown_default(self) -> str:
        if self.default is None:
            return "none"
        return f"{self.default:g}" if isinstance(self.default, float) else as_text(self.default)

    @property
    def full_help(self) -> str:
        """etcdctl-like: what it is, then where else it can come from and its default."""
        return f"{self.help} (env {' or '.join(self.env)}, default {self.shown_default})"


def _setting(
    default: Any,
    *,
    flag: str,
    metavar: str,
    env: tuple[str, ...],
    parse: Callable[[Any], Any],
    help: str,
) -> Any:
    """A ``Settings`` field carrying its table entry (completed with the field's name)."""
    entry = {"flag": flag, "metavar": metavar, "env": env, "parse": parse, "help": help}
    return field(default=default, metadata={"setting": entry})


@dataclass(frozen=True)
class Settings:
    """Every setting, one field each: its type, default, flag, variables, parser and help.

    This is the table. ``SETTINGS`` below reads it; the flags, the environment
    lookup, the TOML keys, ``--help``, ``settings_as_environment`` and the
    README's settings section (checked by a test) are all made from that.
    """

    etcd_endpoints: tuple[str, ...] = _setting(
        ("http://127.0.0.1:2379",),
        flag="--etcd-endpoints",
        metavar="URLS",
        # etcdctl's own variable too, so a learner's etcdctl setup carries over
        env=("DISCOVERY_ETCD_ENDPOINTS", "ETCDCTL_ENDPOINTS"),
        parse=_endpoints,
        help="etcd client URLs, comma-separated",  # tried in order when one fails
    )
    # Service and node records live under this prefix, in the SkyDNS/CoreDNS
    # layout: <prefix>/<domain labels reversed>/service/<name>/<endpoint id>.
    prefix: str = _setting(
        "/skydns",
        flag="--prefix",
        metavar="PREFIX",
        env=("DISCOVERY_PREFIX",),
        parse=_prefix,
        help="etcd prefix of service and node records",
    )
    # flannel's etcd prefix: <network_prefix>/config and <network_prefix>/subnets/.
    network_prefix: str = _setting(
        "/coreos.com/network",
        flag="--network-prefix",
        metavar="PREFIX",
        env=("DISCOVERY_NETWORK_PREFIX",),
        parse=_prefix,
        help="flannel's etcd prefix, of its network config and subnet leases",
    )
    domain: str = _setting(
        "lab",
        flag="--domain",
        metavar="DOMAIN",
        env=("DISCOVERY_DOMAIN",),
        parse=_domain,
        help="the lab's DNS domain",
    )
    lease_ttl_s: int = _setting(
        10,
        flag="--lease-ttl",
        metavar="SECONDS",
        env=("DISCOVERY_LEASE_TTL",),
        parse=_seconds,
        help="TTL of an agent's etcd lease; its records vanish this long after a crash",
    )
    record_ttl_s: int = _setting(
        5,
        flag="--record-ttl",
        metavar="SECONDS",
        env=("DISCOVERY_RECORD_TTL",),
        parse=_seconds,
        help="TTL written into records and served in DNS answers",
    )
    request_timeout_s: float = _setting(
        2.0,
        flag="--request-timeout",
        metavar="SECONDS",
        env=("DISCOVERY_REQUEST_TIMEOUT",),
        parse=_fractional_seconds,
        help="deadline of one etcd request on one endpoint",
    )
    tls_ca_file: str | None = _setting(
        None,
        flag="--cacert",
        metavar="FILE",
        env=("DISCOVERY_ETCD_CACERT", "ETCDCTL_CACERT"),
        parse=_text,
        help="CA bundle to verify etcd's TLS certificate",
    )
    tls_cert_file: str | None = _setting(
        None,
        flag="--cert",
        metavar="FILE",
        env=("DISCOVERY_ETCD_CERT", "ETCDCTL_CERT"),
        parse=_text,
        help="client certificate for etcd TLS, with --key",
    )
    tls_key_file: str | None = _setting(
        None,
        flag="--key",
        metavar="FILE",
        env=("DISCOVERY_ETCD_KEY", "ETCDCTL_KEY"),
        parse=_text,
        help="client key for etcd TLS, with --cert",
    )
    etcd_user: str | None = _setting(
        None,
        flag="--user",
        metavar="NAME",
        env=("DISCOVERY_ETCD_USER",),
        parse=_text,
        help="etcd user name, with --password",
    )
    etcd_password: str | None = _setting(
        None,
        flag="--password",
        metavar="PASSWORD",
        env=("DISCOVERY_ETCD_PASSWORD",),
        parse=_text,
        help="etcd password, with --user",
    )


SETTINGS: tuple[Setting, ...] = tuple(
    Setting(name=f.name, default=f.default, **f.metadata["setting"]) for f in fields(Settings)
)


def as_text(value: Any) -> str:
    """A setting's value as a flag or variable spells it (lists comma-separated)."""
    if isinstance(value, tuple | list):
        return ",".join(str(item) for item in value)
    return str(value)


class HelpFormatter(argparse.HelpFormatter):
    """argparse's, with a help column wide enough for ``--request-timeout SECONDS``,
    so every setting's help starts on its flag's line, as etcdctl's does."""

    def __init__(self, prog: str, **kwargs: Any) -> None:
        kwargs.setdefault("max_help_position", 30)
        super().__init__(prog, **kwargs)


def add_settings_flags(parser: argparse.ArgumentParser, *, subcommand: bool = False) -> None:
    """Add the shared flags. On a subcommand parser pass subcommand=True, so that
    flags given before the subcommand (``discoveryctl --etcd-endpoints X lookup``)
    are not overwritten by the subcommand's unset defaults.

    A parser with argparse's plain help formatter gets ``HelpFormatter``."""
    if parser.formatter_class is argparse.HelpFormatter:
        parser.formatter_class = HelpFormatter
    default = argparse.SUPPRESS if subcommand else None
    group = parser.add_argument_group("etcd and naming settings")
    group.add_argument(
        "--config",
        default=default,
        metavar="FILE",
        help=f"TOML settings file (env {CONFIG_ENVIRONMENT}, "
        f"default {DEFAULT_CONFIG_PATH} when it exists)",
    )
    for setting in SETTINGS:
        group.add_argument(
            setting.flag,
            dest=f"setting_{setting.name}",
            default=default,
            metavar=setting.metavar,
            help=setting.full_help.replace("%", "%%"),
        )


def flag_values(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given as flags on this command line (absent ones omitted)."""
    found = {}
    for setting in SETTINGS:
        value = getattr(args, f"setting_{setting.name}", None)
        if value is not None:
            found[setting.name] = value
    return found


def _coerce(setting: Setting, raw: Any, source: str) -> Any:
    """Turn a raw value from a flag, variable or file into the field's type."""
    try:
        return setting.parse(raw)
    except (TypeError, ValueError) as error:
        raise SettingsError(f"{source}: bad value {raw!r} for {setting.name}: {error}") from error


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
    unknown = sorted(set(config) - {setting.toml_key for setting in SETTINGS})
    if unknown:
        raise SettingsError(f"config file: unknown setting(s) {', '.join(unknown)}")
    chosen: dict[str, Any] = {}
    for setting in SETTINGS:
        if setting.name in flags:
            chosen[setting.name] = _coerce(setting, flags[setting.name], f"flag {setting.flag}")
            continue
        variable = next((v for v in setting.env if environ.get(v)), None)
        if variable is not None:
            chosen[setting.name] = _coerce(setting, environ[variable], f"environment {variable}")
        elif setting.toml_key in config:
            chosen[setting.name] = _coerce(setting, config[setting.toml_key], "config file")
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
    explicit = config_path or environ.get(CONFIG_ENVIRONMENT)
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
    env = {}
    for setting in SETTINGS:
        value = getattr(settings, setting.name)
        if value is not None and value != "":
            env[setting.env[0]] = as_text(value)
    return env


__all__ = [
    "SETTINGS",
    "Setting",
    "Settings",
    "add_settings_flags",
    "load_settings",
    "parse_endpoint",
    "resolve_settings",
    "settings_as_environment",
    "settings_from_args",
]

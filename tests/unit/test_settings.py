"""Settings precedence: flags > environment > config file > defaults."""

import argparse
import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

from agent import cli as agent_cli
from discovery import cli as discovery_cli
from discovery.errors import SettingsError
from discovery.settings import (
    SETTINGS,
    Setting,
    Settings,
    add_settings_flags,
    flag_values,
    load_settings,
    resolve_settings,
    settings_as_environment,
)
from dnsserver import cli as dns_cli

FILE = {"etcd_endpoints": ["http://10.0.0.1:2379"], "domain": "file.lab", "lease_ttl_s": 30}
ENV = {"DISCOVERY_ETCD_ENDPOINTS": "http://10.0.0.2:2379", "DISCOVERY_DOMAIN": "env.lab"}
FLAGS = {"etcd_endpoints": "http://10.0.0.3:2379,http://10.0.0.4:2379"}


@pytest.mark.parametrize(
    ("flags", "environ", "config", "endpoints", "domain", "ttl"),
    [
        ({}, {}, {}, ("http://127.0.0.1:2379",), "lab", 10),
        ({}, {}, FILE, ("http://10.0.0.1:2379",), "file.lab", 30),
        ({}, ENV, FILE, ("http://10.0.0.2:2379",), "env.lab", 30),
        (FLAGS, ENV, FILE, ("http://10.0.0.3:2379", "http://10.0.0.4:2379"), "env.lab", 30),
        (
            {},
            {"ETCDCTL_ENDPOINTS": "http://10.0.0.9:2379"},
            {},
            ("http://10.0.0.9:2379",),
            "lab",
            10,
        ),
        (
            {},
            {"ETCDCTL_ENDPOINTS": "http://10.0.0.9:2379", **ENV},
            {},
            ("http://10.0.0.2:2379",),
            "env.lab",
            10,
        ),
    ],
)
def test_first_source_wins(flags, environ, config, endpoints, domain, ttl):
    settings = resolve_settings(flags, environ, config)
    assert (settings.etcd_endpoints, settings.domain, settings.lease_ttl_s) == (
        endpoints,
        domain,
        ttl,
    )


@pytest.mark.parametrize(
    ("flags", "environ", "config", "reason"),
    [
        ({"lease_ttl_s": "ten"}, {}, {}, "flag --lease-ttl: bad value 'ten'"),
        ({}, {"DISCOVERY_LEASE_TTL": "-1"}, {}, "environment DISCOVERY_LEASE_TTL"),
        ({}, {}, {"prefix": "skydns"}, "must start with /"),
        ({}, {}, {"colour": "red"}, "unknown setting"),
        ({"etcd_endpoints": "http://x:notaport"}, {}, {}, "etcd_endpoints"),
        ({"etcd_endpoints": " , "}, {}, {}, "no endpoint"),
        ({"tls_cert_file": "/c.pem"}, {}, {}, "certificate and key go together"),
        ({"etcd_user": "root"}, {}, {}, "user and password go together"),
    ],
)
def test_bad_values_name_their_source(flags, environ, config, reason):
    with pytest.raises(SettingsError, match=reason):
        resolve_settings(flags, environ, config)


def test_flags_before_and_after_a_subcommand_both_count():
    parser = argparse.ArgumentParser()
    add_settings_flags(parser)
    sub = parser.add_subparsers(dest="command").add_parser("lookup")
    add_settings_flags(sub, subcommand=True)
    before = parser.parse_args(["--domain", "a.lab", "lookup"])
    after = parser.parse_args(["lookup", "--domain", "b.lab"])
    assert flag_values(before) == {"domain": "a.lab"}
    assert flag_values(after) == {"domain": "b.lab"}


def test_config_file_is_read_and_bad_toml_is_named(tmp_path):
    good = tmp_path / "config.toml"
    good.write_text('domain = "toml.lab"\nrecord_ttl_s = 9\n')
    settings = load_settings({}, str(good), environ={})
    assert (settings.domain, settings.record_ttl_s) == ("toml.lab", 9)
    bad = tmp_path / "bad.toml"
    bad.write_text("domain = \n")
    with pytest.raises(SettingsError, match=r"bad\.toml is not valid TOML"):
        load_settings({}, str(bad), environ={})
    with pytest.raises(SettingsError, match="cannot read config file"):
        load_settings({}, str(tmp_path / "missing.toml"), environ={})


def test_defaults_are_the_documented_ones():
    assert Settings() == resolve_settings({}, {}, {})
    assert Settings().prefix == "/skydns" and Settings().network_prefix == "/coreos.com/network"


# ------------------------------------------------------------------ the one table


def test_the_table_is_the_dataclass():
    assert [s.name for s in SETTINGS] == [f.name for f in dataclasses.fields(Settings)]
    for setting in SETTINGS:
        assert getattr(Settings(), setting.name) == setting.default
        assert setting.flag.startswith("--") and setting.metavar.isupper()
        assert setting.env[0].startswith("DISCOVERY_")
    flags = [s.flag for s in SETTINGS]
    variables = [v for s in SETTINGS for v in s.env]
    assert len(set(flags)) == len(flags) and len(set(variables)) == len(variables)


def sample(setting: Setting, n: int) -> str:
    """A valid raw value for ``setting``, different for each ``n`` (as text)."""
    default = setting.default
    if setting.name == "etcd_endpoints":
        return f"http://10.0.0.{n}:2379"
    if isinstance(default, int | float):
        return str(default + n)
    if setting.name.endswith("prefix"):
        return f"/p{n}"
    return f"v{n}"


# Settings that go in pairs: the partner is always given (in the file), so that
# any one source of the setting itself leaves a valid pair.
PARTNER = {
    "tls_cert_file": "tls_key_file",
    "tls_key_file": "tls_cert_file",
    "etcd_user": "etcd_password",
    "etcd_password": "etcd_user",
}


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.name)
def test_flag_beats_environment_beats_file_beats_default_for_every_setting(setting: Setting):
    def resolved(flags, environ, config):
        if setting.name in PARTNER:
            config = {PARTNER[setting.name]: "partner", **config}
        return getattr(resolve_settings(flags, environ, config), setting.name)

    parse = setting.parse
    file_value, env_value, flag_value = (sample(setting, n) for n in (1, 2, 3))
    config = {setting.toml_key: file_value}
    environ = {variable: env_value for variable in setting.env}
    flags = {setting.name: flag_value}
    if setting.name not in PARTNER:
        assert resolved({}, {}, {}) == setting.default
    assert resolved({}, {}, config) == parse(file_value)
    assert resolved({}, environ, config) == parse(env_value)
    assert resolved(flags, environ, config) == parse(flag_value)
    # the project's own variable first, then etcdctl's
    for rank, variable in enumerate(setting.env):
        later = {v: sample(setting, 10 + i) for i, v in enumerate(setting.env[rank:])}
        assert resolved({}, later, config) == parse(later[variable])


def test_settings_as_environment_gives_a_child_the_same_settings():
    settings = resolve_settings(
        {}, {}, {s.toml_key: sample(s, 4) for s in SETTINGS if s.name != "request_timeout_s"}
    )
    settings = dataclasses.replace(settings, request_timeout_s=1.2345678)
    assert resolve_settings({}, settings_as_environment(settings), {}) == settings
    assert resolve_settings({}, settings_as_environment(Settings()), {}) == Settings()


def help_of(main: Callable[[list[str]], object], argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--help"])
    assert exited.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # argparse's wrapping undone


PROGRAMS = {
    "discoveryctl": (discovery_cli.main, []),
    "discoveryctl lookup": (discovery_cli.main, ["lookup"]),
    "discovery-agent network": (agent_cli.main, ["network"]),
    "discovery-agent services": (agent_cli.main, ["services"]),
    "discovery-agent run": (agent_cli.main, ["run"]),
    "discovery-dns": (dns_cli.main, []),
}


@pytest.mark.parametrize("program", PROGRAMS)
def test_help_shows_every_setting_with_its_variables_and_default(program: str, capsys):
    main, argv = PROGRAMS[program]
    text = help_of(main, argv, capsys)
    for setting in SETTINGS:
        # etcdctl-like: "--flag METAVAR  what it is (env VARIABLE, default VALUE)"
        assert f"{setting.flag} {setting.metavar} {setting.full_help}" in text
        assert all(variable in text for variable in setting.env)
        assert f"default {setting.shown_default})" in text
    assert "SETTING_" not in text  # no argparse placeholders
    assert "--config FILE TOML settings file (env DISCOVERY_CONFIG" in text


def test_help_reads_like_etcdctls(capsys):
    text = help_of(discovery_cli.main, [], capsys)
    assert (
        "--etcd-endpoints URLS etcd client URLs, comma-separated (env DISCOVERY_ETCD_ENDPOINTS"
        " or ETCDCTL_ENDPOINTS, default http://127.0.0.1:2379)"
    ) in text
    assert "--request-timeout SECONDS deadline of one etcd request on one endpoint (env " in text


def readme_rows() -> list[str]:
    """The README's settings table, one row per setting, made from the table."""

    def code(text: str) -> str:
        return f"`{text}`"

    rows = [
        "| setting (TOML key) | flag | environment | default | what it is |",
        "| --- | --- | --- | --- | --- |",
    ]
    for s in SETTINGS:
        default = "none" if s.default is None else code(s.shown_default)
        variables = ", ".join(map(code, s.env))
        rows.append(
            f"| {code(s.toml_key)} | {code(f'{s.flag} {s.metavar}')} | {variables} "
            f"| {default} | {s.help} |"
        )
    return rows


def test_the_readme_lists_every_setting_as_the_table_says():
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    expected = "\n".join(readme_rows())
    assert expected in section, f"README's settings table should read:\n{expected}"

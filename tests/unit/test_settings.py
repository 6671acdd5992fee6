"""Settings precedence: flags > environment > config file > defaults."""

import argparse

import pytest

from discovery.errors import SettingsError
from discovery.settings import (
    Settings,
    add_settings_flags,
    flag_values,
    load_settings,
    resolve_settings,
)

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

"""flannel's config and lease formats, with flannel's defaults."""

import ipaddress
import json

import pytest

from discovery import flannel
from discovery.errors import SchemaError

NET = "/coreos.com/network"


def test_config_defaults_follow_flannel():
    config = flannel.parse_network_config(b'{"Network": "10.5.0.0/16"}')
    assert config.subnet_len == 24
    assert config.subnet_min == ipaddress.IPv4Network("10.5.1.0/24")  # the second subnet
    assert config.subnet_max == ipaddress.IPv4Network("10.5.255.0/24")  # the last one
    assert (config.backend_type, config.vni, config.port) == ("vxlan", 1, 8472)


def test_small_network_gets_half_sized_subnets():
    config = flannel.parse_network_config(b'{"Network": "10.5.0.0/24"}')
    assert config.subnet_len == 25


def test_config_round_trips():
    raw = b'{"Network":"10.6.0.0/16","SubnetLen":26,"Backend":{"Type":"vxlan","VNI":7,"Port":4789}}'
    config = flannel.parse_network_config(raw)
    assert flannel.parse_network_config(flannel.encode_network_config(config)) == config


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("not json", "not JSON"),
        ("{}", "Network is missing"),
        ('{"Network": 5}', "Network must be str"),
        ('{"Network": "10.5.0.0/33"}', "Network"),
        ('{"Network": "10.5.0.0/16", "SubnetLen": 12}', "SubnetLen 12"),
        ('{"Network": "10.5.0.0/16", "SubnetMin": "10.9.0.0"}', "SubnetMin 10.9.0.0/24 is outside"),
        (
            '{"Network": "10.5.0.0/16", "SubnetMin": "10.5.9.0", "SubnetMax": "10.5.2.0"}',
            "above SubnetMax",
        ),
        ('{"Network": "10.5.0.0/16", "Backend": {"Type": "udp"}}', "Backend.Type 'udp'"),
        ('{"Network": "10.5.0.0/16", "Backend": {"VNI": 0}}', "Backend.VNI"),
        ('{"Network": "10.5.0.0/16", "Backend": {"Port": 70000}}', "Backend.Port"),
    ],
)
def test_bad_config_names_the_field(raw, reason):
    with pytest.raises(SchemaError, match=reason):
        flannel.parse_network_config(raw)


def test_subnet_keys_use_flannels_spelling():
    subnet = ipaddress.IPv4Network("10.5.1.0/24")
    key = flannel.subnet_key(NET, subnet)
    assert key == "/coreos.com/network/subnets/10.5.1.0-24"
    assert flannel.parse_subnet_key(NET, key) == subnet


@pytest.mark.parametrize(
    ("suffix", "reason"),
    [
        ("10.5.1.0-33", "over 32"),
        ("10.5.1.0/24", "expected"),
        ("10.5.1.1-24", "host bits set"),
        ("10.5.1-24", "10.5.1-24"),
        ("10.5.1.0-", "expected"),
    ],
)
def test_bad_subnet_keys_are_rejected(suffix, reason):
    with pytest.raises(SchemaError, match=reason):
        flannel.parse_subnet_key(NET, f"{NET}/subnets/{suffix}")


def test_lease_value_is_flannels_json_and_parses_back():
    lease = flannel.SubnetLease(
        ipaddress.IPv4Network("10.5.1.0/24"),
        ipaddress.IPv4Address("192.168.100.11"),
        "7a:1b:2c:3d:4e:5f",
    )
    raw = flannel.encode_lease_value(lease)
    assert json.loads(raw) == {
        "PublicIP": "192.168.100.11",
        "BackendType": "vxlan",
        "BackendData": {"VNI": 1, "VtepMAC": "7a:1b:2c:3d:4e:5f"},
    }
    assert flannel.parse_lease(NET, flannel.subnet_key(NET, lease.subnet), raw) == lease


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("{", "not JSON"),
        ('{"PublicIP": "x", "BackendData": {}}', "PublicIP 'x'"),
        ('{"PublicIP": "10.0.0.1", "BackendData": 3}', "BackendData must be"),
        ('{"PublicIP": "10.0.0.1", "BackendData": {"VtepMAC": "zz"}}', "VtepMAC 'zz'"),
    ],
)
def test_bad_lease_values_are_rejected(raw, reason):
    with pytest.raises(SchemaError, match=reason):
        flannel.parse_lease(NET, f"{NET}/subnets/10.5.1.0-24", raw)

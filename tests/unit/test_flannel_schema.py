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


@pytest.mark.parametrize(
    ("network", "subnet_len", "subnet_min", "subnet_max"),
    [
        # flannel (pkg/subnet/config.go): a /24 per host from a /22 up ...
        ("10.5.0.0/22", 24, "10.5.1.0/24", "10.5.3.0/24"),
        # ... else the Network's length + 2, the first subnet never leased
        ("10.5.0.0/23", 25, "10.5.0.128/25", "10.5.1.128/25"),
        ("10.5.0.0/24", 26, "10.5.0.64/26", "10.5.0.192/26"),
        ("10.5.0.0/28", 30, "10.5.0.4/30", "10.5.0.12/30"),
    ],
)
def test_default_subnet_len_and_range_are_flannels(network, subnet_len, subnet_min, subnet_max):
    config = flannel.parse_network_config(json.dumps({"Network": network}))
    assert config.subnet_len == subnet_len
    assert config.subnet_min == ipaddress.IPv4Network(subnet_min)
    assert config.subnet_max == ipaddress.IPv4Network(subnet_max)


def test_subnet_len_zero_means_the_default_as_in_flannel():
    config = flannel.parse_network_config(b'{"Network": "10.5.0.0/16", "SubnetLen": 0}')
    assert config.subnet_len == 24


def test_config_round_trips():
    raw = b'{"Network":"10.6.0.0/16","SubnetLen":26,"Backend":{"Type":"vxlan","VNI":7,"Port":4789}}'
    config = flannel.parse_network_config(raw)
    assert flannel.parse_network_config(flannel.encode_network_config(config)) == config


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("not json", "not JSON"),
        ("{}", "Network is missing"),
        ('{"Network": "10.5.0.0/29"}', "too small; the smallest is a /28"),
        ('{"Network": "10.5.0.0/24", "SubnetLen": 25}', "fewer than four subnets"),
        ('{"Network": "10.5.0.0/16", "SubnetLen": 31}', "at most 30"),
        ('{"Network": "10.5.0.0/16", "SubnetMin": "10.5.1.7"}', "SubnetMin"),
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
    raw = flannel.encode_subnet_lease(lease)
    assert json.loads(raw) == {
        "PublicIP": "192.168.100.11",
        "BackendType": "vxlan",
        "BackendData": {"VNI": 1, "VtepMAC": "7a:1b:2c:3d:4e:5f"},
    }
    assert flannel.parse_subnet_lease(NET, flannel.subnet_key(NET, lease.subnet), raw) == lease


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("{", "not JSON"),
        ('{"PublicIP": "x", "BackendData": {}}', "PublicIP 'x'"),
        ('{"PublicIP": 3232235531, "BackendData": {}}', "PublicIP 3232235531 is invalid"),
        ("[" * 50_000, "nests too deeply"),
        ('{"PublicIP": ' + "9" * 5001 + "}", "a number of 5001 characters"),
        ('{"PublicIP": "10.0.0.1", "BackendData": {"VtepMAC": "' + "a" * 70_000 + '"}}', "bytes"),
        (b'{"PublicIP": "\xff"}', "not UTF-8"),
        ('{"PublicIP": NaN}', "NaN is not a JSON number"),
        ('{"PublicIP": "10.0.0.1", "BackendData": 3}', "BackendData must be"),
        ('{"PublicIP": "10.0.0.1", "BackendData": {"VtepMAC": "zz"}}', "VtepMAC 'zz'"),
    ],
)
def test_bad_lease_values_are_rejected(raw, reason):
    with pytest.raises(SchemaError, match=reason):
        flannel.parse_subnet_lease(NET, f"{NET}/subnets/10.5.1.0-24", raw)


# ---------------------------------------------------------------- screening


CONFIG = flannel.parse_network_config(b'{"Network": "10.5.0.0/16"}')


def lease(subnet: str, public_ip: str = "192.168.100.12", mac: str = "7a:00:00:00:00:02", **kw):
    return flannel.SubnetLease(
        ipaddress.IPv4Network(subnet), ipaddress.IPv4Address(public_ip), mac, **kw
    )


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        # the example: a lease for the whole Network, programmed as a route
        (lease("10.5.0.0/16", "192.168.100.99"), "not a /24"),
        (lease("10.6.1.0/24"), "outside Network 10.5.0.0/16"),
        (lease("10.5.1.0/25"), "not a /24"),
        (lease("10.5.2.0/24", vni=2), "VNI 2 is not the config's VNI 1"),
        (lease("10.5.2.0/24", backend_type="udp"), "BackendType 'udp'"),
        (lease("10.5.2.0/24", "0.0.0.0"), "PublicIP 0.0.0.0 is not a unicast"),
        (lease("10.5.2.0/24", "127.0.0.1"), "not a unicast"),
        (lease("10.5.2.0/24", "224.0.0.5"), "not a unicast"),
        (lease("10.5.2.0/24", "255.255.255.255"), "not a unicast"),
        (lease("10.5.2.0/24", "10.5.9.9"), "inside the overlay Network"),
        (lease("10.5.2.0/24", mac="01:00:5e:00:00:01"), "not a unicast MAC"),
        (lease("10.5.2.0/24", mac="00:00:00:00:00:00"), "not a unicast MAC"),
    ],
)
def test_a_lease_that_does_not_fit_the_config_is_refused_with_its_reason(bad, reason):
    good = lease("10.5.1.0/24", "192.168.100.11", "7a:00:00:00:00:01")
    valid, problems = flannel.screen_subnet_leases(CONFIG, {"good": good, "bad": bad})
    assert valid == {"good": good}
    assert reason in problems["bad"]


def test_leases_sharing_a_vtep_mac_are_all_refused_until_one_is_left():
    one = lease("10.5.1.0/24", "192.168.100.11", "7a:00:00:00:00:09")
    two = lease("10.5.2.0/24", "192.168.100.12", "7a:00:00:00:00:09")
    three = lease("10.5.3.0/24", "192.168.100.13", "7a:00:00:00:00:03")
    valid, problems = flannel.screen_subnet_leases(CONFIG, {"1": one, "2": two, "3": three})
    assert valid == {"3": three}
    assert problems == {
        "1": "VtepMAC 7a:00:00:00:00:09 is also claimed by 10.5.2.0/24",
        "2": "VtepMAC 7a:00:00:00:00:09 is also claimed by 10.5.1.0/24",
    }
    valid, problems = flannel.screen_subnet_leases(CONFIG, {"1": one, "3": three})
    assert (valid, problems) == ({"1": one, "3": three}, {})


SUBNET_ENV = "FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.7.1/24\nFLANNEL_MTU=1450\n"


@pytest.mark.parametrize(("ipmasq", "docker_masquerades"), [("true", False), ("false", True)])
def test_docker_options_from_subnet_env_follow_mk_docker_opts(ipmasq, docker_masquerades):
    values = flannel.parse_subnet_env(f"{SUBNET_ENV}FLANNEL_IPMASQ={ipmasq}\n")
    options = flannel.docker_options(values)
    # docker0 takes the lease's first half, Docker's address pool the second
    assert options.bip == ipaddress.IPv4Interface("10.5.7.1/25")
    assert (str(options.bip.ip), options.mtu) == ("10.5.7.1", 1450)
    assert options.ip_masq is docker_masquerades
    expected = {
        "bip": "10.5.7.1/25",
        "mtu": 1450,
        "default-address-pools": [{"base": "10.5.7.128/25", "size": 28}],
    }
    if not docker_masquerades:
        expected["ip-masq"] = False  # flannel masquerades, so Docker must not
    assert options.daemon_json() == expected
    assert options.flags() == [
        "--bip=10.5.7.1/25",
        "--mtu=1450",
        "--default-address-pool=base=10.5.7.128/25,size=28",
    ]


@pytest.mark.parametrize(
    ("lease", "bridge", "pool", "size"),
    [
        ("10.5.7.0/24", "10.5.7.0/25", "10.5.7.128/25", 28),
        ("10.5.16.0/20", "10.5.16.0/21", "10.5.24.0/21", 24),
        ("10.5.7.64/26", "10.5.7.64/27", "10.5.7.96/27", 28),
    ],
)
def test_a_lease_is_split_between_docker0_and_docker_s_address_pool(lease, bridge, pool, size):
    bridge_net, address_pool = flannel.split_lease(ipaddress.IPv4Network(lease))
    assert address_pool is not None
    assert (str(bridge_net), str(address_pool.base), address_pool.size) == (bridge, pool, size)
    # every network Docker can cut from the pool is inside the lease, none on docker0's
    networks = list(address_pool.base.subnets(new_prefix=address_pool.size))
    assert all(n.subnet_of(ipaddress.IPv4Network(lease)) for n in networks)
    assert not any(n.overlaps(bridge_net) for n in networks)


def test_a_lease_too_small_to_cut_stays_whole_on_docker0():
    lease = ipaddress.IPv4Network("10.5.7.0/27")
    assert flannel.split_lease(lease) == (lease, None)
    options = flannel.docker_options_for_lease(lease, 1450)
    assert "default-address-pools" not in options.daemon_json()
    assert str(options.bip) == "10.5.7.1/27"


@pytest.mark.parametrize(
    "values",
    [{}, {"FLANNEL_SUBNET": "10.5.7.1/24"}, {"FLANNEL_SUBNET": "x", "FLANNEL_MTU": "1450"},
     {"FLANNEL_SUBNET": "10.5.7.1/24", "FLANNEL_MTU": "big"}],
)  # fmt: skip
def test_docker_options_need_a_subnet_and_an_mtu(values):
    with pytest.raises(SchemaError, match="lacks a valid FLANNEL_SUBNET/FLANNEL_MTU"):
        flannel.docker_options(values)

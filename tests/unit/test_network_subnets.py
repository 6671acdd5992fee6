"""Subnet arithmetic, the choice of a subnet, and network config validation (pure)."""

import ipaddress
import random

import pytest

from agent.network.errors import SubnetExhausted
from agent.network.subnets import (
    choose_subnet,
    in_range,
    index_of,
    pick_free_subnet,
    random_vtep_mac,
    stale_own_subnet_leases,
    subnet_at,
    subnet_count,
)
from discovery import flannel
from discovery.errors import SchemaError
from discovery.flannel import SubnetLease

N = ipaddress.IPv4Network
A = ipaddress.IPv4Address
ME = A("192.168.213.11")
OTHER = A("192.168.213.12")


def config(raw: str) -> flannel.NetworkConfig:
    return flannel.parse_network_config(raw)


def lease(subnet: str, public_ip: ipaddress.IPv4Address = OTHER, **kw) -> SubnetLease:
    return SubnetLease(N(subnet), public_ip, "0e:00:00:00:00:01", **kw)


def leases(*items: SubnetLease) -> dict:
    return {item.subnet: item for item in items}


B16 = config('{"Network": "10.5.0.0/16"}')


@pytest.mark.parametrize(
    ("raw", "count", "first", "last"),
    [
        ('{"Network": "10.5.0.0/16"}', 255, "10.5.1.0/24", "10.5.255.0/24"),
        ('{"Network": "10.5.0.0/22"}', 3, "10.5.1.0/24", "10.5.3.0/24"),
        ('{"Network": "10.5.0.0/22", "SubnetMin": "10.5.0.0"}', 4, "10.5.0.0/24", "10.5.3.0/24"),
        ('{"Network": "10.5.0.0/24"}', 3, "10.5.0.64/26", "10.5.0.192/26"),
        ('{"Network": "10.0.0.0/8", "SubnetLen": 28}', 2**20 - 1,
         "10.0.0.16/28", "10.255.255.240/28"),
        (
            '{"Network": "10.5.0.0/16", "SubnetMin": "10.5.10.0", "SubnetMax": "10.5.19.0"}',
            10, "10.5.10.0/24", "10.5.19.0/24",
        ),
    ],
)  # fmt: skip
def test_subnet_range_follows_flannel_defaults(raw, count, first, last):
    cfg = config(raw)
    assert subnet_count(cfg) == count
    assert subnet_at(cfg, 0) == N(first)
    assert subnet_at(cfg, count - 1) == N(last)
    assert index_of(cfg, N(last)) == count - 1


@pytest.mark.parametrize(
    ("subnet", "expected"),
    [
        ("10.5.0.0/24", False),  # the first subnet is left out by default
        ("10.5.1.0/24", True),
        ("10.5.255.0/24", True),
        ("10.5.1.0/25", False),  # wrong length
        ("10.6.1.0/24", False),  # outside the network
    ],
)
def test_in_range(subnet, expected):
    assert in_range(B16, N(subnet)) is expected


def test_subnet_at_rejects_out_of_range_index():
    with pytest.raises(IndexError):
        subnet_at(B16, 255)


def test_pick_free_only_ever_picks_free_subnets_and_reaches_all_of_them():
    cfg = config('{"Network": "10.5.0.0/16", "SubnetMin": "10.5.1.0", "SubnetMax": "10.5.8.0"}')
    taken = {N("10.5.1.0/24"), N("10.5.4.0/24"), N("10.5.8.0/24"), N("10.9.0.0/24")}
    rng = random.Random(7)
    seen = {pick_free_subnet(cfg, taken, rng) for _ in range(400)}
    assert seen == {N(f"10.5.{i}.0/24") for i in (2, 3, 5, 6, 7)}


def test_pick_free_returns_none_when_full():
    cfg = config('{"Network": "10.5.0.0/22"}')
    taken = [subnet_at(cfg, i) for i in range(subnet_count(cfg))]
    assert pick_free_subnet(cfg, taken, random.Random(1)) is None


def test_pick_free_on_a_huge_range_does_not_enumerate():
    cfg = config('{"Network": "10.0.0.0/8", "SubnetLen": 30}')
    picked = pick_free_subnet(cfg, [], random.Random(3))
    assert picked is not None and in_range(cfg, picked)


def test_choose_reuses_this_hosts_valid_lease_first():
    current = leases(lease("10.5.9.0/24", ME), lease("10.5.1.0/24"))
    choice = choose_subnet(B16, current, ME, N("10.5.3.0/24"), random.Random(1))
    assert (choice.subnet, choice.reason) == (N("10.5.9.0/24"), "existing")


@pytest.mark.parametrize(
    "stale",
    [
        lease("10.5.9.0/25", ME),  # wrong size for the config
        lease("10.5.9.0/24", ME, vni=2),  # another VNI
        lease("10.5.0.0/24", ME),  # below SubnetMin
    ],
)
def test_choose_ignores_this_hosts_lease_when_no_longer_valid(stale):
    choice = choose_subnet(B16, leases(stale), ME, None, random.Random(1))
    assert choice.reason == "random"


def test_choose_takes_the_remembered_subnet_when_free():
    choice = choose_subnet(
        B16, leases(lease("10.5.1.0/24")), ME, N("10.5.3.0/24"), random.Random(1)
    )
    assert (choice.subnet, choice.reason) == (N("10.5.3.0/24"), "remembered")


@pytest.mark.parametrize("remembered", ["10.5.1.0/24", "10.6.3.0/24", "10.5.3.0/25"])
def test_choose_skips_a_remembered_subnet_taken_or_out_of_range(remembered):
    current = leases(lease("10.5.1.0/24"))
    choice = choose_subnet(B16, current, ME, N(remembered), random.Random(1))
    assert choice.reason == "random"
    assert choice.subnet not in current and in_range(B16, choice.subnet)


def test_exhaustion_is_one_clear_error():
    cfg = config('{"Network": "10.5.0.0/22", "SubnetMin": "10.5.0.0"}')
    full = leases(*(lease(f"10.5.{i}.0/24") for i in range(4)))
    with pytest.raises(SubnetExhausted) as caught:
        choose_subnet(cfg, full, ME, None, random.Random(1))
    message = str(caught.value)
    assert "all 4 /24 subnets" in message and "10.5.0.0/22" in message


def test_stale_own_leases_are_all_ours_but_the_kept_one():
    current = leases(
        lease("10.5.1.0/24", ME),
        lease("10.5.2.0/24", ME),
        lease("10.5.3.0/24"),
        lease("10.5.4.0/25", ME),
    )
    assert stale_own_subnet_leases(current, ME, N("10.5.1.0/24")) == [
        N("10.5.2.0/24"),
        N("10.5.4.0/25"),
    ]


def test_random_vtep_mac_is_locally_administered_unicast():
    for seed in range(50):
        mac = random_vtep_mac(random.Random(seed))
        first = int(mac.split(":")[0], 16)
        assert first & 0x02 and not first & 0x01
        assert len(mac) == 17


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ('{"Network": "10.5.0.1/16"}', "Network"),  # host bits set
        ('{"Network": "10.5.0.0/16", "SubnetLen": 31}', "SubnetLen 31"),
        ('{"Network": "10.5.0.0/16", "SubnetLen": "24"}', "SubnetLen must be int"),
        ('{"Network": "10.5.0.0/16", "SubnetMax": "10.6.0.0"}', "SubnetMax 10.6.0.0/24 is outside"),
        ('{"Network": "10.5.0.0/16", "SubnetMin": "10.5.1.7"}', "SubnetMin"),
        ('{"Network": "10.5.0.0/16", "Backend": []}', "Backend must be a JSON object"),
        ('{"Network": "10.5.0.0/16", "Backend": {"VNI": true}}', "Backend.VNI"),
        ('{"Network": "10.5.0.0/16", "Backend": {"Type": "host-gw"}}', "Backend.Type"),
        ("[]", "JSON object"),
    ],
)
def test_invalid_config_names_the_field(raw, field):
    with pytest.raises(SchemaError, match=field):
        config(raw)


@pytest.mark.parametrize(
    ("raw", "subnet_len", "vni", "port"),
    [
        ('{"Network": "10.5.0.0/22"}', 24, 1, 8472),
        ('{"Network": "10.5.0.0/24"}', 26, 1, 8472),
        (
            '{"Network": "10.5.0.0/16", "Backend": {"Type": "vxlan", "VNI": 42, "Port": 4789}}',
            24,
            42,
            4789,
        ),
    ],
)
def test_config_defaults(raw, subnet_len, vni, port):
    cfg = config(raw)
    assert (cfg.subnet_len, cfg.vni, cfg.port) == (subnet_len, vni, port)

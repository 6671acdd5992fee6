"""Tunnel reports (discovery.tunnels): the format, hostile values, and what they prove."""

from __future__ import annotations

import ipaddress

import pytest

from agent.network.desired import FdbEntry, KernelEntries, NeighbourEntry, RouteEntry
from agent.network.observed import tunnel_report
from discovery.errors import SchemaError
from discovery.flannel import SubnetLease
from discovery.tunnels import (
    encode_tunnel_report,
    observed_key,
    parse_tunnel_report,
    tunnel_problems,
)

PREFIX = "/coreos.com/network"
HOST1 = SubnetLease(
    ipaddress.IPv4Network("10.5.1.0/24"), ipaddress.IPv4Address("192.168.100.11"),
    "0e:00:00:00:00:01",
)  # fmt: skip
HOST2 = SubnetLease(
    ipaddress.IPv4Network("10.5.2.0/24"), ipaddress.IPv4Address("192.168.100.12"),
    "0e:00:00:00:00:02",
)  # fmt: skip


def entries_for(*peers: SubnetLease) -> KernelEntries:
    return KernelEntries(
        frozenset(NeighbourEntry(p.subnet.network_address, p.vtep_mac) for p in peers),
        frozenset(FdbEntry(p.vtep_mac, p.public_ip) for p in peers),
        frozenset(RouteEntry(p.subnet, p.subnet.network_address) for p in peers),
    )


def test_a_report_round_trips_and_has_one_spelling() -> None:
    report = tunnel_report(HOST1, "flannel.1", entries_for(HOST2))
    key = observed_key(PREFIX, HOST1.subnet)
    assert key == "/coreos.com/network/observed/10.5.1.0-24"
    raw = encode_tunnel_report(report)
    assert parse_tunnel_report(PREFIX, key, raw) == report
    # The same kernel state is the same bytes, whatever order netlink listed it in.
    again = tunnel_report(HOST1, "flannel.1", entries_for(HOST2))
    assert encode_tunnel_report(again) == raw


def test_a_complete_side_has_no_problems_and_each_missing_entry_is_named() -> None:
    full = tunnel_report(HOST1, "flannel.1", entries_for(HOST2))
    assert tunnel_problems(full, HOST2) == []
    empty = tunnel_report(HOST1, "flannel.1", KernelEntries())
    assert tunnel_problems(empty, HOST2) == [
        "no route to 10.5.2.0/24",
        "no neighbour entry for 10.5.2.0",
        "no FDB entry for 0e:00:00:00:00:02",
    ]
    # Entries left over from an older lease of the peer (new MAC, new underlay address).
    moved = SubnetLease(HOST2.subnet, ipaddress.IPv4Address("192.168.100.99"), "0e:00:00:00:00:09")
    assert tunnel_problems(full, moved) == [
        "neighbour 10.5.2.0 is 0e:00:00:00:00:02, the lease says 0e:00:00:00:00:09",
        "no FDB entry for 0e:00:00:00:00:09",
    ]
    stale_fdb = tunnel_report(
        HOST1, "flannel.1",
        KernelEntries(entries_for(HOST2).neighbours,
                      frozenset({FdbEntry(HOST2.vtep_mac, moved.public_ip)}),
                      entries_for(HOST2).routes),
    )  # fmt: skip
    assert tunnel_problems(stale_fdb, HOST2) == [
        "FDB sends 0e:00:00:00:00:02 to 192.168.100.99, the lease says 192.168.100.12"
    ]


@pytest.mark.parametrize(
    ("key", "raw", "said"),
    [
        (f"{PREFIX}/observed/10.5.1.0-99", b"{}", "prefix length"),
        (f"{PREFIX}/observed/10.5.1.0-24", b"[" * 50_000, "nest"),
        (f"{PREFIX}/observed/10.5.1.0-24", b"]]]", "JSON"),
        (f"{PREFIX}/observed/10.5.1.0-24", b'{"PublicIP": "x", "VtepMAC": "0e:00:00:00:00:01"}',
         "PublicIP"),
        (f"{PREFIX}/observed/10.5.1.0-24", b'{"PublicIP": "1.2.3.4", "VtepMAC": 7}', "VtepMAC"),
        (f"{PREFIX}/observed/10.5.1.0-24",
         b'{"PublicIP": "1.2.3.4", "VtepMAC": "0e:00:00:00:00:01", "Routes": []}', "Routes"),
        (f"{PREFIX}/observed/10.5.1.0-24",
         b'{"PublicIP": "1.2.3.4", "VtepMAC": "0e:00:00:00:00:01", "Routes": {"x": "1.2.3.4"}}',
         "not a network"),
        (f"{PREFIX}/observed/10.5.1.0-24",
         b'{"PublicIP": "1.2.3.4", "VtepMAC": "0e:00:00:00:00:01", "Fdb": {"zz": "1.2.3.4"}}',
         "MAC"),
        (f"{PREFIX}/observed/10.5.1.0-24",
         b'{"PublicIP": "1.2.3.4", "VtepMAC": "0e:00:00:00:00:01", "Device": "' + b"d" * 99
         + b'"}', "Device"),
    ],
)  # fmt: skip
def test_a_hostile_report_is_one_schema_error_naming_what_was_wrong(
    key: str, raw: bytes, said: str
) -> None:
    with pytest.raises(SchemaError, match=said):
        parse_tunnel_report(PREFIX, key, raw)


def test_a_report_with_too_many_entries_is_refused() -> None:
    routes = ",".join(f'"10.{i // 250}.{i % 250}.0/24": "10.0.0.1"' for i in range(1001))
    raw = (
        '{"PublicIP": "1.2.3.4", "VtepMAC": "0e:00:00:00:00:01", "Routes": {' + routes + "}}"
    ).encode()
    with pytest.raises(SchemaError, match="limit is 1000"):
        parse_tunnel_report(PREFIX, f"{PREFIX}/observed/10.5.1.0-24", raw)

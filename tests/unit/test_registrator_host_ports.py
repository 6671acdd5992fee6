"""Host-address mode: published ports registered at the host's address (host_ports.py).

The ``NetworkSettings.Ports`` values below are what dockerd 20.10 reports for
``-p 8080:80``, ``-P``, ``-p 127.0.0.1:8081:80`` and ``-p 8082:80/udp``.
"""

from __future__ import annotations

from typing import Any

import pytest

from agent.registrator.desired import desired_registrations
from agent.registrator.host_ports import (
    NOTHING_PUBLISHED,
    HostPort,
    NotOffered,
    binding_problem,
    binding_text,
    container_address_mode,
    published_host_ports,
)
from agent.registrator.naming import NamingRefused
from tests.unit.test_registrator_desired import LEASE, NOW, inspect_data

HOST1 = "192.168.100.11"
EVERYWHERE_8080 = [{"HostIp": "0.0.0.0", "HostPort": "8080"}, {"HostIp": "::", "HostPort": "8080"}]
# -P: Docker picks the host port; the same place holds it once the container runs.
RANDOM_32768 = [{"HostIp": "0.0.0.0", "HostPort": "32768"}, {"HostIp": "::", "HostPort": "32768"}]
LOOPBACK_8081 = [{"HostIp": "127.0.0.1", "HostPort": "8081"}]


@pytest.mark.parametrize(
    ("host_ip", "problem"),
    [
        ("", None),  # no address given: every address
        ("0.0.0.0", None),
        (HOST1, None),  # -p 192.168.100.11:8080:80
        ("::", "published on :: (IPv6 only), and the host's address 192.168.100.11 is IPv4"),
        ("127.0.0.1", "published only on 127.0.0.1 (loopback): reachable from this host only"),
        ("127.0.0.53", "published only on 127.0.0.53 (loopback): reachable from this host only"),
        ("::1", "published only on ::1 (loopback): reachable from this host only"),
        (
            "10.5.75.1",  # the bridge's own address
            "published only on 10.5.75.1, not on the host's address 192.168.100.11 "
            "that the record would carry",
        ),
        ("not-an-ip", "published on 'not-an-ip', which is not an IP address"),
    ],
)
def test_binding_problem(host_ip: str, problem: str | None) -> None:
    assert binding_problem(host_ip, HOST1) == problem


def test_an_ipv6_host_address_takes_the_ipv6_wildcard() -> None:
    assert binding_problem("::", "fd00::11") is None
    assert binding_problem("0.0.0.0", "fd00::11") is not None


@pytest.mark.parametrize(
    ("host_ip", "port", "text"),
    [("127.0.0.1", "8081", "127.0.0.1:8081"), ("::", "8080", "[::]:8080"), ("", "80", "*:80")],
)
def test_binding_text(host_ip: str, port: str, text: str) -> None:
    assert binding_text(host_ip, port) == text


PORTS_TABLE: list[tuple[str, dict[str, Any], list[tuple[int, str]], list[Any], list[Any]]] = [
    (
        "-p 8080:80: one record, the IPv6 twin is the same port",
        {"80/tcp": EVERYWHERE_8080},
        [(80, "tcp")],
        [HostPort(80, "tcp", 8080)],
        [],
    ),
    (
        "-P: the port Docker chose",
        {"80/tcp": RANDOM_32768},
        [(80, "tcp")],
        [HostPort(80, "tcp", 32768)],
        [],
    ),
    (
        "-p 127.0.0.1:8081:80: left out, with why",
        {"80/tcp": LOOPBACK_8081},
        [(80, "tcp")],
        [],
        [
            NotOffered(
                "80/tcp",
                "127.0.0.1:8081",
                "published only on 127.0.0.1 (loopback): reachable from this host only",
            )
        ],
    ),
    (
        "one port on loopback and on every address: the reachable binding only",
        {"80/tcp": [*LOOPBACK_8081, *EVERYWHERE_8080]},
        [(80, "tcp")],
        [HostPort(80, "tcp", 8080)],
        [NotOffered("80/tcp", "127.0.0.1:8081", binding_problem("127.0.0.1", HOST1) or "")],
    ),
    (
        "tcp and udp on the same number: two records",
        {"53/tcp": EVERYWHERE_8080, "53/udp": EVERYWHERE_8080},
        [(53, "tcp"), (53, "udp")],
        [HostPort(53, "tcp", 8080), HostPort(53, "udp", 8080)],
        [],
    ),
    (
        "an exposed port not published is left out silently",
        {"80/tcp": EVERYWHERE_8080, "9090/tcp": None},
        [(80, "tcp"), (9090, "tcp")],
        [HostPort(80, "tcp", 8080)],
        [],
    ),
    (
        "nothing published: the container, once",
        {"80/tcp": None},
        [(80, "tcp")],
        [],
        [NotOffered("", "", NOTHING_PUBLISHED)],
    ),
    (
        "no port at all",
        {},
        [],
        [],
        [NotOffered("", "", NOTHING_PUBLISHED)],
    ),
]


@pytest.mark.parametrize(
    ("published", "ports", "offered", "not_offered"),
    [row[1:] for row in PORTS_TABLE],
    ids=[row[0] for row in PORTS_TABLE],
)
def test_published_host_ports(
    published: dict[str, Any],
    ports: list[tuple[int, str]],
    offered: list[HostPort],
    not_offered: list[NotOffered],
) -> None:
    assert published_host_ports(published, ports, HOST1) == (offered, not_offered)


@pytest.mark.parametrize(
    ("labels", "default", "mode"),
    [
        ({}, "internal", "internal"),
        ({}, "host", "host"),
        ({"discovery.address": "host"}, "internal", "host"),
        ({"discovery.address": " Host "}, "internal", "host"),
        ({"discovery.address": "internal"}, "host", "internal"),
    ],
)
def test_container_address_mode(labels: dict[str, str], default: str, mode: str) -> None:
    assert container_address_mode(labels, default) == mode


def test_an_unknown_address_mode_is_refused_with_the_choices() -> None:
    with pytest.raises(
        NamingRefused, match=r"discovery\.address='hots': expected internal or host"
    ):
        container_address_mode({"discovery.address": "hots"}, "internal")


# ---------------------------------------------------------------- through desired_registrations


def rows(inspect: dict[str, Any], **kwargs: Any) -> list[tuple[str, str, int, str, str]]:
    desired = desired_registrations(inspect, "host1", registered_at=NOW, **kwargs)
    assert not desired.refused, desired.refused
    return [(e.service, e.address, e.port, e.protocol, e.port_name) for e in desired.endpoints]


def test_the_label_registers_the_node_ip_and_the_host_port() -> None:
    # docker run -d -p 8080:80 --label discovery.address=host ... on a lab host:
    # the agent's --node-ip is its host_address; the default mode stays internal.
    inspect = inspect_data(
        labels={"discovery.address": "host"},
        networks={"bridge": "10.5.75.2"},
        published={"80/tcp": EVERYWHERE_8080},
    )
    assert rows(inspect, host_address=HOST1, lease=LEASE) == [("web", HOST1, 8080, "tcp", "http")]
    # Without the label, the same container is registered at its own address.
    del inspect["Config"]["Labels"]["discovery.address"]
    assert rows(inspect, host_address=HOST1, lease=LEASE) == [
        ("web", "10.5.75.2", 80, "tcp", "http")
    ]


def test_advertise_ip_wins_over_the_host_address() -> None:
    inspect = inspect_data(published={"80/tcp": EVERYWHERE_8080})
    assert rows(inspect, host_address=HOST1, advertise_ip="192.168.56.11", address_mode="host") == [
        ("web", "192.168.56.11", 8080, "tcp", "http")
    ]


def test_the_label_internal_wins_over_the_agents_host_mode() -> None:
    inspect = inspect_data(
        labels={"discovery.address": "internal"},
        networks={"bridge": "10.5.75.2"},
        published={"80/tcp": EVERYWHERE_8080},
    )
    assert rows(inspect, host_address=HOST1, lease=LEASE, address_mode="host") == [
        ("web", "10.5.75.2", 80, "tcp", "http")
    ]


def test_publish_all_registers_the_random_ports() -> None:
    inspect = inspect_data(
        exposed=["80/tcp", "443/tcp"],
        published={
            "80/tcp": RANDOM_32768,
            "443/tcp": [{"HostIp": "0.0.0.0", "HostPort": "32769"}],
        },
    )
    inspect["HostConfig"]["PublishAllPorts"] = True
    assert rows(inspect, host_address=HOST1, address_mode="host") == [
        ("web", HOST1, 32768, "tcp", "http"),
        ("web", HOST1, 32769, "tcp", "https"),
    ]


def test_several_ports_follow_the_per_port_naming_rules() -> None:
    inspect = inspect_data(
        exposed=["80/tcp", "53/udp"],
        env=["SERVICE_80_NAME=front", "SERVICE_53_NAME=names", "SERVICE_53_TAGS=blue"],
        published={
            "80/tcp": EVERYWHERE_8080,
            "53/udp": [{"HostIp": "0.0.0.0", "HostPort": "5353"}],
        },
    )
    desired = desired_registrations(
        inspect, "host1", registered_at=NOW, host_address=HOST1, address_mode="host"
    )
    assert sorted(
        (e.service, e.address, e.port, e.protocol, e.tags) for e in desired.endpoints
    ) == [
        ("front", HOST1, 8080, "tcp", ()),
        ("names", HOST1, 5353, "udp", ("blue",)),
    ]


def test_a_port_ignored_by_its_variable_is_left_out() -> None:
    inspect = inspect_data(
        exposed=["80/tcp", "9090/tcp"],
        env=["SERVICE_9090_IGNORE=1"],
        published={
            "80/tcp": EVERYWHERE_8080,
            "9090/tcp": [{"HostIp": "0.0.0.0", "HostPort": "9090"}],
        },
    )
    assert rows(inspect, host_address=HOST1, address_mode="host") == [
        ("web", HOST1, 8080, "tcp", "http")
    ]


def test_a_loopback_only_port_is_not_registered_and_says_why() -> None:
    inspect = inspect_data(
        labels={"discovery.address": "host"}, published={"80/tcp": LOOPBACK_8081}
    )
    desired = desired_registrations(inspect, "host1", registered_at=NOW, host_address=HOST1)
    assert desired.endpoints == ()
    assert [(n.port, n.binding) for n in desired.not_offered] == [("80/tcp", "127.0.0.1:8081")]
    assert not desired.refused  # nothing wrong with its naming


def test_host_mode_needs_a_host_address() -> None:
    inspect = inspect_data(
        labels={"discovery.address": "host"}, published={"80/tcp": EVERYWHERE_8080}
    )
    desired = desired_registrations(inspect, "host1", registered_at=NOW)
    assert desired.endpoints == ()
    assert "--node-ip" in desired.refused


def test_a_bad_label_value_is_refused() -> None:
    inspect = inspect_data(labels={"discovery.address": "both"})
    desired = desired_registrations(inspect, "host1", registered_at=NOW, host_address=HOST1)
    assert desired.endpoints == ()
    assert "discovery.address='both'" in desired.refused


def test_a_host_network_container_in_host_mode_keeps_its_exposed_ports() -> None:
    inspect = inspect_data(networks={"host": ""}, network_mode="host")
    assert rows(inspect, host_address=HOST1, address_mode="host") == [
        ("web", HOST1, 80, "tcp", "http")
    ]


def test_records_of_the_two_modes_have_different_keys() -> None:
    # Switching a container's mode (a new container, since labels are fixed) never
    # leaves a record of the other mode under the same key.
    inspect = inspect_data(networks={"bridge": "10.5.75.2"}, published={"80/tcp": EVERYWHERE_8080})
    internal = desired_registrations(inspect, "host1", registered_at=NOW, host_address=HOST1)
    host = desired_registrations(
        inspect, "host1", registered_at=NOW, host_address=HOST1, address_mode="host"
    )
    assert set(internal.records("/p", "lab")).isdisjoint(host.records("/p", "lab"))

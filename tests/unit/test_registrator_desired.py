"""Desired registrations: container inspect data -> endpoint records.

The inspect dicts below follow the shape of a real ``docker inspect`` of a lab
container (dockerd 28, API 1.45), trimmed to the fields the agent reads plus a
few neighbours, so the test data looks like what the agent really receives.
"""

from __future__ import annotations

import copy
import ipaddress
from typing import Any

import pytest

from agent.registrator.desired import (
    Unreachable,
    container_addresses,
    container_health,
    desired_registrations,
    overlay_reachable,
    split_reachable,
    unreachable_advice,
)
from agent.registrator.host_ports import NOTHING_PUBLISHED

CID = "385f0d3550ce510b7937211190eb6e44c9d6c7f0e5bf318c3404e804a864d9e3"
NOW = "2026-11-23T10:00:00.000Z"


def inspect_data(
    *,
    name: str = "x1",
    image: str = "discovery-lab/web:0.1.0",
    labels: dict[str, str] | None = None,
    env: list[str] | None = None,
    exposed: list[str] | None = None,
    published: dict[str, list[dict[str, str]] | None] | None = None,
    networks: dict[str, str] | None = None,
    network_mode: str = "default",
    running: bool = True,
    paused: bool = False,
    health: str | None = None,
) -> dict[str, Any]:
    """A container's inspect data, shaped as dockerd 28 returns it."""
    networks = {"bridge": "172.17.0.2"} if networks is None else networks
    exposed = ["80/tcp"] if exposed is None else exposed
    ports: dict[str, Any] = {key: None for key in exposed}
    ports.update(published or {})
    state: dict[str, Any] = {
        "Status": "paused" if paused else ("running" if running else "exited"),
        "Running": running,
        "Paused": paused,
        "Restarting": False,
        "OOMKilled": False,
        "Dead": False,
        "Pid": 8453 if running else 0,
        "ExitCode": 0,
        "Error": "",
        "StartedAt": "2026-11-23T10:35:57.894409691Z",
        "FinishedAt": "0001-01-01T00:00:00Z",
    }
    config: dict[str, Any] = {
        "Hostname": CID[:12],
        "ExposedPorts": {key: {} for key in exposed} or None,
        "Env": [*(env or []), "PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
        "Cmd": ["/bin/lab-web"],
        "Image": image,
        "Labels": {
            "org.opencontainers.image.title": "discovery-lab/web",
            "org.opencontainers.image.version": "0.1.0",
            **(labels or {}),
        },
    }
    if health is not None:
        config["Healthcheck"] = {"Test": ["CMD-SHELL", "true"], "Interval": 1000000000}
        state["Health"] = {"Status": health, "FailingStreak": 0, "Log": []}
    return {
        "Id": CID,
        "Created": "2026-11-23T10:35:57.700Z",
        "Name": f"/{name}",
        "State": state,
        "Image": "sha256:" + "e" * 64,
        "Config": config,
        "HostConfig": {"NetworkMode": network_mode, "PortBindings": {}, "PublishAllPorts": False},
        "NetworkSettings": {
            "Bridge": "",
            "SandboxKey": "/tmp/reg3x/exec/netns/768aaaa2ecef",
            "Ports": ports,
            "IPAddress": networks.get("bridge", ""),
            "Networks": {
                net: {
                    "IPAMConfig": None,
                    "Aliases": None,
                    "NetworkID": "d8d5a749" + str(index) * 56,
                    "Gateway": address.rsplit(".", 1)[0] + ".1" if address else "",
                    "IPAddress": address,
                    "IPPrefixLen": 16 if address else 0,
                    "GlobalIPv6Address": "",
                    "MacAddress": "02:42:ac:11:00:02",
                }
                for index, (net, address) in enumerate(networks.items())
            },
        },
    }


def summary(inspect: dict[str, Any], **kwargs: Any) -> list[tuple[str, str, int, str, str]]:
    desired = desired_registrations(inspect, "host1", registered_at=NOW, **kwargs)
    assert not desired.refused, desired.refused
    return [(e.service, e.address, e.port, e.protocol, e.port_name) for e in desired.endpoints]


def test_one_port_one_network() -> None:
    assert summary(inspect_data()) == [("web", "172.17.0.2", 80, "tcp", "http")]


def test_record_carries_every_field() -> None:
    inspect = inspect_data(labels={"discovery.service": "shop", "discovery.tags": "blue"})
    desired = desired_registrations(inspect, "host1", registered_at=NOW, record_ttl_s=7)
    (endpoint,) = desired.endpoints
    assert endpoint.node == "host1"
    assert endpoint.container_id == CID
    assert endpoint.container_name == "x1"
    assert endpoint.image == "discovery-lab/web:0.1.0"
    assert endpoint.tags == ("blue",)
    assert endpoint.health == "passing"
    assert endpoint.registered_at == NOW
    assert endpoint.ttl == 7
    key = f"/skydns/lab/service/shop/{CID[:12]}-172-17-0-2-80tcp"
    assert list(desired.records("/skydns", "lab")) == [key]


def test_each_network_and_each_port() -> None:
    inspect = inspect_data(
        exposed=["80/tcp", "53/udp"], networks={"bridge": "172.17.0.2", "n2": "172.18.0.2"}
    )
    assert summary(inspect) == [
        ("web", "172.17.0.2", 53, "udp", "domain"),
        ("web", "172.17.0.2", 80, "tcp", "http"),
        ("web", "172.18.0.2", 53, "udp", "domain"),
        ("web", "172.18.0.2", 80, "tcp", "http"),
    ]


def test_no_ports_gives_an_a_record_endpoint() -> None:
    inspect = inspect_data(image="discovery-lab/base:0.1.0", exposed=[])
    assert summary(inspect) == [("base", "172.17.0.2", 0, "tcp", "")]


def test_unknown_port_is_named_by_number_and_sctp_is_left_out_with_a_note() -> None:
    inspect = inspect_data(exposed=["8081/tcp", "9/sctp"])
    desired = desired_registrations(inspect, "host1", registered_at=NOW)
    assert [(e.port, e.port_name) for e in desired.endpoints] == [(8081, "8081")]
    assert desired.notes == ("port 9/sctp left out: records carry only tcp and udp",)


def test_service_port_name_on_a_two_port_container() -> None:
    inspect = inspect_data(
        exposed=["80/tcp", "9090/tcp"],
        env=["SERVICE_80_NAME=shop", "SERVICE_9090_NAME=shop-metrics"],
    )
    assert summary(inspect) == [
        ("shop", "172.17.0.2", 80, "tcp", "http"),
        ("shop-metrics", "172.17.0.2", 9090, "tcp", "9090"),
    ]


def test_port_ignored_alone() -> None:
    inspect = inspect_data(exposed=["80/tcp", "9090/tcp"], env=["SERVICE_9090_IGNORE=1"])
    assert summary(inspect) == [("web", "172.17.0.2", 80, "tcp", "http")]


def test_every_port_ignored_means_ignored() -> None:
    inspect = inspect_data(env=["SERVICE_80_IGNORE=1"])
    desired = desired_registrations(inspect, "host1", registered_at=NOW)
    assert desired.endpoints == ()
    assert desired.ignored == "env SERVICE_80_IGNORE"


def test_ignored_container() -> None:
    desired = desired_registrations(
        inspect_data(labels={"discovery.ignore": "true"}), "host1", registered_at=NOW
    )
    assert (desired.endpoints, desired.refused) == ((), "")
    assert desired.ignored == "label discovery.ignore=true"


def test_invalid_name_refuses_the_container_with_the_reason() -> None:
    desired = desired_registrations(
        inspect_data(labels={"discovery.service": "%%%"}), "host1", registered_at=NOW
    )
    assert desired.endpoints == ()
    assert "no letters or digits" in desired.refused
    assert desired.container_name == "x1"


def test_invalid_per_port_name_refuses_the_whole_container() -> None:
    inspect = inspect_data(exposed=["80/tcp", "81/tcp"], env=["SERVICE_81_NAME=***"])
    desired = desired_registrations(inspect, "host1", registered_at=NOW)
    assert desired.endpoints == ()
    assert "SERVICE_81_NAME" in desired.refused


def test_dropped_tag_is_a_note_not_a_refusal() -> None:
    desired = desired_registrations(
        inspect_data(env=["SERVICE_TAGS=ok,@@"]), "host1", registered_at=NOW
    )
    assert desired.endpoints[0].tags == ("ok",)
    assert desired.notes == ("tag '@@' dropped: it cannot be made a DNS label",)


@pytest.mark.parametrize(
    ("running", "restarting"),
    [(False, False), (True, True)],
)
def test_not_running_gives_nothing(running: bool, restarting: bool) -> None:
    inspect = inspect_data(running=running)
    inspect["State"]["Restarting"] = restarting
    desired = desired_registrations(inspect, "host1", registered_at=NOW)
    assert (desired.endpoints, desired.refused, desired.ignored) == ((), "", "")


def test_no_network_is_refused() -> None:
    inspect = inspect_data(networks={"none": ""}, network_mode="none")
    desired = desired_registrations(inspect, "host1", registered_at=NOW)
    assert desired.endpoints == ()
    assert "no IP address" in desired.refused


def test_host_network_container_uses_the_host_address() -> None:
    inspect = inspect_data(networks={"host": ""}, network_mode="host")
    assert summary(inspect, host_address="10.0.0.5") == [("web", "10.0.0.5", 80, "tcp", "http")]


def test_ipv6_address_is_registered_too() -> None:
    inspect = inspect_data()
    inspect["NetworkSettings"]["Networks"]["bridge"]["GlobalIPv6Address"] = "fd00::2"
    assert [e[1] for e in summary(inspect)] == ["172.17.0.2", "fd00::2"]


# ---------------------------------------------------------------- host-address mode

PUBLISHED_80 = {
    "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}, {"HostIp": "::", "HostPort": "8080"}]
}


def test_host_mode_registers_the_published_port_once() -> None:
    inspect = inspect_data(published=PUBLISHED_80)
    assert summary(inspect, advertise_ip="192.168.56.11", address_mode="host") == [
        ("web", "192.168.56.11", 8080, "tcp", "http"),
    ]


def test_host_mode_leaves_out_unpublished_ports() -> None:
    inspect = inspect_data(exposed=["80/tcp", "9090/tcp"], published=PUBLISHED_80)
    assert summary(inspect, advertise_ip="192.168.56.11", address_mode="host") == [
        ("web", "192.168.56.11", 8080, "tcp", "http"),
    ]


def test_host_mode_without_published_ports_registers_nothing_and_says_why() -> None:
    desired = desired_registrations(
        inspect_data(), "host1", registered_at=NOW, advertise_ip="192.168.56.11",
        address_mode="host",
    )  # fmt: skip
    assert desired.endpoints == ()
    assert [n.reason for n in desired.not_offered] == [NOTHING_PUBLISHED]
    assert not desired.refused and not desired.ignored


def test_host_mode_naming_uses_the_container_port() -> None:
    inspect = inspect_data(published=PUBLISHED_80, env=["SERVICE_80_NAME=front"])
    assert summary(inspect, advertise_ip="192.168.56.11", address_mode="host")[0][0] == "front"


# ---------------------------------------------------------------- health


@pytest.mark.parametrize(
    ("paused", "health", "expected"),
    [
        (False, None, "passing"),
        (False, "starting", "starting"),
        (False, "healthy", "healthy"),
        (False, "unhealthy", "unhealthy"),
        (True, None, "paused"),
        (True, "healthy", "paused"),
    ],
)
def test_health(paused: bool, health: str | None, expected: str) -> None:
    inspect = inspect_data(paused=paused, health=health)
    assert container_health(inspect["State"]) == expected
    desired = desired_registrations(inspect, "host1", registered_at=NOW)
    assert {e.health for e in desired.endpoints} == {expected}


def test_rename_keeps_the_key_and_changes_the_name() -> None:
    before = desired_registrations(inspect_data(name="a"), "host1", registered_at=NOW)
    after = desired_registrations(inspect_data(name="b"), "host1", registered_at=NOW)
    assert list(before.records("/p", "lab")) == list(after.records("/p", "lab"))
    assert after.endpoints[0].container_name == "b"


def test_container_addresses_falls_back_to_the_old_field() -> None:
    inspect = copy.deepcopy(inspect_data())
    del inspect["NetworkSettings"]["Networks"]
    assert container_addresses(inspect) == ["172.17.0.2"]


# ---------------------------------------------------------------- reachable from other hosts

LEASE = ipaddress.IPv4Network("10.5.75.0/24")


@pytest.mark.parametrize(
    ("address", "reachable"),
    [
        ("10.5.75.2", True),  # the default bridge, whose --bip is the lease
        ("10.5.75.254", True),
        ("10.5.76.2", False),  # another host's lease: routed to that host, not here
        ("172.18.0.2", False),  # Docker's default pools: Compose's project network
        ("172.30.3.2", False),  # a user-defined bridge with a --subnet of its own
        ("fd00::2", False),  # the overlay carries IPv4 only
        ("not-an-address", False),
    ],
)
def test_overlay_reachable_is_inside_the_lease(address: str, reachable: bool) -> None:
    assert overlay_reachable(address, LEASE) is reachable


def test_split_reachable_names_the_network_of_each_unreachable_address() -> None:
    pairs = [("bridge", "10.5.75.3"), ("ex03-net", "172.30.3.2")]
    assert split_reachable(pairs, LEASE) == (["10.5.75.3"], [Unreachable("ex03-net", "172.30.3.2")])
    assert split_reachable(pairs, None) == (["10.5.75.3", "172.30.3.2"], [])


def test_a_container_on_the_default_bridge_inside_the_lease_is_registered() -> None:
    inspect = inspect_data(networks={"bridge": "10.5.75.2"})
    desired = desired_registrations(inspect, "host1", registered_at=NOW, lease=LEASE)
    assert [(e.address, e.port) for e in desired.endpoints] == [("10.5.75.2", 80)]
    assert desired.unreachable == ()


def test_a_container_only_outside_the_lease_is_not_registered_and_says_where() -> None:
    inspect = inspect_data(networks={"app_default": "172.18.0.2"})
    desired = desired_registrations(inspect, "host1", registered_at=NOW, lease=LEASE)
    assert desired.endpoints == ()
    assert desired.unreachable == (Unreachable("app_default", "172.18.0.2"),)
    assert not desired.refused  # not a naming problem: nothing to fix in its labels
    assert not desired.ignored


def test_a_container_on_two_networks_keeps_only_the_reachable_address() -> None:
    inspect = inspect_data(networks={"bridge": "10.5.75.3", "ex03-net": "172.30.3.2"})
    desired = desired_registrations(inspect, "host1", registered_at=NOW, lease=LEASE)
    assert [e.address for e in desired.endpoints] == ["10.5.75.3"]
    assert desired.unreachable == (Unreachable("ex03-net", "172.30.3.2"),)


def test_a_portless_container_outside_the_lease_gets_no_a_record_either() -> None:
    inspect = inspect_data(networks={"app_default": "172.18.0.2"}, exposed=[])
    desired = desired_registrations(inspect, "host1", registered_at=NOW, lease=LEASE)
    assert desired.endpoints == ()
    assert desired.unreachable == (Unreachable("app_default", "172.18.0.2"),)


def test_ipv6_address_is_left_out_when_the_lease_is_known() -> None:
    inspect = inspect_data(networks={"bridge": "10.5.75.2"})
    inspect["NetworkSettings"]["Networks"]["bridge"]["GlobalIPv6Address"] = "fd00::2"
    desired = desired_registrations(inspect, "host1", registered_at=NOW, lease=LEASE)
    assert [e.address for e in desired.endpoints] == ["10.5.75.2"]
    assert desired.unreachable == (Unreachable("bridge", "fd00::2"),)


def test_host_network_container_is_registered_at_the_host_whatever_the_lease() -> None:
    inspect = inspect_data(networks={"host": ""}, network_mode="host")
    assert summary(inspect, host_address="192.168.100.11", lease=LEASE) == [
        ("web", "192.168.100.11", 80, "tcp", "http")
    ]


def test_host_address_mode_is_not_filtered_by_the_lease() -> None:
    # A Compose container outside the lease, its port published: reachable at the host.
    inspect = inspect_data(networks={"app_default": "172.18.0.2"}, published=PUBLISHED_80)
    desired = desired_registrations(
        inspect, "host1", registered_at=NOW, advertise_ip="192.168.56.11", lease=LEASE,
        address_mode="host",
    )  # fmt: skip
    assert [(e.address, e.port) for e in desired.endpoints] == [("192.168.56.11", 8080)]
    assert desired.unreachable == ()


def test_an_ignored_container_is_not_reported_unreachable() -> None:
    inspect = inspect_data(networks={"app_default": "172.18.0.2"}, env=["SERVICE_IGNORE=1"])
    desired = desired_registrations(inspect, "host1", registered_at=NOW, lease=LEASE)
    assert desired.ignored
    assert desired.unreachable == ()


def test_the_advice_names_the_lease_and_both_ways_out() -> None:
    advice = unreachable_advice(LEASE)
    assert "10.5.75.0/24" in advice
    assert "docker network create --subnet" in advice
    assert "discovery.address=host" in advice

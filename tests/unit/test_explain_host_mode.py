"""explain for a record in host-address mode: a lab host's underlay address and port.

The facts in tests/unit/data/explain/host_mode_*.json are ``discoveryctl explain
tp -o facts`` of a local lab (underlay 192.168.245.0/24) where host1 ran ``docker
run -d -P --label discovery.address=host --label discovery.service=tp
discovery-lab/web:0.1.0``: the record is 192.168.245.11 (host1) port 32768.
Asked from host2 (A) and from host1 itself (SRV). The path must be the
underlay and Docker's DNAT rule, never the VXLAN overlay.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from labs.troubleshoot import explanation, facts, render
from labs.troubleshoot.explanation import DnatRule, dnat_rule_for, parse_dnat_rules

DATA = Path(__file__).parent / "data" / "explain"
HOST1 = "192.168.245.11"
# iptables -t nat -S DOCKER on host1 after -P, -p 127.0.0.1:8081:80 and -p 8082:80/udp
RULES = "\n".join(
    [
        "-N DOCKER",
        "-A DOCKER -i docker0 -j RETURN",
        "-A DOCKER ! -i docker0 -p tcp -m tcp --dport 32768 -j DNAT --to-destination 10.5.140.2:80",
        "-A DOCKER -d 127.0.0.1/32 ! -i docker0 -p tcp -m tcp --dport 8081 -j DNAT "
        "--to-destination 10.5.140.3:80",
        "-A DOCKER ! -i docker0 -p udp -m udp --dport 8082 -j DNAT --to-destination 10.5.140.3:80",
    ]
)


def recorded(name: str) -> facts.Facts:
    return facts.from_json((DATA / name).read_text())


def test_parse_dnat_rules() -> None:
    rules = parse_dnat_rules(RULES)
    assert [(r.protocol, r.port, r.destination, r.to, r.not_in) for r in rules] == [
        ("tcp", 32768, "", "10.5.140.2:80", "docker0"),
        ("tcp", 8081, "127.0.0.1/32", "10.5.140.3:80", "docker0"),
        ("udp", 8082, "", "10.5.140.3:80", "docker0"),
    ]


@pytest.mark.parametrize(
    ("protocol", "port", "to"),
    [
        ("tcp", 32768, "10.5.140.2:80"),
        ("udp", 8082, "10.5.140.3:80"),
        ("tcp", 8082, None),  # udp only
        ("tcp", 8081, None),  # published on 127.0.0.1 only: not at the underlay address
        ("tcp", 9999, None),
    ],
)
def test_dnat_rule_for_the_underlay_address(protocol: str, port: int, to: str | None) -> None:
    rule = dnat_rule_for(parse_dnat_rules(RULES), HOST1, protocol, port)
    assert (rule.to if isinstance(rule, DnatRule) else None) == to


def test_from_another_host_the_path_is_the_underlay_and_the_dnat_rule() -> None:
    result = explanation.explain(recorded("host_mode_a.json"))
    (record,) = result["records"]
    assert (record["address"], record["port"], record["node"]) == (HOST1, 32768, "host1")
    (path,) = result["paths"]
    assert path["kind"] == "underlay"
    assert path["problems"] == []
    assert [hop["hop"] for hop in path["hops"]] == ["route", "dnat"]
    route, dnat = path["hops"]
    assert route["entry"]["dev"] == "eth0"
    assert "host1's underlay address" in route["why"] and "not the VXLAN overlay" in route["why"]
    assert dnat["entry"]["rule"].endswith("--dport 32768 -j DNAT --to-destination 10.5.140.2:80")
    assert "10.5.140.2:80" in dnat["why"] and "host-address mode" in dnat["why"]
    text = render.render_text(result)
    assert "a lab host's underlay address" in text
    assert "flannel.1" not in text and "VXLAN device" not in text


def test_from_the_same_host_the_packet_stays_there() -> None:
    result = explanation.explain(recorded("host_mode_srv_same_host.json"))
    (record,) = result["records"]
    assert record["port"] == 32768 and record["answer"]["type"] == "SRV"
    (path,) = result["paths"]
    assert path["kind"] == "underlay"
    route, dnat = path["hops"]
    assert "host1's own underlay address" in route["why"]
    assert "docker-proxy" in dnat["why"]  # the DNAT rule leaves docker0 out


def test_unreadable_or_missing_rules_are_a_note_not_a_crash() -> None:
    base = recorded("host_mode_a.json")
    unread = copy.deepcopy(base)
    unread.dnat = {}
    (path,) = explanation.explain(unread)["paths"]
    assert [hop["hop"] for hop in path["hops"]] == ["route"]
    assert "could not be read" in path["note"]
    gone = copy.deepcopy(base)
    gone.dnat["host1"].stdout = "-N DOCKER\n"
    (path,) = explanation.explain(gone)["paths"]
    assert "no DNAT rule for tcp port 32768" in path["note"]


def test_a_record_without_port_at_a_host_address_is_the_host_itself() -> None:
    # As a --network host container's record is: no published port, no NAT.
    portless = recorded("host_mode_a.json")
    item = portless.records[0]
    item.value = item.value.replace('"port":32768', '"port":0').replace('"http"', '""')
    (path,) = explanation.explain(portless)["paths"]
    assert path["kind"] == "underlay"
    assert "--network host" in path["note"]


def test_older_facts_without_dnat_still_load() -> None:
    old = (DATA / "web_srv.json").read_text()
    assert facts.from_json(old).dnat == {}

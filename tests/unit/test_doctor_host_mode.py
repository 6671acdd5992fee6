"""doctor with a record in host-address mode: a service at a host's underlay address.

On the recorded healthy lab (tests/unit/data/doctor/healthy_lab.json), host2's
agent also registered a container labelled ``discovery.address=host`` at
host2's underlay address and host port 8080, and every DNS server answers it
with that address. doctor must pass it as it passes any record: the DNS check
compares the answer with etcd, the stale-records check finds its container.
"""

from __future__ import annotations

from pathlib import Path

from discovery import schema
from labs.troubleshoot import doctor
from labs.troubleshoot.doctor_facts import LabFacts, from_json

RECORDED = Path(__file__).parent / "data" / "doctor" / "healthy_lab.json"


def with_host_mode_record() -> tuple[LabFacts, str]:
    facts = from_json(RECORDED.read_text())
    host2 = next(h for h in facts.hosts if h.name == "host2")
    endpoint = schema.Endpoint(
        service="shop", address=host2.underlay_ip, port=8080, port_name="http", node="host2",
        container_id=host2.running_containers[0], container_name="shop",
        registered_at="2026-12-04T20:05:00.000Z",
    )  # fmt: skip
    key = schema.endpoint_key(facts.prefix, facts.domain, "shop", endpoint.endpoint_id)
    facts.etcd.records[key] = schema.encode_endpoint(endpoint)
    for host in facts.hosts:
        web = host.dns["web.service.lab"]
        answer = next(line for line in web.splitlines() if line.startswith("web.service.lab.\t"))
        shop = answer.replace("web.service.lab.", "shop.service.lab.").rsplit("\t", 1)[0]
        host.dns["shop.service.lab"] = (
            web.replace(answer, f"{shop}\t{host2.underlay_ip}")
            .replace("web.service.lab", "shop.service.lab")
        )  # fmt: skip
    return facts, host2.underlay_ip


def test_a_host_mode_record_passes_every_check() -> None:
    facts, underlay = with_host_mode_record()
    assert doctor.wanted_answers(facts)["shop.service.lab"] == {underlay}
    verdicts = doctor.diagnose(facts)
    assert [(v.check, v.host, v.status) for v in verdicts if v.status != "PASS"] == []
    dns = [v for v in verdicts if v.check == "dns"]
    assert all("2 service names as etcd says" in v.evidence for v in dns), dns


def test_a_dns_answer_other_than_the_host_address_fails_dns() -> None:
    facts, underlay = with_host_mode_record()
    host3 = next(h for h in facts.hosts if h.name == "host3")
    host3.dns["shop.service.lab"] = host3.dns["shop.service.lab"].replace(underlay, "10.5.9.2")
    (failed,) = [v for v in doctor.diagnose(facts) if v.status != "PASS"]
    assert (failed.check, failed.host) == ("dns", "host3")
    assert f"etcd says {underlay}" in failed.evidence

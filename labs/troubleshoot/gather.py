"""Gathering the facts for one name from one host: the order of questions, nothing else.

I/O orchestration: it asks each shell in turn (a probe container's
resolv.conf, then the DNS server for each name the resolver would try, then
the kernel for each address answered, Docker's DNAT rules on a lab host whose
underlay address was answered, and with ``trace`` a capture per address),
while etcd is read alongside. Which question comes next is decided
by the pure modules; the store is a parameter, so a test may hand in any
``Store``.
"""

from __future__ import annotations

import asyncio
import time

from discovery.settings import Settings
from discovery.store_api import Store
from labs.troubleshoot import capture, dig_text, dns_query, docker_probe, explanation, kernel
from labs.troubleshoot.etcd_records import read_etcd
from labs.troubleshoot.facts import CommandOutput, Facts, KernelFacts, TraceFacts
from labs.troubleshoot.host_shell import run_on
from labs.troubleshoot.hosts import LabHost, LabHosts
from labs.troubleshoot.resolv_conf import candidate_names, parse_resolv_conf


def _ms(since: float) -> float:
    return round((time.monotonic() - since) * 1000, 1)


async def gather(
    lab: LabHosts,
    host: LabHost,
    name: str,
    qtype: str,
    store: Store,
    settings: Settings,
    probe_image: str,
    trace: bool = False,
) -> Facts:
    started = time.monotonic()
    timings: dict[str, float] = {}

    async def timed_etcd() -> tuple[list, list]:
        etcd_started = time.monotonic()
        try:
            return await read_etcd(store, settings)
        finally:
            timings["etcd"] = _ms(etcd_started)

    # etcd is read while the host is asked: neither waits for the other.
    etcd = asyncio.ensure_future(timed_etcd())
    try:
        step = time.monotonic()
        resolv = await docker_probe.container_resolv_conf(host, probe_image)
        timings["resolver"] = _ms(step)
        facts = Facts(
            lab=lab.lab,
            lab_kind=lab.kind,
            host=host.name,
            reached_by=host.reached_by,
            hosts={h.name: h.underlay_ip for h in lab.hosts.values()},
            name=name,
            qtype=qtype,
            probe_image=probe_image,
            resolv_conf=resolv,
            etcd_endpoints=list(settings.etcd_endpoints),
            network_prefix=settings.network_prefix,
        )
        if resolv.ok:
            step = time.monotonic()
            await _ask_as_the_resolver_does(facts, host)
            timings["dns"] = _ms(step)
        reply = explanation.dns_step(facts)["reply"]
        if reply:
            addresses = explanation.answer_addresses(reply)
            step = time.monotonic()
            facts.kernel = list(
                await asyncio.gather(*(kernel.kernel_facts(host, a) for a in addresses))
            )
            timings["kernel"] = _ms(step)
            await _read_dnat_rules(facts, lab, addresses)
            if trace:
                step = time.monotonic()
                # One at a time: each capture must see its own probe's packet.
                bridge = await _probe_bridge(host, facts)
                for kernel_facts in facts.kernel:
                    facts.traces.append(await _trace(host, probe_image, kernel_facts, bridge))
                timings["trace"] = _ms(step)
        facts.records, facts.subnet_leases = await etcd
    finally:
        etcd.cancel()
    timings["total"] = _ms(started)
    facts.timings_ms = timings
    return facts


async def _read_dnat_rules(facts: Facts, lab: LabHosts, addresses: list[str]) -> None:
    """Docker's DNAT rules on each lab host whose underlay address was answered: a
    record in host-address mode is reached through one of them."""
    names = sorted({lab.name_of_underlay_ip(a) for a in addresses} - {""})
    outputs = await asyncio.gather(
        *(run_on(lab.hosts[name], list(explanation.DNAT_RULES_ARGV)) for name in names)
    )
    facts.dnat = dict(zip(names, outputs, strict=True))


async def _ask_as_the_resolver_does(facts: Facts, host: LabHost) -> None:
    """Each name in the resolver's order, until one has an answer (as the stub resolver)."""
    resolv = parse_resolv_conf(facts.resolv_conf.stdout)
    if not resolv.nameservers:
        return
    server = resolv.nameservers[0]  # the resolver asks the first; others only on a timeout
    for qname in candidate_names(facts.name, resolv):
        query = await dns_query.ask(host, server, qname, facts.qtype)
        facts.dns.append(query)
        if explanation.answered(dig_text.parse_dig(query.output.stdout), facts.qtype):
            return


async def _probe_bridge(host: LabHost, facts: Facts) -> str:
    """The bridge a probe container's packets enter the host by: the one holding its
    nameserver's address (the lab's DNS server listens on Docker's bridge)."""
    nameservers = parse_resolv_conf(facts.resolv_conf.stdout).nameservers
    if not nameservers:
        return ""
    argv = ["ip", "-j", "addr", "show", "to", nameservers[0]]
    found = await kernel.read_json(host, argv, [])
    return str(found[0].get("ifname", "")) if found else ""


async def _trace(host: LabHost, image: str, facts: KernelFacts, bridge: str = "") -> TraceFacts:
    kind = explanation.link_kind(facts.link)
    address = facts.address

    async def probe() -> CommandOutput:
        return await docker_probe.ping_from_container(host, image, address)

    if kind == "vxlan":
        vx = explanation.vxlan_info(facts.link)
        remote = explanation.vxlan_destination(facts)
        interface = explanation.route_device(facts.underlay_route_get) or vx["underlay_device"]
        if not remote or not interface:
            return TraceFacts(
                address,
                interface,
                "",
                "",
                "",
                None,
                problem="no underlay destination to capture towards",
            )
        capture_filter = (
            f"udp dst port {vx['port']} and src host {vx['local']} and dst host {remote}"
        )
        return await capture.capture_while(host, address, interface, capture_filter, probe, True)
    device = explanation.route_device(facts.route_get)
    if facts.route_get and facts.route_get[0].get("type") == "local" and bridge:
        # The host's own address (a record in host-address mode): the probe's packet
        # comes in from the container's bridge and never crosses lo.
        device = bridge
    return await capture.capture_while(
        host, address, device, f"icmp and dst host {address}", probe, False
    )

"""From raw facts to hops: how a name becomes addresses, and a packet finds each one.

Pure: ``Facts`` in, the explanation out as plain data (the JSON of
``explain -o json``; ``render.py`` writes the same as text). Every hop carries
the entry it was read from, exactly as the tool printed it (``entry``), so a
test or a learner can hold it against ``ip``, ``bridge``, ``etcdctl`` or
``dig``; ``says`` is the entry in a line, ``why`` what the entry is for.

Where the facts do not line up (a neighbour entry missing, an FDB entry
pointing elsewhere than the subnet lease says) the hop says so in
``problems``: explain describes what is, it does not judge whether the lab
is healthy; that is doctor's work.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from typing import Any

from discovery import flannel, schema
from discovery.errors import SchemaError
from labs.troubleshoot import dig_text, pcap, resolv_conf
from labs.troubleshoot.facts import EtcdItem, Facts, KernelFacts, TraceFacts

VXLAN_OVERHEAD_BYTES = 50  # outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8
# Docker's published ports, on a host whose underlay address a record holds
DNAT_RULES_ARGV = ("iptables", "-t", "nat", "-S", "DOCKER")


# ---------------------------------------------------------------- reading kernel entries


def route_device(route_get: list[dict[str, Any]]) -> str:
    return str(route_get[0].get("dev", "")) if route_get else ""


def link_kind(link: list[dict[str, Any]]) -> str:
    if not link:
        return ""
    return str(link[0].get("linkinfo", {}).get("info_kind", ""))


def vxlan_info(link: list[dict[str, Any]]) -> dict[str, Any]:
    """The VXLAN device's settings, as ``ip -d link`` shows them."""
    if link_kind(link) != "vxlan":
        return {}
    data = link[0].get("linkinfo", {}).get("info_data", {})
    return {
        "device": link[0].get("ifname", ""),
        "vni": data.get("id"),
        "port": data.get("port"),
        "local": data.get("local", ""),
        "underlay_device": data.get("link", ""),
        "mtu": link[0].get("mtu"),
        "mac": link[0].get("address", ""),
        "learning": data.get("learning"),
    }


def pick_neighbour(neighbours: list[dict[str, Any]], address: str) -> dict[str, Any] | None:
    return next((entry for entry in neighbours if entry.get("dst") == address), None)


def pick_fdb(fdb: list[dict[str, Any]], mac: str) -> dict[str, Any] | None:
    """The forwarding entry for ``mac``: with its underlay ``dst`` on a VXLAN device,
    or the bridge port (``ifname``) it was learnt on, on a bridge."""
    matching = [entry for entry in fdb if entry.get("mac", "").lower() == mac.lower()]
    with_dst = [entry for entry in matching if entry.get("dst")]
    on_port = [entry for entry in matching if entry.get("master")]
    candidates = with_dst or on_port or matching
    return candidates[0] if candidates else None


def next_hop(kernel: KernelFacts) -> str:
    """The address the kernel sends to on the route's device: the gateway, or the address."""
    if not kernel.route_get:
        return ""
    return str(kernel.route_get[0].get("gateway") or kernel.route_get[0].get("dst", ""))


def vxlan_destination(kernel: KernelFacts) -> str:
    """The underlay address the VXLAN device sends this address's packets to."""
    neighbour = pick_neighbour(kernel.neighbours, next_hop(kernel))
    if not neighbour or not neighbour.get("lladdr"):
        return ""
    entry = pick_fdb(kernel.fdb, neighbour["lladdr"])
    return str(entry.get("dst", "")) if entry else ""


def route_entry(routes: list[dict[str, Any]], address: str) -> dict[str, Any] | None:
    """The routing table's entry for ``address``: the longest prefix that holds it."""
    target = ipaddress.IPv4Address(address)
    best: tuple[int, dict[str, Any]] | None = None
    for entry in routes:
        dst = entry.get("dst", "")
        try:
            network = ipaddress.IPv4Network("0.0.0.0/0" if dst == "default" else dst)
        except ValueError:
            continue
        if target in network and (best is None or network.prefixlen > best[0]):
            best = (network.prefixlen, entry)
    return best[1] if best else None


def route_line(entry: dict[str, Any]) -> str:
    """An ``ip -j route`` entry as ``ip route`` prints it."""
    words = [str(entry.get("dst", ""))]
    if entry.get("from"):
        words += ["from", entry["from"]]
    if entry.get("gateway"):
        words += ["via", entry["gateway"]]
    words += ["dev", str(entry.get("dev", ""))]
    if entry.get("prefsrc"):
        words += ["src", entry["prefsrc"]]
    words += [flag for flag in entry.get("flags", []) if flag]
    return " ".join(words)


@dataclass(frozen=True)
class DnatRule:
    """One DNAT rule of Docker's nat chain, as ``iptables -t nat -S DOCKER`` prints it."""

    line: str
    protocol: str
    port: int
    destination: str  # -d, '' for any address of the host
    to: str  # --to-destination: the container's address and port
    not_in: str  # ! -i: the interface it does not apply to (Docker's bridge)


def parse_dnat_rules(text: str) -> list[DnatRule]:
    rules = []
    for line in text.splitlines():
        words = line.split()
        if "DNAT" not in words or "--dport" not in words or "--to-destination" not in words:
            continue

        def after(flag: str, words: list[str] = words) -> str:
            return words[words.index(flag) + 1] if flag in words[:-1] else ""

        not_in = ""
        for i, word in enumerate(words[:-2]):
            if word == "!" and words[i + 1] == "-i":
                not_in = words[i + 2]
        port = after("--dport")
        if not port.isdigit():
            continue
        rules.append(
            DnatRule(
                line.strip(), after("-p"), int(port), after("-d"), after("--to-destination"), not_in
            )
        )
    return rules


def dnat_rule_for(rules: list[DnatRule], address: str, protocol: str, port: int) -> DnatRule | None:
    """The rule that rewrites packets for address:port/protocol, if any."""
    for rule in rules:
        if rule.protocol != protocol or rule.port != port:
            continue
        if rule.destination:
            try:
                if ipaddress.ip_address(address) not in ipaddress.ip_network(rule.destination):
                    continue
            except ValueError:
                continue
        return rule
    return None


# ---------------------------------------------------------------- the steps


def _rr(record: dig_text.ResourceRecord) -> dict[str, Any]:
    return {
        "name": record.name,
        "ttl": record.ttl,
        "class": record.rclass,
        "type": record.rtype,
        "data": record.data,
    }


def resolver_step(facts: Facts) -> dict[str, Any]:
    resolv = resolv_conf.parse_resolv_conf(facts.resolv_conf.stdout)
    return {
        "read_from": (
            f"a new container of {facts.probe_image} on {facts.host}: "
            + " ".join(facts.resolv_conf.argv)
        ),
        "ok": facts.resolv_conf.ok,
        "problem": "" if facts.resolv_conf.ok else facts.resolv_conf.stderr.strip(),
        "resolv_conf": facts.resolv_conf.stdout,
        "nameservers": list(resolv.nameservers),
        "search": list(resolv.search),
        "ndots": resolv.ndots,
        "options": list(resolv.options),
        "tries": resolv_conf.candidate_names(facts.name, resolv),
        "why": resolv_conf.why_this_order(facts.name, resolv),
    }


def answered(reply: dig_text.DigReply, qtype: str) -> bool:
    return reply.status == "NOERROR" and any(rr.rtype == qtype for rr in reply.answer)


def dns_step(facts: Facts) -> dict[str, Any]:
    asked = []
    answer: dict[str, Any] | None = None
    for query in facts.dns:
        reply = dig_text.parse_dig(query.output.stdout)
        asked.append(
            {
                "qname": query.qname,
                "qtype": query.qtype,
                "server": query.server,
                "status": reply.status or "no reply",
                "problem": reply.problem or query.output.stderr.strip(),
                "answers": len(reply.answer),
                "command": " ".join(query.output.argv),
            }
        )
        if answer is None and answered(reply, query.qtype):
            answer = {
                "question": f"{query.qname} IN {query.qtype}",
                "server": query.server,
                "command": " ".join(query.output.argv),
                "status": reply.status,
                "flags": list(reply.flags),
                "query_time_ms": reply.query_time_ms,
                "answer": [_rr(rr) for rr in reply.answer],
                "authority": [_rr(rr) for rr in reply.authority],
                "additional": [_rr(rr) for rr in reply.additional],
            }
    return {"asked": asked, "answered": answer is not None, "reply": answer}


def _endpoint(item: EtcdItem) -> dict[str, Any] | None:
    try:
        value = json.loads(item.value)
        endpoint = schema.decode_endpoint(item.value)
    except (SchemaError, ValueError):
        return None
    return {"value": value, "endpoint": endpoint}


def _lease_text(lease_id: int) -> str:
    return f"{lease_id:x}" if lease_id else ""


def record_for(rr: dict[str, Any], address: str, item: EtcdItem | None) -> dict[str, Any]:
    found: dict[str, Any] = {"answer": rr, "address": address}
    if item is None:
        found["problem"] = f"no record in etcd holds {address} (the answer may be older than etcd)"
        return found
    decoded = _endpoint(item)
    endpoint = decoded["endpoint"] if decoded else None
    found.update(
        key=item.key,
        value=decoded["value"] if decoded else item.value,
        mod_revision=item.mod_revision,
        lease_id=item.lease_id,
        lease_hex=_lease_text(item.lease_id),
        lease_ttl_s=item.lease_ttl_s,
    )
    if endpoint is not None:
        found.update(
            service=endpoint.service,
            node=endpoint.node,
            container_name=endpoint.container_name,
            container_id=endpoint.container_id,
            image=endpoint.image,
            port=endpoint.port,
            protocol=endpoint.protocol,
            health=endpoint.health,
            registered_at=endpoint.registered_at,
        )
    return found


def records_step(facts: Facts, reply: dict[str, Any]) -> list[dict[str, Any]]:
    """Each answer record, and the etcd record behind it."""
    parsed = [(item, _endpoint(item)) for item in facts.records]
    by_id = {item.key.rsplit("/", 1)[-1]: item for item in facts.records}
    service = facts.name.split(".", 1)[0]
    additional = {rr["name"]: rr["data"] for rr in reply["additional"] if rr["type"] == "A"}
    found = []
    for rr in reply["answer"]:
        if rr["type"] == "A":
            holders = [item for item, d in parsed if d and d["endpoint"].address == rr["data"]]
            # The service asked about first, should two services share the address.
            holders.sort(key=lambda item: f"/service/{service}/" not in item.key)
            found.append(record_for(rr, rr["data"], holders[0] if holders else None))
        elif rr["type"] == "SRV":
            target = rr["data"].split()[-1]
            endpoint_id = target.split(".", 1)[0]
            found.append(record_for(rr, additional.get(target, ""), by_id.get(endpoint_id)))
    return found


def _lease_for(facts: Facts, address: str) -> tuple[EtcdItem, flannel.SubnetLease] | None:
    target = ipaddress.IPv4Address(address)
    for item in facts.subnet_leases:
        try:
            lease = flannel.parse_subnet_lease(facts.network_prefix, item.key, item.value)
        except SchemaError:
            continue
        if target in lease.subnet:
            return item, lease
    return None


def _host_named(facts: Facts, underlay_ip: str) -> str:
    return next((name for name, ip in facts.hosts.items() if ip == underlay_ip), "")


def _hop(hop: str, entry: Any, says: str, why: str) -> dict[str, Any]:
    return {"hop": hop, "entry": entry, "says": says, "why": why}


def path_step(facts: Facts, kernel: KernelFacts, record: dict[str, Any] | None) -> dict[str, Any]:
    """The hops from this host to one address, each from the kernel entry that decides it."""
    address = kernel.address
    who = ""
    if record and record.get("container_name"):
        who = f"{record['container_name']} on {record.get('node') or '?'}"
    path: dict[str, Any] = {
        "address": address,
        "to": who,
        "kind": "unrouted",
        "hops": [],
        "problems": list(kernel.problems),
    }
    if not kernel.route_get:
        path["problems"].append(f"{facts.host}'s kernel has no route to {address}")
        return path
    owner = _host_named(facts, address)
    kind = link_kind(kernel.link)
    if owner:
        # A record in host-address mode (or of a --network host container): the
        # address is a lab host's own, on the underlay; no overlay on the way.
        path["kind"] = "underlay"
        _underlay_hops(facts, kernel, path, owner, record)
    elif kind == "vxlan":
        path["kind"] = "overlay"
        _overlay_hops(facts, kernel, path)
    elif kind == "bridge":
        path["kind"] = "local"
        _bridge_hops(facts, kernel, path)
    else:
        path["kind"] = kind or "other"
        chosen, device = kernel.route_get[0], route_device(kernel.route_get)
        path["hops"].append(
            _hop(
                "route",
                chosen,
                f"ip route get {address}: {route_line(chosen)}",
                f"the kernel sends it out of {device}, neither the overlay nor a local bridge",
            )
        )
    return path


def _overlay_hops(facts: Facts, kernel: KernelFacts, path: dict[str, Any]) -> None:
    """route -> neighbour -> FDB -> VXLAN device -> underlay route, and the lease behind them."""
    hops, problems, address = path["hops"], path["problems"], kernel.address
    chosen, device = kernel.route_get[0], route_device(kernel.route_get)
    table = route_entry(kernel.routes, address)
    found = _lease_for(facts, address)
    remote = (_host_named(facts, str(found[1].public_ip)) if found else "") or "the remote host"
    gateway = chosen.get("gateway", "?")
    onlink = table is not None and "onlink" in table.get("flags", [])
    route_why = (
        f"{facts.host}'s kernel sends {remote}'s subnet {table.get('dst') if table else '?'} "
        f"into the VXLAN device {device}, to gateway {gateway}: that subnet's first address, "
        "standing for that host's VTEP"
    )
    if onlink:
        route_why += f" (onlink: taken as reachable on {device}, though no address there covers it)"
    hops.append(
        _hop("route", chosen, f"ip route get {address}: {route_line(chosen)}", route_why)
        | {"table_entry": table}
    )
    neighbour = pick_neighbour(kernel.neighbours, next_hop(kernel))
    mac = str(neighbour.get("lladdr", "")) if neighbour else ""
    if neighbour:
        state = ",".join(neighbour.get("state", []))
        hops.append(
            _hop(
                "neighbour",
                neighbour,
                f"{neighbour['dst']} lladdr {mac} {state} dev {device}",
                f"the inner frame's destination MAC: {remote}'s VTEP (its {device}'s MAC), "
                "written by the network agent, never learnt by ARP",
            )
        )
    else:
        problems.append(f"no neighbour entry for {next_hop(kernel)} on {device}")
    fdb = pick_fdb(kernel.fdb, mac) if mac else None
    if fdb:
        flags = " ".join([*fdb.get("flags", []), fdb.get("state", "")]).strip()
        dst = fdb.get("dst", "?")
        hops.append(
            _hop(
                "fdb",
                fdb,
                f"{fdb['mac']} dst {dst} {flags} dev {device}",
                f"which underlay address {device} sends frames for that MAC to: "
                f"{_host_named(facts, dst) or dst}, one UDP packet per frame",
            )
        )
    elif mac:
        problems.append(f"no FDB entry for {mac} on {device}")
    vx = vxlan_info(kernel.link)
    under_mtu = kernel.underlay_link[0].get("mtu") if kernel.underlay_link else None
    if not under_mtu:
        mtu_why = f"mtu {vx['mtu']} (the underlay device's MTU could not be read)"
    elif vx["mtu"] == under_mtu - VXLAN_OVERHEAD_BYTES:
        mtu_why = (
            f"mtu {vx['mtu']} = {vx['underlay_device']}'s {under_mtu} - "
            f"{VXLAN_OVERHEAD_BYTES} bytes of outer headers"
        )
    else:
        wanted = under_mtu - VXLAN_OVERHEAD_BYTES
        mtu_why = (
            f"mtu {vx['mtu']}, but {vx['underlay_device']}'s is {under_mtu}: with "
            f"{VXLAN_OVERHEAD_BYTES} bytes of outer headers it should be {wanted}"
        )
        problems.append(f"{vx['device']} mtu {vx['mtu']} does not fit the underlay's {under_mtu}")
    hops.append(
        _hop(
            "vxlan",
            vx | {"underlay_mtu": under_mtu},
            f"{vx['device']}: VNI {vx['vni']}, UDP port {vx['port']}, local {vx['local']} "
            f"on {vx['underlay_device']}, mtu {vx['mtu']}",
            f"wraps each frame in UDP to port {vx['port']} with VNI {vx['vni']}, "
            f"sent from {vx['local']}; {mtu_why}",
        )
    )
    if kernel.underlay_route_get:
        under = kernel.underlay_route_get[0]
        target = _host_named(facts, under.get("dst", "")) or under.get("dst")
        via = f" via {under['gateway']}" if under.get("gateway") else ""
        hops.append(
            _hop(
                "underlay",
                under | {"link": kernel.underlay_link[0] if kernel.underlay_link else None},
                f"ip route get {under.get('dst')} from {under.get('from', vx['local'])}: "
                f"{route_line(under)}",
                f"the wrapped packet leaves {facts.host} on {under.get('dev')} for {target} "
                f"across the lab's underlay network{via}",
            )
        )
    if not found:
        problems.append(f"no subnet lease in etcd holds {address}")
        return
    item, lease = found
    ttl = item.lease_ttl_s
    left = f", {ttl} s left" if ttl is not None and ttl >= 0 else ""
    value = {"key": item.key, "value": json.loads(item.value), "lease_id": item.lease_id,
             "lease_hex": _lease_text(item.lease_id), "lease_ttl_s": ttl}  # fmt: skip
    hops.append(
        _hop(
            "lease",
            value,
            f"{item.key}: PublicIP {lease.public_ip}, VtepMAC {lease.vtep_mac}, VNI {lease.vni} "
            f"(etcd lease {_lease_text(item.lease_id) or 'none'}{left})",
            f"{remote}'s flannel subnet lease: {facts.host}'s network agent wrote the route, "
            "neighbour and FDB entries above from it",
        )
    )
    if mac and mac != lease.vtep_mac:
        problems.append(f"neighbour MAC {mac} is not the lease's VtepMAC {lease.vtep_mac}")
    if fdb and fdb.get("dst") and fdb["dst"] != str(lease.public_ip):
        problems.append(f"FDB dst {fdb['dst']} is not the lease's PublicIP {lease.public_ip}")
    if vx.get("vni") != lease.vni:
        problems.append(f"{device} has VNI {vx.get('vni')}, the lease says {lease.vni}")


def _underlay_hops(
    facts: Facts,
    kernel: KernelFacts,
    path: dict[str, Any],
    owner: str,
    record: dict[str, Any] | None,
) -> None:
    """A lab host's underlay address: route -> (on that host) Docker's DNAT rule."""
    hops, address = path["hops"], kernel.address
    chosen, device = kernel.route_get[0], route_device(kernel.route_get)
    if owner == facts.host:
        route_why = (
            f"{address} is {facts.host}'s own underlay address: the packet stays on "
            f"{facts.host} ({device}), no overlay and no VXLAN"
        )
    else:
        route_why = (
            f"{address} is {owner}'s underlay address: the packet crosses the lab's underlay "
            f"network on {device} as it is, not the VXLAN overlay"
        )
    hops.append(_hop("route", chosen, f"ip route get {address}: {route_line(chosen)}", route_why))
    port = int(record.get("port") or 0) if record else 0
    if not record or not port:
        path["note"] = (
            f"the record has no port: {address} is {owner} itself, as for a container on "
            f"{owner}'s own network (--network host), which shares {owner}'s addresses; no NAT"
        )
        return
    protocol = str(record.get("protocol") or "tcp")
    command = " ".join(DNAT_RULES_ARGV)
    read = facts.dnat.get(owner)
    if read is None or not read.ok:
        why = read.stderr.strip() if read is not None else "not read"
        path["note"] = f"{owner}'s DNAT rules could not be read ({command}: {why})"
        return
    rule = dnat_rule_for(parse_dnat_rules(read.stdout), address, protocol, port)
    if rule is None:
        path["note"] = (
            f"{owner}'s nat table has no DNAT rule for {protocol} port {port} ({command} on "
            f"{owner}): either a container on {owner}'s own network (--network host) listens "
            "on that port itself, or the port is not published (any more)"
        )
        return
    why = (
        f"{owner}'s Docker published the port (docker run -p): a packet for "
        f"{address}:{port}/{protocol} gets the destination {rule.to}, the container's own "
        f"address and port, and {owner} routes it to its bridge. The record holds {owner}'s "
        "address and the host port because its agent registered the container in "
        "host-address mode (label discovery.address=host, or the agent's --address-mode host)"
    )
    if owner == facts.host and rule.not_in:
        why += (
            f"; from a container on {owner} itself the packet comes in on {rule.not_in}, "
            "which this rule leaves out (! -i): Docker's userland proxy (docker-proxy, "
            "listening on the published port) carries it instead"
        )
    hops.append(
        _hop(
            "dnat",
            {"host": owner, "command": command, "rule": rule.line},
            f"on {owner}, {command}: {rule.line}",
            why,
        )
    )


def _bridge_hops(facts: Facts, kernel: KernelFacts, path: dict[str, Any]) -> None:
    """A container on this host: route -> bridge -> (neighbour -> bridge port)."""
    hops, address = path["hops"], kernel.address
    chosen, device = kernel.route_get[0], route_device(kernel.route_get)
    table = route_entry(kernel.routes, address)
    link = kernel.link[0]
    hops.append(
        _hop(
            "route",
            chosen,
            f"ip route get {address}: {route_line(chosen)}",
            f"{address} is in {facts.host}'s own subnet {table.get('dst') if table else ''}: "
            f"the kernel hands it to the bridge {device}, no overlay involved",
        )
        | {"table_entry": table}
    )
    hops.append(
        _hop(
            "bridge",
            {key: link.get(key) for key in ("ifname", "mtu", "address", "operstate")},
            f"{device}: Linux bridge, mtu {link.get('mtu')}, MAC {link.get('address')}",
            (
                f"the bridge {facts.host}'s dockerd made with --bip from the first half of its "
                "subnet lease"
                if device == "docker0"
                else f"the bridge of a user-defined Docker network (a Compose project's...), "
                f"its subnet from {facts.host}'s address pool, the second half of its lease"
            )
            + "; the veth of every container on it is one of its ports",
        )
    )
    neighbour = pick_neighbour(kernel.neighbours, address)
    if not neighbour or not neighbour.get("lladdr"):
        path["note"] = (
            f"{facts.host}'s own neighbour table has no entry for {address}: it appears once "
            f"{facts.host} itself talks to it; containers on {device} reach each other at "
            f"layer 2, through the bridge's forwarding table (bridge fdb show br {device})"
        )
        return
    mac = neighbour["lladdr"]
    state = ",".join(neighbour.get("state", []))
    hops.append(
        _hop(
            "neighbour",
            neighbour,
            f"{address} lladdr {mac} {state} dev {device}",
            "the container's MAC, learnt by ARP on the bridge",
        )
    )
    port = pick_fdb(kernel.fdb, mac)
    if port and port.get("ifname"):
        hops.append(
            _hop(
                "fdb",
                port,
                f"{port['mac']} dev {port['ifname']} master {device}",
                "the bridge port (the container's veth) behind that MAC",
            )
        )


def trace_step(trace: TraceFacts) -> dict[str, Any]:
    step: dict[str, Any] = {
        "address": trace.address,
        "interface": trace.interface,
        "filter": trace.capture_filter,
        "probe": " ".join(trace.probe.argv) if trace.probe else "",
        "probe_output": trace.probe.stdout.strip() if trace.probe else "",
        "tcpdump": trace.tcpdump_text,
        "elapsed_ms": trace.elapsed_ms,
        "problem": trace.problem,
    }
    if trace.pcap_hex:
        try:
            step["packet"] = pcap.decode(pcap.first_packet(bytes.fromhex(trace.pcap_hex)))
        except pcap.PacketError as error:
            step["problem"] = f"the captured packet could not be read: {error}"
    return step


def explain(facts: Facts) -> dict[str, Any]:
    dns = dns_step(facts)
    result: dict[str, Any] = {
        "name": facts.name,
        "type": facts.qtype,
        "lab": facts.lab,
        "lab_kind": facts.lab_kind,
        "from": facts.host,
        "reached_by": facts.reached_by,
        "resolver": resolver_step(facts),
        "dns": dns,
        "records": [],
        "paths": [],
        "traces": [trace_step(trace) for trace in facts.traces],
        "timings_ms": facts.timings_ms,
    }
    if dns["reply"]:
        result["records"] = records_step(facts, dns["reply"])
        by_address = {r["address"]: r for r in result["records"]}
        result["paths"] = [
            path_step(facts, kernel, by_address.get(kernel.address)) for kernel in facts.kernel
        ]
    return result


def answer_addresses(reply: dict[str, Any]) -> list[str]:
    """The addresses a client connects to: A records, or the SRV targets' A records."""
    addresses = [rr["data"] for rr in reply["answer"] if rr["type"] == "A"]
    targets = [rr["data"].split()[-1] for rr in reply["answer"] if rr["type"] == "SRV"]
    additional = {rr["name"]: rr["data"] for rr in reply["additional"] if rr["type"] == "A"}
    addresses += [additional[target] for target in targets if target in additional]
    return list(dict.fromkeys(addresses))

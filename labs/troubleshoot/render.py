"""The explanation as text that teaches, one line per hop: the entry, then what it is for.

Pure: the dict ``explanation.explain`` made in, lines out. ``-o json`` prints
that dict as it is, so both outputs carry the same facts.
"""

from __future__ import annotations

import json
import textwrap
from typing import Any

WIDTH = 110
LABEL_WIDTH = 11


def _line(label: str, text: str, indent: int = 0) -> list[str]:
    lead = " " * indent + f"{label:<{LABEL_WIDTH}}"
    return textwrap.wrap(
        text, WIDTH, initial_indent=lead, subsequent_indent=" " * len(lead), break_on_hyphens=False
    ) or [lead]


def _hop(hop: dict[str, Any]) -> list[str]:
    return _line(hop["hop"], f"{hop['says']} -- {hop['why']}", indent=4)


def _record(record: dict[str, Any]) -> list[str]:
    if "key" not in record:
        return _line(record["address"] or "?", record.get("problem", ""), indent=4)
    ttl = record.get("lease_ttl_s")
    if record.get("lease_id"):
        left = f"{ttl} s left" if ttl is not None and ttl >= 0 else "expired"
        lease = (
            f"under etcd lease {record['lease_hex']} ({left}): the agent keeps the lease alive, "
            "and the record goes with it when the agent dies"
        )
    else:
        lease = "with no etcd lease: it stays until deleted (discoveryctl deregister)"
    node = record.get("node")
    writer = f"written by {node}'s agent (node {node!r})" if node else "written by hand"
    lines = _line(record["address"], f"<- {record['key']} (revision {record['mod_revision']})", 4)
    lines += _line("", f"{writer} {lease}", 4)
    if record.get("container_name") or record.get("container_id"):
        lines += _line(
            "",
            (
                f"container {record.get('container_name') or '?'} "
                f"({(record.get('container_id') or '')[:12]}), image {record.get('image') or '?'}, "
                f"port {record.get('port') or '-'}/{record.get('protocol')}, "
                f"health {record.get('health')}"
            ),
            4,
        )
    return lines


def _packet(trace: dict[str, Any]) -> list[str]:
    packet = trace.get("packet")
    if not packet:
        return []
    lines = []
    ip, eth, tr = packet["ip"], packet["ethernet"], packet.get("transport", {})
    ports = (
        f"{ip['src']}:{tr.get('src_port')} -> {ip['dst']}:{tr.get('dst_port')}"
        if "src_port" in tr
        else f"{ip['src']} -> {ip['dst']}"
    )
    label = "outer" if "vxlan" in packet else "frame"
    lines += _line(
        label,
        (
            f"{ports} {ip['protocol'].upper()}, ttl {ip['ttl']}, {ip['length']} bytes "
            f"(Ethernet {eth['src_mac']} -> {eth['dst_mac']})"
            + (f" {tr['icmp']}" if "icmp" in tr else "")
        ),
        4,
    )
    if "vxlan" in packet:
        lines += _line(
            "vxlan",
            f"VNI {packet['vxlan']['vni']} (flags {packet['vxlan']['flags']}: "
            "the I flag, the VNI is valid)",
            4,
        )
    inner = packet.get("inner")
    if inner and "ip" in inner:
        iip, ieth, itr = inner["ip"], inner["ethernet"], inner.get("transport", {})
        what = itr.get("icmp") or (f"port {itr.get('dst_port')}" if itr else "")
        lines += _line(
            "inner",
            (
                f"{iip['src']} -> {iip['dst']} {iip['protocol'].upper()} {what}, ttl {iip['ttl']}, "
                f"{iip['length']} bytes (Ethernet {ieth['src_mac']} -> {ieth['dst_mac']}: "
                "VTEP to VTEP)"
            ),
            4,
        )
    return lines


def render_text(result: dict[str, Any]) -> str:
    out: list[str] = []
    where = (
        "the local lab" if result["lab_kind"] == "local" else "the Vagrant lab"
    ) + f" {result['lab']!r}"
    out.append(
        f"explain {result['name']} ({result['type']}) from {result['from']}, "
        f"{where}; host facts read with {result['reached_by']}"
    )
    out.append("")
    resolver = result["resolver"]
    out += _line(
        "1 resolver",
        (
            f"{resolver['read_from']}: nameserver {', '.join(resolver['nameservers']) or 'none'}, "
            f"search {' '.join(resolver['search']) or 'none'}, ndots {resolver['ndots']}"
            + (f" -- could not read it: {resolver['problem']}" if not resolver["ok"] else "")
        ),
    )
    if resolver["ok"]:
        out += _line("", f"{resolver['why']}: {', '.join(resolver['tries'])}")
    dns = result["dns"]
    for asked in dns["asked"]:
        outcome = f"{asked['status']}, {asked['answers']} answers"
        if asked["problem"] and asked["status"] == "no reply":
            outcome = f"no reply: {asked['problem']}"
        out += _line(
            "2 question",
            f"{asked['qname']} IN {asked['qtype']} to {asked['server']} "
            f"(the nameserver above, asked from {result['from']}): {outcome}",
        )
    reply = dns["reply"]
    if reply:
        out += _line(
            "",
            f"$ {reply['command']}  (flags {' '.join(reply['flags'])}, "
            f"{reply['query_time_ms']} ms)",
        )
        for rr in reply["answer"]:
            out += _line("", f"{rr['name']} {rr['ttl']} {rr['class']} {rr['type']} {rr['data']}", 4)
        for rr in reply["additional"]:
            out += _line(
                "",
                f"{rr['name']} {rr['ttl']} {rr['class']} {rr['type']} {rr['data']} (additional)",
                4,
            )
        ttl = min((rr["ttl"] for rr in reply["answer"]), default=0)
        out += _line(
            "",
            f"the resolver stops at the first name with an answer; TTL {ttl} s: a caching "
            "client asks again after that, and sees containers come and go",
        )
    if result["records"]:
        out += _line("3 records", "each answer, the etcd key and value behind it:")
        for record in result["records"]:
            out += _record(record)
    for path in result["paths"]:
        kind = {
            "overlay": "over the VXLAN overlay",
            "local": "on this host's bridge",
            "underlay": "a lab host's underlay address",
        }.get(path["kind"], path["kind"])
        to = f" ({path['to']})" if path["to"] else ""
        out += _line("4 path", f"to {path['address']}{to}, {kind}:")
        for hop in path["hops"]:
            out += _hop(hop)
        if path.get("note"):
            out += _line("note", path["note"], 4)
        for problem in path["problems"]:
            out += _line("MISMATCH", problem, 4)
    for trace in result["traces"]:
        out += _line(
            "5 trace",
            (
                f"{trace['probe']} on {result['from']} while tcpdump -i {trace['interface']} "
                f"'{trace['filter']}' listens ({trace['elapsed_ms']:.0f} ms):"
            ),
        )
        if trace["problem"]:
            out += _line("problem", trace["problem"], 4)
        out += _packet(trace)
        for text in trace["tcpdump"].splitlines():
            out += _line("", text.strip(), 4)
    timings = result.get("timings_ms", {})
    if timings:
        shown = ", ".join(f"{k} {v:.0f} ms" for k, v in timings.items())
        out += ["", f"(took {shown})"]
    return "\n".join(out)


def render_json(result: dict[str, Any]) -> str:
    return json.dumps(result, indent=2)

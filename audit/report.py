"""Rendering an audit: text grouped by host and container, worst first; JSON. Pure."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from typing import Any

from audit.rules import (
    FAIL,
    NA,
    PASS,
    RESULTS,
    WARN,
    ContainerAudit,
    Finding,
    HostAudit,
    rule_ids,
    severity,
)

FAIL_ON = {"warn": severity(WARN), "fail": severity(FAIL)}


def counts(findings: Sequence[Finding]) -> Counter[str]:
    return Counter(f.result for f in findings)


def score(findings: Sequence[Finding]) -> int:
    """Percent of the judged rules (PASS, WARN, FAIL) that pass; a FAIL weighs three."""
    tally = counts(findings)
    judged = tally[PASS] + tally[WARN] + 3 * tally[FAIL]
    return 100 if judged == 0 else round(100 * tally[PASS] / judged)


def _badness(container: ContainerAudit) -> tuple[int, int, int, str]:
    tally = counts(container.findings)
    return (-tally[FAIL], -tally[WARN], score(container.findings), container.name)


def ordered(containers: Sequence[ContainerAudit]) -> list[ContainerAudit]:
    """Worst first: most FAILs, then most WARNs, then lowest score, then by name."""
    return sorted(containers, key=_badness)


def _worst_first(findings: Sequence[Finding]) -> list[Finding]:
    """Worst result first; within a result, in the benchmark's order (5.3 before 5.10)."""
    order = {rule_id: index for index, rule_id in enumerate(rule_ids())}
    return sorted(findings, key=lambda f: (severity(f.result), order.get(f.rule, len(order))))


def score_line(findings: Sequence[Finding]) -> str:
    tally = counts(findings)
    parts = ", ".join(f"{tally[r]} {r}" for r in RESULTS if tally[r])
    return f"score {score(findings)}/100 ({parts})"


def _finding_lines(findings: Sequence[Finding], verbose: bool) -> list[str]:
    """One line a finding (evidence, and the fix of a FAIL or WARN); PASS and N/A only if verbose.

    Verbose adds each rule's title (and CIS section) on a line of its own.
    """
    lines = []
    shown = [f for f in _worst_first(findings) if verbose or f.result not in (PASS, NA)]
    width = max((len(f.rule) for f in shown), default=0)
    for finding in shown:
        fix = f"  -> {finding.remedy}" if finding.result in (FAIL, WARN) else ""
        lines.append(f"    {finding.result:<4} {finding.rule:<{width}} {finding.evidence}{fix}")
        if verbose:
            cis = f" (CIS {finding.cis})" if finding.cis else ""
            lines.append(f"         {finding.title}{cis}")
    return lines


def render_text(hosts: Sequence[HostAudit], verbose: bool = False) -> str:
    """Per host: the daemon's findings, then each container worst first, with a score line."""
    out: list[str] = []
    for host in hosts:
        out.append(f"== {host.host}" + (f" ({host.url})" if host.url != host.host else ""))
        if host.error:
            out.append(f"  not audited: {host.error}")
            out.append("")
            continue
        out.append(f"  daemon: {score_line(host.daemon)}")
        out.extend(_finding_lines(host.daemon, verbose))
        for container in ordered(host.containers):
            out.append(
                f"  {container.name} ({container.image}, {container.state}): "
                f"{score_line(container.findings)}"
            )
            out.extend(_finding_lines(container.findings, verbose))
        if not host.containers:
            out.append("  no container")
        for note in host.notes:
            out.append(f"  note: {note}")
        out.append("")
    return "\n".join(out)


def as_json(hosts: Sequence[HostAudit]) -> dict[str, Any]:
    return {
        "hosts": [
            {
                "host": host.host,
                "url": host.url,
                "error": host.error,
                "notes": host.notes,
                "daemon": [f.as_dict() for f in host.daemon],
                "containers": [
                    {
                        "name": c.name,
                        "id": c.id,
                        "image": c.image,
                        "state": c.state,
                        "score": score(c.findings),
                        "findings": [f.as_dict() for f in c.findings],
                    }
                    for c in ordered(host.containers)
                ],
            }
            for host in hosts
        ]
    }


def render_json(hosts: Sequence[HostAudit]) -> str:
    return json.dumps(as_json(hosts), indent=2)


def exit_code(hosts: Sequence[HostAudit], fail_on: str | None) -> int:
    """1 when a finding is at least as bad as ``fail_on``; 3 when a daemon was not audited."""
    if fail_on is not None:
        limit = FAIL_ON[fail_on]
        for host in hosts:
            findings = host.daemon + [f for c in host.containers for f in c.findings]
            if any(severity(f.result) <= limit for f in findings):
                return 1
    if any(host.error for host in hosts):
        return 3
    return 0

"""What each fault of the fault suite did to the lab, for the table printed at the end."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Outcome:
    fault: str
    etcd_s: float | None = None  # heal -> etcd equal to `docker ps` on every host
    dns_s: float | None = None  # etcd settled -> every DNS server answering what etcd holds
    kernel_s: float | None = None  # heal -> every kernel holding exactly the valid leases
    stale: int = 0  # records of containers that no longer run, when the deadline passed
    missing: int = 0  # running containers without a record, when the deadline passed
    duplicate: int = 0  # most records for one endpoint seen at once, minus one
    breaches: list[str] = field(default_factory=list)


OUTCOMES: list[Outcome] = []


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def render_table(outcomes: list[Outcome]) -> str:
    header = ("fault", "etcd s", "dns s", "kernel s", "stale", "missing", "duplicate", "result")
    rows = [
        (
            o.fault,
            _seconds(o.etcd_s),
            _seconds(o.dns_s),
            _seconds(o.kernel_s),
            str(o.stale),
            str(o.missing),
            str(o.duplicate),
            "ok" if not o.breaches else "BREACH: " + "; ".join(o.breaches),
        )
        for o in outcomes
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]))
    return "\n".join(lines)

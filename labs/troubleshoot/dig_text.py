"""dig's output, read back into the reply it shows.

Pure. dig (bind9-dnsutils) prints the header, the flags and each section of the
reply as zone-file lines; this reads those, so explain shows the server's answer
exactly as a learner's own ``dig @SERVER NAME`` would.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_STATUS_RE = re.compile(r"status: ([A-Z]+)")
_FLAGS_RE = re.compile(r";; flags: ([a-z ]*);")
_TIME_RE = re.compile(r";; Query time: (\d+) msec")
_SERVER_RE = re.compile(r";; SERVER: ([^#\s]+)#(\d+)")
_SECTIONS = {"ANSWER": "answer", "AUTHORITY": "authority", "ADDITIONAL": "additional"}


@dataclass(frozen=True)
class ResourceRecord:
    name: str
    ttl: int
    rclass: str
    rtype: str
    data: str

    @property
    def zone_line(self) -> str:
        return f"{self.name} {self.ttl} {self.rclass} {self.rtype} {self.data}"


@dataclass(frozen=True)
class DigReply:
    status: str  # NOERROR, NXDOMAIN, SERVFAIL ...; "" when no reply came
    flags: tuple[str, ...] = ()
    answer: tuple[ResourceRecord, ...] = ()
    authority: tuple[ResourceRecord, ...] = ()
    additional: tuple[ResourceRecord, ...] = ()
    query_time_ms: int | None = None
    server: str = ""
    problem: str = field(default="")  # dig's own words when there was no reply


def parse_record(line: str) -> ResourceRecord | None:
    parts = line.split(None, 4)
    if len(parts) < 4 or not parts[1].isdigit():
        return None
    name, ttl, rclass, rtype = parts[:4]
    return ResourceRecord(name, int(ttl), rclass, rtype, parts[4] if len(parts) > 4 else "")


def parse_dig(text: str) -> DigReply:
    status = flags = ""
    sections: dict[str, list[ResourceRecord]] = {v: [] for v in _SECTIONS.values()}
    current = ""
    query_time: int | None = None
    server = ""
    for line in text.splitlines():
        if match := _STATUS_RE.search(line):
            status = match.group(1)
        if match := _FLAGS_RE.search(line):
            flags = match.group(1)
        if match := _TIME_RE.search(line):
            query_time = int(match.group(1))
        if match := _SERVER_RE.search(line):
            server = match.group(1)
        if line.startswith(";; ") and line.endswith(" SECTION:"):
            current = _SECTIONS.get(line[3:].split()[0], "")
            continue
        if not line.strip():
            current = ""
            continue
        if current and not line.startswith(";") and (record := parse_record(line)):
            sections[current].append(record)
    problem = ""
    if not status:
        problem = next(
            (ln.strip(" ;") for ln in text.splitlines() if "timed out" in ln or "error" in ln),
            text.strip().splitlines()[-1] if text.strip() else "no output",
        )
    return DigReply(
        status=status,
        flags=tuple(flags.split()),
        answer=tuple(sections["answer"]),
        authority=tuple(sections["authority"]),
        additional=tuple(sections["additional"]),
        query_time_ms=query_time,
        server=server,
        problem=problem,
    )

"""A real DNS question to a host's DNS server, with dig (bind9-dnsutils).

I/O, thin: dig runs in the host's namespace (or on its VM), where the
server's bridge address is reachable as it is from the host's containers.
``dig_text.py`` reads the answer.
"""

from __future__ import annotations

from labs.troubleshoot.facts import DnsQuery
from labs.troubleshoot.host_shell import run_on
from labs.troubleshoot.hosts import LabHost

DIG_TIMEOUT_S = 2  # per try; one try, so a dead server costs 2 s, not 15


def dig_argv(server: str, qname: str, qtype: str) -> list[str]:
    return ["dig", f"+time={DIG_TIMEOUT_S}", "+tries=1", f"@{server}", qname, qtype]


async def ask(host: LabHost, server: str, qname: str, qtype: str) -> DnsQuery:
    output = await run_on(host, dig_argv(server, qname, qtype), timeout_s=DIG_TIMEOUT_S + 3)
    return DnsQuery(qname, qtype, server, output)

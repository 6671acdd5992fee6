"""This host's tunnel report: the entries read back from the kernel, in the shared format.

The network agent publishes it (``discovery.tunnels``) so that readers (the
live map, doctor) judge the overlay by what each kernel holds, not by what
the leases say it should hold. Pure: the agent does the reading and writing.
"""

from __future__ import annotations

from agent.network.desired import KernelEntries
from discovery.flannel import SubnetLease
from discovery.tunnels import TunnelReport


def tunnel_report(own: SubnetLease, device: str, entries: KernelEntries) -> TunnelReport:
    return TunnelReport(
        subnet=own.subnet,
        public_ip=own.public_ip,
        vtep_mac=own.vtep_mac,
        device=device,
        routes={route.destination: route.gateway for route in sorted(entries.routes)},
        neighbours={entry.address: entry.mac for entry in sorted(entries.neighbours)},
        fdb={entry.mac: entry.remote_ip for entry in sorted(entries.fdb)},
    )


__all__ = ["tunnel_report"]

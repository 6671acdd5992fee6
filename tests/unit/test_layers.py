"""The layers as a running program sees them, beyond what import-linter reads.

import-linter checks the import statements (pyproject.toml); these check what
it cannot see: which modules a command really loads, and that the DNS server's
package leaves the name ``dns`` to dnspython in the same environment.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def imported_modules(*args: str) -> set[str]:
    """Every module a `python -m discovery.cli ARGS` run imports (python -X importtime)."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "discovery.cli", *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    return set(re.findall(r"^import time:.*\|\s*(\S+)$", result.stderr, re.MULTILINE))


def test_discoveryctl_lookup_loads_no_lab_code():
    # A closed loopback port: the command fails at once, after its imports.
    modules = imported_modules("lookup", "web", "--etcd-endpoints", "http://127.0.0.1:9")
    assert "discovery.store" in modules  # it did get as far as the store
    assert not {m for m in modules if m == "labs" or m.startswith("labs.")}
    assert not {m for m in modules if m.split(".")[0] in ("agent", "dnsserver", "audit")}
    assert "docker" not in modules


def test_the_lab_commands_come_from_the_labs_package_by_entry_point():
    listed = subprocess.run(
        [BIN / "discoveryctl", "--help"], capture_output=True, text=True, timeout=60
    ).stdout
    assert re.search(r"^\s+lab\s+the lab commands, from labs", listed, re.MULTILINE), listed
    lab_help = subprocess.run(
        [BIN / "discoveryctl", "lab", "--help"], capture_output=True, text=True, timeout=60
    )
    assert lab_help.returncode == 0 and "usage: discoveryctl lab" in lab_help.stdout


def test_the_audit_comes_from_the_audit_package_by_entry_point():
    listed = subprocess.run(
        [BIN / "discoveryctl", "--help"], capture_output=True, text=True, timeout=60
    ).stdout
    assert re.search(r"^\s+audit\s+the audit commands, from audit", listed, re.MULTILINE), listed
    audit_help = subprocess.run(
        [BIN / "discoveryctl", "audit", "--help"], capture_output=True, text=True, timeout=60
    )
    assert audit_help.returncode == 0 and "usage: discoveryctl audit" in audit_help.stdout


def test_the_map_server_comes_from_the_mapserver_package_by_entry_point():
    listed = subprocess.run(
        [BIN / "discoveryctl", "--help"], capture_output=True, text=True, timeout=60
    ).stdout
    assert re.search(r"^\s+map\s+the map commands, from mapserver", listed, re.MULTILINE), listed
    map_help = subprocess.run(
        [BIN / "discoveryctl", "map", "--help"], capture_output=True, text=True, timeout=60
    )
    assert map_help.returncode == 0 and "usage: discoveryctl map" in map_help.stdout
    assert "--listen" in map_help.stdout and "--etcd-endpoints" in map_help.stdout


def test_dnspython_and_the_dns_server_share_one_environment():
    # dnspython is a test dependency: installed in this very environment, beside us.
    program = (
        "import dns.resolver, dns.message, dnsserver.cli, dnsserver.wire\n"
        "assert dns.resolver.__file__.endswith('dns/resolver.py'), dns.resolver.__file__\n"
        "query = dns.message.make_query('web.service.lab', 'A').to_wire()\n"
        "print(dnsserver.wire.__name__, len(query))\n"
    )
    both = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
    assert both.returncode == 0, both.stderr
    assert both.stdout.split()[0] == "dnsserver.wire"
    server = subprocess.run(
        [BIN / "discovery-dns", "--help"], capture_output=True, text=True, timeout=60
    )
    assert server.returncode == 0 and "discovery-dns" in server.stdout, server.stderr

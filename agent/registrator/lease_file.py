"""The services agent remembers its etcd leases on disk, to know its own records.

A restarted agent must delete the records its previous run left for
containers that went away meanwhile, yet never touch records that only
*name* this host: ones made by hand, or another agent's that was started
with the same host name. What tells them apart is the etcd lease a record
sits under, so the agent keeps its last few lease ids in
``<state-dir>/leases-<host>-<docker>.json`` (one file per host name and
Docker daemon, so two agents on one machine never share one).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)
DEFAULT_STATE_DIR = Path("/var/lib/discovery-agent/services")
KEPT_LEASES = 4  # more than one: a run may lose its lease and take a new one


def lease_file_path(state_dir: Path, node: str, docker_url: str) -> Path:
    docker = hashlib.sha256(docker_url.encode()).hexdigest()[:12]
    return state_dir / f"leases-{node}-{docker}.json"


def load_leases(path: Path) -> list[int]:
    """The lease ids kept in ``path``; none when it is missing or unreadable."""
    try:
        data = json.loads(path.read_text())
        leases = [int(text, 16) for text in data["leases"]]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError) as error:
        log.warning("ignoring unreadable lease file %s: %s", path, error)
        return []
    return [lease for lease in leases if 0 < lease < 2**63][-KEPT_LEASES:]


def save_lease(path: Path, lease_id: int, earlier: list[int]) -> list[int]:
    """Add ``lease_id`` to the kept leases; returns them. A failed write is logged,
    not raised: it only means a later run may leave a few records to expire."""
    kept = [lease for lease in earlier if lease != lease_id][-(KEPT_LEASES - 1) :]
    leases = [*kept, lease_id]
    text = json.dumps({"leases": [f"{lease:x}" for lease in leases]}) + "\n"
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_text(text)
        os.replace(temporary, path)
    except OSError as error:
        log.warning("cannot keep the lease in %s: %s", path, error.strerror or error)
    return leases

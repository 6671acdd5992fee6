"""Files the network half reads and writes on the host.

* ``<state-dir>/state.json``: what the host remembers across restarts, the
  subnet it last held and its VTEP MAC (``{"Subnet": "10.5.1.0/24",
  "VtepMAC": "6e:..."}``). flannel remembers the subnet by reading its old
  ``subnet.env``; that is read too, when the state file has no subnet.
* ``subnet.env`` and the Docker options file, written whole or not at all
  (write to a temporary file, then rename), so a reader never sees half.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from agent.network.errors import NetworkError
from agent.network.subnet_env import subnet_from_env
from discovery.flannel import parse_subnet_env

log = logging.getLogger(__name__)
STATE_FILE_NAME = "state.json"
_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


@dataclass(frozen=True)
class Remembered:
    subnet: ipaddress.IPv4Network | None = None
    vtep_mac: str | None = None


def write_atomically(path: Path, text: str, mode: int = 0o644) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(handle, "w") as stream:
                stream.write(text)
                stream.flush()
                os.fsync(stream.fileno())
            os.chmod(temporary, mode)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError as error:
        raise NetworkError(f"cannot write {path}: {error.strerror or error}") from error


def load_remembered(state_dir: Path, subnet_file: Path) -> Remembered:
    """What this host had before; nothing (not an error) when files are missing or bad."""
    subnet: ipaddress.IPv4Network | None = None
    mac: str | None = None
    try:
        data = json.loads((state_dir / STATE_FILE_NAME).read_text())
        if isinstance(data, dict):
            if isinstance(data.get("Subnet"), str):
                subnet = ipaddress.IPv4Network(data["Subnet"])
            text = data.get("VtepMAC")
            if isinstance(text, str) and _MAC_RE.match(text.lower()):
                mac = text.lower()
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as error:
        log.warning("ignoring unreadable state file in %s: %s", state_dir, error)
    if subnet is None:
        with contextlib.suppress(OSError):
            subnet = subnet_from_env(parse_subnet_env(subnet_file.read_text()))
    return Remembered(subnet, mac)


def save_remembered(state_dir: Path, remembered: Remembered) -> None:
    data = {
        "Subnet": str(remembered.subnet) if remembered.subnet else None,
        "VtepMAC": remembered.vtep_mac,
    }
    write_atomically(state_dir / STATE_FILE_NAME, json.dumps(data, indent=2) + "\n", 0o600)


def remove_file(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as error:
        log.warning("cannot remove %s: %s", path, error)

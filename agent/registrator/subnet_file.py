"""This host's subnet lease, as the network half wrote it to subnet.env.

The registrator registers only container addresses that other hosts can
route: those inside this host's lease (desired.py says why). It learns the
lease the way Docker does, from the ``subnet.env`` file that the network half
(or flannel) writes, ``FLANNEL_SUBNET`` in it: no etcd read, and nothing to
configure twice. The file is read at start and again whenever it changes (a
new lease after the old one expired, a file written after the agent
started): ``refresh`` looks at its size, mtime and inode, which costs one
``stat``.

No file, or one without a valid ``FLANNEL_SUBNET``, before any lease was
read means "lease unknown": every address is registered, as on a host
without an overlay, and the log says so once. A file that goes away after a
lease was read (the network half removes and writes it again when it
restarts) leaves the last lease in force.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from pathlib import Path

from discovery.flannel import parse_subnet_env

log = logging.getLogger(__name__)


def lease_from_subnet_env(text: str) -> ipaddress.IPv4Network | None:
    """FLANNEL_SUBNET (``10.5.75.1/24``, the bridge's address) as its network, or None."""
    value = parse_subnet_env(text).get("FLANNEL_SUBNET", "")
    try:
        return ipaddress.IPv4Network(value, strict=False) if value else None
    except ValueError:
        return None


class SubnetFile:
    """The lease in one subnet.env file, read again when the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lease: ipaddress.IPv4Network | None = None
        self._seen: tuple[int, int, int] | None = None  # (inode, size, mtime_ns)
        self._said = ""  # the last state logged, so each is logged once

    def refresh(self) -> bool:
        """Read the file again if it changed; True when the lease changed."""
        try:
            stat = os.stat(self.path)
        except OSError as error:
            # Gone while the network half restarts (it writes the file again once it
            # holds the lease): the last lease read stays the rule meanwhile.
            return self._set(self.lease, f"no subnet.env ({error.strerror})", (0, 0, 0))
        seen = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        if seen == self._seen:
            return False
        try:
            text = self.path.read_text()
        except (OSError, UnicodeDecodeError) as error:
            return self._set(None, f"subnet.env unreadable ({error})", seen)
        lease = lease_from_subnet_env(text)
        if lease is None:
            return self._set(None, "subnet.env has no valid FLANNEL_SUBNET", seen)
        return self._set(lease, "", seen)

    def _set(
        self, lease: ipaddress.IPv4Network | None, problem: str, seen: tuple[int, int, int]
    ) -> bool:
        self._seen = seen
        changed = lease != self.lease
        self.lease = lease
        said = f"{lease} {problem}"
        if said != self._said:
            self._said = said
            if lease is not None and problem:
                log.info(
                    "subnet.env not readable now; the last lease read stays the rule",
                    extra={"fields": {"lease": str(lease), "reason": problem}},
                )
            elif lease is not None:
                log.info(
                    "lease read: container addresses outside it are not registered",
                    extra={"fields": {"lease": str(lease), "subnet_file": str(self.path)}},
                )
            else:
                log.warning(
                    "lease unknown: every container address is registered, "
                    "reachable from other hosts or not",
                    extra={"fields": {"subnet_file": str(self.path), "reason": problem}},
                )
        return changed


__all__ = ["SubnetFile", "lease_from_subnet_env"]

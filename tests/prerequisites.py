"""Prerequisite checks for tests that need root, binaries or kernel features.

Outside CI a missing prerequisite skips the test with the reason. Under CI
(``CI=true``) it fails the test loudly instead: CI installs everything the
suite needs, so a missing piece there is a broken set-up, never a silent skip.
"""

from __future__ import annotations

import os
import shutil

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(condition: bool, reason: str) -> None:
    if condition:
        return
    if in_ci():
        pytest.fail(f"prerequisite missing in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def require_root() -> None:
    require(os.geteuid() == 0, "needs root (network namespaces, iptables, dockerd)")


def require_binary(*names: str) -> None:
    for name in names:
        require(shutil.which(name) is not None, f"needs the {name!r} binary on PATH")

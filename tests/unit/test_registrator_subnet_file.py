"""The registrator's view of this host's lease: subnet.env read at start and when it changes."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import pytest

from agent.registrator.subnet_file import SubnetFile, lease_from_subnet_env

ENV = (
    "FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.75.1/24\n"
    "FLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"
)


@pytest.mark.parametrize(
    ("text", "lease"),
    [
        (ENV, "10.5.75.0/24"),
        ("FLANNEL_SUBNET=10.5.9.0/24\n", "10.5.9.0/24"),
        ("FLANNEL_MTU=1450\n", None),
        ("FLANNEL_SUBNET=nonsense\n", None),
        ("", None),
    ],
)
def test_lease_from_subnet_env(text: str, lease: str | None) -> None:
    expected = ipaddress.IPv4Network(lease) if lease else None
    assert lease_from_subnet_env(text) == expected


def test_missing_file_means_no_lease(tmp_path: Path) -> None:
    subnet_file = SubnetFile(tmp_path / "subnet.env")
    assert subnet_file.refresh() is False
    assert subnet_file.lease is None


def test_read_at_start_and_again_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "subnet.env"
    path.write_text(ENV)
    subnet_file = SubnetFile(path)
    assert subnet_file.refresh() is True
    assert subnet_file.lease == ipaddress.IPv4Network("10.5.75.0/24")
    assert subnet_file.refresh() is False  # unchanged: one stat, no read

    path.write_text(ENV.replace("10.5.75.1/24", "10.5.9.1/24"))
    os.utime(path, ns=(1, 1))  # a new mtime even within the clock's resolution
    assert subnet_file.refresh() is True
    assert subnet_file.lease == ipaddress.IPv4Network("10.5.9.0/24")


def test_a_file_that_goes_away_keeps_the_last_lease(tmp_path: Path) -> None:
    path = tmp_path / "subnet.env"
    path.write_text(ENV)
    subnet_file = SubnetFile(path)
    subnet_file.refresh()
    path.unlink()  # the network half restarting
    assert subnet_file.refresh() is False
    assert subnet_file.lease == ipaddress.IPv4Network("10.5.75.0/24")


def test_a_file_written_after_start_is_picked_up(tmp_path: Path) -> None:
    path = tmp_path / "subnet.env"
    subnet_file = SubnetFile(path)
    subnet_file.refresh()
    path.write_text(ENV)
    assert subnet_file.refresh() is True
    assert subnet_file.lease == ipaddress.IPv4Network("10.5.75.0/24")

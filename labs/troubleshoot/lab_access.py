"""Which lab explain and doctor look at, and how they reach its etcd: one way for both.

The local lab by name (its state file, with the process records), else this
Vagrant VM's lab (lab.toml); ``--name`` (default $DISCOVERY_LAB_NAME, else
lab) picks the local lab, as `discoveryctl lab` does.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

from discovery.cli import within_command_budget
from discovery.errors import DiscoveryError
from discovery.settings import Settings
from labs.image_build import lab_image_names
from labs.plan import DEFAULT_LAB_NAME
from labs.state import LabState, load_state, state_file
from labs.troubleshoot.hosts import LabHosts, local_lab_hosts, vagrant_lab_hosts
from labs.vagrant_lab import load_vagrant_lab


@dataclass(frozen=True)
class FoundLab:
    hosts: LabHosts
    state: LabState | None  # the local lab's state; None on a VM
    probe_image: str  # the base image, for probe containers

    @property
    def settings(self) -> Settings:
        """The lab's etcd as the learner, within discoveryctl's command budget."""
        settings = Settings(etcd_endpoints=self.hosts.etcd_endpoints)
        if self.hosts.etcd_client:
            settings = self.hosts.etcd_client.settings(settings)
        return within_command_budget(settings)


def add_lab_name(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--name",
        dest="lab",
        default=os.environ.get("DISCOVERY_LAB_NAME", DEFAULT_LAB_NAME),
        help="lab name (default: $DISCOVERY_LAB_NAME, else lab)",
    )


def find_lab(name: str) -> FoundLab:
    """The local lab by name, else this Vagrant VM's; one line when there is neither."""
    state = load_state(name) if state_file(name).exists() else None
    if state is not None:
        return FoundLab(local_lab_hosts(state), state, state.images.get("base", ""))
    vagrant = load_vagrant_lab()
    if vagrant is not None:
        return FoundLab(vagrant_lab_hosts(vagrant), None, lab_image_names()["base"])
    raise DiscoveryError(
        f"lab {name!r} is not up (no {state_file(name)}); run: discoveryctl lab up"
    )


__all__ = ["FoundLab", "add_lab_name", "find_lab"]

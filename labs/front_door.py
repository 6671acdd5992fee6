"""What makes the machine's own lab usable from any new shell, and undoes it.

After `scripts/lab up`, a learner opens a terminal and types
`discoveryctl lookup web` or `etcdctl get --prefix /coreos.com/network/`,
with no PATH set up and no flags. Three things make that work, all made by
`lab up` for the machine's lab (the default name under the default state
directory) and removed by `lab down`:

* links in ``/usr/local/bin`` to the project's commands and etcd's, in the
  project's virtual environment;
* ``/etc/discovery/config.toml``, which every command of the project reads,
  naming the lab's etcd members;
* an etcd gRPC proxy on 127.0.0.1:2379, etcdctl's default endpoint (started
  by the runner, supervised like the lab's other processes).

Nothing that was there before is replaced: a file or link the lab did not
make is left alone, with a line saying so, and only what the lab made is
removed again (the state lists it).
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable
from pathlib import Path

from discovery.settings import DEFAULT_CONFIG_PATH
from labs.plan import DEFAULT_LAB_NAME
from labs.state import DEFAULT_STATE_ROOT, LabState, state_root

LINK_DIR = Path("/usr/local/bin")
TOOLS = ("discoveryctl", "discovery-agent", "discovery-dns", "etcdctl", "etcd")
CONFIG_MARKER = "# written by `discoveryctl lab up`"
LOOPBACK_ETCD = ("127.0.0.1", 2379)


def is_machine_lab(name: str) -> bool:
    """The lab a learner gets from `scripts/lab up`: only it gets a front door."""
    return name == DEFAULT_LAB_NAME and state_root() == DEFAULT_STATE_ROOT


def config_text(state: LabState) -> str:
    endpoints = ", ".join(f'"{url}"' for url in state.etcd_endpoints)
    return (
        f"{CONFIG_MARKER} for lab {state.name!r}; `discoveryctl lab down` removes it.\n"
        f"etcd_endpoints = [{endpoints}]\n"
        'domain = "lab"\n'
    )


def _ours(path: Path, source: Path) -> bool:
    return path.is_symlink() and path.resolve() == source.resolve()


def install(
    state: LabState, say: Callable[[str], None], link_dir: Path = LINK_DIR,
    config_path: Path = DEFAULT_CONFIG_PATH,
) -> None:  # fmt: skip
    """Links and the config file; what it made goes into ``state.front_door``."""
    made = set(state.front_door)
    tools_dir = Path(sys.executable).parent
    for tool in TOOLS:
        source, link = tools_dir / tool, link_dir / tool
        if not source.exists():
            continue
        if _ours(link, source):
            made.add(str(link))
        elif link.exists() or link.is_symlink():
            say(f"   {link} exists and is not the lab's: left alone")
        else:
            link_dir.mkdir(parents=True, exist_ok=True)
            link.symlink_to(source)
            made.add(str(link))
    if config_path.exists() and not config_path.read_text().startswith(CONFIG_MARKER):
        say(f"   {config_path} exists and is not the lab's: left alone")
    else:
        config_path.parent.mkdir(parents=True, exist_ok=True)
        config_path.write_text(config_text(state))
        made.add(str(config_path))
    state.front_door = sorted(made)
    say(f"   commands in {link_dir}, etcd endpoints in {config_path}: ready in any new shell")


def remove(state: LabState, say: Callable[[str], None]) -> None:
    """Remove exactly what ``install`` made and is still as it made it."""
    tools_dir = Path(sys.executable).parent
    for text in state.front_door:
        path = Path(text)
        if path.is_symlink():
            if _ours(path, tools_dir / path.name):
                path.unlink()
        elif path.is_file() and path.read_text().startswith(CONFIG_MARKER):
            path.unlink()
    if state.front_door:
        say(f"-- removed {', '.join(state.front_door)}")
    state.front_door = []


def loopback_port_free(address: tuple[str, int] = LOOPBACK_ETCD) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(address)
        except OSError:
            return False
    return True


def proxy_command(etcd: str, state: LabState) -> list[str]:
    """etcd's own gRPC proxy on etcdctl's default endpoint, to the lab's members."""
    members = ",".join(url.split("//", 1)[1] for url in state.etcd_endpoints)
    host, port = LOOPBACK_ETCD
    return [etcd, "grpc-proxy", "start", f"--endpoints={members}",
            f"--listen-addr={host}:{port}"]  # fmt: skip

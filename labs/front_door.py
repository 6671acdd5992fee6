"""What makes the machine's own lab usable from any new shell, and undoes it.

After `scripts/lab up`, a learner opens a terminal and types
`discoveryctl lookup web` or `etcdctl get --prefix /coreos.com/network/`,
with no PATH set up and no flags. The lab's etcd talks only to clients with a
certificate from the lab's CA, so both need the learner's certificate too.
Three things make that work, all made by `lab up` for the machine's lab (the
default name under the default state directory) and removed by `lab down`:

* links in ``/usr/local/bin`` to the project's commands and etcd's, in the
  project's virtual environment;
* ``/etc/discovery/config.toml``, which every command of the project reads,
  naming the lab's etcd members and the learner's certificate;
* ``/etc/profile.d/discovery-lab.sh``, which every login shell reads,
  exporting etcdctl's own variables (``ETCDCTL_ENDPOINTS``, ``ETCDCTL_CACERT``,
  ``ETCDCTL_CERT``, ``ETCDCTL_KEY``) unless the shell has them already;
* and, as ``/usr/local/bin/etcdctl``, a few lines of sh in front of the real
  etcdctl that give the same to a shell that read no profile (a terminal
  window's shell is no login shell) and names no etcd of its own.

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
from labs.etcd_tls import etcdctl_exports, etcdctl_variables, learner_config_lines
from labs.plan import DEFAULT_LAB_NAME
from labs.state import DEFAULT_STATE_ROOT, LabState, etcd_client, state_root

LINK_DIR = Path("/usr/local/bin")
TOOLS = ("discoveryctl", "discovery-agent", "discovery-dns", "etcd")  # linked
ETCDCTL = "etcdctl"  # written: a wrapper (etcdctl_wrapper_text)
CONFIG_MARKER = "# written by `discoveryctl lab up`"
PROFILE_PATH = Path("/etc/profile.d/discovery-lab.sh")


def is_machine_lab(name: str) -> bool:
    """The lab a learner gets from `scripts/lab up`: only it gets a front door."""
    return name == DEFAULT_LAB_NAME and state_root() == DEFAULT_STATE_ROOT


def config_text(state: LabState) -> str:
    endpoints = ", ".join(f'"{url}"' for url in state.etcd_endpoints)
    text = (
        f"{CONFIG_MARKER} for lab {state.name!r}; `discoveryctl lab down` removes it.\n"
        f"etcd_endpoints = [{endpoints}]\n"
        'domain = "lab"\n'
    )
    learner = etcd_client(state)
    if learner:
        text += "".join(line + "\n" for line in learner_config_lines(learner))
    return text


def profile_text(state: LabState) -> str:
    """etcdctl's variables for a login shell, unless it has its own (etcd_tls.etcdctl_exports)."""
    lines = [f"{CONFIG_MARKER} for lab {state.name!r}; `discoveryctl lab down` removes it."]
    lines += etcdctl_exports(state.etcd_endpoints, etcd_client(state))
    return "\n".join(lines) + "\n"


def etcdctl_wrapper_text(state: LabState, etcdctl: Path) -> str:
    """``/usr/local/bin/etcdctl``: the real one, given the lab's etcd when the shell and
    the command line name none (no ETCDCTL_* variable, no --endpoints or TLS flag);
    anything the learner set, even a variable emptied on purpose, is left alone."""
    variables = etcdctl_variables(state.etcd_endpoints, etcd_client(state))
    exports = " ".join(f'{key}="{value}"' for key, value in variables.items())
    own_flags = "|".join(f'*" --{flag} "*|*" --{flag}="*' for flag in
                         ("endpoints", "cacert", "cert", "key"))  # fmt: skip
    return (
        "#!/bin/sh\n"
        f"{CONFIG_MARKER} for lab {state.name!r}; `discoveryctl lab down` removes it.\n"
        "# etcdctl reads no config file, only flags and ETCDCTL_* variables. A shell that\n"
        "# names no etcd (as one that read no /etc/profile.d) gets the lab's: its members,\n"
        "# which speak only TLS, and your certificate (the etcd user 'learner').\n"
        f'case " $* " in\n{own_flags}) ;;\n'
        '*) if [ -z "${ETCDCTL_ENDPOINTS+x}${ETCDCTL_CACERT+x}${ETCDCTL_CERT+x}'
        '${ETCDCTL_KEY+x}" ]; then\n'
        f"       export {exports}\n"
        "   fi ;;\n"
        "esac\n"
        f'exec "{etcdctl}" "$@"\n'
    )


def _ours(path: Path, source: Path) -> bool:
    return path.is_symlink() and path.resolve() == source.resolve()


def _written_by_lab(path: Path) -> bool:
    """A file ``install`` wrote: its first line (or the one after ``#!``) is the marker."""
    try:
        head = path.read_text().splitlines()[:2]
    except (OSError, UnicodeDecodeError):
        return False
    return any(line.startswith(CONFIG_MARKER) for line in head)


def install(
    state: LabState, say: Callable[[str], None], link_dir: Path = LINK_DIR,
    config_path: Path = DEFAULT_CONFIG_PATH, profile_path: Path = PROFILE_PATH,
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
    written = [(config_path, config_text(state), 0o644), (profile_path, profile_text(state), 0o644)]
    if (tools_dir / ETCDCTL).exists():
        wrapper = etcdctl_wrapper_text(state, tools_dir / ETCDCTL)
        written.append((link_dir / ETCDCTL, wrapper, 0o755))
    for path, text, mode in written:
        if (path.exists() or path.is_symlink()) and not _written_by_lab(path):
            say(f"   {path} exists and is not the lab's: left alone")
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(mode)
        made.add(str(path))
    state.front_door = sorted(made)
    say(
        f"   commands in {link_dir}, etcd endpoints and the learner's certificate in "
        f"{config_path} and {profile_path} (etcdctl finds them in any shell)"
    )


def remove(state: LabState, say: Callable[[str], None]) -> None:
    """Remove exactly what ``install`` made and is still as it made it."""
    tools_dir = Path(sys.executable).parent
    for text in state.front_door:
        path = Path(text)
        if path.is_symlink():
            if _ours(path, tools_dir / path.name):
                path.unlink()
        elif path.is_file() and _written_by_lab(path):
            path.unlink()
    if state.front_door:
        say(f"-- removed {', '.join(state.front_door)}")
    state.front_door = []


def loopback_port_free(address: tuple[str, int]) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(address)
        except OSError:
            return False
    return True

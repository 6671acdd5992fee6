"""`discoveryctl lab ...`: Docker Machine's verbs for the local lab.

    lab up [--hosts N] [--etcd-members 3]   create hosts, etcd, agents, DNS
    lab demo                                 web on host2 and host3, found from host1
    lab down                                 remove all of it
    lab ls | status | ip HOST | inspect HOST | env HOST | url HOST | config HOST
    lab regenerate-certs HOST [--client-certs]  a new TLS certificate for HOST's dockerd
    lab exec HOST -- CMD...                  run CMD in HOST's namespace
    lab shell HOST                           a shell there, DOCKER_HOST set
    lab images                               the lab's image names
    lab exercises | check NN                 the exercises, and checking one you did
    lab break [SCENARIO] | --reset           a fault to diagnose (lab check break: fixed?)
    lab audit [HOST ...] [-o json]           a container security audit of every host's daemon
    lab map [--listen 127.0.0.1:8500]        the lab's catalog in Consul's HTTP API shapes

Like ``docker-machine env``, ``eval $(discoveryctl lab env host2)`` points the
docker CLI at host2's daemon: ``tcp://IP:2376`` with TLS and the lab's client
certificate (``labs.docker_tls``), as Docker Machine set its hosts up.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from audit.cli import add_output_arguments
from audit.cli import report as audit_report
from audit.engine import audit_host
from discovery.cli import EXIT_NOT_FOUND, EXIT_USAGE, Parser
from discovery.errors import DiscoveryError, SettingsError
from discovery.settings import Settings
from labs import docker_tls as tls
from labs import lab_certs, topology
from labs.breaks import command as breaks
from labs.demo import run_demo
from labs.exercise import Exercise, all_exercises, find_exercise, run_check
from labs.plan import (
    DEFAULT_LAB_NAME,
    DEFAULT_UNDERLAY,
    LabPlan,
    NetworkInUse,
    PlanError,
    free_underlay,
    plan_lab,
    underlay_conflicts,
)
from labs.runner import Lab, process_condition
from labs.state import (
    HostState,
    LabState,
    etcd_client,
    etcd_settings,
    load_state,
    state_file,
    state_root,
)
from labs.vagrant_lab import VAGRANT_VERBS, VagrantLab, load_vagrant_lab
from mapserver.cli import add_map_arguments
from mapserver.cli import run as run_map_server
from mapserver.server import DEFAULT_LISTEN


class LabCommandError(DiscoveryError):
    pass


# A check exits 2 when it cannot judge the exercise on this kind of lab (LAB_KIND).
CHECK_CANNOT_JUDGE = 2


def build_parser() -> argparse.ArgumentParser:
    lab = Parser(
        prog="discoveryctl lab",
        description="bring up and inspect the local multi-host lab (or a Vagrant lab's VM)",
    )
    name_help = "lab name (default: $DISCOVERY_LAB_NAME, else lab)"
    lab.add_argument(
        "--name", default=os.environ.get("DISCOVERY_LAB_NAME", DEFAULT_LAB_NAME), help=name_help
    )
    # --name after the verb too (`lab up --name two`), as docker-machine takes it.
    after_verb = Parser(add_help=False)
    after_verb.add_argument("--name", default=argparse.SUPPRESS, help=name_help)
    verbs = lab.add_subparsers(dest="lab_command", required=True, parser_class=Parser)

    def verb(name: str, help_text: str) -> Any:
        return verbs.add_parser(name, help=help_text, parents=[after_verb])

    up = verb("up", "create (or grow, or repair) the lab")
    up.add_argument("--hosts", type=int, default=None, help="number of hosts (default 3)")
    up.add_argument(
        "--etcd-members",
        type=int,
        choices=(1, 3),
        default=None,
        help="1: etcd on the bridge; 3: one member on each of host1..host3 "
        "(default 3 with 3 hosts or more, else 1)",
    )
    up.add_argument(
        "--underlay", help=f"the lab's private underlay network (default {DEFAULT_UNDERLAY})"
    )
    verb("demo", "run web on host2 and host3, find them from host1")
    verb("down", "stop and remove everything the lab made")
    verb("ls", "list hosts").add_argument(
        "-o", "--output", choices=("table", "json"), default="table"
    )
    verb("status", "is the lab up?")
    for verb_name, help_text in (
        ("ip", "a host's underlay address"),
        ("inspect", "a host's details as JSON"),
        ("env", "shell exports pointing docker at a host (TLS, as docker-machine env)"),
        ("url", "a host's Docker daemon URL (tcp://IP:2376)"),
        ("config", "the docker CLI's TLS flags for a host (as docker-machine config)"),
        ("shell", "a shell in a host's namespace"),
        ("stop", "stop a host: its etcd member, agents, dockerd and DNS server"),
        ("start", "start a stopped host again (same subnet and VTEP MAC)"),
        ("restart", "stop a host and start it again"),
        ("create", "add a host to the running lab (the next hostN, or one removed)"),
        ("rm", "take a host out of the lab: its processes, containers, lease and namespace"),
    ):
        verb(verb_name, help_text).add_argument("host")
    regenerate = verb(
        "regenerate-certs", "a new TLS server certificate for a host's dockerd, which restarts"
    )
    regenerate.add_argument("host")
    regenerate.add_argument(
        "--client-certs",
        action="store_true",
        help="also a new client certificate (same CA) in every host's DOCKER_CERT_PATH",
    )
    verbs.choices["create"].add_argument(
        "--userns-remap",
        action="store_true",
        help="its dockerd maps container root to an unprivileged host range (--userns-remap)",
    )
    execute = verb("exec", "run a command in a host's namespace")
    execute.add_argument("host")
    execute.add_argument("argv", nargs=argparse.REMAINDER)
    verb("images", "the lab image names")
    audit = verb("audit", "a container security audit of each host's Docker daemon (CIS v1.6.0)")
    audit.add_argument("hosts", nargs="*", metavar="HOST", help="only these hosts (default: all)")
    add_output_arguments(audit)
    lab_map = verb("map", "serve the lab's catalog in Consul's HTTP API shapes (discoveryctl map)")
    add_map_arguments(lab_map)
    verb("exercises", "list the exercises in labs/exercises")
    verb("check", "check an exercise you did (e.g. lab check 03), or 'break'").add_argument(
        "number"
    )
    fault = verb("break", "break the lab in one of a few ways, for you to diagnose and fix")
    fault.add_argument("scenario", nargs="?", help="which (without one: list them)")
    fault.add_argument("--reset", action="store_true", help="undo the scenario in place")
    return lab


def main(argv: list[str]) -> int:
    """`discoveryctl lab ARGS`: the core CLI hands ARGS here (entry point discoveryctl.commands)."""
    args = build_parser().parse_args(argv)
    try:
        if os.geteuid() != 0:
            raise SettingsError("the local lab needs root (namespaces, bridges, dockerd)")
        return run_lab_command(args)
    except SettingsError as error:
        print(f"discoveryctl: {error}", file=sys.stderr)
        return EXIT_USAGE
    except DiscoveryError as error:
        print(f"discoveryctl: {error}", file=sys.stderr)
        return EXIT_NOT_FOUND
    except KeyboardInterrupt:
        return 130


def plan_from_state(state: LabState | None, name: str) -> LabPlan:
    """The plan a lab was made with (the default one when no state survives)."""
    if state is None:
        return plan_lab(3, name=name)
    return plan_lab(
        state.host_count,
        name=name,
        etcd_members=state.etcd_members,
        underlay=ipaddress.IPv4Network(state.underlay),
    ).without(state.removed)


def check_prerequisites() -> None:
    """What `lab up` needs before it touches anything, each missing one in one line."""
    if os.geteuid() != 0:
        raise LabCommandError("lab up needs root (network namespaces, iptables, dockerd): sudo -i")
    for binary, package in (("dockerd", "docker.io"), ("ip", "iproute2"), ("iptables", "iptables"),
                            ("nsenter", "util-linux"), ("dig", "bind9-dnsutils")):  # fmt: skip
        if shutil.which(binary) is None:
            raise LabCommandError(
                f"lab up needs {binary!r}, which is not installed: scripts/bootstrap "
                f"installs it (Debian package {package})"
            )


def refuse_taken_underlay(plan: LabPlan) -> None:
    """Refuse, before anything is made, an underlay this machine already uses."""
    in_use = topology.networks_in_use()
    root = state_root()
    if root.is_dir():
        for other in sorted(root.iterdir()):
            other_state = load_state(other.name) if other.name != plan.name else None
            if other_state is not None:
                network = ipaddress.IPv4Network(other_state.underlay)
                in_use.append(NetworkInUse(network, f"lab {other.name!r} ({network})"))
    conflicts = underlay_conflicts(plan.underlay, plan.bridge, in_use)
    if conflicts:
        free = free_underlay(in_use)
        hint = f", e.g. --underlay {free}" if free else ""
        raise LabCommandError(
            f"underlay {plan.underlay} is already in use on this machine "
            f"({'; '.join(conflicts[:3])}): choose another with --underlay{hint}"
        )


def _create_or_remove(
    state: LabState, verb: str, host_name: str, userns_remap: bool = False
) -> int:
    def say(text: str) -> None:
        print(text, flush=True)

    if verb == "rm":
        _host(state, host_name)
        Lab(plan_from_state(state, state.name), say=say).remove_host(state, host_name)
        print(f"{host_name}: removed from lab {state.name!r}")
        return 0
    if host_name in state.hosts:
        raise LabCommandError(f"{host_name} is already in lab {state.name!r}")
    index_text = host_name.removeprefix("host")
    next_name = f"host{state.host_count + 1}"
    if not index_text.isdigit() or (host_name not in state.removed and host_name != next_name):
        raise LabCommandError(
            f"lab create takes the next host, {next_name}"
            + (f", or one removed before ({', '.join(state.removed)})" if state.removed else "")
        )
    state.removed = [h for h in state.removed if h != host_name]
    state.host_count = max(state.host_count, int(index_text))
    try:
        plan = plan_from_state(state, state.name)
    except PlanError as error:
        raise LabCommandError(str(error)) from error
    planned = plan.host(host_name)
    state.hosts[host_name] = HostState(
        host_name, planned.netns, str(planned.underlay_ip), userns_remap=userns_remap
    )
    Lab(plan, say=say).up(state)
    print(f"{host_name}: created in lab {state.name!r}")
    return 0


def _require_state(name: str) -> LabState:
    state = load_state(name)
    if state is None:
        raise LabCommandError(f"lab {name!r} is not up (no {state_file(name)}); run: lab up")
    return state


def _host(state: LabState, name: str) -> Any:
    if name not in state.hosts:
        known = ", ".join(sorted(state.hosts))
        raise LabCommandError(f"no host {name!r} in lab {state.name!r} (hosts: {known})")
    return state.hosts[name]


def lab_environment(state: LabState) -> dict[str, str]:
    """What an exercise check (or a learner's shell) needs to find this lab."""
    tools = str(Path(sys.executable).parent)
    return {
        **_host_env(state, state.active_host),
        "LAB_NAME": state.name,
        "PATH": f"{tools}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}",
    }


def _report_check(exercise: Exercise, result: subprocess.CompletedProcess[str]) -> int:
    sys.stdout.write(result.stdout + result.stderr)
    if result.returncode == 0:
        print(f"exercise {exercise.number} ({exercise.title}): done")
    elif result.returncode == CHECK_CANNOT_JUDGE:
        print(f"exercise {exercise.number} ({exercise.title}): not checked on this lab")
        return CHECK_CANNOT_JUDGE
    else:
        print(f"exercise {exercise.number} ({exercise.title}): not done yet")
    return 0 if result.returncode == 0 else 1


def _host_env(state: LabState, host_name: str) -> dict[str, str]:
    """What `lab env HOST` exports: docker-machine env's four variables, then the lab's."""
    host = _host(state, host_name)
    docker = (
        tls.client_env(host.docker_tls_url, host.docker_cert_path, host.name)
        if host.docker_tls_url
        else {"DOCKER_HOST": host.docker_url}  # a lab made before its daemons had TLS
    )
    learner = etcd_client(state)  # etcd's TLS: the learner's certificate, for both
    return {
        **docker,
        "DISCOVERY_ETCD_ENDPOINTS": ",".join(state.etcd_endpoints),
        "ETCDCTL_ENDPOINTS": ",".join(state.etcd_endpoints),
        **(learner.etcdctl_env() if learner else {}),
        "LAB_HOST": host.name,
        "DISCOVERY_LAB_NAME": state.name,
        "DISCOVERY_LAB_STATE": str(state_root()),
    }


def _url(host: HostState) -> str:
    """What `lab url` says, as docker-machine url: the daemon's TLS endpoint."""
    return host.docker_tls_url or host.docker_url


def _env_command(lab_name: str, host_name: str) -> str:
    named = "" if lab_name == DEFAULT_LAB_NAME else f" --name {lab_name}"
    return f"discoveryctl lab env{named} {host_name}"


def _refuse_unusable_certs(host_name: str, cert_path: str) -> None:
    """One line, before the docker CLI meets a refusal it words as a TLS error."""
    if not cert_path:
        return
    problem = lab_certs.client_cert_problem(Path(cert_path))
    if problem:
        raise LabCommandError(
            f"{host_name}'s dockerd would refuse the client certificate: {problem}; "
            f"make new ones with: discoveryctl lab regenerate-certs --client-certs {host_name}"
        )


def run_lab_command(args: argparse.Namespace) -> int:
    name = args.name
    verb = args.lab_command
    if verb != "exercises" and not state_file(name).exists():
        vagrant = load_vagrant_lab()
        if vagrant is not None:
            return run_on_vagrant_lab(vagrant, args)
    if verb == "up":
        state = load_state(name)
        host_count = args.hosts or (state.host_count if state else 3)
        default_members = 3 if host_count >= 3 else 1
        members = args.etcd_members or (state.etcd_members if state else default_members)
        if state and host_count < state.host_count:
            raise LabCommandError(
                f"lab {name!r} has {state.host_count} hosts; lab up cannot remove hosts"
            )
        if state and members != state.etcd_members:
            raise LabCommandError(f"lab {name!r} runs {state.etcd_members} etcd member(s)")
        underlay_text = args.underlay or (state.underlay if state else str(DEFAULT_UNDERLAY))
        if state and underlay_text != state.underlay:
            raise LabCommandError(f"lab {name!r} already uses underlay {state.underlay}")
        try:
            plan = plan_lab(
                host_count,
                name=name,
                etcd_members=members,
                underlay=ipaddress.IPv4Network(underlay_text),
            ).without(state.removed if state else [])
        except (PlanError, ValueError) as error:
            raise LabCommandError(str(error)) from error
        if state is None:
            check_prerequisites()
            refuse_taken_underlay(plan)
        started = time.monotonic()
        state = Lab(plan, say=lambda text: print(text, flush=True)).up(state)
        took = time.monotonic() - started
        print(f"lab {name!r} is up with {len(state.hosts)} hosts ({took:.1f} s)")
        return 0
    if verb == "down":
        state = load_state(name)
        Lab(plan_from_state(state, name), say=lambda text: print(text, flush=True)).down(state)
        print(f"lab {name!r} is down")
        return 0
    if verb == "exercises":
        for exercise in all_exercises():
            print(f"{exercise.number}  {exercise.title}  ({exercise.readme})")
        return 0
    state = _require_state(name)
    if verb in ("create", "rm"):
        return _create_or_remove(state, verb, args.host, getattr(args, "userns_remap", False))
    if verb == "break":
        if args.reset and args.scenario:
            raise LabCommandError("lab break --reset takes no scenario: it undoes the one in place")
        plan = plan_from_state(state, name)
        if args.reset:
            return breaks.run_reset(state, plan, say=lambda text: print(text, flush=True))
        return breaks.run_break(state, plan, args.scenario)
    if verb == "check" and args.number == "break":
        return breaks.run_check(state)
    if verb == "check":
        exercise = find_exercise(args.number)
        active = _host(state, state.active_host)
        _refuse_unusable_certs(active.name, active.docker_cert_path)
        env = {**lab_environment(state), "LAB_KIND": "local"}
        return _report_check(exercise, run_check(exercise, env))
    if verb == "demo":
        run_demo(state, say=lambda text: print(text, flush=True))
        return 0
    if verb == "ls":
        rows = []
        for host in state.hosts.values():
            running = [
                p.role
                for p in state.processes
                if p.host == host.name and process_condition(p) == "running"
            ]
            rows.append(
                {
                    "name": host.name,
                    # As docker-machine ls: the host this shell's docker CLI talks to.
                    "active": os.environ.get("DOCKER_HOST") in (host.docker_url, _url(host)),
                    "state": "Running" if host.up and len(running) >= 3 else "Degraded",
                    "underlay_ip": host.underlay_ip,
                    "subnet": host.subnet,
                    "docker_url": _url(host),
                    "processes": running,
                }
            )
        if args.output == "json":
            print(json.dumps(rows, indent=2))
        else:
            print(f"{'NAME':<8} {'ACTIVE':<6} {'STATE':<9} {'UNDERLAY IP':<16} {'SUBNET':<14} URL")
            for row in rows:
                star = "*" if row["active"] else "-"
                print(
                    f"{row['name']:<8} {star:<6} {row['state']:<9} {row['underlay_ip']:<16} "
                    f"{row['subnet']:<14} {row['docker_url']}"
                )
        return 0
    if verb == "status":
        conditions = {f"{p.role}@{p.host}": process_condition(p) for p in state.processes}
        dead = [what for what, condition in conditions.items() if condition != "running"]
        if dead:
            shown = [
                what if conditions[what] == "not running" else f"{what} ({conditions[what]})"
                for what in dead
            ]
            print(f"lab {name!r} is degraded: not running: {', '.join(shown)}")
            return 1
        print(f"lab {name!r} is running: {len(state.hosts)} hosts, etcd {state.etcd_endpoints}")
        return 0
    if verb == "images":
        for image in state.images.values():
            print(image)
        return 0
    if verb == "audit":
        names = args.hosts or sorted(state.hosts)
        urls = {name: _host(state, name).docker_url for name in names}
        return _audit(urls, args)
    if verb == "map":
        maps = [p for p in state.processes_of("lab", "map") if process_condition(p) == "running"]
        if maps and args.listen == DEFAULT_LISTEN:
            # lab up runs one already; a second on its port could only fail.
            print(f"lab {name!r}'s live map runs at {state.map_url} (started by lab up); "
                  "--listen ADDR:PORT serves another")  # fmt: skip
            return 0
        return _map(etcd_settings(state), args)
    host = _host(state, args.host)
    if verb in ("stop", "start", "restart"):
        lab = Lab(plan_from_state(state, name), say=lambda text: print(text, flush=True))
        if verb in ("stop", "restart"):
            lab.stop_host(state, host.name)
        if verb in ("start", "restart"):
            lab.start_host(state, host.name)
        print(f"{host.name}: {'stopped' if verb == 'stop' else 'running'}")
        return 0
    if verb == "ip":
        print(host.underlay_ip)
    elif verb == "url":
        print(_url(host))
    elif verb == "inspect":
        print(json.dumps({**asdict(host), "etcd_endpoints": state.etcd_endpoints}, indent=2))
    elif verb == "env":
        _refuse_unusable_certs(host.name, host.docker_cert_path)
        sys.stdout.write(tls.render_env(_host_env(state, host.name), _env_command(name, host.name)))
    elif verb == "config":
        if not host.docker_tls_url:
            raise LabCommandError(
                f"{host.name}'s dockerd has no TLS endpoint yet: lab restart {host.name}"
            )
        _refuse_unusable_certs(host.name, host.docker_cert_path)
        sys.stdout.write(tls.render_config(host.docker_tls_url, host.docker_cert_path))
    elif verb == "regenerate-certs":
        lab = Lab(plan_from_state(state, name), say=lambda text: print(text, flush=True))
        if args.client_certs:
            lab.regenerate_client_certs(state)
        lab.regenerate_certs(state, host.name)
        print(f"{host.name}: new server certificate; dockerd serves it on {host.docker_tls_url}")
    elif verb in ("exec", "shell"):
        argv = list(getattr(args, "argv", []) or [])
        if argv[:1] == ["--"]:
            argv = argv[1:]
        if verb == "shell" or not argv:
            argv = [os.environ.get("SHELL", "/bin/bash")]
        _refuse_unusable_certs(host.name, host.docker_cert_path)
        env = {**os.environ, **_host_env(state, host.name)}
        sys.stdout.flush()
        os.execvpe("nsenter", ["nsenter", f"--net=/run/netns/{host.netns}", *argv], env)
    return 0


def _map(settings: Settings, args: argparse.Namespace) -> int:
    """`lab map`: discoveryctl map on the lab's etcd (the lab's records use the default
    prefix and domain), serving from this shell's namespace until Ctrl-C."""
    return run_map_server(settings, args)


def _audit(urls: dict[str, str], args: argparse.Namespace) -> int:
    """`lab audit`: each host's daemon in turn; one that does not answer is one line."""
    audits = [
        audit_host(name, url, container=args.container, scan_files=not args.no_files)
        for name, url in urls.items()
    ]
    return audit_report(audits, args)


def run_on_vagrant_lab(lab: VagrantLab, args: argparse.Namespace) -> int:
    """The lab verbs on a VM of the Vagrant lab: the same output, the VMs' values."""
    verb = args.lab_command
    if verb in VAGRANT_VERBS:
        instead = VAGRANT_VERBS[verb].format(host=getattr(args, "host", "HOST"))
        raise LabCommandError(
            f"this machine is {lab.this_host} of the Vagrant lab ({lab.source}), whose hosts "
            f"are VMs: 'lab {verb}' is for the local lab; here use: {instead}"
        )
    if verb == "break" or (verb == "check" and args.number == "break"):
        raise LabCommandError(
            f"this machine is {lab.this_host} of the Vagrant lab ({lab.source}): the lab break "
            "scenarios need the local lab (namespaces and the lab's own processes), "
            "made with discoveryctl lab up on a Linux machine"
        )
    root = str(state_root())
    if verb == "check":
        exercise = find_exercise(args.number)
        _refuse_unusable_certs(lab.this_host, lab.docker_cert_path)
        tools = str(Path(sys.executable).parent)
        env = {
            **lab.host_env(lab.this_host, root),
            "LAB_NAME": "lab",
            "LAB_KIND": "vagrant",
            "PATH": f"{tools}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}",
        }
        return _report_check(exercise, run_check(exercise, env))
    if verb == "ls":
        # docker with no DOCKER_HOST talks to this VM's own daemon.
        talking_to = os.environ.get("DOCKER_HOST") or lab.local_docker_url
        rows = [
            {
                "name": host,
                "active": talking_to in (lab.docker_url(host), lab.tls_url(host)),
                "underlay_ip": address,
                "docker_url": lab.tls_url(host),
            }
            for host, address in lab.hosts.items()
        ]
        if args.output == "json":
            print(json.dumps(rows, indent=2))
        else:
            print(f"{'NAME':<8} {'ACTIVE':<6} {'UNDERLAY IP':<16} URL")
            for row in rows:
                star = "*" if row["active"] else "-"
                print(f"{row['name']:<8} {star:<6} {row['underlay_ip']:<16} {row['docker_url']}")
        return 0
    if verb == "map":
        return _map(lab.etcd_settings(), args)
    if verb == "audit":
        for name in args.hosts:
            lab.address(name)  # an unknown host is one clear error
        names = args.hosts or list(lab.hosts)
        return _audit({name: lab.docker_url(name) for name in names}, args)
    host = args.host
    if verb == "ip":
        print(lab.address(host))
    elif verb == "url":
        print(lab.tls_url(host))
    elif verb == "inspect":
        details = {
            "name": host,
            "underlay_ip": lab.address(host),
            "docker_url": lab.docker_url(host),  # as the local lab's: the lab's own way in
            "docker_tls_url": lab.tls_url(host),
            "docker_cert_path": lab.docker_cert_path,
            "this_host": host == lab.this_host,
            "etcd_endpoints": lab.etcd_endpoints,
        }
        print(json.dumps(details, indent=2))
    elif verb == "env":
        lab.address(host)  # an unknown host is one clear error
        _refuse_unusable_certs(host, lab.docker_cert_path)
        sys.stdout.write(tls.render_env(lab.host_env(host, root), f"discoveryctl lab env {host}"))
    elif verb == "config":
        if not lab.docker_cert_path:
            raise LabCommandError(
                f"this VM was provisioned before the lab's daemons had TLS ({lab.source} "
                "names no docker_cert_path): vagrant provision"
            )
        _refuse_unusable_certs(host, lab.docker_cert_path)
        sys.stdout.write(tls.render_config(lab.tls_url(host), lab.docker_cert_path))
    elif verb in ("exec", "shell"):
        argv = list(getattr(args, "argv", []) or [])
        if argv[:1] == ["--"]:
            argv = argv[1:]
        interactive = verb == "shell" or not argv
        if interactive and host == lab.this_host:
            argv = [os.environ.get("SHELL", "/bin/bash")]
        command = lab.command_on(host, argv, interactive)
        sys.stdout.flush()
        os.execvpe(command[0], command, {**os.environ, **lab.host_env(host, root)})
    return 0

"""Inject, undo and observe the `lab break` scenarios on the local lab: the I/O.

Each scenario's injection is a few commands into one host's namespace (`ip`,
`bridge`, `iptables`, through nsenter as the lab runs everything) or a signal
to a lab process found through the lab's state (``labs.runner``). What the
injection changed goes into the returned details, which the state keeps, so
that undoing works from any shell, and after the learner fixed part of it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from typing import Any

from discovery import schema
from discovery.settings import Settings
from labs import front_door
from labs.breaks.scenarios import (
    SMALL_UNDERLAY_MTU,
    VXLAN_DEVICE,
    VXLAN_PORT,
    BreakError,
    Observed,
    Scenario,
    judge,
    scenario,
)
from labs.docker_tls import without_tls
from labs.etcd_server import etcd_binary
from labs.etcd_tls import ROOT
from labs.plan import DEFAULT_LAB_NAME, LabPlan
from labs.runner import Lab, child_pid, pid_runs, process_condition, run_state_of, start_time_of
from labs.runner import stop_process as stop_lab_process
from labs.state import BreakRecord, LabState, ProcessRecord, etcd_client

COMMAND_TIMEOUT_S = 15.0
SETTLE_TIMEOUT_S = 20.0  # --reset waits this long for the lab to look fixed
LAB_DOMAIN = "lab"  # the domain the lab's processes serve (labs.runner.Lab's default)


def _run(argv: list[str], *, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S,
                              env=env)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as error:
        return subprocess.CompletedProcess(argv, 1, "", str(error))


def _on_host(state: LabState, host: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
    return _run(["nsenter", f"--net=/run/netns/{state.hosts[host].netns}", *argv])


def _must(result: subprocess.CompletedProcess[str], what: str) -> str:
    if result.returncode != 0:
        raise BreakError(f"{what} failed: {(result.stderr or result.stdout).strip()}")
    return result.stdout


def _process(state: LabState, role: str, host: str) -> ProcessRecord:
    records = state.processes_of(host, role)
    if not records:
        raise BreakError(f"lab {state.name!r} has no {role} on {host}")
    return records[0]


def _running_child(record: ProcessRecord) -> int:
    pid = child_pid(record)
    if process_condition(record) != "running" or pid is None:
        raise BreakError(
            f"{record.role} on {record.host} is {process_condition(record)}: "
            "bring the lab back first (discoveryctl lab up)"
        )
    return pid


def _wait(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# ------------------------------------------------------------ what the learner is told


def context(state: LabState) -> dict[str, str]:
    """The values the scenarios' printed commands are filled with, for this lab."""
    named = "" if state.name == DEFAULT_LAB_NAME else f" --name {state.name}"
    endpoints = ",".join(state.etcd_endpoints)
    machine = front_door.is_machine_lab(state.name)
    learner = etcd_client(state)
    flags = "".join(f" {word}" for word in learner.flags()) if learner else ""
    tls_env = learner.etcdctl_env() if learner else {}
    values = {
        "lab": f"discoveryctl lab{named}",
        "doctor": f"discoveryctl doctor{named}".rstrip(),
        "explain": f"discoveryctl explain{named}".rstrip(),
        # The machine's lab has its endpoints and the learner's certificate in
        # /etc/discovery/config.toml and /etc/profile.d/discovery-lab.sh.
        "ctl": "discoveryctl" if machine else f"discoveryctl --etcd-endpoints {endpoints}{flags}",
        "etcd": endpoints,
        "etcdctl_tls": "" if machine else "".join(f"{k}={v} " for k, v in tls_env.items()),
        "image": state.images.get("base", "discovery-lab/base:0.1.0"),
    }
    for name, host in state.hosts.items():
        values[f"bridge_{name}"] = host.dns_ip
        values[f"ip_{name}"] = host.underlay_ip
    return values


def refusal(state: LabState, item: Scenario) -> str | None:
    """Why this lab cannot take the scenario, in one line (None: it can)."""
    missing = [h for h in ("host1", "host2", "host3") if h not in state.hosts]
    if missing:
        return (
            f"the scenarios need host1, host2 and host3; lab {state.name!r} "
            f"has no {', '.join(missing)}"
        )
    down = [h for h in ("host1", "host2", "host3") if not state.hosts[h].up]
    if down:
        return f"{', '.join(down)} is stopped: start it first (discoveryctl lab start {down[0]})"
    if item.name == "frozen-catalog" and state.etcd_members < 3:
        return f"lab {state.name!r} runs one etcd member: a quorum of three needs --etcd-members 3"
    return None


# ------------------------------------------------------------ inject


def inject(state: LabState, plan: LabPlan, item: Scenario) -> dict[str, str]:
    """Break the lab as the scenario says; returns what undoing it needs."""
    inject_one = _INJECT[item.name]
    return inject_one(state, plan)


def _link_mtus(state: LabState, host: str) -> dict[str, int]:
    result = _on_host(state, host, ["ip", "-j", "link", "show"])
    if result.returncode != 0:
        return {}
    return {link["ifname"]: int(link["mtu"]) for link in json.loads(result.stdout or "[]")}


def _inject_big_packets(state: LabState, plan: LabPlan) -> dict[str, str]:
    host = "host2"
    underlay = plan.host(host).veth_inside
    original = _link_mtus(state, host).get(underlay)
    if original is None:
        raise BreakError(f"{host} has no underlay interface {underlay}")
    _must(_on_host(state, host, ["ip", "link", "set", underlay, "mtu", str(SMALL_UNDERLAY_MTU)]),
          f"setting {host}'s {underlay} MTU")  # fmt: skip
    return {"host": host, "underlay": underlay, "mtu": str(original)}


def _fdb(state: LabState, host: str) -> list[dict[str, Any]]:
    result = _on_host(state, host, ["bridge", "-j", "fdb", "show", "dev", VXLAN_DEVICE])
    return json.loads(result.stdout or "[]") if result.returncode == 0 else []


def _inject_lost_peer(state: LabState, plan: LabPlan) -> dict[str, str]:
    host, peer = "host1", "host2"
    agent = _process(state, "agent-network", host)
    pid = _running_child(agent)
    peer_ip = state.hosts[peer].underlay_ip
    # Pause the agent first: it would put the entry back at its next pass.
    os.kill(pid, signal.SIGSTOP)
    details = {"host": host, "peer": peer, "dst": peer_ip, "pid": str(pid),
               "pid_start": start_time_of(pid)}  # fmt: skip
    if not _wait(lambda: run_state_of(pid) in ("T", "t"), 5):
        os.kill(pid, signal.SIGCONT)
        raise BreakError(f"{host}'s network agent (pid {pid}) did not stop")
    entries = [e for e in _fdb(state, host) if e.get("dst") == peer_ip]
    if not entries:
        os.kill(pid, signal.SIGCONT)
        raise BreakError(f"{host}'s {VXLAN_DEVICE} has no FDB entry for {peer} ({peer_ip})")
    details["mac"] = entries[0]["mac"]
    _must(
        _on_host(state, host, ["bridge", "fdb", "del", details["mac"], "dev", VXLAN_DEVICE,
                               "dst", peer_ip]),
        f"deleting {host}'s FDB entry for {peer}",
    )  # fmt: skip
    return details


def _vxlan_drop_rule(peer_ip: str) -> list[str]:
    return ["INPUT", "-s", f"{peer_ip}/32", "-p", "udp", "-m", "udp",
            "--dport", str(VXLAN_PORT), "-j", "DROP"]  # fmt: skip


def _inject_quiet_pair(state: LabState, plan: LabPlan) -> dict[str, str]:
    host, peer = "host3", "host2"
    peer_ip = state.hosts[peer].underlay_ip
    _must(_on_host(state, host, ["iptables", "-w", "-I", *_vxlan_drop_rule(peer_ip)]),
          f"adding a rule to {host}'s INPUT chain")  # fmt: skip
    return {"host": host, "peer": peer, "peer_ip": peer_ip}


def _inject_gone_from_dns(state: LabState, plan: LabPlan) -> dict[str, str]:
    host = "host2"
    agent = _process(state, "agent-services", host)
    pid = _running_child(agent)
    # As a crash that takes the supervisor too (or a unit that is not restarted):
    # the supervisor first, so it cannot start the agent again, then the agent.
    os.kill(agent.pid, signal.SIGKILL)
    os.kill(pid, signal.SIGKILL)
    if not _wait(lambda: not pid_runs(agent) and not start_time_of(pid), 5):
        raise BreakError(f"{host}'s services agent (pid {pid}) did not end")
    return {"host": host}


def _inject_no_answers(state: LabState, plan: LabPlan) -> dict[str, str]:
    host = "host1"
    dns = _process(state, "dns", host)
    _running_child(dns)
    stop_lab_process(dns)
    return {"host": host}


def _inject_frozen_catalog(state: LabState, plan: LabPlan) -> dict[str, str]:
    members = [_process(state, "etcd", host) for host in ("host2", "host3")]
    for member in members:
        _running_child(member)
    for member in members:
        stop_lab_process(member)
    return {"members": ",".join(f"{m.role}@{m.host}" for m in members)}


_INJECT: dict[str, Callable[[LabState, LabPlan], dict[str, str]]] = {
    "big-packets": _inject_big_packets,
    "lost-peer": _inject_lost_peer,
    "quiet-pair": _inject_quiet_pair,
    "gone-from-dns": _inject_gone_from_dns,
    "no-answers": _inject_no_answers,
    "frozen-catalog": _inject_frozen_catalog,
}


# ------------------------------------------------------------ undo


def undo(state: LabState, plan: LabPlan, item: Scenario, record: BreakRecord,
         say: Callable[[str], None]) -> str | None:  # fmt: skip
    """Undo what the injection changed, whatever the learner did meanwhile.

    Returns what still looks wrong after waiting up to ``SETTLE_TIMEOUT_S``
    for the lab to settle (None: fixed).
    """
    details = record.details
    if item.name == "big-packets":
        if judge(item.name, details, observe(state, item, details)) is not None:
            _on_host(state, details["host"], ["ip", "link", "set", details["underlay"], "mtu",
                                              details["mtu"]])  # fmt: skip
    elif item.name == "lost-peer":
        Lab(plan, say=say).restart_dead(state)  # resumes the paused agent, as lab up does
        host, mac, dst = details["host"], details["mac"], details["dst"]
        if not any(e.get("mac") == mac and e.get("dst") == dst for e in _fdb(state, host)):
            # The agent would add it back at its next full pass; do not wait for that.
            _on_host(state, host, ["bridge", "fdb", "append", mac, "dev", VXLAN_DEVICE,
                                   "dst", dst])  # fmt: skip
    elif item.name == "quiet-pair":
        rule = _vxlan_drop_rule(details["peer_ip"])
        for _ in range(20):  # it may have been added twice; deleting a missing one fails
            if _on_host(state, details["host"], ["iptables", "-w", "-D", *rule]).returncode:
                break
    else:
        Lab(plan, say=say).restart_dead(state)  # as lab up does
    still: str | None = None

    def settled() -> bool:
        nonlocal still
        still = judge(item.name, details, observe(state, item, details))
        return still is None

    _wait(settled, SETTLE_TIMEOUT_S)
    return still


# ------------------------------------------------------------ observe


def observe(state: LabState, item: Scenario, details: dict[str, str]) -> Observed:
    """Read what the scenario's judge needs, and only that."""
    needs, hosts = item.needs, sorted(state.hosts)
    found: dict[str, Any] = {}
    if "mtus" in needs:
        found["mtus"] = {h: _link_mtus(state, h) for h in hosts}
    if "docker_mtu" in needs:
        found["docker_mtu"] = {
            h: mtu for h in hosts if (mtu := _docker_bridge_mtu(state, h)) is not None
        }
    if "fdb" in needs:
        found["fdb"] = {
            h: frozenset((e.get("mac", ""), e.get("dst", "")) for e in _fdb(state, h))
            for h in hosts
        }
    if "firewall" in needs:
        found["firewall"] = {
            h: tuple(_on_host(state, h, ["iptables", "-w", "-S"]).stdout.splitlines())
            for h in hosts
        }
    if "processes" in needs:
        found["processes"] = {f"{p.role}@{p.host}": process_condition(p) for p in state.processes}
    if "dns_answers" in needs:
        found["dns_answers"] = {h: _dns_answers(state, h) for h in hosts}
    if "node_records" in needs:
        found["node_records"] = _node_records(state)
    if "etcd_healthy" in needs:
        found["etcd_healthy"] = _etcd_healthy(state)
    return Observed(**found)


def _docker_bridge_mtu(state: LabState, host: str) -> int | None:
    env = {**without_tls(dict(os.environ)), "DOCKER_HOST": state.hosts[host].docker_url}
    result = _run(["docker", "network", "inspect", "bridge", "-f", "{{json .Options}}"], env=env)
    if result.returncode != 0:
        return None
    mtu = json.loads(result.stdout or "{}").get("com.docker.network.driver.mtu")
    return int(mtu) if mtu else None


def _dns_answers(state: LabState, host: str) -> bool:
    address = state.hosts[host].dns_ip
    result = _on_host(state, host, ["dig", "+time=1", "+tries=1", "+short", f"@{address}",
                                    LAB_DOMAIN, "SOA"])  # fmt: skip
    return result.returncode == 0 and bool(result.stdout.strip())


def _etcdctl(state: LabState, *argv: str) -> subprocess.CompletedProcess[str]:
    # etcdctl refuses --endpoints (and --cert ...) while its ETCDCTL_* variable is set.
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
    root = etcd_client(state, ROOT)  # what the lab itself does to etcd, it does as root
    return _run([etcd_binary("etcdctl"), "--endpoints", ",".join(state.etcd_endpoints),
                 *(root.flags() if root else []),
                 "--dial-timeout=1s", "--command-timeout=2s", *argv], env=env)  # fmt: skip


def _node_records(state: LabState) -> frozenset[str]:
    prefix = schema.nodes_prefix(Settings(etcd_endpoints=tuple(state.etcd_endpoints)).prefix,
                                 LAB_DOMAIN)  # fmt: skip
    result = _etcdctl(state, "get", "--prefix", "--keys-only", prefix)
    if result.returncode != 0:
        return frozenset()
    return frozenset(line.removeprefix(prefix) for line in result.stdout.split() if line)


def _etcd_healthy(state: LabState) -> bool:
    result = _etcdctl(state, "endpoint", "health", "-w", "json")
    try:
        answers = json.loads(result.stdout or "[]")
    except ValueError:
        return False
    return len(answers) == len(state.etcd_endpoints) and all(a.get("health") for a in answers)


def judge_now(state: LabState, record: BreakRecord) -> str | None:
    """What still looks wrong about the scenario in place, read from the lab now."""
    item = scenario(record.scenario)
    return judge(item.name, record.details, observe(state, item, record.details))

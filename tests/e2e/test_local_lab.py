"""The local lab end to end, as a learner drives it: discoveryctl lab, docker, busybox.

One 3-host lab for the module (its own name, underlay and state dir, so it
never meets a learner's lab), exercised in the order a learner would: the
demo, a container stopping and starting, a fourth host joining, a host's
agent killed, and finally `lab down` leaving nothing behind.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from labs import topology
from labs.plan import plan_lab
from labs.runner import child_pid
from labs.testing.lab_driver import running_lab
from labs.testing.waiting import wait_until
from tests.integration.cdp import CHROMIUM, headless_chromium
from tests.prerequisites import require_binary, require_root

pytestmark = [pytest.mark.root, pytest.mark.docker, pytest.mark.netns, pytest.mark.etcd]

LAB = f"e{os.getpid() % 10000}"
UNDERLAY = "192.168.216.0/24"
NAME_RESOLVES_WITHIN_S = 1.0


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    require_root()
    require_binary("dockerd", "docker", "ip", "iptables", "nsenter", "dig")
    with running_lab(tmp_path_factory.mktemp("lab-state"), LAB, UNDERLAY) as (driver, took):
        print(f"\nlab up, 3 hosts: {took:.1f} s")
        yield driver


def test_demo_and_its_assertions_from_inside_containers(lab):
    output = lab.lab("demo")
    assert "It works" in output
    addresses = {host: lab.address_of(host, f"web-{host}") for host in ("host2", "host3")}
    lab.client("host1")
    assert lab.resolve("host1") == set(addresses.values())
    assert lab.resolve("host1", "web.service.lab") == set(addresses.values())
    pages = {
        lab.docker("host1", "exec", "client-host1", "wget", "-qO-", f"http://{address}/")
        for address in addresses.values()
    }
    assert {page.split("lab host: ")[1][:5] for page in pages} == {"host2", "host3"}
    by_name = lab.docker("host1", "exec", "client-host1", "wget", "-qO-", "http://web/")
    assert "lab host: host" in by_name
    rows = lab.lookup("web")
    assert {(r["address"], r["host"]) for r in rows} == {
        (addresses["host2"], "host2"),
        (addresses["host3"], "host3"),
    }


def test_a_stopped_container_leaves_dns_within_a_second_and_a_new_one_appears_everywhere(lab):
    host2_web = lab.address_of("host2", "web-host2")
    lab.docker("host3", "stop", "web-host3")
    stopped = time.monotonic()
    wait_until(lambda: lab.resolve("host1") == {host2_web}, 5, "web-host3 leaving DNS")
    assert time.monotonic() - stopped < NAME_RESOLVES_WITHIN_S + 0.5  # docker exec costs ~0.1 s

    lab.docker("host1", "run", "-d", "--name", "web-host1", "-e", "LAB_HOST=host1",
               lab.image("web"))  # fmt: skip
    host1_web = lab.address_of("host1", "web-host1")
    for host in ("host2", "host3"):
        lab.client(host)
        wait_until(
            lambda host=host: lab.resolve(host) == {host1_web, host2_web}, 5, f"DNS on {host}"
        )
    page = lab.docker("host3", "exec", "client-host3", "wget", "-qO-", f"http://{host1_web}/")
    assert "lab host: host1" in page


def test_a_fourth_host_joins_a_running_lab(lab):
    lab.lab("up", "--hosts", "4")
    state = lab.state()
    host4 = state.hosts["host4"]
    assert host4.up and host4.subnet
    subnet4 = host4.subnet.rsplit(".", 1)[0] + ".0/24"
    for host in ("host1", "host2", "host3"):
        routes = subprocess.run(
            ["ip", "-n", state.hosts[host].netns, "route", "show", subnet4],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        assert "flannel.1" in routes, f"{host} has no route to host4's {subnet4}: {routes!r}"
    lab.docker("host4", "run", "-d", "--name", "api-host4", "--label", "discovery.service=api",
               lab.image("web"))  # fmt: skip
    api = lab.address_of("host4", "api-host4")
    wait_until(lambda: lab.resolve("host1", "api") == {api}, 5, "api on host4 from host1")
    page = lab.docker("host1", "exec", "client-host1", "wget", "-qO-", "http://api/")
    assert "hostname:" in page


def map_state(lab) -> dict:
    with urllib.request.urlopen(lab.state().map_url + "map/state", timeout=5) as response:
        return json.load(response)


def tunnel_states(lab) -> dict[tuple[str, str], dict]:
    return {(t["a"], t["b"]): t for t in map_state(lab)["tunnels"]}


def test_the_map_shows_the_overlay_as_the_kernels_hold_it_and_what_is_alive(lab):
    """Issue 14: tunnels judged by each kernel's entries, read back by its agent; a
    hand-deleted FDB entry shows as a broken tunnel until the agent's periodic pass
    puts it back; a frozen DNS server shows as a failing check."""
    state = lab.state()
    names = sorted(state.hosts)
    pairs = {(a, b) for i, a in enumerate(names) for b in names[i + 1 :]}

    def all_complete() -> bool:
        tunnels = tunnel_states(lab)
        return set(tunnels) == pairs and all(t["state"] == "complete" for t in tunnels.values())

    wait_until(all_complete, 15, "every tunnel complete on the map")

    def all_alive() -> bool:
        hosts = {host["name"]: host for host in map_state(lab)["hosts"]}
        return all(
            hosts[name]["network_agent"]["state"] == "reporting"
            and hosts[name]["checks"] == {"dns": "passing", "docker": "passing"}
            for name in names
        )

    # host4 joined just before: its first checks ran before its DNS server was up.
    wait_until(all_alive, 10, "every host's agents, Docker and DNS alive on the map")
    hosts = {host["name"]: host for host in map_state(lab)["hosts"]}
    for name in names:
        assert 0 < hosts[name]["lease"]["ttl_s"] <= 60 and 0 < hosts[name]["node_ttl_s"] <= 10

    # Delete host1's FDB entry for host3, as a learner might by mistake.
    vtep3 = hosts["host3"]["lease"]["vtep_mac"]
    netns1 = state.hosts["host1"].netns
    subprocess.run(["ip", "netns", "exec", netns1, "bridge", "fdb", "del", vtep3,
                    "dev", "flannel.1", "dst", state.hosts["host3"].underlay_ip],
                   check=True, capture_output=True, text=True)  # fmt: skip
    deleted_at = time.monotonic()

    def broken() -> bool:
        tunnel = tunnel_states(lab)[("host1", "host3")]
        return tunnel["state"] == "partial" and tunnel["problems"] == {
            "host1": [f"no FDB entry for {vtep3}"]
        }

    wait_until(broken, 5, "the deleted FDB entry on the map")
    shown_after = time.monotonic() - deleted_at
    wait_until(all_complete, 15, "the agent's periodic pass restoring the entry")
    print(f"\nFDB entry deleted by hand: on the map after {shown_after:.1f} s, "
          f"repaired after {time.monotonic() - deleted_at:.1f} s")  # fmt: skip
    events = [(e["kind"], e["subject"]) for e in map_state(lab)["timeline"]]
    assert ("tunnel-down", "host1 <-> host3") in events and (
        "tunnel-up",
        "host1 <-> host3",
    ) in events

    # A frozen DNS server: host2's dns check goes critical, then passing once thawed.
    dns2 = child_pid(next(p for p in state.processes_of("host2", "dns")))
    assert dns2 is not None

    def dns_check(expected: str) -> bool:
        host2 = next(h for h in map_state(lab)["hosts"] if h["name"] == "host2")
        return host2["checks"].get("dns") == expected

    os.kill(dns2, signal.SIGSTOP)
    try:
        wait_until(lambda: dns_check("critical"), 10, "host2's DNS check critical on the map")
    finally:
        os.kill(dns2, signal.SIGCONT)
    wait_until(lambda: dns_check("passing"), 10, "host2's DNS check passing again")


def test_the_map_in_a_browser_shows_a_container_within_a_second_of_docker_run_and_stop(
    lab, tmp_path
):
    """Issue 14's browser test on the real lab: Debian's chromium on the URL lab up
    printed; the hosts and tunnels drawn; a container started on host3 on the page
    within 1 s of `docker run` returning, gone within 1 s of `docker stop` returning."""
    require_binary(Path(CHROMIUM).name)
    url = lab.state().map_url

    async def drive() -> tuple[float, float, Path]:
        async with headless_chromium(tmp_path / "chromium") as page:
            await page.navigate(url)

            async def shown(selector: str, present: bool = True, within_s: float = 10) -> float:
                """Seconds until the selector is (or is no longer) on the page."""
                started = time.monotonic()
                found = await page.evaluate(
                    f"""new Promise((resolve) => {{
                        const limit = Date.now() + {int(within_s * 1000)};
                        const look = () => {{
                            const there = document.querySelector({selector!r}) !== null;
                            if (there === {str(present).lower()}) resolve(true);
                            else if (Date.now() > limit) resolve(false);
                            else setTimeout(look, 5);
                        }};
                        look();
                    }})"""
                )
                assert found, f"{selector} {'never shown' if present else 'still shown'}"
                return time.monotonic() - started

            for name in lab.state().hosts:
                await shown(f'[data-host="{name}"] [data-alive="{name}"]')
            await shown('[data-tunnel="host1-host3"][data-state="complete"]')
            lab.docker("host3", "run", "-d", "--name", "web2-host3", "-e", "LAB_HOST=host3",
                       lab.image("web"))  # fmt: skip
            address = lab.address_of("host3", "web2-host3")
            row = f'[data-host="host3"] tr[data-endpoint*="{address.replace(".", "-")}"]'
            appeared = await shown(row, within_s=5)
            lab.docker("host3", "stop", "web2-host3")
            gone = await shown(row, present=False, within_s=5)
            screenshot = await page.screenshot(tmp_path / "map-lab.png")
            return appeared, gone, screenshot

    try:
        appeared, gone, screenshot = asyncio.run(drive())
    finally:
        lab.docker("host3", "rm", "-f", "web2-host3", check=False)
    print(
        f"\nweb2 on host3: on the page {appeared * 1000:.0f} ms after docker run returned, "
        f"gone {gone * 1000:.0f} ms after docker stop returned; screenshot {screenshot}"
    )
    assert appeared < 1.0 and gone < 1.0


def test_frozen_agents_records_expire_routes_stay_and_a_killed_agent_is_started_again(lab):
    state = lab.state()
    # client-host3 runs the base image, so it is registered as service "base".
    client3 = lab.address_of("host3", "client-host3")

    def host3_registered() -> bool:
        return (client3, "host3") in {(row["address"], row["host"]) for row in lab.lookup("base")}

    assert host3_registered()
    agents = [record for record in state.processes_of("host3") if record.role.startswith("agent")]
    frozen = [child_pid(record) for record in agents]
    assert None not in frozen
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)
    try:
        stopped_at = time.monotonic()
        wait_until(
            lambda: all(row["host"] != "host3" for row in lab.lookup("web") + lab.lookup("base")),
            11,  # the lab's service lease TTL is 10 s
            "host3's records expiring",
        )
        print(f"\nhost3's records gone {time.monotonic() - stopped_at:.1f} s after SIGSTOP")
        subnet3 = state.hosts["host3"].subnet.rsplit(".", 1)[0] + ".0/24"
        routes = subprocess.run(
            ["ip", "-n", state.hosts["host1"].netns, "route", "show", subnet3],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        assert "flannel.1" in routes  # the subnet lease (60 s) outlives the records (10 s)
        status = lab.lab("status", check=False)
        assert "degraded" in status and "agent-services@host3 (stopped)" in status
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
    # Thawed, the agent finds its lease gone, takes a new one and writes again.
    wait_until(host3_registered, 10, "host3's records back after SIGCONT")

    # Killed, it is started again by its supervisor, as systemd does on a VM.
    services = next(record for record in agents if record.role == "agent-services")
    killed = child_pid(services)
    assert killed is not None
    os.kill(killed, signal.SIGKILL)
    wait_until(lambda: child_pid(services) not in (None, killed), 10, "the agent restarted")
    assert "killed by SIGKILL" in Path(services.log).read_text()
    wait_until(host3_registered, 10, "host3's records after the restart")
    assert "is running" in lab.lab("status")


def test_lab_down_leaves_nothing_behind(lab):
    state = lab.state()
    state_dir = Path(lab.env["DISCOVERY_LAB_STATE"]) / lab.name
    pids = [record.pid for record in state.processes]
    lab.lab("down")
    plan = plan_lab(4, name=lab.name, underlay=ipaddress.IPv4Network(UNDERLAY))
    assert topology.leftovers(plan) == []
    assert not state_dir.exists()
    alive = [pid for pid in pids if Path(f"/proc/{pid}").exists()]
    assert alive == [], f"lab processes still running: {alive}"
    processes = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(state_dir) not in processes
    mounts = Path("/proc/self/mountinfo").read_text()
    assert str(state_dir) not in mounts
    rules = subprocess.run(["iptables", "-S"], capture_output=True, text=True).stdout
    assert f"discovery-lab {lab.name}" not in rules

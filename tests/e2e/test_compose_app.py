"""The shop Compose app (labs/compose/shop) across a real 3-host lab, with Debian's docker-compose.

One lab for the module (its own name, underlay 192.168.233.0/24, state dir).
docker-compose runs as a learner runs it: in a shell after `eval $(discoveryctl
lab env HOST)`, with COMPOSE_FILE naming the shop's file. The API runs on host2
and host3, the front end on host1 (--no-deps); then the API is scaled to 3 on
host2. Checked from outside the app: every replica is registered with the
project's tag, the lab's DNS answers `api` and `shop.api` with exactly those
addresses from a container on any host, the front end on host1 gets its
answers from the APIs on the other hosts, and after `down -v` on every host
nothing of the project is left registered, running or on disk.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labs.testing.lab_driver import LabDriver, running_lab
from labs.testing.waiting import wait_until
from tests.prerequisites import require_binary, require_root

pytestmark = [pytest.mark.root, pytest.mark.docker, pytest.mark.netns, pytest.mark.etcd]

LAB = f"cp{os.getpid() % 10000}"
UNDERLAY = "192.168.233.0/24"
REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "labs" / "compose" / "shop" / "docker-compose.yml"
HOSTS = ("host1", "host2", "host3")
PROJECT = "shop"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    require_root()
    require_binary("dockerd", "docker", "docker-compose", "ip", "nsenter")
    with running_lab(tmp_path_factory.mktemp("lab-state"), LAB, UNDERLAY) as (driver, took):
        print(f"\nlab up: {took:.1f} s")
        try:
            yield driver
        finally:
            for host in HOSTS:
                compose(driver, host, "down", "-v", check=False)


def compose(lab: LabDriver, host: str, *args: str, check: bool = True) -> str:
    """docker-compose against host, in a shell set up as the exercise's "Before you start"."""
    command = (
        f"eval $({sys.executable} -m discovery.cli lab env --name {LAB} {host}) && "
        f"COMPOSE_FILE={COMPOSE_FILE} docker-compose {' '.join(args)}"
    )
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True,
                            env=lab.env, timeout=180, cwd=REPO)  # fmt: skip
    if check and result.returncode != 0:
        raise AssertionError(f"docker-compose {' '.join(args)} on {host}: {result.stderr}")
    return result.stdout + result.stderr


def compose_containers(lab: LabDriver, host: str, service: str) -> dict[str, str]:
    """{container name: address} of the shop project's service on host, made by Compose."""
    out = lab.docker(
        host, "ps", "-q", "--filter", f"label=com.docker.compose.project={PROJECT}",
        "--filter", f"label=com.docker.compose.service={service}",
    )  # fmt: skip
    found = {}
    for container_id in out.split():
        info = json.loads(lab.docker(host, "inspect", container_id))[0]
        networks = info["NetworkSettings"]["Networks"]
        found[info["Name"].lstrip("/")] = networks[f"{PROJECT}_backend"]["IPAddress"]
    return found


def healthy_api(lab: LabDriver) -> list[dict]:
    return [row for row in lab.lookup("api") if row["health"] in ("healthy", "passing")]


def resolve(lab: LabDriver, host: str, name: str) -> set[str]:
    """The A answers for name, from busybox nslookup in a new container on host."""
    output = lab.docker(host, "run", "--rm", "--label", "discovery.ignore=true",
                        lab.image("base"), "nslookup", name, check=False)  # fmt: skip
    answers = output.split("Name:", 1)[1] if "Name:" in output else ""
    return {line.split()[-1] for line in answers.splitlines() if line.startswith("Address")}


def front_page(lab: LabDriver) -> str:
    return lab.docker("host1", "run", "--rm", "--label", "discovery.ignore=true",
                      lab.image("base"), "wget", "-qO-", "-T", "5", "http://front/",
                      check=False)  # fmt: skip


def test_the_shop_across_three_hosts_scaled_found_by_name_and_gone_after_down(lab):
    started = time.monotonic()
    for host in ("host2", "host3"):
        compose(lab, host, "up", "-d", "--build", "api")
    compose(lab, "host1", "up", "-d", "--build", "--no-deps", "front")
    print(f"\nup on three hosts: {time.monotonic() - started:.1f} s")

    apis = {host: compose_containers(lab, host, "api") for host in ("host2", "host3")}
    assert all(len(found) == 1 for found in apis.values()), apis
    assert compose_containers(lab, "host1", "api") == {}  # --no-deps: no API beside the front
    leases = {host: lab.state().hosts[host].subnet for host in HOSTS}
    for host, found in apis.items():
        # the project's network is cut from the host's lease, so other hosts route it
        lease = ipaddress.ip_interface(leases[host]).network
        assert all(ipaddress.ip_address(a) in lease for a in found.values()), (found, lease)
    expected = {address for found in apis.values() for address in found.values()}

    wait_until(lambda: {r["address"] for r in healthy_api(lab)} == expected, 30,
               "both API replicas registered and healthy")  # fmt: skip
    rows = lab.lookup("api")
    assert {(r["host"], r["container"]) for r in rows} == {
        (host, name) for host, found in apis.items() for name in found
    }
    assert all(r["tags"] == [PROJECT] for r in rows), rows
    wait_until(lambda: [r["health"] for r in lab.lookup("front")] == ["healthy"], 30,
               "the front end registered and healthy")  # fmt: skip

    # the lab's DNS, from a container on every host: the name, and the name under the tag
    for host in HOSTS:
        assert resolve(lab, host, "api") == expected, host
        assert resolve(lab, host, f"{PROJECT}.api.service.lab") == expected, host
    assert resolve(lab, "host1", "nosuchtag.api.service.lab") == set()

    # the front end on host1 reaches both APIs by name, across the overlay
    answered = set()
    deadline = time.monotonic() + 30
    while answered != {"host2", "host3"} and time.monotonic() < deadline:
        page = front_page(lab)
        assert page.startswith("front: container "), page
        api_line = next(line for line in page.splitlines() if line.startswith("api:"))
        answered.add(json.loads(api_line.split(":", 1)[1])["lab_host"])
    assert answered == {"host2", "host3"}

    # scaled: every replica registered, with its own address, and in the answers
    compose(lab, "host2", "up", "-d", "--scale", "api=3", "api")
    apis["host2"] = compose_containers(lab, "host2", "api")
    assert len(apis["host2"]) == 3
    scaled = {address for found in apis.values() for address in found.values()}
    assert len(scaled) == 4
    wait_until(lambda: {r["address"] for r in healthy_api(lab)} == scaled, 30,
               "four API replicas registered and healthy")  # fmt: skip
    assert resolve(lab, "host3", f"{PROJECT}.api.service.lab") == scaled

    # down -v everywhere: nothing registered, running or kept
    for host in HOSTS:
        compose(lab, host, "down", "-v")
    wait_until(lambda: lab.lookup("api") == [] and lab.lookup("front") == [], 10,
               "no shop record left in etcd")  # fmt: skip
    for host in HOSTS:
        left = lab.docker(
            host, "ps", "-aq", "--filter", f"label=com.docker.compose.project={PROJECT}"
        )
        assert left.strip() == "", host
        assert lab.docker(host, "volume", "ls", "-q", "--filter", f"name={PROJECT}_").strip() == ""
        assert PROJECT not in lab.docker(host, "network", "ls", "--format", "{{.Name}}")
    assert resolve(lab, "host1", "api") == set()

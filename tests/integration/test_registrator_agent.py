"""The registrator half of the agent against a real dockerd and a real etcd.

The agent runs as its own process (so SIGTERM and SIGKILL are real), the
containers run on the private dockerd of the ``docker_host`` fixture, and the
records are read back from etcd. Leases are short (2-3 s) to keep it quick.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from discovery.schema import Endpoint, decode_node, encode_endpoint, endpoint_key, node_key
from discovery.settings import Settings, settings_as_environment
from discovery.store import EtcdStore
from labs.etcd_server import EtcdCluster, etcdctl
from tests.fixtures.docker import DockerHost
from tests.fixtures.etcd import settings_for
from tests.integration.metrics_support import Scraped, metrics_url, scrape, wait_scrape
from tests.integration.registrator_support import (
    REPO,
    AgentProcess,
    Record,
    addresses_of,
    expect,
    run_container,
    summary,
    unique,
    wait_records,
)

pytestmark = [pytest.mark.docker, pytest.mark.root, pytest.mark.etcd]
StartAgent = Callable[..., AgentProcess]
SERVICES = "discovery_agent_services_"


@pytest.fixture
def start_agent(tmp_path: Path) -> Iterator[StartAgent]:
    """Start agents; every one still running is stopped after the test."""
    started: list[AgentProcess] = []

    def start(docker_url: str, settings: Settings, **kwargs: Any) -> AgentProcess:
        log = tmp_path / f"agent-{len(started)}.log"
        agent = AgentProcess(docker_url, settings, log, **kwargs).start()
        started.append(agent)
        agent.wait_log("etcd in sync")
        return agent

    yield start
    for agent in started:
        agent.stop()


@pytest.fixture
def settings(etcd_server: EtcdCluster) -> Settings:
    return settings_for(etcd_server.endpoints, lease_ttl_s=3)


def lookup_json(settings: Settings, service: str) -> list[dict]:
    env = {**os.environ, **settings_as_environment(settings), "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "discovery.cli", "lookup", service, "-o", "json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        check=True,
    )
    return list(json.loads(done.stdout))


async def test_web_and_db_appear_with_addresses_and_ports(
    docker_cleanup: DockerHost, settings: Settings, start_agent: StartAgent
) -> None:
    client, images = docker_cleanup.client, docker_cleanup.images
    agent = start_agent(docker_cleanup.url, settings)
    web1 = run_container(client, images["web"], name=unique("web1"), command=["/bin/lab-web"])
    web2 = run_container(client, images["web"], name=unique("web2"), command=["/bin/lab-web"])
    db = run_container(
        client, images["base"], name=unique("db"), labels={"discovery.service": "db"}
    )
    names = {cid: client.api.inspect_container(cid)["Name"].lstrip("/") for cid in (web1, web2, db)}
    (web1_ip,), (web2_ip,), (db_ip,) = (addresses_of(client, c) for c in (web1, web2, db))

    records = await wait_records(
        settings,
        expect(
            ("web", names[web1], web1_ip, 80, "passing"),
            ("web", names[web2], web2_ip, 80, "passing"),
            ("db", names[db], db_ip, 0, "passing"),
        ),
    )
    for record in records:
        endpoint = record.endpoint
        assert endpoint.node == "host1"
        assert endpoint.container_id in (web1, web2, db)
        assert endpoint.protocol == "tcp"
        assert endpoint.image in (images["web"], images["base"])
        assert record.lease != 0, "records must live under the agent's lease"
    web_rows = lookup_json(settings, "web")
    assert sorted((row["address"], row["port"], row["host"]) for row in web_rows) == sorted(
        [(web1_ip, 80, "host1"), (web2_ip, 80, "host1")]
    )
    assert {row["port_name"] for row in web_rows} == {"http"}
    # One log line per registration, with the container and the service.
    log = agent.log_text()
    assert f"msg=registered container={names[db]} service=db" in log


async def test_every_naming_rule(
    docker_cleanup: DockerHost, settings: Settings, start_agent: StartAgent
) -> None:
    client, base = docker_cleanup.client, docker_cleanup.images["base"]
    agent = start_agent(docker_cleanup.url, settings)
    label = run_container(
        client,
        base,
        name=unique("by-label"),
        labels={"discovery.service": "Alpha_App", "discovery.tags": "blue,Prod"},
        env={"SERVICE_NAME": "not-this"},
    )
    by_env = run_container(
        client, base, name=unique("by-env"), env={"SERVICE_NAME": "beta", "SERVICE_TAGS": "x"}
    )
    compose = run_container(
        client,
        base,
        name=unique("by-compose"),
        labels={"com.docker.compose.service": "gamma", "com.docker.compose.project": "shop"},
    )
    by_image = run_container(client, base, name=unique("by-image"))
    two_ports = run_container(
        client,
        base,
        name=unique("two-ports"),
        exposed=[80, 9090],
        env={"SERVICE_80_NAME": "front", "SERVICE_9090_NAME": "metrics"},
    )
    ignored = run_container(client, base, name=unique("ignored"), env={"SERVICE_IGNORE": "1"})
    invalid_name = unique("invalid")
    invalid = run_container(client, base, name=invalid_name, labels={"discovery.service": "%%%"})
    ip = {
        cid: addresses_of(client, cid)[0] for cid in (label, by_env, compose, by_image, two_ports)
    }

    def name(cid: str) -> str:
        return str(client.api.inspect_container(cid)["Name"].lstrip("/"))

    records = await wait_records(
        settings,
        expect(
            ("alpha-app", name(label), ip[label], 0, "passing"),
            ("beta", name(by_env), ip[by_env], 0, "passing"),
            ("gamma", name(compose), ip[compose], 0, "passing"),
            ("base", name(by_image), ip[by_image], 0, "passing"),
            ("front", name(two_ports), ip[two_ports], 80, "passing"),
            ("metrics", name(two_ports), ip[two_ports], 9090, "passing"),
        ),
    )
    tags = {r.endpoint.service: r.endpoint.tags for r in records}
    assert tags["alpha-app"] == ("blue", "prod")
    assert tags["beta"] == ("x",)
    assert {r.endpoint.container_id for r in records}.isdisjoint({ignored, invalid})
    # The invalid name is refused with a log line naming the container and the reason,
    # and the agent carries on.
    agent.wait_log(f"container={invalid_name}")
    line = next(x for x in agent.log_text().splitlines() if f"container={invalid_name}" in x)
    assert "container skipped" in line and "no letters or digits" in line
    assert agent.process is not None and agent.process.poll() is None


async def test_host_address_mode_registers_published_ports(
    docker_cleanup: DockerHost, settings: Settings, start_agent: StartAgent
) -> None:
    client, images = docker_cleanup.client, docker_cleanup.images
    agent = start_agent(docker_cleanup.url, settings, extra_args=["--advertise-ip", "10.99.0.11"])
    published = run_container(
        client,
        images["web"],
        name=unique("pub"),
        command=["/bin/lab-web"],
        exposed=[9090],
        published={80: 18080},
    )
    bare = run_container(client, images["base"], name=unique("bare"))

    def name(cid: str) -> str:
        return str(client.api.inspect_container(cid)["Name"][1:])

    # The published port at the host's address; the unpublished 9090 is left
    # out; a container without published ports is not registered (nothing of it
    # is reachable at the host's address), and the log says so.
    await wait_records(settings, expect(("web", name(published), "10.99.0.11", 18080, "passing")))
    agent.wait_log(f"container={name(bare)}")
    assert "no port published" in agent.log_text()
    # The host's node record, under the same lease, names the advertised address.
    async with EtcdStore(settings) as store:
        found = await store.get(node_key(settings.prefix, settings.domain, "host1"))
    assert found is not None and found.lease != 0
    assert decode_node(found.value).address == "10.99.0.11"


async def test_stop_kill_pause_unpause_and_health(
    docker_cleanup: DockerHost, settings: Settings, start_agent: StartAgent
) -> None:
    client, base = docker_cleanup.client, docker_cleanup.images["base"]
    start_agent(docker_cleanup.url, settings)
    stopped = run_container(client, base, name=unique("s"), labels={"discovery.service": "s"})
    killed = run_container(client, base, name=unique("k"), labels={"discovery.service": "k"})
    paused = run_container(client, base, name=unique("p"), labels={"discovery.service": "p"})
    checked = run_container(
        client,
        base,
        name=unique("h"),
        labels={"discovery.service": "h"},
        command=["sh", "-c", "touch /tmp/healthy; exec sleep 1000"],
        healthcheck={
            "test": ["CMD-SHELL", "test -f /tmp/healthy"],
            "interval": 200_000_000,
            "timeout": 2_000_000_000,
            "retries": 1,
        },
    )

    def services(records: list[Record]) -> dict[str, str]:
        return {r.endpoint.service: r.endpoint.health for r in records}

    await wait_records(
        settings,
        lambda rs: services(rs) == {"s": "passing", "k": "passing", "p": "passing", "h": "healthy"},
        what="all four registered, h healthy",
    )
    client.api.stop(stopped, timeout=0)
    client.api.kill(killed)
    client.api.pause(paused)
    await wait_records(
        settings,
        lambda rs: services(rs) == {"p": "paused", "h": "healthy"},
        what="s and k gone, p paused",
    )
    client.api.unpause(paused)
    exec_id = client.api.exec_create(checked, ["rm", "/tmp/healthy"])["Id"]
    client.api.exec_start(exec_id)
    await wait_records(
        settings,
        lambda rs: services(rs) == {"p": "passing", "h": "unhealthy"},
        what="p passing again, h unhealthy",
    )

    # A rename updates the record in place; a restart leaves exactly one record.
    new_name = unique("renamed")
    client.api.rename(paused, new_name)
    client.api.restart(checked, timeout=0)
    records = await wait_records(
        settings,
        lambda rs: (
            {(r.endpoint.service, r.endpoint.container_name) for r in rs}
            == {("p", new_name), ("h", client.api.inspect_container(checked)["Name"][1:])}
            and len(rs) == 2
            and services(rs)["h"] == "healthy"
        ),
        what="p renamed, h restarted and healthy again",
    )
    (h_address,) = addresses_of(client, checked)
    assert next(r.endpoint.address for r in records if r.endpoint.service == "h") == h_address


async def test_reconcile_at_start_after_a_crash(
    docker_cleanup: DockerHost, etcd_server: EtcdCluster, start_agent: StartAgent
) -> None:
    # A long lease: what disappears must be removed by the reconcile, not by expiry.
    settings = settings_for(etcd_server.endpoints, lease_ttl_s=30)
    client, base = docker_cleanup.client, docker_cleanup.images["base"]
    first = start_agent(docker_cleanup.url, settings)
    kept = run_container(client, base, name=unique("kept"), labels={"discovery.service": "kept"})
    removed = run_container(client, base, name=unique("gone"), labels={"discovery.service": "gone"})
    before = await wait_records(
        settings, lambda rs: {r.endpoint.service for r in rs} == {"kept", "gone"}
    )
    old_lease = before[0].lease

    first.signal(signal.SIGKILL)
    first.wait_exit()
    client.api.remove_container(removed, force=True)
    added = run_container(client, base, name=unique("added"), labels={"discovery.service": "added"})
    start_agent(docker_cleanup.url, settings)

    records = await wait_records(
        settings,
        lambda rs: (
            {r.endpoint.service for r in rs} == {"kept", "added"}
            and all(r.lease != old_lease for r in rs)
        ),
        timeout_s=5,
        what="kept and added, under the new lease",
    )
    assert {r.endpoint.container_id for r in records} == {kept, added}
    assert len(records) == 2
    kept_record = next(r for r in records if r.endpoint.service == "kept")
    old_kept = next(r for r in before if r.endpoint.service == "kept")
    assert kept_record.endpoint.registered_at == old_kept.endpoint.registered_at


async def test_sigkill_records_expire_with_the_lease(
    docker_cleanup: DockerHost, etcd_server: EtcdCluster, start_agent: StartAgent
) -> None:
    settings = settings_for(etcd_server.endpoints, lease_ttl_s=2)
    client, base = docker_cleanup.client, docker_cleanup.images["base"]
    agent = start_agent(docker_cleanup.url, settings)
    run_container(client, base, labels={"discovery.service": "crash"})
    await wait_records(settings, lambda rs: len(rs) == 1)
    agent.signal(signal.SIGKILL)
    killed_at = time.monotonic()
    agent.wait_exit()
    await wait_records(settings, lambda rs: not rs, timeout_s=6, what="records gone")
    assert time.monotonic() - killed_at <= settings.lease_ttl_s + 1


async def test_sigterm_deregisters_at_once(
    docker_cleanup: DockerHost, settings: Settings, start_agent: StartAgent
) -> None:
    client, base = docker_cleanup.client, docker_cleanup.images["base"]
    agent = start_agent(docker_cleanup.url, settings)
    run_container(client, base, labels={"discovery.service": "graceful"})
    await wait_records(settings, lambda rs: len(rs) == 1)
    agent.signal(signal.SIGTERM)
    stopped_at = time.monotonic()
    await wait_records(settings, lambda rs: not rs, timeout_s=3, what="records gone")
    assert time.monotonic() - stopped_at <= 1.0
    assert agent.wait_exit() == 0
    assert "revoked etcd lease" in agent.log_text()


def metrics_of(agent: AgentProcess) -> str:
    """The agent's /metrics URL, from its log (it binds --metrics 127.0.0.1:0 before starting)."""
    url = metrics_url(agent.log_text())
    assert url is not None, agent.log_text()
    return url


async def test_metrics_count_records_written_and_deleted_and_docker_events(
    docker_cleanup: DockerHost, settings: Settings, start_agent: StartAgent
) -> None:
    client, base = docker_cleanup.client, docker_cleanup.images["base"]
    agent = start_agent(docker_cleanup.url, settings, extra_args=["--metrics", "127.0.0.1:0"])
    url = metrics_of(agent)
    before = await scrape(url)
    assert before[f"{SERVICES}lease_held"] == 1
    assert before[f"{SERVICES}etcd_reachable"] == 1
    assert before[f"{SERVICES}etcd_outages_total"] == 0
    assert before[f"{SERVICES}docker_reachable"] == 1
    assert before.types[f"{SERVICES}records_written"] == "counter"

    def rise(now: Scraped, name: str, **labels: str) -> float:
        return now(SERVICES + name, **labels) - before(SERVICES + name, **labels)

    started = run_container(client, base, labels={"discovery.service": "counted"})
    await wait_records(settings, lambda rs: len(rs) == 1, what="the container's record")
    # The counter follows etcd's acknowledgement, so wait for it rather than read at once.
    after = await wait_scrape(lambda: scrape(url), lambda m: rise(m, "records_written_total") > 0)
    assert rise(after, "records_written_total") == 1
    assert rise(after, "docker_events_total", action="start") == 1
    assert rise(after, "records_deleted_total") == 0

    client.api.kill(started)
    await wait_records(settings, lambda rs: not rs, what="the record gone")
    gone = await wait_scrape(lambda: scrape(url), lambda m: rise(m, "records_deleted_total") > 0)
    assert rise(gone, "records_deleted_total") == 1
    assert rise(gone, "docker_events_total", action="die") == 1
    assert rise(gone, "records_written_total") == 1  # nothing more was put


async def test_docker_daemon_restart_under_the_agent(
    docker_host: DockerHost, settings: Settings, start_agent: StartAgent
) -> None:
    # docker_host, not docker_cleanup: a restarted daemon gives its predefined
    # networks new ids, which docker_cleanup would then try to remove.
    client, base = docker_host.client, docker_host.images["base"]
    agent = start_agent(docker_host.url, settings)
    created: list[str] = []
    try:
        survivor = run_container(
            client, base, name=unique("always"), labels={"discovery.service": "always"},
            restart_always=True,
        )  # fmt: skip
        created.append(survivor)
        created.append(
            run_container(client, base, name=unique("once"), labels={"discovery.service": "once"})
        )
        await wait_records(
            settings, lambda rs: {r.endpoint.service for r in rs} == {"always", "once"}
        )

        docker_host.daemon.stop()
        docker_host.daemon.start()
        agent.wait_log("Docker reachable again")

        def settled(records: list[Record]) -> bool:
            state = client.api.inspect_container(survivor)
            if not state["State"]["Running"]:
                return False
            (address,) = addresses_of(client, survivor)
            wanted = {("always", state["Name"][1:], address, 0, "passing")}
            return summary(records) == wanted and len(records) == 1

        await wait_records(settings, settled, timeout_s=15, what="only the restarted container")
    finally:
        for container_id in created:
            with contextlib.suppress(docker.errors.NotFound):
                client.api.remove_container(container_id, force=True)


async def test_etcd_outage_and_lost_lease_lose_nothing(
    docker_cleanup: DockerHost, own_etcd: EtcdCluster, start_agent: StartAgent
) -> None:
    settings = settings_for(own_etcd.endpoints, lease_ttl_s=3)
    client, base = docker_cleanup.client, docker_cleanup.images["base"]
    agent = start_agent(docker_cleanup.url, settings, extra_args=["--metrics", "127.0.0.1:0"])
    url = metrics_of(agent)
    stays = run_container(client, base, labels={"discovery.service": "stays"})
    leaves = run_container(client, base, labels={"discovery.service": "leaves"})
    await wait_records(settings, lambda rs: {r.endpoint.service for r in rs} == {"stays", "leaves"})

    member = own_etcd.members[0]
    member.stop()
    # While etcd is down, the agent keeps following Docker in memory.
    client.api.remove_container(leaves, force=True)
    arrives = run_container(client, base, labels={"discovery.service": "arrives"})
    # The agent noticed the outage (its lease keeper's refresh failed) and says so.
    during = await wait_scrape(
        lambda: scrape(url), lambda m: m[f"{SERVICES}etcd_reachable"] == 0, what="etcd unreachable"
    )
    assert during[f"{SERVICES}etcd_outages_total"] == 1
    member.start()
    records = await wait_records(
        settings,
        lambda rs: {r.endpoint.service for r in rs} == {"stays", "arrives"} and len(rs) == 2,
        timeout_s=10,
        what="etcd equal to Docker after the outage",
    )
    assert {r.endpoint.container_id for r in records} == {stays, arrives}
    after = await wait_scrape(
        lambda: scrape(url), lambda m: m[f"{SERVICES}etcd_reachable"] == 1, what="etcd reachable"
    )
    assert after[f"{SERVICES}etcd_outages_total"] == 1  # one outage, however many failed calls

    # Someone revokes the agent's lease: every record goes; the agent grants
    # a new lease and writes them all again, once each.
    lease = records[0].lease
    etcdctl(own_etcd.endpoints, "lease", "revoke", f"{lease:x}")
    records = await wait_records(
        settings,
        lambda rs: (
            {r.endpoint.service for r in rs} == {"stays", "arrives"}
            and len(rs) == 2
            and all(r.lease not in (0, lease) for r in rs)
        ),
        timeout_s=settings.lease_ttl_s + 3,
        what="everything back under a new lease",
    )
    assert "LOST etcd lease" in agent.log_text()
    final = await scrape(url)
    assert final[f"{SERVICES}lease_held"] == 1
    assert final[f"{SERVICES}etcd_outages_total"] == 1  # a lost lease is not an etcd outage


async def test_records_the_agent_did_not_write_survive_its_resyncs(
    docker_cleanup: DockerHost, etcd_server: EtcdCluster, start_agent: StartAgent
) -> None:
    # Two records name host1 without being this agent's: one made by hand
    # (the README's `discoveryctl register ... --host`), one of another agent
    # started with the same host name, under that agent's own live lease.
    settings = settings_for(etcd_server.endpoints, lease_ttl_s=3)
    env = {**os.environ, **settings_as_environment(settings), "PYTHONPATH": str(REPO)}
    subprocess.run(
        [sys.executable, "-m", "discovery.cli", "register", "byhand",
         "--address", "10.5.9.9", "--port", "80", "--host", "host1"],
        check=True, env=env, cwd=REPO, capture_output=True,
    )  # fmt: skip
    twin_lease = int(etcdctl(etcd_server.endpoints, "lease", "grant", "60").split()[1], 16)
    twin = Endpoint(
        service="twin", address="10.5.9.10", port=80, node="host1", container_id="f" * 64
    )
    twin_key = endpoint_key(settings.prefix, settings.domain, "twin", twin.endpoint_id)
    etcdctl(
        etcd_server.endpoints, "put", "--lease", f"{twin_lease:x}", twin_key,
        encode_endpoint(twin).decode(),
    )  # fmt: skip
    try:
        client, base = docker_cleanup.client, docker_cleanup.images["base"]
        agent = start_agent(docker_cleanup.url, settings)
        run_container(client, base, labels={"discovery.service": "mine"})
        await wait_records(
            settings, lambda rs: {r.endpoint.service for r in rs} == {"byhand", "twin", "mine"}
        )
        # A lost lease makes the agent resync under a new one: still there.
        (mine,) = [r for r in await wait_records(settings, lambda rs: len(rs) == 3)
                   if r.endpoint.service == "mine"]  # fmt: skip
        etcdctl(etcd_server.endpoints, "lease", "revoke", f"{mine.lease:x}")
        records = await wait_records(
            settings,
            lambda rs: len(rs) == 3 and all(r.lease != mine.lease for r in rs),
            what="the agent's record back under a new lease, the others untouched",
        )
        assert {r.endpoint.service for r in records} == {"byhand", "twin", "mine"}
        assert "another agent started with the same --host-name" in agent.log_text()
    finally:
        etcdctl(etcd_server.endpoints, "lease", "revoke", f"{twin_lease:x}")
        subprocess.run(
            [sys.executable, "-m", "discovery.cli", "deregister", "byhand",
             "--address", "10.5.9.9", "--port", "80"],
            env=env, cwd=REPO, capture_output=True,
        )  # fmt: skip


def test_the_agent_starts_and_waits_while_docker_is_down(
    etcd_server: EtcdCluster, tmp_path: Path
) -> None:
    settings = settings_for(etcd_server.endpoints, lease_ttl_s=3)
    socket_path = tmp_path / "no-docker-here.sock"
    agent = AgentProcess(f"unix://{socket_path}", settings, tmp_path / "agent.log").start()
    try:
        agent.wait_log("Docker unreachable", timeout_s=15)
        assert agent.process is not None and agent.process.poll() is None
    finally:
        agent.signal(signal.SIGTERM)
    assert agent.wait_exit() == 0, agent.log_text()
    assert "bad Docker host" not in agent.log_text()

"""Namespace hosts on a bridge, each running ``discovery-agent network``.

Three hosts start together; the tests then read the kernel back with pyroute2
(through agent.network.netlink, opened in each namespace), ping across the
VXLAN, add a fourth host, take hosts away, restart agents, and break entries
by hand. The comparison is exact: every host must hold precisely the entries
``desired_entries`` derives from the leases in etcd, no more, no fewer.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import subprocess
from collections.abc import Iterator

import pytest

from agent.network.desired import KernelEntries, desired_entries
from agent.network.netlink import Netlink, VxlanLink
from discovery import flannel
from labs.etcd_server import etcdctl
from labs.testing.overlay_hosts import Host, OverlayLab, agent_binary, sh
from labs.testing.waiting import eventually
from tests.integration.metrics_support import Scraped, scrape_in, wait_scrape
from tests.prerequisites import require_binary, require_root

pytestmark = [pytest.mark.root, pytest.mark.netns, pytest.mark.etcd]

PREFIX = "/overlay-test/coreos.com/network"
NETWORK = ipaddress.IPv4Network("10.213.0.0/16")
CONFIG = json.dumps({"Network": str(NETWORK), "Backend": {"Type": "vxlan", "VNI": 1}})
DEVICE = "flannel.1"
CONVERGE_S = 10.0
POLL_S = 0.1  # each check reads several namespaces' kernel tables
METRICS_PORT = 9101  # host1's agent serves /metrics on its own namespace's loopback
NETWORK_METRICS = "discovery_agent_network_"


@pytest.fixture(scope="module")
def lab() -> Iterator[OverlayLab]:
    require_root()
    require_binary("ip", "iptables", "nsenter", "busybox")
    overlay = OverlayLab()
    with overlay:
        etcdctl(overlay.endpoints, "put", f"{PREFIX}/config", CONFIG)
        for index in (1, 2, 3):
            overlay.add_host(index)
        overlay.start_agent(overlay.hosts[1], PREFIX, "--metrics", f"127.0.0.1:{METRICS_PORT}")
        overlay.start_agent(overlay.hosts[2], PREFIX)
        overlay.start_agent(overlay.hosts[3], PREFIX, "--ip-masq")
        yield overlay


# ------------------------------------------------------------ helpers


def leases(lab: OverlayLab) -> dict[str, flannel.SubnetLease]:
    """Every lease in etcd, by key (etcdctl prints key and value on alternate lines)."""
    lines = etcdctl(lab.endpoints, "get", "--prefix", f"{PREFIX}/subnets/").splitlines()
    return {
        key: flannel.parse_subnet_lease(PREFIX, key, value)
        for key, value in zip(lines[0::2], lines[1::2], strict=True)
    }


def lease_of(lab: OverlayLab, host: Host) -> flannel.SubnetLease | None:
    found = [lease for lease in leases(lab).values() if lease.public_ip == host.address]
    return found[0] if found else None


async def kernel(host: Host) -> tuple[VxlanLink | None, KernelEntries, list]:
    async with Netlink(host.netns) as netlink:
        link = await netlink.find_vxlan(DEVICE)
        if link is None:
            return None, KernelEntries(), []
        entries = await netlink.read_entries(link.ifindex, NETWORK)
        addresses = await netlink.ipv4_addresses(link.ifindex)
        return link, entries, addresses


async def converged(lab: OverlayLab, hosts: list[Host]) -> bool:
    """Every host holds exactly what the leases in etcd say it should."""
    current = list(leases(lab).values())
    for host in hosts:
        own = next((lease for lease in current if lease.public_ip == host.address), None)
        if own is None:
            return False
        _, entries, _ = await kernel(host)
        if entries != desired_entries(own, current, NETWORK):
            return False
    return True


def running(lab: OverlayLab) -> list[Host]:
    return [h for h in lab.hosts.values() if h.process is not None and h.process.poll() is None]


async def all_converged(lab: OverlayLab) -> None:
    hosts = running(lab)
    try:
        await eventually(lambda: converged(lab, hosts), CONVERGE_S, "convergence", POLL_S)
    except AssertionError:
        logs = "\n".join(f"== {h.netns}\n{h.log_tail(15)}" for h in hosts)
        raise AssertionError(f"hosts did not converge; agent logs:\n{logs}") from None


async def wait_for_lease(lab: OverlayLab, host: Host) -> flannel.SubnetLease:
    async def ready():  # type: ignore[no-untyped-def]
        return host.subnet_file.exists() and lease_of(lab, host)

    try:
        await eventually(ready, 20, f"a lease for {host.netns}", POLL_S)
    except AssertionError:
        raise AssertionError(f"no lease for {host.netns}:\n{host.log_tail()}") from None
    lease = lease_of(lab, host)
    assert lease is not None
    return lease


# ------------------------------------------------------------ tests


async def test_three_hosts_hold_distinct_leases_in_flannels_layout(lab):
    own = [await wait_for_lease(lab, lab.hosts[i]) for i in (1, 2, 3)]
    assert len({lease.subnet for lease in own}) == 3
    raw = etcdctl(lab.endpoints, "get", "--prefix", f"{PREFIX}/subnets/").splitlines()
    for key, value in zip(raw[0::2], raw[1::2], strict=True):
        subnet = flannel.parse_subnet_key(PREFIX, key)
        assert key == f"{PREFIX}/subnets/{subnet.network_address}-24"
        data = json.loads(value)
        assert set(data) == {"PublicIP", "BackendType", "BackendData"}
        assert data["BackendType"] == "vxlan"
        assert set(data["BackendData"]) == {"VNI", "VtepMAC"}
    for host, lease in zip((lab.hosts[i] for i in (1, 2, 3)), own, strict=True):
        env = dict(line.split("=", 1) for line in host.subnet_file.read_text().splitlines())
        assert env == {
            "FLANNEL_NETWORK": str(NETWORK),
            "FLANNEL_SUBNET": f"{lease.subnet.network_address + 1}/24",
            "FLANNEL_MTU": "1450",
            "FLANNEL_IPMASQ": "true" if host.index == 3 else "false",
        }
        docker = json.loads(host.docker_opts_file.read_text())
        # docker0 takes the lease's first half, Docker's address pool the second
        half = lease.subnet.prefixlen + 1
        assert docker["bip"] == f"{lease.subnet.network_address + 1}/{half}"
        assert docker["mtu"] == 1450
        pool = lease.subnet.network_address + 2 ** (32 - half)
        assert docker["default-address-pools"] == [{"base": f"{pool}/{half}", "size": 28}]


async def test_every_host_has_the_device_and_exactly_the_entries_for_the_others(lab):
    await all_converged(lab)
    current = leases(lab)
    for index in (1, 2, 3):
        host = lab.hosts[index]
        own = lease_of(lab, host)
        assert own is not None
        link, entries, addresses = await kernel(host)
        assert link is not None
        assert (link.vni, link.port, link.local, link.learning) == (1, 8472, host.address, False)
        assert link.mtu == 1500 - 50 and link.up
        assert link.mac == own.vtep_mac
        assert addresses == [ipaddress.IPv4Interface(f"{own.subnet.network_address}/32")]
        assert len(entries.routes) == len(entries.fdb) == len(entries.neighbours) == 2
        for other in current.values():
            if other.public_ip == host.address:
                continue
            assert (other.subnet.network_address, other.vtep_mac) in {
                (n.address, n.mac) for n in entries.neighbours
            }
            assert (other.vtep_mac, other.public_ip) in {(f.mac, f.remote_ip) for f in entries.fdb}
            assert (other.subnet, other.subnet.network_address) in {
                (r.destination, r.gateway) for r in entries.routes
            }


async def test_hosts_ping_each_other_across_the_vxlan(lab):
    await all_converged(lab)
    hosts = [lab.hosts[i] for i in (1, 2, 3)]
    for source, target in zip(hosts, hosts[1:] + hosts[:1], strict=True):
        lease = lease_of(lab, target)
        assert lease is not None
        assert source.ping(lease.subnet.network_address), f"{source.netns} -> {lease.subnet}"


def test_forwarding_and_masquerade_rules_are_flannels(lab):
    plain = lab.hosts[1].run("iptables", "-w", "-S", "FLANNEL-FWD")
    assert f"-A FLANNEL-FWD -s {NETWORK}" in plain and f"-A FLANNEL-FWD -d {NETWORK}" in plain
    assert (
        lab.hosts[1].run("iptables", "-w", "-t", "nat", "-S", "FLANNEL-POSTRTG", check=False) == ""
    )
    masq = lab.hosts[3].run("iptables", "-w", "-t", "nat", "-S", "POSTROUTING")
    assert '-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG' in masq
    chain = lab.hosts[3].run("iptables", "-w", "-t", "nat", "-S", "FLANNEL-POSTRTG")
    assert chain.count("-j MASQUERADE --random-fully") == 2


def test_docker_s_isolation_is_lifted_between_networks_inside_the_lease(lab):
    # No dockerd runs here: the agent makes DOCKER-USER itself, as dockerd would find it.
    lease = lease_of(lab, lab.hosts[1])
    assert lease is not None
    user = lab.hosts[1].run("iptables", "-w", "-S", "DOCKER-USER")
    jump = '-A DOCKER-USER -m comment --comment "discovery lease networks" -j DISCOVERY-LEASE'
    assert jump in user
    chain = lab.hosts[1].run("iptables", "-w", "-S", "DISCOVERY-LEASE")
    assert f"-A DISCOVERY-LEASE -s {lease.subnet} -d {lease.subnet}" in chain


async def test_entries_deleted_by_hand_come_back(lab):
    await all_converged(lab)
    host = lab.hosts[1]
    link, entries, _ = await kernel(host)
    assert link is not None
    route, fdb = sorted(entries.routes)[0], sorted(entries.fdb)[0]
    before = scrape_in(host.netns, METRICS_PORT)
    assert before[f"{NETWORK_METRICS}subnet_lease_held"] == 1
    assert before[f"{NETWORK_METRICS}remote_leases"] == 2
    assert before[f"{NETWORK_METRICS}etcd_reachable"] == 1
    assert before[f"{NETWORK_METRICS}etcd_outages_total"] == 0
    assert before(f"{NETWORK_METRICS}reconcile_passes_total", scope="full") >= 1
    programmed = f"{NETWORK_METRICS}kernel_entries_programmed_total"
    repaired = f"{NETWORK_METRICS}kernel_entries_repaired_total"
    for kind in ("route", "neighbour", "fdb"):  # one of each for host2 and for host3, at least
        assert before(programmed, kind=kind, action="add") >= 2
    async with Netlink(host.netns) as netlink:
        await netlink.delete_route(link.ifindex, route)
        await netlink.delete_fdb(link.ifindex, fdb)
        assert route not in await netlink.read_routes(link.ifindex, NETWORK)
        assert fdb not in await netlink.read_fdb(link.ifindex)

    async def restored() -> bool:
        _, now, _ = await kernel(host)
        return route in now.routes and fdb in now.fdb

    await eventually(
        restored, 5, "the periodic reconcile restoring a route and an FDB entry", POLL_S
    )
    await all_converged(lab)

    def rise(now: Scraped, name: str, kind: str, action: str = "add") -> float:
        return now(name, kind=kind, action=action) - before(name, kind=kind, action=action)

    after = await wait_scrape(
        lambda: scrape_in(host.netns, METRICS_PORT),
        lambda m: rise(m, repaired, "route") + rise(m, repaired, "fdb") >= 2,
        what="the route and the FDB entry counted as repaired",
    )
    for name in (programmed, repaired):
        assert rise(after, name, "route") == 1
        assert rise(after, name, "fdb") == 1
        assert rise(after, name, "neighbour") == 0
        assert all(rise(after, name, k, "delete") == 0 for k in ("route", "fdb", "neighbour"))


async def test_entries_the_agent_does_not_own_are_left_alone(lab):
    await all_converged(lab)
    host = lab.hosts[2]
    # On our very device, but outside the overlay network: not ours.
    host.run("ip", "neigh", "add", "10.99.0.1", "lladdr", "0e:99:00:00:00:01",
             "dev", DEVICE, "nud", "permanent")  # fmt: skip
    host.run("ip", "route", "add", "10.99.0.0/24", "via", "10.99.0.1", "dev", DEVICE, "onlink")
    try:
        await asyncio.sleep(1.5)  # more than one reconcile interval
        assert "10.99.0.0/24 via 10.99.0.1" in host.run("ip", "route")
        assert "10.99.0.1 lladdr 0e:99:00:00:00:01" in host.run(
            "ip", "neigh", "show", "dev", DEVICE
        )
    finally:
        host.run("ip", "route", "del", "10.99.0.0/24", check=False)
        host.run("ip", "neigh", "del", "10.99.0.1", "dev", DEVICE, check=False)


def _lease_json(public_ip: str, mac: str) -> str:
    return json.dumps(
        {"PublicIP": public_ip, "BackendType": "vxlan", "BackendData": {"VtepMAC": mac, "VNI": 1}}
    )


async def test_hostile_values_under_the_subnets_prefix_reach_no_kernel_and_stop_no_agent(lab):
    await all_converged(lab)
    victim = lease_of(lab, lab.hosts[1])
    assert victim is not None
    subnets = f"{PREFIX}/subnets"
    hostile = {
        # Each would once have killed every agent, or reached every kernel.
        f"{subnets}/10.213.200.0-24": "[" * 50_000,
        f"{subnets}/10.213.201.0-24": '{"PublicIP": "192.168.213.91", "N": ' + "9" * 5001 + "}",
        f"{subnets}/10.213.202.0-24": "not json at all",
        f"{subnets}/10.213.0.0-16": _lease_json("192.168.213.92", "0e:bb:00:00:00:01"),
        f"{subnets}/10.213.203.0-24": _lease_json("127.0.0.1", "0e:bb:00:00:00:02"),
        f"{subnets}/10.213.204.0-24": _lease_json("192.168.213.93", "01:00:5e:00:00:01"),
        # A second claim to host1's VtepMAC: neither may be programmed.
        f"{subnets}/10.213.205.0-24": _lease_json("192.168.213.94", victim.vtep_mac),
    }
    refused = [ipaddress.IPv4Network(key.rsplit("/", 1)[1].replace("-", "/")) for key in hostile]
    for key, value in hostile.items():
        etcdctl(lab.endpoints, "put", key, value)
    try:
        others = [lab.hosts[2], lab.hosts[3]]

        async def screened() -> bool:
            for host in others:
                _, entries, _ = await kernel(host)
                routed = {route.destination for route in entries.routes}
                if victim.subnet in routed or routed & set(refused):
                    return False
                if victim.vtep_mac in {entry.mac for entry in entries.fdb}:
                    return False
            return all(
                all(f"not programming lease {key}" in h.log_path.read_text() for key in hostile)
                for h in others
            )

        await eventually(screened, 10, "hostile leases refused on every host", POLL_S)
        # And they stay refused: a few reconcile passes later, still one log line each.
        await asyncio.sleep(2.5)
        assert await screened()
        for host in (lab.hosts[1], *others):
            assert host.process is not None and host.process.poll() is None, host.log_tail()
            text = host.log_path.read_text()
            assert "Traceback" not in text
        for host in others:
            text = host.log_path.read_text().split("--- start")[-1]
            for key in hostile:
                assert text.count(f"not programming lease {key}:") == 1, (key, host.log_tail())
        # An agent that starts while they are there starts and ignores them.
        assert lab.stop_agent(lab.hosts[2]) == 0
        lab.start_agent(lab.hosts[2], PREFIX)
        await eventually(
            lambda: _restarted(lab.hosts[2]), 20, "a restart among hostile leases", POLL_S
        )
        await eventually(screened, 10, "hostile leases refused after a restart", POLL_S)
    finally:
        for key in hostile:
            etcdctl(lab.endpoints, "del", key)
    # Once the twin claim is gone, host1 is routed to again.
    await all_converged(lab)


async def test_a_fourth_host_joins_and_every_host_learns_it(lab):
    await all_converged(lab)
    host = lab.add_host(4)
    lab.start_agent(host, PREFIX)
    lease = await wait_for_lease(lab, host)
    await all_converged(lab)
    for index in (1, 2, 3):
        _, entries, _ = await kernel(lab.hosts[index])
        assert lease.subnet in {route.destination for route in entries.routes}
    assert host.ping(lease_of(lab, lab.hosts[1]).subnet.network_address)  # type: ignore[union-attr]


async def test_a_clean_stop_keeps_lease_and_device_but_removes_rules(lab):
    host = lab.hosts.get(4) or lab.add_host(4)
    if host.process is None:
        lab.start_agent(host, PREFIX)
    before = await wait_for_lease(lab, host)
    assert lab.stop_agent(host) == 0
    assert lease_of(lab, host) == before  # the lease stays (until its TTL)
    link, _, _ = await kernel(host)
    assert link is not None and link.mac == before.vtep_mac
    assert host.run("iptables", "-w", "-S", "FLANNEL-FWD", check=False) == ""
    assert host.run("iptables", "-w", "-S", "DISCOVERY-LEASE", check=False) == ""


async def test_a_deleted_lease_disappears_from_every_other_host(lab):
    host = lab.hosts.get(4) or lab.add_host(4)
    if host.process is not None:
        lab.stop_agent(host)
    gone = lease_of(lab, host)
    assert gone is not None
    etcdctl(lab.endpoints, "del", flannel.subnet_key(PREFIX, gone.subnet))
    await all_converged(lab)
    for index in (1, 2, 3):
        _, entries, _ = await kernel(lab.hosts[index])
        assert gone.subnet not in {route.destination for route in entries.routes}
        assert gone.vtep_mac not in {entry.mac for entry in entries.fdb}
        assert gone.vtep_mac not in {entry.mac for entry in entries.neighbours}


async def test_a_restarted_agent_keeps_its_subnet_and_mac(lab):
    host = lab.hosts[1]
    before = lease_of(lab, host)
    link_before, _, _ = await kernel(host)
    assert before is not None and link_before is not None
    assert lab.stop_agent(host) == 0
    lab.start_agent(host, PREFIX)
    await eventually(lambda: _restarted(host), 20, "the agent's restart", POLL_S)
    after = await wait_for_lease(lab, host)
    assert (after.subnet, after.vtep_mac) == (before.subnet, before.vtep_mac)
    link_after, _, _ = await kernel(host)
    assert link_after is not None and link_after.ifindex == link_before.ifindex  # reused
    await all_converged(lab)


async def _restarted(host: Host) -> bool:
    return "network ready" in host.log_path.read_text().split("--- start")[-1]


async def test_a_host_whose_lease_was_lost_comes_back_with_the_same_subnet_and_mac(lab):
    host = lab.hosts.get(4) or lab.add_host(4)
    if host.process is not None:
        lab.stop_agent(host)
    state = json.loads((host.state_dir / "state.json").read_text())
    assert lease_of(lab, host) is None  # deleted in an earlier test, or never there
    lab.start_agent(host, PREFIX)
    lease = await wait_for_lease(lab, host)
    assert (str(lease.subnet), lease.vtep_mac) == (state["Subnet"], state["VtepMAC"])
    await all_converged(lab)


async def test_a_running_agent_claims_its_subnet_again_when_its_key_is_deleted(lab):
    host = lab.hosts[2]
    lease = lease_of(lab, host)
    assert lease is not None
    etcdctl(lab.endpoints, "del", flannel.subnet_key(PREFIX, lease.subnet))

    async def back() -> bool:
        return lease_of(lab, host) == lease

    await eventually(back, 5, "the agent claiming its deleted lease again", POLL_S)
    await all_converged(lab)


async def test_release_on_exit_gives_back_lease_and_device(lab):
    host = lab.hosts.get(4) or lab.add_host(4)
    if host.process is not None:
        lab.stop_agent(host)
    lab.start_agent(host, PREFIX, "--release-on-exit")
    await eventually(lambda: _restarted(host), 20, "the agent's start", POLL_S)
    lease = await wait_for_lease(lab, host)
    await all_converged(lab)
    assert lab.stop_agent(host) == 0
    assert lease_of(lab, host) is None
    link, _, _ = await kernel(host)
    assert link is None
    assert not host.subnet_file.exists()
    await all_converged(lab)
    for index in (1, 2, 3):
        _, entries, _ = await kernel(lab.hosts[index])
        assert lease.subnet not in {route.destination for route in entries.routes}


def test_subnet_exhaustion_ends_the_agent_with_one_clear_error(lab):
    prefix = "/overlay-full/coreos.com/network"
    etcdctl(
        lab.endpoints, "put", f"{prefix}/config",
        '{"Network": "10.214.0.0/22", "SubnetMin": "10.214.0.0", "Backend": {"VNI": 9}}',
    )  # fmt: skip
    for third in range(4):
        mac = f"0e:00:00:00:00:a{third}"
        other = flannel.SubnetLease(
            ipaddress.IPv4Network(f"10.214.{third}.0/24"),
            ipaddress.IPv4Address(f"192.168.213.{200 + third}"),
            mac,
            vni=9,
        )
        key = flannel.subnet_key(prefix, other.subnet)
        etcdctl(lab.endpoints, "put", key, flannel.encode_subnet_lease(other).decode())
    host = lab.hosts[3]
    result = subprocess.run(
        ["nsenter", f"--net=/run/netns/{host.netns}", agent_binary(), "network",
         "--public-ip", str(host.address), "--iface", "eth0",
         "--subnet-file", str(host.work_dir / "full.env"), "--docker-opts-file", "",
         "--state-dir", str(host.work_dir / "full-state"),
         "--etcd-endpoints", ",".join(lab.endpoints), "--network-prefix", prefix],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("discovery-agent: no free subnet: all 4 /24 subnets")
    assert "flannel.9" not in sh("ip", "-n", host.netns, "link")
    assert not (host.work_dir / "full.env").exists()

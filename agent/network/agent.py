"""The network half of the agent, wired together: flanneld's etcd mode.

Start-up, in order:

1. find the underlay (``--iface`` / ``--public-ip``) and what this host
   remembers (its last subnet and its VTEP MAC, under ``--state-dir``);
2. wait for a valid network config at ``<prefix>/config``;
3. grant an etcd lease and claim a subnet under it (``allocator``);
4. create or reuse the VXLAN device and give it the subnet's /32;
5. set the forwarding (and, with ``--ip-masq``, masquerade) rules;
6. write ``subnet.env`` and the Docker options file: from here on Docker
   may start on this host.

Then three loops run side by side until SIGTERM or SIGINT:

* keep the etcd lease alive (every third of its TTL); if it is lost, or our
  lease key vanishes or is taken over, claim again, the same subnet when it
  is still free;
* follow ``<prefix>/subnets/`` (list, then watch) and mark the entries dirty
  on every change;
* reconcile: on every change at once (reading back just the entries that
  change touches), and every ``--reconcile-interval`` in full anyway, so
  entries deleted by hand come back;
* observe: read back every entry on the device after each pass and every
  OBSERVE_INTERVAL_S, and publish what the kernel holds (``discovery.tunnels``)
  under the subnet lease when it changed, and every reconcile interval
  anyway, so that a lost or late write never leaves a wrong report behind.

A clean shutdown removes the iptables rules and keeps the lease and the
device, as flannel does (a restarted agent takes both back, and other hosts'
entries stay right meanwhile). ``--release-on-exit`` also revokes the lease
and deletes the device and the files.

The subnet lease TTL (``--subnet-lease-ttl``, default 60 s) is this agent's
own choice. flannel uses 24 h, so that a host that is down for a while keeps
its subnet; here the subnet is remembered on disk and taken back if still
free, so a shorter TTL costs little and lets a learner see a dead host's
routes disappear from the other hosts within a minute. It is longer than the
service records' TTL (``--lease-ttl``) so a short etcd outage does not shake
the overlay.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
from dataclasses import dataclass
from pathlib import Path

from agent.network.allocator import SubnetAllocator
from agent.network.desired import KernelEntries, desired_entries, scope_of
from agent.network.errors import DataplaneError, NetworkError, SubnetContention, SubnetExhausted
from agent.network.files import (
    Remembered,
    load_remembered,
    remove_file,
    save_remembered,
    write_atomically,
)
from agent.network.firewall import Firewall
from agent.network.iptables_rules import chains_for
from agent.network.kernel_sync import KernelSync
from agent.network.metrics import NetworkMetrics
from agent.network.netlink import VXLAN_OVERHEAD_BYTES, Netlink, Underlay, VxlanSpec
from agent.network.observed import tunnel_report
from agent.network.subnet_env import SubnetEnv, render_docker_options, render_subnet_env
from agent.network.subnets import random_vtep_mac
from discovery import flannel
from discovery.errors import DiscoveryError, LeaseLost
from discovery.flannel import NetworkConfig, SubnetLease
from discovery.lease_keeper import LeaseKeeper
from discovery.retry import Backoff
from discovery.settings import Settings
from discovery.store_api import Change, ConnectionLost, Resumed, Snapshot, Store
from discovery.tasks import run_until_one_ends
from discovery.tunnels import encode_tunnel_report, observed_key

log = logging.getLogger(__name__)

SUBNET_LEASE_TTL_S = 60
RECONCILE_INTERVAL_S = 10.0
RETRY_MIN_S = 0.2
RETRY_MAX_S = 5.0
# How often the kernel is read back for the tunnel report between passes: an
# entry deleted by hand shows as missing on the map within this (and comes
# back at the next full pass).
OBSERVE_INTERVAL_S = 2.0


@dataclass(frozen=True)
class NetworkOptions:
    public_ip: ipaddress.IPv4Address | None = None
    iface: str | None = None
    subnet_file: Path = Path("/run/flannel/subnet.env")
    docker_opts_file: Path | None = Path("/run/flannel/docker")
    state_dir: Path = Path("/var/lib/discovery-agent/network")
    ip_masq: bool = False
    release_on_exit: bool = False
    reconcile_interval_s: float = RECONCILE_INTERVAL_S
    subnet_lease_ttl_s: int = SUBNET_LEASE_TTL_S
    device: str | None = None  # default flannel.<VNI>
    iptables: bool = True


class NetworkAgent:
    def __init__(
        self,
        options: NetworkOptions,
        settings: Settings,
        store: Store,
        rng: random.Random | None = None,
        metrics: NetworkMetrics | None = None,
        netlink: Netlink | None = None,
        firewall: Firewall | None = None,
    ) -> None:
        """``store``: etcd, owned by the caller (who closes it after ``run``)."""
        self.options = options
        self.settings = settings
        self.rng = rng or random.SystemRandom()
        self.store = store
        # The kernel's two clients; the entry point may hand in its own (or a test its fakes).
        self.netlink = netlink or Netlink()
        self.firewall = firewall or Firewall()
        self.subnets_prefix = flannel.subnets_prefix(settings.network_prefix)
        # filled in during start-up
        self.underlay: Underlay | None = None
        self.allocator: SubnetAllocator | None = None
        self.config: NetworkConfig | None = None
        self.own: SubnetLease | None = None
        self.lease_id: int | None = None  # the etcd lease our subnet key is under
        self.keeper: LeaseKeeper | None = None
        self.vtep_mac: str | None = None
        self.device_name: str | None = None
        self.kernel: KernelSync | None = None
        self.firewall_set = False
        # lease key -> lease, as last seen in etcd (other hosts' and our own),
        # before screening against the config
        self.subnet_leases: dict[str, SubnetLease] = {}
        # lease key -> why it is not programmed; each is logged once
        self.unparsed: dict[str, str] = {}  # not a lease at all
        self.refused: dict[str, str] = {}  # a lease that does not fit the config
        self.have_snapshot = False
        # Leases (old and new values) changed since the last pass: the next
        # pass reads back only their entries, unless a full pass is due.
        self.pending: list[SubnetLease] = []
        self.full_pass = True
        self.dirty = asyncio.Event()
        self.observe_now = asyncio.Event()  # a pass just changed (or checked) the kernel
        self.metrics = metrics or NetworkMetrics()
        self.metrics.subnet_lease_held.set_function(
            lambda: self.keeper is not None and self.keeper.lease_id is not None
        )
        self.metrics.remote_leases.set_function(
            lambda: len(self.subnet_leases.keys() - {self._own_key()})
        )

    # ------------------------------------------------------------ lifecycle

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set (or the task is cancelled), then shut down."""
        await self.netlink.open()
        serving = asyncio.create_task(self._serve(), name="network-serve")
        stopping = asyncio.create_task(stop.wait(), name="network-stop")
        try:
            await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if serving.done():
                serving.result()  # start-up failed (e.g. no free subnet): raise it
        finally:
            for task in (serving, stopping):
                task.cancel()
            for task in (serving, stopping):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self._shutdown()

    async def _serve(self) -> None:
        await self._start()
        assert self.lease_id is not None
        self.keeper = LeaseKeeper(
            self.store,
            self.options.subnet_lease_ttl_s,
            self._claim_under,
            name="network",
            lease_id=self.lease_id,
        )
        # None of these ends while the agent runs; if one does anyway, the
        # agent says which and exits 1 rather than run on half alive.
        await run_until_one_ends(
            {
                "network-lease": self.keeper.run(),
                "network-watch": self._follow_subnet_leases(),
                "network-reconcile": self._reconcile_loop(),
                "network-observe": self._observe_loop(),
            }
        )

    async def _start(self) -> None:
        options = self.options
        self.underlay = await self.netlink.find_underlay(options.iface, options.public_ip)
        log.info(
            "underlay %s (%s), MTU %d",
            self.underlay.ifname, self.underlay.address, self.underlay.mtu,
        )  # fmt: skip
        remembered = load_remembered(options.state_dir, options.subnet_file)
        self.allocator = SubnetAllocator(
            self.store, self.settings.network_prefix, self.underlay.address, self.rng
        )
        self.config = await self.allocator.wait_for_config()
        self.device_name = options.device or f"flannel.{self.config.vni}"
        existing = await self.netlink.find_vxlan(self.device_name)
        self.vtep_mac = (
            remembered.vtep_mac
            or (existing.mac if existing is not None and existing.vni is not None else None)
            or random_vtep_mac(self.rng)
        )
        save_remembered(options.state_dir, Remembered(remembered.subnet, self.vtep_mac))

        self.own = await self._first_claim(remembered.subnet)
        await self._apply_own_subnet_lease()
        log.info(
            "network ready: subnet %s on %s (VTEP MAC %s)",
            self.own.subnet, self.device_name, self.vtep_mac,
        )  # fmt: skip

    async def _first_claim(self, remembered: ipaddress.IPv4Network | None) -> SubnetLease:
        """Grant an etcd lease and claim a subnet under it, waiting out etcd outages.

        No free subnet (or losing every race for one) ends the start-up with
        that one error: nothing can come of waiting, and nothing is set up yet.
        """
        assert self.allocator and self.config and self.vtep_mac
        backoff, waiting = Backoff(RETRY_MIN_S, RETRY_MAX_S), False
        while True:
            try:
                if self.lease_id is None:
                    self.lease_id = await self.store.grant_lease(self.options.subnet_lease_ttl_s)
                return await self.allocator.acquire(
                    self.config, self.lease_id, self.vtep_mac, remembered
                )
            except (SubnetExhausted, SubnetContention):
                raise
            except DiscoveryError as error:
                if isinstance(error, LeaseLost):
                    self.lease_id = None
                if not waiting:
                    log.warning("cannot claim a subnet yet: %s; retrying until etcd answers", error)
                    waiting = True
                await backoff.wait()

    async def _apply_own_subnet_lease(self) -> None:
        """Device, address, rules, files: everything that follows from our lease."""
        assert self.own is not None and self.config is not None
        save_remembered(self.options.state_dir, Remembered(self.own.subnet, self.vtep_mac))
        ifindex = await self._ensure_device()
        self.kernel = KernelSync(self.netlink, ifindex, self.config.network, self.metrics)
        await self._ensure_firewall()
        env = SubnetEnv(self.config.network, self.own.subnet, self.mtu, self.options.ip_masq)
        write_atomically(self.options.subnet_file, render_subnet_env(env))
        if self.options.docker_opts_file is not None:
            text = render_docker_options(env, self.options.docker_opts_file.name)
            write_atomically(self.options.docker_opts_file, text)
        self.full_pass = True
        self.dirty.set()

    @property
    def mtu(self) -> int:
        assert self.underlay is not None
        return self.underlay.mtu - VXLAN_OVERHEAD_BYTES

    async def _ensure_device(self) -> int:
        assert self.own and self.config and self.underlay and self.device_name and self.vtep_mac
        spec = VxlanSpec(
            name=self.device_name,
            vni=self.config.vni,
            port=self.config.port,
            local=self.underlay.address,
            underlay_index=self.underlay.ifindex,
            mac=self.vtep_mac,
            mtu=self.mtu,
        )
        ifindex = await self.netlink.ensure_vxlan(spec)
        await self.netlink.ensure_address(ifindex, self.own.subnet.network_address)
        if self.kernel is not None and self.kernel.ifindex != ifindex:
            log.warning("%s was recreated (ifindex %d)", self.device_name, ifindex)
            self.kernel.ifindex = ifindex
        return ifindex

    async def _ensure_firewall(self) -> None:
        if not self.options.iptables:
            return
        assert self.own is not None and self.config is not None
        wanted, unwanted = chains_for(self.config.network, self.own.subnet, self.options.ip_masq)
        for chain in wanted:
            await self.firewall.ensure(chain)
        for chain in unwanted:
            await self.firewall.remove(chain)
        self.firewall_set = True

    async def _shutdown(self) -> None:
        try:
            if self.firewall_set and self.own is not None and self.config is not None:
                wanted, unwanted = chains_for(self.config.network, self.own.subnet, True)
                for chain in wanted + unwanted:
                    try:
                        await self.firewall.remove(chain)
                    except DiscoveryError as error:
                        log.warning("shutdown: %s", error)
            if self.options.release_on_exit:
                await self._release()
            elif self.own is not None:
                log.info(
                    "shutdown: keeping lease %s and device %s", self.own.subnet, self.device_name
                )
        finally:
            self.netlink.close()

    async def _release(self) -> None:
        if self.lease_id is not None:
            try:
                if self.keeper is not None:
                    await self.keeper.revoke()  # deletes our lease key
                else:
                    await self.store.revoke_lease(self.lease_id)
                log.info("shutdown: released lease %s", self.own.subnet if self.own else "-")
            except DiscoveryError as error:
                log.warning("shutdown: could not revoke the etcd lease: %s", error)
        if self.device_name is not None:
            try:
                await self.netlink.delete_link(self.device_name)
            except DataplaneError as error:
                log.warning("shutdown: %s", error)
        remove_file(self.options.subnet_file)
        if self.options.docker_opts_file is not None:
            remove_file(self.options.docker_opts_file)

    # ------------------------------------------------------------ keeping the lease

    async def _claim_under(self, lease_id: int) -> None:
        """The lease keeper's callback: our subnet key under ``lease_id``.

        Called with a new etcd lease after the old one was lost, and with the
        same lease when our key vanished or another host took it. The same
        subnet when it is still free or ours, else a new one (and then the
        device, rules and files follow it). Errors go back to the keeper,
        which keeps the lease alive and calls again.
        """
        assert self.allocator and self.config and self.own and self.vtep_mac
        self.lease_id = lease_id
        if await self.allocator.renew(self.own, lease_id):
            log.warning("claimed %s again under etcd lease %x", self.own.subnet, lease_id)
            return
        old = self.own
        self.own = await self.allocator.acquire(self.config, lease_id, self.vtep_mac, None)
        log.error(
            "subnet %s was taken by another host; now holding %s. Containers on this "
            "host need Docker restarted with the new subnet.env",
            old.subnet, self.own.subnet,
        )  # fmt: skip
        await self._apply_own_subnet_lease()

    # ------------------------------------------------------------ following leases

    def _own_key(self) -> str | None:
        if self.own is None:
            return None
        return flannel.subnet_key(self.settings.network_prefix, self.own.subnet)

    async def _follow_subnet_leases(self) -> None:
        async for item in self.store.follow_prefix(self.subnets_prefix):
            if isinstance(item, Snapshot):
                self.subnet_leases = {}
                unparsed = dict(self.unparsed)
                self.unparsed = {}
                for key, kv in item.items.items():
                    self._parse_into_subnet_leases(key, kv.value, unparsed.get(key))
                self.have_snapshot = True
                self.metrics.etcd.reached()
                self._check_own_key()
                self.full_pass = True
                self.dirty.set()
            elif isinstance(item, Change):
                self._on_change(item)
            elif isinstance(item, ConnectionLost):
                self.metrics.etcd.lost()
                log.warning("lost the etcd watch (%s); keeping entries as they are", item.reason)
            elif isinstance(item, Resumed):
                self.metrics.etcd.reached()
                log.info("etcd watch resumed at revision %d", item.revision)

    def _on_change(self, change: Change) -> None:
        old = self.subnet_leases.pop(change.key, None)
        if old is not None:
            self.pending.append(old)
        logged = self.unparsed.pop(change.key, None)
        if change.value is not None:
            lease = self._parse_into_subnet_leases(change.key, change.value, logged)
            if lease is not None:
                self.pending.append(lease)
        if change.key == self._own_key():
            self._check_own_key()
            self.full_pass = True
        self.dirty.set()

    def _parse_into_subnet_leases(
        self, key: str, value: bytes, logged: str | None
    ) -> SubnetLease | None:
        """Parse one value under the subnets prefix into ``leases``, or log why not
        (unless ``logged`` already said the same)."""
        try:
            lease = flannel.parse_subnet_lease(self.settings.network_prefix, key, value)
        except DiscoveryError as error:
            if str(error) != logged:
                log.error("not programming lease %s: %s", key, error)
            self.unparsed[key] = str(error)
            return None
        self.subnet_leases[key] = lease
        return lease

    def _check_own_key(self) -> None:
        """Our lease key must exist and carry our PublicIP; else claim again."""
        key = self._own_key()
        if key is None:
            return
        holder = self.subnet_leases.get(key)
        if holder is None or self.own is None or holder.public_ip != self.own.public_ip:
            log.error("our lease %s is gone or taken over in etcd; claiming again", key)
            if self.keeper is not None:
                self.keeper.request_rewrite()

    # ------------------------------------------------------------ reconciling

    def screened(self) -> dict[str, SubnetLease]:
        """The leases that may reach the kernel; each newly refused one logged once.

        Returns them, and sets ``full_pass`` when the refused set changed: a
        lease refused for sharing a VtepMAC is freed by a change to another
        key, which the incremental scope would not cover.
        """
        assert self.config is not None
        valid, refused = flannel.screen_subnet_leases(self.config, self.subnet_leases)
        for key, why in refused.items():
            if self.refused.get(key) != why:
                log.error("not programming lease %s: %s", key, why)
        for key in self.refused.keys() - refused.keys():
            if key in self.subnet_leases:
                log.warning("lease %s is valid now; programming it", key)
        if refused != self.refused:
            self.full_pass = True
        self.refused = refused
        return valid

    def desired(self, valid: dict[str, SubnetLease] | None = None) -> KernelEntries:
        assert self.own is not None and self.config is not None
        if valid is None:
            valid = self.screened()
        return desired_entries(self.own, valid.values(), self.config.network)

    async def _reconcile_loop(self) -> None:
        interval_s = self.options.reconcile_interval_s
        loop = asyncio.get_running_loop()
        next_full_at = loop.time() + interval_s
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.dirty.wait(), max(0.0, next_full_at - loop.time()))
            # Due by the clock even while events keep coming.
            periodic = loop.time() >= next_full_at
            if periodic:
                next_full_at = loop.time() + interval_s
            self.dirty.clear()
            if not self.have_snapshot or self.kernel is None:
                continue
            valid = self.screened()
            scope = None
            if not (periodic or self.full_pass):
                scope = scope_of(self.pending)
                if not scope:
                    continue
            self.full_pass = False
            self.pending.clear()
            try:
                if periodic:
                    await self._ensure_device()
                    await self._ensure_firewall()
                steps = await self.kernel.reconcile(self.desired(valid), scope)
                self.metrics.reconcile_passes.labels("full" if scope is None else "scoped").inc()
                if periodic and steps:
                    self.metrics.repaired(steps)
                    log.warning("periodic check repaired %d entries", len(steps))
                if steps or periodic:
                    self.observe_now.set()
            except NetworkError as error:
                log.error("reconcile failed: %s; retrying with a full pass", error)
                await asyncio.sleep(RETRY_MIN_S)
                self.full_pass = True
                self.dirty.set()

    # ------------------------------------------------------------ observing

    async def _observe_loop(self) -> None:
        """Publish the tunnel report: what the kernel holds, read back, never assumed.

        A failure (the kernel or etcd) is logged once and tried again at the
        next tick: the report is for people and tools to look at, and must
        never stop the agent."""
        loop = asyncio.get_running_loop()
        published: tuple[str, bytes, int] | None = None  # key, value, etcd lease
        republish_at = loop.time()
        failing = False
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.observe_now.wait(), OBSERVE_INTERVAL_S)
            self.observe_now.clear()
            own, kernel, lease_id = self.own, self.kernel, self.lease_id
            if own is None or kernel is None or lease_id is None or self.config is None:
                continue
            key = observed_key(self.settings.network_prefix, own.subnet)
            try:
                entries = await self.netlink.read_entries(kernel.ifindex, self.config.network)
                value = encode_tunnel_report(tunnel_report(own, self.device_name or "", entries))
                if published == (key, value, lease_id) and loop.time() < republish_at:
                    continue
                await self.store.put(key, value, lease_id)
                if published is not None and published[0] != key:
                    await self.store.delete(published[0])  # our subnet changed
            except DiscoveryError as error:  # NetworkError (the kernel) is one too
                if not failing:
                    log.warning("cannot publish the tunnel report (retrying): %s", error)
                failing = True
                continue
            if failing:
                log.info("tunnel report published again")
            failing = False
            published = (key, value, lease_id)
            republish_at = loop.time() + self.options.reconcile_interval_s

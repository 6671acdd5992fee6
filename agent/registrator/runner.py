"""The registrator loop: Docker events in, one worker per container, records to the writer.

* ``follow_docker`` opens the event stream, lists every running container
  and looks at each (and at every container it still holds records for),
  then handles events as they come. When the stream ends (the daemon
  restarted, the socket dropped) it does the same again: open, list, follow.
  Because the stream is opened before the listing, no event is lost between
  the two.
* ``poke(container)`` asks for a container to be looked at again. Each
  container has at most one worker task; pokes that arrive while it works are
  folded into one more pass. So a slow inspect of one container never delays
  another, and a container's updates are applied in order.
* A worker inspects the container, turns the inspect data into records
  (desired.py, pure) and hands them to the writer (writer.py), logging one
  line per record registered, updated or deregistered.
* ``follow_subnet_file`` reads this host's lease from subnet.env
  (subnet_file.py) and looks at every container again when it changes, so
  the rule "register only what other hosts can reach" follows the lease. A
  container's addresses left out by that rule are logged once, with the
  reason and the way out, until they change; so are, in host-address mode,
  the published ports other hosts cannot reach (host_ports.py).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from dataclasses import dataclass

from agent.registrator.desired import Desired, desired_registrations, unreachable_advice
from agent.registrator.docker_source import DockerSource, DockerUnavailable, EventStream
from agent.registrator.events import classify_event
from agent.registrator.host_ports import INTERNAL
from agent.registrator.metrics import ServicesMetrics
from agent.registrator.subnet_file import SubnetFile
from agent.registrator.sync_plan import RecordChange
from agent.registrator.writer import RecordWriter
from discovery.retry import Backoff
from discovery.schema import utc_now_text
from discovery.settings import Settings

log = logging.getLogger(__name__)

RECONNECT_MIN_S = 0.1
RECONNECT_MAX_S = 2.0
# After a failed inspect while the event stream still runs, look again this much later.
INSPECT_RETRY_S = 1.0
# How often subnet.env is looked at (one stat) for a new lease.
SUBNET_FILE_POLL_S = 1.0


@dataclass(frozen=True)
class Options:
    node: str
    advertise_ip: str | None = None  # the address host-address mode registers (else host_address)
    host_address: str | None = None  # for --network host containers, and host-address mode
    subnet_file: SubnetFile | None = None  # this host's lease; None: register every address
    address_mode: str = INTERNAL  # the default; a container's discovery.address label wins


class Registrator:
    def __init__(
        self,
        docker: DockerSource,
        writer: RecordWriter,
        settings: Settings,
        options: Options,
        metrics: ServicesMetrics | None = None,
    ) -> None:
        self.docker = docker
        self.writer = writer
        self.settings = settings
        self.options = options
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._pending: dict[str, bool] = {}  # container id -> "gone" hint of the latest poke
        self._refused: dict[str, str] = {}  # container id -> reason it was last refused
        # container id -> what was last logged about its unreachable addresses
        self._unreachable: dict[str, str] = {}
        # container id -> what was last logged about its ports left out in host-address mode
        self._not_offered: dict[str, str] = {}
        self._connected = False
        self.metrics = metrics or ServicesMetrics()
        self.metrics.docker_reachable.set_function(lambda: self._connected)

    # ------------------------------------------------------------ per container

    @property
    def docker_connected(self) -> bool:
        """Whether the Docker event stream is open now."""
        return self._connected

    def poke(self, container_id: str, gone: bool = False) -> None:
        """Look at a container again; ``gone``: it is known not to run any more."""
        self._pending[container_id] = gone
        if container_id not in self._tasks:
            self._tasks[container_id] = asyncio.create_task(
                self._work(container_id), name=f"container-{container_id[:12]}"
            )

    async def _work(self, container_id: str) -> None:
        try:
            while container_id in self._pending:
                gone = self._pending.pop(container_id)
                try:
                    await self._sync_container(container_id, gone)
                except DockerUnavailable as error:
                    log.debug("inspect %s failed: %s", container_id[:12], error)
                    if self._connected:
                        asyncio.get_running_loop().call_later(
                            INSPECT_RETRY_S, self.poke, container_id
                        )
                except Exception:  # one broken container must never stop the others
                    log.exception(
                        "container worker failed",
                        extra={"fields": {"container_id": container_id[:12]}},
                    )
        finally:
            self._tasks.pop(container_id, None)

    async def _sync_container(self, container_id: str, gone: bool) -> None:
        if gone:
            desired = Desired(container_id, "")
        else:
            inspect = await self.docker.inspect(container_id)
            if inspect is None:
                desired = Desired(container_id, "")
            else:
                desired = desired_registrations(
                    inspect,
                    self.options.node,
                    registered_at=utc_now_text(),
                    advertise_ip=self.options.advertise_ip,
                    host_address=self.options.host_address,
                    record_ttl_s=self.settings.record_ttl_s,
                    lease=self._lease(),
                    address_mode=self.options.address_mode,
                )
        self._note_refusal(desired)
        self._note_unreachable(desired)
        self._note_not_offered(desired)
        records = desired.records(self.settings.prefix, self.settings.domain)
        for change in self.writer.set_container(container_id, records):
            _log_change(change)
        for note in desired.notes:
            log.warning(
                note, extra={"fields": {"container": desired.container_name or container_id[:12]}}
            )

    def _note_refusal(self, desired: Desired) -> None:
        """Log a refused container once, not at every event about it."""
        reason = desired.refused
        if not _new_to_say(self._refused, desired.container_id, reason or None):
            return
        log.warning(
            "container skipped",
            extra={
                "fields": {
                    "container": desired.container_name,
                    "container_id": desired.container_id[:12],
                    "reason": reason,
                }
            },
        )

    def _note_unreachable(self, desired: Desired) -> None:
        """Log, once per container and change, the addresses left out as unreachable."""
        subnet_file = self.options.subnet_file
        lease = subnet_file.lease if subnet_file is not None else None
        addresses = " ".join(f"{u.network}={u.address}" for u in desired.unreachable)
        said = f"{lease} {addresses}" if desired.unreachable and lease is not None else None
        if not _new_to_say(self._unreachable, desired.container_id, said) or lease is None:
            return
        log.warning(
            "address not registered: other hosts cannot reach it (outside this host's lease)",
            extra={
                "fields": {
                    "container": desired.container_name or desired.container_id[:12],
                    "container_id": desired.container_id[:12],
                    "networks": addresses,
                    "lease": str(lease),
                    "fix": unreachable_advice(lease),
                }
            },
        )

    def _note_not_offered(self, desired: Desired) -> None:
        """Log, once per container and change, the published ports that host-address
        mode leaves out (or that the container published none)."""
        said = repr(desired.not_offered) if desired.not_offered else None
        if not _new_to_say(self._not_offered, desired.container_id, said):
            return
        container = desired.container_name or desired.container_id[:12]
        for left_out in desired.not_offered:
            fields = {"container": container, "container_id": desired.container_id[:12]}
            if left_out.port:
                fields |= {"port": left_out.port, "binding": left_out.binding}
                message = "published port not registered: other hosts cannot reach it"
            else:
                message = "container not registered: host-address mode and no port published"
            log.warning(message, extra={"fields": fields | {"reason": left_out.reason}})

    def _lease(self) -> ipaddress.IPv4Network | None:
        subnet_file = self.options.subnet_file
        if subnet_file is None:
            return None
        if subnet_file.refresh():
            self._poke_known()
        return subnet_file.lease

    def _poke_known(self) -> None:
        """Look again at every container we hold records for or left out."""
        for container_id in dict.fromkeys(
            [*self.writer.container_ids(), *self._unreachable, *self._refused, *self._not_offered]
        ):
            self.poke(container_id)

    async def follow_subnet_file(self) -> None:
        """Look at subnet.env every SUBNET_FILE_POLL_S; a new lease re-judges every
        container. Until cancelled; returns at once when there is no subnet file."""
        if self.options.subnet_file is None:
            return
        while True:
            self._lease()
            await asyncio.sleep(SUBNET_FILE_POLL_S)

    # ------------------------------------------------------------ Docker stream

    async def reconcile_listing(self) -> None:
        """Look at every running container and every container we hold records for."""
        running = await self.docker.running_container_ids()
        known = dict.fromkeys(
            [
                *running,
                *self.writer.container_ids(),
                *self._refused,
                *self._unreachable,
                *self._not_offered,
            ]
        )
        for container_id in known:
            self.poke(container_id)
        workers = [self._tasks[c] for c in known if c in self._tasks]
        if workers:
            # asyncio.wait, not gather: cancelling us must not cancel the workers.
            await asyncio.wait(workers)
        log.info(
            "listed containers",
            extra={"fields": {"running": len(running), "records": len(self.writer.wanted)}},
        )

    async def follow_docker(self) -> None:
        """List, then follow events; after any break, list again. Until cancelled."""
        since_nano: int | None = None
        backoff = Backoff(RECONNECT_MIN_S, RECONNECT_MAX_S)
        outage = False
        while True:
            stream: EventStream | None = None
            try:
                stream = await self.docker.open_events(since_nano)
                await self.reconcile_listing()
                self._connected = True
                if outage:
                    log.info("Docker reachable again", extra={"fields": {"url": self.docker.url}})
                outage = False
                backoff.reset()
                self.writer.docker_listed.set()
                while True:
                    event = classify_event(await stream.next())
                    if event is None:
                        continue
                    self.metrics.docker_events.labels(event.action).inc()
                    if event.time_nano:
                        since_nano = max(since_nano or 0, event.time_nano)
                    self.poke(event.container_id, event.gone)
            except DockerUnavailable as error:
                self._connected = False
                if not outage:
                    log.warning(
                        "Docker unreachable; will list again on reconnect",
                        extra={"fields": {"url": self.docker.url, "error": str(error)}},
                    )
                outage = True
                await backoff.wait()
            finally:
                if stream is not None:
                    stream.close()

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)


def _new_to_say(said_before: dict[str, str], container_id: str, said: str | None) -> bool:
    """Whether ``said`` about a container is news, to log it once per container and
    change; remembered until there is nothing to say (None), then forgotten."""
    if said is None:
        said_before.pop(container_id, None)
        return False
    if said_before.get(container_id) == said:
        return False
    said_before[container_id] = said
    return True


def _log_change(change: RecordChange) -> None:
    endpoint = change.endpoint
    fields: dict[str, object] = {
        "container": endpoint.container_name,
        "service": endpoint.service,
        "address": endpoint.address,
        "port": endpoint.port,
    }
    if endpoint.port:
        fields["protocol"] = endpoint.protocol
    if change.kind != "deregistered":
        fields["health"] = endpoint.health
    if endpoint.tags:
        fields["tags"] = ",".join(endpoint.tags)
    log.info(change.kind, extra={"fields": fields})


__all__ = ["Options", "Registrator"]

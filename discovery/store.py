"""The etcd store: the only module that imports the etcd client library (aetcd).

``EtcdStore`` implements ``discovery.store_api.Store``; ``MemoryStore``
(``discovery.memory_store``) is the other implementation, for tests.

What it adds on top of the client:

* several endpoints, as etcdctl's ``--endpoints``: a request that cannot reach
  one member moves on to the next, and the error, when none answers, names
  every endpoint tried;
* TLS and user/password, from the settings;
* the client's errors turned into this project's (``EtcdUnavailable``,
  ``LeaseLost``, ``RevisionCompacted``) at this boundary;
* ``follow_prefix``: list a prefix, then watch it from the listing's revision,
  resume from the last seen revision after a disconnect, and list again when
  etcd says that revision was compacted away. Consumers see a ``Snapshot``
  (replace everything), then ``Change`` events, and ``ConnectionLost`` /
  ``Resumed`` markers around an outage. It never ends and never raises.

Three rules keep a fault on one member from spreading (issue 10):

* A failed request never closes a channel other requests still use: the
  store moves to the next endpoint with a new client and closes the old one
  when its last request has finished. gRPC cancels every request still in
  flight on a channel that is closed, with an ``asyncio.CancelledError``
  that would pass every ``except Exception`` and end the caller's task; one
  that still arrives (the task itself was not cancelled) is turned into
  ``EtcdUnavailable`` like any other lost request.
* Only the first of several concurrent failures on the same client moves
  to the next endpoint; the others retry on the client it chose, so a burst
  of failures never skips a healthy member.
* Every request carries etcd's require-leader flag (the ``hasleader``
  metadata that etcd's own client sets with ``WithRequireLeader``): a member
  cut off from its cluster's quorum refuses requests at once and closes its
  watches, instead of serving old data, and the store moves on to a member
  that has a leader. Watches run on a channel of their own, so a watch and
  the requests made meanwhile never take each other down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlparse

import aetcd
import aetcd.exceptions
import aetcd.rpc
import grpc

from discovery.errors import DiscoveryError, EtcdUnavailable, LeaseLost, RevisionCompacted
from discovery.retry import Backoff
from discovery.settings import Settings, parse_endpoint
from discovery.store_api import (  # defined beside the Store protocol; re-exported here
    Change,
    ConnectionLost,
    GuardedWrite,
    KeyValue,
    Resumed,
    Snapshot,
    Store,
    WatchItem,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

# gRPC's default reconnect backoff grows to two minutes; a lab etcd restarted
# by hand should be picked up within about a second.
_CHANNEL_OPTIONS = {
    "grpc.initial_reconnect_backoff_ms": 100,
    "grpc.min_reconnect_backoff_ms": 100,
    "grpc.max_reconnect_backoff_ms": 1000,
    "grpc.keepalive_time_ms": 10_000,
    "grpc.keepalive_timeout_ms": 5_000,
    # gRPC refuses replies over 4 MiB by default: about 13,000 endpoint records,
    # so listing a larger catalog failed. etcd's own request limit is far lower
    # for writes; this only lets big listings (and watch catch-ups) through.
    "grpc.max_receive_message_length": 512 * 1024 * 1024,
}
# Pause between two passes over every endpoint within one request's budget.
CALL_RETRY_PAUSE_S = 0.2
WATCH_RETRY_MIN_S = 0.1
# A watch is retried often: a reader (a DNS server, a network agent) is only as
# fresh as its watch, and must catch up within a second or two of a heal.
WATCH_RETRY_MAX_S = 0.5


# etcd's require-leader flag (rpctypes.MetadataRequireLeaderKey / MetadataHasLeader).
_REQUIRE_LEADER = ("hasleader", "true")


class _Client(aetcd.Client):
    """aetcd's client, able to open a TLS channel (aetcd only opens plain ones),
    sending etcd's require-leader flag with every request and watch."""

    def __init__(
        self, endpoint: str, credentials: grpc.ChannelCredentials | None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.endpoint = endpoint
        self._credentials = credentials
        self.in_flight = 0  # requests using this client right now
        self.retired = False  # replaced: close once in_flight drops to 0

    async def connect(self) -> None:
        if self._connected.is_set():
            return
        if self._credentials is None:
            await super().connect()
        else:
            real_insecure_channel = aetcd.rpc.insecure_channel
            credentials = self._credentials

            def secure(target: str, options: Any = None) -> Any:
                return aetcd.rpc.secure_channel(target, credentials, options=options)

            # aetcd.Client.connect builds its channel with rpc.insecure_channel;
            # swap in a secure one for the duration of this connect only.
            aetcd.rpc.insecure_channel = secure
            try:
                await super().connect()
            finally:
                aetcd.rpc.insecure_channel = real_insecure_channel
        # aetcd sends self.metadata with every request; its watcher took a
        # copy when connect built it.
        metadata: tuple[tuple[str, str], ...] = tuple(getattr(self, "metadata", None) or ())
        if _REQUIRE_LEADER not in metadata:
            metadata = (*metadata, _REQUIRE_LEADER)
        self.metadata = metadata
        if self._watcher is not None:
            self._watcher._metadata = metadata


def _credentials(settings: Settings, endpoint: str) -> grpc.ChannelCredentials | None:
    wants_tls = urlparse(endpoint).scheme == "https" or settings.tls_ca_file is not None
    if not wants_tls:
        return None

    def read(path: str | None) -> bytes | None:
        if path is None:
            return None
        try:
            return Path(path).read_bytes()
        except OSError as error:
            raise DiscoveryError(f"cannot read TLS file {path}: {error.strerror}") from error

    return grpc.ssl_channel_credentials(
        root_certificates=read(settings.tls_ca_file),
        private_key=read(settings.tls_key_file),
        certificate_chain=read(settings.tls_cert_file),
    )


_UNREACHABLE_CODES = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}
)


def _is_unreachable(error: BaseException) -> bool:
    """True for errors that mean "try another endpoint or later", not "you asked wrong"."""
    if isinstance(error, grpc.aio.AioRpcError):
        return error.code() in _UNREACHABLE_CODES
    if isinstance(error, aetcd.exceptions.ClientError) and isinstance(
        error.__cause__, grpc.aio.AioRpcError
    ):
        return error.__cause__.code() in _UNREACHABLE_CODES
    return isinstance(
        error,
        aetcd.exceptions.ConnectionFailedError
        | aetcd.exceptions.ConnectionTimeoutError
        | aetcd.exceptions.WatchTimeoutError
        | TimeoutError
        | ConnectionError,
    )


def _cancelled_by_grpc() -> bool:
    """An asyncio.CancelledError was raised, but not because our task is being
    cancelled: gRPC cancelled the request (its channel was closed)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() == 0


class EtcdStore:
    """Async access to etcd for every part of the project."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.endpoints = list(settings.etcd_endpoints)
        for endpoint in self.endpoints:
            parse_endpoint(endpoint)
        self._current = 0
        self._client: _Client | None = None
        self._connect_lock = asyncio.Lock()
        self._closing: set[asyncio.Task[None]] = set()  # retired clients being closed
        self._closed = False

    # ------------------------------------------------------------ plumbing

    def _new_client(self, endpoint: str) -> _Client:
        host, port = parse_endpoint(endpoint)
        return _Client(
            endpoint,
            _credentials(self.settings, endpoint),
            host=host,
            port=port,
            username=self.settings.etcd_user,
            password=self.settings.etcd_password,
            timeout=self.settings.request_timeout_s,
            options=_CHANNEL_OPTIONS,
        )

    async def _connected_client(self) -> _Client:
        # One connect at a time: a client is published only once connected, so
        # concurrent first requests never use one that is still connecting.
        async with self._connect_lock:
            if self._client is None:
                client = self._new_client(self.endpoints[self._current])
                await client.connect()
                self._client = client
            client = self._client
            client.in_flight += 1
            return client

    def _release(self, client: _Client) -> None:
        client.in_flight -= 1
        if client.retired and client.in_flight == 0:
            self._close_later(client)

    def _close_later(self, client: _Client) -> None:
        task = asyncio.get_running_loop().create_task(_close_client(client))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _fail_over(self, failed: _Client) -> None:
        """Move to the next endpoint, unless a concurrent failure already moved
        away from ``failed``: then the current client is a fresh one to try."""
        if self._client is not failed:
            return
        self._client = None
        self._current = (self._current + 1) % len(self.endpoints)
        failed.retired = True
        if failed.in_flight == 0:
            self._close_later(failed)

    @property
    def current_endpoint(self) -> str:
        return self.endpoints[self._current]

    async def _call(self, what: str, operation: Callable[[_Client], Awaitable[T]]) -> T:
        """Run one request, moving through the endpoints until one answers.

        Every endpoint is tried at least once; while the request's own budget
        (``request_timeout_s``) is not spent, failed passes start over after a
        short pause, so a leader election (about a second, during which every
        member refuses with "no leader") is waited out rather than reported.
        """
        failures: list[str] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.request_timeout_s
        pause = Backoff(CALL_RETRY_PAUSE_S)  # constant: the budget, not the pause, bounds it
        attempt = 0
        while True:
            client = await self._connected_client()
            try:
                return await asyncio.wait_for(
                    operation(client), timeout=self.settings.request_timeout_s + 0.5
                )
            except asyncio.CancelledError:
                if not _cancelled_by_grpc():
                    raise
                failure = f"{client.endpoint} (request cancelled: its channel closed)"
            except Exception as error:
                if not _is_unreachable(error):
                    raise _converted(error, what) from error
                failure = f"{client.endpoint} ({_short(error)})"
            finally:
                self._release(client)
            self._fail_over(client)
            failures.append(failure)
            attempt += 1
            if attempt >= len(self.endpoints) and loop.time() >= deadline:
                break
            if attempt % len(self.endpoints) == 0:
                await pause.wait()
        tried = list(dict.fromkeys(failures[-len(self.endpoints) :]))
        hint = _plain_to_tls_hint(self.endpoints, tried)
        raise EtcdUnavailable(f"etcd unreachable for {what}; tried {', '.join(tried)}{hint}")

    async def close(self) -> None:
        self._closed = True
        client, self._client = self._client, None
        if client is not None:
            await _close_client(client)
        if self._closing:
            await asyncio.wait(set(self._closing))

    async def __aenter__(self) -> EtcdStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------ key-value

    async def get(self, key: str) -> KeyValue | None:
        result = await self._call(f"get {key}", lambda c: c.get(key.encode()))
        return None if result is None else _key_value(result)

    async def get_prefix(self, prefix: str) -> tuple[dict[str, KeyValue], int]:
        """Everything under prefix, and the store revision it was read at."""
        result = await self._call(f"list {prefix}", lambda c: c.get_prefix(prefix.encode()))
        items = {kv.key: kv for kv in map(_key_value, result)}
        return items, int(result.header.revision)

    async def put(self, key: str, value: bytes, lease_id: int | None = None) -> int:
        result = await self._call(f"put {key}", lambda c: c.put(key.encode(), value, lease_id))
        return int(result.header.revision)

    async def delete(self, key: str) -> bool:
        result = await self._call(f"delete {key}", lambda c: c.delete(key.encode()))
        return bool(result and result.deleted)

    async def delete_prefix(self, prefix: str) -> int:
        result = await self._call(f"delete {prefix}*", lambda c: c.delete_prefix(prefix.encode()))
        return int(result.deleted) if result else 0

    async def create_if_absent(self, key: str, value: bytes, lease_id: int | None = None) -> bool:
        """Write key only if it does not exist (one transaction). True if written."""

        async def create(client: _Client) -> bool:
            succeeded, _ = await client.transaction(
                compare=[client.transactions.version(key.encode()) == 0],
                success=[client.transactions.put(key.encode(), value, lease=lease_id)],
                failure=[],
            )
            return bool(succeeded)

        return await self._call(f"create {key}", create)

    async def put_if_revision(
        self, key: str, value: bytes, mod_revision: int, lease_id: int | None = None
    ) -> bool:
        """Overwrite key only if nobody changed it since mod_revision."""

        async def replace(client: _Client) -> bool:
            succeeded, _ = await client.transaction(
                compare=[client.transactions.mod(key.encode()) == mod_revision],
                success=[client.transactions.put(key.encode(), value, lease=lease_id)],
                failure=[],
            )
            return bool(succeeded)

        return await self._call(f"replace {key}", replace)

    async def write_guarded(
        self,
        guard_key: str,
        guard_revision: int,
        puts: Mapping[str, bytes],
        deletes: Collection[str] = (),
        lease_id: int | None = None,
    ) -> GuardedWrite:
        attempts = 0

        async def write(client: _Client) -> bool:
            nonlocal attempts
            attempts += 1
            ops = client.transactions
            changes = [ops.put(key.encode(), value, lease=lease_id) for key, value in puts.items()]
            changes += [ops.delete(key.encode()) for key in deletes]
            succeeded, _ = await client.transaction(
                compare=[ops.mod(guard_key.encode()) == guard_revision], success=changes, failure=[]
            )
            return bool(succeeded)

        what = f"write {len(puts) + len(deletes)} keys guarded by {guard_key}"
        applied = await self._call(what, write)
        # Every attempt but the last failed without an answer from etcd.
        return GuardedWrite(applied=applied, resent=attempts > 1)

    async def compact(self, revision: int) -> None:
        await self._call(f"compact to {revision}", lambda c: c.compact(revision, physical=True))

    # ------------------------------------------------------------ leases

    async def grant_lease(self, ttl_s: int) -> int:
        lease = await self._call(f"grant a {ttl_s} s lease", lambda c: c.lease(ttl_s))
        return int(lease.id)

    async def keep_alive(self, lease_id: int) -> int:
        """Refresh a lease once; returns the TTL it now has. Raises LeaseLost if gone."""
        reply = await self._call(
            f"keep lease {lease_id:x} alive", lambda c: c.refresh_lease(lease_id)
        )
        ttl = int(reply.TTL) if reply is not None else 0
        if ttl <= 0:
            raise LeaseLost(f"etcd lease {lease_id:x} has expired or was revoked")
        return ttl

    async def lease_ttl(self, lease_id: int) -> int:
        """Seconds left on a lease, or -1 when it no longer exists."""
        info = await self._call(
            f"read lease {lease_id:x}", lambda c: c.get_lease_info(lease_id, keys=False)
        )
        return int(info.TTL)

    async def revoke_lease(self, lease_id: int) -> None:
        """Revoke a lease and so delete every key under it. Gone already is fine."""
        with contextlib.suppress(LeaseLost):
            await self._call(f"revoke lease {lease_id:x}", lambda c: c.revoke_lease(lease_id))

    # ------------------------------------------------------------ watching

    async def follow_prefix(self, prefix: str) -> AsyncIterator[WatchItem]:
        """List, then watch; resume after outages; re-list after compaction.

        Never ends and never raises: every failure is an outage, announced
        once with ``ConnectionLost`` (its reason) and ended with ``Resumed``
        (or a new ``Snapshot``). The listing goes through the shared client;
        the watch has a channel of its own, starting on the same endpoint and
        moving through them on its own.
        """
        revision: int | None = None  # the last revision we have handed out
        lost = False
        backoff = Backoff(WATCH_RETRY_MIN_S, WATCH_RETRY_MAX_S)
        position = self._current
        client: _Client | None = None
        try:
            while True:
                try:
                    if revision is None:
                        items, revision = await self.get_prefix(prefix)
                        position = self._current
                        yield Snapshot(items, revision)
                        if lost:
                            lost = False
                            log.info("watch on %s: etcd reachable again (listed anew)", prefix)
                    if client is None:
                        client = self._new_client(self.endpoints[position])
                        await client.connect()
                    watch = await asyncio.wait_for(
                        client.watch_prefix(prefix.encode(), start_revision=revision + 1),
                        timeout=self.settings.request_timeout_s + 0.5,
                    )
                    if lost:
                        lost = False
                        yield Resumed(revision)
                    backoff.reset()
                    try:
                        async for event in watch:
                            change = _change(event)
                            revision = max(revision, change.revision)
                            yield change
                    finally:
                        await _cancel_quietly(watch)
                    # The iterator ended without an error: the stream was closed.
                    raise EtcdUnavailable(f"watch stream to {client.endpoint} closed")
                except (RevisionCompacted, aetcd.exceptions.RevisionCompactedError) as error:
                    log.info("watch on %s: %s; listing again", prefix, error)
                    revision = None
                    continue
                except asyncio.CancelledError:
                    if not _cancelled_by_grpc():
                        raise
                    reason = "watch cancelled: its channel closed"
                except Exception as error:
                    # Unreachable, no leader, refused (permissions, a bad
                    # request): all the same here, an outage to wait out.
                    reason = _short(_converted(error, f"watch {prefix}"))
                if not lost:
                    lost = True
                    yield ConnectionLost(reason)
                if client is not None:
                    await _close_client(client)
                    client = None
                position = (position + 1) % len(self.endpoints)
                await backoff.wait()
        finally:
            if client is not None:
                await _close_client(client)


async def _close_client(client: _Client) -> None:
    try:
        await asyncio.wait_for(client.close(), timeout=1)
    except Exception as error:  # closing a broken channel may fail; it is gone anyway
        log.debug("closing etcd client for %s: %r", client.endpoint, error)


async def _cancel_quietly(watch: Any) -> None:
    try:
        await asyncio.wait_for(watch.cancel(), timeout=1)
    except Exception as error:  # the stream may already be dead
        log.debug("cancelling watch: %r", error)


def _key_value(result: Any) -> KeyValue:
    return KeyValue(
        key=result.key.decode(),
        value=bytes(result.value),
        mod_revision=int(result.mod_revision),
        create_revision=int(result.create_revision),
        lease=int(result.lease),
    )


def _change(event: Any) -> Change:
    deleted = event.kind == aetcd.rtypes.EventKind.DELETE
    return Change(
        key=event.kv.key.decode(),
        value=None if deleted else bytes(event.kv.value),
        revision=int(event.kv.mod_revision),
    )


def _short(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return tls_failure(text) or text.splitlines()[0][:160]


# What gRPC's TLS errors mean, in the words of a client that must fix its flags.
_TLS_REFUSALS = (
    # the member's alert: our certificate is missing, not from its CA, or expired
    (("ALERT_BAD_CERTIFICATE", "ALERT_CERTIFICATE_REQUIRED", "ALERT_UNKNOWN_CA",
      "ALERT_CERTIFICATE_EXPIRED"),
     "etcd refused this client's certificate (none given, not signed by etcd's CA, or "
     "expired): check --cert and --key"),
    # our own check of the member's certificate
    (("CERTIFICATE_VERIFY_FAILED",),
     "this client does not trust etcd's certificate: check --cacert"),
)  # fmt: skip


def tls_failure(text: str) -> str | None:
    """A TLS handshake failure in gRPC's words -> which side refused whom, or None."""
    if "handshake failed" not in text.lower():
        return None
    for marks, meaning in _TLS_REFUSALS:
        if any(mark in text for mark in marks):
            return f"TLS handshake failed: {meaning}"
    return "TLS handshake failed: check --cacert, --cert and --key"


def _plain_to_tls_hint(endpoints: list[str], failures: list[str]) -> str:
    """A member that serves only TLS closes a plain connection without a word: say so."""
    plain = any(urlparse(endpoint).scheme == "http" for endpoint in endpoints)
    if plain and any("Socket closed" in failure for failure in failures):
        return " (an etcd that serves only TLS closes plain http:// connections: use https://)"
    return ""


def _converted(error: BaseException, what: str) -> DiscoveryError:
    if isinstance(error, DiscoveryError):
        return error
    if isinstance(error, aetcd.exceptions.RevisionCompactedError):
        return RevisionCompacted(error.compacted_revision)
    text = _short(error)
    if "lease not found" in text:
        return LeaseLost(f"{what}: etcd lease not found (expired or revoked)")
    return DiscoveryError(f"etcd refused {what}: {text}")


if TYPE_CHECKING:  # mypy checks that EtcdStore has every method of Store, with the same types
    _conforms: type[Store] = EtcdStore

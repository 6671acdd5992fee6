"""The audit's one shell around the Docker SDK: what the rules read, from one daemon.

For every container (running or stopped): ``GET /containers/ID/json``, its
image's inspect and history, and the SUID/SGID files of its filesystem, read
from ``GET /containers/ID/export`` (a tar stream whose member modes tell),
bounded in bytes and seconds. The daemon: ``GET /info`` and the default bridge
network's options. The only module of the audit package importing ``docker``.

Whatever goes wrong with one thing is a note about that thing, and the audit
goes on: a daemon that does not answer is :class:`DaemonUnreachable`, a
container removed mid-audit is skipped with a note, an export that fails or
is too big leaves the SUID/SGID rule with INFO.
"""

from __future__ import annotations

import contextlib
import fnmatch
import io
import os
import stat
import tarfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import docker
import docker.errors
import requests

from audit.rules import (
    ContainerAudit,
    Daemon,
    HostAudit,
    Subject,
    audit_container,
    audit_daemon,
)
from discovery.errors import DiscoveryError

# Docker 20.10's API (Debian 12's docker.io), as the registrator pins it.
DOCKER_API_VERSION = "1.41"
REQUEST_TIMEOUT_S = 15.0
# An export bigger or slower than this is not read to the end: the rule says so.
EXPORT_MAX_BYTES = 512 * 1024 * 1024
EXPORT_MAX_SECONDS = 60.0


class DaemonUnreachable(DiscoveryError):
    """The Docker daemon at a URL did not answer."""


class ExportTooBig(Exception):
    pass


def _size_text(size: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:g} {unit}"
    return f"{size} bytes"


class _BoundedStream(io.RawIOBase):
    """A file over the SDK's chunk iterator that stops at a byte and time budget."""

    def __init__(self, chunks: Iterator[bytes], max_bytes: int, max_seconds: float) -> None:
        self._chunks = chunks
        self._buffer = b""
        self._read = 0
        self._max_bytes = max_bytes
        self._deadline = time.monotonic() + max_seconds

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while not self._buffer:
            if time.monotonic() > self._deadline:
                raise ExportTooBig("took longer than the time budget")
            try:
                self._buffer = next(self._chunks)
            except StopIteration:
                return 0
            self._read += len(self._buffer)
            if self._read > self._max_bytes:
                raise ExportTooBig(f"is bigger than {_size_text(self._max_bytes)}")
        size = min(len(target), len(self._buffer))
        target[:size] = self._buffer[:size]
        self._buffer = self._buffer[size:]
        return size


def setid_paths(stream: io.RawIOBase) -> list[str]:
    """SUID/SGID regular files of a filesystem tar stream, sorted, as absolute paths."""
    found = []
    with tarfile.open(fileobj=io.BufferedReader(stream), mode="r|") as archive:
        for member in archive:
            if member.isfile() and member.mode & (stat.S_ISUID | stat.S_ISGID):
                found.append("/" + member.name.lstrip("./").lstrip("/"))
    return sorted(found)


def _reason(error: BaseException) -> str:
    """The root cause in a few words: requests wraps urllib3 wraps the OSError."""
    seen: list[BaseException] = [error]
    while seen:
        current = seen.pop()
        if isinstance(current, OSError) and current.strerror:
            return current.strerror
        seen.extend(a for a in current.args if isinstance(a, BaseException))
        seen.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return str(error).splitlines()[0][:160] if str(error) else type(error).__name__


def _connect(url: str) -> docker.DockerClient:
    try:
        # ssh:// (another VM of the Vagrant lab) goes through the ssh binary, as the CLI does.
        # tcp:// with DOCKER_TLS_VERIFY / DOCKER_CERT_PATH set: TLS, as the docker CLI does.
        tls_kwargs: dict[str, Any] = {}
        if url.startswith("tcp://"):
            from_env = docker.utils.kwargs_from_env(environment={**os.environ, "DOCKER_HOST": url})
            if "tls" in from_env:
                tls_kwargs["tls"] = from_env["tls"]
        client = docker.DockerClient(
            base_url=url,
            version=DOCKER_API_VERSION,
            timeout=int(REQUEST_TIMEOUT_S),
            use_ssh_client=url.startswith("ssh://"),
            **tls_kwargs,
        )
        client.ping()
    except (docker.errors.DockerException, requests.RequestException, OSError) as error:
        raise DaemonUnreachable(
            f"the Docker daemon at {url} did not answer: {_reason(error)}"
        ) from error
    return client


def _commands(top: dict[str, Any]) -> list[str]:
    """The CMD (or COMMAND) column of ``GET /containers/ID/top``."""
    titles = list(top.get("Titles") or [])
    column = next((titles.index(t) for t in ("CMD", "COMMAND") if t in titles), len(titles) - 1)
    return [str(row[column]) for row in top.get("Processes") or [] if len(row) > column]


def _name(inspect: dict[str, Any]) -> str:
    return str(inspect.get("Name") or inspect.get("Id", "?")[:12]).lstrip("/")


def audit_host(
    host: str,
    url: str,
    *,
    container: str | None = None,
    scan_files: bool = True,
    max_bytes: int = EXPORT_MAX_BYTES,
    max_seconds: float = EXPORT_MAX_SECONDS,
    say: Callable[[str], None] | None = None,
) -> HostAudit:
    """Audit one daemon; never raises for a daemon, container or image that fails."""
    result = HostAudit(host, url)
    try:
        client = _connect(url)
    except DaemonUnreachable as error:
        result.error = str(error)
        return result
    with contextlib.closing(client):
        api = client.api
        try:
            info = api.info()
            bridge: dict[str, str] = {}
            with contextlib.suppress(docker.errors.NotFound):
                bridge = dict(api.inspect_network("bridge").get("Options") or {})
            # The SDK speaks https:// to a tcp:// daemon when TLS is on.
            tls = str(api.base_url).startswith("https://")
            daemon = Daemon(info=info, url=url, bridge_options=bridge, tls=tls)
            result.daemon = audit_daemon(daemon)
            listed = api.containers(all=True)
        except (docker.errors.DockerException, requests.RequestException) as error:
            result.error = f"the Docker daemon at {url} failed mid-audit: {_reason(error)}"
            return result
        images: dict[str, tuple[dict[str, Any] | None, list[dict[str, Any]]]] = {}
        for summary in listed:
            names = [n.lstrip("/") for n in summary.get("Names") or []]
            if container and not (
                any(fnmatch.fnmatchcase(name, container) for name in names)
                or summary["Id"].startswith(container)
            ):
                continue
            label = names[0] if names else summary["Id"][:12]
            try:
                inspect = api.inspect_container(summary["Id"])
            except docker.errors.NotFound:
                result.notes.append(f"{label}: removed during the audit, skipped")
                continue
            image_id = str(inspect.get("Image") or "")
            if image_id not in images:
                try:
                    images[image_id] = (api.inspect_image(image_id), api.history(image_id))
                except docker.errors.APIError as error:
                    result.notes.append(
                        f"{label}: image {image_id[:19]} not inspected: {_reason(error)}"
                    )
                    images[image_id] = (None, [])
            image, history = images[image_id]
            files: list[str] | None = None
            note = "not examined"
            if scan_files:
                try:
                    chunks = api.export(summary["Id"])
                    files = setid_paths(_BoundedStream(iter(chunks), max_bytes, max_seconds))
                except ExportTooBig as error:
                    note = f"not examined: the export {error}"
                except (docker.errors.DockerException, requests.RequestException,
                        tarfile.TarError) as error:  # fmt: skip
                    note = "not examined: it could not be exported"
                    result.notes.append(f"{label}: filesystem not exported: {_reason(error)}")
            processes = None
            if (inspect.get("State") or {}).get("Running"):
                try:
                    processes = _commands(api.top(summary["Id"]))
                except (docker.errors.DockerException, requests.RequestException) as error:
                    result.notes.append(f"{label}: processes not listed: {_reason(error)}")
            subject = Subject(
                container=inspect,
                image=image,
                daemon=daemon,
                history=history,
                setid_files=files,
                setid_note=note,
                processes=processes,
            )
            result.containers.append(
                ContainerAudit(
                    _name(inspect),
                    str(inspect.get("Id", "")),
                    str((inspect.get("Config") or {}).get("Image") or ""),
                    str((inspect.get("State") or {}).get("Status") or ""),
                    audit_container(subject),
                )
            )
            if say:
                say(f"{host}: audited {label}")
        if container and not result.containers:
            result.notes.append(f"no container {container!r} on this daemon")
    return result

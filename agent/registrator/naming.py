"""Service naming: which service name and tags a container asks for, per port.

Pure: labels and environment in, a name (or the reason there is none) out.
The rules follow what Docker users already write; first match wins:

1. our label ``discovery.service`` (with ``discovery.tags``, ``discovery.ignore``);
2. registrator's variables ``SERVICE_<port>_NAME`` then ``SERVICE_NAME`` (with
   ``SERVICE_[<port>_]TAGS`` and ``SERVICE_[<port>_]IGNORE``). As registrator
   does, they are read from the environment and from labels, a label winning;
3. Compose's label ``com.docker.compose.service``;
4. the image's repository name without registry, path, tag or digest:
   ``registry:5000/team/web:1.2`` names the service ``web``.

``<port>`` is the container's port (``SERVICE_80_NAME``), as in registrator.
A container of a Compose project (label ``com.docker.compose.project``) is
also tagged with the project's name, after its own tags: two projects that
both have an ``api`` service share the name, and the tag tells their
endpoints apart (``shop.api.service.lab``, ``discoveryctl lookup api --tag shop``).
Every name and tag is normalised to a DNS label (``My_App`` -> ``my-app``); a
name that cannot be made one is refused with the reason.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from discovery.errors import DiscoveryError, SchemaError
from discovery.schema import normalise_dns_label

LABEL_SERVICE = "discovery.service"
LABEL_TAGS = "discovery.tags"
LABEL_IGNORE = "discovery.ignore"
LABEL_COMPOSE_SERVICE = "com.docker.compose.service"
LABEL_COMPOSE_PROJECT = "com.docker.compose.project"
# Values of discovery.ignore that mean "do register"; anything else ignores,
# as registrator ignores on any non-empty SERVICE_IGNORE.
_FALSE_WORDS = frozenset({"", "0", "false", "no", "off"})
# An image given by id (``sha256:...`` or the bare 64-hex id) has no name.
_IMAGE_ID_RE = re.compile(r"^(sha256:)?[0-9a-f]{64}$")


class NamingRefused(DiscoveryError):
    """A container's service name cannot be made a valid DNS label."""


@dataclass(frozen=True)
class PortNaming:
    """What one port (or, with port None, the bare container) registers as."""

    service: str
    source: str  # the rule that chose the name, for log lines
    tags: tuple[str, ...] = ()
    dropped_tags: tuple[str, ...] = ()  # tags that could not be made DNS labels


def environment_map(env: Sequence[str] | None) -> dict[str, str]:
    """Docker's ``Config.Env`` list (``["K=V", ...]``) as a dict; later entries win."""
    found: dict[str, str] = {}
    for item in env or ():
        name, sep, value = item.partition("=")
        if sep:
            found[name] = value
    return found


def image_repository_name(image: str) -> str | None:
    """``registry:5000/team/web:1.2@sha256:..`` -> ``web``; None for an image id."""
    reference = image.strip().split("@", 1)[0]
    if not reference or _IMAGE_ID_RE.match(reference):
        return None
    last = reference.rsplit("/", 1)[-1]
    # In the last path component a ':' can only start the tag (a registry's
    # port is always followed by a '/').
    name = last.split(":", 1)[0]
    return name or None


def _registrator_value(
    labels: Mapping[str, str], env: Mapping[str, str], key: str, port: int | None
) -> tuple[str, str] | None:
    """registrator's lookup: SERVICE_<port>_<KEY> then SERVICE_<KEY>, labels over env."""
    names = ([f"SERVICE_{port}_{key}"] if port else []) + [f"SERVICE_{key}"]
    for name in names:
        for where, source in (("label", labels), ("env", env)):
            value = source.get(name)
            if value is not None and value.strip():
                return value.strip(), f"{where} {name}"
    return None


def ignore_reason(
    labels: Mapping[str, str], env: Mapping[str, str], port: int | None = None
) -> str | None:
    """Why the container (or, given a port, that port) must not be registered, if so."""
    if LABEL_IGNORE in labels:
        value = labels[LABEL_IGNORE].strip().lower()
        return None if value in _FALSE_WORDS else f"label {LABEL_IGNORE}={labels[LABEL_IGNORE]}"
    found = _registrator_value(labels, env, "IGNORE", port)
    return None if found is None else found[1]


def _raw_name(
    labels: Mapping[str, str], env: Mapping[str, str], image: str, port: int | None
) -> tuple[str, str]:
    if labels.get(LABEL_SERVICE, "").strip():
        return labels[LABEL_SERVICE], f"label {LABEL_SERVICE}"
    found = _registrator_value(labels, env, "NAME", port)
    if found is not None:
        return found
    if labels.get(LABEL_COMPOSE_SERVICE, "").strip():
        return labels[LABEL_COMPOSE_SERVICE], f"label {LABEL_COMPOSE_SERVICE}"
    repository = image_repository_name(image)
    if repository is None:
        raise NamingRefused(
            f"no service name: no {LABEL_SERVICE} label, SERVICE_NAME or Compose label, "
            f"and image {image!r} has no repository name"
        )
    return repository, "image name"


def _raw_tags(labels: Mapping[str, str], env: Mapping[str, str], port: int | None) -> list[str]:
    if LABEL_TAGS in labels:
        text = labels[LABEL_TAGS]
    else:
        found = _registrator_value(labels, env, "TAGS", port)
        text = "" if found is None else found[0]
    tags = [tag.strip() for tag in text.split(",") if tag.strip()]
    project = labels.get(LABEL_COMPOSE_PROJECT, "").strip()
    return [*tags, project] if project else tags


def name_port(
    labels: Mapping[str, str], env: Mapping[str, str], image: str, port: int | None = None
) -> PortNaming:
    """The service name and tags for one container port (None: no port at all).

    Raises NamingRefused, with the reason, when the chosen name cannot be made
    a DNS label. A tag that cannot be made one is dropped, not fatal.
    """
    raw, source = _raw_name(labels, env, image, port)
    try:
        service = normalise_dns_label(raw)
    except SchemaError as error:
        raise NamingRefused(f"service name from {source}: {error}") from error
    tags: list[str] = []
    dropped: list[str] = []
    for raw_tag in _raw_tags(labels, env, port):
        try:
            tag = normalise_dns_label(raw_tag)
        except SchemaError:
            dropped.append(raw_tag)
            continue
        if tag not in tags:
            tags.append(tag)
    return PortNaming(service, source, tuple(tags), tuple(dropped))


__all__ = [
    "LABEL_COMPOSE_PROJECT",
    "LABEL_COMPOSE_SERVICE",
    "LABEL_IGNORE",
    "LABEL_SERVICE",
    "LABEL_TAGS",
    "NamingRefused",
    "PortNaming",
    "environment_map",
    "ignore_reason",
    "image_repository_name",
    "name_port",
]

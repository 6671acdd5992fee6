"""Naming rules of the registrator: labels and environment -> service name and tags."""

from __future__ import annotations

import pytest

from agent.registrator.naming import (
    NamingRefused,
    environment_map,
    ignore_reason,
    image_repository_name,
    name_port,
)

IMAGE = "discovery-lab/web:0.1.0"


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("web", "web"),
        ("web:1.2", "web"),
        ("discovery-lab/web:0.1.0", "web"),
        ("registry.example:5000/team/api:2", "api"),
        ("localhost:5000/db", "db"),
        ("redis@sha256:" + "a" * 64, "redis"),
        ("team/cache:7@sha256:" + "b" * 64, "cache"),
        ("sha256:" + "c" * 64, None),
        ("c" * 64, None),
        ("", None),
    ],
)
def test_image_repository_name(image: str, expected: str | None) -> None:
    assert image_repository_name(image) == expected


# (labels, env, port, expected service, expected source)
NAME_CASES = [
    # 1. our label wins over everything
    (
        {"discovery.service": "web", "SERVICE_NAME": "x", "com.docker.compose.service": "y"},
        {"SERVICE_NAME": "z"},
        80,
        "web",
        "label discovery.service",
    ),
    # 2. registrator: SERVICE_NAME from the environment
    ({}, {"SERVICE_NAME": "api"}, None, "api", "env SERVICE_NAME"),
    # ... a label SERVICE_NAME wins over the environment's, as in registrator
    (
        {"SERVICE_NAME": "fromlabel"},
        {"SERVICE_NAME": "fromenv"},
        None,
        "fromlabel",
        "label SERVICE_NAME",
    ),
    # ... SERVICE_<port>_NAME for that port, over SERVICE_NAME
    (
        {},
        {"SERVICE_NAME": "app", "SERVICE_9090_NAME": "metrics"},
        9090,
        "metrics",
        "env SERVICE_9090_NAME",
    ),
    ({}, {"SERVICE_NAME": "app", "SERVICE_9090_NAME": "metrics"}, 80, "app", "env SERVICE_NAME"),
    # ... an empty value does not count
    ({}, {"SERVICE_NAME": "  "}, None, "web", "image name"),
    # 3. Compose's service label
    (
        {"com.docker.compose.service": "worker", "com.docker.compose.project": "shop"},
        {},
        None,
        "worker",
        "label com.docker.compose.service",
    ),
    # ... registrator's variables come before Compose's label
    (
        {"com.docker.compose.service": "worker"},
        {"SERVICE_NAME": "queue"},
        None,
        "queue",
        "env SERVICE_NAME",
    ),
    # 4. the image's repository name
    ({}, {}, 80, "web", "image name"),
    # names are normalised to DNS labels
    ({"discovery.service": "My_Web.App"}, {}, None, "my-web-app", "label discovery.service"),
    ({}, {"SERVICE_NAME": "--Front End--"}, None, "front-end", "env SERVICE_NAME"),
]


@pytest.mark.parametrize(("labels", "env", "port", "service", "source"), NAME_CASES)
def test_name_rules_first_match_wins(
    labels: dict[str, str], env: dict[str, str], port: int | None, service: str, source: str
) -> None:
    naming = name_port(labels, env, IMAGE, port)
    assert (naming.service, naming.source) == (service, source)


@pytest.mark.parametrize(
    ("labels", "env", "image", "reason"),
    [
        ({"discovery.service": "___"}, {}, IMAGE, "no letters or digits"),
        ({}, {"SERVICE_NAME": "x" * 64}, IMAGE, "limit is 63"),
        ({"com.docker.compose.service": "!!!"}, {}, IMAGE, "com.docker.compose.service"),
        ({}, {}, "sha256:" + "d" * 64, "has no repository name"),
    ],
)
def test_invalid_names_are_refused_with_the_reason(
    labels: dict[str, str], env: dict[str, str], image: str, reason: str
) -> None:
    with pytest.raises(NamingRefused, match=reason):
        name_port(labels, env, image, None)


@pytest.mark.parametrize(
    ("labels", "env", "port", "tags", "dropped"),
    [
        ({"discovery.tags": "blue, Prod"}, {"SERVICE_TAGS": "x"}, None, ("blue", "prod"), ()),
        ({}, {"SERVICE_TAGS": "a,b,a"}, None, ("a", "b"), ()),
        ({}, {"SERVICE_TAGS": "a", "SERVICE_80_TAGS": "web-only"}, 80, ("web-only",), ()),
        ({}, {"SERVICE_TAGS": "a", "SERVICE_80_TAGS": "web-only"}, 443, ("a",), ()),
        ({}, {"SERVICE_TAGS": "ok,???"}, None, ("ok",), ("???",)),
        # an explicit empty discovery.tags means "no tags", first match wins
        ({"discovery.tags": ""}, {"SERVICE_TAGS": "a"}, None, (), ()),
        ({}, {}, None, (), ()),
    ],
)
def test_tags(
    labels: dict[str, str],
    env: dict[str, str],
    port: int | None,
    tags: tuple[str, ...],
    dropped: tuple[str, ...],
) -> None:
    naming = name_port(labels, env, IMAGE, port)
    assert (naming.tags, naming.dropped_tags) == (tags, dropped)


@pytest.mark.parametrize(
    ("labels", "env", "port", "ignored"),
    [
        ({"discovery.ignore": "true"}, {}, None, True),
        ({"discovery.ignore": "1"}, {}, None, True),
        # our label decides first, even against registrator's variable
        ({"discovery.ignore": "false"}, {"SERVICE_IGNORE": "1"}, None, False),
        ({"discovery.ignore": "no"}, {}, None, False),
        ({}, {"SERVICE_IGNORE": "true"}, None, True),
        ({"SERVICE_IGNORE": "yes"}, {}, None, True),
        ({}, {"SERVICE_IGNORE": ""}, None, False),
        ({}, {"SERVICE_80_IGNORE": "1"}, 80, True),
        ({}, {"SERVICE_80_IGNORE": "1"}, 443, False),
        ({}, {"SERVICE_80_IGNORE": "1"}, None, False),
        ({}, {}, None, False),
    ],
)
def test_ignore(
    labels: dict[str, str], env: dict[str, str], port: int | None, ignored: bool
) -> None:
    assert (ignore_reason(labels, env, port) is not None) is ignored


def test_environment_map() -> None:
    env = ["PATH=/bin", "SERVICE_NAME=a=b", "EMPTY=", "NOVALUE", "SERVICE_NAME2=x"]
    assert environment_map(env) == {
        "PATH": "/bin",
        "SERVICE_NAME": "a=b",
        "EMPTY": "",
        "SERVICE_NAME2": "x",
    }
    assert environment_map(None) == {}


def test_a_compose_project_s_name_is_a_tag_after_the_container_s_own():
    labels = {
        "com.docker.compose.service": "api",
        "com.docker.compose.project": "Shop_Front",
        "discovery.tags": "v2",
    }
    naming = name_port(labels, {}, IMAGE, 80)
    assert (naming.service, naming.tags) == ("api", ("v2", "shop-front"))
    # the same word twice is one tag; a project name that cannot be a DNS label is dropped
    labels["discovery.tags"] = "shop-front"
    assert name_port(labels, {}, IMAGE, 80).tags == ("shop-front",)
    labels["com.docker.compose.project"] = "!!!"
    assert name_port(labels, {}, IMAGE, 80).dropped_tags == ("!!!",)

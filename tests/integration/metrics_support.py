"""Scraping a process's /metrics in tests: over HTTP on loopback, parsed by prometheus_client.

``scrape(url)`` from this process; ``scrape_in(netns, port)`` for an agent
that runs inside a namespace host, whose 127.0.0.1 is its own (the request is
made by a Python started in that namespace). ``metrics_url(log_text)``
finds the address a process logged when it bound ``--metrics ...:0``.
"""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from labs.testing.waiting import eventually

_URL = re.compile(r"msg=\"serving metrics\" url=(http://\S+/metrics)")
_FETCH = (
    "import sys, urllib.request\n"
    "sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())\n"
)


@dataclass(frozen=True)
class Scraped:
    """Every sample of one scrape: ``scraped("name_total", label="value")``."""

    samples: dict[tuple[str, frozenset[tuple[str, str]]], float]
    types: dict[str, str]  # family name -> counter, gauge, ...

    def __call__(self, name: str, **labels: str) -> float:
        key = (name, frozenset(labels.items()))
        if key not in self.samples:
            known = [dict(have) for n, have in self.samples if n == name]
            raise KeyError(f"no sample {name}{labels or ''}; labels of that name: {known}")
        return self.samples[key]

    def __getitem__(self, name: str) -> float:
        return self(name)


def parse(text: str) -> Scraped:
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return Scraped(samples, types)


async def scrape(url: str) -> Scraped:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        return parse(await response.text())


async def wait_scrape(
    get: Callable[[], object],
    check: Callable[[Scraped], bool],
    timeout_s: float = 10,
    what: str = "",
) -> Scraped:
    """Scrape (``get()``: a Scraped, or an awaitable of one) until ``check`` holds;
    fail with the last scrape's figures."""
    last: list[Scraped] = []

    async def scraped_when_checked() -> Scraped | None:
        scraped = get()
        if inspect.isawaitable(scraped):
            scraped = await scraped
        assert isinstance(scraped, Scraped)
        last[:] = [scraped]
        return scraped if check(scraped) else None

    try:
        return await eventually(scraped_when_checked, timeout_s, what or "metrics", 0.1)
    except AssertionError as error:
        figures = "\n".join(
            f"{name}{dict(labels) or ''} {value}"
            for (name, labels), value in sorted(last[0].samples.items(), key=str)
            if name.startswith("discovery_")
        )
        raise AssertionError(f"{error}; the last figures:\n{figures}") from None


def scrape_in(netns: str, port: int) -> Scraped:
    """GET http://127.0.0.1:PORT/metrics inside a network namespace (its own loopback)."""
    done = subprocess.run(
        ["nsenter", f"--net=/run/netns/{netns}", sys.executable, "-c", _FETCH,
         f"http://127.0.0.1:{port}/metrics"],
        capture_output=True, text=True, timeout=20, check=True,
    )  # fmt: skip
    return parse(done.stdout)


def metrics_url(log_text: str) -> str | None:
    """The URL a process logged with ``serving metrics``, or None (not yet)."""
    found = _URL.search(log_text)
    return found.group(1) if found else None

"""The live map page is one self-contained document: nothing it loads comes from elsewhere."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from mapserver.page import PAGE

RESOURCE_ATTRIBUTES = {"src", "href", "action", "data", "poster", "srcset", "formaction"}


class Resources(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.references: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.references += [v or "" for k, v in attrs if k in RESOURCE_ATTRIBUTES]


def test_the_page_names_no_url_outside_itself():
    assert "http://" not in PAGE and "https://" not in PAGE
    assert not re.search(r"""["'(]\s*//""", PAGE)  # no protocol-relative //host/... either
    assert "@import" not in PAGE and "url(" not in PAGE  # no CSS fetches
    parser = Resources()
    parser.feed(PAGE)
    assert parser.references == []  # no src= or href= at all: CSS and JS are inline
    assert "link" not in parser.tags and "img" not in parser.tags and "iframe" not in parser.tags
    assert parser.tags.count("script") == 1 and parser.tags.count("style") == 1


def test_the_page_fetches_only_its_own_event_stream_by_a_relative_path():
    fetches = re.findall(r"""(?:EventSource|fetch|XMLHttpRequest|WebSocket)\(\s*([^)]*)\)""", PAGE)
    assert fetches == ['"map/events"']


def test_the_page_has_a_legend_and_an_outage_banner():
    assert 'id="legend"' in PAGE and 'id="banner"' in PAGE
    assert "Overlay tunnels, as the kernels hold them" in PAGE
    for state in ("complete", "partial", "unobserved"):
        assert f'<i class="line {state}"></i>' in PAGE  # each tunnel state has its legend

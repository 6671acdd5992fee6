"""Print the fault suite's table at the end of the run, passed or not."""

from __future__ import annotations

from typing import Any

from tests.faults.outcomes import OUTCOMES, render_table


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if OUTCOMES:
        terminalreporter.section("fault suite")
        terminalreporter.write_line(render_table(OUTCOMES))

"""`discoveryctl lab break [SCENARIO] | --reset` and `discoveryctl lab check break`.

One scenario at a time, remembered in the lab's state (``LabState.broken``),
so every command works from a new shell. `lab check break` records a
scenario the learner fixed in ``LabState.breaks_fixed`` (exercise 10's check
reads it); `--reset` undoes a scenario without counting it as fixed.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable

from labs.breaks import faults
from labs.breaks.scenarios import BreakError, Scenario, listing, render_tries, scenario
from labs.plan import LabPlan
from labs.state import BreakRecord, LabState, save_state

NOT_FIXED = 1


def run_break(
    state: LabState, plan: LabPlan, name: str | None, say: Callable[[str], None] = print
) -> int:
    if name is None:
        say(listing())
        if state.broken is not None:
            say(f"\nNow broken: {state.broken.scenario} (discoveryctl lab check break)")
        return 0
    item = scenario(name)
    context = faults.context(state)
    if state.broken is not None:
        current = state.broken
        still = faults.judge_now(state, current)
        if still is not None and current.scenario == item.name:
            # Pasted again: the same scenario is in place already.
            say(f"Lab {state.name!r} is broken already: {item.name}.")
            _tell(item, context, say)
            return 0
        if still is not None:
            raise BreakError(
                f"scenario {current.scenario} is still in place ({still}): fix it "
                "(discoveryctl lab check break) or undo it (discoveryctl lab break --reset) first"
            )
        state.broken = None  # fixed: the lab takes the next one
    why_not = faults.refusal(state, item)
    if why_not:
        raise BreakError(f"cannot break lab {state.name!r} that way: {why_not}")
    details = faults.inject(state, plan, item)
    stamp = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    state.broken = BreakRecord(item.name, stamp, details)
    save_state(state)
    say(f"Lab {state.name!r} is broken: {item.name}.")
    _tell(item, context, say)
    return 0


def _tell(item: Scenario, context: dict[str, str], say: Callable[[str], None]) -> None:
    say("")
    say(f"Symptom: {item.symptom}")
    say("")
    say("Try, with the lab's own tools:")
    for line in render_tries(item, context):
        say(f"  {line}")
    say("")
    say("When you think it is fixed: discoveryctl lab check break")
    say("To give up and undo it:     discoveryctl lab break --reset")


def run_reset(state: LabState, plan: LabPlan, say: Callable[[str], None] = print) -> int:
    if state.broken is None:
        say(f"nothing to undo: no scenario is in place on lab {state.name!r}")
        return 0
    record = state.broken
    item = scenario(record.scenario)
    still = faults.undo(state, plan, item, record, say)
    state.broken = None
    save_state(state)
    if still is not None:
        say(f"{item.name} undone, but the lab does not look right yet: {still}")
        return NOT_FIXED
    say(f"{item.name} undone; what it was: {item.writeup}")
    return 0


def run_check(state: LabState, say: Callable[[str], None] = print) -> int:
    record = state.broken
    if record is None:
        say(f"nothing is broken on lab {state.name!r} (discoveryctl lab break lists the scenarios)")
        return 0
    still = faults.judge_now(state, record)
    if still is not None:
        say(f"{record.scenario}: not fixed yet: {still}")
        return NOT_FIXED
    if not record.fixed:
        record.fixed = True
        if record.scenario not in state.breaks_fixed:
            state.breaks_fixed.append(record.scenario)
        save_state(state)
    say(f"{record.scenario}: fixed. What happened, and why: {scenario(record.scenario).writeup}")
    return 0

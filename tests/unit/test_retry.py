"""Backoff: the pauses of every retry loop (pure policy; sleeping is injected)."""

from __future__ import annotations

import random
import time

import pytest

from discovery.retry import Backoff


def delays(backoff: Backoff, count: int) -> list[float]:
    return [backoff.next_delay() for _ in range(count)]


def test_the_pause_doubles_up_to_the_maximum_and_reset_starts_it_over():
    backoff = Backoff(0.1, 0.5)
    assert delays(backoff, 5) == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5])
    backoff.reset()
    assert delays(backoff, 2) == pytest.approx([0.1, 0.2])


def test_the_same_sequence_as_the_hand_written_loops_it_replaces():
    # delay = MIN; sleep(delay); delay = min(delay * 2, MAX): the loops' own arithmetic.
    for low, high in ((0.2, 0.5), (0.1, 0.5), (0.1, 2.0), (0.2, 5.0), (0.1, 5.0), (0.5, 15.0)):
        expected, delay = [], low
        for _ in range(10):
            expected.append(delay)
            delay = min(delay * 2, high)
        assert delays(Backoff(low, high), 10) == expected


def test_without_a_maximum_the_pause_is_constant():
    assert delays(Backoff(0.2), 3) == [0.2, 0.2, 0.2]


def test_jitter_draws_from_zero_to_the_pause_with_the_given_rng():
    backoff = Backoff(0.05, jitter=True, rng=random.Random(7))
    reference = random.Random(7)
    for _ in range(20):
        assert backoff.next_delay() == reference.uniform(0, 0.05)


@pytest.mark.parametrize(
    ("initial_s", "maximum_s", "factor"), [(-1, None, 2), (0.5, 0.1, 2), (0.1, 1, 0.5)]
)
def test_nonsense_limits_are_refused(initial_s, maximum_s, factor):
    with pytest.raises(ValueError):
        Backoff(initial_s, maximum_s, factor=factor)


async def test_wait_sleeps_the_next_pause_through_the_injected_sleep():
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    backoff = Backoff(0.1, 0.3, sleep=sleep)
    assert [await backoff.wait() for _ in range(3)] == pytest.approx([0.1, 0.2, 0.3])
    assert slept == pytest.approx([0.1, 0.2, 0.3])


async def test_wait_really_sleeps_by_default():
    started = time.monotonic()
    await Backoff(0.05).wait()
    assert time.monotonic() - started >= 0.04

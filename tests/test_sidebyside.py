"""Side-by-side timing: the ratio statistics (bootstrap interval, verdict) and the interleaving.

No timed assertions: the samples are synthetic, or come from steps that return chosen numbers.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import pytest

from csa_cli.measure.sidebyside import MIN_ROUNDS, SideBySide, interleave, interleave_steps
from csa_cli.measure.stats import ratio_spread
from csa_cli.measure.timing import MeasureSettings


def _noisy(center: float, rel: float, n: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [center * (1 + rng.uniform(-rel, rel)) for _ in range(n)]


def test_tight_samples_give_a_claimable_ratio_whose_interval_holds_the_truth() -> None:
    a, b = _noisy(9.0, 0.03, 40, 1), _noisy(10.0, 0.03, 40, 2)
    spread = ratio_spread(a, b)
    assert spread.low <= spread.ratio <= spread.high
    assert spread.low < 0.9 < spread.high  # the true ratio is inside
    assert spread.iqr_low <= spread.iqr_high
    assert spread.claimable and spread.half_width < 0.10
    assert "spread too wide" not in spread.describe()
    assert spread.describe() == f"{spread.ratio:.2f}× [{spread.low:.2f}, {spread.high:.2f}]"


def test_wide_samples_are_called_too_wide_for_the_claim() -> None:
    a, b = _noisy(9.0, 0.6, 10, 3), _noisy(10.0, 0.6, 10, 4)
    spread = ratio_spread(a, b)
    assert not spread.claimable
    assert spread.half_width > 0.10
    assert "spread too wide for the claim" in spread.verdict
    assert "spread too wide for the claim" in spread.describe()


def test_the_interval_narrows_with_more_rounds() -> None:
    few = ratio_spread(_noisy(5.0, 0.3, 8, 5), _noisy(5.0, 0.3, 8, 6))
    many = ratio_spread(_noisy(5.0, 0.3, 400, 5), _noisy(5.0, 0.3, 400, 6))
    assert (many.high - many.low) < (few.high - few.low)


def test_pairing_cancels_a_load_shared_by_both_sides() -> None:
    """A slow period that hits both sides of a round moves the per-round ratio little: the IQR of
    per-round ratios stays tight although each side alone spreads by 4x."""
    load = [1.0 + 3.0 * (i % 2) for i in range(30)]
    a = [2.0 * x for x in load]
    b = [4.0 * x for x in load]
    spread = ratio_spread(a, b)
    assert spread.iqr_low == pytest.approx(0.5) and spread.iqr_high == pytest.approx(0.5)
    assert spread.ratio == pytest.approx(0.5)


def test_bad_samples_are_refused() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        ratio_spread([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="no rounds"):
        ratio_spread([], [])
    with pytest.raises(ValueError, match="non-positive"):
        ratio_spread([1.0], [0.0])


def test_interleaving_rotates_the_order_and_keeps_rounds_paired() -> None:
    calls: list[str] = []

    def step(label: str, value: float) -> Callable[[int], float]:
        def run(i: int) -> float:
            calls.append(label)
            return value

        return run

    settings = MeasureSettings(warmup=2, iterations=6)
    result = interleave_steps({"a": step("a", 2.0), "b": step("b", 4.0), "c": step("c", 1.0)}, settings, baseline="b")
    assert calls[:6] == ["a", "a", "b", "b", "c", "c"]  # warm-up per contender first
    rounds = [calls[6 + 3 * r : 9 + 3 * r] for r in range(6)]
    assert rounds[0] == ["a", "b", "c"] and rounds[1] == ["b", "c", "a"] and rounds[2] == ["c", "a", "b"]
    assert result.rounds == 6 and all(len(v) == 6 for v in result.round_ms.values())
    assert set(result.ratios) == {"a", "c"}
    assert result.ratios["a"].ratio == pytest.approx(0.5) and result.ratios["c"].ratio == pytest.approx(0.25)
    assert result.load_before.cores >= 1
    SideBySide.model_validate_json(result.model_dump_json())  # the record round-trips


def test_a_time_budget_runs_at_least_the_minimum_rounds() -> None:
    steps = {"x": lambda i: 1.0, "y": lambda i: 1.0}
    result = interleave_steps(steps, MeasureSettings(warmup=0, seconds=0.001))
    assert result.rounds >= MIN_ROUNDS
    assert result.ratios["y"].claimable


def test_interleave_opens_every_stepper_at_once_and_closes_them() -> None:
    from contextlib import contextmanager

    state: dict[str, str] = {}

    def opener(label: str) -> Callable[[], AbstractContextManager[Callable[[int], float]]]:
        @contextmanager
        def open_step() -> Iterator[Callable[[int], float]]:
            state[label] = "open"
            assert all(v == "open" for v in state.values())
            yield lambda i: 1.0
            state[label] = "closed"

        return open_step

    interleave({"p": opener("p"), "q": opener("q")}, MeasureSettings(warmup=0, iterations=3))
    assert state == {"p": "closed", "q": "closed"}

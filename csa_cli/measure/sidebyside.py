"""Timing things side by side: every contender interleaved round by round in one run.

On a shared machine the load changes from second to second, so a ratio of two latencies measured
one after the other says as much about when each ran as about the models (issue 16: the same
csa-tiny / convnext-tiny command gave 0.66x to 1.21x). Here every contender is warmed up first,
then each round runs every contender once (`per_round` iterations each), in an order rotated
every round so that none always follows the same neighbour. Both sides of a round saw the same
machine; each ratio comes with a bootstrap 95% interval over rounds (measure/stats.ratio_spread),
and a verdict when that interval is wider than the claim allows (±10%).

The load average (os.getloadavg) before and after is kept beside the samples: a figure measured
under a load above the core count is suspect however narrow its interval.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack

from pydantic import BaseModel, ConfigDict, Field

from csa_cli.measure.stats import RatioSpread, ratio_spread
from csa_cli.measure.timing import DEFAULT_SECONDS, MIN_ITERATIONS, MeasureSettings, Step

MIN_ROUNDS = max(MIN_ITERATIONS, 8)
"""Fewer rounds than this give a bootstrap interval that means little."""


EXTEND_FACTOR = 3.0
"""A time-budgeted run whose ratios are still too wide goes on up to this multiple of its budget."""


CHECK_EVERY = 10
"""While extending, the ratios' intervals are recomputed every this many rounds."""


class LoadAverage(BaseModel):
    """The 1-, 5- and 15-minute load averages (runnable processes), and the core count beside them."""

    model_config = ConfigDict(extra="forbid")

    one: float
    five: float
    fifteen: float
    cores: int

    @classmethod
    def now(cls) -> LoadAverage:
        try:
            one, five, fifteen = os.getloadavg()
        except OSError:  # not every platform has it
            one = five = fifteen = float("nan")
        return cls(one=one, five=five, fifteen=fifteen, cores=os.cpu_count() or 1)

    def describe(self) -> str:
        return f"load {self.one:.2f} / {self.five:.2f} / {self.fifteen:.2f} (1/5/15 min) on {self.cores} cores"


class SideBySide(BaseModel):
    """One interleaved run: per-round medians of every contender, and each one's ratio to the baseline."""

    model_config = ConfigDict(extra="forbid")

    labels: list[str]
    baseline: str
    rounds: int
    per_round: int = Field(description="iterations of each contender per round; the round's value is their median")
    warmup: int = Field(description="iterations of each contender before the first round, discarded")
    samples_ms: dict[str, list[float]] = Field(description="label -> every timed iteration, in order")
    round_ms: dict[str, list[float]] = Field(description="label -> its median in each round")
    ratios: dict[str, RatioSpread] = Field(default_factory=dict, description="label -> its ratio to the baseline (the baseline itself absent)")
    load_before: LoadAverage
    load_after: LoadAverage
    seconds: float

    def ratio(self, label: str) -> RatioSpread | None:
        return self.ratios.get(label)

    def describe(self) -> str:
        return (
            f"interleaved: {len(self.labels)} contenders, {self.rounds} rounds of {self.per_round} iteration(s) each after "
            f"{self.warmup} warm-up, order rotated every round; {self.load_before.describe()} before, {self.load_after.one:.2f} after"
        )


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    return ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2


def _ratios(round_ms: Mapping[str, list[float]], baseline: str) -> dict[str, RatioSpread]:
    base = round_ms[baseline]
    return {label: ratio_spread(values, base) for label, values in round_ms.items() if label != baseline}


def interleave_steps(steps: Mapping[str, Step], settings: MeasureSettings, *, baseline: str | None = None, per_round: int = 1) -> SideBySide:
    """Warm every step up, then run them round by round until the settings' count or budget is spent.

    With a fixed count, `settings.iterations` rounds. With a time budget, rounds until every
    contender has had its budget (the budget is per contender, as for one model alone, at least
    MIN_ROUNDS); then, while a ratio's interval is still wider than the claim, on to
    EXTEND_FACTOR times that budget.
    """
    labels = list(steps)
    if not labels:
        raise ValueError("nothing to time")
    baseline = baseline if baseline is not None else labels[0]
    if baseline not in steps:
        raise ValueError(f"baseline {baseline!r} is not among {labels}")
    load_before = LoadAverage.now()
    start = time.perf_counter()
    counters = dict.fromkeys(labels, 0)
    for label in labels:
        for _ in range(settings.warmup):
            steps[label](counters[label])
            counters[label] += 1
    samples: dict[str, list[float]] = {label: [] for label in labels}
    round_ms: dict[str, list[float]] = {label: [] for label in labels}
    budget = None if settings.iterations is not None else (settings.seconds or DEFAULT_SECONDS) * len(labels)
    t0 = time.perf_counter()

    def more(r: int) -> bool:
        if settings.iterations is not None:
            return r < max(settings.iterations, 1)
        elapsed = time.perf_counter() - t0
        if r < MIN_ROUNDS or elapsed < (budget or 0):
            return True
        if len(labels) > 1 and elapsed < (budget or 0) * EXTEND_FACTOR:
            if r % CHECK_EVERY:  # the bootstrap costs: look again only every few rounds
                return True
            return not all(s.claimable for s in _ratios(round_ms, baseline).values())
        return False

    r = 0
    while more(r):
        for k in range(len(labels)):
            label = labels[(r + k) % len(labels)]
            these = []
            for _ in range(per_round):
                these.append(steps[label](counters[label]))
                counters[label] += 1
            samples[label].extend(these)
            round_ms[label].append(_median(these))
        r += 1
    return SideBySide(
        labels=labels,
        baseline=baseline,
        rounds=r,
        per_round=per_round,
        warmup=settings.warmup,
        samples_ms=samples,
        round_ms=round_ms,
        ratios=_ratios(round_ms, baseline) if len(labels) > 1 else {},
        load_before=load_before,
        load_after=LoadAverage.now(),
        seconds=time.perf_counter() - start,
    )


def interleave(
    contenders: Mapping[str, Callable[[], AbstractContextManager[Step]]],
    settings: MeasureSettings,
    *,
    baseline: str | None = None,
    per_round: int = 1,
) -> SideBySide:
    """Open every contender's stepper (each a context manager yielding a Step) at once, then interleave them."""
    with ExitStack() as stack:
        steps = {label: stack.enter_context(open_step()) for label, open_step in contenders.items()}
        return interleave_steps(steps, settings, baseline=baseline, per_round=per_round)

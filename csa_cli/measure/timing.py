"""How a latency is measured, the same way on every backend.

Warm-up iterations first, excluded from the statistics; then a fixed iteration count, or a time
budget (at least MIN_ITERATIONS). Each iteration takes the next input of a small pool of distinct
random batches, so that caches cannot flatter a loop that reads the same bytes again and again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

DEFAULT_BATCHES = (1, 4, 8, 16)


DEFAULT_WARMUP = 3


DEFAULT_SECONDS = 2.0


MIN_ITERATIONS = 5


MAX_ITERATIONS = 10_000


POOL_SIZE = 4


class MeasureSettings(BaseModel):
    """How long to measure: warm-up, then a fixed count or a time budget per batch size."""

    model_config = ConfigDict(extra="forbid")

    warmup: int = Field(default=DEFAULT_WARMUP, ge=0)
    iterations: int | None = Field(default=None, ge=1)
    seconds: float | None = Field(default=None, gt=0)
    pool: int = Field(default=POOL_SIZE, ge=1, description="distinct input batches the iterations rotate through")
    seed: int = 0

    @model_validator(mode="after")
    def _one_stop_rule(self) -> MeasureSettings:
        if self.iterations is not None and self.seconds is not None:
            raise ValueError("give a fixed iteration count or a time budget, not both")
        return self

    def describe(self) -> str:
        if self.iterations is not None:
            return f"{self.iterations} iterations after {self.warmup} warm-up"
        return f"{self.seconds or DEFAULT_SECONDS:g} s budget (at least {MIN_ITERATIONS} iterations) after {self.warmup} warm-up"


Step = Callable[[int], float]
"""Runs iteration i (on input i mod pool size) and returns its latency in milliseconds."""


def run_timed(step: Step, settings: MeasureSettings) -> list[float]:
    """Warm-up (discarded), then a fixed count or a time budget of timed iterations."""
    for i in range(settings.warmup):
        step(i)
    samples: list[float] = []
    i = settings.warmup
    if settings.iterations is not None:
        for _ in range(settings.iterations):
            samples.append(step(i))
            i += 1
        return samples
    deadline = time.perf_counter() + (settings.seconds or DEFAULT_SECONDS)
    while len(samples) < MIN_ITERATIONS or (time.perf_counter() < deadline and len(samples) < MAX_ITERATIONS):
        samples.append(step(i))
        i += 1
    return samples


def wall_clock_step(fn: Callable[[Any], Any], pool: Sequence[Any]) -> Step:
    """A step timed on the host clock (for backends whose call returns when the work is done)."""

    def step(i: int) -> float:
        x = pool[i % len(pool)]
        t0 = time.perf_counter_ns()
        fn(x)
        return (time.perf_counter_ns() - t0) / 1e6

    return step


def random_pool(batch: int, img_size: tuple[int, int], settings: MeasureSettings, channels: int = 3) -> list[Any]:
    """Distinct float32 NCHW batches (numpy), reproducible from the seed."""
    import numpy as np

    rng = np.random.default_rng(settings.seed)
    return [rng.standard_normal((batch, channels, *img_size), dtype=np.float32) for _ in range(settings.pool)]

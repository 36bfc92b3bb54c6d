"""Statistics of timed samples, the way trtexec reports them.

Median, p90 and p99 by nearest rank (the sample at rank ceil(p/100 * n)), mean, sample standard
deviation, min and max; throughput is batch / median latency, per-image latency median / batch.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field


class LatencyStats(BaseModel):
    """Statistics of one batch size's samples (milliseconds per inference of the whole batch)."""

    model_config = ConfigDict(extra="forbid")

    batch: int = Field(ge=1)
    iterations: int = Field(ge=1)
    warmup: int = Field(ge=0)
    median_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    throughput_ips: float = Field(description="images per second at the median latency")
    per_image_ms: float = Field(description="median latency / batch")


def nearest_rank(sorted_samples: Sequence[float], percent: float) -> float:
    """The nearest-rank percentile: the sample at rank ceil(percent/100 * n) (1-based)."""
    if not sorted_samples:
        raise ValueError("no samples")
    if not 0 <= percent <= 100:
        raise ValueError(f"percentile {percent} outside 0..100")
    n = len(sorted_samples)
    # Integer arithmetic where possible, so that 90% of 100 samples is rank 90, not 91.
    rank = math.ceil(round(percent * n, 9) / 100)
    return float(sorted_samples[min(max(rank, 1), n) - 1])


def summarize(samples_ms: Sequence[float], batch: int, warmup: int) -> LatencyStats:
    """Statistics of one batch size's samples."""
    if not samples_ms:
        raise ValueError("no samples to summarize")
    ordered = sorted(float(s) for s in samples_ms)
    median = float(statistics.median(ordered))
    return LatencyStats(
        batch=batch,
        iterations=len(ordered),
        warmup=warmup,
        median_ms=median,
        p90_ms=nearest_rank(ordered, 90),
        p99_ms=nearest_rank(ordered, 99),
        mean_ms=float(statistics.fmean(ordered)),
        std_ms=float(statistics.stdev(ordered)) if len(ordered) > 1 else 0.0,
        min_ms=ordered[0],
        max_ms=ordered[-1],
        throughput_ips=batch / median * 1e3 if median > 0 else float("inf"),
        per_image_ms=median / batch,
    )

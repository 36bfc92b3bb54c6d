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


# ---------------------------------------------------------------------------------------------
# ratios between things measured side by side (measure/sidebyside.py)
# ---------------------------------------------------------------------------------------------

CLAIM_TOLERANCE = 0.10
"""A ratio is stated only when its 95% interval lies within ±10% of it (issue 16's bar)."""


BOOTSTRAP_RESAMPLES = 2000


class RatioSpread(BaseModel):
    """A ratio of medians (a / b) with its spread across interleaved rounds.

    The 95% interval is a percentile bootstrap over rounds, resampled in pairs (round i of a with
    round i of b), since both sides of one round saw the same machine (Efron & Tibshirani, An
    Introduction to the Bootstrap, ch. 13). The IQR is that of the per-round ratios.
    """

    model_config = ConfigDict(extra="forbid")

    ratio: float = Field(description="median of a's rounds / median of b's rounds")
    low: float = Field(description="2.5th percentile of the bootstrapped ratio of medians")
    high: float = Field(description="97.5th percentile of the bootstrapped ratio of medians")
    iqr_low: float = Field(description="25th percentile of the per-round ratios")
    iqr_high: float = Field(description="75th percentile of the per-round ratios")
    rounds: int = Field(ge=1)
    tolerance: float = CLAIM_TOLERANCE

    @property
    def half_width(self) -> float:
        """The interval's larger side, relative to the ratio (0.05 means ±5%)."""
        return max(self.ratio - self.low, self.high - self.ratio) / self.ratio if self.ratio > 0 else float("inf")

    @property
    def claimable(self) -> bool:
        return self.half_width <= self.tolerance

    @property
    def verdict(self) -> str:
        if self.claimable:
            return f"95% interval within ±{self.tolerance:.0%}"
        return f"spread too wide for the claim (95% interval ±{self.half_width:.0%}, more than ±{self.tolerance:.0%})"

    def describe(self, digits: int = 2) -> str:
        """'0.91× [0.88, 0.94]', or the verdict beside it when the interval is too wide."""
        text = f"{self.ratio:.{digits}f}× [{self.low:.{digits}f}, {self.high:.{digits}f}]"
        return text if self.claimable else f"{text}: {self.verdict}"


def ratio_spread(a: Sequence[float], b: Sequence[float], *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> RatioSpread:
    """The ratio of medians of paired per-round samples a[i], b[i], with a bootstrap 95% interval."""
    import random

    if len(a) != len(b):
        raise ValueError(f"paired rounds differ in length: {len(a)} vs {len(b)}")
    if not a:
        raise ValueError("no rounds")
    if min(b) <= 0:
        raise ValueError("the reference side has a non-positive sample")
    rng = random.Random(seed)
    n = len(a)
    boots = []
    for _ in range(resamples):
        picks = [rng.randrange(n) for _ in range(n)]
        boots.append(statistics.median(a[i] for i in picks) / statistics.median(b[i] for i in picks))
    boots.sort()
    per_round = sorted(x / y for x, y in zip(a, b, strict=True))
    return RatioSpread(
        ratio=float(statistics.median(a) / statistics.median(b)),
        low=nearest_rank(boots, 2.5),
        high=nearest_rank(boots, 97.5),
        iqr_low=nearest_rank(per_round, 25),
        iqr_high=nearest_rank(per_round, 75),
        rounds=n,
    )

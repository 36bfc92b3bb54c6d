"""How an engine is fed and timed, decided without TensorRT or CUDA (the executor only applies it).

- `chunks`: a batch of any size cut into calls the engine accepts. A static engine takes exactly
  its batch; a dynamic one any batch inside its optimization profile [min, max], and
  IExecutionContext.set_input_shape refuses a shape outside it. A chunk smaller than the smallest
  shape the engine takes is padded up to it, and the padding's outputs are dropped.
- `timed_run` / `split_times`: one inference timed the way trtexec reports it, with four CUDA
  events around the host-to-device copy, the engine's execution (execute_async_v3) and the
  device-to-host copy. trtexec's latency is "the summation of H2D Latency, GPU Compute Time, and
  D2H Latency" (samples/common/sampleReporting.cpp, 8.6: printMetricExplanations), and its
  --exportTimes entries carry h2dMs, computeMs and d2hMs beside latencyMs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from csa_cli.errors import CsaError


class Chunk(BaseModel):
    """Rows [start, stop) of the caller's batch, fed to the engine as a batch of `feed` rows (feed - (stop - start) of padding)."""

    model_config = ConfigDict(frozen=True)

    start: int
    stop: int
    feed: int

    @property
    def rows(self) -> int:
        return self.stop - self.start

    @property
    def padding(self) -> int:
        return self.feed - self.rows


def chunks(n: int, *, lo: int, hi: int) -> list[Chunk]:
    """Cut n rows into engine calls of at most `hi` rows, each padded up to at least `lo`."""
    if lo < 1 or hi < lo:
        raise CsaError(f"an engine's batch range must satisfy 1 <= min <= max, got [{lo}, {hi}]")
    out = []
    for start in range(0, n, hi):
        stop = min(n, start + hi)
        out.append(Chunk(start=start, stop=stop, feed=max(stop - start, lo)))
    return out


class StepTimes(BaseModel):
    """One inference in milliseconds: host-to-device copy, the engine's GPU compute, device-to-host copy."""

    model_config = ConfigDict(frozen=True)

    h2d_ms: float
    compute_ms: float
    d2h_ms: float

    @property
    def latency_ms(self) -> float:
        return self.h2d_ms + self.compute_ms + self.d2h_ms


def split_times(marks_ms: Sequence[float]) -> StepTimes:
    """The three spans from the elapsed times of events 1, 2, 3 measured from event 0 (end of H2D, of compute, of D2H)."""
    if len(marks_ms) != 3:
        raise CsaError(f"a timed inference needs 3 event marks after the first, got {len(marks_ms)}")
    h2d, compute_end, d2h_end = (float(m) for m in marks_ms)
    if not 0 <= h2d <= compute_end <= d2h_end:
        raise CsaError(f"CUDA event marks out of order: {list(marks_ms)} ms")
    return StepTimes(h2d_ms=h2d, compute_ms=compute_end - h2d, d2h_ms=d2h_end - compute_end)


class Event(Protocol):
    """What torch.cuda.Event offers (record on the current stream, wait, elapsed milliseconds)."""

    def record(self) -> Any: ...

    def synchronize(self) -> Any: ...

    def elapsed_time(self, end: Any) -> float: ...


def timed_run(h2d: Callable[[], Any], compute: Callable[[], Any], d2h: Callable[[], Any], new_event: Callable[[], Event]) -> StepTimes:
    """Enqueue one inference between four events and return its spans (waits for the last event)."""
    marks = [new_event() for _ in range(4)]
    marks[0].record()
    h2d()
    marks[1].record()
    compute()
    marks[2].record()
    d2h()
    marks[3].record()
    marks[3].synchronize()
    return split_times([marks[0].elapsed_time(m) for m in marks[1:]])


def median_split(times: Sequence[StepTimes]) -> dict[str, float]:
    """Median of each span over the timed iterations (what a profile row reports beside the latency)."""
    import statistics

    if not times:
        raise CsaError("no timed inferences")
    return {
        "h2d_ms": float(statistics.median(t.h2d_ms for t in times)),
        "compute_ms": float(statistics.median(t.compute_ms for t in times)),
        "d2h_ms": float(statistics.median(t.d2h_ms for t in times)),
    }

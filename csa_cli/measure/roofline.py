"""A roofline view: the machine's measured peaks and each model's time floor.

The floor of one inference is max(2 * MACs / peak FLOP rate, bytes moved / memory bandwidth):
no run can beat both the arithmetic and the traffic it must do. The peaks are measured here,
once per (device, dtype, threads, library version), and cached under CSA_HOME/roofline/:
- peak FLOP rate: the best of several large square matmuls in torch (fp32; fp16 on CUDA for
  an fp16 profile, since tensor cores change the ceiling);
- memory bandwidth: the best of several copies of a buffer much larger than any cache
  (a copy reads and writes every byte, so bytes = 2 x buffer size).
Both are maxima over repetitions: a floor must be optimistic to stay a floor.
MACs and bytes come from the static cost model (an estimate from the ONNX graph).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from csa_cli.measure.machine import cpu_model
from csa_cli.paths import atomic_write_text, csa_home

ROOFLINE_SCHEMA = 1
Bound = Literal["compute", "memory"]


class MachinePeaks(BaseModel):
    """CSA_HOME/roofline/<key>.json: the peaks a floor is computed from."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = Field(default=ROOFLINE_SCHEMA, alias="schema")
    device: str = Field(description="cpu | cuda:0 ...")
    device_name: str
    dtype: Literal["float32", "float16"]
    threads: int | None = Field(default=None, description="CPU threads the peaks were measured with (None on CUDA)")
    peak_gflops: float = Field(gt=0, description="best measured matmul rate, GFLOP/s (1 MAC = 2 FLOP)")
    bandwidth_gbs: float = Field(gt=0, description="best measured copy bandwidth, GB/s (10^9 bytes/s)")
    matmul_n: int
    copy_bytes: int
    repeats: int
    torch_version: str
    measured_at: float


class Floor(BaseModel):
    """The time floor of one inference of `batch` images."""

    model_config = ConfigDict(extra="forbid")

    batch: int
    macs: int = Field(description="multiply-accumulates for the whole batch (static estimate)")
    bytes: int = Field(description="bytes read + written for the whole batch (static estimate)")
    compute_ms: float
    memory_ms: float
    floor_ms: float
    bound: Bound


def _cache_path(key: str) -> Path:
    return csa_home() / "roofline" / f"{key}.json"


def peaks_key(device: str, dtype: str, threads: int | None, device_name: str, torch_version: str) -> str:
    blob = json.dumps([device, dtype, threads, device_name, torch_version])
    return f"{device.replace(':', '')}-{dtype}-t{threads or 0}-{hashlib.sha256(blob.encode()).hexdigest()[:10]}"


def measure_peaks(
    device: str = "cpu",
    *,
    dtype: Literal["float32", "float16"] = "float32",
    threads: int | None = None,
    matmul_n: int | None = None,
    copy_mib: int | None = None,
    repeats: int = 15,
) -> MachinePeaks:
    """Measure the peak matmul rate and copy bandwidth now (no cache).

    Many short repetitions, keeping the best: on a shared machine the fastest repetition is
    the one least disturbed by other work, and a floor must not be set by a disturbed one.

    Long because a fair peak needs its warm-up, its thread and TF32 settings restored, and the best
    of many repeats, all around two timed lines.
    """
    import torch

    on_cuda = device.startswith("cuda")
    torch_dtype = torch.float16 if dtype == "float16" else torch.float32
    if dtype == "float16" and not on_cuda:
        raise ValueError("fp16 peaks are measured on CUDA only")
    # Sizes: big enough to reach the steady state (and, for the copy, to leave every cache).
    n = matmul_n or (8192 if on_cuda else 1024)
    copy_bytes = (copy_mib or (1024 if on_cuda else 64)) * 1024 * 1024
    saved_threads = torch.get_num_threads()
    saved_tf32 = torch.backends.cuda.matmul.allow_tf32
    if on_cuda and dtype == "float32":
        # cuDNN convolutions use TF32 by default: the fp32 ceiling must include it.
        torch.backends.cuda.matmul.allow_tf32 = True
    if threads and not on_cuda:
        torch.set_num_threads(threads)
    try:
        a = torch.randn(n, n, device=device, dtype=torch_dtype)
        b = torch.randn(n, n, device=device, dtype=torch_dtype)
        src = torch.empty(copy_bytes // 4, device=device, dtype=torch.float32).fill_(1.0)
        dst = torch.empty_like(src)

        def timed(fn: object) -> float:
            if on_cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()  # type: ignore[operator]
                end.record()
                end.synchronize()
                return float(start.elapsed_time(end)) / 1e3
            t0 = time.perf_counter()
            fn()  # type: ignore[operator]
            return time.perf_counter() - t0

        with torch.inference_mode():
            torch.mm(a, b)  # warm-up: allocation, kernel selection, thread pool start
            dst.copy_(src)
            mm_s = min(timed(lambda: torch.mm(a, b)) for _ in range(repeats))
            copy_s = min(timed(lambda: dst.copy_(src)) for _ in range(repeats))
    finally:
        torch.set_num_threads(saved_threads)
        torch.backends.cuda.matmul.allow_tf32 = saved_tf32
    name = torch.cuda.get_device_name(torch.device(device)) if on_cuda else cpu_model()
    return MachinePeaks(
        device=device,
        device_name=name,
        dtype=dtype,
        threads=None if on_cuda else (threads or saved_threads),
        peak_gflops=2.0 * n**3 / mm_s / 1e9,
        bandwidth_gbs=2.0 * copy_bytes / copy_s / 1e9,
        matmul_n=n,
        copy_bytes=copy_bytes,
        repeats=repeats,
        torch_version=str(torch.__version__),
        measured_at=time.time(),
    )


def machine_peaks(
    device: str = "cpu",
    *,
    dtype: Literal["float32", "float16"] = "float32",
    threads: int | None = None,
    refresh: bool = False,
) -> MachinePeaks:
    """The cached peaks for this device, dtype and thread count; measured once, on first use.

    refresh=True measures again and keeps, for each peak, the better of the old and new figure.
    """
    import torch

    on_cuda = device.startswith("cuda")
    threads = None if on_cuda else (threads or torch.get_num_threads() or os.cpu_count() or 1)
    name = torch.cuda.get_device_name(torch.device(device)) if on_cuda else cpu_model()
    path = _cache_path(peaks_key(device, dtype, threads, name, str(torch.__version__)))
    if path.is_file() and not refresh:
        try:
            return MachinePeaks.model_validate_json(path.read_text())
        except (ValidationError, ValueError):
            pass  # a stale or foreign file: measure again and replace it
    peaks = measure_peaks(device, dtype=dtype, threads=threads)
    if refresh and path.is_file():
        # A refresh can only raise the peaks: the best rate ever seen is the honest ceiling.
        try:
            old = MachinePeaks.model_validate_json(path.read_text())
            peaks = peaks.model_copy(
                update={"peak_gflops": max(old.peak_gflops, peaks.peak_gflops), "bandwidth_gbs": max(old.bandwidth_gbs, peaks.bandwidth_gbs)}
            )
        except (ValidationError, ValueError):
            pass
    atomic_write_text(path, peaks.model_dump_json(by_alias=True, indent=2))
    return peaks


def time_floor(macs: int, nbytes: int, peaks: MachinePeaks, batch: int = 1) -> Floor:
    """max(2 * MACs / peak FLOP rate, bytes / bandwidth), in milliseconds, for one batch."""
    compute_ms = 2.0 * macs / (peaks.peak_gflops * 1e9) * 1e3
    memory_ms = nbytes / (peaks.bandwidth_gbs * 1e9) * 1e3
    bound: Bound = "compute" if compute_ms >= memory_ms else "memory"
    return Floor(batch=batch, macs=macs, bytes=nbytes, compute_ms=compute_ms, memory_ms=memory_ms, floor_ms=max(compute_ms, memory_ms), bound=bound)

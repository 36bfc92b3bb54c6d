"""Latency profiling: torch (CPU, or CUDA with events and CUDA graphs), ONNX Runtime, TensorRT.

How a number is made, the same way on every backend:
- warm-up iterations first, excluded from the statistics;
- then a fixed iteration count, or a time budget (at least MIN_ITERATIONS);
- each iteration takes the next input of a small pool of distinct random batches, so that
  caches cannot flatter a loop that reads the same bytes again and again;
- statistics: median, p90 and p99 by nearest rank (the sample at rank ceil(p/100 * n), as
  trtexec reports percentiles), mean, sample standard deviation, min and max; throughput is
  batch / median latency, per-image latency median / batch.
Memory traffic and MACs per frame come from the static cost model of the ONNX graph: an
estimate, labelled so. With the machine's measured peaks (measure/roofline.py) they give each
batch a time floor, and the measured median as a multiple of it.
"""

from __future__ import annotations

import importlib.metadata
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from csa_cli import events
from csa_cli.errors import CsaError, MissingBackend, UsageError
from csa_cli.measure.roofline import MachinePeaks, cpu_model, machine_peaks, time_floor
from csa_cli.records import Record, make_record
from csa_cli.store import artifact_key, store_result

ProfileBackend = Literal["torch", "onnxruntime", "tensorrt"]
Precision = Literal["fp32", "fp16", "int8", "mixed"]

DEFAULT_BATCHES = (1, 4, 8, 16)
DEFAULT_WARMUP = 3
DEFAULT_SECONDS = 2.0
MIN_ITERATIONS = 5
MAX_ITERATIONS = 10_000
POOL_SIZE = 4
TRAFFIC_LABEL = "estimate (static, from the ONNX graph)"
BUNDLE_MARKERS = ("validate.sh", "build.sh", "plan.json")
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


# ---------------------------------------------------------------------------------------------
# pydantic models: settings, statistics, costs, the machine, the result
# ---------------------------------------------------------------------------------------------


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


class FrameCost(BaseModel):
    """Static cost of one frame when run at `batch` (weights are read once per batch)."""

    model_config = ConfigDict(extra="forbid")

    batch: int
    macs_per_frame: int
    bytes_read_per_frame: int
    bytes_written_per_frame: int
    traffic_bytes_per_frame: int
    label: str = TRAFFIC_LABEL


class BatchResult(LatencyStats):
    """One row of a profile: the measured statistics, the static estimate, the roofline floor."""

    macs_per_frame: int | None = None
    traffic_bytes_per_frame: int | None = Field(default=None, description=f"bytes read + written per frame, {TRAFFIC_LABEL}")
    floor_ms: float | None = Field(default=None, description="roofline time floor for the whole batch")
    floor_bound: Literal["compute", "memory"] | None = None
    x_floor: float | None = Field(default=None, description="median latency / floor (>= 1 for an honest measurement)")


class MachineInfo(BaseModel):
    """Where a profile was measured."""

    model_config = ConfigDict(extra="forbid")

    cpu: str
    cpu_count: int
    threads: int | None
    gpu: str | None = None
    cuda: str | None = None
    os: str
    python: str
    libraries: dict[str, str]

    def title(self, device: str = "cpu") -> str:
        if device.startswith("cuda") and self.gpu:
            return self.gpu
        threads = self.threads or self.cpu_count
        return f"{self.cpu}, {threads} thread{'s' if threads != 1 else ''}"


class ProfileResult(BaseModel):
    """A whole profile of one model on one backend: what `csa profile` prints and stores."""

    model_config = ConfigDict(extra="forbid")

    model: str
    backend: ProfileBackend
    device: str
    precision: str
    provider: str | None = None
    threads: int | None = None
    cuda_graphs: bool | None = None
    path: str | None = Field(default=None, description="the ONNX or engine profiled (None for a torch module)")
    weights: str | None = None
    weights_hash: str | None = None
    img_size: tuple[int, int]
    settings: str
    results: list[BatchResult]
    traffic_label: str = TRAFFIC_LABEL
    roofline: MachinePeaks | None = None
    roofline_note: str | None = None
    machine: MachineInfo

    def to_record(self) -> Record:
        data = self.model_dump(mode="json", by_alias=True)
        return make_record("profile", **data)

    def result_at(self, batch: int) -> BatchResult | None:
        return next((r for r in self.results if r.batch == batch), None)


class ProfileOptions(BaseModel):
    """Everything `csa profile` lets a user choose, validated once."""

    model_config = ConfigDict(extra="forbid")

    backend: ProfileBackend | None = None
    batches: list[int] | None = None
    threads: int | None = Field(default=None, ge=1)
    device: str | None = Field(default=None, description="cpu | cuda | cuda:N; default: cuda for torch where present, else cpu")
    precision: Literal["fp32", "fp16"] = "fp32"
    cuda_graphs: bool = True
    dynamic_batch: bool = False
    weights: str = "auto"
    img_size: tuple[int, int] | None = None
    estimate: bool = Field(default=True, description="static traffic/MACs estimate and roofline floor")
    store: bool = True
    manifest: str | None = None
    measure: MeasureSettings = Field(default_factory=MeasureSettings)

    @model_validator(mode="after")
    def _positive_batches(self) -> ProfileOptions:
        if self.batches is not None and (not self.batches or min(self.batches) < 1):
            raise ValueError("batch sizes must be at least 1")
        return self


# ---------------------------------------------------------------------------------------------
# statistics and the measurement loop
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# probes: one per backend, each turning a batch size into a timed step
# ---------------------------------------------------------------------------------------------


class Probe(Protocol):
    backend: ProfileBackend
    device: str
    precision: str
    provider: str | None
    threads: int | None
    cuda_graphs: bool | None
    img_size: tuple[int, int]

    def batches(self, requested: Sequence[int] | None) -> list[int]:
        """The batch sizes to measure (a static-batch artifact allows only its own)."""
        ...

    @contextmanager
    def stepper(self, batch: int, settings: MeasureSettings) -> Iterator[Step]: ...


class TorchProbe:
    """A torch module on the CPU (threads) or on CUDA (events; CUDA graphs by default)."""

    backend: ProfileBackend = "torch"

    def __init__(
        self,
        module: Any,
        img_size: tuple[int, int],
        *,
        device: str = "cpu",
        precision: str = "fp32",
        threads: int | None = None,
        cuda_graphs: bool = True,
    ) -> None:
        import torch

        self.on_cuda = device.startswith("cuda")
        if self.on_cuda and not torch.cuda.is_available():
            raise MissingBackend("--device cuda: no CUDA GPU here", hint="profile on the CPU (--device cpu) or run on a machine with an NVIDIA GPU")
        if precision == "fp16" and not self.on_cuda:
            raise UsageError("--precision fp16 needs --device cuda (CPU fp16 inference is not a deployment target)", hint="use --precision fp32 on the CPU")
        if precision not in ("fp32", "fp16"):
            raise UsageError(f"the torch backend runs fp32 or fp16, not {precision}", hint="profile a quantized ONNX with --backend onnxruntime")
        self.device = "cuda:0" if device == "cuda" else device
        self.precision = precision
        self.dtype = torch.float16 if precision == "fp16" else torch.float32
        self.module = module.eval().to(device=self.device, dtype=self.dtype)
        self.img_size = img_size
        self.threads = None if self.on_cuda else (threads or torch.get_num_threads())
        self.cuda_graphs = cuda_graphs if self.on_cuda else None
        self.provider = None

    def batches(self, requested: Sequence[int] | None) -> list[int]:
        return list(requested or DEFAULT_BATCHES)

    @contextmanager
    def stepper(self, batch: int, settings: MeasureSettings) -> Iterator[Step]:
        import torch

        pool = [torch.from_numpy(x) for x in random_pool(batch, self.img_size, settings)]
        if not self.on_cuda:
            saved = torch.get_num_threads()
            torch.set_num_threads(self.threads or saved)
            try:
                with torch.inference_mode():
                    yield wall_clock_step(self.module, pool)
            finally:
                torch.set_num_threads(saved)
            return
        saved_benchmark = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = True  # let cuDNN pick its fastest kernels, as TensorRT does
        try:
            with torch.no_grad():
                yield self._cuda_step([x.to(self.device, self.dtype) for x in pool])
            torch.cuda.synchronize()
        finally:
            torch.backends.cudnn.benchmark = saved_benchmark

    def _cuda_step(self, pool: list[Any]) -> Step:
        """CUDA events around each launch; with graphs, one captured graph per pool input."""
        import torch

        replays: list[Callable[[], Any]] = []
        if self.cuda_graphs:
            # Capture needs a side-stream warm-up first (cudnn/cublas pick their kernels there).
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):
                    self.module(pool[0])
            torch.cuda.current_stream().wait_stream(side)
            # One graph per pool input, each with its own memory pool: replays never share buffers.
            for x in pool:
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    self.module(x)
                replays.append(graph.replay)
        else:
            replays = [lambda x=x: self.module(x) for x in pool]
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

        def step(i: int) -> float:
            start.record()
            replays[i % len(replays)]()
            end.record()
            end.synchronize()
            return float(start.elapsed_time(end))

        return step


class OrtProbe:
    """ONNX Runtime on one ONNX with a dynamic batch axis, or one static ONNX per batch size."""

    backend: ProfileBackend = "onnxruntime"
    cuda_graphs = None

    def __init__(self, paths: dict[int, Path] | Path, *, threads: int | None = None, device: str = "cpu") -> None:
        import onnxruntime as ort

        self.paths = paths
        self.device = "cuda:0" if device == "cuda" else device
        if self.device.startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise MissingBackend("--device cuda: this onnxruntime has no CUDAExecutionProvider", hint="install onnxruntime-gpu, or profile on the CPU")
            self.providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        else:
            self.providers = ["CPUExecutionProvider"]
        self.threads = threads or os.cpu_count() or 1
        first = paths if isinstance(paths, Path) else paths[min(paths)]
        info = onnx_input_info(first)
        self.static_batch = info.batch
        self.img_size = info.img_size
        self.channels = info.channels
        self.precision = "int8" if info.quantized else "fp32"
        self.metadata = info.metadata
        self.provider: str | None = self.providers[0]

    def batches(self, requested: Sequence[int] | None) -> list[int]:
        if not isinstance(self.paths, Path):
            return sorted(self.paths)
        if self.static_batch is None:
            return list(requested or DEFAULT_BATCHES)
        if requested and list(requested) != [self.static_batch]:
            raise UsageError(
                f"{self.paths} has a static batch of {self.static_batch}; it cannot run --batch {','.join(map(str, requested))}",
                hint=f"use --batch {self.static_batch}, export with --dynamic-batch, or profile the MODEL (exported per batch)",
            )
        return [self.static_batch]

    def session(self, path: Path) -> Any:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        sess = ort.InferenceSession(str(path), sess_options=opts, providers=self.providers)
        self.provider = sess.get_providers()[0]
        return sess

    @contextmanager
    def stepper(self, batch: int, settings: MeasureSettings) -> Iterator[Step]:
        path = self.paths if isinstance(self.paths, Path) else self.paths[batch]
        sess = self.session(path)
        name = sess.get_inputs()[0].name
        outputs = [o.name for o in sess.get_outputs()]
        pool = random_pool(batch, self.img_size, settings, self.channels)
        yield wall_clock_step(lambda x: sess.run(outputs, {name: x}), pool)


class BackendProbe:
    """Any csa backend (csa_cli.backends.open_backend): how a TensorRT engine is profiled.

    One backend with a dynamic batch serves every batch size; static engines come one per batch.
    """

    cuda_graphs = None

    def __init__(self, backends: dict[int, Any] | Any, img_size: tuple[int, int] | None = None) -> None:
        first = backends[min(backends)] if isinstance(backends, dict) else backends
        described = first.describe() or {}
        if isinstance(backends, dict):
            self.by_batch: dict[int, Any] | None = dict(backends)
            self.dynamic = False
        else:
            dynamic = bool(described.get("dynamic_batch"))
            batch = described.get("engine_batch")
            self.by_batch = None if dynamic or not isinstance(batch, int) else {batch: backends}
            self.dynamic = self.by_batch is None
        self.single = first
        self.backend: ProfileBackend = first.name
        self.device = first.device
        self.precision = first.precision
        self.provider = described.get("provider") or (f"TensorRT {described['tensorrt']}" if described.get("tensorrt") else None)
        self.threads = described.get("threads")
        chw = getattr(first, "_chw", None)  # the engine's input shape, where the backend exposes it
        self.img_size = tuple(int(d) for d in chw[1:]) if chw and len(chw) == 3 else (img_size or (224, 224))

    def batches(self, requested: Sequence[int] | None) -> list[int]:
        if self.by_batch is None:
            return list(requested or DEFAULT_BATCHES)
        if requested:
            missing = [b for b in requested if b not in self.by_batch]
            if missing:
                raise UsageError(
                    f"no engine for batch {', '.join(map(str, missing))} (engines: batch {', '.join(map(str, sorted(self.by_batch)))})",
                    hint="build one engine per batch size with `csa engine --batch ...`, or drop --batch",
                )
            return list(requested)
        return sorted(self.by_batch)

    @contextmanager
    def stepper(self, batch: int, settings: MeasureSettings) -> Iterator[Step]:
        impl = self.single if self.by_batch is None else self.by_batch[batch]
        # The backend's run() returns host outputs, so it has synchronized: host time is latency.
        yield wall_clock_step(impl.run, random_pool(batch, self.img_size, settings))


# ---------------------------------------------------------------------------------------------
# ONNX facts, static costs, the machine
# ---------------------------------------------------------------------------------------------


class OnnxInputInfo(BaseModel):
    batch: int | None = Field(description="the static batch, or None for a dynamic batch axis")
    channels: int
    img_size: tuple[int, int]
    quantized: bool
    metadata: dict[str, str]


def onnx_input_info(path: Path) -> OnnxInputInfo:
    """The first input's batch (None if dynamic), channels and size; whether it holds Q/DQ."""

    from csa_cli.graph.onnx_file import load_onnx

    proto = load_onnx(path, load_external_data=False)
    initializers = {i.name for i in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in initializers]
    if not inputs:
        raise CsaError(f"{path} has no graph input")
    dims = inputs[0].type.tensor_type.shape.dim
    if len(dims) != 4:
        raise CsaError(f"{path}: input {inputs[0].name!r} is not NCHW (rank {len(dims)})")

    def static(d: Any) -> int | None:
        return int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else None

    n, c, h, w = (static(d) for d in dims)
    if c is None or h is None or w is None:
        raise CsaError(f"{path}: input {inputs[0].name!r} needs static channels, height and width to be profiled", hint="export with a fixed --img-size")
    quantized = any(node.op_type in ("QuantizeLinear", "DequantizeLinear", "QLinearConv") for node in proto.graph.node)
    metadata = {p.key: p.value for p in proto.metadata_props}
    return OnnxInputInfo(batch=n, channels=c, img_size=(h, w), quantized=quantized, metadata=metadata)


def frame_costs(onnx_path: Path, batches: Sequence[int]) -> dict[int, FrameCost]:
    """MACs and bytes per frame at each batch size, from the static cost model (one analysis).

    Activations scale with the batch, weights are read once per batch pass, so traffic per
    frame falls as the batch grows (csa_cli.graph.costmodel.CostReport.traffic_at).
    """
    from csa_cli.graph.costmodel import analyze

    report = analyze(onnx_path)
    costs: dict[int, FrameCost] = {}
    for b in batches:
        traffic = report.traffic_at(b)
        costs[b] = FrameCost(
            batch=b,
            macs_per_frame=int(traffic.macs_per_frame),
            bytes_read_per_frame=traffic.bytes_read // b,
            bytes_written_per_frame=traffic.bytes_written // b,
            traffic_bytes_per_frame=round(traffic.bytes_per_frame),
            label=report.label,
        )
    return costs


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info(threads: int | None, device: str = "cpu") -> MachineInfo:
    """CPU model, core count, threads used, GPU (when the profile ran on one), library versions."""
    libraries = {d: v for d in ("csa", "torch", "onnxruntime", "onnxruntime-gpu", "onnx", "numpy", "timm", "transformers", "tensorrt") if (v := _version(d))}
    gpu = cuda = None
    if "torch" in sys.modules:  # never import torch just for this; every torch/export path has it loaded
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(torch.device(device) if device.startswith("cuda") else 0)
            cuda = torch.version.cuda
    return MachineInfo(
        cpu=cpu_model(),
        cpu_count=os.cpu_count() or 1,
        threads=threads,
        gpu=gpu,
        cuda=cuda,
        os=f"{platform.system()} {platform.release()}",
        python=platform.python_version(),
        libraries=libraries,
    )


# ---------------------------------------------------------------------------------------------
# profiling a probe, and the entry points for a model, an ONNX file, an engine
# ---------------------------------------------------------------------------------------------


def _peaks_for(probe: Probe, precision: str) -> tuple[MachinePeaks | None, str | None]:
    if precision in ("int8", "mixed"):
        return None, "no roofline floor for int8: only fp32/fp16 peaks are measured here"
    if probe.backend == "tensorrt" and precision == "fp32":
        return None, "no roofline floor for TensorRT fp32 engines (TF32 kernels may beat the measured fp32 peak)"
    dtype: Literal["float32", "float16"] = "float16" if precision == "fp16" else "float32"
    try:
        return machine_peaks(probe.device, dtype=dtype, threads=probe.threads), None
    except ImportError:
        return None, "no roofline: torch is needed to measure the machine's peaks"
    except (RuntimeError, AssertionError) as exc:  # torch without a usable device for this backend
        return None, f"no roofline: the peaks of {probe.device} could not be measured ({type(exc).__name__}: {exc})"


def apply_floors(rows: Sequence[BatchResult], costs: dict[int, FrameCost] | None, peaks: MachinePeaks | None) -> None:
    """Fill each row's static estimate and, with peaks, its roofline floor and median / floor."""
    for row in rows:
        cost = (costs or {}).get(row.batch)
        if cost is None:
            continue
        row.macs_per_frame = cost.macs_per_frame
        row.traffic_bytes_per_frame = cost.traffic_bytes_per_frame
        if peaks is None:
            continue
        floor = time_floor(cost.macs_per_frame * row.batch, cost.traffic_bytes_per_frame * row.batch, peaks, row.batch)
        row.floor_ms, row.floor_bound = floor.floor_ms, floor.bound
        row.x_floor = row.median_ms / floor.floor_ms if floor.floor_ms > 0 else None


def profile_probe(
    probe: Probe,
    batches: Sequence[int],
    settings: MeasureSettings,
    costs: dict[int, FrameCost] | None = None,
    peaks: MachinePeaks | None = None,
) -> list[BatchResult]:
    """Measure every batch size; join each with its static cost and roofline floor."""
    rows: list[BatchResult] = []
    for batch in batches:
        with probe.stepper(batch, settings) as step:
            samples = run_timed(step, settings)
        stats = summarize(samples, batch, settings.warmup)
        rows.append(BatchResult(**stats.model_dump()))
        events.info(
            f"  batch {batch:>3}: median {stats.median_ms:.2f} ms, p99 {stats.p99_ms:.2f} ms, {stats.throughput_ips:.1f} img/s ({stats.iterations} iterations)"
        )
    apply_floors(rows, costs, peaks)
    return rows


def _checked_floors(probe: Probe, rows: list[BatchResult], costs: dict[int, FrameCost], peaks: MachinePeaks) -> tuple[MachinePeaks, str | None]:
    """A run faster than its floor means the peaks were measured low (under load): measure them
    again, keeping the best; if a run still beats its floor, say so rather than hide it."""
    if all(r.x_floor is None or r.x_floor >= 1 for r in rows):
        return peaks, None
    dtype: Literal["float32", "float16"] = peaks.dtype
    peaks = machine_peaks(probe.device, dtype=dtype, threads=probe.threads, refresh=True)
    apply_floors(rows, costs, peaks)
    below = [r.batch for r in rows if r.x_floor is not None and r.x_floor < 1]
    if not below:
        return peaks, None
    note = (
        f"measured faster than the roofline floor at batch {', '.join(map(str, below))}: the static traffic counts every "
        "tensor once, unfused, through memory; fused kernels and cache-resident activations move less"
    )
    events.warn(note)
    return peaks, note


def _finish(
    probe: Probe,
    *,
    model: str,
    batches: Sequence[int],
    options: ProfileOptions,
    cost_source: Path | None,
    path: Path | None,
    weights: str | None,
    weights_hash: str | None,
) -> ProfileResult:
    costs: dict[int, FrameCost] | None = None
    peaks: MachinePeaks | None = None
    note: str | None = None
    if options.estimate and cost_source is not None:
        try:
            costs = frame_costs(cost_source, batches)
        except ImportError:
            note = "no static estimate: the cost model (csa_cli.graph.costmodel) is not available"
        if costs:
            peaks, note = _peaks_for(probe, probe.precision)
    elif not options.estimate:
        note = "static estimate and roofline skipped (--no-estimate)"
    events.info(f"profiling {model} on {probe.backend} ({probe.device}, {probe.precision}): {options.measure.describe()}")
    rows = profile_probe(probe, batches, options.measure, costs, peaks)
    if costs and peaks is not None:
        peaks, floor_note = _checked_floors(probe, rows, costs, peaks)
        note = floor_note or note
    result = ProfileResult(
        model=model,
        backend=probe.backend,
        device=probe.device,
        precision=probe.precision,
        provider=probe.provider,
        threads=probe.threads,
        cuda_graphs=probe.cuda_graphs,
        path=str(path) if path else None,
        weights=weights,
        weights_hash=weights_hash,
        img_size=probe.img_size,
        settings=options.measure.describe(),
        results=rows,
        roofline=peaks,
        roofline_note=note,
        machine=machine_info(probe.threads, probe.device),
    )
    if options.store:
        store_profile(result)
    return result


def store_profile(result: ProfileResult) -> Path:
    """Keep the result under CSA_HOME/results/profile/<model>/ for `csa compare`."""
    key = artifact_key(
        model=result.model,
        backend=result.backend,
        device=result.device,
        precision=result.precision,
        threads=result.threads,
        cuda_graphs=result.cuda_graphs,
        batches=[r.batch for r in result.results],
        path=result.path,
        weights_hash=result.weights_hash,
        machine=result.machine.title(result.device),
    )
    return store_result("profile", result.model, key, result.to_record().model_dump(mode="json", by_alias=True, exclude_none=True))


def _default_device(backend: str, requested: str | None) -> str:
    if requested:
        return requested
    if backend == "torch":
        import torch

        return "cuda:0" if torch.cuda.is_available() else "cpu"
    return "cpu"


def profile_model(model: str, options: ProfileOptions) -> ProfileResult:
    """A zoo model: torch directly, or ONNX Runtime on ONNX exported per batch (or once, dynamic)."""
    backend = options.backend or "torch"
    batches = list(options.batches or DEFAULT_BATCHES)
    if backend == "tensorrt":
        _require_tensorrt()
        raise UsageError(
            f"--backend tensorrt profiles an engine, not a model name ({model})",
            hint=f"build one first: `csa engine {model} --target local --batch {','.join(map(str, batches))}`, then profile its record",
        )
    from csa_cli.stages.export.stage import export_stage

    def export(batch: int, dynamic: bool) -> Record:
        return export_stage(model, weights=options.weights, batch=batch, img_size=options.img_size, dynamic_batch=dynamic, manifest=options.manifest)

    if backend == "onnxruntime":
        if options.precision != "fp32":
            raise UsageError("--precision applies to the torch backend; onnxruntime runs the ONNX as it is (fp32 or QDQ)")
        if options.dynamic_batch:
            record = export(batches[0], True)
            path = Path(str(record.path))
            probe = OrtProbe(path, threads=options.threads, device=options.device or "cpu")
            cost_source: Path = path
            source_path: Path | None = path
        else:
            records = {b: export(b, False) for b in batches}
            paths = {b: Path(str(r.path)) for b, r in records.items()}
            record = records[batches[0]]
            probe = OrtProbe(paths, threads=options.threads, device=options.device or "cpu")
            # One analysis serves every batch: the per-batch graphs differ only in their batch axis.
            cost_source, source_path = paths[batches[0]], paths[batches[0]]
        return _finish(
            probe,
            model=model,
            batches=probe.batches(batches),
            options=options,
            cost_source=cost_source,
            path=source_path,
            weights=record.weights,
            weights_hash=record.field("weights_hash"),
        )

    from csa_cli.models import inference_form
    from csa_cli.stages.pull.weights import load_model

    loaded = load_model(model, options.weights, manifest=options.manifest)
    img_size = options.img_size or tuple(loaded.entry.preprocessing.input_size)
    device = _default_device("torch", options.device)
    probe_t = TorchProbe(
        inference_form(loaded.module),
        (int(img_size[0]), int(img_size[1])),
        device=device,
        precision=options.precision,
        threads=options.threads,
        cuda_graphs=options.cuda_graphs,
    )
    cost_onnx: Path | None = None
    if options.estimate:
        # The estimate needs the graph: the batch-1 export (cached, shared with other stages) serves every batch.
        cost_onnx = Path(str(export(1, False).path))
    return _finish(
        probe_t,
        model=model,
        batches=probe_t.batches(batches),
        options=options,
        cost_source=cost_onnx,
        path=None,
        weights=loaded.weights,
        weights_hash=loaded.weights_hash,
    )


def profile_onnx(
    path: Path, options: ProfileOptions, *, model: str | None = None, weights: str | None = None, weights_hash: str | None = None
) -> ProfileResult:
    """An ONNX file (FP32 or QDQ) on ONNX Runtime: its static batch, or the requested ones if dynamic."""
    if options.backend not in (None, "onnxruntime"):
        raise UsageError(
            f"an ONNX file is profiled with --backend onnxruntime, not {options.backend}", hint="for tensorrt, build an engine first with `csa engine`"
        )
    if options.precision != "fp32":
        raise UsageError("--precision applies to the torch backend; onnxruntime runs the ONNX as it is (fp32 or QDQ)")
    probe = OrtProbe(path, threads=options.threads, device=options.device or "cpu")
    batches = probe.batches(options.batches)
    return _finish(
        probe,
        model=model or probe.metadata.get("model") or path.stem,
        batches=batches,
        options=options,
        cost_source=path,
        path=path,
        weights=weights or probe.metadata.get("weights"),
        weights_hash=weights_hash or probe.metadata.get("weights_hash"),
    )


def _require_tensorrt() -> None:
    from csa_cli.measure.environment import tensorrt_version

    if tensorrt_version() is None:
        raise MissingBackend(
            "TensorRT is not installed here: a TensorRT engine cannot be profiled on this machine",
            hint="pip install 'csa[tensorrt]' on a machine with an NVIDIA GPU, or profile the ONNX with --backend onnxruntime",
        )


def profile_engine(path: Path, options: ProfileOptions, *, model: str | None = None, record: Record | None = None) -> ProfileResult:
    """TensorRT engines (one, or one per batch from an engine record); exit 4 where TensorRT is absent."""
    if options.backend not in (None, "tensorrt"):
        raise UsageError(f"an engine runs on --backend tensorrt, not {options.backend}")
    _require_tensorrt()
    from csa_cli.backends import open_backend

    device = options.device or "cuda:0"
    engines = record.field("engines") if record is not None else None
    if isinstance(engines, list) and engines:
        backends: dict[int, Any] | Any = {int(e["batch"]): open_backend("tensorrt", Path(e["path"]), device=device) for e in engines}
    else:
        backends = open_backend("tensorrt", path, device=device)
    size = record.field("img_size") if record is not None else None
    probe = BackendProbe(backends, tuple(size) if size else options.img_size)  # type: ignore[arg-type]
    onnx_source = (record.field("source_onnx") or record.field("onnx")) if record is not None else None
    return _finish(
        probe,
        model=model or (record.model if record is not None else None) or path.stem,
        batches=probe.batches(options.batches),
        options=options,
        cost_source=Path(onnx_source) if onnx_source and Path(onnx_source).is_file() else None,
        path=path,
        weights=record.weights if record is not None else None,
        weights_hash=record.field("weights_hash") if record is not None else None,
    )


def refuse_bundle(where: str | Path) -> None:
    """A deployment bundle is timed on the target: say how, and stop."""
    raise CsaError(
        f"{where} is a deployment bundle: it is profiled on the target device, not here",
        hint=f"on the Orin run `{Path(where) / 'validate.sh'}` (trtexec --exportTimes), then bring the times back with "
        "`csa import-timings TIMES.json --model MODEL --batch N`",
    )


def is_bundle_dir(path: Path) -> bool:
    return path.is_dir() and any((path / m).is_file() for m in BUNDLE_MARKERS)


def profile_target(*, model: str | None, path: Path | None, record: Record | None, options: ProfileOptions) -> ProfileResult:
    """Dispatch what `csa profile` was given: a zoo MODEL, an ONNX, an engine, a record, a bundle."""
    if record is not None:
        kind = record.kind
        if kind == "bundle":
            refuse_bundle(record.path or "the bundle")
        if kind in ("onnx", "quantized", "check"):
            if not record.path or not Path(record.path).is_file():
                raise CsaError(f"the {kind} record's file is missing: {record.path}", hint="rerun the stage that made it")
            return profile_onnx(Path(record.path), options, model=record.model, weights=record.weights, weights_hash=record.field("weights_hash"))
        if kind == "engine":
            if not record.path:
                raise CsaError("the engine record names no file")
            return profile_engine(Path(record.path), options, model=record.model, record=record)
        if kind == "checkpoint" and record.model:
            weights = options.weights if options.weights != "auto" else (record.weights or "auto")
            return profile_model(record.model, options.model_copy(update={"weights": weights}))
        raise UsageError(f"csa profile cannot read a {kind!r} record", hint="pipe a checkpoint, onnx, quantized or engine record")
    if path is not None:
        if path.is_dir():
            if is_bundle_dir(path):
                refuse_bundle(path)
            raise CsaError(f"{path} is a folder, not an ONNX model or engine", hint="give a .onnx or .engine file")
        if path.suffix in ENGINE_SUFFIXES or options.backend == "tensorrt":
            return profile_engine(path, options)
        if path.suffix != ".onnx":
            raise CsaError(
                f"{path} is neither an ONNX model (.onnx) nor a TensorRT engine (.engine/.plan)", hint="give the file `csa export` or `csa engine` wrote"
            )
        return profile_onnx(path, options)
    if model is None:
        raise UsageError("nothing to profile: give a MODEL, an ONNX or engine file, or pipe a record")
    return profile_model(model, options)


# ---------------------------------------------------------------------------------------------
# the plot
# ---------------------------------------------------------------------------------------------


def plot_latency(results: Sequence[ProfileResult], path: Path) -> Path:
    """Median latency vs batch (a min-p99 band) and per-image latency, one line per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from csa_cli.paths import atomic_path

    if not results:
        raise CsaError("nothing to plot")
    fig, (ax_lat, ax_img) = plt.subplots(1, 2, figsize=(12, 4.8), constrained_layout=True)
    batches: set[int] = set()
    for res in results:
        xs = [r.batch for r in res.results]
        batches.update(xs)
        label = f"{res.model} ({res.backend}, {res.precision})"
        (line,) = ax_lat.plot(xs, [r.median_ms for r in res.results], marker="o", label=label)
        ax_lat.fill_between(xs, [r.min_ms for r in res.results], [r.p99_ms for r in res.results], color=line.get_color(), alpha=0.15)
        ax_img.plot(xs, [r.per_image_ms for r in res.results], marker="o", color=line.get_color(), label=label)
    ticks = sorted(batches)
    for ax, ylabel, title in (
        (ax_lat, "latency per batch, ms (median; band min-p99)", "Latency vs batch"),
        (ax_img, "latency per image, ms (median / batch)", "Per-image latency vs batch"),
    ):
        ax.set_xscale("log", base=2)
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.set_xlabel("batch size")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.set_ylim(bottom=0)
        ax.legend(fontsize="small")
    machine = results[0].machine
    fig.suptitle(f"csa profile on {machine.title(results[0].device)} ({results[0].settings})")
    target = Path(path)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return target

"""`csa import-timings`: trtexec --exportTimes traces from the device into the results store.

A bundle's validate.sh leaves results/times_bN.json; the plan.json beside it names the model,
precision and TensorRT version, so `csa compare` can show the device's latency beside the rest.
The layer information build.sh and validate.sh leave beside it (layers_bN.json from
--exportLayerInfo, profile_bN.json from --exportProfile, build_bN.log) comes back with it:
which layers run in INT8, FP16 or FP32, which left the DLA, and which take longest.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from csa_cli.errors import CsaError, UsageError
from csa_cli.graph.traffic import FusionDifference, compare_fusions, traffic
from csa_cli.measure.stats import nearest_rank
from csa_cli.paths import sha256_file as _sha256
from csa_cli.tensorrt.bundle import read_bundle_plan
from csa_cli.tensorrt.layers import LayerSummary, layers_left_dla, parse_layer_info, parse_profile, summarize_layers
from csa_cli.tensorrt.plan import (
    BuildPlan,
)

if TYPE_CHECKING:
    from csa_cli.records import Record


class TrtexecTiming(BaseModel):
    """One inference of a trtexec --exportTimes trace (milliseconds; newer fields ride along)."""

    model_config = ConfigDict(extra="allow")

    startEnqMs: float | None = None  # trtexec's own (camelCase) field names
    endEnqMs: float | None = None
    startComputeMs: float
    endComputeMs: float
    latencyMs: float = Field(ge=0)
    computeMs: float | None = None
    h2dMs: float | None = None
    d2hMs: float | None = None

    @property
    def compute_ms(self) -> float:
        return self.computeMs if self.computeMs is not None else self.endComputeMs - self.startComputeMs


class TimingStats(BaseModel):
    """The stored row: one model, batch, precision and device (what `csa compare` reads)."""

    model_config = ConfigDict(extra="forbid")

    model: str
    device: str
    batch: int = Field(ge=1)
    precision: str | None
    backend: str = "tensorrt (trtexec)"
    iterations: int
    median_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    compute_median_ms: float
    h2d_median_ms: float | None = None
    d2h_median_ms: float | None = None
    throughput_ips: float
    per_image_ms: float
    source: str
    source_sha256: str
    trt_version: str | None = None
    layers: LayerSummary | None = None
    layer_names: list[str] | None = Field(
        default=None, description="the engine's layers as TensorRT named them (--exportLayerInfo): fused nodes joined by ' + '"
    )
    fusion_differences: list[FusionDifference] | None = Field(
        default=None, description="where TensorRT grouped nodes otherwise than csa's traffic model (graph/traffic.py), when the bundle's ONNX is at hand"
    )


def parse_trtexec_times(path: Path) -> list[TrtexecTiming]:
    from pydantic import TypeAdapter

    if not path.is_file():
        raise CsaError(f"timings file not found: {path}", hint="give the file written by trtexec --exportTimes (validate.sh writes results/times_b*.json)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CsaError(f"{path} is not a trtexec --exportTimes file (not JSON: {exc})", hint="give results/times_b*.json from the bundle") from None
    if not isinstance(data, list):
        raise CsaError(f"{path} is not a trtexec --exportTimes file (expected a JSON list of inferences, got {type(data).__name__})")
    try:
        entries = TypeAdapter(list[TrtexecTiming]).validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise CsaError(f"{path} is not a trtexec --exportTimes file (entry {loc}: {first['msg']})") from None
    if not entries:
        raise CsaError(f"{path} holds no timed inferences", hint="rerun validate.sh; trtexec writes one entry per inference")
    return entries


def timing_stats(entries: list[TrtexecTiming], *, model: str, device: str, batch: int, precision: str | None, source: Path) -> TimingStats:
    import statistics

    lat = sorted(e.latencyMs for e in entries)
    median = nearest_rank(lat, 50)
    return TimingStats(
        model=model,
        device=device,
        batch=batch,
        precision=precision,
        iterations=len(lat),
        median_ms=median,
        p90_ms=nearest_rank(lat, 90),
        p95_ms=nearest_rank(lat, 95),
        p99_ms=nearest_rank(lat, 99),
        mean_ms=statistics.fmean(lat),
        std_ms=statistics.pstdev(lat),
        min_ms=min(lat),
        max_ms=max(lat),
        compute_median_ms=nearest_rank(sorted(e.compute_ms for e in entries), 50),
        h2d_median_ms=_median_of([e.h2dMs for e in entries]),
        d2h_median_ms=_median_of([e.d2hMs for e in entries]),
        throughput_ips=batch * 1000.0 / median if median > 0 else 0.0,
        per_image_ms=median / batch,
        source=str(source),
        source_sha256=_sha256(source),
    )


def _median_of(values: list[float | None]) -> float | None:
    present = sorted(v for v in values if v is not None)
    return nearest_rank(present, 50) if present else None


def layer_files(times: Path, batch: int | None, plan: BuildPlan | None) -> LayerSummary | None:
    """The layers of the engine a times_bN.json belongs to, from the files build.sh / validate.sh leave beside it."""
    if batch is None:
        return None
    folder = times.parent
    info, profile, log = folder / f"layers_b{batch}.json", folder / f"profile_b{batch}.json", folder / f"build_b{batch}.log"
    if not info.is_file():
        return None
    dla = plan is not None and plan.dla_core is not None
    layers = parse_layer_info(info.read_text(encoding="utf-8"), dla=dla)
    times_ms = parse_profile(profile.read_text(encoding="utf-8")) if profile.is_file() else None
    left = layers_left_dla(log.read_text(encoding="utf-8", errors="replace")) if dla and log.is_file() else []
    return summarize_layers(layers, times=times_ms, left_dla=left)


def layer_fusions(times: Path, batch: int, plan: BuildPlan | None) -> tuple[list[str] | None, list[FusionDifference] | None]:
    """TensorRT's layer names beside a times_bN.json and, with the plan's ONNX at hand, where its fusions differ from csa's model."""
    info = times.parent / f"layers_b{batch}.json"
    if not info.is_file():
        return None, None
    names = [layer.name for layer in parse_layer_info(info.read_text(encoding="utf-8"))]
    spec = next((e for e in plan.engines if e.batch == batch), None) if plan is not None else None
    if spec is None:
        return names, None
    onnx_path = Path(spec.onnx) if Path(spec.onnx).is_absolute() else times.resolve().parent.parent / spec.onnx
    if not onnx_path.is_file():
        return names, None
    precision = "int8" if plan is not None and (plan.int8 or spec.has_qdq) else ("fp16" if plan is not None and plan.fp16 else "fp32")
    return names, compare_fusions(traffic(onnx_path, precision), names)


def _bundle_context(path: Path) -> tuple[BuildPlan | None, int | None]:
    """The plan of the bundle a results/times_bN.json lies in, and N."""
    import re

    match = re.fullmatch(r"times_b(\d+)\.json", path.name)
    batch = int(match.group(1)) if match else None
    plan = read_bundle_plan(path.resolve().parent.parent) if path.resolve().parent.name == "results" else None
    return plan, batch


def import_timings(
    path: str | os.PathLike[str], *, model: str | None = None, batch: int | None = None, precision: str | None = None, device: str | None = None
) -> Record:
    """Parse trtexec --exportTimes JSON, store it as a "timing" result for `csa compare`, return a profile record."""
    from csa_cli.records import make_record
    from csa_cli.store import artifact_key, store_result

    source = Path(path)
    if batch is not None and batch < 1:
        raise UsageError(f"--batch must be at least 1, got {batch}")
    entries = parse_trtexec_times(source)
    plan, file_batch = _bundle_context(source)
    model = model or (plan.model if plan else None)
    batch = batch or file_batch
    precision = precision or (plan.precision if plan else None)
    device = device or ("Orin" if plan and plan.target == "orin" else None)
    if not model:
        raise UsageError(f"which model do the timings in {source.name} belong to?", hint="add --model NAME (read from plan.json inside a bundle)")
    if batch is None:
        raise UsageError(f"which batch size do the timings in {source.name} belong to?", hint="add --batch N (read from a times_bN.json name)")
    if not device:
        raise UsageError(f"which device were the timings in {source.name} measured on?", hint='add --device "Orin AGX"')
    stats = timing_stats(entries, model=model, device=device, batch=batch, precision=precision, source=source)
    stats.layers = layer_files(source, batch, plan)
    stats.layer_names, stats.fusion_differences = layer_fusions(source, batch, plan)
    if plan is not None:
        stats.trt_version = plan.trt_version
    key = artifact_key(model=model, device=device, batch=batch, precision=precision, sha=stats.source_sha256)
    stored = store_result("timing", model, key, stats.model_dump())
    row = stats.model_dump(
        exclude={"model", "device", "source", "source_sha256", "backend", "precision", "trt_version", "layers", "layer_names", "fusion_differences"}
    )
    return make_record(
        "profile",
        model=model,
        path=str(source),
        backend="tensorrt",
        precision=precision,
        results=[{**row, "warmup": 0}],
        machine={"device": device, "source": "trtexec --exportTimes", "tensorrt": stats.trt_version},
        weights=plan.weights if plan else None,
        layers=stats.layers.model_dump(exclude_none=True) if stats.layers else None,
        fusion_differences=[d.model_dump() for d in stats.fusion_differences] if stats.fusion_differences is not None else None,
        stored=str(stored),
    )

"""The seed's study, side by side, built from STORED results only (CSA_HOME/results).

Table 1: params, MACs, restricted-mode and DLA compliance        (results "check", "cost")
Fig. 5:  top-1 at FP32 / FP16 vs mixed precision, with the drop   (results "eval")
Fig. 6:  latency at each batch size, ratios to the baseline       (results "profile", "timing")
Fig. 7:  memory traffic per frame at each batch size: the fused estimate at the engine's precision
         (graph/traffic.py on the exported graph), the unfused graph-level figure (results "cost"),
         and "profile" where a profiler measured it
A piece that was never measured is None here and "missing" in every view; nothing is filled in.
`compare_models` first runs what is missing through the pipeline core (pipeline/run.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from csa_cli.store import load_results

if TYPE_CHECKING:
    from csa_cli.pipeline.options import RunSummary

ESTIMATE_LABEL = "estimate (static, from the ONNX graph)"
CPU_PLACEMENT = "onnxruntime"  # `csa quantize --placement onnxruntime`: the study's CPU INT8 row (the cpu-int8 stage)
CPU_INT8_LABEL = "INT8 (ONNX Runtime CPU)"


class Table1Row(BaseModel):
    model: str
    weights: str | None = None
    params_m: float | None = None
    gmacs: float | None = None
    restricted: bool | None = None
    restricted_violations: int | None = None
    dla: bool | None = None
    dla_violations: int | None = None


class Fig5Row(BaseModel):
    model: str
    weights: str | None = None
    dataset: str | None = None
    backend: dict[str, str] = Field(default_factory=dict, description="precision -> backend it was measured on")
    images: dict[str, int] = Field(default_factory=dict, description="precision -> images evaluated")
    fp32: float | None = None
    fp16: float | None = None
    mixed: float | None = None
    drop: float | None = Field(default=None, description="reference (FP16, else FP32) minus mixed, percentage points")
    drop_from: str | None = None
    cpu_int8: float | None = Field(default=None, description="top-1 of the Q/DQ graph in ONNX Runtime's placement, on ONNX Runtime")
    cpu_int8_drop: float | None = Field(default=None, description="FP32 on ONNX Runtime minus cpu_int8, percentage points")


class Fig6Row(BaseModel):
    model: str
    weights: str | None = None
    backend: str | None = None
    latency_ms: dict[int, float | None] = Field(default_factory=dict, description="batch -> median latency per batch (ms)")
    ratio: dict[int, float | None] = Field(default_factory=dict, description="batch -> latency / baseline latency")
    interval: dict[int, tuple[float, float] | None] = Field(
        default_factory=dict, description="batch -> 95% interval of the ratio, where it was timed interleaved with the baseline"
    )
    wide: dict[int, bool] = Field(default_factory=dict, description="batch -> the interval is wider than ±10%: too wide for the claim")
    device_ms: dict[str, dict[int, float | None]] = Field(default_factory=dict, description="device -> batch -> imported median (ms)")
    device_ratio: dict[str, dict[int, float | None]] = Field(default_factory=dict)
    cpu_int8_batch: int | None = Field(default=None, description="the batch the CPU INT8 graph was timed at (the exported graph's)")
    cpu_int8_ms: float | None = Field(default=None, description="median latency of the ONNX Runtime-placement INT8 graph (ms)")
    cpu_int8_ratio: float | None = Field(default=None, description="cpu_int8_ms / the same model's FP32 graph, timed interleaved")
    cpu_int8_interval: tuple[float, float] | None = None
    cpu_int8_wide: bool = False


class Fig7Row(BaseModel):
    model: str
    precision: str | None = Field(default=None, description="the engine precision the fused estimate assumes")
    fused_mb: dict[int, float | None] = Field(
        default_factory=dict, description="batch -> MB per frame, TensorRT's fusions at the engine's precision (estimate)"
    )
    estimate_mb: dict[int, float | None] = Field(default_factory=dict, description="batch -> MB per frame, unfused graph-level FP32 estimate")
    measured_mb: dict[int, float | None] = Field(default_factory=dict, description="batch -> MB per frame a profiler measured")


class Study(BaseModel):
    """Everything `csa compare` shows; every number traceable to one stored result."""

    models: list[str]
    baseline: str
    batches: list[int]
    backend: str
    dataset: str | None = None
    devices: list[str] = Field(default_factory=list)
    machine: dict[str, Any] = Field(default_factory=dict)
    table1: list[Table1Row]
    fig5: list[Fig5Row]
    fig6: list[Fig6Row]
    fig7: list[Fig7Row]
    notes: list[str] = Field(default_factory=list)
    runs: dict[str, str] = Field(default_factory=dict, description="model -> what the pipeline did (or why it failed)")

    def to_record_fields(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _latest(rows: list[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
    """The most recently stored result whose fields equal `match` (None values in match are ignored)."""
    for row in reversed(rows):  # load_results sorts by stored_at
        if all(v is None or row.get(k) == v for k, v in match.items()):
            return row
    return None


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _scaled(value: Any, unit: float) -> float | None:
    """A stored number in another unit (bytes -> MB, params -> M), None stays None."""
    v = _num(value)
    return None if v is None else v / unit


def table1_row(model: str) -> Table1Row:
    check = _latest(load_results("check", model))
    cost = _latest(load_results("cost", model))
    row = Table1Row(model=model)
    if cost:
        row.weights = cost.get("weights")
        row.params_m = _scaled(cost.get("params"), 1e6)
        row.gmacs = _scaled(cost.get("macs"), 1e9)
    if check:
        restricted, dla = check.get("restricted") or {}, check.get("dla") or {}
        row.restricted = restricted.get("compliant")
        row.restricted_violations = restricted.get("violations")
        row.dla = dla.get("compliant")
        row.dla_violations = dla.get("violations")
        row.weights = row.weights or check.get("weights")
    return row


def _eval_matches(dataset: str | None, limit: int | None) -> Callable[[dict[str, Any]], bool]:
    def ok(row: dict[str, Any]) -> bool:
        if dataset is not None:
            names = {str(row.get(k)) for k in ("dataset", "dataset_root", "dataset_name", "dataset_path", "data_dir") if row.get(k) is not None}
            if dataset not in names and not any(n.rstrip("/").endswith(dataset.rstrip("/")) for n in names):
                return False
        return not (limit is not None and row.get("limit") not in (None, limit))

    return ok


def fig5_row(model: str, dataset: str | None = None, limit: int | None = None) -> Fig5Row:
    matching = [r for r in load_results("eval", model) if _eval_matches(dataset, limit)(r)]
    # the CPU INT8 graph (ONNX Runtime's placement) has its own column; the mixed column is the graph engines are built from
    rows = [r for r in matching if r.get("placement") != CPU_PLACEMENT]
    out = Fig5Row(model=model, dataset=dataset)
    mixed = _latest(rows, precision="mixed") or _latest(rows, precision="int8")
    for precision in ("fp32", "fp16", "mixed"):
        if precision == "mixed":
            found = mixed
        else:
            # the reference on the runtime the mixed model ran on, where there is one: the drop is then the quantization's
            found = (_latest(rows, precision=precision, backend=mixed.get("backend")) if mixed else None) or _latest(rows, precision=precision)
        if found is None:
            continue
        setattr(out, precision, _num(found.get("top1")))  # eval records give top-1 in percent
        out.images[precision] = int(found.get("images") or 0)
        out.backend[precision] = str(found.get("backend") if not isinstance(found.get("backend"), dict) else found["backend"].get("name"))
        out.weights = out.weights or found.get("weights")
        out.dataset = out.dataset or found.get("dataset")
    reference = ("fp16", out.fp16) if out.fp16 is not None else ("fp32", out.fp32)
    if reference[1] is not None and out.mixed is not None:
        out.drop = reference[1] - out.mixed
        out.drop_from = reference[0]
    cpu = _latest([r for r in matching if r.get("placement") == CPU_PLACEMENT])
    if cpu is not None:
        out.cpu_int8 = _num(cpu.get("top1"))
        fp32 = _latest(rows, precision="fp32", backend="onnxruntime")
        if fp32 is not None and out.cpu_int8 is not None and _num(fp32.get("top1")) is not None:
            out.cpu_int8_drop = float(fp32["top1"]) - out.cpu_int8
    return out


def cpu_int8_latency(row: Fig6Row, fig5: Fig5Row, dataset: str | None, limit: int | None) -> None:
    """The CPU INT8 graph's stored profile (the cpu-int8 stage), found by the path its eval result names."""
    evaluated = _latest([r for r in load_results("eval", row.model) if r.get("placement") == CPU_PLACEMENT and _eval_matches(dataset, limit)(r)])
    if evaluated is None or fig5.cpu_int8 is None or not evaluated.get("path"):
        return
    timed = _latest(load_results("profile", row.model), path=evaluated.get("path"))
    entry = next(iter((timed or {}).get("results") or []), None)
    if entry is None:
        return
    row.cpu_int8_batch, row.cpu_int8_ms = entry.get("batch"), _latency_ms(entry)
    spread = entry.get("ratio")
    if isinstance(spread, dict) and _num(spread.get("ratio")) is not None:
        row.cpu_int8_ratio = float(spread["ratio"])
        row.cpu_int8_interval, row.cpu_int8_wide = _interval(spread, row.cpu_int8_ratio)


def _interval(spread: dict[str, Any], ratio: float) -> tuple[tuple[float, float] | None, bool]:
    """A stored RatioSpread's 95% interval, and whether it is wider than its tolerance (±10%) around `ratio`."""
    low, high = _num(spread.get("low")), _num(spread.get("high"))
    if low is None or high is None:
        return None, False
    return (low, high), max(ratio - low, high - ratio) / ratio > float(spread.get("tolerance") or 0.1)


_LATENCY_KEYS = ("median_ms", "latency_median_ms", "median", "latency_ms")


def _latency_ms(entry: dict[str, Any]) -> float | None:
    for key in _LATENCY_KEYS:
        if _num(entry.get(key)) is not None:
            return _num(entry.get(key))
    stats = entry.get("latency") or entry.get("stats") or {}
    if isinstance(stats, dict):
        for key in _LATENCY_KEYS:
            if _num(stats.get(key)) is not None:
                return _num(stats.get(key))
    return None


def _measured_traffic_mb(entry: dict[str, Any]) -> float | None:
    for key in ("measured_traffic_bytes_per_frame", "dram_bytes_per_frame", "measured_bytes_per_frame"):
        if _num(entry.get(key)) is not None:
            return _scaled(entry.get(key), 1e6)
    return None


def profile_by_batch(model: str, backend: str, batches: Sequence[int]) -> tuple[dict[int, dict[str, Any]], dict[str, Any], str | None]:
    """batch -> the latest stored profile entry at that batch on `backend`; the machine block; the weights."""
    found: dict[int, dict[str, Any]] = {}
    machine: dict[str, Any] = {}
    weights = None
    for record in load_results("profile", model):  # oldest first: later results overwrite
        if record.get("backend") not in (None, backend) and not str(record.get("backend", "")).startswith(backend):
            continue
        if backend == "onnxruntime" and record.get("precision") not in (None, "fp32"):
            continue  # a profiled QDQ ONNX is another measurement than the model's FP32 latency
        for entry in record.get("results") or []:
            batch = entry.get("batch")
            if isinstance(batch, int) and batch in batches and _latency_ms(entry) is not None:
                found[batch] = entry
                machine = record.get("machine") or machine
                weights = record.get("weights") or weights
    return found, machine, weights


def device_timings(model: str, batches: Sequence[int]) -> dict[str, dict[int, float | None]]:
    """Imported device timings (csa import-timings): device -> batch -> median ms, latest per pair."""
    out: dict[str, dict[int, float | None]] = {}
    for row in load_results("timing", model):
        # one column group per device and precision: an fp16 and a mixed engine are different measurements
        device = str(row.get("device") or "device") + (f" ({row['precision']})" if row.get("precision") else "")
        batch = row.get("batch")
        if isinstance(batch, int) and batch in batches:
            out.setdefault(device, {})[batch] = _latency_ms(row) or _latency_ms(row.get("stats") or {})
    return out


def fused_traffic_mb(onnx_path: Any, precision: str, batches: Sequence[int]) -> dict[int, float | None]:
    """batch -> MB per frame of the exported graph run as TensorRT fuses it at `precision`; None where the graph is gone."""
    from pathlib import Path

    if not isinstance(onnx_path, str) or not Path(onnx_path).is_file():
        return dict.fromkeys(batches)
    from csa_cli.graph.traffic import traffic

    report = traffic(onnx_path, precision)
    return {b: report.fused_per_frame(b) / 1e6 for b in batches}


def build_study(
    models: Sequence[str],
    *,
    baseline: str = "convnext-tiny",
    batches: Sequence[int] = (1, 4, 8, 16),
    backend: str = "onnxruntime",
    dataset: str | None = None,
    limit: int | None = None,
    engine_precision: str = "int8",
) -> Study:
    """The four views from stored results; missing pieces stay None.

    Long because it fills the four views of the seed's study from one pass over the stored results,
    with a note for each missing piece.
    """
    batches = list(batches)
    table1 = [table1_row(m) for m in models]
    fig5 = [fig5_row(m, dataset, limit) for m in models]
    profiles = {m: profile_by_batch(m, backend, batches) for m in models}
    timings = {m: device_timings(m, batches) for m in models}
    devices = sorted({d for t in timings.values() for d in t})
    base_profile = profiles[baseline][0] if baseline in profiles else profile_by_batch(baseline, backend, batches)[0]
    base_timing = timings[baseline] if baseline in timings else device_timings(baseline, batches)
    fig6: list[Fig6Row] = []
    fig7: list[Fig7Row] = []
    machine: dict[str, Any] = {}
    for m in models:
        by_batch, mach, weights = profiles[m]
        machine = machine or mach
        row = Fig6Row(model=m, weights=weights, backend=backend)
        for b in batches:
            lat = _latency_ms(by_batch[b]) if b in by_batch else None
            base = _latency_ms(base_profile[b]) if b in base_profile else None
            row.latency_ms[b] = lat
            row.ratio[b] = plain = lat / base if lat is not None and base else None
            spread = by_batch[b].get("ratio") if b in by_batch and by_batch[b].get("ratio_to") == baseline else None
            if isinstance(spread, dict) and plain is not None:
                row.ratio[b] = ratio = _num(spread.get("ratio")) or plain
                interval, wide = _interval(spread, ratio)
                if interval is not None:
                    row.interval[b], row.wide[b] = interval, wide
        for device in devices:
            row.device_ms[device] = {b: timings[m].get(device, {}).get(b) for b in batches}
            row.device_ratio[device] = {
                b: (v / base_timing[device][b]) if v is not None and base_timing.get(device, {}).get(b) else None for b, v in row.device_ms[device].items()
            }
        cpu_int8_latency(row, fig5[models.index(m)], dataset, limit)
        fig6.append(row)
        cost = _latest(load_results("cost", m)) or {}
        per_frame = cost.get("traffic_bytes_per_frame") or {}
        fig7.append(
            Fig7Row(
                model=m,
                precision=engine_precision,
                fused_mb=fused_traffic_mb(cost.get("onnx"), engine_precision, batches),
                estimate_mb={b: _scaled(per_frame.get(str(b)), 1e6) for b in batches},
                measured_mb={b: (_measured_traffic_mb(by_batch[b]) if b in by_batch else None) for b in batches},
            )
        )
    notes = []
    random_models = sorted({r.model for r in [*table1, *fig5, *fig6] if r.weights == "random"})
    if random_models:
        notes.append(f"Random weights (none published or cached): {', '.join(random_models)}. Their top-1 is chance level, not a property of the model.")
    fewer = [r.model for r in fig5 if r.images.get("mixed") is not None and r.images.get("fp32") is not None and r.images["mixed"] < r.images["fp32"]]
    if fewer:
        notes.append(
            f"Mixed-precision top-1 leaves out the calibration images, so it counts fewer images than FP32 ({', '.join(fewer)}: see the images column)."
        )
    if any(r.cpu_int8 is not None for r in fig5):
        notes.append(
            f"{CPU_INT8_LABEL}: the model quantized again with `--placement onnxruntime` (Q/DQ on every op's inputs and outputs, "
            "so ONNX Runtime runs integer kernels), evaluated on ONNX Runtime and timed interleaved with its own FP32 graph; "
            "its ratio is to that FP32 graph. The mixed column and the engines use the TensorRT placement."
        )
    if not devices:
        notes.append("No device timings imported: TensorRT latency on the Orin is missing here (`csa engine --target orin`, then `csa import-timings`).")
    if baseline not in models and not base_profile:
        notes.append(f"Baseline {baseline} has no stored latency: ratios are missing.")
    notes.append(
        f"Memory traffic per frame is an estimate: fused as TensorRT runs it at {engine_precision} (graph/traffic.py, rules in docs/profiling.md), "
        f"beside the unfused graph-level {ESTIMATE_LABEL}; measured traffic appears only where a GPU profiler provided it."
    )
    return Study(
        models=list(models),
        baseline=baseline,
        batches=batches,
        backend=backend,
        dataset=dataset,
        devices=devices,
        machine=machine,
        table1=table1,
        fig5=fig5,
        fig6=fig6,
        fig7=fig7,
        notes=notes,
    )


def compare_models(
    models: Sequence[str],
    *,
    baseline: str = "convnext-tiny",
    batches: Sequence[int] = (1, 4, 8, 16),
    backend: str = "onnxruntime",
    dataset: str | None = None,
    data_dir: str | None = None,
    limit: int | None = None,
    calib_dataset: str | None = None,
    calib_images: int = 500,
    weights: str = "auto",
    iterations: int | None = None,
    seconds: float | None = None,
    threads: int | None = None,
    manifest: str | None = None,
    run: bool = True,
    cpu_int8: bool = True,
    on_update: Callable[[RunSummary], None] | None = None,
) -> Study:
    """Run what is missing through the pipeline core (cached stages are skipped), then build the study.

    Long because each model's chain, the interleaved timing and the study share one options set.
    """
    from csa_cli.manifest import load_manifest
    from csa_cli.pipeline.options import RunOptions
    from csa_cli.pipeline.run import run_pipeline

    zoo = load_manifest(manifest)
    for m in models:
        zoo.get(m)  # unknown names fail before anything runs
    runs: dict[str, str] = {}
    if run:
        for m in models:
            options = RunOptions(
                model=m,
                to="profile",
                # latency is timed afterwards, every model interleaved with the others (interleaved_profiles)
                stages=["fetch", "evaluate", "export", "check", "quantize", "eval-mixed", "cpu-int8"],
                cpu_int8=cpu_int8,
                weights=weights,
                dataset=dataset,
                data_dir=data_dir,
                limit=limit,
                calib_dataset=calib_dataset,
                calib_images=calib_images,
                precision="mixed",
                batch=list(batches),
                backend=backend,  # type: ignore[arg-type]
                eval_backend="onnxruntime" if backend == "onnxruntime" else "torch",
                iterations=iterations,
                seconds=seconds,
                threads=threads,
                manifest=manifest,
            )
            summary = run_pipeline(options, on_update=on_update)
            done = ", ".join(f"{s.name} {s.status}" + (f" ({s.reason})" if s.status == "skipped" and s.reason else "") for s in summary.stages)
            runs[m] = f"ok: {done}" if summary.ok else f"failed at {summary.failed_stage}: {summary.message}"
        ok = [m for m in models if runs[m].startswith("ok")]
        if ok:
            done = profile_interleaved(ok, baseline, batches, backend, weights, iterations, seconds, threads, manifest)
            for m in ok:
                runs[m] += ", profile done (interleaved)" if done else ", profile cached (interleaved)"
    study = build_study(models, baseline=baseline, batches=batches, backend=backend, dataset=dataset, limit=limit)
    study.runs = runs
    return study


def profile_interleaved(
    models: Sequence[str],
    baseline: str,
    batches: Sequence[int],
    backend: str,
    weights: str,
    iterations: int | None,
    seconds: float | None,
    threads: int | None,
    manifest: str | None,
) -> bool:
    """Every model's latency timed side by side (stages/profile/sidebyside.py), the baseline first, stored
    for the study; skipped (False) when the store already holds such a run for every model and batch."""
    from csa_cli.measure.timing import MeasureSettings
    from csa_cli.stages.profile.records import ProfileOptions
    from csa_cli.stages.profile.sidebyside import profile_side_by_side

    order = [baseline, *[m for m in models if m != baseline]] if baseline in models else list(models)
    stored = {m: profile_by_batch(m, backend, batches)[0] for m in order}
    if all(b in stored[m] for m in order for b in batches) and all(stored[m][b].get("ratio_to") == order[0] for m in order[1:] for b in batches):
        return False
    options = ProfileOptions(
        backend=backend,  # type: ignore[arg-type]
        batches=list(batches),
        threads=threads,
        weights=weights,
        manifest=manifest,
        measure=MeasureSettings(iterations=iterations, seconds=seconds),
    )
    profile_side_by_side([(m, None, None) for m in order], options)
    return True

"""`csa profile`: latency of a zoo model, an ONNX file or an engine, with a static cost estimate.

The measurement itself lives in measure/ (probes, timing, statistics). Memory traffic and MACs
per frame come from the static cost model of the ONNX graph: an estimate, labelled so. With the
machine's measured peaks (measure/roofline.py) they give each batch a time floor, and the
measured median as a multiple of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from csa_cli import events
from csa_cli.backends.onnxruntime_backend import onnxruntime_precision
from csa_cli.errors import CsaError, MissingBackend, UsageError
from csa_cli.graph.onnx_file import read_onnx_info
from csa_cli.measure.machine import machine_info
from csa_cli.measure.probes import BackendProbe, OrtProbe, Probe, TorchProbe
from csa_cli.measure.roofline import MachinePeaks, machine_peaks, time_floor
from csa_cli.measure.sidebyside import LoadAverage
from csa_cli.measure.stats import summarize
from csa_cli.measure.timing import DEFAULT_BATCHES, MeasureSettings, run_timed
from csa_cli.records import EngineRecord, Record
from csa_cli.stages.profile.records import BatchResult, FrameCost, ProfileOptions, ProfileResult
from csa_cli.store import artifact_key, store_result
from csa_cli.tensorrt.execution import median_split
from csa_cli.tensorrt.runtime import ENGINE_SUFFIXES

BUNDLE_MARKERS = ("validate.sh", "build.sh", "plan.json")


# ---------------------------------------------------------------------------------------------
# ONNX facts, static costs, the machine
# ---------------------------------------------------------------------------------------------


def frame_costs(onnx_path: Path, batches: Sequence[int], precision: str = "fp32") -> dict[int, FrameCost]:
    """MACs and bytes per frame at each batch size (one analysis of the graph).

    MACs from the static cost model (graph/costmodel.py); traffic from the memory-traffic model
    of what TensorRT runs (graph/traffic.py): fused, at `precision`, with the unfused figure
    beside. Weights are read once per batch pass, so traffic per frame falls as the batch grows.
    """
    from csa_cli.graph.costmodel import analyze
    from csa_cli.graph.traffic import traffic as traffic_model

    report = analyze(onnx_path)
    moved = traffic_model(onnx_path, precision if precision in ("fp32", "fp16", "int8", "mixed") else "fp32")
    costs: dict[int, FrameCost] = {}
    for b in batches:
        graph = report.traffic_at(b)
        costs[b] = FrameCost(
            batch=b,
            macs_per_frame=int(graph.macs_per_frame),
            bytes_read_per_frame=graph.bytes_read // b,
            bytes_written_per_frame=graph.bytes_written // b,
            traffic_bytes_per_frame=round(moved.fused_per_frame(b)),
            unfused_bytes_per_frame=round(moved.unfused_per_frame(b)),
        )
    return costs


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
        row.unfused_bytes_per_frame = cost.unfused_bytes_per_frame
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
    with events.progress("timing", len(batches), "batch sizes") as bar:
        for batch in batches:
            with probe.stepper(batch, settings) as step:
                samples = run_timed(step, settings)
            stats = summarize(samples, batch, settings.warmup)
            row = BatchResult(**stats.model_dump())
            splits = getattr(probe, "splits", None)
            if splits:  # the parts of each timed (not warm-up) step, where the probe measures them
                for key, value in median_split(splits[-len(samples) :]).items():
                    setattr(row, key, value)
            rows.append(row)
            said = f"median {stats.median_ms:.2f} ms, p99 {stats.p99_ms:.2f} ms, {stats.throughput_ips:.1f} img/s ({stats.iterations} iterations)"
            events.info(f"  batch {batch:>3}: {said}")
            bar.advance()
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


class Pending:
    """A probe ready to time, with its static costs and peaks: measured alone (run) or side by
    side with others (stages/profile/sidebyside.py), then finished into a ProfileResult."""

    def __init__(
        self,
        probe: Probe,
        *,
        model: str,
        batches: Sequence[int],
        options: ProfileOptions,
        cost_source: Path | None,
        path: Path | None,
        weights: str | None,
        weights_hash: str | None,
    ) -> None:
        self.probe, self.model, self.batches, self.options = probe, model, list(batches), options
        self.path, self.weights, self.weights_hash = path, weights, weights_hash
        self.costs: dict[int, FrameCost] | None = None
        self.peaks: MachinePeaks | None = None
        self.note: str | None = None
        if options.estimate and cost_source is not None:
            try:
                self.costs = frame_costs(cost_source, self.batches, precision=probe.precision)
            except ImportError:
                self.note = "no static estimate: the cost model (csa_cli.graph.costmodel) is not available"
            if self.costs:
                self.peaks, self.note = _peaks_for(probe, probe.precision)
        elif not options.estimate:
            self.note = "static estimate and roofline skipped (--no-estimate)"

    def run(self) -> ProfileResult:
        """Measured alone, one batch size after another."""
        events.info(f"profiling {self.model} on {self.probe.backend} ({self.probe.device}, {self.probe.precision}): {self.options.measure.describe()}")
        rows = profile_probe(self.probe, self.batches, self.options.measure, self.costs, self.peaks)
        return self.finish(rows, self.options.measure.describe())

    def finish(self, rows: list[BatchResult], settings: str, load: LoadAverage | None = None) -> ProfileResult:
        """Rows (with floors applied) into the stored result."""
        probe, note = self.probe, self.note
        peaks = self.peaks
        if self.costs and peaks is not None:
            peaks, floor_note = _checked_floors(probe, rows, self.costs, peaks)
            note = floor_note or note
        result = ProfileResult(
            model=self.model,
            backend=probe.backend,
            device=probe.device,
            precision=probe.precision,
            provider=probe.provider,
            threads=probe.threads,
            cuda_graphs=probe.cuda_graphs,
            timing=getattr(probe, "timing", None),
            path=str(self.path) if self.path else None,
            weights=self.weights,
            weights_hash=self.weights_hash,
            img_size=probe.img_size,
            settings=settings,
            results=rows,
            roofline=peaks,
            roofline_note=note,
            machine=machine_info(probe.threads, probe.device),
            load=load,
        )
        if self.options.store:
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


def prepare_model(model: str, options: ProfileOptions) -> Pending:
    """A zoo model: torch directly, or ONNX Runtime on ONNX exported per batch (or once, dynamic).

    Long because the torch and ONNX Runtime paths each set up their probe and cost source; they
    share _finish.
    """
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
        onnxruntime_precision(options.precision, quantized=False, device=options.device or "cpu", name=model)  # fp16: refused with its reason
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
        return Pending(
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
    return Pending(
        probe_t,
        model=model,
        batches=probe_t.batches(batches),
        options=options,
        cost_source=cost_onnx,
        path=None,
        weights=loaded.weights,
        weights_hash=loaded.weights_hash,
    )


def prepare_onnx(path: Path, options: ProfileOptions, *, model: str | None = None, weights: str | None = None, weights_hash: str | None = None) -> Pending:
    """An ONNX file (FP32 or QDQ) on ONNX Runtime: its static batch, or the requested ones if dynamic."""
    if options.backend not in (None, "onnxruntime"):
        raise UsageError(
            f"an ONNX file is profiled with --backend onnxruntime, not {options.backend}", hint="for tensorrt, build an engine first with `csa engine`"
        )
    if options.precision != "fp32":  # the probe reports what the graph holds; asking for anything else is refused with its reason
        onnxruntime_precision(options.precision, quantized=read_onnx_info(path).has_qdq, device=options.device or "cpu", name=path.name)
    probe = OrtProbe(path, threads=options.threads, device=options.device or "cpu")
    batches = probe.batches(options.batches)
    return Pending(
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
    from csa_cli.tensorrt.runtime import tensorrt_version

    if tensorrt_version() is None:
        raise MissingBackend(
            "TensorRT is not installed here: a TensorRT engine cannot be profiled on this machine",
            hint="pip install 'csa[tensorrt]' on a machine with an NVIDIA GPU, or profile the ONNX with --backend onnxruntime",
        )


def prepare_engine(path: Path, options: ProfileOptions, *, model: str | None = None, record: Record | None = None) -> Pending:
    """TensorRT engines (one, or one per batch from an engine record); exit 4 where TensorRT is absent."""
    if options.backend not in (None, "tensorrt"):
        raise UsageError(f"an engine runs on --backend tensorrt, not {options.backend}")
    # the record is read (and its fields checked) before any device is asked for
    engine = EngineRecord.of(record) if record is not None else None
    # the per-batch sources differ only in their batch axis: the first one still on disk serves every batch
    cost_source = next((Path(p) for p in engine.source_onnx if Path(p).is_file()), None) if engine is not None else None
    _require_tensorrt()
    from csa_cli.backends import open_backend

    device = options.device or "cuda:0"
    if engine is not None and engine.engines:
        backends: dict[int, Any] | Any = {e.batch: open_backend("tensorrt", Path(e.path), device=device) for e in engine.engines}
    else:
        backends = open_backend("tensorrt", path, device=device)
    probe = BackendProbe(backends, options.img_size)
    return Pending(
        probe,
        model=model or (engine.model if engine is not None else None) or path.stem,
        batches=probe.batches(options.batches),
        options=options,
        cost_source=cost_source,
        path=path,
        weights=engine.weights if engine is not None else None,
        weights_hash=engine.field("weights_hash") if engine is not None else None,
    )


def refuse_bundle(where: str | Path) -> None:
    """A deployment bundle is timed on the target: say how, and stop."""
    raise UsageError(
        f"{where} is a deployment bundle: it is profiled on the target device, not here",
        hint=f"on the Orin run `{Path(where) / 'validate.sh'}` (trtexec --exportTimes), then bring the times back with "
        "`csa import-timings TIMES.json --model MODEL --batch N`",
    )


def is_bundle_dir(path: Path) -> bool:
    return path.is_dir() and any((path / m).is_file() for m in BUNDLE_MARKERS)


def prepare_target(*, model: str | None, path: Path | None, record: Record | None, options: ProfileOptions) -> Pending:
    """Dispatch what `csa profile` was given: a zoo MODEL, an ONNX, an engine, a record, a bundle."""
    if record is not None:
        kind = record.kind
        if kind == "bundle":
            refuse_bundle(record.path or "the bundle")
        if kind in ("onnx", "quantized", "check"):
            if not record.path or not Path(record.path).is_file():
                raise CsaError(f"the {kind} record's file is missing: {record.path}", hint="rerun the stage that made it")
            return prepare_onnx(Path(record.path), options, model=record.model, weights=record.weights, weights_hash=record.field("weights_hash"))
        if kind == "engine":
            if not record.path:
                raise CsaError("the engine record names no file")
            return prepare_engine(Path(record.path), options, model=record.model, record=record)
        if kind == "checkpoint" and record.model:
            weights = options.weights if options.weights != "auto" else (record.weights or "auto")
            return prepare_model(record.model, options.model_copy(update={"weights": weights}))
        raise UsageError(f"csa profile cannot read a {kind!r} record", hint="pipe a checkpoint, onnx, quantized or engine record")
    if path is not None:
        if path.is_dir():
            if is_bundle_dir(path):
                refuse_bundle(path)
            raise UsageError(f"{path} is a folder, not an ONNX model or engine", hint="give a .onnx or .engine file")
        if path.suffix in ENGINE_SUFFIXES or options.backend == "tensorrt":
            return prepare_engine(path, options)
        if path.suffix != ".onnx":
            raise UsageError(
                f"{path} is neither an ONNX model (.onnx) nor a TensorRT engine (.engine/.plan)", hint="give the file `csa export` or `csa engine` wrote"
            )
        return prepare_onnx(path, options)
    if model is None:
        raise UsageError("nothing to profile: give a MODEL, an ONNX or engine file, or pipe a record")
    return prepare_model(model, options)


def profile_model(model: str, options: ProfileOptions) -> ProfileResult:
    """A zoo model, measured alone (prepare_model, then Pending.run)."""
    return prepare_model(model, options).run()


def profile_onnx(
    path: Path, options: ProfileOptions, *, model: str | None = None, weights: str | None = None, weights_hash: str | None = None
) -> ProfileResult:
    return prepare_onnx(path, options, model=model, weights=weights, weights_hash=weights_hash).run()


def profile_engine(path: Path, options: ProfileOptions, *, model: str | None = None, record: Record | None = None) -> ProfileResult:
    return prepare_engine(path, options, model=model, record=record).run()


def profile_target(*, model: str | None, path: Path | None, record: Record | None, options: ProfileOptions) -> ProfileResult:
    return prepare_target(model=model, path=path, record=record, options=options).run()

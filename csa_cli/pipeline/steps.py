"""The body of each pipeline stage: the same stage functions the separate commands call.

Each body takes the run's Context (options, the records of the stages before it) and returns the
record its stage prints. A stage that cannot run here raises Skip with the reason.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from csa_cli.errors import CsaError
from csa_cli.paths import sha256_file as _sha256
from csa_cli.pipeline.options import RunOptions, StageName
from csa_cli.records import Record, make_record
from csa_cli.store import artifact_key, store_result


class Skip(Exception):
    """A stage that cannot run here (no dataset, no TensorRT): shown as skipped with the reason."""

    def __init__(self, reason: str, record: Record | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.record = record


@dataclass
class Context:
    """What the stages share during one run."""

    options: RunOptions
    weights: str = "auto"
    records: dict[str, Record] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    fingerprints: dict[str, str | None] = field(default_factory=dict)

    @property
    def model(self) -> str:
        return self.options.model


def _fetch(ctx: Context) -> Record:
    from csa_cli.manifest import load_manifest
    from csa_cli.stages.pull.weights import local_weights

    entry = load_manifest(ctx.options.manifest).get(ctx.model)
    wanted = local_weights(entry, ctx.options.weights) or "auto"  # an entry `csa train --register` wrote: its checkpoint
    if wanted == "random":
        ctx.weights = "random"
        raise Skip("random weights asked (--weights random)")
    if wanted not in ("auto", "pretrained"):
        path = Path(wanted).expanduser()
        if not path.is_file():
            raise CsaError(f"--weights: file not found: {wanted}", hint="give a checkpoint file, or --weights pretrained|random")
        ctx.weights = str(path.resolve())
        # the file's hash goes into every later key: a changed checkpoint at the same path is not "cached"
        record = make_record("checkpoint", model=ctx.model, path=ctx.weights, weights=ctx.weights, weights_hash=_sha256(path))
        raise Skip(f"weights from {path.name}", record)
    if entry.source is None:
        if wanted == "pretrained":
            raise CsaError(
                f"{ctx.model} has no published weights",
                hint="use --weights random, a checkpoint path, or `csa import-reference` to convert one",
            )
        ctx.weights = "random"
        raise Skip("no weights published: random weights")
    from csa_cli.stages.pull import hub

    # --redo fetch downloads again (hub.pull force) instead of trusting the verified cache
    result = hub.pull(entry, manifest_path=ctx.options.manifest, force=ctx.options.redo == "fetch")
    ctx.weights = "pretrained"
    return make_record("checkpoint", **result.record_fields())


def _dataset(ctx: Context, what: str) -> str:
    if not ctx.options.dataset:
        raise Skip(f"no dataset (give --dataset to {what})")
    return ctx.options.dataset


def _eval_workers(ctx: Context) -> int | None:
    """Loader processes for an evaluation: none for a few images (starting them costs more than they save)."""
    return 0 if ctx.options.limit is not None and ctx.options.limit <= 64 else None


def _evaluate(ctx: Context) -> Record:
    dataset = _dataset(ctx, "evaluate")

    source: str | Record = ctx.model
    if ctx.options.eval_backend == "onnxruntime":
        # the very ONNX the export stage keeps (the core caches it): one export serves eval, check, quantize and profile
        source = _export(ctx)
    return _evaluate_on(ctx, source, dataset, ctx.options.eval_backend, precision="fp32")


def _evaluate_on(ctx: Context, source: Any, dataset: str, backend: str, **extra: Any) -> Record:
    """The evaluate stage with the run's data, limit, weights and threads: every eval step of the chain."""
    from csa_cli.stages.evaluate import stage as evaluate

    return evaluate.evaluate_stage(
        source,
        dataset=dataset,
        data_dir=ctx.options.data_dir,
        backend=backend,
        limit=ctx.options.limit,
        weights=ctx.weights,
        manifest=ctx.options.manifest,
        threads=ctx.options.threads,
        workers=_eval_workers(ctx),
        **extra,
    )


def _export(ctx: Context) -> Record:
    from csa_cli.stages.export.stage import export_stage

    return export_stage(
        ctx.model,
        weights=ctx.weights,
        batch=ctx.options.batch[0],
        img_size=ctx.options.img_size,
        dynamic_batch=False,
        opset=17,
        verify=True,
        output=None,
        manifest=ctx.options.manifest,
    )


def _check(ctx: Context) -> Record:
    from csa_cli.graph.costmodel import analyze
    from csa_cli.stages.check.checks import check_onnx

    onnx_record = ctx.records["export"]
    path = str(onnx_record.path)
    verdicts: dict[str, Any] = {}
    for rules in ("restricted", "dla"):
        report = check_onnx(path, rules)
        verdicts[rules] = {"compliant": bool(report.compliant), "violations": len(report.violations), "warnings": len(report.warnings)}
    cost = analyze(path, 1)
    traffic = {str(b): _traffic_per_frame(cost, b) for b in sorted(set(ctx.options.batch) | {1})}
    check = {
        "rules": "restricted",
        "compliant": verdicts["restricted"]["compliant"],
        "violations": verdicts["restricted"]["violations"],
        "warnings": verdicts["restricted"]["warnings"],
        "dla": verdicts["dla"],
    }
    cost_data = {"params": int(cost.params), "macs": int(cost.macs), "traffic_bytes_per_frame": traffic}
    key = artifact_key(model=ctx.model, onnx=path, weights=ctx.weights)
    store_result("check", ctx.model, key, {"kind": "check", "model": ctx.model, "weights": ctx.weights, "onnx": path, **verdicts})
    store_result(
        "cost",
        ctx.model,
        key,
        {"kind": "cost", "model": ctx.model, "weights": ctx.weights, "onnx": path, "estimate": "static, from the ONNX graph", **cost_data},
    )
    return onnx_record.with_fields(check=check, cost=cost_data)


def _traffic_per_frame(cost: Any, batch: int) -> float:
    """Static memory traffic per frame at a batch size: weights are read once per batch, activations per image."""
    return float(cost.traffic_at(batch).bytes_per_frame)


def _quantize(ctx: Context) -> Record:
    if ctx.options.precision not in ("int8", "mixed"):
        raise Skip(f"precision {ctx.options.precision} needs no INT8 model")
    dataset = ctx.options.calib_dataset or _dataset(ctx, "calibrate")
    from csa_cli.stages.quantize import stage as quantize

    return quantize.quantize_stage(
        ctx.records.get("check") or ctx.records["export"],
        calib_dataset=dataset,
        data_dir=ctx.options.data_dir,
        calib_images=ctx.options.calib_images,
        method=ctx.options.method,
        precision=ctx.options.precision,
        weights=ctx.weights,
        manifest=ctx.options.manifest,
    )


def _eval_mixed(ctx: Context) -> Record:
    """The model that deploys, evaluated: the engine built here, else the Q/DQ graph on ONNX Runtime."""
    engine = ctx.records.get("engine")
    built_here = engine is not None and engine.kind == "engine"
    if not built_here and "quantize" not in ctx.records:
        raise Skip("no quantized model")
    dataset = _dataset(ctx, "evaluate")

    # calibration images are left out by the eval core (the engine record carries their list too)
    return _evaluate_on(ctx, engine if built_here else ctx.records["quantize"], dataset, "tensorrt" if built_here else "onnxruntime")


def _cpu_int8(ctx: Context) -> Record:
    """The study's CPU INT8 row: the exported graph quantized in ONNX Runtime's placement (integer kernels on a
    CPU), its top-1 on ONNX Runtime, and its latency timed interleaved with the FP32 graph it came from.

    The TensorRT-placement quantize stage stays what engines, bundles and the mixed top-1 use; this one only
    measures what INT8 gives on the CPU. Its artifacts and results carry placement "onnxruntime" in their keys.
    """
    if not ctx.options.cpu_int8:
        raise Skip("CPU INT8 not asked (--cpu-int8 adds it)")
    if ctx.options.precision not in ("int8", "mixed"):
        raise Skip(f"precision {ctx.options.precision} needs no INT8 model")
    exported = ctx.records.get("export")
    if exported is None or exported.path is None:
        raise Skip("no exported model")
    dataset = _dataset(ctx, "evaluate the CPU INT8 model")
    from csa_cli.stages.quantize import stage as quantize

    quantized = quantize.quantize_stage(
        exported,
        calib_dataset=ctx.options.calib_dataset or dataset,
        data_dir=ctx.options.data_dir,
        calib_images=ctx.options.calib_images,
        method=ctx.options.method,
        precision=ctx.options.precision,
        weights=ctx.weights,
        manifest=ctx.options.manifest,
        placement="onnxruntime",
    )
    evaluated = _evaluate_on(ctx, quantized, dataset, "onnxruntime")
    fp32 = ctx.records.get("evaluate")
    fp32_top1 = fp32.field("top1") if fp32 is not None and fp32.field("backend") == "onnxruntime" else None
    drop = {"fp32_top1": fp32_top1, "drop": round(fp32_top1 - evaluated.field("top1"), 4)} if isinstance(fp32_top1, int | float) else {}
    return evaluated.with_fields(**drop, **_time_against_fp32(ctx, Path(str(exported.path)), Path(str(quantized.path)), quantized.field("weights_hash")))


def _time_against_fp32(ctx: Context, fp32: Path, int8: Path, weights_hash: Any) -> dict[str, Any]:
    """Both graphs timed round by round (stages/profile/sidebyside.py); only the INT8 one is stored, so that the
    model's FP32 latency in the study stays the run timed with the other models."""
    from csa_cli.measure.timing import MeasureSettings
    from csa_cli.stages.profile.records import ProfileOptions
    from csa_cli.stages.profile.sidebyside import measure_side_by_side
    from csa_cli.stages.profile.stage import prepare_onnx

    settings = MeasureSettings(warmup=ctx.options.warmup, iterations=ctx.options.iterations, seconds=ctx.options.seconds)
    # latency and its ratio only: no static estimate or roofline here (the study's Fig. 7 has the traffic)
    options = ProfileOptions(
        backend="onnxruntime", threads=ctx.options.threads, weights=ctx.weights, manifest=ctx.options.manifest, measure=settings, estimate=False
    )
    pendings = [
        prepare_onnx(fp32, options.model_copy(update={"store": False}), model=ctx.model, weights=ctx.weights, weights_hash=weights_hash),
        prepare_onnx(int8, options, model=ctx.model, weights=ctx.weights, weights_hash=weights_hash),
    ]
    (base, timed), _ = measure_side_by_side(pendings)
    row, fp32_row = timed.results[0], base.results[0]  # the exported graph's static batch (the run's first --batch)
    spread = row.ratio
    return {
        "latency": {
            "batch": row.batch,
            "median_ms": row.median_ms,
            "fp32_median_ms": fp32_row.median_ms,
            "ratio_to_fp32": None if spread is None else spread.model_dump(mode="json"),
        }
    }


def _engine(ctx: Context) -> Record:
    if ctx.options.target == "local" and importlib.util.find_spec("tensorrt") is None:
        raise Skip("TensorRT not installed here (--target orin makes a bundle to build on the device)")
    quantized = ctx.records.get("quantize")
    if ctx.options.precision in ("int8", "mixed") and quantized is None:
        raise Skip(f"no quantized model for precision {ctx.options.precision} (give --dataset to calibrate one)")
    from csa_cli.stages.engine.stage import engine_stage

    # one quantized model per run: the calibrated Q/DQ graph eval-mixed evaluates, copied per batch size
    source: Record = quantized or ctx.records.get("check") or ctx.records["export"]
    return engine_stage(
        source,
        precision=ctx.options.precision,
        target=ctx.options.target,
        batch=ctx.options.batch,
        weights=ctx.weights,
        manifest=ctx.options.manifest,
        img_size=ctx.options.img_size,
        dataset=ctx.options.dataset,
        data_dir=ctx.options.data_dir,
    )


def _profile(ctx: Context) -> Record:
    from csa_cli.measure.timing import MeasureSettings
    from csa_cli.stages.profile.records import ProfileOptions
    from csa_cli.stages.profile.stage import profile_model

    options = ProfileOptions(
        backend=ctx.options.backend,
        batches=list(ctx.options.batch),
        threads=ctx.options.threads,
        weights=ctx.weights,
        img_size=ctx.options.img_size,
        manifest=ctx.options.manifest,
        measure=MeasureSettings(warmup=ctx.options.warmup, iterations=ctx.options.iterations, seconds=ctx.options.seconds),
    )
    return profile_model(ctx.model, options).to_record()  # stored for `csa compare` by the core


STAGE_BODIES: dict[StageName, Callable[[Context], Record]] = {
    "fetch": _fetch,
    "evaluate": _evaluate,
    "export": _export,
    "check": _check,
    "quantize": _quantize,
    "engine": _engine,
    "eval-mixed": _eval_mixed,
    "cpu-int8": _cpu_int8,
    "profile": _profile,
}

"""The pipeline core: fetch → evaluate → export → check → quantize → eval-mixed → engine → profile.

`csa run` and `csa compare` drive the same stage cores as the separate commands, in-process.
Each finished stage leaves a small "run step" artifact under CSA_HOME (store.py)
holding the record it produced, keyed by the stage's inputs (model, weights, options and the
key of the step it consumed). A rerun with the same inputs finds the step and reports it as
cached; `--redo STAGE` ignores the steps from that stage on (and rebuilds their artifacts);
a run killed mid-stage left no step for that stage (artifacts are renamed into place only
when complete), so the next run resumes there.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from csa_cli.errors import CsaError, MissingBackend, UsageError
from csa_cli.paths import csa_home
from csa_cli.paths import sha256_file as _sha256
from csa_cli.records import Record, make_record
from csa_cli.store import artifact_key, build_artifact, find_artifact, store_result

StageName = Literal["fetch", "evaluate", "export", "check", "quantize", "eval-mixed", "engine", "profile"]
STAGES: tuple[StageName, ...] = ("fetch", "evaluate", "export", "check", "quantize", "eval-mixed", "engine", "profile")
# Names users may type for a stage (the issue calls the engine stage "build-engine").
STAGE_ALIASES: dict[str, StageName] = {"build-engine": "engine", "pull": "fetch", "eval": "evaluate", "eval-quantized": "eval-mixed"}

Status = Literal["pending", "running", "done", "cached", "failed", "skipped"]
RUN_STEP = "run-step"  # artifact stage prefix of the pipeline's own per-stage markers
STEP_FILE = "step.json"


def stage_name(text: str, option: str = "--to") -> StageName:
    """A stage name (or alias) from the command line; anything else is a usage error."""
    name = STAGE_ALIASES.get(text, text)
    if name not in STAGES:
        raise UsageError(f"{option}: unknown stage '{text}'", hint=f"one of {', '.join(STAGES)}")
    return name  # type: ignore[return-value]


class RunOptions(BaseModel):
    """What `csa run` (or `csa compare`) asks of the pipeline."""

    model_config = ConfigDict(extra="forbid")

    model: str
    to: StageName = "profile"
    stages: list[StageName] | None = Field(default=None, description="only these stages (compare leaves out the engine); None = all up to `to`")
    weights: str = "auto"
    dataset: str | None = None
    data_dir: str | None = None
    limit: int | None = None
    calib_dataset: str | None = None
    calib_images: int = 500
    method: str = "entropy"
    precision: Literal["fp32", "fp16", "int8", "mixed"] = "mixed"
    target: Literal["local", "orin"] = "local"
    batch: list[int] = Field(default_factory=lambda: [1])
    backend: Literal["torch", "onnxruntime", "tensorrt"] = "onnxruntime"
    # ONNX Runtime for FP32 too, so that the drop to mixed precision compares one runtime with itself
    eval_backend: Literal["torch", "onnxruntime"] = "onnxruntime"
    iterations: int = 20
    warmup: int = 3
    threads: int | None = None
    img_size: tuple[int, int] | None = None
    redo: StageName | None = None
    manifest: str | None = None


class StageResult(BaseModel):
    """One stage of a run: its state, time and what it produced (or why it did not run)."""

    name: StageName
    status: Status = "pending"
    seconds: float | None = None
    reason: str | None = None
    path: str | None = None
    key: str | None = None
    note: str | None = Field(default=None, description="what the stage found, in one line")
    record: dict[str, Any] | None = None
    exit_code: int | None = None


class RunSummary(BaseModel):
    """The outcome of a run; `to_record()` is the one "run" record `csa run` prints."""

    model: str
    weights: str | None = None
    options: RunOptions
    stages: list[StageResult]
    seconds: float = 0.0
    ok: bool = True
    failed_stage: StageName | None = None
    message: str | None = None

    def stage(self, name: StageName) -> StageResult:
        return next(s for s in self.stages if s.name == name)

    def to_record(self) -> Record:
        return make_record(
            "run",
            model=self.model,
            weights=self.weights,
            ok=self.ok,
            seconds=round(self.seconds, 3),
            failed_stage=self.failed_stage,
            message=self.message,
            stages=[{k: v for k, v in s.model_dump(exclude={"record"}).items() if v is not None} for s in self.stages],
            records={s.name: s.record for s in self.stages if s.record is not None},
        )


class StepFile(BaseModel):
    """step.json in a run-step artifact: the record a finished stage produced."""

    model_config = ConfigDict(extra="forbid")

    stage: StageName
    status: Literal["done", "skipped"]
    reason: str | None = None
    record: dict[str, Any] | None = None
    seconds: float


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


# ---------------------------------------------------------------- stage bodies
# Each takes the context and returns the record it produced, or raises Skip / CsaError.
# The heavy cores are imported inside, so importing this module stays cheap.


def _fetch(ctx: Context) -> Record:
    from csa_cli.manifest import load_manifest

    entry = load_manifest(ctx.options.manifest).get(ctx.model)
    wanted = ctx.options.weights
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
    from csa_cli.stages.evaluate import stage as evaluate

    source: str | Record = ctx.model
    if ctx.options.eval_backend == "onnxruntime":
        # the very ONNX the export stage keeps (the core caches it): one export serves eval, check, quantize and profile
        source = _export(ctx)
    return evaluate.evaluate_stage(
        source,
        dataset=dataset,
        data_dir=ctx.options.data_dir,
        backend=ctx.options.eval_backend,
        precision="fp32",
        limit=ctx.options.limit,
        weights=ctx.weights,
        manifest=ctx.options.manifest,
        threads=ctx.options.threads,
        workers=_eval_workers(ctx),
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
    if "quantize" not in ctx.records:
        raise Skip("no quantized model")
    dataset = _dataset(ctx, "evaluate")
    from csa_cli.stages.evaluate import stage as evaluate

    # the QDQ ONNX runs on ONNX Runtime; its calibration images are left out by the eval core
    return evaluate.evaluate_stage(
        ctx.records["quantize"],
        dataset=dataset,
        data_dir=ctx.options.data_dir,
        backend="onnxruntime",
        limit=ctx.options.limit,
        weights=ctx.weights,
        manifest=ctx.options.manifest,
        threads=ctx.options.threads,
        workers=_eval_workers(ctx),
    )


def _engine(ctx: Context) -> Record:
    if ctx.options.target == "local" and importlib.util.find_spec("tensorrt") is None:
        raise Skip("TensorRT not installed here (--target orin makes a bundle to build on the device)")
    from csa_cli.stages.engine.stage import engine_stage

    quantized = ctx.records.get("quantize")
    source: Record | str = quantized or ctx.records.get("check") or ctx.records["export"]
    calib_cache = None
    if len(ctx.options.batch) > 1:
        # the exported (and QDQ) ONNX is static at the first batch size: for several, the engine core
        # exports one FP32 ONNX per batch, and INT8 comes from the calibration cache of the same calibration
        source = ctx.model
        calib_cache = quantized.field("calib_cache") if quantized is not None else None
    return engine_stage(
        source,
        precision=ctx.options.precision,
        target=ctx.options.target,
        batch=ctx.options.batch,
        weights=ctx.weights,
        manifest=ctx.options.manifest,
        img_size=ctx.options.img_size,
        calib_cache=calib_cache,
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
        measure=MeasureSettings(warmup=ctx.options.warmup, iterations=ctx.options.iterations),
    )
    return profile_model(ctx.model, options).to_record()  # stored for `csa compare` by the core


STAGE_BODIES: dict[StageName, Callable[[Context], Record]] = {
    "fetch": _fetch,
    "evaluate": _evaluate,
    "export": _export,
    "check": _check,
    "quantize": _quantize,
    "eval-mixed": _eval_mixed,
    "engine": _engine,
    "profile": _profile,
}

# What each stage's step key depends on besides the model and the weights: its options and the
# steps it consumes (a changed upstream step changes every key after it).
_STAGE_INPUTS: dict[StageName, tuple[tuple[str, ...], tuple[StageName, ...]]] = {
    "fetch": (("weights",), ()),
    "evaluate": (("dataset", "data_dir", "limit", "eval_backend", "batch", "img_size"), ("fetch",)),
    "export": (("batch", "img_size"), ("fetch",)),
    "check": ((), ("export",)),
    "quantize": (("calib_dataset", "dataset", "data_dir", "calib_images", "method", "precision"), ("export",)),
    "eval-mixed": (("dataset", "data_dir", "limit", "precision"), ("quantize",)),
    "engine": (("precision", "target", "batch"), ("quantize", "export")),
    "profile": (("backend", "batch", "iterations", "warmup", "threads", "img_size"), ("fetch",)),
}


def _fingerprint(ctx: Context, dataset: str | None) -> str | None:
    """The dataset's content fingerprint (its file list and labels), so that a changed folder is not "cached"."""
    if not dataset:
        return None
    if dataset not in ctx.fingerprints:
        from csa_cli.data.datasets import resolve_dataset

        try:
            ctx.fingerprints[dataset] = resolve_dataset(dataset, ctx.options.data_dir).info.fingerprint
        except CsaError:
            ctx.fingerprints[dataset] = None  # the stage itself reports what is wrong with it
    return ctx.fingerprints[dataset]


def _step_inputs(ctx: Context, name: StageName) -> dict[str, Any]:
    options, upstream = _STAGE_INPUTS[name]
    data = ctx.options.model_dump(mode="json")
    inputs: dict[str, Any] = {
        "model": ctx.model,
        "stage": name,
        "weights": ctx.options.weights if name == "fetch" else ctx.weights,
        "options": {o: data[o] for o in options},
        "upstream": {u: ctx.keys.get(u) for u in upstream},
    }
    if name in ("evaluate", "eval-mixed"):
        inputs["dataset_fingerprint"] = _fingerprint(ctx, ctx.options.dataset)
    elif name == "quantize":
        inputs["dataset_fingerprint"] = _fingerprint(ctx, ctx.options.calib_dataset or ctx.options.dataset)
    return inputs


def _load_step(model: str, key: str) -> StepFile | None:
    folder = find_artifact(model, RUN_STEP, key)
    if folder is None:
        return None
    try:
        step = StepFile.model_validate_json((folder / STEP_FILE).read_text())
    except (OSError, ValueError):
        return None
    # A step whose artifact was removed since (csa cache rm) is not done any more.
    path = (step.record or {}).get("path")
    if path and not Path(path).exists():
        return None
    return step


def _save_step(model: str, key: str, inputs: dict[str, Any], step: StepFile) -> None:
    with build_artifact(model, RUN_STEP, key, inputs) as tmp:
        (tmp / STEP_FILE).write_text(step.model_dump_json(indent=2))


def _artifact_folder(path: str | None) -> Path | None:
    """The artifact folder under CSA_HOME/artifacts that holds `path`, if it is one of ours."""
    if not path:
        return None
    root = (csa_home() / "artifacts").resolve()
    try:
        rel = Path(path).resolve().relative_to(root)
    except ValueError:
        return None
    return root / Path(*rel.parts[:2]) if len(rel.parts) >= 2 else None


# Stages whose record's path is an artifact they made (others point at their input: eval, check).
_MAKES_ARTIFACT: frozenset[str] = frozenset({"export", "quantize", "engine"})


def _forget(step: StepFile) -> None:
    """--redo: remove what a stage made so that its core rebuilds it instead of finding it cached."""
    if step.stage not in _MAKES_ARTIFACT:
        return
    record = step.record or {}
    for value in (record.get("path"), record.get("calib_cache")):
        folder = _artifact_folder(value)
        if folder is not None and folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)


def selected_stages(options: RunOptions) -> list[StageName]:
    upto = STAGES[: STAGES.index(options.to) + 1]
    if options.stages is None:
        return list(upto)
    return [s for s in upto if s in options.stages]


def validate_options(options: RunOptions) -> None:
    if min(options.batch, default=0) < 1:
        raise UsageError("--batch must be at least 1", hint="e.g. --batch 1,4,8,16")
    if options.limit is not None and options.limit < 1:
        raise UsageError(f"--limit must be at least 1, got {options.limit}")
    if options.iterations < 1:
        raise UsageError(f"--iterations must be at least 1, got {options.iterations}")
    if options.calib_images < 1:
        raise UsageError(f"--calib-images must be at least 1, got {options.calib_images}")
    chosen = selected_stages(options)
    if options.redo is not None and options.redo not in chosen:
        raise UsageError(f"--redo {options.redo}: that stage is not part of this run", hint=f"stages run: {', '.join(chosen)}")


def run_pipeline(options: RunOptions, on_update: Callable[[RunSummary], None] | None = None) -> RunSummary:
    """Run the chain up to options.to; stages already done with the same inputs are cached.

    A failing stage stops the run (summary.ok False, its message kept); nothing is raised for it,
    so that the caller can show the summary before reporting the failure.
    """
    from csa_cli.manifest import load_manifest

    validate_options(options)
    load_manifest(options.manifest).get(options.model)  # an unknown name fails here, with suggestions
    chosen = selected_stages(options)
    summary = RunSummary(model=options.model, options=options, stages=[StageResult(name=s) for s in chosen])
    ctx = Context(options=options, weights=options.weights)
    redo_from = STAGES.index(options.redo) if options.redo else None
    started = time.perf_counter()

    def update() -> None:
        summary.seconds = time.perf_counter() - started
        summary.weights = ctx.weights
        if on_update is not None:
            on_update(summary)

    update()
    for result in summary.stages:
        name = result.name
        inputs = _step_inputs(ctx, name)
        key = artifact_key(**inputs)
        result.key = key
        redo = redo_from is not None and STAGES.index(name) >= redo_from
        # fetch always runs: a pull verifies the cached files against the lock and is cheap when they are there
        step = None if name == "fetch" else _load_step(options.model, key)
        if step is not None and not redo:
            _apply_step(ctx, name, key, step)
            result.status = "cached" if step.status == "done" else "skipped"
            result.reason = step.reason
            result.seconds = 0.0
            result.record = step.record
            result.path = (step.record or {}).get("path")
            result.note = stage_note(name, step.record)
            update()
            continue
        if step is not None and redo:
            _forget(step)
        result.status = "running"
        update()
        t0 = time.perf_counter()
        try:
            record = STAGE_BODIES[name](ctx)
            status: Literal["done", "skipped", "cached"] = "done"
            reason = None
        except Skip as skip:
            record, status, reason = skip.record, "skipped", skip.reason
        except MissingBackend as exc:  # cannot run here (no TensorRT, no GPU): skipped, with what is missing
            record, status, reason = None, "skipped", exc.message
        except CsaError as exc:
            _fail(summary, result, t0, exc.message if not exc.hint else f"{exc.message} ({exc.hint})", int(exc.exit_code))
            update()
            break
        except Exception as exc:  # a bug in a core still ends the run with its message, shown per stage
            _fail(summary, result, t0, f"{type(exc).__name__}: {exc}", 1)
            update()
            break
        if record is not None and ctx.weights == "random" and record.weights != "random":
            record = record.with_fields(weights="random")  # every record downstream of random weights says so
        seconds = time.perf_counter() - t0
        step = StepFile(stage=name, status="skipped" if status == "skipped" else "done", reason=reason, record=_record_dict(record), seconds=seconds)
        if name == "fetch":
            # later keys follow what was fetched (commit, file hashes), not only what was asked
            key = artifact_key(**inputs, fetched={k: (step.record or {}).get(k) for k in ("weights", "weights_hash", "commit")})
            result.key = key
            if record is not None and record.field("downloaded_bytes") == 0:
                status = "cached"  # nothing downloaded: the verified cache served it
        elif status == "done":
            # skips are not kept: their reason (no dataset, no TensorRT) is cheap to decide again and may change
            _save_step(options.model, key, inputs, step)
        _apply_step(ctx, name, key, step)
        result.status, result.reason, result.seconds = status, reason, seconds
        result.record = step.record
        result.path = (step.record or {}).get("path")
        result.note = stage_note(name, step.record)
        update()
    update()
    return summary


def _record_dict(record: Record | None) -> dict[str, Any] | None:
    return None if record is None else json.loads(record.to_json())


def _apply_step(ctx: Context, name: StageName, key: str, step: StepFile) -> None:
    ctx.keys[name] = key
    if name == "fetch" and step.record is not None:
        # the weights every later stage uses (pretrained / a path), as fetch decided them
        ctx.weights = str(step.record.get("weights") or ctx.weights)
    if step.record is not None:
        ctx.records[name] = Record.model_validate(step.record)


def _fail(summary: RunSummary, result: StageResult, t0: float, message: str, exit_code: int) -> None:
    result.status = "failed"
    result.seconds = time.perf_counter() - t0
    result.reason = message
    result.exit_code = exit_code
    summary.ok = False
    summary.failed_stage = result.name
    summary.message = message


def stage_note(name: str, record: dict[str, Any] | None) -> str | None:
    """One line saying what a stage found, for the live view and the plain lines."""
    if not record:
        return None
    if record.get("kind") == "eval":
        top1 = record.get("top1")
        shown = f"{top1:.2f}%" if isinstance(top1, int | float) else "?"  # eval records give percent
        return f"top-1 {shown} on {record.get('images')} images ({record.get('backend')}, {record.get('precision')})"
    if name == "check" and isinstance(record.get("check"), dict):
        check = record["check"]
        dla = check.get("dla") or {}

        def verdict(data: dict[str, Any]) -> str:
            return "yes" if data.get("compliant") else f"no ({data.get('violations')} violations)"

        return f"restricted mode: {verdict(check)}; DLA: {verdict(dla)}"
    if record.get("kind") == "profile":
        rows = record.get("results") or []
        return ", ".join(f"b{r.get('batch')} {r.get('median_ms', 0):.2f} ms" for r in rows) or None
    return record.get("path")


def format_stage_line(result: StageResult) -> str:
    """A plain line for a stage (stderr when it is not a terminal)."""
    secs = "" if result.seconds is None else f" ({result.seconds:.1f}s)"
    said = result.reason or result.note
    reason = f": {said}" if said else ""
    return f"[{result.name}] {result.status}{secs}{reason}"


def stage_choices() -> Sequence[str]:
    return [*STAGES, *STAGE_ALIASES]

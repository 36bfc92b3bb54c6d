"""The pipeline core: fetch → evaluate → export → check → quantize → engine → eval-mixed → cpu-int8 → profile.

`csa run` and `csa compare` drive the same stage cores as the separate commands, in-process.
Each finished stage leaves a small "run step" artifact under CSA_HOME (store.py)
holding the record it produced, keyed by the stage's inputs (model, weights, options and the
key of the step it consumed). A rerun with the same inputs finds the step and reports it as
cached; `--redo STAGE` ignores the steps from that stage on (and rebuilds their artifacts);
a run killed mid-stage left no step for that stage (artifacts are renamed into place only
when complete), so the next run resumes there.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from csa_cli.errors import CsaError, MissingBackend
from csa_cli.paths import csa_home
from csa_cli.pipeline.options import STAGES, RunOptions, RunSummary, StageName, StageResult, selected_stages, stage_note, validate_options
from csa_cli.pipeline.steps import STAGE_BODIES, Context, Skip
from csa_cli.records import Record, record_from_dict
from csa_cli.store import artifact_key, build_artifact, find_artifact

RUN_STEP = "run-step"  # artifact stage prefix of the pipeline's own per-stage markers
STEP_FILE = "step.json"


class StepFile(BaseModel):
    """step.json in a run-step artifact: the record a finished stage produced."""

    model_config = ConfigDict(extra="forbid")

    stage: StageName
    status: Literal["done", "skipped"]
    reason: str | None = None
    record: dict[str, Any] | None = None
    seconds: float


# ---------------------------------------------------------------- stage bodies
# Each takes the context and returns the record it produced, or raises Skip / CsaError.
# The heavy cores are imported inside, so importing this module stays cheap.


# What each stage's step key depends on besides the model and the weights: its options and the
# steps it consumes (a changed upstream step changes every key after it).
_STAGE_INPUTS: dict[StageName, tuple[tuple[str, ...], tuple[StageName, ...]]] = {
    "fetch": (("weights",), ()),
    "evaluate": (("dataset", "data_dir", "limit", "eval_backend", "batch", "img_size"), ("fetch",)),
    "export": (("batch", "img_size"), ("fetch",)),
    "check": ((), ("export",)),
    "quantize": (("calib_dataset", "dataset", "data_dir", "calib_images", "method", "precision"), ("export",)),
    "engine": (("precision", "target", "batch", "dataset", "data_dir"), ("quantize", "export")),
    "eval-mixed": (("dataset", "data_dir", "limit", "precision"), ("quantize", "engine")),
    "cpu-int8": (
        ("cpu_int8", "calib_dataset", "dataset", "data_dir", "calib_images", "method", "precision", "limit", "iterations", "seconds", "warmup", "threads"),
        ("export", "evaluate"),
    ),
    "profile": (("backend", "batch", "iterations", "seconds", "warmup", "threads", "img_size"), ("fetch",)),
}


def _fingerprint(ctx: Context, dataset: str | None) -> str | None:
    """The dataset's content fingerprint (its file list and labels), so that a changed folder is not "cached"."""
    if not dataset:
        return None
    if dataset not in ctx.fingerprints:
        from csa_cli.stages.pull.dataset import open_dataset

        try:
            ctx.fingerprints[dataset] = open_dataset(dataset, ctx.options.data_dir).info.fingerprint
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
    elif name == "cpu-int8":
        inputs["dataset_fingerprint"] = _fingerprint(ctx, ctx.options.dataset)
        inputs["calib_fingerprint"] = _fingerprint(ctx, ctx.options.calib_dataset or ctx.options.dataset)
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


def run_pipeline(options: RunOptions, on_update: Callable[[RunSummary], None] | None = None) -> RunSummary:
    """Run the chain up to options.to; stages already done with the same inputs are cached.

    A failing stage stops the run (summary.ok False, its message kept); nothing is raised for it,
    so that the caller can show the summary before reporting the failure.

    Long because one loop decides, per stage, between the cached step, a redo, a skip and a failure,
    and keeps the live summary in step with it; the stage bodies are in steps.py.
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
        ctx.records[name] = record_from_dict(step.record)


def _fail(summary: RunSummary, result: StageResult, t0: float, message: str, exit_code: int) -> None:
    result.status = "failed"
    result.seconds = time.perf_counter() - t0
    result.reason = message
    result.exit_code = exit_code
    summary.ok = False
    summary.failed_stage = result.name
    summary.message = message

"""The chains of stages: run and compare."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from csa_cli import events
from csa_cli.api._common import OnEvent, _batches, _listening, _model_name, _path
from csa_cli.errors import CsaError, ExitCode, UsageError

if TYPE_CHECKING:
    from csa_cli.api._common import Batch, PathLike
    from csa_cli.pipeline.compare import Study
    from csa_cli.pipeline.options import RunSummary
    from csa_cli.records import Record


def _run_summary(
    model: str | Record,
    *,
    on_update: Callable[[RunSummary], None] | None = None,
    **options: Any,
) -> RunSummary:
    """run()'s summary as the pipeline's object; raises nothing on a failed stage.

    options: run()'s, by name.
    """
    from csa_cli.inputs import canonical_model, choice, parse_batch_list, require_positive
    from csa_cli.pipeline.options import RunOptions, stage_name
    from csa_cli.pipeline.run import run_pipeline

    manifest = options["manifest"]
    run_options = RunOptions(
        model=canonical_model(_model_name(model), _path(manifest)),
        to=stage_name(options["to"]),
        redo=stage_name(options["redo"], "--redo") if options["redo"] else None,
        weights=options["weights"],
        dataset=options["dataset"],
        data_dir=os.fspath(options["data_dir"]) if options["data_dir"] else None,
        limit=require_positive(options["limit"], "--limit"),
        calib_dataset=options["calib_dataset"],
        calib_images=require_positive(options["calib_images"], "--calib-images") or 1,
        precision=choice(options["precision"], "--precision", ("fp32", "fp16", "int8", "mixed")),  # type: ignore[arg-type]
        target=choice(options["target"], "--target", ("local", "orin")),  # type: ignore[arg-type]
        batch=_batches(options["batch"]) or parse_batch_list("1"),
        backend=choice(options["backend"], "--backend", ("onnxruntime", "torch", "tensorrt")),  # type: ignore[arg-type]
        iterations=require_positive(options["iterations"], "--iterations"),
        seconds=options["seconds"],
        threads=require_positive(options["threads"], "--threads"),
        manifest=os.fspath(manifest) if manifest else None,
        cpu_int8=options["cpu_int8"],
    )
    return run_pipeline(run_options, on_update=on_update)


def run(
    model: str | Record,
    *,
    to: str = "profile",
    dataset: str | None = None,
    data_dir: PathLike | None = None,
    limit: int | None = None,
    calib_dataset: str | None = None,
    calib_images: int = 500,
    precision: str = "mixed",
    target: str = "local",
    batch: Batch = "1",
    backend: str = "onnxruntime",
    iterations: int | None = None,
    seconds: float | None = None,
    threads: int | None = None,
    redo: str | None = None,
    weights: str = "auto",
    manifest: PathLike | None = None,
    cpu_int8: bool = False,
    on_event: OnEvent = None,
    on_update: Callable[[RunSummary], None] | None = None,
) -> Record:
    """`csa run`: the chain fetch → evaluate → export → check → quantize → engine → eval-mixed → cpu-int8 → profile,
    cached per stage: a "run" record. `on_update` gets the summary at each change of a stage.

    A failed stage raises its error's class (its exit code) with the run record as `exc.record`.
    """
    options = dict(locals())
    del options["model"], options["on_event"], options["on_update"]
    with _listening(on_event):
        summary = _run_summary(model, on_update=on_update, **options)
    record = summary.to_record()
    if not summary.ok:
        failed = summary.stage(summary.failed_stage) if summary.failed_stage else None
        code = ExitCode(failed.exit_code) if failed and failed.exit_code in {int(c) for c in ExitCode} else ExitCode.FAILURE
        raise CsaError(f"stage '{summary.failed_stage}' failed: {summary.message}", exit_code=code, record=record)
    return record


def compare_study(*models: str | Record, on_update: Callable[[RunSummary], None] | None = None, **options: Any) -> tuple[Record, Study]:
    """compare()'s record and the study behind it (what `csa compare` renders). options: compare()'s, by name."""
    from csa_cli.inputs import canonical_model, choice, require_positive
    from csa_cli.pipeline.compare import compare_models
    from csa_cli.records import make_record

    if not models:
        raise UsageError("give at least one MODEL")
    manifest = options["manifest"]
    names = [canonical_model(_model_name(m), _path(manifest)) for m in models]
    batches = _batches(options["batch"]) or [1]
    study = compare_models(
        names,
        baseline=options["baseline"],
        batches=batches,
        backend=choice(options["backend"], "--backend", ("onnxruntime", "torch", "tensorrt")),
        dataset=options["dataset"],
        data_dir=os.fspath(options["data_dir"]) if options["data_dir"] else None,
        limit=require_positive(options["limit"], "--limit"),
        calib_dataset=options["calib_dataset"],
        calib_images=require_positive(options["calib_images"], "--calib-images") or 1,
        weights=options["weights"],
        iterations=require_positive(options["iterations"], "--iterations"),
        seconds=options["seconds"],
        threads=require_positive(options["threads"], "--threads"),
        manifest=os.fspath(manifest) if manifest else None,
        run=not options["no_run"],
        cpu_int8=options["cpu_int8"],
        on_update=on_update,
    )
    for name, what in study.runs.items():
        if what.startswith("failed"):
            events.warn(f"{name}: {what}")
    fields = study.to_record_fields()
    if options["report"] is not None:
        from csa_cli.pipeline.report import write_report

        path = write_report(study, Path(options["report"]))
        events.info(f"report written: {path}")
        fields["report"] = str(path)
    return make_record("compare", model=",".join(names), **fields), study


def compare(
    *models: str | Record,
    dataset: str | None = None,
    data_dir: PathLike | None = None,
    limit: int | None = None,
    calib_dataset: str | None = None,
    calib_images: int = 500,
    backend: str = "onnxruntime",
    batch: Batch = "1,4,8,16",
    baseline: str = "convnext-tiny",
    iterations: int | None = None,
    seconds: float | None = None,
    threads: int | None = None,
    weights: str = "auto",
    report: PathLike | None = None,
    no_run: bool = False,
    manifest: PathLike | None = None,
    cpu_int8: bool = True,
    on_event: OnEvent = None,
    on_update: Callable[[RunSummary], None] | None = None,
) -> Record:
    """`csa compare`: models side by side (the seed's Table 1, Fig. 5, 6, 7) from stored results,
    running through the pipeline what is missing (no_run: nothing): a "compare" record."""
    options = dict(locals())
    del options["models"], options["on_event"], options["on_update"]
    with _listening(on_event):
        return compare_study(*models, on_update=on_update, **options)[0]

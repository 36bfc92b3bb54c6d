"""The single stages: pull, export, check, quantize, engine."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from csa_cli import events
from csa_cli.api._common import OnEvent, _batches, _given, _listening, _one_batch, _path
from csa_cli.errors import CheckFailed, UsageError

if TYPE_CHECKING:
    from csa_cli.api._common import Batch, PathLike, Source
    from csa_cli.records import Record
    from csa_cli.stages.check.report import CheckReport


def pull(
    model: str,
    *,
    revision: str | None = None,
    locked: bool = False,
    offline: bool = False,
    force: bool = False,
    manifest: PathLike | None = None,
    on_event: OnEvent = None,
) -> Record:
    """`csa pull`: MODEL's weights from the Hub into the Hugging Face cache, pinned in a lock and verified: a "checkpoint" record."""
    from csa_cli.manifest import load_manifest
    from csa_cli.records import make_record
    from csa_cli.stages.pull.hub import pull as hub_pull

    with _listening(on_event):
        entry = load_manifest(manifest).get(model)
        events.info(f"License of {entry.name}: {entry.license}")
        result = hub_pull(entry, revision=revision, locked=locked, offline=True if offline else None, force=force, manifest_path=manifest)
        if result.hub_license and result.hub_license.lower() not in entry.license.lower():
            events.info(f"License on the Hub's model card: {result.hub_license}")
        return make_record("checkpoint", **result.record_fields())


def export(
    source: Source,
    *,
    batch: Batch | None = None,
    dynamic_batch: bool = False,
    img_size: str | int | tuple[int, int] | None = None,
    output: PathLike | None = None,
    force: bool = False,
    weights: str | None = None,
    verify: bool = True,
    opset: int = 17,
    manifest: PathLike | None = None,
    on_event: OnEvent = None,
) -> Record:
    """`csa export`: a zoo model (or a "checkpoint" record) to a verified ONNX graph: an "onnx" record.

    weights None: the checkpoint record's, else "auto". batch None: 1.
    """
    from csa_cli.inputs import check_output, expect_record, wrong_file
    from csa_cli.stages.export.stage import export_stage

    if batch is not None and dynamic_batch:
        raise UsageError("--batch and --dynamic-batch contradict each other", hint="give one of them")
    size = _one_batch(batch, "export makes one graph", hint="or --dynamic-batch for any batch size")
    with _listening(on_event):
        given = _given(source, manifest)
        if given.record is not None:
            expect_record(given.record, "export", "checkpoint", hint="pipe `csa pull MODEL` into it, or name a MODEL")
            model = given.record.model
            if not model:
                raise UsageError("the checkpoint record names no model")
            weights = weights or given.record.weights
        elif given.model is not None:
            model = given.model
        else:
            raise wrong_file(given.path, "export", "a MODEL or a checkpoint record", hint="e.g. csa export csa-tiny --weights PATH")
        check_output(_path(output), force)
        return export_stage(
            model,
            weights=weights or "auto",
            batch=None if dynamic_batch else size,
            img_size=img_size,
            dynamic_batch=dynamic_batch,
            opset=opset,
            verify=verify,
            output=_path(output),
            manifest=manifest,
        )


def check_detail(
    source: Source,
    *,
    rules: str,
    report: PathLike | None,
    batch: Batch | None,
    img_size: str | int | tuple[int, int] | None,
    weights: str,
    manifest: PathLike | None,
) -> tuple[Record, CheckReport]:
    """check()'s record and the full report behind it (every finding: what `csa check` renders); raises nothing on a verdict."""
    from csa_cli.stages.check.stage import check_stage

    size = _one_batch(batch, "check reads one graph")
    given = _given(source, manifest)
    return check_stage(
        record=given.record,
        path=given.path,
        model=given.model,
        rules=rules,
        report_dir=_path(report),
        manifest=_path(manifest),
        export_options={"batch": size, "img_size": img_size, "weights": weights},
    )


def check(
    source: Source,
    *,
    rules: str = "restricted",
    report: PathLike | None = None,
    batch: Batch | None = None,
    img_size: str | int | tuple[int, int] | None = None,
    weights: str = "auto",
    manifest: PathLike | None = None,
    on_event: OnEvent = None,
) -> Record:
    """`csa check`: TensorRT restricted-mode / DLA compliance of a graph (a MODEL is exported first).

    Returns the input's record with "check" (the verdict) added; a non-compliant graph raises
    CheckFailed (exit 3 from the command) with that record as `exc.record`.
    """
    with _listening(on_event):
        record, result = check_detail(source, rules=rules, report=report, batch=batch, img_size=img_size, weights=weights, manifest=manifest)
    if not result.compliant:
        raise CheckFailed(f"{result.model or result.path}: {result.summary()}", hint="report=DIR lists every node with its rule and source", record=record)
    return record


def quantize(
    source: Source,
    *,
    calib_dataset: str | None = None,
    data_dir: PathLike | None = None,
    calib_images: int = 500,
    method: str = "entropy",
    precision: str = "mixed",
    seed: int = 0,
    keep_fp: Sequence[str] | None = None,
    strict: bool = False,
    batch_size: int = 8,
    placement: str = "tensorrt",
    model: str | None = None,
    output: PathLike | None = None,
    force: bool = False,
    manifest: PathLike | None = None,
    on_event: OnEvent = None,
) -> Record:
    """`csa quantize`: INT8 post-training quantization (mixed by default): a "quantized" record
    (Q/DQ ONNX, TensorRT calibration cache, summary). calib_dataset is required."""
    from csa_cli.inputs import expect_record, wrong_file
    from csa_cli.stages.quantize.calibration import METHODS
    from csa_cli.stages.quantize.qdq_writer import PLACEMENTS
    from csa_cli.stages.quantize.stage import PRECISIONS, quantize_stage

    # option checks first: a bad option must not cost an export
    if method not in METHODS:
        raise UsageError(f"unknown calibration method {method!r}", hint=f"use --method {' | '.join(METHODS)}")
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}", hint=f"use --precision {' | '.join(PRECISIONS)}")
    if placement not in PLACEMENTS:
        raise UsageError(f"unknown placement {placement!r}", hint=f"use --placement {' | '.join(PLACEMENTS)}")
    if not calib_dataset:
        raise UsageError("--calib-dataset is required", hint="give an ImageFolder DIR, hf://datasets/OWNER/NAME, or imagenet-val with --data-dir")
    for value, option in ((calib_images, "--calib-images"), (batch_size, "--batch-size")):
        if value < 1:
            raise UsageError(f"{option} must be at least 1, got {value}")
    with _listening(on_event):
        given = _given(source, manifest)
        if given.record is not None and given.record.kind == "quantized":
            raise UsageError("the input is already quantized (a 'quantized' record)", hint="pipe the output of `csa export` or `csa check` instead")
        if given.record is not None:  # the input's kind before the dataset is listed: the same mistake, the same exit 2 first
            expect_record(given.record, "quantize", "checkpoint", "onnx", hint="pipe `csa export` or `csa check` into it")
        elif given.path is not None and given.path.suffix.lower() != ".onnx":
            raise wrong_file(given.path, "quantize", "an ONNX file, a MODEL or a record", hint="e.g. csa quantize model.onnx --model csa-tiny ...")
        return quantize_stage(
            given.record if given.record is not None else (given.model or str(given.path)),
            calib_dataset=calib_dataset,
            data_dir=_path(data_dir),
            calib_images=calib_images,
            method=method,
            precision=precision,
            seed=seed,
            keep_fp=list(keep_fp or []),
            strict=strict,
            batch_size=batch_size,
            output=_path(output),
            force=force,
            model=model,
            manifest=_path(manifest),
            placement=placement,
        )


def engine(
    source: Source,
    *,
    precision: str = "fp16",
    target: str = "local",
    batch: Batch | None = None,
    restricted: bool = False,
    safe: bool = False,
    dla: int | None = None,
    no_gpu_fallback: bool = False,
    workspace: int = 1024,
    output: PathLike | None = None,
    force: bool = False,
    trt_version: str | None = None,
    opt_batch: int | None = None,
    calib_cache: PathLike | None = None,
    dataset: str | None = None,
    data_dir: PathLike | None = None,
    val_images: int = 64,
    weights: str = "auto",
    img_size: str | int | tuple[int, int] | None = None,
    manifest: PathLike | None = None,
    on_event: OnEvent = None,
) -> Record:
    """`csa engine`: TensorRT engines built here (target="local": an "engine" record) or a
    self-contained Orin bundle (target="orin": a "bundle" record).

    Long because it takes every `csa engine` option by name and hands each on to the stage.
    """
    from csa_cli.stages.engine.stage import check_engine_options, engine_stage
    from csa_cli.stages.export.stage import parse_img_size

    check_engine_options(precision=precision, target=target, workspace=workspace, trt_version=trt_version, safe=safe, dla=dla, no_gpu_fallback=no_gpu_fallback)
    batches, size = _batches(batch), parse_img_size(img_size)
    if target == "local":
        # fail fast (exit 4) before reading stdin or exporting anything
        from csa_cli.tensorrt.runtime import require_tensorrt

        require_tensorrt()
    with _listening(on_event):
        given = _given(source, manifest)
        record = engine_stage(
            given.record if given.record is not None else (given.path if given.path is not None else given.model),
            precision=precision,
            target=target,
            batch=batches,
            weights=weights,
            manifest=manifest,
            restricted=restricted,
            safe=safe,
            dla=dla,
            gpu_fallback=not no_gpu_fallback,
            workspace_mib=workspace,
            output=_path(output),
            force=force,
            trt_version=trt_version,
            opt_batch=opt_batch,
            calib_cache=os.fspath(calib_cache) if calib_cache else None,
            img_size=size,
            dataset=dataset,
            data_dir=os.fspath(data_dir) if data_dir else None,
            val_images=val_images,
        )
        if record.kind == "bundle":
            events.info(f"bundle written: {record.path} (copy it to the device, run ./build.sh then ./validate.sh)")
            events.info(f"validation: {record.field('validation')}")
        return record

"""`csa eval`: top-1 / top-5 of a model, an ONNX or an engine on a labelled dataset, stored.

The result is an "eval" record (top1/top5 in percent, images, throughput, backend, precision,
model, weights hash, dataset fingerprint, ...) kept with store.store_result("eval", ...) for
`csa compare`. What is evaluated is resolved in targets.py, the loop is in loop.py.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from csa_cli import events
from csa_cli.errors import CheckFailed, UsageError
from csa_cli.records import Record, make_record
from csa_cli.stages.evaluate.loop import EvalMetrics, ImageResult, check_head, default_workers, run_eval
from csa_cli.stages.evaluate.targets import EvalTarget, open_target, resolve_target

if TYPE_CHECKING:
    from csa_cli.backends.base import Backend
    from csa_cli.data.datasets import LabeledDataset
    from csa_cli.data.preprocess import EvalTransform


# ---------------------------------------------------------------------------------------------
# what is evaluated


# ---------------------------------------------------------------------------------------------
# the loop


# ---------------------------------------------------------------------------------------------
# the stage


def _eval_fields(
    target: EvalTarget,
    engine: Backend,
    ds: LabeledDataset,
    metrics: EvalMetrics,
    transform: EvalTransform,
    *,
    batch_size: int,
    workers: int | None,
    limit: int | None,
) -> dict[str, Any]:
    """The "eval" record's fields, and the key that stores it (same model, weights, backend and data: same key)."""
    from csa_cli.store import artifact_key

    backend_info = engine.describe()
    fields: dict[str, Any] = {
        "model": target.model,
        "path": target.source,
        "backend": engine.name,
        "precision": engine.precision,
        "placement": target.placement,
        "device": backend_info.get("device"),
        "top1": round(metrics.top1, 4),
        "top5": round(metrics.top5, 4),
        "images": metrics.images,
        "top1_correct": metrics.top1_correct,
        "top5_correct": metrics.top5_correct,
        "unreadable": metrics.unreadable,
        "unreadable_files": metrics.unreadable_files,
        "excluded_calibration": metrics.excluded_calibration,
        "throughput": round(metrics.throughput, 2),
        "model_throughput": round(metrics.model_throughput, 2),
        "seconds": round(metrics.seconds, 3),
        "batch_size": batch_size,
        "workers": default_workers() if workers is None else workers,
        "weights": target.weights,
        "weights_hash": target.weights_hash,
        "dataset": ds.info.name,
        "dataset_root": ds.info.root,
        "dataset_layout": ds.info.layout,
        "dataset_fingerprint": ds.info.fingerprint,
        "limit": limit,
        "num_classes": metrics.num_outputs,
        "preprocessing": transform.describe(),
        "backend_info": backend_info,
    }
    key = artifact_key(
        model=target.model,
        backend=engine.name,
        precision=engine.precision,
        weights=target.weights,
        weights_hash=target.weights_hash,
        source=target.source,
        dataset=ds.info.fingerprint,
        excluded=metrics.excluded_calibration,
        # only a Q/DQ graph has a placement: the keys of every other result stay what they were
        **({"placement": target.placement} if target.placement else {}),
    )
    fields["result_key"] = key
    return fields


def evaluate_stage(
    source: str | Record | None,
    *,
    dataset: str,
    data_dir: str | os.PathLike[str] | None = None,
    backend: str | None = None,
    precision: str | None = None,
    limit: int | None = None,
    weights: str | None = None,
    manifest: str | os.PathLike[str] | None = None,
    model: str | None = None,
    batch_size: int = 32,
    workers: int | None = None,
    device: str = "auto",
    threads: int | None = None,
    progress: bool = True,
    store: bool = True,
    predictions_file: str | os.PathLike[str] | None = None,
) -> Record:
    """Evaluate and return the "eval" record (also stored under CSA_HOME/results/eval for `csa compare`)."""
    from csa_cli.data.preprocess import build_transform
    from csa_cli.stages.pull.dataset import open_dataset
    from csa_cli.store import store_result

    if limit is not None and limit < 1:
        raise UsageError(f"--limit must be at least 1, got {limit}")
    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {batch_size}")
    target = resolve_target(source, model=model, backend=backend, weights=weights, manifest=manifest)
    ds = open_dataset(dataset, data_dir, limit=limit)  # before loading the model: a bad dataset fails fast
    for warning in ds.info.warnings:
        events.warn(f"{ds.info.name}: {warning}")
    if target.num_classes is not None:
        check_head(target.num_classes, ds, target.model)
    engine, target = open_target(target, device=device, precision=precision, threads=threads, manifest=manifest)
    transform = build_transform(target.preprocessing)
    events.info(f"eval {target.model} on {ds.info.name}: {len(ds)} images, {engine.name} {engine.precision}, {transform!r}")
    per_image: list[ImageResult] | None = [] if predictions_file is not None else None
    metrics = run_eval(
        engine, ds, transform, model=target.model, batch_size=batch_size, workers=workers, exclude=target.calib_files, progress=progress, predictions=per_image
    )
    if predictions_file is not None and per_image is not None:
        from csa_cli.paths import atomic_write_text

        atomic_write_text(predictions_file, "".join(r.model_dump_json() + "\n" for r in per_image))
    if metrics.excluded_calibration:
        events.info(f"{metrics.excluded_calibration} calibration image(s) of this model left out")
    fields = _eval_fields(target, engine, ds, metrics, transform, batch_size=batch_size, workers=workers, limit=limit)
    if predictions_file is not None:
        fields["predictions"] = str(Path(predictions_file))
    record = make_record("eval", **fields)
    if store:
        stored = store_result("eval", target.model, fields["result_key"], record.model_dump(mode="json", by_alias=True, exclude_none=True))
        record = record.with_fields(result=str(stored))
    return record


def enforce_min_top1(record: Record, min_top1: float | None) -> None:
    """--min-top1 X (percent): CheckFailed (exit 3) when the record's top-1 is below it."""
    if min_top1 is None:
        return
    if not 0 <= min_top1 <= 100:
        raise UsageError(f"--min-top1 is a percentage (0-100), got {min_top1}")
    top1 = float(record.field("top1"))
    if top1 < min_top1:
        raise CheckFailed(f"top-1 {top1:.2f}% of {record.model} is under --min-top1 {min_top1:g}%", hint="the record above has the details")


# ---------------------------------------------------------------------------------------------
# predict

"""The stages that measure: evaluate, predict, profile."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from csa_cli import events
from csa_cli.api._common import OnEvent, _batches, _given, _listening, _path, _source_text
from csa_cli.errors import CheckFailed, UsageError

if TYPE_CHECKING:
    from csa_cli.api._common import Batch, PathLike, Source
    from csa_cli.records import Record
    from csa_cli.stages.profile.records import ProfileResult


def evaluate(
    source: Source | None,
    *,
    dataset: str = "imagenet-val",
    data_dir: PathLike | None = None,
    backend: str | None = None,
    precision: str | None = None,
    device: str = "auto",
    batch_size: int = 32,
    workers: int | None = None,
    threads: int | None = None,
    limit: int | None = None,
    min_top1: float | None = None,
    model: str | None = None,
    weights: str | None = None,
    predictions: PathLike | None = None,
    manifest: PathLike | None = None,
    on_event: OnEvent = None,
) -> Record:
    """`csa eval`: top-1 / top-5 on a labelled dataset, on torch, onnxruntime or tensorrt: an "eval" record.

    Under `min_top1` (percent) it raises CheckFailed (exit 3 from the command) with the record as `exc.record`.
    """
    from csa_cli.inputs import require_positive
    from csa_cli.stages.evaluate.stage import enforce_min_top1, evaluate_stage

    for value, option in ((limit, "--limit"), (batch_size, "--batch-size"), (threads, "--threads")):
        require_positive(value, option)
    if min_top1 is not None and not 0 <= min_top1 <= 100:
        raise UsageError(f"--min-top1 is a percentage (0-100), got {min_top1}")
    with _listening(on_event):
        record = evaluate_stage(
            _source_text(source),
            dataset=dataset,
            data_dir=_path(data_dir),
            backend=backend,
            precision=precision,
            limit=limit,
            weights=weights,
            manifest=manifest,
            model=model,
            batch_size=batch_size,
            workers=workers,
            device=device,
            threads=threads,
            predictions_file=_path(predictions),
        )
    try:
        enforce_min_top1(record, min_top1)
    except CheckFailed as exc:
        exc.record = record
        raise
    return record


def predict(
    source: Source | None,
    images: Sequence[PathLike],
    *,
    backend: str | None = None,
    device: str = "auto",
    precision: str | None = None,
    top: int = 5,
    model: str | None = None,
    weights: str | None = None,
    manifest: PathLike | None = None,
    on_event: OnEvent = None,
) -> Record:
    """`csa predict`: the top classes of each image with their probabilities: a "predict" record.

    source None: `model` names the zoo model.
    """
    from csa_cli.records import make_record
    from csa_cli.stages.evaluate.predict import predict as predict_images

    with _listening(on_event):
        given = _source_text(source)
        if given is None and model is None:
            raise UsageError("no model given", hint="csa predict MODEL IMAGE..., or pipe a record: csa export M | csa predict IMAGE...")
        if not images:
            raise UsageError("no images given", hint="csa predict MODEL IMAGE [IMAGE...]")
        results, target, backend_info = predict_images(
            given,
            [os.fspath(i) for i in images],
            model=model,
            backend=backend,
            weights=weights,
            manifest=manifest,
            device=device,
            precision=precision,
            topk=top,
        )
    return make_record(
        "predict",
        model=target.model,
        backend=backend_info.get("backend"),
        precision=target.precision,
        weights=target.weights,
        weights_hash=target.weights_hash,
        predictions=[r.model_dump() for r in results],
    )


def profile_results(
    *sources: Source | None,
    backend: str | None,
    batch: Batch | None,
    threads: int | None,
    iterations: int | None,
    seconds: float | None,
    warmup: int,
    plot: PathLike | None,
    weights: str,
    device: str | None,
    precision: str,
    dynamic_batch: bool,
    cuda_graphs: bool,
    estimate: bool,
    img_size: str | int | tuple[int, int] | None,
    manifest: PathLike | None,
) -> list[ProfileResult]:
    """profile()'s results as the stage's objects (what `csa profile` renders). Long because it
    checks each option the command takes, in the command's order."""
    from pydantic import ValidationError

    from csa_cli.inputs import require_positive
    from csa_cli.measure.timing import MeasureSettings
    from csa_cli.stages.export.stage import parse_img_size
    from csa_cli.stages.profile.plot import plot_latency
    from csa_cli.stages.profile.records import ProfileOptions
    from csa_cli.stages.profile.sidebyside import profile_side_by_side

    batches = _batches(batch)
    require_positive(threads, "--threads")
    require_positive(iterations, "--iterations")
    if warmup < 0:
        raise UsageError(f"--warmup must be 0 or more, got {warmup}")
    if seconds is not None and seconds <= 0:
        raise UsageError(f"--seconds must be positive, got {seconds:g}")
    if iterations is not None and seconds is not None:
        raise UsageError("give --iterations or --seconds, not both")
    if backend is not None and backend not in ("torch", "onnxruntime", "tensorrt"):
        raise UsageError(f"--backend must be torch, onnxruntime or tensorrt, not {backend!r}")
    if precision not in ("fp32", "fp16"):
        raise UsageError(f"--precision must be fp32 or fp16, not {precision!r}", hint="an int8 model is profiled as its QDQ ONNX or engine")
    try:
        options = ProfileOptions(
            backend=backend,  # type: ignore[arg-type]
            batches=batches,
            threads=threads,
            device=device,
            precision=precision,  # type: ignore[arg-type]
            cuda_graphs=cuda_graphs,
            dynamic_batch=dynamic_batch,
            weights=weights,
            img_size=parse_img_size(img_size),
            estimate=estimate,
            manifest=os.fspath(manifest) if manifest else None,
            measure=MeasureSettings(warmup=warmup, iterations=iterations, seconds=seconds),
        )
    except ValidationError as exc:
        raise UsageError(f"invalid options: {exc.errors()[0]['msg']}") from None
    targets = [_given(s, manifest) for s in sources or (None,)]
    # several targets are timed interleaved, round by round, with ratios to the first
    results = profile_side_by_side([(t.model, t.path, t.record) for t in targets], options)
    if plot is not None:
        events.info(f"plot written: {plot_latency(results, Path(plot))}")
    return results


def profile(
    *sources: Source,
    backend: str | None = None,
    batch: Batch | None = None,
    threads: int | None = None,
    iterations: int | None = None,
    seconds: float | None = None,
    warmup: int = 3,
    plot: PathLike | None = None,
    weights: str = "auto",
    device: str | None = None,
    precision: str = "fp32",
    dynamic_batch: bool = False,
    cuda_graphs: bool = True,
    estimate: bool = True,
    img_size: str | int | tuple[int, int] | None = None,
    manifest: PathLike | None = None,
    on_event: OnEvent = None,
) -> list[Record]:
    """`csa profile`: latency at each batch size (1,4,8,16 by default), throughput, memory traffic and a
    roofline floor: one "profile" record per source, as the command prints them."""
    options = dict(locals())
    del options["sources"], options["on_event"]
    with _listening(on_event):
        return [result.to_record() for result in profile_results(*sources, **options)]

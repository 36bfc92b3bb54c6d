"""`csa eval`: top-1 / top-5 on ImageNet val or an ImageFolder, on torch, onnxruntime or tensorrt."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from csa_cli.cli.common import ManifestOption, input_record, require_positive, stage_command
from csa_cli.console import Output, table

if TYPE_CHECKING:
    from csa_cli.records import Record

SourceArgument = Annotated[
    str | None,
    typer.Argument(help="A zoo MODEL, an ONNX / QDQ ONNX file, an engine, or a record (.json file, or piped on stdin).", show_default=False),
]


def _render(record: Record) -> object:
    f = record.field
    rows = [
        ["model", record.model],
        ["top-1", f"{f('top1'):.2f} %  ({f('top1_correct')}/{f('images')})"],
        ["top-5", f"{f('top5'):.2f} %  ({f('top5_correct')}/{f('images')})"],
        ["images", f("images")],
        ["backend", f"{f('backend')} ({f('precision')}, {f('device')})"],
        ["throughput", f"{f('throughput')} images/s end to end, {f('model_throughput')} in the model"],
        ["weights", f"{record.weights} ({f('weights_hash')})" if record.weights else "unknown (not named by the input)"],
        ["dataset", f"{f('dataset')} ({f('dataset_layout')}, fingerprint {f('dataset_fingerprint')})"],
    ]
    if f("unreadable"):
        rows.append(["unreadable", f"{f('unreadable')} image(s) left out"])
    if f("excluded_calibration"):
        rows.append(["calibration", f"{f('excluded_calibration')} calibration image(s) left out"])
    return table("csa eval", ["", "value"], rows)


def register(app: typer.Typer) -> None:
    @app.command("eval")
    @stage_command("eval")
    def eval_command(
        source: SourceArgument = None,
        dataset: Annotated[str, typer.Option("--dataset", help="imagenet-val (with --data-dir or CSA_DATA), or an ImageFolder DIR.")] = "imagenet-val",
        data_dir: Annotated[Path | None, typer.Option("--data-dir", help="The ImageNet folder for imagenet-val (default: CSA_DATA).")] = None,
        backend: Annotated[str | None, typer.Option("--backend", help="torch | onnxruntime | tensorrt (default: what the input runs on).")] = None,
        precision: Annotated[str | None, typer.Option("--precision", help="fp32 | fp16 (torch on CUDA; default fp16 there, fp32 on CPU).")] = None,
        device: Annotated[str, typer.Option("--device", help="auto | cpu | cuda | cuda:N.")] = "auto",
        batch_size: Annotated[int, typer.Option("--batch-size", help="Images per batch.")] = 32,
        workers: Annotated[int | None, typer.Option("--workers", help="DataLoader worker processes (default: min(4, CPUs)).")] = None,
        threads: Annotated[int | None, typer.Option("--threads", help="Intra-op threads of the backend.")] = None,
        limit: Annotated[int | None, typer.Option("--limit", help="The first N images (by file name: deterministic, the same in every layout).")] = None,
        min_top1: Annotated[float | None, typer.Option("--min-top1", help="Exit 3 when top-1 (percent) is below this.")] = None,
        model: Annotated[str | None, typer.Option("--model", help="The zoo model an ONNX / weights file belongs to (its preprocessing).")] = None,
        weights: Annotated[
            str | None, typer.Option("--weights", help="pretrained (default) | random | auto | PATH, for a MODEL input.", show_default=False)
        ] = None,
        predictions: Annotated[
            Path | None, typer.Option("--predictions", help="Also write each image's label and top-5 class indices here (JSON lines).")
        ] = None,
        manifest: ManifestOption = None,
        *,
        out: Output,
    ) -> None:
        """Measure top-1 / top-5 the way the model's authors did, on the backend you deploy with."""
        from csa_cli.stages.evaluate.stage import enforce_min_top1, evaluate_stage

        require_positive(limit, "--limit")
        require_positive(batch_size, "--batch-size")
        require_positive(threads, "--threads")
        record = input_record(source)
        record_out = evaluate_stage(
            record if record is not None else source,
            dataset=dataset,
            data_dir=data_dir,
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
            predictions_file=predictions,
        )
        out.emit(record_out, lambda: _render(record_out))
        enforce_min_top1(record_out, min_top1)  # after the record: a pipeline still sees the numbers

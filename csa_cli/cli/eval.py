"""`csa eval`: top-1 / top-5 on ImageNet val or an ImageFolder, on torch, onnxruntime or tensorrt."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from csa_cli import api
from csa_cli.cli import options
from csa_cli.cli.common import stage_command
from csa_cli.cli.options import examples
from csa_cli.console import Output, table
from csa_cli.errors import CheckFailed
from csa_cli.inputs import CommandInput

if TYPE_CHECKING:
    from csa_cli.records import Record


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


EXAMPLES = examples(
    ("top-1/top-5 of the published weights on the first 500 images of a folder", "csa eval convnext-tiny --dataset ~/imagenet/val --limit 500"),
    (
        "the exported graph on ONNX Runtime, failing (exit 3) under 80 % top-1",
        "csa export convnext-tiny --weights pretrained | csa eval --dataset ~/imagenet/val --min-top1 80",
    ),
    (
        "an ONNX file on a Hub dataset's validation split (pulled and pinned)",
        "csa eval model.onnx --model csa-tiny --dataset hf://datasets/OWNER/imagenet-mini:validation",
    ),
)

WEIGHTS_WHY = "accuracy of random weights means nothing; a model without published weights still gets random ones, with a warning"

D = options.defaults_of(api.evaluate)


def register(app: typer.Typer) -> None:
    """Add the command(s) to `app`. Long because typer reads each option from the command's
    signature: one parameter per option."""

    @app.command("eval", short_help="Top-1 / top-5 on ImageNet val or an ImageFolder.", epilog=EXAMPLES)
    @stage_command("eval")
    def eval_command(
        source: str | None = options.input_argument("MODEL", "ONNX", "ENGINE", "RECORD"),
        dataset: str = options.DATASET(D.dataset, why="ImageNet-1K val is what reported accuracies are measured on"),
        data_dir: Path | None = options.DATA_DIR(D.data_dir),
        backend: str | None = options.BACKEND(D.backend),
        precision: str | None = options.PRECISION(D.precision, shown="fp16 on CUDA, fp32 on CPU", why="torch on CUDA runs FP16 where it can"),
        device: str = options.DEVICE(D.device),
        batch_size: int = options.BATCH_SIZE(D.batch_size),
        workers: int | None = typer.Option(D.workers, "--workers", metavar="N", help="DataLoader worker processes. Default: min(4, CPUs)."),
        threads: int | None = options.THREADS(D.threads),
        limit: int | None = options.LIMIT(D.limit),
        min_top1: float | None = typer.Option(D.min_top1, "--min-top1", metavar="PERCENT", help="Exit 3 when top-1 (percent) is below this."),
        model: str | None = options.MODEL(D.model),
        weights: str | None = options.WEIGHTS(D.weights, shown="pretrained", why=WEIGHTS_WHY),
        predictions: Path | None = typer.Option(
            D.predictions, "--predictions", metavar="FILE", help="Also write each image's label and top-5 class indices here (JSON lines)."
        ),
        manifest: Path | None = options.MANIFEST(D.manifest),
        *,
        out: Output,
    ) -> None:
        """Measure top-1 / top-5 the way the model's authors did, on the backend you deploy with."""
        try:
            record = api.evaluate(
                CommandInput(source),
                dataset=dataset,
                data_dir=data_dir,
                backend=backend,
                precision=precision,
                device=device,
                batch_size=batch_size,
                workers=workers,
                threads=threads,
                limit=limit,
                min_top1=min_top1,
                model=model,
                weights=weights,
                predictions=predictions,
                manifest=manifest,
            )
        except CheckFailed as exc:  # under --min-top1: the record first, so that a pipeline still sees the numbers
            failed = exc.record
            if failed is not None:
                out.emit(failed, lambda: _render(failed))
            raise
        out.emit(record, lambda: _render(record))

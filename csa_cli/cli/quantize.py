"""`csa quantize`: INT8 post-training quantization (QDQ ONNX + TensorRT calibration cache + summary)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from csa_cli import api
from csa_cli.cli import options
from csa_cli.cli.common import stage_command
from csa_cli.cli.options import examples
from csa_cli.console import Output, table
from csa_cli.inputs import CommandInput

if TYPE_CHECKING:
    from csa_cli.records import Record


def _render(record: Record) -> object:
    from csa_cli.stages.quantize.stage import summary_json

    summary = summary_json(record)
    rows = [
        ["model", record.model],
        ["method / precision", f"{record.field('method')} / {record.field('precision')}"],
        ["Q/DQ placement", str(record.field("placement") or "tensorrt")],
        ["calibration images", f"{summary['images']} of {summary['images_requested']} asked (seed {summary['seed']})"],
        ["weighted nodes in INT8", f"{len(summary['quantized_nodes'])} of {summary['weighted_nodes']}"],
        ["kept in FP", ", ".join(f"{k['name']} ({k['rule']})" for k in summary["kept_fp"]) or "none"],
        ["QDQ ONNX", record.path],
        ["calibration cache", f"{record.field('calib_cache')} ({summary['cache_header']}, {summary['cache_tensors']} tensors)"],
        ["summary", record.field("summary")],
        ["time / peak RSS", f"{summary['time']['total_s']:.1f} s / {summary['peak_rss_mib']:.0f} MiB"],
    ]
    return table("csa quantize", ["", ""], rows)


EXAMPLES = examples(
    ("the mixed-precision policy, calibrated on 500 images of a folder", "csa quantize csa-tiny --calib-dataset ~/imagenet/val"),
    ("the graph a check passed, calibrated on a Hub dataset", "csa check csa-tiny | csa quantize --calib-dataset hf://datasets/OWNER/imagenet-mini:validation"),
    ("INT8 that ONNX Runtime runs in integer kernels on this CPU", "csa quantize csa-tiny --calib-dataset ~/imagenet/val --placement onnxruntime"),
)

D = options.defaults_of(api.quantize)


def register(app: typer.Typer) -> None:
    """Add the command to `app`. Long because typer reads each option from the command's signature."""

    @app.command("quantize", short_help="INT8 post-training quantization (QDQ ONNX + cache).", epilog=EXAMPLES)
    @stage_command("quantize")
    def quantize(
        out: Output,
        source: str | None = options.input_argument("MODEL", "ONNX", "RECORD"),
        calib_dataset: str | None = options.CALIB_DATASET(D.calib_dataset, shown="none: required"),
        data_dir: Path | None = options.DATA_DIR(D.data_dir),
        calib_images: int = options.CALIB_IMAGES(D.calib_images),
        method: str = typer.Option(D.method, "--method", metavar="METHOD", help=f"entropy | minmax | percentile. Default: {D.method}.", show_default=False),
        precision: str = options.PRECISION(D.precision, why="sensitive layers stay in FP16, so INT8 costs little accuracy", choices=("mixed", "int8")),
        seed: int = typer.Option(D.seed, "--seed", metavar="N", help=f"Seed of the calibration sample. Default: {D.seed}.", show_default=False),
        keep_fp: list[str] | None = typer.Option(D.keep_fp, "--keep-fp", metavar="PATTERN", help="Keep nodes matching this name glob in FP (repeatable)."),
        strict: bool = typer.Option(D.strict, "--strict", help="Fail when the dataset has fewer images than --calib-images."),
        batch_size: int = options.BATCH_SIZE(D.batch_size, why="calibration keeps every activation's histogram: memory grows with it"),
        placement: str = options.PLACEMENT(D.placement),
        model: str | None = options.MODEL(D.model),
        output: Path | None = options.OUTPUT(D.output),
        force: bool = options.FORCE(D.force),
        manifest: Path | None = options.MANIFEST(D.manifest),
    ) -> None:
        """INT8 post-training quantization (mixed by default): QDQ ONNX, calibration cache (TensorRT 8.6 DLA), summary.

        --output DIR also copies the three files into DIR.
        \f
        Long because typer reads each option from this signature, and each input is checked before
        the dataset is listed.
        """
        record = api.quantize(
            CommandInput(source),
            calib_dataset=calib_dataset,
            data_dir=data_dir,
            calib_images=calib_images,
            method=method,
            precision=precision,
            seed=seed,
            keep_fp=keep_fp,
            strict=strict,
            batch_size=batch_size,
            model=model,
            output=output,
            force=force,
            manifest=manifest,
            placement=placement,
        )
        out.emit(record, lambda: _render(record))

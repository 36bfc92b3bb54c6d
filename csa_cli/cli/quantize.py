"""`csa quantize`: INT8 post-training quantization (QDQ ONNX + TensorRT calibration cache + summary)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from csa_cli.cli import options
from csa_cli.cli.common import expect_record, stage_command, wrong_file
from csa_cli.cli.options import examples
from csa_cli.console import Output, table

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


def register(app: typer.Typer) -> None:
    """Add the command to `app`. Long because typer reads each option from the command's signature."""

    @app.command("quantize", short_help="INT8 post-training quantization (QDQ ONNX + cache).", epilog=EXAMPLES)
    @stage_command("quantize")
    def quantize(
        out: Output,
        source: str | None = options.input_argument("MODEL", "ONNX", "RECORD"),
        calib_dataset: str | None = options.CALIB_DATASET(None, shown="none: required"),
        data_dir: Path | None = options.DATA_DIR(),
        calib_images: int = options.CALIB_IMAGES(),
        method: str = typer.Option("entropy", "--method", metavar="METHOD", help="entropy | minmax | percentile. Default: entropy.", show_default=False),
        precision: str = options.PRECISION("mixed", why="sensitive layers stay in FP16, so INT8 costs little accuracy", choices=("mixed", "int8")),
        seed: int = typer.Option(0, "--seed", metavar="N", help="Seed of the calibration sample. Default: 0.", show_default=False),
        keep_fp: list[str] | None = typer.Option(None, "--keep-fp", metavar="PATTERN", help="Keep nodes matching this name glob in FP (repeatable)."),
        strict: bool = typer.Option(False, "--strict", help="Fail when the dataset has fewer images than --calib-images."),
        batch_size: int = options.BATCH_SIZE(8, why="calibration keeps every activation's histogram: memory grows with it"),
        placement: str = options.PLACEMENT(),
        model: str | None = options.MODEL(),
        output: Path | None = options.OUTPUT(),
        force: bool = options.FORCE(),
        manifest: Path | None = options.MANIFEST(),
    ) -> None:
        """INT8 post-training quantization (mixed by default): QDQ ONNX, calibration cache (TensorRT 8.6 DLA), summary.

        --output DIR also copies the three files into DIR.
        \f
        Long because typer reads each option from this signature, and each input is checked before
        the dataset is listed.
        """
        from csa_cli.cli.common import resolve_stage_input
        from csa_cli.errors import UsageError
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

        given = resolve_stage_input(source, manifest)
        if given.record is not None and given.record.kind == "quantized":
            raise UsageError("the input is already quantized (a 'quantized' record)", hint="pipe the output of `csa export` or `csa check` instead")
        if given.record is not None:  # the input's kind before the dataset is listed: the same mistake, the same exit 2 first
            expect_record(given.record, "quantize", "checkpoint", "onnx", hint="pipe `csa export` or `csa check` into it")
        elif given.path is not None and given.path.suffix.lower() != ".onnx":
            raise wrong_file(given.path, "quantize", "an ONNX file, a MODEL or a record", hint="e.g. csa quantize model.onnx --model csa-tiny ...")
        stage_source = given.record if given.record is not None else (given.model or str(given.path))
        record = quantize_stage(
            stage_source,
            calib_dataset=calib_dataset,
            data_dir=data_dir,
            calib_images=calib_images,
            method=method,
            precision=precision,
            seed=seed,
            keep_fp=keep_fp or [],
            strict=strict,
            batch_size=batch_size,
            output=output,
            force=force,
            model=model,
            manifest=manifest,
            placement=placement,
        )
        out.emit(record, lambda: _render(record))

"""`csa quantize`: INT8 post-training quantization (QDQ ONNX + TensorRT calibration cache + summary)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from csa_cli.cli.common import ManifestOption, stage_command
from csa_cli.console import Output, table

if TYPE_CHECKING:
    from csa_cli.records import Record


def _render(record: Record) -> object:
    from csa_cli.stages.quantize.stage import summary_json

    summary = summary_json(record)
    rows = [
        ["model", record.model],
        ["method / precision", f"{record.field('method')} / {record.field('precision')}"],
        ["calibration images", f"{summary['images']} of {summary['images_requested']} asked (seed {summary['seed']})"],
        ["weighted nodes in INT8", f"{len(summary['quantized_nodes'])} of {summary['weighted_nodes']}"],
        ["kept in FP", ", ".join(f"{k['name']} ({k['rule']})" for k in summary["kept_fp"]) or "none"],
        ["QDQ ONNX", record.path],
        ["calibration cache", f"{record.field('calib_cache')} ({summary['cache_header']}, {summary['cache_tensors']} tensors)"],
        ["summary", record.field("summary")],
        ["time / peak RSS", f"{summary['time']['total_s']:.1f} s / {summary['peak_rss_mib']:.0f} MiB"],
    ]
    return table("csa quantize", ["", ""], rows)


def register(app: typer.Typer) -> None:
    @app.command("quantize")
    @stage_command("quantize")
    def quantize(
        out: Output,
        source: Annotated[str | None, typer.Argument(metavar="[ONNX|MODEL|RECORD]", help="FP32 ONNX, zoo model (exported first), or record.")] = None,
        calib_dataset: Annotated[str, typer.Option("--calib-dataset", help="imagenet-val or an ImageFolder DIR of calibration images.")] = "",
        data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Where imagenet-val lives (also CSA_DATA).")] = None,
        calib_images: Annotated[int, typer.Option("--calib-images", help="Calibration images: a seeded, class-balanced sample.")] = 500,
        method: Annotated[str, typer.Option("--method", help="entropy | minmax | percentile.")] = "entropy",
        precision: Annotated[
            str, typer.Option("--precision", help="mixed (the default: sensitive layers kept in FP16) | int8 (every Conv/Gemm/MatMul).")
        ] = "mixed",
        seed: Annotated[int, typer.Option("--seed", help="Seed of the calibration sample.")] = 0,
        keep_fp: Annotated[
            list[str] | None, typer.Option("--keep-fp", metavar="PATTERN", help="Keep nodes matching this name glob in FP (repeatable).")
        ] = None,
        strict: Annotated[bool, typer.Option("--strict", help="Fail when the dataset has fewer images than --calib-images.")] = False,
        batch_size: Annotated[int, typer.Option("--batch-size", help="Calibration images per ONNX Runtime run (memory scales with it).")] = 8,
        model: Annotated[str | None, typer.Option("--model", help="Zoo model whose preprocessing applies to a bare ONNX file.")] = None,
        output: Annotated[Path | None, typer.Option("--output", help="Also copy the QDQ ONNX, cache and summary into DIR.")] = None,
        manifest: ManifestOption = None,
    ) -> None:
        """INT8 post-training quantization (mixed by default): QDQ ONNX, calibration cache (TensorRT 8.6 DLA), summary."""
        from csa_cli.cli.common import resolve_stage_input
        from csa_cli.errors import UsageError
        from csa_cli.stages.quantize.calibration import METHODS
        from csa_cli.stages.quantize.stage import PRECISIONS, quantize_stage

        # option checks first: a bad option must not cost an export
        if method not in METHODS:
            raise UsageError(f"unknown calibration method {method!r}", hint=f"use --method {' | '.join(METHODS)}")
        if precision not in PRECISIONS:
            raise UsageError(f"unknown precision {precision!r}", hint=f"use --precision {' | '.join(PRECISIONS)}")
        if not calib_dataset:
            raise UsageError("--calib-dataset is required", hint="give imagenet-val (with --data-dir) or a folder of class sub-folders")
        for value, option in ((calib_images, "--calib-images"), (batch_size, "--batch-size")):
            if value < 1:
                raise UsageError(f"{option} must be at least 1, got {value}")

        given = resolve_stage_input(source, manifest)
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
            model=model,
            manifest=manifest,
        )
        out.emit(record, lambda: _render(record))

"""`csa engine`: TensorRT engines where TensorRT exists, self-contained Orin bundles everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from csa_cli import api
from csa_cli.cli import options
from csa_cli.cli.common import stage_command
from csa_cli.cli.options import examples
from csa_cli.console import Output, table
from csa_cli.inputs import CommandInput
from csa_cli.records import EngineRecord

if TYPE_CHECKING:
    from csa_cli.records import Record

PRECISION_CHOICES = ("fp32", "fp16", "int8", "mixed")
TARGET_CHOICES = ("local", "orin")


def _render(record: Record) -> Any:
    rows: list[list[Any]] = []
    if record.kind == "bundle":
        for engine in record.field("engines", []):
            rows.append([record.model, engine, record.field("precision"), "build.sh on the device"])
        view = table(f"Orin bundle: {record.path}", ["model", "engine (built on the device)", "precision", "how"], rows)
    else:
        for engine in EngineRecord.of(record).engines:
            rows.append([record.model, engine.batch, engine.path, record.field("precision")])
        view = table(f"TensorRT {record.field('trt_version')} engines", ["model", "batch", "engine", "precision"], rows)
    return view


EXAMPLES = examples(
    ("a self-contained bundle to copy to the Orin and build there (no TensorRT needed here)", "csa engine csa-tiny --target orin --precision fp16 --batch 1,4"),
    (
        "the whole chain down to a mixed-precision bundle",
        "csa check csa-tiny | csa quantize --calib-dataset ~/imagenet/val | csa engine --precision mixed --target orin",
    ),
    ("FP16 engines built here with TensorRT (needs TensorRT and a GPU)", "csa engine convnext-tiny --precision fp16 --batch 1,8"),
)

D = options.defaults_of(api.engine)


def register(app: typer.Typer) -> None:
    """Add the command(s) to `app`. Long because typer reads each option from the command's
    signature: one annotated parameter per option."""

    @app.command("engine", short_help="TensorRT engines here, or a bundle for the Orin.", epilog=EXAMPLES)
    @stage_command("engine")
    def engine(
        out: Output,
        source: str | None = options.input_argument("MODEL", "ONNX", "RECORD"),
        precision: str = options.PRECISION(D.precision, why="the Orin's GPU runs FP16 at twice the FP32 rate", choices=PRECISION_CHOICES),
        target: str = options.TARGET(D.target),
        batch: str | None = options.BATCH(D.batch, shown="1", why="an ONNX input keeps its own batch size"),
        restricted: bool = typer.Option(
            D.restricted, "--restricted", help="Safety-scope check (trtexec --restricted, TensorRT < 10.16); runs the restricted rules first."
        ),
        safe: bool = typer.Option(D.safe, "--safe", help="Safety engine (trtexec --safe; a DLA-standalone loadable with --dla): --target orin only."),
        dla: int | None = typer.Option(
            D.dla,
            "--dla",
            metavar="N",
            help="DLA core N (FP16/INT8 only; GPU fallback unless --safe or --no-gpu-fallback). Every zoo model breaks some DLA rules today "
            "(csa check --rules dla): with fallback those layers run on the GPU.",
        ),
        no_gpu_fallback: bool = typer.Option(
            D.no_gpu_fallback, "--no-gpu-fallback", help="With --dla: every layer on the DLA (runs the DLA rules first, refuses unless --force)."
        ),
        workspace: int = typer.Option(
            D.workspace, "--workspace", metavar="MIB", help=f"Builder workspace pool in MiB. Default: {D.workspace}.", show_default=False
        ),
        output: Path | None = options.OUTPUT(D.output),
        force: bool = options.FORCE(D.force),
        trt_version: str | None = typer.Option(
            D.trt_version, "--trt-version", metavar="VERSION", help="TensorRT on the device, for --target orin. Default: 8.6 (DRIVE OS)."
        ),
        opt_batch: int | None = typer.Option(D.opt_batch, "--opt-batch", metavar="N", help="Optimization-profile opt batch for a dynamic-batch ONNX."),
        calib_cache: Path | None = typer.Option(
            D.calib_cache, "--calib-cache", metavar="FILE", help="TensorRT calibration cache for int8/mixed from a non-Q/DQ ONNX."
        ),
        dataset: str | None = options.DATASET(
            D.dataset, shown="a quantized record's calibration set", why="a bundle validates on held-out images: those it was not calibrated on"
        ),
        data_dir: Path | None = options.DATA_DIR(D.data_dir),
        val_images: int = typer.Option(
            D.val_images,
            "--val-images",
            metavar="N",
            help=f"Validation images in a bundle (a seeded, class-balanced sample). Default: {D.val_images}.",
            show_default=False,
        ),
        weights: str = options.WEIGHTS(D.weights),
        img_size: str | None = options.IMG_SIZE(D.img_size),
        manifest: Path | None = options.MANIFEST(D.manifest),
    ) -> None:
        """Build TensorRT engines (--target local) or a self-contained Orin bundle (--target orin).
        \f
        Long because typer reads each option from this signature: one annotated parameter per
        option.
        """
        record = api.engine(
            CommandInput(source),
            precision=precision,
            target=target,
            batch=batch,
            restricted=restricted,
            safe=safe,
            dla=dla,
            no_gpu_fallback=no_gpu_fallback,
            workspace=workspace,
            output=output,
            force=force,
            trt_version=trt_version,
            opt_batch=opt_batch,
            calib_cache=calib_cache,
            dataset=dataset,
            data_dir=data_dir,
            val_images=val_images,
            weights=weights,
            img_size=img_size,
            manifest=manifest,
        )
        out.emit(record, lambda: _render(record))

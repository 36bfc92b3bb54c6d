"""`csa engine`: TensorRT engines where TensorRT exists, self-contained Orin bundles everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from csa_cli.cli import options
from csa_cli.cli.common import parse_batch_list, resolve_stage_input, stage_command
from csa_cli.cli.options import examples
from csa_cli.console import Output, table
from csa_cli.errors import UsageError
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


def register(app: typer.Typer) -> None:
    """Add the command(s) to `app`. Long because typer reads each option from the command's
    signature: one annotated parameter per option."""

    @app.command("engine", short_help="TensorRT engines here, or a bundle for the Orin.", epilog=EXAMPLES)
    @stage_command("engine")
    def engine(
        out: Output,
        source: str | None = options.input_argument("MODEL", "ONNX", "RECORD"),
        precision: str = options.PRECISION("fp16", why="the Orin's GPU runs FP16 at twice the FP32 rate", choices=PRECISION_CHOICES),
        target: str = options.TARGET(),
        batch: str | None = options.BATCH(None, shown="1", why="an ONNX input keeps its own batch size"),
        restricted: bool = typer.Option(
            False, "--restricted", help="Safety-scope check (trtexec --restricted, TensorRT < 10.16); runs the restricted rules first."
        ),
        safe: bool = typer.Option(False, "--safe", help="Safety engine (trtexec --safe; a DLA-standalone loadable with --dla): --target orin only."),
        dla: int | None = typer.Option(
            None,
            "--dla",
            metavar="N",
            help="DLA core N (FP16/INT8 only; GPU fallback unless --safe or --no-gpu-fallback). Every zoo model breaks some DLA rules today "
            "(csa check --rules dla): with fallback those layers run on the GPU.",
        ),
        no_gpu_fallback: bool = typer.Option(
            False, "--no-gpu-fallback", help="With --dla: every layer on the DLA (runs the DLA rules first, refuses unless --force)."
        ),
        workspace: int = typer.Option(1024, "--workspace", metavar="MIB", help="Builder workspace pool in MiB. Default: 1024.", show_default=False),
        output: Path | None = options.OUTPUT(),
        force: bool = options.FORCE(),
        trt_version: str | None = typer.Option(
            None, "--trt-version", metavar="VERSION", help="TensorRT on the device, for --target orin. Default: 8.6 (DRIVE OS)."
        ),
        opt_batch: int | None = typer.Option(None, "--opt-batch", metavar="N", help="Optimization-profile opt batch for a dynamic-batch ONNX."),
        calib_cache: Path | None = typer.Option(None, "--calib-cache", metavar="FILE", help="TensorRT calibration cache for int8/mixed from a non-Q/DQ ONNX."),
        dataset: str | None = options.DATASET(
            None, shown="a quantized record's calibration set", why="a bundle validates on held-out images: those it was not calibrated on"
        ),
        data_dir: Path | None = options.DATA_DIR(),
        val_images: int = typer.Option(
            64, "--val-images", metavar="N", help="Validation images in a bundle (a seeded, class-balanced sample). Default: 64.", show_default=False
        ),
        weights: str = options.WEIGHTS(),
        img_size: str | None = options.IMG_SIZE(),
        manifest: Path | None = options.MANIFEST(),
    ) -> None:
        """Build TensorRT engines (--target local) or a self-contained Orin bundle (--target orin).
        \f
        Long because typer reads each option from this signature: one annotated parameter per
        option.
        """
        if precision not in PRECISION_CHOICES:
            raise UsageError(f"--precision must be one of {', '.join(PRECISION_CHOICES)}, got {precision!r}")
        if target not in TARGET_CHOICES:
            raise UsageError(f"--target must be local or orin, got {target!r}")
        if workspace < 1:
            raise UsageError(f"--workspace must be at least 1 MiB, got {workspace}")
        if target == "local" and trt_version is not None:
            raise UsageError("--trt-version is for --target orin; a local build uses the installed TensorRT")
        if safe and target == "local":
            raise UsageError(
                "--safe builds an engine for DRIVE OS's safe runtime, which only an Orin bundle builds",
                hint="use --target orin (--restricted checks the safety scope on a local build)",
            )
        if dla is not None and precision == "fp32":
            raise UsageError("DLA has no FP32 kernels (it runs FP16 and INT8 only)", hint="use --precision fp16, int8 or mixed with --dla")
        if no_gpu_fallback and dla is None:
            raise UsageError("--no-gpu-fallback applies to a DLA build", hint="add --dla N")
        from csa_cli.stages.export.stage import parse_img_size

        batches = parse_batch_list(batch) if batch is not None else None
        size = parse_img_size(img_size)
        if target == "local":
            # fail fast (exit 4) before reading stdin or exporting anything
            from csa_cli.tensorrt.runtime import require_tensorrt

            require_tensorrt()
        from csa_cli.stages.engine.stage import engine_stage

        given = resolve_stage_input(source, manifest)
        upstream: Record | str | Path | None = given.record if given.record is not None else (given.path if given.path is not None else given.model)
        record = engine_stage(
            upstream,
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
            output=output,
            force=force,
            trt_version=trt_version,
            opt_batch=opt_batch,
            calib_cache=str(calib_cache) if calib_cache else None,
            img_size=size,
            dataset=dataset,
            data_dir=str(data_dir) if data_dir else None,
            val_images=val_images,
        )
        if record.kind == "bundle":
            out.info(f"bundle written: {record.path} (copy it to the device, run ./build.sh then ./validate.sh)")
            out.info(f"validation: {record.field('validation')}")
        out.emit(record, lambda: _render(record))

"""`csa engine`: TensorRT engines where TensorRT exists, self-contained Orin bundles everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from csa_cli.cli.common import ManifestOption, parse_batch_list, resolve_stage_input, stage_command
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


def register(app: typer.Typer) -> None:
    """Add the command(s) to `app`. Long because typer reads each option from the command's
    signature: one annotated parameter per option."""

    @app.command("engine")
    @stage_command("engine")
    def engine(
        out: Output,
        source: Annotated[str | None, typer.Argument(help="MODEL, ONNX file, or a record (.json file or piped on stdin).")] = None,
        precision: Annotated[str, typer.Option("--precision", help="fp32 | fp16 | int8 | mixed (FP16+INT8, FP32 allowed).")] = "fp16",
        target: Annotated[str, typer.Option("--target", help="local: build here with TensorRT; orin: a bundle to build on the device.")] = "local",
        batch: Annotated[str | None, typer.Option("--batch", help="Batch sizes, e.g. 1,4,8,16: one static ONNX and engine each.")] = None,
        restricted: Annotated[
            bool, typer.Option("--restricted", help="Safety-scope check (trtexec --restricted, TensorRT < 10.16); runs the restricted rules first.")
        ] = False,
        safe: Annotated[bool, typer.Option("--safe", help="Safety engine (trtexec --safe; a DLA-standalone loadable with --dla): --target orin only.")] = False,
        dla: Annotated[
            int | None,
            typer.Option(
                "--dla",
                help="DLA core N (FP16/INT8 only; GPU fallback unless --safe or --no-gpu-fallback). Every zoo model breaks some DLA rules today "
                "(csa check --rules dla): with fallback those layers run on the GPU.",
            ),
        ] = None,
        no_gpu_fallback: Annotated[
            bool, typer.Option("--no-gpu-fallback", help="With --dla: every layer on the DLA (runs the DLA rules first, refuses unless --force).")
        ] = False,
        workspace: Annotated[int, typer.Option("--workspace", help="Builder workspace pool in MiB.")] = 1024,
        output: Annotated[Path | None, typer.Option("--output", help="Write the engines / bundle to this folder (default: under CSA_HOME).")] = None,
        force: Annotated[bool, typer.Option("--force", help="Overwrite --output; build despite a failed restricted-mode check.")] = False,
        trt_version: Annotated[str | None, typer.Option("--trt-version", help="TensorRT on the device, for --target orin (default 8.6, DRIVE OS).")] = None,
        opt_batch: Annotated[int | None, typer.Option("--opt-batch", help="Optimization-profile opt batch for a dynamic-batch ONNX.")] = None,
        calib_cache: Annotated[Path | None, typer.Option("--calib-cache", help="TensorRT calibration cache for int8/mixed from a non-Q/DQ ONNX.")] = None,
        dataset: Annotated[
            str | None, typer.Option("--dataset", help="Images a bundle validates on (held-out ones; default: a quantized record's calibration set).")
        ] = None,
        data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Where imagenet-val lives (also CSA_DATA).")] = None,
        val_images: Annotated[int, typer.Option("--val-images", help="Validation images in a bundle (a seeded, class-balanced sample).")] = 64,
        weights: Annotated[str, typer.Option("--weights", help="pretrained | random | PATH | auto, when a MODEL is exported.")] = "auto",
        img_size: Annotated[str | None, typer.Option("--img-size", help="N or HxW, when a MODEL is exported.")] = None,
        manifest: ManifestOption = None,
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

"""`csa export [MODEL|record]`: a zoo model to a verified ONNX graph (one "onnx" record)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from csa_cli.cli.common import ManifestOption, parse_batch_list, resolve_stage_input, stage_command
from csa_cli.console import Output, table
from csa_cli.errors import UsageError

if TYPE_CHECKING:
    from csa_cli.records import Record

WeightsArg = Annotated[
    str | None,
    typer.Option("--weights", help="pretrained | random | PATH | auto (pretrained if cached, else random). Default: the piped record's, else auto."),
]


def render_onnx_record(record: Record) -> object:
    fields = ["model", "path", "batch", "dynamic_batch", "img_size", "opset", "parity", "weights", "weights_hash", "cached"]
    rows = []
    for name in fields:
        value = record.field(name)
        if name == "parity" and isinstance(value, float):
            value = f"{value:.2e} (max relative error, ONNX Runtime vs PyTorch)"
        if name == "img_size" and isinstance(value, list):
            value = "x".join(map(str, value))
        rows.append([name, value])
    return table(f"csa export: {record.model}", ["field", "value"], rows)


def register(app: typer.Typer) -> None:
    @app.command("export")
    @stage_command("export")
    def export(
        out: Output,
        source: Annotated[
            str | None, typer.Argument(metavar="[MODEL|RECORD]", help="A zoo model, a checkpoint record file, or none to read one from stdin.")
        ] = None,
        batch: Annotated[str | None, typer.Option("--batch", help="Static batch size (default 1; TensorRT restricted mode has no dynamic shapes).")] = None,
        dynamic_batch: Annotated[bool, typer.Option("--dynamic-batch", help="Make the batch axis dynamic instead.")] = False,
        img_size: Annotated[str | None, typer.Option("--img-size", help="N or HxW (default: the model's eval size).")] = None,
        output: Annotated[Path | None, typer.Option("--output", help="Also copy the ONNX file here (atomically).")] = None,
        weights: WeightsArg = None,
        verify: Annotated[bool, typer.Option("--verify/--no-verify", help="Fail when ONNX Runtime and PyTorch differ by more than 1e-3.")] = True,
        opset: Annotated[int, typer.Option("--opset", help="ONNX opset.")] = 17,
        manifest: ManifestOption = None,
    ) -> None:
        """Export a model to ONNX (opset 17, input "input", output "logits"), verify it against PyTorch, keep it under CSA_HOME."""
        from csa_cli.stages.export.stage import export_stage

        if batch is not None and dynamic_batch:
            raise UsageError("--batch and --dynamic-batch contradict each other", hint="give one of them")
        batches = parse_batch_list(batch) if batch is not None else [1]
        if len(batches) != 1:
            raise UsageError(f"export makes one graph: give one --batch, got {batch!r}", hint="or --dynamic-batch for any batch size")
        given = resolve_stage_input(source, manifest)
        if given.record is not None:
            if given.record.kind != "checkpoint":
                raise UsageError(
                    f"csa export takes a checkpoint record, got a {given.record.kind!r} record", hint="pipe `csa pull MODEL` into it, or name a MODEL"
                )
            model = given.record.model
            if not model:
                raise UsageError("the checkpoint record names no model")
            weights = weights or given.record.weights or "auto"
        elif given.model is not None:
            model = given.model
        else:
            raise UsageError(f"csa export takes a MODEL or a checkpoint record, not a file ({given.path})", hint="e.g. csa export csa-tiny --weights PATH")
        record = export_stage(
            model,
            weights=weights or "auto",
            batch=None if dynamic_batch else batches[0],
            img_size=img_size,
            dynamic_batch=dynamic_batch,
            opset=opset,
            verify=verify,
            output=output,
            manifest=manifest,
        )
        out.emit(record, lambda: render_onnx_record(record))  # type: ignore[arg-type,return-value]

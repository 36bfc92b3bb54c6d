"""`csa export [MODEL|record]`: a zoo model to a verified ONNX graph (one "onnx" record)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from csa_cli.cli import options
from csa_cli.cli.common import check_output, expect_record, parse_batch_list, resolve_stage_input, stage_command, wrong_file
from csa_cli.cli.options import examples
from csa_cli.console import Output, table
from csa_cli.errors import UsageError

if TYPE_CHECKING:
    from csa_cli.records import Record


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


EXAMPLES = examples(
    ("a zoo model with its published weights (pulled first when not cached)", "csa export convnext-tiny --weights pretrained"),
    ("the checkpoint a pull made, at batch 4, and a copy of the graph", "csa pull convnext-tiny | csa export --batch 4 --output convnext-b4.onnx"),
    ("a CSA model with random weights, any batch size", "csa export csa-tiny --weights random --dynamic-batch"),
)


def register(app: typer.Typer) -> None:
    @app.command("export", short_help="A model to a verified ONNX graph (opset 17).", epilog=EXAMPLES)
    @stage_command("export")
    def export(
        out: Output,
        source: str | None = options.input_argument("MODEL", "RECORD"),
        batch: str | None = options.BATCH(None, shown="1"),
        dynamic_batch: bool = options.DYNAMIC_BATCH(),
        img_size: str | None = options.IMG_SIZE(),
        output: Path | None = options.OUTPUT(),
        force: bool = options.FORCE(),
        weights: str | None = options.WEIGHTS(None, shown="a piped checkpoint record's, else auto"),
        verify: bool = typer.Option(
            True,
            "--verify/--no-verify",
            help="Fail when ONNX Runtime and PyTorch differ by more than 1e-3. Default: on.",
            show_default=False,
        ),
        opset: int = typer.Option(17, "--opset", metavar="N", help="ONNX opset. Default: 17.", show_default=False),
        manifest: Path | None = options.MANIFEST(),
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
            expect_record(given.record, "export", "checkpoint", hint="pipe `csa pull MODEL` into it, or name a MODEL")
            model = given.record.model
            if not model:
                raise UsageError("the checkpoint record names no model")
            weights = weights or given.record.weights or "auto"
        elif given.model is not None:
            model = given.model
        else:
            raise wrong_file(given.path, "export", "a MODEL or a checkpoint record", hint="e.g. csa export csa-tiny --weights PATH")
        check_output(output, force)
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

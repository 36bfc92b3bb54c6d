"""`csa export [MODEL|record]`: a zoo model to a verified ONNX graph (one "onnx" record)."""

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

D = options.defaults_of(api.export)


def register(app: typer.Typer) -> None:
    @app.command("export", short_help="A model to a verified ONNX graph (opset 17).", epilog=EXAMPLES)
    @stage_command("export")
    def export(
        out: Output,
        source: str | None = options.input_argument("MODEL", "RECORD"),
        batch: str | None = options.BATCH(D.batch, shown="1"),
        dynamic_batch: bool = options.DYNAMIC_BATCH(D.dynamic_batch),
        img_size: str | None = options.IMG_SIZE(D.img_size),
        output: Path | None = options.OUTPUT(D.output),
        force: bool = options.FORCE(D.force),
        weights: str | None = options.WEIGHTS(D.weights, shown="a piped checkpoint record's, else auto"),
        verify: bool = typer.Option(
            D.verify,
            "--verify/--no-verify",
            help="Fail when ONNX Runtime and PyTorch differ by more than 1e-3. Default: on.",
            show_default=False,
        ),
        opset: int = typer.Option(D.opset, "--opset", metavar="N", help=f"ONNX opset. Default: {D.opset}.", show_default=False),
        manifest: Path | None = options.MANIFEST(D.manifest),
    ) -> None:
        """Export a model to ONNX (opset 17, input "input", output "logits"), verify it against PyTorch, keep it under CSA_HOME."""
        record = api.export(
            CommandInput(source),
            batch=batch,
            dynamic_batch=dynamic_batch,
            img_size=img_size,
            output=output,
            force=force,
            weights=weights,
            verify=verify,
            opset=opset,
            manifest=manifest,
        )
        out.emit(record, lambda: render_onnx_record(record))  # type: ignore[arg-type,return-value]

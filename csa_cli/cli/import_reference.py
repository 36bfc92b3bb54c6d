"""`csa import-reference CHECKPOINT.pth --model csa-tiny`: NVIDIA reference weights -> a csa checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from csa_cli.cli import options
from csa_cli.cli.common import check_output, stage_command
from csa_cli.cli.options import examples
from csa_cli.console import Output, table

if TYPE_CHECKING:
    from rich.console import RenderableType

    from csa_cli.records import Record


def _render(record: Record) -> RenderableType:
    rows = [
        ["model", str(record.model)],
        ["checkpoint", str(record.path)],
        ["sha256", str(record.field("weights_hash"))],
        ["classes", str(record.field("num_classes"))],
        ["parameters", f"{record.field('params', 0) / 1e6:.2f} M"],
        ["source", str(record.field("source"))],
    ]
    return table("imported reference checkpoint", ["", ""], rows)


EXAMPLES = examples(
    ("a checkpoint NVIDIA's reference code trained, then exported with it", "csa import-reference csa_tiny.pth --model csa-tiny --output csa-tiny.safetensors"),
    ("its EMA weights, into CSA_HOME", "csa import-reference csa_tiny.pth --model csa-tiny --ema"),
)


def register(app: typer.Typer) -> None:
    @app.command("import-reference", short_help="NVIDIA reference weights to a csa checkpoint.", epilog=EXAMPLES)
    @stage_command("import-reference")
    def import_reference(
        out: Output,
        checkpoint: Path = typer.Argument(
            ..., metavar="FILE", help="A checkpoint-*.pth of a reference CSA training run (model, model_ema, optimizer, ..., args), or a state dict."
        ),
        model: str = typer.Option(..., "--model", metavar="MODEL", help="The csa-* zoo model the checkpoint was trained as, e.g. csa-tiny."),
        output: Path | None = options.OUTPUT(None, shown="under CSA_HOME/checkpoints"),
        force: bool = options.FORCE(),
        ema: bool = typer.Option(False, "--ema", help="Import the EMA weights ('model_ema') of a training checkpoint."),
        manifest: Path | None = options.MANIFEST(),
    ) -> None:
        """Convert reference-trained CSA weights into a csa checkpoint (safetensors with metadata)."""
        check_output(output, force)
        from csa_cli.models.reference import import_reference_checkpoint

        record = import_reference_checkpoint(checkpoint, model, output, ema=ema, manifest=manifest)
        out.info(f"wrote {record.path}")
        out.emit(record, lambda: _render(record))

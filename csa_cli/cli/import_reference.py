"""`csa import-reference CHECKPOINT.pth --model csa-tiny`: NVIDIA reference weights -> a csa checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from csa_cli.cli.common import ManifestOption, stage_command
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


def register(app: typer.Typer) -> None:
    @app.command("import-reference")
    @stage_command("import-reference")
    def import_reference(
        out: Output,
        checkpoint: Annotated[
            Path, typer.Argument(help="A checkpoint-*.pth of a reference CSA training run (model, model_ema, optimizer, ..., args), or a state dict.")
        ],
        model: Annotated[str, typer.Option("--model", help="The csa-* zoo entry the checkpoint was trained as, e.g. csa-tiny.")],
        output: Annotated[
            Path | None, typer.Option("--output", help="Where to write the checkpoint (.safetensors); default: under CSA_HOME/checkpoints.")
        ] = None,
        ema: Annotated[bool, typer.Option("--ema", help="Import the EMA weights ('model_ema') of a training checkpoint.")] = False,
        manifest: ManifestOption = None,
    ) -> None:
        """Convert reference-trained CSA weights into a csa checkpoint (safetensors with metadata)."""
        from csa_cli.models.reference import import_reference_checkpoint

        record = import_reference_checkpoint(checkpoint, model, output, ema=ema, manifest=manifest)
        out.info(f"wrote {record.path}")
        out.emit(record, lambda: _render(record))

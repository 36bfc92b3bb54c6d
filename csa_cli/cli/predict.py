"""`csa predict`: the top-5 classes of a few images, with names and probabilities."""

from __future__ import annotations

from pathlib import Path

import typer

from csa_cli import api
from csa_cli.cli import options
from csa_cli.cli.common import stage_command
from csa_cli.cli.options import examples
from csa_cli.console import Output, table
from csa_cli.errors import UsageError
from csa_cli.inputs import CommandInput

_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".gif"}


def _split(items: list[str]) -> tuple[str | None, list[str]]:
    """INPUT IMAGE... or, with a record on stdin, IMAGE... alone."""
    if not items:
        raise UsageError("nothing given", hint="csa predict MODEL|ONNX|record IMAGE [IMAGE...]")
    if Path(items[0]).suffix.lower() in _IMAGE_SUFFIXES:
        return None, items
    return items[0], items[1:]


EXAMPLES = examples(
    ("the five most likely classes of two photos", "csa predict convnext-tiny cat.jpg dog.jpg"),
    ("an exported graph on ONNX Runtime, three classes each", "csa export convnext-tiny --weights pretrained | csa predict cat.jpg --top 3"),
)

D = options.defaults_of(api.predict)


def register(app: typer.Typer) -> None:
    @app.command("predict", short_help="Top-5 classes of a few images.", epilog=EXAMPLES)
    @stage_command("predict")
    def predict_command(
        items: list[str] = typer.Argument(
            ..., metavar="MODEL|ONNX|ENGINE|RECORD|IMAGE", help="What to run, then the images (with a record piped on stdin: the images only)."
        ),
        backend: str | None = options.BACKEND(D.backend),
        device: str = options.DEVICE(D.device),
        precision: str | None = options.PRECISION(D.precision, shown="fp32", why="fp16 only where asked"),
        top: int = typer.Option(D.top, "--top", metavar="N", help=f"How many classes per image. Default: {D.top}.", show_default=False),
        model: str | None = options.MODEL(D.model),
        weights: str | None = options.WEIGHTS(D.weights, shown="pretrained", why="classes predicted by random weights mean nothing"),
        manifest: Path | None = options.MANIFEST(D.manifest),
        *,
        out: Output,
    ) -> None:
        """Classify images: top-5 labels (ImageNet names for a 1000-class head) with probabilities."""
        source, images = _split(items)
        record = api.predict(
            CommandInput(source),  # None: the record piped on stdin
            images,
            backend=backend,
            device=device,
            precision=precision,
            top=top,
            model=model,
            weights=weights,
            manifest=manifest,
        )

        def render() -> object:
            rows = []
            for r in record.field("predictions"):
                for rank, p in enumerate(r["top"], start=1):
                    rows.append([Path(r["image"]).name if rank == 1 else "", rank, p["name"], p["synset"] or p["index"], f"{100 * p['probability']:.2f} %"])
            return table(
                f"{record.model} ({record.field('backend')}, {record.field('precision')}, weights {record.weights or 'unknown'})",
                ["image", "#", "class", "id", "probability"],
                rows,
            )

        out.emit(record, render)

"""`csa predict`: the top-5 classes of a few images, with names and probabilities."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from csa_cli.cli import options
from csa_cli.cli.common import input_record, stage_command
from csa_cli.cli.options import examples
from csa_cli.console import Output, table
from csa_cli.errors import UsageError

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


def register(app: typer.Typer) -> None:
    @app.command("predict", short_help="Top-5 classes of a few images.", epilog=EXAMPLES)
    @stage_command("predict")
    def predict_command(
        items: list[str] = typer.Argument(
            ..., metavar="MODEL|ONNX|ENGINE|RECORD|IMAGE", help="What to run, then the images (with a record piped on stdin: the images only)."
        ),
        backend: str | None = options.BACKEND(),
        device: str = options.DEVICE(),
        precision: str | None = options.PRECISION(None, shown="fp32", why="fp16 only where asked"),
        top: int = typer.Option(5, "--top", metavar="N", help="How many classes per image. Default: 5.", show_default=False),
        model: str | None = options.MODEL(),
        weights: str | None = options.WEIGHTS(None, shown="pretrained", why="classes predicted by random weights mean nothing"),
        manifest: Path | None = options.MANIFEST(),
        *,
        out: Output,
    ) -> None:
        """Classify images: top-5 labels (ImageNet names for a 1000-class head) with probabilities."""
        from csa_cli.stages.evaluate.predict import predict

        source, images = _split(items)
        record = input_record(source)
        if source is None and record is None and model is None:
            raise UsageError("no model given", hint="csa predict MODEL IMAGE..., or pipe a record: csa export M | csa predict IMAGE...")
        if not images:
            raise UsageError("no images given", hint="csa predict MODEL IMAGE [IMAGE...]")
        results, target, backend_info = predict(
            record if record is not None else source,
            images,
            model=model,
            backend=backend,
            weights=weights,
            manifest=manifest,
            device=device,
            precision=precision,
            topk=top,
        )
        data: dict[str, Any] = {
            "schema": 1,
            "kind": "predict",
            "model": target.model,
            "backend": backend_info.get("backend"),
            "precision": target.precision,
            "weights": target.weights,
            "weights_hash": target.weights_hash,
            "predictions": [r.model_dump() for r in results],
        }

        def render() -> object:
            rows = []
            for r in results:
                for rank, p in enumerate(r.top, start=1):
                    rows.append([Path(r.image).name if rank == 1 else "", rank, p.name, p.synset or p.index, f"{100 * p.probability:.2f} %"])
            return table(
                f"{target.model} ({backend_info.get('backend')}, {target.precision}, weights {target.weights or 'unknown'})",
                ["image", "#", "class", "id", "probability"],
                rows,
            )

        out.emit_data(data, render)

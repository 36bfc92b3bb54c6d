"""`csa predict`: the top-5 classes of a few images, with names and probabilities."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from csa_cli.cli.common import ManifestOption, input_record, stage_command
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


def register(app: typer.Typer) -> None:
    @app.command("predict")
    @stage_command("predict")
    def predict_command(
        items: Annotated[list[str], typer.Argument(help="MODEL | ONNX | engine | record.json, then IMAGE... (with a record piped on stdin: IMAGE... only).")],
        backend: Annotated[str | None, typer.Option("--backend", help="torch | onnxruntime | tensorrt (default: what the input runs on).")] = None,
        device: Annotated[str, typer.Option("--device", help="auto | cpu | cuda | cuda:N.")] = "auto",
        precision: Annotated[str | None, typer.Option("--precision", help="fp32 | fp16 (torch on CUDA).")] = None,
        top: Annotated[int, typer.Option("--top", help="How many classes per image.")] = 5,
        model: Annotated[str | None, typer.Option("--model", help="The zoo model an ONNX / weights file belongs to (its preprocessing).")] = None,
        weights: Annotated[
            str | None, typer.Option("--weights", help="pretrained (default) | random | auto | PATH, for a MODEL input.", show_default=False)
        ] = None,
        manifest: ManifestOption = None,
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

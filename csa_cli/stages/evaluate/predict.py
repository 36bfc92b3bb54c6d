"""`csa predict`: the top-k classes of a few images, with the model's own preprocessing."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from csa_cli.errors import UsageError
from csa_cli.records import Record
from csa_cli.stages.evaluate.loop import TOPK
from csa_cli.stages.evaluate.targets import EvalTarget, open_target, resolve_target
from csa_cli.stages.pull.weights import checkpoint_meta

if TYPE_CHECKING:
    pass


class Prediction(BaseModel):
    index: int
    synset: str | None = None
    name: str
    probability: float


class ImagePredictions(BaseModel):
    image: str
    top: list[Prediction]


def predict(
    source: str | Record | None,
    images: Sequence[str | os.PathLike[str]],
    *,
    model: str | None = None,
    backend: str | None = None,
    weights: str | None = None,
    manifest: str | os.PathLike[str] | None = None,
    device: str = "auto",
    precision: str | None = None,
    topk: int = TOPK,
) -> tuple[list[ImagePredictions], EvalTarget, dict[str, Any]]:
    """Top-k classes with softmax probabilities for each image, preprocessed as for eval."""
    import numpy as np

    from csa_cli.data import imagenet
    from csa_cli.data.preprocess import build_transform, open_image

    if not images:
        raise UsageError("no images given", hint="csa predict MODEL IMAGE [IMAGE...]")
    if topk < 1:
        raise UsageError(f"--top must be at least 1, got {topk}")
    target = resolve_target(source, model=model, backend=backend, weights=weights, manifest=manifest)
    transform = build_transform(target.preprocessing)
    import torch

    batch = torch.stack([transform(open_image(p)) for p in images])  # unreadable files fail here, before loading the model
    engine, target = open_target(target, device=device, precision=precision, manifest=manifest)
    logits = np.asarray(engine.run(batch.numpy()), dtype=np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    classes = probs.shape[1]
    trained = checkpoint_meta(target.weights)  # a `csa train` checkpoint names its own classes
    own = trained.class_names if trained is not None and trained.class_names and len(trained.class_names) == classes else None
    names = imagenet.class_names() if own is None and classes == imagenet.NUM_CLASSES else None
    results = []
    for path, row in zip(images, probs, strict=True):
        order = np.argsort(-row, kind="stable")[: min(topk, classes)]
        top = [
            Prediction(
                index=int(i),
                synset=imagenet.synsets()[i] if names else None,
                name=own[i] if own else names[i] if names else f"class {int(i)}",
                probability=float(row[i]),
            )
            for i in order
        ]
        results.append(ImagePredictions(image=str(path), top=top))
    return results, target, engine.describe()

"""The evaluation loop: a backend over a labelled dataset, top-1 / top-5 counted exactly.

Images are preprocessed in DataLoader workers (pinned memory on CUDA). Unreadable images are
counted and left out of the metrics; calibration images of the artifact are left out and counted.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from csa_cli import events
from csa_cli.errors import CsaError, UsageError

if TYPE_CHECKING:
    import torch

    from csa_cli.backends.base import Backend
    from csa_cli.data.datasets import LabeledDataset
    from csa_cli.data.preprocess import EvalTransform


TOPK = 5


class _ImageList:
    """A map-style dataset for torch's DataLoader (no torch import here: it is picklable as is)."""

    def __init__(self, samples: Sequence[tuple[str, int]], transform: EvalTransform) -> None:
        self.samples = list(samples)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, bool]:
        import torch
        from PIL import Image

        path, label = self.samples[index]
        try:
            with Image.open(path) as img:
                img.load()
                return self.transform(img), label, True
        except Exception:  # a truncated or non-image file: counted by the caller, not fatal
            h, w = self.transform.input_size
            return torch.zeros(3, h, w), label, False


class ImageResult(BaseModel):
    """One line of --predictions: an evaluated image, its label and its top-5 class indices."""

    image: str
    label: int
    top: list[int]


class EvalMetrics(BaseModel):
    """What the loop measured."""

    top1: float = Field(description="percent of evaluated images whose top prediction is the label")
    top5: float
    top1_correct: int
    top5_correct: int
    images: int = Field(description="images evaluated (readable, not calibration images)")
    unreadable: int
    unreadable_files: list[str] = Field(default_factory=list, description="the first few")
    excluded_calibration: int
    num_outputs: int
    seconds: float
    throughput: float = Field(description="images/s end to end (decode + preprocess + inference)")
    model_throughput: float = Field(description="images/s inside the backend alone")


def default_workers() -> int:
    return min(4, os.cpu_count() or 1)


def check_head(num_outputs: int, ds: LabeledDataset, model: str) -> None:
    info = ds.info
    if num_outputs == info.num_classes:
        return
    if info.label_space == "imagenet-1k":
        raise CsaError(
            f"{model} has {num_outputs} outputs, but {info.name} is labelled with the 1000 ImageNet classes",
            hint="evaluate a 1000-class model, or use an ImageFolder whose folders are this head's classes",
        )
    raise CsaError(
        f"{info.name} has {info.num_classes} class folders, but {model} has {num_outputs} outputs",
        hint="the folders (sorted by name) must be the head's classes, one each; or name them by ImageNet WordNet id",
    )


def _without_calibration(ds: LabeledDataset, exclude: Sequence[str]) -> tuple[list[tuple[str, int]], int]:
    """The dataset's samples minus the model's calibration images, and how many were left out."""
    root = Path(ds.info.root)
    excluded_keys = {os.path.normpath(p) for p in exclude}
    samples: list[tuple[str, int]] = []
    excluded = 0
    for path, label in ds.samples:
        # calibration lists hold resolved absolute paths; a relative entry is relative to the dataset root
        if excluded_keys and (os.path.normpath(os.path.realpath(path)) in excluded_keys or os.path.normpath(os.path.relpath(path, root)) in excluded_keys):
            excluded += 1
            continue
        samples.append((path, label))
    if not samples:
        raise CsaError(
            f"no images left to evaluate: all {len(ds.samples)} are calibration images of this model", hint="evaluate on other images (--dataset / --limit)"
        )
    return samples, excluded


@dataclass
class _Tally:
    """Running counts of one evaluation, batch by batch."""

    samples: list[tuple[str, int]]
    predictions: list[ImageResult] | None
    top1: int = 0
    top5: int = 0
    evaluated: int = 0
    unreadable: int = 0
    unreadable_files: list[str] = field(default_factory=list)
    seen: int = 0

    def add(self, logits: torch.Tensor, labels: torch.Tensor, ok: torch.Tensor) -> None:
        """One batch: `ok` marks the images that could be read (the others are counted, not scored)."""
        first = self.seen
        for i in (~ok).nonzero().flatten().tolist():
            self.unreadable += 1
            if len(self.unreadable_files) < 10:
                self.unreadable_files.append(self.samples[first + i][0])
        self.seen += len(labels)
        paths = [self.samples[first + i][0] for i in range(len(ok)) if bool(ok[i])]
        logits, labels = logits[ok], labels[ok]
        if not len(labels):
            return
        pred = logits.float().topk(min(TOPK, int(logits.shape[1])), dim=1).indices
        if self.predictions is not None:
            self.predictions.extend(
                ImageResult(image=path, label=int(label), top=[int(c) for c in row])
                for path, label, row in zip(paths, labels.tolist(), pred.tolist(), strict=True)
            )
        hits = pred == labels.view(-1, 1)
        self.top1 += int(hits[:, 0].sum())
        self.top5 += int(hits.any(dim=1).sum())
        self.evaluated += len(labels)


def run_eval(
    backend: Backend,
    ds: LabeledDataset,
    transform: EvalTransform,
    *,
    model: str,
    batch_size: int = 32,
    workers: int | None = None,
    exclude: Sequence[str] = (),
    progress: bool = True,
    predictions: list[ImageResult] | None = None,
) -> EvalMetrics:
    """Top-1/top-5 of `backend` on `ds` (its samples as selected), leaving out the files in `exclude`.

    `predictions`, when given, is filled with each evaluated image's label and top-5 classes.

    Long because the DataLoader settings and the timing of model time apart from loading belong
    together; the counting is _Tally.
    """
    import numpy as np
    import torch
    from torch.utils.data import DataLoader

    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {batch_size}")
    workers = default_workers() if workers is None else workers
    if workers < 0:
        raise UsageError(f"--workers must be 0 or more, got {workers}")
    samples, excluded = _without_calibration(ds, exclude)
    on_cuda = str(getattr(backend, "device", "cpu")).startswith("cuda")
    loader = DataLoader(
        _ImageList(samples, transform),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        pin_memory=on_cuda,
        persistent_workers=False,
        prefetch_factor=4 if workers > 0 else None,
    )
    run_tensor = getattr(backend, "run_tensor", None)
    tally = _Tally(samples, predictions)
    num_outputs = -1
    model_seconds = 0.0
    start = time.perf_counter()
    with events.progress(f"eval {model} ({backend.name})", len(samples), "images") if progress else contextlib.nullcontext() as bar:
        for images, labels, ok in loader:
            t0 = time.perf_counter()
            logits = run_tensor(images) if run_tensor is not None else torch.from_numpy(np.asarray(backend.run(images.numpy())))
            model_seconds += time.perf_counter() - t0
            if num_outputs < 0:
                num_outputs = int(logits.shape[1])
                check_head(num_outputs, ds, model)
            tally.add(logits, labels, ok)
            if bar is not None:
                bar.advance(len(ok))
    seconds = time.perf_counter() - start
    if tally.evaluated == 0:
        first = tally.unreadable_files[0] if tally.unreadable_files else "?"
        raise CsaError(f"none of the {len(samples)} images could be read (first: {first})", hint="check the dataset files")
    if tally.unreadable:
        events.warn(f"{tally.unreadable} unreadable image(s) left out (first: {tally.unreadable_files[0]})")
    total = tally.evaluated + tally.unreadable
    return EvalMetrics(
        top1=100.0 * tally.top1 / tally.evaluated,
        top5=100.0 * tally.top5 / tally.evaluated,
        top1_correct=tally.top1,
        top5_correct=tally.top5,
        images=tally.evaluated,
        unreadable=tally.unreadable,
        unreadable_files=tally.unreadable_files,
        excluded_calibration=excluded,
        num_outputs=num_outputs,
        seconds=seconds,
        throughput=total / seconds if seconds > 0 else math.inf,
        model_throughput=total / model_seconds if model_seconds > 0 else math.inf,
    )

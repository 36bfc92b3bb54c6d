"""The images a bundle validates its engines on: the calibration set's held-out images, as eval sees them.

The dataset is the one named by --dataset or, for a quantized record, the calibration dataset it
names; the images `csa quantize` calibrated on are left out (the same list `csa eval` leaves out),
a seeded class-balanced sample of the rest is drawn, and each is preprocessed by the model's eval
transform at the graph's input size, exactly as calibration and eval do.
"""

from __future__ import annotations

import os
from pathlib import Path

from csa_cli import events
from csa_cli.errors import UsageError
from csa_cli.graph.onnx_file import OnnxInfo
from csa_cli.tensorrt.validation import ValidationSet


def held_out_set(
    model: str,
    info: OnnxInfo,
    *,
    dataset: str,
    data_dir: str | os.PathLike[str] | None,
    exclude: list[str],
    count: int,
    seed: int,
    manifest: str | os.PathLike[str] | None,
    weights: str | None = None,
) -> ValidationSet:
    """`count` held-out images of `dataset` (fewer when it has fewer), preprocessed for `info`'s input."""
    import numpy as np

    from csa_cli.data.preprocess import load_batch
    from csa_cli.stages.quantize.calibration import list_dataset, select_calibration_files
    from csa_cli.stages.quantize.stage import preprocessing_for

    if count < 1:
        raise UsageError(f"--val-images must be at least 1, got {count}")
    files, _ = list_dataset(dataset, Path(data_dir) if data_dir else None)
    left_out = {str(Path(p).resolve()) for p in exclude}
    held = [f for f in files if f.path not in left_out]
    if not held:
        raise UsageError(f"{dataset} holds no image besides the {len(left_out)} calibration images", hint="give --dataset another folder to validate on")
    chosen = select_calibration_files(held, count, seed)
    if len(chosen) < count:
        events.info(f"validating on all {len(chosen)} held-out images of {dataset} (fewer than --val-images {count})")
    pre = preprocessing_for(model, info.input_hw, manifest, weights)  # a trained checkpoint's own preprocessing
    images = np.ascontiguousarray(load_batch([f.path for f in chosen], pre).numpy(), dtype=np.float32)
    source = (
        f"{len(chosen)} held-out images of {dataset} (the {len(left_out)} calibration images left out), "
        f"preprocessed as eval does ({pre.interpolation}, crop_pct {pre.crop_pct}, {pre.input_size[0]}x{pre.input_size[1]})"
    )
    return ValidationSet(images=images, labels=[f.label for f in chosen], files=[f.path for f in chosen], source=source)

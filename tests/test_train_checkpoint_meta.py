"""A trained checkpoint's metadata (classes, names, preprocessing) drives every `--weights PATH` stage."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from csa_cli.manifest import Preprocessing

# not the zoo's 224 / ImageNet mean: a stage that fell back to the entry would show it
TRAINED_PRE = Preprocessing(input_size=(64, 64), crop_pct=1.0, interpolation="bilinear", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
NAMES = ["zero", "one", "two"]


@pytest.fixture(scope="module")
def trained_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from csa_cli.models.checkpoint import save_checkpoint
    from csa_cli.models.factory import create_model

    torch.manual_seed(0)
    module = create_model("csa-nano", 3)
    path = tmp_path_factory.mktemp("ckpt") / "model.safetensors"
    return save_checkpoint(
        module, path, "csa-nano", class_names=NAMES, preprocessing=TRAINED_PRE, recipe={"name": "small"}, dataset_fingerprint="abc", val_top1=0.5
    )


def test_metadata_round_trips(trained_ckpt: Path) -> None:
    from csa_cli.models.checkpoint import read_metadata

    meta = read_metadata(trained_ckpt)
    assert (meta.num_classes, meta.class_names, meta.preprocessing) == (3, NAMES, TRAINED_PRE)
    assert meta.recipe == {"name": "small"} and meta.val_top1 == 0.5 and meta.val_top1_ema is None


def test_eval_and_export_targets_use_the_checkpoints_classes_and_preprocessing(trained_ckpt: Path) -> None:
    from csa_cli.stages.evaluate.targets import resolve_target
    from csa_cli.stages.pull.weights import load_model

    target = resolve_target("csa-nano", weights=str(trained_ckpt))
    assert target.preprocessing == TRAINED_PRE and target.num_classes == 3
    loaded = load_model("csa-nano", str(trained_ckpt))
    assert loaded.module.num_classes == 3 and loaded.entry.preprocessing == TRAINED_PRE  # profile sizes from loaded.entry
    assert resolve_target("csa-nano", weights="random").preprocessing.input_size == (224, 224)  # the zoo entry otherwise


def test_quantize_calibrates_with_the_checkpoints_preprocessing(trained_ckpt: Path) -> None:
    from csa_cli.stages.quantize.stage import preprocessing_for

    assert preprocessing_for("csa-nano", (64, 64), None, str(trained_ckpt)) == TRAINED_PRE
    assert preprocessing_for("csa-nano", (64, 64), None, None).mean != TRAINED_PRE.mean


def test_export_and_predict_with_trained_weights(trained_ckpt: Path, tmp_path: Path, csa: Callable[..., object]) -> None:
    images = []
    for i in range(2):
        path = tmp_path / f"img{i}.png"
        Image.fromarray(np.full((40, 40, 3), 60 * i, dtype=np.uint8)).save(path)
        images.append(str(path))
    exported = csa("export", "csa-nano", "--weights", str(trained_ckpt), "--dynamic-batch")
    assert exported.exit_code == 0, exported.stderr  # type: ignore[attr-defined]
    assert exported.record["img_size"] == [64, 64]  # type: ignore[attr-defined]
    predicted = csa("predict", "csa-nano", "--weights", str(trained_ckpt), *images)
    assert predicted.exit_code == 0, predicted.stderr  # type: ignore[attr-defined]
    names = {p["name"] for row in predicted.record["predictions"] for p in row["top"]}  # type: ignore[attr-defined]
    assert names == set(NAMES)

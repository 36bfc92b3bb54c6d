"""Calibration's file listing, batching and histogram (stages/quantize/calibration.py), on small generated data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from csa_cli.data.preprocess import default_preprocessing, load_batch
from csa_cli.stages.quantize.calibration import PERCENTILE, CalibFile, TensorHistogram, iter_calibration_batches, list_dataset


def _image_folder(root: Path, per_class: dict[str, int]) -> Path:
    rng = np.random.default_rng(0)
    for name, count in per_class.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    return root


def test_list_dataset_gives_absolute_paths_and_sorted_class_labels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _image_folder(tmp_path / "data", {"zebra": 2, "ant": 1})
    monkeypatch.chdir(tmp_path)
    files, fingerprint = list_dataset("data")  # a relative path: the listing must not depend on the working directory
    assert sorted((Path(f.path).relative_to(tmp_path / "data").as_posix(), f.label) for f in files) == [
        ("ant/0.png", 0),
        ("zebra/0.png", 1),
        ("zebra/1.png", 1),
    ]
    assert all(Path(f.path).is_absolute() and Path(f.path).is_file() for f in files)
    assert fingerprint and list_dataset(str(tmp_path / "data"))[1] == fingerprint


def test_calibration_batches_have_the_batch_size_and_the_eval_transform(tmp_path: Path) -> None:
    root = _image_folder(tmp_path / "data", {"a": 5})
    files = [CalibFile(path=str(p), label=0) for p in sorted((root / "a").glob("*.png"))]
    pre = default_preprocessing((16, 16))
    batches = list(iter_calibration_batches(files, pre, 2))
    assert [b.shape for b in batches] == [(2, 3, 16, 16), (2, 3, 16, 16), (1, 3, 16, 16)]
    assert all(b.dtype == np.float32 and b.flags["C_CONTIGUOUS"] for b in batches)
    np.testing.assert_array_equal(np.concatenate(batches), load_batch([f.path for f in files], pre).numpy())


def test_zeros_seen_before_any_nonzero_value_land_in_the_first_bin() -> None:
    hist = TensorHistogram()
    hist.update(np.zeros(30, dtype=np.float32))  # e.g. a ReLU output that was 0 on the first batch
    hist.update(np.array([0.0, 0.5, 1.0, -2.0], dtype=np.float32))
    assert hist.counts is not None and int(hist.counts.sum()) == hist.samples == 34
    assert int(hist.counts[0]) == 31 and hist.amax_seen == 2.0


def test_percentile_threshold_is_the_99_99th_percentile_of_abs_values() -> None:
    values = np.linspace(-1.0, 1.0, 400_001, dtype=np.float32)  # |x| uniform on [0, 1]
    hist = TensorHistogram()
    hist.update(values)
    assert hist.width > 0
    expected = PERCENTILE / 100.0  # the 99.99th percentile of |x|
    assert abs(hist.amax("percentile") - expected) <= 2 * hist.width
    assert hist.amax("minmax") == 1.0

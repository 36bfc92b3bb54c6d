"""Calibration's file listing, batching and histogram (stages/quantize/calibration.py), on small generated data."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from csa_cli.data.preprocess import default_preprocessing, load_batch
from csa_cli.stages.quantize.calibration import (
    PERCENTILE,
    START_BIN,
    CalibFile,
    TensorHistogram,
    entropy_divergences,
    entropy_threshold_bin,
    iter_calibration_batches,
    list_dataset,
)


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
    # the upper edge of the bin holding the percentile: at most one bin above it, never below
    assert expected <= hist.amax("percentile") <= expected + hist.width
    assert hist.amax("minmax") == 1.0


def test_the_default_seed_is_seed_0() -> None:
    from csa_cli.stages.quantize.calibration import select_calibration_files

    files = [CalibFile(path=f"/d/{c}/{i}.png", label=c) for c in range(3) for i in range(5)]
    assert select_calibration_files(files, 6) == select_calibration_files(files, 6, seed=0) != select_calibration_files(files, 6, seed=1)


def test_non_finite_values_are_left_out_of_the_histogram() -> None:
    hist = TensorHistogram()
    hist.update(np.array([np.nan, 0.5, -np.inf, -1.5, np.inf, 1.0], dtype=np.float32))
    assert hist.samples == 3 and (hist.min, hist.max) == (-1.5, 1.0) and hist.amax_seen == 1.5
    assert hist.counts is not None and int(hist.counts.sum()) == 3
    hist.update(np.array([np.nan, np.inf], dtype=np.float32))  # nothing finite: nothing changes
    assert hist.samples == 3 and hist.amax("minmax") == 1.5


def test_growing_past_the_bin_limit_merges_pairs_without_losing_counts_even_from_an_odd_count() -> None:
    from csa_cli.stages.quantize.calibration import MAX_BINS, NUM_BINS

    hist = TensorHistogram()
    hist.update(np.array([1.0], dtype=np.float32))  # width 1/2048
    hist.update(np.array([5.0001], dtype=np.float32))  # needs 10241 bins: one merge, then 5121 bins (odd)
    assert hist.counts is not None and hist.counts.size % 2 == 1 and hist.width == 2 / NUM_BINS
    hist.update(np.array([20.0, 0.25], dtype=np.float32))  # past the limit again, from an odd count
    assert hist.counts.size <= MAX_BINS and int(hist.counts.sum()) == hist.samples == 4
    assert hist.amax("minmax") == 20.0
    assert int(np.argmax(hist.counts > 0)) == int(0.25 / hist.width)  # the smallest value's bin, at the merged width


def test_an_unknown_method_is_named() -> None:
    from csa_cli.errors import CsaError

    hist = TensorHistogram()
    hist.update(np.array([1.0, 2.0], dtype=np.float32))
    with pytest.raises(CsaError, match=r"^unknown calibration method 'kl'$"):
        hist.amax("kl")


def test_range_collector_gives_one_threshold_per_tensor_that_had_values() -> None:
    from csa_cli.stages.quantize.calibration import RangeCollector

    collector = RangeCollector(["a", "b", "never"])
    collector.update({"a": np.array([0.5, -2.0], dtype=np.float32), "b": np.array([3.0], dtype=np.float32), "other": np.ones(3, dtype=np.float32)})
    collector.update({"a": np.array([1.0], dtype=np.float32)})
    assert collector.amax("minmax") == {"a": 2.0, "b": 3.0}  # "never" had no values, "other" is not collected
    assert set(collector.amax("entropy")) == {"a", "b"}


def test_scales_are_amax_over_127_rounded_to_float32() -> None:
    from csa_cli.stages.quantize.calibration import scales_from_amax

    scales = scales_from_amax({"x": 1.0, "y": 12.7, "z": 0.3})
    assert scales == {"x": float(np.float32(1.0 / 127)), "y": float(np.float32(0.1)), "z": float(np.float32(0.3 / 127))}
    assert all(float(np.float32(v)) == v for v in scales.values())


def test_cache_text_refuses_names_with_newlines_and_skips_blank_lines() -> None:
    from csa_cli.errors import CsaError
    from csa_cli.stages.quantize.calibration import CalibrationCache, parse_calibration_cache, scale_to_hex

    with pytest.raises(CsaError, match="cannot be written to a calibration cache"):
        CalibrationCache(version="8601", algorithm="EntropyCalibration2", scales={"a\nb": 0.5}).to_text()
    text = f"TRT-8601-EntropyCalibration2\nx: {scale_to_hex(0.5)}\n\n   \ny: {scale_to_hex(0.25)}\n"
    assert parse_calibration_cache(text).scales == {"x": 0.5, "y": 0.25}
    with pytest.raises(CsaError, match="line 1 is not a TensorRT cache header") as bad:
        parse_calibration_cache("x: 3f000000\n")
    assert bad.value.hint == "expected e.g. TRT-8601-EntropyCalibration2"


def test_a_later_larger_value_below_one_gets_bins_of_its_own() -> None:
    """Bins grow to cover every value seen, whatever its magnitude (not clamped into the last bin)."""
    hist = TensorHistogram()
    hist.update(np.array([0.5], dtype=np.float32))  # width 0.5 / 2048
    hist.update(np.array([0.9], dtype=np.float32))
    assert hist.counts is not None and hist.counts.size * hist.width >= 0.9
    assert int(np.flatnonzero(hist.counts)[-1]) == int(0.9 / hist.width)


def test_cache_errors_name_the_file_they_come_from(tmp_path: Path) -> None:
    from csa_cli.errors import CsaError
    from csa_cli.stages.quantize.calibration import parse_calibration_cache, read_calibration_cache

    bad = tmp_path / "calib.cache"
    bad.write_text("TRT-8601-EntropyCalibration2\nnot a line\n")
    with pytest.raises(CsaError, match="^" + re.escape(f"{bad}: line 2 is not 'tensor: hexscale'")):
        read_calibration_cache(bad)
    with pytest.raises(CsaError, match=r"^calibration cache is empty$"):
        parse_calibration_cache("")


def test_exactly_max_bins_are_kept_without_merging() -> None:
    from csa_cli.stages.quantize.calibration import MAX_BINS, NUM_BINS

    hist = TensorHistogram()
    hist.update(np.array([1.0], dtype=np.float32))  # width 1 / 2048
    hist.update(np.array([MAX_BINS / NUM_BINS], dtype=np.float32))  # needs exactly MAX_BINS bins
    assert hist.counts is not None and hist.counts.size == MAX_BINS and hist.width == 1 / NUM_BINS


def test_cache_keeps_the_header_algorithm_and_quotes_at_most_80_characters_of_a_bad_line() -> None:
    from csa_cli.errors import CsaError
    from csa_cli.stages.quantize.calibration import parse_calibration_cache

    cache = parse_calibration_cache("TRT-8517-MinMaxCalibration\nx: 3f000000\n")
    assert (cache.version, cache.algorithm, cache.scales) == ("8517", "MinMaxCalibration", {"x": 0.5})
    long_line = "y" * 100
    with pytest.raises(CsaError) as bad:
        parse_calibration_cache(f"TRT-8601-EntropyCalibration2\n{long_line}\n")
    assert str(bad.value).endswith(repr("y" * 80))


def test_list_dataset_finds_imagenet_val_under_the_data_dir_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # synset folders keep their ImageNet indices: goldfish n01443537 is class 1, brambling n01530575 class 10
    monkeypatch.delenv("CSA_DATA", raising=False)
    monkeypatch.chdir(tmp_path)  # nothing to find by accident in the working directory
    _image_folder(tmp_path / "somewhere" / "val", {"n01443537": 1, "n01530575": 2})
    files, fingerprint = list_dataset("imagenet-val", tmp_path / "somewhere")
    assert sorted((Path(f.path).parent.name, f.label) for f in files) == [("n01443537", 1), ("n01530575", 10), ("n01530575", 10)]
    assert fingerprint == list_dataset(str(tmp_path / "somewhere" / "val"))[1]


def test_values_are_histogrammed_as_float32_the_precision_the_network_computes_in() -> None:
    wide = np.array([0.1, -0.3, 0.7000000001, 1e-9], np.float64)
    h64, h32 = TensorHistogram(), TensorHistogram()
    h64.update(wide)
    h32.update(wide.astype(np.float32))
    assert (h64.min, h64.max) == (float(np.float32(-0.3)), float(np.float32(0.7000000001))) == (h32.min, h32.max)
    assert h64.counts is not None and h32.counts is not None
    assert h64.counts.dtype == np.int64  # whole counts, exact however many batches add to them
    np.testing.assert_array_equal(h64.counts, h32.counts)


def _counts(shape: str) -> np.ndarray:
    counts = np.zeros(2048, np.int64)
    if shape == "beyond bin 200":  # every candidate up to bin 200 holds nothing: log(0) territory
        counts[200:260] = np.arange(60) + 1
    elif shape == "gappy":
        counts[::7] = 5
        counts[1000] = 1
    elif shape == "half-normal":
        rng = np.random.default_rng(0)
        counts = np.bincount(np.minimum((np.abs(rng.normal(0, 300, 20000))).astype(np.int64), 2047), minlength=2048)
    return counts


@pytest.mark.parametrize("shape", ["all zero", "beyond bin 200", "gappy", "half-normal"])
def test_the_entropy_search_warns_about_nothing_on_any_histogram(shape: str) -> None:
    # csa quantize prints no numpy RuntimeWarning: empty candidates are ruled out, not divided by
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        found = entropy_threshold_bin(_counts(shape))
    assert START_BIN <= found <= 2048
    if shape == "all zero":
        assert found == 2048
    if shape == "beyond bin 200":
        assert found > 200  # a threshold inside the empty bins would clip everything


def test_divergences_have_one_entry_per_candidate_and_none_is_finite_without_counts() -> None:
    assert entropy_divergences(np.ones(START_BIN, np.int64)).size == 0  # no candidate beyond the histogram
    assert entropy_threshold_bin(np.ones(START_BIN, np.int64)) == START_BIN  # its whole range, then
    empty = entropy_divergences(np.zeros(300, np.int64))
    assert empty.shape == (300 - START_BIN + 1,) and np.isposinf(empty).all()
    assert entropy_threshold_bin(np.zeros(300, np.int64)) == 300


def test_zeros_seen_before_any_scale_all_join_bin_0() -> None:
    h = TensorHistogram()
    h.update(np.zeros(3, np.float32))
    h.update(np.zeros(5, np.float32))  # still no scale: 8 zeros waiting
    h.update(np.array([0.0, 1.0], np.float32))
    assert h.counts is not None and h.counts[0] == 3 + 5 + 1 and h.counts.sum() == 10 and h.samples == 10


def test_the_percentile_range_is_the_upper_edge_of_the_bin_that_holds_the_99_99th_percentile() -> None:
    # 99,999 values of 0.5 and one of 1.0: width 1/2048, the 99.99th percentile sits in bin 1024 = [0.5, 0.5 + w)
    h = TensorHistogram()
    h.update(np.concatenate([np.full(99_999, 0.5, np.float32), [np.float32(1.0)]]))
    assert h.amax("percentile") == 0.5 + 1 / 2048
    assert h.amax("minmax") == 1.0


def test_a_range_of_exactly_1_is_still_searched_by_entropy() -> None:
    # a narrow half-normal and one outlier at exactly 1.0: the entropy threshold clips the outlier
    values = np.abs(np.random.default_rng(0).normal(0, 0.05, 100_000)).astype(np.float32)
    h = TensorHistogram()
    h.update(np.concatenate([np.minimum(values, np.float32(0.9)), [np.float32(1.0)]]))
    assert h.amax_seen == 1.0 and h.amax("entropy") < 0.5


def test_calibration_batches_take_plain_paths_as_well_as_listed_files(tmp_path: Path) -> None:
    root = _image_folder(tmp_path / "data", {"a": 2})
    paths = sorted((root / "a").glob("*.png"))
    pre = default_preprocessing((16, 16))
    as_files = list(iter_calibration_batches([CalibFile(path=str(p), label=0) for p in paths], pre, 2))
    for plain in (paths, [str(p) for p in paths]):
        np.testing.assert_array_equal(np.concatenate(list(iter_calibration_batches(plain, pre, 2))), np.concatenate(as_files))


def test_a_missing_calibration_cache_is_named(tmp_path: Path) -> None:
    from csa_cli.errors import CsaError
    from csa_cli.stages.quantize.calibration import read_calibration_cache

    with pytest.raises(CsaError, match=f"^calibration cache not found: {re.escape(str(tmp_path / 'none.cache'))}$"):
        read_calibration_cache(tmp_path / "none.cache")


def test_a_sample_takes_the_rest_from_the_larger_classes_once_a_small_one_runs_out() -> None:
    from csa_cli.stages.quantize.calibration import select_calibration_files

    files = [CalibFile(path=f"/a/{i}.png", label=0) for i in range(1)] + [CalibFile(path=f"/b/{i}.png", label=1) for i in range(3)]
    chosen = select_calibration_files(files, 4, seed=0)
    assert sorted(f.path for f in chosen) == sorted(f.path for f in files)


def test_counts_stay_whole_numbers_when_the_histogram_grows() -> None:
    h = TensorHistogram()
    h.update(np.array([1.0], np.float32))
    h.update(np.array([5.0], np.float32))  # past the first 2048 bins: more are appended
    assert h.counts is not None and h.counts.size > 2048 and h.counts.dtype == np.int64 and h.counts.sum() == 2

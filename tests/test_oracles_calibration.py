"""The entropy calibrator against thresholds NVIDIA's own implementation picked on fixed histograms.

tests/data/oracles/entropy_thresholds.npz holds nine |x| histograms and the threshold bin that
NVIDIA Model Optimizer's `_compute_amax_entropy` (TensorRT's EntropyCalibration2 search: 2048 bins,
candidates from bin 128, 128 quantized levels) chose for each; make_entropy_thresholds.py beside it
says how they were made. Neither of our two implementations shares a line with that one, so a
changed constant (levels, start bin) or a changed formula shows here even when both of ours agree.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from csa_cli.stages.quantize.calibration import TensorHistogram, entropy_threshold_bin

ORACLE = np.load(Path(__file__).parent / "data" / "oracles" / "entropy_thresholds.npz")
CASES = {str(name): (ORACLE["counts"][i, : int(ORACLE["sizes"][i])], int(ORACLE["threshold_bin"][i])) for i, name in enumerate(ORACLE["names"])}


@pytest.mark.parametrize("name", sorted(CASES))
def test_entropy_threshold_is_nvidias(name: str) -> None:
    counts, expected = CASES[name]
    assert entropy_threshold_bin(counts) == expected


def test_the_start_bin_binds_for_one_histogram() -> None:
    # mass in ~40 bins and a far sparse tail: searched from bin 64 the best threshold lies below 128,
    # so only a search that starts at 128, as TensorRT's does, lands on NVIDIA's bin
    counts, expected = CASES["narrow_with_outliers"]
    assert entropy_threshold_bin(counts, start_bin=64) < 128 <= expected == entropy_threshold_bin(counts)


@pytest.mark.parametrize("name", ["laplace", "relu", "narrow_with_outliers"])
def test_histogram_amax_is_the_oracle_bin_times_the_bin_width(name: str) -> None:
    counts, expected = CASES[name]
    hist = TensorHistogram()
    hist.counts, hist.width = counts.astype(np.int64), 0.01
    hist.min, hist.max, hist.samples = -counts.size * 0.01, counts.size * 0.01, int(counts.sum())
    assert hist.amax("entropy") == pytest.approx(expected * 0.01, rel=1e-12)
    assert hist.amax("minmax") == pytest.approx(counts.size * 0.01)

"""Make entropy_thresholds.npz: fixed |x| histograms and the threshold bin NVIDIA's own code picks.

The oracle is `_compute_amax_entropy` of NVIDIA Model Optimizer (nvidia-modelopt 0.47.0, Apache-2.0,
modelopt/torch/quantization/calib/histogram.py), the successor of pytorch-quantization's
HistogramCalibrator: TensorRT's EntropyCalibration2 search on a 2048-bin |x| histogram, candidates from
bin 128 on, 128 quantized levels (num_bits 8, signed). It is loaded from the wheel's file alone (its
package pulls in far more than this needs):

    pip download nvidia-modelopt==0.47.0 --no-deps -d /tmp/mo && (cd /tmp/mo && unzip -o -q nvidia_modelopt-0.47.0-py3-none-any.whl)
    python tests/data/oracles/make_entropy_thresholds.py /tmp/mo/modelopt/torch/quantization/calib/histogram.py

Needs numpy, scipy and torch. Run once; the test (tests/test_oracles_calibration.py) reads the .npz only.
"""

from __future__ import annotations

import ast
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import entropy

OUT = Path(__file__).with_name("entropy_thresholds.npz")
NUM_BINS = 2048


def load_oracle(histogram_py: Path) -> Any:
    """`_compute_amax_entropy` compiled on its own, with the names its body uses."""
    tree = ast.parse(histogram_py.read_text())
    (node,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "_compute_amax_entropy"]
    namespace = {"np": np, "torch": torch, "Counter": Counter, "entropy": entropy}
    exec(compile(ast.Module(body=[node], type_ignores=[]), str(histogram_py), "exec"), namespace)
    return namespace["_compute_amax_entropy"]


def histograms() -> dict[str, np.ndarray]:
    """Histograms of |x| for shapes a network's tensors take, 2048 bins over [0, max|x|] (one 3072-bin one)."""
    rng = np.random.RandomState(20)  # RandomState: a stream numpy keeps stable across releases

    def hist(values: np.ndarray, bins: int = NUM_BINS) -> np.ndarray:
        a = np.abs(values)
        counts, _ = np.histogram(a, bins=bins, range=(0.0, float(a.max())))
        return counts.astype(np.int64)

    relu = np.maximum(rng.normal(0.0, 1.0, 200_000), 0.0)
    return {
        "gaussian": hist(rng.normal(0.0, 1.0, 200_000)),
        "laplace": hist(rng.laplace(0.0, 1.0, 200_000)),
        "student_t3": hist(rng.standard_t(3, 200_000)),
        "relu": hist(relu),  # half exact zeros: bin 0 takes bin 1's count
        "bimodal": hist(np.concatenate([rng.normal(0.0, 0.3, 150_000), rng.normal(4.0, 0.5, 50_000)])),
        # the mass in the first ~40 bins, a sparse far tail: the best threshold lies below bin 128
        "narrow_with_outliers": hist(np.concatenate([rng.exponential(1.0, 200_000), rng.uniform(0.0, 400.0, 30)])),
        "uniform": hist(rng.uniform(-1.0, 1.0, 100_000)),
        "sparse": hist(rng.normal(0.0, 1.0, 3_000)),  # many empty bins
        "wide_3072": hist(rng.laplace(0.0, 1.0, 200_000), bins=3072),  # grown past 2048 bins, as TensorHistogram does
    }


def main() -> None:
    oracle = load_oracle(Path(sys.argv[1]))
    names, sizes, rows, bins = [], [], [], []
    for name, counts in histograms().items():
        edges = np.arange(counts.size + 1, dtype=np.float64)  # edge i = i * width, with width 1: amax is the bin index
        best = int(oracle(counts.copy(), edges, num_bits=8, unsigned=False).item())
        names.append(name)
        sizes.append(counts.size)
        rows.append(np.pad(counts, (0, 3072 - counts.size)))
        bins.append(best)
        print(f"{name:22s} bins {counts.size}  threshold bin {best}")
    np.savez_compressed(
        OUT,
        names=np.array(names),
        sizes=np.array(sizes),
        counts=np.stack(rows),
        threshold_bin=np.array(bins),
    )
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()

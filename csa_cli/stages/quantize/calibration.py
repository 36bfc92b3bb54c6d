"""INT8 calibration: which images, how they are fed, what ranges they give, and the TensorRT cache.

- `select_calibration_files`: a deterministic, seeded, class-balanced sample of a dataset's files.
- `iter_calibration_batches`: those files preprocessed exactly as for eval (data/preprocess), in chunks.
- `RangeCollector`: per-tensor |x| histograms merged chunk by chunk (memory stays bounded by the
  chunk, not by the number of images), and the three ways to turn them into an amax:
  entropy (TensorRT's EntropyCalibration2 idea: the threshold minimising KL(P || Q) between the
  clipped distribution and its 128-level quantization), max, and percentile.
- The calibration cache in TensorRT's text format (writer and parser): a header
  `TRT-<version>-<algorithm>` then `tensor_name: <hex of the float32 scale>` lines, where the
  tensor's dynamic range is scale * 127.
"""

from __future__ import annotations

import random
import re
import struct
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from csa_cli.errors import CsaError
from csa_cli.paths import atomic_write_text

if TYPE_CHECKING:
    from csa_cli.manifest import Preprocessing

Method = Literal["entropy", "minmax", "percentile"]
METHODS: tuple[str, ...] = ("entropy", "minmax", "percentile")

# TensorRT's histogram calibrators use 2048 bins of |x| and search thresholds from bin 128 on.
NUM_BINS = 2048
START_BIN = 128
NUM_LEVELS = 128  # quantized bins on one side of zero: int8's 0..127
MAX_BINS = 8192  # past this, adjacent bins merge pairwise (exact) so histograms stay small
PERCENTILE = 99.99
INT8_MAX = 127.0

# NV_TENSORRT_VERSION of DRIVE OS 6's TensorRT 8.6.1 (tensorrt/capability.trt_version_number). The engine stage
# rewrites the header for the TensorRT that reads the cache: the installed one for a local build, the
# device's in a bundle (build.sh reads it from trtexec), since TensorRT ignores a cache naming another.
TRT_VERSION = "8601"
TRT_ALGORITHM = "EntropyCalibration2"


# ---------------------------------------------------------------------------------------------
# which images


class CalibFile(BaseModel):
    """One calibration image and its class index."""

    model_config = ConfigDict(frozen=True)

    path: str
    label: int


def list_dataset(dataset: str, data_dir: Path | None = None) -> tuple[list[CalibFile], str]:
    """The labelled files of `imagenet-val`, an ImageFolder DIR or a Hub dataset, and the dataset's fingerprint.

    Listed by data/datasets, the same code eval uses, so both see the same files and labels.
    """
    from csa_cli.stages.pull.dataset import open_dataset

    ds = open_dataset(dataset, data_dir)
    files = [CalibFile(path=str(Path(path).resolve()), label=int(label)) for path, label in ds.samples]
    return files, ds.info.fingerprint


def select_calibration_files(files: Sequence[CalibFile], count: int, seed: int = 0) -> list[CalibFile]:
    """`count` files (or all when there are fewer), balanced over classes, the same for the same seed.

    Each class is shuffled with the seed, then classes give one file each in turn (in a seeded
    class order), so every class has count // classes files, give or take one.
    """
    if count < 1:
        raise CsaError(f"the number of calibration images must be at least 1, got {count}")
    rng = random.Random(seed)
    by_class: dict[int, list[CalibFile]] = defaultdict(list)
    for f in sorted(files, key=lambda f: (f.label, f.path)):
        by_class[f.label].append(f)
    labels = sorted(by_class)
    rng.shuffle(labels)
    queues = []
    for label in labels:
        members = by_class[label]
        rng.shuffle(members)
        queues.append(members)
    chosen: list[CalibFile] = []
    depth = 0
    while len(chosen) < count and any(depth < len(q) for q in queues):
        for q in queues:
            if depth < len(q) and len(chosen) < count:
                chosen.append(q[depth])
        depth += 1
    return chosen


def iter_calibration_batches(files: Sequence[CalibFile | str | Path], pre: Preprocessing, batch_size: int) -> Iterator[np.ndarray]:
    """NCHW float32 batches of the files, preprocessed by the eval transform (data/preprocess)."""
    from csa_cli.data.preprocess import load_batch

    paths = [f.path if isinstance(f, CalibFile) else str(f) for f in files]
    for start in range(0, len(paths), batch_size):
        batch = load_batch(paths[start : start + batch_size], pre)
        yield np.ascontiguousarray(batch.numpy(), dtype=np.float32)


# ---------------------------------------------------------------------------------------------
# ranges


class TensorHistogram:
    """Histogram of |x| over [0, bins * width), grown by appending bins of the same width."""

    def __init__(self) -> None:
        self.counts: np.ndarray | None = None
        self.width = 0.0
        self.min = float("inf")
        self.max = float("-inf")
        self.samples = 0
        self.zeros_before_scale = 0  # exact zeros seen while every value so far was 0: they join bin 0 later

    @property
    def amax_seen(self) -> float:
        return max(abs(self.min), abs(self.max)) if self.samples else 0.0

    def update(self, values: np.ndarray) -> None:
        flat = np.asarray(values, dtype=np.float32).ravel()
        if flat.size == 0:
            return
        finite = flat[np.isfinite(flat)] if not np.isfinite(flat).all() else flat
        if finite.size == 0:
            return
        self.min = min(self.min, float(finite.min()))
        self.max = max(self.max, float(finite.max()))
        self.samples += int(finite.size)
        absval = np.abs(finite)
        top = float(absval.max())
        if self.counts is None:
            if top == 0.0:
                # all zeros so far: remember them once a scale is known
                self.zeros_before_scale += int(absval.size)
                return
            self.width = top / NUM_BINS
            self.counts = np.zeros(NUM_BINS, dtype=np.int64)
            self.counts[0] = self.zeros_before_scale
        needed = int(np.ceil(top / self.width)) if top > 0 else 1
        while needed > MAX_BINS:
            self._merge_pairs()
            needed = int(np.ceil(top / self.width))
        if needed > self.counts.size:
            self.counts = np.concatenate([self.counts, np.zeros(needed - self.counts.size, dtype=np.int64)])
        # uniform bins: an index per value and one bincount (np.histogram's generality costs ~5x)
        index = np.minimum((absval * np.float32(1.0 / self.width)).astype(np.int64), self.counts.size - 1)
        self.counts += np.bincount(index, minlength=self.counts.size)

    def _merge_pairs(self) -> None:
        assert self.counts is not None
        counts = self.counts if self.counts.size % 2 == 0 else np.append(self.counts, 0)
        self.counts = counts.reshape(-1, 2).sum(axis=1)
        self.width *= 2

    def amax(self, method: str) -> float:
        """The clipping threshold for `method` (entropy | minmax | percentile)."""
        if self.counts is None or self.amax_seen == 0.0:
            return self.amax_seen
        if method == "minmax":
            return self.amax_seen
        if method == "percentile":
            cdf = np.cumsum(self.counts) / self.counts.sum()
            index = int(np.searchsorted(cdf, PERCENTILE / 100.0))
            return min(float((index + 1) * self.width), self.amax_seen)
        if method == "entropy":
            return min(float(entropy_threshold_bin(self.counts) * self.width), self.amax_seen)
        raise CsaError(f"unknown calibration method {method!r}")


def entropy_threshold_bin(counts: np.ndarray, start_bin: int = START_BIN, levels: int = NUM_LEVELS) -> int:
    """The bin index i (threshold = i * width) minimising KL(P_i || Q_i) (see `entropy_divergences`);
    the histogram's size when it has no more bins than `start_bin` or no candidate is finite."""
    n = int(np.asarray(counts).size)
    kl = entropy_divergences(counts, start_bin, levels)
    if not np.isfinite(kl).any():
        return n
    best = np.flatnonzero(kl == kl.min())[-1]  # ties: the widest range
    return start_bin + int(best)


def entropy_divergences(counts: np.ndarray, start_bin: int = START_BIN, levels: int = NUM_LEVELS) -> np.ndarray:
    """KL(P_i || Q_i) for every candidate i = start_bin .. len(counts), inf where Q_i cannot match P_i.

    P_i: the histogram's first i bins, the counts beyond i folded into bin i-1 (clipping).
    Q_i: those i bins merged into `levels` groups, each group's count spread evenly over its
    non-empty bins (quantization). Bin 0 takes bin 1's count: exact zeros (ReLU outputs, padding)
    quantize without error and would otherwise dominate the distribution.
    All candidates are scored at once from cumulative sums (the same figures as the bin-by-bin
    loop in tests/fixtures/entropy_reference.py, which the tests compare against, value by value).
    """
    hist = np.asarray(counts, dtype=np.float64).copy()
    n = hist.size
    if n <= start_bin:
        return np.full(0, np.inf)
    if n > 1:
        hist[0] = hist[1]
    total = hist.sum()
    candidates = np.arange(start_bin, n + 1)
    if total <= 0:
        return np.full(candidates.size, np.inf)
    csum = np.concatenate([[0.0], np.cumsum(hist)])
    nonzero = np.concatenate([[0], np.cumsum(hist > 0)])
    # log(where(h > 0, h, 1)): no log(0) is ever evaluated, so nothing here warns
    plogp_bins = np.where(hist > 0, hist * np.log(np.where(hist > 0, hist, 1.0)), 0.0)
    csum_plogp = np.concatenate([[0.0], np.cumsum(plogp_bins)])

    # bin j of candidate i falls in group floor(j*levels/i): group g starts at ceil(g*i/levels)
    bounds = (np.arange(levels + 1)[None, :] * candidates[:, None] + levels - 1) // levels
    group_sum = csum[bounds[:, 1:]] - csum[bounds[:, :-1]]
    group_nz = nonzero[bounds[:, 1:]] - nonzero[bounds[:, :-1]]
    q_level = np.where(group_nz > 0, group_sum / np.maximum(group_nz, 1), 0.0)
    log_q = np.where(q_level > 0, np.log(np.where(q_level > 0, q_level, 1.0)), 0.0)
    # sum_j p_j log q_j over bins: in-range counts weight their group's q; the outliers sit in bin i-1
    outliers = total - csum[candidates]
    last = hist[candidates - 1]
    p_log_q = (group_sum * log_q).sum(axis=1) + outliers * log_q[:, -1]
    p_last = last + outliers
    with np.errstate(divide="ignore"):  # log(q_total) of a candidate whose bins are all empty: -inf, ruled out below
        p_log_p = csum_plogp[candidates - 1] + np.where(p_last > 0, p_last * np.log(np.where(p_last > 0, p_last, 1.0)), 0.0)
        q_total = csum[candidates]
        kl = (p_log_p - p_log_q) / total - np.log(total) + np.log(q_total)
    # clipped mass landing on an empty bin has no q to match: infinitely bad (this covers q_total = 0
    # too: all of P_i's bins are then empty, and total > 0 puts the mass past them)
    return np.where((outliers > 0) & (last == 0), np.inf, kl)


class RangeCollector:
    """Per-tensor histograms, fed one chunk of outputs at a time."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = list(names)
        self.histograms = {name: TensorHistogram() for name in self.names}

    def update(self, outputs: dict[str, np.ndarray]) -> None:
        for name, value in outputs.items():
            if name in self.histograms:
                self.histograms[name].update(value)

    def amax(self, method: str) -> dict[str, float]:
        return {name: h.amax(method) for name, h in self.histograms.items() if h.samples}


# ---------------------------------------------------------------------------------------------
# TensorRT calibration cache (text)

_HEADER = re.compile(r"^TRT-(?P<version>\d+)-(?P<algorithm>[A-Za-z0-9]+)$")
_LINE = re.compile(r"^(?P<name>.+): (?P<hex>[0-9a-fA-F]{1,8})$")


class CalibrationCache(BaseModel):
    """A TensorRT calibration cache: per-tensor scales; dynamic range = scale * 127."""

    model_config = ConfigDict(extra="forbid")

    version: str = Field(default=TRT_VERSION, pattern=r"^\d+$", description="TensorRT version digits, e.g. 8601")
    algorithm: str = Field(default=TRT_ALGORITHM, pattern=r"^[A-Za-z0-9]+$")
    scales: dict[str, float]

    @property
    def header(self) -> str:
        return f"TRT-{self.version}-{self.algorithm}"

    def dynamic_ranges(self) -> dict[str, float]:
        return {name: scale * INT8_MAX for name, scale in self.scales.items()}

    def to_text(self) -> str:
        lines = [self.header]
        for name, scale in self.scales.items():
            if "\n" in name:
                raise CsaError(f"tensor name {name!r} cannot be written to a calibration cache (newline)")
            lines.append(f"{name}: {scale_to_hex(scale)}")
        return "\n".join(lines) + "\n"


def scale_to_hex(scale: float) -> str:
    """The float32 bit pattern of `scale` as 8 hex digits (big-endian), as TensorRT writes it."""
    return struct.pack(">f", scale).hex()


def hex_to_scale(text: str) -> float:
    return float(struct.unpack(">f", bytes.fromhex(text.zfill(8)))[0])


def scales_from_amax(amax: dict[str, float]) -> dict[str, float]:
    """Symmetric INT8 scales (amax / 127), each rounded to float32 as the cache stores it."""
    return {name: float(np.float32(value / INT8_MAX)) for name, value in amax.items()}


def write_calibration_cache(path: Path, cache: CalibrationCache) -> Path:
    return atomic_write_text(path, cache.to_text())


def parse_calibration_cache(text: str, source: str = "calibration cache") -> CalibrationCache:
    """Parse TensorRT's text cache; a malformed line is an error naming the line."""
    lines = text.splitlines()
    if not lines:
        raise CsaError(f"{source} is empty")
    head = _HEADER.match(lines[0].strip())
    if head is None:
        raise CsaError(f"{source}: line 1 is not a TensorRT cache header: {lines[0][:80]!r}", hint="expected e.g. TRT-8601-EntropyCalibration2")
    scales: dict[str, float] = {}
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        match = _LINE.match(line.rstrip())
        if match is None:
            raise CsaError(f"{source}: line {number} is not 'tensor: hexscale': {line[:80]!r}")
        scales[match["name"]] = hex_to_scale(match["hex"])
    return CalibrationCache(version=head["version"], algorithm=head["algorithm"], scales=scales)


def read_calibration_cache(path: Path) -> CalibrationCache:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CsaError(f"calibration cache not found: {path}") from None
    return parse_calibration_cache(text, source=str(path))

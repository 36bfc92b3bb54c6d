"""The quantize stage's files: summary.json and the calibration file list (pydantic)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from csa_cli.stages.quantize.calibration import (
    CalibFile,
)
from csa_cli.stages.quantize.policy import KeptNode


class TensorRange(BaseModel):
    """One calibrated tensor: observed extremes, the chosen clipping threshold and its INT8 scale."""

    min: float
    max: float
    amax: float
    scale: float


class Timings(BaseModel):
    calibration_s: float = Field(description="running the calibration images and filling histograms")
    ranges_s: float = Field(description="turning histograms into thresholds")
    quantization_s: float = Field(description="writing the QDQ graph and the cache")
    total_s: float


class QuantizeSummary(BaseModel):
    """summary.json: what was calibrated, how, and what it cost."""

    model_config = ConfigDict(populate_by_name=True)

    schema_version: int = Field(default=1, alias="schema")
    model: str | None = None
    method: str
    precision: str
    placement: str = Field(default="tensorrt", description="where the Q/DQ pairs sit: tensorrt (weighted-op inputs) | onnxruntime (inputs and outputs)")
    images: int
    images_requested: int
    seed: int | None = None
    batch_size: int
    calib_dataset: str | None = None
    source_onnx: str
    source_sha256: str
    onnxruntime: str
    cache_header: str
    weighted_nodes: int
    quantized_nodes: list[str]
    kept_fp: list[KeptNode]
    zero_points_nonzero: int = Field(description="Q/DQ zero points that are not 0 (TensorRT needs 0)")
    ranges: dict[str, TensorRange]
    cache_tensors: int
    time: Timings
    peak_rss_mib: float = Field(description="peak resident memory of this process so far (VmHWM / ru_maxrss)")


@dataclass
class QuantizeResult:
    qdq_path: Path
    cache_path: Path
    summary_path: Path
    summary: QuantizeSummary


class CalibFileList(BaseModel):
    """calib_files.json: the calibration images of an artifact (eval leaves them out)."""

    dataset: str
    dataset_fingerprint: str | None = None
    seed: int
    requested: int
    files: list[CalibFile]

"""The profile stage's records: options, one row per batch size, the whole result (pydantic)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from csa_cli.measure.machine import MachineInfo
from csa_cli.measure.roofline import MachinePeaks
from csa_cli.measure.sidebyside import LoadAverage
from csa_cli.measure.stats import LatencyStats, RatioSpread
from csa_cli.measure.timing import MeasureSettings
from csa_cli.records import Record, make_record

ProfileBackend = Literal["torch", "onnxruntime", "tensorrt"]


Precision = Literal["fp32", "fp16", "int8", "mixed"]


TRAFFIC_LABEL = "estimate (static, from the ONNX graph: TensorRT's fusions at the run's precision)"


class FrameCost(BaseModel):
    """Static cost of one frame when run at `batch` (weights are read once per batch)."""

    model_config = ConfigDict(extra="forbid")

    batch: int
    macs_per_frame: int
    bytes_read_per_frame: int
    bytes_written_per_frame: int
    traffic_bytes_per_frame: int = Field(description="fused, at the run's precision (graph/traffic.py)")
    unfused_bytes_per_frame: int | None = Field(default=None, description="every non-view node its own kernel, same precisions")
    label: str = TRAFFIC_LABEL


class BatchResult(LatencyStats):
    """One row of a profile: the measured statistics, the static estimate, the roofline floor."""

    macs_per_frame: int | None = None
    traffic_bytes_per_frame: int | None = Field(default=None, description=f"bytes read + written per frame, {TRAFFIC_LABEL}")
    unfused_bytes_per_frame: int | None = Field(default=None, description="the same estimate without fusion")
    floor_ms: float | None = Field(default=None, description="roofline time floor for the whole batch")
    floor_bound: Literal["compute", "memory"] | None = None
    x_floor: float | None = Field(default=None, description="median latency / floor (>= 1 for an honest measurement)")
    h2d_ms: float | None = Field(default=None, description="median host-to-device copy (TensorRT: CUDA events)")
    compute_ms: float | None = Field(default=None, description="median GPU compute of the engine alone (execute_async_v3)")
    d2h_ms: float | None = Field(default=None, description="median device-to-host copy")
    ratio_to: str | None = Field(default=None, description="the model this row was timed against, interleaved round by round")
    ratio: RatioSpread | None = Field(default=None, description="median latency / ratio_to's, with its 95% interval over rounds")


class ProfileResult(BaseModel):
    """A whole profile of one model on one backend: what `csa profile` prints and stores."""

    model_config = ConfigDict(extra="forbid")

    model: str
    backend: ProfileBackend
    device: str
    precision: str
    provider: str | None = None
    threads: int | None = None
    cuda_graphs: bool | None = None
    timing: str | None = Field(default=None, description="how a latency was measured (clock, what it spans)")
    path: str | None = Field(default=None, description="the ONNX or engine profiled (None for a torch module)")
    weights: str | None = None
    weights_hash: str | None = None
    img_size: tuple[int, int]
    settings: str
    results: list[BatchResult]
    traffic_label: str = TRAFFIC_LABEL
    roofline: MachinePeaks | None = None
    roofline_note: str | None = None
    machine: MachineInfo
    load: LoadAverage | None = Field(default=None, description="the machine's load average when the timing started")

    def to_record(self) -> Record:
        data = self.model_dump(mode="json", by_alias=True)
        return make_record("profile", **data)

    def result_at(self, batch: int) -> BatchResult | None:
        return next((r for r in self.results if r.batch == batch), None)


class ProfileOptions(BaseModel):
    """Everything `csa profile` lets a user choose, validated once."""

    model_config = ConfigDict(extra="forbid")

    backend: ProfileBackend | None = None
    batches: list[int] | None = None
    threads: int | None = Field(default=None, ge=1)
    device: str | None = Field(default=None, description="cpu | cuda | cuda:N; default: cuda for torch where present, else cpu")
    precision: Literal["fp32", "fp16"] = "fp32"
    cuda_graphs: bool = True
    dynamic_batch: bool = False
    weights: str = "auto"
    img_size: tuple[int, int] | None = None
    estimate: bool = Field(default=True, description="static traffic/MACs estimate and roofline floor")
    store: bool = True
    manifest: str | None = None
    measure: MeasureSettings = Field(default_factory=MeasureSettings)

    @model_validator(mode="after")
    def _positive_batches(self) -> ProfileOptions:
        if self.batches is not None and (not self.batches or min(self.batches) < 1):
            raise ValueError("batch sizes must be at least 1")
        return self

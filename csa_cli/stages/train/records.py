"""What `csa train` writes: metrics.jsonl lines, the resume state's JSON half, and its final record."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

METRICS_FILE = "metrics.jsonl"
CURVE_FILE = "curves.png"
STATE_DIR = "checkpoint"
STATE_JSON = "state.json"
STATE_TENSORS = "state.pt"
MODEL_FILE = "model.safetensors"
EMA_FILE = "model_ema.safetensors"
CONFIG_FILE = "config.json"
RESULT_FILE = "result.json"


class EpochMetrics(BaseModel):
    """One line of metrics.jsonl, written by rank 0 at the end of each epoch."""

    model_config = ConfigDict(extra="forbid")

    epoch: int = Field(description="1-based")
    train_loss: float
    val_top1: float | None = Field(default=None, description="percent, as csa eval reports it")
    val_top5: float | None = None
    val_top1_ema: float | None = None
    lr: float
    images_per_s: float
    epoch_s: float


class ResumeState(BaseModel):
    """checkpoint/state.json: where a run stands; the tensors (model, EMA, optimizer, scaler, scheduler, RNG) are in state.pt."""

    model_config = ConfigDict(extra="forbid")

    model: str
    recipe: dict[str, Any]
    seed: int
    world_size: int
    dataset_fingerprint: str
    num_classes: int
    epoch: int = Field(description="the epoch in progress (0-based)")
    batches_done: int = Field(description="global batches of that epoch already trained on")
    global_step: int = Field(description="optimizer steps in all")
    finished: bool = False


class RunConfig(BaseModel):
    """config.json in the output folder: what was asked and what it resolved to."""

    model_config = ConfigDict(extra="forbid")

    model: str
    dataset: str
    val_dataset: str | None
    weights: str | None
    teacher: str | None
    recipe: dict[str, Any]
    seed: int
    world_size: int
    global_batch: int
    device: str
    class_names: list[str]
    preprocessing: dict[str, Any]

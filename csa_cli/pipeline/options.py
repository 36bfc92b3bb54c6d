"""What `csa run` and `csa compare` are asked (RunOptions), and what they report (RunSummary)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from csa_cli.errors import UsageError
from csa_cli.records import Record, make_record

StageName = Literal["fetch", "evaluate", "export", "check", "quantize", "engine", "eval-mixed", "cpu-int8", "profile"]


# The engine comes before eval-mixed so that an engine built here is what gets evaluated.
# cpu-int8 is the study's CPU INT8 row: quantized again with ONNX Runtime's placement, evaluated and timed on the CPU.
STAGES: tuple[StageName, ...] = ("fetch", "evaluate", "export", "check", "quantize", "engine", "eval-mixed", "cpu-int8", "profile")


# Names users may type for a stage (the issue calls the engine stage "build-engine").
STAGE_ALIASES: dict[str, StageName] = {"build-engine": "engine", "pull": "fetch", "eval": "evaluate", "eval-quantized": "eval-mixed"}


Status = Literal["pending", "running", "done", "cached", "failed", "skipped"]


def stage_name(text: str, option: str = "--to") -> StageName:
    """A stage name (or alias) from the command line; anything else is a usage error."""
    name = STAGE_ALIASES.get(text, text)
    if name not in STAGES:
        raise UsageError(f"{option}: unknown stage '{text}'", hint=f"one of {', '.join(STAGES)}")
    return name  # type: ignore[return-value]


class RunOptions(BaseModel):
    """What `csa run` (or `csa compare`) asks of the pipeline."""

    model_config = ConfigDict(extra="forbid")

    model: str
    to: StageName = "profile"
    stages: list[StageName] | None = Field(default=None, description="only these stages (compare leaves out the engine); None = all up to `to`")
    weights: str = "auto"
    dataset: str | None = None
    data_dir: str | None = None
    limit: int | None = None
    calib_dataset: str | None = None
    calib_images: int = 500
    method: str = "entropy"
    precision: Literal["fp32", "fp16", "int8", "mixed"] = "mixed"
    target: Literal["local", "orin"] = "local"
    batch: list[int] = Field(default_factory=lambda: [1])
    backend: Literal["torch", "onnxruntime", "tensorrt"] = "onnxruntime"
    # ONNX Runtime for FP32 too, so that the drop to mixed precision compares one runtime with itself
    eval_backend: Literal["torch", "onnxruntime"] = "onnxruntime"
    iterations: int | None = None  # None: the time budget (seconds, else measure/timing.py's default)
    seconds: float | None = None
    warmup: int = 3
    threads: int | None = None
    img_size: tuple[int, int] | None = None
    redo: StageName | None = None
    manifest: str | None = None
    cpu_int8: bool = Field(default=False, description="the cpu-int8 stage: quantize with --placement onnxruntime, evaluate and time it on the CPU")


class StageResult(BaseModel):
    """One stage of a run: its state, time and what it produced (or why it did not run)."""

    name: StageName
    status: Status = "pending"
    seconds: float | None = None
    reason: str | None = None
    path: str | None = None
    key: str | None = None
    note: str | None = Field(default=None, description="what the stage found, in one line")
    record: dict[str, Any] | None = None
    exit_code: int | None = None


class RunSummary(BaseModel):
    """The outcome of a run; `to_record()` is the one "run" record `csa run` prints."""

    model: str
    weights: str | None = None
    options: RunOptions
    stages: list[StageResult]
    seconds: float = 0.0
    ok: bool = True
    failed_stage: StageName | None = None
    message: str | None = None

    def stage(self, name: StageName) -> StageResult:
        return next(s for s in self.stages if s.name == name)

    def to_record(self) -> Record:
        return make_record(
            "run",
            model=self.model,
            weights=self.weights,
            ok=self.ok,
            seconds=round(self.seconds, 3),
            failed_stage=self.failed_stage,
            message=self.message,
            stages=[{k: v for k, v in s.model_dump(exclude={"record"}).items() if v is not None} for s in self.stages],
            records={s.name: s.record for s in self.stages if s.record is not None},
        )


def selected_stages(options: RunOptions) -> list[StageName]:
    upto = STAGES[: STAGES.index(options.to) + 1]
    if options.stages is None:
        return list(upto)
    return [s for s in upto if s in options.stages]


def validate_options(options: RunOptions) -> None:
    if min(options.batch, default=0) < 1:
        raise UsageError("--batch must be at least 1", hint="e.g. --batch 1,4,8,16")
    if options.limit is not None and options.limit < 1:
        raise UsageError(f"--limit must be at least 1, got {options.limit}")
    if options.iterations is not None and options.iterations < 1:
        raise UsageError(f"--iterations must be at least 1, got {options.iterations}")
    if options.seconds is not None and options.seconds <= 0:
        raise UsageError(f"--seconds must be positive, got {options.seconds:g}")
    if options.iterations is not None and options.seconds is not None:
        raise UsageError("give --iterations or --seconds, not both")
    if options.calib_images < 1:
        raise UsageError(f"--calib-images must be at least 1, got {options.calib_images}")
    chosen = selected_stages(options)
    if options.redo is not None and options.redo not in chosen:
        raise UsageError(f"--redo {options.redo}: that stage is not part of this run", hint=f"stages run: {', '.join(chosen)}")


def stage_note(name: str, record: dict[str, Any] | None) -> str | None:
    """One line saying what a stage found, for the live view and the plain lines."""
    if not record:
        return None
    if record.get("kind") == "eval":
        top1 = record.get("top1")
        shown = f"{top1:.2f}%" if isinstance(top1, int | float) else "?"  # eval records give percent
        said = f"top-1 {shown} on {record.get('images')} images ({record.get('backend')}, {record.get('precision')})"
        latency: dict[str, Any] = record.get("latency") or {}
        ratio = (latency.get("ratio_to_fp32") or {}).get("ratio")
        if isinstance(ratio, int | float):  # the cpu-int8 stage: its latency against the model's FP32 graph
            said += f"; b{latency.get('batch')} {latency.get('median_ms', 0):.2f} ms, {ratio:.2f}x FP32"
        return said
    if name == "check" and isinstance(record.get("check"), dict):
        check = record["check"]
        dla = check.get("dla") or {}

        def verdict(data: dict[str, Any]) -> str:
            return "yes" if data.get("compliant") else f"no ({data.get('violations')} violations)"

        return f"restricted mode: {verdict(check)}; DLA: {verdict(dla)}"
    if record.get("kind") == "profile":
        rows = record.get("results") or []
        return ", ".join(f"b{r.get('batch')} {r.get('median_ms', 0):.2f} ms" for r in rows) or None
    return record.get("path")


def format_stage_line(result: StageResult) -> str:
    """A plain line for a stage (stderr when it is not a terminal)."""
    secs = "" if result.seconds is None else f" ({result.seconds:.1f}s)"
    said = result.reason or result.note
    reason = f": {said}" if said else ""
    return f"[{result.name}] {result.status}{secs}{reason}"


def stage_choices() -> Sequence[str]:
    return [*STAGES, *STAGE_ALIASES]

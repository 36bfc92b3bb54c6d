"""What `csa engine` builds from: the ONNX files (one per engine) and what travels with them.

One quantized model per run: int8/mixed engines build from the very Q/DQ graph `csa quantize`
calibrated (and `csa eval` evaluated), with static per-batch copies of it where several batch
sizes are asked (graph/rebatch.py). fp32/fp16 build from the FP32 graph that Q/DQ graph was
quantized from, never from the Q/DQ graph. A calibration cache is used only when asked
(--calib-cache), or for DLA on TensorRT 8.6, which takes no Q/DQ graph (tensorrt/capability.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from csa_cli import events
from csa_cli.errors import CsaError, UsageError
from csa_cli.graph.onnx_file import OnnxInfo, inspect_onnx
from csa_cli.paths import sha256_file
from csa_cli.tensorrt.capability import dla_takes_qdq

if TYPE_CHECKING:
    from csa_cli.records import Record

QDQ_COPY = "model.qdq.onnx"


@dataclass
class BuildInputs:
    """The ONNX files to build, and the fields carried from upstream into the record."""

    model: str
    infos: list[OnnxInfo]
    weights: str | None = None
    weights_hash: str | None = None
    calib_cache: str | None = None
    check: Any = None
    source_onnx: list[str] = field(default_factory=list)
    record: Record | None = None
    int8_source: str | None = None  # "qdq" (explicit quantization) | "cache" (implicit, a calibration cache)


@dataclass
class Ask:
    """What the build asks for, as far as the choice of its ONNX files depends on it."""

    precision: str
    batches: list[int] | None
    weights: str
    img_size: int | tuple[int, int] | None
    manifest: str | os.PathLike[str] | None
    calib_cache: str | None
    dla_core: int | None
    trt_version: str


def resolve_inputs(source: Record | str | Path | None, ask: Ask) -> BuildInputs:
    """Any input `csa engine` takes (record, ONNX path, model name) -> the ONNX files to build."""
    from csa_cli.records import Record

    if isinstance(source, Record):
        record = source
        base = BuildInputs(model=record.model or "", infos=[], weights=record.weights, weights_hash=record.field("weights_hash"), record=record)
        base.check = record.field("check") or record.field("source_check")
        if record.kind == "quantized":
            return _from_quantized(record, base, ask)
        if record.kind == "onnx":
            if not record.path:
                raise CsaError("the onnx record has no path")
            return _from_onnx(Path(record.path), base, ask, rebatchable=bool(record.model))
        if record.kind == "checkpoint":
            return _exported(base, ask)
        raise UsageError(f"csa engine takes a model, an ONNX file, or a checkpoint/onnx/quantized record, not a {record.kind!r} record")
    if isinstance(source, Path) or (isinstance(source, str) and (source.endswith(".onnx") or Path(source).is_file())):
        path = Path(source)
        return _from_onnx(path, BuildInputs(model=path.stem, infos=[]), ask, rebatchable=False)
    if isinstance(source, str):
        return _exported(BuildInputs(model=source, infos=[]), ask)
    raise UsageError("no input: give a MODEL or an ONNX file, or pipe the record of a previous csa stage")


def _from_onnx(path: Path, base: BuildInputs, ask: Ask, *, rebatchable: bool) -> BuildInputs:
    """An ONNX file builds as it is; an FP32 export of a zoo model is exported again per asked batch."""
    info = inspect_onnx(path)
    if not info.dynamic and ask.batches and ask.batches != [info.batch]:
        if rebatchable and not info.has_qdq:
            return _exported(base, ask)
        raise UsageError(
            f"{path.name} is a static batch-{info.batch} ONNX, so it builds one engine at batch {info.batch}, not --batch {','.join(map(str, ask.batches))}",
            hint="give the model, its checkpoint or quantized record (one static ONNX per batch), or a dynamic-batch ONNX",
        )
    base.infos, base.source_onnx = [info], [str(path)]
    base.calib_cache = ask.calib_cache
    base.int8_source = ("qdq" if info.has_qdq else "cache") if ask.precision in ("int8", "mixed") else None
    return base


def _exported(base: BuildInputs, ask: Ask, *, img_size: tuple[int, int] | None = None) -> BuildInputs:
    """The zoo model exported once per asked batch (FP32); INT8 then needs a calibration cache."""
    from csa_cli.stages.export.stage import export_stage

    calib = base.calib_cache or ask.calib_cache
    if ask.precision in ("int8", "mixed") and not calib:
        raise UsageError(
            f"precision {ask.precision} needs INT8 scales, and a model name gives an FP32 ONNX",
            hint=f"quantize first: `csa quantize {base.model} ... | csa engine --precision {ask.precision}`, or pass --calib-cache FILE",
        )
    want = base.weights or ask.weights
    base.infos, base.source_onnx = [], []
    for b in ask.batches or [1]:
        exported = export_stage(base.model, weights=want, batch=b, img_size=img_size or ask.img_size, dynamic_batch=False, manifest=ask.manifest)
        if not exported.path:
            raise CsaError(f"the export of {base.model} at batch {b} gave no path")
        base.infos.append(inspect_onnx(exported.path))
        base.source_onnx.append(exported.path)
        base.weights = exported.weights or base.weights
        base.weights_hash = exported.field("weights_hash") or base.weights_hash
    base.calib_cache = calib
    base.int8_source = "cache" if ask.precision in ("int8", "mixed") else None
    return base


def _from_quantized(record: Record, base: BuildInputs, ask: Ask) -> BuildInputs:
    """A `csa quantize` record: its Q/DQ graph (per batch), or the FP32 graph it came from."""
    if not record.path:
        raise CsaError("the quantized record has no path")
    qdq = Path(record.path)
    fp32 = record.field("source_onnx")
    if ask.precision in ("fp32", "fp16"):
        if not fp32 or not Path(str(fp32)).is_file():
            raise UsageError(
                f"precision {ask.precision} builds the FP32 graph, and this quantized record names none that exists ({fp32})",
                hint="pipe the export (`csa export ... | csa engine`) instead, or build --precision int8|mixed from the Q/DQ graph",
            )
        events.warn(f"precision {ask.precision}: building the FP32 graph {Path(str(fp32)).name} that {qdq.name} was quantized from, not the Q/DQ graph")
        return _from_onnx(Path(str(fp32)), base, ask, rebatchable=True)
    quantized_as = record.field("precision")
    if quantized_as and quantized_as != ask.precision:
        events.warn(
            f"the quantized record is {quantized_as} but --precision {ask.precision} was asked: the engine keeps the record's Q/DQ placement "
            f"({quantized_as}); quantize again with --precision {ask.precision} for a {ask.precision} model"
        )
    info = inspect_onnx(qdq)
    if ask.dla_core is not None and not dla_takes_qdq(ask.trt_version):
        cache = ask.calib_cache or record.field("calib_cache")
        events.info(
            f"DLA on TensorRT {ask.trt_version} takes no Q/DQ graph: building the FP32 graph with the calibration cache of the same calibration "
            "(NVIDIA's qdq-translator route)"
        )
        base.calib_cache = cache
        return _exported(base, ask, img_size=info.input_hw)
    base.int8_source, base.calib_cache = "qdq", None
    if ask.calib_cache:
        events.warn("--calib-cache is ignored: the Q/DQ graph carries its own scales (explicit quantization)")
    if info.dynamic or not ask.batches or ask.batches == [info.batch]:
        base.infos, base.source_onnx = [info], [str(qdq)]
        return base
    return _qdq_per_batch(record, qdq, info, base, ask)


def _qdq_per_batch(record: Record, qdq: Path, info: OnnxInfo, base: BuildInputs, ask: Ask) -> BuildInputs:
    """Static copies of the one calibrated Q/DQ graph at every asked batch (its scales and weights unchanged)."""
    import onnx

    from csa_cli.graph.rebatch import rebatch_like
    from csa_cli.stages.export.stage import export_stage
    from csa_cli.store import artifact_key, cached_or_built

    source = record.field("source_onnx")
    if not record.model or not source or not Path(str(source)).is_file():
        raise UsageError(
            f"{qdq.name} is a static batch-{info.batch} Q/DQ graph and its record names no model and FP32 source to copy it to --batch {ask.batches}",
            hint="pipe the record `csa quantize` wrote for a zoo model",
        )
    base.infos, base.source_onnx = [], []
    for b in ask.batches or []:
        if b == info.batch:
            base.infos.append(info)
            base.source_onnx.append(str(qdq))
            continue
        exported = export_stage(record.model, weights=base.weights or ask.weights, batch=b, img_size=info.input_hw, dynamic_batch=False, manifest=ask.manifest)
        inputs = {"qdq": sha256_file(qdq), "fp32_source": sha256_file(str(source)), "fp32_target": sha256_file(str(exported.path)), "batch": b}

        def write(tmp: Path, target: str = str(exported.path)) -> None:
            copy = rebatch_like(onnx.load(str(qdq)), onnx.load(str(source)), onnx.load(target))
            onnx.save(copy, str(tmp / QDQ_COPY))

        folder, _ = cached_or_built(record.model, "qdq-batch", artifact_key(**inputs), inputs, write)
        base.infos.append(inspect_onnx(folder / QDQ_COPY))
        base.source_onnx.append(str(folder / QDQ_COPY))
    events.info(f"one calibrated graph: {qdq.name} copied to batch {', '.join(map(str, ask.batches or []))} with its Q/DQ scales and weights unchanged")
    return base

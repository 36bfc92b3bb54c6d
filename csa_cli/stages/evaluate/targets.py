"""What `csa eval` evaluates and with which preprocessing (`resolve_target`, `open_target`).

A zoo MODEL (torch, or exported for onnxruntime), a weights file with --model, an ONNX / QDQ ONNX
file, an engine, or a checkpoint / onnx / quantized / engine record. The zoo entry named by the
model (or the record's "model") gives the preprocessing; an artifact's calibration images are
found here so that the loop can leave them out.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from csa_cli import events
from csa_cli.errors import CsaError, UsageError
from csa_cli.graph.onnx_file import read_onnx_info
from csa_cli.manifest import get_entry
from csa_cli.records import Record
from csa_cli.tensorrt.runtime import ENGINE_SUFFIXES

if TYPE_CHECKING:
    from csa_cli.backends.base import Backend
    from csa_cli.manifest import ModelEntry, Preprocessing


ONNX_SUFFIXES = (".onnx",)


WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


@dataclass
class EvalTarget:
    """A resolved eval input: what runs, on which backend, with which preprocessing."""

    kind: str  # "torch" | "onnx" | "engine"
    model: str
    preprocessing: Preprocessing
    backend: str
    artifact: Any = None  # nn.Module (torch) or a path
    entry: ModelEntry | None = None
    weights: str | None = None
    weights_hash: str | None = None
    precision: str | None = None  # None: the backend decides (fp16 on CUDA for torch, int8 for a QDQ graph)
    source: str | None = None
    calib_files: list[str] = field(default_factory=list)
    num_classes: int | None = None
    placement: str | None = None  # a Q/DQ graph's placement (tensorrt | onnxruntime): two quantizations of one model, told apart


class _CalibList(BaseModel):
    """calib_files.json as the quantize stage writes it (only the paths matter here)."""

    model_config = ConfigDict(extra="ignore")

    files: list[str | dict[str, Any]] = Field(default_factory=list)


def _paths_from(value: Any) -> list[str]:
    out: list[str] = []
    for item in value or []:
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, dict) and isinstance(item.get("path"), str):
            out.append(item["path"])
    return out


def read_calib_list(path: Path) -> list[str]:
    """The file list of calib_files.json ({"files": [...]}, or a bare JSON list) or a text file (one path a line)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CsaError(f"cannot read the calibration file list {path} ({exc.strerror})") from None
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CsaError(f"{path} is not valid JSON ({exc.msg})") from None
        if isinstance(data, list):
            return _paths_from(data)
        return _paths_from(_CalibList.model_validate(data).files)
    return [line.strip() for line in text.splitlines() if line.strip()]


def calibration_files(record: Record | None, artifact_path: Path | None) -> list[str]:
    """Calibration images of an artifact: the record's "calib_files" (a list, or a path to a list), else calib_files.json beside the model."""
    value = record.field("calib_files") if record is not None else None
    if isinstance(value, list):
        return _paths_from(value)
    if isinstance(value, str) and value:
        return read_calib_list(Path(value))
    listed = record.field("calib_files_list") if record is not None else None
    if isinstance(listed, str) and Path(listed).is_file():
        return read_calib_list(Path(listed))
    if artifact_path is not None:
        for name in ("calib_files.json", "calib_files.txt"):
            beside = artifact_path.parent / name
            if beside.is_file():
                return read_calib_list(beside)
    return []


class _Sidecar(BaseModel):
    """What csa's own artifact folders say about a graph (artifact.json, export.json, summary.json): only these fields matter here."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    weights: str | None = None
    weights_hash: str | None = None
    precision: str | None = None
    placement: str | None = None


def read_sidecar(path: Path) -> _Sidecar:
    """Facts about an ONNX / engine file made by csa, from the JSON files of its artifact folder (empty when there are none)."""
    merged: dict[str, Any] = {}
    for name in ("artifact.json", "export.json", "summary.json"):
        side = path.parent / name
        if not side.is_file():
            continue
        try:
            data = json.loads(side.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(data, dict):
            inputs = data.get("inputs") if isinstance(data.get("inputs"), dict) else {}
            for key in ("model", "weights", "weights_hash", "precision", "placement"):
                value = data.get(key, inputs.get(key))
                if isinstance(value, str) and key not in merged:
                    merged[key] = value
    return _Sidecar.model_validate(merged)


def _file_target(path: Path, kind: str, model: str | None, backend: str | None, manifest: Any, record: Record | None = None) -> EvalTarget:
    """An ONNX or engine file: the zoo entry named by --model / the record gives the preprocessing."""
    from csa_cli.data.preprocess import default_preprocessing

    if not path.is_file():
        raise CsaError(f"file not found: {path}", hint="check the path (a record's file may have been removed: rerun its stage)")
    default_backend = "onnxruntime" if kind == "onnx" else "tensorrt"
    chosen = backend or default_backend
    if kind == "onnx" and chosen == "torch":
        raise UsageError(
            "an ONNX file runs on onnxruntime (or, built into an engine, on tensorrt), not torch", hint="drop --backend or use --backend onnxruntime"
        )
    if kind == "onnx" and chosen == "tensorrt":
        raise UsageError("--backend tensorrt runs an engine, not an ONNX file", hint="build one with `csa engine` and evaluate the engine")
    if kind == "engine" and chosen != "tensorrt":
        raise UsageError(f"an engine runs on tensorrt, not {chosen}", hint="drop --backend, or evaluate the ONNX with --backend onnxruntime")
    side = read_sidecar(path)
    model = model or (record.model if record is not None else None) or side.model
    given_weights = (record.weights if record is not None else None) or side.weights
    entry = get_entry(model, manifest) if model else None
    if entry is not None:
        from csa_cli.stages.pull.weights import entry_for_weights

        entry = entry_for_weights(entry, given_weights)  # exported from a trained checkpoint: its preprocessing
    hw = read_onnx_info(path).input_hw if kind == "onnx" else None
    if entry is not None:
        pre = entry.preprocessing
        if hw is not None and tuple(pre.input_size) != hw:
            # exported at another size (as calibration does, keep the entry's crop_pct / filter / mean / std at the graph's size)
            pre = pre.model_copy(update={"input_size": hw})
            events.info(f"{path.name} takes {hw[0]}x{hw[1]} images: {entry.name}'s preprocessing at that size")
    else:
        pre = default_preprocessing(hw or (224, 224))
        events.warn(
            f"{path.name} names no zoo model: preprocessing falls back to timm's defaults at the graph's input size "
            f"({pre.input_size[0]}x{pre.input_size[1]}, crop_pct 0.875, bicubic, ImageNet mean/std); pass --model NAME for the model's own"
        )
    precision = record.field("precision") if record is not None and record.kind in ("quantized", "engine") else side.precision
    placement = (record.field("placement") if record is not None and record.kind == "quantized" else None) or side.placement
    return EvalTarget(
        kind=kind,
        model=entry.name if entry else (model or path.stem),
        preprocessing=pre,
        backend=chosen,
        artifact=path,
        entry=entry,
        weights=given_weights,
        weights_hash=(record.field("weights_hash") if record is not None else None) or side.weights_hash,
        precision=precision,
        source=str(path),
        calib_files=calibration_files(record, path),
        num_classes=read_onnx_info(path).num_classes if kind == "onnx" else None,  # the graph's head, not the entry's: a fine-tuned export may differ
        placement=placement if kind == "onnx" and isinstance(placement, str) else None,
    )


def resolve_target(
    source: str | Record | None,
    *,
    model: str | None = None,
    backend: str | None = None,
    weights: str | None = None,
    manifest: str | os.PathLike[str] | None = None,
) -> EvalTarget:
    """MODEL | weights file (+ --model) | ONNX | engine | record -> what to evaluate (models not loaded yet)."""
    target = _resolve(source, model=model, backend=backend, weights=weights, manifest=manifest)
    if weights is not None and target.kind != "torch" and weights != target.weights:
        events.warn(f"--weights {weights} is ignored: {Path(str(target.artifact)).name} carries its own weights")
    return target


def _resolve(
    source: str | Record | None,
    *,
    model: str | None = None,
    backend: str | None = None,
    weights: str | None = None,
    manifest: str | os.PathLike[str] | None = None,
) -> EvalTarget:
    """resolve_target without the --weights check (records given as .json files recurse here)."""
    if backend is not None and backend not in ("torch", "onnxruntime", "tensorrt"):
        raise UsageError(f"unknown backend '{backend}'", hint="use torch, onnxruntime or tensorrt")
    if isinstance(source, Record):
        record = source
        kind = record.kind
        path = Path(record.path) if record.path else None
        name = model or record.model
        if kind == "checkpoint":
            if not name:
                raise CsaError("the checkpoint record names no model")
            return _model_target(name, backend, weights or record.weights, manifest)
        if kind in ("onnx", "quantized", "engine"):
            if path is None:
                raise CsaError(f"the {kind} record has no path")
            return _file_target(path, "engine" if kind == "engine" else "onnx", name, backend, manifest, record)
        if kind == "bundle":
            raise UsageError("a bundle is built and validated on the device", hint="run its validate.sh there, or evaluate the ONNX it came from")
        raise UsageError(f"csa eval takes a model, checkpoint, onnx, quantized or engine record, not a {kind} record")
    if source is None:
        if model is None:
            raise UsageError("nothing to evaluate: give a MODEL, an ONNX file or an engine, or pipe a record")
        source = model
    path = Path(source).expanduser()
    if _is_alias(source, manifest):  # a Hub repo id (it has a "/") naming a zoo model, not a file
        return _model_target(source, backend, weights, manifest)
    if path.is_dir():
        raise UsageError(f"{path} is a folder", hint="give a zoo MODEL, an ONNX file, an engine or a record (the dataset goes to --dataset)")
    suffix = path.suffix.lower()
    if path.exists() or suffix in (*ONNX_SUFFIXES, *ENGINE_SUFFIXES, *WEIGHT_SUFFIXES, ".json") or "/" in source:
        if suffix == ".json":
            from csa_cli.records import load_record_file

            if not path.is_file():
                raise CsaError(f"file not found: {path}")
            return _resolve(load_record_file(path), model=model, backend=backend, weights=weights, manifest=manifest)
        if suffix in ONNX_SUFFIXES:
            return _file_target(path, "onnx", model, backend, manifest)
        if suffix in ENGINE_SUFFIXES:
            return _file_target(path, "engine", model, backend, manifest)
        if suffix in WEIGHT_SUFFIXES:
            if not path.is_file():
                raise CsaError(f"file not found: {path}")
            if model is None:
                raise UsageError(f"{path.name} holds weights only: say which model they belong to", hint=f"csa eval --model NAME --weights {path} ...")
            return _model_target(model, backend, str(path), manifest)
        if not path.exists():
            raise CsaError(f"file not found: {path}", hint="check the path")
        raise UsageError(f"{path} is not a model file csa can evaluate", hint="give a zoo MODEL, an .onnx file, an engine (.engine/.plan) or a record (.json)")
    if model is not None and model != source:
        raise UsageError(f"two models given: {source} and --model {model}")
    return _model_target(source, backend, weights, manifest)


def _is_alias(source: str, manifest: Any) -> bool:
    from csa_cli.manifest import load_manifest

    return not Path(source).expanduser().exists() and any(source in e.aliases() for e in load_manifest(manifest).models.values())


def _model_target(model: str, backend: str | None, weights: str | None, manifest: Any) -> EvalTarget:
    from csa_cli.stages.pull.weights import entry_for_weights

    entry = entry_for_weights(get_entry(model, manifest), weights)  # a trained checkpoint's classes and preprocessing
    chosen = backend or "torch"
    if chosen == "tensorrt":
        raise UsageError(f"--backend tensorrt runs an engine: build one for {model} first", hint=f"csa engine {model} --target local, then csa eval ENGINE")
    return EvalTarget(
        kind="torch", model=entry.name, preprocessing=entry.preprocessing, backend=chosen, entry=entry, weights=weights, num_classes=entry.num_classes
    )


def load_torch_model(target: EvalTarget, manifest: Any) -> None:
    """Fill target.artifact with the nn.Module (weights via core.weights.load_model)."""
    from csa_cli.stages.pull.weights import load_model

    loaded = load_model(target.model, target.weights, manifest=manifest)
    target.artifact = loaded.module
    target.weights = loaded.weights
    target.weights_hash = loaded.weights_hash
    target.source = getattr(loaded, "source_path", None)  # the weights file (None for random weights)


def export_for_onnxruntime(target: EvalTarget, manifest: Any) -> None:
    """A zoo model evaluated on onnxruntime: export it once (cached under CSA_HOME by the export stage)."""
    from csa_cli.stages.export.stage import export_stage

    record = export_stage(target.model, weights=target.weights, batch=None, dynamic_batch=True, manifest=manifest)
    target.kind = "onnx"
    target.artifact = Path(str(record.path))
    target.source = str(record.path)
    target.weights = record.weights
    target.weights_hash = record.field("weights_hash")


def open_target(
    target: EvalTarget, *, device: str = "auto", precision: str | None = None, threads: int | None = None, manifest: Any = None
) -> tuple[Backend, EvalTarget]:
    """Load / export what is needed and open the backend."""
    from csa_cli.backends import open_backend

    ort_device = "cpu" if device == "auto" else device
    if target.backend == "onnxruntime" and precision == "fp16":  # refused with its reason before anything is exported or loaded
        from csa_cli.backends.onnxruntime_backend import onnxruntime_precision

        quantized = target.kind == "onnx" and read_onnx_info(Path(str(target.artifact))).has_qdq
        onnxruntime_precision(precision, quantized=quantized, device=ort_device, name=Path(str(target.artifact or target.model)).name)
    if precision is not None and target.precision is not None and precision != target.precision and target.kind != "torch":
        raise UsageError(f"{Path(str(target.artifact)).name} is a {target.precision} model; --precision {precision} cannot change that")
    if target.kind == "torch":
        if target.backend == "onnxruntime":
            if precision not in (None, "fp32"):
                raise UsageError(f"onnxruntime runs the exported model in fp32; for {precision} quantize it first (csa quantize)")
            export_for_onnxruntime(target, manifest)
        else:
            load_torch_model(target, manifest)
    if target.backend == "torch":
        from csa_cli.backends.torch_backend import resolve_torch_device

        dev = resolve_torch_device(device)
        prec = precision or ("fp16" if dev.startswith("cuda") else "fp32")
        backend = open_backend("torch", target.artifact, device=dev, precision=prec, threads=threads)
    elif target.backend == "onnxruntime":
        backend = open_backend("onnxruntime", target.artifact, device=ort_device, precision=precision or target.precision or "fp32", threads=threads)
    else:
        backend = open_backend("tensorrt", target.artifact, device="cuda:0" if device in ("auto", "cpu") else device, precision=target.precision or "fp32")
    target.precision = backend.precision
    return backend, target

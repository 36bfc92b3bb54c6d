"""The eval core: top-1 / top-5 of a model, an ONNX or an engine on a labelled dataset.

- What is evaluated (`resolve_target`): a zoo MODEL (torch, or exported for onnxruntime), a weights
  file with --model, an ONNX / QDQ ONNX file, an engine, or a checkpoint / onnx / quantized / engine
  record. The zoo entry named by the model (or the record's "model") gives the preprocessing.
- Data: data/datasets (ImageNet val or an ImageFolder), preprocessed by data/preprocess in
  DataLoader workers (pinned memory on CUDA). Unreadable images are counted and left out of the
  metrics; images listed as the artifact's calibration images are left out and counted.
- Result: an "eval" record (top1/top5 in percent, images, throughput, backend, precision, model,
  weights hash, dataset fingerprint, ...) stored with artifacts.store_result("eval", ...).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from csa_cli import events
from csa_cli.errors import CheckFailed, CsaError, UsageError
from csa_cli.graph.onnx_file import read_onnx_info
from csa_cli.manifest import get_entry
from csa_cli.records import Record, make_record

if TYPE_CHECKING:
    import torch

    from csa_cli.backends.base import Backend
    from csa_cli.data.datasets import LabeledDataset
    from csa_cli.data.preprocess import EvalTransform
    from csa_cli.manifest import ModelEntry, Preprocessing

ONNX_SUFFIXES = (".onnx",)
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
TOPK = 5


# ---------------------------------------------------------------------------------------------
# what is evaluated


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
            for key in ("model", "weights", "weights_hash", "precision"):
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
    entry = get_entry(model, manifest) if model else None
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
    return EvalTarget(
        kind=kind,
        model=entry.name if entry else (model or path.stem),
        preprocessing=pre,
        backend=chosen,
        artifact=path,
        entry=entry,
        weights=(record.weights if record is not None else None) or side.weights,
        weights_hash=(record.field("weights_hash") if record is not None else None) or side.weights_hash,
        precision=precision,
        source=str(path),
        calib_files=calibration_files(record, path),
        num_classes=read_onnx_info(path).num_classes if kind == "onnx" else None,  # the graph's head, not the entry's: a fine-tuned export may differ
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
            raise CsaError("a bundle is built and validated on the device", hint="run its validate.sh there, or evaluate the ONNX it came from")
        raise CsaError(f"csa eval takes a model, checkpoint, onnx, quantized or engine record, not a {kind} record")
    if source is None:
        if model is None:
            raise UsageError("nothing to evaluate: give a MODEL, an ONNX file or an engine, or pipe a record")
        source = model
    path = Path(source).expanduser()
    if path.is_dir():
        raise CsaError(f"{path} is a folder", hint="give a zoo MODEL, an ONNX file, an engine or a record (the dataset goes to --dataset)")
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
        raise CsaError(f"{path} is not a model file csa can evaluate", hint="give a zoo MODEL, an .onnx file, an engine (.engine/.plan) or a record (.json)")
    if model is not None and model != source:
        raise UsageError(f"two models given: {source} and --model {model}")
    return _model_target(source, backend, weights, manifest)


def _model_target(model: str, backend: str | None, weights: str | None, manifest: Any) -> EvalTarget:
    entry = get_entry(model, manifest)
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
        backend = open_backend(
            "onnxruntime", target.artifact, device="cpu" if device == "auto" else device, precision=precision or target.precision or "fp32", threads=threads
        )
    else:
        backend = open_backend("tensorrt", target.artifact, device="cuda:0" if device in ("auto", "cpu") else device, precision=target.precision or "fp32")
    target.precision = backend.precision
    return backend, target


# ---------------------------------------------------------------------------------------------
# the loop


class _ImageList:
    """A map-style dataset for torch's DataLoader (no torch import here: it is picklable as is)."""

    def __init__(self, samples: Sequence[tuple[str, int]], transform: EvalTransform) -> None:
        self.samples = list(samples)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, bool]:
        import torch
        from PIL import Image

        path, label = self.samples[index]
        try:
            with Image.open(path) as img:
                img.load()
                return self.transform(img), label, True
        except Exception:  # a truncated or non-image file: counted by the caller, not fatal
            h, w = self.transform.input_size
            return torch.zeros(3, h, w), label, False


class ImageResult(BaseModel):
    """One line of --predictions: an evaluated image, its label and its top-5 class indices."""

    image: str
    label: int
    top: list[int]


class EvalMetrics(BaseModel):
    """What the loop measured."""

    top1: float = Field(description="percent of evaluated images whose top prediction is the label")
    top5: float
    top1_correct: int
    top5_correct: int
    images: int = Field(description="images evaluated (readable, not calibration images)")
    unreadable: int
    unreadable_files: list[str] = Field(default_factory=list, description="the first few")
    excluded_calibration: int
    num_outputs: int
    seconds: float
    throughput: float = Field(description="images/s end to end (decode + preprocess + inference)")
    model_throughput: float = Field(description="images/s inside the backend alone")


def default_workers() -> int:
    return min(4, os.cpu_count() or 1)


def _check_head(num_outputs: int, ds: LabeledDataset, model: str) -> None:
    info = ds.info
    if num_outputs == info.num_classes:
        return
    if info.label_space == "imagenet-1k":
        raise CsaError(
            f"{model} has {num_outputs} outputs, but {info.name} is labelled with the 1000 ImageNet classes",
            hint="evaluate a 1000-class model, or use an ImageFolder whose folders are this head's classes",
        )
    raise CsaError(
        f"{info.name} has {info.num_classes} class folders, but {model} has {num_outputs} outputs",
        hint="the folders (sorted by name) must be the head's classes, one each; or name them by ImageNet WordNet id",
    )


def run_eval(
    backend: Backend,
    ds: LabeledDataset,
    transform: EvalTransform,
    *,
    model: str,
    batch_size: int = 32,
    workers: int | None = None,
    exclude: Sequence[str] = (),
    progress: bool = True,
    predictions: list[ImageResult] | None = None,
) -> EvalMetrics:
    """Top-1/top-5 of `backend` on `ds` (its samples as selected), leaving out the files in `exclude`.

    `predictions`, when given, is filled with each evaluated image's label and top-5 classes.
    """
    import numpy as np
    import torch
    from torch.utils.data import DataLoader

    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {batch_size}")
    workers = default_workers() if workers is None else workers
    if workers < 0:
        raise UsageError(f"--workers must be 0 or more, got {workers}")
    root = Path(ds.info.root)
    excluded_keys = {os.path.normpath(p) for p in exclude}
    samples: list[tuple[str, int]] = []
    excluded = 0
    for path, label in ds.samples:
        # calibration lists hold resolved absolute paths; a relative entry is relative to the dataset root
        if excluded_keys and (os.path.normpath(os.path.realpath(path)) in excluded_keys or os.path.normpath(os.path.relpath(path, root)) in excluded_keys):
            excluded += 1
            continue
        samples.append((path, label))
    if not samples:
        raise CsaError(
            f"no images left to evaluate: all {len(ds.samples)} are calibration images of this model", hint="evaluate on other images (--dataset / --limit)"
        )

    on_cuda = str(getattr(backend, "device", "cpu")).startswith("cuda")
    loader = DataLoader(
        _ImageList(samples, transform),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        pin_memory=on_cuda,
        persistent_workers=False,
        prefetch_factor=4 if workers > 0 else None,
    )
    run_tensor = getattr(backend, "run_tensor", None)
    top1 = top5 = evaluated = unreadable = 0
    unreadable_files: list[str] = []
    num_outputs = -1
    model_seconds = 0.0
    start = time.perf_counter()
    seen = 0
    with events.progress(f"eval {model} ({backend.name})", len(samples), "images") if progress else contextlib.nullcontext() as bar:
        for images, labels, ok in loader:
            t0 = time.perf_counter()
            logits = run_tensor(images) if run_tensor is not None else torch.from_numpy(np.asarray(backend.run(images.numpy())))
            model_seconds += time.perf_counter() - t0
            if num_outputs < 0:
                num_outputs = int(logits.shape[1])
                _check_head(num_outputs, ds, model)
            bad = (~ok).nonzero().flatten().tolist()
            for i in bad:
                unreadable += 1
                if len(unreadable_files) < 10:
                    unreadable_files.append(samples[seen + i][0])
            seen += len(labels)
            batch_paths = [samples[seen - len(ok) + i][0] for i in range(len(ok)) if bool(ok[i])]
            logits, labels = logits[ok], labels[ok]
            if len(labels):
                k = min(TOPK, num_outputs)
                pred = logits.float().topk(k, dim=1).indices
                if predictions is not None:
                    predictions.extend(
                        ImageResult(image=path, label=int(label), top=[int(c) for c in row])
                        for path, label, row in zip(batch_paths, labels.tolist(), pred.tolist(), strict=True)
                    )
                hits = pred == labels.view(-1, 1)
                top1 += int(hits[:, 0].sum())
                top5 += int(hits.any(dim=1).sum())
                evaluated += len(labels)
            if bar is not None:
                bar.advance(len(ok))
    seconds = time.perf_counter() - start
    if evaluated == 0:
        raise CsaError(
            f"none of the {len(samples)} images could be read (first: {unreadable_files[0] if unreadable_files else '?'})", hint="check the dataset files"
        )
    if unreadable:
        events.warn(f"{unreadable} unreadable image(s) left out (first: {unreadable_files[0]})")
    return EvalMetrics(
        top1=100.0 * top1 / evaluated,
        top5=100.0 * top5 / evaluated,
        top1_correct=top1,
        top5_correct=top5,
        images=evaluated,
        unreadable=unreadable,
        unreadable_files=unreadable_files,
        excluded_calibration=excluded,
        num_outputs=num_outputs,
        seconds=seconds,
        throughput=(evaluated + unreadable) / seconds if seconds > 0 else math.inf,
        model_throughput=(evaluated + unreadable) / model_seconds if model_seconds > 0 else math.inf,
    )


# ---------------------------------------------------------------------------------------------
# the stage


def evaluate_stage(
    source: str | Record | None,
    *,
    dataset: str,
    data_dir: str | os.PathLike[str] | None = None,
    backend: str | None = None,
    precision: str | None = None,
    limit: int | None = None,
    weights: str | None = None,
    manifest: str | os.PathLike[str] | None = None,
    model: str | None = None,
    batch_size: int = 32,
    workers: int | None = None,
    device: str = "auto",
    threads: int | None = None,
    progress: bool = True,
    store: bool = True,
    predictions_file: str | os.PathLike[str] | None = None,
) -> Record:
    """Evaluate and return the "eval" record (also stored under CSA_HOME/results/eval for `csa compare`)."""
    from csa_cli.data.datasets import resolve_dataset
    from csa_cli.data.preprocess import build_transform
    from csa_cli.store import artifact_key, store_result

    if limit is not None and limit < 1:
        raise UsageError(f"--limit must be at least 1, got {limit}")
    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {batch_size}")
    target = resolve_target(source, model=model, backend=backend, weights=weights, manifest=manifest)
    ds = resolve_dataset(dataset, data_dir, limit=limit)  # before loading the model: a bad dataset fails fast
    for warning in ds.info.warnings:
        events.warn(f"{ds.info.name}: {warning}")
    if target.num_classes is not None:
        _check_head(target.num_classes, ds, target.model)
    engine, target = open_target(target, device=device, precision=precision, threads=threads, manifest=manifest)
    transform = build_transform(target.preprocessing)
    events.info(f"eval {target.model} on {ds.info.name}: {len(ds)} images, {engine.name} {engine.precision}, {transform!r}")
    per_image: list[ImageResult] | None = [] if predictions_file is not None else None
    metrics = run_eval(
        engine, ds, transform, model=target.model, batch_size=batch_size, workers=workers, exclude=target.calib_files, progress=progress, predictions=per_image
    )
    if predictions_file is not None and per_image is not None:
        from csa_cli.paths import atomic_write_text

        atomic_write_text(predictions_file, "".join(r.model_dump_json() + "\n" for r in per_image))
    if metrics.excluded_calibration:
        events.info(f"{metrics.excluded_calibration} calibration image(s) of this model left out")
    backend_info = engine.describe()
    fields: dict[str, Any] = {
        "model": target.model,
        "path": target.source,
        "backend": engine.name,
        "precision": engine.precision,
        "device": backend_info.get("device"),
        "top1": round(metrics.top1, 4),
        "top5": round(metrics.top5, 4),
        "images": metrics.images,
        "top1_correct": metrics.top1_correct,
        "top5_correct": metrics.top5_correct,
        "unreadable": metrics.unreadable,
        "unreadable_files": metrics.unreadable_files,
        "excluded_calibration": metrics.excluded_calibration,
        "throughput": round(metrics.throughput, 2),
        "model_throughput": round(metrics.model_throughput, 2),
        "seconds": round(metrics.seconds, 3),
        "batch_size": batch_size,
        "workers": default_workers() if workers is None else workers,
        "weights": target.weights,
        "weights_hash": target.weights_hash,
        "dataset": ds.info.name,
        "dataset_root": ds.info.root,
        "dataset_layout": ds.info.layout,
        "dataset_fingerprint": ds.info.fingerprint,
        "limit": limit,
        "num_classes": metrics.num_outputs,
        "preprocessing": transform.describe(),
        "backend_info": backend_info,
    }
    key = artifact_key(
        model=target.model,
        backend=engine.name,
        precision=engine.precision,
        weights=target.weights,
        weights_hash=target.weights_hash,
        source=target.source,
        dataset=ds.info.fingerprint,
        excluded=metrics.excluded_calibration,
    )
    fields["result_key"] = key
    if predictions_file is not None:
        fields["predictions"] = str(Path(predictions_file))
    record = make_record("eval", **fields)
    if store:
        stored = store_result("eval", target.model, key, record.model_dump(mode="json", by_alias=True, exclude_none=True))
        record = record.with_fields(result=str(stored))
    return record


def enforce_min_top1(record: Record, min_top1: float | None) -> None:
    """--min-top1 X (percent): CheckFailed (exit 3) when the record's top-1 is below it."""
    if min_top1 is None:
        return
    if not 0 <= min_top1 <= 100:
        raise UsageError(f"--min-top1 is a percentage (0-100), got {min_top1}")
    top1 = float(record.field("top1"))
    if top1 < min_top1:
        raise CheckFailed(f"top-1 {top1:.2f}% of {record.model} is under --min-top1 {min_top1:g}%", hint="the record above has the details")


# ---------------------------------------------------------------------------------------------
# predict


class Prediction(BaseModel):
    index: int
    synset: str | None = None
    name: str
    probability: float


class ImagePredictions(BaseModel):
    image: str
    top: list[Prediction]


def predict(
    source: str | Record | None,
    images: Sequence[str | os.PathLike[str]],
    *,
    model: str | None = None,
    backend: str | None = None,
    weights: str | None = None,
    manifest: str | os.PathLike[str] | None = None,
    device: str = "auto",
    precision: str | None = None,
    topk: int = TOPK,
) -> tuple[list[ImagePredictions], EvalTarget, dict[str, Any]]:
    """Top-k classes with softmax probabilities for each image, preprocessed as for eval."""
    import numpy as np

    from csa_cli.data import imagenet
    from csa_cli.data.preprocess import build_transform, open_image

    if not images:
        raise UsageError("no images given", hint="csa predict MODEL IMAGE [IMAGE...]")
    if topk < 1:
        raise UsageError(f"--top must be at least 1, got {topk}")
    target = resolve_target(source, model=model, backend=backend, weights=weights, manifest=manifest)
    transform = build_transform(target.preprocessing)
    import torch

    batch = torch.stack([transform(open_image(p)) for p in images])  # unreadable files fail here, before loading the model
    engine, target = open_target(target, device=device, precision=precision, manifest=manifest)
    logits = np.asarray(engine.run(batch.numpy()), dtype=np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    classes = probs.shape[1]
    names = imagenet.class_names() if classes == imagenet.NUM_CLASSES else None
    results = []
    for path, row in zip(images, probs, strict=True):
        order = np.argsort(-row, kind="stable")[: min(topk, classes)]
        top = [
            Prediction(
                index=int(i),
                synset=imagenet.synsets()[i] if names else None,
                name=names[i] if names else f"class {int(i)}",
                probability=float(row[i]),
            )
            for i in order
        ]
        results.append(ImagePredictions(image=str(path), top=top))
    return results, target, engine.describe()

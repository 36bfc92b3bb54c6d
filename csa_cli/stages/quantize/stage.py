"""INT8 post-training quantization for TensorRT: a QDQ ONNX, a TensorRT calibration cache, a summary.

How (docs/quantization.md has the why):
1. Calibrate: every float tensor of the FP32 graph becomes a graph output; ONNX Runtime runs the
   calibration images chunk by chunk and stages/quantize/calibration.RangeCollector folds each chunk into
   per-tensor |x| histograms, then drops it (memory is bounded by one chunk's activations).
2. Ranges: entropy (TensorRT's KL threshold search), minmax or percentile -> amax per tensor.
3. QDQ ONNX: onnxruntime.quantization.quantize_static with those ranges (handed over as its JSON
   range cache), symmetric INT8 everywhere (zero points 0), per-channel weights, Q/DQ on the
   inputs of weighted ops only (Conv, ConvTranspose, Gemm, MatMul) and not on their outputs, bias
   left in float: the placement TensorRT's explicit-quantization guide asks for.
4. Cache: scale = amax / 127 for every tensor, in TensorRT's text format (TRT-8601-EntropyCalibration2),
   for DRIVE OS TensorRT 8.6 implicit INT8 on the FP32 ONNX.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from csa_cli import events
from csa_cli.errors import CsaError, MissingBackend, UsageError
from csa_cli.graph.index import name_nodes
from csa_cli.graph.onnx_file import load_onnx, onnx_info
from csa_cli.graph.qdq import WEIGHTED_OPS, is_quantized, nonzero_zero_points
from csa_cli.measure.machine import ONNXRUNTIME_UPGRADE, installed_onnxruntime, onnxruntime_floor_problem, peak_rss_mib
from csa_cli.paths import atomic_path, atomic_write_text
from csa_cli.paths import sha256_file as file_sha256
from csa_cli.stages.quantize.calibration import (
    INT8_MAX,
    METHODS,
    TRT_ALGORITHM,
    TRT_VERSION,
    CalibFile,
    CalibrationCache,
    scales_from_amax,
    write_calibration_cache,
)
from csa_cli.stages.quantize.collect import DEFAULT_BATCH, collect_ranges, float_tensors
from csa_cli.stages.quantize.policy import nodes_kept_fp
from csa_cli.stages.quantize.qdq_writer import ORT_PLACEMENT_REVISION, PLACEMENTS, write_qdq
from csa_cli.stages.quantize.records import CalibFileList, QuantizeResult, QuantizeSummary, TensorRange, Timings

if TYPE_CHECKING:
    from csa_cli.manifest import Preprocessing
    from csa_cli.records import Record

Precision = Literal["int8", "mixed"]
PRECISIONS: tuple[str, ...] = ("int8", "mixed")


QDQ_FILE = "model.qdq.onnx"
CACHE_FILE = "calib.cache"
SUMMARY_FILE = "summary.json"
FILES_FILE = "calib_files.json"


# ---------------------------------------------------------------------------------------------
# graph helpers


# ---------------------------------------------------------------------------------------------
# which nodes stay in higher precision


# ---------------------------------------------------------------------------------------------
# quantization


def _validate_options(method: str, precision: str, placement: str = "tensorrt") -> None:
    if placement not in PLACEMENTS:
        raise UsageError(f"unknown placement {placement!r}", hint=f"use --placement {' | '.join(PLACEMENTS)}")
    if method not in METHODS:
        raise UsageError(f"unknown calibration method {method!r}", hint=f"use --method {' | '.join(METHODS)}")
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}", hint=f"use --precision {' | '.join(PRECISIONS)}")
    too_old = onnxruntime_floor_problem(installed_onnxruntime())
    if too_old:
        raise MissingBackend(too_old, hint=ONNXRUNTIME_UPGRADE)


def quantize_onnx(
    source: Path,
    out_dir: Path,
    batches: Iterable[np.ndarray],
    *,
    method: str = "entropy",
    precision: str = "mixed",
    keep_fp: Sequence[str] = (),
    model_name: str | None = None,
    images_requested: int | None = None,
    seed: int | None = None,
    batch_size: int = DEFAULT_BATCH,
    calib_dataset: str | None = None,
    threads: int | None = None,
    placement: str = "tensorrt",
) -> QuantizeResult:
    """Calibrate `source` (an FP32 ONNX) on `batches` and write the QDQ ONNX, cache and summary into `out_dir`.

    Long because its steps share the graph, the ranges and the timings that summary.json reports;
    each step is one call (collect_ranges, write_qdq, write_calibration_cache).
    """
    import onnx
    import onnxruntime

    _validate_options(method, precision, placement)
    started = time.perf_counter()
    model = load_onnx(source)
    if is_quantized(model):
        raise CsaError(f"{source} is already quantized (it has Q/DQ nodes)", hint="give the FP32 ONNX written by `csa export`")
    model = name_nodes(onnx.shape_inference.infer_shapes(model))
    onnx_info(model).require_nchw()
    kept = nodes_kept_fp(model, precision, keep_fp, placement)
    names = float_tensors(model)

    collector, images = collect_ranges(model, batches, names, pool=batch_size, threads=threads)
    calibrated = time.perf_counter()
    amax = collector.amax(method)
    # a tensor that was 0 on every image still needs a usable (non-zero) scale
    amax = {k: (v if v > 0 else 1e-6) for k, v in amax.items()}
    ranged = time.perf_counter()

    out_dir.mkdir(parents=True, exist_ok=True)
    qdq_path, cache_path, summary_path = out_dir / QDQ_FILE, out_dir / CACHE_FILE, out_dir / SUMMARY_FILE
    with tempfile.TemporaryDirectory(prefix=".quantize-", dir=out_dir) as tmp:
        nonnegative = {k for k, h in collector.histograms.items() if h.samples and h.min >= 0}
        write_qdq(model, amax, [k.name for k in kept], qdq_path, Path(tmp), placement=placement, nonnegative=nonnegative)  # type: ignore[arg-type]
    qdq_model = onnx.load(str(qdq_path))
    bad_zero_points = nonzero_zero_points(qdq_model)
    if bad_zero_points and placement == "tensorrt":  # onnxruntime's UINT8 activations carry zero points by design
        raise CsaError(f"{bad_zero_points} Q/DQ zero points are not 0: TensorRT would refuse the graph")

    # Implicit INT8 (TensorRT 8.6): a layer whose tensor has no scale falls back to FP16/FP32, so
    # the tensors that kept nodes produce are left out of the cache.
    kept_names = {k.name for k in kept}
    kept_outputs = {out for n in model.graph.node if n.name in kept_names for out in n.output}
    scales = scales_from_amax({k: v for k, v in amax.items() if k not in kept_outputs})
    cache = CalibrationCache(version=TRT_VERSION, algorithm=TRT_ALGORITHM, scales=scales)
    write_calibration_cache(cache_path, cache)
    done = time.perf_counter()

    weighted = [n for n in model.graph.node if n.op_type in WEIGHTED_OPS]
    quantized = [n.name for n in weighted if n.name not in kept_names]
    hist = collector.histograms
    summary = QuantizeSummary(
        model=model_name,
        method=method,
        precision=precision,
        placement=placement,
        images=images,
        images_requested=images_requested if images_requested is not None else images,
        seed=seed,
        batch_size=batch_size,
        calib_dataset=calib_dataset,
        source_onnx=str(Path(source).resolve()),
        source_sha256=file_sha256(source),
        onnxruntime=onnxruntime.__version__,
        cache_header=cache.header,
        weighted_nodes=len(weighted),
        quantized_nodes=quantized,
        kept_fp=kept,
        zero_points_nonzero=bad_zero_points,
        ranges={k: TensorRange(min=hist[k].min, max=hist[k].max, amax=v, scale=float(np.float32(v / INT8_MAX))) for k, v in amax.items() if hist[k].samples},
        cache_tensors=len(scales),
        time=Timings(calibration_s=calibrated - started, ranges_s=ranged - calibrated, quantization_s=done - ranged, total_s=done - started),
        peak_rss_mib=peak_rss_mib(),
    )
    atomic_write_text(summary_path, summary.model_dump_json(by_alias=True, indent=2))
    return QuantizeResult(qdq_path=qdq_path, cache_path=cache_path, summary_path=summary_path, summary=summary)


# ---------------------------------------------------------------------------------------------
# the stage: input resolution, calibration set, artifact, record


def _files_key(files: Sequence[CalibFile]) -> str:
    digest = hashlib.sha256()
    for f in files:
        try:
            stat = Path(f.path).stat()
            digest.update(f"{f.path}\0{f.label}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{f.path}\0{f.label}\0missing\n".encode())
    return digest.hexdigest()[:16]


def preprocessing_for(model: str | None, onnx_hw: tuple[int, int] | None, manifest: str | Path | None, weights: str | None = None) -> Preprocessing:
    """The model's eval preprocessing (a trained checkpoint's, else the manifest's), sized to the ONNX input; timm defaults for a bare ONNX."""
    from csa_cli.data.preprocess import default_preprocessing

    if model is not None:
        from csa_cli.manifest import load_manifest
        from csa_cli.stages.pull.weights import entry_for_weights

        zoo = load_manifest(manifest)
        if model in zoo.models:
            pre = entry_for_weights(zoo.models[model], weights).preprocessing
            if onnx_hw is not None and tuple(pre.input_size) != onnx_hw:
                pre = pre.model_copy(update={"input_size": onnx_hw})
            return pre
    size = onnx_hw or (224, 224)
    events.warn(f"no zoo model named for this ONNX: calibrating with timm's default preprocessing at {size[0]}x{size[1]} (name one with --model)")
    return default_preprocessing(size)


def _resolve_source(source: Record | str | Path, *, weights: str | None, manifest: str | Path | None) -> tuple[Path, str | None, str | None, dict[str, Any]]:
    """(FP32 ONNX path, zoo model, weights, fields carried from the input record)."""
    from csa_cli.records import Record

    if isinstance(source, Record):
        kind = source.kind
        if kind == "quantized":
            raise UsageError("the input is already quantized (a 'quantized' record)", hint="pipe the output of `csa export` or `csa check` instead")
        if kind == "checkpoint":
            from csa_cli.stages.export.stage import export_stage

            if not source.model:
                raise UsageError("the checkpoint record names no model")
            exported = export_stage(source.model, weights=source.weights or "auto", manifest=manifest)
            return Path(str(exported.path)), exported.model, exported.weights, _carried(exported)
        if kind != "onnx":
            raise UsageError(f"csa quantize takes an ONNX model, got a '{kind}' record", hint="pipe the output of `csa export` or `csa check`")
        if not source.path:
            raise CsaError("the onnx record has no path")
        return Path(source.path), source.model, source.weights or weights, _carried(source)
    text = str(source)
    path = Path(text)
    if path.exists():
        return path, None, weights, {}
    if "/" in text or path.suffix == ".onnx":
        raise CsaError(f"file not found: {text}", hint="check the path")
    from csa_cli.stages.export.stage import export_stage

    exported = export_stage(text, weights=weights or "auto", manifest=manifest)
    return Path(str(exported.path)), exported.model, exported.weights, _carried(exported)


def _carried(record: Record) -> dict[str, Any]:
    keep = ("weights_hash", "img_size", "batch", "dynamic_batch", "opset", "license")
    carried = {k: record.field(k) for k in keep if record.field(k) is not None}
    if record.field("check") is not None:
        # the verdict is about the FP32 graph (the Q/DQ graph is another one): carried as the source's, for the build to quote
        carried["source_check"] = record.field("check")
    return carried


def _selected_files(all_files: Sequence[CalibFile], count: int, seed: int, *, strict: bool) -> list[CalibFile]:
    """`count` calibration files chosen by seed; fewer than asked is an error with --strict, else a warning."""
    from csa_cli.stages.quantize.calibration import select_calibration_files

    files = select_calibration_files(all_files, count, seed)
    if len(files) < count:
        message = f"the calibration dataset has {len(files)} images, fewer than the {count} asked for"
        if strict:
            raise CsaError(message, hint="add images, lower --calib-images, or drop --strict to use them all")
        events.warn(message + ": using them all")
    return files


def quantize_stage(
    source: Record | str | Path,
    *,
    calib_dataset: str,
    data_dir: str | Path | None = None,
    calib_images: int = 500,
    method: str = "entropy",
    precision: str = "mixed",
    seed: int = 0,
    keep_fp: Sequence[str] = (),
    strict: bool = False,
    batch_size: int = DEFAULT_BATCH,
    output: str | Path | None = None,
    force: bool = False,
    model: str | None = None,
    weights: str | None = None,
    manifest: str | Path | None = None,
    placement: str = "tensorrt",
) -> Record:
    """`csa quantize`: an ONNX (path, zoo model name, or onnx/checkpoint record) -> a "quantized" record.

    The artifact lives under CSA_HOME keyed by the source ONNX's hash, the calibration files and
    every option; a second call with the same inputs reuses it.

    Long because it takes every `csa quantize` option by name and states the artifact key's inputs
    in one place; the work is in quantize_onnx, _selected_files and _quantized_record.
    """
    from csa_cli.stages.quantize.calibration import iter_calibration_batches, list_dataset
    from csa_cli.store import artifact_key, cached_or_built

    _validate_options(method, precision, placement)
    if calib_images < 1:
        raise UsageError(f"--calib-images must be at least 1, got {calib_images}")
    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {batch_size}")
    # the dataset first: a wrong folder must fail before a model is exported for nothing
    all_files, fingerprint = list_dataset(calib_dataset, Path(data_dir) if data_dir else None)

    onnx_path, zoo_model, weights, carried = _resolve_source(source, weights=weights, manifest=manifest)
    zoo_model = model or zoo_model
    proto = load_onnx(onnx_path)
    if is_quantized(proto):
        raise CsaError(f"{onnx_path} is already quantized (it has Q/DQ nodes)", hint="give the FP32 ONNX written by `csa export`")
    onnx_hw = onnx_info(proto).input_hw
    del proto
    pre = preprocessing_for(zoo_model, onnx_hw, manifest, weights)

    files = _selected_files(all_files, calib_images, seed, strict=strict)

    source_hash = file_sha256(onnx_path)
    inputs = {
        "source_sha256": source_hash,
        "calib_files": _files_key(files),
        "images": len(files),
        "method": method,
        "precision": precision,
        "keep_fp": sorted(keep_fp),
        "seed": seed,
        "batch_size": batch_size,
        "preprocessing": pre.model_dump(mode="json"),
    }
    if placement != "tensorrt":  # today's artifacts keep their keys
        inputs["placement"] = placement
        inputs["placement_revision"] = ORT_PLACEMENT_REVISION
    key = artifact_key(stage="quantize", **inputs)
    name = zoo_model or onnx_path.stem

    def calibrate(tmp: Path) -> None:
        events.info(f"calibrating {name} on {len(files)} images ({method}, {precision})")

        def counted(bar: events.Progress) -> Iterator[Any]:
            for chunk in iter_calibration_batches(files, pre, batch_size):
                yield chunk
                bar.advance(len(chunk))  # the chunk has been run when the next one is asked for

        with events.progress(f"calibrating {name}", len(files), "images") as bar:
            quantize_onnx(
                onnx_path,
                tmp,
                counted(bar),
                method=method,
                precision=precision,
                keep_fp=keep_fp,
                model_name=zoo_model,
                images_requested=calib_images,
                seed=seed,
                batch_size=batch_size,
                calib_dataset=calib_dataset,
                placement=placement,
            )
        listing = CalibFileList(dataset=calib_dataset, dataset_fingerprint=fingerprint, seed=seed, requested=calib_images, files=files)
        atomic_write_text(tmp / FILES_FILE, listing.model_dump_json(indent=2))

    folder, cached = cached_or_built(name, "quantize", key, inputs, calibrate)
    if cached:
        events.info(f"reusing the quantized model in {folder}")
    if output is not None:
        folder = _copy_out(folder, Path(output), force=force)
    return _quantized_record(folder, name, files, source_onnx=onnx_path, weights=weights, carried=carried)


def _quantized_record(folder: Path, name: str, files: Sequence[CalibFile], *, source_onnx: Path, weights: str | None, carried: dict[str, Any]) -> Record:
    """The "quantized" record of an artifact folder (its summary.json says how it was calibrated)."""
    from csa_cli.records import make_record

    summary = QuantizeSummary.model_validate_json((folder / SUMMARY_FILE).read_text())
    return make_record(
        "quantized",
        model=name,
        path=str(folder / QDQ_FILE),
        calib_cache=str(folder / CACHE_FILE),
        summary=str(folder / SUMMARY_FILE),
        calib_files=[f.path for f in files],
        calib_files_list=str(folder / FILES_FILE),
        method=summary.method,
        precision=summary.precision,
        placement=summary.placement,
        calib_dataset=summary.calib_dataset,
        source_onnx=str(Path(source_onnx).resolve()),
        weights=weights,
        images=summary.images,
        seed=summary.seed,
        kept_fp=[k.name for k in summary.kept_fp],
        artifact=str(folder),
        **carried,
    )


def _copy_out(folder: Path, target: Path, *, force: bool = False) -> Path:
    """The artifact's files copied into --output DIR (all or nothing); files already there stay unless `force`."""
    if target.exists() and not target.is_dir():
        raise UsageError(f"--output {target} exists and is not a folder")
    there = [name for name in (QDQ_FILE, CACHE_FILE, SUMMARY_FILE, FILES_FILE) if (target / name).exists()]
    if there and not force:
        raise CsaError(f"{target / there[0]} already exists", hint="choose another --output, or add --force to replace it")
    target.mkdir(parents=True, exist_ok=True)
    for name in (QDQ_FILE, CACHE_FILE, SUMMARY_FILE, FILES_FILE):
        with atomic_path(target / name) as tmp:
            shutil.copyfile(folder / name, tmp)
    return target


def summary_json(record: Record) -> dict[str, Any]:
    """The summary a quantized record points to (for renderers)."""
    return json.loads(Path(str(record.field("summary"))).read_text())

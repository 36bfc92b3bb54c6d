"""What a bundle's validate.sh checks an engine against: real images, ONNX Runtime's outputs, tolerances.

The images are the calibration set's held-out images, preprocessed as eval does (the engine stage
picks them); ONNX Runtime (CPU) runs the bundle's own ONNX on them here, and validate.sh compares
the engine's outputs on the device with those outputs: the numbers (max relative error, cosine),
top-1 agreement, and the top-1 drop against the same labels. When the engine fails, a debug copy
of the graph with the weighted layers' outputs marked as graph outputs (as Polygraphy's
`--trt-outputs mark all` does) is compared layer by layer, to show where the loss starts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from csa_cli.graph.qdq import WEIGHTED_OPS
from csa_cli.tensorrt.execution import chunks

# Pass criteria per precision, written into the bundle's data/io.json (editable there). TF32 runs
# FP32 layers by default on Ampere and later (Orin too), so even fp32 is not bit-exact. The drop is
# ONNX Runtime's top-1 minus the engine's, in percentage points, on the same images; INT8 and mixed
# are compared with the Q/DQ graph on ONNX Runtime, i.e. with the same quantized model.
TOLERANCES: dict[str, dict[str, float]] = {
    "fp32": {"max_rel_err": 1e-2, "min_cosine": 0.9999, "min_top1_agreement": 0.99, "max_top1_drop": 0.5},
    "fp16": {"max_rel_err": 5e-2, "min_cosine": 0.999, "min_top1_agreement": 0.98, "max_top1_drop": 1.0},
    "int8": {"max_rel_err": 0.25, "min_cosine": 0.98, "min_top1_agreement": 0.9, "max_top1_drop": 2.0},
    "mixed": {"max_rel_err": 0.25, "min_cosine": 0.98, "min_top1_agreement": 0.95, "max_top1_drop": 1.5},
}
DEFAULT_IMAGES = 64
DEBUG_MAX_VALUES = 1 << 20  # float32 values of intermediate references kept for the debug comparison (4 MiB)


@dataclass
class ValidationSet:
    """NCHW float32 images with their labels, and where they came from (said in the bundle README)."""

    images: np.ndarray
    labels: list[int]
    files: list[str] = field(default_factory=list)
    source: str = ""

    @property
    def real(self) -> bool:
        return bool(self.files)


def random_validation_set(chw: tuple[int, int, int], count: int, seed: int) -> ValidationSet:
    """Seeded N(0,1) inputs: numbers only, no accuracy (what a bundle gets when no dataset was given)."""
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((count, *chw), dtype=np.float32)
    return ValidationSet(images=images, labels=[], source=f"{count} random N(0,1) inputs (no dataset given: agreement with ONNX Runtime only, no accuracy)")


class OutputRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    reference: str = Field(description="raw little-endian float32, one row per validation image")
    shape: list[int] = Field(description="the reference's shape: images x the output's per-image shape")


class EngineIO(BaseModel):
    """One engine's validation: which file runs, how many chunks of images, where results go."""

    model_config = ConfigDict(extra="forbid")

    batch: int
    engine: str = Field(description="the engine trtexec runs (a loadable's validation engine)")
    input_name: str
    chunks: int
    outputs: list[OutputRef]
    inputs: str = Field(description="results/in_b<N>_<chunk>.bin, written by compare_outputs.py slice")
    results: str = Field(description="results/out_b<N>_<chunk>.json, written by trtexec --exportOutput")
    times: str
    profile: str | None = None
    layers: str | None = None
    build_log: str | None = None


class DebugTensor(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    offset: int = Field(description="first float32 of this tensor in the debug reference file")
    count: int
    shape: list[int]


class DebugIO(BaseModel):
    """The layer-by-layer comparison validate.sh runs when an engine fails."""

    model_config = ConfigDict(extra="forbid")

    batch: int
    onnx: str
    engine: str
    reference: str
    outputs: str
    tensors: list[DebugTensor]


class BundleIO(BaseModel):
    """data/io.json: what validate.sh feeds each engine and what it compares against."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = Field(default=2, alias="schema")
    model: str
    precision: str
    tolerance: dict[str, float]
    seed: int
    reference_runtime: str
    images: str = Field(description="data/images.bin: every validation image, NCHW float32")
    image_shape: list[int]
    input_format: str | None = Field(default=None, description="the engine input's trtexec I/O format; None: linear float32")
    inputs_source: str
    labels: list[int]
    image_files: list[str]
    engines: list[EngineIO]
    debug: DebugIO | None = None


def _session(model: Path | Any) -> Any:
    """An ONNX Runtime CPU session on a file or a ModelProto."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = min(4, os.cpu_count() or 1)
    opts.log_severity_level = 3
    # the optimizations `csa eval` runs ONNX Runtime with (backends/onnxruntime_backend.py): the reference is the
    # result it reports; graph outputs are kept by every optimization level, marked ones included
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    source = str(model) if isinstance(model, Path) else model.SerializeToString()
    return ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])


def reference_outputs(onnx_path: Path, input_name: str, batch: int, images: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """ONNX Runtime's outputs of a static-batch graph for every image (chunks padded as the engine's are, padding dropped)."""
    session = _session(onnx_path)
    names = [o.name for o in session.get_outputs()]
    parts: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for chunk in chunks(images.shape[0], lo=batch, hi=batch):
        feed = pad_chunk(images, chunk.start, chunk.stop, batch)
        for name, value in zip(names, session.run(names, {input_name: feed}), strict=True):
            parts[name].append(np.asarray(value, dtype=np.float32)[: chunk.rows])
    return [(n, np.concatenate(parts[n])) for n in names]


def pad_chunk(images: np.ndarray, start: int, stop: int, batch: int) -> np.ndarray:
    """Rows [start, stop) padded to `batch` by repeating them (validate.sh's slice pads alike)."""
    rows = images[start:stop]
    if rows.shape[0] == batch:
        return np.ascontiguousarray(rows)
    reps = -(-batch // rows.shape[0])
    return np.ascontiguousarray(np.concatenate([rows] * reps)[:batch])


def debug_tensors(model: Any, shapes: dict[str, list[int]], max_values: int = DEBUG_MAX_VALUES) -> list[str]:
    """Which intermediate tensors the debug graph marks: the outputs of weighted layers, in graph order.

    When their references would hold more than `max_values` floats, an even sample of them is kept
    (first and last always), so the bundle stays small while the comparison still brackets the loss.
    """
    names = [n.output[0] for n in model.graph.node if n.op_type in WEIGHTED_OPS and n.output and n.output[0] in shapes]
    sizes = [int(np.prod(shapes[n])) for n in names]
    if sum(sizes) <= max_values or len(names) <= 2:
        return names

    def spread(keep: int) -> list[int]:
        return sorted({round(i * (len(names) - 1) / (keep - 1)) for i in range(keep)})

    keep = len(names)
    while keep > 2 and sum(sizes[i] for i in spread(keep)) > max_values:
        keep -= 1
    return [names[i] for i in spread(keep)]


def write_debug_graph(onnx_path: Path, dest: Path, input_name: str, images: np.ndarray, reference: Path) -> list[DebugTensor]:
    """The graph with the weighted layers' outputs added as graph outputs, and ONNX Runtime's values of them for `images`."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(onnx_path))
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    candidates = [n.output[0] for n in model.graph.node if n.op_type in WEIGHTED_OPS and n.output]
    existing = {o.name for o in model.graph.output}
    for name in candidates:
        if name not in existing:
            probe.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    session = _session(probe)
    names = [o.name for o in session.get_outputs()]
    values = dict(zip(names, session.run(names, {input_name: images}), strict=True))
    shapes = {n: list(np.asarray(v).shape) for n, v in values.items()}
    chosen = debug_tensors(model, shapes)
    for name in chosen:
        if name not in existing:
            model.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shapes[name]))
    onnx.save(model, str(dest))
    if chosen != [n for n in candidates if n not in existing]:
        # marking an output stops ONNX Runtime fusing across it (a Q/DQ graph then rounds differently):
        # the references are the values of the graph the bundle ships, not of the probe
        session = _session(model)
        values = dict(zip(chosen, session.run(chosen, {input_name: images}), strict=True))
    tensors, offset = [], 0
    with reference.open("wb") as fh:
        for name in chosen:
            data = np.ascontiguousarray(values[name], dtype="<f4")
            fh.write(data.tobytes())
            tensors.append(DebugTensor(name=name, offset=offset, count=int(data.size), shape=list(data.shape)))
            offset += int(data.size)
    return tensors

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

import contextlib
import fnmatch
import hashlib
import json
import logging
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from csa_cli import events
from csa_cli.errors import CsaError, UsageError
from csa_cli.graph.onnx_file import load_onnx
from csa_cli.paths import atomic_path, atomic_write_text
from csa_cli.paths import sha256_file as file_sha256
from csa_cli.stages.quantize.calibration import (
    INT8_MAX,
    METHODS,
    TRT_ALGORITHM,
    TRT_VERSION,
    CalibFile,
    CalibrationCache,
    RangeCollector,
    scales_from_amax,
    write_calibration_cache,
)

if TYPE_CHECKING:
    import onnx

    from csa_cli.manifest import Preprocessing
    from csa_cli.records import Record

Precision = Literal["int8", "mixed"]
PRECISIONS: tuple[str, ...] = ("int8", "mixed")

# TensorRT's explicit-quantization guide: quantize the inputs of weighted layers, leave their
# outputs to TensorRT's fusions. Anything else (Add, Mul, Resize, pooling) runs in FP16/FP32
# unless TensorRT fuses it into an INT8 neighbour.
WEIGHTED_OPS: tuple[str, ...] = ("Conv", "ConvTranspose", "Gemm", "MatMul")
QDQ_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"}
# ops that carry a tensor along without mixing channels or positions in a way the policy cares about
PASSTHROUGH_OPS = {"Resize", "Reshape", "Transpose", "Identity", "BatchNormalization", "Flatten", "Squeeze", "Unsqueeze", "Cast"}

QDQ_FILE = "model.qdq.onnx"
CACHE_FILE = "calib.cache"
SUMMARY_FILE = "summary.json"
FILES_FILE = "calib_files.json"
DEFAULT_BATCH = 8


class TensorRange(BaseModel):
    """One calibrated tensor: observed extremes, the chosen clipping threshold and its INT8 scale."""

    min: float
    max: float
    amax: float
    scale: float


class KeptNode(BaseModel):
    """A weighted node left in higher precision, and the rule that kept it."""

    name: str
    op_type: str
    rule: str


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


# ---------------------------------------------------------------------------------------------
# graph helpers


def is_quantized(model: onnx.ModelProto) -> bool:
    return any(node.op_type in QDQ_OPS for node in model.graph.node)


def _name_nodes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Give unnamed nodes a stable name (op type and position): quantization and --keep-fp match by name."""
    seen: set[str] = {n.name for n in model.graph.node if n.name}
    for index, node in enumerate(model.graph.node):
        if not node.name:
            name = f"{node.op_type}_{index}"
            while name in seen:
                name += "_"
            node.name = name
            seen.add(name)
    return model


def graph_input(model: onnx.ModelProto) -> tuple[str, list[int | None]]:
    """The one image input (name, dims with None for symbolic ones)."""
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise CsaError(f"expected one image input, the graph has {len(inputs)} ({', '.join(i.name for i in inputs)})")
    value = inputs[0]
    dims = [int(d.dim_value) if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]
    if len(dims) != 4:
        raise CsaError(f"input '{value.name}' has {len(dims)} dimensions, expected NCHW")
    return value.name, dims


def float_tensors(model: onnx.ModelProto) -> list[str]:
    """The graph input and every float node output (graph order): what calibration measures."""
    from onnx import TensorProto

    floats = {TensorProto.FLOAT, TensorProto.FLOAT16}
    types: dict[str, int] = {}
    for value in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
        if value.type.HasField("tensor_type"):
            types[value.name] = value.type.tensor_type.elem_type
    initializers = {t.name for t in model.graph.initializer}
    name, _ = graph_input(model)
    names = [name]
    seen = {name}
    for node in model.graph.node:
        if node.op_type == "Constant":
            continue
        for out in node.output:
            if out and out not in seen and out not in initializers and types.get(out) in floats:
                names.append(out)
                seen.add(out)
    return names


def _augmented(model: onnx.ModelProto, names: Sequence[str]) -> onnx.ModelProto:
    """A copy whose outputs are all of `names` (the original outputs included)."""
    import onnx
    from onnx import TensorProto, helper

    aug = onnx.ModelProto()
    aug.CopyFrom(model)
    outputs = {o.name for o in aug.graph.output}
    types = {v.name: v.type.tensor_type.elem_type for v in [*aug.graph.value_info, *aug.graph.input]}
    for name in names:
        if name not in outputs:
            aug.graph.output.append(helper.make_tensor_value_info(name, types.get(name, TensorProto.FLOAT), None))
    return aug


def _rebatch(batches: Iterable[np.ndarray], size: int) -> Iterator[tuple[np.ndarray, int]]:
    """Batches of exactly `size` rows for a static-batch graph: (batch, real rows).

    A short last batch is padded by repeating its own images; only the real rows are counted.
    """
    pending: list[np.ndarray] = []
    count = 0
    for batch in batches:
        pending.append(batch)
        count += batch.shape[0]
        while count >= size:
            stacked = np.concatenate(pending, axis=0)
            yield stacked[:size], size
            rest = stacked[size:]
            pending, count = ([rest], rest.shape[0]) if rest.shape[0] else ([], 0)
    if count:
        stacked = np.concatenate(pending, axis=0)
        reps = int(np.ceil(size / count))
        yield np.concatenate([stacked] * reps, axis=0)[:size], count


def _flush(collector: RangeCollector, pending: list[dict[str, np.ndarray]]) -> None:
    """Histogram the pooled outputs one tensor at a time, releasing each as it is done (no 2x copy)."""
    for name in list(pending[0]):
        parts = [p.pop(name) for p in pending]
        collector.update({name: parts[0] if len(parts) == 1 else np.concatenate([a.ravel() for a in parts])})
        del parts
    pending.clear()


def collect_ranges(
    model: onnx.ModelProto, batches: Iterable[np.ndarray], names: Sequence[str], *, pool: int = DEFAULT_BATCH, threads: int | None = None
) -> tuple[RangeCollector, int]:
    """Run the calibration batches through `model` with every tensor in `names` as an output.

    Each chunk's outputs go into the histograms and are then dropped. A static-batch graph gets
    exactly its batch size per run. Returns the collector and the number of images seen.
    """
    import onnxruntime as ort

    input_name, dims = graph_input(model)
    aug = _augmented(model, names)
    options = ort.SessionOptions()
    # basic optimizations never remove a graph output, so every requested tensor stays measurable
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    if threads:
        options.intra_op_num_threads = threads
    options.log_severity_level = 3
    session = ort.InferenceSession(aug.SerializeToString(), options, providers=["CPUExecutionProvider"])
    out_names = [o.name for o in session.get_outputs()]
    collector = RangeCollector(names)
    seen = 0
    static = dims[0]
    feed: Iterable[tuple[np.ndarray, int]] = _rebatch(batches, static) if static else ((b, b.shape[0]) for b in batches)
    # Outputs of several small runs (a batch-1 graph) are pooled up to `pool` images before they
    # go into the histograms: far fewer histogram updates, memory still bounded by `pool` images.
    pending: list[dict[str, np.ndarray]] = []
    pending_rows = 0
    for batch, real in feed:
        if list(batch.shape[1:]) != [d if d is not None else batch.shape[i + 1] for i, d in enumerate(dims[1:])]:
            raise CsaError(f"calibration batch shape {list(batch.shape)} does not fit the model input {dims}", hint="preprocess to the model's input size")
        outputs = session.run(out_names, {input_name: batch})
        values = dict(zip(out_names, outputs, strict=True))
        del outputs
        if real < batch.shape[0]:
            # padded rows would count twice: keep only the real ones where the batch axis is intact
            values = {k: (v[:real] if v.ndim and v.shape[0] == batch.shape[0] else v) for k, v in values.items()}
        pending.append(values)
        pending_rows += real
        seen += real
        if pending_rows >= pool:
            _flush(collector, pending)
            pending, pending_rows = [], 0
    if pending:
        _flush(collector, pending)
    if seen == 0:
        raise CsaError("no calibration images were given")
    return collector, seen


# ---------------------------------------------------------------------------------------------
# which nodes stay in higher precision


class _Graph:
    def __init__(self, model: onnx.ModelProto) -> None:
        self.nodes = list(model.graph.node)
        self.producer = {out: n for n in self.nodes for out in n.output}
        self.consumers: dict[str, list[Any]] = {}
        for n in self.nodes:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.inputs = {i.name for i in model.graph.input}
        self.outputs = [o.name for o in model.graph.output]

    def upstream_weighted(self, tensor: str, limit: int = 8) -> Any | None:
        """The weighted node that produces `tensor`, looking through pass-through ops."""
        for _ in range(limit):
            node = self.producer.get(tensor)
            if node is None:
                return None
            if node.op_type in WEIGHTED_OPS:
                return node
            if node.op_type not in PASSTHROUGH_OPS and node.op_type not in {"Mul", "Div", "Add"}:
                return None
            tensor = node.input[0]
        return None

    def root(self, tensor: str, limit: int = 8) -> str:
        """`tensor` traced back through reshapes/transposes (so rotate(q) leads back to q)."""
        for _ in range(limit):
            node = self.producer.get(tensor)
            if node is None or node.op_type not in {"Reshape", "Transpose", "Identity", "Flatten"}:
                return tensor
            tensor = node.input[0]
        return tensor

    def downstream_weighted(self, tensor: str, limit: int = 8) -> list[Any]:
        found = []
        frontier = [tensor]
        for _ in range(limit):
            nxt = []
            for t in frontier:
                for node in self.consumers.get(t, []):
                    if node.op_type in WEIGHTED_OPS:
                        found.append(node)
                    elif node.op_type in PASSTHROUGH_OPS:
                        nxt.extend(node.output)
            frontier = nxt
        return found


def default_fp_policy(model: onnx.ModelProto) -> list[KeptNode]:
    """The documented "mixed" policy: weighted nodes that stay in FP16/FP32 (docs/quantization.md).

    One set of structural rules serves every family; each fires only where its pattern exists:
    - stem: the first weighted node on the image input (all families);
    - classifier: the weighted node that produces the logits (all families);
    - sigmoid-gate: the conv before a Sigmoid used as a gate, i.e. not swish's x*sigmoid(x) (CSA step 7);
    - attention-product: the conv producing q where q meets its own rotation, q * rotate(q) (CSA steps 3-5);
    - softmax: the MatMuls that make a Softmax's input (Q.K^T) and consume its output (attn.V) (Swin; CvT uses Einsum).
    """
    g = _Graph(model)
    kept: dict[str, KeptNode] = {}

    def keep(node: Any, rule: str) -> None:
        if node is not None and node.name not in kept:
            kept[node.name] = KeptNode(name=node.name, op_type=node.op_type, rule=rule)

    for name in g.inputs:
        for node in g.downstream_weighted(name, limit=3)[:1]:
            keep(node, "stem")
    for out in g.outputs:
        keep(g.upstream_weighted(out), "classifier")
    for node in g.nodes:
        if node.op_type == "Sigmoid":
            x = node.input[0]
            swish = any(x in c.input and node.output[0] in c.input for c in g.consumers.get(node.output[0], []) if c.op_type == "Mul")
            if not swish:
                keep(g.upstream_weighted(x), "sigmoid-gate")
        elif node.op_type == "Mul" and len(node.input) == 2:
            a, b = node.input
            if a != b and g.root(a) == g.root(b):
                keep(g.upstream_weighted(g.root(a)), "attention-product")
        elif node.op_type == "Softmax":
            before = g.upstream_weighted(node.input[0])
            if before is not None and before.op_type == "MatMul":
                keep(before, "softmax")
            for after in g.downstream_weighted(node.output[0], limit=3):
                if after.op_type == "MatMul":
                    keep(after, "softmax")
    return list(kept.values())


def match_keep_fp(model: onnx.ModelProto, patterns: Sequence[str]) -> list[KeptNode]:
    """Weighted nodes whose name matches any glob in `patterns`; a pattern matching none is an error."""
    kept: list[KeptNode] = []
    weighted = [n for n in model.graph.node if n.op_type in WEIGHTED_OPS]
    for pattern in patterns:
        hits = [n for n in weighted if fnmatch.fnmatchcase(n.name, pattern)]
        if not hits:
            sample = ", ".join(n.name for n in weighted[:3])
            raise UsageError(f"--keep-fp {pattern!r} matches no Conv/Gemm/MatMul node", hint=f"node names look like: {sample}")
        kept.extend(KeptNode(name=n.name, op_type=n.op_type, rule=f"--keep-fp {pattern}") for n in hits)
    return kept


def nodes_kept_fp(model: onnx.ModelProto, precision: str, keep_fp: Sequence[str]) -> list[KeptNode]:
    kept = default_fp_policy(model) if precision == "mixed" else []
    names = {k.name for k in kept}
    for extra in match_keep_fp(model, keep_fp):
        if extra.name not in names:
            kept.append(extra)
            names.add(extra.name)
    return kept


# ---------------------------------------------------------------------------------------------
# quantization


def _validate_options(method: str, precision: str) -> None:
    if method not in METHODS:
        raise UsageError(f"unknown calibration method {method!r}", hint=f"use --method {' | '.join(METHODS)}")
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}", hint=f"use --precision {' | '.join(PRECISIONS)}")


@contextlib.contextmanager
def _quiet_ort() -> Iterator[None]:
    """onnxruntime.quantization prints progress to stdout and warns on the root logger: stdout is for records."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        root.setLevel(level)


def nonzero_zero_points(model: onnx.ModelProto) -> int:
    """How many Q/DQ zero points are not 0 (TensorRT's parser accepts only 0)."""
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    consts = {n.output[0]: n for n in model.graph.node if n.op_type == "Constant"}
    bad = 0
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2 and node.input[2]:
            name = node.input[2]
            if name in inits:
                value = numpy_helper.to_array(inits[name])
            elif name in consts:
                value = numpy_helper.to_array(consts[name].attribute[0].t)
            else:
                bad += 1  # a computed zero point cannot be shown to be 0
                continue
            bad += int(np.count_nonzero(value))
    return bad


def _write_qdq(model: onnx.ModelProto, amax: dict[str, float], excluded: list[str], out_path: Path, workdir: Path) -> None:
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import TensorsData, save_tensors_data

    src = workdir / "fp32.onnx"
    onnx.save(model, str(src))
    ranges = TensorsData(CalibrationMethod.MinMax, {name: (np.float32(-value), np.float32(value)) for name, value in amax.items()})
    cache = workdir / "ranges.json"
    save_tensors_data(ranges, cache)
    with _quiet_ort():
        quantize_static(
            str(src),
            str(out_path),
            calibration_data_reader=None,
            calibration_cache_path=str(cache),  # our ranges: quantize_static does no calibration of its own
            calibrate_method=CalibrationMethod.MinMax,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(WEIGHTED_OPS),
            per_channel=True,
            reduce_range=False,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=excluded,
            extra_options={
                "ActivationSymmetric": True,
                "WeightSymmetric": True,
                "QuantizeBias": False,  # TensorRT takes float bias
                "AddQDQPairToWeight": True,  # float weight -> Q -> DQ: what TensorRT 8.6 and 10 both parse
                "OpTypesToExcludeOutputQuantization": list(WEIGHTED_OPS),
                "DedicatedQDQPair": False,
            },
        )


def peak_rss_mib() -> float:
    """Peak resident memory of this process in MiB.

    Linux: VmHWM, which starts afresh at exec (ru_maxrss survives exec, so a child started from a
    big parent would report the parent's size); elsewhere ru_maxrss.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    scale = 1024.0 * 1024.0 if sys.platform == "darwin" else 1024.0  # macOS reports bytes, Linux KiB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def quantize_onnx(
    source: Path,
    out_dir: Path,
    batches: Iterable[np.ndarray],
    *,
    method: str = "entropy",
    precision: str = "int8",
    keep_fp: Sequence[str] = (),
    model_name: str | None = None,
    images_requested: int | None = None,
    seed: int | None = None,
    batch_size: int = DEFAULT_BATCH,
    calib_dataset: str | None = None,
    threads: int | None = None,
) -> QuantizeResult:
    """Calibrate `source` (an FP32 ONNX) on `batches` and write the QDQ ONNX, cache and summary into `out_dir`."""
    import onnx
    import onnxruntime

    _validate_options(method, precision)
    started = time.perf_counter()
    model = load_onnx(source)
    if is_quantized(model):
        raise CsaError(f"{source} is already quantized (it has Q/DQ nodes)", hint="give the FP32 ONNX written by `csa export`")
    model = _name_nodes(onnx.shape_inference.infer_shapes(model))
    graph_input(model)
    kept = nodes_kept_fp(model, precision, keep_fp)
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
        _write_qdq(model, amax, [k.name for k in kept], qdq_path, Path(tmp))
    qdq_model = onnx.load(str(qdq_path))
    bad_zero_points = nonzero_zero_points(qdq_model)
    if bad_zero_points:
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


class CalibFileList(BaseModel):
    """calib_files.json: the calibration images of an artifact (eval leaves them out)."""

    dataset: str
    dataset_fingerprint: str | None = None
    seed: int
    requested: int
    files: list[CalibFile]


def _files_key(files: Sequence[CalibFile]) -> str:
    digest = hashlib.sha256()
    for f in files:
        try:
            stat = Path(f.path).stat()
            digest.update(f"{f.path}\0{f.label}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{f.path}\0{f.label}\0missing\n".encode())
    return digest.hexdigest()[:16]


def _preprocessing_for(model: str | None, onnx_hw: tuple[int, int] | None, manifest: str | Path | None) -> Preprocessing:
    """The model's eval preprocessing (manifest), sized to the ONNX input; timm defaults for a bare ONNX."""
    from csa_cli.data.preprocess import default_preprocessing

    if model is not None:
        from csa_cli.manifest import load_manifest

        zoo = load_manifest(manifest)
        if model in zoo.models:
            pre = zoo.models[model].preprocessing
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
            raise CsaError("the input is already quantized (a 'quantized' record)", hint="pipe the output of `csa export` or `csa check` instead")
        if kind == "checkpoint":
            from csa_cli.stages.export.stage import export_stage

            if not source.model:
                raise CsaError("the checkpoint record names no model")
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
    # not "check": that verdict is about the FP32 graph, and the QDQ graph is another one
    keep = ("weights_hash", "img_size", "batch", "dynamic_batch", "opset", "license")
    return {k: record.field(k) for k in keep if record.field(k) is not None}


def quantize_stage(
    source: Record | str | Path,
    *,
    calib_dataset: str,
    data_dir: str | Path | None = None,
    calib_images: int = 500,
    method: str = "entropy",
    precision: str = "int8",
    seed: int = 0,
    keep_fp: Sequence[str] = (),
    strict: bool = False,
    batch_size: int = DEFAULT_BATCH,
    output: str | Path | None = None,
    model: str | None = None,
    weights: str | None = None,
    manifest: str | Path | None = None,
) -> Record:
    """`csa quantize`: an ONNX (path, zoo model name, or onnx/checkpoint record) -> a "quantized" record.

    The artifact lives under CSA_HOME keyed by the source ONNX's hash, the calibration files and
    every option; a second call with the same inputs reuses it.
    """
    from csa_cli.records import make_record
    from csa_cli.stages.quantize.calibration import iter_calibration_batches, list_dataset, select_calibration_files
    from csa_cli.store import artifact_key, build_artifact, find_artifact

    _validate_options(method, precision)
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
    _, dims = graph_input(proto)
    onnx_hw = (dims[2], dims[3]) if dims[2] and dims[3] else None
    del proto
    pre = _preprocessing_for(zoo_model, onnx_hw, manifest)

    files = select_calibration_files(all_files, calib_images, seed)
    if len(files) < calib_images:
        message = f"the calibration dataset has {len(files)} images, fewer than the {calib_images} asked for"
        if strict:
            raise CsaError(message, hint="add images, lower --calib-images, or drop --strict to use them all")
        events.warn(message + ": using them all")

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
    key = artifact_key(stage="quantize", **inputs)
    name = zoo_model or onnx_path.stem
    folder = find_artifact(name, "quantize", key)
    if folder is None:
        events.info(f"calibrating {name} on {len(files)} images ({method}, {precision})")
        with build_artifact(name, "quantize", key, inputs) as tmp:
            quantize_onnx(
                onnx_path,
                tmp,
                iter_calibration_batches(files, pre, batch_size),
                method=method,
                precision=precision,
                keep_fp=keep_fp,
                model_name=zoo_model,
                images_requested=calib_images,
                seed=seed,
                batch_size=batch_size,
                calib_dataset=calib_dataset,
            )
            listing = CalibFileList(dataset=calib_dataset, dataset_fingerprint=fingerprint, seed=seed, requested=calib_images, files=files)
            atomic_write_text(tmp / FILES_FILE, listing.model_dump_json(indent=2))
        folder = find_artifact(name, "quantize", key)
        if folder is None:
            raise CsaError(f"the quantize artifact for {name} was not written completely")
    else:
        events.info(f"reusing the quantized model in {folder}")

    if output is not None:
        folder = _copy_out(folder, Path(output))
    summary = QuantizeSummary.model_validate_json((folder / SUMMARY_FILE).read_text())
    return make_record(
        "quantized",
        model=name,
        path=str(folder / QDQ_FILE),
        calib_cache=str(folder / CACHE_FILE),
        summary=str(folder / SUMMARY_FILE),
        calib_files=[f.path for f in files],
        calib_files_list=str(folder / FILES_FILE),
        method=method,
        precision=precision,
        source_onnx=str(Path(onnx_path).resolve()),
        weights=weights,
        images=summary.images,
        seed=seed,
        kept_fp=[k.name for k in summary.kept_fp],
        artifact=str(folder),
        **carried,
    )


def _copy_out(folder: Path, target: Path) -> Path:
    """The artifact's files copied into --output DIR (all or nothing)."""
    if target.exists() and not target.is_dir():
        raise UsageError(f"--output {target} exists and is not a folder")
    target.mkdir(parents=True, exist_ok=True)
    for name in (QDQ_FILE, CACHE_FILE, SUMMARY_FILE, FILES_FILE):
        with atomic_path(target / name) as tmp:
            shutil.copyfile(folder / name, tmp)
    return target


def summary_json(record: Record) -> dict[str, Any]:
    """The summary a quantized record points to (for renderers)."""
    return json.loads(Path(str(record.field("summary"))).read_text())

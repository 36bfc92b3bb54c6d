"""Calibration runs: every float tensor of the FP32 graph measured on the calibration images.

The graph gets every float tensor as an output; ONNX Runtime runs the images chunk by chunk
and `RangeCollector` folds each chunk into per-tensor |x| histograms, then drops it, so memory
is bounded by one chunk's activations whatever the number of images.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np

from csa_cli.errors import CsaError
from csa_cli.graph.onnx_file import onnx_info
from csa_cli.stages.quantize.calibration import (
    RangeCollector,
)

if TYPE_CHECKING:
    import onnx

DEFAULT_BATCH = 8  # images pooled per histogram update (and the default calibration batch)


def float_tensors(model: onnx.ModelProto) -> list[str]:
    """The graph input and every float node output (graph order): what calibration measures."""
    from onnx import TensorProto

    floats = {TensorProto.FLOAT, TensorProto.FLOAT16}
    types: dict[str, int] = {}
    for value in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
        if value.type.HasField("tensor_type"):
            types[value.name] = value.type.tensor_type.elem_type
    initializers = {t.name for t in model.graph.initializer}
    name = onnx_info(model).input_name
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

    info = onnx_info(model).require_nchw()
    input_name = info.input_name
    dims = [d if isinstance(d, int) else None for d in info.input_shape]
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

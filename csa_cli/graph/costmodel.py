"""A static cost model of an ONNX graph: parameters, MACs and memory traffic per node.

Pure: it reads the graph (after ONNX shape inference) and never runs it.

Conventions (docs/check.md says the same):
- MACs are the multiply-accumulates of Conv, ConvTranspose, MatMul, Gemm and Einsum (the
  convention behind published "GMACs" figures); elementwise ops, pooling and resizes count 0.
- Parameters are the elements of the constant tensors a node uses as weights: scalars (eps,
  exponents), shape/axes/scales inputs, Q/DQ scales and zero points and BatchNormalization's
  running statistics are not parameters (they are still read, so they count as weight bytes).
  A tensor shared by several nodes counts once.
- Memory traffic is graph-level and unfused: each node reads its inputs and writes its outputs
  once; a constant reaches the node in the dtype it is stored in (an int8 weight behind a
  DequantizeLinear is read as int8); views (Reshape, Flatten, Squeeze, Unsqueeze, Identity,
  Dropout) move nothing. Activations scale with the batch, weights are read once per batch:
  traffic(b) = b * activations_per_image + weights. Runtime fusion makes real traffic lower:
  this is an estimate and is labelled so wherever it is shown.
"""

from __future__ import annotations

import contextlib
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from csa_cli.errors import CsaError
from csa_cli.graph.onnx_file import load_onnx

if TYPE_CHECKING:
    import numpy as np
    import onnx

ESTIMATE_LABEL = "estimate (static, from the ONNX graph)"

# Inputs (by position) that configure an op rather than weight it.
_CONFIG_INPUTS: dict[str, set[int]] = {
    "Reshape": {1},
    "Resize": {1, 2, 3},
    "Upsample": {1},
    "QuantizeLinear": {1, 2},
    "DequantizeLinear": {1, 2},
    "Slice": {1, 2, 3, 4},
    "Pad": {1, 2, 3},
    "Clip": {1, 2},
    "Expand": {1},
    "Tile": {1},
    "Squeeze": {1},
    "Unsqueeze": {1},
    "Split": {1},
    "TopK": {1},
    "ConstantOfShape": {0},
    "Range": {0, 1, 2},
    "ReduceMean": {1},
    "ReduceSum": {1},
    "ReduceMax": {1},
    "ReduceMin": {1},
    "ReduceProd": {1},
    "ReduceL2": {1},
    "ReduceL1": {1},
    "ReduceSumSquare": {1},
    "Gather": {1},
    "CumSum": {1},
    "BatchNormalization": {3, 4},  # running mean/var: buffers, not learned parameters
}
_RANDOM_OPS = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial"}
_VIEW_OPS = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout"}
# Ops that pass a stored constant through unchanged in size (so it is read as stored).
_PASS_THROUGH_OPS = {"Identity", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Cast"}


def _dtype_size(elem_type: int) -> int:
    import numpy as np
    import onnx

    if elem_type in (onnx.TensorProto.UNDEFINED, onnx.TensorProto.STRING):
        return 0
    if elem_type in (onnx.TensorProto.BFLOAT16,):
        return 2
    try:
        return int(np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type)).itemsize)
    except (KeyError, TypeError, ValueError):
        return 1  # 8-bit and 4-bit float/int formats: round up to a byte


@dataclass
class TensorInfo:
    name: str
    elem_type: int
    shape: list[int | str | None] | None  # None: unknown rank; str: a symbolic dim; None entry: unknown dim

    @property
    def static(self) -> bool:
        return self.shape is not None and all(isinstance(d, int) for d in self.shape)

    @property
    def numel(self) -> int | None:
        if not self.static or self.shape is None:
            return None
        return math.prod(int(d) for d in self.shape)  # type: ignore[arg-type]

    @property
    def nbytes(self) -> int | None:
        n = self.numel
        return None if n is None else n * _dtype_size(self.elem_type)


@dataclass
class GraphIndex:
    """One graph after shape inference: tensor infos, constants, producers and consumers."""

    model: onnx.ModelProto
    tensors: dict[str, TensorInfo] = field(default_factory=dict)
    initializers: dict[str, onnx.TensorProto] = field(default_factory=dict)
    constant_nodes: dict[str, onnx.AttributeProto] = field(default_factory=dict)
    constant: set[str] = field(default_factory=set)
    producer: dict[str, onnx.NodeProto] = field(default_factory=dict)
    consumers: dict[str, list[onnx.NodeProto]] = field(default_factory=dict)

    @property
    def graph(self) -> onnx.GraphProto:
        return self.model.graph

    @property
    def nodes(self) -> list[onnx.NodeProto]:
        return list(self.model.graph.node)

    def info(self, name: str) -> TensorInfo | None:
        return self.tensors.get(name)

    def shape(self, name: str) -> list[int | str | None] | None:
        info = self.tensors.get(name)
        return None if info is None else info.shape

    def is_constant(self, name: str) -> bool:
        return name == "" or name in self.constant

    def value(self, name: str) -> np.ndarray | None:
        """The value of an initializer or Constant-node output; None if not known statically."""
        import onnx

        if name in self.initializers:
            return onnx.numpy_helper.to_array(self.initializers[name])
        attr = self.constant_nodes.get(name)
        if attr is None:
            return None
        if attr.type == onnx.AttributeProto.TENSOR:
            return onnx.numpy_helper.to_array(attr.t)
        import numpy as np

        if attr.type == onnx.AttributeProto.FLOATS:
            return np.array(list(attr.floats), dtype=np.float32)
        if attr.type == onnx.AttributeProto.INTS:
            return np.array(list(attr.ints), dtype=np.int64)
        if attr.type == onnx.AttributeProto.FLOAT:
            return np.array(attr.f, dtype=np.float32)
        if attr.type == onnx.AttributeProto.INT:
            return np.array(attr.i, dtype=np.int64)
        return None


def _shape_of(type_proto: Any) -> tuple[int, list[int | str | None] | None]:
    tensor = type_proto.tensor_type
    if not tensor.HasField("shape"):
        return tensor.elem_type, None
    dims: list[int | str | None] = []
    for d in tensor.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            dims.append(str(d.dim_param))
        else:
            dims.append(None)
    return tensor.elem_type, dims


def index_graph(model: onnx.ModelProto, *, infer: bool = True) -> GraphIndex:
    """Run shape inference (when asked) and index the main graph."""
    import onnx

    if infer:
        # An inference failure leaves shapes unknown: the checks report that rather than crash.
        with contextlib.suppress(Exception):
            model = onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False, data_prop=True)
    index = GraphIndex(model=model)
    graph = model.graph
    for init in graph.initializer:
        index.initializers[init.name] = init
        index.tensors[init.name] = TensorInfo(init.name, init.data_type, [int(d) for d in init.dims])
        index.constant.add(init.name)
    for vi in [*graph.input, *graph.value_info, *graph.output]:
        elem, dims = _shape_of(vi.type)
        if vi.name not in index.initializers:
            index.tensors[vi.name] = TensorInfo(vi.name, elem, dims)
    for node in graph.node:
        for out in node.output:
            if out:
                index.producer[out] = node
        for inp in node.input:
            if inp:
                index.consumers.setdefault(inp, []).append(node)
        if node.op_type == "Constant" and node.attribute:
            index.constant_nodes[node.output[0]] = node.attribute[0]
            index.constant.add(node.output[0])
            if node.output[0] not in index.tensors or index.tensors[node.output[0]].shape is None:
                value = index.value(node.output[0])
                if value is not None:
                    elem = onnx.helper.np_dtype_to_tensor_dtype(value.dtype)
                    index.tensors[node.output[0]] = TensorInfo(node.output[0], elem, list(value.shape))
        elif node.op_type not in _RANDOM_OPS and node.input and all(index.is_constant(i) for i in node.input):
            # A node fed only by constants is constant too (DequantizeLinear of a weight, a folded shape).
            index.constant.update(o for o in node.output if o)
    return index


# Small integer computations a static-shape graph can evaluate at analysis time (shape arithmetic).
_FOLDABLE = {
    "Gather", "Unsqueeze", "Squeeze", "Concat", "Slice", "Cast", "Add", "Sub", "Mul", "Div", "Mod", "Equal", "Less", "Greater",
    "LessOrEqual", "GreaterOrEqual", "Where", "ConstantOfShape", "Range", "Expand", "ReduceProd", "ReduceSum", "Identity",
    "Floor", "Ceil", "Neg", "Abs", "Not", "And", "Or", "Reshape", "Min", "Max", "Tile", "Sqrt", "Transpose",
}  # fmt: skip
_FOLD_LIMIT = 1 << 16  # elements: shape tensors are tiny; never evaluate real activations or weights here


def _shape_value(node: onnx.NodeProto, shape: list[int]) -> np.ndarray:
    import numpy as np

    if node.op_type == "Size":
        return np.array(math.prod(shape), dtype=np.int64)
    rank = len(shape)
    start = next((a.i for a in node.attribute if a.name == "start"), 0)
    end = next((a.i for a in node.attribute if a.name == "end"), rank)
    return np.array(shape[slice(start, end)], dtype=np.int64)


def complete_shapes(g: GraphIndex, *, fold: bool = True) -> None:
    """Complete the shapes ONNX shape inference left unknown, in one pass over the graph.

    Shape inference stops at run-time shape arithmetic (swin's Shape -> Gather -> Div -> Concat ->
    Reshape); with a static input those values are constants. Walking the nodes in order, this
    evaluates such small integer computations with onnx.reference and infers every other node's
    output types with those values known. The graph's nodes are not changed: the evaluated ones
    become constant-only (folded, cost 0), which is what a runtime does with them at build time;
    with fold=False (the checker) they stay as they are and only the shapes are filled in.
    """
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    values: dict[str, np.ndarray] = {}

    def known(name: str) -> np.ndarray | None:
        if name in values:
            return values[name]
        info = g.info(name)
        if name not in g.constant or info is None or info.numel is None or info.numel > _FOLD_LIMIT:
            return None
        value = g.value(name)
        if value is not None:
            values[name] = value
        return value

    def type_of(name: str) -> onnx.TypeProto | None:
        info = g.info(name)
        if info is None or info.shape is None:
            return None
        return helper.make_tensor_type_proto(info.elem_type, info.shape)

    opset = next((o.version for o in g.model.opset_import if o.domain in ("", "ai.onnx")), 17)
    for node in g.nodes:
        outs = [o for o in node.output if o]
        if not outs or node.op_type == "Constant":
            continue
        try:
            evaluated: list[np.ndarray] | None = None
            if node.op_type in ("Shape", "Size"):
                info = g.info(node.input[0])
                if info is not None and info.static and info.shape is not None:
                    evaluated = [_shape_value(node, [int(d) for d in info.shape])]  # type: ignore[arg-type]
            elif node.op_type in _FOLDABLE and node.domain in ("", "ai.onnx"):
                feeds = {name: known(name) for name in node.input if name}
                if all(v is not None for v in feeds.values()):
                    evaluated = [np.asarray(r) for r in ReferenceEvaluator(node).run(None, feeds)]
            if evaluated is not None:
                for name, value in zip(node.output, evaluated, strict=False):
                    if name:
                        values[name] = value
                        g.tensors[name] = TensorInfo(name, helper.np_dtype_to_tensor_dtype(value.dtype), list(value.shape))
                if fold:
                    g.constant.update(outs)
                continue
            if all((info := g.info(o)) is not None and info.static for o in outs):
                continue
            types = {name: type_of(name) for name in node.input if name}
            if any(t is None for t in types.values()):
                continue
            data = {name: numpy_helper.from_array(v, name) for name in node.input if name and (v := known(name)) is not None}
            schema = onnx.defs.get_schema(node.op_type, opset, node.domain)
            inferred = onnx.shape_inference.infer_node_outputs(schema, node, types, data, opset_imports=list(g.model.opset_import))  # type: ignore[arg-type]
        except Exception:  # an op neither the evaluator nor the inference knows: its shapes stay unknown
            continue
        for name, type_proto in inferred.items():
            elem, dims = _shape_of(type_proto)
            if dims is not None and all(isinstance(d, int) for d in dims):
                g.tensors[name] = TensorInfo(name, elem, dims)


class NodeCost(BaseModel):
    """One node's cost. Activation bytes and MACs are per image; weight bytes are per batch pass."""

    op: str
    name: str
    params: int = Field(description="learned parameters first used by this node")
    macs: int = Field(description="multiply-accumulates per image")
    activation_bytes_read: int = Field(description="per image")
    weight_bytes_read: int = Field(description="per batch pass (independent of the batch size)")
    bytes_written: int = Field(description="per image")
    folded: bool = Field(default=False, description="constant-only node: folded at build time, costs nothing")

    def bytes_read_at(self, batch: int) -> int:
        return batch * self.activation_bytes_read + self.weight_bytes_read


class TrafficEstimate(BaseModel):
    """Memory traffic at one batch size (static estimate)."""

    label: str = ESTIMATE_LABEL
    batch: int
    bytes_read: int
    bytes_written: int
    bytes_total: int
    bytes_per_frame: float
    macs_per_frame: int


class CostReport(BaseModel):
    """Totals and per-node costs of one ONNX graph.

    `bytes_read` and `bytes_written` are per image at `batch` (weights shared over the batch);
    `traffic_at(b)` gives the figures at any other batch size.
    """

    label: str = ESTIMATE_LABEL
    graph_batch: int = Field(description="the batch size the graph was analysed at")
    batch: int = Field(description="the batch size the per-image figures assume for weight sharing")
    params: int
    macs: int = Field(description="per image")
    weight_bytes: int = Field(description="constants read once per batch pass")
    activation_bytes_read: int = Field(description="per image")
    activation_bytes_written: int = Field(description="per image")
    bytes_read: int = Field(description="per image at `batch`: activations + weights / batch")
    bytes_written: int = Field(description="per image")
    op_counts: dict[str, int]
    unknown_shapes: list[str] = Field(default_factory=list, description="tensors whose size could not be inferred (counted as 0)")
    nodes: list[NodeCost]

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9

    @property
    def params_m(self) -> float:
        return self.params / 1e6

    def traffic_at(self, batch: int) -> TrafficEstimate:
        if batch < 1:
            raise ValueError("batch must be at least 1")
        read = batch * self.activation_bytes_read + self.weight_bytes
        written = batch * self.activation_bytes_written
        return TrafficEstimate(
            batch=batch,
            bytes_read=read,
            bytes_written=written,
            bytes_total=read + written,
            bytes_per_frame=(read + written) / batch,
            macs_per_frame=self.macs,
        )


def _fix_batch(model: onnx.ModelProto, batch: int) -> onnx.ModelProto:
    """A copy whose graph inputs have `batch` where their first dim is symbolic or unknown."""
    import onnx

    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    inits = {i.name for i in fixed.graph.initializer}
    for vi in fixed.graph.input:
        if vi.name in inits or not vi.type.tensor_type.HasField("shape"):
            continue
        dims = vi.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].Clear()
            dims[0].dim_value = batch
    # Stale value_info with symbolic dims would block inference of the concrete ones.
    del fixed.graph.value_info[:]
    return fixed


def _graph_batch(model: onnx.ModelProto) -> int | None:
    inits = {i.name for i in model.graph.initializer}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        _, dims = _shape_of(vi.type)
        if dims:
            return dims[0] if isinstance(dims[0], int) else None
    return None


def _einsum_macs(equation: str, shapes: list[list[int]]) -> int:
    lhs = equation.replace(" ", "").split("->")[0]
    terms = lhs.split(",")
    if len(terms) != 2 or len(shapes) != 2:
        return 0
    sizes: dict[str, int] = {}
    for term, shape in zip(terms, shapes, strict=True):
        if "..." in term:
            explicit = term.replace("...", "")
            n_ellipsis = len(shape) - len(explicit)
            for k, d in enumerate(shape[:n_ellipsis]):
                sizes[f"_{k}"] = max(sizes.get(f"_{k}", 1), d)
            term = explicit
            shape = shape[n_ellipsis:]
        for letter, d in zip(term, shape, strict=False):
            sizes[letter] = max(sizes.get(letter, 1), d)
    return math.prod(sizes.values())


def _node_macs(node: onnx.NodeProto, g: GraphIndex) -> int | None:
    """MACs of one node over the whole graph batch; None if a needed shape is unknown."""

    def static(name: str) -> list[int] | None:
        info = g.info(name)
        return [int(d) for d in info.shape] if info is not None and info.static and info.shape is not None else None

    op = node.op_type
    if op in ("Conv", "ConvInteger", "QLinearConv"):
        w_name = node.input[3] if op == "QLinearConv" else node.input[1]
        w = static(w_name)
        y = static(node.output[0])
        if w is None or y is None:
            return None
        return math.prod(y) * math.prod(w[1:])  # each output element: Cin/groups * kernel MACs
    if op == "ConvTranspose":
        w = static(node.input[1])
        x = static(node.input[0])
        if w is None or x is None:
            return None
        return math.prod(x) * math.prod(w[1:])  # each input element: Cout/groups * kernel MACs
    if op in ("MatMul", "MatMulInteger", "QLinearMatMul"):
        a = static(node.input[0])
        y = static(node.output[0])
        if a is None or y is None:
            return None
        return math.prod(y) * a[-1]
    if op == "Gemm":
        a = static(node.input[0])
        y = static(node.output[0])
        if a is None or y is None:
            return None
        trans_a = next((a_.i for a_ in node.attribute if a_.name == "transA"), 0)
        k = a[0] if trans_a else a[-1]
        return math.prod(y) * k
    if op == "Einsum":
        shapes = [static(i) for i in node.input]
        if any(s is None for s in shapes):
            return None
        equation = next((a.s.decode() for a in node.attribute if a.name == "equation"), "")
        return _einsum_macs(equation, [s for s in shapes if s is not None])
    return 0


def _stored_bytes(name: str, g: GraphIndex, memo: dict[str, int | None]) -> int | None:
    """Bytes of a constant as stored: an int8 weight behind DequantizeLinear stays int8."""
    if name in memo:
        return memo[name]
    result: int | None
    node = g.producer.get(name)
    if node is not None and (node.op_type == "DequantizeLinear" or (node.op_type in _PASS_THROUGH_OPS and node.op_type != "Cast")):
        result = _stored_bytes(node.input[0], g, memo)
    else:
        info = g.info(name)
        result = None if info is None else info.nbytes
    memo[name] = result
    return result


def _is_parameter(name: str, g: GraphIndex) -> bool:
    """A weight tensor (not a scalar, not an integer shape/index constant)."""
    import onnx

    value_info = g.info(name)
    if value_info is None or value_info.numel is None or value_info.numel <= 1:
        return False
    node = g.producer.get(name)
    if node is not None and node.op_type in ("DequantizeLinear", *_PASS_THROUGH_OPS):
        return _is_parameter(node.input[0], g)
    float_or_quant = {
        onnx.TensorProto.FLOAT,
        onnx.TensorProto.FLOAT16,
        onnx.TensorProto.BFLOAT16,
        onnx.TensorProto.DOUBLE,
        onnx.TensorProto.INT8,
        onnx.TensorProto.UINT8,
        onnx.TensorProto.INT4,
        onnx.TensorProto.UINT4,
    }
    return value_info.elem_type in float_or_quant


def analyze(model: str | Path | onnx.ModelProto, batch: int | None = None) -> CostReport:
    """Parameters, MACs and bytes read/written per node of an ONNX graph (static estimate).

    `batch`: the batch size for a graph with a dynamic batch axis (default 1), and the batch over
    which weight reads are shared in the per-image `bytes_read`. Per-image activation figures are
    the graph's figures divided by its batch.
    """
    if batch is not None and batch < 1:
        raise CsaError(f"batch must be at least 1, got {batch}")
    proto = load_onnx(model)
    graph_batch = _graph_batch(proto)
    if graph_batch is None:
        graph_batch = batch or 1
        proto = _fix_batch(proto, graph_batch)
    batch = batch or graph_batch
    g = index_graph(proto)
    if any(not info.static for name, info in g.tensors.items() if name not in g.constant):
        complete_shapes(g)

    seen_params: set[str] = set()
    memo: dict[str, int | None] = {}
    unknown: set[str] = set()
    nodes: list[NodeCost] = []
    for node in g.nodes:
        op = node.op_type
        config = _CONFIG_INPUTS.get(op, set())
        folded = op == "Constant" or all(g.is_constant(o) for o in node.output if o)
        params = act_read = weight_read = written = 0
        macs = 0
        if not folded:
            for pos, name in enumerate(node.input):
                if not name:
                    continue
                if g.is_constant(name):
                    size = _stored_bytes(name, g, memo)
                    weight_read += size or 0
                    if pos not in config and name not in seen_params and _is_parameter(name, g):
                        seen_params.add(name)
                        info = g.info(name)
                        params += (info.numel or 0) if info is not None else 0
                elif op not in _VIEW_OPS:
                    size = (g.info(name) or TensorInfo(name, 0, None)).nbytes
                    if size is None:
                        unknown.add(name)
                    act_read += size or 0
            if op not in _VIEW_OPS:
                for name in node.output:
                    if not name:
                        continue
                    size = (g.info(name) or TensorInfo(name, 0, None)).nbytes
                    if size is None:
                        unknown.add(name)
                    written += size or 0
            node_macs = _node_macs(node, g)
            if node_macs is None:
                unknown.update(i for i in node.input[:2] if i)
            macs = node_macs or 0
        nodes.append(
            NodeCost(
                op=op,
                name=node.name or f"{op}_{len(nodes)}",
                params=params,
                # Activation figures scale with the batch: per image is the graph's figure / its batch.
                macs=macs // graph_batch,
                activation_bytes_read=act_read // graph_batch,
                weight_bytes_read=weight_read,
                bytes_written=written // graph_batch,
                folded=folded,
            )
        )
    counts = Counter(n.op_type for n in g.nodes)
    act_r = sum(n.activation_bytes_read for n in nodes)
    act_w = sum(n.bytes_written for n in nodes)
    weights = sum(n.weight_bytes_read for n in nodes)
    return CostReport(
        graph_batch=graph_batch,
        batch=batch,
        params=sum(n.params for n in nodes),
        macs=sum(n.macs for n in nodes),
        weight_bytes=weights,
        activation_bytes_read=act_r,
        activation_bytes_written=act_w,
        bytes_read=act_r + weights // batch,
        bytes_written=act_w,
        op_counts=dict(sorted(counts.items())),
        unknown_shapes=sorted(unknown),
        nodes=nodes,
    )

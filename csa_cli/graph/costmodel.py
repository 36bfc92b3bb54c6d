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

import math
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from csa_cli.errors import CsaError
from csa_cli.graph.index import GraphIndex, complete_shapes, index_graph, shape_of
from csa_cli.graph.onnx_file import load_onnx

if TYPE_CHECKING:
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
_VIEW_OPS = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout"}
# Ops that pass a stored constant through unchanged in size (so it is read as stored).
_PASS_THROUGH_OPS = {"Identity", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Cast"}


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
        _, dims = shape_of(vi.type)
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
        result = g.nbytes(name)
    memo[name] = result
    return result


def _parameter_count(name: str, g: GraphIndex) -> int:
    """Elements of a weight tensor; 0 for a scalar or an integer shape/index constant.

    A DequantizeLinear's output is a weight whatever the stored integer type (int8 kernels, int32
    biases): it is judged as the float tensor it makes; casts and views are looked through.
    """
    import onnx

    info = g.info(name)
    if info is None or info.numel is None or info.numel <= 1:
        return 0
    node = g.producer.get(name)
    if node is not None and node.op_type in _PASS_THROUGH_OPS:
        return info.numel if _parameter_count(node.input[0], g) else 0
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
    return info.numel if info.elem_type in float_or_quant else 0


def analyze(model: str | Path | onnx.ModelProto, batch: int | None = None) -> CostReport:
    """Parameters, MACs and bytes read/written per node of an ONNX graph (static estimate).

    `batch`: the batch size for a graph with a dynamic batch axis (default 1), and the batch over
    which weight reads are shared in the per-image `bytes_read`. Per-image activation figures are
    the graph's figures divided by its batch.

    Long because it is one pass over the nodes that adds up five figures per node at once
    (parameters, MACs, activation reads, weight reads, writes); split, each piece would need them
    all.
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
        folded = all(g.is_constant(o) for o in node.output if o)  # a Constant node's output is constant too
        params = act_read = weight_read = written = 0
        macs = 0
        if not folded:
            for pos, name in enumerate(node.input):
                if not name:
                    continue
                if g.is_constant(name):
                    size = _stored_bytes(name, g, memo)
                    if size is None:
                        unknown.add(name)
                    weight_read += size or 0
                    if pos not in config and name not in seen_params:
                        seen_params.add(name)
                        params += _parameter_count(name, g)
                elif op not in _VIEW_OPS:
                    size = g.nbytes(name)
                    if size is None:
                        unknown.add(name)
                    act_read += size or 0
            if op not in _VIEW_OPS:
                for name in node.output:
                    if not name:
                        continue
                    size = g.nbytes(name)
                    if size is None:
                        unknown.add(name)
                    written += size or 0
            # (an operand whose shape blocks the MAC count is one of unknown size: named above)
            macs = _node_macs(node, g) or 0
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

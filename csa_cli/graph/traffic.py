"""Memory traffic of what the runtime executes, not of the ONNX graph (a static estimate).

graph/costmodel.py counts every ONNX node as one read and one write of its tensors as stored
(FP32): that ranks models by how many unfused pointwise nodes their exporters emit. Here the
nodes are first grouped into the kernels TensorRT builds, and each tensor is counted at the
precision it runs in. The rules (docs/profiling.md lists them with their sources):

Precision (bytes per element)
- FP32 4, FP16 2, INT8 1. A tensor that feeds a QuantizeLinear is written by its producer in INT8
  (TensorRT fuses the Q into the producer) and read through the DequantizeLinear in INT8 (the DQ
  fuses into the consumer): Q/DQ pairs are folded into their neighbours and move nothing of their
  own. Quantized weights are read as stored (INT8).
- Unquantized tensors run at the engine's precision; in an INT8 engine (a QDQ graph, or implicit
  INT8 on an FP32 graph with a calibration cache) the tensors without a scale fall back to FP16,
  as TensorRT does with the FP16 flag set beside INT8 (csa engine builds "mixed" that way). An FP32
  graph at "int8" is implicit INT8: every activation gets a scale from the calibration cache.

Fusion (TensorRT's Layer Fusion Catalog, "Supported Layer Fusions")
- An anchor (Conv, ConvTranspose, MatMul, Gemm) absorbs its epilogue: the pointwise nodes after it
  (BatchNormalization, bias Add, activations, Sigmoid+Mul = swish, a residual Add) whose
  intermediate tensors nobody else reads ("Convolution and ReLU/GELU/Clip activation",
  "Convolution and ElementWise Operation", "PointWise fusion"). An epilogue's other inputs (the
  residual) are read once.
- Chains of pointwise nodes with no anchor become one kernel on the same condition ("PointWise
  fusion").
- Views are free: Reshape, Flatten, Squeeze, Unsqueeze, Identity, Dropout, and a Transpose that
  only moves size-1 axes. Any other Transpose copies (read + write), and adjacent shuffles merge
  into one copy ("Shuffle and Shuffle").
- Everything else (Softmax, reductions, pooling, Resize, Concat, ...) is its own kernel.

Weights are read once per batch pass, activations once per image: bytes(b) = b * act + weights.
The unfused figure applies the same precisions with every non-view node its own kernel.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from csa_cli.graph.index import GraphIndex, complete_shapes, index_graph
from csa_cli.graph.onnx_file import load_onnx
from csa_cli.graph.qdq import WEIGHTED_OPS

if TYPE_CHECKING:
    import onnx

TRAFFIC_LABEL = "estimate (static: TensorRT's fusions at the engine's precision)"

Precision = Literal["fp32", "fp16", "int8"]
BYTES: dict[str, int] = {"fp32": 4, "fp16": 2, "int8": 1}

ANCHORS = frozenset(WEIGHTED_OPS)
POINTWISE = frozenset(
    {
        "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Exp", "Log", "Neg", "Abs", "Reciprocal",
        "Relu", "LeakyRelu", "PRelu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Erf", "Gelu",
        "Elu", "Selu", "Softplus", "Mish", "BatchNormalization", "Cast", "Min", "Max", "Where", "Not", "Equal",
    }
)  # fmt: skip
VIEWS = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout"})
QDQ = frozenset({"QuantizeLinear", "DequantizeLinear"})


class Kernel(BaseModel):
    """One kernel the runtime runs: the nodes fused into it and what it moves per image."""

    nodes: list[str]
    ops: list[str]
    activation_bytes: int = Field(description="activations read + written per image")
    weight_bytes: int = Field(description="weights read per batch pass")


class TrafficReport(BaseModel):
    """Fused and unfused traffic of one graph at one precision (static estimate)."""

    label: str = TRAFFIC_LABEL
    precision: str
    quantized_graph: bool
    graph_batch: int
    fused_activation_bytes: int = Field(description="per image")
    fused_weight_bytes: int = Field(description="per batch pass")
    unfused_activation_bytes: int = Field(description="per image, every non-view node its own kernel")
    unfused_weight_bytes: int
    kernels: list[Kernel]
    unfused_kernels: int

    def fused_per_frame(self, batch: int) -> float:
        return self.fused_activation_bytes + self.fused_weight_bytes / batch

    def unfused_per_frame(self, batch: int) -> float:
        return self.unfused_activation_bytes + self.unfused_weight_bytes / batch


class _Graph:
    """The index plus the Q/DQ and view folding: which tensor a name really is, and its bytes."""

    def __init__(self, g: GraphIndex, precision: str) -> None:
        self.g = g
        self.quantized = any(n.op_type in QDQ for n in g.nodes)
        self.fallback = BYTES["fp16" if precision == "int8" else precision]
        self.implicit_int8 = precision == "int8" and not self.quantized
        # tensors some QuantizeLinear reads: the producer writes them in INT8
        self.int8 = {n.input[0] for n in g.nodes if n.op_type == "QuantizeLinear"}
        self._sources: dict[str, str] = {}
        self._consumers: dict[str, list[onnx.NodeProto]] = {}
        self._free: dict[int, bool] = {}

    def is_free(self, node: onnx.NodeProto) -> bool:
        key = id(node)
        if key not in self._free:
            self._free[key] = self._is_free(node)
        return self._free[key]

    def _is_free(self, node: onnx.NodeProto) -> bool:
        if node.op_type in VIEWS or node.op_type in QDQ:
            return True
        if node.op_type == "Transpose":
            shape = self.g.shape(node.input[0]) or []
            perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), list(range(len(shape)))[::-1])
            moved = [p for p in perm if not (p < len(shape) and shape[p] == 1)]
            return moved == sorted(moved)
        return all(self.g.is_constant(o) for o in node.output if o)  # folded at build time

    def source(self, name: str) -> str:
        """Through views and Q/DQ to the tensor that is really stored."""
        if name not in self._sources:
            self._sources[name] = self._source(name)
        return self._sources[name]

    def _source(self, name: str) -> str:
        seen = 0
        while seen < 64:
            node = self.g.producer.get(name)
            if node is None or not (node.op_type in VIEWS or node.op_type in QDQ or (node.op_type == "Transpose" and self.is_free(node))):
                return name
            name, seen = node.input[0], seen + 1
        return name

    def element_bytes(self, name: str) -> int:
        if self.implicit_int8 or name in self.int8:
            return BYTES["int8"]
        return self.fallback

    def activation_bytes(self, name: str) -> int:
        src = self.source(name)
        info = self.g.info(src)
        if info is None or info.numel is None:
            return 0
        return info.numel * self.element_bytes(src)

    def weight_bytes(self, name: str) -> int:
        """A constant as the kernel reads it: quantized weights as stored, float ones at the engine's precision."""
        node = self.g.producer.get(name)
        if node is not None and node.op_type == "DequantizeLinear":
            return self.g.nbytes(node.input[0]) or 0
        info = self.g.info(self.source(name))
        if info is None or info.numel is None or info.numel <= 1:
            return 0
        return info.numel * (BYTES["int8"] if self.implicit_int8 and len(info.shape or []) >= 2 else self.fallback)

    def consumers(self, name: str) -> list[onnx.NodeProto]:
        """The nodes that read a tensor, seen through free views and Q/DQ."""
        if name in self._consumers:
            return self._consumers[name]
        out: list[onnx.NodeProto] = []
        for node in self.g.consumers.get(name, []):
            if self.is_free(node):
                for o in node.output:
                    out += self.consumers(o)
            else:
                out.append(node)
        self._consumers[name] = out
        return out


def _kernel_io(gr: _Graph, members: list[onnx.NodeProto], outputs: set[str]) -> tuple[int, int]:
    """(activation bytes, weight bytes) of a kernel: external inputs read once each, escaping outputs written."""
    inside = {id(n) for n in members}
    produced = {o for n in members for o in n.output}
    reads: dict[str, int] = {}
    weights = 0
    for node in members:
        for name in node.input:
            if not name:
                continue
            if gr.g.is_constant(name):
                weights += gr.weight_bytes(name)
                continue
            src = gr.source(name)
            if src not in produced:
                reads[src] = gr.activation_bytes(name)
    written = 0
    for node in members:
        for name in node.output:
            users = gr.consumers(name)
            if name in outputs or any(id(u) not in inside for u in users) or _feeds_output(gr, name, outputs):
                written += gr.activation_bytes(name)
    return sum(reads.values()) + written, weights


def _feeds_output(gr: _Graph, name: str, outputs: set[str]) -> bool:
    """Whether a tensor reaches a network output through free views and Q/DQ only (however many)."""
    pending, seen = [name], set()
    while pending:
        for node in gr.g.consumers.get(pending.pop(), []):
            if not gr.is_free(node):
                continue
            if any(o in outputs for o in node.output):
                return True
            fresh = [o for o in node.output if o not in seen]
            seen.update(fresh)
            pending += fresh
    return False


def _groups(gr: _Graph, outputs: set[str]) -> list[list[onnx.NodeProto]]:
    """Nodes grouped into kernels: anchors with their epilogues, pointwise chains, the rest alone."""
    order = {id(n): i for i, n in enumerate(gr.g.nodes)}
    grouped: set[int] = set()  # ids of nodes already in a kernel
    groups: list[list[onnx.NodeProto]] = []
    for node in gr.g.nodes:
        if id(node) in grouped or gr.is_free(node):
            continue
        groups.append([node])
        grouped.add(id(node))
        if node.op_type not in ANCHORS and node.op_type not in POINTWISE:
            continue
        _grow(gr, groups[-1], grouped, outputs)
    return [sorted(g, key=lambda n: order[id(n)]) for g in groups]


def _grow(gr: _Graph, members: list[onnx.NodeProto], grouped: set[int], outputs: set[str]) -> None:
    """Absorb pointwise consumers whose every activation input is made inside the group or
    produced outside it before (a residual), as long as each absorbed tensor stays internal."""
    changed = True
    while changed:
        changed = False
        produced = {gr.source(o) for n in members for o in n.output}
        for node in list(members):
            # a tensor that leaves the network is written anyway: its readers start kernels of their own
            internal = [o for o in node.output if o not in outputs and not _feeds_output(gr, o, outputs)]
            for out in internal:
                for user in gr.consumers(out):
                    if id(user) in grouped or user.op_type not in POINTWISE:
                        continue
                    # every activation input the user takes from this group's tensors must be internal:
                    # it may add one outside input (a residual or a bias), not two
                    outside = [i for i in user.input if i and not gr.g.is_constant(i) and gr.source(i) not in produced]
                    if len(outside) > 1:
                        continue
                    members.append(user)
                    grouped.add(id(user))
                    changed = True


def _merge_shuffles(gr: _Graph, groups: list[list[onnx.NodeProto]]) -> list[list[onnx.NodeProto]]:
    """Adjacent copying Transposes (through views) become one copy."""
    merged: list[list[onnx.NodeProto]] = []
    absorbed: set[int] = set()
    for group in groups:
        if id(group[0]) in absorbed:
            continue
        if len(group) == 1 and group[0].op_type == "Transpose":
            chain = [group[0]]
            while True:
                users = gr.consumers(chain[-1].output[0])
                if len(users) == 1 and users[0].op_type == "Transpose" and not gr.is_free(users[0]):
                    chain.append(users[0])
                    absorbed.add(id(users[0]))
                else:
                    break
            merged.append(chain)
        else:
            merged.append(group)
    return merged


def traffic(model: str | Path | onnx.ModelProto, precision: str = "fp32") -> TrafficReport:
    """The fused and unfused traffic of a graph at `precision` (fp32 | fp16 | int8; "mixed" is int8)."""
    precision = "int8" if precision == "mixed" else precision
    if precision not in BYTES:
        raise ValueError(f"unknown precision {precision!r}: fp32 | fp16 | int8")
    from csa_cli.graph.costmodel import _fix_batch, _graph_batch

    proto = load_onnx(model)
    graph_batch = _graph_batch(proto)
    if graph_batch is None:
        graph_batch = 1
        proto = _fix_batch(proto, 1)
    g = index_graph(proto)
    if any(not info.static for name, info in g.tensors.items() if name not in g.constant):
        complete_shapes(g)
    gr = _Graph(g, precision)
    outputs = {o.name for o in g.graph.output}
    kernels = []
    for members in _merge_shuffles(gr, _groups(gr, outputs)):
        act, weights = _kernel_io(gr, members, outputs)
        kernels.append(Kernel(nodes=[n.name for n in members], ops=[n.op_type for n in members], activation_bytes=act // graph_batch, weight_bytes=weights))
    unfused_act = unfused_w = 0
    count = 0
    for node in g.nodes:
        if gr.is_free(node):
            continue
        act, weights = _kernel_io(gr, [node], outputs)
        unfused_act, unfused_w, count = unfused_act + act // graph_batch, unfused_w + weights, count + 1
    return TrafficReport(
        precision=precision,
        quantized_graph=gr.quantized,
        graph_batch=graph_batch,
        fused_activation_bytes=sum(k.activation_bytes for k in kernels),
        fused_weight_bytes=sum(k.weight_bytes for k in kernels),
        unfused_activation_bytes=unfused_act,
        unfused_weight_bytes=unfused_w,
        kernels=kernels,
        unfused_kernels=count,
    )


def fusion_summary(report: TrafficReport) -> dict[str, int]:
    """How many kernels of each shape ('Conv+Sigmoid+Mul': 12): for docs and for a layer-info comparison."""
    counts: dict[str, int] = defaultdict(int)
    for k in report.kernels:
        counts["+".join(k.ops)] += 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


class FusionDifference(BaseModel):
    """Where TensorRT's layers (its own --exportLayerInfo names) group nodes otherwise than this model."""

    kind: Literal["split", "merged"] = Field(description="split: one kernel here, several TensorRT layers; merged: one TensorRT layer, several kernels here")
    nodes: list[str]
    layers: list[str]


_WRAPPER = re.compile(r"(?:PWN|ForeignNode)\(|[(){}\[\]]")


def layer_nodes(layer_name: str) -> set[str]:
    """The ONNX node names a TensorRT layer name holds: fused layers join them with ' + ', pointwise
    groups wrap them in PWN(...); reformat layers and Myelin's {ForeignNode[a...b]} name ranges, not nodes."""
    parts = re.split(r" \+ |, |\.\.\.", layer_name)
    names = (_WRAPPER.sub("", p).strip() for p in parts)
    return {name for name in names if name}


def compare_fusions(report: TrafficReport, layer_names: Sequence[str]) -> list[FusionDifference]:
    """Kernels here that TensorRT ran as several layers, and TensorRT layers that span several kernels here.

    Only nodes TensorRT names count: Q/DQ and reformatting layers, and nodes inside a Myelin
    range, are left out rather than guessed.
    """
    layer_of: dict[str, str] = {}
    for layer in layer_names:
        for node in layer_nodes(layer):
            layer_of.setdefault(node, layer)
    kernel_of = {node: i for i, k in enumerate(report.kernels) for node in k.nodes}
    out: list[FusionDifference] = []
    for kernel in report.kernels:
        layers = sorted({layer_of[n] for n in kernel.nodes if n in layer_of})
        if len(layers) > 1:
            out.append(FusionDifference(kind="split", nodes=kernel.nodes, layers=layers))
    for layer in layer_names:
        kernels = sorted({kernel_of[n] for n in layer_nodes(layer) if n in kernel_of})
        if len(kernels) > 1:
            out.append(FusionDifference(kind="merged", nodes=[n for i in kernels for n in report.kernels[i].nodes], layers=[layer]))
    return out

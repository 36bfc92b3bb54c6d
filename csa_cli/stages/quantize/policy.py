"""Which weighted nodes stay in higher precision: the "mixed" policy and --keep-fp.

TensorRT's explicit-quantization guide: quantize the inputs of weighted layers, leave their
outputs to TensorRT's fusions. The mixed policy keeps the layers INT8 hurts most in FP16
(docs/quantization.md); --keep-fp adds any by name.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pydantic import BaseModel

from csa_cli.errors import UsageError
from csa_cli.graph.index import GraphIndex, index_graph
from csa_cli.graph.qdq import WEIGHTED_OPS

if TYPE_CHECKING:
    import onnx


# TensorRT's explicit-quantization guide: quantize the inputs of weighted layers (WEIGHTED_OPS),
# leave their outputs to TensorRT's fusions. Anything else (Add, Mul, Resize, pooling) runs in
# FP16/FP32 unless TensorRT fuses it into an INT8 neighbour.

# ops that carry a tensor along without mixing channels or positions in a way the policy cares about
PASSTHROUGH_OPS = {"Resize", "Reshape", "Transpose", "Identity", "BatchNormalization", "Flatten", "Squeeze", "Unsqueeze", "Cast"}


# Which mixed-policy rules apply per placement (docs/quantization.md, "--precision mixed").
# TensorRT runs a kept layer in FP16 and pays a cheap reformat at its edges. ONNX Runtime's CPU runs it
# in FP32 and pays a DequantizeLinear, a QuantizeLinear and NHWC<->NCHW transposes around it, and a
# float gate conv also pulls the gate's Resize and Sigmoid out of the integer chain: measured
# interleaved on csa-tiny (benchmarks/int8_cpu.py, docs/results.md), the five rules give 1.59x over FP32
# and these two 1.72-1.77x, with the same 99.4% top-1 agreement on the digits-trained csa-nano.
MIXED_RULES: dict[str, tuple[str, ...]] = {
    "tensorrt": ("stem", "classifier", "sigmoid-gate", "attention-product", "softmax"),
    "onnxruntime": ("attention-product", "softmax"),
}


class KeptNode(BaseModel):
    """A weighted node left in higher precision, and the rule that kept it."""

    name: str
    op_type: str
    rule: str


def upstream_weighted(g: GraphIndex, tensor: str, limit: int = 8) -> onnx.NodeProto | None:
    """The weighted node that produces `tensor`, looking through pass-through ops."""
    for _ in range(limit):
        node = g.producer.get(tensor)
        if node is None:
            return None
        if node.op_type in WEIGHTED_OPS:
            return node
        if node.op_type not in PASSTHROUGH_OPS and node.op_type not in {"Mul", "Div", "Add"}:
            return None
        tensor = node.input[0]
    return None


def view_root(g: GraphIndex, tensor: str, limit: int = 8) -> str:
    """`tensor` traced back through reshapes/transposes (so rotate(q) leads back to q)."""
    for _ in range(limit):
        node = g.producer.get(tensor)
        if node is None or node.op_type not in {"Reshape", "Transpose", "Identity", "Flatten"}:
            return tensor
        tensor = node.input[0]
    return tensor


def downstream_weighted(g: GraphIndex, tensor: str, limit: int = 8) -> list[onnx.NodeProto]:
    """The weighted nodes `tensor` reaches through pass-through ops, nearest first."""
    found = []
    frontier = [tensor]
    for _ in range(limit):
        nxt = []
        for t in frontier:
            for node in g.consumers.get(t, []):
                if node.op_type in WEIGHTED_OPS:
                    found.append(node)
                elif node.op_type in PASSTHROUGH_OPS:
                    nxt.extend(node.output)
        frontier = nxt
    return found


def default_fp_policy(model: onnx.ModelProto, placement: str = "tensorrt") -> list[KeptNode]:
    """The documented "mixed" policy: weighted nodes that stay in FP16/FP32 (docs/quantization.md).

    `placement` picks which rules apply (MIXED_RULES); all five for tensorrt.

    One set of structural rules serves every family; each fires only where its pattern exists:
    - stem: the first weighted node on the image input (all families);
    - classifier: the weighted node that produces the logits (all families);
    - sigmoid-gate: the conv before a Sigmoid used as a gate, i.e. not swish's x*sigmoid(x) (CSA step 7);
    - attention-product: the conv producing q where q meets its own rotation, q * rotate(q) (CSA steps 3-5);
    - softmax: the MatMuls that make a Softmax's input (Q.K^T) and consume its output (attn.V) (Swin; CvT uses Einsum).
    """
    g = index_graph(model, infer=False)
    kept: dict[str, KeptNode] = {}

    rules = MIXED_RULES[placement]

    def keep(node: onnx.NodeProto | None, rule: str) -> None:
        if node is not None and rule in rules and node.name not in kept:
            kept[node.name] = KeptNode(name=node.name, op_type=node.op_type, rule=rule)

    for name in (i.name for i in model.graph.input):
        for node in downstream_weighted(g, name, limit=3)[:1]:
            keep(node, "stem")
    for out in (o.name for o in model.graph.output):
        keep(upstream_weighted(g, out), "classifier")
    for node in g.nodes:
        if node.op_type == "Sigmoid":
            x = node.input[0]
            swish = any(x in c.input and node.output[0] in c.input for c in g.consumers.get(node.output[0], []) if c.op_type == "Mul")
            if not swish:
                keep(upstream_weighted(g, x), "sigmoid-gate")
        elif node.op_type == "Mul" and len(node.input) == 2:
            a, b = node.input
            if a != b and view_root(g, a) == view_root(g, b):
                keep(upstream_weighted(g, view_root(g, a)), "attention-product")
        elif node.op_type == "Softmax":
            before = upstream_weighted(g, node.input[0])
            if before is not None and before.op_type == "MatMul":
                keep(before, "softmax")
            for after in downstream_weighted(g, node.output[0], limit=3):
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


def nodes_kept_fp(model: onnx.ModelProto, precision: str, keep_fp: Sequence[str], placement: str = "tensorrt") -> list[KeptNode]:
    kept = default_fp_policy(model, placement) if precision == "mixed" else []
    names = {k.name for k in kept}
    for extra in match_keep_fp(model, keep_fp):
        if extra.name not in names:
            kept.append(extra)
            names.add(extra.name)
    return kept

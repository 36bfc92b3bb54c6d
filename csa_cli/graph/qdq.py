"""Quantized graphs: the one definition of which ops make a graph quantized, and its zero points.

Two ONNX forms of a quantized graph exist: QDQ (QuantizeLinear/DequantizeLinear pairs around
float ops; what TensorRT parses and `csa quantize` writes) and QOperator (QLinearConv and
friends; ONNX Runtime only).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnx

QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
QOPERATOR_OPS = frozenset({"QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger", "DynamicQuantizeLinear", "QLinearAdd", "QLinearMul"})
# The layers with weights: where TensorRT's explicit-quantization guide puts Q/DQ (on their inputs),
# and the layer boundaries a layer-by-layer comparison marks.
WEIGHTED_OPS: tuple[str, ...] = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def is_quantized_op(op_type: str) -> bool:
    return op_type in QDQ_OPS or op_type in QOPERATOR_OPS


def is_quantized(model: onnx.ModelProto) -> bool:
    """Whether the graph holds Q/DQ or QOperator nodes."""
    return any(is_quantized_op(node.op_type) for node in model.graph.node)


def nonzero_zero_points(model: onnx.ModelProto) -> int:
    """How many Q/DQ zero points are not 0 (TensorRT's parser accepts only 0)."""
    import numpy as np
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    consts = {n.output[0]: n for n in model.graph.node if n.op_type == "Constant"}
    bad = 0
    for node in model.graph.node:
        if node.op_type in QDQ_OPS and len(node.input) > 2 and node.input[2]:
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

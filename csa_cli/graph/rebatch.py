"""Static per-batch copies of one calibrated graph: the same Q/DQ scales and weights at another batch.

TensorRT's restricted mode takes static shapes, so each batch size needs its own ONNX. Quantizing
each export again would calibrate a different model per batch; instead the one calibrated (and
evaluated) Q/DQ graph is copied, and only what differs between the FP32 exports at the two batch
sizes is taken from the other export: the graph inputs' and outputs' shapes and any integer
constant (a Reshape target holding the batch). Every float tensor, i.e. each weight and each
Q/DQ scale, stays the evaluated graph's own, bit for bit; a difference anywhere else (another
op, another float constant) means the exports are not the same model and is refused.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from csa_cli.errors import CsaError

if TYPE_CHECKING:
    import onnx


def _constants(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    """Initializers and Constant-node values by the tensor name they define."""
    found = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].HasField("t"):
            found[node.output[0]] = node.attribute[0].t
    return found


def batch_delta(source: onnx.ModelProto, target: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    """The integer constants that differ between two exports of one model at two batch sizes.

    Raises CsaError when the exports differ in anything but those constants and their I/O shapes.
    """
    import numpy as np
    from onnx import numpy_helper

    def structure(model: onnx.ModelProto) -> list[tuple[str, tuple[str, ...], tuple[str, ...]]]:
        return [(n.op_type, tuple(n.input), tuple(n.output)) for n in model.graph.node]

    if structure(source) != structure(target):
        raise CsaError("the FP32 exports at the two batch sizes are different graphs (other nodes), so the Q/DQ graph cannot be copied to the other batch")
    if [i.name for i in source.graph.input] != [i.name for i in target.graph.input] or [o.name for o in source.graph.output] != [
        o.name for o in target.graph.output
    ]:
        raise CsaError("the FP32 exports at the two batch sizes have different inputs or outputs")
    a, b = _constants(source), _constants(target)
    if set(a) != set(b):
        raise CsaError("the FP32 exports at the two batch sizes hold different constants")
    changed: dict[str, onnx.TensorProto] = {}
    for name, tensor in a.items():
        x, y = numpy_helper.to_array(tensor), numpy_helper.to_array(b[name])
        if x.shape == y.shape and np.array_equal(x, y):
            continue
        if not (np.issubdtype(x.dtype, np.integer) and np.issubdtype(y.dtype, np.integer)):
            raise CsaError(f"the FP32 exports at the two batch sizes differ in the float tensor {name}: not the same weights")
        changed[name] = b[name]
    return changed


def rebatch_like(quantized: onnx.ModelProto, source: onnx.ModelProto, target: onnx.ModelProto) -> onnx.ModelProto:
    """`quantized` (calibrated from `source`) at `target`'s batch: its own weights and scales, target's I/O shapes and batch constants."""
    import onnx

    changed = batch_delta(source, target)
    out = onnx.ModelProto()
    out.CopyFrom(quantized)
    inits = {t.name: i for i, t in enumerate(out.graph.initializer)}
    consts = {n.output[0]: n for n in out.graph.node if n.op_type == "Constant"}
    for name, tensor in changed.items():
        if name in inits:
            out.graph.initializer[inits[name]].CopyFrom(tensor)
        elif name in consts:
            consts[name].attribute[0].t.CopyFrom(tensor)
        else:
            raise CsaError(f"the Q/DQ graph has no constant {name}, which changes with the batch size")
    shapes = {v.name: v for v in [*target.graph.input, *target.graph.output]}
    for value in [*out.graph.input, *out.graph.output]:
        if value.name in shapes:
            value.type.CopyFrom(shapes[value.name].type)
    del out.graph.value_info[:]  # intermediate shapes named the old batch: let inference redo them
    out = onnx.shape_inference.infer_shapes(out)
    onnx.checker.check_model(out)
    return out

"""One index of an ONNX graph, shared by everything that reads graphs (check, cost, quantize).

`index_graph` runs shape inference and records each tensor's type and shape, the constants
(initializers, Constant nodes and what only they feed), and each tensor's producer and
consumers. `complete_shapes` fills in the shapes inference leaves unknown behind run-time
shape arithmetic (swin's Shape -> Gather -> Div -> Concat -> Reshape) when the input is static.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import onnx


_RANDOM_OPS = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial"}


def dtype_size(elem_type: int) -> int:
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
        return None if n is None else n * dtype_size(self.elem_type)


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

    def nbytes(self, name: str) -> int | None:
        """Bytes of a tensor as the graph types it; None when its shape or type is unknown."""
        info = self.tensors.get(name)
        return None if info is None else info.nbytes

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


def shape_of(type_proto: Any) -> tuple[int, list[int | str | None] | None]:
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
        elem, dims = shape_of(vi.type)
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

    Long because it is one walk over the nodes in order, and each node either folds, infers or stays
    unknown; the three ways share the values seen so far.
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
            elem, dims = shape_of(type_proto)
            if dims is not None and all(isinstance(d, int) for d in dims):
                g.tensors[name] = TensorInfo(name, elem, dims)


def name_nodes(model: onnx.ModelProto) -> onnx.ModelProto:
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

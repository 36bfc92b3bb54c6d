"""Behaviours of the numeric core (graph/costmodel.py, graph/traffic.py) that mutation testing showed
no other test pinned: error wording, unknown shapes, stored bytes through Cast and views, scalar and
unknown-size weights, graphs exported at a batch other than 1, view chains past the search limit, which Transposes are
free (with and without perm, of unknown rank), and shapes completed before costing.

Every graph is built by hand; the expected figures are counted from the graph in the comments.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from csa_cli.errors import CsaError
from csa_cli.graph.costmodel import analyze
from csa_cli.graph.traffic import traffic

F = 4  # bytes per float32
Shape = Sequence[int | str] | None  # None: a tensor of unknown rank


def _model(
    nodes: Sequence[onnx.NodeProto],
    inputs: dict[str, Shape],
    outputs: dict[str, Shape],
    inits: dict[str, np.ndarray] | None = None,
) -> onnx.ModelProto:
    graph = helper.make_graph(
        list(nodes),
        "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None if s is None else list(s)) for n, s in inputs.items()],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None if s is None else list(s)) for n, s in outputs.items()],
        [numpy_helper.from_array(v, k) for k, v in (inits or {}).items()],
    )
    # "custom" is a domain nobody knows: shape inference leaves its ops' outputs untyped.
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("custom", 1)])


def _weights(*shape: int, dtype: type = np.float32) -> np.ndarray:
    return np.arange(int(np.prod(shape)), dtype=np.float64).reshape(shape).astype(dtype)


# --- costmodel: CostReport.traffic_at and analyze's batch argument ---


def test_traffic_at_scales_activations_with_the_batch_and_rejects_batches_below_one() -> None:
    # x[1,4] @ w[4,3] -> y[1,3]: reads 4 floats of x, writes 3 floats of y, 12 weight floats.
    report = analyze(_model([helper.make_node("MatMul", ["x", "w"], ["y"])], {"x": [1, 4]}, {"y": [1, 3]}, {"w": _weights(4, 3)}))
    for batch in (1, 3):
        t = report.traffic_at(batch)
        assert (t.batch, t.bytes_read, t.bytes_written) == (batch, batch * 4 * F + 12 * F, batch * 3 * F)
        assert t.bytes_total == t.bytes_read + t.bytes_written
        assert t.bytes_per_frame == pytest.approx((batch * 7 * F + 12 * F) / batch)
        assert t.macs_per_frame == 4 * 3
    for bad in (0, -2):
        with pytest.raises(ValueError, match=r"^batch must be at least 1$"):
            report.traffic_at(bad)
        with pytest.raises(CsaError, match=rf"^batch must be at least 1, got {bad}$"):
            analyze(_model([helper.make_node("Relu", ["x"], ["y"])], {"x": [1, 4]}, {"y": [1, 4]}), batch=bad)


# --- costmodel: MACs and sizes that shape inference leaves unknown ---


@pytest.mark.parametrize("x_shape", [None, [1, "K"]], ids=["no rank", "symbolic dim"])
@pytest.mark.parametrize("op", ["Gemm", "MatMul"])
def test_a_mac_op_with_an_operand_of_unknown_shape_counts_zero_macs_and_reports_the_operand(op: str, x_shape: Shape) -> None:
    # x has no rank (or a dim with no value), so x @ w has no MAC count even though y's shape is
    # declared; m = k @ w is still counted: 1 row of 4 times 4x3 = 12 MACs.
    nodes = [helper.make_node(op, ["x", "w"], ["y"], name="unknown"), helper.make_node("MatMul", ["k", "w"], ["m"], name="known")]
    report = analyze(_model(nodes, {"x": x_shape, "k": [1, 4]}, {"y": [2, 3], "m": [1, 3]}, {"w": _weights(4, 3)}))
    unknown, known = report.nodes
    assert (unknown.macs, known.macs, report.macs) == (0, 12, 12)
    assert report.unknown_shapes == ["x"]  # w and y have known shapes: only x blocks the count
    assert unknown.activation_bytes_read == 0 and unknown.bytes_written == 2 * 3 * F  # x unknown: counted as 0


@pytest.mark.parametrize(("trans_a", "x_shape", "y_shape", "macs"), [(0, [1, 5], [1, 7], 5 * 7), (1, [1, 3], [3, 7], 3 * 7 * 1)])
def test_gemm_macs_take_the_inner_dim_from_the_side_trans_a_names(trans_a: int, x_shape: list[int], y_shape: list[int], macs: int) -> None:
    # transA=0: A is [M, K] and K is its last dim; transA=1: A is [K, M] and K is its first.
    k = x_shape[0] if trans_a else x_shape[1]
    node = helper.make_node("Gemm", ["x", "w"], ["y"], transA=trans_a)
    report = analyze(_model([node], {"x": x_shape}, {"y": y_shape}, {"w": _weights(k, 7)}))
    assert report.macs == macs and report.unknown_shapes == []


def test_activations_of_unknown_size_are_reported_by_name_and_count_zero_bytes() -> None:
    # custom.Foo's output t is untyped: Foo reads x (4 floats) and writes 0; Relu reads 0 and writes y.
    nodes = [helper.make_node("Foo", ["x"], ["t"], domain="custom", name="foo"), helper.make_node("Relu", ["t"], ["y"], name="relu")]
    report = analyze(_model(nodes, {"x": [1, 4]}, {"y": [1, 4]}))
    assert report.unknown_shapes == ["t"]
    assert [(n.activation_bytes_read, n.bytes_written) for n in report.nodes] == [(4 * F, 0), (0, 4 * F)]
    # an input of unknown rank: Relu's input and output are both unknown
    unranked = analyze(_model([helper.make_node("Relu", ["x"], ["y"])], {"x": None}, {"y": None}))
    assert unranked.unknown_shapes == ["x", "y"]
    assert unranked.activation_bytes_read == unranked.activation_bytes_written == 0


def _weight_chain(kind: str) -> tuple[list[onnx.NodeProto], dict[str, np.ndarray], int]:
    """Nodes that make the constant `wt` ([k, 3]) from stored tensors, the stored tensors, and k."""
    if kind == "cast fp16":
        return [helper.make_node("Cast", ["w"], ["wt"], to=TensorProto.FLOAT)], {"w": _weights(4, 3, dtype=np.float16)}, 4
    if kind == "int8 dq transpose":
        dq = helper.make_node("DequantizeLinear", ["w", "s", "z"], ["d"])
        inits = {"w": _weights(3, 4, dtype=np.int8), "s": np.array(0.5, np.float32), "z": np.array(0, np.int8)}
        return [dq, helper.make_node("Transpose", ["d"], ["wt"], perm=[1, 0])], inits, 4
    if kind == "reshape":
        return [helper.make_node("Reshape", ["w", "shape"], ["wt"])], {"w": _weights(12), "shape": np.array([4, 3], np.int64)}, 4
    if kind == "tile":
        return [helper.make_node("Tile", ["w", "reps"], ["wt"])], {"w": _weights(4, 3), "reps": np.array([2, 1], np.int64)}, 8
    tensor = numpy_helper.from_array(_weights(4, 3), "value")
    return [helper.make_node("Constant", [], ["wt"], value=tensor)], {}, 4  # a Constant node


@pytest.mark.parametrize(
    ("kind", "weight_bytes", "params"),
    [
        ("cast fp16", 4 * 3 * F, 12),  # Cast makes a new tensor: it is read as FP32
        ("int8 dq transpose", 4 * 3 * 1, 12),  # read as the stored int8, through the DQ and the Transpose
        ("reshape", 12 * F, 12),  # a view reads what is stored
        ("tile", 8 * 3 * F, 24),  # Tile makes a bigger tensor: read at its own size
        ("constant node", 4 * 3 * F, 12),
    ],
)
def test_a_weight_is_read_in_the_bytes_of_the_tensor_that_holds_it(kind: str, weight_bytes: int, params: int) -> None:
    chain, inits, k = _weight_chain(kind)
    report = analyze(_model([*chain, helper.make_node("MatMul", ["x", "wt"], ["y"], name="mm")], {"x": [1, k]}, {"y": [1, 3]}, inits))
    (mm,) = [n for n in report.nodes if n.name == "mm"]
    assert all(n.folded for n in report.nodes if n.name != "mm")  # the constant-only nodes cost nothing
    assert mm.weight_bytes_read == report.weight_bytes == weight_bytes
    assert report.params == params and report.macs == k * 3


# --- traffic: the fused model's byte counts ---

C, HW = 2, 4
ACT = C * HW * HW  # elements of one image's activation


def _conv_relu(batch: int | str | None) -> onnx.ModelProto:
    """x -> Conv 1x1 -> Relu -> y, with `batch` as the first dim of x and y (None: unknown)."""
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv"), helper.make_node("Relu", ["c"], ["y"], name="relu")]
    shape = [batch, C, HW, HW]
    return _model(nodes, {"x": shape}, {"y": shape}, {"w": _weights(C, C, 1, 1), "b": _weights(C)})


@pytest.mark.parametrize(("batch", "graph_batch"), [(1, 1), (4, 4), ("N", 1), (None, 1)])
def test_traffic_is_per_image_whatever_batch_the_graph_was_exported_at(batch: int | str | None, graph_batch: int) -> None:
    # fused: Conv+Relu reads x and writes y; unfused: conv reads x, writes c; relu reads c, writes y.
    # Weights: 2x2 conv kernel + 2 biases, read once per batch pass.
    report = traffic(_conv_relu(batch), "fp32")
    assert report.graph_batch == graph_batch
    assert [k.ops for k in report.kernels] == [["Conv", "Relu"]]
    assert report.fused_activation_bytes == report.kernels[0].activation_bytes == 2 * ACT * F
    assert report.unfused_activation_bytes == 4 * ACT * F
    assert report.fused_weight_bytes == report.unfused_weight_bytes == (C * C + C) * F
    assert report.fused_per_frame(2) == 2 * ACT * F + (C * C + C) * F / 2


def test_kernel_bytes_per_image_are_whole_bytes() -> None:
    # Batch 2 at implicit int8 (1 byte each): x[2,3] + z[3] read, y[2,3] written = 15 bytes for the
    # batch; per image that is 7.5, kept as whole bytes: 7.
    model = _model([helper.make_node("Add", ["x", "z"], ["y"])], {"x": [2, 3], "z": [3]}, {"y": [2, 3]})
    report = traffic(model, "int8")
    (kernel,) = report.kernels
    assert report.graph_batch == 2
    assert kernel.activation_bytes == report.fused_activation_bytes == report.unfused_activation_bytes == 7
    assert type(kernel.activation_bytes) is int and type(report.fused_activation_bytes) is int


def test_traffic_counts_activations_of_unknown_size_as_zero() -> None:
    # custom.Foo's output t is untyped: Foo reads x (4 floats) and writes 0; Relu reads 0 and writes y.
    nodes = [helper.make_node("Foo", ["x"], ["t"], domain="custom", name="foo"), helper.make_node("Relu", ["t"], ["y"], name="relu")]
    report = traffic(_model(nodes, {"x": [1, 4]}, {"y": [1, 4]}), "fp32")
    assert [(k.ops, k.activation_bytes) for k in report.kernels] == [(["Foo"], 4 * F), (["Relu"], 4 * F)]
    # x has no rank: Relu reads 0 bytes of it and writes y
    unranked = traffic(_model([helper.make_node("Relu", ["x"], ["y"])], {"x": None}, {"y": [1, 4]}), "fp32")
    assert unranked.fused_activation_bytes == unranked.unfused_activation_bytes == 4 * F


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_scalar_and_one_element_constants_are_not_weight_reads(precision: str) -> None:
    # Conv -> Mul by a scalar -> Add a [1] constant: only the conv's kernel (rank 4) and bias (rank 1)
    # are read. fp32: 4 bytes each; fp16: 2; int8: the kernel in int8, the bias in fp16.
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv"),
        helper.make_node("Mul", ["c", "s"], ["m"], name="mul"),
        helper.make_node("Add", ["m", "e"], ["y"], name="add"),
    ]
    inits = {"w": _weights(C, C, 1, 1), "b": _weights(C), "s": np.array(2.0, np.float32), "e": np.array([1e-3], np.float32)}
    report = traffic(_model(nodes, {"x": [1, C, HW, HW]}, {"y": [1, C, HW, HW]}, inits), precision)
    expected = {"fp32": (C * C + C) * 4, "fp16": (C * C + C) * 2, "int8": C * C * 1 + C * 2}[precision]
    assert [k.ops for k in report.kernels] == [["Conv", "Mul", "Add"]]
    assert report.fused_weight_bytes == report.unfused_weight_bytes == expected


@pytest.mark.parametrize(("stored", "kernel_bytes"), [("int8 initializer", C * C * 1), ("untyped", 0)])
def test_a_dequantized_weight_is_read_as_stored_and_as_nothing_when_its_size_is_unknown(stored: str, kernel_bytes: int) -> None:
    # w (int8, 2x2x1x1) -> [custom.Foo: its output is untyped] -> DequantizeLinear -> Conv's kernel.
    # Known: the kernel is read as stored, int8 (4 bytes); unknown: as nothing. The unquantized
    # bias runs in the INT8 engine's FP16 fallback (2 x 2 bytes); the graph-level model reads it as
    # stored, FP32 (2 x 4 bytes).
    chain = [helper.make_node("Foo", ["w"], ["q"], domain="custom")] if stored == "untyped" else [helper.make_node("Identity", ["w"], ["q"])]
    nodes = [
        *chain,
        helper.make_node("DequantizeLinear", ["q", "s", "z"], ["wdq"]),
        helper.make_node("Conv", ["x", "wdq", "b"], ["y"], name="conv"),
    ]
    inits = {"w": _weights(C, C, 1, 1, dtype=np.int8), "s": np.array(0.5, np.float32), "z": np.array(0, np.int8), "b": _weights(C)}
    model = _model(nodes, {"x": [1, C, HW, HW]}, {"y": [1, C, HW, HW]}, inits)
    report = traffic(model, "int8")
    assert report.quantized_graph and [k.ops for k in report.kernels] == [["Conv"]]
    assert report.fused_weight_bytes == report.unfused_weight_bytes == kernel_bytes + C * 2
    cost = analyze(model)
    assert cost.weight_bytes == kernel_bytes + C * F
    # an untyped kernel also leaves the conv's MACs uncounted, and is named for it
    assert cost.unknown_shapes == ([] if kernel_bytes else ["wdq"])
    assert cost.macs == (C * HW * HW * C if kernel_bytes else 0)


@pytest.mark.parametrize(("views", "extra_reads"), [(1, 0), (64, 0), (65, 1)])
def test_a_chain_of_views_is_followed_up_to_64_deep(views: int, extra_reads: int) -> None:
    # x -> Relu -> r0 -> Identity x views -> Sigmoid -> y: Relu and Sigmoid fuse. Within 64 views the
    # Sigmoid's input is seen as r0, made inside the kernel: x in, y out. Past 64 the search stops at
    # the tensor 64 views up, which the kernel then reads as if it were stored: one more [1, 4] read.
    ids = [helper.make_node("Identity", [f"r{i}"], [f"r{i + 1}"]) for i in range(views)]
    nodes = [helper.make_node("Relu", ["x"], ["r0"], name="relu"), *ids, helper.make_node("Sigmoid", [f"r{views}"], ["y"], name="sig")]
    report = traffic(_model(nodes, {"x": [1, 4]}, {"y": [1, 4]}), "fp32")
    assert [k.ops for k in report.kernels] == [["Relu", "Sigmoid"]]
    assert report.fused_activation_bytes == (2 + extra_reads) * 4 * F
    assert report.unfused_activation_bytes == 4 * 4 * F  # relu: x in, r0 out; sigmoid: the same tensor in, y out


# --- costmodel: integer and QLinear forms count the same MACs as their float ops ---


def _typed_model(
    nodes: Sequence[onnx.NodeProto], inputs: dict[str, tuple[int, list[int]]], outputs: dict[str, tuple[int, list[int]]], inits: dict[str, np.ndarray]
) -> onnx.ModelProto:
    graph = helper.make_graph(
        list(nodes),
        "g",
        [helper.make_tensor_value_info(n, t, s) for n, (t, s) in inputs.items()],
        [helper.make_tensor_value_info(n, t, s) for n, (t, s) in outputs.items()],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


U8, I32 = TensorProto.UINT8, TensorProto.INT32


def test_integer_and_qlinear_convolutions_and_matmuls_count_their_macs() -> None:
    scale, zp = np.array(0.1, np.float32), np.array(0, np.uint8)
    q = {"s": scale, "z": zp}
    # conv: x[1,2,5,5] * w[3,2,3,3] (pad 1) -> y[1,3,5,5]: 75 outputs x 18 MACs = 1350
    conv_w = np.ones((3, 2, 3, 3), np.uint8)
    cases = {
        "ConvInteger": (
            helper.make_node("ConvInteger", ["x", "w"], ["y"], pads=[1, 1, 1, 1]),
            {"x": (U8, [1, 2, 5, 5])},
            {"y": (I32, [1, 3, 5, 5])},
            {"w": conv_w},
            1350,
        ),
        "QLinearConv": (
            helper.make_node("QLinearConv", ["x", "s", "z", "w", "s", "z", "s", "z"], ["y"], pads=[1, 1, 1, 1]),
            {"x": (U8, [1, 2, 5, 5])},
            {"y": (U8, [1, 3, 5, 5])},
            {"w": conv_w, **q},
            1350,
        ),
        # matmul: a[1,2,4] @ b[4,3] -> y[1,2,3] (batch 1): 6 outputs x 4 MACs = 24
        "MatMulInteger": (
            helper.make_node("MatMulInteger", ["a", "b"], ["y"]),
            {"a": (U8, [1, 2, 4])},
            {"y": (I32, [1, 2, 3])},
            {"b": np.ones((4, 3), np.uint8)},
            24,
        ),
        "QLinearMatMul": (
            helper.make_node("QLinearMatMul", ["a", "s", "z", "b", "s", "z", "s", "z"], ["y"]),
            {"a": (U8, [1, 2, 4])},
            {"y": (U8, [1, 2, 3])},
            {"b": np.ones((4, 3), np.uint8), **q},
            24,
        ),
    }
    for op, (node, inputs, outputs, inits, macs) in cases.items():
        report = analyze(_typed_model([node], inputs, outputs, inits))
        assert report.macs == macs, op


# --- traffic: which Transposes are free, and shapes completed before costing ---


@pytest.mark.parametrize(
    ("x_shape", "perm", "kernels", "fused"),
    [
        # no perm reverses the axes (ONNX): [1,4] -> [4,1] moves only the size-1 axis, free; Relu
        # reads x and writes y: 2 x 4 floats
        ([1, 4], None, [["Relu"]], 2 * 4 * F),
        # [1,2,3] -> [3,2,1] really moves data: the Transpose copies (reads x, writes t: 2 x 6
        # floats), then Relu reads t and writes y (2 x 6 floats)
        ([1, 2, 3], None, [["Transpose"], ["Relu"]], 4 * 6 * F),
        # a perm that keeps the order of the axes bigger than 1 is free: [1,2,1,3] -> [1,1,2,3]
        ([1, 2, 1, 3], [0, 2, 1, 3], [["Relu"]], 2 * 6 * F),
        # the same rank with the big axes swapped copies: [1,2,1,3] -> [1,3,1,2]
        ([1, 2, 1, 3], [0, 3, 2, 1], [["Transpose"], ["Relu"]], 4 * 6 * F),
    ],
)
def test_a_transpose_is_free_when_it_moves_only_size_one_axes_and_no_perm_reverses(
    x_shape: list[int], perm: list[int] | None, kernels: list[list[str]], fused: int
) -> None:
    attrs = {} if perm is None else {"perm": perm}
    out_shape = [x_shape[p] for p in (perm or list(range(len(x_shape)))[::-1])]
    nodes = [helper.make_node("Transpose", ["x"], ["t"], name="tr", **attrs), helper.make_node("Relu", ["t"], ["y"], name="relu")]
    report = traffic(_model(nodes, {"x": x_shape}, {"y": out_shape}), "fp32")
    assert [k.ops for k in report.kernels] == kernels
    assert report.fused_activation_bytes == report.unfused_activation_bytes == fused
    assert report.unfused_kernels == len(kernels)


@pytest.mark.parametrize(("perm", "kernels", "fused"), [([1, 0], [["Transpose"]], 4 * F), ([0, 1], [], 0)])
def test_a_transpose_of_a_tensor_of_unknown_rank_copies_unless_its_perm_is_the_identity(perm: list[int], kernels: list[list[str]], fused: int) -> None:
    # x has no rank, so no axis is known to be size 1: perm [1,0] copies (reads x: unknown, 0 bytes;
    # writes y [4,1]: 4 floats); the identity perm moves nothing, a view: no kernel at all.
    nodes = [helper.make_node("Transpose", ["x"], ["y"], name="tr", perm=perm)]
    report = traffic(_model(nodes, {"x": None}, {"y": [4, 1]}), "fp32")
    assert [k.ops for k in report.kernels] == kernels
    assert report.fused_activation_bytes == report.unfused_activation_bytes == fused


def test_a_free_transpose_inside_a_pointwise_chain_is_looked_through_like_a_view() -> None:
    # x[1,4] -> Relu -> r -> Transpose [1,4]->[4,1] (free) -> t -> Sigmoid -> y[4,1]. Fused: one
    # kernel, whose Sigmoid reads t, which is r as stored, made inside: x in, y out = 2 x 4 floats.
    # Unfused: relu reads x, writes r; sigmoid reads r (through t), writes y = 4 x 4 floats.
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Transpose", ["r"], ["t"], name="tr", perm=[1, 0]),
        helper.make_node("Sigmoid", ["t"], ["y"], name="sig"),
    ]
    report = traffic(_model(nodes, {"x": [1, 4]}, {"y": [4, 1]}), "fp32")
    assert [(k.nodes, k.ops) for k in report.kernels] == [(["relu", "sig"], ["Relu", "Sigmoid"])]
    assert report.fused_activation_bytes == 2 * 4 * F
    assert report.unfused_activation_bytes == 4 * 4 * F and report.unfused_kernels == 2


def test_shapes_left_unknown_behind_shape_arithmetic_are_completed_before_costing() -> None:
    # x[1,4,6] -> Shape -> Div by [1,1,2] -> Concat with [2] -> [1,4,3,2] -> Reshape(x) -> Relu ->
    # Softmax -> y (declared without a shape). ONNX inference does not propagate through Div, so r,
    # a and y are unknown until the shape arithmetic is evaluated; then Shape/Div/Concat fold
    # (free) and Reshape is a view. Relu reads x, writes a; Softmax reads a, writes y: 4 x 24 floats.
    nodes = [
        helper.make_node("Shape", ["x"], ["s"], name="shape"),
        helper.make_node("Div", ["s", "half"], ["d"], name="div"),
        helper.make_node("Concat", ["d", "two"], ["target"], name="cat", axis=0),
        helper.make_node("Reshape", ["x", "target"], ["r"], name="reshape"),
        helper.make_node("Relu", ["r"], ["a"], name="relu"),
        helper.make_node("Softmax", ["a"], ["y"], name="softmax"),
    ]
    inits = {"half": np.array([1, 1, 2], np.int64), "two": np.array([2], np.int64)}
    report = traffic(_model(nodes, {"x": [1, 4, 6]}, {"y": None}, inits), "fp32")
    assert [(k.nodes, k.ops) for k in report.kernels] == [(["relu"], ["Relu"]), (["softmax"], ["Softmax"])]
    assert [k.activation_bytes for k in report.kernels] == [2 * 24 * F, 2 * 24 * F]
    assert report.fused_activation_bytes == report.unfused_activation_bytes == 4 * 24 * F
    assert report.fused_weight_bytes == report.unfused_weight_bytes == 0 and report.unfused_kernels == 2


def test_parameters_are_float_or_quantized_weights_of_two_or_more_elements_traced_through_casts() -> None:
    # a 1x1 conv 1 -> 2 channels without bias: its weight [2,1,1,1] is 2 parameters
    conv = analyze(_model([helper.make_node("Conv", ["x", "w"], ["y"])], {"x": [1, 1, 3, 3]}, {"y": [1, 2, 3, 3]}, {"w": _weights(2, 1, 1, 1)}))
    assert conv.params == 2
    # an integer constant cast to float (index or shape arithmetic) is not a parameter, whatever the Cast makes of it
    cast = _model(
        [helper.make_node("Cast", ["k"], ["kf"], to=TensorProto.FLOAT), helper.make_node("Mul", ["x", "kf"], ["y"])],
        {"x": [1, 4]},
        {"y": [1, 4]},
        {"k": np.arange(4, dtype=np.int64).reshape(1, 4)},
    )
    assert analyze(cast).params == 0
    # the same graph with a float constant: 4 parameters
    floats = _model([helper.make_node("Mul", ["x", "k"], ["y"])], {"x": [1, 4]}, {"y": [1, 4]}, {"k": _weights(1, 4)})
    assert analyze(floats).params == 4


def test_a_kernel_writes_every_output_it_makes() -> None:
    # x[1,4] -> Split -> a[1,2], b[1,2], both graph outputs: one kernel reads 4 floats and writes 2 + 2.
    nodes = [helper.make_node("Split", ["x", "sizes"], ["a", "b"], name="split", axis=1)]
    report = traffic(_model(nodes, {"x": [1, 4]}, {"a": [1, 2], "b": [1, 2]}, {"sizes": np.array([2, 2], np.int64)}), "fp32")
    assert len(report.kernels) == 1
    assert report.fused_activation_bytes == (4 + 2 + 2) * F


def test_a_pointwise_op_with_two_inputs_from_outside_the_chain_starts_its_own_kernel() -> None:
    # r = Relu(x); y = Where(c, r, z): Where takes c and z from outside the Relu's kernel (two outside
    # activations), so it is not an epilogue: two kernels. Add(r, z) takes one (a residual): fused.
    inputs: dict[str, Shape] = {"x": [1, 4], "z": [1, 4]}
    where = [helper.make_node("Relu", ["x"], ["r"], name="relu"), helper.make_node("Where", ["c", "r", "z"], ["y"], name="where")]
    graph = _model(where, inputs, {"y": [1, 4]})
    graph.graph.input.append(helper.make_tensor_value_info("c", TensorProto.BOOL, [1, 4]))
    assert [k.nodes for k in traffic(graph, "fp32").kernels] == [["relu"], ["where"]]
    add = [helper.make_node("Relu", ["x"], ["r"], name="relu"), helper.make_node("Add", ["r", "z"], ["y"], name="add")]
    assert [k.nodes for k in traffic(_model(add, inputs, {"y": [1, 4]}), "fp32").kernels] == [["relu", "add"]]


def test_a_node_whose_output_nothing_reads_is_costed_not_fatal() -> None:
    # exporters leave dead nodes: Relu(x) -> r, read by nothing and not a graph output; Sigmoid(x) -> y.
    # Each is its own kernel; sig reads x and writes y = 2 x 4 floats.
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="dead"), helper.make_node("Sigmoid", ["x"], ["y"], name="sig")]
    report = traffic(_model(nodes, {"x": [1, 4]}, {"y": [1, 4]}), "fp32")
    assert sorted(k.nodes[0] for k in report.kernels) == ["dead", "sig"]
    assert next(k for k in report.kernels if k.nodes == ["sig"]).activation_bytes == 2 * 4 * F


@pytest.mark.parametrize("views", [1, 40])
def test_a_tensor_that_reaches_a_graph_output_through_any_number_of_views_is_written(views: int) -> None:
    # Relu(x) -> r -> Identity x views -> y: the kernel reads x and writes r (what y views): 2 x 4 floats.
    nodes = [helper.make_node("Relu", ["x"], ["v0"], name="relu")]
    nodes += [helper.make_node("Identity", [f"v{i}"], [f"v{i + 1}" if i + 1 < views else "y"]) for i in range(views)]
    report = traffic(_model(nodes, {"x": [1, 4]}, {"y": [1, 4]}), "fp32")
    assert [k.nodes for k in report.kernels] == [["relu"]]
    assert report.fused_activation_bytes == 2 * 4 * F


@pytest.mark.parametrize("view_first", [True, False])
def test_a_pointwise_consumer_of_a_tensor_that_is_also_a_graph_output_through_a_view_is_not_fused(view_first: bool) -> None:
    # r = Relu(x) is written anyway (it reaches output o through an Identity), so the Sigmoid reading
    # it starts its own kernel rather than joining the Relu's, whichever of the two readers comes first.
    readers = [helper.make_node("Identity", ["r"], ["o"]), helper.make_node("Sigmoid", ["r"], ["y"], name="sig")]
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"), *(readers if view_first else readers[::-1])]
    report = traffic(_model(nodes, {"x": [1, 4]}, {"o": [1, 4], "y": [1, 4]}), "fp32")
    assert [k.nodes for k in report.kernels] == [["relu"], ["sig"]]
    assert report.fused_activation_bytes == (2 + 2) * 4 * F  # relu: x in, r out; sig: r in, y out


def test_a_consumer_refused_for_two_outside_inputs_does_not_stop_the_next_one_fusing() -> None:
    # r = Relu(x) has two pointwise readers: Max(r, a, b) takes two outside activations (refused),
    # Sigmoid(r) none (fused into the Relu's kernel).
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Max", ["r", "a", "b"], ["m"], name="max"),
        helper.make_node("Sigmoid", ["r"], ["y"], name="sig"),
    ]
    report = traffic(_model(nodes, {"x": [1, 4], "a": [1, 4], "b": [1, 4]}, {"m": [1, 4], "y": [1, 4]}), "fp32")
    assert [k.nodes for k in report.kernels] == [["relu", "sig"], ["max"]]


def test_a_tensor_reaching_a_graph_output_through_one_of_two_view_branches_is_written() -> None:
    # r = Relu(x) -> Identity -> i2 -> Identity -> y (the output), and r -> Identity -> i1, read by nothing:
    # the dead branch is searched too, and the live one still counts. The kernel writes r: 2 x 4 floats in all.
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Identity", ["r"], ["i2"]),
        helper.make_node("Identity", ["r"], ["i1"]),
        helper.make_node("Identity", ["i2"], ["y"]),
    ]
    report = traffic(_model(nodes, {"x": [1, 4]}, {"y": [1, 4]}), "fp32")
    assert report.fused_activation_bytes == 2 * 4 * F


def test_a_constant_operand_of_unknown_size_is_named_even_where_no_mac_count_needs_it() -> None:
    # k: an int8 constant through an op nobody knows (untyped) and a DequantizeLinear, added to x:
    # its size is counted as 0 and named, as every unknown size is, though an Add has no MACs.
    nodes = [
        helper.make_node("Foo", ["k"], ["q"], domain="custom"),
        helper.make_node("DequantizeLinear", ["q", "s", "z"], ["kdq"]),
        helper.make_node("Add", ["x", "kdq"], ["y"], name="add"),
    ]
    inits = {"k": _weights(1, 4, dtype=np.int8), "s": np.array(0.5, np.float32), "z": np.array(0, np.int8)}
    cost = analyze(_model(nodes, {"x": [1, 4]}, {"y": [1, 4]}, inits))
    assert cost.unknown_shapes == ["kdq"]
    assert next(n for n in cost.nodes if n.op == "Add").weight_bytes_read == 0


def test_an_empty_optional_input_does_not_end_the_count_of_the_inputs_after_it() -> None:
    # Resize(x, roi="", scales): the 4 float scales after the empty roi are still read (16 bytes).
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], name="resize", mode="nearest")
    cost = analyze(_model([node], {"x": [1, 4, 8, 8]}, {"y": [1, 4, 16, 16]}, {"scales": np.array([1, 1, 2, 2], np.float32)}))
    assert cost.weight_bytes == 4 * F
    assert (cost.nodes[0].activation_bytes_read, cost.nodes[0].bytes_written) == (4 * 8 * 8 * F, 4 * 16 * 16 * F)


def test_a_node_reads_every_activation_it_takes_and_per_image_bytes_are_whole() -> None:
    # Where(cond[3] bool, x[2,3], y[2,3]) at graph batch 2: reads 3 + 24 + 24 = 51 bytes, 25 per image
    # (whole bytes, rounded down); writes 24 bytes, 12 per image.
    node = helper.make_node("Where", ["cond", "x", "y"], ["z"], name="where")
    model = _model([node], {"x": [2, 3], "y": [2, 3]}, {"z": [2, 3]})
    model.graph.input.append(helper.make_tensor_value_info("cond", TensorProto.BOOL, [3]))
    cost = analyze(model)
    assert cost.graph_batch == 2
    assert (cost.nodes[0].activation_bytes_read, cost.nodes[0].bytes_written) == (51 // 2, 24 // 2)
    assert isinstance(cost.nodes[0].activation_bytes_read, int)


def test_constant_operands_of_a_pointwise_op_are_not_outside_inputs() -> None:
    # Clip(Relu(x), lo, hi) with constant bounds: no outside activation, so the Clip is the Relu's epilogue.
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"), helper.make_node("Clip", ["r", "lo", "hi"], ["y"], name="clip")]
    inits = {"lo": np.array(0.0, np.float32), "hi": np.array(6.0, np.float32)}
    report = traffic(_model(nodes, {"x": [1, 4]}, {"y": [1, 4]}, inits), "fp32")
    assert [k.nodes for k in report.kernels] == [["relu", "clip"]]


def test_bytes_per_frame_share_the_weights_over_the_batch_fused_and_unfused() -> None:
    # Conv 4->4 3x3 with bias, then Relu: 144 + 4 weights; per frame at batch b: activations + weights / b.
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["y"], name="relu")]
    inits = {"w": _weights(4, 4, 3, 3), "b": _weights(4)}
    report = traffic(_model(nodes, {"x": [1, 4, 8, 8]}, {"y": [1, 4, 8, 8]}, inits), "fp32")
    assert report.fused_weight_bytes == report.unfused_weight_bytes == (144 + 4) * F
    assert report.unfused_activation_bytes > report.fused_activation_bytes  # the unfused Relu reads and writes c
    for batch in (1, 4):
        assert report.fused_per_frame(batch) == report.fused_activation_bytes + (144 + 4) * F / batch
        assert report.unfused_per_frame(batch) == report.unfused_activation_bytes + (144 + 4) * F / batch


def test_the_graph_batch_is_the_first_real_input_s_even_after_initializers_listed_as_inputs() -> None:
    # Old exporters (IR < 4) list every initializer among the graph inputs too; here one comes first.
    model = _model([helper.make_node("Add", ["x", "k"], ["y"])], {"x": [2, 4]}, {"y": [2, 4]}, {"k": _weights(1, 4)})
    model.graph.input.insert(0, helper.make_tensor_value_info("k", TensorProto.FLOAT, [1, 4]))
    report = analyze(model)
    assert report.graph_batch == 2
    assert report.nodes[0].activation_bytes_read == 4 * F  # per image: x's 2 x 4 floats over the batch of 2


def test_a_weight_or_bias_behind_dequantizelinear_counts_as_parameters_whatever_its_stored_type() -> None:
    # Conv with an int8 kernel and an int32 bias (how ONNX Runtime stores a quantized bias), each through
    # DequantizeLinear: 4 x 4 kernel + 4 bias = 20 parameters, as in the float graph.
    dq = [
        helper.make_node("DequantizeLinear", ["wq", "s", "zq"], ["w"]),
        helper.make_node("DequantizeLinear", ["bq", "s", "zb"], ["b"]),
        helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv"),
    ]
    inits = {
        "wq": _weights(4, 4, 1, 1, dtype=np.int8),
        "bq": _weights(4, dtype=np.int32),
        "s": np.array(0.5, np.float32),
        "zq": np.array(0, np.int8),
        "zb": np.array(0, np.int32),
    }
    quantized = analyze(_model(dq, {"x": [1, 4, 2, 2]}, {"y": [1, 4, 2, 2]}, inits))
    floats = analyze(
        _model([helper.make_node("Conv", ["x", "w", "b"], ["y"])], {"x": [1, 4, 2, 2]}, {"y": [1, 4, 2, 2]}, {"w": _weights(4, 4, 1, 1), "b": _weights(4)})
    )
    assert quantized.params == floats.params == 4 * 4 + 4
    assert quantized.weight_bytes == 4 * 4 * 1 + 4 * 4  # stored: int8 kernel, int32 bias


@pytest.mark.parametrize(("outputs", "written"), [(["", "b"], 2 * F), (["a", "b"], 4 * F)])
def test_a_node_writes_each_output_it_names_and_an_empty_name_does_not_end_the_count(outputs: list[str], written: int) -> None:
    # Split(x[1,4]) -> (a, b), 2 floats each; with no name for the first part, b is still written.
    node = helper.make_node("Split", ["x", "sizes"], outputs, name="split", axis=1)
    cost = analyze(_model([node], {"x": [1, 4]}, {o: [1, 2] for o in outputs if o}, {"sizes": np.array([2, 2], np.int64)}))
    assert cost.nodes[0].bytes_written == written


def test_int8_precision_stores_matrices_in_int8_and_vectors_in_the_fp16_fallback() -> None:
    # Gemm(x, W[4,3], b[3]) in an INT8 engine built without Q/DQ: W (2-D) in int8, b (1-D) in FP16.
    node = helper.make_node("Gemm", ["x", "w", "b"], ["y"], name="gemm")
    report = traffic(_model([node], {"x": [1, 4]}, {"y": [1, 3]}, {"w": _weights(4, 3), "b": _weights(3)}), "int8")
    assert report.fused_weight_bytes == 4 * 3 * 1 + 3 * 2


def test_readers_behind_two_views_of_one_tensor_are_all_its_consumers() -> None:
    # r = Relu(x) is read through two Identity views, by a Sigmoid and a Tanh: both join the Relu's kernel.
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Identity", ["r"], ["a"]),
        helper.make_node("Identity", ["r"], ["b"]),
        helper.make_node("Sigmoid", ["a"], ["y1"], name="sig"),
        helper.make_node("Tanh", ["b"], ["y2"], name="tanh"),
    ]
    report = traffic(_model(nodes, {"x": [1, 4]}, {"y1": [1, 4], "y2": [1, 4]}), "fp32")
    assert [k.nodes for k in report.kernels] == [["relu", "sig", "tanh"]]


def test_an_empty_optional_input_does_not_end_a_kernel_s_weight_reads() -> None:
    # Resize(x, roi="", scales): the 4 float scales after the empty roi are read (16 bytes at FP32).
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], name="resize", mode="nearest")
    report = traffic(_model([node], {"x": [1, 4, 8, 8]}, {"y": [1, 4, 16, 16]}, {"scales": np.array([1, 1, 2, 2], np.float32)}), "fp32")
    assert report.fused_weight_bytes == 4 * F


def test_only_copying_transposes_are_merged_a_lone_pointwise_op_before_one_is_not() -> None:
    # Relu alone, then a Transpose that copies (NCHW -> NHWC): two kernels, not one.
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"), helper.make_node("Transpose", ["r"], ["y"], name="t", perm=[0, 2, 3, 1])]
    report = traffic(_model(nodes, {"x": [1, 4, 2, 3]}, {"y": [1, 2, 3, 4]}), "fp32")
    assert [k.nodes for k in report.kernels] == [["relu"], ["t"]]


def test_the_fusion_summary_counts_every_kernel_of_a_shape() -> None:
    from csa_cli.graph.traffic import fusion_summary

    # most frequent first (not alphabetical): two Tanh kernels, then one Sigmoid
    nodes = [
        helper.make_node("Tanh", ["x"], ["a"], name="t1"),
        helper.make_node("Sigmoid", ["x"], ["s"], name="s1"),
        helper.make_node("Tanh", ["x"], ["b"], name="t2"),
    ]
    report = traffic(_model(nodes, {"x": [1, 4]}, {"a": [1, 4], "s": [1, 4], "b": [1, 4]}), "fp32")
    assert list(fusion_summary(report).items()) == [("Tanh", 2), ("Sigmoid", 1)]


def test_a_pointwise_reader_after_a_non_pointwise_one_still_fuses() -> None:
    # r = Relu(x) is read by a Conv first (its own kernel), then by a Sigmoid (the Relu's epilogue).
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Conv", ["r", "w"], ["c"], name="conv"),
        helper.make_node("Sigmoid", ["r"], ["y"], name="sig"),
    ]
    report = traffic(_model(nodes, {"x": [1, 4, 2, 2]}, {"c": [1, 4, 2, 2], "y": [1, 4, 2, 2]}, {"w": _weights(4, 4, 1, 1)}), "fp32")
    assert [k.nodes for k in report.kernels] == [["relu", "sig"], ["conv"]]


def test_a_constant_weight_of_unknown_size_reads_as_nothing() -> None:
    # w through an op nobody knows: a constant with no shape, multiplied into x: 0 weight bytes, no failure.
    nodes = [helper.make_node("Foo", ["w"], ["wf"], domain="custom"), helper.make_node("Mul", ["x", "wf"], ["y"], name="mul")]
    report = traffic(_model(nodes, {"x": [1, 4]}, {"y": [1, 4]}, {"w": _weights(1, 4)}), "fp32")
    assert report.fused_weight_bytes == 0 and report.fused_activation_bytes == 2 * 4 * F


def test_a_batch_of_1_is_a_batch() -> None:
    model = _model([helper.make_node("Relu", ["x"], ["y"])], {"x": ["N", 4]}, {"y": ["N", 4]})
    assert analyze(model, batch=1).batch == 1 and analyze(model, batch=1).nodes[0].activation_bytes_read == 4 * F


def test_two_copying_transposes_merge_and_the_kernels_after_them_stay() -> None:
    # NCHW -> NHWC -> NCHW as two copying Transposes: one copy kernel; the Relu after it is still a kernel.
    nodes = [
        helper.make_node("Transpose", ["x"], ["t"], name="t1", perm=[0, 2, 3, 1]),
        helper.make_node("Transpose", ["t"], ["u"], name="t2", perm=[0, 3, 1, 2]),
        helper.make_node("Relu", ["u"], ["y"], name="relu"),
    ]
    report = traffic(_model(nodes, {"x": [1, 4, 2, 3]}, {"y": [1, 4, 2, 3]}), "fp32")
    assert [k.nodes for k in report.kernels] == [["t1", "t2"], ["relu"]]


def test_a_convtranspose_with_an_input_of_unknown_shape_counts_no_macs() -> None:
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="up", kernel_shape=[2, 2], strides=[2, 2])
    report = analyze(_model([node], {"x": None}, {"y": [1, 4, 4, 4]}, {"w": _weights(4, 4, 2, 2)}))
    assert report.macs == 0 and report.unknown_shapes == ["x"]

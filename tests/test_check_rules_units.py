"""`csa check`'s rules pinned one behaviour at a time on hand-built graphs: the exact findings (rule,
severity, wording) each DLA rule gives, every Conv auto_pad value, static vs dynamic and 3-D vs 4-D
Slices, and unnamed nodes reported by their output name with the same findings as named ones.

Expected findings are worked out by hand from docs/check.md and shared/reference/restricted-mode.md."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from csa_cli.stages.check.checks import check_onnx

Triple = tuple[str, str, str]


def graph(
    nodes: Sequence[onnx.NodeProto], inputs: dict[str, list[int]], outputs: dict[str, list[int]], inits: dict[str, np.ndarray] | None = None
) -> onnx.ModelProto:
    """A model from float inputs/outputs {name: shape} and initializers {name: array}."""
    g = helper.make_graph(
        list(nodes),
        "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs.items()],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs.items()],
        [numpy_helper.from_array(v, k) for k, v in (inits or {}).items()],
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def findings(model: onnx.ModelProto, rules: str = "dla") -> dict[str, list[Triple]]:
    """{node name: [(rule, verdict, message), ...]} of the nodes (graph inputs/outputs left out)."""
    report = check_onnx(model, rules)
    names = {n.output[0] if not n.name else n.name for n in model.graph.node}
    return {r.name: [(f.rule, f.verdict, f.message) for f in r.findings] for r in report.nodes if r.name in names}


def w(*shape: int) -> np.ndarray:
    return np.full(shape, 0.1, dtype=np.float32)


def conv(k: int = 3, s: int = 1, p: int = 1, hw: int = 16, cin: int = 8, cout: int = 8, group: int = 1, **attrs: object) -> onnx.ModelProto:
    out = (hw + 2 * p - k) // s + 1
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="n", kernel_shape=[k, k], strides=[s, s], pads=[p] * 4, group=group, **attrs)
    return graph([node], {"x": [1, cin, hw, hw]}, {"y": [1, cout, out, out]}, {"w": w(cout, cin // group, k, k)})


def resize(mode: str, scales: list[float] | None, out: list[int], sizes: list[int] | None = None, hw: int = 8) -> onnx.ModelProto:
    if sizes is not None:
        node = helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], name="n", mode=mode)
        inits = {"sizes": np.array(sizes, np.int64)}
    else:
        node = helper.make_node("Resize", ["x", "", "scales"], ["y"], name="n", mode=mode)
        inits = {"scales": np.array(scales, np.float32)}
    return graph([node], {"x": [1, 4, hw, hw]}, {"y": out}, inits)


def pool(op: str, k: int, hw: int) -> onnx.ModelProto:
    if op.startswith("Global"):
        return graph([helper.make_node(op, ["x"], ["y"], name="n")], {"x": [1, 4, hw, hw]}, {"y": [1, 4, 1, 1]})
    node = helper.make_node(op, ["x"], ["y"], name="n", kernel_shape=[k, k], strides=[k, k])
    return graph([node], {"x": [1, 4, hw, hw]}, {"y": [1, 4, hw // k, hw // k]})


def unary(op: str) -> onnx.ModelProto:
    return graph([helper.make_node(op, ["x"], ["y"], name="n")], {"x": [1, 8, 4, 4]}, {"y": [1, 8, 4, 4]})


def concat(axis: int) -> onnx.ModelProto:
    out = [1, 8, 4, 4] if axis % 4 == 1 else [1, 4, 8, 4]
    return graph([helper.make_node("Concat", ["a", "b"], ["y"], name="n", axis=axis)], {"a": [1, 4, 4, 4], "b": [1, 4, 4, 4]}, {"y": out})


def deconv(pad: int = 0, group: int = 1, dilation: int = 1) -> onnx.ModelProto:
    attrs = {"kernel_shape": [2, 2], "strides": [2, 2], "pads": [pad] * 4, "group": group, "dilations": [dilation, dilation]}
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="n", **attrs)
    out = (4 - 1) * 2 + dilation * (2 - 1) + 1 - 2 * pad
    return graph([node], {"x": [1, 4, 4, 4]}, {"y": [1, 4 * group // group, out, out]}, {"w": w(4, 4 // group, 2, 2)})


def slice_(rank: int = 4, dynamic: bool = False) -> onnx.ModelProto:
    """x[..., :2] on the last axis; starts from a graph input when `dynamic`."""
    shape = [1, 4, 8, 8][4 - rank :]
    out = [*shape[:-1], 2]
    inits = {"ends": np.array([2], np.int64), "axes": np.array([rank - 1], np.int64)}
    inputs: dict[str, list[int]] = {"x": shape}
    if dynamic:
        node = helper.make_node("Slice", ["x", "starts", "ends", "axes"], ["y"], name="n")
        g = graph([node], inputs, {"y": out}, inits)
        g.graph.input.append(helper.make_tensor_value_info("starts", TensorProto.INT64, [1]))
        return g
    inits["starts"] = np.array([0], np.int64)
    return graph([helper.make_node("Slice", ["x", "starts", "ends", "axes"], ["y"], name="n")], inputs, {"y": out}, inits)


def resize_bad(message: str) -> list[Triple]:
    return [("dla-resize", "violation", message)]


INORM = [("normalization", "violation", "InstanceNormalization is not BatchNormalization")]
MATMUL_2 = [("matmul-activations", "violation", "MatMul of two activations (a, b)")]
LINEAR_1_5 = resize_bad("linear: scales 1.5x1.5 (8x8 -> 12x12): DLA takes integer scales 1-4")
SLICE_VIOLATION = [("dla-slice", "violation", "slice is not static and 4-D")]
SLICE_WARNING = [("dla-slice", "warning", "slice on DLA: FP16 only")]
PAD_BAD = "padding [3, 3, 3, 3] not within 0-31 and < kernel [3, 3]"

# Every DLA rule's exact findings on a node "n", worked out by hand from docs/check.md's table.
DLA_CASES: list[tuple[str, Callable[[], onnx.ModelProto], list[Triple]]] = [
    ("conv ok", lambda: conv(), []),
    ("conv kernel 33", lambda: conv(k=33, hw=40), [("dla-conv", "violation", "kernel 33x33 outside 1-32")]),
    ("conv stride 9", lambda: conv(s=9), [("dla-conv", "violation", "stride [9, 9] outside 1-8")]),
    ("conv pad = kernel", lambda: conv(p=3), [("dla-conv", "violation", PAD_BAD)]),
    ("conv stride and pad", lambda: conv(s=9, p=3), [("dla-conv", "violation", f"stride [9, 9] outside 1-8; {PAD_BAD}")]),
    ("conv dilation 33", lambda: conv(k=1, p=0, hw=4, dilations=[33, 33]), [("dla-conv", "violation", "dilation [33, 33] outside 1-32")]),
    ("maxpool 9", lambda: pool("MaxPool", 9, 18), [("dla-pool", "violation", "MaxPool: window 9x9 outside 1-8")]),
    ("maxpool 2", lambda: pool("MaxPool", 2, 16), []),
    ("global pool 16", lambda: pool("GlobalAveragePool", 0, 16), [("dla-pool", "violation", "GlobalAveragePool: window 16x16 outside 1-8")]),
    ("global pool 8", lambda: pool("GlobalMaxPool", 0, 8), []),
    ("deconv ok", lambda: deconv(), []),
    ("deconv pad", lambda: deconv(pad=1), [("dla-deconv", "violation", "padding [1, 1, 1, 1]")]),
    ("deconv dilation", lambda: deconv(dilation=2), [("dla-deconv", "violation", "dilation")]),
    ("concat channels", lambda: concat(1), []),
    ("concat -3", lambda: concat(-3), []),
    ("concat axis 2", lambda: concat(2), [("dla-concat", "violation", "concatenation on axis 2 (DLA: channel axis only)")]),
    ("resize nearest 2", lambda: resize("nearest", [1, 1, 2, 2], [1, 4, 16, 16]), []),
    ("resize nearest 8", lambda: resize("nearest", [1, 1, 8, 8], [1, 4, 64, 64]), []),
    ("resize linear 4", lambda: resize("linear", [1, 1, 4, 4], [1, 4, 32, 32]), []),
    ("resize nearest 1 x 2", lambda: resize("nearest", [1, 1, 1, 2], [1, 4, 8, 16]), []),
    ("resize linear 1.5", lambda: resize("linear", [1, 1, 1.5, 1.5], [1, 4, 12, 12]), LINEAR_1_5),
    ("resize linear 8", lambda: resize("linear", [1, 1, 8, 8], [1, 4, 64, 64]), resize_bad("linear: scales 8x8 (8x8 -> 64x64): DLA takes integer scales 1-4")),
    (
        "resize nearest 0.5 x 2",
        lambda: resize("nearest", [1, 1, 0.5, 2], [1, 4, 4, 16]),
        resize_bad("nearest: scales 0.5x2 (8x8 -> 4x16): DLA takes integer scales 1-32"),
    ),
    ("resize by sizes 8 -> 12", lambda: resize("linear", None, [1, 4, 12, 12], sizes=[1, 4, 12, 12]), LINEAR_1_5),
    ("resize channels", lambda: resize("nearest", [1, 2, 2, 2], [1, 8, 16, 16]), resize_bad("nearest: resizes the batch or channel axis (scales 1x2x2x2)")),
    ("resize cubic", lambda: resize("cubic", [1, 1, 2, 2], [1, 4, 16, 16]), resize_bad("cubic resize (DLA: nearest or bilinear)")),
    ("slice static 4-D", lambda: slice_(), SLICE_WARNING),
    ("slice 3-D", lambda: slice_(rank=3), SLICE_VIOLATION),
    ("slice dynamic starts", lambda: slice_(dynamic=True), SLICE_VIOLATION),
    ("softmax", lambda: unary("Softmax"), [("softmax", "warning", "Softmax on DLA: FP16 only, Orin only, approximate")]),
    ("erf", lambda: unary("Erf"), [("erf-gelu", "violation", "Erf (GELU)")]),
    ("hardswish", lambda: unary("HardSwish"), [("activation", "violation", "HardSwish activation")]),
    ("relu", lambda: unary("Relu"), []),
    ("abs", lambda: unary("Abs"), []),
    ("neg", lambda: unary("Neg"), [("dla-layers", "violation", "Neg is not a DLA layer")]),
    ("instance norm", lambda: instance_norm(), INORM),
]


def conv1d() -> onnx.ModelProto:
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="n", kernel_shape=[3], pads=[1, 1])
    return graph([node], {"x": [1, 8, 16]}, {"y": [1, 8, 16]}, {"w": w(8, 8, 3)})


def conv_unknown_kernel() -> onnx.ModelProto:
    """No kernel_shape and a weight of unknown shape: nothing to judge the kernel by."""
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="n")
    g = graph([node], {"x": [1, 8, 16, 16]}, {"y": [1, 8, 16, 16]})
    g.graph.input.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, ["o", "i", "kh", "kw"]))
    return g


def conv_no_group(cin: int) -> onnx.ModelProto:
    """A 1x1 conv of `cin` channels with no `group` attribute at all (ONNX's default: 1)."""
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="n", kernel_shape=[1, 1])
    return graph([node], {"x": [1, cin, 2, 2]}, {"y": [1, 8, 2, 2]}, {"w": w(8, cin, 1, 1)})


def maxpool(kernel: list[int], strides: list[int], shape: list[int], out: list[int]) -> onnx.ModelProto:
    node = helper.make_node("MaxPool", ["x"], ["y"], name="n", kernel_shape=kernel, strides=strides)
    return graph([node], {"x": shape}, {"y": out})


# The limits' edges: the last value allowed passes, the first one past it is named in the message.
DLA_CASES += [
    ("conv kernel 32 pad 31", lambda: conv(k=32, p=31, hw=32), []),
    ("conv pad 2 kernel 3", lambda: conv(p=2), []),
    ("conv stride 8", lambda: conv(k=1, p=0, s=8), []),
    ("conv dilation 32", lambda: conv(k=1, p=0, hw=4, dilations=[32, 32]), []),
    ("conv 8192 out channels", lambda: conv(cin=1, cout=8192, hw=2), []),
    ("conv 8193 out channels", lambda: conv(cin=1, cout=8193, hw=2), [("dla-conv", "violation", "channels 1 -> 8193 outside 1-8192")]),
    (
        "conv 8193 groups",
        lambda: conv(k=1, p=0, cin=8193, cout=8193, hw=1, group=8193),
        [("dla-conv", "violation", "groups 8193 outside 1-8192; channels 8193 -> 8193 outside 1-8192")],
    ),
    ("conv 1-D", conv1d, [("dla-conv", "violation", "1-D convolution (DLA: 2-D only)")]),
    ("conv kernel unknown", conv_unknown_kernel, [("dla-conv", "violation", "kernel size unknown")]),
    ("maxpool 8", lambda: pool("MaxPool", 8, 16), []),
    ("maxpool stride 16", lambda: maxpool([1, 1], [16, 16], [1, 4, 32, 32], [1, 4, 2, 2]), []),
    ("maxpool stride 1", lambda: maxpool([3, 3], [1, 1], [1, 4, 8, 8], [1, 4, 6, 6]), []),
    ("conv 5000 channels, no group attribute", lambda: conv_no_group(5000), []),
    (
        "maxpool stride 17",
        lambda: maxpool([1, 1], [17, 17], [1, 4, 34, 34], [1, 4, 2, 2]),
        [("dla-pool", "violation", "MaxPool: stride [17, 17] outside 1-16")],
    ),
    ("maxpool 1-D", lambda: maxpool([2], [2], [1, 4, 16], [1, 4, 8]), [("dla-pool", "violation", "MaxPool: 1-D pooling")]),
    ("deconv groups", lambda: deconv(group=2), [("dla-deconv", "violation", "groups")]),
    ("deconv all three", lambda: deconv(pad=1, group=2, dilation=2), [("dla-deconv", "violation", "padding [1, 1, 1, 1], groups, dilation")]),
    ("resize nearest 32", lambda: resize("nearest", [1, 1, 32, 32], [1, 4, 32, 32], hw=1), []),
    (
        "resize nearest 33",
        lambda: resize("nearest", [1, 1, 33, 33], [1, 4, 33, 33], hw=1),
        resize_bad("nearest: scales 33x33 (1x1 -> 33x33): DLA takes integer scales 1-32"),
    ),
    ("reshape", lambda: view_reshape(), [("dla-layers", "violation", "Reshape: no shuffle layer in the DLA table")]),
]


def view_reshape() -> onnx.ModelProto:
    node = helper.make_node("Reshape", ["x", "shape"], ["y"], name="n")
    return graph([node], {"x": [1, 8, 4, 4]}, {"y": [1, 128]}, {"shape": np.array([1, 128], np.int64)})


def instance_norm() -> onnx.ModelProto:
    node = helper.make_node("InstanceNormalization", ["x", "s", "b"], ["y"], name="n")
    return graph([node], {"x": [1, 8, 4, 4]}, {"y": [1, 8, 4, 4]}, {"s": w(8), "b": w(8)})


@pytest.mark.parametrize(("case", "build", "expected"), DLA_CASES, ids=[c[0] for c in DLA_CASES])
def test_each_dla_rule_gives_its_exact_rule_severity_and_message(case: str, build: Callable[[], onnx.ModelProto], expected: list[Triple]) -> None:
    report = check_onnx(build(), "dla")
    assert findings(build()) == {"n": expected}
    # The summary follows the severities: only a violation makes the graph non-compliant.
    assert report.compliant == (not any(v == "violation" for _, v, _ in expected))
    assert [(f.rule, f.verdict) for f in report.violations if f.node == "n"] == [(r, v) for r, v, _ in expected if v == "violation"]
    assert [(f.rule, f.verdict) for f in report.warnings if f.node == "n"] == [(r, v) for r, v, _ in expected if v == "warning"]
    assert report.nodes[-1].verdict == (expected[0][1] if expected else "ok")


@pytest.mark.parametrize(
    ("auto_pad", "expected"),
    [
        (None, []),
        ("NOTSET", []),
        ("VALID", []),
        ("SAME_UPPER", [("dla-conv", "warning", "auto_pad SAME_UPPER: padding not checked")]),
        ("SAME_LOWER", [("dla-conv", "warning", "auto_pad SAME_LOWER: padding not checked")]),
    ],
)
def test_every_conv_auto_pad_value_and_its_dla_verdict(auto_pad: str | None, expected: list[Triple]) -> None:
    """Explicit pads are judged under NOTSET/VALID; SAME_* computes them at build time: a warning."""
    attrs = {} if auto_pad is None else {"auto_pad": auto_pad}
    out = 14 if auto_pad == "VALID" else 16
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="n", kernel_shape=[3, 3], **attrs)
    model = graph([node], {"x": [1, 8, 16, 16]}, {"y": [1, 8, out, out]}, {"w": w(8, 8, 3, 3)})
    assert findings(model) == {"n": expected}
    assert check_onnx(model, "dla").compliant
    assert [(f.rule, f.verdict) for f in check_onnx(model, "dla").warnings] == [(r, v) for r, v, _ in expected]


def layernorm(named: bool) -> onnx.ModelProto:
    """LayerNorm written out as ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div, nodes named after their outputs or unnamed."""
    spec = [
        ("ReduceMean", ["x"], "mean"),
        ("Sub", ["x", "mean"], "d"),
        ("Pow", ["d", "two"], "sq"),
        ("ReduceMean", ["sq"], "var"),
        ("Add", ["var", "eps"], "ve"),
        ("Sqrt", ["ve"], "std"),
        ("Div", ["d", "std"], "y"),
    ]
    nodes = [helper.make_node(op, ins, [out], name=out if named else "", **({"axes": [-1]} if op == "ReduceMean" else {})) for op, ins, out in spec]
    inits = {"two": np.array(2.0, np.float32), "eps": np.array(1e-5, np.float32)}
    return graph(nodes, {"x": [1, 16, 8]}, {"y": [1, 16, 8]}, inits)


def test_unnamed_layernorm_expansion_is_reported_node_by_node_under_output_names() -> None:
    part = "is part of a LayerNorm written out as ReduceMean/Sub/Pow/Sqrt/Div"
    for rules in ("restricted", "dla"):
        got = findings(layernorm(named=False), rules)
        assert got == findings(layernorm(named=True), rules)
        assert list(got) == ["mean", "d", "sq", "var", "ve", "std", "y"]
        ops = {"mean": "ReduceMean", "d": "Sub", "sq": "Pow", "var": "ReduceMean", "ve": "Add", "std": "Sqrt", "y": "Div"}
        for name, op in ops.items():
            extra = [("reduce", "violation", "ReduceMean")] if op == "ReduceMean" else []
            if op == "Sqrt" and rules == "dla":
                extra = [("dla-layers", "violation", "Sqrt is not a DLA layer")]  # unary other than Abs
            assert got[name] == [("normalization", "violation", f"{op} {part}"), *extra], (rules, name)


UNNAMED_CASES = [c for c in DLA_CASES if c[2]] + [("layernorm", lambda: layernorm(named=True), [])]


@pytest.mark.parametrize(("case", "build", "expected"), UNNAMED_CASES, ids=[c[0] for c in UNNAMED_CASES])
def test_an_unnamed_node_gets_the_findings_of_a_named_one_under_its_output_name(
    case: str, build: Callable[[], onnx.ModelProto], expected: list[Triple]
) -> None:
    named = build()
    unnamed = build()
    for node in unnamed.graph.node:
        node.name = ""
    rename = {n.name: n.output[0] for n in named.graph.node}
    for rules in ("restricted", "dla"):
        want = {rename[k]: v for k, v in findings(named, rules).items()}
        assert findings(unnamed, rules) == want
        report = check_onnx(unnamed, rules)
        assert {f.node for f in [*report.violations, *report.warnings]} <= {*want, *(i.name for i in unnamed.graph.input), "y"}


@pytest.mark.parametrize(
    ("rank", "dynamic", "expected"), [(4, False, SLICE_WARNING), (3, False, SLICE_VIOLATION), (4, True, SLICE_VIOLATION), (3, True, SLICE_VIOLATION)]
)
def test_slice_static_vs_dynamic_and_3d_vs_4d(rank: int, dynamic: bool, expected: list[Triple]) -> None:
    model = slice_(rank, dynamic)
    assert findings(model) == {"n": expected}
    report = check_onnx(model, "dla")
    assert report.compliant == (expected == SLICE_WARNING)
    assert report.nodes[-1].verdict == expected[0][1]
    assert report.counts_by_rule["dla-slice"].model_dump() == {
        "ok": 0,
        "violation": int(expected == SLICE_VIOLATION),
        "warning": int(expected == SLICE_WARNING),
    }


def matmul(constant: bool) -> onnx.ModelProto:
    node = helper.make_node("MatMul", ["a", "b"], ["y"], name="n")
    if constant:
        return graph([node], {"a": [1, 4, 8]}, {"y": [1, 4, 4]}, {"b": w(8, 4)})
    return graph([node], {"a": [1, 4, 8], "b": [1, 8, 4]}, {"y": [1, 4, 4]})


def quantize(zero_point: int | None) -> onnx.ModelProto:
    """QuantizeLinear with a constant zero point, or (None) one fed from a graph input."""
    node = helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["y"], name="n")
    inits: list[onnx.TensorProto] = [numpy_helper.from_array(np.array(0.1, np.float32), "s")]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 2, 2])]
    if zero_point is None:
        inputs.append(helper.make_tensor_value_info("zp", TensorProto.UINT8, []))
    else:
        inits.append(numpy_helper.from_array(np.array(zero_point, np.uint8), "zp"))
    out = [helper.make_tensor_value_info("y", TensorProto.UINT8, [1, 4, 2, 2])]
    return helper.make_model(helper.make_graph([node], "g", inputs, out, inits), opset_imports=[helper.make_opsetid("", 17)])


def relu(shape: list[int]) -> onnx.ModelProto:
    return graph([helper.make_node("Relu", ["x"], ["y"], name="n")], {"x": shape}, {"y": shape})


UNCONFIRMED = "a TensorRT layer no public source places in or out of the safety scope"
FC = "MatMul with a constant operand: a fully connected layer; a 1x1 Conv is the form known to build"
ASYMMETRIC = ("qdq-zero-point", "violation", "1 of 1 zero point(s) non-zero (asymmetric quantization)")
NOT_CONSTANT = ("qdq-zero-point", "violation", "zero point is not a constant: symmetric quantization cannot be verified")

# The same graphs under both rule sets: (restricted findings, dla findings) on node "n", by hand.
BOTH_CASES: list[tuple[str, Callable[[], onnx.ModelProto], list[Triple], list[Triple]]] = [
    ("relu", lambda: unary("Relu"), [], []),
    ("neg", lambda: unary("Neg"), [("op-allowlist", "warning", f"Neg: {UNCONFIRMED}")], [("dla-layers", "violation", "Neg is not a DLA layer")]),
    (
        "sin",
        lambda: unary("Sin"),
        [("op-allowlist", "violation", "Sin is not on the restricted-mode allowlist")],
        [("dla-layers", "violation", "Sin is not a DLA layer")],
    ),
    ("softmax", lambda: unary("Softmax"), [("softmax", "violation", "Softmax")], [("softmax", "warning", "Softmax on DLA: FP16 only, Orin only, approximate")]),
    ("erf", lambda: unary("Erf"), [("erf-gelu", "violation", "Erf (GELU)")], [("erf-gelu", "violation", "Erf (GELU)")]),
    ("hardswish", lambda: unary("HardSwish"), [("activation", "violation", "HardSwish activation")], [("activation", "violation", "HardSwish activation")]),
    ("matmul of activations", lambda: matmul(False), MATMUL_2, MATMUL_2),
    ("matmul of a weight", lambda: matmul(True), [("matmul-activations", "warning", FC)], []),
    ("conv kernel 33", lambda: conv(k=33, hw=40), [], [("dla-conv", "violation", "kernel 33x33 outside 1-32")]),
    ("resize scales", lambda: resize("linear", [1, 1, 2, 2], [1, 4, 16, 16]), [], []),
    (
        "resize sizes",
        lambda: resize("linear", None, [1, 4, 16, 16], sizes=[1, 4, 16, 16]),
        [("resize-sizes", "violation", "Resize given sizes (give scales)")],
        [],
    ),
    ("slice static", lambda: slice_(), [("op-allowlist", "warning", f"Slice: {UNCONFIRMED}")], SLICE_WARNING),
    (
        "slice dynamic",
        lambda: slice_(dynamic=True),
        [("shape-ops", "violation", "Slice takes a shape computed at run time (starts)"), ("op-allowlist", "warning", f"Slice: {UNCONFIRMED}")],
        SLICE_VIOLATION,
    ),
    ("symmetric quantize", lambda: quantize(0), [], []),
    ("asymmetric quantize", lambda: quantize(3), [ASYMMETRIC], [ASYMMETRIC]),
    ("zero point not constant", lambda: quantize(None), [NOT_CONSTANT], [NOT_CONSTANT]),
    ("4097 channels", lambda: relu([1, 4097, 1, 1]), [("limits", "violation", "4097 channels > 4096 (y)")], []),
    ("4096 channels", lambda: relu([1, 4096, 1, 1]), [], []),
    ("height 4097", lambda: relu([1, 1, 4097, 2]), [("limits", "violation", "4097x2 > 4096 (y)")], []),
    ("width 4097", lambda: relu([1, 1, 2, 4097]), [("limits", "violation", "2x4097 > 4096 (y)")], []),
]


@pytest.mark.parametrize(("batch", "expected"), [(16, []), (17, [("limits", "violation", "batch 17 > 16")])])
def test_batch_over_16_is_a_restricted_violation_on_the_graph_input(batch: int, expected: list[Triple]) -> None:
    report = check_onnx(relu([batch, 4, 2, 2]), "all")
    on_input = [(f.rule, f.rule_set, f.verdict, f.message) for r in report.nodes if r.name == "x" for f in r.findings]
    assert on_input == [(r, "restricted", v, m) for r, v, m in expected]
    assert report.rule_sets == {"restricted": not expected, "dla": True}
    for rules, want in (("restricted", expected), ("dla", [])):  # each rule set alone: the limit is restricted mode's
        assert [(f.rule, f.verdict, f.message) for f in check_onnx(relu([batch, 4, 2, 2]), rules).violations] == want


def shape_of() -> onnx.ModelProto:
    node = helper.make_node("Shape", ["x"], ["y"], name="n")
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 4, 4])]
    out = [helper.make_tensor_value_info("y", TensorProto.INT64, [4])]
    return helper.make_model(helper.make_graph([node], "g", inputs, out), opset_imports=[helper.make_opsetid("", 17)])


def conv_kernel_attr_unknown_weight() -> onnx.ModelProto:
    """kernel_shape given, weight of unknown shape: the attribute alone judges the kernel."""
    g = conv_unknown_kernel()
    g.graph.node[0].attribute.append(helper.make_attribute("kernel_shape", [3, 3]))
    g.graph.node[0].attribute.append(helper.make_attribute("pads", [1, 1, 1, 1]))
    return g


def conv_no_attributes() -> onnx.ModelProto:
    """A 1x1 Conv with no kernel_shape/strides/pads/dilations: the defaults (stride 1, no padding) pass."""
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="n")
    return graph([node], {"x": [1, 8, 4, 4]}, {"y": [1, 8, 4, 4]}, {"w": w(8, 8, 1, 1)})


MORE_CASES: list[tuple[str, Callable[[], onnx.ModelProto], list[Triple], list[Triple]]] = [
    ("shape", shape_of, [("shape-ops", "violation", "Shape: shape arithmetic")], [("shape-ops", "violation", "Shape: shape arithmetic")]),
    ("instance norm", instance_norm, INORM, INORM),
    ("conv kernel attribute, weight unknown", conv_kernel_attr_unknown_weight, [], []),
    ("conv with no attributes", conv_no_attributes, [], []),
    ("conv 8192 in channels to 1", lambda: conv(k=1, p=0, cin=8192, cout=1, hw=1), [], []),
    ("conv 8193 in channels", lambda: conv(k=1, p=0, cin=8193, cout=1, hw=1), [], [("dla-conv", "violation", "channels 8193 -> 1 outside 1-8192")]),
    (
        "global pool of a 3-D map",
        lambda: graph([helper.make_node("GlobalAveragePool", ["x"], ["y"], name="n")], {"x": [1, 4, 16]}, {"y": [1, 4, 1]}),
        [],
        [("dla-pool", "violation", "GlobalAveragePool: window unknown")],
    ),
    ("height 4096", lambda: relu([1, 1, 4096, 1]), [], []),
    ("width 4096", lambda: relu([1, 1, 1, 4096]), [], []),
]


@pytest.mark.parametrize(("case", "build", "restricted", "dla"), BOTH_CASES + MORE_CASES, ids=[c[0] for c in BOTH_CASES + MORE_CASES])
def test_restricted_and_dla_findings_on_the_same_graph_and_the_node_s_worst(
    case: str, build: Callable[[], onnx.ModelProto], restricted: list[Triple], dla: list[Triple]
) -> None:
    """Under `all` a node's findings are its restricted then its DLA ones; its verdict the first violation, else the first warning."""
    model = build()
    assert findings(model, "restricted") == {"n": restricted}
    assert findings(model, "dla") == {"n": dla}
    assert findings(model, "all") == {"n": restricted + dla}
    report = check_onnx(model, "all")
    io_bad = {f.rule_set for f in report.violations if f.rule == "dynamic-shape"}  # the unknown weight's graph input
    per_set = {"restricted": restricted, "dla": dla}
    assert report.rule_sets == {s: s not in io_bad and not any(v == "violation" for _, v, _ in got) for s, got in per_set.items()}
    assert report.compliant == all(report.rule_sets.values())
    both = restricted + dla
    worst = next((t for t in both if t[1] == "violation"), None) or next(iter(both), None)
    node = next(r for r in report.nodes if r.name == "n")
    assert (node.verdict, node.rule, node.message) == ((worst[1], worst[0], worst[2]) if worst else ("ok", None, None))


def test_dynamic_dimensions_are_named_on_graph_inputs_and_outputs_under_each_rule_set() -> None:
    model = graph([helper.make_node("Relu", ["x"], ["y"], name="n")], {"x": ["N", 8, 4, 4]}, {"y": ["N", 8, 4, 4]})
    report = check_onnx(model, "all")
    got = [(f.node, f.op, f.rule, f.rule_set, f.verdict, f.message) for f in report.violations]
    want = []
    for kind, name in (("graph input", "x"), ("graph output", "y")):
        msg = f"{kind} '{name}' has dynamic dimensions (Nx8x4x4): export with a static batch"
        want += [(name, kind, "dynamic-shape", s, "violation", msg) for s in ("restricted", "dla")]
    assert got == want
    assert report.rule_sets == {"restricted": False, "dla": False}


def test_layernorm_counts_by_op_and_by_rule() -> None:
    report = check_onnx(layernorm(named=True), "restricted")
    assert {op: c.model_dump() for op, c in report.counts_by_op.items()} == {
        op: {"ok": 0, "violation": n, "warning": 0} for op, n in {"Add": 1, "Div": 1, "Pow": 1, "ReduceMean": 2, "Sqrt": 1, "Sub": 1}.items()
    }
    assert {r: c.model_dump() for r, c in report.counts_by_rule.items()} == {
        "normalization": {"ok": 0, "violation": 7, "warning": 0},
        "reduce": {"ok": 0, "violation": 2, "warning": 0},
    }


def test_the_expansion_ends_at_the_div_the_affine_scale_after_it_is_not_part_of_it() -> None:
    model = layernorm(named=True)
    model.graph.node[-1].output[0] = "normed"
    model.graph.node.append(helper.make_node("Mul", ["normed", "gamma"], ["y"], name="gamma_mul"))
    model.graph.initializer.append(numpy_helper.from_array(np.full([8], 0.5, np.float32), "gamma"))
    got = findings(model, "restricted")
    assert got["gamma_mul"] == []
    assert got["y"] == [  # the Div node (named after its original output)
        ("normalization", "violation", "Div is part of a LayerNorm written out as ReduceMean/Sub/Pow/Sqrt/Div")
    ]


def test_rules_default_to_restricted_and_an_unknown_set_is_a_usage_error() -> None:
    from csa_cli.errors import UsageError

    model = unary("Softmax")
    assert check_onnx(model).rules == "restricted"
    assert findings(model, "restricted") == {"n": [("softmax", "violation", "Softmax")]}
    assert check_onnx(model).model_dump() == check_onnx(model, "restricted").model_dump()
    with pytest.raises(UsageError, match="unknown rule set 'tensorrt'") as err:
        check_onnx(model, "tensorrt")
    assert err.value.hint == "use --rules restricted, dla or all"


def test_a_resize_without_a_mode_is_checked_as_nearest_onnx_s_default() -> None:
    plain = resize("nearest", [1, 1, 2, 2], [1, 4, 16, 16])
    del plain.graph.node[0].attribute[:]  # no mode attribute at all
    assert findings(plain) == findings(resize("nearest", [1, 1, 2, 2], [1, 4, 16, 16]))
    big = resize("nearest", [1, 1, 40, 40], [1, 4, 320, 320])
    del big.graph.node[0].attribute[:]
    assert findings(big) == findings(resize("nearest", [1, 1, 40, 40], [1, 4, 320, 320]))  # nearest's limit (32), not linear's


@pytest.mark.parametrize("op", ["LogSoftmax", "Hardmax"])
def test_softmax_like_ops_are_dla_violations_under_the_softmax_rule(op: str) -> None:
    assert ("softmax", "violation", op) in findings(unary(op))["n"]


def layernorm_with_adds(extra_adds: int) -> onnx.ModelProto:
    """layernorm() with `extra_adds` more Adds between the variance and the Sqrt: a longer expansion."""
    spec = [("ReduceMean", ["x"], "mean"), ("Sub", ["x", "mean"], "d"), ("Pow", ["d", "two"], "sq"), ("ReduceMean", ["sq"], "var")]
    last = "var"
    for i in range(extra_adds + 1):
        spec.append(("Add", [last, "eps"], f"ve{i}"))
        last = f"ve{i}"
    spec += [("Sqrt", [last], "std"), ("Div", ["d", "std"], "y")]
    nodes = [helper.make_node(op, ins, [out], name=out, **({"axes": [-1]} if op == "ReduceMean" else {})) for op, ins, out in spec]
    return graph(nodes, {"x": [1, 16, 8]}, {"y": [1, 16, 8]}, {"two": np.array(2.0, np.float32), "eps": np.array(1e-5, np.float32)})


@pytest.mark.parametrize(("extra_adds", "marked"), [(0, True), (6, True), (7, False), (9, False)])
def test_the_layernorm_search_takes_at_most_12_nodes_after_the_reducemean(extra_adds: int, marked: bool) -> None:
    # The search from the Sub finds Sub, Div, Pow, ReduceMean, the Adds, then the Sqrt: 6 + extra_adds nodes,
    # so up to 6 extra Adds the Sqrt is the 12th node found and the expansion is recognized.
    got = findings(layernorm_with_adds(extra_adds), "restricted")
    assert (("normalization", "violation", "Sqrt is part of a LayerNorm written out as ReduceMean/Sub/Pow/Sqrt/Div") in got["std"]) is marked
    assert any(rule == "normalization" for rule, _, _ in got["d"]) is marked


def test_the_reciprocal_form_ending_in_a_mul_that_is_the_graph_output_is_recognized() -> None:
    # x * 1/sqrt(var + eps): the last node is a Mul whose output nothing consumes (the graph output).
    model = layernorm(named=True)
    model.graph.node[-1].CopyFrom(helper.make_node("Reciprocal", ["std"], ["rstd"], name="rstd"))
    model.graph.node.append(helper.make_node("Mul", ["d", "rstd"], ["y"], name="y"))
    got = findings(model, "restricted")
    part = "is part of a LayerNorm written out as ReduceMean/Sub/Pow/Sqrt/Div"
    ops = {"mean": "ReduceMean", "d": "Sub", "sq": "Pow", "var": "ReduceMean", "ve": "Add", "std": "Sqrt", "rstd": "Reciprocal", "y": "Mul"}
    assert {name: found[0] for name, found in got.items()} == {name: ("normalization", "violation", f"{op} {part}") for name, op in ops.items()}


@pytest.mark.parametrize(
    ("scale", "out", "expected"),
    [
        (20.001, 160, []),  # within 1e-4 x scale of 20: float rounding of an integer scale
        (2.001, 16, resize_bad("nearest: scales 2.001x2.001 (8x8 -> 16x16): DLA takes integer scales 1-32")),
        (2.0001, 16, []),
    ],
)
def test_an_integer_resize_scale_is_recognized_within_a_relative_tolerance(scale: float, out: int, expected: list[Triple]) -> None:
    assert findings(resize("nearest", [1, 1, scale, scale], [1, 4, out, out])) == {"n": expected}


@pytest.mark.parametrize(("k", "expected"), [(2, []), (9, [("dla-pool", "violation", "AveragePool: window 9x9 outside 1-8")])])
def test_averagepool_windows_are_checked_like_maxpool(k: int, expected: list[Triple]) -> None:
    assert findings(pool("AveragePool", k, 18 if k == 9 else 16)) == {"n": expected}


def test_check_graph_itself_refuses_an_unknown_rule_set() -> None:
    from csa_cli.errors import UsageError
    from csa_cli.graph.index import index_graph
    from csa_cli.stages.check.checks import check_graph

    with pytest.raises(UsageError, match="unknown rule set 'tensorrt'") as err:
        check_graph(index_graph(unary("Relu")), "tensorrt")
    assert err.value.hint == "use --rules restricted, dla or all"


def test_the_report_names_the_file_checked_and_no_file_for_an_in_memory_model(tmp_path: Path) -> None:
    model = unary("Relu")
    path = tmp_path / "relu.onnx"
    onnx.save(model, path)
    assert check_onnx(path).path == str(path)
    assert check_onnx(str(path)).path == str(path)
    assert check_onnx(model).path is None


def test_the_mul_form_of_the_square_is_part_of_the_expansion_too() -> None:
    model = layernorm(named=True)
    model.graph.node[2].CopyFrom(helper.make_node("Mul", ["d", "d"], ["sq"], name="sq"))  # d * d, not Pow(d, 2)
    got = findings(model, "restricted")
    assert got["sq"] == [("normalization", "violation", "Mul is part of a LayerNorm written out as ReduceMean/Sub/Pow/Sqrt/Div")]
    assert all(found and found[0][0] == "normalization" for found in got.values())


def test_operator_form_quantization_is_an_allowlist_violation_in_restricted_mode() -> None:
    node = helper.make_node("DynamicQuantizeLinear", ["x"], ["y", "y_scale", "y_zp"], name="n")
    g = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, [1, 8, 4, 4])],
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    message = "DynamicQuantizeLinear: operator-form quantization (the TensorRT parser takes Q/DQ nodes)"
    assert findings(model, "restricted") == {"n": [("op-allowlist", "violation", message)]}


def test_a_folded_node_with_a_non_zero_third_constant_is_not_judged_as_a_zero_point() -> None:
    # Gemm(A, B, C) of constants folds away at build time; its C is a bias, not a Q/DQ zero point.
    node = helper.make_node("Gemm", ["a", "b", "c"], ["k"], name="n")
    model = graph(
        [node, helper.make_node("Add", ["x", "k"], ["y"], name="add")],
        {"x": [2, 2]},
        {"y": [2, 2]},
        {"a": w(2, 2), "b": w(2, 2), "c": np.ones([2], np.float32)},
    )
    for rules in ("restricted", "dla"):
        assert findings(model, rules)["n"] == []


def test_a_graph_input_s_node_result_carries_its_finding() -> None:
    model = graph([helper.make_node("Relu", ["x"], ["y"], name="n")], {"x": ["N", 8, 4, 4]}, {"y": [1, 8, 4, 4]})
    result = next(r for r in check_onnx(model, "restricted").nodes if r.name == "x")
    message = "graph input 'x' has dynamic dimensions (Nx8x4x4): export with a static batch"
    assert (result.op, result.verdict, result.rule, result.message) == ("graph input", "violation", "dynamic-shape", message)
    from csa_cli.stages.check.rules import RULES

    assert result.source == RULES["dynamic-shape"].sources["restricted"] and result.source
    assert [f.message for f in result.findings] == [message]


def _untyped(*names: str) -> list[onnx.ValueInfoProto]:
    return [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in names]


@pytest.mark.parametrize("axis", [1, -3])
def test_a_concat_of_unknown_rank_is_judged_as_4_d(axis: int) -> None:
    node = helper.make_node("Concat", ["a", "b"], ["y"], name="n", axis=axis)
    model = helper.make_model(helper.make_graph([node], "g", _untyped("a", "b"), _untyped("y")), opset_imports=[helper.make_opsetid("", 17)])
    assert [f for f in findings(model)["n"] if f[0] == "dla-concat"] == []


def test_a_graph_input_of_unknown_rank_is_named_as_such() -> None:
    model = helper.make_model(
        helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="n")], "g", _untyped("x"), _untyped("y")),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    messages = [f.message for f in check_onnx(model, "restricted").violations if f.node == "x"]
    assert messages == ["graph input 'x' has dynamic dimensions (unknown rank): export with a static batch"]


def test_check_graph_defaults_to_the_restricted_rules() -> None:
    from csa_cli.graph.index import index_graph
    from csa_cli.stages.check.checks import check_graph

    report = check_graph(index_graph(unary("Softmax")))
    assert report.rules == "restricted" and list(report.rule_sets) == ["restricted"]


def test_a_reducemean_that_is_a_graph_output_is_only_a_reduce() -> None:
    node = helper.make_node("ReduceMean", ["x"], ["y"], name="n", axes=[-1], keepdims=1)
    assert findings(graph([node], {"x": [1, 8, 4]}, {"y": [1, 8, 1]}), "restricted") == {"n": [("reduce", "violation", "ReduceMean")]}


@pytest.mark.parametrize(("op", "shape"), [("Size", []), ("Shape", [4])])
def test_shape_and_size_feed_shape_arithmetic(op: str, shape: list[int]) -> None:
    # Size(x) or Shape(x) -> s; Add(s, one) -> t: the Add computes on a run-time shape.
    nodes = [helper.make_node(op, ["x"], ["s"], name="size"), helper.make_node("Add", ["s", "one"], ["t"], name="add")]
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 4, 4])],
        [helper.make_tensor_value_info("t", TensorProto.INT64, shape)],
        [numpy_helper.from_array(np.array(1, np.int64), "one")],
    )
    got = findings(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), "restricted")
    assert ("shape-ops", "violation", "Add computes on a run-time shape") in got["add"]


def test_a_conv_pad_of_32_is_past_dla_s_limit_even_under_a_larger_kernel() -> None:
    message = "kernel 33x33 outside 1-32; padding [32, 32, 32, 32] not within 0-31 and < kernel [33, 33]"
    assert findings(conv(k=33, p=32, hw=40)) == {"n": [("dla-conv", "violation", message)]}


def test_a_resize_whose_scales_are_computed_at_run_time_has_unknown_scales_on_dla() -> None:
    node = helper.make_node("Resize", ["x", "", "s"], ["y"], name="n", mode="nearest")
    model = helper.make_model(
        helper.make_graph(
            [node],
            "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8]), helper.make_tensor_value_info("s", TensorProto.FLOAT, [4])],
            _untyped("y"),
        ),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    assert ("dla-resize", "violation", "scales unknown") in findings(model)["n"]


def test_a_scale_just_over_1_is_not_an_integer_scale() -> None:
    # 1.00015 is 1.5e-4 from 1: past the 1e-4 x max(scale, 1) tolerance
    assert findings(resize("nearest", [1, 1, 1.00015, 1.00015], [1, 4, 8, 8])) == {
        "n": resize_bad("nearest: scales 1.00015x1.00015 (8x8 -> 8x8): DLA takes integer scales 1-32")
    }


def test_a_3_d_concat_on_its_channel_axis_counted_from_the_end_is_fine_on_dla() -> None:
    node = helper.make_node("Concat", ["a", "b"], ["y"], name="n", axis=-2)
    model = graph([node], {"a": [1, 4, 8], "b": [1, 4, 8]}, {"y": [1, 8, 8]})
    assert [f for f in findings(model)["n"] if f[0] == "dla-concat"] == []


def test_a_gemm_of_two_activations_is_one_whatever_its_bias() -> None:
    node = helper.make_node("Gemm", ["a", "b", "c"], ["y"], name="n")
    model = graph([node], {"a": [2, 4], "b": [4, 3]}, {"y": [2, 3]}, {"c": w(3)})
    assert findings(model, "restricted") == {"n": [("matmul-activations", "violation", "Gemm of two activations (a, b)")]}


def test_a_resize_with_known_scales_but_unknown_sizes_is_judged_by_its_scales_alone() -> None:
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], name="n", mode="linear")
    model = helper.make_model(
        helper.make_graph([node], "g", _untyped("x"), _untyped("y"), [numpy_helper.from_array(np.array([1, 1, 1.5, 1.5], np.float32), "scales")]),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    assert findings(model) == {"n": resize_bad("linear: scales 1.5x1.5: DLA takes integer scales 1-4")}

"""Quantization placement (stages/quantize/policy.py) and the quantized-graph rules (graph/qdq.py)
on small hand-built ONNX graphs, where the right answer can be read off the graph itself.

The graph below has one instance of each pattern the "mixed" policy names (docs/quantization.md):
a stem conv, swish (x * sigmoid(x): not a gate), q * rotate(q) (reshape + transpose of q), a
sigmoid gate, a softmax between two MatMuls, and a classifier Gemm behind a Flatten.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from csa_cli.errors import UsageError


def _graph(nodes: list[Any], inputs: list[str], outputs: list[str], inits: dict[str, np.ndarray] | None = None) -> onnx.ModelProto:
    info = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in inputs]
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs]
    tensors = [numpy_helper.from_array(v, k) for k, v in (inits or {}).items()]
    return helper.make_model(helper.make_graph(nodes, "g", info, outs, tensors))


def _n(op: str, inputs: list[str], outputs: list[str], name: str) -> onnx.NodeProto:
    return helper.make_node(op, inputs, outputs, name=name)


def csa_like() -> onnx.ModelProto:
    nodes = [
        _n("Conv", ["image", "w_stem"], ["s"], "stem"),
        _n("Sigmoid", ["s"], ["s_sig"], "swish_sigmoid"),
        _n("Mul", ["s", "s_sig"], ["v"], "swish_mul"),  # swish: not a gate
        _n("Conv", ["v", "w_q"], ["q"], "query"),
        _n("Reshape", ["q", "shape"], ["q_r"], "rot_reshape"),
        _n("Transpose", ["q_r"], ["q_t"], "rot_transpose"),
        _n("Reshape", ["q_t", "shape"], ["k"], "rot_back"),
        _n("Mul", ["q", "k"], ["a"], "attention_mul"),  # q * rotate(q)
        _n("Resize", ["a", "", "scales"], ["a_up"], "resize"),
        _n("Conv", ["a_up", "w_gate"], ["gate_pre"], "gate"),
        _n("Sigmoid", ["gate_pre"], ["g"], "gate_sigmoid"),  # a gate: its input is not multiplied by it
        _n("Mul", ["g", "v"], ["gv"], "gate_mul"),
        _n("Conv", ["gv", "w_fc1"], ["f1"], "fc1"),
        _n("MatMul", ["f1", "w_qk"], ["scores"], "qk"),
        _n("Softmax", ["scores"], ["attn"], "softmax"),
        _n("MatMul", ["attn", "w_v"], ["ctx"], "av"),
        _n("Add", ["ctx", "f1"], ["res"], "residual"),
        _n("Conv", ["res", "w_fc2"], ["f2"], "fc2"),
        _n("Flatten", ["f2"], ["flat"], "flatten"),
        _n("Gemm", ["flat", "w_head"], ["logits"], "head"),
        # look-alikes that must stay INT8 (side branches; their outputs feed nothing)
        _n("Conv", ["image", "w_side"], ["side"], "image_branch"),  # a second conv on the image: not the stem
        _n("Sigmoid", ["f1"], ["f1_sig"], "fc1_sigmoid"),
        _n("Mul", ["f1_sig", "f1"], ["f1_swish"], "fc1_swish"),  # swish, operands the other way round
        _n("Conv", ["res", "w_pair"], ["pair"], "pair"),
        _n("Transpose", ["pair"], ["pair_t"], "pair_transpose"),
        _n("Add", ["pair", "pair_t"], ["pair_sum"], "pair_add"),  # a tensor meets its own view, but in an Add
        _n("Conv", ["res", "w_square"], ["sq"], "square"),
        _n("Mul", ["sq", "sq"], ["sq2"], "square_mul"),  # x * x: not q * rotate(q)
        _n("Relu", ["res"], ["r"], "relu"),
        _n("MatMul", ["r", "w_proj"], ["proj"], "proj"),  # a MatMul with no Softmax near it
    ]
    return _graph(nodes, ["image"], ["logits"])


def test_mixed_policy_keeps_exactly_the_documented_layers() -> None:
    from csa_cli.stages.quantize.policy import default_fp_policy

    kept = {(k.name, k.op_type, k.rule) for k in default_fp_policy(csa_like())}
    assert kept == {
        ("stem", "Conv", "stem"),
        ("head", "Gemm", "classifier"),
        ("query", "Conv", "attention-product"),
        ("gate", "Conv", "sigmoid-gate"),
        ("qk", "MatMul", "softmax"),
        ("av", "MatMul", "softmax"),
    }


def test_mixed_policy_for_onnxruntime_keeps_only_the_attention_layers() -> None:
    """On ONNX Runtime a float stem, classifier or gate conv splits the integer chain for no agreement
    gained (policy.MIXED_RULES): only the attention products stay float there."""
    from csa_cli.stages.quantize.policy import default_fp_policy, nodes_kept_fp

    kept = {(k.name, k.rule) for k in default_fp_policy(csa_like(), "onnxruntime")}
    assert kept == {("query", "attention-product"), ("qk", "softmax"), ("av", "softmax")}
    assert {k.name for k in nodes_kept_fp(csa_like(), "mixed", ["gate"], "onnxruntime")} == {"query", "qk", "av", "gate"}
    assert nodes_kept_fp(csa_like(), "int8", [], "onnxruntime") == []


def test_stem_search_goes_three_ops_deep_and_an_ending_sigmoid_is_a_gate() -> None:
    from csa_cli.stages.quantize.policy import default_fp_policy

    def model(hops: int) -> onnx.ModelProto:
        nodes = [_n("Identity", [f"t{i}"], [f"t{i + 1}"], f"id{i}") for i in range(hops)]
        nodes += [_n("Conv", [f"t{hops}", "w"], ["c"], "late"), _n("Relu", ["c"], ["y"], "relu")]
        return _graph(nodes, ["t0"], ["y"])

    assert [(k.name, k.rule) for k in default_fp_policy(model(2))] == [("late", "stem")]
    assert default_fp_policy(model(3)) == []
    # a network that ends in a sigmoid (multi-label): no consumer of it, so it is a gate, not a swish
    ending = _graph(
        [_n("Conv", ["x", "w1"], ["a"], "c1"), _n("Relu", ["a"], ["b"], "relu"), _n("Conv", ["b", "w2"], ["c"], "c2"), _n("Sigmoid", ["c"], ["y"], "sig")],
        ["x"],
        ["y"],
    )
    assert [(k.name, k.rule) for k in default_fp_policy(ending)] == [("c1", "stem"), ("c2", "sigmoid-gate")]


def test_each_layer_is_kept_once_under_its_first_rule() -> None:
    from csa_cli.stages.quantize.policy import default_fp_policy

    # the stem conv also produces the output: kept as "stem" (the first rule), listed once
    model = _graph([_n("Conv", ["image", "w"], ["y"], "only")], ["image"], ["y"])
    assert [(k.name, k.rule) for k in default_fp_policy(model)] == [("only", "stem")]


def test_keep_fp_globs_add_layers_and_a_glob_matching_none_is_an_error() -> None:
    from csa_cli.stages.quantize.policy import match_keep_fp, nodes_kept_fp

    model = csa_like()
    assert [(k.name, k.rule) for k in match_keep_fp(model, ["fc*"])] == [("fc1", "--keep-fp fc*"), ("fc2", "--keep-fp fc*")]
    with pytest.raises(UsageError, match=r"^--keep-fp 'nothing\*' matches no Conv/Gemm/MatMul node$") as err:
        match_keep_fp(model, ["nothing*"])
    assert err.value.hint == "node names look like: stem, query, gate"

    assert [k.name for k in nodes_kept_fp(model, "int8", ["fc1"])] == ["fc1"]
    mixed = nodes_kept_fp(model, "mixed", ["fc1", "stem", "fc*"])  # stem is kept already; fc1 matched twice
    assert [k.name for k in mixed] == ["stem", "head", "query", "gate", "qk", "av", "fc1", "fc2"]
    assert [k.rule for k in mixed][-2:] == ["--keep-fp fc1", "--keep-fp fc*"]
    assert nodes_kept_fp(model, "int8", []) == []


def test_keep_fp_globs_are_case_sensitive() -> None:
    from csa_cli.stages.quantize.policy import match_keep_fp

    with pytest.raises(UsageError):
        match_keep_fp(csa_like(), ["FC1"])


def _chain(ops_before: int, op: str = "Identity") -> onnx.ModelProto:
    """x -> Conv -> `ops_before` x op -> y."""
    nodes = [_n("Conv", ["x", "w"], ["t0"], "conv")]
    nodes += [_n(op, [f"t{i}"], [f"t{i + 1}"], f"{op.lower()}{i}") for i in range(ops_before)]
    return _graph(nodes, ["x"], [f"t{ops_before}"])


@pytest.mark.parametrize("hops", [0, 1, 7])
def test_upstream_and_downstream_see_through_up_to_the_limit(hops: int) -> None:
    from csa_cli.graph.index import index_graph
    from csa_cli.stages.quantize.policy import downstream_weighted, upstream_weighted, view_root

    g = index_graph(_chain(hops), infer=False)
    assert upstream_weighted(g, f"t{hops}").name == "conv"
    assert view_root(g, f"t{hops}") == "t0"
    model = _graph([_n("Identity", [f"t{i}"], [f"t{i + 1}"], f"id{i}") for i in range(hops)] + [_n("Conv", [f"t{hops}", "w"], ["y"], "conv")], ["t0"], ["y"])
    assert [n.name for n in downstream_weighted(index_graph(model, infer=False), "t0")] == ["conv"]


def test_the_search_stops_at_eight_hops_and_at_ops_that_mix() -> None:
    from csa_cli.graph.index import index_graph
    from csa_cli.stages.quantize.policy import downstream_weighted, upstream_weighted, view_root

    g = index_graph(_chain(8), infer=False)
    assert upstream_weighted(g, "t8") is None and upstream_weighted(g, "t8", limit=9).name == "conv"
    assert view_root(g, "t8") == "t0" and view_root(g, "t8", limit=7) == "t1"
    far = _graph([_n("Identity", [f"t{i}"], [f"t{i + 1}"], f"id{i}") for i in range(8)] + [_n("Conv", ["t8", "w"], ["y"], "conv")], ["t0"], ["y"])
    assert downstream_weighted(index_graph(far, infer=False), "t0") == []
    assert [n.name for n in downstream_weighted(index_graph(far, infer=False), "t0", limit=9)] == ["conv"]
    # a Relu mixes nothing but is no pass-through for the policy: the search ends there
    g = index_graph(_chain(1, "Relu"), infer=False)
    assert upstream_weighted(g, "t1") is None and view_root(g, "t1") == "t1"
    # Mul / Div / Add pass upstream (the gate's product), never downstream
    for op in ("Mul", "Div", "Add"):
        assert upstream_weighted(index_graph(_chain(1, op), infer=False), "t1").name == "conv"
    relu_then_conv = _graph([_n("Relu", ["t0"], ["t1"], "relu"), _n("Conv", ["t1", "w"], ["y"], "conv")], ["t0"], ["y"])
    assert downstream_weighted(index_graph(relu_then_conv, infer=False), "t0") == []


def test_view_root_follows_only_pure_layout_ops() -> None:
    from csa_cli.graph.index import index_graph
    from csa_cli.stages.quantize.policy import view_root

    for op in ("Reshape", "Transpose", "Identity", "Flatten"):
        assert view_root(index_graph(_chain(2, op), infer=False), "t2") == "t0", op
    for op in ("Resize", "BatchNormalization", "Cast"):
        assert view_root(index_graph(_chain(1, op), infer=False), "t1") == "t1", op


# ------------------------------------------------------------------------------------------ graph/qdq.py


def test_quantized_ops_are_the_qdq_and_qoperator_sets() -> None:
    from csa_cli.graph.qdq import is_quantized, is_quantized_op

    quantized = [
        "QuantizeLinear",
        "DequantizeLinear",
        "QLinearConv",
        "QLinearMatMul",
        "ConvInteger",
        "MatMulInteger",
        "DynamicQuantizeLinear",
        "QLinearAdd",
        "QLinearMul",
    ]
    assert all(is_quantized_op(op) for op in quantized)
    assert not any(is_quantized_op(op) for op in ["Conv", "MatMul", "Mul", "quantizelinear", "Cast", ""])
    assert not is_quantized(csa_like())
    for op in ("DequantizeLinear", "QLinearConv"):
        assert is_quantized(_graph([_n("Conv", ["x", "w"], ["y"], "c"), _n(op, ["y", "s"], ["z"], "q")], ["x"], ["z"]))


def test_nonzero_zero_points_counts_every_nonzero_element_and_computed_ones() -> None:
    from csa_cli.graph.qdq import nonzero_zero_points

    def q(zp: str) -> onnx.NodeProto:
        return _n("QuantizeLinear", ["x", "scale", zp] if zp != "-" else ["x", "scale"], ["y"], "q")

    def count(node: onnx.NodeProto, inits: dict[str, np.ndarray], extra: list[onnx.NodeProto] | None = None) -> int:
        return nonzero_zero_points(_graph([*(extra or []), node], ["x"], ["y"], inits))

    i8 = np.int8
    assert count(q("zp"), {"zp": np.zeros(4, i8)}) == 0
    assert count(q("zp"), {"zp": np.array([0, 3, 0, -5], i8)}) == 2
    assert count(q("-"), {}) == 0 and count(q(""), {}) == 0  # no zero point: 0 by the standard
    const = helper.make_node("Constant", [], ["zc"], name="c", value=numpy_helper.from_array(np.array([1, 0, 2], i8)))
    assert count(q("zc"), {}, [const]) == 2
    zero_const = helper.make_node("Constant", [], ["zc"], name="c", value=numpy_helper.from_array(np.array(0, i8)))
    assert count(q("zc"), {}, [zero_const]) == 0
    computed = _n("Identity", ["x"], ["zx"], "computed")
    assert count(q("zx"), {}, [computed]) == 1  # cannot be shown to be 0
    dq = _n("DequantizeLinear", ["x", "scale", "zp"], ["y"], "dq")
    assert count(dq, {"zp": np.array([7], i8)}) == 1
    assert count(_n("Conv", ["x", "w", "zp"], ["y"], "conv"), {"zp": np.array([7], i8)}) == 0  # not a Q/DQ input


def test_softmax_rule_keeps_only_matmuls_and_looks_three_ops_past_it() -> None:
    from csa_cli.stages.quantize.policy import default_fp_policy

    def model(before: str, hops_after: int) -> onnx.ModelProto:
        nodes = [_n("Relu", ["x"], ["r"], "relu"), _n(before, ["r", "w"], ["s"], "before"), _n("Softmax", ["s"], ["t0"], "softmax")]
        nodes += [_n("Identity", [f"t{i}"], [f"t{i + 1}"], f"id{i}") for i in range(hops_after)]
        nodes += [_n("MatMul", [f"t{hops_after}", "v"], ["m"], "after"), _n("Relu", ["m"], ["y"], "relu_out")]
        return _graph(nodes, ["x"], ["y"])

    assert [(k.name, k.rule) for k in default_fp_policy(model("MatMul", 2))] == [("before", "softmax"), ("after", "softmax")]
    assert [k.name for k in default_fp_policy(model("Conv", 2))] == ["after"]  # a conv before a softmax stays INT8
    assert [k.name for k in default_fp_policy(model("MatMul", 3))] == ["before"]  # the MatMul after is too far


def test_search_limits_default_to_eight_and_dead_ends_are_empty() -> None:
    from csa_cli.graph.index import index_graph
    from csa_cli.stages.quantize.policy import downstream_weighted, view_root

    g = index_graph(_chain(9), infer=False)
    assert view_root(g, "t9") == "t1"  # eight steps back, no further
    assert downstream_weighted(g, "t9") == []  # a graph output: nothing consumes it
    g = index_graph(_chain(2), infer=False)
    assert downstream_weighted(g, "t0") == []  # pass-through ops that end in the output


def test_nonzero_zero_points_add_up_over_the_graph() -> None:
    from csa_cli.graph.qdq import nonzero_zero_points

    nodes = [
        _n("QuantizeLinear", ["x", "s", "zp_a"], ["q1"], "q1"),  # 2 non-zero
        _n("Identity", ["x"], ["zp_computed"], "computed"),
        _n("DequantizeLinear", ["q1", "s", "zp_computed"], ["d1"], "d1"),  # 1: cannot be shown to be 0
        _n("QuantizeLinear", ["d1", "s", "zp_b"], ["y"], "q2"),  # 1 non-zero
    ]
    model = _graph(nodes, ["x"], ["y"], {"zp_a": np.array([5, 0, 6], np.int8), "zp_b": np.array([0, 7], np.int8)})
    assert nonzero_zero_points(model) == 4

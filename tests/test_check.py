"""`csa check`: every rule on a hand-built graph that violates it and one that does not; the zoo's verdicts; the CLI."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from csa_cli.errors import CsaError
from csa_cli.stages.check.checks import check_onnx
from csa_cli.stages.check.report import CheckReport
from csa_cli.stages.check.rules import RULES


def make_graph(
    nodes: Sequence[onnx.NodeProto],
    inputs: dict[str, Sequence[int | str]],
    outputs: dict[str, Sequence[int | str] | None],
    inits: dict[str, np.ndarray] | None = None,
    opset: int = 17,
) -> onnx.ModelProto:
    """A model from nodes, float inputs/outputs {name: shape} and initializers {name: array}."""
    graph = helper.make_graph(
        list(nodes),
        "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(s)) for n, s in inputs.items()],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None if s is None else list(s)) for n, s in outputs.items()],
        [numpy_helper.from_array(v, k) for k, v in (inits or {}).items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def f32(*shape: int, value: float | None = None) -> np.ndarray:
    if value is not None:
        return np.full(shape, value, dtype=np.float32)
    return np.random.default_rng(0).standard_normal(shape).astype(np.float32)


def unary(op: str, **attrs: Any) -> onnx.ModelProto:
    return make_graph([helper.make_node(op, ["x"], ["y"], name="n", **attrs)], {"x": [1, 8, 4, 4]}, {"y": [1, 8, 4, 4]})


def conv(kernel: int = 3, stride: int = 1, pad: int = 1, cin: int = 8, cout: int = 8, group: int = 1, hw: int = 16) -> onnx.ModelProto:
    out_hw = (hw + 2 * pad - kernel) // stride + 1
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="n", kernel_shape=[kernel, kernel], strides=[stride, stride], pads=[pad] * 4, group=group)
    return make_graph([node], {"x": [1, cin, hw, hw]}, {"y": [1, cout, out_hw, out_hw]}, {"w": f32(cout, cin // group, kernel, kernel)})


def resize(scale: float | None, mode: str = "linear", sizes: list[int] | None = None, hw: int = 8) -> onnx.ModelProto:
    inits: dict[str, np.ndarray] = {}
    if sizes is not None:
        inits["sizes"] = np.array(sizes, dtype=np.int64)
        node = helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], name="n", mode=mode)
        out = sizes
    else:
        assert scale is not None
        inits["scales"] = np.array([1, 1, scale, scale], dtype=np.float32)
        node = helper.make_node("Resize", ["x", "", "scales"], ["y"], name="n", mode=mode)
        out = [1, 4, int(hw * scale), int(hw * scale)]
    return make_graph([node], {"x": [1, 4, hw, hw]}, {"y": out}, inits)


def layernorm_expansion() -> onnx.ModelProto:
    """LayerNorm over channels written out as ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div (as older exporters do)."""
    nodes = [
        helper.make_node("ReduceMean", ["x"], ["mean"], name="mean", axes=[-1]),
        helper.make_node("Sub", ["x", "mean"], ["d"], name="sub"),
        helper.make_node("Pow", ["d", "two"], ["sq"], name="pow"),
        helper.make_node("ReduceMean", ["sq"], ["var"], name="var", axes=[-1]),
        helper.make_node("Add", ["var", "eps"], ["ve"], name="add_eps"),
        helper.make_node("Sqrt", ["ve"], ["std"], name="sqrt"),
        helper.make_node("Div", ["d", "std"], ["y"], name="div"),
    ]
    return make_graph(nodes, {"x": [1, 16, 8]}, {"y": [1, 16, 8]}, {"two": np.array(2.0, np.float32), "eps": np.array(1e-5, np.float32)})


def qdq_conv(zero_point: int) -> onnx.ModelProto:
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["xq"], name="q"),
        helper.make_node("DequantizeLinear", ["xq", "s", "zp"], ["xd"], name="dq"),
        helper.make_node("DequantizeLinear", ["wq", "ws"], ["w"], name="dq_w"),
        helper.make_node("Conv", ["xd", "w"], ["y"], name="conv", kernel_shape=[1, 1]),
    ]
    inits = {
        "s": np.array(0.05, np.float32),
        "zp": np.array(zero_point, np.int8),
        "wq": np.ones((8, 8, 1, 1), np.int8),
        "ws": np.array(0.01, np.float32),
    }
    return make_graph(nodes, {"x": [1, 8, 4, 4]}, {"y": [1, 8, 4, 4]}, inits)


def shape_arith() -> onnx.ModelProto:
    """Reshape whose target shape is computed at run time: Shape -> Gather -> Unsqueeze -> Concat."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"], name="shape"),
        helper.make_node("Gather", ["s", "zero"], ["b"], name="gather", axis=0),
        helper.make_node("Unsqueeze", ["b", "axes"], ["b1"], name="unsq"),
        helper.make_node("Concat", ["b1", "minus1"], ["target"], name="concat", axis=0),
        helper.make_node("Reshape", ["x", "target"], ["y"], name="reshape"),
    ]
    inits = {"zero": np.array(0, np.int64), "axes": np.array([0], np.int64), "minus1": np.array([-1], np.int64)}
    return make_graph(nodes, {"x": [1, 8, 4, 4]}, {"y": [1, 128]}, inits)


def static_reshape() -> onnx.ModelProto:
    return make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"], name="reshape")], {"x": [1, 8, 4, 4]}, {"y": [1, 128]}, {"shape": np.array([1, 128], np.int64)}
    )


def matmul(both_activations: bool, op: str = "MatMul") -> onnx.ModelProto:
    if op == "Einsum":
        node = helper.make_node("Einsum", ["a", "b"], ["y"], name="n", equation="bij,bjk->bik")
    else:
        node = helper.make_node(op, ["a", "b"], ["y"], name="n")
    inputs: dict[str, Sequence[int | str]] = {"a": [1, 4, 8]}
    inits: dict[str, np.ndarray] = {}
    if both_activations:
        inputs["b"] = [1, 8, 4]
    else:
        inits["b"] = f32(1, 8, 4)
    return make_graph([node], inputs, {"y": [1, 4, 4]}, inits)


def pool(op: str, kernel: int, hw: int = 16) -> onnx.ModelProto:
    if op == "GlobalAveragePool":
        return make_graph([helper.make_node(op, ["x"], ["y"], name="n")], {"x": [1, 4, hw, hw]}, {"y": [1, 4, 1, 1]})
    node = helper.make_node(op, ["x"], ["y"], name="n", kernel_shape=[kernel, kernel], strides=[kernel, kernel])
    return make_graph([node], {"x": [1, 4, hw, hw]}, {"y": [1, 4, hw // kernel, hw // kernel]})


def concat(axis: int) -> onnx.ModelProto:
    out = [1, 8, 4, 4] if axis == 1 else [1, 4, 8, 4]
    return make_graph([helper.make_node("Concat", ["a", "b"], ["y"], name="n", axis=axis)], {"a": [1, 4, 4, 4], "b": [1, 4, 4, 4]}, {"y": out})


def big(channels: int, batch: int = 1) -> onnx.ModelProto:
    return make_graph([helper.make_node("Relu", ["x"], ["y"], name="n")], {"x": [batch, channels, 2, 2]}, {"y": [batch, channels, 2, 2]})


def deconv(pad: int) -> onnx.ModelProto:
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="n", kernel_shape=[2, 2], strides=[2, 2], pads=[pad] * 4)
    out = 16 - 2 * pad
    return make_graph([node], {"x": [1, 4, 8, 8]}, {"y": [1, 4, out, out]}, {"w": f32(4, 4, 2, 2)})


# (rule set, rule, violating graph, compliant graph)
RULE_CASES: list[tuple[str, str, Callable[[], onnx.ModelProto], Callable[[], onnx.ModelProto]]] = [
    ("restricted", "op-allowlist", lambda: unary("Sin"), lambda: unary("Relu")),
    ("restricted", "activation", lambda: unary("HardSwish"), lambda: unary("Sigmoid")),
    ("restricted", "erf-gelu", lambda: unary("Erf"), lambda: unary("Tanh")),
    ("restricted", "softmax", lambda: unary("Softmax", axis=1), lambda: unary("Sigmoid")),
    ("restricted", "normalization", lambda: unary("InstanceNormalization"), lambda: unary("Relu")),
    ("restricted", "normalization", layernorm_expansion, lambda: unary("Relu")),
    ("restricted", "reduce", lambda: unary("ReduceSum", keepdims=1), lambda: pool("GlobalAveragePool", 0)),
    ("restricted", "matmul-activations", lambda: matmul(True), lambda: matmul(False)),
    ("restricted", "matmul-activations", lambda: matmul(True, "Einsum"), lambda: matmul(False, "Einsum")),
    ("restricted", "resize-sizes", lambda: resize(None, sizes=[1, 4, 16, 16]), lambda: resize(2.0)),
    ("restricted", "qdq-zero-point", lambda: qdq_conv(3), lambda: qdq_conv(0)),
    ("restricted", "shape-ops", shape_arith, static_reshape),
    ("restricted", "limits", lambda: big(5000), lambda: big(4096)),
    ("restricted", "limits", lambda: big(8, batch=17), lambda: big(8, batch=16)),
    ("dla", "dla-conv", lambda: conv(kernel=33, pad=0, hw=40), lambda: conv(kernel=3)),
    ("dla", "dla-conv", lambda: conv(kernel=3, stride=9, pad=1, hw=40), lambda: conv(kernel=3, stride=8, pad=1, hw=40)),
    ("dla", "dla-conv", lambda: conv(kernel=1, pad=1), lambda: conv(kernel=1, pad=0)),
    ("dla", "dla-conv", lambda: conv(cin=8200, cout=8, group=1, hw=4), lambda: conv(cin=8192, cout=8, hw=4)),
    ("dla", "dla-deconv", lambda: deconv(1), lambda: deconv(0)),
    ("dla", "dla-pool", lambda: pool("MaxPool", 9, hw=18), lambda: pool("MaxPool", 8)),
    ("dla", "dla-pool", lambda: pool("GlobalAveragePool", 0, hw=9), lambda: pool("GlobalAveragePool", 0, hw=7)),
    ("dla", "dla-resize", lambda: resize(0.25), lambda: resize(2.0)),
    ("dla", "dla-resize", lambda: resize(8.0, mode="linear"), lambda: resize(8.0, mode="nearest")),
    ("dla", "dla-resize", lambda: resize(None, sizes=[1, 4, 15, 15]), lambda: resize(None, sizes=[1, 4, 16, 16])),
    ("dla", "dla-concat", lambda: concat(2), lambda: concat(1)),
    ("dla", "dla-layers", lambda: unary("Transpose", perm=[0, 1, 3, 2]), lambda: unary("Abs")),
    ("dla", "activation", lambda: unary("Elu"), lambda: unary("LeakyRelu")),
    ("dla", "reduce", lambda: unary("ReduceMax", keepdims=1), lambda: unary("Relu")),
]


@pytest.mark.parametrize(("rule_set", "rule", "bad", "good"), RULE_CASES, ids=[f"{c[0]}-{c[1]}-{i}" for i, c in enumerate(RULE_CASES)])
def test_each_rule_fires_on_a_violating_graph_and_not_on_a_compliant_one(
    rule_set: str, rule: str, bad: Callable[[], onnx.ModelProto], good: Callable[[], onnx.ModelProto]
) -> None:
    assert rule_set in RULES[rule].sources
    bad_report = check_onnx(bad(), rule_set)
    assert not bad_report.compliant
    assert rule in bad_report.violated_rules, bad_report.summary()
    fired = next(f for f in bad_report.violations if f.rule == rule)
    assert fired.source == RULES[rule].sources[rule_set] and fired.source
    assert fired.rule_set == rule_set
    good_report = check_onnx(good(), rule_set)
    assert good_report.compliant, good_report.summary()
    assert rule not in good_report.violated_rules


def test_dynamic_batch_is_a_violation_under_both_rule_sets() -> None:
    model = make_graph([helper.make_node("Relu", ["x"], ["y"], name="n")], {"x": ["N", 8, 4, 4]}, {"y": ["N", 8, 4, 4]})
    report = check_onnx(model, "all")
    assert report.rule_sets == {"restricted": False, "dla": False}
    assert {(f.rule, f.rule_set) for f in report.violations} >= {("dynamic-shape", "restricted"), ("dynamic-shape", "dla")}
    assert any(f.node == "x" and f.op == "graph input" for f in report.violations)
    assert check_onnx(big(8), "all").compliant


def test_layernorm_expansion_marks_every_node_of_it() -> None:
    report = check_onnx(layernorm_expansion())
    flagged = {f.node for f in report.violations if f.rule == "normalization"}
    assert flagged == {"mean", "sub", "pow", "var", "add_eps", "sqrt", "div"}
    # A lone Pow or Sqrt is not a normalization: only "not confirmed" warnings.
    lone = check_onnx(unary("Sqrt"))
    assert lone.compliant and [f.rule for f in lone.warnings] == ["op-allowlist"]


def test_matmul_with_a_constant_operand_is_a_warning_not_a_violation() -> None:
    report = check_onnx(matmul(False))
    assert report.compliant
    assert [(f.rule, f.verdict) for f in report.warnings] == [("matmul-activations", "warning")]
    assert check_onnx(matmul(False), "dla").warnings == []  # a fully connected layer on DLA


def test_dla_softmax_is_a_warning_and_restricted_softmax_a_violation() -> None:
    report = check_onnx(unary("Softmax", axis=1), "all")
    assert report.rule_sets == {"restricted": False, "dla": True}
    assert [(f.rule_set, f.verdict) for f in report.violations + report.warnings] == [("restricted", "violation"), ("dla", "warning")]


def test_report_per_node_counts_and_markdown(tmp_path: Path) -> None:
    report = check_onnx(layernorm_expansion(), "all", name="ln")
    node = next(n for n in report.nodes if n.name == "sqrt")
    assert (node.op, node.verdict, node.rule) == ("Sqrt", "violation", "normalization")
    assert node.source and "Emulating the Attention" in node.source
    assert report.counts_by_op["ReduceMean"].violation == 2
    assert report.counts_by_rule["normalization"].violation == 14  # 7 nodes x 2 rule sets
    path = report.write_markdown(tmp_path)
    text = path.read_text()
    assert path.name == "check-ln-all.md"
    assert "not public" in text and "DRIVE OS SDK" in text
    assert "| `sqrt` | Sqrt | restricted | normalization |" in text
    roundtrip = CheckReport.model_validate_json(report.model_dump_json())
    assert roundtrip.violated_rules == report.violated_rules


def test_a_file_that_is_not_onnx_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "notes.onnx"
    bad.write_text("this is not a protobuf\n" * 10)
    with pytest.raises(CsaError, match=r"notes.onnx is not an ONNX model \("):
        check_onnx(bad)
    with pytest.raises(CsaError, match="file not found"):
        check_onnx(tmp_path / "missing.onnx")


# --- the zoo (smallest model of each family) ---------------------------------------------


def test_csa_is_restricted_compliant_and_its_dla_violations_are_reported(exported: Callable[..., Path]) -> None:
    path = exported("csa-nano")
    restricted = check_onnx(path, "restricted")
    assert restricted.compliant, restricted.summary()
    assert restricted.violations == []
    dla = check_onnx(path, "dla")
    assert not dla.compliant
    assert {"dla-resize", "dla-layers"} <= set(dla.violated_rules)
    resize_msgs = [f.message for f in dla.violations if f.rule == "dla-resize"]
    assert any("56x56 -> 14x14" in m for m in resize_msgs)  # the spatial reduction: scale 1/4
    assert {"Reshape", "Transpose"} <= set(dla.violated_ops)


@pytest.mark.parametrize(
    ("model", "reasons", "ops"),
    [
        ("test-convnext", {"normalization", "erf-gelu"}, {"LayerNormalization", "Erf"}),
        ("test-swin", {"normalization", "erf-gelu", "softmax", "matmul-activations", "shape-ops"}, {"LayerNormalization", "Erf", "Softmax", "MatMul"}),
        ("test-cvt", {"normalization", "erf-gelu", "softmax", "matmul-activations"}, {"LayerNormalization", "Erf", "Softmax", "Einsum"}),
    ],
)
def test_baselines_are_not_compliant_for_their_real_reasons(exported: Callable[..., Path], model: str, reasons: set[str], ops: set[str]) -> None:
    report = check_onnx(exported(model), "restricted")
    assert not report.compliant
    assert reasons <= set(report.violated_rules), report.summary()
    assert ops <= set(report.violated_ops)
    assert "dynamic-shape" not in report.violated_rules  # exported at a static size: shape ops yes, dynamic dims no
    # Every violation names its public source.
    assert all(f.source == RULES[f.rule].sources["restricted"] for f in report.violations)


def test_symmetric_qdq_csa_passes_and_asymmetric_fails(exported: Callable[..., Path], tmp_path: Path) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            rng = np.random.default_rng(0)
            self.batches = iter([{"input": rng.standard_normal((1, 3, 224, 224)).astype(np.float32)} for _ in range(2)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    source = exported("csa-nano")
    sym, asym = tmp_path / "sym.onnx", tmp_path / "asym.onnx"
    common = {"quant_format": QuantFormat.QDQ, "activation_type": QuantType.QInt8, "weight_type": QuantType.QInt8}
    quantize_static(str(source), str(sym), Reader(), extra_options={"ActivationSymmetric": True, "WeightSymmetric": True}, **common)
    quantize_static(str(source), str(asym), Reader(), activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, quant_format=QuantFormat.QDQ)
    good = check_onnx(sym, "restricted")
    assert good.counts_by_op["QuantizeLinear"].ok > 0
    assert good.compliant, good.summary()
    bad = check_onnx(asym, "restricted")
    assert not bad.compliant
    assert bad.violated_rules == ["qdq-zero-point"]


# --- the CLI ---------------------------------------------------------------------------------


def test_cli_check_onnx_file_compliant(csa: Callable[..., Any], exported: Callable[..., Path], tmp_path: Path) -> None:
    result = csa("check", str(exported("csa-nano")), "--report", str(tmp_path))
    assert result.exit_code == 0, result.stderr
    record = result.record
    assert record["kind"] == "onnx" and record["check"]["compliant"] is True
    assert record["check"]["rules"] == "restricted" and record["check"]["violations"] == 0
    report = Path(record["check"]["report"])
    assert report.parent == tmp_path and "not public" in report.read_text()


def test_cli_check_passes_the_record_through_and_exits_3_when_not_compliant(csa: Callable[..., Any], exported: Callable[..., Path]) -> None:
    path = exported("test-convnext")
    upstream = csa("export", "test-convnext", "--weights", "random")
    assert upstream.exit_code == 0, upstream.stderr
    assert upstream.record["path"] == str(path)
    result = csa("check", input=upstream.stdout)
    assert result.exit_code == 3
    assert len(result.records) == 1  # the verdict, and no error record after it
    record = result.record
    for key in ("model", "path", "weights", "parity", "batch", "img_size", "opset"):
        assert record[key] == upstream.record[key]
    assert record["weights"] == "random"
    assert record["check"]["compliant"] is False
    assert {"normalization", "erf-gelu"} <= set(record["check"]["reasons"])
    assert "Error: test-convnext: NOT compliant" in result.stderr


def test_cli_check_model_exports_first_and_rules_all(csa: Callable[..., Any], exported: Callable[..., Path]) -> None:
    exported("csa-nano")
    result = csa("check", "csa-nano", "--rules", "all")
    assert result.exit_code == 3  # restricted-compliant, but not on DLA
    check = result.record["check"]
    assert check["rule_sets"] == {"restricted": True, "dla": False}
    assert result.record["model"] == "csa-nano"


def test_cli_check_bad_inputs(csa: Callable[..., Any], tmp_path: Path, upstream_error: str) -> None:
    text = tmp_path / "model.onnx"
    text.write_text("hello\n")
    result = csa("check", str(text))
    assert result.exit_code == 1
    assert f"Error: {text} is not an ONNX model (" in result.stderr
    assert result.record["kind"] == "error"
    result = csa("check", str(text), "--rules", "safety")
    assert result.exit_code == 2 and "unknown rule set 'safety'" in result.stderr
    result = csa("check", input=upstream_error)
    assert result.exit_code == 1 and result.stderr == ""  # forwarded silently: the failed stage said why
    assert result.stdout == upstream_error


def test_docs_list_every_rule() -> None:
    text = (Path(__file__).parent.parent / "docs" / "check.md").read_text()
    missing = [rule for rule in RULES if f"`{rule}`" not in text]
    assert not missing, f"docs/check.md does not describe {missing}"


def test_cli_check_a_checkpoint_record_exports_it_with_its_weights(csa: Callable[..., Any], csa_nano_checkpoint: dict[str, Any]) -> None:
    """`csa import-reference ... | csa check`: the checkpoint's weights are the ones exported and checked."""
    result = csa("check", input=json.dumps(csa_nano_checkpoint) + "\n")
    assert result.exit_code == 0, result.stderr
    assert result.record["kind"] == "onnx" and result.record["model"] == "csa-nano" and Path(result.record["path"]).is_file()
    assert result.record["weights"] == csa_nano_checkpoint["weights"] and result.record["weights_hash"] == csa_nano_checkpoint["weights_hash"]
    assert result.record["check"]["compliant"] is True


def test_terminal_view_groups_findings_with_their_sources() -> None:
    from rich.console import Console

    from csa_cli.cli.check import render_report

    console = Console(record=True, width=400)
    console.print(render_report(check_onnx(layernorm_expansion(), "all", name="ln"), "/tmp/r.md"))
    text = console.export_text()
    assert "csa check: ln (all)" in text
    assert "normalization" in text and "Emulating the Attention" in text and "no normalization layers other than foldable BN" in text
    assert "NOT compliant (restricted: NOT compliant, dla: NOT compliant)" in text
    assert "not public" in text and "report: /tmp/r.md" in text

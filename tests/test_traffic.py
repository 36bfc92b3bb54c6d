"""The memory-traffic model of what TensorRT runs (graph/traffic.py): its fusion and precision
rules on hand-built graphs, and its ordering on csa-nano and the smallest family members."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from csa_cli.graph.traffic import fusion_summary, traffic

N, C, H, W = 1, 8, 16, 16
ACT = N * C * H * W  # elements of one activation


def _model(nodes: Sequence[onnx.NodeProto], inputs: dict[str, list[int]], outputs: dict[str, list[int]], inits: dict[str, np.ndarray]) -> onnx.ModelProto:
    graph = helper.make_graph(
        list(nodes),
        "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs.items()],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs.items()],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _conv_weights() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"w": rng.standard_normal((C, C, 1, 1)).astype(np.float32), "b": np.zeros(C, np.float32)}


def swish_residual() -> onnx.ModelProto:
    """x -> Conv -> Sigmoid, Mul (swish) -> Add x (residual) -> y: one kernel in TensorRT."""
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv"),
        helper.make_node("Sigmoid", ["c"], ["s"], name="sig"),
        helper.make_node("Mul", ["c", "s"], ["m"], name="mul"),
        helper.make_node("Add", ["m", "x"], ["y"], name="add"),
    ]
    return _model(nodes, {"x": [N, C, H, W]}, {"y": [N, C, H, W]}, _conv_weights())


def test_conv_swish_and_residual_fuse_into_one_kernel() -> None:
    report = traffic(swish_residual(), "fp32")
    assert len(report.kernels) == 1 and report.kernels[0].ops == ["Conv", "Sigmoid", "Mul", "Add"]
    # fused: x read once (by the conv and again as the residual: one tensor), y written
    assert report.fused_activation_bytes == 2 * ACT * 4
    # unfused: conv r x w c, sigmoid r c w s, mul r c s w m, add r m x w y
    assert report.unfused_activation_bytes == (2 + 2 + 3 + 3) * ACT * 4
    assert report.unfused_kernels == 4
    assert report.fused_weight_bytes == report.unfused_weight_bytes == (C * C + C) * 4


def test_bytes_follow_the_precision() -> None:
    fp32, fp16, int8 = (traffic(swish_residual(), p) for p in ("fp32", "fp16", "int8"))
    assert fp32.fused_activation_bytes == 2 * fp16.fused_activation_bytes == 4 * int8.fused_activation_bytes
    assert int8.fused_weight_bytes < fp16.fused_weight_bytes < fp32.fused_weight_bytes
    assert traffic(swish_residual(), "mixed").fused_activation_bytes == int8.fused_activation_bytes
    with pytest.raises(ValueError, match="unknown precision"):
        traffic(swish_residual(), "int4")


def test_a_tensor_the_network_outputs_stops_the_fusion() -> None:
    """The conv output is also a network output: it must be written, so Relu is its own kernel."""
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv"), helper.make_node("Relu", ["c"], ["r"], name="relu")]
    report = traffic(_model(nodes, {"x": [N, C, H, W]}, {"r": [N, C, H, W], "c": [N, C, H, W]}, _conv_weights()), "fp32")
    assert [k.ops for k in report.kernels] == [["Conv"], ["Relu"]]
    assert report.fused_activation_bytes == report.unfused_activation_bytes == 4 * ACT * 4  # x -> c, c -> r


def test_views_are_free_transposes_copy_and_adjacent_shuffles_merge() -> None:
    nodes = [
        helper.make_node("Reshape", ["x", "shape"], ["r"], name="reshape"),
        helper.make_node("Transpose", ["r"], ["t1"], perm=[0, 2, 1], name="t1"),
        helper.make_node("Transpose", ["t1"], ["t2"], perm=[0, 2, 1], name="t2"),
        helper.make_node("Unsqueeze", ["t2", "axes"], ["u"], name="unsq"),
        helper.make_node("Transpose", ["u"], ["y"], perm=[1, 0, 2, 3], name="size1"),  # moves only a size-1 axis: free
    ]
    inits = {"shape": np.array([N, C, H * W], np.int64), "axes": np.array([0], np.int64)}
    report = traffic(_model(nodes, {"x": [N, C, H, W]}, {"y": [1, N, C, H * W]}, inits), "fp32")
    assert [k.ops for k in report.kernels] == [["Transpose", "Transpose"]]  # one copy for the two shuffles
    assert report.fused_activation_bytes == 2 * ACT * 4
    assert report.unfused_activation_bytes == 4 * ACT * 4 and report.unfused_kernels == 2


def qdq_conv() -> onnx.ModelProto:
    """x -> Q -> DQ -> Conv (int8 weight behind a DQ) -> Relu -> Q -> DQ -> y: TensorRT's placement."""
    scale, zero = np.array(0.05, np.float32), np.array(0, np.int8)
    w8 = np.random.default_rng(0).integers(-127, 127, (C, C, 1, 1)).astype(np.int8)
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="qx"),
        helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"], name="dqx"),
        helper.make_node("DequantizeLinear", ["w8", "ws", "z"], ["w"], name="dqw"),
        helper.make_node("Conv", ["xd", "w", "b"], ["c"], name="conv"),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("QuantizeLinear", ["r", "s", "z"], ["rq"], name="qr"),
        helper.make_node("DequantizeLinear", ["rq", "s", "z"], ["y"], name="dqr"),
    ]
    inits = {"s": scale, "z": zero, "w8": w8, "ws": np.array(0.01, np.float32), "b": np.zeros(C, np.float32)}
    return _model(nodes, {"x": [N, C, H, W]}, {"y": [N, C, H, W]}, inits)


def test_qdq_pairs_fold_into_their_neighbours_and_int8_tensors_move_one_byte() -> None:
    report = traffic(qdq_conv(), "int8")
    assert report.quantized_graph
    assert [k.ops for k in report.kernels] == [["Conv", "Relu"]]  # no kernel of its own for any Q or DQ
    assert report.fused_activation_bytes == 2 * ACT  # x read in INT8, r written in INT8
    assert report.fused_weight_bytes == C * C + C * 2  # the INT8 weight as stored; the float bias at the FP16 fallback
    fp32_graph = swish_residual()
    assert report.fused_per_frame(1) <= traffic(fp32_graph, "fp32").fused_per_frame(1)


def test_fusion_summary_counts_kernel_shapes() -> None:
    assert fusion_summary(traffic(swish_residual())) == {"Conv+Sigmoid+Mul+Add": 1}


@pytest.mark.parametrize("name", ["csa-nano", "test-convnext", "test-swin", "test-cvt"])
def test_real_models_fused_int8_below_fp16_below_fp32(exported: Callable[..., Path], name: str) -> None:
    path = exported(name)
    reports = {p: traffic(path, p) for p in ("fp32", "fp16", "int8")}
    for batch in (1, 16):
        fused = [reports[p].fused_per_frame(batch) for p in ("int8", "fp16", "fp32")]
        assert fused[0] < fused[1] < fused[2], (name, batch, fused)
        for p, r in reports.items():
            assert r.fused_per_frame(batch) <= r.unfused_per_frame(batch), (name, p)
    assert len(reports["fp32"].kernels) < reports["fp32"].unfused_kernels  # something really fused


def test_a_qdq_graph_is_never_above_its_fp32_graph(csa_nano_onnx: Path, nano_qdq: Path) -> None:
    fp32 = traffic(csa_nano_onnx, "fp32")
    qdq = traffic(nano_qdq, "int8")
    assert qdq.quantized_graph
    for batch in (1, 16):
        assert qdq.fused_per_frame(batch) <= fp32.fused_per_frame(batch)
        assert qdq.unfused_per_frame(batch) <= fp32.unfused_per_frame(batch)
    # the swish epilogues that made up most of the unfused figure are fused away
    shapes = fusion_summary(fp32)
    assert any("Sigmoid" in k and k.startswith("Conv") for k in shapes), shapes


def test_fusions_are_compared_with_tensorrt_layer_names() -> None:
    """TensorRT names a fused layer by its nodes ('a + b', PWN(...)): a kernel it split and a layer that
    spans two kernels are both reported; matching groups are not."""
    from csa_cli.graph.traffic import compare_fusions, layer_nodes

    assert layer_nodes("conv + PWN(PWN(sig), mul)") == {"conv", "sig", "mul"}
    report = traffic(swish_residual(), "fp32")
    assert compare_fusions(report, ["conv + PWN(PWN(sig), mul) + add"]) == []
    split = compare_fusions(report, ["conv + PWN(PWN(sig), mul)", "add", "Reformatting CopyNode for Input Tensor 0 to conv"])
    assert [(d.kind, d.layers) for d in split] == [("split", ["add", "conv + PWN(PWN(sig), mul)"])]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv"), helper.make_node("Relu", ["c"], ["r"], name="relu")]
    two = traffic(_model(nodes, {"x": [N, C, H, W]}, {"r": [N, C, H, W], "c": [N, C, H, W]}, _conv_weights()), "fp32")
    merged = compare_fusions(two, ["conv + relu"])
    assert [(d.kind, d.nodes) for d in merged] == [("merged", ["conv", "relu"])]

"""The static cost model against hand counts on small graphs, and against PyTorch on a real model."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from csa_cli.errors import CsaError
from csa_cli.graph.costmodel import ESTIMATE_LABEL, CostReport, analyze

F = 4  # bytes per float32


def model(
    nodes: Sequence[onnx.NodeProto], inputs: dict[str, Sequence[int | str]], outputs: dict[str, Sequence[int | str]], inits: dict[str, np.ndarray]
) -> onnx.ModelProto:
    graph = helper.make_graph(
        list(nodes),
        "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(s)) for n, s in inputs.items()],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(s)) for n, s in outputs.items()],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def ones(*shape: int, dtype: type = np.float32) -> np.ndarray:
    return np.ones(shape, dtype=dtype)


def conv_model(batch: int | str) -> onnx.ModelProto:
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    return model([node], {"x": [batch, 3, 8, 8]}, {"y": [batch, 4, 8, 8]}, {"w": ones(4, 3, 3, 3), "b": ones(4)})


def test_conv_hand_count() -> None:
    report = analyze(conv_model(2))
    (conv,) = report.nodes
    assert report.graph_batch == 2 and report.batch == 2
    assert conv.params == report.params == 4 * 3 * 3 * 3 + 4
    assert conv.macs == report.macs == (4 * 8 * 8) * (3 * 3 * 3)  # per image: each output element, Cin * k * k
    assert conv.activation_bytes_read == 3 * 8 * 8 * F  # per image
    assert conv.weight_bytes_read == (108 + 4) * F  # once per batch pass
    assert conv.bytes_written == 4 * 8 * 8 * F
    assert report.bytes_read == 3 * 8 * 8 * F + (108 + 4) * F // 2  # weights shared by the 2 images
    assert report.label == ESTIMATE_LABEL


def test_chain_counts_views_as_free_and_matmul_macs() -> None:
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Reshape", ["r", "shape"], ["flat"], name="reshape"),
        helper.make_node("MatMul", ["flat", "fc"], ["m"], name="matmul"),
        helper.make_node("Add", ["m", "bias"], ["y"], name="add"),
    ]
    inits = {"w": ones(4, 3, 3, 3), "shape": np.array([1, 256], np.int64), "fc": ones(256, 10), "bias": ones(10)}
    report = analyze(model(nodes, {"x": [1, 3, 8, 8]}, {"y": [1, 10]}, inits))
    by = {n.name: n for n in report.nodes}
    assert report.params == 108 + 2560 + 10  # the int64 shape is not a parameter
    assert report.macs == 6912 + 256 * 10
    assert (by["relu"].activation_bytes_read, by["relu"].bytes_written) == (256 * F, 256 * F)
    assert (by["reshape"].activation_bytes_read, by["reshape"].bytes_written) == (0, 0)  # a view
    assert by["matmul"].macs == 2560 and by["matmul"].weight_bytes_read == 2560 * F
    assert by["add"].activation_bytes_read == 10 * F and by["add"].weight_bytes_read == 10 * F
    assert report.op_counts == {"Add": 1, "Conv": 1, "MatMul": 1, "Relu": 1, "Reshape": 1}
    assert report.activation_bytes_written == sum(n.bytes_written for n in report.nodes) == (256 + 256 + 10 + 10) * F


@pytest.mark.parametrize(
    ("node", "inputs", "outputs", "inits", "macs"),
    [
        (helper.make_node("Gemm", ["a", "b"], ["y"], transB=1), {"a": [3, 5]}, {"y": [3, 7]}, {"b": ones(7, 5)}, 7 * 5),  # per image: 1 row of 3
        (helper.make_node("Einsum", ["a", "b"], ["y"], equation="bij,bjk->bik"), {"a": [1, 4, 8], "b": [1, 8, 4]}, {"y": [1, 4, 4]}, {}, 4 * 8 * 4),
        (
            helper.make_node("ConvTranspose", ["x", "w"], ["y"], kernel_shape=[2, 2], strides=[2, 2]),
            {"x": [1, 4, 8, 8]},
            {"y": [1, 2, 16, 16]},
            {"w": ones(4, 2, 2, 2)},
            (2 * 16 * 16) * 4 * 2 * 2 // 4,  # output elements * Cin * k*k / stride^2
        ),
        (helper.make_node("MatMul", ["a", "b"], ["y"]), {"a": [2, 3, 6]}, {"y": [2, 3, 5]}, {"b": ones(6, 5)}, 3 * 5 * 6),
        (helper.make_node("Sigmoid", ["a"], ["y"]), {"a": [1, 8]}, {"y": [1, 8]}, {}, 0),
    ],
    ids=["gemm", "einsum", "convtranspose", "batched-matmul", "elementwise"],
)
def test_macs_per_op(node: onnx.NodeProto, inputs: dict[str, list[int]], outputs: dict[str, list[int]], inits: dict[str, np.ndarray], macs: int) -> None:
    assert analyze(model([node], inputs, outputs, inits)).macs == macs


def test_dynamic_batch_and_traffic_at() -> None:
    static = analyze(conv_model(1))
    dynamic = analyze(conv_model("N"), batch=4)
    assert dynamic.graph_batch == 4 and dynamic.unknown_shapes == []
    assert (dynamic.macs, dynamic.activation_bytes_read, dynamic.activation_bytes_written) == (
        static.macs,
        static.activation_bytes_read,
        static.activation_bytes_written,
    )
    assert analyze(conv_model("N")).graph_batch == 1
    t1, t16 = static.traffic_at(1), static.traffic_at(16)
    assert t16.bytes_read == 16 * static.activation_bytes_read + static.weight_bytes
    assert t16.bytes_written == 16 * static.activation_bytes_written
    assert t1.bytes_total == static.bytes_read + static.bytes_written
    assert t16.bytes_per_frame < t1.bytes_per_frame  # weights amortised over the batch
    assert t16.macs_per_frame == static.macs and t16.label == ESTIMATE_LABEL
    with pytest.raises(ValueError):
        static.traffic_at(0)
    with pytest.raises(CsaError):
        analyze(conv_model(1), batch=0)


def test_quantized_weights_are_read_as_stored_and_qdq_counted() -> None:
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s"], ["xq"], name="q"),
        helper.make_node("DequantizeLinear", ["xq", "s"], ["xd"], name="dq"),
        helper.make_node("DequantizeLinear", ["wq", "ws"], ["w"], name="dq_w"),
        helper.make_node("Conv", ["xd", "w"], ["y"], name="conv", kernel_shape=[1, 1]),
    ]
    inits = {"s": np.array(0.1, np.float32), "wq": ones(8, 8, 1, 1, dtype=np.int8), "ws": np.array(0.01, np.float32)}
    report = analyze(model(nodes, {"x": [1, 8, 4, 4]}, {"y": [1, 8, 4, 4]}, inits))
    by = {n.name: n for n in report.nodes}
    assert report.params == 64  # the int8 weight; scales are not parameters
    assert by["dq_w"].folded and by["dq_w"].bytes_written == 0  # folded into the conv at build time
    assert by["conv"].weight_bytes_read == 64  # int8, not the dequantized float32
    assert (by["q"].activation_bytes_read, by["q"].bytes_written) == (128 * F, 128)  # float32 in, uint8 out
    assert (by["dq"].activation_bytes_read, by["dq"].bytes_written) == (128, 128 * F)


def test_batchnorm_stats_shared_weights_and_scalars_are_not_parameters() -> None:
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["a"], name="c1", kernel_shape=[1, 1]),
        helper.make_node("Conv", ["a", "w"], ["b"], name="c2", kernel_shape=[1, 1]),
        helper.make_node("BatchNormalization", ["b", "g", "beta", "mean", "var"], ["n"], name="bn"),
        helper.make_node("Add", ["n", "eps"], ["y"], name="add"),
    ]
    inits = {"w": ones(4, 4, 1, 1), "g": ones(4), "beta": ones(4), "mean": ones(4), "var": ones(4), "eps": np.array(1e-5, np.float32)}
    report = analyze(model(nodes, {"x": [1, 4, 2, 2]}, {"y": [1, 4, 2, 2]}, inits))
    by = {n.name: n for n in report.nodes}
    assert report.params == 16 + 4 + 4  # w once, gamma and beta; running stats and eps are not learned
    assert by["c1"].weight_bytes_read == by["c2"].weight_bytes_read == 16 * F  # read at each use
    assert by["bn"].weight_bytes_read == 16 * F
    assert CostReport.model_validate_json(report.model_dump_json()) == report


@pytest.mark.parametrize("name", ["test-convnext", "test-swin"])
def test_real_model_matches_pytorch_params_and_flop_counter(exported: Callable[..., Path], name: str) -> None:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from csa_cli.models import create_model

    report = analyze(exported(name))
    module = create_model(name).eval()
    if name == "test-convnext":  # swin's graph stores its relative-position bias expanded: more numbers than parameters
        assert report.params == sum(p.numel() for p in module.parameters())
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        module(torch.zeros(1, 3, 224, 224))
    # FlopCounterMode counts 2 FLOPs per multiply-accumulate of conv / linear / matmul. Swin's shapes come
    # from its run-time shape arithmetic, evaluated statically.
    assert report.macs == counter.get_total_flops() // 2
    assert report.unknown_shapes == []
    assert report.traffic_at(16).bytes_per_frame < report.traffic_at(1).bytes_per_frame

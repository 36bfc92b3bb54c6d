"""The ONNX form: restricted-mode op set, constant-scale Resize, static shapes, parity with PyTorch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from csa_cli.errors import UsageError
from csa_cli.graph.onnx_file import read_onnx_info
from csa_cli.models import create_model
from csa_cli.models.csa import CSANet, exact_scale, feature_sizes
from csa_cli.stages.export.onnx_export import CSA_ALLOWED_OPS, SHAPE_OPS, export_onnx, onnx_parity, op_types

TOL = 1e-4


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def nano_dynamic_224x384(csa_nano_model: CSANet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Non-square and dynamic batch in one export: the hardest shape case for the resize scales."""
    return export_onnx(csa_nano_model, tmp_path_factory.mktemp("nano-dyn") / "nano.onnx", img_size=(224, 384), dynamic_batch=True)


def _inferred(path: Path) -> onnx.ModelProto:
    return onnx.shape_inference.infer_shapes(onnx.load(str(path)), strict_mode=True)


def _dims(value: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in value.type.tensor_type.shape.dim]


def _all_values(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    g = model.graph
    return list(g.input) + list(g.value_info) + list(g.output)


def assert_restricted_graph(path: Path, *, dynamic_batch: bool) -> onnx.ModelProto:
    model = _inferred(path)
    onnx.checker.check_model(model, full_check=True)
    ops = {n.op_type for n in model.graph.node}
    assert ops <= CSA_ALLOWED_OPS, ops - CSA_ALLOWED_OPS
    assert not ops & SHAPE_OPS
    assert model.opset_import[0].version == 17
    inits = {t.name: t for t in model.graph.initializer}
    resizes = [n for n in model.graph.node if n.op_type == "Resize"]
    assert resizes
    for node in resizes:
        # inputs: X, roi, scales[, sizes]: scales a constant initializer, sizes absent or empty
        assert len(node.input) in (3, 4)
        assert node.input[2] in inits and (len(node.input) == 3 or node.input[3] == "")
        scales = numpy_helper.to_array(inits[node.input[2]])
        assert scales.dtype == np.float32 and list(scales[:2]) == [1.0, 1.0]
    # every tensor has static dims except a symbolic batch axis
    values = _all_values(model)
    assert len(values) > len(model.graph.node)
    for value in values:
        dims = _dims(value)
        assert dims, value.name
        rest = dims[1:] if dynamic_batch else dims
        assert all(isinstance(d, int) and d > 0 for d in rest), (value.name, dims)
        if dynamic_batch and len(dims) == 4:
            assert dims[0] == "batch", (value.name, dims)
    return model


def test_csa_nano_onnx_is_restricted_mode_clean(csa_nano_onnx: Path) -> None:
    model = assert_restricted_graph(csa_nano_onnx, dynamic_batch=False)
    assert [i.name for i in model.graph.input] == ["input"] and [o.name for o in model.graph.output] == ["logits"]
    assert _dims(model.graph.input[0]) == [1, 3, 224, 224] and _dims(model.graph.output[0]) == [1, 1000]
    pools = [n for n in model.graph.node if n.op_type == "AveragePool"]
    assert len(pools) == 1 and list(next(a.ints for a in pools[0].attribute if a.name == "kernel_shape")) == [6, 6]
    assert not any(n.op_type == "BatchNormalization" for n in model.graph.node)  # folded into the convs


def test_resize_outputs_are_the_intended_sizes(csa_nano_onnx: Path) -> None:
    model = _inferred(csa_nano_onnx)
    shapes = {v.name: _dims(v) for v in _all_values(model)}
    pairs = {(tuple(shapes[n.input[0]][2:]), tuple(shapes[n.output[0]][2:])) for n in model.graph.node if n.op_type == "Resize"}
    # 56->14->56, 27->14->27, 13->14->13, 6->7->6: exact, including 27 * (14/27)
    assert pairs == {
        ((56, 56), (14, 14)),
        ((14, 14), (56, 56)),
        ((27, 27), (14, 14)),
        ((14, 14), (27, 27)),
        ((13, 13), (14, 14)),
        ((14, 14), (13, 13)),
        ((6, 6), (7, 7)),
        ((7, 7), (6, 6)),
    }


def test_gate_conv_is_moved_before_the_upsize_in_the_graph(csa_nano_onnx: Path) -> None:
    model = _inferred(csa_nano_onnx)
    shapes = {v.name: _dims(v) for v in _all_values(model)}
    channels = {(tuple(shapes[n.input[0]][2:]), tuple(shapes[n.output[0]][2:])): shapes[n.input[0]][1] for n in model.graph.node if n.op_type == "Resize"}
    assert channels[((14, 14), (56, 56))] == 40  # C, not hN = 196: cheaper and exact
    assert channels[((14, 14), (27, 27))] == 80
    assert channels[((14, 14), (13, 13))] == 2 * 196  # enlarging stages keep the training order


def test_csa_nano_parity_batch_1(csa_nano_model: CSANet, csa_nano_onnx: Path) -> None:
    assert onnx_parity(csa_nano_model, csa_nano_onnx, batch_sizes=(1,), threads=1) < TOL


def test_csa_nano_dynamic_batch_non_square_parity_at_1_and_4(csa_nano_model: CSANet, nano_dynamic_224x384: Path) -> None:
    assert read_onnx_info(nano_dynamic_224x384).batch is None
    model = assert_restricted_graph(nano_dynamic_224x384, dynamic_batch=True)
    sizes = feature_sizes(csa_nano_model.config, (224, 384))
    pools = [n for n in model.graph.node if n.op_type == "AveragePool"]
    assert list(next(a.ints for a in pools[0].attribute if a.name == "kernel_shape")) == list(sizes[-1])
    assert onnx_parity(csa_nano_model, nano_dynamic_224x384, batch_sizes=(1, 4), img_size=(224, 384), threads=1) < TOL


@pytest.mark.parametrize("img_size", [(256, 256), (320, 320)])
def test_other_input_sizes_export(csa_nano_model: CSANet, img_size: tuple[int, int], tmp_path: Path) -> None:
    path = export_onnx(csa_nano_model, tmp_path / "m.onnx", img_size=img_size)
    assert_restricted_graph(path, dynamic_batch=False)
    assert onnx_parity(csa_nano_model, path, img_size=img_size, threads=1) < TOL


def test_csa_tiny_export_parity(csa_tiny_model: CSANet, tmp_path: Path) -> None:
    path = export_onnx(csa_tiny_model, tmp_path / "tiny.onnx", batch=1)
    assert_restricted_graph(path, dynamic_batch=False)
    assert onnx_parity(csa_tiny_model, path, threads=1) < TOL


def test_features_only_export(tmp_path: Path) -> None:
    model = create_model("csa-nano", features_only=True, out_indices=(1, 3)).eval()
    path = export_onnx(model, tmp_path / "feats.onnx", img_size=(128, 128))
    g = onnx.load(str(path)).graph
    assert [o.name for o in g.output] == ["features.1", "features.3"]
    assert onnx_parity(model, path, img_size=(128, 128), threads=1) < TOL


def test_naive_scale_breaks_onnx_shapes_and_exact_scale_does_not() -> None:
    """The reference defect in one Resize: shape inference and ONNX Runtime disagree on 27 * (14/27)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    def run(scale: float) -> tuple[int, int]:
        scales = numpy_helper.from_array(np.array([1, 1, scale, scale], np.float32), "scales")
        node = helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="linear")
        graph = helper.make_graph(
            [node],
            "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 27, 27])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
            [scales],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        inferred = _dims(onnx.shape_inference.infer_shapes(model).graph.output[0])[2]
        options = ort.SessionOptions()
        options.log_severity_level = 4
        actual = (
            ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
            .run(None, {"x": np.zeros((1, 1, 27, 27), np.float32)})[0]
            .shape[2]
        )
        return int(inferred), int(actual)

    assert run(14 / 27) == (13, 14)  # the graph claims 13, the runtime makes 14
    assert run(exact_scale(27, 14)) == (14, 14)


# --------------------------------------------------------------------------- baselines


@pytest.mark.parametrize(("name", "dynamic"), [("test-convnext", True), ("test-swin", False), ("test-swin", True), ("test-cvt", True)])
def test_baseline_export_and_parity(name: str, dynamic: bool, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model(name)
    path = export_onnx(model, tmp_path / f"{name}.onnx", dynamic_batch=dynamic)
    g = onnx.load(str(path)).graph
    assert [i.name for i in g.input] == ["input"] and [o.name for o in g.output] == ["logits"]
    assert _dims(g.input[0])[1:] == [3, 224, 224] and _dims(g.output[0])[1:] == [1000]
    assert onnx_parity(model, path, batch_sizes=(1, 2) if dynamic else (1,), threads=1) < TOL
    assert model.training  # exporting never changes the caller's module
    # the baselines are what restricted mode refuses: LayerNorm / Erf at least
    assert {"LayerNormalization", "Erf"} & op_types(path)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("img_size", [(100, 100), (32, 32), (224, 230)])
def test_unsupported_csa_sizes_are_usage_errors(csa_nano_model: CSANet, img_size: tuple[int, int], tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=f"input size {img_size[0]}x{img_size[1]} is not supported by CSA") as info:
        export_onnx(csa_nano_model, tmp_path / "x.onnx", img_size=img_size)
    assert "multiples of 32" in (info.value.hint or "")
    assert not list(tmp_path.iterdir())


def test_failed_export_leaves_nothing(tmp_path: Path) -> None:
    from csa_cli.errors import CsaError

    model = create_model("test-swin")  # swin's window layout needs 224
    with pytest.raises(CsaError, match="does not run at input"):
        export_onnx(model, tmp_path / "swin.onnx", img_size=(256, 256))
    assert not list(tmp_path.iterdir())


def test_batch_must_be_positive(csa_nano_model: CSANet, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="batch"):
        export_onnx(csa_nano_model, tmp_path / "x.onnx", batch=0)


def test_static_batch_parity_needs_that_batch(csa_nano_model: CSANet, csa_nano_onnx: Path) -> None:
    with pytest.raises(UsageError, match="static batch of 1"):
        onnx_parity(csa_nano_model, csa_nano_onnx, batch_sizes=(1, 4))
    with pytest.raises(UsageError, match="takes 224x224"):
        onnx_parity(csa_nano_model, csa_nano_onnx, img_size=(256, 256))

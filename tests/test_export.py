"""`csa export`: the stage (records, verification, caching, atomic output) and the command's inputs."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from csa_cli.errors import CsaError, UsageError
from csa_cli.stages.export.stage import export_stage, parse_img_size
from csa_cli.store import list_artifacts


def run_onnx(path: str | Path, batch: int, size: tuple[int, int] = (224, 224)) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"]
    assert [o.name for o in session.get_outputs()] == ["logits"]
    x = np.random.default_rng(1).standard_normal((batch, 3, *size)).astype(np.float32)
    return session.run(None, {"input": x})[0]


def test_csa_export_record_parity_and_onnx_runtime(exported: Callable[..., Path]) -> None:
    path = exported("csa-nano")
    record = export_stage("csa-nano", weights="random")  # the same export: found in the store
    assert record.kind == "onnx" and record.path == str(path)
    assert record.field("cached") is True
    assert (record.field("batch"), record.field("dynamic_batch"), record.field("img_size"), record.field("opset")) == (1, False, [224, 224], 17)
    assert record.weights == "random" and record.field("weights_hash")
    assert 0 <= record.field("parity") < 1e-4
    assert run_onnx(path, 1).shape == (1, 1000)
    graph = onnx.load(str(path))
    assert graph.opset_import[0].version == 17
    assert {"LayerNormalization", "Softmax", "MatMul", "Shape"}.isdisjoint(record.field("ops"))


def test_same_export_is_not_redone_and_output_is_copied(csa: Callable[..., Any], exported: Callable[..., Path], tmp_path: Path) -> None:
    path = exported("test-convnext")
    before = path.stat().st_mtime_ns
    target = tmp_path / "out" / "convnext.onnx"
    result = csa("export", "test-convnext", "--weights", "random", "--output", str(target))
    assert result.exit_code == 0, result.stderr
    assert "cached" in result.stderr
    assert path.stat().st_mtime_ns == before
    assert result.record["path"] == str(target) and result.record["artifact"] == str(path)
    assert target.read_bytes() == path.read_bytes()
    assert [p.name for p in target.parent.iterdir()] == ["convnext.onnx"]  # no temporary left behind
    assert sum(1 for _, meta in list_artifacts("test-convnext") if meta.stage == "onnx" and meta.inputs["batch"] == 1) == 1


def test_dynamic_batch_and_non_square_size(csa: Callable[..., Any]) -> None:
    result = csa("export", "test-convnext", "--weights", "random", "--dynamic-batch", "--img-size", "160x192")
    assert result.exit_code == 0, result.stderr
    record = result.record
    assert record["dynamic_batch"] is True and "batch" not in record
    assert record["img_size"] == [160, 192]
    assert record["parity"] < 1e-4
    assert run_onnx(record["path"], 3, (160, 192)).shape == (3, 1000)


def test_checkpoint_record_on_stdin_sets_model_and_weights(csa: Callable[..., Any], csa_nano_checkpoint: dict[str, Any]) -> None:
    """`csa import-reference ... | csa export`: the record's model and weights file are the ones exported."""
    result = csa("export", input=json.dumps(csa_nano_checkpoint) + "\n")
    assert result.exit_code == 0, result.stderr
    assert result.record["model"] == "csa-nano" and result.record["weights"] == csa_nano_checkpoint["weights"]
    assert result.record["weights_hash"] == csa_nano_checkpoint["weights_hash"] and result.record["parity"] < 1e-4


@pytest.mark.parametrize(
    ("args", "stdin", "code", "message"),
    [
        (["test-convnext", "--batch", "0"], None, 2, "--batch must be at least 1"),
        (["test-convnext", "--batch", "2", "--dynamic-batch"], None, 2, "contradict"),
        (["test-convnext", "--batch", "1,4"], None, 2, "one --batch"),
        (["test-convnext", "--img-size", "12x"], None, 2, "--img-size takes N or HxW"),
        (["convnxt-tiny"], None, 1, "unknown model 'convnxt-tiny'"),
    ],
)
def test_bad_inputs(csa: Callable[..., Any], args: list[str], stdin: str | None, code: int, message: str) -> None:
    result = csa("export", *args, input=stdin)
    assert result.exit_code == code, result.stderr
    assert message in result.stderr
    assert result.stderr.count("Error:") == 1
    assert result.record["kind"] == "error"


def test_records_export_does_not_take(csa: Callable[..., Any], exported: Callable[..., Path], upstream_error: str) -> None:
    """An onnx record (what export itself writes) is a usage error; an upstream error record is passed on silently (exit 1)."""
    from csa_cli.stages.export.stage import export_stage

    exported("csa-nano")  # the session's export: found cached
    onnx_record = export_stage("csa-nano", weights="random", batch=1).to_json() + "\n"
    result = csa("export", input=onnx_record)
    assert result.exit_code == 2, result.stderr
    assert "takes a checkpoint record" in result.stderr and result.stderr.count("Error:") == 1
    assert result.record["kind"] == "error"
    forwarded = csa("export", input=upstream_error)
    assert forwarded.exit_code == 1 and forwarded.stderr == ""  # the stage that failed said why, once
    assert forwarded.stdout == upstream_error


def test_parse_img_size() -> None:
    assert parse_img_size(None, (224, 224)) == (224, 224)
    assert parse_img_size("256", (224, 224)) == (256, 256)
    assert parse_img_size("224x384", (224, 224)) == (224, 384)
    assert parse_img_size(320, (224, 224)) == (320, 320)
    for bad in ("0", "ax3", "1x2x3", "-5"):
        with pytest.raises(UsageError):
            parse_img_size(bad, (224, 224))


def _tiny_graph(path: Path) -> None:
    """A stand-in export: input -> Relu -> logits (the export itself is not under test here)."""
    from onnx import TensorProto, helper

    node = helper.make_node("Relu", ["input"], ["logits"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [3, 3, 224, 224])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [3, 3, 224, 224])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_parity_failure_fails_and_keeps_nothing_unless_no_verify(monkeypatch: pytest.MonkeyPatch) -> None:
    import csa_cli.stages.export.onnx_export as onnx_export

    monkeypatch.setattr(onnx_export, "export_onnx", lambda module, path, **kw: _tiny_graph(Path(path)))
    monkeypatch.setattr(onnx_export, "onnx_parity", lambda *a, **kw: 0.25)
    with pytest.raises(CsaError, match=r"disagrees with PyTorch \(relative error 2.50e-01 > 0.001\)"):
        export_stage("test-convnext", weights="random", batch=3)
    assert not [m for _, m in list_artifacts("test-convnext") if m.inputs.get("batch") == 3]
    record = export_stage("test-convnext", weights="random", batch=3, verify=False)
    assert record.field("parity") == 0.25 and Path(str(record.path)).is_file()


@pytest.mark.slow
@pytest.mark.parametrize("model", ["csa-tiny", "convnext-tiny", "swin-tiny", "cvt-13"])
def test_full_size_zoo_models_export_and_run(model: str) -> None:
    record = export_stage(model, weights="random")
    assert record.weights == "random"
    assert run_onnx(str(record.path), 1).shape == (1, 1000)
    parity = record.field("parity")
    assert parity < (1e-4 if model.startswith("csa-") else 1e-3)


def test_every_builtin_zoo_entry_states_its_size_and_compute() -> None:
    from csa_cli.manifest import builtin_manifest_path, load_manifest

    zoo = load_manifest(builtin_manifest_path())
    missing = [e.name for e in zoo.models.values() if e.params_m is None or e.gmacs is None]
    assert not missing, f"params_m / gmacs missing in zoo/manifest.toml for {missing}"


@pytest.mark.slow
@pytest.mark.parametrize("model", ["csa-nano", "csa-tiny", "csa-small", "convnext-tiny", "swin-tiny", "cvt-13"])
def test_manifest_size_and_compute_are_the_cost_models(model: str) -> None:
    """params_m / gmacs in zoo/manifest.toml are graph/costmodel.py's count of the exported graph, to 2 decimals."""
    from csa_cli.graph.costmodel import analyze
    from csa_cli.manifest import builtin_manifest_path, load_manifest

    entry = load_manifest(builtin_manifest_path()).get(model)
    cost = analyze(str(export_stage(model, weights="random").path), 1)  # the same export the test above keeps
    assert cost.params / 1e6 == pytest.approx(entry.params_m, abs=0.006)
    assert cost.macs / 1e9 == pytest.approx(entry.gmacs, abs=0.006)

"""`csa engine` as a stage: what it builds from, which checks it runs itself, what it refuses.

Items of issue 15 covered here: 2 (safety engines only in bundles), 3 (DLA), 5 (one calibrated
graph per run), 12 (checks and builds agree), 13 (precision of a quantized record).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from csa_cli.errors import CsaError
from csa_cli.graph.onnx_file import inspect_onnx
from tests.fixtures.engine import assert_same_calibration

FEW = ["--val-images", "2"]  # held-out images of the record's calibration set: two keep the bundle quick


# ---------------------------------------------------------------------------------------------
# item 2: safety engines only in Orin bundles


def test_safe_local_is_a_usage_error_naming_target_orin(csa: Any, tiny: dict[str, Path]) -> None:
    result = csa("engine", str(tiny["fp32_b1"]), "--precision", "fp16", "--target", "local", "--safe")
    assert result.exit_code == 2 and "--target orin" in result.stderr and "safe runtime" in result.stderr


# ---------------------------------------------------------------------------------------------
# item 3: DLA


def test_dla_with_fp32_is_a_usage_error(csa: Any, tiny: dict[str, Path]) -> None:
    result = csa("engine", str(tiny["fp32_b1"]), "--precision", "fp32", "--target", "orin", "--dla", "0")
    assert result.exit_code == 2 and "DLA has no FP32 kernels" in result.stderr


def test_picking_dla_says_which_layers_break_the_dla_rules(csa: Any, exported: Any, tmp_path: Path) -> None:
    """With GPU fallback the build goes on, and says (stderr, record, README) that those layers will run on the GPU."""
    exported("csa-nano")
    args = ["--weights", "random", "--precision", "fp16", "--target", "orin", "--dla", "0", "--output", str(tmp_path / "b")]
    result = csa("engine", "csa-nano", *args)
    assert result.exit_code == 0, result.stderr
    assert "break the DLA rules" in result.stderr and "run on the GPU" in result.stderr
    assert result.record["dla_violations"] > 0 and result.record["gpu_fallback"] is True
    assert "DLA-rule violations" in (tmp_path / "b" / "README.md").read_text()


# ---------------------------------------------------------------------------------------------
# item 12: a build that demands compliance checks it; any other carries the upstream verdict


@pytest.mark.parametrize("demand", [["--safe", "--dla", "0"], ["--dla", "0", "--no-gpu-fallback"]])
def test_dla_without_fallback_runs_the_dla_rules_and_refuses_unless_forced(csa: Any, exported: Any, tmp_path: Path, demand: list[str]) -> None:
    exported("csa-nano")
    base = ["engine", "csa-nano", "--weights", "random", "--precision", "fp16", "--target", "orin", *demand]
    refused = csa(*base, "--output", str(tmp_path / "x"))
    assert refused.exit_code == 3 and "is not DLA compliant" in refused.stderr and not (tmp_path / "x").exists()
    forced = csa(*base, "--force", "--output", str(tmp_path / "y"))
    assert forced.exit_code == 0, forced.stderr
    assert "--force: going on" in forced.stderr and "dla rules" in forced.record["check"]


def test_a_build_that_demands_nothing_carries_the_upstream_verdict(csa: Any, tiny: dict[str, Path], tmp_path: Path) -> None:
    """`csa check` exits 3 and passes its record on; `csa engine` builds and quotes the verdict (record, README)."""
    checked = csa("check", str(tiny["softmax_b1"]))
    assert checked.exit_code == 3 and checked.record["check"]["compliant"] is False
    piped = json.dumps(checked.record) + "\n"
    built = csa("engine", "--precision", "fp16", "--target", "orin", "--output", str(tmp_path / "b"), input=piped)
    assert built.exit_code == 0, built.stderr
    assert built.record["upstream_check"].startswith("not compliant under the restricted rules (1 violations)")
    assert "building anyway" in built.stderr
    assert "Upstream `csa check` verdict, carried" in (tmp_path / "b" / "README.md").read_text()
    restricted = csa("engine", "--precision", "fp16", "--target", "orin", "--restricted", "--output", str(tmp_path / "r"), input=piped)
    assert restricted.exit_code == 3 and "not restricted-mode compliant" in restricted.stderr


# ---------------------------------------------------------------------------------------------
# item 13: the precision of a quantized record


def test_fp16_from_a_quantized_record_builds_the_fp32_source_graph(csa: Any, quantized_nano: dict[str, Any], tmp_path: Path) -> None:
    piped = json.dumps(quantized_nano) + "\n"
    result = csa("engine", "--precision", "fp16", "--target", "orin", "--output", str(tmp_path / "b"), input=piped)
    assert result.exit_code == 0, result.stderr
    assert "building the FP32 graph" in result.stderr
    assert result.record["source_onnx"] == [quantized_nano["source_onnx"]]
    onnx_files = sorted((tmp_path / "b" / "onnx").glob("csa-nano_b*.onnx"))
    assert [p.name for p in onnx_files] == ["csa-nano_b1.onnx"] and not inspect_onnx(onnx_files[0]).has_qdq


def test_a_qdq_graph_is_refused_for_fp16_and_fp32(csa: Any, tiny: dict[str, Path]) -> None:
    for precision in ("fp16", "fp32"):
        result = csa("engine", str(tiny["qdq_b1"]), "--precision", precision, "--target", "orin")
        assert result.exit_code == 2 and "is a Q/DQ (INT8) graph" in result.stderr


def test_a_precision_other_than_the_records_is_said(csa: Any, quantized_nano: dict[str, Any], tmp_path: Path) -> None:
    piped = json.dumps(quantized_nano) + "\n"
    assert quantized_nano["precision"] == "mixed"  # `csa quantize`'s default (item 13)
    result = csa("engine", "--precision", "int8", "--target", "orin", "--output", str(tmp_path / "b"), *FEW, input=piped)
    assert result.exit_code == 0, result.stderr
    assert "the quantized record is mixed but --precision int8 was asked" in result.stderr


# ---------------------------------------------------------------------------------------------
# item 5: one calibrated graph, copied per batch size


def test_several_batches_build_copies_of_the_one_calibrated_graph(csa: Any, quantized_nano: dict[str, Any], tmp_path: Path) -> None:
    import onnxruntime as ort

    piped = json.dumps(quantized_nano) + "\n"
    result = csa("engine", "--precision", "mixed", "--target", "orin", "--batch", "1,2", "--output", str(tmp_path / "b"), *FEW, input=piped)
    assert result.exit_code == 0, result.stderr
    rec = result.record
    assert rec["int8_source"] == "qdq" and rec.get("calib_cache") is None and rec["batches"] == [1, 2]
    assert not (tmp_path / "b" / "calib").exists()  # explicit quantization: no calibration cache in the bundle
    evaluated = Path(quantized_nano["path"])
    b1, b2 = tmp_path / "b" / "onnx" / "csa-nano_b1_qdq.onnx", tmp_path / "b" / "onnx" / "csa-nano_b2_qdq.onnx"
    assert b1.read_bytes() == evaluated.read_bytes()
    assert_same_calibration(evaluated, b2)
    assert inspect_onnx(b2).batch == 2
    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224), dtype=np.float32)
    one = ort.InferenceSession(str(evaluated), providers=["CPUExecutionProvider"])
    two = ort.InferenceSession(str(b2), providers=["CPUExecutionProvider"])
    expected = np.concatenate([one.run(None, {"input": x[i : i + 1]})[0] for i in range(2)])
    np.testing.assert_allclose(two.run(None, {"input": x})[0], expected, rtol=1e-5, atol=1e-5)


def test_rebatch_refuses_exports_of_another_model(exported: Any, quantized_nano: dict[str, Any]) -> None:
    import onnx

    from csa_cli.graph.rebatch import rebatch_like

    qdq, source = onnx.load(quantized_nano["path"]), onnx.load(quantized_nano["source_onnx"])
    with pytest.raises(CsaError, match="different graphs"):
        rebatch_like(qdq, source, onnx.load(str(exported("test-convnext"))))


def test_eval_mixed_evaluates_the_engine_built_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """Item 5: when the engine stage built an engine on this machine, that engine is what eval-mixed evaluates."""
    from csa_cli.pipeline import steps
    from csa_cli.pipeline.options import RunOptions
    from csa_cli.records import make_record
    from csa_cli.stages.evaluate import stage as evaluate

    seen: dict[str, Any] = {}

    def fake_eval(source: Any, **kw: Any) -> Any:
        seen.update(source=source, **kw)
        return make_record("eval", model="m")

    monkeypatch.setattr(evaluate, "evaluate_stage", fake_eval)
    ctx = steps.Context(options=RunOptions(model="m", dataset="d"))
    ctx.records["quantize"] = make_record("quantized", model="m", path="q.onnx")
    ctx.records["engine"] = make_record("engine", model="m", path="m.engine")
    steps.STAGE_BODIES["eval-mixed"](ctx)
    assert seen["backend"] == "tensorrt" and seen["source"].kind == "engine"
    ctx.records["engine"] = make_record("bundle", model="m", path="bundle/")  # a bundle is evaluated on the device, not here
    steps.STAGE_BODIES["eval-mixed"](ctx)
    assert seen["backend"] == "onnxruntime" and seen["source"].kind == "quantized"

"""csa engine: build plans, trtexec rendering, Orin bundles, the TensorRT executor, import-timings.

TensorRT is not installed here: plans, flags, bundles and scripts are tested everywhere; real
engine builds and TensorRTBackend runs are the `tensorrt`/`gpu` tests at the end.
"""

from __future__ import annotations

import json
import math
import random
import re
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from csa_cli.errors import UsageError
from csa_cli.graph.onnx_file import inspect_onnx
from csa_cli.tensorrt.plan import BuildPlan, make_plan, plan_problems, to_trtexec, validate_plan

REPO = Path(__file__).resolve().parent.parent

# ---------------------------------------------------------------------------------------------
# plan -> trtexec (exact strings, every precision x target)


def _plan(tiny: dict[str, Path], keys: list[str], **kw: Any) -> BuildPlan:
    kw.setdefault("trt_version", "8.6")
    kw.setdefault("target", "orin")
    return make_plan("m", [inspect_onnx(tiny[k]) for k in keys], **kw)


def _lines(plan: BuildPlan) -> list[str]:
    return [" ".join(argv) for argv in to_trtexec(plan)]


def test_inspect_onnx_reads_batch_qdq_and_dynamic(tiny: dict[str, Path]) -> None:
    info = inspect_onnx(tiny["qdq_b8"])
    assert (info.input_name, info.input_shape, info.batch, info.dynamic, info.has_qdq) == ("input", [8, 3, 16, 16], 8, False, True)
    dyn = inspect_onnx(tiny["dyn"])
    assert dyn.dynamic and dyn.batch is None and not dyn.has_qdq


@pytest.mark.parametrize(
    ("precision", "target", "trt", "onnx", "extra", "expected"),
    [
        ("fp32", "orin", "8.6", "fp32_b1", {}, "--onnx={fp32_b1} --saveEngine=engines/m_fp32_b1.engine --memPoolSize=workspace:1024"),
        ("fp16", "orin", "8.6", "fp32_b4", {}, "--onnx={fp32_b4} --saveEngine=engines/m_fp16_b4.engine --fp16 --memPoolSize=workspace:1024"),
        ("int8", "orin", "8.6", "qdq_b1", {}, "--onnx={qdq_b1} --saveEngine=engines/m_int8_b1.engine --int8 --memPoolSize=workspace:1024"),
        (
            "int8",
            "orin",
            "8.6",
            "fp32_b1",
            {"calib_cache": "calib/m.cache"},
            "--onnx={fp32_b1} --saveEngine=engines/m_int8_b1.engine --int8 --calib=calib/m.cache --memPoolSize=workspace:1024",
        ),
        ("mixed", "orin", "8.6", "qdq_b8", {}, "--onnx={qdq_b8} --saveEngine=engines/m_mixed_b8.engine --fp16 --int8 --memPoolSize=workspace:1024"),
        (
            "fp16",
            "orin",
            "8.6",
            "fp32_b1",
            {"restricted": True, "dla_core": 0, "workspace_mib": 2048, "timing_cache": "timing.cache"},
            "--onnx={fp32_b1} --saveEngine=engines/m_fp16_b1.engine --fp16 --restricted --useDLACore=0 --allowGPUFallback"
            " --memPoolSize=workspace:2048 --timingCacheFile=timing.cache",
        ),
        (  # DLA without GPU fallback: I/O already in DLA formats (trtexec sets kDIRECT_IO then)
            "int8",
            "orin",
            "10.3",
            "qdq_b1",
            {"dla_core": 0, "gpu_fallback": False},
            "--onnx={qdq_b1} --saveEngine=engines/m_int8_b1.engine --int8 --inputIOFormats=fp16:chw16 --outputIOFormats=fp16:dla_linear"
            " --useDLACore=0 --memPoolSize=workspace:1024",
        ),
        (
            "fp16",
            "orin",
            "8.6",
            "fp32_b1",
            {"restricted": True, "safe": True},
            "--onnx={fp32_b1} --saveEngine=engines/m_fp16_b1.engine --fp16 --restricted --safe --memPoolSize=workspace:1024",
        ),
        (
            "fp16",
            "orin",
            "8.6",
            "fp32_b1",
            {"safe": True, "dla_core": 1},
            "--onnx={fp32_b1} --saveEngine=engines/m_fp16_b1.loadable --fp16 --inputIOFormats=fp16:chw16 --outputIOFormats=fp16:dla_linear"
            " --safe --useDLACore=1 --memPoolSize=workspace:1024",
        ),
        (
            "fp16",
            "local",
            "10.3.0",
            "dyn",
            {"batches": [1, 4, 8, 16], "opt_batch": 8},
            "--onnx={dyn} --saveEngine=engines/m_fp16_b16_dyn.engine --fp16 --minShapes=input:1x3x16x16 --optShapes=input:8x3x16x16"
            " --maxShapes=input:16x3x16x16 --memPoolSize=workspace:1024",
        ),
        ("fp32", "local", "10.3.0", "fp32_b4", {}, "--onnx={fp32_b4} --saveEngine=engines/m_fp32_b4.engine --memPoolSize=workspace:1024"),
        ("mixed", "local", "10.3.0", "qdq_b1", {}, "--onnx={qdq_b1} --saveEngine=engines/m_mixed_b1.engine --fp16 --int8 --memPoolSize=workspace:1024"),
        # TensorRT 11: strongly typed, no precision flags; INT8 comes from the Q/DQ nodes alone
        ("int8", "local", "11.0", "qdq_b1", {}, "--onnx={qdq_b1} --saveEngine=engines/m_int8_b1.engine --memPoolSize=workspace:1024"),
        ("fp32", "orin", "11.0", "fp32_b1", {}, "--onnx={fp32_b1} --saveEngine=engines/m_fp32_b1.engine --memPoolSize=workspace:1024"),
    ],
)
def test_trtexec_rendering(tiny: dict[str, Path], precision: str, target: str, trt: str, onnx: str, extra: dict[str, Any], expected: str) -> None:
    plan = _plan(tiny, [onnx], precision=precision, target=target, trt_version=trt, **extra)
    assert _lines(plan)[0] == "trtexec " + expected.format(**{k: str(v) for k, v in tiny.items()})


def test_one_command_per_engine_and_mixed_flags(tiny: dict[str, Path]) -> None:
    plan = _plan(tiny, ["qdq_b1", "qdq_b8"], precision="mixed")
    assert (plan.fp16, plan.int8, plan.allow_fp32) == (True, True, True)
    lines = to_trtexec(plan)
    assert [a[1] for a in lines] == [f"--onnx={tiny['qdq_b1']}", f"--onnx={tiny['qdq_b8']}"]
    assert [s.batch for s in plan.engines] == [1, 8]
    assert not any(a.startswith("--shapes") or a.startswith("--minShapes") for line in lines for a in line)  # static: no shape flags


def test_dla_without_safe_defaults_to_gpu_fallback(tiny: dict[str, Path]) -> None:
    assert _plan(tiny, ["fp32_b1"], precision="fp16", dla_core=0).gpu_fallback is True
    assert _plan(tiny, ["fp32_b1"], precision="fp16", dla_core=0, safe=True).gpu_fallback is False
    assert _plan(tiny, ["fp32_b1"], precision="fp16").gpu_fallback is False


# ---------------------------------------------------------------------------------------------
# plan validation


def _data(tiny: dict[str, Path], **over: Any) -> dict[str, Any]:
    data = _plan(tiny, ["fp32_b1"], precision="fp16").model_dump(by_alias=True)
    engine_over = over.pop("engine", {})
    data["engines"][0].update(engine_over)
    data.update(over)
    return data


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"engine": {"batch": 0}}, "batch must be at least 1, got 0"),
        ({"engine": {"dynamic": True, "profile": {"min": 1, "opt": 16, "max": 8}, "batch": 8}}, "profile opt batch 16 > max 8"),
        ({"engine": {"dynamic": True, "profile": {"min": 4, "opt": 2, "max": 8}, "batch": 8}}, "profile min batch 4 > opt 2"),
        ({"engine": {"dynamic": True, "profile": None}}, "needs an optimization profile"),
        ({"engine": {"profile": {"min": 1, "opt": 1, "max": 1}}}, "needs a dynamic-batch ONNX"),
        ({"precision": "int8", "fp16": False, "int8": True}, "needs INT8 scales: a Q/DQ ONNX"),
        ({"precision": "mixed", "fp16": True, "int8": True}, "needs INT8 scales"),
        ({"engine": {"dynamic": True, "profile": {"min": 1, "opt": 4, "max": 4}, "batch": 4}, "restricted": True}, "takes static shapes"),
        ({"engine": {"dynamic": True, "profile": {"min": 1, "opt": 4, "max": 4}, "batch": 4}, "safe": True}, "static shapes only"),
        ({"engine": {"batch": 32}, "restricted": True}, "batch <= 16"),
        ({"trt_version": "11.0"}, "TensorRT 11 removed"),
        # a safety engine is a DRIVE OS capability: only an Orin bundle builds it
        ({"safe": True, "target": "local"}, "build it in an Orin bundle with --target orin"),
        # trtexec 11 has no --restricted, and 10.16+ ignores SAFETY_SCOPE
        ({"restricted": True, "trt_version": "11.0"}, "ignores the safety scope check"),
        ({"restricted": True, "trt_version": "10.16"}, "ignores the safety scope check"),
        # DLA runs FP16 and INT8 only; TensorRT 11 has no DLA for DRIVE OS
        ({"precision": "fp32", "fp16": False, "dla_core": 0, "gpu_fallback": True}, "DLA has no FP32 kernels"),
        ({"dla_core": 0, "gpu_fallback": True, "trt_version": "11.0"}, "has no DLA for DRIVE OS"),
        ({"dla_core": 0, "gpu_fallback": False, "target": "local"}, "csa's TensorRT backend does not feed"),
        # a Q/DQ graph builds as INT8 whatever the flags
        ({"engine": {"has_qdq": True}}, "is a Q/DQ (INT8) graph, which precision fp16 cannot build"),
        (
            {"precision": "int8", "fp16": False, "int8": True, "engine": {"has_qdq": True}, "dla_core": 0, "gpu_fallback": True},
            "DLA on TensorRT 8.6 does not take a Q/DQ graph",
        ),
        ({"precision": "fp32"}, "precision fp32 needs fp16=False"),
        ({"gpu_fallback": True}, "GPU fallback only applies to a DLA build"),
        ({"safe": True, "dla_core": 0, "gpu_fallback": True}, "DLA-standalone"),
        ({"workspace_mib": 0}, "workspace must be at least 1 MiB"),
    ],
)
def test_plan_validation_errors(tiny: dict[str, Path], over: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        validate_plan(_data(tiny, **over))


def test_valid_plan_has_no_problems_and_roundtrips(tiny: dict[str, Path]) -> None:
    plan = _plan(tiny, ["qdq_b1", "qdq_b8"], precision="mixed", restricted=True)
    assert plan_problems(plan) == []
    again = validate_plan(json.loads(plan.model_dump_json(by_alias=True)))
    assert again == plan and to_trtexec(again) == to_trtexec(plan)


def test_make_plan_errors_for_dynamic_restricted_and_int8_without_scales(tiny: dict[str, Path]) -> None:
    with pytest.raises(UsageError, match="static shapes only"):
        _plan(tiny, ["dyn"], precision="fp16", batches=[1, 4], restricted=True)
    with pytest.raises(UsageError, match="profile min batch must be at least 1"):
        _plan(tiny, ["dyn"], precision="fp16", batches=[0, 4])
    with pytest.raises(UsageError, match="profile opt batch 32 > max 16"):
        _plan(tiny, ["dyn"], precision="fp16", batches=[1, 16], opt_batch=32)
    with pytest.raises(UsageError, match="neither"):
        _plan(tiny, ["fp32_b1"], precision="int8")
    assert _plan(tiny, ["fp32_b1"], precision="int8", calib_cache=str(tiny["cache"])).calib_cache == str(tiny["cache"])


# ---------------------------------------------------------------------------------------------
# builder settings per TensorRT version (what the API executor sets; pure Python)


def test_builder_settings_version_branches(tiny: dict[str, Path]) -> None:
    from csa_cli.tensorrt.builder import builder_settings

    cache_plan = _plan(tiny, ["fp32_b1"], precision="mixed", calib_cache=str(tiny["cache"]), restricted=True, workspace_mib=512)
    v8 = builder_settings(cache_plan, 8)
    assert v8.network_flags == ["EXPLICIT_BATCH"]
    assert v8.builder_flags == ["FP16", "INT8", "SAFETY_SCOPE"]
    assert v8.use_calibration_cache and v8.workspace_bytes == 512 << 20 and v8.engine_capability == "STANDARD"
    v10 = builder_settings(cache_plan, 10)
    assert v10.network_flags == [] and v10.builder_flags == ["FP16", "INT8", "SAFETY_SCOPE"] and v10.use_calibration_cache
    with pytest.raises(UsageError, match="ignores the safety scope check"):  # SAFETY_SCOPE is gone from 10.16 on
        builder_settings(cache_plan, 11)
    with pytest.raises(UsageError, match="TensorRT 11 removed"):  # so are the fp16 flag and implicit calibration
        builder_settings(cache_plan.model_copy(update={"restricted": False}), 11)

    qdq = _plan(tiny, ["qdq_b1"], precision="int8")
    assert not builder_settings(qdq, 8).use_calibration_cache  # explicit quantization: no calibrator
    v11 = builder_settings(qdq, 11)
    assert v11.builder_flags == [] and v11.network_flags == [] and not v11.use_calibration_cache
    assert any("strongly typed" in n for n in v11.notes)

    dla = builder_settings(_plan(tiny, ["fp32_b1"], precision="fp16", dla_core=1), 8)
    assert (dla.default_device, dla.dla_core, dla.builder_flags, dla.engine_capability) == ("DLA", 1, ["FP16", "GPU_FALLBACK"], "STANDARD")
    safe_dla = builder_settings(_plan(tiny, ["fp32_b1"], precision="fp16", dla_core=0, safe=True), 8)
    assert safe_dla.engine_capability == "DLA_STANDALONE" and "GPU_FALLBACK" not in safe_dla.builder_flags
    # no reformat may sit at a standalone loadable's I/O: DIRECT_IO and DLA formats (TensorRT docs, DLA Standalone Mode)
    assert "DIRECT_IO" in safe_dla.builder_flags and safe_dla.io_formats == {"inputs": [("HALF", "CHW16")], "outputs": [("HALF", "DLA_LINEAR")]}
    assert builder_settings(_plan(tiny, ["fp32_b1"], precision="fp16", safe=True), 10).engine_capability == "SAFETY"


# ---------------------------------------------------------------------------------------------
# the command


def test_engine_local_without_tensorrt_exits_4(csa: Any, tiny: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    import csa_cli.tensorrt.runtime as tb

    monkeypatch.setattr(tb, "tensorrt_version", lambda: None)  # the same answer on a machine that has TensorRT
    result = csa("engine", str(tiny["fp32_b1"]), "--precision", "fp16", "--target", "local")
    assert result.exit_code == 4
    assert "TensorRT is not installed here" in result.stderr and "--target orin" in result.stderr
    assert result.record["kind"] == "error"


def test_engine_local_here_exits_4_or_builds(csa: Any, tiny: dict[str, Path]) -> None:
    """Unpatched: exit 4 here (no TensorRT / no GPU); an engine record where both exist."""
    from csa_cli.tensorrt.runtime import tensorrt_version

    result = csa("engine", str(tiny["fp32_b1"]), "--precision", "fp32", "--target", "local")
    import torch

    if tensorrt_version() is None or not torch.cuda.is_available():
        assert result.exit_code == 4 and "Error:" in result.stderr
    else:
        assert result.exit_code == 0 and result.record["kind"] == "engine"


def test_engine_orin_cli_bundle_record(csa: Any, nano_qdq: Path, imagenet_photos: Any, tmp_path: Path) -> None:
    dest = tmp_path / "b"
    data = ["--dataset", str(imagenet_photos.val_dir), "--val-images", "2"]
    result = csa("engine", str(nano_qdq), "--precision", "mixed", "--target", "orin", "--restricted", "--output", str(dest), *data)
    assert result.exit_code == 0, result.stderr
    rec = result.record
    assert (rec["kind"], rec["model"], rec["precision"], rec["target"], rec["batches"]) == ("bundle", "csa-nano_b1_qdq", "mixed", "orin", [1])
    assert rec["path"] == str(dest) and set(rec["files"]) == {str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file()}
    assert "compliant" in rec["check"]
    assert rec["validation"].startswith("2 held-out images of") and rec["capability"] == "STANDARD"
    again = csa("engine", str(nano_qdq), "--precision", "mixed", "--target", "orin", "--output", str(dest), *data)
    assert again.exit_code == 1 and "already exists" in again.stderr and "--force" in again.stderr


def test_engine_orin_record_from_stdin_keeps_random_weights(csa: Any, quantized_nano: dict[str, Any]) -> None:
    """`csa export | csa quantize | csa engine --target orin`: the quantize stage's record, weights carried."""
    upstream = json.dumps(quantized_nano)
    result = csa("engine", "--precision", quantized_nano["precision"], "--target", "orin", "--val-images", "2", input=upstream + "\n")
    assert result.exit_code == 0, result.stderr
    rec = result.record
    assert (rec["kind"], rec["model"], rec["weights"]) == ("bundle", "csa-nano", "random")
    assert rec["weights_hash"] == quantized_nano["weights_hash"] and rec["source_onnx"] == [quantized_nano["path"]]
    assert Path(rec["path"]).is_dir() and "csa-home" in rec["path"]  # under CSA_HOME by default
    cached = csa("engine", "--precision", quantized_nano["precision"], "--target", "orin", "--val-images", "2", input=upstream + "\n")
    assert cached.record["path"] == rec["path"] and "cached" in cached.stderr
    # item 8: the quantized record names its calibration set, whose held-out images validate the bundle
    assert "held-out images of" in rec["validation"] and "(the 5 calibration images left out)" in rec["validation"]


def test_an_int8_bundle_without_images_is_refused(csa: Any, tiny: dict[str, Path]) -> None:
    """Item 8: no dataset, no held-out images: an INT8 bundle does not validate on noise."""
    result = csa("engine", str(tiny["qdq_b1"]), "--precision", "int8", "--target", "orin")
    assert result.exit_code == 2 and "validates on real images" in result.stderr and "--dataset" in result.stderr


def test_engine_restricted_refuses_noncompliant_graph_unless_forced(csa: Any, tiny: dict[str, Path], tmp_path: Path) -> None:
    refused = csa("engine", str(tiny["softmax_b1"]), "--precision", "fp16", "--target", "orin", "--restricted", "--output", str(tmp_path / "x"))
    assert refused.exit_code == 3 and "not restricted-mode compliant" in refused.stderr and "Softmax" in refused.stderr
    assert not (tmp_path / "x").exists()
    forced = csa("engine", str(tiny["softmax_b1"]), "--precision", "fp16", "--target", "orin", "--restricted", "--force", "--output", str(tmp_path / "x"))
    assert forced.exit_code == 0 and "Warning" in forced.stderr and (tmp_path / "x" / "build.sh").is_file()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--batch", "0"], 2, "--batch must be at least 1"),
        (["--precision", "int4"], 2, "--precision must be one of"),
        (["--target", "jetson"], 2, "--target must be local or orin"),
        (["--workspace", "0"], 2, "--workspace must be at least 1 MiB"),
        (["--precision", "int8"], 2, "needs INT8 scales"),
        (["--batch", "1,4"], 2, "static batch-1 ONNX"),
        (["--trt-version", "11", "--precision", "fp16"], 2, "TensorRT 11 removed"),
    ],
)
def test_engine_bad_options(csa: Any, tiny: dict[str, Path], args: list[str], code: int, message: str) -> None:
    base = ["engine", str(tiny["fp32_b1"]), "--target", "orin"]
    result = csa(*base, *args)
    assert result.exit_code == code, result.stderr
    assert message in result.stderr


def test_engine_dynamic_onnx_gets_a_profile_unless_restricted(csa: Any, tiny: dict[str, Path], tmp_path: Path) -> None:
    ok = csa("engine", str(tiny["dyn"]), "--target", "orin", "--batch", "1,4,8", "--output", str(tmp_path / "d"))
    assert ok.exit_code == 0, ok.stderr
    plan = BuildPlan.model_validate_json((tmp_path / "d" / "plan.json").read_text())
    assert plan.engines[0].profile is not None and plan.engines[0].profile.model_dump() == {"min": 1, "opt": 8, "max": 8}
    assert "--shapes=input:8x3x16x16" in (tmp_path / "d" / "validate.sh").read_text()
    refused = csa("engine", str(tiny["dyn"]), "--target", "orin", "--batch", "1,4", "--restricted", "--force", "--output", str(tmp_path / "e"))
    assert refused.exit_code in (2, 3) and ("static shapes only" in refused.stderr or "dynamic" in refused.stderr)


# ---------------------------------------------------------------------------------------------
# import-timings


def _times(n: int, seed: int = 0) -> list[dict[str, float]]:
    rng = random.Random(seed)
    out = []
    t = 0.0
    for _ in range(n):
        lat = rng.uniform(1.0, 3.0)
        out.append({"startEnqMs": t, "endEnqMs": t + 0.05, "startComputeMs": t + 0.1, "endComputeMs": t + 0.1 + lat * 0.9, "latencyMs": lat, "endToEndMs": lat})
        t += lat + 0.2
    return out


def test_import_timings_round_trip(csa: Any, tmp_path: Path) -> None:
    from csa_cli.store import load_results

    times = _times(101)
    path = tmp_path / "times.json"
    path.write_text(json.dumps(times))
    result = csa("import-timings", str(path), "--model", "csa-nano", "--batch", "4", "--precision", "mixed", "--device", "Orin AGX")
    assert result.exit_code == 0, result.stderr
    rec = result.record
    lat = sorted(t["latencyMs"] for t in times)
    assert rec["kind"] == "profile" and rec["backend"] == "tensorrt" and rec["machine"]["device"] == "Orin AGX"
    row = rec["results"][0]
    assert row["batch"] == 4 and row["iterations"] == 101
    assert row["median_ms"] == pytest.approx(lat[50]) and row["p99_ms"] == pytest.approx(lat[math.ceil(0.99 * 101) - 1])
    assert row["min_ms"] == pytest.approx(lat[0]) and row["throughput_ips"] == pytest.approx(4000 / lat[50])
    stored = [r for r in load_results("timing", "csa-nano") if r["source"] == str(path)]
    assert stored and stored[-1]["median_ms"] == pytest.approx(lat[50]) and stored[-1]["device"] == "Orin AGX"
    from csa_cli.pipeline.compare import device_timings

    assert device_timings("csa-nano", [4])["Orin AGX (mixed)"][4] == pytest.approx(lat[50])


def test_import_timings_inside_a_bundle_reads_the_plan(csa: Any, nano_bundle: Path, tmp_path: Path) -> None:
    import shutil

    bundle = tmp_path / "bundle"
    shutil.copytree(nano_bundle, bundle)
    (bundle / "results").mkdir(exist_ok=True)
    (bundle / "results" / "times_b1.json").write_text(json.dumps(_times(20, seed=2)))
    result = csa("import-timings", str(bundle / "results" / "times_b1.json"))
    assert result.exit_code == 0, result.stderr
    rec = result.record
    assert (rec["model"], rec["precision"], rec["results"][0]["batch"], rec["machine"]["device"]) == ("csa-nano", "mixed", 1, "Orin")
    assert rec["weights"] == "random"


@pytest.mark.parametrize(
    ("content", "code", "message"),
    [
        ("not json at all", 1, "not a trtexec --exportTimes file (not JSON"),
        ('{"latencyMs": 1.0}', 1, "expected a JSON list"),
        ('[{"startComputeMs": 0, "endComputeMs": 1}]', 1, "latencyMs"),
        ('[{"startComputeMs": 0, "endComputeMs": 1, "latencyMs": -2}]', 1, "not a trtexec --exportTimes file"),
        ("[]", 1, "holds no timed inferences"),
        (None, 1, "timings file not found"),
    ],
)
def test_import_timings_bad_files(csa: Any, tmp_path: Path, content: str | None, code: int, message: str) -> None:
    path = tmp_path / "t.json"
    if content is not None:
        path.write_text(content)
    result = csa("import-timings", str(path), "--model", "csa-nano", "--batch", "1", "--device", "Orin")
    assert result.exit_code == code and message in result.stderr, result.stderr


def test_import_timings_needs_model_outside_a_bundle(csa: Any, tmp_path: Path) -> None:
    path = tmp_path / "times_b1.json"
    path.write_text(json.dumps(_times(5)))
    result = csa("import-timings", str(path), "--device", "Orin")
    assert result.exit_code == 2 and "--model" in result.stderr


# ---------------------------------------------------------------------------------------------
# benchmarks/gpu.sh


def test_gpu_sh_dry_run_prints_the_plan() -> None:
    script = REPO / "benchmarks" / "gpu.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    result = subprocess.run(["bash", str(script), "--dry-run"], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "pytest" in out and '-m "gpu or tensorrt"' in out
    for model in ("csa-tiny", "convnext-tiny", "swin-tiny", "cvt-13"):
        assert model in out
    assert "1,4,8,16" in out and "gpu_profile.py" in out


# ---------------------------------------------------------------------------------------------
# real TensorRT (skipped, with the reason, where TensorRT or a GPU is absent)


@pytest.mark.gpu
@pytest.mark.tensorrt
def test_real_engine_build_and_backend_matches_onnxruntime(tiny: dict[str, Path], tmp_path: Path) -> None:
    import onnxruntime as ort

    from csa_cli.backends import open_backend
    from csa_cli.tensorrt.builder import build_engines, read_engine_meta
    from csa_cli.tensorrt.runtime import tensorrt_version

    version = tensorrt_version()
    assert version is not None
    plan = make_plan("tiny", [inspect_onnx(tiny["fp32_b4"])], precision="fp32", target="local", trt_version=version, engine_dir="")
    cache = tmp_path / "timing.cache"
    (engine,) = build_engines(plan, out_dir=tmp_path, timing_cache=cache)
    assert engine.is_file() and cache.is_file()
    meta = read_engine_meta(engine)
    assert meta is not None and meta.tensorrt_version == version and meta.plan == plan
    backend = open_backend("tensorrt", engine, device="cuda:0")
    x = np.random.default_rng(0).standard_normal((6, 3, 16, 16), dtype=np.float32)  # 6 = one full chunk of 4 + a padded 2
    got = backend.run(x)
    sess = ort.InferenceSession(str(tiny["fp32_b4"]), providers=["CPUExecutionProvider"])
    ref = np.concatenate([sess.run(None, {"input": np.concatenate([x[4:], np.zeros((2, 3, 16, 16), np.float32)])})[0][:2]])
    ref = np.concatenate([sess.run(None, {"input": x[:4]})[0], ref])
    np.testing.assert_allclose(got, ref, rtol=1e-2, atol=1e-3)
    assert backend.describe()["tensorrt"] == version


@pytest.mark.gpu
@pytest.mark.tensorrt
def test_real_engine_stage_local_int8_qdq_and_dynamic(csa: Any, tiny: dict[str, Path], tmp_path: Path) -> None:
    qdq = csa("engine", str(tiny["qdq_b1"]), "--precision", "int8", "--target", "local", "--output", str(tmp_path / "q"))
    assert qdq.exit_code == 0, qdq.stderr
    assert qdq.record["kind"] == "engine" and Path(qdq.record["path"]).is_file()
    dyn = csa("engine", str(tiny["dyn"]), "--precision", "fp32", "--target", "local", "--batch", "1,4", "--output", str(tmp_path / "d"))
    assert dyn.exit_code == 0, dyn.stderr
    from csa_cli.backends import open_backend

    backend = open_backend("tensorrt", dyn.record["path"], device="cuda:0")
    assert backend.run(np.zeros((3, 3, 16, 16), np.float32)).shape == (3, 10)


# ---------------------------------------------------------------------------------------------
# the stage against the stand-in `tensorrt` module (tests/fixtures/engine.py; the executor's own
# tests are in test_engine_runtime.py)


def test_engine_stage_local_with_fake_trt_dynamic_profile(with_fake_trt: Any, csa: Any, tiny: dict[str, Path], tmp_path: Path) -> None:
    calls = with_fake_trt("10.3.0")
    result = csa(
        "engine", str(tiny["dyn"]), "--precision", "fp16", "--target", "local", "--batch", "1,4,16", "--opt-batch", "4", "--output", str(tmp_path / "e")
    )
    assert result.exit_code == 0, result.stderr
    rec = result.record
    assert rec["kind"] == "engine" and rec["trt_version"] == "10.3.0" and rec["device"] == "Fake GPU"
    assert [e["batch"] for e in rec["engines"]] == [16] and Path(rec["path"]).is_file() and Path(rec["plan"]).is_file()
    assert ("profile", ("input", (1, 3, 16, 16), (4, 3, 16, 16), (16, 3, 16, 16))) in calls
    assert ("network_flags", 0) in calls and [v for k, v in calls if k == "flag"] == ["BuilderFlag.FP16"]


def test_engine_model_name_exports_one_static_onnx_per_batch(csa: Any, exported: Any, tmp_path: Path) -> None:
    for batch in (1, 4):
        exported("csa-nano", batch=batch)  # shared session exports: the stage below finds them cached
    dest = tmp_path / "nano"
    args = ["--weights", "random", "--precision", "fp16", "--target", "orin", "--restricted", "--batch", "1,4", "--output", str(dest)]
    result = csa("engine", "csa-nano", *args)
    assert result.exit_code == 0, result.stderr
    rec = result.record
    assert (rec["model"], rec["batches"], rec["weights"], rec["restricted"]) == ("csa-nano", [1, 4], "random", True)
    assert "(batch 1, restricted rules): compliant" in rec["check"] and "(batch 4, restricted rules): compliant" in rec["check"]
    plan = BuildPlan.model_validate_json((dest / "plan.json").read_text())
    assert [(s.batch, s.dynamic, s.onnx) for s in plan.engines] == [(1, False, "onnx/csa-nano_b1.onnx"), (4, False, "onnx/csa-nano_b4.onnx")]
    assert [inspect_onnx(dest / s.onnx).batch for s in plan.engines] == [1, 4]


def test_engine_model_name_int8_without_scales_is_refused_before_exporting(csa: Any) -> None:
    result = csa("engine", "csa-nano", "--weights", "random", "--precision", "int8", "--target", "orin", "--batch", "2")
    assert result.exit_code == 2 and "csa quantize" in result.stderr


def test_engine_onnx_record_of_a_zoo_model_is_reexported_per_batch(csa: Any, exported: Any) -> None:
    from csa_cli.stages.export.stage import export_stage

    exported("csa-nano")
    exported("csa-nano", batch=4)  # the session's exports: found cached
    upstream = export_stage("csa-nano", weights="random", batch=1).model_dump(mode="json", by_alias=True, exclude_none=True)
    result = csa("engine", "--precision", "fp32", "--target", "orin", "--batch", "1,4", input=json.dumps(upstream) + "\n")
    assert result.exit_code == 0, result.stderr
    assert (result.record["batches"], result.record["weights"]) == ([1, 4], "random")
    assert len(result.record["source_onnx"]) == 2 and result.record["source_onnx"][0] == upstream["path"]

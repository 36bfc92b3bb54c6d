"""csa quantize: calibration sample, TensorRT-style ranges, QDQ ONNX, calibration cache, CLI errors."""

from __future__ import annotations

import io
import json
import shutil
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from csa_cli.errors import CsaError
from csa_cli.stages.quantize.calibration import (
    START_BIN,
    CalibFile,
    CalibrationCache,
    TensorHistogram,
    entropy_divergences,
    entropy_threshold_bin,
    parse_calibration_cache,
    read_calibration_cache,
    scale_to_hex,
    select_calibration_files,
    write_calibration_cache,
)
from tests.fixtures.entropy_reference import entropy_divergences_reference, entropy_threshold_bin_reference

SMALL = (64, 64)  # csa-nano's smallest input: keeps calibration fast


# ------------------------------------------------------------------------------------------
# helpers and session fixtures


def export_small(name: str, path: Path, seed: int = 0) -> Path:
    import torch

    from csa_cli.models import create_model, inference_form
    from csa_cli.stages.export.onnx_export import export_onnx

    torch.manual_seed(seed)
    module = create_model(name).eval()
    return export_onnx(inference_form(module), path, batch=1, img_size=SMALL)


def zero_point_values(model: Any) -> list[int]:
    from onnx import numpy_helper

    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    values: list[int] = []
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            assert len(node.input) == 3 and node.input[2] in inits, f"{node.name}: zero point missing or not constant"
            values.extend(int(v) for v in np.ravel(inits[node.input[2]]))
    return values


@pytest.fixture(scope="session")
def nano_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_small("csa-nano", tmp_path_factory.mktemp("q-nano") / "csa-nano-64.onnx")


@pytest.fixture(scope="session")
def calib_dir(imagenet_photos: Any) -> Path:
    return imagenet_photos.val_dir  # 8 WordNet classes x 4 photos


@pytest.fixture(scope="session")
def nano_int8(nano_onnx: Path, calib_dir: Path) -> dict[str, Any]:
    """csa-nano quantized through the CLI (subprocess-free runner), 16 images, entropy, int8."""
    from typer.testing import CliRunner

    from csa_cli.cli import app

    result = CliRunner().invoke(
        app,
        [
            "quantize",
            str(nano_onnx),
            "--model",
            "csa-nano",
            "--calib-dataset",
            str(calib_dir),
            "--calib-images",
            "16",
            "--batch-size",
            "4",
            "--precision",
            "int8",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, "stdout must hold the record only (onnxruntime's prints go to stderr)"
    return json.loads(lines[0])


# ------------------------------------------------------------------------------------------
# ranges: the entropy threshold search


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5])
def test_entropy_threshold_matches_bin_by_bin_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    values = np.concatenate([rng.standard_normal(20000) * (seed + 1), rng.standard_cauchy(50)])
    if seed == 1:
        values = np.maximum(values, 0)  # ReLU-like: a spike of exact zeros
    counts, _ = np.histogram(np.abs(values), bins=400)
    if seed == 3:
        counts[::7] = 0  # empty bins scattered through the range
    if seed == 4:
        counts[:150] = 0  # nothing below bin 150: the first candidates have no Q at all
    if seed == 5:
        counts = np.zeros(400, np.int64)
        counts[300] = 1  # a single value: only the candidate that keeps its bin is finite
    # every candidate's divergence, not only the winner: inf in the same places, the same values elsewhere
    kl, kl_reference = entropy_divergences(counts), entropy_divergences_reference(counts)
    assert kl.shape == kl_reference.shape == (400 - START_BIN + 1,)
    np.testing.assert_array_equal(np.isinf(kl), np.isinf(kl_reference))
    np.testing.assert_allclose(kl[np.isfinite(kl)], kl_reference[np.isfinite(kl_reference)], rtol=1e-9, atol=1e-12)
    assert entropy_threshold_bin(counts) == entropy_threshold_bin_reference(counts)


def test_entropy_clips_outliers_that_minmax_keeps() -> None:
    rng = np.random.default_rng(0)
    hist = TensorHistogram()
    hist.update(rng.standard_normal(200000).astype(np.float32))
    hist.update(np.array([60.0], dtype=np.float32))  # one outlier stretches the range
    assert hist.amax("minmax") == pytest.approx(60.0)
    assert 2.0 < hist.amax("entropy") < 20.0
    assert hist.amax("percentile") < 10.0


def test_histogram_grows_without_losing_counts() -> None:
    hist = TensorHistogram()
    hist.update(np.linspace(-1, 1, 1001, dtype=np.float32))
    hist.update(np.linspace(-50, 50, 1001, dtype=np.float32))
    assert hist.counts is not None and int(hist.counts.sum()) == 2002
    assert hist.min == -50 and hist.max == 50
    assert hist.counts.size * hist.width >= 50


# ------------------------------------------------------------------------------------------
# the TensorRT calibration cache


def test_cache_round_trip_is_bit_exact(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    scales = {f"/stage.{i}/conv/Conv_output_0": float(np.float32(v)) for i, v in enumerate(rng.uniform(1e-4, 1.0, 50))}
    scales["input"] = float(np.float32(1 / 127))
    path = write_calibration_cache(tmp_path / "calib.cache", CalibrationCache(scales=scales))
    text = path.read_text()
    assert text.splitlines()[0] == "TRT-8601-EntropyCalibration2"
    assert "input: 3c010204" in text.splitlines()  # 1/127 as float32 bits, as TensorRT writes it
    back = read_calibration_cache(path)
    assert back.scales == scales
    assert back.dynamic_ranges()["input"] == pytest.approx(1.0)


def test_cache_hex_is_float32_bits() -> None:
    for value in (0.5, 1e-3, 3.25):
        assert struct.unpack(">f", bytes.fromhex(scale_to_hex(value)))[0] == pytest.approx(value, rel=1e-7)


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "empty"), ("EntropyCalibration2\nx: 3c010204\n", "header"), ("TRT-8601-EntropyCalibration2\nx 3c010204\n", "line 2")],
)
def test_cache_parser_names_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(CsaError, match=message):
        parse_calibration_cache(text)


# ------------------------------------------------------------------------------------------
# the calibration sample


def _files(classes: int, per_class: int) -> list[CalibFile]:
    return [CalibFile(path=f"/data/c{c}/img{i}.jpg", label=c) for c in range(classes) for i in range(per_class)]


def test_calibration_sample_is_seeded_and_class_balanced() -> None:
    files = _files(10, 30)
    a = select_calibration_files(files, 55, seed=0)
    assert a == select_calibration_files(list(reversed(files)), 55, seed=0)  # input order does not matter
    assert a != select_calibration_files(files, 55, seed=1)
    assert len(a) == len({f.path for f in a}) == 55
    per_class = np.bincount([f.label for f in a], minlength=10)
    assert per_class.max() - per_class.min() <= 1


def test_calibration_sample_takes_all_when_short() -> None:
    files = _files(3, 2)
    assert sorted(f.path for f in select_calibration_files(files, 500, seed=0)) == sorted(f.path for f in files)
    assert len(select_calibration_files(files, 1, seed=0)) == 1  # the smallest sample there is
    with pytest.raises(CsaError, match="at least 1, got 0"):
        select_calibration_files(files, 0)


# ------------------------------------------------------------------------------------------
# csa-nano end to end


def test_quantized_record_and_outputs(nano_int8: dict[str, Any], nano_onnx: Path) -> None:
    rec = nano_int8
    assert rec["kind"] == "quantized" and rec["model"] == "csa-nano"
    assert rec["method"] == "entropy" and rec["precision"] == "int8"
    assert rec["source_onnx"] == str(nano_onnx.resolve())
    assert len(rec["calib_files"]) == rec["images"] == 16
    for key in ("path", "calib_cache", "summary"):
        assert Path(rec[key]).is_file(), key
    summary = json.loads(Path(rec["summary"]).read_text())
    assert summary["images"] == 16 and summary["method"] == "entropy"
    assert summary["peak_rss_mib"] > 0 and summary["time"]["total_s"] > 0
    listed = json.loads(Path(rec["calib_files_list"]).read_text())
    assert [f["path"] for f in listed["files"]] == rec["calib_files"]


def test_qdq_graph_is_symmetric_per_channel_and_runs(nano_int8: dict[str, Any], nano_onnx: Path) -> None:
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    model = onnx.load(nano_int8["path"])
    zps = zero_point_values(model)
    assert zps and set(zps) == {0}
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    weights = {t.name for t in onnx.load(str(nano_onnx)).graph.initializer}
    consumers: dict[str, list[str]] = {}
    for node in model.graph.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node.op_type)
    per_channel = 0
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear":
            # TensorRT placement: Q/DQ in front of weighted ops (the same DQ may also feed a residual Add,
            # which TensorRT fuses into the INT8 conv), never on a weighted op's output alone
            ops = set(consumers[node.output[0]])
            assert ops & {"Conv", "Gemm", "MatMul", "ConvTranspose"} and ops <= {"Conv", "Gemm", "MatMul", "ConvTranspose", "Add"}, node.name
        if node.op_type == "QuantizeLinear" and node.input[0] in weights:
            per_channel += int(inits[node.input[1]].size > 1)
    assert per_channel >= 20  # weights quantized per output channel
    x = np.random.default_rng(0).standard_normal((1, 3, *SMALL)).astype(np.float32)
    fp32 = ort.InferenceSession(str(nano_onnx), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    int8 = ort.InferenceSession(nano_int8["path"], providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    assert int8.shape == fp32.shape and np.isfinite(int8).all()
    assert not np.array_equal(int8, fp32)  # it really is quantized


def test_cache_matches_summary_and_source_tensors(nano_int8: dict[str, Any], nano_onnx: Path) -> None:
    import onnx

    cache = read_calibration_cache(Path(nano_int8["calib_cache"]))
    assert cache.header == "TRT-8601-EntropyCalibration2"
    summary = json.loads(Path(nano_int8["summary"]).read_text())
    assert cache.scales == {name: r["scale"] for name, r in summary["ranges"].items()}
    for name, r in summary["ranges"].items():
        assert cache.dynamic_ranges()[name] == pytest.approx(r["amax"], rel=1e-6)
        assert r["amax"] <= max(abs(r["min"]), abs(r["max"])) * (1 + 1e-6)
    graph = onnx.load(str(nano_onnx)).graph
    tensors = {o for n in graph.node for o in n.output} | {i.name for i in graph.input}
    assert set(cache.scales) <= tensors  # names TensorRT's ONNX parser gives the FP32 network
    assert "input" in cache.scales and "logits" in cache.scales


def test_same_seed_same_files_and_scales(nano_int8: dict[str, Any], nano_onnx: Path, calib_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from csa_cli.stages.quantize.stage import quantize_stage

    monkeypatch.setenv("CSA_HOME", str(tmp_path / "fresh-home"))  # no cached artifact: really recompute
    again = quantize_stage(str(nano_onnx), model="csa-nano", calib_dataset=str(calib_dir), calib_images=16, batch_size=4, precision="int8")
    assert again.field("calib_files") == nano_int8["calib_files"]
    assert read_calibration_cache(Path(str(again.field("calib_cache")))).scales == read_calibration_cache(Path(nano_int8["calib_cache"])).scales
    other = quantize_stage(str(nano_onnx), model="csa-nano", calib_dataset=str(calib_dir), calib_images=16, batch_size=4, seed=1, method="minmax")
    assert other.field("calib_files") != nano_int8["calib_files"]


def test_quantized_csa_graph_passes_check(nano_int8: dict[str, Any], csa: Any) -> None:
    from csa_cli.stages.check.checks import check_onnx

    report = check_onnx(nano_int8["path"])
    assert report.compliant, report.summary()
    result = csa("check", nano_int8["path"])
    assert result.exit_code == 0, result.stderr


def test_mixed_is_the_default_and_keeps_gates_attention_stem_and_classifier(csa: Any, nano_onnx: Path, calib_dir: Path, tmp_path: Path) -> None:
    """`csa quantize` without --precision quantizes mixed (the default of every command that quantizes, as `csa run`'s)."""
    import onnx

    from csa_cli.records import Record

    args = ["--model", "csa-nano", "--calib-dataset", str(calib_dir), "--calib-images", "8", "--keep-fp", "*/fc2/Conv", "--batch-size", "4"]
    result = csa("quantize", str(nano_onnx), *args, "--output", str(tmp_path / "mixed"))
    assert result.exit_code == 0, result.stderr
    rec = Record.model_validate(result.record)
    assert rec.field("precision") == "mixed" and rec.field("calib_dataset") == str(calib_dir)
    assert Path(str(rec.path)).parent == tmp_path / "mixed"
    summary = json.loads(Path(str(rec.field("summary"))).read_text())
    rules = {k["rule"] for k in summary["kept_fp"]}
    assert {"stem", "classifier", "sigmoid-gate", "attention-product", "--keep-fp */fc2/Conv"} <= rules
    kept = {k["name"] for k in summary["kept_fp"]}
    assert not kept & set(summary["quantized_nodes"])
    model = onnx.load(str(rec.path))
    quantized_inputs = {n.name for n in model.graph.node if n.op_type == "Conv" and any(i.endswith("_DequantizeLinear_Output") for i in n.input)}
    assert quantized_inputs and not quantized_inputs & kept
    # implicit INT8: a kept node's output has no scale in the cache, so TensorRT keeps it in FP
    source = onnx.load(str(nano_onnx))
    kept_outputs = {o for n in source.graph.node if n.name in kept for o in n.output}
    assert not kept_outputs & set(read_calibration_cache(Path(str(rec.field("calib_cache")))).scales)


# ------------------------------------------------------------------------------------------
# ConvNeXt (timm convnext_atto) and the digits agreement test


def test_convnext_quantizes_and_runs(calib_dir: Path, tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort

    from csa_cli.stages.quantize.stage import quantize_stage

    src = export_small("test-convnext", tmp_path / "convnext-atto-64.onnx")
    rec = quantize_stage(str(src), model="test-convnext", calib_dataset=str(calib_dir), calib_images=8, batch_size=4, precision="mixed")
    model = onnx.load(str(rec.path))
    assert set(zero_point_values(model)) == {0}
    summary = json.loads(Path(str(rec.field("summary"))).read_text())
    assert {"stem", "classifier"} <= {k["rule"] for k in summary["kept_fp"]}
    assert len(summary["quantized_nodes"]) > 10
    x = np.random.default_rng(1).standard_normal((1, 3, *SMALL)).astype(np.float32)
    out = ort.InferenceSession(str(rec.path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    assert out.shape == (1, 1000) and np.isfinite(out).all()


def test_int8_agrees_with_fp32_on_held_out_digits(digits_csa_nano: Any, tmp_path: Path) -> None:
    import onnxruntime as ort

    from csa_cli.stages.quantize.stage import quantize_onnx

    d = digits_csa_nano
    assert d.fp32_accuracy > 0.9  # the model learned something: agreement is not between two guesses
    calib = d.train_x[np.random.default_rng(0).choice(len(d.train_x), 64, replace=False)]
    result = quantize_onnx(d.onnx_path, tmp_path / "digits-int8", (calib[i : i + 32] for i in range(0, len(calib), 32)), method="entropy")
    assert result.summary.images == 64

    def predict(path: Path) -> np.ndarray:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return np.concatenate([session.run(None, {"input": d.test_x[i : i + 60]})[0].argmax(1) for i in range(0, len(d.test_x), 60)])

    fp32, int8 = predict(d.onnx_path), predict(result.qdq_path)
    agreement = float((fp32 == int8).mean())
    print(f"digits: FP32 top-1 {d.fp32_accuracy:.1%}, INT8 top-1 {(int8 == d.test_y).mean():.1%}, agreement {agreement:.1%} of {len(fp32)}")
    assert agreement >= 0.95, f"INT8 agrees with FP32 on {agreement:.1%} of {len(fp32)} held-out digits"


# ------------------------------------------------------------------------------------------
# bad inputs


def test_fewer_images_than_asked_warns_or_fails_with_strict(csa: Any, nano_onnx: Path, calib_dir: Path, tmp_path: Path) -> None:
    small = tmp_path / "three"
    for photo in sorted(calib_dir.rglob("*.JPEG"))[::11]:  # 3 images from 3 classes
        (small / photo.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(photo, small / photo.parent.name / photo.name)
    args = ["quantize", str(nano_onnx), "--model", "csa-nano", "--calib-dataset", str(small), "--calib-images", "500"]
    strict = csa(*args, "--strict")
    assert strict.exit_code == 1
    assert "Error:" in strict.stderr and "3 images, fewer than the 500" in strict.stderr
    assert strict.record["kind"] == "error"
    loose = csa(*args, "--method", "minmax")
    assert loose.exit_code == 0, loose.stderr
    assert "Warning:" in loose.stderr and loose.record["images"] == 3


def test_already_quantized_onnx_is_refused(csa: Any, nano_int8: dict[str, Any], calib_dir: Path) -> None:
    result = csa("quantize", nano_int8["path"], "--calib-dataset", str(calib_dir))
    assert result.exit_code == 1 and "already quantized" in result.stderr
    piped = csa("quantize", "--calib-dataset", str(calib_dir), input=json.dumps(nano_int8) + "\n")
    assert piped.exit_code == 2 and "already quantized" in piped.stderr  # a record of a kind quantize does not take


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--method", "kl"], "unknown calibration method"),
        (["--precision", "int4"], "unknown precision"),
        (["--calib-images", "0"], "--calib-images must be at least 1"),
        (["--keep-fp", "no/such/node*"], "matches no Conv/Gemm/MatMul node"),
    ],
)
def test_usage_errors_exit_2(csa: Any, nano_onnx: Path, calib_dir: Path, extra: list[str], needle: str) -> None:
    result = csa("quantize", str(nano_onnx), "--model", "csa-nano", "--calib-dataset", str(calib_dir), *extra)
    assert result.exit_code == 2, result.stderr
    assert needle in result.stderr


def test_missing_calibration_folder_is_an_error(csa: Any, nano_onnx: Path, tmp_path: Path) -> None:
    result = csa("quantize", str(nano_onnx), "--calib-dataset", str(tmp_path / "nowhere"))
    assert result.exit_code != 0 and "Error:" in result.stderr


def test_export_pipe_into_quantize_keeps_random_weights(csa: Any, calib_dir: Path) -> None:
    exported = csa("export", "csa-nano", "--img-size", "64")
    assert exported.exit_code == 0, exported.stderr
    result = csa("quantize", "--calib-dataset", str(calib_dir), "--calib-images", "8", input=exported.stdout)
    assert result.exit_code == 0, result.stderr
    rec = result.record
    assert rec["kind"] == "quantized" and rec["model"] == "csa-nano"
    assert rec["weights"] == exported.record["weights"] == "random"
    assert rec["source_onnx"] == str(Path(exported.record["path"]).resolve())
    assert rec["img_size"] == [64, 64] and len(rec["calib_files"]) == 8


# ------------------------------------------------------------------------------------------
# TensorRT acceptance: only where TensorRT (and a GPU for its builder) exists


def _trt_build(onnx_path: str, calibration_cache: bytes | None = None) -> bytes | None:
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    major = int(trt.__version__.split(".")[0])
    network = builder.create_network(0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH))
    parser = trt.OnnxParser(network, logger)
    with open(onnx_path, "rb") as fh:
        assert parser.parse(fh.read()), [str(parser.get_error(i)) for i in range(parser.num_errors)]
    config = builder.create_builder_config()
    config.set_flag(trt.BuilderFlag.INT8)
    config.set_flag(trt.BuilderFlag.FP16)
    if calibration_cache is not None:

        class CacheCalibrator(trt.IInt8EntropyCalibrator2):  # replays the cache, never asks for images
            def get_batch_size(self) -> int:
                return 1

            def get_batch(self, names: list[str]) -> None:
                return None

            def read_calibration_cache(self) -> bytes:
                return calibration_cache

            def write_calibration_cache(self, cache: bytes) -> None:
                return None

        config.int8_calibrator = CacheCalibrator()
    serialized = builder.build_serialized_network(network, config)
    return bytes(serialized) if serialized is not None else None


@pytest.mark.gpu
@pytest.mark.tensorrt
def test_tensorrt_builds_the_qdq_graph_and_reads_the_cache(nano_int8: dict[str, Any], nano_onnx: Path) -> None:
    import tensorrt as trt

    assert _trt_build(nano_int8["path"]), "TensorRT refused the QDQ graph"
    if int(trt.__version__.split(".")[0]) >= 11:
        pytest.skip(f"TensorRT {trt.__version__} removed implicit INT8 calibration: the cache is for DRIVE OS TensorRT 8.6")
    assert _trt_build(str(nano_onnx), Path(nano_int8["calib_cache"]).read_bytes()), "TensorRT refused the FP32 graph with the cache"


def test_terminal_view_summarises_the_artifact(nano_int8: dict[str, Any]) -> None:
    from rich.console import Console

    from csa_cli.cli.quantize import _render
    from csa_cli.records import parse_record

    console = Console(width=200, record=True, file=io.StringIO())
    console.print(_render(parse_record(json.dumps(nano_int8))))
    text = console.export_text()
    assert "16 of 16 asked (seed 0)" in text and "TRT-8601-EntropyCalibration2" in text
    assert nano_int8["path"] in text


def test_onnxruntime_placement_runs_integer_convolutions_and_agrees_with_fp32_on_digits(digits_csa_nano: Any, tmp_path: Path) -> None:
    """--placement onnxruntime with the default (mixed) policy: every Conv the policy quantizes becomes
    QLinearConv in ONNX Runtime's optimized graph (Q/DQ at inputs and outputs), the kept ones stay
    float, and top-1 agrees with FP32 on >= 99% of the held-out digits."""
    import collections

    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    from csa_cli.stages.quantize.stage import quantize_onnx

    d = digits_csa_nano
    calib = d.train_x[np.random.default_rng(0).choice(len(d.train_x), 64, replace=False)]
    result = quantize_onnx(
        d.onnx_path, tmp_path / "digits-ort", (calib[i : i + 32] for i in range(0, len(calib), 32)), method="entropy", placement="onnxruntime"
    )
    assert result.summary.placement == "onnxruntime" and result.summary.precision == "mixed"
    assert {k.rule for k in result.summary.kept_fp} == {"attention-product"}  # policy.MIXED_RULES["onnxruntime"]
    graph = onnx.load(str(result.qdq_path))
    weights = [i for i in graph.graph.initializer if i.data_type == onnx.TensorProto.INT8]
    # 7-bit weights (reduce_range): full-range INT8 saturates U8S8 kernels on CPUs without VNNI
    assert weights and max(int(np.abs(numpy_helper.to_array(w).astype(np.int32)).max()) for w in weights) <= 64
    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED  # the QDQ fusions, without hardware-specific layouts
    ort.InferenceSession(str(result.qdq_path), opts, providers=["CPUExecutionProvider"])
    ops = collections.Counter(n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node)
    convs = sum(n.op_type == "Conv" for n in onnx.load(str(d.onnx_path)).graph.node)
    kept = len(result.summary.kept_fp)
    # every Conv the policy quantized runs as QLinearConv; ONNX Runtime may turn a kept one (float weight between
    # a DQ and a Q) into QLinearConv too, so the kept ones bound the float Convs from above
    assert 0 < kept < convs / 2 and ops["QLinearConv"] >= convs - kept and ops["QLinearConv"] + ops["Conv"] + ops["FusedConv"] == convs, ops

    def predict(path: Path) -> np.ndarray:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return np.concatenate([session.run(None, {"input": d.test_x[i : i + 60]})[0].argmax(1) for i in range(0, len(d.test_x), 60)])

    fp32, int8 = predict(d.onnx_path), predict(result.qdq_path)
    agreement = float((fp32 == int8).mean())
    print(f"digits (onnxruntime placement): INT8 top-1 {(int8 == d.test_y).mean():.1%}, agreement {agreement:.1%} of {len(fp32)}")
    assert agreement >= 0.99, f"INT8 (onnxruntime placement) agrees with FP32 on {agreement:.1%} of {len(fp32)} held-out digits"

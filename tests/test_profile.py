"""csa profile: measurement, statistics, records, the roofline, the plot and bad inputs.

Timings on a shared CI machine are noise, so nothing here asserts a speed: the tests check that
the numbers are consistent with each other (p99 >= median >= min, throughput = batch / median,
floor <= measured) and that the records carry everything `csa compare` reads.
"""

from __future__ import annotations

import contextlib
import json
import math
import statistics
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from csa_cli.measure.machine import MachineInfo
from csa_cli.measure.probes import TorchProbe
from csa_cli.measure.roofline import MachinePeaks, machine_peaks, time_floor
from csa_cli.measure.stats import nearest_rank, summarize
from csa_cli.measure.timing import MeasureSettings, run_timed
from csa_cli.stages.profile.plot import plot_latency
from csa_cli.stages.profile.records import TRAFFIC_LABEL, BatchResult, ProfileResult
from csa_cli.stages.profile.stage import profile_probe

FAST = ("--iterations", "2", "--warmup", "1", "--threads", "1")  # one thread: no OpenMP barrier stalls on a busy CI machine
RECORD_FIELDS = {
    "schema",
    "kind",
    "model",
    "backend",
    "device",
    "precision",
    "threads",
    "weights",
    "weights_hash",
    "img_size",
    "results",
    "machine",
    "roofline",
}
ROW_FIELDS = {
    "batch",
    "iterations",
    "median_ms",
    "p90_ms",
    "p99_ms",
    "mean_ms",
    "std_ms",
    "min_ms",
    "throughput_ips",
    "per_image_ms",
    "macs_per_frame",
    "traffic_bytes_per_frame",
    "floor_ms",
    "x_floor",
}


def _invoke(*args: str, input: str | None = None) -> tuple[int, str, str]:
    from csa_cli.cli import app

    result = CliRunner().invoke(app, list(args), input=input, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def _records(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


@pytest.fixture(scope="session")
def nano_profiles() -> dict[str, dict[str, Any]]:
    """csa-nano profiled once per session on onnxruntime and torch (CPU) at batch 1 and 4."""
    out: dict[str, dict[str, Any]] = {}
    for backend in ("onnxruntime", "torch"):
        code, stdout, stderr = _invoke("profile", "csa-nano", "--backend", backend, "--batch", "1,4", "--device", "cpu", *FAST)
        assert code == 0, stderr
        (record,) = _records(stdout)
        out[backend] = record
    return out


# --- statistics and the measurement loop ---------------------------------------------------


def test_nearest_rank_percentiles_match_the_definition() -> None:
    samples = [float(v) for v in range(1, 101)]  # 1..100: the p-th percentile is p itself
    assert nearest_rank(samples, 90) == 90.0
    assert nearest_rank(samples, 99) == 99.0
    assert nearest_rank(samples, 100) == 100.0
    ten = sorted([5.0, 1.0, 9.0, 3.0, 7.0, 2.0, 8.0, 4.0, 6.0, 10.0])
    assert nearest_rank(ten, 99) == 10.0  # rank ceil(9.9) = 10: the largest of ten
    assert nearest_rank(ten, 50) == 5.0
    with pytest.raises(ValueError):
        nearest_rank([], 50)


def test_summarize_is_consistent_with_the_samples() -> None:
    rng = np.random.default_rng(3)
    samples = list(rng.gamma(4.0, 2.0, size=37))
    stats = summarize(samples, batch=8, warmup=2)
    ordered = sorted(samples)
    assert stats.iterations == 37 and stats.warmup == 2
    assert stats.median_ms == pytest.approx(statistics.median(samples))
    assert stats.p90_ms == ordered[math.ceil(0.9 * 37) - 1]
    assert stats.p99_ms == ordered[-1]
    assert stats.min_ms == ordered[0] <= stats.median_ms <= stats.p90_ms <= stats.p99_ms <= stats.max_ms
    assert stats.mean_ms == pytest.approx(statistics.fmean(samples))
    assert stats.std_ms == pytest.approx(statistics.stdev(samples))
    assert stats.throughput_ips == pytest.approx(8 / stats.median_ms * 1e3)
    assert stats.per_image_ms == pytest.approx(stats.median_ms / 8)


def test_warmup_is_excluded_and_inputs_rotate() -> None:
    calls: list[int] = []

    def step(i: int) -> float:
        calls.append(i)
        return float(i)

    samples = run_timed(step, MeasureSettings(warmup=3, iterations=6, pool=4))
    assert calls == list(range(9))
    assert samples == [3.0, 4.0, 5.0, 6.0, 7.0, 8.0]  # the three warm-up calls are not in the samples


def test_time_budget_runs_at_least_the_minimum() -> None:
    from csa_cli.measure.timing import MIN_ITERATIONS

    samples = run_timed(lambda i: 1.0, MeasureSettings(warmup=0, seconds=1e-6))
    assert len(samples) >= MIN_ITERATIONS
    with pytest.raises(ValueError, match="not both"):
        MeasureSettings(iterations=3, seconds=1.0)


def test_torch_probe_feeds_distinct_inputs_from_the_pool() -> None:
    import torch

    seen: list[float] = []

    class Recorder(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(float(x.sum()))
            return x.mean(dim=(2, 3))

    probe = TorchProbe(Recorder(), (8, 8), device="cpu", threads=1)
    rows = profile_probe(probe, [2], MeasureSettings(warmup=1, iterations=7, pool=3))
    assert rows[0].iterations == 7 and rows[0].batch == 2
    assert len(seen) == 8  # warm-up + iterations
    assert len(set(seen)) == 3  # the pool of three distinct batches, in rotation
    assert seen[0] == seen[3] == seen[6] and seen[0] != seen[1]
    assert rows[0].macs_per_frame is None and rows[0].floor_ms is None  # no estimate asked for


# --- the roofline --------------------------------------------------------------------------


def test_time_floor_is_the_larger_of_compute_and_memory() -> None:
    peaks = MachinePeaks(
        device="cpu",
        device_name="test",
        dtype="float32",
        threads=1,
        peak_gflops=100.0,
        bandwidth_gbs=10.0,
        matmul_n=1,
        copy_bytes=1,
        repeats=1,
        torch_version="x",
        measured_at=0.0,
    )
    compute = time_floor(macs=5_000_000_000, nbytes=1_000_000, peaks=peaks)  # 10 GFLOP at 100 GFLOP/s = 100 ms
    assert compute.bound == "compute" and compute.floor_ms == pytest.approx(100.0)
    memory = time_floor(macs=1000, nbytes=2_000_000_000, peaks=peaks)  # 2 GB at 10 GB/s = 200 ms
    assert memory.bound == "memory" and memory.floor_ms == pytest.approx(200.0)


def test_peaks_are_measured_once_and_cached(session_root: Path) -> None:
    first = machine_peaks("cpu", threads=1)
    assert first.peak_gflops > 0 and first.bandwidth_gbs > 0
    again = machine_peaks("cpu", threads=1)
    assert again.measured_at == first.measured_at  # read back from CSA_HOME, not measured again
    cached = list((Path(session_root) / "csa-home" / "roofline").glob("cpu-float32-t1-*.json"))
    assert len(cached) == 1
    refreshed = machine_peaks("cpu", threads=1, refresh=True)
    assert refreshed.peak_gflops >= first.peak_gflops and refreshed.bandwidth_gbs >= first.bandwidth_gbs  # a refresh only raises


def test_roofline_floor_is_below_the_measured_latency(nano_profiles: dict[str, dict[str, Any]]) -> None:
    for backend, record in nano_profiles.items():
        peaks = record["roofline"]
        for row in record["results"]:
            assert row["floor_ms"] is not None, backend
            assert row["floor_ms"] <= row["median_ms"], f"{backend} batch {row['batch']}: floor {row['floor_ms']} > median {row['median_ms']}"
            assert row["x_floor"] == pytest.approx(row["median_ms"] / row["floor_ms"])
            # the floor is recomputable from the record alone
            compute_ms = 2 * row["macs_per_frame"] * row["batch"] / (peaks["peak_gflops"] * 1e9) * 1e3
            memory_ms = row["traffic_bytes_per_frame"] * row["batch"] / (peaks["bandwidth_gbs"] * 1e9) * 1e3
            assert row["floor_ms"] == pytest.approx(max(compute_ms, memory_ms), rel=1e-6)


# --- csa-nano through the command ----------------------------------------------------------


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_csa_nano_profile_record_is_complete(nano_profiles: dict[str, dict[str, Any]], backend: str) -> None:
    record = nano_profiles[backend]
    assert RECORD_FIELDS <= set(record), RECORD_FIELDS - set(record)
    assert record["kind"] == "profile" and record["model"] == "csa-nano" and record["backend"] == backend
    assert record["weights"] == "random"  # csa-nano has no published weights: downstream records say so
    assert record["img_size"] == [224, 224] and record["threads"] == 1
    assert record["traffic_label"] == TRAFFIC_LABEL
    assert [r["batch"] for r in record["results"]] == [1, 4]
    for row in record["results"]:
        assert ROW_FIELDS <= set(row), ROW_FIELDS - set(row)
        assert row["iterations"] == 2 and row["warmup"] == 1
        assert 0 < row["min_ms"] <= row["median_ms"] <= row["p99_ms"]
        assert row["p90_ms"] <= row["p99_ms"]
        assert row["throughput_ips"] == pytest.approx(row["batch"] / row["median_ms"] * 1e3)
        assert row["per_image_ms"] == pytest.approx(row["median_ms"] / row["batch"])
        assert row["macs_per_frame"] > 0 and row["traffic_bytes_per_frame"] > 0
    # weights are read once per batch: per-frame traffic falls with the batch, MACs per frame do not
    one, four = record["results"]
    assert one["macs_per_frame"] == four["macs_per_frame"]
    assert four["traffic_bytes_per_frame"] < one["traffic_bytes_per_frame"]
    machine = record["machine"]
    assert machine["cpu"] and machine["cpu_count"] >= 1 and machine["threads"] == record["threads"]
    assert {"torch", "onnxruntime", "onnx"} <= set(machine["libraries"])
    if backend == "onnxruntime":
        assert record["provider"] == "CPUExecutionProvider" and Path(record["path"]).is_file()


def test_both_backends_agree_on_the_static_estimate(nano_profiles: dict[str, dict[str, Any]]) -> None:
    ort, torch_ = nano_profiles["onnxruntime"]["results"], nano_profiles["torch"]["results"]
    assert [r["macs_per_frame"] for r in ort] == [r["macs_per_frame"] for r in torch_]
    assert [r["traffic_bytes_per_frame"] for r in ort] == [r["traffic_bytes_per_frame"] for r in torch_]


def test_profiles_are_stored_for_compare(nano_profiles: dict[str, dict[str, Any]]) -> None:
    from csa_cli.store import load_results

    stored = load_results("profile", "csa-nano")
    backends = {r["backend"] for r in stored}
    assert {"onnxruntime", "torch"} <= backends
    ours = nano_profiles["onnxruntime"]["results"]
    assert any(r["backend"] == "onnxruntime" and r["results"] == ours for r in stored)  # other tests may store csa-nano profiles too


def test_an_onnx_record_on_stdin_keeps_model_and_weights(nano_profiles: dict[str, dict[str, Any]]) -> None:
    """`csa export csa-nano | csa profile`: the export stage's record (the same batch-1 export the profiles used)."""
    from csa_cli.stages.export.stage import export_stage

    upstream = export_stage("csa-nano", weights="random", batch=1)
    assert upstream.path == nano_profiles["onnxruntime"]["path"]  # cached: the batch-1 export
    code, stdout, stderr = _invoke("profile", "--no-estimate", *FAST, input=upstream.to_json() + "\n")
    assert code == 0, stderr
    record = _records(stdout)[-1]
    assert record["model"] == "csa-nano" and record["weights"] == "random" and record["weights_hash"] == upstream.field("weights_hash")
    assert [r["batch"] for r in record["results"]] == [1]  # a static batch-1 ONNX runs at its own batch
    assert record["results"][0]["floor_ms"] is None


# --- several models: one table, one record each, one plot -----------------------------------


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, int], Path]:
    """Small dynamic-batch ONNX files of different widths (exported here, no zoo model needed)."""
    import torch

    from csa_cli.stages.export.onnx_export import export_onnx

    folder = tmp_path_factory.mktemp("profile-onnx")

    def make(name: str, width: int) -> Path:
        torch.manual_seed(width)
        module = torch.nn.Sequential(
            torch.nn.Conv2d(3, width, 3, stride=2, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(width, 10)
        ).eval()
        return export_onnx(module, folder / f"{name}.onnx", img_size=(32, 32), dynamic_batch=True)

    return make


def test_several_models_give_one_record_each(tiny_onnx: Callable[[str, int], Path], tmp_path: Path) -> None:
    a, b = tiny_onnx("narrow", 4), tiny_onnx("wide", 32)
    plot = tmp_path / "latency.png"
    code, stdout, stderr = _invoke("profile", str(a), str(b), "--batch", "1,2", "--plot", str(plot), *FAST)
    assert code == 0, stderr
    records = _records(stdout)
    assert [r["model"] for r in records] == ["narrow", "wide"]
    assert all([row["batch"] for row in r["results"]] == [1, 2] for r in records)
    assert records[1]["results"][0]["macs_per_frame"] > records[0]["results"][0]["macs_per_frame"]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    with Image.open(plot) as image:
        assert image.width > 800 and image.height > 400


def test_a_qdq_onnx_is_profiled_as_int8_without_a_floor(tiny_onnx: Callable[[str, int], Path], tmp_path: Path) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            rng = np.random.default_rng(0)
            self.batches = iter([{"input": rng.standard_normal((1, 3, 32, 32), dtype=np.float32)} for _ in range(4)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    qdq = tmp_path / "tiny-qdq.onnx"
    quantize_static(
        str(tiny_onnx("qdq-src", 8)), str(qdq), Reader(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8
    )
    code, stdout, stderr = _invoke("profile", str(qdq), "--batch", "1", *FAST)
    assert code == 0, stderr
    record = _records(stdout)[-1]
    assert record["backend"] == "onnxruntime" and record["precision"] == "int8"
    row = record["results"][0]
    assert 0 < row["min_ms"] <= row["median_ms"] <= row["p99_ms"]
    assert row["macs_per_frame"] > 0 and row["floor_ms"] is None and "int8" in record["roofline_note"]


def _fake_result(model: str, medians: list[float]) -> ProfileResult:
    rows = [BatchResult(**summarize([m, m * 1.1, m * 0.9], b, 1).model_dump()) for b, m in zip((1, 4, 8), medians, strict=False)]
    machine = MachineInfo(cpu="Test CPU", cpu_count=2, threads=2, os="test", python="3.11", libraries={})
    return ProfileResult(
        model=model, backend="onnxruntime", device="cpu", precision="fp32", img_size=(224, 224), settings="3 iterations", results=rows, machine=machine
    )


def test_several_models_render_as_one_table() -> None:
    from rich.console import Console

    from csa_cli.cli.profile import render

    results = [_fake_result("alpha", [1.0, 3.0, 5.0]), _fake_result("beta", [2.0, 6.0, 11.0])]
    view = render(results)
    latency, per_frame = view.renderables[:2]  # two tables that fit 80 columns: latency, then per-frame cost
    assert latency.row_count == per_frame.row_count == 6  # one row per (model, batch), both models in the same table
    console = Console(record=True, width=200)
    console.print(view)
    text = console.export_text()
    assert text.count("csa profile") == 1 and "alpha" in text and "beta" in text and "Test CPU" in text
    assert "estimate (static, from the ONNX graph)" in text


def test_plot_names_the_machine_and_labels_the_axes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib.figure

    saved: list[matplotlib.figure.Figure] = []
    original = matplotlib.figure.Figure.savefig

    def spy(self: matplotlib.figure.Figure, *args: Any, **kwargs: Any) -> None:
        saved.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    target = plot_latency([_fake_result("alpha", [1.0, 3.0, 5.0]), _fake_result("beta", [2.0, 6.0, 11.0])], tmp_path / "p.png")
    assert target.is_file()
    (fig,) = saved
    assert "Test CPU" in fig.get_suptitle()
    for ax in fig.axes:
        assert ax.get_xlabel() == "batch size" and "ms" in ax.get_ylabel()
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["alpha (onnxruntime, fp32)", "beta (onnxruntime, fp32)"]


# --- bad inputs ----------------------------------------------------------------------------


def test_batch_zero_is_a_usage_error() -> None:
    code, _, stderr = _invoke("profile", "csa-nano", "--batch", "0")
    assert code == 2 and "Error: --batch must be at least 1" in stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--iterations", "3", "--seconds", "1"), "not both"),
        (("--iterations", "0"), "--iterations must be at least 1"),
        (("--threads", "0"), "--threads must be at least 1"),
        (("--backend", "tflite"), "--backend must be"),
        (("--img-size", "0x4"), "--img-size"),
    ],
)
def test_bad_options_are_usage_errors(args: tuple[str, ...], message: str) -> None:
    code, _, stderr = _invoke("profile", "csa-nano", *args)
    assert code == 2 and message in stderr


def test_a_missing_file_fails_with_one_line(tmp_path: Path) -> None:
    code, stdout, stderr = _invoke("profile", str(tmp_path / "absent.onnx"))
    assert code == 1
    assert stderr.splitlines()[0].startswith("Error: file not found")
    assert _records(stdout)[-1]["kind"] == "error"


def test_a_static_onnx_refuses_other_batches(tiny_onnx: Callable[[str, int], Path], tmp_path: Path) -> None:
    import torch

    from csa_cli.stages.export.onnx_export import export_onnx

    static = export_onnx(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten()).eval(), tmp_path / "static.onnx", batch=2, img_size=(16, 16))
    code, _, stderr = _invoke("profile", str(static), "--batch", "1,4", *FAST)
    assert code == 2 and "static batch of 2" in stderr


def test_an_engine_without_tensorrt_exits_4(tmp_path: Path) -> None:
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here: the missing-backend path cannot be shown")
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"not really an engine")
    code, _, stderr = _invoke("profile", str(engine))
    assert code == 4
    assert "TensorRT is not installed" in stderr and "pip install" in stderr


@pytest.fixture
def nano_bundle_record(tiny_onnx: Callable[[str, int], Path], tmp_path: Path) -> dict[str, Any]:
    """The record `csa engine ONNX --target orin` writes, with its bundle folder."""
    onnx = tiny_onnx("bundle-src", 8)
    code, stdout, stderr = _invoke("engine", str(onnx), "--precision", "fp32", "--target", "orin", "--batch", "1,2", "--output", str(tmp_path / "orin"))
    assert code == 0, stderr
    return _records(stdout)[-1]


@pytest.mark.parametrize("as_record", [False, True])
def test_a_bundle_points_to_validate_sh(nano_bundle_record: dict[str, Any], as_record: bool) -> None:
    bundle = Path(nano_bundle_record["path"])
    if as_record:
        code, _, stderr = _invoke("profile", input=json.dumps(nano_bundle_record) + "\n")
    else:
        code, _, stderr = _invoke("profile", str(bundle))
    assert code == 2  # a record kind (or file type) the command does not take: exit 2 everywhere
    assert "deployment bundle" in stderr
    assert str(bundle / "validate.sh") in stderr and "csa import-timings" in stderr


class _FakeEngine:
    """Stands in for the TensorRT backend (same Backend protocol): a static engine of one batch."""

    name = "tensorrt"
    precision = "fp16"
    device = "cuda:0"

    def __init__(self, path: Path, batch: int, chw: tuple[int, int, int]) -> None:
        self.path, self.batch, self._chw = path, batch, chw
        self.seen: list[float] = []

    def run(self, x: np.ndarray) -> np.ndarray:
        assert x.shape == (self.batch, *self._chw) and x.dtype == np.float32
        self.seen.append(float(x.sum()))
        return np.zeros((x.shape[0], 10), dtype=np.float32)

    def describe(self) -> dict[str, Any]:
        return {"backend": "tensorrt", "tensorrt": "10.0-standin", "engine_batch": self.batch, "dynamic_batch": False}


@pytest.fixture
def engine_record(exported: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The record `csa engine csa-nano --target local --batch 1,4` writes, built through the stand-in
    `tensorrt` module of the engine tests (tests/fixtures/engine.py). The stand-in stays installed for the
    test; the GPU it needed is gone again (none here)."""
    import sys

    import torch

    import csa_cli.tensorrt.runtime as runtime
    from tests.fixtures.engine import fake_tensorrt

    for batch in (1, 4):
        exported("csa-nano", batch=batch)  # the session's exports: the engine stage finds them cached
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt("10.3.0", []))
    monkeypatch.setattr(runtime, "tensorrt_version", lambda: "10.3.0")
    with monkeypatch.context() as gpu:
        gpu.setattr(torch.cuda, "is_available", lambda: True)
        gpu.setattr(torch.cuda, "get_device_name", lambda *_: "Fake GPU")
        args = ("csa-nano", "--weights", "random", "--precision", "fp16", "--target", "local", "--batch", "1,4", "--output", str(tmp_path / "e"))
        code, stdout, stderr = _invoke("engine", *args)
    assert code == 0, stderr
    return _records(stdout)[-1]


def test_engine_record_profiles_up_to_the_missing_gpu(engine_record: dict[str, Any]) -> None:
    """`csa engine --target local | csa profile` here: the record is read, and the first thing missing is the GPU (exit 4)."""
    assert engine_record["kind"] == "engine" and len(engine_record["source_onnx"]) == 2  # one static ONNX per batch
    code, _, stderr = _invoke("profile", *FAST, input=json.dumps(engine_record) + "\n")
    assert code == 4, stderr
    assert "no CUDA GPU is visible" in stderr and stderr.count("Error:") == 1


def test_engine_record_fields_are_typed(engine_record: dict[str, Any]) -> None:
    """source_onnx is a list of paths in the record the stage writes; one edited into a string is refused by name, not a crash."""
    from csa_cli.records import EngineRecord, parse_record

    typed = EngineRecord.of(parse_record(json.dumps(engine_record)))
    assert typed.source_onnx == engine_record["source_onnx"] and [e.batch for e in typed.engines] == [1, 4]
    edited = {**engine_record, "source_onnx": engine_record["source_onnx"][0]}
    code, _, stderr = _invoke("profile", *FAST, input=json.dumps(edited) + "\n")
    assert code == 1 and "invalid csa record: source_onnx" in stderr and "TypeError" not in stderr


def test_an_engine_record_profiles_each_engine_at_its_batch(engine_record: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the GPU: each engine of the record the engine stage wrote runs at its own batch, and the
    static estimate comes from the record's source ONNX (a list, one per engine)."""
    import csa_cli.backends

    opened: dict[int, _FakeEngine] = {}

    def open_backend(name: str, artifact: Any, **kwargs: Any) -> _FakeEngine:
        assert name == "tensorrt"
        (entry,) = [e for e in engine_record["engines"] if e["path"] == str(artifact)]
        opened[entry["batch"]] = _FakeEngine(Path(artifact), entry["batch"], (3, 224, 224))
        return opened[entry["batch"]]

    monkeypatch.setattr(csa_cli.backends, "open_backend", open_backend)
    code, stdout, stderr = _invoke("profile", *FAST, input=json.dumps(engine_record) + "\n")
    assert code == 0, stderr
    out = _records(stdout)[-1]
    assert out["backend"] == "tensorrt" and out["provider"] == "TensorRT 10.0-standin" and out["weights"] == "random"
    assert [r["batch"] for r in out["results"]] == [1, 4] and out["img_size"] == [224, 224]
    assert all(len(e.seen) == 3 for e in opened.values())  # 1 warm-up + 2 timed, each on its own engine
    assert out["results"][0]["macs_per_frame"] > 0  # the estimate comes from the record's source ONNX
    code, _, stderr = _invoke("profile", "--batch", "8", *FAST, input=json.dumps(engine_record) + "\n")
    assert code == 2 and "no engine for batch 8" in stderr


# --- hardware-specific (skipped with the reason where absent) --------------------------------


@pytest.mark.gpu
def test_torch_cuda_with_graphs_and_events() -> None:
    code, stdout, stderr = _invoke("profile", "csa-nano", "--backend", "torch", "--device", "cuda", "--precision", "fp16", "--batch", "1,4", *FAST)
    assert code == 0, stderr
    record = _records(stdout)[-1]
    assert record["device"].startswith("cuda") and record["precision"] == "fp16" and record["cuda_graphs"] is True
    assert record["machine"]["gpu"]
    for row in record["results"]:
        assert 0 < row["min_ms"] <= row["median_ms"] <= row["p99_ms"]
        assert row["floor_ms"] is None or row["floor_ms"] <= row["median_ms"]


@pytest.mark.gpu
@pytest.mark.tensorrt
def test_tensorrt_engine_profile() -> None:
    code, stdout, stderr = _invoke("engine", "csa-nano", "--precision", "fp16", "--target", "local", "--batch", "1")
    assert code == 0, stderr
    engine_record = _records(stdout)[-1]
    code, stdout, stderr = _invoke("profile", *FAST, input=json.dumps(engine_record) + "\n")
    assert code == 0, stderr
    record = _records(stdout)[-1]
    assert record["backend"] == "tensorrt" and [r["batch"] for r in record["results"]] == [1]
    assert 0 < record["results"][0]["median_ms"] <= record["results"][0]["p99_ms"]


class _FixedProbe:
    """A probe whose steps return chosen latencies (ms per batch size): the interleaving and its
    ratios are checked, not the machine's speed."""

    backend = "onnxruntime"
    device = "cpu"
    precision = "fp32"
    provider = "CPUExecutionProvider"
    threads = 1
    cuda_graphs = None
    img_size = (224, 224)

    def __init__(self, ms: dict[int, Callable[[int], float]]) -> None:
        self.ms = ms

    def batches(self, requested: list[int] | None) -> list[int]:
        return sorted(self.ms)

    @contextlib.contextmanager
    def stepper(self, batch: int, settings: MeasureSettings) -> Iterator[Callable[[int], float]]:
        yield self.ms[batch]


def _side_by_side(probes: dict[str, _FixedProbe], rounds: int = 12) -> tuple[list[ProfileResult], dict[int, Any]]:
    from csa_cli.stages.profile.records import ProfileOptions
    from csa_cli.stages.profile.sidebyside import measure_side_by_side
    from csa_cli.stages.profile.stage import Pending

    options = ProfileOptions(estimate=False, store=False, measure=MeasureSettings(warmup=1, iterations=rounds))
    pendings = [
        Pending(p, model=m, batches=p.batches(None), options=options, cost_source=None, path=None, weights=None, weights_hash=None)  # type: ignore[arg-type]
        for m, p in probes.items()
    ]
    return measure_side_by_side(pendings)


def test_latency_benchmark_reports_ratios_with_intervals_and_load() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("latency_benchmark", Path(__file__).parents[1] / "benchmarks" / "latency.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rng = np.random.default_rng(0)
    base = _FixedProbe({1: lambda i: 2.0, 4: lambda i: 6.0, 8: lambda i: 8.0})
    csa = _FixedProbe({1: lambda i: 1.0, 4: lambda i: 3.0, 8: lambda i: float(rng.uniform(1.0, 9.0))})  # batch 8: far too noisy
    results, runs = _side_by_side({"convnext-tiny": base, "csa-tiny": csa})
    assert [r.model for r in results] == ["convnext-tiny", "csa-tiny"]
    text = bench.markdown(results, runs, [1, 4, 8], "convnext-tiny", 1.0)
    latency_table = text.split("### Details")[0]
    rows = {line.split("|")[1].strip(): line for line in latency_table.splitlines() if line.startswith(("| csa-tiny |", "| convnext-tiny |"))}
    assert "1.00 (0.50× [0.50, 0.50])" in rows["csa-tiny"] and "3.00 (0.50× [0.50, 0.50])" in rows["csa-tiny"]
    assert "spread too wide for the claim" in rows["csa-tiny"].split("|")[4]  # batch 8 only
    assert rows["convnext-tiny"].split("|")[2].strip() == "2.00"  # the baseline has no ratio to itself
    assert "Load average per batch size" in text and "on 2 cores" not in rows["csa-tiny"]
    assert TRAFFIC_LABEL in text and "interleaved" in text

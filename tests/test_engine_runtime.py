"""The TensorRT executor and builder against the stand-in `tensorrt` (tests/fixtures/engine.py), and the pure decisions they apply.

What is checked: which TensorRT calls are made, in which order, with which values, and that every
return value TensorRT documents as a failure signal is acted on. Real TensorRT runs are the
`tensorrt`/`gpu`-marked tests in test_engine.py.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from csa_cli.errors import CsaError, UsageError
from csa_cli.graph.onnx_file import inspect_onnx
from csa_cli.tensorrt.plan import make_plan
from tests.fixtures.engine import FakeState

# ---------------------------------------------------------------------------------------------
# item 4: a batch cut into what the engine takes


def test_chunks_pad_to_the_profile_minimum_and_split_at_its_maximum() -> None:
    from csa_cli.tensorrt.execution import chunks

    # a 4..16 profile: 18 images = a full 16 and a last 2, padded to 4 (2 padding rows dropped)
    assert [(c.start, c.stop, c.feed, c.padding) for c in chunks(18, lo=4, hi=16)] == [(0, 16, 16, 0), (16, 18, 4, 2)]
    assert [(c.start, c.stop, c.feed) for c in chunks(3, lo=4, hi=16)] == [(0, 3, 4)]
    assert [(c.start, c.stop, c.feed) for c in chunks(6, lo=4, hi=4)] == [(0, 4, 4), (4, 6, 4)]  # a static batch-4 engine
    with pytest.raises(CsaError, match="1 <= min <= max"):
        chunks(5, lo=8, hi=4)


class CpuDevice:
    """The CUDA side of TensorRTBackend on the CPU: tensors in host memory, a fixed stream, scripted events."""

    def __init__(self, clock: list[float] | None = None) -> None:
        import torch

        self.torch = torch
        self.clock = clock or []
        self.marks: list[float] = []

    def scope(self) -> Any:
        return contextlib.nullcontext()

    def upload(self, array: np.ndarray, dtype: Any) -> Any:
        return self.torch.from_numpy(np.ascontiguousarray(array)).to(dtype=dtype)

    def empty(self, shape: tuple[int, ...], dtype: Any) -> Any:
        return self.torch.zeros(shape, dtype=dtype)

    def pinned(self, tensor: Any) -> Any:
        return tensor

    def stream(self) -> int:
        return 7

    def synchronize(self) -> None:
        pass

    def event(self) -> Any:
        device = self

        class Event:
            def record(self) -> None:
                self.at = device.clock.pop(0)
                device.marks.append(self.at)

            def synchronize(self) -> None:
                pass

            def elapsed_time(self, end: Any) -> float:
                return float(end.at - self.at)

        return Event()

    def name(self) -> str:
        return "Fake GPU"


def _engine_file(tmp_path: Path, plan: Any = None) -> Path:
    """An engine file; with `plan`, the <engine>.json a build of that plan writes beside it."""
    path = tmp_path / "m.engine"
    path.write_bytes(b"engine")
    if plan is not None:
        from csa_cli.tensorrt.builder import EngineMeta, builder_settings, engine_meta_path

        meta = EngineMeta(
            engine=path.name,
            batch=1,
            plan=plan,
            settings=builder_settings(plan),
            tensorrt_version="8.6.11",
            device="Orin",
            host="h",
            build_seconds=1,
            built_at=0,
        )
        engine_meta_path(path).write_text(meta.model_dump_json(by_alias=True))
    return path


def _backend(tmp_path: Path, with_fake_trt: Any, state: FakeState, clock: list[float] | None = None) -> tuple[Any, list[tuple[str, Any]], CpuDevice]:
    from csa_cli.tensorrt.executor import TensorRTBackend

    calls = with_fake_trt("10.3.0", state)
    device = CpuDevice(clock)
    return TensorRTBackend(_engine_file(tmp_path), cuda=device), calls, device


def test_backend_pads_a_short_last_chunk_to_the_profile_minimum(with_fake_trt: Any, tmp_path: Path) -> None:
    """Item 4: a 4..16 engine given 18 images runs 16, then the last 2 padded to 4; the padding's outputs are dropped."""
    state = FakeState()
    state.profile = ((4, 3, 16, 16), (8, 3, 16, 16), (16, 3, 16, 16))
    backend, calls, _ = _backend(tmp_path, with_fake_trt, state)
    out = backend.run(np.zeros((18, 3, 16, 16), np.float32))
    assert out.shape == (18, 10)
    assert [v for k, v in calls if k == "set_input_shape"] == [(16, 3, 16, 16), (4, 3, 16, 16)]
    assert [v for k, v in calls if k == "execute"] == [16, 4]
    assert backend.describe()["engine_min_batch"] == 4 and backend.describe()["engine_batch"] == 16


def test_backend_checks_what_tensorrt_returns(with_fake_trt: Any, tmp_path: Path) -> None:
    """A refused input shape is an error, not a silent run on stale shapes."""
    state = FakeState()
    state.profile = ((1, 3, 16, 16), (4, 3, 16, 16), (4, 3, 16, 16))
    state.refuse_shapes = True
    backend, _, _ = _backend(tmp_path, with_fake_trt, state)
    with pytest.raises(CsaError, match="refused input shape"):
        backend.run(np.zeros((2, 3, 16, 16), np.float32))
    with pytest.raises(CsaError, match=r"takes batch 1\.\.4"):
        backend.bind(8)


def test_backend_refuses_a_safety_engine(with_fake_trt: Any, tiny: dict[str, Path], tmp_path: Path) -> None:
    """Item 2: the standard runtime never loads a SAFETY or DLA_STANDALONE engine."""
    from csa_cli.tensorrt.executor import TensorRTBackend

    with_fake_trt("8.6.11")
    for dla in (None, 0):
        plan = make_plan("m", [inspect_onnx(tiny["fp32_b1"])], precision="fp16", target="orin", trt_version="8.6", safe=True, dla_core=dla)
        with pytest.raises(CsaError, match="only DRIVE OS's safe runtime"):
            TensorRTBackend(_engine_file(tmp_path, plan), cuda=CpuDevice())


# ---------------------------------------------------------------------------------------------
# item 7: timing as trtexec does


def test_split_times_is_h2d_compute_d2h_and_their_sum() -> None:
    from csa_cli.tensorrt.execution import median_split, split_times

    t = split_times([0.25, 2.25, 2.5])  # events 1..3 measured from event 0
    assert (t.h2d_ms, t.compute_ms, t.d2h_ms, t.latency_ms) == (0.25, 2.0, 0.25, 2.5)
    with pytest.raises(CsaError, match="out of order"):
        split_times([1.0, 0.5, 2.0])
    assert median_split([t, split_times([0.5, 1.5, 2.0]), t]) == {"h2d_ms": 0.25, "compute_ms": 2.0, "d2h_ms": 0.25}


def test_timed_run_puts_an_event_between_each_part() -> None:
    from csa_cli.tensorrt.execution import timed_run

    order: list[str] = []
    device = CpuDevice(clock=[10.0, 10.1, 12.1, 12.15])

    def part(name: str) -> Any:
        return lambda: order.append(f"{name}@{len(device.marks)}")

    t = timed_run(part("h2d"), part("compute"), part("d2h"), device.event)
    assert order == ["h2d@1", "compute@2", "d2h@3"]  # each part after its opening event, before the next
    assert (round(t.h2d_ms, 6), round(t.compute_ms, 6), round(t.d2h_ms, 6)) == (0.1, 2.0, 0.05)


def test_profile_of_an_engine_reports_h2d_compute_and_d2h(with_fake_trt: Any, tmp_path: Path) -> None:
    """Item 7: the TensorRT probe times execute_async_v3 with CUDA events, not run() with its copies and allocations."""
    from csa_cli.measure.probes import BackendProbe
    from csa_cli.measure.timing import MeasureSettings
    from csa_cli.stages.profile.stage import profile_probe

    state = FakeState()
    state.input_shape = (2, 3, 16, 16)
    # 2 warm-up + 3 timed steps, 4 event marks each: H2D 0.5 ms, compute 2 ms, D2H 0.25 ms
    clock = [x + 10 * i for i in range(5) for x in (0.0, 0.5, 2.5, 2.75)]
    backend, calls, _ = _backend(tmp_path, with_fake_trt, state, clock)
    probe = BackendProbe(backend)
    rows = profile_probe(probe, [2], MeasureSettings(warmup=2, iterations=3))
    row = rows[0]
    assert (row.h2d_ms, row.compute_ms, row.d2h_ms, row.median_ms, row.iterations) == (0.5, 2.0, 0.25, 2.75, 3)
    assert "CUDA events" in probe.timing
    # the buffers were bound once; only the engine was enqueued per step
    assert len([k for k, _ in calls if k == "execute"]) == 5 and len([k for k, v in calls if k == "address" and v == "input"]) == 1


# ---------------------------------------------------------------------------------------------
# the builder through the stand-in


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
    assert ("pool", ("MemoryPoolType.WORKSPACE", 1024 << 20)) in calls and ("profiling_verbosity", "ProfilingVerbosity.DETAILED") in calls
    assert any(k == "int8_calibrator" for k, _ in calls)  # implicit INT8 from the cache
    meta = read_engine_meta(engine)
    assert meta is not None and meta.tensorrt_version == "8.6.11" and meta.device == "Fake GPU" and meta.plan == plan
    # item 14: what the build gives, recorded
    assert meta.engine_bytes == len(b"serialized engine") and meta.device_memory_bytes == 12345
    assert meta.layers is not None and meta.layers.by_precision == {"FP16": 1} and meta.layers.by_device == {"GPU": 1}


def test_calibration_cache_header_names_the_installed_tensorrt(with_fake_trt: Any, tiny: dict[str, Path], tmp_path: Path) -> None:
    """Item 6: a TRT-8601 cache is handed to TensorRT 10.3 as TRT-100300, the scales unchanged."""
    from csa_cli.tensorrt.builder import build_engines

    calls = with_fake_trt("10.3.0")
    plan = make_plan(
        "m", [inspect_onnx(tiny["fp32_b1"])], precision="int8", target="local", trt_version="10.3.0", calib_cache=str(tiny["cache"]), engine_dir=""
    )
    build_engines(plan, out_dir=tmp_path, timing_cache=tmp_path / "t.cache")
    assert [v for k, v in calls if k == "cache_read"] == [b"TRT-100300-EntropyCalibration2\ninput: 3d4ccccd\n"]


def test_a_cache_tensorrt_does_not_accept_fails_the_build_with_the_reason(with_fake_trt: Any, tiny: dict[str, Path], tmp_path: Path) -> None:
    """Item 6: the calibrator asked for images although a cache was supplied: say so and fail (no engine calibrated on nothing)."""
    from csa_cli.tensorrt.builder import build_engines

    state = FakeState()
    state.reject_cache = True
    with_fake_trt("8.6.11", state)
    plan = make_plan(
        "m", [inspect_onnx(tiny["fp32_b1"])], precision="int8", target="local", trt_version="8.6.11", calib_cache=str(tiny["cache"]), engine_dir=""
    )
    with pytest.raises(CsaError, match=r"did not accept the calibration cache .*header TRT-8611-EntropyCalibration2.* asked for calibration images"):
        build_engines(plan, out_dir=tmp_path, timing_cache=tmp_path / "t.cache")
    assert not (tmp_path / "m_int8_b1.engine").exists()


@pytest.mark.parametrize(("version", "number"), [("8.6.1", 8601), ("8.6.11", 8611), ("8.6", 8600), ("10.3.0", 100300), ("11.1.0", 110100)])
def test_trt_version_number_is_nv_tensorrt_version(version: str, number: int) -> None:
    from csa_cli.tensorrt.capability import rewrite_cache_header, trt_version_number, version_from_number

    assert trt_version_number(version) == number
    assert version_from_number(number) == tuple(int(p) for p in [*version.split("."), "0"][:2])
    assert rewrite_cache_header(b"TRT-8601-EntropyCalibration2\nx: 3c010204\n", version) == f"TRT-{number}-EntropyCalibration2\nx: 3c010204\n".encode()
    with pytest.raises(UsageError, match="not a TensorRT calibration cache"):
        rewrite_cache_header(b"hello\n", version)


def test_dla_without_fallback_sets_direct_io_and_dla_formats(with_fake_trt: Any, tiny: dict[str, Path], tmp_path: Path) -> None:
    """Item 3: a DLA build with no GPU fallback gets DIRECT_IO and FP16 I/O in DLA formats on the network tensors."""
    from csa_cli.tensorrt.builder import build_engines

    calls = with_fake_trt("8.6.11")
    # csa on the device itself builds such an engine through the API; the backend does not feed it (the plan refuses target local)
    plan = make_plan("m", [inspect_onnx(tiny["fp32_b1"])], precision="fp16", target="orin", trt_version="8.6.11", dla_core=0, gpu_fallback=False, engine_dir="")
    build_engines(plan, out_dir=tmp_path, timing_cache=tmp_path / "t.cache")
    assert "BuilderFlag.DIRECT_IO" in [v for k, v in calls if k == "flag"] and ("DLA_core", 0) in calls
    assert ("io_dtype", ("input", "DataType.HALF")) in calls and ("io_allowed_formats", ("input", 1 << 4)) in calls  # CHW16
    assert ("io_allowed_formats", ("logits", 1 << 9)) in calls  # DLA_LINEAR for the 2-D logits


def test_build_engines_never_builds_a_safety_engine_here(with_fake_trt: Any, tiny: dict[str, Path], tmp_path: Path) -> None:
    """Item 2: SAFETY / DLA_STANDALONE are built by a bundle on the device, not by the Python API here."""
    from csa_cli.tensorrt.builder import build_engines

    calls = with_fake_trt("8.6.11")
    plan = make_plan("m", [inspect_onnx(tiny["fp32_b1"])], precision="fp16", target="orin", trt_version="8.6", safe=True, engine_dir="")
    with pytest.raises(UsageError, match="built on the device by an Orin bundle"):
        build_engines(plan, out_dir=tmp_path)
    assert not calls


def test_executor_on_tensorrt_11_sets_no_removed_api(with_fake_trt: Any, tiny: dict[str, Path], tmp_path: Path) -> None:
    from csa_cli.tensorrt.builder import build_engines

    calls = with_fake_trt("11.0.0")
    plan = make_plan("m", [inspect_onnx(tiny["qdq_b1"])], precision="int8", target="local", trt_version="11.0.0", engine_dir="")
    build_engines(plan, out_dir=tmp_path, timing_cache=tmp_path / "t.cache")  # the fake raises on any removed flag/attribute
    assert ("network_flags", 0) in calls and not [k for k, _ in calls if k in ("flag", "int8_calibrator")]


# ---------------------------------------------------------------------------------------------
# item 14: layer information read back


def test_layer_information_precision_device_and_profile() -> None:
    from csa_cli.tensorrt.layers import layers_left_dla, parse_layer_info, parse_profile, summarize_layers

    # the shapes of trtexec --exportLayerInfo / --exportProfile (samples in NVIDIA/TensorRT trt-engine-explorer examples)
    info = json.dumps(
        {
            "Layers": [
                {
                    "Name": "{ForeignNode[/stem/Conv.../head/Relu]}",
                    "LayerType": "DLA",
                    "Outputs": [{"Format/Datatype": "Sixteen wide channel vectorized row major FP16 format"}],
                },
                {"Name": "/head/Flatten", "LayerType": "Shuffle", "Outputs": [{"Format/Datatype": "Row major linear FP32"}]},
                {"Name": "/head/fc/Gemm", "LayerType": "CaskGemm", "Outputs": [{"Format/Datatype": "Row major Int8 format"}]},
            ],
            "Bindings": ["input", "logits"],
        }
    )
    layers = parse_layer_info(info, dla=True)
    assert [(x.precision, x.device) for x in layers] == [("FP16", "DLA"), ("FP32", "GPU"), ("INT8", "GPU")]
    assert [x.device for x in parse_layer_info(info, dla=False)] == ["GPU"] * 3  # a ForeignNode on a GPU build is a Myelin subgraph
    assert [x.name for x in parse_layer_info(json.dumps({"Layers": ["a", "b"]}))] == ["a", "b"]  # LAYER_NAMES_ONLY
    profile = parse_profile(json.dumps([{"count": 10}, {"name": "/head/fc/Gemm", "timeMs": 1.0, "averageMs": 0.1, "medianMs": 0.09, "percentage": 5}]))
    log = "[W] [TRT] Layer '/head/Flatten' (SHUFFLE): Unsupported on DLA. Switching this layer's device type to GPU.\n" * 2
    summary = summarize_layers(layers, times=profile, left_dla=layers_left_dla(log))
    assert summary.by_precision == {"FP16": 1, "FP32": 1, "INT8": 1} and summary.by_device == {"DLA": 1, "GPU": 2}
    assert summary.left_dla == ["/head/Flatten"] and [x.name for x in summary.slowest] == ["/head/fc/Gemm"]
    with pytest.raises(CsaError, match="not TensorRT layer information"):
        parse_layer_info("[1, 2]")

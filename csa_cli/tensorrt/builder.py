"""The thin executor: BuildPlan -> serialized TensorRT engines through the TensorRT Python API.

Everything decidable without TensorRT lives in `builder_settings` (pure, tested everywhere):
which network flags, builder flags, engine capability and device each TensorRT major
version needs. `build_engines` only maps those names onto the `tensorrt` module.

Version branches (TensorRT Python API):
- 8.6 (DRIVE OS 6): networks need the EXPLICIT_BATCH creation flag; FP16/INT8 builder flags;
  implicit INT8 reads a calibration cache through an IInt8EntropyCalibrator2; SAFETY_SCOPE.
- 10: explicit batch is the only mode (the flag is deprecated: pass 0); precision flags and
  calibrators still exist (calibrators deprecated since 10.1).
- 11: strongly typed networks only: no precision flags, no calibrator (int8_calibrator
  removed); SAFETY_SCOPE is ignored since 10.16, so a plan asks it only of older versions.
The Python API builds standard engines only: SAFETY and DLA_STANDALONE are DRIVE OS capabilities,
built on the device by a bundle's build.sh (tensorrt/capability.py). After a build, the engine is
loaded once to record its size, device memory and layers (tensorrt/layers.py).
Not run against a real TensorRT here (no TensorRT, no GPU on the dev machine): see docs/engine.md.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from csa_cli import events
from csa_cli.errors import CsaError, UsageError
from csa_cli.paths import atomic_path, atomic_write_text, csa_dir
from csa_cli.tensorrt.capability import rewrite_cache_header
from csa_cli.tensorrt.layers import LayerSummary, parse_layer_info, summarize_layers
from csa_cli.tensorrt.plan import BuildPlan, EngineSpec, plan_problems
from csa_cli.tensorrt.runtime import require_tensorrt

# trtexec's --inputIOFormats/--outputIOFormats words -> TensorRT's DataType and TensorFormat members
_IO_TYPES = {"fp32": "FLOAT", "fp16": "HALF", "int8": "INT8"}
_IO_LAYOUTS = {"chw": "LINEAR", "chw16": "CHW16", "chw32": "CHW32", "dla_linear": "DLA_LINEAR", "dla_hwc4": "DLA_HWC4"}


class BuilderSettings(BaseModel):
    """The TensorRT API calls a plan turns into, by name, for one TensorRT major version."""

    model_config = ConfigDict(extra="forbid")

    trt_major: int
    network_flags: list[str] = Field(description="NetworkDefinitionCreationFlag members")
    builder_flags: list[str] = Field(description="BuilderFlag members")
    engine_capability: Literal["STANDARD", "SAFETY", "DLA_STANDALONE"]
    default_device: Literal["GPU", "DLA"]
    dla_core: int | None
    workspace_bytes: int
    use_calibration_cache: bool
    io_formats: dict[str, list[tuple[str, str]]] = Field(
        default_factory=dict, description='{"inputs"|"outputs": [(DataType, TensorFormat), ...]} set on the network I/O tensors'
    )
    profiling_verbosity: Literal["DETAILED"] = "DETAILED"  # the inspector then reports each layer's precision
    notes: list[str] = Field(default_factory=list)


def io_format_members(spec: str) -> tuple[str, str]:
    """("HALF", "CHW16") for trtexec's "fp16:chw16"."""
    dtype, _, layout = spec.partition(":")
    try:
        return _IO_TYPES[dtype], _IO_LAYOUTS[layout]
    except KeyError:
        raise UsageError(f"unknown I/O format {spec!r}") from None


def builder_settings(plan: BuildPlan, trt_major: int | None = None) -> BuilderSettings:
    """What to set on the builder for `plan` under TensorRT `trt_major` (default: the plan's)."""
    major = plan.trt_major if trt_major is None else trt_major
    if major != plan.trt_major:
        plan = plan.model_copy(update={"trt_version": str(major)})
        problems = plan_problems(plan)
        if problems:
            raise UsageError(problems[0])
    notes: list[str] = []
    network_flags = ["EXPLICIT_BATCH"] if major < 10 else []  # 10 made explicit batch the only mode
    flags: list[str] = []
    use_cache = False
    if major < 11:
        if plan.fp16:
            flags.append("FP16")
        if plan.int8:
            flags.append("INT8")
            use_cache = bool(plan.calib_cache) and not all(s.has_qdq for s in plan.engines)
    else:
        notes.append("TensorRT 11: strongly typed network; precision comes from the ONNX types and its Q/DQ nodes")
    if plan.restricted:  # a valid plan asks it only of TensorRT < 10.16 (capability.safety_scope_supported)
        flags.append("SAFETY_SCOPE")
    if plan.gpu_fallback:
        flags.append("GPU_FALLBACK")
    io_formats: dict[str, list[tuple[str, str]]] = {}
    spec = plan.engines[0]
    if spec.input_format and spec.output_formats:
        # DLA without GPU fallback: no reformat layers allowed at the I/O (trtexec sets kDIRECT_IO too, sampleEngines.cpp 8.6)
        flags.append("DIRECT_IO")
        io_formats = {"inputs": [io_format_members(spec.input_format)], "outputs": [io_format_members(f) for f in spec.output_formats]}
    return BuilderSettings(
        trt_major=major,
        network_flags=network_flags,
        builder_flags=flags,
        engine_capability=plan.capability,
        default_device="DLA" if plan.dla_core is not None else "GPU",
        dla_core=plan.dla_core,
        workspace_bytes=plan.workspace_mib << 20,
        use_calibration_cache=use_cache,
        io_formats=io_formats,
        notes=notes,
    )


class EngineMeta(BaseModel):
    """<engine>.json beside every engine: the plan it was built from and with which TensorRT."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = Field(default=1, alias="schema")
    engine: str
    batch: int
    plan: BuildPlan
    settings: BuilderSettings
    tensorrt_version: str
    device: str
    host: str
    build_seconds: float
    built_at: float
    engine_bytes: int | None = Field(default=None, description="size of the serialized engine")
    device_memory_bytes: int | None = Field(default=None, description="activation memory the engine needs (ICudaEngine device_memory_size[_v2])")
    layers: LayerSummary | None = Field(default=None, description="layers by precision and device (engine inspector, DETAILED)")


def default_timing_cache(trt_version: str, device: str) -> Path:
    """One timing cache per TensorRT version and GPU under CSA_HOME, reused by every build."""
    safe = "".join(c if c.isalnum() else "-" for c in device).strip("-")
    return csa_dir("tensorrt") / f"timing-{trt_version}-{safe}.cache"


def _logger(trt: Any) -> Any:
    """A TensorRT logger that passes the builder log on as events (the command shows them on stderr)."""

    class StderrLogger(trt.ILogger):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, severity: Any, msg: str) -> None:
            # pybind enums compare by equality only: drop VERBOSE, keep INFO and above
            if severity != trt.ILogger.Severity.VERBOSE:
                events.info(f"[TensorRT {str(severity).split('.')[-1]}] {msg}")

    return StderrLogger()


class CacheCalibrator:
    """An entropy calibrator that only replays a calibration cache (8.6/10 implicit INT8).

    TensorRT asks get_batch for images only when it did not accept the cache (another version in
    its header, another algorithm): then there are none, calibration fails, and `asked_for_images`
    tells the build to say why instead of leaving an engine calibrated on nothing.
    """

    def __init__(self, trt: Any, cache: bytes) -> None:
        class _Calibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[misc, name-defined]
            def __init__(inner) -> None:
                trt.IInt8EntropyCalibrator2.__init__(inner)

            def get_batch_size(inner) -> int:
                return 1

            def get_batch(inner, names: list[str]) -> None:
                self.asked_for_images = True
                events.warn("TensorRT asked the calibrator for images: it did not accept the calibration cache")
                return None  # no images: TensorRT stops calibrating, and the build fails

            def read_calibration_cache(inner) -> bytes:
                return cache

            def write_calibration_cache(inner, data: Any) -> None:
                return None

        self.asked_for_images = False
        self.header = cache.split(b"\n", 1)[0].decode("utf-8", "replace")
        self.calibrator = _Calibrator()


def _member(enum: Any, name: str, what: str, version: str) -> Any:
    try:
        return getattr(enum, name)
    except AttributeError:
        raise CsaError(f"TensorRT {version} has no {what} {name}", hint="the plan targets another TensorRT version") from None


def build_engines(plan: BuildPlan, *, out_dir: Path | None = None, timing_cache: Path | None = None) -> list[Path]:
    """Build every engine of a plan with the installed TensorRT; each is written atomically with <engine>.json.

    Engine paths in the plan are relative to `out_dir` (default: the working directory).
    """
    if plan.capability != "STANDARD":
        raise UsageError(f"a {plan.capability} engine is built on the device by an Orin bundle, not here", hint="use --target orin")
    trt, device = require_tensorrt()
    version = str(trt.__version__)
    major = int(version.split(".")[0])
    settings = builder_settings(plan, major)
    for note in settings.notes:
        events.info(f"Note: {note}")
    cache_path = Path(plan.timing_cache) if plan.timing_cache else timing_cache or default_timing_cache(version, device)
    logger = _logger(trt)
    built: list[Path] = []
    for spec in plan.engines:
        built.append(_build_one(trt, logger, plan, spec, settings, cache_path, version, device, out_dir or Path.cwd()))
    return built


def _configure(
    trt: Any, builder: Any, network: Any, plan: BuildPlan, spec: EngineSpec, settings: BuilderSettings, version: str
) -> tuple[Any, CacheCalibrator | None]:
    """The builder config for one engine: pool, flags, capability, device, I/O formats, calibrator, profile."""
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, settings.workspace_bytes)
    for name in settings.builder_flags:
        config.set_flag(_member(trt.BuilderFlag, name, "builder flag", version))
    config.engine_capability = _member(trt.EngineCapability, settings.engine_capability, "engine capability", version)
    config.profiling_verbosity = _member(trt.ProfilingVerbosity, settings.profiling_verbosity, "profiling verbosity", version)
    if settings.default_device == "DLA":
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(settings.dla_core or 0)
    tensors = {"inputs": [network.get_input(i) for i in range(network.num_inputs)], "outputs": [network.get_output(i) for i in range(network.num_outputs)]}
    for side, formats in settings.io_formats.items():
        for tensor, (dtype, layout) in zip(tensors[side], formats, strict=False):
            tensor.dtype = _member(trt.DataType, dtype, "data type", version)
            tensor.allowed_formats = 1 << int(_member(trt.TensorFormat, layout, "tensor format", version))
    calibrator = None
    if settings.use_calibration_cache and plan.calib_cache:
        # 8.6/10 only (settings never ask for it on 11, where int8_calibrator was removed); the header
        # names this TensorRT, or TensorRT ignores the cache and asks for images
        calibrator = CacheCalibrator(trt, rewrite_cache_header(Path(plan.calib_cache).read_bytes(), version))
        config.int8_calibrator = calibrator.calibrator
    if spec.profile is not None:
        profile = builder.create_optimization_profile()
        p = spec.profile
        c, h, w = spec.chw
        profile.set_shape(spec.input_name, (p.min, c, h, w), (p.opt, c, h, w), (p.max, c, h, w))
        if config.add_optimization_profile(profile) < 0:
            raise CsaError(f"TensorRT refused the optimization profile {p.min}/{p.opt}/{p.max} for {spec.onnx}")
    return config, calibrator


def _build_one(
    trt: Any, logger: Any, plan: BuildPlan, spec: EngineSpec, settings: BuilderSettings, cache_path: Path, version: str, device: str, out_dir: Path
) -> Path:
    started = time.perf_counter()
    builder = trt.Builder(logger)
    flags = 0
    for name in settings.network_flags:
        flags |= 1 << int(_member(trt.NetworkDefinitionCreationFlag, name, "network flag", version))
    network = builder.create_network(flags)
    if network is None:
        raise CsaError(f"TensorRT {version} could not create a network (flags {settings.network_flags})")
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(spec.onnx)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise CsaError(f"TensorRT's ONNX parser refused {spec.onnx}: {errors or 'no details'}", hint="run `csa check` on the ONNX")
    config, calibrator = _configure(trt, builder, network, plan, spec, settings, version)
    # Reuse the timing cache: a rebuild on the same GPU and TensorRT skips most tactic timing.
    cache_bytes = cache_path.read_bytes() if cache_path.is_file() else b""
    timing = config.create_timing_cache(cache_bytes)
    if not config.set_timing_cache(timing, False):
        events.info(f"Note: timing cache {cache_path} does not match this TensorRT/GPU; starting a fresh one")
        timing = config.create_timing_cache(b"")
        if not config.set_timing_cache(timing, False):
            raise CsaError("TensorRT refused a fresh timing cache", hint="rerun with --debug")
    serialized = builder.build_serialized_network(network, config)
    if calibrator is not None and calibrator.asked_for_images:
        raise CsaError(
            f"TensorRT {version} did not accept the calibration cache {plan.calib_cache} (header {calibrator.header}) and asked for "
            "calibration images, so no INT8 scales were read",
            hint="give a cache written for this TensorRT, or build from the Q/DQ ONNX `csa quantize` wrote",
        )
    if serialized is None:
        raise CsaError(f"TensorRT could not build {spec.engine} (see the builder log above)", hint="rerun with --debug; check the graph with `csa check`")
    engine_path = out_dir / spec.engine
    with atomic_path(engine_path) as tmp, tmp.open("wb") as fh:
        fh.write(serialized)
    with atomic_path(cache_path) as tmp, tmp.open("wb") as fh:
        fh.write(config.get_timing_cache().serialize())
    memory, layers = _inspect(trt, logger, bytes(serialized), plan)
    meta = EngineMeta(
        engine=engine_path.name,
        batch=spec.batch,
        plan=plan,
        settings=settings,
        tensorrt_version=version,
        device=device,
        host=platform.node(),
        build_seconds=round(time.perf_counter() - started, 3),
        built_at=time.time(),
        engine_bytes=len(serialized),
        device_memory_bytes=memory,
        layers=layers,
    )
    atomic_write_text(engine_meta_path(engine_path), meta.model_dump_json(by_alias=True, indent=2))
    return engine_path


def _inspect(trt: Any, logger: Any, serialized: bytes, plan: BuildPlan) -> tuple[int | None, LayerSummary | None]:
    """Device memory and the layer summary of a freshly built engine (None where this TensorRT cannot say)."""
    engine = trt.Runtime(logger).deserialize_cuda_engine(serialized)
    if engine is None:
        raise CsaError("TensorRT built an engine it cannot load back (see the builder log above)")
    # device_memory_size is deprecated since 10.1 in favour of device_memory_size_v2 (NvInferRuntime.h)
    memory = getattr(engine, "device_memory_size_v2", None) or getattr(engine, "device_memory_size", None)
    try:
        text = engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON)
        layers = summarize_layers(parse_layer_info(text, dla=plan.dla_core is not None))
    except (AttributeError, CsaError) as exc:
        events.info(f"Note: no layer information from this TensorRT ({exc})")
        layers = None
    return (int(memory) if memory is not None else None), layers


def engine_meta_path(engine: Path) -> Path:
    return engine.with_name(engine.name + ".json")


def read_engine_meta(engine: Path) -> EngineMeta | None:
    path = engine_meta_path(engine)
    if not path.is_file():
        return None
    try:
        return EngineMeta.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, OSError):
        return None

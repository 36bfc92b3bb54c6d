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
  removed), no pre-build safety scope check (the build itself enforces the safety scope).
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
from csa_cli.tensorrt.plan import BuildPlan, EngineSpec, plan_problems
from csa_cli.tensorrt.runtime import require_tensorrt


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
    notes: list[str] = Field(default_factory=list)


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
    if plan.restricted:
        if major < 11:
            flags.append("SAFETY_SCOPE")
        else:
            notes.append("TensorRT 11 removed the pre-build safety scope check: the build enforces the scope itself")
    if plan.gpu_fallback:
        flags.append("GPU_FALLBACK")
    if plan.safe:
        capability: Literal["STANDARD", "SAFETY", "DLA_STANDALONE"] = "DLA_STANDALONE" if plan.dla_core is not None else "SAFETY"
    else:
        capability = "STANDARD"
    return BuilderSettings(
        trt_major=major,
        network_flags=network_flags,
        builder_flags=flags,
        engine_capability=capability,
        default_device="DLA" if plan.dla_core is not None else "GPU",
        dla_core=plan.dla_core,
        workspace_bytes=plan.workspace_mib << 20,
        use_calibration_cache=use_cache,
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


def _cache_calibrator(trt: Any, cache: bytes) -> Any:
    """An entropy calibrator that only replays a calibration cache (8.6/10 implicit INT8)."""

    class CacheCalibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: list[str]) -> None:  # no data: the cache holds every scale
            return None

        def read_calibration_cache(self) -> bytes:
            return cache

        def write_calibration_cache(self, data: Any) -> None:
            return None

    return CacheCalibrator()


def _member(enum: Any, name: str, what: str, version: str) -> Any:
    try:
        return getattr(enum, name)
    except AttributeError:
        raise CsaError(f"TensorRT {version} has no {what} {name}", hint="the plan targets another TensorRT version") from None


def build_engines(plan: BuildPlan, *, out_dir: Path | None = None, timing_cache: Path | None = None) -> list[Path]:
    """Build every engine of a plan with the installed TensorRT; each is written atomically with <engine>.json.

    Engine paths in the plan are relative to `out_dir` (default: the working directory).
    """
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


def _build_one(
    trt: Any, logger: Any, plan: BuildPlan, spec: EngineSpec, settings: BuilderSettings, cache_path: Path, version: str, device: str, out_dir: Path
) -> Path:
    started = time.perf_counter()
    builder = trt.Builder(logger)
    flags = 0
    for name in settings.network_flags:
        flags |= 1 << int(_member(trt.NetworkDefinitionCreationFlag, name, "network flag", version))
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(spec.onnx)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise CsaError(f"TensorRT's ONNX parser refused {spec.onnx}: {errors or 'no details'}", hint="run `csa check` on the ONNX")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, settings.workspace_bytes)
    for name in settings.builder_flags:
        config.set_flag(_member(trt.BuilderFlag, name, "builder flag", version))
    config.engine_capability = _member(trt.EngineCapability, settings.engine_capability, "engine capability", version)
    if settings.default_device == "DLA":
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(settings.dla_core or 0)
    if settings.use_calibration_cache and plan.calib_cache:
        # 8.6/10 only (settings never ask for it on 11, where int8_calibrator was removed)
        config.int8_calibrator = _cache_calibrator(trt, Path(plan.calib_cache).read_bytes())
    if spec.profile is not None:
        profile = builder.create_optimization_profile()
        p = spec.profile
        c, h, w = spec.chw
        profile.set_shape(spec.input_name, (p.min, c, h, w), (p.opt, c, h, w), (p.max, c, h, w))
        config.add_optimization_profile(profile)
    # Reuse the timing cache: a rebuild on the same GPU and TensorRT skips most tactic timing.
    cache_bytes = cache_path.read_bytes() if cache_path.is_file() else b""
    timing = config.create_timing_cache(cache_bytes)
    if not config.set_timing_cache(timing, False):
        events.info(f"Note: timing cache {cache_path} does not match this TensorRT/GPU; starting a fresh one")
        timing = config.create_timing_cache(b"")
        config.set_timing_cache(timing, False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise CsaError(f"TensorRT could not build {spec.engine} (see the builder log above)", hint="rerun with --debug; check the graph with `csa check`")
    engine_path = out_dir / spec.engine
    with atomic_path(engine_path) as tmp, tmp.open("wb") as fh:
        fh.write(serialized)
    with atomic_path(cache_path) as tmp, tmp.open("wb") as fh:
        fh.write(config.get_timing_cache().serialize())
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
    )
    atomic_write_text(engine_meta_path(engine_path), meta.model_dump_json(by_alias=True, indent=2))
    return engine_path


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

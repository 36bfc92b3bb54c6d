"""TensorRT build plans: what to build, decided and validated without TensorRT.

A BuildPlan names, per engine, the ONNX to parse, the engine file to write and its shapes,
plus the builder settings shared by every engine: precision flags, calibration cache,
workspace, timing cache, restricted/safety scope and DLA. The same plan drives the
TensorRT Python API executor (tensorrt/builder.py) and the trtexec command lines
of an Orin bundle (`to_trtexec`), so the two cannot drift apart.

Precision flags (TensorRT 8.6 / 10, weakly typed networks):
    fp32  -> no flag                  fp16  -> FP16
    int8  -> INT8 (+ FP32 fallback)   mixed -> FP16 + INT8 (FP32 still allowed)
INT8 needs either Q/DQ nodes in the ONNX (explicit quantization) or a calibration cache
(implicit; 8.6 and 10 only). TensorRT 11 removed every precision flag and implicit INT8:
only fp32, or int8 from a Q/DQ ONNX (strongly typed), can be built there. What a target and a
capability allow is decided in tensorrt/capability.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from csa_cli.errors import CsaError, UsageError
from csa_cli.graph.onnx_file import OnnxInfo
from csa_cli.tensorrt.capability import (
    Capability,
    dla_io_formats,
    dla_takes_qdq,
    engine_capability,
    parse_version,
    safety_scope_supported,
    target_problems,
)

Precision = Literal["fp32", "fp16", "int8", "mixed"]
Target = Literal["local", "orin"]
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8", "mixed")
MAX_SAFETY_BATCH = 16  # TensorRT 7-era safety summary: batch <= 16 (restricted-mode.md)
DEFAULT_WORKSPACE_MIB = 1024
DEFAULT_ORIN_TRT = "8.6"  # DRIVE OS 6 ships TensorRT 8.6


class ShapeProfile(BaseModel):
    """An optimization profile over the batch axis (only for a dynamic ONNX, never restricted)."""

    model_config = ConfigDict(extra="forbid")

    min: int
    opt: int
    max: int


class EngineSpec(BaseModel):
    """One engine: the ONNX it is parsed from, where it goes, its input shape."""

    model_config = ConfigDict(extra="forbid")

    batch: int = Field(description="the batch the engine is built (and validated) at; the profile's max for a dynamic one")
    onnx: str
    engine: str
    input_name: str
    chw: tuple[int, int, int]
    dynamic: bool = False
    profile: ShapeProfile | None = None
    has_qdq: bool = False
    output_ranks: list[int] = Field(default_factory=lambda: [2], description="rank of each output (DLA output formats depend on it)")
    input_format: str | None = Field(default=None, description="trtexec --inputIOFormats (DLA without GPU fallback)")
    output_formats: list[str] | None = Field(default=None, description="trtexec --outputIOFormats (DLA without GPU fallback)")
    validate_engine: str | None = Field(default=None, description="a standard engine trtexec can run, built beside a DLA-standalone loadable to validate it")

    @property
    def runnable(self) -> str:
        """The engine file trtexec --loadEngine runs to validate this spec."""
        return self.validate_engine or self.engine

    def shape(self, batch: int | None = None) -> str:
        c, h, w = self.chw
        return f"{batch or self.batch}x{c}x{h}x{w}"


class BuildPlan(BaseModel):
    """Everything a TensorRT build needs, shared by the API executor and trtexec."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = Field(default=1, alias="schema")
    model: str
    precision: Precision
    target: Target
    trt_version: str = Field(description="TensorRT the plan is rendered for: the installed one (local) or the device's (orin)")
    engines: list[EngineSpec] = Field(min_length=1)
    fp16: bool = False
    int8: bool = False
    allow_fp32: bool = True  # every precision keeps FP32 as the fallback for layers without lower-precision kernels
    calib_cache: str | None = None
    workspace_mib: int = DEFAULT_WORKSPACE_MIB
    timing_cache: str | None = None
    restricted: bool = False
    safe: bool = False
    dla_core: int | None = None
    gpu_fallback: bool = False
    weights: str | None = None
    weights_hash: str | None = None

    @property
    def trt_major(self) -> int:
        return trt_major(self.trt_version)

    @property
    def capability(self) -> Capability:
        return engine_capability(self.safe, self.dla_core)

    @model_validator(mode="after")
    def _consistent(self) -> BuildPlan:
        for problem in plan_problems(self):
            raise ValueError(problem)
        return self


def trt_major(version: str) -> int:
    return parse_version(version)[0]


def precision_flags(precision: str) -> tuple[bool, bool]:
    """(fp16, int8) builder flags for a precision: mixed enables both, FP32 stays allowed."""
    return {"fp32": (False, False), "fp16": (True, False), "int8": (False, True), "mixed": (True, True)}[precision]


def plan_problems(plan: BuildPlan) -> list[str]:
    """Every reason the plan cannot be built, in words a user can act on (empty when fine)."""
    problems: list[str] = []
    major = plan.trt_major
    if major < 8:
        problems.append(f"TensorRT {plan.trt_version} is too old: csa plans target 8.6 (DRIVE OS), 10 and 11")
    if (plan.fp16, plan.int8) != precision_flags(plan.precision):
        problems.append(f"precision {plan.precision} needs fp16={precision_flags(plan.precision)[0]} int8={precision_flags(plan.precision)[1]}")
    if plan.workspace_mib < 1:
        problems.append(f"workspace must be at least 1 MiB, got {plan.workspace_mib}")
    if plan.dla_core is not None and plan.dla_core < 0:
        problems.append(f"DLA core must be 0 or more, got {plan.dla_core}")
    if plan.gpu_fallback and plan.dla_core is None:
        problems.append("GPU fallback only applies to a DLA build (give --dla N)")
    if plan.safe and plan.dla_core is not None and plan.gpu_fallback:
        problems.append("a safety DLA build is DLA-standalone: GPU fallback is not available with --safe --dla")
    problems += target_problems(
        precision=plan.precision,
        target=plan.target,
        trt_version=plan.trt_version,
        restricted=plan.restricted,
        safe=plan.safe,
        dla_core=plan.dla_core,
        gpu_fallback=plan.gpu_fallback,
    )
    if major >= 11:
        if plan.fp16:
            problems.append(
                f"precision {plan.precision} needs the FP16 builder flag, which TensorRT 11 removed (strongly typed networks only): "
                "convert the ONNX to FP16 with ModelOpt AutoCast, or target TensorRT 8.6/10"
            )
        if plan.int8 and plan.calib_cache and not all(e.has_qdq for e in plan.engines):
            problems.append("TensorRT 11 removed implicit INT8 calibration: a calibration cache cannot be used, give a Q/DQ ONNX (`csa quantize`)")
    for spec in plan.engines:
        problems += _spec_problems(plan, spec)
    return problems


def _spec_problems(plan: BuildPlan, spec: EngineSpec) -> list[str]:
    where = f"engine {Path(spec.engine).name}"
    problems: list[str] = []
    if spec.batch < 1:
        problems.append(f"{where}: batch must be at least 1, got {spec.batch}")
    if min(spec.chw) < 1:
        problems.append(f"{where}: input CxHxW must be positive, got {spec.chw}")
    if plan.int8 and not spec.has_qdq and not plan.calib_cache:
        problems.append(
            f"{where}: precision {plan.precision} needs INT8 scales: a Q/DQ ONNX (`csa quantize`) or a calibration cache (--calib-cache); "
            f"{spec.onnx} has neither"
        )
    if spec.has_qdq and not plan.int8:
        # explicit quantization: TensorRT runs the Q/DQ graph in INT8 whatever the flags (or refuses it)
        problems.append(
            f"{where}: {Path(spec.onnx).name} is a Q/DQ (INT8) graph, which precision {plan.precision} cannot build: "
            "use --precision int8 or mixed, or build the FP32 graph it was quantized from"
        )
    if spec.has_qdq and plan.dla_core is not None and not dla_takes_qdq(plan.trt_version):
        problems.append(
            f"{where}: DLA on TensorRT {plan.trt_version} does not take a Q/DQ graph (no explicit quantization on DLA): "
            "build the FP32 ONNX with the calibration cache `csa quantize` wrote (--calib-cache), which holds the same scales"
        )
    if spec.dynamic and (plan.restricted or plan.safe):
        problems.append(f"{where}: restricted/safety mode takes static shapes only; {spec.onnx} has a dynamic batch axis: export one static ONNX per batch")
    if (plan.restricted or plan.safe) and spec.batch > MAX_SAFETY_BATCH:
        problems.append(f"{where}: restricted/safety mode allows batch <= {MAX_SAFETY_BATCH}, got {spec.batch}")
    if spec.profile is not None:
        p = spec.profile
        if not spec.dynamic:
            problems.append(f"{where}: an optimization profile needs a dynamic-batch ONNX, {spec.onnx} is static")
        if p.min < 1:
            problems.append(f"{where}: profile min batch must be at least 1, got {p.min}")
        if p.min > p.opt:
            problems.append(f"{where}: profile min batch {p.min} > opt {p.opt}")
        if p.opt > p.max:
            problems.append(f"{where}: profile opt batch {p.opt} > max {p.max}")
        if spec.batch > p.max or spec.batch < p.min:
            problems.append(f"{where}: batch {spec.batch} lies outside the profile [{p.min}, {p.max}]")
    elif spec.dynamic:
        problems.append(f"{where}: a dynamic-batch ONNX needs an optimization profile (min/opt/max)")
    return problems


def validate_plan(data: dict[str, object]) -> BuildPlan:
    """A BuildPlan from plain data; the first problem becomes a one-line UsageError."""
    try:
        return BuildPlan.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        msg = str(first["msg"]).removeprefix("Value error, ")
        loc = ".".join(str(p) for p in first["loc"])
        raise UsageError(f"invalid build plan: {loc + ': ' if loc else ''}{msg}") from None


def load_plan(path: str | Path) -> BuildPlan:
    try:
        return validate_plan(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, json.JSONDecodeError) as exc:
        raise CsaError(f"cannot read build plan {path}: {exc}") from None


def plan_json(plan: BuildPlan) -> str:
    return plan.model_dump_json(by_alias=True, indent=2) + "\n"


def make_plan(
    model: str,
    onnx_files: list[OnnxInfo],
    *,
    precision: str,
    target: str,
    trt_version: str,
    batches: list[int] | None = None,
    opt_batch: int | None = None,
    calib_cache: str | None = None,
    workspace_mib: int = DEFAULT_WORKSPACE_MIB,
    timing_cache: str | None = None,
    restricted: bool = False,
    safe: bool = False,
    dla_core: int | None = None,
    gpu_fallback: bool | None = None,
    engine_dir: str = "engines",
    weights: str | None = None,
    weights_hash: str | None = None,
) -> BuildPlan:
    """A validated plan: one engine per static ONNX, or one profiled engine for a dynamic one.

    `batches` matters only for a dynamic ONNX (profile min/max; opt defaults to max); a static
    ONNX is built at its own batch. Engine files are named <model>_<precision>_b<batch>.engine
    under `engine_dir` (a DLA-standalone loadable: .loadable, with a _validate.engine beside it).

    Long because it takes every builder setting by name; the engine specs are _spec and
    validation is plan_problems.
    """
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}", hint="use fp32, fp16, int8 or mixed")
    fp16, int8 = precision_flags(precision)
    fallback = (dla_core is not None and not safe) if gpu_fallback is None else gpu_fallback
    capability = engine_capability(safe, dla_core)
    specs = [_spec(model, info, precision, batches, opt_batch, engine_dir, dla_core, fallback, capability) for info in onnx_files]
    return validate_plan(
        {
            "model": model,
            "precision": precision,
            "target": target,
            "trt_version": trt_version,
            "engines": [s.model_dump() for s in specs],
            "fp16": fp16,
            "int8": int8,
            "calib_cache": calib_cache,
            "workspace_mib": workspace_mib,
            "timing_cache": timing_cache,
            "restricted": restricted,
            "safe": safe,
            "dla_core": dla_core,
            "gpu_fallback": fallback,
            "weights": weights,
            "weights_hash": weights_hash,
        }
    )


def _spec(
    model: str,
    info: OnnxInfo,
    precision: str,
    batches: list[int] | None,
    opt_batch: int | None,
    engine_dir: str,
    dla_core: int | None,
    gpu_fallback: bool,
    capability: Capability,
) -> EngineSpec:
    c, h, w = (int(d) for d in info.input_shape[1:])
    profile = None
    if info.dynamic:
        wanted = batches or [1]
        top = max(wanted)
        profile = ShapeProfile(min=min(wanted), opt=opt_batch if opt_batch is not None else top, max=top)
        batch = top
    else:
        batch = int(info.input_shape[0])
    stem = f"{model}_{precision}_b{batch}" + ("_dyn" if info.dynamic else "")
    ranks = [len(info.output_shape) or 2] * max(1, len(info.output_names))
    input_format, output_formats = None, None
    if dla_core is not None and not gpu_fallback and precision != "fp32":  # fp32 on DLA is refused by plan_problems
        input_format, output_formats = dla_io_formats(precision, ranks)
    standalone = capability == "DLA_STANDALONE"

    def named(name: str) -> str:
        return f"{engine_dir}/{name}" if engine_dir else name

    return EngineSpec(
        batch=batch,
        onnx=info.path,
        engine=named(stem + (".loadable" if standalone else ".engine")),
        input_name=info.input_name,
        chw=(c, h, w),
        dynamic=info.dynamic,
        profile=profile,
        has_qdq=info.has_qdq,
        output_ranks=ranks,
        input_format=input_format,
        output_formats=output_formats,
        validate_engine=named(stem + "_validate.engine") if standalone else None,
    )


def _input_ref(spec: EngineSpec) -> str:
    return spec.input_name if ":" not in spec.input_name else f"'{spec.input_name}'"  # trtexec quotes names holding ':'


def _shape_arg(spec: EngineSpec, batch: int) -> str:
    return f"{_input_ref(spec)}:{spec.shape(batch)}"


CHUNK = "@K@"  # stands for the chunk number in validate.sh's accuracy lines (the script substitutes it)


def trtexec_build_args(plan: BuildPlan, spec: EngineSpec, *, validation: bool = False, layer_info: str | None = None) -> list[str]:
    """The trtexec command line that builds `spec` as the plan says (argv, no shell quoting).

    `validation`: the standard engine built beside a DLA-standalone loadable (the same DLA core,
    I/O formats and precision, no --safe) so that trtexec can run what the loadable computes.
    `layer_info`: also export the engine's layers (--profilingVerbosity=detailed --exportLayerInfo,
    trtexec's reporting options) and build only (--skipInference). trtexec writes no layer
    information for a safety engine (trtexec.cpp, 8.6: printLayerInfo only `if (!options.build.safe)`).
    """
    safe = plan.safe and not validation
    args = ["trtexec", f"--onnx={spec.onnx}", f"--saveEngine={spec.validate_engine if validation else spec.engine}"]
    if plan.trt_major < 11:  # 11 removed the precision flags and implicit calibration (strongly typed)
        if plan.fp16:
            args.append("--fp16")
        if plan.int8:
            args.append("--int8")
            if plan.calib_cache and not spec.has_qdq:
                args.append(f"--calib={plan.calib_cache}")
    if spec.profile is not None:
        p = spec.profile
        args += [f"--minShapes={_shape_arg(spec, p.min)}", f"--optShapes={_shape_arg(spec, p.opt)}", f"--maxShapes={_shape_arg(spec, p.max)}"]
    if spec.input_format:
        args.append(f"--inputIOFormats={spec.input_format}")
    if spec.output_formats:
        args.append(f"--outputIOFormats={','.join(spec.output_formats)}")
    if (plan.restricted or (validation and plan.safe)) and safety_scope_supported(plan.trt_version):
        args.append("--restricted")
    if safe:
        args.append("--safe")
    if plan.dla_core is not None:
        args.append(f"--useDLACore={plan.dla_core}")
        if plan.gpu_fallback:
            args.append("--allowGPUFallback")
    # A bare number is MiB in trtexec 8.6 and 10 alike (10 also takes suffixes, 8.6 does not).
    args.append(f"--memPoolSize=workspace:{plan.workspace_mib}")
    if plan.timing_cache:
        args.append(f"--timingCacheFile={plan.timing_cache}")
    if layer_info is not None:
        args += ["--skipInference", "--verbose"]
        if not safe:
            args += ["--profilingVerbosity=detailed", f"--exportLayerInfo={layer_info}"]
    return args


def _run_base(plan: BuildPlan, spec: EngineSpec) -> list[str]:
    args = ["trtexec", f"--loadEngine={spec.runnable}"]
    if spec.dynamic:
        args.append(f"--shapes={_shape_arg(spec, spec.batch)}")
    if plan.capability == "SAFETY":
        args.append("--safe")  # a safety engine is run by the safe runtime, never the standard one (sampleEngines.cpp getSafe)
    if plan.dla_core is not None:
        args.append(f"--useDLACore={plan.dla_core}")
    return args


def trtexec_accuracy_args(plan: BuildPlan, spec: EngineSpec, *, inputs: str, outputs: str) -> list[str]:
    """One inference on saved inputs, outputs exported as JSON (`inputs`/`outputs` may hold CHUNK)."""
    return [*_run_base(plan, spec), f"--loadInputs={_input_ref(spec)}:{inputs}", f"--exportOutput={outputs}", "--iterations=1", "--warmUp=0", "--duration=0"]


def timing_flags(plan: BuildPlan) -> list[str]:
    """trtexec's options for stable timings on the device (samples/common/sampleOptions.cpp, 8.6 / 10 / 11.1).

    --useSpinWait ("actively synchronize on GPU events": less synchronization jitter),
    --useCudaGraph (launch overhead out of the timing; not for DLA or the safe runtime, where
    capture does not apply), --separateProfileRun (the per-layer profiler in a second run, not in
    the timed one). trtexec 11 made all three the default and the flags no-ops, so they are left
    out there. Warm-up 1 s, at least 10 s of timed runs.
    """
    flags = ["--warmUp=1000", "--duration=10"]
    if plan.trt_major < 11:
        flags.append("--useSpinWait")
        if plan.dla_core is None and plan.capability == "STANDARD":
            flags.append("--useCudaGraph")
        if plan.capability != "SAFETY":
            flags.append("--separateProfileRun")
    return flags


def trtexec_timing_args(plan: BuildPlan, spec: EngineSpec, *, times: str, profile: str | None) -> list[str]:
    """trtexec that times an engine (random inputs: timing does not depend on the values) and exports times and per-layer profile."""
    args = [*_run_base(plan, spec), *timing_flags(plan), f"--exportTimes={times}"]
    if profile is not None:
        args.append(f"--exportProfile={profile}")
    return args


def to_trtexec(plan: BuildPlan) -> list[list[str]]:
    """One trtexec build command line (argv) per engine of the plan (and per validation engine of a DLA loadable)."""
    lines = []
    for spec in plan.engines:
        lines.append(trtexec_build_args(plan, spec))
        if spec.validate_engine:
            lines.append(trtexec_build_args(plan, spec, validation=True))
    return lines

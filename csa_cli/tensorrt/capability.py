"""What a target, a precision and a capability allow: decided here, without TensorRT, and tested.

Every fact below comes from TensorRT's public headers, trtexec's sources or its documentation;
the source is named where the fact is used. The BuildPlan (plan.py) asks these functions, so the
API executor (builder.py) and the Orin bundle's trtexec lines (bundle.py) decide alike.

    capability    local (desktop TensorRT)          orin (DRIVE OS TensorRT, built on the device)
    STANDARD      GPU, or DLA with GPU fallback     the same, or DLA without fallback
    SAFETY        refused: DRIVE products only      trtexec --safe, run by the safe runtime
    DLA_STANDALONE refused: DRIVE products only     trtexec --safe --useDLACore: a cuDLA loadable
"""

from __future__ import annotations

from typing import Literal

from csa_cli.errors import UsageError

Capability = Literal["STANDARD", "SAFETY", "DLA_STANDALONE"]
Version = tuple[int, int]

# DLA computes in FP16 or INT8 only ("DLA support is currently limited to networks running in FP16
# and INT8 mode", TensorRT docs, Working with DLA / Building and Launching the Loadable).
DLA_PRECISIONS: tuple[str, ...] = ("fp16", "int8", "mixed")


def parse_version(version: str) -> Version:
    """(major, minor) of "8.6", "8.6.11", "10", "10.3.0"; anything else is a usage error."""
    parts = str(version).strip().split(".")
    try:
        major = int(parts[0])
        minor = int(parts[1]) if len(parts) > 1 and parts[1] else 0
    except ValueError:
        raise UsageError(f"TensorRT version must look like 8.6, 10 or 11, got {version!r}") from None
    return major, minor


def trt_version_number(version: str) -> int:
    """NV_TENSORRT_VERSION of a TensorRT version: the number in trtexec's banner and a calibration cache header.

    8.x: major*1000 + minor*100 + patch (include/NvInferRuntimeBase.h at release 8.6:
    kNV_TENSORRT_VERSION_IMPL), so 8.6.1 -> 8601 and DRIVE OS's 8.6.11 -> 8611; 10 and later:
    major*10000 + minor*100 + patch (NvInferRuntimeBase.h at 10.3: NV_TENSORRT_VERSION_INT), so
    10.3.0 -> 100300.
    """
    parts = [int(p) for p in str(version).split(".")[:3] if p.isdigit()]
    if not parts:
        raise UsageError(f"TensorRT version must look like 8.6.1 or 10.3.0, got {version!r}")
    major, minor, patch = [*parts, 0, 0][:3]
    return major * (1000 if major < 10 else 10000) + minor * 100 + patch


def version_from_number(number: int) -> Version:
    """(major, minor) back from an NV_TENSORRT_VERSION number (8601 -> (8, 6), 100300 -> (10, 3))."""
    if number >= 100000:
        return number // 10000, (number % 10000) // 100
    return number // 1000, (number % 1000) // 100


def engine_capability(safe: bool, dla_core: int | None) -> Capability:
    """--safe builds a SAFETY engine on the GPU and a DLA_STANDALONE loadable on a DLA core.

    trtexec does the same: `--safe` sets kSAFETY when no DLA core is given, and "if DLA is enabled,
    --buildDLAStandalone will be specified automatically" (samples/common/sampleOptions.cpp and
    sampleEngines.cpp, release 8.6).
    """
    if not safe:
        return "STANDARD"
    return "DLA_STANDALONE" if dla_core is not None else "SAFETY"


def safety_scope_supported(version: str) -> bool:
    """Whether a standard build can still check the safety scope (BuilderFlag SAFETY_SCOPE, trtexec --restricted).

    NvInfer.h: kSAFETY_SCOPE is "only supported in NVIDIA Drive(R) products", "Deprecated in
    TensorRT 10.16 ... retained for API compatibility but is ignored"; trtexec 11 has no
    --restricted (samples/common/sampleOptions.cpp at 11.1).
    """
    return parse_version(version) < (10, 16)


def dla_supported(version: str) -> bool:
    """TensorRT 11.0-11.3 have no DLA, and 11.4 none for DRIVE OS (TensorRT 11.3/11.4 docs, DLA Runtime Configuration)."""
    return parse_version(version)[0] < 11


def dla_takes_qdq(version: str) -> bool:
    """DLA on TensorRT 8.x does not support explicit quantization (TensorRT 8 developer guide, Working with
    DLA); NVIDIA's qdq-translator (Deep-Learning-Accelerator-SW) turns a Q/DQ ONNX into an FP32 ONNX and a
    calibration cache for exactly that reason. Strongly typed TensorRT (10+) imports the Q/DQ types."""
    return parse_version(version)[0] >= 10


def dla_io_formats(precision: str, output_ranks: list[int]) -> tuple[str, list[str]]:
    """trtexec --inputIOFormats / --outputIOFormats for a DLA build without GPU fallback.

    Without GPU fallback trtexec sets kDIRECT_IO ("Reformatting runs on GPU, so avoid I/O
    reformatting", sampleEngines.cpp 8.6), and DLA standalone "disallows reformatting" (TensorRT
    docs, DLA Standalone Mode), so the I/O tensors must already be in a DLA format: inputs
    kDLA_LINEAR/kDLA_HWC4 (FP16, INT8), kCHW16 (FP16), kCHW32 (INT8); outputs kDLA_LINEAR (FP16,
    INT8), kCHW16 (FP16), kCHW32 (INT8) (TensorRT docs, I/O Formats on DLA). FP16 I/O serves every
    precision (NVIDIA's qdq-translator README builds INT8 on DLA with --outputIOFormats=fp16:chw16).
    The image input is 4-D: fp16:chw16. A vectorized format needs a channel axis, so an output of
    rank < 3 (logits) is fp16:dla_linear.
    """
    if precision not in DLA_PRECISIONS:
        raise UsageError(f"DLA has no {precision.upper()} kernels", hint="use --precision fp16, int8 or mixed with --dla")
    return "fp16:chw16", ["fp16:chw16" if rank >= 3 else "fp16:dla_linear" for rank in output_ranks]


def demanded_rules(*, restricted: bool, safe: bool, dla_core: int | None, gpu_fallback: bool) -> list[str]:
    """The `csa check` rule sets a build demands, which it runs itself (shared/reference/cli-conventions.md).

    --restricted and --safe demand the restricted (GPU safety) rules; a DLA build without GPU
    fallback (--safe --dla, or --dla --no-gpu-fallback) demands the DLA rules too, because every
    layer must then run on the DLA. Any other build demands none: it carries the upstream verdict.
    """
    rules = []
    if restricted or safe:
        rules.append("restricted")
    if dla_core is not None and not gpu_fallback:
        rules.append("dla")
    return rules


def target_problems(*, precision: str, target: str, trt_version: str, restricted: bool, safe: bool, dla_core: int | None, gpu_fallback: bool) -> list[str]:
    """What the target, the TensorRT version and the capability refuse, in words a user can act on."""
    problems: list[str] = []
    if safe and target == "local":
        problems.append(
            "a safety engine (--safe) needs DRIVE OS's TensorRT and its safe runtime (EngineCapability SAFETY and "
            "DLA_STANDALONE are only supported in NVIDIA DRIVE products): build it in an Orin bundle with --target orin"
        )
    if restricted and not safety_scope_supported(trt_version):
        problems.append(
            f"TensorRT {trt_version} ignores the safety scope check of a standard build (SAFETY_SCOPE is deprecated in 10.16 "
            "and trtexec 11 has no --restricted): target TensorRT 8.6/10 with --trt-version, or rely on `csa check` and --safe"
        )
    if dla_core is not None:
        if precision not in DLA_PRECISIONS:
            problems.append(f"DLA has no {precision.upper()} kernels (DLA runs FP16 and INT8 only): use --precision fp16, int8 or mixed with --dla")
        if not gpu_fallback and target == "local":
            problems.append(
                "a DLA build without GPU fallback takes its I/O in DLA formats (fp16:chw16), which csa's TensorRT backend does not feed: "
                "build it in an Orin bundle (--target orin), whose validate.sh feeds that layout, or keep GPU fallback"
            )
        if not dla_supported(trt_version):
            problems.append(
                f"TensorRT {trt_version} has no DLA for DRIVE OS (TensorRT 11 docs: 10.7 was the last release with DLA): target --trt-version 8.6 or 10"
            )
    return problems


def rewrite_cache_header(cache: bytes, version: str) -> bytes:
    """A calibration cache whose header names TensorRT `version`: TRT-<NV_TENSORRT_VERSION>-<algorithm>.

    TensorRT reads a cache only when its header names the reading TensorRT; otherwise it ignores the
    cache and asks the calibrator for images (a TRT-8600 cache under TensorRT 10.3:
    NVIDIA/Deep-Learning-Accelerator-SW issue #26). The scales below the header do not change.
    """
    head, sep, rest = cache.partition(b"\n")
    parts = head.decode("utf-8", "replace").strip().split("-", 2)
    if len(parts) != 3 or parts[0] != "TRT" or not parts[1].isdigit():
        raise UsageError(f"not a TensorRT calibration cache: its first line is {head[:60]!r}", hint="expected e.g. TRT-8601-EntropyCalibration2")
    return f"TRT-{trt_version_number(version)}-{parts[2]}".encode() + sep + rest

"""What this machine is and has: CPU, GPU, library versions, peak memory, and the backends
`csa doctor` reports (present or not, and what each enables)."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import resource
import sys
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from csa_cli.tensorrt.runtime import tensorrt_version


def peak_rss_mib() -> float:
    """Peak resident memory of this process in MiB.

    Linux: VmHWM, which starts afresh at exec (ru_maxrss survives exec, so a child started from a
    big parent would report the parent's size); elsewhere ru_maxrss.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    scale = 1024.0 * 1024.0 if sys.platform == "darwin" else 1024.0  # macOS reports bytes, Linux KiB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


class MachineInfo(BaseModel):
    """Where a profile was measured."""

    model_config = ConfigDict(extra="forbid")

    cpu: str
    cpu_count: int
    threads: int | None
    gpu: str | None = None
    cuda: str | None = None
    os: str
    python: str
    libraries: dict[str, str]

    def title(self, device: str = "cpu") -> str:
        if device.startswith("cuda") and self.gpu:
            return self.gpu
        threads = self.threads or self.cpu_count
        return f"{self.cpu}, {threads} thread{'s' if threads != 1 else ''}"


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info(threads: int | None, device: str = "cpu") -> MachineInfo:
    """CPU model, core count, threads used, GPU (when the profile ran on one), library versions."""
    libraries = {d: v for d in ("csa", "torch", "onnxruntime", "onnxruntime-gpu", "onnx", "numpy", "timm", "transformers", "tensorrt") if (v := _version(d))}
    gpu = cuda = None
    if "torch" in sys.modules:  # never import torch just for this; every torch/export path has it loaded
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(torch.device(device) if device.startswith("cuda") else 0)
            cuda = torch.version.cuda
    return MachineInfo(
        cpu=cpu_model(),
        cpu_count=os.cpu_count() or 1,
        threads=threads,
        gpu=gpu,
        cuda=cuda,
        os=f"{platform.system()} {platform.release()}",
        python=platform.python_version(),
        libraries=libraries,
    )


# The first onnxruntime release with what `csa quantize` uses (stages/quantize/qdq_writer.py):
# quantize_static(calibration_cache_path=...) and onnxruntime.quantization.calibrate's
# TensorsData / save_tensors_data, added by microsoft/onnxruntime PR #28221 ("add calibration
# cache to quantize_static"). Read from the released wheels: absent from 1.26.0's
# onnxruntime/quantization/{quantize,calibrate}.py, present in 1.27.0's. pyproject's floor matches.
ONNXRUNTIME_QUANTIZE_FLOOR = (1, 27, 0)


def _release(version: str) -> tuple[int, ...]:
    """The numeric release of a version string: '1.27.0.dev20260501+cu12' -> (1, 27, 0)."""
    parts = re.match(r"\d+(?:\.\d+)*", version.strip())
    return tuple(int(p) for p in parts.group(0).split(".")) if parts else ()


ONNXRUNTIME_UPGRADE = "pip install 'onnxruntime>=" + ".".join(map(str, ONNXRUNTIME_QUANTIZE_FLOOR)) + "'"


def installed_onnxruntime() -> str | None:
    """The installed onnxruntime's version (the CPU or the GPU distribution), or None."""
    return _version("onnxruntime") or _version("onnxruntime-gpu")


def onnxruntime_floor_problem(version: str | None) -> str | None:
    """Why an installed onnxruntime is too old for `csa quantize`, or None when it is new enough (or absent)."""
    if version is None or _release(version) >= ONNXRUNTIME_QUANTIZE_FLOOR:
        return None
    floor = ".".join(map(str, ONNXRUNTIME_QUANTIZE_FLOOR))
    return (
        f"onnxruntime {version} is older than {floor}, the first release with "
        "quantize_static(calibration_cache_path=...) and save_tensors_data, which csa quantize uses"
    )


class Check(BaseModel):
    component: str
    present: bool
    detail: str
    enables: str
    problem: str | None = None  # present, but unusable for part of what it enables (too old)


def probe_environment() -> list[Check]:
    checks = [Check(component="python", present=True, detail=f"{platform.python_version()} ({sys.executable})", enables="csa")]
    torch_v = _version("torch")
    cuda_detail = "no torch"
    cuda = False
    if torch_v:
        import torch

        cuda = torch.cuda.is_available()
        cuda_detail = f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})" if cuda else f"not available (torch built for CUDA {torch.version.cuda})"
    checks.append(
        Check(
            component="torch",
            present=torch_v is not None,
            detail=torch_v or "not installed",
            enables="models, export, eval/profile on the torch backend",
        )
    )
    checks.append(Check(component="CUDA GPU", present=cuda, detail=cuda_detail, enables="torch CUDA fp16 eval/profile, TensorRT builds"))
    ort_v = installed_onnxruntime()
    providers = "-"
    if ort_v:
        import onnxruntime

        providers = ", ".join(onnxruntime.get_available_providers())
    checks.append(
        Check(
            component="onnxruntime",
            present=ort_v is not None,
            detail=f"{ort_v} ({providers})" if ort_v else "not installed",
            enables="parity checks, quantization, eval/profile on onnxruntime",
            problem=(problem + f" ({ONNXRUNTIME_UPGRADE})") if (problem := onnxruntime_floor_problem(ort_v)) else None,
        )
    )
    for dist, enables in (
        ("onnx", "export, check"),
        ("timm", "convnext-tiny, swin-tiny"),
        ("transformers", "cvt-13"),
        ("huggingface-hub", "csa pull"),
    ):
        v = _version(dist)
        checks.append(Check(component=dist, present=v is not None, detail=v or "not installed", enables=enables))
    trt = tensorrt_version()
    checks.append(
        Check(
            component="tensorrt",
            present=trt is not None,
            detail=trt or "not installed (pip install 'csa[tensorrt]' on a machine with NVIDIA's index)",
            enables="csa engine --target local, tensorrt eval/profile; without it: --target orin bundles",
        )
    )
    return checks


def cpu_model() -> str:
    """The CPU's marketing name (/proc/cpuinfo on Linux, platform elsewhere)."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"

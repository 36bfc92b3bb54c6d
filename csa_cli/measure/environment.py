"""Probe the machine: which libraries, providers and devices are present."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import platform
import sys

from pydantic import BaseModel


class Check(BaseModel):
    component: str
    present: bool
    detail: str
    enables: str


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def tensorrt_version() -> str | None:
    if importlib.util.find_spec("tensorrt") is None:
        return None
    try:
        import tensorrt  # type: ignore[import-not-found]

        return str(tensorrt.__version__)
    except Exception:  # a stub or a broken install is "absent" for our purposes
        return None


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
    ort_v = _version("onnxruntime") or _version("onnxruntime-gpu")
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

"""Inference backends behind one small interface (see base.py): torch, onnxruntime, tensorrt.

`open_backend(name, artifact, ...)` is the one entry point: eval, predict, calibration checks and
profiling call it and never import a backend module themselves, so torch / onnxruntime / TensorRT
are imported only when used.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from csa_cli.errors import MissingBackend, UsageError

if TYPE_CHECKING:
    from csa_cli.backends.base import Backend

BACKENDS = ("torch", "onnxruntime", "tensorrt")
TENSORRT_HINT = "pip install 'csa[tensorrt]' on a machine with an NVIDIA GPU (TensorRT wheels come from NVIDIA's index), or use --backend onnxruntime"


def open_backend(name: str, artifact: Any, *, device: str = "cpu", precision: str = "fp32", threads: int | None = None) -> Backend:
    """A ready backend: `artifact` is an nn.Module (or a LoadedModel) for torch, an ONNX path for
    onnxruntime, an engine path for tensorrt."""
    if name == "torch":
        from csa_cli.backends.torch_backend import TorchBackend

        module = getattr(artifact, "module", artifact)  # a LoadedModel carries its module
        if isinstance(module, str | Path):
            raise UsageError(f"the torch backend runs a model, not the file {module}", hint="use --backend onnxruntime for an ONNX file")
        return TorchBackend(module, device=device, precision=precision, threads=threads)
    if name == "onnxruntime":
        from csa_cli.backends.onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(Path(artifact), device=device, precision=precision, threads=threads)
    if name == "tensorrt":
        try:
            from csa_cli.tensorrt.executor import open_engine
        except ImportError as exc:
            raise MissingBackend(f"the tensorrt backend is not available ({exc})", hint=TENSORRT_HINT) from None
        trt_device = device if str(device).startswith("cuda") else "cuda:0"
        return open_engine(Path(artifact), device=trt_device, precision=None if precision == "fp32" else precision)
    raise UsageError(f"unknown backend '{name}'", hint=f"use one of: {', '.join(BACKENDS)}")

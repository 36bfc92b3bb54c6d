"""Is TensorRT here? The one place that asks, so every stage answers the same way (exit 4 if not)."""

from __future__ import annotations

from typing import Any

from csa_cli.errors import MissingBackend

ENGINE_SUFFIXES = (".engine", ".plan", ".trt")  # what a serialized TensorRT engine is saved as
INSTALL_HINT = "install TensorRT where a CUDA GPU is present (pip install 'csa[tensorrt]'), or build on the device: csa engine ... --target orin"


def tensorrt_version() -> str | None:
    """The installed TensorRT version, or None (cheap: no CUDA initialisation)."""
    import importlib.util

    if importlib.util.find_spec("tensorrt") is None:
        return None
    try:
        import tensorrt as trt
    except Exception:  # a broken install (missing libnvinfer) counts as absent
        return None
    return str(trt.__version__)


def require_tensorrt() -> tuple[Any, str]:
    """(tensorrt module, GPU name), or MissingBackend (exit 4) naming what to install or where to run."""
    version = tensorrt_version()
    if version is None:
        raise MissingBackend("TensorRT is not installed here, so --target local cannot build an engine", hint=INSTALL_HINT)
    import torch

    if not torch.cuda.is_available():
        raise MissingBackend(f"TensorRT {version} is installed but no CUDA GPU is visible, so --target local cannot build an engine", hint=INSTALL_HINT)
    import tensorrt as trt

    return trt, torch.cuda.get_device_name(0)

"""PyTorch inference: CPU, or CUDA when present (fp16 there)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from csa_cli.backends.base import BackendName
from csa_cli.errors import MissingBackend, UsageError

if TYPE_CHECKING:
    import torch
    from torch import nn

TORCH_PRECISIONS = ("fp32", "fp16")


def resolve_torch_device(device: str | None) -> str:
    """'auto' -> cuda:0 when a GPU is visible, else cpu; 'cuda' -> 'cuda:0'; a missing GPU is MissingBackend."""
    import torch

    wanted = (device or "auto").lower()
    if wanted == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if wanted == "cpu":
        return "cpu"
    if wanted.startswith("cuda"):
        if not torch.cuda.is_available():
            raise MissingBackend(f"device {device} asked for, but no CUDA GPU is visible here", hint="use --device cpu, or run on a machine with an NVIDIA GPU")
        return "cuda:0" if wanted == "cuda" else wanted
    raise UsageError(f"unknown device '{device}'", hint="use cpu, cuda, cuda:N or auto")


def _logits(output: Any) -> torch.Tensor:
    """Models return a tensor; tolerate wrappers that return a tuple or an object with .logits."""
    if hasattr(output, "logits"):
        return output.logits
    if isinstance(output, list | tuple):
        return output[0]
    return output


class TorchBackend:
    """An nn.Module in eval mode on one device; `run` takes float32 NCHW numpy and returns float32 logits."""

    name: BackendName = "torch"

    def __init__(self, module: nn.Module, *, device: str = "cpu", precision: str = "fp32", threads: int | None = None) -> None:
        import torch

        if precision not in TORCH_PRECISIONS:
            raise UsageError(f"the torch backend runs fp32 or fp16, not {precision}", hint="int8 and mixed run on onnxruntime (csa quantize) or tensorrt")
        self.device = resolve_torch_device(device)
        if precision == "fp16" and not self.device.startswith("cuda"):
            raise MissingBackend(
                "fp16 inference with torch needs a CUDA GPU (CPU half-precision kernels are slow and incomplete)", hint="use --precision fp32 here"
            )
        if threads is not None:
            torch.set_num_threads(threads)
        self.threads = torch.get_num_threads()
        self.precision = precision
        self._torch = torch
        self._dtype = torch.float16 if precision == "fp16" else torch.float32
        self.module = module.eval().to(device=self.device, dtype=self._dtype)

    def run_tensor(self, batch: torch.Tensor) -> torch.Tensor:
        """Logits (float32, on the CPU) for a NCHW tensor; a pinned CPU tensor is copied asynchronously."""
        torch = self._torch
        with torch.inference_mode():
            x = batch.to(self.device, dtype=self._dtype, non_blocking=True)
            return _logits(self.module(x)).float().cpu()

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.run_tensor(self._torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))).numpy()

    def describe(self) -> dict[str, Any]:
        torch = self._torch
        info: dict[str, Any] = {"backend": "torch", "torch": torch.__version__, "device": self.device, "precision": self.precision, "threads": self.threads}
        if self.device.startswith("cuda"):
            info["gpu"] = torch.cuda.get_device_name(torch.device(self.device))
        return info

"""The one interface every backend (torch, onnxruntime, tensorrt) implements.

A backend takes a float32 NCHW batch (numpy) and returns logits (numpy, batch x classes).
Eval, predict, calibration checks and profiling all go through it.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

BackendName = Literal["torch", "onnxruntime", "tensorrt"]


@runtime_checkable
class Backend(Protocol):
    name: BackendName
    precision: str  # fp32 | fp16 | int8 | mixed
    device: str  # cpu | cuda:0 | ...

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Logits for one NCHW float32 batch."""
        ...

    def describe(self) -> dict[str, Any]:
        """Versions, provider/device, threads: what a result record names as its backend."""
        ...

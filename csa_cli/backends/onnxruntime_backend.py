"""ONNX Runtime inference: an FP32 ONNX or a QDQ (INT8) ONNX, on the CPU or CUDA provider."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from csa_cli.backends.base import BackendName
from csa_cli.errors import CsaError, MissingBackend, UsageError
from csa_cli.graph.onnx_file import read_onnx_info

FP16_SOURCES = (
    "FP16 figures come from CUDA: the torch backend (`--backend torch --device cuda --precision fp16`) "
    "or a TensorRT engine (`csa engine --precision fp16`, then evaluate the engine)"
)


def onnxruntime_precision(requested: str | None, *, quantized: bool, device: str, name: str) -> str:
    """The precision `name` runs at on ONNX Runtime, or a UsageError where `requested` would not be what ran.

    ONNX Runtime runs a graph in the types it holds, converting nothing: csa's graphs are FP32, or
    Q/DQ INT8 (a quantize record may call that mixed). Its CPU provider has FP16 kernels for few
    ops and wraps an FP16 graph in casts to FP32 kernels. So a record that said fp16 here would
    name a precision that did not run: refused, with where FP16 figures do come from.
    """
    if requested == "fp16":
        why = (
            "its CPU provider runs FP32 kernels (an FP16 graph would be wrapped in casts to FP32)"
            if device == "cpu"
            else "it runs a graph in the types it holds, and this one is " + ("Q/DQ INT8" if quantized else "FP32")
        )
        raise UsageError(f"--precision fp16 does not run FP16 on onnxruntime: {why}, so the result would claim a precision that did not run", hint=FP16_SOURCES)
    if requested in (None, "fp32"):
        return "int8" if quantized else "fp32"  # what the graph holds
    if requested in ("int8", "mixed"):
        if not quantized:
            raise UsageError(f"{name} holds no Q/DQ nodes: onnxruntime runs it in FP32, not {requested}", hint="quantize it first, or drop --precision")
        return requested
    raise UsageError(f"unknown precision {requested!r} for onnxruntime", hint="use fp32, or int8 / mixed for a quantized (Q/DQ) graph")


class OnnxRuntimeBackend:
    """One InferenceSession. A static-batch graph gets any batch size: split into its batch, the last chunk padded."""

    name: BackendName = "onnxruntime"

    def __init__(self, path: str | Path, *, device: str = "cpu", precision: str | None = None, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise CsaError(f"ONNX file not found: {self.path}", hint="check the path, or export one with `csa export`")
        info = read_onnx_info(self.path)
        self.quantized, self.num_classes = info.has_qdq, info.num_classes
        wanted = (device or "cpu").lower()
        available = ort.get_available_providers()
        if wanted == "auto":
            wanted = "cuda" if "CUDAExecutionProvider" in available else "cpu"
        if wanted.startswith("cuda"):
            if "CUDAExecutionProvider" not in available:
                raise MissingBackend(
                    "the CUDA provider of onnxruntime is not available here", hint="pip install onnxruntime-gpu on a CUDA machine, or use --device cpu"
                )
            device_id = int(wanted.split(":")[1]) if ":" in wanted else 0
            providers: list[Any] = [("CUDAExecutionProvider", {"device_id": device_id}), "CPUExecutionProvider"]
            self.device = f"cuda:{device_id}"
        elif wanted == "cpu":
            providers = ["CPUExecutionProvider"]
            self.device = "cpu"
        else:
            raise UsageError(f"unknown device '{device}'", hint="use cpu, cuda, cuda:N or auto")
        self.precision = onnxruntime_precision(precision, quantized=self.quantized, device=self.device, name=self.path.name)  # before any session loads
        options = ort.SessionOptions()
        if threads is not None:
            if threads < 1:
                raise UsageError(f"--threads must be at least 1, got {threads}")
            options.intra_op_num_threads = threads
        self.threads = threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=options, providers=providers)
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph types
            raise CsaError(f"onnxruntime cannot load {self.path.name}: {str(exc).splitlines()[0]}") from None
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.output_name = self.session.get_outputs()[0].name
        shape = list(inp.shape)
        if len(shape) != 4:
            raise CsaError(f"{self.path.name} takes a {len(shape)}-D input; csa models take NCHW images")
        self.static_batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        self.input_hw = (shape[2], shape[3]) if all(isinstance(d, int) and d > 0 for d in shape[2:]) else None
        self._ort = ort

    def _run_once(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run([self.output_name], {self.input_name: batch})[0], dtype=np.float32)

    def run(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if self.input_hw is not None and tuple(batch.shape[2:]) != tuple(self.input_hw):
            raise CsaError(f"{self.path.name} takes {self.input_hw[0]}x{self.input_hw[1]} images, got {batch.shape[2]}x{batch.shape[3]}")
        size = self.static_batch
        if size is None or batch.shape[0] == size:
            return self._run_once(batch)
        parts = []
        for start in range(0, batch.shape[0], size):
            chunk = batch[start : start + size]
            n = chunk.shape[0]
            if n < size:  # pad the last chunk to the graph's batch, keep only the real rows
                chunk = np.concatenate([chunk, np.zeros((size - n, *chunk.shape[1:]), np.float32)])
            parts.append(self._run_once(chunk)[:n])
        return np.concatenate(parts)

    def describe(self) -> dict[str, Any]:
        return {
            "backend": "onnxruntime",
            "onnxruntime": self._ort.__version__,
            "provider": self.session.get_providers()[0],
            "providers": self.session.get_providers(),
            "device": self.device,
            "threads": self.threads,
            "precision": self.precision,
            "quantized": self.quantized,
            "static_batch": self.static_batch,
            "onnx": str(self.path),
        }

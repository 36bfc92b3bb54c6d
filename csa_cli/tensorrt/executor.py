"""Run a serialized TensorRT engine behind the Backend protocol (backends/base.py).

Uses the name-based I/O tensor API (num_io_tensors / set_tensor_address / execute_async_v3)
that TensorRT 8.5+, 10 and 11 share; device buffers and the stream come from torch, so no
pycuda/cuda-python is needed. A static-batch engine takes any batch: the input is split
into engine-sized chunks and the last one padded. Not run against a real TensorRT here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np

from csa_cli.errors import CsaError, MissingBackend


class TensorRTBackend:
    """An engine file on one CUDA device; `run` takes float32 NCHW and returns float32 logits."""

    name: Literal["tensorrt"] = "tensorrt"  # implements backends.base.Backend (a Protocol: no import needed)

    def __init__(self, path: str | Path, *, device: str = "cuda:0", precision: str | None = None) -> None:
        from csa_cli.tensorrt.builder import read_engine_meta
        from csa_cli.tensorrt.runtime import INSTALL_HINT, tensorrt_version

        self.path = Path(path)
        if not self.path.is_file():
            raise CsaError(f"engine not found: {self.path}", hint="build one with `csa engine ... --target local`")
        if tensorrt_version() is None:
            raise MissingBackend(f"TensorRT is not installed here, so the engine {self.path.name} cannot run", hint=INSTALL_HINT)
        import tensorrt as trt
        import torch

        if not torch.cuda.is_available():
            raise MissingBackend(
                f"no CUDA GPU is visible, so the engine {self.path.name} cannot run", hint="run it on the machine (and TensorRT version) it was built for"
            )
        self._trt = trt
        self._torch = torch
        self.device = device if device.startswith("cuda") else "cuda:0"
        self._torch_device = torch.device(self.device)
        meta = read_engine_meta(self.path)
        self.meta = meta
        self.precision = precision or (meta.plan.precision if meta else "unknown")
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        with torch.cuda.device(self._torch_device):
            self._engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
            if self._engine is None:
                built = f" (built with TensorRT {meta.tensorrt_version} on {meta.device})" if meta else ""
                raise CsaError(
                    f"TensorRT {trt.__version__} could not load {self.path.name}{built}",
                    hint="engines are specific to the GPU and TensorRT version they were built with: rebuild it here",
                )
            self._context = self._engine.create_execution_context()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if len(inputs) != 1:
            raise CsaError(f"{self.path.name} has {len(inputs)} inputs; csa engines take one image input")
        self._input = inputs[0]
        self._outputs = [n for n in names if n not in inputs]
        shape = tuple(self._engine.get_tensor_shape(self._input))
        self._dynamic = shape[0] < 0
        if self._dynamic:
            # the profile's max batch bounds one call; chunks larger than that are split
            self._max_batch = int(self._engine.get_tensor_profile_shape(self._input, 0)[2][0])
        else:
            self._max_batch = int(shape[0])
        self._chw = tuple(int(d) for d in shape[1:])

    def _torch_dtype(self, name: str) -> Any:
        trt, torch = self._trt, self._torch
        table = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32, trt.int8: torch.int8}
        if hasattr(trt, "bool"):
            table[trt.bool] = torch.bool
        return table[self._engine.get_tensor_dtype(name)]

    def _run_chunk(self, chunk: np.ndarray) -> np.ndarray:
        torch = self._torch
        n = chunk.shape[0]
        feed = chunk
        if not self._dynamic and n < self._max_batch:  # pad the last chunk of a static engine
            feed = np.concatenate([chunk, np.zeros((self._max_batch - n, *chunk.shape[1:]), dtype=chunk.dtype)])
        with torch.cuda.device(self._torch_device):
            x = torch.from_numpy(np.ascontiguousarray(feed)).to(self._torch_device, dtype=self._torch_dtype(self._input))
            if self._dynamic:
                self._context.set_input_shape(self._input, tuple(x.shape))
            self._context.set_tensor_address(self._input, int(x.data_ptr()))
            outs = {}
            for name in self._outputs:
                shape = tuple(self._context.get_tensor_shape(name))
                outs[name] = torch.empty(shape, dtype=self._torch_dtype(name), device=self._torch_device)
                self._context.set_tensor_address(name, int(outs[name].data_ptr()))
            stream = torch.cuda.current_stream(self._torch_device)
            if not self._context.execute_async_v3(stream.cuda_stream):
                raise CsaError(f"TensorRT failed to run {self.path.name}")
            stream.synchronize()
            logits = outs[self._outputs[0]].float().cpu().numpy()
        return logits[:n]

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Logits for one NCHW float32 batch of any size."""
        if batch.ndim != 4 or tuple(batch.shape[1:]) != self._chw:
            raise CsaError(f"{self.path.name} takes Nx{'x'.join(map(str, self._chw))} input, got {'x'.join(map(str, batch.shape))}")
        parts = [self._run_chunk(batch[i : i + self._max_batch]) for i in range(0, batch.shape[0], self._max_batch)]
        return np.concatenate(parts).astype(np.float32, copy=False)

    def bind(self, batch: int) -> Any:
        """A no-argument callable that enqueues one inference at `batch` on device-resident buffers.

        For latency measurement without host copies (benchmarks/gpu_profile.py): the buffers are
        allocated once; the call returns after enqueueing on torch's current stream.
        """
        torch = self._torch
        if not self._dynamic and batch != self._max_batch:
            raise CsaError(f"{self.path.name} is a static batch-{self._max_batch} engine, not batch {batch}")
        if batch > self._max_batch:
            raise CsaError(f"batch {batch} exceeds the engine profile's max {self._max_batch}")
        with torch.cuda.device(self._torch_device):
            x = torch.randn((batch, *self._chw), device=self._torch_device).to(self._torch_dtype(self._input))
            if self._dynamic:
                self._context.set_input_shape(self._input, tuple(x.shape))
            self._context.set_tensor_address(self._input, int(x.data_ptr()))
            keep = [x]
            for name in self._outputs:
                buf = torch.empty(tuple(self._context.get_tensor_shape(name)), dtype=self._torch_dtype(name), device=self._torch_device)
                self._context.set_tensor_address(name, int(buf.data_ptr()))
                keep.append(buf)

        def enqueue() -> None:
            stream = torch.cuda.current_stream(self._torch_device)
            if not self._context.execute_async_v3(stream.cuda_stream):
                raise CsaError(f"TensorRT failed to run {self.path.name}")
            _ = keep  # the buffers live as long as the callable

        return enqueue

    def describe(self) -> dict[str, Any]:
        torch = self._torch
        info: dict[str, Any] = {
            "backend": "tensorrt",
            "tensorrt": str(self._trt.__version__),
            "device": self.device,
            "gpu": torch.cuda.get_device_name(self._torch_device),
            "engine": str(self.path),
            "precision": self.precision,
            "engine_batch": self._max_batch,
            "dynamic_batch": self._dynamic,
        }
        if self.meta is not None:
            info["built_with"] = self.meta.tensorrt_version
            info["built_on"] = self.meta.device
        return info


def open_engine(path: str | Path, *, device: str = "cuda:0", precision: str | None = None) -> TensorRTBackend:
    """What `open_backend("tensorrt", path)` calls."""
    return TensorRTBackend(path, device=device, precision=precision)

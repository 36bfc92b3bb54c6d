"""Run a serialized TensorRT engine behind the Backend protocol (backends/base.py).

Uses the name-based I/O tensor API (num_io_tensors / set_input_shape / set_tensor_address /
execute_async_v3) that TensorRT 8.5+, 10 and 11 share; each of those calls returns False on
failure, and every return value is checked. Device buffers, events and the stream come from
torch, so no pycuda/cuda-python is needed. How a batch is cut to what the engine accepts and
how an inference is timed is decided in tensorrt/execution.py. Only standard engines load here:
a safety engine belongs to DRIVE OS's safe runtime. Not run against a real TensorRT here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np

from csa_cli.errors import CsaError, MissingBackend
from csa_cli.tensorrt.execution import StepTimes, chunks, timed_run


class CudaDevice:
    """Where the engine's buffers live and its work is queued: one CUDA device, through torch.

    The backend asks this object for every tensor, stream, event and synchronization, so a test can
    hand it a CPU stand-in and check the TensorRT calls without a GPU.
    """

    def __init__(self, torch: Any, device: str) -> None:
        self.torch = torch
        self.device = torch.device(device)

    def scope(self) -> Any:
        return self.torch.cuda.device(self.device)

    def upload(self, array: np.ndarray, dtype: Any) -> Any:
        return self.torch.from_numpy(np.ascontiguousarray(array)).to(self.device, dtype=dtype)

    def empty(self, shape: tuple[int, ...], dtype: Any) -> Any:
        return self.torch.empty(shape, dtype=dtype, device=self.device)

    def pinned(self, tensor: Any) -> Any:
        return tensor.pin_memory()

    def stream(self) -> int:
        return int(self.torch.cuda.current_stream(self.device).cuda_stream)

    def synchronize(self) -> None:
        self.torch.cuda.current_stream(self.device).synchronize()

    def event(self) -> Any:
        return self.torch.cuda.Event(enable_timing=True)

    def name(self) -> str:
        return str(self.torch.cuda.get_device_name(self.device))


class TensorRTBackend:
    """An engine file on one CUDA device; `run` takes float32 NCHW and returns float32 logits."""

    name: Literal["tensorrt"] = "tensorrt"  # implements backends.base.Backend (a Protocol: no import needed)

    def __init__(self, path: str | Path, *, device: str = "cuda:0", precision: str | None = None, cuda: Any = None) -> None:
        from csa_cli.tensorrt.builder import read_engine_meta
        from csa_cli.tensorrt.runtime import INSTALL_HINT, tensorrt_version

        self.path = Path(path)
        if not self.path.is_file():
            raise CsaError(f"engine not found: {self.path}", hint="build one with `csa engine ... --target local`")
        meta = read_engine_meta(self.path)
        if meta is not None and meta.settings.engine_capability != "STANDARD":
            raise CsaError(
                f"{self.path.name} is a {meta.settings.engine_capability} engine: only DRIVE OS's safe runtime (or cuDLA) runs it",
                hint="run it on the device with the bundle's validate.sh (trtexec --safe)",
            )
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
        self._cuda = cuda or CudaDevice(torch, self.device)
        self.meta = meta
        self.precision = precision or (meta.plan.precision if meta else "unknown")
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        with self._cuda.scope():
            self._engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
            if self._engine is None:
                built = f" (built with TensorRT {meta.tensorrt_version} on {meta.device})" if meta else ""
                raise CsaError(
                    f"TensorRT {trt.__version__} could not load {self.path.name}{built}",
                    hint="engines are specific to the GPU and TensorRT version they were built with: rebuild it here",
                )
            self._context = self._engine.create_execution_context()
            if self._context is None:
                raise CsaError(f"TensorRT could not create an execution context for {self.path.name} (out of device memory?)")
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if len(inputs) != 1:
            raise CsaError(f"{self.path.name} has {len(inputs)} inputs; csa engines take one image input")
        self._input = inputs[0]
        self._outputs = [n for n in names if n not in inputs]
        shape = tuple(self._engine.get_tensor_shape(self._input))
        self._dynamic = shape[0] < 0
        if self._dynamic:
            # profile 0's (min, opt, max) shapes bound every call: set_input_shape refuses anything outside
            lo, _, hi = self._engine.get_tensor_profile_shape(self._input, 0)
            self._min_batch, self._max_batch = int(lo[0]), int(hi[0])
        else:
            self._min_batch = self._max_batch = int(shape[0])
        self._chw = tuple(int(d) for d in shape[1:])

    def _torch_dtype(self, name: str) -> Any:
        trt, torch = self._trt, self._torch
        table = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32, trt.int8: torch.int8}
        if hasattr(trt, "bool"):
            table[trt.bool] = torch.bool
        return table[self._engine.get_tensor_dtype(name)]

    def _bind(self, x: Any) -> dict[str, Any]:
        """Set the input's shape and every tensor address for input `x` (device); the outputs, allocated."""
        if self._dynamic and not self._context.set_input_shape(self._input, tuple(x.shape)):
            raise CsaError(f"TensorRT refused input shape {tuple(x.shape)} for {self.path.name} (profile batch {self._min_batch}..{self._max_batch})")
        if not self._context.set_tensor_address(self._input, int(x.data_ptr())):
            raise CsaError(f"TensorRT refused the input buffer of {self.path.name}")
        outs = {}
        for name in self._outputs:
            outs[name] = self._cuda.empty(tuple(self._context.get_tensor_shape(name)), self._torch_dtype(name))
            if not self._context.set_tensor_address(name, int(outs[name].data_ptr())):
                raise CsaError(f"TensorRT refused the buffer of output {name} of {self.path.name}")
        return outs

    def _execute(self) -> None:
        if not self._context.execute_async_v3(self._cuda.stream()):
            raise CsaError(f"TensorRT failed to run {self.path.name}")

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Logits for one NCHW float32 batch of any size (chunks padded to what the engine takes, padding dropped)."""
        if batch.ndim != 4 or tuple(batch.shape[1:]) != self._chw:
            raise CsaError(f"{self.path.name} takes Nx{'x'.join(map(str, self._chw))} input, got {'x'.join(map(str, batch.shape))}")
        parts = []
        for chunk in chunks(batch.shape[0], lo=self._min_batch, hi=self._max_batch):
            feed = batch[chunk.start : chunk.stop]
            if chunk.padding:
                feed = np.concatenate([feed, np.zeros((chunk.padding, *feed.shape[1:]), dtype=feed.dtype)])
            with self._cuda.scope():
                x = self._cuda.upload(feed, self._torch_dtype(self._input))
                outs = self._bind(x)
                self._execute()
                self._cuda.synchronize()
                parts.append(outs[self._outputs[0]].float().cpu().numpy()[: chunk.rows])
        return np.concatenate(parts).astype(np.float32, copy=False)

    def _check_batch(self, batch: int) -> None:
        if not self._min_batch <= batch <= self._max_batch:
            kind = "static" if not self._dynamic else "profile"
            raise CsaError(f"{self.path.name} takes batch {self._min_batch}..{self._max_batch} ({kind}), not {batch}")

    def bind(self, batch: int) -> Callable[[], None]:
        """A no-argument callable that enqueues one inference at `batch` on device-resident buffers.

        For latency measurement without host copies (benchmarks/gpu_profile.py): the buffers are
        allocated once; the call returns after enqueueing on torch's current stream.
        """
        self._check_batch(batch)
        with self._cuda.scope():
            x = self._cuda.upload(np.random.default_rng(0).standard_normal((batch, *self._chw), dtype=np.float32), self._torch_dtype(self._input))
            keep = [x, *self._bind(x).values()]

        def enqueue() -> None:
            self._execute()
            _ = keep  # the buffers live as long as the callable

        return enqueue

    def timed_step(self, batch: int, host_inputs: list[np.ndarray]) -> Callable[[int], StepTimes]:
        """step(i): input i copied host-to-device, the engine run, the outputs copied back, each span timed with CUDA events.

        Device and pinned host buffers are allocated once, as trtexec does, so no allocation is timed.
        """
        torch = self._torch
        self._check_batch(batch)
        with self._cuda.scope():
            pinned = [self._cuda.pinned(torch.from_numpy(np.ascontiguousarray(h)).to(self._torch_dtype(self._input))) for h in host_inputs]
            x = self._cuda.empty((batch, *self._chw), self._torch_dtype(self._input))
            outs = self._bind(x)
            host_outs = {n: self._cuda.pinned(torch.empty(tuple(o.shape), dtype=o.dtype)) for n, o in outs.items()}

        def step(i: int) -> StepTimes:
            src = pinned[i % len(pinned)]
            with self._cuda.scope():
                return timed_run(
                    lambda: x.copy_(src, non_blocking=True),
                    self._execute,
                    lambda: [host_outs[n].copy_(o, non_blocking=True) for n, o in outs.items()],
                    self._cuda.event,
                )

        return step

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "backend": "tensorrt",
            "tensorrt": str(self._trt.__version__),
            "device": self.device,
            "gpu": self._cuda.name(),
            "engine": str(self.path),
            "precision": self.precision,
            "engine_batch": self._max_batch,
            "engine_min_batch": self._min_batch,
            "dynamic_batch": self._dynamic,
        }
        if self.meta is not None:
            info["built_with"] = self.meta.tensorrt_version
            info["built_on"] = self.meta.device
        return info


def open_engine(path: str | Path, *, device: str = "cuda:0", precision: str | None = None) -> TensorRTBackend:
    """What `open_backend("tensorrt", path)` calls."""
    return TensorRTBackend(path, device=device, precision=precision)

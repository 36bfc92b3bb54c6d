"""Probes: one per backend, each turning a batch size into a timed step.

torch runs on the CPU (threads) or on CUDA (CUDA events; CUDA graphs by default); ONNX Runtime
on its CPU or CUDA provider; a TensorRT engine with CUDA events around its host-to-device copy,
execute_async_v3 and device-to-host copy on preallocated buffers (tensorrt/execution.py), as
trtexec times it; any other Backend through its run(), timed on the host clock.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from csa_cli.backends.base import BackendName
from csa_cli.errors import MissingBackend, UsageError
from csa_cli.graph.onnx_file import read_onnx_info
from csa_cli.measure.timing import DEFAULT_BATCHES, MeasureSettings, Step, random_pool, wall_clock_step


class Probe(Protocol):
    backend: BackendName
    device: str
    precision: str
    provider: str | None
    threads: int | None
    cuda_graphs: bool | None
    img_size: tuple[int, int]

    def batches(self, requested: Sequence[int] | None) -> list[int]:
        """The batch sizes to measure (a static-batch artifact allows only its own)."""
        ...

    @contextmanager
    def stepper(self, batch: int, settings: MeasureSettings) -> Iterator[Step]: ...


class TorchProbe:
    """A torch module on the CPU (threads) or on CUDA (events; CUDA graphs by default)."""

    backend: BackendName = "torch"

    def __init__(
        self,
        module: Any,
        img_size: tuple[int, int],
        *,
        device: str = "cpu",
        precision: str = "fp32",
        threads: int | None = None,
        cuda_graphs: bool = True,
    ) -> None:
        import torch

        self.on_cuda = device.startswith("cuda")
        if self.on_cuda and not torch.cuda.is_available():
            raise MissingBackend("--device cuda: no CUDA GPU here", hint="profile on the CPU (--device cpu) or run on a machine with an NVIDIA GPU")
        if precision == "fp16" and not self.on_cuda:
            raise UsageError("--precision fp16 needs --device cuda (CPU fp16 inference is not a deployment target)", hint="use --precision fp32 on the CPU")
        if precision not in ("fp32", "fp16"):
            raise UsageError(f"the torch backend runs fp32 or fp16, not {precision}", hint="profile a quantized ONNX with --backend onnxruntime")
        self.device = "cuda:0" if device == "cuda" else device
        self.precision = precision
        self.dtype = torch.float16 if precision == "fp16" else torch.float32
        self.module = module.eval().to(device=self.device, dtype=self.dtype)
        self.img_size = img_size
        self.threads = None if self.on_cuda else (threads or torch.get_num_threads())
        self.cuda_graphs = cuda_graphs if self.on_cuda else None
        self.provider = None

    def batches(self, requested: Sequence[int] | None) -> list[int]:
        return list(requested or DEFAULT_BATCHES)

    @contextmanager
    def stepper(self, batch: int, settings: MeasureSettings) -> Iterator[Step]:
        import torch

        pool = [torch.from_numpy(x) for x in random_pool(batch, self.img_size, settings)]
        if not self.on_cuda:
            saved = torch.get_num_threads()
            torch.set_num_threads(self.threads or saved)
            try:
                with torch.inference_mode():
                    yield wall_clock_step(self.module, pool)
            finally:
                torch.set_num_threads(saved)
            return
        saved_benchmark = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = True  # let cuDNN pick its fastest kernels, as TensorRT does
        try:
            with torch.no_grad():
                yield self._cuda_step([x.to(self.device, self.dtype) for x in pool])
            torch.cuda.synchronize()
        finally:
            torch.backends.cudnn.benchmark = saved_benchmark

    def _cuda_step(self, pool: list[Any]) -> Step:
        """CUDA events around each launch; with graphs, one captured graph per pool input."""
        import torch

        replays: list[Callable[[], Any]] = []
        if self.cuda_graphs:
            # Capture needs a side-stream warm-up first (cudnn/cublas pick their kernels there).
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):
                    self.module(pool[0])
            torch.cuda.current_stream().wait_stream(side)
            # One graph per pool input, each with its own memory pool: replays never share buffers.
            for x in pool:
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    self.module(x)
                replays.append(graph.replay)
        else:
            replays = [lambda x=x: self.module(x) for x in pool]
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

        def step(i: int) -> float:
            start.record()
            replays[i % len(replays)]()
            end.record()
            end.synchronize()
            return float(start.elapsed_time(end))

        return step


class OrtProbe:
    """ONNX Runtime on one ONNX with a dynamic batch axis, or one static ONNX per batch size."""

    backend: BackendName = "onnxruntime"
    cuda_graphs = None

    def __init__(self, paths: dict[int, Path] | Path, *, threads: int | None = None, device: str = "cpu") -> None:
        import onnxruntime as ort

        self.paths = paths
        self.device = "cuda:0" if device == "cuda" else device
        if self.device.startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise MissingBackend("--device cuda: this onnxruntime has no CUDAExecutionProvider", hint="install onnxruntime-gpu, or profile on the CPU")
            self.providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        else:
            self.providers = ["CPUExecutionProvider"]
        self.threads = threads or os.cpu_count() or 1
        first = paths if isinstance(paths, Path) else paths[min(paths)]
        info = read_onnx_info(first).require_nchw()
        self.static_batch = info.batch
        self.img_size = info.input_hw
        self.channels = int(info.input_shape[1])
        self.precision = "int8" if info.has_qdq else "fp32"
        self.metadata = info.metadata
        self.provider: str | None = self.providers[0]

    def batches(self, requested: Sequence[int] | None) -> list[int]:
        if not isinstance(self.paths, Path):
            return sorted(self.paths)
        if self.static_batch is None:
            return list(requested or DEFAULT_BATCHES)
        if requested and list(requested) != [self.static_batch]:
            raise UsageError(
                f"{self.paths} has a static batch of {self.static_batch}; it cannot run --batch {','.join(map(str, requested))}",
                hint=f"use --batch {self.static_batch}, export with --dynamic-batch, or profile the MODEL (exported per batch)",
            )
        return [self.static_batch]

    def session(self, path: Path) -> Any:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        sess = ort.InferenceSession(str(path), sess_options=opts, providers=self.providers)
        self.provider = sess.get_providers()[0]
        return sess

    @contextmanager
    def stepper(self, batch: int, settings: MeasureSettings) -> Iterator[Step]:
        path = self.paths if isinstance(self.paths, Path) else self.paths[batch]
        sess = self.session(path)
        name = sess.get_inputs()[0].name
        outputs = [o.name for o in sess.get_outputs()]
        pool = random_pool(batch, self.img_size, settings, self.channels)
        yield wall_clock_step(lambda x: sess.run(outputs, {name: x}), pool)


class BackendProbe:
    """Any csa backend (csa_cli.backends.open_backend): how a TensorRT engine is profiled.

    One backend with a dynamic batch serves every batch size; static engines come one per batch.
    """

    cuda_graphs = None

    def __init__(self, backends: dict[int, Any] | Any, img_size: tuple[int, int] | None = None) -> None:
        first = backends[min(backends)] if isinstance(backends, dict) else backends
        described = first.describe() or {}
        if isinstance(backends, dict):
            self.by_batch: dict[int, Any] | None = dict(backends)
            self.dynamic = False
        else:
            dynamic = bool(described.get("dynamic_batch"))
            batch = described.get("engine_batch")
            self.by_batch = None if dynamic or not isinstance(batch, int) else {batch: backends}
            self.dynamic = self.by_batch is None
        self.single = first
        self.backend: BackendName = first.name
        self.device = first.device
        self.precision = first.precision
        self.provider = described.get("provider") or (f"TensorRT {described['tensorrt']}" if described.get("tensorrt") else None)
        self.threads = described.get("threads")
        chw = getattr(first, "_chw", None)  # the engine's input shape, where the backend exposes it
        self.img_size = tuple(int(d) for d in chw[1:]) if chw and len(chw) == 3 else (img_size or (224, 224))
        self.splits: list[Any] = []  # StepTimes of every timed step, when the backend times its parts
        self.timing = (
            "CUDA events around H2D copy, execute_async_v3 and D2H copy on preallocated buffers (latency = H2D + compute + D2H, as trtexec)"
            if hasattr(first, "timed_step")
            else "host clock around run()"
        )

    def batches(self, requested: Sequence[int] | None) -> list[int]:
        if self.by_batch is None:
            return list(requested or DEFAULT_BATCHES)
        if requested:
            missing = [b for b in requested if b not in self.by_batch]
            if missing:
                raise UsageError(
                    f"no engine for batch {', '.join(map(str, missing))} (engines: batch {', '.join(map(str, sorted(self.by_batch)))})",
                    hint="build one engine per batch size with `csa engine --batch ...`, or drop --batch",
                )
            return list(requested)
        return sorted(self.by_batch)

    @contextmanager
    def stepper(self, batch: int, settings: MeasureSettings) -> Iterator[Step]:
        impl = self.single if self.by_batch is None else self.by_batch[batch]
        pool = random_pool(batch, self.img_size, settings)
        self.splits = []
        if not hasattr(impl, "timed_step"):
            # The backend's run() returns host outputs, so it has synchronized: host time is latency.
            yield wall_clock_step(impl.run, pool)
            return
        timed = impl.timed_step(batch, pool)

        def step(i: int) -> float:
            parts = timed(i)
            self.splits.append(parts)
            return float(parts.latency_ms)

        yield step

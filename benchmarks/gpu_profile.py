"""GPU latency of zoo models: torch CUDA fp16 with CUDA graphs, and TensorRT fp16 where installed.

Random weights (latency does not depend on them). Each batch size: warm-up, then a fixed number
of CUDA-graph replays (torch) or enqueues (TensorRT) timed with CUDA events, one event pair per
iteration; median and p99 (nearest rank). TensorRT engines are built once per model with a
dynamic-batch profile (min/opt/max = smallest/largest/largest batch) and a shared timing cache,
so the whole run stays within benchmarks/gpu.sh's time budget.

    python benchmarks/gpu_profile.py --models csa-tiny,convnext-tiny --batches 1,4,8,16 --output gpu.md
Prints a markdown table naming the card; --output also writes it there.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DEFAULT_MODELS = "csa-tiny,convnext-tiny,swin-tiny,cvt-13"


def nearest_rank(values: list[float], percent: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(percent / 100 * len(ordered))) - 1]


def time_cuda(step: Any, iterations: int, warmup: int) -> tuple[float, float]:
    """(median, p99) milliseconds of `step()` on the current stream, CUDA events around each call."""
    import torch

    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(iterations)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(iterations)]
    for s, e in zip(starts, ends, strict=True):
        s.record()
        step()
        e.record()
    torch.cuda.synchronize()
    samples = [s.elapsed_time(e) for s, e in zip(starts, ends, strict=True)]
    return nearest_rank(samples, 50), nearest_rank(samples, 99)


def torch_graph_step(module: Any, batch: int, img: int) -> Any:
    """A CUDA graph of one fp16 forward at `batch`, captured after a side-stream warm-up."""
    import torch

    x = torch.randn(batch, 3, img, img, device="cuda", dtype=torch.float16)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side), torch.no_grad():
        for _ in range(3):
            module(x)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), torch.no_grad():
        module(x)
    return graph.replay


def build_trt(name: str, module: Any, batches: list[int], img: int, work: Path) -> Any:
    """A dynamic-batch fp16 TensorRT engine for `module`, opened as a TensorRTBackend."""
    from csa_cli.graph.onnx_file import inspect_onnx
    from csa_cli.stages.export.onnx_export import export_onnx
    from csa_cli.tensorrt.builder import build_engines
    from csa_cli.tensorrt.executor import TensorRTBackend
    from csa_cli.tensorrt.plan import make_plan
    from csa_cli.tensorrt.runtime import tensorrt_version

    onnx_path = export_onnx(module, work / f"{name}.onnx", batch=max(batches), img_size=(img, img), dynamic_batch=True)
    plan = make_plan(name, [inspect_onnx(onnx_path)], precision="fp16", target="local", trt_version=str(tensorrt_version()), batches=batches, engine_dir="")
    (engine,) = build_engines(plan, out_dir=work)
    return TensorRTBackend(engine, device="cuda:0", precision="fp16")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=DEFAULT_MODELS)
    parser.add_argument("--batches", default="1,4,8,16")
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--no-tensorrt", action="store_true", help="torch only, even where TensorRT is installed")
    parser.add_argument("--output", type=Path, help="also write the markdown table here (rewritten after every model)")
    parser.add_argument("--trt-budget-s", type=float, default=240.0, help="build no more TensorRT engines after this many seconds")
    args = parser.parse_args(argv)

    import torch

    from csa_cli.models import create_model, inference_form
    from csa_cli.tensorrt.runtime import tensorrt_version

    if not torch.cuda.is_available():
        print("no CUDA GPU visible: run this on a GPU machine", file=sys.stderr)
        return 4
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    batches = sorted({int(b) for b in args.batches.split(",")})
    trt = None if args.no_tensorrt else tensorrt_version()
    card = torch.cuda.get_device_name(0)
    rows: list[list[str]] = []
    work = Path(tempfile.mkdtemp(prefix="csa-gpu-profile-"))
    header = ["model", "batch", "torch fp16 graph median ms", "p99 ms"]
    if trt is not None:
        header += [f"TensorRT {trt} fp16 median ms", "p99 ms"]
    header += ["torch images/s", "note"]
    stamp = f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC"

    def render(table_rows: list[list[str]]) -> str:
        """The markdown table so far; also written to --output after every model, so a timeout keeps what was measured."""
        lines = [
            f"# GPU latency on {card}",
            "",
            f"{stamp}; torch {torch.__version__}, CUDA {torch.version.cuda}, TensorRT {trt or 'not installed'};"
            f" {args.img_size}x{args.img_size}, random weights, {args.iterations} timed iterations after {args.warmup} warm-up, CUDA events.",
            "",
            "| " + " | ".join(header) + " |",
            "| " + " | ".join("---" for _ in header) + " |",
            *("| " + " | ".join(r) + " |" for r in table_rows),
            "",
        ]
        text = "\n".join(lines)
        if args.output:
            args.output.parent.mkdir(parents=True, exist_ok=True)
            args.output.write_text(text)
        return text

    started_all = time.perf_counter()
    for name in models:
        started = time.perf_counter()
        torch.manual_seed(0)
        module = inference_form(create_model(name)).eval()
        half = module.to("cuda").half()
        torch_ms = {b: time_cuda(torch_graph_step(half, b, args.img_size), args.iterations, args.warmup) for b in batches}
        trt_ms: dict[int, tuple[float, float]] = {}
        note = ""
        if trt is not None and time.perf_counter() - started_all > args.trt_budget_s:
            note = f"TensorRT skipped: past the {args.trt_budget_s:.0f} s budget"
        elif trt is not None:
            try:
                backend = build_trt(name, inference_form(create_model(name)).eval(), batches, args.img_size, work)
                trt_ms = {b: time_cuda(backend.bind(b), args.iterations, args.warmup) for b in batches}
            except Exception as exc:  # one model's failed build must not lose the other rows
                note = f"TensorRT failed: {type(exc).__name__}: {exc}"[:120]
        for b in batches:
            base = [name, str(b), f"{torch_ms[b][0]:.3f}", f"{torch_ms[b][1]:.3f}"]
            if trt is not None:
                base += [f"{trt_ms[b][0]:.3f}", f"{trt_ms[b][1]:.3f}"] if b in trt_ms else ["-", "-"]
            rows.append([*base, f"{b * 1000 / torch_ms[b][0]:.0f}", note])
        print(f"{name}: done in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        render(rows)
        del module, half
        torch.cuda.empty_cache()
    print(render(rows), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())

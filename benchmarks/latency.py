"""ONNX Runtime CPU latency of the zoo models at batch 1/4/8/16, side by side, in one run.

Every model is exported per batch size (random weights: latency does not depend on them), then
at each batch size all models are timed interleaved round by round (measure/sidebyside.py), so
every ratio to the baseline compares runs that saw the same machine. Each ratio is printed with
its bootstrap 95% interval over rounds, and "spread too wide for the claim" where that interval
is wider than ±10%. Prints markdown: latency (median, ratio [95% interval] to convnext-tiny),
details (p90/p99, throughput), memory traffic / MACs per frame (a static estimate), the load
average and the measured peaks.

Usage:
    .venv/bin/python benchmarks/latency.py                               # the full study (minutes)
    .venv/bin/python benchmarks/latency.py --models csa-nano --batches 1 --iterations 3   # a smoke run
    .venv/bin/python benchmarks/latency.py --output docs/results.md --plot docs/latency.png
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from csa_cli.measure.sidebyside import SideBySide
from csa_cli.measure.timing import MeasureSettings
from csa_cli.stages.profile.plot import plot_latency
from csa_cli.stages.profile.records import TRAFFIC_LABEL, ProfileOptions, ProfileResult
from csa_cli.stages.profile.sidebyside import measure_side_by_side
from csa_cli.stages.profile.stage import prepare_model

ZOO = ("csa-tiny", "convnext-tiny", "swin-tiny", "cvt-13")
BASELINE = "convnext-tiny"


def _csv(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def _batches(text: str) -> list[int]:
    values = [int(p) for p in _csv(text)]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"batch sizes must be positive integers, got {text!r}")
    return values


def _ms(value: float | None) -> str:
    return "—" if value is None else (f"{value:.3f}" if value < 1 else f"{value:.2f}")


def markdown(results: Sequence[ProfileResult], runs: dict[int, SideBySide], batches: Sequence[int], baseline: str, elapsed_s: float) -> str:
    """The three tables, with the machine, its load and the settings they were measured on.

    Long because it writes the three tables and the notes beside them in one pass."""
    loads = [f"batch {b}: {r.load_before.one:.2f}/{r.load_before.five:.2f}/{r.load_before.fifteen:.2f} → {r.load_after.one:.2f}" for b, r in runs.items()]
    first = results[0]
    m = first.machine
    base = next((r for r in results if r.model == baseline), None)
    lines = [
        "## ONNX Runtime CPU latency (benchmarks/latency.py)",
        "",
        f"Machine: {m.cpu}, {m.cpu_count} logical CPUs, {first.threads} threads; {m.os}; python {m.python}; "
        + ", ".join(f"{k} {v}" for k, v in sorted(m.libraries.items())),
        f"Provider: {first.provider}; random weights; 224x224; one static ONNX per batch size; {first.settings}; run took {elapsed_s:.0f} s.",
        "Ratios: median / the baseline's median at the same batch, timed interleaved; [95% bootstrap interval over rounds]; "
        "'spread too wide for the claim' where the interval is wider than ±10%.",
        "",
        "### Median latency per batch, ms (ratio to " + baseline + ")",
        "",
        "| model | " + " | ".join(f"batch {b}" for b in batches) + " |",
        "| --- | " + " | ".join("---:" for _ in batches) + " |",
    ]
    for res in results:
        cells = []
        for b in batches:
            row = res.result_at(b)
            ratio = f" ({row.ratio.describe()})" if row is not None and row.ratio is not None else ""
            cells.append(_ms(row.median_ms if row else None) + ratio)
        lines.append(f"| {res.model} | " + " | ".join(cells) + " |")
    if base is None:
        lines += ["", f"({baseline} was not in this run: no ratios.)"]
    lines += ["", "Load average per batch size (1/5/15 min, before → after the interleaved rounds): " + "; ".join(loads) + "."]
    lines += [
        "",
        "### Details",
        "",
        "| model | batch | median ms | p90 ms | p99 ms | mean ± std ms | min ms | images/s | ms/image | × roofline floor |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for res in results:
        for r in res.results:
            lines.append(
                f"| {res.model} | {r.batch} | {_ms(r.median_ms)} | {_ms(r.p90_ms)} | {_ms(r.p99_ms)} | {r.mean_ms:.2f} ± {r.std_ms:.2f} | "
                f"{_ms(r.min_ms)} | {r.throughput_ips:.1f} | {_ms(r.per_image_ms)} | {'—' if r.x_floor is None else f'{r.x_floor:.1f}'} |"
            )
    lines += [
        "",
        f"### Memory traffic and MACs per frame — {TRAFFIC_LABEL}",
        "",
        "MB per frame, fused as TensorRT would run the graph at FP32 (graph/traffic.py; rules in docs/profiling.md), "
        "unfused in brackets (every non-view node its own kernel); weights read once per batch. Not a hardware counter.",
        "",
        "| model | GMACs/frame | " + " | ".join(f"MB/frame @ {b}" for b in batches) + " |",
        "| --- | ---: | " + " | ".join("---:" for _ in batches) + " |",
    ]
    for res in results:
        macs = next((r.macs_per_frame for r in res.results if r.macs_per_frame is not None), None)
        cells = []
        for b in batches:
            r = res.result_at(b)
            if r is None or r.traffic_bytes_per_frame is None:
                cells.append("—")
                continue
            unfused = f" ({r.unfused_bytes_per_frame / 1e6:.1f})" if r.unfused_bytes_per_frame is not None else ""
            cells.append(f"{r.traffic_bytes_per_frame / 1e6:.1f}{unfused}")
        lines.append(f"| {res.model} | {'—' if macs is None else f'{macs / 1e9:.3f}'} | " + " | ".join(cells) + " |")
    if first.roofline is not None:
        p = first.roofline
        lines += [
            "",
            f"Roofline peaks (measured here, cached): {p.peak_gflops:.0f} GFLOP/s fp32 matmul, {p.bandwidth_gbs:.1f} GB/s copy; "
            "floor = max(2·MACs / peak, bytes / bandwidth).",
        ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=_csv, default=list(ZOO), help="comma list of zoo models (default: the four zoo models)")
    parser.add_argument("--batches", type=_batches, default=[1, 4, 8, 16], help="comma list of batch sizes (default 1,4,8,16)")
    parser.add_argument("--iterations", type=int, default=None, help="interleaved rounds per batch (default: a time budget)")
    parser.add_argument(
        "--seconds", type=float, default=None, help="time budget per model and batch size, s (default 3; extended up to 3x while a ratio is too wide)"
    )
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads (default: all cores)")
    parser.add_argument("--baseline", default=BASELINE)
    parser.add_argument("--output", type=Path, default=None, help="also write the markdown to this file")
    parser.add_argument("--plot", type=Path, default=None, help="latency vs batch PNG")
    args = parser.parse_args(argv)
    if args.iterations is not None and args.iterations < 1:
        parser.error("--iterations must be at least 1")
    seconds = None if args.iterations is not None else (args.seconds or 3.0)
    measure = MeasureSettings(warmup=args.warmup, iterations=args.iterations, seconds=seconds)
    options = ProfileOptions(backend="onnxruntime", batches=args.batches, threads=args.threads, weights="random", measure=measure)
    start = time.perf_counter()
    # the baseline first: every ratio is to it
    models = [args.baseline, *[m for m in args.models if m != args.baseline]] if args.baseline in args.models else list(args.models)
    pendings = [prepare_model(model, options) for model in models]
    results, runs = measure_side_by_side(pendings)
    text = markdown(results, runs, args.batches, args.baseline, time.perf_counter() - start)
    sys.stdout.write(text)
    if args.output is not None:
        from csa_cli.paths import atomic_write_text

        atomic_write_text(args.output, text)
    if args.plot is not None:
        plot_latency(results, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

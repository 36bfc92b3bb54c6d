"""Where the time goes per op type: ONNX Runtime's own profiler on csa-tiny and convnext-tiny (CPU, batch 1).

Each model's FP32 graph (random weights) runs N times in a session with profiling on; the
profiler's "Node" events (one per kernel run, with the op type ONNX Runtime really ran: FusedConv,
QuickGelu, ...) are summed per op type and divided by N. MACs come from the static cost model of
the same graph, per op type of the exported graph, so time per MAC can be set side by side: the
convolutions' µs per MMAC says how well each model's convolutions use the CPU, and the share of
time in ops with no MACs (elementwise, Resize, Transpose) says what the model pays around them.

Several session-option variants can be compared (--variants): ONNX Runtime's optimization levels
decide which exact rewrites it applies (constant folding, Conv+BN folding, Conv+activation fusion,
x*sigmoid(x) -> QuickGelu(alpha=1)); the variant table is what closed or did not close the gap.

Usage:
    .venv/bin/python benchmarks/op_profile.py                          # csa-tiny vs convnext-tiny, 20 runs each
    .venv/bin/python benchmarks/op_profile.py --models csa-nano --runs 3   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

LEVELS = {"basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}


def profile_ops(path: Path, runs: int, threads: int, level: str = "all") -> tuple[dict[str, float], float]:
    """Mean µs per run per op type as ONNX Runtime ran it, and the mean wall time per run (µs)."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="op-profile-") as tmp:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, LEVELS[level])
        opts.enable_profiling = True
        opts.profile_file_prefix = str(Path(tmp) / "ort")
        opts.log_severity_level = 3
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        shape = [d if isinstance(d, int) else 1 for d in session.get_inputs()[0].shape]
        x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
        for _ in range(3):  # warm-up runs are in the trace too; they are dropped below
            session.run(None, {name: x})
        for _ in range(runs):
            session.run(None, {name: x})
        events = json.loads(Path(session.end_profiling()).read_text())
    model_runs = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    timed = model_runs[-runs:]
    start = timed[0]["ts"] if timed else 0
    per_op: dict[str, float] = defaultdict(float)
    for e in events:
        if e.get("cat") == "Node" and e.get("ts", 0) >= start and str(e.get("name", "")).endswith("_kernel_time"):
            per_op[str(e.get("args", {}).get("op_name", "?"))] += float(e.get("dur", 0)) / runs
    wall = float(np.mean([e["dur"] for e in timed])) if timed else float("nan")
    return dict(per_op), wall


def macs_by_op(path: Path) -> dict[str, int]:
    from csa_cli.graph.costmodel import analyze

    out: dict[str, int] = defaultdict(int)
    for node in analyze(path).nodes:
        out[node.op] += node.macs
    return dict(out)


CONV_KERNELS = ("Conv", "FusedConv", "NchwcConv")


def report(models: Sequence[str], paths: dict[str, Path], runs: int, threads: int, levels: Sequence[str]) -> str:
    """Long because it writes the per-op table and the variant table in one pass over the profiles."""
    lines = [f"## ONNX Runtime CPU time per op type, batch 1, {threads} threads, {runs} runs (benchmarks/op_profile.py)", ""]
    profiles = {(m, lvl): profile_ops(paths[m], runs, threads, lvl) for m in models for lvl in levels}
    macs = {m: macs_by_op(paths[m]) for m in models}
    main = levels[-1]
    ops = sorted({op for m in models for op in profiles[(m, main)][0]}, key=lambda op: -max(profiles[(m, main)][0].get(op, 0) for m in models))
    lines += ["| op type (as run) | " + " | ".join(f"{m} µs" for m in models) + " | " + " | ".join(f"{m} share" for m in models) + " |"]
    lines += ["| --- | " + " | ".join("---:" for _ in range(2 * len(models))) + " |"]
    for op in ops:
        times = [profiles[(m, main)][0].get(op, 0.0) for m in models]
        totals = [sum(profiles[(m, main)][0].values()) for m in models]
        lines.append(
            f"| {op} | " + " | ".join(f"{t:.0f}" for t in times) + " | " + " | ".join(f"{t / tot:.1%}" for t, tot in zip(times, totals, strict=True)) + " |"
        )
    lines += [
        "",
        "| model | GMACs | conv GMACs | conv µs | µs per conv MMAC | other ops µs | total kernel µs | wall µs per run |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for m in models:
        per_op, wall = profiles[(m, main)]
        conv_us = sum(per_op.get(k, 0.0) for k in CONV_KERNELS)
        conv_macs = sum(v for k, v in macs[m].items() if k in ("Conv", "ConvTranspose"))
        total = sum(per_op.values())
        lines.append(
            f"| {m} | {sum(macs[m].values()) / 1e9:.3f} | {conv_macs / 1e9:.3f} | {conv_us:.0f} | {conv_us / max(conv_macs / 1e6, 1e-9):.3f} | "
            f"{total - conv_us:.0f} | {total:.0f} | {wall:.0f} |"
        )
    if len(levels) > 1:
        lines += ["", "Graph optimization level (the exact rewrites ONNX Runtime applies at each level):", ""]
        lines += ["| model | " + " | ".join(f"{lvl} µs/run" for lvl in levels) + " |", "| --- | " + " | ".join("---:" for _ in levels) + " |"]
        for m in models:
            lines.append(f"| {m} | " + " | ".join(f"{profiles[(m, lvl)][1]:.0f}" for lvl in levels) + " |")
    lines += [
        "",
        "One process, one model after another: absolute µs are for reading shares and µs per MAC; "
        + "ratios between models come from benchmarks/latency.py (interleaved).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="csa-tiny,convnext-tiny")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variants", default="basic,all", help="comma list of graph optimization levels: basic | extended | all (the last is the main table)")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    levels = [v.strip() for v in args.variants.split(",") if v.strip()]
    if not levels or any(v not in LEVELS for v in levels):
        parser.error(f"--variants takes {', '.join(LEVELS)}")
    from csa_cli.stages.export.stage import export_stage

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    paths = {m: Path(str(export_stage(m, weights="random", batch=1).path)) for m in models}
    text = report(models, paths, args.runs, args.threads, levels)
    sys.stdout.write(text)
    if args.output is not None:
        from csa_cli.paths import atomic_write_text

        atomic_write_text(args.output, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

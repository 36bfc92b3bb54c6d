"""Memory traffic per frame of the four zoo models as TensorRT runs them (graph/traffic.py), batch 1 and 16.

Each model is exported (random weights: traffic does not depend on them) and its graph costed at
FP32, FP16 and INT8 (implicit: every activation with a calibration scale), fused and unfused, and
as a QDQ graph in both placements (`csa quantize`'s writer with unit ranges: the traffic depends
on where Q/DQ sit, not on the scales, so no calibration is run). Prints markdown and checks the
orderings tests/test_traffic.py pins on the smallest family members: fused INT8 < FP16 < FP32, and a
QDQ graph never above its FP32 graph.

Usage:
    .venv/bin/python benchmarks/traffic.py
    .venv/bin/python benchmarks/traffic.py --models csa-nano --batches 1     # a smoke run
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

ZOO = ("csa-tiny", "convnext-tiny", "swin-tiny", "cvt-13")


def qdq_graph(fp32: Path, out: Path, placement: str) -> Path:
    """The graph's Q/DQ structure in `placement`, with unit ranges (no calibration)."""
    import onnx

    from csa_cli.graph.index import name_nodes
    from csa_cli.stages.quantize.collect import float_tensors
    from csa_cli.stages.quantize.qdq_writer import write_qdq

    model = name_nodes(onnx.shape_inference.infer_shapes(onnx.load(str(fp32))))
    amax = dict.fromkeys(float_tensors(model), 1.0)
    with tempfile.TemporaryDirectory(prefix="traffic-qdq-") as tmp:
        write_qdq(model, amax, [], out, Path(tmp), placement=placement)  # type: ignore[arg-type]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Long because it costs, checks and writes every model's rows in one pass."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(ZOO))
    parser.add_argument("--batches", default="1,16")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    from csa_cli.graph.traffic import fusion_summary, traffic
    from csa_cli.stages.export.stage import export_stage

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    batches = [int(b) for b in args.batches.split(",")]
    head = " | ".join(f"b{b} fused | b{b} unfused" for b in batches)
    lines = [
        "## Memory traffic per frame, MB — estimate (static: TensorRT's fusions at each precision) (benchmarks/traffic.py)",
        "",
        f"| model | graph @ precision | kernels (fused / unfused) | {head} |",
        "| --- | --- | ---: | " + " | ".join("---: | ---:" for _ in batches) + " |",
    ]
    failures: list[str] = []
    shapes_text: list[str] = []
    with tempfile.TemporaryDirectory(prefix="traffic-") as tmp:
        for m in models:
            fp32 = Path(str(export_stage(m, weights="random", batch=1).path))
            rows = {f"FP32 graph @ {p}": traffic(fp32, p) for p in ("fp32", "fp16", "int8")}
            for placement in ("tensorrt", "onnxruntime"):
                rows[f"QDQ ({placement}) @ int8"] = traffic(qdq_graph(fp32, Path(tmp) / f"{m}-{placement}.onnx", placement), "int8")
            for label, r in rows.items():
                cells = " | ".join(f"{r.fused_per_frame(b) / 1e6:.1f} | {r.unfused_per_frame(b) / 1e6:.1f}" for b in batches)
                lines.append(f"| {m} | {label} | {len(r.kernels)} / {r.unfused_kernels} | {cells} |")
            for b in batches:
                f32, f16, i8 = (rows[f"FP32 graph @ {p}"].fused_per_frame(b) for p in ("fp32", "fp16", "int8"))
                if not i8 < f16 < f32:
                    failures.append(f"{m} b{b}: fused INT8 {i8:.0f} < FP16 {f16:.0f} < FP32 {f32:.0f} does not hold")
                for placement in ("tensorrt", "onnxruntime"):
                    q = rows[f"QDQ ({placement}) @ int8"].fused_per_frame(b)
                    if q > f32:
                        failures.append(f"{m} b{b}: QDQ ({placement}) {q:.0f} above its FP32 graph {f32:.0f}")
            top = list(fusion_summary(rows["FP32 graph @ fp32"]).items())[:5]
            shapes_text.append(f"- {m}: " + ", ".join(f"{k} ×{v}" for k, v in top))
    lines += ["", "Most frequent kernels (FP32 graph, fused):", "", *shapes_text, ""]
    lines.append(
        "Orderings: "
        + ("fused INT8 < FP16 < FP32 and every QDQ graph at or below its FP32 graph, for every model and batch." if not failures else "; ".join(failures))
    )
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if args.output is not None:
        from csa_cli.paths import atomic_write_text

        atomic_write_text(args.output, text)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())

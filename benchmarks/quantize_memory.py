"""Peak memory (RSS) of `csa quantize` on N calibration images: it must stay under 8 GiB for 500 images
of csa-tiny or convnext-tiny at 224, because calibration is folded into histograms chunk by chunk.

Usage: .venv/bin/python benchmarks/quantize_memory.py [--model csa-tiny] [--images 500] [--batch-size 8]
                                                     [--img-size 224] [--method entropy]
Random weights and generated images (nothing is downloaded). The quantization runs in a fresh child
process, so its peak (VmHWM) is that of the quantization alone (plus the interpreter and onnxruntime).
Prints: images, peak RSS in MiB, the budget, time per phase, and the ratio to the budget.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

BUDGET_MIB = 8 * 1024

CHILD = r"""
import json, sys, time
from pathlib import Path
import numpy as np
from csa_cli.measure.machine import peak_rss_mib
from csa_cli.stages.quantize.stage import quantize_onnx

onnx_path, out_dir, images, batch, size, method = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
start_rss = peak_rss_mib()

def batches():
    rng = np.random.default_rng(0)
    for start in range(0, images, batch):
        n = min(batch, images - start)
        yield rng.standard_normal((n, 3, size, size)).astype(np.float32)

result = quantize_onnx(Path(onnx_path), Path(out_dir), batches(), method=method, batch_size=batch)
s = result.summary
print(json.dumps({"images": s.images, "peak_rss_mib": peak_rss_mib(), "rss_before_mib": start_rss, "time": s.time.model_dump(), "tensors": len(s.ranges)}))
"""


def export(model: str, size: int, folder: Path, batch: int) -> Path:
    import torch

    from csa_cli.models import create_model, inference_form
    from csa_cli.stages.export.onnx_export import export_onnx

    torch.manual_seed(0)
    module = create_model(model).eval()
    # dynamic batch lets calibration run `batch` images per ONNX Runtime call
    return export_onnx(inference_form(module), folder / f"{model}.onnx", batch=1, img_size=(size, size), dynamic_batch=batch > 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="csa-tiny")
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--method", default="entropy")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="csa-qmem-") as tmp:
        folder = Path(tmp)
        onnx_path = export(args.model, args.img_size, folder, args.batch_size)
        cmd = [sys.executable, "-c", CHILD, str(onnx_path), str(folder / "out"), str(args.images), str(args.batch_size), str(args.img_size), args.method]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr)
            raise SystemExit(proc.returncode)
        data = json.loads(proc.stdout.strip().splitlines()[-1])
    peak = data["peak_rss_mib"]
    t = data["time"]
    print(f"model {args.model} @ {args.img_size}px, {data['images']} images, batch {args.batch_size}, method {args.method}, {data['tensors']} tensors")
    print(f"peak RSS {peak:.0f} MiB (before quantizing: {data['rss_before_mib']:.0f} MiB); budget {BUDGET_MIB} MiB; ratio {peak / BUDGET_MIB:.2f}")
    print(f"time: calibration {t['calibration_s']:.1f} s, ranges {t['ranges_s']:.1f} s, QDQ + cache {t['quantization_s']:.1f} s, total {t['total_s']:.1f} s")
    print("OK" if peak < BUDGET_MIB else "OVER BUDGET")


if __name__ == "__main__":
    main()

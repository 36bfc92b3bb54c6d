"""The must-show training run: csa-nano learns scikit-learn's digits on CPU, and every later stage agrees.

Usage: .venv/bin/python benchmarks/train_digits.py [--model csa-nano] [--epochs 5] [--img-size 96] [--workdir DIR]

1. the 1,797 digits upscaled to 96x96 as ImageFolders (every fifth image of each class held out: 1,442 / 355)
2. `csa train csa-nano --dataset train --val-dataset val --img-size 96 --recipe small --epochs 5` (the run's top-1)
3. `csa eval csa-nano --weights run/model.safetensors --dataset val` (must reproduce it)
4. `csa export` of the run's record, `csa quantize --calib-dataset train` (INT8, mixed), `csa eval` of the
   quantized graph on onnxruntime (must stay within 1 point)
Prints a markdown table with the machine; docs/training.md keeps the figures.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def csa(*args: str, stdin: str | None = None) -> tuple[dict, float]:
    """Run `python -m csa_cli ARGS` (stdout a pipe: one JSON record); (record, seconds)."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "csa_cli", *args], input=stdin, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"csa {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    sys.stderr.write(proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1]), seconds


def main() -> None:
    from csa_cli.measure.machine import machine_info
    from tests.fixtures.train import write_digits

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="csa-nano")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--img-size", type=int, default=96)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="csa-train-digits-"))
    train_dir, val_dir = write_digits(work / "digits", size=args.img_size)
    n_train, n_val = len(list(train_dir.rglob("*.png"))), len(list(val_dir.rglob("*.png")))
    run, train_s = csa("train", args.model, "--dataset", str(train_dir), "--val-dataset", str(val_dir), "--output", str(work / "run"),
                       "--img-size", str(args.img_size), "--recipe", "small", "--epochs", str(args.epochs), "--workers", "0")  # fmt: skip
    evaluated, _ = csa("eval", args.model, "--weights", run["path"], "--dataset", str(val_dir), "--workers", "0")
    onnx, _ = csa("export", "--dynamic-batch", stdin=json.dumps(run) + "\n")
    quantized, _ = csa("quantize", "--calib-dataset", str(train_dir), "--calib-images", "200", stdin=json.dumps(onnx) + "\n")
    int8, _ = csa("eval", "--dataset", str(val_dir), "--workers", "0", stdin=json.dumps(quantized) + "\n")
    fp32_onnx, _ = csa("eval", "--dataset", str(val_dir), "--workers", "0", stdin=json.dumps(onnx) + "\n")
    machine = machine_info(None)
    metrics = [json.loads(line) for line in (work / "run" / "metrics.jsonl").read_text().splitlines()]
    print(f"\n{args.model}, digits {n_train} train / {n_val} val at {args.img_size}x{args.img_size}, recipe small, {args.epochs} epochs, "
          f"on {machine.title()} (torch {machine.libraries.get('torch')}): {train_s / 60:.1f} min in all\n")  # fmt: skip
    print("| epoch | train loss | val top-1 | images/s | s |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for m in metrics:
        print(f"| {m['epoch']} | {m['train_loss']:.4f} | {m['val_top1']:.2f} % | {m['images_per_s']:.1f} | {m['epoch_s']:.0f} |")
    print("\n| what | top-1 on val | vs the run |")
    print("| --- | ---: | ---: |")
    base = run["val_top1"]
    for what, top1 in (("the run's own validation (`csa train`)", base), ("`csa eval --weights model.safetensors` (torch)", evaluated["top1"]),
                       ("exported FP32 ONNX (`csa eval`, onnxruntime)", fp32_onnx["top1"]),
                       (f"INT8 {quantized.get('precision', '')} QDQ (`csa quantize`, onnxruntime)", int8["top1"])):  # fmt: skip
        print(f"| {what} | {top1:.2f} % | {round(top1 - base, 2) + 0.0:+.2f} points |")  # + 0.0: no "-0.00"
    print(f"\nweights, metrics and curves: {work / 'run'}")


if __name__ == "__main__":
    main()

"""Training throughput and peak memory: csa-tiny against convnext-tiny at 224, interleaved round by round.

Usage: .venv/bin/python benchmarks/train_throughput.py [--models csa-tiny,convnext-tiny] [--batch 16] [--steps 3] [--rounds 3] [--device cpu|cuda]

Each measurement is a few optimizer steps (AdamW, the imagenet recipe's loss, channels_last; fp16
autocast and a grad scaler on CUDA, as `csa train` does) of random-weight models on random images,
after one warm-up step. Models alternate within each round so that a busy machine slows both alike;
prints images/s per model (median over rounds, with min-max), the ratio to the first model, peak
memory of a training step (CUDA: max allocated; CPU: peak RSS of a child process that builds the
model and takes one step, so each model is measured alone), and on CUDA the GPU-hours the
reference recipe (300 epochs of 1.28 M images) implies.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

IMAGENET_TRAIN = 1_281_167
REFERENCE_EPOCHS = 300


def build(model: str, device: str) -> tuple[Any, Any, Any, Any]:
    import torch

    from csa_cli.models.factory import create_model
    from csa_cli.stages.train.recipe import build_recipe
    from csa_cli.stages.train.setup import amp_parts

    recipe = build_recipe("imagenet", {}, world_size=1)
    module = create_model(model, 1000).to(device).to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-4, weight_decay=0.05)
    autocast, scaler = amp_parts(recipe, device)
    return module, optimizer, autocast, scaler


def steps(parts: tuple[Any, Any, Any, Any], batch: int, size: int, n: int, device: str) -> float:
    """Seconds for n optimizer steps."""
    import torch

    module, optimizer, autocast, scaler = parts
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), device=device)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(n):
        with autocast():
            loss = torch.nn.functional.cross_entropy(module(x), y, label_smoothing=0.1)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def cpu_peak_mib(model: str, batch: int, size: int) -> float:
    """Peak RSS of a fresh process that builds `model` and takes one training step."""
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); from benchmarks.train_throughput import build, steps; "
        "from csa_cli.measure.machine import peak_rss_mib; "
        "steps(build(sys.argv[2], 'cpu'), int(sys.argv[3]), int(sys.argv[4]), 1, 'cpu'); print(json.dumps(peak_rss_mib()))"
    )
    root = str(Path(__file__).resolve().parents[1])
    out = subprocess.run([sys.executable, "-c", code, root, model, str(batch), str(size)], capture_output=True, text=True, check=True)
    return float(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    import torch

    from csa_cli.measure.machine import machine_info

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="csa-tiny,convnext-tiny")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    models = args.models.split(",")
    built = {m: build(m, args.device) for m in models}
    memory: dict[str, float] = {}
    for m in models:  # warm-up step, and the peak memory of a step
        if args.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        steps(built[m], args.batch, args.img_size, 1, args.device)
        memory[m] = torch.cuda.max_memory_allocated() / 2**20 if args.device.startswith("cuda") else cpu_peak_mib(m, args.batch, args.img_size)
    rates: dict[str, list[float]] = {m: [] for m in models}
    for _ in range(args.rounds):
        for m in models:
            rates[m].append(args.batch * args.steps / steps(built[m], args.batch, args.img_size, args.steps, args.device))
    machine = machine_info(torch.get_num_threads(), args.device)
    precision = "fp16 autocast" if args.device.startswith("cuda") else "fp32"
    print(f"\ntraining step, batch {args.batch} at {args.img_size}x{args.img_size}, {args.steps} steps x {args.rounds} rounds interleaved, "
          f"on {machine.title(args.device)} ({precision}, torch {machine.libraries.get('torch')})\n")  # fmt: skip
    head = "| model | images/s (median, min-max) | ratio to " + models[0] + " | peak memory MiB |"
    extra = " GPU-hours for 300 epochs of ImageNet |" if args.device.startswith("cuda") else ""
    print(head + extra)
    print("| --- | ---: | ---: | ---: |" + (" ---: |" if extra else ""))
    base = statistics.median(rates[models[0]])
    for m in models:
        med = statistics.median(rates[m])
        row = f"| {m} | {med:.1f} ({min(rates[m]):.1f}-{max(rates[m]):.1f}) | {med / base:.2f} | {memory[m]:.0f} |"
        if extra:
            row += f" {IMAGENET_TRAIN * REFERENCE_EPOCHS / med / 3600:.0f} |"
        print(row)


if __name__ == "__main__":
    main()

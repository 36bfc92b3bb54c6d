#!/usr/bin/env bash
# One command for a CUDA machine (TensorRT optional, no network needed):
#   1. the `gpu` / `tensorrt` tests (skipped here on the CPU dev machine),
#   2. latency of the four zoo models with torch CUDA fp16 + CUDA graphs, and TensorRT fp16
#      where it is installed, at batch 1/4/8/16 -> a markdown table naming the card.
# Under 10 minutes on one GPU (each step has its own timeout). `--dry-run` prints the steps.
# Environment: PYTHON (default .venv/bin/python), MODELS, BATCHES, ITERATIONS, OUT.
set -euo pipefail
cd "$(dirname "$0")/.."

DRY_RUN=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY_RUN=1 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "unknown option: $arg (use --dry-run)" >&2; exit 2 ;;
  esac
done

PYTHON="${PYTHON:-.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python3
MODELS="${MODELS:-csa-tiny,convnext-tiny,swin-tiny,cvt-13}"
BATCHES="${BATCHES:-1,4,8,16}"
ITERATIONS="${ITERATIONS:-100}"
OUT="${OUT:-benchmarks/results/gpu-$(date -u +%Y%m%dT%H%M%SZ).md}"

run() {
  # print the command as it could be pasted (arguments with spaces quoted), then run it
  local shown=() arg
  for arg in "$@"; do
    if [[ "$arg" =~ [[:space:]] ]]; then shown+=("\"$arg\""); else shown+=("$arg"); fi
  done
  echo "+ ${shown[*]}"
  if [ "$DRY_RUN" -eq 0 ]; then "$@"; fi
}

if [ "$DRY_RUN" -eq 0 ]; then
  if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "no CUDA GPU visible to $PYTHON: run this on a GPU machine (or --dry-run)" >&2
    exit 4
  fi
  # a bare GPU machine has no network: make sure nothing tries the Hub
  export HF_HUB_OFFLINE=1
fi

# 1. tests that need a GPU and/or TensorRT (the rest of the suite runs on CPU in CI)
run timeout 240 "$PYTHON" -m pytest tests -q -m "gpu or tensorrt" -p no:cacheprovider
# 2. the latency table (torch fp16 + CUDA graphs; TensorRT fp16 where installed)
run timeout 330 "$PYTHON" benchmarks/gpu_profile.py --models "$MODELS" --batches "$BATCHES" --iterations "$ITERATIONS" --output "$OUT"
if [ "$DRY_RUN" -eq 0 ]; then echo "table written: $OUT" >&2; fi

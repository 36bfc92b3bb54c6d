#!/usr/bin/env bash
# Validate each engine on real images and time it: trtexec runs the engine on every chunk of the
# bundle's validation images (data/images.bin), compare_outputs.py compares its outputs with ONNX
# Runtime's (numbers, top-1 agreement, top-1 drop; tolerances in data/io.json), then trtexec times it.
# When an engine fails, a debug engine with the weighted layers' outputs marked is compared layer by
# layer with ONNX Runtime to show where the loss starts.
#
# Stable timings: lock the clocks and the power mode first, and say which in your results (Jetson /
# IGX: `sudo nvpmodel -m 0 && sudo jetson_clocks`; DRIVE OS: the platform's performance profile).
# The timing runs use trtexec's spin wait, CUDA graphs where they apply (not on DLA, not the safe
# runtime) and a separate profiling run, as written in each line below.
set -uo pipefail  # go on after a failed engine; the exit status says whether all passed
cd "$(dirname "$0")" || exit 1
# trtexec from PATH, else where DRIVE OS / JetPack install it; override with TRTEXEC=...
TRTEXEC="${TRTEXEC:-$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)}"
PYTHON="${PYTHON:-python3}"
mkdir -p results
status=0 ran=0 missing=0 failed_accuracy=0 current=0 failed_batch=""
if command -v nvpmodel >/dev/null 2>&1; then
  echo "power mode: $(nvpmodel -q 2>/dev/null | tr '\n' ' ')" >&2
else
  echo "power mode: unknown (no nvpmodel here): lock clocks and power mode before trusting the timings" >&2
fi

# engine BATCH FILE: start an engine; one that build.sh has not built is counted and skipped.
# shellcheck disable=SC2329  # the functions are called by the lines csa writes below
engine() {
  current=1
  if [ ! -f "$2" ]; then
    echo "missing $2: run ./build.sh first" >&2
    missing=$((missing + 1)) status=1 current=0
  fi
}

# accuracy BATCH CHUNKS TRTEXEC-COMMAND...: one run per chunk of images (@K@ in the command: the chunk).
# shellcheck disable=SC2329
accuracy() {
  [ "$current" = 1 ] || return 0
  local batch=$1 chunks=$2 k a log
  shift 2
  for ((k = 0; k < chunks; k++)); do
    if ! "$PYTHON" compare_outputs.py slice --io data/io.json --batch "$batch" --chunk "$k"; then
      status=1 current=0
      return 0
    fi
    local args=()
    for a in "$@"; do args+=("${a//@K@/$k}"); done
    log="results/run_b${batch}_${k}.log"
    if ! "${args[@]}" >"$log" 2>&1; then
      echo "trtexec failed to run batch $batch, chunk $k: $(grep -m 1 -E '\[E\]|Error' "$log") (log: $log)" >&2
      status=1 current=0
      return 0
    fi
  done
  ran=$((ran + 1))
}

# timing BATCH TRTEXEC-COMMAND...: the timed run (trtexec --exportTimes, --exportProfile).
# shellcheck disable=SC2329
timing() {
  [ "$current" = 1 ] || return 0
  local batch=$1 log
  shift
  log="results/timing_b${batch}.log"
  if ! "$@" >"$log" 2>&1; then
    echo "trtexec failed to time batch $batch: $(grep -m 1 -E '\[E\]|Error' "$log") (log: $log)" >&2
    status=1
  fi
}

# compare BATCH: the engine's outputs against ONNX Runtime's on the same images.
# shellcheck disable=SC2329
compare() {
  [ "$current" = 1 ] || return 0
  if ! "$PYTHON" compare_outputs.py compare --io data/io.json --batch "$1"; then
    status=1 failed_accuracy=1
    failed_batch=${failed_batch:-$1}
  fi
}

# locate_loss: the debug engine (not safe; intermediate outputs marked) against ONNX Runtime, layer by layer.
# shellcheck disable=SC2329
locate_loss() {
  :
  # >>> debug: written by csa from plan.json
  # <<< debug
}

# >>> engines: written by csa from plan.json
# <<< engines
if [ "$ran" -eq 0 ]; then
  echo "validate: no engine ran ($missing missing): build them with ./build.sh" >&2
  exit 1
fi
if [ "$failed_accuracy" = 1 ]; then
  echo "validate: batch $failed_batch failed: locating the loss layer by layer" >&2
  locate_loss || echo "the layer-by-layer comparison could not run (see results/debug_*.log)" >&2
fi
echo "timings: results/times_b*.json, per-layer profile results/profile_b*.json (bring them back with: csa import-timings FILE --device \"Orin\")" >&2
if [ "$status" -eq 0 ]; then echo "validate: all engines PASS ($ran ran)" >&2; else echo "validate: FAILED" >&2; fi
exit "$status"

#!/usr/bin/env bash
# Time each engine (trtexec --exportTimes) and compare its outputs with the ONNX Runtime reference.
# `csa engine --target orin` writes the bundle: the lines between the markers below run each
# engine of its plan.json on the saved input (data/input_b*.bin).
set -uo pipefail  # go on after a failed engine; the exit status says whether all passed
cd "$(dirname "$0")" || exit 1
# trtexec from PATH, else where DRIVE OS / JetPack install it; override with TRTEXEC=...
TRTEXEC="${TRTEXEC:-$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)}"
PYTHON="${PYTHON:-python3}"
mkdir -p results
status=0

# validate --batch N ENGINE LOG TRTEXEC-COMMAND...: run one engine, then compare its outputs.
# shellcheck disable=SC2329  # called by the engine lines csa writes below
validate() {
  local batch=$2 engine=$3 log=$4
  shift 4
  if [ ! -f "$engine" ]; then
    echo "missing $engine: run ./build.sh first" >&2
    status=1
  elif "$@" >"$log" 2>&1; then
    "$PYTHON" compare_outputs.py --io data/io.json --batch "$batch" || status=1
  else
    echo "trtexec failed on $engine: see $log" >&2
    status=1
  fi
}

# >>> engines: written by csa from plan.json
# <<< engines
echo "timings: results/times_b*.json (bring them back with: csa import-timings FILE --device \"Orin\")" >&2
if [ "$status" -eq 0 ]; then echo "validate: all engines PASS" >&2; else echo "validate: FAILED" >&2; fi
exit "$status"

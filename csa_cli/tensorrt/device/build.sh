#!/usr/bin/env bash
# Build this bundle's TensorRT engine(s) on the device, with trtexec only (no csa, numpy or torch).
# `csa engine --target orin` writes the bundle: the lines between the markers below check the
# device's TensorRT, fit the calibration cache to it, and run the trtexec command lines of its
# plan.json, one per engine. Each build keeps its verbose log and the engine's layers in results/.
set -euo pipefail
cd "$(dirname "$0")"
# trtexec from PATH, else where DRIVE OS / JetPack install it; override with TRTEXEC=...
TRTEXEC="${TRTEXEC:-$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)}"
[ -x "$TRTEXEC" ] || command -v "$TRTEXEC" >/dev/null || { echo "trtexec not found: set TRTEXEC=/path/to/trtexec" >&2; exit 4; }
mkdir -p engines results
TRT_NUMBER=""
TRT_HELP=""

# check_version MAJOR MINOR: stop (exit 4) unless trtexec is that TensorRT. trtexec prints
# "[TensorRT vNNNN]" first: major*1000+minor*100+patch before 10, major*10000+minor*100+patch since.
# shellcheck disable=SC2329  # called by the lines csa writes below
check_version() {
  local want_major=$1 want_minor=$2 major minor
  TRT_HELP=$("$TRTEXEC" --help 2>&1 || true)
  if [[ $TRT_HELP =~ \[TensorRT\ v([0-9]+)\] ]]; then TRT_NUMBER=${BASH_REMATCH[1]}; fi
  if [ -z "$TRT_NUMBER" ]; then
    echo "cannot tell which TensorRT $TRTEXEC is (no [TensorRT vNNNN] in its --help)" >&2
    exit 4
  fi
  if [ "$TRT_NUMBER" -ge 100000 ]; then
    major=$((TRT_NUMBER / 10000)) minor=$((TRT_NUMBER % 10000 / 100))
  else
    major=$((TRT_NUMBER / 1000)) minor=$((TRT_NUMBER % 1000 / 100))
  fi
  if [ "$major" != "$want_major" ] || { [ "$want_minor" != "any" ] && [ "$minor" != "$want_minor" ]; }; then
    echo "this bundle was made for TensorRT $want_major.$want_minor but $TRTEXEC is TensorRT $major.$minor (v$TRT_NUMBER):" \
      "make the bundle again with csa engine ... --trt-version $major.$minor" >&2
    exit 4
  fi
  echo "TensorRT v$TRT_NUMBER ($TRTEXEC)" >&2
}

# calib_header FILE: the calibration cache's first line names this TensorRT (TRT-<vNNNN>-<algorithm>);
# TensorRT ignores a cache that names another version and would calibrate on nothing.
# shellcheck disable=SC2329
calib_header() {
  local cache=$1 head
  head=$(head -n 1 "$cache")
  case "$head" in
    TRT-*-*) ;;
    *) echo "$cache is not a TensorRT calibration cache (first line: $head)" >&2; exit 1 ;;
  esac
  { echo "TRT-$TRT_NUMBER-${head#TRT-*-}"; tail -n +2 "$cache"; } >"$cache.tmp" && mv "$cache.tmp" "$cache"
  echo "calibration cache $cache: header TRT-$TRT_NUMBER-${head#TRT-*-}" >&2
}

# build LOG MODE TRTEXEC-COMMAND...: one engine; MODE safe adds --consistency where this trtexec has it.
# shellcheck disable=SC2329
build() {
  local log=$1 mode=$2
  shift 2
  if [ "$mode" = safe ]; then
    case "$TRT_HELP" in *--consistency*) set -- "$@" --consistency ;; esac
  fi
  echo "building: $*" >&2
  if ! "$@" >"$log" 2>&1; then
    echo "trtexec failed to build (log: $log):" >&2
    grep -E '\[E\]|Error|error' "$log" | tail -n 5 >&2 || tail -n 5 "$log" >&2
    exit 1
  fi
  grep -E "Switching this layer's device type to GPU|falling back to GPU" "$log" | sed 's/^/  left the DLA: /' >&2 || true
}

# >>> engines: written by csa from plan.json
# <<< engines
echo "built: $(ls engines); logs and layer information in results/; next: ./validate.sh" >&2

#!/usr/bin/env bash
# Build this bundle's TensorRT engine(s) on the device, with trtexec only (no csa, numpy or torch).
# `csa engine --target orin` writes the bundle: the lines between the markers below are the
# trtexec command lines of its plan.json, one per engine.
set -euo pipefail
cd "$(dirname "$0")"
# trtexec from PATH, else where DRIVE OS / JetPack install it; override with TRTEXEC=...
TRTEXEC="${TRTEXEC:-$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)}"
[ -x "$TRTEXEC" ] || command -v "$TRTEXEC" >/dev/null || { echo "trtexec not found: set TRTEXEC=/path/to/trtexec" >&2; exit 4; }
mkdir -p engines
# >>> engines: written by csa from plan.json
# <<< engines
echo "built: $(ls engines); next: ./validate.sh" >&2

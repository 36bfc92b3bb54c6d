#!/usr/bin/env python3
"""Compare one engine's outputs (trtexec --exportOutput JSON) with the ONNX Runtime reference.

Standard library only (json, struct): DRIVE OS ships an old python3 and no numpy.
Usage: compare_outputs.py --io data/io.json --batch N [--outputs FILE] [--times FILE]
Exit 0 when every output passes the tolerances in io.json, 1 otherwise.
"""

import argparse
import json
import math
import os
import re
import struct
import sys


def read_f32(path):
    with open(path, "rb") as fh:
        data = fh.read()
    n = len(data) // 4
    return list(struct.unpack("<%df" % n, data[: n * 4]))


def parse_trtexec_outputs(text):
    """{name: [values]} from trtexec --exportOutput (it writes nan/inf bare, which is not JSON)."""
    text = re.sub(r'(?<![A-Za-z_"])(-?)(nan|inf)(?![A-Za-z_"])', lambda m: '"%s%s"' % (m.group(1), m.group(2)), text, flags=re.I)
    out = {}
    for item in json.loads(text):
        out[item["name"]] = [float(v) for v in item["values"]]
    return out


def compare(ref, got, classes, tol):
    """Metrics and verdict for one output (flat lists; rows of `classes` values)."""
    if len(ref) != len(got):
        return {"pass": False, "reason": "size %d != reference %d" % (len(got), len(ref))}
    if not all(math.isfinite(v) for v in got):
        return {"pass": False, "reason": "non-finite values in the engine output"}
    max_abs = max(abs(a - b) for a, b in zip(ref, got)) if ref else 0.0
    scale = max(max(abs(a) for a in ref) if ref else 0.0, 1e-12)
    dot = sum(a * b for a, b in zip(ref, got))
    norm = math.sqrt(sum(a * a for a in ref)) * math.sqrt(sum(b * b for b in got))
    cosine = dot / norm if norm > 0 else (1.0 if max_abs == 0 else 0.0)
    rows = len(ref) // classes if classes else 0
    agree = 0
    for r in range(rows):
        a = ref[r * classes : (r + 1) * classes]
        b = got[r * classes : (r + 1) * classes]
        agree += a.index(max(a)) == b.index(max(b))
    res = {"max_abs_err": max_abs, "max_rel_err": max_abs / scale, "cosine": cosine, "top1_agree": (agree / rows) if rows else None}
    res["pass"] = res["max_rel_err"] <= tol["max_rel_err"] and cosine >= tol["min_cosine"]
    if not res["pass"]:
        res["reason"] = "max_rel_err %.3g (limit %g), cosine %.6f (min %g)" % (res["max_rel_err"], tol["max_rel_err"], cosine, tol["min_cosine"])
    return res


def timing_summary(path):
    """Median latency of a trtexec --exportTimes trace (trtexec's own percentiles are in its log)."""
    with open(path) as fh:
        entries = [e for e in json.load(fh) if isinstance(e, dict) and "latencyMs" in e]
    if not entries:
        return None
    lat = sorted(float(e["latencyMs"]) for e in entries)
    return {"iterations": len(lat), "latency_median_ms": lat[(len(lat) - 1) // 2]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--io", default="data/io.json")
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--outputs", help="trtexec --exportOutput file (default: the one io.json names)")
    parser.add_argument("--times", help="trtexec --exportTimes file (default: the one io.json names)")
    args = parser.parse_args(argv)
    root = os.path.dirname(os.path.abspath(args.io)) + "/.."
    with open(args.io) as fh:
        io = json.load(fh)
    engines = [e for e in io["engines"] if e["batch"] == args.batch]
    if not engines:
        print("no engine at batch %d in %s" % (args.batch, args.io), file=sys.stderr)
        return 2
    eng = engines[0]
    outputs_path = args.outputs or os.path.join(root, eng["results"])
    try:
        with open(outputs_path) as fh:
            got_all = parse_trtexec_outputs(fh.read())
    except (OSError, ValueError, KeyError) as exc:
        print("FAIL b%d: cannot read engine outputs %s: %s" % (args.batch, outputs_path, exc), file=sys.stderr)
        return 1
    ok = True
    for out in eng["outputs"]:
        ref = read_f32(os.path.join(root, out["reference"]))
        got = got_all.get(out["name"])
        if got is None:
            res = {"pass": False, "reason": "output %r missing from %s" % (out["name"], outputs_path)}
        else:
            res = compare(ref, got, out["shape"][-1] if len(out["shape"]) > 1 else 0, io["tolerance"])
        ok = ok and res["pass"]
        detail = res.get("reason") or "max_rel_err %.3g, cosine %.6f, top-1 agreement %s" % (
            res["max_rel_err"],
            res["cosine"],
            "n/a" if res["top1_agree"] is None else "%.3f" % res["top1_agree"],
        )
        print("%s b%d %s %s: %s" % ("PASS" if res["pass"] else "FAIL", args.batch, eng["engine"], out["name"], detail))
    times_path = args.times or os.path.join(root, eng["times"])
    if os.path.exists(times_path):
        summary = timing_summary(times_path)
        if summary:
            print(
                "time b%d: latency median %.3f ms over %d runs (percentiles: results/trtexec_b%d.log)"
                % (args.batch, summary["latency_median_ms"], summary["iterations"], args.batch)
            )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""The python part of validate.sh: input chunks for trtexec, the comparison with ONNX Runtime, the debug comparison.

Standard library only (json, struct): DRIVE OS ships an old python3 and no numpy.
Usage:
  compare_outputs.py slice   --io data/io.json --batch N --chunk K   write results/in_bN_K.bin for trtexec --loadInputs
  compare_outputs.py compare --io data/io.json --batch N             every chunk's outputs against the reference
  compare_outputs.py debug   --io data/io.json                       the debug engine's marked outputs, layer by layer
Exit 0 when everything passes the tolerances in io.json, 1 otherwise (2: bad arguments).
"""

import argparse
import json
import math
import os
import re
import struct
import sys


def read_f32(path, offset=0, count=None):
    with open(path, "rb") as fh:
        fh.seek(offset * 4)
        data = fh.read(-1 if count is None else count * 4)
    n = len(data) // 4
    return list(struct.unpack("<%df" % n, data[: n * 4]))


def parse_trtexec_outputs(text):
    """{name: [values]} from trtexec --exportOutput (it writes nan/inf bare, which is not JSON).

    trtexec writes each output's values in logical (NCHW) order whatever the tensor's format
    (samples/common/sampleUtils.cpp dumpBuffer walks the logical volume).
    """
    text = re.sub(r'(?<![A-Za-z_"])(-?)(nan|inf)(?![A-Za-z_"])', lambda m: '"%s%s"' % (m.group(1), m.group(2)), text, flags=re.I)
    out = {}
    for item in json.loads(text):
        out[item["name"]] = [float(v) for v in item["values"]]
    return out


def pack_input(values, shape, fmt):
    """Bytes trtexec --loadInputs reads for an NCHW float32 chunk in the engine input's I/O format.

    None / fp32:chw: float32 as is. fp16:chw16 (a DLA input): fp16, channels in vectors of 16
    padded with zeros, memory [N][ceil(C/16)][H][W][16] (TensorRT's vector-major formats,
    NvInferRuntimeBase.h TensorFormat kCHW16); trtexec reads exactly that many bytes.
    """
    if not fmt or fmt == "fp32:chw":
        return struct.pack("<%df" % len(values), *values)
    if fmt != "fp16:chw16":
        raise ValueError("unsupported input format %s" % fmt)
    n, c, h, w = shape
    blocks = (c + 15) // 16
    plane = h * w
    out = []
    for i in range(n):
        base = i * c * plane
        for b in range(blocks):
            for p in range(plane):
                for lane in range(16):
                    ch = b * 16 + lane
                    out.append(values[base + ch * plane + p] if ch < c else 0.0)
    return struct.pack("<%de" % len(out), *out)


def load(io_path, batch):
    with open(io_path) as fh:
        io = json.load(fh)
    root = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(io_path)), ".."))
    engines = [e for e in io["engines"] if e["batch"] == batch]
    return io, root, (engines[0] if engines else None)


def cmd_slice(args):
    """Rows [K*N, K*N+N) of data/images.bin, the last chunk padded by repeating its rows."""
    io, root, eng = load(args.io, args.batch)
    if eng is None:
        print("no engine at batch %d in %s" % (args.batch, args.io), file=sys.stderr)
        return 2
    total, c, h, w = io["image_shape"]
    per = c * h * w
    start = args.chunk * args.batch
    if start >= total:
        print("chunk %d is past the %d validation images" % (args.chunk, total), file=sys.stderr)
        return 2
    real = min(args.batch, total - start)
    rows = read_f32(os.path.join(root, io["images"]), start * per, real * per)
    while len(rows) < args.batch * per:
        rows.extend(rows[: min(real * per, args.batch * per - len(rows))])
    dest = os.path.join(root, eng["inputs"].replace("@K@", str(args.chunk)))
    with open(dest, "wb") as fh:
        fh.write(pack_input(rows, (args.batch, c, h, w), io.get("input_format")))
    return 0


def top1(rows, classes):
    return [r.index(max(r)) for r in (rows[i * classes : (i + 1) * classes] for i in range(len(rows) // classes))]


def metrics(ref, got, classes, labels, tol):
    """Numbers, top-1 agreement and top-1 drop of one output (flat lists; rows of `classes` values)."""
    if len(ref) != len(got):
        return {"pass": False, "reason": "size %d != reference %d" % (len(got), len(ref))}
    if not all(math.isfinite(v) for v in got):
        return {"pass": False, "reason": "non-finite values in the engine output"}
    max_abs = max(abs(a - b) for a, b in zip(ref, got)) if ref else 0.0
    scale = max(max(abs(a) for a in ref) if ref else 0.0, 1e-12)
    dot = sum(a * b for a, b in zip(ref, got))
    norm = math.sqrt(sum(a * a for a in ref)) * math.sqrt(sum(b * b for b in got))
    cosine = dot / norm if norm > 0 else (1.0 if max_abs == 0 else 0.0)
    res = {"max_rel_err": max_abs / scale, "cosine": cosine, "top1_agree": None, "ref_top1": None, "top1": None, "drop": None}
    ok = res["max_rel_err"] <= tol["max_rel_err"] and cosine >= tol["min_cosine"]
    if classes > 1:
        ref_top, got_top = top1(ref, classes), top1(got, classes)
        res["top1_agree"] = sum(a == b for a, b in zip(ref_top, got_top)) / float(len(ref_top))
        ok = ok and res["top1_agree"] >= tol.get("min_top1_agreement", 0.0)
        if labels:
            res["ref_top1"] = 100.0 * sum(a == y for a, y in zip(ref_top, labels)) / len(labels)
            res["top1"] = 100.0 * sum(a == y for a, y in zip(got_top, labels)) / len(labels)
            res["drop"] = res["ref_top1"] - res["top1"]
            ok = ok and res["drop"] <= tol.get("max_top1_drop", 100.0)
    res["pass"] = ok
    return res


def describe(res):
    if "reason" in res:
        return res["reason"]
    text = "max_rel_err %.3g, cosine %.6f" % (res["max_rel_err"], res["cosine"])
    if res["top1_agree"] is not None:
        text += ", top-1 agreement %.3f" % res["top1_agree"]
    if res["drop"] is not None:
        text += ", top-1 %.2f%% vs ONNX Runtime %.2f%% (drop %.2f points)" % (res["top1"], res["ref_top1"], res["drop"])
    return text


def timing_summary(path):
    """Medians of a trtexec --exportTimes trace: latency and its H2D / compute / D2H parts."""
    with open(path) as fh:
        entries = [e for e in json.load(fh) if isinstance(e, dict) and "latencyMs" in e]
    if not entries:
        return None

    def median(key):
        values = sorted(float(e[key]) for e in entries if key in e)
        return values[(len(values) - 1) // 2] if values else None

    return {"iterations": len(entries), "latency": median("latencyMs"), "h2d": median("h2dMs"), "compute": median("computeMs"), "d2h": median("d2hMs")}


def cmd_compare(args):
    io, root, eng = load(args.io, args.batch)
    if eng is None:
        print("no engine at batch %d in %s" % (args.batch, args.io), file=sys.stderr)
        return 2
    total = io["image_shape"][0]
    got = {}
    for k in range(eng["chunks"]):
        path = os.path.join(root, eng["results"].replace("@K@", str(k)))
        real = min(args.batch, total - k * args.batch)
        try:
            with open(path) as fh:
                chunk = parse_trtexec_outputs(fh.read())
        except (OSError, ValueError, KeyError) as exc:
            print("FAIL b%d: cannot read engine outputs %s: %s" % (args.batch, path, exc))
            return 1
        for out in eng["outputs"]:
            values = chunk.get(out["name"], [])
            per = len(values) // args.batch if values else 0
            got.setdefault(out["name"], []).extend(values[: real * per])
    ok = True
    for out in eng["outputs"]:
        ref = read_f32(os.path.join(root, out["reference"]))
        classes = out["shape"][-1] if len(out["shape"]) == 2 else 0
        res = metrics(ref, got.get(out["name"], []), classes, io.get("labels") or [], io["tolerance"])
        ok = ok and res["pass"]
        print("%s b%d %s %s on %d images: %s" % ("PASS" if res["pass"] else "FAIL", args.batch, eng["engine"], out["name"], total, describe(res)))
    times = os.path.join(root, eng["times"])
    if os.path.exists(times):
        s = timing_summary(times)
        if s:
            parts = ", ".join("%s %.3f ms" % (k, s[k]) for k in ("h2d", "compute", "d2h") if s[k] is not None)
            print("time b%d: latency median %.3f ms over %d runs (%s)" % (args.batch, s["latency"], s["iterations"], parts))
    else:
        print("time b%d: no timing (%s missing)" % (args.batch, eng["times"]))
    return 0 if ok else 1


def cmd_debug(args):
    """Each marked tensor of the debug engine against ONNX Runtime, in graph order; the first below tolerance is where the loss starts."""
    io, root, _ = load(args.io, 0)
    dbg = io.get("debug")
    if not dbg:
        print("this bundle has no debug comparison", file=sys.stderr)
        return 2
    try:
        with open(os.path.join(root, dbg["outputs"])) as fh:
            got = parse_trtexec_outputs(fh.read())
    except (OSError, ValueError, KeyError) as exc:
        print("cannot read the debug engine's outputs: %s" % exc, file=sys.stderr)
        return 1
    first = None
    for t in dbg["tensors"]:
        ref = read_f32(os.path.join(root, dbg["reference"]), t["offset"], t["count"])
        res = metrics(ref, got.get(t["name"], []), 0, [], io["tolerance"]) if t["name"] in got else {"pass": False, "reason": "not in the engine's outputs"}
        if not res["pass"] and first is None:
            first = t["name"]
        print("%-5s %s: %s" % ("ok" if res["pass"] else "LOSS", t["name"], describe(res)))
    if first is None:
        print("every marked layer matches ONNX Runtime within tolerance: the loss is after the last marked layer")
    else:
        print(
            "the loss starts at %s (the first marked layer outside tolerance); marking outputs changes TensorRT's fusions, "
            "so read it as where to look, not a proof" % first
        )
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    for name in ("slice", "compare", "debug"):
        p = sub.add_parser(name)
        p.add_argument("--io", default="data/io.json")
        p.add_argument("--batch", type=int, default=0)
        p.add_argument("--chunk", type=int, default=0)
    args = parser.parse_args(argv)
    commands = {"slice": cmd_slice, "compare": cmd_compare, "debug": cmd_debug}
    if args.command not in commands:
        parser.print_usage(sys.stderr)
        return 2
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())

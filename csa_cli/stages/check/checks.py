"""The rule engine: every node of an indexed graph judged against the restricted and DLA rules.

Each check returns (verdict, rule, detail) triples; `check_graph` turns them into a CheckReport.
Shapes come from the graph index (completed where inference left them unknown), so limits on
kernels, strides, channels and resize scales are judged on real numbers."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from csa_cli.errors import UsageError
from csa_cli.graph.index import GraphIndex, complete_shapes, index_graph
from csa_cli.graph.onnx_file import load_onnx
from csa_cli.graph.qdq import QDQ_OPS, QOPERATOR_OPS
from csa_cli.stages.check.report import CheckReport, Finding, NodeResult, VerdictCounts
from csa_cli.stages.check.rules import (
    ACTIVATION_OPS,
    ALLOWED_ACTIVATIONS,
    DLA_OK,
    ERF_GELU_OPS,
    MATMUL_OPS,
    NORMALIZATION_OPS,
    REDUCE_OPS,
    RESTRICTED_OK,
    RESTRICTED_UNCONFIRMED,
    RULE_SELECTIONS,
    RULES,
    SHAPE_INPUTS,
    SHAPE_OPS,
    SOFTMAX_OPS,
    VIEW_OPS,
)

if TYPE_CHECKING:
    import onnx


class _Ctx:
    """What a rule sees: the indexed graph plus pre-computed facts."""

    def __init__(self, g: GraphIndex) -> None:
        self.g = g
        self.norm_expansion = _layernorm_expansion(g)
        self.runtime_shapes = _shape_tainted(g)


def _attr(node: onnx.NodeProto, name: str, default: object = None) -> object:
    import onnx

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _str_attr(node: onnx.NodeProto, name: str, default: str) -> str:
    value = _attr(node, name)
    return default if value is None else value.decode()  # type: ignore[attr-defined]  # ONNX keeps strings as bytes


def _ints(node: onnx.NodeProto, name: str) -> list[int] | None:
    value = _attr(node, name)
    return None if value is None else [int(v) for v in value]  # type: ignore[union-attr]


def _static(g: GraphIndex, name: str) -> list[int] | None:
    info = g.info(name)
    if info is None or not info.static or info.shape is None:
        return None
    return [int(d) for d in info.shape]  # type: ignore[arg-type]


# A written-out LayerNorm has 6-8 nodes after its centring Sub (more with casts); the bound keeps the
# search from taking in the rest of the network through a Mul/Add chain.
_LAYERNORM_MAX_NODES = 12


def _layernorm_expansion(g: GraphIndex) -> set[str]:
    """Nodes of a LayerNorm written out as ReduceMean -> Sub -> Pow/Mul -> ReduceMean -> Add -> Sqrt -> Div."""
    # What may follow the centring Sub (the search starts there; a second Sub is not part of a LayerNorm).
    pattern = {"Pow", "Mul", "ReduceMean", "Add", "Sqrt", "Div", "Reciprocal"}
    marked: set[str] = set()  # node keys (name, or first output when unnamed)
    for node in g.nodes:
        if node.op_type != "ReduceMean":
            continue
        subs = [c for c in g.consumers.get(node.output[0], []) if c.op_type == "Sub"]
        for sub in subs:
            found: dict[str, onnx.NodeProto] = {}
            frontier = [sub]
            while frontier and len(found) < _LAYERNORM_MAX_NODES:
                current = frontier.pop()
                key = current.name or current.output[0]
                if key in found:
                    continue
                found[key] = current
                if current.op_type == "Div":
                    continue  # the normalized output: the expansion ends here
                for out in current.output:
                    frontier += [c for c in g.consumers.get(out, []) if c.op_type in pattern]
            ops = {n.op_type for n in found.values()}
            if "Sqrt" in ops and ("Div" in ops or "Reciprocal" in ops) and sum(n.op_type == "ReduceMean" for n in found.values()) >= 1:
                marked.add(node.name or node.output[0])
                marked.update(found)
    return marked


def _shape_tainted(g: GraphIndex) -> set[str]:
    """Tensors computed at run time from a Shape/Size: shape arithmetic."""
    tainted: set[str] = set()
    for node in g.nodes:
        if node.op_type in ("Shape", "Size"):
            tainted.update(node.output)
            continue
        shape_positions = SHAPE_INPUTS.get(node.op_type, set())
        data_inputs = [i for pos, i in enumerate(node.input) if pos not in shape_positions]
        if any(i in tainted for i in data_inputs):
            tainted.update(o for o in node.output if o)
    return tainted


def _fmt_scale(s: float) -> str:
    # 6 significant digits: a scale refused for being 1e-4 (relative) off an integer below 100 still shows it
    return f"{s:.6g}"


def _node_key(node: onnx.NodeProto, position: int) -> str:
    return node.name or (node.output[0] if node.output else f"{node.op_type}_{position}")


def _check_qdq(node: onnx.NodeProto, ctx: _Ctx) -> list[tuple[str, str, str]]:
    if len(node.input) < 3 or not node.input[2]:
        return []  # no zero point: 0 by definition
    value = ctx.g.value(node.input[2])
    if value is None:
        return [("qdq-zero-point", "violation", "zero point is not a constant: symmetric quantization cannot be verified")]
    if value.size and bool((value != 0).any()):
        nz = int((value != 0).sum())
        return [("qdq-zero-point", "violation", f"{nz} of {value.size} zero point(s) non-zero (asymmetric quantization)")]
    return []


def _matmul_findings(node: onnx.NodeProto, ctx: _Ctx, dla: bool) -> list[tuple[str, str, str]]:
    data = [i for i in node.input[:2] if i]
    if len(data) == 2 and not any(ctx.g.is_constant(i) for i in data):
        return [("matmul-activations", "violation", f"{node.op_type} of two activations ({data[0]}, {data[1]})")]
    if dla:
        return []  # a constant operand: a fully connected layer, which DLA has
    return [("matmul-activations", "warning", f"{node.op_type} with a constant operand: a fully connected layer; a 1x1 Conv is the form known to build")]


def _restricted(node: onnx.NodeProto, key: str, ctx: _Ctx) -> list[tuple[str, str, str]]:
    op = node.op_type
    g = ctx.g
    found: list[tuple[str, str, str]] = []
    covered = False
    if key in ctx.norm_expansion:
        found.append(("normalization", "violation", f"{op} is part of a LayerNorm written out as ReduceMean/Sub/Pow/Sqrt/Div"))
        covered = True
    if op in NORMALIZATION_OPS:
        found.append(("normalization", "violation", f"{op} is not BatchNormalization"))
        covered = True
    if op in ERF_GELU_OPS:
        found.append(("erf-gelu", "violation", f"{op} (GELU)"))
        covered = True
    if op in SOFTMAX_OPS:
        found.append(("softmax", "violation", op))
        covered = True
    if op in REDUCE_OPS:
        found.append(("reduce", "violation", op))
        covered = True
    if op in SHAPE_OPS:
        found.append(("shape-ops", "violation", f"{op}: shape arithmetic"))
        covered = True
    if op in ACTIVATION_OPS - ALLOWED_ACTIVATIONS:
        found.append(("activation", "violation", f"{op} activation"))
        covered = True
    if op in MATMUL_OPS:
        found += _matmul_findings(node, ctx, dla=False)
        covered = True
    if op in QOPERATOR_OPS:
        found.append(("op-allowlist", "violation", f"{op}: operator-form quantization (the TensorRT parser takes Q/DQ nodes)"))
        covered = True
    if op in QDQ_OPS:
        found += _check_qdq(node, ctx)
    if op == "Resize" and len(node.input) > 3 and node.input[3]:
        sizes = g.value(node.input[3])
        if sizes is None or sizes.size:
            found.append(("resize-sizes", "violation", "Resize given sizes (give scales)"))
    shape_inputs = SHAPE_INPUTS.get(op, set())
    runtime = [i for pos, i in enumerate(node.input) if pos in shape_inputs and i and not g.is_constant(i)]
    if runtime and op not in SHAPE_OPS:
        found.append(("shape-ops", "violation", f"{op} takes a shape computed at run time ({runtime[0]})"))
    elif any(o in ctx.runtime_shapes for o in node.output) and op not in SHAPE_OPS:
        found.append(("shape-ops", "violation", f"{op} computes on a run-time shape"))
    if not covered and op not in RESTRICTED_OK:
        if op in RESTRICTED_UNCONFIRMED:
            found.append(("op-allowlist", "warning", f"{op}: a TensorRT layer no public source places in or out of the safety scope"))
        else:
            found.append(("op-allowlist", "violation", f"{op} is not on the restricted-mode allowlist"))
    for out in node.output:
        shape = _static(g, out) if out else None
        if shape is not None and len(shape) == 4:
            _, c, h, w = shape
            if c > 4096:
                found.append(("limits", "violation", f"{c} channels > 4096 ({out})"))
            if h > 4096 or w > 4096:
                found.append(("limits", "violation", f"{h}x{w} > 4096 ({out})"))
    return found


def _check_conv_dla(node: onnx.NodeProto, ctx: _Ctx) -> list[tuple[str, str, str]]:
    g = ctx.g
    problems: list[str] = []
    weight = _static(g, node.input[1]) if len(node.input) > 1 else None
    kernel = _ints(node, "kernel_shape") or (weight[2:] if weight else None)
    if kernel is None:
        return [("dla-conv", "violation", "kernel size unknown")]
    if len(kernel) != 2:
        return [("dla-conv", "violation", f"{len(kernel)}-D convolution (DLA: 2-D only)")]
    strides = _ints(node, "strides") or [1, 1]
    dilations = _ints(node, "dilations") or [1, 1]
    pads = _ints(node, "pads") or [0, 0, 0, 0]
    group = int(_attr(node, "group", 1))  # type: ignore[call-overload]
    auto_pad = _str_attr(node, "auto_pad", "NOTSET")
    if any(not 1 <= k <= 32 for k in kernel):
        problems.append(f"kernel {kernel[0]}x{kernel[1]} outside 1-32")
    if any(not 1 <= s <= 8 for s in strides):
        problems.append(f"stride {strides} outside 1-8")
    if any(not 1 <= d <= 32 for d in dilations):
        problems.append(f"dilation {dilations} outside 1-32")
    if auto_pad in ("NOTSET", "VALID"):
        for i, p in enumerate(pads):
            k = kernel[i % 2]
            if not 0 <= p <= 31 or p >= k:
                problems.append(f"padding {pads} not within 0-31 and < kernel {kernel}")
                break
    if not 1 <= group <= 8192:
        problems.append(f"groups {group} outside 1-8192")
    if weight is not None:
        out_c, in_c = weight[0], weight[1] * group
        if not (1 <= out_c <= 8192 and 1 <= in_c <= 8192):
            problems.append(f"channels {in_c} -> {out_c} outside 1-8192")
    found = [("dla-conv", "violation", "; ".join(problems))] if problems else []
    if auto_pad not in ("NOTSET", "VALID"):
        found.append(("dla-conv", "warning", f"auto_pad {auto_pad}: padding not checked"))
    return found


def _check_pool_dla(node: onnx.NodeProto, ctx: _Ctx) -> list[tuple[str, str, str]]:
    op = node.op_type
    if op.startswith("Global"):
        shape = _static(ctx.g, node.input[0])
        if shape is None or len(shape) != 4:
            return [("dla-pool", "violation", f"{op}: window unknown")]
        kernel, strides = shape[2:], []  # one window over the whole map: no stride
    else:
        kernel = _ints(node, "kernel_shape") or []
        strides = _ints(node, "strides") or [1] * len(kernel)
    problems = []
    if len(kernel) != 2:
        problems.append(f"{len(kernel)}-D pooling")
    if any(not 1 <= k <= 8 for k in kernel):
        problems.append(f"window {'x'.join(map(str, kernel))} outside 1-8")
    if any(not 1 <= s <= 16 for s in strides):
        problems.append(f"stride {strides} outside 1-16")
    return [("dla-pool", "violation", f"{op}: {'; '.join(problems)}")] if problems else []


def _resize_scales(node: onnx.NodeProto, ctx: _Ctx) -> list[float] | None:
    g = ctx.g
    if len(node.input) > 2 and node.input[2]:
        scales = g.value(node.input[2])
        if scales is not None and scales.size:
            return [float(s) for s in scales.reshape(-1)]
    x = _static(g, node.input[0])
    y = _static(g, node.output[0])
    if x is not None and y is not None and len(x) == len(y):
        return [b / a for a, b in zip(x, y, strict=True)]
    return None


def _check_resize_dla(node: onnx.NodeProto, ctx: _Ctx) -> list[tuple[str, str, str]]:
    mode = _str_attr(node, "mode", "nearest")
    if mode not in ("nearest", "linear"):
        return [("dla-resize", "violation", f"{mode} resize (DLA: nearest or bilinear)")]
    scales = _resize_scales(node, ctx)
    if scales is None:
        return [("dla-resize", "violation", "scales unknown")]
    limit = 32 if mode == "nearest" else 4
    x = _static(ctx.g, node.input[0])
    y = _static(ctx.g, node.output[0])
    sizes = f" ({'x'.join(map(str, x[2:]))} -> {'x'.join(map(str, y[2:]))})" if x and y else ""
    if any(abs(s - 1) > 1e-6 for s in scales[:2]):
        return [("dla-resize", "violation", f"{mode}: resizes the batch or channel axis (scales {'x'.join(map(_fmt_scale, scales))})")]
    bad = [s for s in scales[2:] if abs(s - round(s)) > 1e-4 * max(s, 1) or not 1 <= round(s) <= limit]
    if bad:
        spatial = "x".join(_fmt_scale(s) for s in scales[2:])
        return [("dla-resize", "violation", f"{mode}: scales {spatial}{sizes}: DLA takes integer scales 1-{limit}")]
    return []


def _dla(node: onnx.NodeProto, key: str, ctx: _Ctx) -> list[tuple[str, str, str]]:
    op = node.op_type
    g = ctx.g
    found: list[tuple[str, str, str]] = []
    if key in ctx.norm_expansion:
        found.append(("normalization", "violation", f"{op} is part of a LayerNorm written out as ReduceMean/Sub/Pow/Sqrt/Div"))
    if op in NORMALIZATION_OPS:
        return [*found, ("normalization", "violation", f"{op} is not BatchNormalization")]
    if op in ERF_GELU_OPS:
        return [*found, ("erf-gelu", "violation", f"{op} (GELU)")]
    if op in REDUCE_OPS:
        return [*found, ("reduce", "violation", op)]
    if op in SHAPE_OPS:
        return [*found, ("shape-ops", "violation", f"{op}: shape arithmetic")]
    if op == "Softmax":
        return [*found, ("softmax", "warning", "Softmax on DLA: FP16 only, Orin only, approximate")]
    if op in SOFTMAX_OPS:
        return [*found, ("softmax", "violation", op)]
    if op in ACTIVATION_OPS:
        return found if op in ALLOWED_ACTIVATIONS else [*found, ("activation", "violation", f"{op} activation")]
    if op in MATMUL_OPS:
        return found + _matmul_findings(node, ctx, dla=True)
    if op in QDQ_OPS:
        return found + _check_qdq(node, ctx)
    if op == "Conv":
        return found + _check_conv_dla(node, ctx)
    if op == "ConvTranspose":
        pads = _ints(node, "pads") or []
        problems = []
        if any(pads):
            problems.append(f"padding {pads}")
        if int(_attr(node, "group", 1)) != 1:  # type: ignore[call-overload]
            problems.append("groups")
        if any(d != 1 for d in _ints(node, "dilations") or []):
            problems.append("dilation")
        return found + ([("dla-deconv", "violation", ", ".join(problems))] if problems else [])
    if op in ("MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool"):
        return found + _check_pool_dla(node, ctx)
    if op == "Resize":
        return found + _check_resize_dla(node, ctx)
    if op == "Concat":
        axis = int(_attr(node, "axis", 0))  # type: ignore[call-overload]
        shape = _static(g, node.output[0])
        rank = len(shape) if shape is not None else 4
        if axis % rank != 1:
            return [*found, ("dla-concat", "violation", f"concatenation on axis {axis} (DLA: channel axis only)")]
        return found
    if op == "Slice":
        shape = _static(g, node.input[0])
        static = all(g.is_constant(i) for i in node.input[1:] if i)
        if shape is None or len(shape) != 4 or not static:
            return [*found, ("dla-slice", "violation", "slice is not static and 4-D")]
        return [*found, ("dla-slice", "warning", "slice on DLA: FP16 only")]
    if op in DLA_OK:
        return found
    if op in VIEW_OPS:
        return [*found, ("dla-layers", "violation", f"{op}: no shuffle layer in the DLA table")]
    return [*found, ("dla-layers", "violation", f"{op} is not a DLA layer")]


def _graph_io_findings(g: GraphIndex, rule_sets: list[str]) -> list[Finding]:
    findings: list[Finding] = []
    inits = set(g.initializers)
    ios = [("graph input", vi) for vi in g.graph.input if vi.name not in inits] + [("graph output", vi) for vi in g.graph.output]
    for kind, vi in ios:
        shape = g.shape(vi.name)
        for rule_set in rule_sets:
            if shape is None or not all(isinstance(d, int) for d in shape):
                dims = "unknown rank" if shape is None else "x".join(str(d) if d is not None else "?" for d in shape)
                findings.append(
                    Finding(
                        node=vi.name,
                        op=kind,
                        rule="dynamic-shape",
                        rule_set=rule_set,  # type: ignore[arg-type]
                        verdict="violation",
                        message=f"{kind} '{vi.name}' has dynamic dimensions ({dims}): export with a static batch",
                        source=RULES["dynamic-shape"].sources[rule_set],
                    )
                )
            elif rule_set == "restricted" and kind == "graph input" and shape and int(shape[0]) > 16:  # type: ignore[arg-type]
                findings.append(
                    Finding(
                        node=vi.name,
                        op=kind,
                        rule="limits",
                        rule_set="restricted",
                        verdict="violation",
                        message=f"batch {shape[0]} > 16",
                        source=RULES["limits"].sources["restricted"],
                    )
                )
    return findings


def check_graph(g: GraphIndex, rules: str = "restricted", *, model: str | None = None, path: str | None = None) -> CheckReport:
    """Check an indexed graph (see `check_onnx`).

    Long because it runs both rule sets over every node and gathers findings, counts and the verdict
    in one pass.
    """
    if rules not in RULE_SELECTIONS:
        raise UsageError(f"unknown rule set {rules!r}", hint="use --rules restricted, dla or all")
    rule_sets = ["restricted", "dla"] if rules == "all" else [rules]
    ctx = _Ctx(g)
    results: list[NodeResult] = []
    io = _graph_io_findings(g, rule_sets)
    for name in dict.fromkeys(f.node for f in io):
        mine = [f for f in io if f.node == name]
        results.append(
            NodeResult(op=mine[0].op, name=name, verdict="violation", rule=mine[0].rule, source=mine[0].source, message=mine[0].message, findings=mine)
        )
    for position, node in enumerate(g.nodes):
        key = _node_key(node, position)
        # A node fed only by constants folds away at build time; only its Q/DQ zero points matter.
        folded = node.op_type == "Constant" or (bool(node.input) and all(g.is_constant(i) for i in node.input))
        findings: list[Finding] = []
        for rule_set in rule_sets:
            if folded:
                raw = _check_qdq(node, ctx) if node.op_type in QDQ_OPS else []
            else:
                raw = _restricted(node, key, ctx) if rule_set == "restricted" else _dla(node, key, ctx)
            findings += [
                Finding(node=key, op=node.op_type, rule=rule, rule_set=rule_set, verdict=verdict, message=message, source=RULES[rule].sources[rule_set])  # type: ignore[arg-type]
                for rule, verdict, message in raw
            ]
        worst = next((f for f in findings if f.verdict == "violation"), None) or next(iter(findings), None)
        results.append(
            NodeResult(
                op=node.op_type,
                name=key,
                verdict=worst.verdict if worst else "ok",
                rule=worst.rule if worst else None,
                source=worst.source if worst else None,
                message=worst.message if worst else None,
                findings=findings,
            )
        )
    violations = [f for r in results for f in r.findings if f.verdict == "violation"]
    warnings = [f for r in results for f in r.findings if f.verdict == "warning"]
    by_op: dict[str, VerdictCounts] = {}
    for r in results:
        counts = by_op.setdefault(r.op, VerdictCounts())
        setattr(counts, r.verdict, getattr(counts, r.verdict) + 1)
    by_rule: dict[str, VerdictCounts] = {}
    for f in [*violations, *warnings]:
        counts = by_rule.setdefault(f.rule, VerdictCounts())
        setattr(counts, f.verdict, getattr(counts, f.verdict) + 1)
    per_set = {s: not any(f.rule_set == s for f in violations) for s in rule_sets}
    return CheckReport(
        model=model,
        path=path,
        rules=rules,  # type: ignore[arg-type]
        compliant=all(per_set.values()),
        rule_sets=per_set,
        nodes=results,
        violations=violations,
        warnings=warnings,
        counts_by_op=dict(sorted(by_op.items())),
        counts_by_rule=dict(sorted(by_rule.items())),
        op_set=sorted(Counter(n.op_type for n in g.nodes)),
    )


def check_onnx(model: str | Path | onnx.ModelProto, rules: str = "restricted", *, name: str | None = None) -> CheckReport:
    """Check an ONNX graph (a path or a ModelProto) against `rules`: restricted | dla | all.

    A path that is not an ONNX file raises CsaError("X is not an ONNX model (...)").
    """
    if rules not in RULE_SELECTIONS:
        raise UsageError(f"unknown rule set {rules!r}", hint="use --rules restricted, dla or all")
    path = None if not isinstance(model, str | Path) else str(model)
    g = index_graph(load_onnx(model))
    # Shapes behind run-time shape arithmetic (swin) are still static at a fixed input size: fill them in
    # so that only truly dynamic dims are reported as such; the shape ops themselves stay and are flagged.
    complete_shapes(g, fold=False)
    return check_graph(g, rules, model=name, path=path)

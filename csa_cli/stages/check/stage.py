"""A static checker of an ONNX graph against TensorRT restricted mode (safety scope) and Orin DLA.

The official per-layer safety list ships only with NVIDIA's DRIVE OS SDK: it is not public. The
rules here rest on public fragments (shared/reference/restricted-mode.md), and every finding
names the rule and its source so that a reader can weigh it. `trtexec --restricted` on the
target remains the final word.

Two rule sets, reported separately: `restricted` (GPU safety scope; the default) and `dla`
(DLA standalone on Orin); `all` runs both. A graph is compliant when it has no violations;
warnings (layers no public source confirms either way, DLA FP16-only layers) do not fail it.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from csa_cli.errors import UsageError
from csa_cli.graph.costmodel import GraphIndex, complete_shapes, index_graph
from csa_cli.graph.onnx_file import load_onnx
from csa_cli.paths import atomic_write_text

if TYPE_CHECKING:
    import onnx

    from csa_cli.records import Record

RuleSet = Literal["restricted", "dla"]
RuleSelection = Literal["restricted", "dla", "all"]
Verdict = Literal["ok", "violation", "warning"]
RULE_SELECTIONS: tuple[str, ...] = ("restricted", "dla", "all")

RULE_SOURCE_NOTE = (
    "Rule source: the official TensorRT safety (restricted-mode) layer list ships only with the NVIDIA DRIVE OS SDK and is not public. "
    "These rules rest on public fragments, each named below; a graph that passes here should still be built with "
    "`trtexec --restricted` (or `--safe`) on the target before it is relied on."
)

# Public sources (shared/reference/restricted-mode.md).
SRC_BLOG = (
    "NVIDIA technical blog 'Emulating the Attention Mechanism in Transformer Models with a Fully Convolutional Network' (Jan 2024): "
    "LayerNorm, GELU, Softmax and MatMul between activations are not available in TensorRT restricted (safety) mode on DRIVE Orin"
)
SRC_FORUM = "NVIDIA developer forum (TensorRT 7 era): no MatrixMultiply layer in safety restricted mode"
SRC_SAFETY_SUMMARY = "TensorRT 7-era safety summary (third-party): static shapes only, explicit batch; batch <= 16, channels <= 4096, H, W <= 4096"
SRC_DL4AGX = (
    "NVIDIA DL4AGX Models/ConvSelfAttention reference code, comments on DRIVE OS TensorRT 8.6 restricted mode: "
    "Resize given sizes is refused, Resize given scales is accepted; ReduceMean is refused"
)
SRC_PARSER = "TensorRT ONNX parser (onnx-tensorrt): only symmetric quantization is accepted; every QuantizeLinear/DequantizeLinear zero point must be 0"
SRC_ALLOWLIST = (
    "this project's restricted-mode allowlist, assembled from the public fragments listed here and the layers NVIDIA's CSA network "
    "uses in restricted mode (conv, BN, pointwise activations, reshape/transpose, elementwise, resize with scales, pooling)"
)
SRC_DLA = "TensorRT developer guide, DLA supported layers and restrictions"


class Rule(BaseModel):
    """One rule: what it checks, which rule sets apply it, and its public source per set."""

    id: str
    title: str
    sources: dict[str, str]

    @property
    def sets(self) -> tuple[str, ...]:
        return tuple(self.sources)


RULES: dict[str, Rule] = {
    r.id: r
    for r in [
        Rule(
            id="op-allowlist",
            title="layer not on the restricted-mode allowlist (warning: allowed by no public source either way)",
            sources={"restricted": SRC_ALLOWLIST},
        ),
        Rule(
            id="activation",
            title="activation other than ReLU, Sigmoid, TanH, clipped ReLU, leaky ReLU",
            sources={"restricted": f"{SRC_BLOG}; {SRC_ALLOWLIST}", "dla": f"{SRC_DLA}: activation: ReLU, Sigmoid, TanH, clipped ReLU, leaky ReLU only"},
        ),
        Rule(id="erf-gelu", title="Erf / GELU", sources={"restricted": SRC_BLOG, "dla": f"{SRC_DLA}: no Erf/GELU activation"}),
        Rule(id="softmax", title="Softmax", sources={"restricted": SRC_BLOG, "dla": f"{SRC_DLA}: softmax: FP16 only, Orin only, approximate"}),
        Rule(
            id="normalization",
            title="normalization other than BatchNormalization (LayerNorm, InstanceNorm, GroupNorm, or their ReduceMean/Pow/Sqrt/Div expansion)",
            sources={"restricted": SRC_BLOG, "dla": f"{SRC_DLA}: no normalization layers other than foldable BN"},
        ),
        Rule(id="reduce", title="Reduce* layers", sources={"restricted": SRC_DL4AGX, "dla": f"{SRC_DLA}: no Reduce layers"}),
        Rule(
            id="matmul-activations",
            title="MatMul / Einsum / Gemm whose two inputs are both activations (a constant input is a fully connected layer: warning only)",
            sources={"restricted": f"{SRC_FORUM}; {SRC_BLOG}", "dla": f"{SRC_DLA}: no MatMul between two activations"},
        ),
        Rule(id="resize-sizes", title="Resize given sizes (scales are accepted)", sources={"restricted": SRC_DL4AGX}),
        Rule(
            id="dynamic-shape",
            title="dynamic dimensions (symbolic or unknown)",
            sources={"restricted": SRC_SAFETY_SUMMARY, "dla": f"{SRC_DLA}: DLA standalone loadables have static dimensions"},
        ),
        Rule(
            id="qdq-zero-point",
            title="QuantizeLinear/DequantizeLinear with a non-zero (or unknown) zero point",
            sources={"restricted": SRC_PARSER, "dla": SRC_PARSER},
        ),
        Rule(
            id="shape-ops",
            title="shape arithmetic left in the graph (Shape, Gather, Where, Mod, ConstantOfShape, Range, ... or a shape computed at run time)",
            sources={"restricted": SRC_SAFETY_SUMMARY, "dla": f"{SRC_DLA}: no such layers on DLA"},
        ),
        Rule(id="limits", title="size limits: batch <= 16, channels <= 4096, H, W <= 4096", sources={"restricted": SRC_SAFETY_SUMMARY}),
        Rule(id="dla-layers", title="layer not in the DLA layer table (Reshape/Transpose/Flatten: no shuffle; unary: Abs only; ...)", sources={"dla": SRC_DLA}),
        Rule(
            id="dla-conv",
            title="convolution / fully connected limits: 2D; kernel 1-32; stride 1-8; padding 0-31 and < kernel; channels and groups 1-8192; dilation 1-32",
            sources={"dla": SRC_DLA},
        ),
        Rule(id="dla-deconv", title="deconvolution: padding 0, no groups, no dilation", sources={"dla": SRC_DLA}),
        Rule(id="dla-pool", title="pooling: max or average; window 1-8; stride 1-16", sources={"dla": SRC_DLA}),
        Rule(id="dla-resize", title="resize: integer scales, 1-32 nearest, 1-4 bilinear", sources={"dla": SRC_DLA}),
        Rule(id="dla-concat", title="concatenation on the channel axis only", sources={"dla": SRC_DLA}),
        Rule(id="dla-slice", title="slice: FP16 only, static, 4-D", sources={"dla": SRC_DLA}),
    ]
}

NORMALIZATION_OPS = {"LayerNormalization", "InstanceNormalization", "GroupNormalization", "LpNormalization", "MeanVarianceNormalization", "RMSNormalization"}
ERF_GELU_OPS = {"Erf", "Gelu", "FastGelu", "BiasGelu"}
SOFTMAX_OPS = {"Softmax", "LogSoftmax", "Hardmax"}
REDUCE_OPS = {
    "ReduceMean",
    "ReduceSum",
    "ReduceMax",
    "ReduceMin",
    "ReduceProd",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceSumSquare",
    "ArgMax",
    "ArgMin",
}
SHAPE_OPS = {
    "Shape",
    "Size",
    "Gather",
    "GatherElements",
    "GatherND",
    "Where",
    "Mod",
    "ConstantOfShape",
    "Range",
    "Expand",
    "NonZero",
    "Equal",
    "Less",
    "LessOrEqual",
    "Greater",
    "GreaterOrEqual",
    "Not",
    "And",
    "Or",
    "Xor",
    "ScatterND",
    "ScatterElements",
    "Scatter",
    "Cast",
    "CastLike",
    "Trilu",
    "CumSum",
}
ACTIVATION_OPS = {
    "Relu",
    "Sigmoid",
    "Tanh",
    "Clip",
    "LeakyRelu",
    "Elu",
    "Selu",
    "Celu",
    "Softplus",
    "Softsign",
    "HardSigmoid",
    "HardSwish",
    "Mish",
    "PRelu",
    "ThresholdedRelu",
    "Swish",
}
ALLOWED_ACTIVATIONS = {"Relu", "Sigmoid", "Tanh", "Clip", "LeakyRelu"}
MATMUL_OPS = {"MatMul", "Gemm", "Einsum"}
QDQ_OPS = {"QuantizeLinear", "DequantizeLinear"}
# Operator-form quantization: the TensorRT parser takes Q/DQ only.
QOPERATOR_OPS = {"QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger", "DynamicQuantizeLinear", "QLinearAdd", "QLinearMul"}
RESTRICTED_OK = {
    "Conv",
    "ConvTranspose",
    "BatchNormalization",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Max",
    "Min",
    "Sum",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "Reshape",
    "Transpose",
    "Flatten",
    "Squeeze",
    "Unsqueeze",
    "Concat",
    "Resize",
    "Identity",
    "Constant",
    "Dropout",
    *ALLOWED_ACTIVATIONS,
    *QDQ_OPS,
}
# TensorRT has these layers; no public source says whether the safety scope keeps them.
RESTRICTED_UNCONFIRMED = {
    "Pad",
    "Slice",
    "Split",
    "Pow",
    "Sqrt",
    "Exp",
    "Log",
    "Reciprocal",
    "Abs",
    "Neg",
    "Floor",
    "Ceil",
    "DepthToSpace",
    "SpaceToDepth",
    "Tile",
}
VIEW_OPS = {"Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze"}
DLA_ELEMENTWISE = {"Add", "Sub", "Mul", "Div", "Max", "Min", "Pow", "Sum"}
DLA_OK = {"BatchNormalization", "Identity", "Constant", "Dropout", "Abs", *DLA_ELEMENTWISE, *QDQ_OPS}
# Inputs (by position) that hold a shape, not data: a run-time value there is a dynamic shape.
SHAPE_INPUTS: dict[str, set[int]] = {
    "Reshape": {1},
    "Expand": {1},
    "Tile": {1},
    "Resize": {1, 2, 3},
    "Upsample": {1},
    "Slice": {1, 2, 3, 4},
    "Pad": {1},
    "Squeeze": {1},
    "Unsqueeze": {1},
    "Split": {1},
    "TopK": {1},
    "ConstantOfShape": {0},
    "Range": {0, 1, 2},
}


class Finding(BaseModel):
    """One rule's verdict on one node (or graph input/output)."""

    node: str
    op: str
    rule: str
    rule_set: RuleSet
    verdict: Literal["violation", "warning"]
    message: str
    source: str


class NodeResult(BaseModel):
    """Per node: op, name, the worst verdict, and the rule and source behind it."""

    op: str
    name: str
    verdict: Verdict
    rule: str | None = None
    source: str | None = None
    message: str | None = None
    findings: list[Finding] = Field(default_factory=list)


class VerdictCounts(BaseModel):
    ok: int = 0
    violation: int = 0
    warning: int = 0


class CheckReport(BaseModel):
    """The checker's verdict on one graph."""

    model: str | None = None
    path: str | None = None
    rules: RuleSelection
    compliant: bool
    rule_sets: dict[str, bool] = Field(description="compliance per rule set that was run")
    nodes: list[NodeResult]
    violations: list[Finding]
    warnings: list[Finding]
    counts_by_op: dict[str, VerdictCounts]
    counts_by_rule: dict[str, VerdictCounts]
    op_set: list[str]
    rule_source_note: str = RULE_SOURCE_NOTE

    @property
    def violated_rules(self) -> list[str]:
        return sorted({f.rule for f in self.violations})

    @property
    def violated_ops(self) -> list[str]:
        return sorted({f.op for f in self.violations})

    def summary(self) -> str:
        """One line: the verdict per rule set, then the violations by rule."""
        sets = ", ".join(f"{name}: {'compliant' if ok else 'NOT compliant'}" for name, ok in self.rule_sets.items())
        if self.compliant:
            return f"compliant ({sets}); 0 violations, {len(self.warnings)} warnings"
        reasons = ", ".join(f"{rule} x{c.violation}" for rule, c in self.counts_by_rule.items() if c.violation)
        return f"NOT compliant ({sets}); {len(self.violations)} violations: {reasons}"

    def verdict(self, report: str | None = None) -> dict[str, object]:
        """The "check" field a record carries downstream of `csa check`."""
        return {
            "rules": self.rules,
            "compliant": self.compliant,
            "rule_sets": self.rule_sets,
            "violations": len(self.violations),
            "warnings": len(self.warnings),
            "reasons": {rule: c.violation for rule, c in self.counts_by_rule.items() if c.violation},
            "report": report,
        }

    def to_markdown(self) -> str:
        title = self.model or (Path(self.path).name if self.path else "ONNX graph")
        lines = [
            f"# TensorRT compliance check: {title}",
            "",
            f"- graph: `{self.path}`" if self.path else "- graph: (in memory)",
            f"- rule set: `{self.rules}`",
            f"- verdict: **{self.summary()}**",
            f"- nodes: {len(self.nodes)}; op set: {', '.join(self.op_set)}",
            "",
            f"> {self.rule_source_note}",
            "",
            "## Counts by rule",
            "",
            "| rule | rule set(s) | violations | warnings |",
            "| --- | --- | ---: | ---: |",
        ]
        for rule, c in self.counts_by_rule.items():
            sets = sorted({f.rule_set for f in [*self.violations, *self.warnings] if f.rule == rule})
            lines.append(f"| {rule} | {', '.join(sets)} | {c.violation} | {c.warning} |")
        lines += ["", "## Counts by op", "", "| op | ok | violation | warning |", "| --- | ---: | ---: | ---: |"]
        for op, c in self.counts_by_op.items():
            lines.append(f"| {op} | {c.ok} | {c.violation} | {c.warning} |")
        for heading, findings in (("Violations", self.violations), ("Warnings", self.warnings)):
            lines += ["", f"## {heading} ({len(findings)})", ""]
            if not findings:
                lines.append("None.")
                continue
            lines += ["| node | op | rule set | rule | detail |", "| --- | --- | --- | --- | --- |"]
            lines += [f"| `{f.node}` | {f.op} | {f.rule_set} | {f.rule} | {f.message} |" for f in findings]
        used = sorted({(f.rule, f.rule_set) for f in [*self.violations, *self.warnings]})
        lines += ["", "## Rules and their sources", "", "| rule | rule set | checks | source |", "| --- | --- | --- | --- |"]
        for rule in RULES.values():
            for rule_set, source in rule.sources.items():
                if self.rules in ("all", rule_set):
                    mark = " (fired)" if (rule.id, rule_set) in used else ""
                    lines.append(f"| {rule.id}{mark} | {rule_set} | {rule.title} | {source} |")
        return "\n".join(lines) + "\n"

    def write_markdown(self, folder: str | Path) -> Path:
        """Write the markdown report into `folder` (atomically); returns its path."""
        stem = self.model or (Path(self.path).stem if self.path else "graph")
        path = Path(folder) / f"check-{stem}-{self.rules}.md"
        return atomic_write_text(path, self.to_markdown())


# --- the rules ------------------------------------------------------------------------------


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


def _ints(node: onnx.NodeProto, name: str) -> list[int] | None:
    value = _attr(node, name)
    return None if value is None else [int(v) for v in value]  # type: ignore[union-attr]


def _static(g: GraphIndex, name: str) -> list[int] | None:
    info = g.info(name)
    if info is None or not info.static or info.shape is None:
        return None
    return [int(d) for d in info.shape]  # type: ignore[arg-type]


def _layernorm_expansion(g: GraphIndex) -> dict[str, str]:
    """Nodes of a LayerNorm written out as ReduceMean -> Sub -> Pow/Mul -> ReduceMean -> Add -> Sqrt -> Div."""
    pattern = {"Sub", "Pow", "Mul", "ReduceMean", "Add", "Sqrt", "Div", "Reciprocal"}
    marked: dict[str, str] = {}
    for node in g.nodes:
        if node.op_type != "ReduceMean":
            continue
        subs = [c for c in g.consumers.get(node.output[0], []) if c.op_type == "Sub"]
        for sub in subs:
            found: dict[str, onnx.NodeProto] = {}
            frontier = [sub]
            while frontier and len(found) < 12:
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
                marked[node.name or node.output[0]] = "ReduceMean"
                for key, n in found.items():
                    marked[key] = n.op_type
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
    return f"{s:.4g}"


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
    auto_pad = _attr(node, "auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)
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
        kernel, strides = shape[2:], [1, 1]
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
    mode = _attr(node, "mode", b"nearest")
    mode = mode.decode() if isinstance(mode, bytes) else str(mode)
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
        info = g.info(vi.name)
        shape = info.shape if info is not None else None
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
    """Check an indexed graph (see `check_onnx`)."""
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


def rule_table() -> list[dict[str, str]]:
    """Every rule with its rule sets and sources (for docs and `csa check --list-rules`)."""
    return [{"rule": r.id, "rule_set": s, "checks": r.title, "source": src} for r in RULES.values() for s, src in r.sources.items()]


def check_stage(
    *,
    record: Record | None = None,
    path: str | Path | None = None,
    model: str | None = None,
    rules: str = "restricted",
    report_dir: str | Path | None = None,
    manifest: str | Path | None = None,
) -> tuple[Record, CheckReport]:
    """The `csa check` stage: the input record (or one made for a file / a freshly exported MODEL) with "check" added.

    A MODEL is exported first (weights auto, the model's default batch and size).
    """
    from csa_cli.records import make_record

    if rules not in RULE_SELECTIONS:
        raise UsageError(f"unknown rule set {rules!r}", hint="use --rules restricted, dla or all")
    if (record is None and model is not None) or (record is not None and record.kind == "checkpoint"):
        from csa_cli.stages.export.stage import export_stage

        # A MODEL, or `csa pull M | csa check`: export first, with the checkpoint's weights if piped.
        name = record.model if record is not None else model
        if not name:
            raise UsageError("the checkpoint record names no model")
        record = export_stage(name, weights=(record.weights if record is not None else None) or "auto", manifest=manifest)
    if record is not None:
        if record.kind in ("engine", "bundle"):
            raise UsageError(f"csa check reads ONNX graphs, not a {record.kind!r}", hint="check the ONNX or quantized record the engine was built from")
        if not record.path:
            raise UsageError(f"the {record.kind!r} record names no file to check")
        path = record.path
    if path is None:
        raise UsageError("no input: give a MODEL or an ONNX file, or pipe the record of a previous csa stage")
    report = check_onnx(path, rules, name=record.model if record is not None else None)
    report_path = str(report.write_markdown(report_dir)) if report_dir is not None else None
    if record is None:
        record = make_record("onnx", path=str(path))
    return record.with_fields(check=report.verdict(report_path)), report

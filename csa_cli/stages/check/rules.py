"""The rule catalogue of a static checker of an ONNX graph against TensorRT restricted mode (safety scope) and Orin DLA.

The official per-layer safety list ships only with NVIDIA's DRIVE OS SDK: it is not public. The
rules here rest on public fragments (shared/reference/restricted-mode.md), and every finding
names the rule and its source so that a reader can weigh it. `trtexec --restricted` on the
target remains the final word.

Two rule sets, reported separately: `restricted` (GPU safety scope; the default) and `dla`
(DLA standalone on Orin); `all` runs both. A graph is compliant when it has no violations;
warnings (layers no public source confirms either way, DLA FP16-only layers) do not fail it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from csa_cli.graph.qdq import QDQ_OPS

RuleSet = Literal["restricted", "dla"]
RuleSelection = Literal["restricted", "dla", "all"]
Verdict = Literal["ok", "violation", "warning"]


SRC_DL4AGX = (
    "NVIDIA DL4AGX Models/ConvSelfAttention reference code, comments on DRIVE OS TensorRT 8.6 restricted mode: "
    "Resize given sizes is refused, Resize given scales is accepted; ReduceMean is refused"
)


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


# Operator-form quantization: the TensorRT parser takes Q/DQ only.
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

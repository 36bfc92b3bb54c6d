"""Convolutional Self-Attention (CSA): a transformer-like backbone built only from ops that
TensorRT's restricted (safety) mode accepts — Conv, BatchNorm, Sigmoid, Mul, Add, Reshape,
Transpose, Resize (with scales), AveragePool, Flatten.

The block (dim C, heads h, reduced side s, N = s*s), see shared/reference/csa-architecture.md:
    v = swish(BN(dw5x5(x)));  v_s = resize(v -> s x s);  q = BN(conv1x1 C->hN (v_s))
    k = rotate(q) (per head, the N x N channel/position matrix transposed);  a = q * k
    g = sigmoid(BN(conv1x1 hN->C (resize(a -> H x W))))
    out = x + conv1x1 3C->C(swish(BN(conv1x1 C->3C(g * v))))

Two forms of the same network: the training form (separate BN layers) and the inference form
(`CSANet.for_inference()`: BN folded into convs, step 7's conv+BN moved before the resize where
the reduced map is smaller than the full one). They agree within float rounding.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from csa_cli.errors import CsaError, UsageError

CSA_ARCH_VERSION = 1  # bumped when parameter names or the forward change incompatibly


# --------------------------------------------------------------------------- configs


@dataclass(frozen=True)
class CSAConfig:
    """One CSA variant. Sequences have one value per stage."""

    depths: tuple[int, ...]
    dims: tuple[int, ...]
    heads: tuple[int, ...]
    reduced: tuple[int, ...]  # reduced side s per stage
    mlp_ratio: int = 3
    dw_kernel: int = 5
    stem_kernel: int = 7
    stem_stride: int = 4
    layer_scale: float | None = None  # gamma init value; None: no layer scale (the reference default)
    drop_path_rate: float = 0.0
    bn_eps: float = 1e-5
    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes kept in checkpoints

    def __post_init__(self) -> None:
        n = len(self.depths)
        if not (len(self.dims) == len(self.heads) == len(self.reduced) == n) or n == 0:
            raise UsageError("CSA config: depths, dims, heads and reduced need one value per stage")
        if min(self.depths) < 1 or min(self.dims) < 1 or min(self.heads) < 1 or min(self.reduced) < 1:
            raise UsageError("CSA config: depths, dims, heads and reduced must be positive")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("depths", "dims", "heads", "reduced"):
            data[key] = list(data[key])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CSAConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise CsaError(f"unknown CSA config keys: {', '.join(sorted(unknown))}", hint=f"known keys: {', '.join(sorted(known))}")
        values = dict(data)
        for key in ("depths", "dims", "heads", "reduced"):
            if key in values:
                values[key] = tuple(int(v) for v in values[key])
        return cls(**values)


_VARIANTS: dict[str, CSAConfig] = {}


def register_variant(name: str, config: CSAConfig) -> CSAConfig:
    """Add a named variant (timm style: a registry of configs looked up by name)."""
    _VARIANTS[name] = config
    return config


# csa_nano: about 3.8 M parameters: fast tests and proxy training
register_variant(
    "csa_nano",
    CSAConfig(depths=(2, 2, 4, 2), dims=(40, 80, 160, 320), heads=(1, 1, 2, 4), reduced=(14, 14, 14, 7)),
)
# csa_tiny: the configuration NVIDIA trained: 27.64 M parameters at 1000 classes
register_variant(
    "csa_tiny",
    CSAConfig(depths=(3, 4, 6, 3), dims=(96, 192, 384, 768), heads=(1, 2, 4, 8), reduced=(14, 14, 14, 7)),
)
# csa_small: csa_tiny with a deeper third stage (21 blocks): about 50.2 M parameters
register_variant(
    "csa_small",
    CSAConfig(depths=(3, 4, 21, 3), dims=(96, 192, 384, 768), heads=(1, 2, 4, 8), reduced=(14, 14, 14, 7)),
)


def list_variants() -> list[str]:
    return sorted(_VARIANTS)


def variant_config(name: str) -> CSAConfig:
    key = name.replace("-", "_")
    if key not in _VARIANTS:
        raise CsaError(f"unknown CSA variant '{name}'", hint=f"known variants: {', '.join(list_variants())}")
    return _VARIANTS[key]


# --------------------------------------------------------------------------- resize helpers


def exact_scale(in_size: int, out_size: int) -> float:
    """The scale that makes floor(in_size * scale) == out_size in float32 AND float64.

    ONNX Resize given scales computes the output size as floor(in * scale) (float32 in ONNX
    Runtime and TensorRT); out/in itself can land just below an integer (27 * (14/27) -> 13).
    Nudge out/in upward to the first float32 value that floors correctly in both precisions,
    and use that same value in PyTorch, so both sample the same coordinates.
    """
    if in_size < 1 or out_size < 1:
        raise UsageError(f"cannot resize {in_size} -> {out_size}: the feature map is too small", hint="use a larger input (a multiple of 32, at least 64)")
    scale = np.float32(out_size / in_size)
    for _ in range(64):
        ok32 = math.floor(float(np.float32(in_size) * scale)) == out_size
        ok64 = math.floor(in_size * float(scale)) == out_size
        if ok32 and ok64:
            return float(scale)
        scale = np.nextafter(scale, np.float32(np.inf))  # float32 in, float32 out
    raise AssertionError(f"no float32 scale maps {in_size} to {out_size}")  # unreachable for sane sizes


def resize_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize to exactly `size`, expressed with scales (restricted mode refuses sizes)."""
    h, w = int(x.shape[-2]), int(x.shape[-1])
    if (h, w) == tuple(size):
        return x
    scales = (exact_scale(h, size[0]), exact_scale(w, size[1]))
    return F.interpolate(x, scale_factor=scales, mode="bilinear", align_corners=False, recompute_scale_factor=False)


def swish(x: torch.Tensor) -> torch.Tensor:
    # written out (not F.silu) so every exporter emits Sigmoid + Mul: no Swish op in restricted mode / DLA
    return x * torch.sigmoid(x)


def rotate(q: torch.Tensor, heads: int, side: int) -> torch.Tensor:
    """Per sample and head, view the N channels x N positions as an N x N matrix and transpose it.

    -1 for the batch axis keeps the Reshape targets constant, so a dynamic batch needs no shape ops.
    """
    n = side * side
    return q.reshape(-1, heads, n, n).transpose(2, 3).reshape(-1, heads * n, side, side)


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    if p == 0.0 or not training:
        return x
    keep = 1.0 - p
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask / keep


def fuse_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new conv equal to bn(conv(x)) with bn in eval mode."""
    fused = nn.Conv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation, conv.groups, bias=True, padding_mode=conv.padding_mode
    )
    with torch.no_grad():  # fold in float32 even for a half model: the fold itself must not lose precision
        scale = bn.weight.float() / torch.sqrt(bn.running_var.float() + bn.eps)
        fused.weight.copy_(conv.weight.float() * scale.reshape(-1, 1, 1, 1))
        bias = conv.bias.float() if conv.bias is not None else torch.zeros_like(scale)
        fused.bias.copy_((bias - bn.running_mean.float()) * scale + bn.bias.float())
    return fused.to(conv.weight.device, conv.weight.dtype)


def fuse_bn_conv1x1(bn: nn.BatchNorm2d, conv: nn.Conv2d) -> nn.Conv2d:
    """A new 1x1 conv equal to conv(bn(x)) with bn in eval mode (a per-channel affine map first)."""
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, 1, bias=True)
    with torch.no_grad():
        scale = bn.weight.float() / torch.sqrt(bn.running_var.float() + bn.eps)
        shift = bn.bias.float() - bn.running_mean.float() * scale
        w = conv.weight[:, :, 0, 0].float()
        fused.weight.copy_((w * scale.reshape(1, -1))[:, :, None, None])
        bias = conv.bias.float() if conv.bias is not None else torch.zeros(conv.out_channels, device=w.device)
        fused.bias.copy_(bias + w @ shift)
    return fused.to(conv.weight.device, conv.weight.dtype)


# --------------------------------------------------------------------------- modules


class ConvBN(nn.Module):
    """conv + BN; after `fuse()` the BN is folded into the conv."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0, groups: int = 1, eps: float = 1e-5) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=True)
        self.bn: nn.Module = nn.BatchNorm2d(cout, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))

    def fuse(self) -> None:
        if isinstance(self.bn, nn.BatchNorm2d):
            self.conv = fuse_conv_bn(self.conv, self.bn)
            self.bn = nn.Identity()


class CSABlock(nn.Module):
    """One Convolutional Self-Attention block (see the module docstring for the steps)."""

    def __init__(
        self,
        dim: int,
        heads: int,
        reduced: int,
        *,
        mlp_ratio: int = 3,
        dw_kernel: int = 5,
        layer_scale: float | None = None,
        drop_path: float = 0.0,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.dim, self.heads, self.reduced = dim, heads, reduced
        hn = heads * reduced * reduced
        self.value = ConvBN(dim, dim, dw_kernel, padding=dw_kernel // 2, groups=dim, eps=eps)  # step 1
        self.query = ConvBN(dim, hn, 1, eps=eps)  # step 3
        self.gate = ConvBN(hn, dim, 1, eps=eps)  # step 7
        self.fc1 = ConvBN(dim, mlp_ratio * dim, 1, eps=eps)  # step 8
        self.fc2 = nn.Conv2d(mlp_ratio * dim, dim, 1)
        self.gamma = nn.Parameter(torch.full((dim,), float(layer_scale))) if layer_scale is not None else None
        self.drop_path_rate = drop_path
        self.use_rotate = True  # tests switch the rotate-multiply off to show it gives the global receptive field
        self.fused = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = int(x.shape[-2]), int(x.shape[-1])
        s = self.reduced
        v = swish(self.value(x))
        q = self.query(resize_to(v, (s, s)))
        a = q * rotate(q, self.heads, s) if self.use_rotate else q
        # inference form: conv1x1 + BN commute with the bilinear resize (exact), so resize C channels, not hN
        gate_first = self.fused and s * s < h * w
        g = torch.sigmoid(resize_to(self.gate(a), (h, w)) if gate_first else self.gate(resize_to(a, (h, w))))
        y = self.fc2(swish(self.fc1(g * v)))
        if self.gamma is not None:
            y = y * self.gamma.reshape(1, -1, 1, 1)
        return x + drop_path(y, self.drop_path_rate, self.training)

    def fuse(self) -> None:
        for part in (self.value, self.query, self.gate, self.fc1):
            part.fuse()
        if self.gamma is not None:
            # layer scale is a per-channel factor on fc2's output: fold it into fc2
            with torch.no_grad():
                self.fc2.weight.mul_(self.gamma.reshape(-1, 1, 1, 1))
                self.fc2.bias.mul_(self.gamma)
            self.gamma = None
        self.fused = True


class CSAStage(nn.Module):
    """Downsampling (stem for stage 0, conv3x3 stride 2 + BN otherwise) followed by CSA blocks."""

    def __init__(self, cin: int, cout: int, depth: int, heads: int, reduced: int, *, first: bool, config: CSAConfig, drop_paths: Sequence[float]) -> None:
        super().__init__()
        if first:
            self.downsample = ConvBN(cin, cout, config.stem_kernel, stride=config.stem_stride, padding=config.stem_kernel // 2, eps=config.bn_eps)
        else:
            self.downsample = ConvBN(cin, cout, 3, stride=2, padding=0, eps=config.bn_eps)
        self.blocks = nn.Sequential(
            *[
                CSABlock(
                    cout,
                    heads,
                    reduced,
                    mlp_ratio=config.mlp_ratio,
                    dw_kernel=config.dw_kernel,
                    layer_scale=config.layer_scale,
                    drop_path=drop_paths[i],
                    eps=config.bn_eps,
                )
                for i in range(depth)
            ]
        )

        self.grad_checkpointing = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        if self.grad_checkpointing and torch.is_grad_enabled():
            # recompute each block in backward instead of keeping its activations (timm's checkpoint_seq, per block)
            from torch.utils.checkpoint import checkpoint

            for block in self.blocks:
                x = checkpoint(block, x, use_reentrant=False)
            return x
        return self.blocks(x)


class CSAHead(nn.Module):
    """Average pool over the whole final map (an AveragePool, not ReduceMean) -> BN -> conv1x1 -> flatten.

    num_classes 0 (timm's convention for a backbone) keeps pool and BN and drops the classifier.
    """

    def __init__(self, dim: int, num_classes: int, eps: float = 1e-5, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.global_pool = "avg"  # the only pooling; timm's save helpers read it from the head
        self.drop_rate = drop_rate
        self.norm: nn.Module = nn.BatchNorm2d(dim, eps=eps)
        self.fc: nn.Module = nn.Conv2d(dim, num_classes, 1) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        kernel = (int(x.shape[-2]), int(x.shape[-1]))
        x = self.norm(F.avg_pool2d(x, kernel_size=kernel, stride=kernel))
        if self.drop_rate and self.training:  # functional: nothing in the state dict, nothing in an eval export
            x = F.dropout(x, self.drop_rate, training=True)
        # flatten(1), never squeeze(): batch 1 keeps its axis
        return torch.flatten(x if pre_logits else self.fc(x), 1)

    def fuse(self) -> None:
        if isinstance(self.norm, nn.BatchNorm2d) and isinstance(self.fc, nn.Conv2d):
            self.fc = fuse_bn_conv1x1(self.norm, self.fc)
            self.norm = nn.Identity()


class CSANet(nn.Module):
    """A CSA backbone with a classification head, or per-stage feature maps (features_only).

    It follows timm's model interface (forward_features / forward_head, reset_classifier,
    set_grad_checkpointing, feature_info, group_matcher), so timm's factory, feature wrappers and
    train/validate scripts drive it like one of theirs: see the registration at the end of this file.
    """

    def __init__(
        self,
        config: CSAConfig,
        num_classes: int = 1000,
        *,
        in_chans: int = 3,
        features_only: bool = False,
        out_indices: Sequence[int] | None = None,
        variant: str | None = None,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.config = config
        self.variant = variant
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.num_features = self.head_hidden_size = config.dims[-1]
        self.global_pool = "avg"
        self.drop_rate = drop_rate
        self.features_only = features_only
        self.grad_checkpointing = False
        n = len(config.depths)
        indices = tuple(range(n)) if out_indices is None else tuple(int(i) for i in out_indices)
        bad = [i for i in indices if not -n <= i < n]
        if bad:
            raise UsageError(f"out_indices {bad} out of range for {n} stages", hint=f"use indices in 0..{n - 1}")
        self.out_indices = tuple(i % n for i in indices)
        total = sum(config.depths)
        # stochastic depth grows linearly with block index (plain floats: works under torch.device("meta") too)
        rates = [config.drop_path_rate * i / max(total - 1, 1) for i in range(total)]
        stages: list[nn.Module] = []
        cin, start = in_chans, 0
        for i in range(n):
            stages.append(
                CSAStage(
                    cin,
                    config.dims[i],
                    config.depths[i],
                    config.heads[i],
                    config.reduced[i],
                    first=i == 0,
                    config=config,
                    drop_paths=rates[start : start + config.depths[i]],
                )
            )
            cin, start = config.dims[i], start + config.depths[i]
        # a Sequential (not a ModuleList): timm's FeatureListNet flattens it into stages_0..stages_3
        self.stages = nn.Sequential(*stages)
        self.head: CSAHead | None = None if features_only else CSAHead(config.dims[-1], num_classes, eps=config.bn_eps, drop_rate=drop_rate)
        self.feature_info = [
            {"num_chs": config.dims[i], "reduction": config.stem_stride * 2**i, "module": f"stages.{i}"}
            for i in range(n)
            if features_only is False or i in self.out_indices
        ]
        self.is_inference_form = False
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Conv2d):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every stage's output map."""
        feats: list[torch.Tensor] = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's map (B, C, H/32, W/32), as timm's forward_features returns."""
        return self.stages(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Logits from forward_features' map; pre_logits: the pooled, normalised features (B, C)."""
        if self.head is None:
            raise CsaError("a features_only CSA model has no head")
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        if self.features_only:
            last = max(self.out_indices)
            feats = []
            for i, stage in enumerate(self.stages):
                x = stage(x)
                if i in self.out_indices:
                    feats.append(x)
                if i == last:
                    break
            return feats
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module | None:
        """The classifier (timm's API: the layer a new label set replaces)."""
        return None if self.head is None else self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A new random classifier for `num_classes` (timm's API: fine-tuning to another label set; 0 = pooled features)."""
        if self.features_only or self.is_inference_form:
            raise CsaError("this CSA model has no trainable classifier to reset (features_only or inference form)")
        if global_pool not in (None, "", "avg"):
            raise UsageError(f"CSA pools by average only, not {global_pool!r}", hint="leave global_pool unset")
        assert self.head is not None
        weight = next(self.parameters())
        # only the classifier: the head's BN keeps what it learned, as timm's reset_classifier keeps head.norm
        self.head.fc = nn.Conv2d(self.config.dims[-1], num_classes, 1).to(weight.device, weight.dtype) if num_classes > 0 else nn.Identity()
        self.head.fc.apply(self._init_weights)
        self.num_classes = num_classes

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute blocks in the backward pass instead of storing their activations (timm's API)."""
        self.grad_checkpointing = enable
        for stage in self.stages:
            stage.grad_checkpointing = enable

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """Parameter groups for timm's layer-wise learning-rate decay: the stem, then stage by stage (or block by block)."""
        blocks: Any = r"^stages\.(\d+)" if coarse else [(r"^stages\.(\d+)\.downsample", (0,)), (r"^stages\.(\d+)\.blocks\.(\d+)", None)]
        return {"stem": r"^stages\.0\.downsample", "blocks": blocks}

    def for_inference(self) -> CSANet:
        """A copy in eval mode with BN folded and step 7 reordered; `self` is left untouched."""
        model = copy.deepcopy(self).eval()
        for module in list(model.modules()):
            if isinstance(module, (ConvBN, CSABlock, CSAHead)):
                module.fuse()
        model.is_inference_form = True
        return model

    def blocks(self) -> list[CSABlock]:
        return [m for m in self.modules() if isinstance(m, CSABlock)]


def build_csa(
    variant: str | CSAConfig,
    num_classes: int | None = None,
    *,
    features_only: bool = False,
    out_indices: Sequence[int] | None = None,
    in_chans: int = 3,
    **overrides: Any,
) -> CSANet:
    """A CSA network with random weights: a registered variant name (or config) plus overrides."""
    if isinstance(variant, CSAConfig):
        config, name = variant, None
    else:
        config, name = variant_config(variant), variant.replace("-", "_")
    if overrides:
        known = set(CSAConfig.__dataclass_fields__)
        unknown = set(overrides) - known
        if unknown:
            raise UsageError(f"unknown CSA option(s): {', '.join(sorted(unknown))}", hint=f"known options: {', '.join(sorted(known))}")
        for key in ("depths", "dims", "heads", "reduced"):
            if key in overrides:
                overrides[key] = tuple(int(v) for v in overrides[key])
        config = replace(config, **overrides)
    return CSANet(config, 1000 if num_classes is None else num_classes, in_chans=in_chans, features_only=features_only, out_indices=out_indices, variant=name)


def check_input_size(img_size: tuple[int, int]) -> None:
    """CSA takes any H, W that are multiples of 32 and at least 64."""
    h, w = img_size
    if h < 64 or w < 64 or h % 32 or w % 32:
        raise UsageError(
            f"input size {h}x{w} is not supported by CSA", hint="height and width must be multiples of 32, at least 64 (e.g. 224, 256, 320, 224x384)"
        )


def feature_sizes(config: CSAConfig, img_size: tuple[int, int]) -> list[tuple[int, int]]:
    """Spatial size of each stage's output for an input size (stem: stride 4; then 3x3 stride 2, no padding)."""
    k, st = config.stem_kernel, config.stem_stride
    h = (img_size[0] + 2 * (k // 2) - k) // st + 1
    w = (img_size[1] + 2 * (k // 2) - k) // st + 1
    sizes = [(h, w)]
    for _ in range(1, len(config.depths)):
        h, w = (h - 3) // 2 + 1, (w - 3) // 2 + 1
        sizes.append((h, w))
    return sizes


# --------------------------------------------------------------------------- timm's registry
#
# Importing this module registers csa_nano / csa_tiny / csa_small with timm, the way timm's own model
# files do (timm/models/convnext.py: default_cfgs + @register_model + build_model_with_cfg), so that
# timm.create_model("csa_tiny"), timm's train.py/validate.py (with this import) and
# timm.create_model("hf-hub:OWNER/NAME", pretrained=True) on a repo `csa push` wrote all work.

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD  # noqa: E402  (timm after the network: see above)
from timm.models._builder import build_model_with_cfg  # noqa: E402
from timm.models._registry import generate_default_cfgs, register_model  # noqa: E402

TIMM_FEATURE_CFG = {"out_indices": (0, 1, 2, 3), "flatten_sequential": True}


def timm_pretrained_cfg(**overrides: Any) -> dict[str, Any]:
    """The pretrained_cfg of an untrained variant: ConvNeXt's eval preprocessing, which the zoo's csa-* entries use too."""
    cfg = {
        "url": "",
        "num_classes": 1000,
        "input_size": (3, 224, 224),
        "pool_size": (6, 6),  # 224 -> 56 (stem) -> 27 -> 13 -> 6: feature_sizes() for the default config
        "crop_pct": 0.875,
        "interpolation": "bicubic",
        "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD,
        "first_conv": "stages.0.downsample.conv",
        "classifier": "head.fc",
        "license": "apache-2.0",
        "paper_name": "Emulating the Attention Mechanism in Transformer Models with a Fully Convolutional Network (NVIDIA)",
    }
    return {**cfg, **overrides}


default_cfgs = generate_default_cfgs({name: timm_pretrained_cfg() for name in ("csa_nano", "csa_tiny", "csa_small")})


def _csa_from_timm(
    cfg: CSAConfig,
    *,
    variant: str | None = None,
    num_classes: int = 1000,
    in_chans: int = 3,
    drop_rate: float = 0.0,
    global_pool: str | None = None,
    **overrides: Any,
) -> CSANet:
    """The network from timm's keyword arguments: timm's names (drop_path_rate, bn_eps) are CSAConfig fields already."""
    if global_pool not in (None, "", "avg"):
        raise UsageError(f"CSA pools by average only, not global_pool={global_pool!r}")
    known = set(CSAConfig.__dataclass_fields__)
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise UsageError(f"csa models take no {', '.join(unknown)}", hint=f"known options: {', '.join(sorted(known))}")
    for key in ("depths", "dims", "heads", "reduced"):
        if key in overrides:
            overrides[key] = tuple(int(v) for v in overrides[key])
    return CSANet(replace(cfg, **overrides), num_classes, in_chans=in_chans, variant=variant, drop_rate=drop_rate)


def _create_csa(variant: str, pretrained: bool, **kwargs: Any) -> CSANet:
    build = functools.partial(_csa_from_timm, variant=variant)
    return build_model_with_cfg(build, variant, pretrained, model_cfg=variant_config(variant), feature_cfg=dict(TIMM_FEATURE_CFG), **kwargs)


@register_model
def csa_nano(pretrained: bool = False, **kwargs: Any) -> CSANet:
    """CSA nano (about 3.8 M parameters): fast tests and proxy training."""
    return _create_csa("csa_nano", pretrained, **kwargs)


@register_model
def csa_tiny(pretrained: bool = False, **kwargs: Any) -> CSANet:
    """CSA tiny: the configuration NVIDIA trained (27.6 M parameters at 1000 classes)."""
    return _create_csa("csa_tiny", pretrained, **kwargs)


@register_model
def csa_small(pretrained: bool = False, **kwargs: Any) -> CSANet:
    """CSA small: csa_tiny with 21 blocks in its third stage (about 50 M parameters)."""
    return _create_csa("csa_small", pretrained, **kwargs)

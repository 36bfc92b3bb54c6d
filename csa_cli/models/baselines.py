"""Builders for the baselines: timm models (convnext, swin) and transformers' CvT.

transformers' CvtForImageClassification returns an output object (and takes `pixel_values`);
`CvtLogits` wraps it so that forward(x) returns the logits tensor like every other zoo model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from csa_cli.errors import CsaError, UsageError


def build_timm(
    name: str,
    num_classes: int | None = None,
    *,
    features_only: bool = False,
    out_indices: Sequence[int] | None = None,
    config: dict[str, Any] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """timm.create_model(name, pretrained=False, num_classes=..., **config, **kwargs): random weights, never a download."""
    import timm

    options: dict[str, Any] = {**(config or {}), **kwargs}
    if num_classes is not None:
        options["num_classes"] = num_classes
    if features_only:
        options["features_only"] = True
        if out_indices is not None:
            options["out_indices"] = tuple(out_indices)
    try:
        return timm.create_model(name, pretrained=False, **options)
    except RuntimeError as exc:  # timm's "Unknown model"
        raise CsaError(f"timm cannot build '{name}': {exc}", hint="check architecture.name in the manifest (see timm.list_models())") from None
    except TypeError as exc:
        raise CsaError(f"timm model '{name}' rejected its options: {exc}", hint="check architecture.config in the manifest") from None


class CvtLogits(nn.Module):
    """CvtForImageClassification with forward(x) -> logits (B x classes); features_only gives stage maps."""

    def __init__(self, model: nn.Module, *, features_only: bool = False, out_indices: Sequence[int] | None = None) -> None:
        super().__init__()
        self.model = model
        self.features_only = features_only
        stages = len(model.config.depth)
        self.out_indices = tuple(range(stages)) if out_indices is None else tuple(int(i) % stages for i in out_indices)

    @property
    def config(self) -> Any:
        return self.model.config

    @property
    def num_classes(self) -> int:
        return int(self.model.config.num_labels)

    def get_classifier(self) -> nn.Module:
        return self.model.classifier

    def reset_classifier(self, num_classes: int) -> None:
        """A new random linear head (timm's API), keeping the config's label count in step."""
        old = self.model.classifier
        in_features = old.in_features if isinstance(old, nn.Linear) else int(self.model.config.embed_dim[-1])
        self.model.classifier = nn.Linear(in_features, num_classes) if num_classes > 0 else nn.Identity()
        self.model.num_labels = num_classes
        self.model.config.num_labels = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        if self.features_only:
            out = self.model.cvt(x, output_hidden_states=True, return_dict=True)
            # hidden_states holds each stage's B x C x H x W output
            return [out.hidden_states[i] for i in self.out_indices]
        return self.model(pixel_values=x, return_dict=True).logits


def build_transformers(
    name: str,
    num_classes: int | None = None,
    *,
    features_only: bool = False,
    out_indices: Sequence[int] | None = None,
    config: dict[str, Any] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """transformers <name>(<Config>(**config, num_labels=...)) with random weights; CvT wrapped to return logits."""
    if name != "CvtForImageClassification":
        raise UsageError(f"transformers architecture '{name}' is not supported", hint="supported: CvtForImageClassification")
    from transformers import CvtConfig, CvtForImageClassification

    options = {**(config or {}), **kwargs}
    if num_classes is not None:
        options["num_labels"] = num_classes
    try:
        cfg = CvtConfig(**options)
    except (TypeError, ValueError) as exc:
        raise CsaError(f"CvtConfig rejected the manifest config: {exc}", hint="check architecture.config in the manifest") from None
    return CvtLogits(CvtForImageClassification(cfg), features_only=features_only, out_indices=out_indices)

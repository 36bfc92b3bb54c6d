"""Building a zoo model or a CSA variant by name, timm-style (`create_model`), and its inference form."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from csa_cli.errors import CsaError

if TYPE_CHECKING:
    from torch import nn

    from csa_cli.manifest import Manifest, ModelEntry


def build_from_entry(
    entry: ModelEntry, num_classes: int | None = None, *, features_only: bool = False, out_indices: Sequence[int] | None = None, **kwargs: Any
) -> nn.Module:
    """The network a manifest entry describes (architecture.builder / name / config), random weights."""
    arch = entry.architecture
    classes = entry.num_classes if num_classes is None else num_classes
    if arch.builder == "csa":
        from csa_cli.models.csa import build_csa

        return build_csa(arch.name, classes, features_only=features_only, out_indices=out_indices, **{**arch.config, **kwargs})
    if arch.builder == "timm":
        from csa_cli.models.baselines import build_timm

        return build_timm(arch.name, classes, features_only=features_only, out_indices=out_indices, config=arch.config, **kwargs)
    if arch.builder == "transformers":
        from csa_cli.models.baselines import build_transformers

        return build_transformers(arch.name, classes, features_only=features_only, out_indices=out_indices, config=arch.config, **kwargs)
    raise CsaError(f"unknown builder '{arch.builder}' for {entry.name}")  # the manifest schema forbids this


def create_model(
    name: str,
    num_classes: int | None = None,
    *,
    features_only: bool = False,
    out_indices: tuple[int, ...] | None = None,
    manifest: Manifest | None = None,
    **kwargs: Any,
) -> nn.Module:
    """A zoo model ("csa-tiny", "convnext-tiny", "test-swin", ...) or a CSA variant ("csa_tiny") with random weights.

    num_classes defaults to the entry's (1000 for variants); kwargs override the builder's config.
    The module is returned as built (training mode), not forced to eval().
    """
    from csa_cli.models.csa import _VARIANTS, build_csa

    if name in _VARIANTS:
        return build_csa(name, num_classes, features_only=features_only, out_indices=out_indices, **kwargs)
    if manifest is None:
        from csa_cli.manifest import load_manifest

        manifest = load_manifest()
    try:
        entry = manifest.get(name)
    except CsaError as exc:
        raise CsaError(exc.message, hint=(exc.hint or "") + f" (CSA variants: {', '.join(sorted(_VARIANTS))})") from None
    return build_from_entry(entry, num_classes, features_only=features_only, out_indices=out_indices, **kwargs)


def is_csa(module: nn.Module) -> bool:
    from csa_cli.models.csa import CSANet

    return isinstance(module, CSANet)


def inference_form(module: nn.Module) -> nn.Module:
    """The form to export and run: CSA's for_inference() (BN folded, step 7 reordered); others a copy in eval mode.

    The input module is never modified (mode included).
    """
    import copy

    from csa_cli.models.csa import CSANet

    if isinstance(module, CSANet):
        return module if module.is_inference_form else module.for_inference()
    return copy.deepcopy(module).eval()

"""The zoo's architectures behind one timm-like API.

    from csa_cli.models import create_model
    model = create_model("csa-tiny", num_classes=1000)            # a zoo name from the manifest
    model = create_model("csa_nano")                              # or a CSA variant name
    feats = create_model("csa-tiny", features_only=True)(x)       # per-stage maps

Weights are random: pretrained weights come from `csa pull` / checkpoints, loaded by callers.
NVIDIA reference checkpoints load through models/reference.py (`from_reference_state_dict`).
"""

from csa_cli.models.factory import build_from_entry, create_model, inference_form, is_csa

__all__ = ["build_from_entry", "create_model", "inference_form", "is_csa"]

"""Loading checkpoints trained with NVIDIA's reference CSA code (DL4AGX ConvSelfAttention).

The reference model follows ConvNeXt's layout. Its `state_dict()` names (listed with shapes in
shared/reference/reference-checkpoint.md, read from DL4AGX Models/ConvSelfAttention) map onto
ours one to one:

| reference name                          | what it is                    | ours                                |
| --------------------------------------- | ----------------------------- | ----------------------------------- |
| downsample_layers.{i}.0.*               | stem / downsample conv        | stages.{i}.downsample.conv.*        |
| downsample_layers.{i}.1.*               | its BN                        | stages.{i}.downsample.bn.*          |
| stages.{i}.{j}.v.*                      | depthwise conv (plain Conv2d) | stages.{i}.blocks.{j}.value.conv.*  |
| stages.{i}.{j}.act_v.0.*                | BN of act_v = (BN, Swish)     | stages.{i}.blocks.{j}.value.bn.*    |
| stages.{i}.{j}.q.*                      | conv1x1 C -> hN               | stages.{i}.blocks.{j}.query.conv.*  |
| stages.{i}.{j}.norm_q.*                 | BN after q                    | stages.{i}.blocks.{j}.query.bn.*    |
| stages.{i}.{j}.qk.*                     | gate conv1x1 hN -> C          | stages.{i}.blocks.{j}.gate.conv.*   |
| stages.{i}.{j}.act_qk.0.*               | BN of act_qk = (BN, Sigmoid)  | stages.{i}.blocks.{j}.gate.bn.*     |
| stages.{i}.{j}.qkv.*                    | conv1x1 C -> 3C               | stages.{i}.blocks.{j}.fc1.conv.*    |
| stages.{i}.{j}.act_qkv.0.*              | BN of act_qkv = (BN, Swish)   | stages.{i}.blocks.{j}.fc1.bn.*      |
| stages.{i}.{j}.mlp.*                    | conv1x1 3C -> C               | stages.{i}.blocks.{j}.fc2.*         |
| stages.{i}.{j}.gamma                    | layer scale (1, C, 1, 1)      | stages.{i}.blocks.{j}.gamma (C,)    |
| norm.*                                  | head BN                       | head.norm.*                         |
| head.*                                  | classifier conv1x1            | head.fc.*                           |

Swish and Sigmoid hold no parameters, so `act_*.1` never appears. A `module.` prefix (DDP) is
stripped; a Linear head weight (classes x C) is accepted and reshaped to the 1x1 conv's.

A training run (ConvNeXt's main.py) saves one dict: model, model_ema, optimizer, epoch, scaler
and args, an argparse.Namespace. It is read with torch.load(weights_only=True) with exactly
that one class allow-listed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from csa_cli.errors import CsaError
from csa_cli.paths import sha256_file as _sha256

if TYPE_CHECKING:
    import torch

    from csa_cli.manifest import Manifest
    from csa_cli.models.csa import CSANet
    from csa_cli.records import Record

# (reference regex, our template) and (our regex, reference template): one explicit table, both ways
_BLOCK_PARTS = [
    ("v", "value.conv"),
    ("act_v.0", "value.bn"),
    ("q", "query.conv"),
    ("norm_q", "query.bn"),
    ("qk", "gate.conv"),
    ("act_qk.0", "gate.bn"),
    ("qkv", "fc1.conv"),
    ("act_qkv.0", "fc1.bn"),
    ("mlp", "fc2"),
]
_LEAF = r"(weight|bias|running_mean|running_var|num_batches_tracked)"


def _rules() -> tuple[list[tuple[re.Pattern[str], str]], list[tuple[re.Pattern[str], str]]]:
    to_ours: list[tuple[re.Pattern[str], str]] = [
        (re.compile(rf"^downsample_layers\.(\d+)\.0\.{_LEAF}$"), r"stages.\1.downsample.conv.\2"),
        (re.compile(rf"^downsample_layers\.(\d+)\.1\.{_LEAF}$"), r"stages.\1.downsample.bn.\2"),
        (re.compile(r"^stages\.(\d+)\.(\d+)\.gamma$"), r"stages.\1.blocks.\2.gamma"),
        (re.compile(rf"^norm\.{_LEAF}$"), r"head.norm.\1"),
        (re.compile(rf"^head\.{_LEAF}$"), r"head.fc.\1"),
    ]
    to_ref: list[tuple[re.Pattern[str], str]] = [
        (re.compile(rf"^stages\.(\d+)\.downsample\.conv\.{_LEAF}$"), r"downsample_layers.\1.0.\2"),
        (re.compile(rf"^stages\.(\d+)\.downsample\.bn\.{_LEAF}$"), r"downsample_layers.\1.1.\2"),
        (re.compile(r"^stages\.(\d+)\.blocks\.(\d+)\.gamma$"), r"stages.\1.\2.gamma"),
        (re.compile(rf"^head\.norm\.{_LEAF}$"), r"norm.\1"),
        (re.compile(rf"^head\.fc\.{_LEAF}$"), r"head.\1"),
    ]
    for ref, ours in _BLOCK_PARTS:
        to_ours.append((re.compile(rf"^stages\.(\d+)\.(\d+)\.{re.escape(ref)}\.{_LEAF}$"), rf"stages.\1.blocks.\2.{ours}.\3"))
        to_ref.append((re.compile(rf"^stages\.(\d+)\.blocks\.(\d+)\.{re.escape(ours)}\.{_LEAF}$"), rf"stages.\1.\2.{ref}.\3"))
    return to_ours, to_ref


_TO_OURS, _TO_REF = _rules()


def reference_key_to_ours(key: str) -> str | None:
    """Our parameter name for a reference one, or None when it has no counterpart."""
    key = key.removeprefix("module.")
    for pattern, template in _TO_OURS:
        if pattern.match(key):
            return pattern.sub(template, key)
    return None


def our_key_to_reference(key: str) -> str | None:
    """The reference name of one of our parameters (the inverse mapping)."""
    for pattern, template in _TO_REF:
        if pattern.match(key):
            return pattern.sub(template, key)
    return None


def to_reference_state_dict(model: CSANet) -> dict[str, torch.Tensor]:
    """Our model's state dict under reference names (for round-trip tests and export to the reference code)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        ref = our_key_to_reference(key)
        if ref is None:
            raise CsaError(f"parameter '{key}' has no reference name")
        out[ref] = value.reshape(1, -1, 1, 1) if ref.endswith(".gamma") else value  # the reference keeps gamma as (1, C, 1, 1)
    return out


def unwrap_training_checkpoint(obj: Any, *, ema: bool = False) -> dict[str, Any]:
    """The state dict inside what ConvNeXt-style training scripts save ({"model": ..., "model_ema": ...})."""
    if not isinstance(obj, dict):
        raise CsaError(f"the checkpoint holds a {type(obj).__name__}, not a state dict")
    key = "model_ema" if ema else "model"
    if ema and key not in obj:
        raise CsaError("the checkpoint has no 'model_ema' entry", hint="drop --ema to import the regular weights")
    for candidate in (key, "state_dict"):
        if isinstance(obj.get(candidate), dict):
            return obj[candidate]
    return obj


def read_training_checkpoint(path: Path) -> Any:
    """What torch.save wrote to `path`, read with weights_only=True.

    A training run's file also holds `args`, an argparse.Namespace (ConvNeXt's main.py saves it
    beside model, model_ema, optimizer, epoch and scaler): that one class is allow-listed for this
    load, nothing more, and weights_only is never turned off, so no pickled code runs.
    """
    import argparse

    import torch

    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, zip errors, refused globals: all mean "not a plain checkpoint"
        text = str(exc).strip()
        refused = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
        if refused:
            reason = f"it holds a pickled {refused.group(1)}, and only tensors, plain containers and argparse.Namespace are read"
        else:
            reason = text.splitlines()[0] if text else type(exc).__name__
        raise CsaError(
            f"cannot read {path.name} as a weights-only PyTorch checkpoint: {reason}",
            hint="give a state dict, or the checkpoint-*.pth a reference training run saved (model, model_ema, optimizer, epoch, scaler, args)",
        ) from None


def _name_list(keys: list[str], limit: int = 6) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def guess_variant(translated: dict[str, Any]) -> str | None:
    """The registered CSA variant whose parameter names and shapes match `translated` (our names), if one does."""
    import torch

    from csa_cli.models.csa import build_csa, list_variants

    head = translated.get("head.fc.weight")
    classes = int(head.shape[0]) if head is not None else 1000
    shapes = {k: tuple(v.shape) for k, v in translated.items() if not k.endswith("num_batches_tracked")}
    for variant in list_variants():
        with torch.device("meta"):  # shapes only: no memory, no init
            candidate = build_csa(variant, classes)
        expected = {k: tuple(v.shape) for k, v in candidate.state_dict().items() if not k.endswith("num_batches_tracked")}
        if expected == shapes:
            return variant
    return None


def from_reference_state_dict(name: str, state_dict: dict[str, Any], *, manifest: Manifest | None = None) -> CSANet:
    """A CSA model (zoo name or variant) with weights from a reference-named state dict.

    The number of classes is read from the head. Any reference key without a counterpart, any of
    our parameters left unset, and any shape mismatch is an error naming the keys.
    """
    import torch

    from csa_cli.models.csa import CSANet
    from csa_cli.models.factory import create_model

    state_dict = unwrap_training_checkpoint(state_dict)
    translated: dict[str, torch.Tensor] = {}
    unmapped: list[str] = []
    for key, value in state_dict.items():
        ours = reference_key_to_ours(key)
        if ours is None or not isinstance(value, torch.Tensor):
            unmapped.append(key)
        else:
            translated[ours] = value
    head = translated.get("head.fc.weight")
    num_classes = int(head.shape[0]) if head is not None else None
    if head is not None and head.ndim == 2:  # a Linear head: same numbers as a 1x1 conv
        translated["head.fc.weight"] = head[:, :, None, None]
    for key, value in translated.items():
        if key.endswith(".gamma") and value.ndim == 4:  # the reference's (1, C, 1, 1) layer scale; ours is (C,)
            translated[key] = value.reshape(-1)
    model = create_model(name, num_classes, manifest=manifest)
    if not isinstance(model, CSANet):
        raise CsaError(f"'{name}' is not a CSA model: reference checkpoints hold CSA weights", hint="use --model csa-tiny (or another csa-* entry)")
    expected = model.state_dict()
    unexpected = sorted(unmapped + [k for k in translated if k not in expected])
    # an older BN without num_batches_tracked loads fine; any real parameter missing is an error
    missing = sorted(our_key_to_reference(k) or k for k in expected if k not in translated and not k.endswith("num_batches_tracked"))
    mismatched = [
        f"{our_key_to_reference(k)} {tuple(v.shape)} vs {tuple(expected[k].shape)}"
        for k, v in translated.items()
        if k in expected and tuple(v.shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or mismatched:
        guess = guess_variant(translated)
        fits = guess.replace("_", "-") if guess else None
        hint = f"these weights fit {fits}: use --model {fits}" if fits else "check --model (the variant the checkpoint was trained as)"
        hint += "; names follow NVIDIA's reference code"
        if missing or unexpected:
            parts = []
            if missing:
                parts.append(f"missing {len(missing)} key(s): {_name_list(missing)}")
            if unexpected:
                parts.append(f"unexpected {len(unexpected)} key(s): {_name_list(unexpected)}")
            raise CsaError(f"the state dict does not match {name}: " + "; ".join(parts), hint=hint)
        raise CsaError(f"shape mismatch loading {name}: {_name_list(mismatched, 4)}", hint=hint)
    model.load_state_dict(translated, strict=False)
    return model


def default_import_path(model: str, source: Path, source_sha256: str) -> Path:
    """CSA_HOME/checkpoints/<model>/<source stem>-<sha12>.safetensors: keyed by the source's content."""
    from csa_cli.paths import csa_home

    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model)
    return csa_home() / "checkpoints" / safe / f"{source.stem}-{source_sha256[:12]}.safetensors"


def import_reference_checkpoint(source: str | Path, model: str, output: str | Path | None = None, *, ema: bool = False, manifest: Any = None) -> Record:
    """Convert a reference-trained .pth into our checkpoint; returns the checkpoint record.

    The .pth is read by read_training_checkpoint (weights_only, argparse.Namespace allowed); `ema`
    takes its model_ema entry instead of model.
    """
    from csa_cli.manifest import load_manifest
    from csa_cli.models.checkpoint import save_checkpoint
    from csa_cli.records import make_record

    src = Path(source)
    if not src.is_file():
        raise CsaError(f"checkpoint not found: {src}", hint="give the path of a .pth saved by the reference training code")
    zoo = load_manifest(manifest)
    entry = zoo.get(model)
    if entry.architecture.builder != "csa":
        raise CsaError(f"'{model}' is not a CSA model: reference checkpoints hold CSA weights", hint="use --model csa-tiny (or another csa-* entry)")
    state_dict = unwrap_training_checkpoint(read_training_checkpoint(src), ema=ema)
    module = from_reference_state_dict(model, state_dict, manifest=zoo)
    source_hash = _sha256(src)
    target = Path(output) if output is not None else default_import_path(model, src, source_hash)
    if target.suffix != ".safetensors":
        raise CsaError(f"--output must end in .safetensors, got {target.name}", hint="csa checkpoints are safetensors files")
    save_checkpoint(module, target, model, source=str(src.resolve()), source_sha256=source_hash)
    n_params = sum(p.numel() for p in module.parameters())
    return make_record(
        "checkpoint",
        model=model,
        path=str(target.resolve()),
        weights=str(target.resolve()),
        weights_hash=_sha256(target),
        revision=None,
        commit=None,
        license=entry.license,
        source=str(src.resolve()),
        source_sha256=source_hash,
        format="csa",
        num_classes=getattr(module, "num_classes", None),
        params=n_params,
        ema=ema,
    )

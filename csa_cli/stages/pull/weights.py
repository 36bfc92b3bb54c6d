"""Turning a zoo entry plus `--weights pretrained|random|auto|PATH` into a ready nn.Module (eval mode).

pretrained  pulled (or the verified cache) and loaded with strict key matching
random      the architecture with a fixed seed, and a warning on stderr
auto        pretrained if already cached and verified (never a download), else random with the warning
PATH        our CSA checkpoint (.safetensors with csa metadata), or a timm/transformers state dict
            (.safetensors, or .pth/.bin read with torch.load(weights_only=True)); never a pickle executed
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from csa_cli import events
from csa_cli.errors import CsaError, UsageError
from csa_cli.manifest import ModelEntry, load_manifest

if TYPE_CHECKING:
    from torch import nn

    from csa_cli.models.checkpoint import CheckpointMeta

RANDOM_SEED = 0
RANDOM_HASH = f"random-seed{RANDOM_SEED}"
_LIST_LIMIT = 6


@dataclass
class LoadedModel:
    module: nn.Module
    entry: ModelEntry
    weights: str  # "pretrained" | "random" | the checkpoint path
    weights_hash: str
    commit: str | None = None
    source_path: str | None = None  # the weights file loaded (None for random)

    def record_fields(self) -> dict[str, Any]:
        """The weights fields every downstream record carries."""
        fields: dict[str, Any] = {"model": self.entry.name, "weights": self.weights, "weights_hash": self.weights_hash}
        if self.commit:
            fields["commit"] = self.commit
        return fields


@dataclass(frozen=True)
class WeightsId:
    """Which weights a `--weights` value means, found without building the model (no torch)."""

    weights: str  # "pretrained" | "random" | the checkpoint path
    weights_hash: str
    commit: str | None = None
    random_reason: str | None = None  # why random, in the words load_model warns with

    def warn_if_random(self, entry: ModelEntry) -> None:
        """The warning load_model gives for random weights, for a stage that answers from its cache."""
        if self.weights == "random":
            events.warn(f"{entry.name}: using RANDOM weights ({self.random_reason}); accuracy numbers will be meaningless")


def _random_reason(entry: ModelEntry) -> str:
    # said only when it is true: a model without published weights gets random ones whatever was asked
    return "no weights are published for it" if entry.source is None else "asked for with --weights random"


def weights_identity(model: str | ModelEntry, weights: str | None = "auto", *, manifest: str | os.PathLike[str] | None = None) -> WeightsId | None:
    """The weights `load_model` would load, named and hashed from the lock and file stamps alone.

    None when only a download can tell (pretrained, not pulled yet). A cached stage keys on this,
    so it can answer without importing torch, timm or transformers.
    """
    from csa_cli.paths import sha256_stamped
    from csa_cli.stages.pull import hub

    entry = _entry(model, manifest)
    weights = local_weights(entry, weights)
    choice = (weights if weights is not None else ("pretrained" if entry.source is not None else "auto")).strip() or "auto"
    if choice == "random" or (choice == "auto" and entry.source is None):
        return WeightsId("random", RANDOM_HASH, random_reason=_random_reason(entry))
    if choice in ("pretrained", "auto"):
        if entry.source is None:
            raise hub.no_source_error(entry)
        result = hub.verified_cache(entry, manifest)
        if result is None:
            reason = f"none cached: `csa pull {entry.name}` fetches the pretrained ones"
            return WeightsId("random", RANDOM_HASH, random_reason=reason) if choice == "auto" else None
        return WeightsId("pretrained", result.weights_hash, result.commit)
    path = Path(choice).expanduser()
    if not path.is_file():
        return None  # load_model says what is wrong with it
    return WeightsId(str(path), sha256_stamped(path))


def local_weights(entry: ModelEntry, weights: str | None) -> str | None:
    """An entry registered from a checkpoint on this machine (`csa train --register`): pretrained, auto or none mean that file."""
    if entry.checkpoint is not None and entry.source is None and (weights is None or weights.strip() in ("", "pretrained", "auto")):
        return entry.checkpoint
    return weights


def _entry(model: str | ModelEntry, manifest: str | os.PathLike[str] | None) -> ModelEntry:
    return model if isinstance(model, ModelEntry) else load_manifest(manifest).get(model)


def entry_for_weights(entry: ModelEntry, weights: str | None) -> ModelEntry:
    """The entry as `weights` see it: a trained csa checkpoint brings its own class count and preprocessing.

    `csa train` writes both into the checkpoint's metadata (models/checkpoint.py); every stage that
    takes `--weights PATH` (eval, export, quantize, engine, profile) then evaluates, calibrates and
    sizes with them instead of the zoo entry's. Any other value (pretrained, a plain state dict) keeps the entry.
    """
    meta = checkpoint_meta(weights)
    if meta is None:
        return entry
    update: dict[str, Any] = {}
    if meta.num_classes is not None and meta.num_classes != entry.num_classes:
        update["num_classes"] = meta.num_classes
    if meta.preprocessing is not None and meta.preprocessing != entry.preprocessing:
        update["preprocessing"] = meta.preprocessing
    return entry.model_copy(update=update) if update else entry


def checkpoint_meta(weights: str | None) -> CheckpointMeta | None:
    """The csa metadata of a `--weights PATH` checkpoint; None for pretrained/random/auto and for files without it."""
    if weights is None or weights.strip() in ("", "pretrained", "random", "auto"):
        return None
    path = Path(weights).expanduser()
    if path.suffix != ".safetensors" or not path.is_file():
        return None
    from csa_cli.models.checkpoint import META_KEY, header_metadata, read_metadata

    try:
        if META_KEY not in header_metadata(path):
            return None  # a plain state dict: the entry says everything
    except CsaError:
        return None  # a corrupt file: read_state_dict says so when loading
    return read_metadata(path)


def _short(keys: list[str]) -> str:
    shown = ", ".join(keys[:_LIST_LIMIT])
    return shown + (f" (+{len(keys) - _LIST_LIMIT} more)" if len(keys) > _LIST_LIMIT else "")


def load_strict(module: nn.Module, state_dict: dict[str, Any], *, what: str, model: str) -> None:
    """load_state_dict(strict=True), with one CsaError naming missing/unexpected/mis-shaped keys."""
    own = module.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(own[k].shape)}" for k in own if k in state_dict and tuple(own[k].shape) != tuple(state_dict[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_short(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_short(unexpected)}")
    if shapes:
        problems.append(f"shape mismatches (file vs model): {_short(shapes)}")
    if problems:
        raise CsaError(
            f"{what} does not fit {model}: " + "; ".join(problems),
            hint="check that the weights belong to this architecture (manifest architecture.name/config, num_classes)",
        )
    module.load_state_dict(state_dict, strict=True)


def _inner_transformers(module: nn.Module) -> nn.Module | None:
    from transformers import PreTrainedModel

    for sub in module.modules():
        if isinstance(sub, PreTrainedModel):
            return sub
    return None


def _load_into(module: nn.Module, state_dict: dict[str, Any], entry: ModelEntry, what: str, fmt: str | None) -> None:
    """Load into the module itself, or (transformers weights) into the wrapped PreTrainedModel."""
    inner = _inner_transformers(module) if entry.architecture.builder == "transformers" else None
    if inner is not None and inner is not module:
        own_keys = set(module.state_dict())
        inner_keys = set(inner.state_dict())
        overlap_outer = len(own_keys & set(state_dict))
        overlap_inner = len(inner_keys & set(state_dict))
        if fmt == "transformers" or overlap_inner >= overlap_outer:
            load_strict(inner, state_dict, what=what, model=entry.name)
            return
    load_strict(module, state_dict, what=what, model=entry.name)


def _build(entry: ModelEntry, num_classes: int | None = None) -> nn.Module:
    from csa_cli.models import build_from_entry

    return build_from_entry(entry, num_classes)


def _random(entry: ModelEntry, num_classes: int | None, reason: str) -> LoadedModel:
    import torch

    with torch.random.fork_rng():
        torch.manual_seed(RANDOM_SEED)
        module = _build(entry, num_classes)
    events.warn(f"{entry.name}: using RANDOM weights ({reason}); accuracy numbers will be meaningless")
    return LoadedModel(module.eval(), entry, "random", RANDOM_HASH)


def read_state_dict(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """(state dict, safetensors metadata) from .safetensors, or .pth/.pt/.bin via torch.load(weights_only=True)."""
    if not path.is_file():
        raise CsaError(f"weights file not found: {path}", hint="check --weights PATH")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as fh:
                meta = dict(fh.metadata() or {})
                return {k: fh.get_tensor(k) for k in fh.keys()}, meta  # noqa: SIM118 (safe_open has no __iter__)
        except SafetensorError as exc:
            raise CsaError(f"{path} is not a readable safetensors file ({exc})", hint="download it again or check the path") from None
    if path.suffix in (".pth", ".pt", ".bin"):
        import pickle

        import torch

        try:
            data = torch.load(str(path), map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
            raise CsaError(
                f"{path} cannot be read as plain weights (torch.load weights_only=True refused it: {str(exc).splitlines()[0]})",
                hint="csa never executes pickled code: convert it to .safetensors where you trust it",
            ) from None
        for key in ("state_dict", "model", "model_ema", "module"):  # common training-script wrappers
            if isinstance(data, dict) and isinstance(data.get(key), dict) and not hasattr(data[key], "shape"):
                data = data[key]
                break
        if not isinstance(data, dict) or not all(hasattr(v, "shape") for v in data.values()):
            raise CsaError(f"{path} does not hold a state dict of tensors", hint="save model.state_dict(), or use .safetensors")
        return dict(data), {}
    raise UsageError(f"unsupported weights file {path.name}", hint="use .safetensors, or .pth/.bin (read with weights_only=True)")


def _is_csa_checkpoint(meta: dict[str, str]) -> bool:
    """Our checkpoint format stamps its safetensors metadata with the csa version."""
    return any(k.startswith("csa") for k in meta) or meta.get("format") == "csa"


def _load_file(entry: ModelEntry, module: nn.Module, path: Path, fmt: str | None) -> None:
    state, meta = read_state_dict(path)
    if path.suffix == ".safetensors" and (fmt == "csa" or _is_csa_checkpoint(meta)):
        from csa_cli.models.checkpoint import read_metadata

        name = read_metadata(path).model  # validates our metadata; the tensors are the state dict read above
        if name not in (entry.name, entry.architecture.name):
            events.warn(f"{path.name} was saved for {name}, loading it into {entry.name}")
    _load_into(module, state, entry, f"weights {path.name}", fmt)


def _finish(module: nn.Module, entry: ModelEntry, num_classes: int | None) -> nn.Module:
    if num_classes is not None and num_classes != entry.num_classes:
        reset = getattr(module, "reset_classifier", None)
        if reset is None:
            raise UsageError(f"{entry.name} cannot change its head to {num_classes} classes after loading", hint="load with the entry's num_classes")
        reset(num_classes)
        events.warn(f"{entry.name}: new {num_classes}-class head (random); the backbone keeps its weights")
    return module.eval()


def load_model(
    model: str | ModelEntry,
    weights: str | None = "auto",
    *,
    offline: bool | None = None,
    manifest: str | os.PathLike[str] | None = None,
    num_classes: int | None = None,
) -> LoadedModel:
    """A ready nn.Module in eval mode for `model` with `weights` = pretrained | random | auto | PATH.

    None is what a stage that needs weights (eval) uses when the user named none: pretrained
    when the entry has a source (downloading if needed), else random with a warning.
    """
    from csa_cli.paths import sha256_stamped
    from csa_cli.stages.pull import hub

    entry = _entry(model, manifest)
    weights = local_weights(entry, weights)
    if weights is None:
        weights = "pretrained" if entry.source is not None else "auto"
    choice = weights.strip() or "auto"
    if choice == "random":
        return _random(entry, num_classes, _random_reason(entry))
    if choice in ("pretrained", "auto"):
        if entry.source is None:
            if choice == "pretrained":
                raise hub.no_source_error(entry)
            return _random(entry, num_classes, "no weights are published for it")
        result = hub.verified_cache(entry, manifest)
        if result is None:
            if choice == "auto":
                return _random(entry, num_classes, f"none cached: `csa pull {entry.name}` fetches the pretrained ones")
            result = hub.pull(entry, offline=offline, manifest_path=manifest)
        else:
            events.info(f"{entry.name}: pretrained weights from the cache (commit {result.commit[:12]}, verified)")
        module = _build(entry)
        _load_file(entry, module, Path(result.weights_path), result.format)
        return LoadedModel(_finish(module, entry, num_classes), entry, "pretrained", result.weights_hash, result.commit, result.weights_path)
    path = Path(choice).expanduser()
    if not path.exists():
        raise UsageError(f"--weights must be pretrained, random, auto or a file; {choice!r} is none of these", hint="e.g. --weights pretrained")
    entry = entry_for_weights(entry, str(path))
    module = _build(entry)
    _load_file(entry, module, path, None)
    return LoadedModel(_finish(module, entry, num_classes), entry, str(path), sha256_stamped(path), None, str(path))

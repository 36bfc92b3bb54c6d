"""Our checkpoint format: one .safetensors file whose metadata says what it holds.

Metadata (safetensors string map) has one key, "csa", holding the JSON of `CheckpointMeta`:
the zoo model name, the architecture (builder / name / config — for CSA the full variant config,
so the file rebuilds without the manifest), the number of classes, the csa and arch versions;
a trained checkpoint (`csa train`) adds the class names, the preprocessing it was validated with,
the recipe, a dataset fingerprint and the validation top-1/top-5 (raw and EMA weights).
Written atomically: a crash never leaves a truncated checkpoint behind.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from csa_cli import __version__
from csa_cli.errors import CsaError
from csa_cli.manifest import Preprocessing
from csa_cli.paths import atomic_path

if TYPE_CHECKING:
    import torch
    from torch import nn

FORMAT = "csa-checkpoint"
META_KEY = "csa"


class CheckpointArch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    builder: Literal["csa", "timm", "transformers"]
    name: str
    config: dict[str, Any] = Field(default_factory=dict)


class CheckpointMeta(BaseModel):
    """What a csa checkpoint's metadata records."""

    model_config = ConfigDict(extra="allow")

    format: Literal["csa-checkpoint"] = FORMAT
    format_version: int = 1
    model: str
    arch: CheckpointArch | None = None
    num_classes: int | None = None
    csa_version: str = __version__
    arch_version: int | None = None
    source: str | None = Field(default=None, description="where the weights came from (e.g. a reference .pth)")
    source_sha256: str | None = None
    # written by `csa train`: what the weights were trained for and how well they did
    class_names: list[str] | None = Field(default=None, description="class index -> name (the dataset's folder names)")
    preprocessing: Preprocessing | None = Field(default=None, description="the eval preprocessing the run validated with")
    recipe: dict[str, Any] | None = Field(default=None, description="the training recipe, every setting resolved")
    dataset_fingerprint: str | None = Field(default=None, description="sha256 of the training set's file list (relative path, size, class)")
    val_top1: float | None = Field(default=None, description="validation top-1 of these weights' run, percent (as csa eval reports it)")
    val_top5: float | None = None
    val_top1_ema: float | None = Field(default=None, description="the same for the run's EMA weights")


def _arch_of(module: nn.Module) -> tuple[CheckpointArch | None, int | None, int | None]:
    from csa_cli.models.csa import CSA_ARCH_VERSION, CSANet

    if isinstance(module, CSANet):
        if module.is_inference_form:
            raise CsaError("refusing to save an inference-form CSA model (BN folded)", hint="save the training form; export builds the inference form itself")
        config = module.config.to_dict()
        return CheckpointArch(builder="csa", name=module.variant or "custom", config=config), module.num_classes, CSA_ARCH_VERSION
    return None, getattr(module, "num_classes", None), None


def save_checkpoint(module: nn.Module, path: str | Path, model_name: str, **extra: Any) -> Path:
    """Write `module`'s state dict and metadata to `path` (.safetensors), atomically."""
    from safetensors.torch import save_file

    arch, num_classes, arch_version = _arch_of(module)
    meta = CheckpointMeta(model=model_name, arch=arch, num_classes=num_classes, arch_version=arch_version, **extra)
    # safetensors refuses tensors that share storage: store independent contiguous copies
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}
    target = Path(path)
    with atomic_path(target) as tmp:
        save_file(tensors, str(tmp), metadata={META_KEY: meta.model_dump_json(exclude_none=True), "format": "pt"})
    return target


def header_metadata(path: str | Path) -> dict[str, str]:
    """A safetensors file's string metadata, read from its JSON header alone (no torch, no tensors).

    The format (safetensors' README): 8 bytes little-endian header length, then the JSON header
    whose "__metadata__" is the string map. Cached stages call this, so it must stay framework-free.
    """
    p = Path(path)
    try:
        with p.open("rb") as fh:
            size = int.from_bytes(fh.read(8), "little")
            if not 2 <= size <= 100_000_000 or size > p.stat().st_size - 8:
                raise ValueError("bad header length")
            header = json.loads(fh.read(size))
        meta = header.get("__metadata__") or {}
        if not isinstance(meta, dict):
            raise ValueError("__metadata__ is not a map")
        return {str(k): str(v) for k, v in meta.items()}
    except FileNotFoundError:
        raise CsaError(f"checkpoint not found: {p}") from None
    except (OSError, ValueError, UnicodeDecodeError, AttributeError) as exc:
        raise CsaError(f"{p} is not a readable safetensors file ({exc})") from None


def read_metadata(path: str | Path) -> CheckpointMeta:
    """The metadata of a csa checkpoint, without loading its tensors."""
    p = Path(path)
    if not p.is_file():
        raise CsaError(f"checkpoint not found: {p}")
    raw = header_metadata(p).get(META_KEY)
    if raw is None:
        raise CsaError(
            f"{p} is a safetensors file but not a csa checkpoint (no '{META_KEY}' metadata)", hint="convert reference weights with `csa import-reference`"
        )
    try:
        return CheckpointMeta.model_validate(json.loads(raw))
    except (ValidationError, json.JSONDecodeError) as exc:
        raise CsaError(f"{p}: invalid csa checkpoint metadata ({exc})") from None


def load_checkpoint(path: str | Path) -> tuple[str, dict[str, torch.Tensor], dict[str, Any]]:
    """(model name, state dict, metadata as a dict) of a csa checkpoint."""
    from safetensors.torch import load_file

    meta = read_metadata(path)
    state_dict = load_file(str(path))
    return meta.model, state_dict, meta.model_dump(mode="json", exclude_none=True)


def load_model_from_checkpoint(path: str | Path, *, manifest: Any = None) -> tuple[str, nn.Module]:
    """(model name, module with the checkpoint's weights): CSA checkpoints rebuild from their own config."""
    from csa_cli.models.csa import CSAConfig, CSANet
    from csa_cli.models.factory import create_model

    name, state_dict, meta_dict = load_checkpoint(path)
    meta = CheckpointMeta.model_validate(meta_dict)
    module: nn.Module
    if meta.arch is not None and meta.arch.builder == "csa":
        variant = meta.arch.name if meta.arch.name != "custom" else None
        module = CSANet(CSAConfig.from_dict(meta.arch.config), meta.num_classes or 1000, variant=variant)
    else:
        module = create_model(name, meta.num_classes, manifest=manifest)
    result = module.load_state_dict(state_dict, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CsaError(
            f"checkpoint {Path(path).name} does not fit {name}: missing {result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}",
            hint="the checkpoint was written for another architecture",
        )
    return name, module

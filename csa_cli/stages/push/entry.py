"""What is pushed and what pins it: the checkpoint a push input names, and the manifest entry of a pushed commit."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from csa_cli.errors import CsaError, UsageError
from csa_cli.manifest import ModelEntry, Preprocessing, load_manifest
from csa_cli.models.checkpoint import CheckpointMeta, read_metadata

EMA_FILE = "model_ema.safetensors"
TRAINING_ONLY = {"drop_path_rate"}  # CSAConfig fields that change nothing at inference: not part of an entry


@dataclass
class PushInput:
    """A csa checkpoint to publish, its metadata, the zoo entry it belongs to, and its EMA twin if any."""

    path: Path
    meta: CheckpointMeta
    entry: ModelEntry
    ema: Path | None

    @property
    def preprocessing(self) -> Preprocessing:
        return self.meta.preprocessing or self.entry.preprocessing

    @property
    def num_classes(self) -> int:
        return self.meta.num_classes or self.entry.num_classes


def push_input(path: Path, manifest: str | os.PathLike[str] | None = None) -> PushInput:
    """The checkpoint at `path` (a csa .safetensors checkpoint), checked, with the EMA weights saved beside it."""
    if not path.exists():
        raise CsaError(f"checkpoint not found: {path}", hint="give the model.safetensors `csa train` wrote, or pipe its record")
    if path.is_dir():
        path = path / "model.safetensors"
        if not path.is_file():
            raise CsaError(f"{path.parent} holds no model.safetensors", hint="give the checkpoint file itself")
    if path.suffix != ".safetensors":
        raise UsageError(f"csa push takes a csa checkpoint (.safetensors), not {path.name}", hint="convert reference weights with `csa import-reference` first")
    meta = read_metadata(path)
    entry = load_manifest(manifest).get(meta.model)
    if entry.architecture.builder == "transformers":
        raise CsaError(f"{entry.name} is a transformers model: csa push publishes timm-layout repos (CSA and timm models)")
    if entry.architecture.builder == "csa" and (meta.arch is None or meta.arch.name == "custom"):
        raise CsaError(f"{path.name} holds a CSA network of no registered variant: timm could not rebuild it", hint="push a csa_nano/tiny/small checkpoint")
    ema = path.with_name(EMA_FILE)
    return PushInput(path=path, meta=meta, entry=entry, ema=ema if ema.is_file() and ema != path else None)


def model_args(item: PushInput) -> dict[str, Any]:
    """The builder keyword arguments that differ from the named variant's (timm's model_args, the entry's config)."""
    if item.entry.architecture.builder != "csa" or item.meta.arch is None:
        return dict(item.entry.architecture.config)
    from csa_cli.models.csa import variant_config

    base = variant_config(item.meta.arch.name).to_dict()
    return {k: v for k, v in item.meta.arch.config.items() if k not in TRAINING_ONLY and base.get(k) != v}


def timm_architecture(item: PushInput) -> str:
    return item.meta.arch.name if item.entry.architecture.builder == "csa" and item.meta.arch is not None else item.entry.architecture.name


def manifest_entry(item: PushInput, name: str, repo: str, commit: str, *, license: str, dataset: str | None) -> dict[str, Any]:
    """The manifest entry that serves the pushed commit: `csa pull NAME` fetches exactly these bytes."""
    source = {"repo": repo, "revision": commit, "files": ["model.safetensors"], "format": "csa"}
    entry = _entry(item, f"published to {repo}", f"{repo}@{commit[:12]}", license=license, dataset=dataset)
    return {**entry, "source": source, "notes": [f"Weights pushed by `csa push` to {repo}, pinned to commit {commit}."]}


def local_entry(path: Path, manifest: str | os.PathLike[str] | None = None, *, license: str = "apache-2.0", dataset: str | None = None) -> dict[str, Any]:
    """The entry that names a checkpoint on this machine (what `csa train --register NAME` writes with manifest.register_entry).

    `--weights pretrained` (and auto, and none) of that entry then load this file, with its classes and preprocessing.
    """
    item = push_input(path, manifest)
    where = str(item.path.resolve())
    entry = _entry(item, f"at {where}", where, license=license, dataset=dataset)
    return {**entry, "checkpoint": where, "notes": [f"Weights: the csa checkpoint {where} (not published)."]}


def _entry(item: PushInput, where: str, source: str, *, license: str, dataset: str | None) -> dict[str, Any]:
    arch: dict[str, Any] = {"builder": item.entry.architecture.builder, "name": timm_architecture(item)}
    if args := model_args(item):
        arch["config"] = args
    trained_on = f" on {dataset}" if dataset else ""
    reported = [
        {"metric": f"{label} (csa train validation{trained_on})", "value": round(float(value), 4), "source": source}  # percent, as csa eval reports
        for label, value in (("top-1", item.meta.val_top1), ("top-5", item.meta.val_top5), ("top-1 EMA", item.meta.val_top1_ema))
        if value is not None
    ]
    return {
        "family": item.entry.family,
        "description": f"{item.entry.name} trained{trained_on} ({item.num_classes} classes), {where}",
        "license": license,
        "num_classes": item.num_classes,
        "architecture": arch,
        "preprocessing": item.preprocessing.model_dump(mode="json"),
        "reported": reported,
    }

"""`push`: trained weights to a Hub repo in timm's layout, with a model card (docs/publishing.md)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from csa_cli.api._common import OnEvent, _listening, _source_text
from csa_cli.errors import CsaError, UsageError

if TYPE_CHECKING:
    from csa_cli.api._common import PathLike, Source
    from csa_cli.records import PushRecord, Record


def _checkpoint_of(given: str | Record | None, manifest: PathLike | None) -> Path:
    """The checkpoint to push: a file or folder, a train/checkpoint record, or a zoo model's pulled csa-format weights."""
    from csa_cli.inputs import expect_record
    from csa_cli.records import Record, checkpoint_of_train

    if isinstance(given, Record):
        record = checkpoint_of_train(given) if given.kind == "train" else given
        expect_record(record, "push", "train", "checkpoint", hint="pipe `csa train` (or give its model.safetensors)")
        if not record.path:
            raise UsageError(f"the {record.kind} record names no checkpoint path")
        return Path(record.path)
    if given is None:
        raise UsageError("no input: give a checkpoint (model.safetensors) or pipe the record of `csa train`")
    path = Path(given).expanduser()
    if path.exists() or path.suffix == ".safetensors" or "/" in given:
        return path
    from csa_cli.manifest import load_manifest
    from csa_cli.stages.pull.hub import verified_cache

    entry = load_manifest(manifest).get(given)
    pulled = verified_cache(entry, manifest) if entry.source is not None and entry.source.format == "csa" else None
    if pulled is None:
        raise CsaError(f"{entry.name} has no csa checkpoint here to push", hint="give the checkpoint file (the model.safetensors `csa train` wrote)")
    return Path(pulled.weights_path)


def push(
    checkpoint: Source | None,
    *,
    repo: str | None = None,
    private: bool = False,
    revision: str = "main",
    token: str | None = None,
    register: str | None = None,
    license: str = "apache-2.0",
    dataset_name: str | None = None,
    force: bool = False,
    manifest: PathLike | None = None,
    on_event: OnEvent = None,
) -> PushRecord:
    """`csa push`: a csa checkpoint (a file, its folder, a "train" record) to `repo` in one commit: a "push" record.

    The record names the commit and the manifest entry that pins it; `register` writes that entry
    into the user manifest under that name. The token: `token`, else HF_TOKEN, else `hf auth login`'s.
    """
    from csa_cli.stages.push.entry import push_input
    from csa_cli.stages.push.stage import push_stage

    if not repo:
        raise UsageError("push needs --repo OWNER/NAME", hint="e.g. --repo my-org/csa-nano-digits")
    with _listening(on_event):
        item = push_input(_checkpoint_of(_source_text(checkpoint), manifest), manifest)
        return push_stage(
            item,
            repo,
            revision=revision,
            private=private,
            token=token,
            force=force,
            register=register,
            manifest=manifest,
            license=license,
            dataset=dataset_name,
        )

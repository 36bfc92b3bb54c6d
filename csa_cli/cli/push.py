"""`csa push CHECKPOINT --repo OWNER/NAME`: publish trained weights to the Hub (see docs/publishing.md)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from csa_cli.cli import options
from csa_cli.cli.common import expect_record, input_record, stage_command
from csa_cli.cli.options import examples
from csa_cli.console import Output

if TYPE_CHECKING:
    from rich.console import RenderableType

    from csa_cli.records import PushRecord

EXAMPLES = examples(
    (
        "publish what `csa train` wrote (with a model card), and name it in your manifest",
        "csa push runs/digits/model.safetensors --repo my-org/csa-nano-digits --register csa-nano-digits",
    ),
    ("a private repo, on a branch of its own", "csa push runs/digits --repo my-org/csa-nano-trial --private --revision trial"),
)


def _checkpoint_of(argument: str | None, manifest: Path | None) -> Path:
    """The checkpoint to push: a file or folder, a train/checkpoint record (piped or a .json), or a zoo model's csa weights."""
    from csa_cli.errors import CsaError, UsageError

    record = input_record(argument)
    if record is not None:
        expect_record(record, "push", "train", "checkpoint", hint="pipe `csa train` (or give its model.safetensors)")
        if not record.path:
            raise UsageError(f"the {record.kind} record names no checkpoint path")
        return Path(record.path)
    if argument is None:
        raise UsageError("no input: give a checkpoint (model.safetensors) or pipe the record of `csa train`")
    path = Path(argument).expanduser()
    if path.exists() or path.suffix == ".safetensors" or "/" in argument:
        return path
    from csa_cli.manifest import load_manifest
    from csa_cli.stages.pull.hub import verified_cache

    entry = load_manifest(manifest).get(argument)
    pulled = verified_cache(entry, manifest) if entry.source is not None and entry.source.format == "csa" else None
    if pulled is None:
        raise CsaError(f"{entry.name} has no csa checkpoint here to push", hint="give the checkpoint file (the model.safetensors `csa train` wrote)")
    return Path(pulled.weights_path)


def _render(record: PushRecord) -> RenderableType:
    from rich.console import Group

    from csa_cli.console import table, text
    from csa_cli.manifest import manifest_toml

    name = record.entry["name"]
    rows = [[file, sha[:16] + "…"] for file, sha in record.files.items()]
    files = table(f"{record.repo}@{record.revision}: commit {record.commit[:12]}", ["file", "sha256"], rows)
    entry = {k: v for k, v in record.entry.items() if k != "name"}
    where = f"written to {record.registered}" if record.registered else "add it to your manifest, or push with --register NAME"
    snippet = manifest_toml({"models": {name: entry}})
    return Group(files, text(f"\nThe manifest entry that pins this commit ({where}):\n"), text(snippet))


def register(app: typer.Typer) -> None:
    @app.command("push", short_help="Trained weights to a Hub repo, with a model card.", epilog=EXAMPLES)
    @stage_command("push")
    def push_command(
        out: Output,
        checkpoint: str | None = typer.Argument(
            None,
            metavar="CHECKPOINT|MODEL",
            help="A csa checkpoint (.safetensors, or the folder holding model.safetensors), a zoo model pulled in csa's format, "
            "or none, to read the record `csa train` piped on stdin.",
            show_default=False,
        ),
        repo: str = typer.Option(..., "--repo", metavar="OWNER/NAME", help="The Hub repo to push to; created if it does not exist."),
        private: bool = typer.Option(False, "--private", help="Create the repo private (an existing repo keeps its visibility)."),
        revision: str = typer.Option("main", "--revision", metavar="BRANCH", help="The branch to commit to; created from main if new. Default: main."),
        token: str | None = typer.Option(
            None, "--token", metavar="TOKEN", help="A Hub token with write access. Default: HF_TOKEN, else the one `hf auth login` saved.", show_default=False
        ),
        register_name: str | None = typer.Option(
            None, "--register", metavar="NAME", help="Write the entry that pins the commit into the user manifest as NAME, so `csa pull NAME` serves it."
        ),
        license: str = typer.Option("apache-2.0", "--license", metavar="ID", help="The weights' license (a Hub license id) for the card. Default: apache-2.0."),
        dataset_name: str | None = typer.Option(
            None, "--dataset-name", metavar="NAME", help="What the weights were trained on (a Hub dataset id or a name), for the card. Default: none."
        ),
        force: bool = typer.Option(False, "--force", help="Commit even if the repo holds files csa push did not write."),
        manifest: Path | None = options.MANIFEST(),
    ) -> None:
        """Upload a checkpoint, timm's config.json and a model card to OWNER/NAME in one commit; print the entry that pins it."""
        from csa_cli.stages.push.entry import push_input
        from csa_cli.stages.push.stage import push_stage

        item = push_input(_checkpoint_of(checkpoint, manifest), manifest)
        record = push_stage(
            item,
            repo,
            revision=revision,
            private=private,
            token=token,
            force=force,
            register=register_name,
            manifest=manifest,
            license=license,
            dataset=dataset_name,
        )
        out.info(f"Pushed {item.path.name} to {record.url} (commit {record.commit[:12]})")
        out.emit(record, lambda: _render(record))

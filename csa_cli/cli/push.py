"""`csa push CHECKPOINT --repo OWNER/NAME`: publish trained weights to the Hub (see docs/publishing.md)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from csa_cli import api
from csa_cli.cli import options
from csa_cli.cli.common import stage_command
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
D = options.defaults_of(api.push)


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
        private: bool = typer.Option(D.private, "--private", help="Create the repo private (an existing repo keeps its visibility)."),
        revision: str = typer.Option(
            D.revision, "--revision", metavar="BRANCH", help=f"The branch to commit to; created from main if new. Default: {D.revision}."
        ),
        token: str | None = typer.Option(
            D.token, "--token", metavar="TOKEN", help="A Hub token with write access. Default: HF_TOKEN, else `hf auth login`'s.", show_default=False
        ),
        register: str | None = typer.Option(
            D.register, "--register", metavar="NAME", help="Write the entry that pins the commit into the user manifest as NAME, so `csa pull NAME` serves it."
        ),
        license: str = typer.Option(D.license, "--license", metavar="ID", help=f"The weights' license (a Hub license id) for the card. Default: {D.license}."),
        dataset_name: str | None = typer.Option(
            D.dataset_name, "--dataset-name", metavar="NAME", help="What the weights were trained on (a Hub dataset id or a name), for the card. Default: none."
        ),
        force: bool = typer.Option(D.force, "--force", help="Commit even if the repo holds files csa push did not write."),
        manifest: Path | None = options.MANIFEST(D.manifest),
    ) -> None:
        """Upload a checkpoint, timm's config.json and a model card to OWNER/NAME in one commit; print the entry that pins it."""
        from csa_cli.inputs import CommandInput

        record = api.push(
            CommandInput(checkpoint),
            repo=repo,
            private=private,
            revision=revision,
            token=token,
            register=register,
            license=license,
            dataset_name=dataset_name,
            force=force,
            manifest=manifest,
        )
        out.info(f"Pushed {Path(str(record.path)).name} to {record.url} (commit {record.commit[:12]})")
        out.emit(record, lambda: _render(record))

"""`csa pull MODEL`: fetch a zoo entry's weights from the Hub, pinned and verified (see docs/pulling.md)."""

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
    from rich.table import Table

    from csa_cli.records import Record


EXAMPLES = examples(
    ("the weights of a zoo model, pinned in a lock and verified", "csa pull convnext-tiny"),
    ("by its Hub repo id, then on into an export", "csa pull timm/convnext_tiny.fb_in1k | csa export"),
    ("only what the lock pins, without the network", "csa pull convnext-tiny --locked --offline"),
)
D = options.defaults_of(api.pull)


def render(record: Record) -> Table:
    from csa_cli.console import table

    f = record.field
    rows = [[name, sha[:16] + "…"] for name, sha in f("files", {}).items()]
    return table(f"{record.model}: {f('repo')}@{f('revision')} (commit {f('commit')[:12]})", ["file", "sha256"], rows)


def register(app: typer.Typer) -> None:
    @app.command("pull", short_help="Weights from the Hub, pinned in a lock and verified.", epilog=EXAMPLES)
    @stage_command("pull")
    def pull_command(
        out: Output,
        model: str = typer.Argument(..., metavar="MODEL", help="A zoo model: its name, Hub repo id or tagged timm name (see `csa list`)."),
        revision: str | None = typer.Option(
            D.revision, "--revision", metavar="REV", help="Branch, tag or commit; overrides the manifest's (and re-pins the lock)."
        ),
        locked: bool = typer.Option(D.locked, "--locked", help="Use only what the lock pins; fail instead of resolving or re-pinning."),
        offline: bool = typer.Option(D.offline, "--offline", help="No network: use the verified cache only (also HF_HUB_OFFLINE=1)."),
        force: bool = typer.Option(D.force, "--force", help="Download again; without --locked, also re-resolve the revision and re-pin."),
        manifest: Path | None = options.MANIFEST(D.manifest),
    ) -> None:
        """Download MODEL's weights into the Hugging Face cache, pin them in a lock, verify them."""
        record = api.pull(model, revision=revision, locked=locked, offline=offline, force=force, manifest=manifest)
        out.emit(record, lambda: render(record))

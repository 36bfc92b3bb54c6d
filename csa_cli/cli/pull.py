"""`csa pull MODEL`: fetch a zoo entry's weights from the Hub, pinned and verified (see docs/pulling.md)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from csa_cli.cli import options
from csa_cli.cli.common import stage_command
from csa_cli.cli.options import examples
from csa_cli.console import Output

if TYPE_CHECKING:
    from rich.table import Table


EXAMPLES = examples(
    ("the weights of a zoo model, pinned in a lock and verified", "csa pull convnext-tiny"),
    ("by its Hub repo id, then on into an export", "csa pull timm/convnext_tiny.fb_in1k | csa export"),
    ("only what the lock pins, without the network", "csa pull convnext-tiny --locked --offline"),
)


def register(app: typer.Typer) -> None:
    @app.command("pull", short_help="Weights from the Hub, pinned in a lock and verified.", epilog=EXAMPLES)
    @stage_command("pull")
    def pull_command(
        out: Output,
        model: str = typer.Argument(..., metavar="MODEL", help="A zoo model: its name, Hub repo id or tagged timm name (see `csa list`)."),
        revision: str | None = typer.Option(None, "--revision", metavar="REV", help="Branch, tag or commit; overrides the manifest's (and re-pins the lock)."),
        locked: bool = typer.Option(False, "--locked", help="Use only what the lock pins; fail instead of resolving or re-pinning."),
        offline: bool = typer.Option(False, "--offline", help="No network: use the verified cache only (also HF_HUB_OFFLINE=1)."),
        force: bool = typer.Option(False, "--force", help="Download again; without --locked, also re-resolve the revision and re-pin."),
        manifest: Path | None = options.MANIFEST(),
    ) -> None:
        """Download MODEL's weights into the Hugging Face cache, pin them in a lock, verify them."""
        from csa_cli.manifest import load_manifest
        from csa_cli.records import make_record
        from csa_cli.stages.pull.hub import pull

        entry = load_manifest(manifest).get(model)
        out.info(f"License of {entry.name}: {entry.license}")
        result = pull(entry, revision=revision, locked=locked, offline=True if offline else None, force=force, manifest_path=manifest)
        if result.hub_license and result.hub_license.lower() not in entry.license.lower():
            out.info(f"License on the Hub's model card: {result.hub_license}")
        record = make_record("checkpoint", **result.record_fields())

        def render() -> Table:
            from csa_cli.console import table

            rows = [[name, sha[:16] + "…"] for name, sha in result.files.items()]
            return table(f"{result.model}: {result.repo}@{result.revision} (commit {result.commit[:12]})", ["file", "sha256"], rows)

        out.emit(record, render)

"""`csa cache ls|rm|prune`: what the zoo holds on disk — weights (HF cache) and artifacts (CSA_HOME)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from csa_cli.cli.common import ManifestOption, stage_command
from csa_cli.console import Output, table

if TYPE_CHECKING:
    from rich.table import Table

    from csa_cli.stages.pull.cache import CacheItem


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"


def _emit(out: Output, action: str, items: list[CacheItem], title: str, extra: dict[str, Any] | None = None) -> None:
    total = sum(i.bytes for i in items)

    def render() -> Table:
        rows = [[i.model, i.where, i.what + (" (pinned)" if i.pinned and i.what == "weights" else ""), i.detail[:12], _size(i.bytes), i.path] for i in items]
        view = table(f"{title}: {len(items)} item(s), {_size(total)}", ["model", "where", "what", "commit/key", "size", "path"], rows)
        return view

    out.emit_data({"schema": 1, "kind": "cache", "action": action, "items": [i.model_dump() for i in items], "bytes": total, **(extra or {})}, render)


def register(app: typer.Typer) -> None:
    cache_app = typer.Typer(
        help="Show and free what the zoo holds: weights in the Hugging Face cache, artifacts under CSA_HOME.", no_args_is_help=True, rich_markup_mode=None
    )
    app.add_typer(cache_app, name="cache")

    @cache_app.command("ls")
    @stage_command("cache")
    def ls(
        out: Output,
        model: Annotated[str | None, typer.Argument(help="Only this zoo model.")] = None,
        manifest: ManifestOption = None,
    ) -> None:
        """List cached weights (HF cache), artifacts (CSA_HOME) and locks, per zoo model."""
        from csa_cli.manifest import load_manifest
        from csa_cli.stages.pull.cache import list_cache

        items = list_cache(load_manifest(manifest), model, manifest)
        _emit(out, "ls", items, "csa cache")

    @cache_app.command("rm")
    @stage_command("cache")
    def rm(
        out: Output,
        model: Annotated[str, typer.Argument(help="The zoo model whose weights and artifacts to delete.")],
        manifest: ManifestOption = None,
    ) -> None:
        """Delete MODEL's weights from the HF cache and its artifacts from CSA_HOME (its lock stays)."""
        from csa_cli.manifest import load_manifest
        from csa_cli.stages.pull.cache import remove_model

        removed = remove_model(load_manifest(manifest), model, manifest)
        if not removed:
            out.info(f"Nothing cached for {model}")
        for item in removed:
            out.info(f"Removed {item.what} ({item.where}, {_size(item.bytes)}): {item.path}")
        _emit(out, "rm", removed, f"removed for {model}")

    @cache_app.command("prune")
    @stage_command("cache")
    def prune(
        out: Output,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would be removed.")] = False,
        manifest: ManifestOption = None,
    ) -> None:
        """Remove unpinned weight snapshots of zoo repos, incomplete downloads and half-built artifacts."""
        from csa_cli.manifest import load_manifest
        from csa_cli.stages.pull.cache import prune as prune_cache

        found = prune_cache(load_manifest(manifest), dry_run=dry_run, manifest_path=manifest)
        verb = "Would remove" if dry_run else "Removed"
        for item in found:
            out.info(f"{verb} {item.what} ({item.where}, {_size(item.bytes)}): {item.path}")
        if not found:
            out.info("Nothing to prune")
        _emit(out, "prune", found, "would prune" if dry_run else "pruned", {"dry_run": dry_run})

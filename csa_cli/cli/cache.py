"""`csa cache ls|rm|prune`: what the zoo holds on disk — weights (HF cache) and artifacts (CSA_HOME)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from csa_cli.cli import options
from csa_cli.cli.common import stage_command
from csa_cli.cli.options import examples
from csa_cli.console import Output, table
from csa_cli.errors import UsageError

if TYPE_CHECKING:
    from rich.table import Table

    from csa_cli.stages.pull.cache import CacheItem

LS_EXAMPLES = examples(
    ("everything csa and the Hub client keep for the zoo: sizes, ages, what each came from", "csa cache ls"),
    ("one model's, with the full paths", "csa cache ls csa-tiny"),
)
RM_EXAMPLES = examples(
    ("a model's weights and artifacts (its lock stays, so a re-pull gets the same commit)", "csa cache rm convnext-tiny"),
    ("the same model named by its Hub repo id", "csa cache rm timm/convnext_tiny.fb_in1k"),
)
PRUNE_EXAMPLES = examples(
    ("what nothing uses any more: orphans, stale keys, half-built folders, unpinned snapshots", "csa cache prune --dry-run"),
    ("keep CSA_HOME under 20 GB, removing the oldest artifacts first", "csa cache prune --max-size 20GB"),
    ("the same bound over the Hugging Face cache too", "csa cache prune --max-size 20GB --include-hf"),
)


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"


def _age(created: float | None, now: float) -> str:
    if not created:
        return "-"
    seconds = max(0.0, now - created)
    for unit, span in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= span:
            return f"{seconds / span:.0f} {unit}"
    return f"{seconds:.0f} s"


def parse_size(text: str) -> int:
    """'20GB', '500 MB', '1.5G', '123' (bytes) -> bytes (decimal units, as `csa cache ls` prints them)."""
    units = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9, "t": 10**12, "tb": 10**12}
    raw = text.strip().lower().replace(" ", "")
    number = raw.rstrip("kmgtb")
    try:
        value = float(number)
        factor = units[raw[len(number) :]]
    except (ValueError, KeyError):
        raise UsageError(f"--max-size takes a size like 20GB or 500MB, got {text!r}") from None
    if value < 0:
        raise UsageError(f"--max-size must not be negative, got {text!r}")
    return int(value * factor)


def _emit(out: Output, action: str, items: list[CacheItem], title: str, extra: dict[str, Any] | None = None, *, paths: bool = False) -> None:
    total = sum(i.bytes for i in items)
    now = time.time()

    def render() -> Table:
        columns = ["model", "what", "size", "age", "from"]
        rows = [[i.model, i.what + (" (pinned)" if i.pinned else ""), _size(i.bytes), _age(i.created, now), i.provenance or i.detail[:12]] for i in items]
        if paths:  # the details view: one model's, with the paths the table above leaves out
            columns.append("path")
            for row, item in zip(rows, items, strict=True):
                row.append(item.path)
        return table(f"{title}: {len(items)} item(s), {_size(total)}", columns, rows, wide={"from", "path"})

    out.emit_data({"schema": 1, "kind": "cache", "action": action, "items": [i.model_dump() for i in items], "bytes": total, **(extra or {})}, render)


def register(app: typer.Typer) -> None:
    """Add `csa cache` and its commands. Long because typer reads each option from the signatures
    of the three commands defined inside."""
    cache_app = typer.Typer(
        help="Show and free what the zoo holds: weights in the Hugging Face cache, artifacts under CSA_HOME.", no_args_is_help=True, rich_markup_mode=None
    )
    app.add_typer(cache_app, name="cache", short_help="What the zoo holds on disk: ls, rm, prune.")

    @cache_app.command("ls", short_help="Weights, artifacts and locks, with sizes and ages.", epilog=LS_EXAMPLES)
    @stage_command("cache")
    def ls(
        out: Output,
        model: str | None = typer.Argument(None, metavar="MODEL", help="Only this zoo model (and show the paths).", show_default=False),
        manifest: Path | None = options.MANIFEST(),
    ) -> None:
        """List cached weights (HF cache), artifacts (CSA_HOME) and locks: size, age, what each was made from."""
        from csa_cli.manifest import load_manifest
        from csa_cli.stages.pull.cache import list_cache

        zoo = load_manifest(manifest)
        name = zoo.get(model).name if model else None
        items = list_cache(zoo, name, manifest)
        _emit(out, "ls", items, "csa cache", paths=model is not None)

    @cache_app.command("rm", short_help="Delete a model's weights and artifacts.", epilog=RM_EXAMPLES)
    @stage_command("cache")
    def rm(
        out: Output,
        model: str = typer.Argument(..., metavar="MODEL", help="The zoo model whose weights and artifacts to delete."),
        manifest: Path | None = options.MANIFEST(),
    ) -> None:
        """Delete MODEL's weights from the HF cache and its artifacts from CSA_HOME (its lock stays)."""
        from csa_cli.manifest import load_manifest
        from csa_cli.stages.pull.cache import remove_model

        zoo = load_manifest(manifest)
        name = zoo.get(model).name
        removed = remove_model(zoo, name, manifest)
        if not removed:
            out.info(f"Nothing cached for {name}")
        for item in removed:
            out.info(f"Removed {item.what} ({item.where}, {_size(item.bytes)}): {item.path}")
        _emit(out, "rm", removed, f"removed for {name}")

    @cache_app.command("prune", short_help="Free what nothing uses; keep CSA_HOME under a size.", epilog=PRUNE_EXAMPLES)
    @stage_command("cache")
    def prune(
        out: Output,
        dry_run: bool = typer.Option(False, "--dry-run", help="Only list what would be removed."),
        max_size: str | None = typer.Option(
            None, "--max-size", metavar="SIZE", help="Then remove the oldest artifacts until CSA_HOME holds at most SIZE (e.g. 20GB)."
        ),
        include_hf: bool = typer.Option(False, "--include-hf", help="--max-size counts (and may remove) weights in the Hugging Face cache too."),
        manifest: Path | None = options.MANIFEST(),
    ) -> None:
        """Remove orphaned and stale artifacts, half-built folders, incomplete downloads and unpinned snapshots of zoo repos."""
        from csa_cli.manifest import load_manifest
        from csa_cli.stages.pull.cache import prune as prune_cache

        if include_hf and max_size is None:
            raise UsageError("--include-hf goes with --max-size", hint="e.g. csa cache prune --max-size 20GB --include-hf")
        bound = parse_size(max_size) if max_size is not None else None
        found = prune_cache(load_manifest(manifest), dry_run=dry_run, manifest_path=manifest, max_bytes=bound, include_hf=include_hf)
        verb = "Would remove" if dry_run else "Removed"
        for item in found:
            out.info(f"{verb} {item.what} ({item.where}, {_size(item.bytes)}): {item.path}")
        if not found:
            out.info("Nothing to prune")
        _emit(out, "prune", found, "would prune" if dry_run else "pruned", {"dry_run": dry_run, "max_bytes": bound})

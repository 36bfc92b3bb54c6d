"""`csa list` and `csa info MODEL`: what the zoo holds."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from csa_cli.cli import options
from csa_cli.cli.common import stage_command
from csa_cli.cli.options import examples
from csa_cli.console import Output, table, text

if TYPE_CHECKING:
    from rich.console import Group
    from rich.table import Table

    from csa_cli.manifest import ModelEntry


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _top1(entry: ModelEntry) -> float | None:
    return next((m.value for m in entry.reported if "top-1" in m.metric), None)


LIST_EXAMPLES = examples(
    ("the zoo as a table", "csa list"),
    ("the zoo with a user manifest merged over it, as JSON", "csa list --manifest my-zoo.toml --json"),
)
INFO_EXAMPLES = examples(
    ("one entry by its zoo name", "csa info csa-tiny"),
    ("the same entry by its Hub repo id or its tagged timm name", "csa info timm/convnext_tiny.fb_in1k"),
)


def _list_table(data: list[dict[str, Any]], width: int) -> Table:
    """The zoo at any width: the Hub repo column moves to the caption (`csa info`) when it would not fit."""
    rows = [
        [d["name"], d["family"], d["builder"], _fmt(d["params_m"], 2), _fmt(d["gmacs"], 2), _fmt(d["reported_top1"], 2), d["hub_repo"] or "none published"]
        for d in data
    ]
    return table(
        "csa zoo (top-1 % as reported by each model's source)",
        ["model", "family", "builder", "params (M)", "GMACs", "top-1 %", "Hub repo"],
        rows,
        wide={"Hub repo"},
        numeric={"params (M)", "GMACs", "top-1 %"},
        details={"Hub repo": "`csa info MODEL` (or a wider terminal)"},
        width=width,
    )


def register(app: typer.Typer) -> None:
    """Add the command(s) to `app`. Long because typer reads each option from the command's
    signature: one annotated parameter per option."""

    @app.command("list", short_help="The zoo's models, sizes and reported accuracy.", epilog=LIST_EXAMPLES)
    @stage_command("list")
    def list_models(out: Output, manifest: Path | None = options.MANIFEST()) -> None:
        """List the zoo's models."""
        from csa_cli.manifest import load_manifest

        zoo = load_manifest(manifest)
        data = [
            {
                "name": e.name,
                "family": e.family,
                "builder": e.architecture.builder,
                "hub_repo": e.source.repo if e.source else None,
                "params_m": e.params_m,
                "gmacs": e.gmacs,
                "reported_top1": _top1(e),
                "license": e.license,
            }
            for e in zoo.models.values()
        ]
        out.emit_data({"schema": 1, "kind": "list", "models": data}, lambda: _list_table(data, out.stdout.width))

    @app.command("info", short_help="One model: source, license, preprocessing, cache.", epilog=INFO_EXAMPLES)
    @stage_command("info")
    def info(
        out: Output,
        model: str = typer.Argument(..., metavar="MODEL", help="A zoo model: its name, Hub repo id or tagged timm name."),
        manifest: Path | None = options.MANIFEST(),
    ) -> None:
        """Everything the manifest knows about MODEL, its license, and what is cached locally."""
        from csa_cli.manifest import load_manifest
        from csa_cli.stages.pull.cache import cached_items_for

        entry = load_manifest(manifest).get(model)
        cached = cached_items_for(entry)
        data = {"schema": 1, "kind": "info", **entry.model_dump(mode="json"), "cached": cached}

        def render() -> Group:
            from rich.console import Group
            from rich.table import Table

            facts = Table.grid(padding=(0, 2))
            facts.add_column(style="bold")
            facts.add_column()
            pre = entry.preprocessing
            src = entry.source
            rows = [
                ("model", entry.name),
                ("family", entry.family),
                ("description", entry.description),
                ("architecture", f"{entry.architecture.builder}: {entry.architecture.name}"),
                ("Hub repo", f"{src.repo} @ {src.revision} ({', '.join(src.files)})" if src else "none: no weights published yet"),
                ("license", entry.license),
                ("classes", str(entry.num_classes)),
                ("params / GMACs", f"{_fmt(entry.params_m, 2)} M / {_fmt(entry.gmacs)}"),
                (
                    "preprocessing",
                    f"{pre.input_size[0]}x{pre.input_size[1]}, crop_pct {pre.crop_pct}, {pre.interpolation}, mean {list(pre.mean)}, std {list(pre.std)}",
                ),
            ]
            rows += [("reported", f"{m.metric}: {m.value} ({m.source})") for m in entry.reported]
            rows += [("note", n) for n in entry.notes]
            rows += [("cached", f"{c['what']}: {c['path']}") for c in cached] or [("cached", "nothing")]
            for key, value in rows:
                facts.add_row(text(key), text(value))  # manifest text is the user's: never read as markup
            return Group(facts)

        out.emit_data(data, render)

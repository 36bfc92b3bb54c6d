"""`csa compare MODEL...`: the seed's study side by side (Table 1, Fig. 5, 6, 7)."""

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

    from csa_cli.pipeline.compare import Study
    from csa_cli.pipeline.options import RunSummary


def _per_batch(study: Study) -> list[tuple[str, list[str], list[list[str]]]]:
    """Fig. 6 and 7 for a terminal: a row per (model, batch) instead of a column per batch, so they fit 80 columns."""
    from csa_cli.pipeline.report import TABLES, fmt

    devices = sorted({d for r in study.fig6 for d in r.device_ms})
    cols6 = ["model", "batch", "latency ms", f"× {study.baseline}"] + [c for d in devices for c in (f"{d} ms", f"{d} ×")]
    rows6 = []
    for r in study.fig6:
        for b in study.batches:
            row = [r.model, str(b), fmt(r.latency_ms.get(b), 3), fmt(r.ratio.get(b), 3)]
            row += [v for d in devices for v in (fmt(r.device_ms.get(d, {}).get(b), 3), fmt(r.device_ratio.get(d, {}).get(b), 3))]
            rows6.append(row)
    cols7 = ["model", "batch", "estimate MB/frame", "measured MB/frame"]
    rows7 = [[r.model, str(b), fmt(r.estimate_mb.get(b), 3), fmt(r.measured_mb.get(b), 3)] for r in study.fig7 for b in study.batches]
    return [(TABLES["fig6"][0], cols6, rows6), (TABLES["fig7"][0], cols7, rows7)]


def render_study(study: Study) -> RenderableType:
    """The study's tables as they fit a terminal (`--report DIR` writes them as in the paper, a column per batch)."""
    from rich.console import Group

    from csa_cli.console import table, text
    from csa_cli.pipeline.report import TABLES

    parts: list[RenderableType] = []
    for name in ("table1", "fig5"):
        heading, rows_of = TABLES[name]
        cols, rows = rows_of(study)
        parts.append(table(heading, cols, rows))
    for heading, cols, rows in _per_batch(study):
        parts.append(table(heading, cols, rows, numeric=set(cols[1:])))
    parts += [text(note, style="yellow") for note in study.notes]
    return Group(*parts)


EXAMPLES = examples(
    (
        "the study for a CSA model against ConvNeXt, with a markdown report",
        "csa compare csa-tiny convnext-tiny --dataset ~/imagenet/val --limit 500 --report study",
    ),
    ("only what is stored already: nothing runs", "csa compare csa-tiny convnext-tiny --no-run"),
)

D = options.defaults_of(api.compare)


def register(app: typer.Typer) -> None:
    """Add the command(s) to `app`. Long because typer reads each option from the command's
    signature: one annotated parameter per option."""

    @app.command("compare", short_help="Several models side by side (the seed's study).", epilog=EXAMPLES)
    @stage_command("compare")
    def compare(
        out: Output,
        models: list[str] = typer.Argument(..., metavar="MODEL", help="Zoo models (see `csa list`)."),
        dataset: str | None = options.DATASET(D.dataset, shown="none: no top-1, no INT8"),
        data_dir: str | None = options.DATA_DIR(D.data_dir),
        limit: int | None = options.LIMIT(D.limit),
        calib_dataset: str | None = options.CALIB_DATASET(D.calib_dataset),
        calib_images: int = options.CALIB_IMAGES(D.calib_images),
        backend: str = options.BACKEND(D.backend, why="compare times the exported graphs as they are deployed"),
        batch: str = options.BATCH(D.batch, why="the study shows how latency and memory traffic scale with the batch"),
        baseline: str = typer.Option(D.baseline, "--baseline", metavar="MODEL", help=f"The model latency ratios refer to. Default: {D.baseline}."),
        iterations: int | None = options.ITERATIONS(D.iterations),
        seconds: float | None = options.SECONDS(D.seconds),
        threads: int | None = options.THREADS(D.threads),
        weights: str = options.WEIGHTS(D.weights),
        report: Path | None = options.REPORT(D.report),
        no_run: bool = typer.Option(D.no_run, "--no-run", help="Only show what is stored; run nothing."),
        manifest: Path | None = options.MANIFEST(D.manifest),
        cpu_int8: bool = options.CPU_INT8(D.cpu_int8, why="default on: the study shows the row"),
    ) -> None:
        """Compare models from stored results, running through the pipeline whatever is missing.
        \f
        Long because typer reads each option from this signature: one annotated parameter per
        option.
        """
        from csa_cli.pipeline.options import format_stage_line

        seen: dict[tuple[str, str], str] = {}

        def progress(summary: RunSummary) -> None:
            for s in summary.stages:
                key = (summary.model, s.name)
                if s.status != "pending" and seen.get(key) != s.status:
                    seen[key] = s.status
                    out.info(f"{summary.model} {format_stage_line(s)}")

        with out.status("comparing " + ", ".join(models)):
            record, study = api.compare_study(
                *models,
                on_update=progress,
                dataset=dataset,
                data_dir=data_dir,
                limit=limit,
                calib_dataset=calib_dataset,
                calib_images=calib_images,
                backend=backend,
                batch=batch,
                baseline=baseline,
                iterations=iterations,
                seconds=seconds,
                threads=threads,
                weights=weights,
                report=report,
                no_run=no_run,
                manifest=manifest,
                cpu_int8=cpu_int8,
            )
        out.emit(record, lambda: render_study(study))

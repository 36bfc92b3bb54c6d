"""`csa compare MODEL...`: the seed's study side by side (Table 1, Fig. 5, 6, 7)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from csa_cli.cli.common import ManifestOption, parse_batch_list, require_positive, stage_command
from csa_cli.console import Output
from csa_cli.errors import UsageError

if TYPE_CHECKING:
    from rich.console import RenderableType

    from csa_cli.pipeline.compare import Study
    from csa_cli.pipeline.options import RunSummary


def render_study(study: Study) -> RenderableType:
    from rich.console import Group
    from rich.text import Text

    from csa_cli.console import table
    from csa_cli.pipeline.report import TABLES

    parts: list[RenderableType] = []
    for heading, rows_of in TABLES.values():
        cols, rows = rows_of(study)
        parts.append(table(heading, cols, rows))
    parts += [Text(note, style="yellow") for note in study.notes]
    return Group(*parts)


def register(app: typer.Typer) -> None:
    """Add the command(s) to `app`. Long because typer reads each option from the command's
    signature: one annotated parameter per option."""

    @app.command("compare")
    @stage_command("compare")
    def compare(
        out: Output,
        models: Annotated[list[str], typer.Argument(help="Zoo model names.")],
        dataset: Annotated[str | None, typer.Option("--dataset", help="imagenet-val or an ImageFolder DIR (top-1, calibration).")] = None,
        data_dir: Annotated[str | None, typer.Option("--data-dir", help="Where imagenet-val lives (also CSA_DATA).")] = None,
        limit: Annotated[int | None, typer.Option("--limit", help="Evaluate the first N images.")] = None,
        calib_images: Annotated[int, typer.Option("--calib-images", help="Calibration images for INT8.")] = 500,
        backend: Annotated[str, typer.Option("--backend", help="Latency backend: onnxruntime | torch | tensorrt.")] = "onnxruntime",
        batch: Annotated[str, typer.Option("--batch", help="Batch sizes for latency and traffic.")] = "1,4,8,16",
        baseline: Annotated[str, typer.Option("--baseline", help="The model latency ratios refer to.")] = "convnext-tiny",
        iterations: Annotated[int, typer.Option("--iterations", help="Profile iterations per batch size.")] = 20,
        threads: Annotated[int | None, typer.Option("--threads", help="CPU threads for profiling.")] = None,
        weights: Annotated[str, typer.Option("--weights", help="auto | pretrained | random.")] = "auto",
        report: Annotated[Path | None, typer.Option("--report", help="Write DIR/report.md and PNG plots.")] = None,
        no_run: Annotated[bool, typer.Option("--no-run", help="Only show what is stored; run nothing.")] = False,
        manifest: ManifestOption = None,
    ) -> None:
        """Compare models from stored results, running through the pipeline whatever is missing.
        \f
        Long because typer reads each option from this signature: one annotated parameter per
        option.
        """
        from csa_cli.cli.run import _choice
        from csa_cli.pipeline.compare import compare_models
        from csa_cli.pipeline.options import format_stage_line
        from csa_cli.records import make_record

        if not models:
            raise UsageError("give at least one MODEL")
        batches = parse_batch_list(batch)
        seen: dict[tuple[str, str], str] = {}

        def progress(summary: RunSummary) -> None:
            for s in summary.stages:
                key = (summary.model, s.name)
                if s.status != "pending" and seen.get(key) != s.status:
                    seen[key] = s.status
                    out.info(f"{summary.model} {format_stage_line(s)}")

        with out.status("comparing " + ", ".join(models)):
            study = compare_models(
                models,
                baseline=baseline,
                batches=batches,
                backend=_choice(backend, "--backend", ("onnxruntime", "torch", "tensorrt")),
                dataset=dataset,
                data_dir=data_dir,
                limit=require_positive(limit, "--limit"),
                calib_images=require_positive(calib_images, "--calib-images") or 1,
                weights=weights,
                iterations=require_positive(iterations, "--iterations") or 1,
                threads=require_positive(threads, "--threads"),
                manifest=str(manifest) if manifest else None,
                run=not no_run,
                on_update=progress,
            )
        for model, what in study.runs.items():
            if what.startswith("failed"):
                out.warn(f"{model}: {what}")
        fields = study.to_record_fields()
        if report is not None:
            from csa_cli.pipeline.report import write_report

            path = write_report(study, report)
            out.info(f"report written: {path}")
            fields["report"] = str(path)
        record = make_record("compare", model=",".join(models), **fields)
        out.emit(record, lambda: render_study(study))

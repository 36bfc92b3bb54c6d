"""`csa run MODEL`: the whole chain, in-process, with a live view of the stages."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from csa_cli import api
from csa_cli.cli import options
from csa_cli.cli.common import stage_command
from csa_cli.cli.options import examples
from csa_cli.console import Output

if TYPE_CHECKING:
    from rich.table import Table

    from csa_cli.pipeline.options import RunSummary

_STYLE = {"done": "green", "cached": "cyan", "running": "yellow", "failed": "bold red", "skipped": "dim", "pending": "dim"}


def stages_table(summary: RunSummary, title: str | None = None, running_since: float | None = None) -> Table:
    """The stages of a run as a rich table: state, time, what was made or why not.

    running_since: when the running stage started (perf_counter), to show its elapsed time live.
    """
    import time

    from rich.table import Table

    from csa_cli.console import text

    view = Table(title=text(title or f"csa run {summary.model} (weights: {summary.weights or '?'})"))
    view.add_column("stage", no_wrap=True)
    view.add_column("status")
    view.add_column("time", justify="right")
    view.add_column("result / reason", overflow="fold")
    for s in summary.stages:
        if s.status == "running" and running_since is not None:
            secs = f"{time.perf_counter() - running_since:.1f}s"
        else:
            secs = "" if s.seconds is None else f"{s.seconds:.1f}s"
        view.add_row(s.name, text(s.status, _STYLE[s.status]), secs, text(s.reason or s.note or ""))  # a reason may hold "[...]"
    view.caption = f"total {summary.seconds:.1f}s"
    return view


class _Progress:
    """Stage updates: a rich live table on a terminal (redrawn 4 times a second), one plain line per change otherwise."""

    def __init__(self, out: Output) -> None:
        self.out = out
        self.live: Any = None
        self.seen: dict[str, str] = {}
        self.summary: RunSummary | None = None
        self.running_since: float | None = None

    def _view(self) -> Any:
        from rich.text import Text

        if self.summary is None:
            return Text("starting…")
        return stages_table(self.summary, running_since=self.running_since)

    def __enter__(self) -> _Progress:
        if self.out.stderr_is_terminal:
            from rich.live import Live

            self.live = Live(console=self.out.stderr, refresh_per_second=4, transient=False, get_renderable=self._view)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.running_since = None
            self.live.refresh()
            self.live.__exit__(None, None, None)

    def __call__(self, summary: RunSummary) -> None:
        import time

        from csa_cli.pipeline.options import format_stage_line

        for s in summary.stages:
            if self.seen.get(s.name) != s.status and s.status != "pending":
                self.seen[s.name] = s.status
                if s.status == "running":
                    self.running_since = time.perf_counter()
                if self.live is None:
                    self.out.info(format_stage_line(s))
        self.summary = summary
        if self.live is not None:
            self.live.refresh()


EXAMPLES = examples(
    ("every stage down to an Orin bundle, on the first 500 images of a folder", "csa run convnext-tiny --dataset ~/imagenet/val --limit 500 --target orin"),
    (
        "the same again after changing the calibration: the earlier stages come from the cache",
        "csa run convnext-tiny --dataset ~/imagenet/val --limit 500 --target orin --redo quantize",
    ),
    ("a CSA model without published weights, only as far as the compliance check", "csa run csa-tiny --to check"),
)
PRECISION_WHY = "run ends in a deployable engine, and mixed is the precision the Orin runs"
BACKEND_WHY = "run times the exported graph as it is deployed, and compares FP32 with INT8 on one runtime"

D = options.defaults_of(api.run)


def register(app: typer.Typer) -> None:
    """Add the command(s) to `app`. Long because typer reads each option from the command's
    signature: one parameter per option."""

    @app.command("run", short_help="The whole chain, pull to profile, cached per stage.", epilog=EXAMPLES)
    @stage_command("run")
    def run(
        out: Output,
        model: str = typer.Argument(..., metavar="MODEL", help="A zoo model (see `csa list`)."),
        to: str = typer.Option(
            D.to, "--to", metavar="STAGE", help=f"Last stage: fetch, evaluate, export, check, quantize, engine, eval-mixed, cpu-int8, profile. Default: {D.to}."
        ),
        dataset: str | None = options.DATASET(D.dataset, shown="none: evaluation and calibration are skipped"),
        data_dir: str | None = options.DATA_DIR(D.data_dir),
        limit: int | None = options.LIMIT(D.limit),
        calib_dataset: str | None = options.CALIB_DATASET(D.calib_dataset),
        calib_images: int = options.CALIB_IMAGES(D.calib_images),
        precision: str = options.PRECISION(D.precision, why=PRECISION_WHY, choices=("fp32", "fp16", "int8", "mixed")),
        target: str = options.TARGET(D.target),
        batch: str = options.BATCH(D.batch),
        backend: str = options.BACKEND(D.backend, why=BACKEND_WHY),
        iterations: int | None = options.ITERATIONS(D.iterations),
        seconds: float | None = options.SECONDS(D.seconds),
        threads: int | None = options.THREADS(D.threads),
        redo: str | None = typer.Option(D.redo, "--redo", metavar="STAGE", help="Redo from this stage on, ignoring cached results."),
        weights: str = options.WEIGHTS(D.weights),
        manifest: Path | None = options.MANIFEST(D.manifest),
        cpu_int8: bool = options.CPU_INT8(D.cpu_int8, why="default off here: a second calibration; on in `csa compare`"),
    ) -> None:
        """Run the chain fetch → evaluate → export → check → quantize → engine → eval-mixed → cpu-int8 → profile."""
        with _Progress(out) as progress:
            record = api.run(
                model,
                on_update=progress,
                to=to,
                dataset=dataset,
                data_dir=data_dir,
                limit=limit,
                calib_dataset=calib_dataset,
                calib_images=calib_images,
                precision=precision,
                target=target,
                batch=batch,
                backend=backend,
                iterations=iterations,
                seconds=seconds,
                threads=threads,
                redo=redo,
                weights=weights,
                manifest=manifest,
                cpu_int8=cpu_int8,
            )
        # on a terminal the live view already shows the final table
        summary = progress.summary
        out.emit(record, lambda: None if progress.live is not None or summary is None else stages_table(summary))

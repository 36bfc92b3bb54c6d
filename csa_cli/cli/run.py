"""`csa run MODEL`: the whole chain, in-process, with a live view of the stages."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from csa_cli.cli import options
from csa_cli.cli.common import canonical_model, parse_batch_list, require_positive, stage_command
from csa_cli.cli.options import examples
from csa_cli.console import Output
from csa_cli.errors import CsaError, ExitCode, UsageError

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


def register(app: typer.Typer) -> None:
    """Add the command(s) to `app`. Long because typer reads each option from the command's
    signature: one parameter per option."""

    @app.command("run", short_help="The whole chain, pull to profile, cached per stage.", epilog=EXAMPLES)
    @stage_command("run")
    def run(
        out: Output,
        model: str = typer.Argument(..., metavar="MODEL", help="A zoo model (see `csa list`)."),
        to: str = typer.Option(
            "profile", "--to", metavar="STAGE", help="Last stage: fetch, evaluate, export, check, quantize, engine, eval-mixed, profile. Default: profile."
        ),
        dataset: str | None = options.DATASET(None, shown="none: evaluation and calibration are skipped"),
        data_dir: str | None = options.DATA_DIR(),
        limit: int | None = options.LIMIT(),
        calib_dataset: str | None = options.CALIB_DATASET(),
        calib_images: int = options.CALIB_IMAGES(),
        precision: str = options.PRECISION("mixed", why=PRECISION_WHY, choices=("fp32", "fp16", "int8", "mixed")),
        target: str = options.TARGET(),
        batch: str = options.BATCH(),
        backend: str = options.BACKEND("onnxruntime", why=BACKEND_WHY),
        iterations: int | None = options.ITERATIONS(),
        seconds: float | None = options.SECONDS(),
        threads: int | None = options.THREADS(),
        redo: str | None = typer.Option(None, "--redo", metavar="STAGE", help="Redo from this stage on, ignoring cached results."),
        weights: str = options.WEIGHTS(),
        manifest: Path | None = options.MANIFEST(),
    ) -> None:
        """Run the chain fetch → evaluate → export → check → quantize → engine → eval-mixed → profile."""
        from csa_cli.pipeline.options import RunOptions, stage_name
        from csa_cli.pipeline.run import run_pipeline

        options_ = RunOptions(
            model=canonical_model(model, manifest),
            to=stage_name(to),
            redo=stage_name(redo, "--redo") if redo else None,
            weights=weights,
            dataset=dataset,
            data_dir=data_dir,
            limit=require_positive(limit, "--limit"),
            calib_dataset=calib_dataset,
            calib_images=require_positive(calib_images, "--calib-images") or 1,
            precision=_choice(precision, "--precision", ("fp32", "fp16", "int8", "mixed")),  # type: ignore[arg-type]
            target=_choice(target, "--target", ("local", "orin")),  # type: ignore[arg-type]
            batch=parse_batch_list(batch),
            backend=_choice(backend, "--backend", ("onnxruntime", "torch", "tensorrt")),  # type: ignore[arg-type]
            iterations=require_positive(iterations, "--iterations"),
            seconds=seconds,
            threads=require_positive(threads, "--threads"),
            manifest=str(manifest) if manifest else None,
        )
        with _Progress(out) as progress:
            summary = run_pipeline(options_, on_update=progress)
        shown_live = progress.live is not None
        if not summary.ok:
            failed = summary.stage(summary.failed_stage) if summary.failed_stage else None
            code = ExitCode(failed.exit_code) if failed and failed.exit_code in {int(c) for c in ExitCode} else ExitCode.FAILURE
            raise CsaError(f"stage '{summary.failed_stage}' failed: {summary.message}", exit_code=code)
        # on a terminal the live view already shows the final table
        out.emit(summary.to_record(), lambda: None if shown_live else stages_table(summary))


def _choice(value: str, option: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise UsageError(f"{option} must be one of {', '.join(choices)}, got {value!r}")
    return value

"""`csa run MODEL`: the whole chain, in-process, with a live view of the stages."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from csa_cli.cli.common import ManifestOption, parse_batch_list, require_positive, stage_command
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

    view = Table(title=title or f"csa run {summary.model} (weights: {summary.weights or '?'})")
    view.add_column("stage")
    view.add_column("status")
    view.add_column("time", justify="right")
    view.add_column("result / reason", overflow="fold")
    for s in summary.stages:
        if s.status == "running" and running_since is not None:
            secs = f"{time.perf_counter() - running_since:.1f}s"
        else:
            secs = "" if s.seconds is None else f"{s.seconds:.1f}s"
        view.add_row(s.name, f"[{_STYLE[s.status]}]{s.status}[/]", secs, s.reason or s.note or "")
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


def register(app: typer.Typer) -> None:
    @app.command("run")
    @stage_command("run")
    def run(
        out: Output,
        model: Annotated[str, typer.Argument(help="A zoo model name.")],
        to: Annotated[str, typer.Option("--to", help="Last stage: fetch, evaluate, export, check, quantize, engine, eval-mixed, profile.")] = "profile",
        dataset: Annotated[str | None, typer.Option("--dataset", help="imagenet-val or an ImageFolder DIR (evaluation and calibration).")] = None,
        data_dir: Annotated[str | None, typer.Option("--data-dir", help="Where imagenet-val lives (also CSA_DATA).")] = None,
        limit: Annotated[int | None, typer.Option("--limit", help="Evaluate the first N images.")] = None,
        calib_dataset: Annotated[str | None, typer.Option("--calib-dataset", help="Calibration images (default: --dataset).")] = None,
        calib_images: Annotated[int, typer.Option("--calib-images", help="Calibration images for INT8.")] = 500,
        precision: Annotated[str, typer.Option("--precision", help="fp32 | fp16 | int8 | mixed (quantize and engine).")] = "mixed",
        target: Annotated[str, typer.Option("--target", help="local (TensorRT here) | orin (a bundle to build on the device).")] = "local",
        batch: Annotated[str, typer.Option("--batch", help="Batch sizes, e.g. 1,4,8,16 (the first is exported).")] = "1",
        backend: Annotated[str, typer.Option("--backend", help="Profile backend: onnxruntime | torch | tensorrt.")] = "onnxruntime",
        iterations: Annotated[int, typer.Option("--iterations", help="Profile iterations per batch size.")] = 20,
        threads: Annotated[int | None, typer.Option("--threads", help="CPU threads for profiling.")] = None,
        redo: Annotated[str | None, typer.Option("--redo", help="Redo from this stage on, ignoring cached results.")] = None,
        weights: Annotated[str, typer.Option("--weights", help="auto | pretrained | random | PATH.")] = "auto",
        manifest: ManifestOption = None,
    ) -> None:
        """Run the chain fetch → evaluate → export → check → quantize → engine → eval-mixed → profile."""
        from csa_cli.pipeline.options import RunOptions, stage_name
        from csa_cli.pipeline.run import run_pipeline

        options = RunOptions(
            model=model,
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
            iterations=require_positive(iterations, "--iterations") or 1,
            threads=require_positive(threads, "--threads"),
            manifest=str(manifest) if manifest else None,
        )
        with _Progress(out) as progress:
            summary = run_pipeline(options, on_update=progress)
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

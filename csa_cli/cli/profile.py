"""`csa profile`: latency at each batch size, memory traffic per frame (estimate), roofline.

No `from __future__ import annotations` here: stage_command copies the signature as it is.
"""

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from csa_cli import api
from csa_cli.cli import options
from csa_cli.cli.common import stage_command
from csa_cli.cli.options import examples
from csa_cli.console import Output
from csa_cli.inputs import CommandInput

if TYPE_CHECKING:
    from rich.console import Group

    from csa_cli.stages.profile.records import ProfileResult

ESTIMATE = "estimate (static, from the ONNX graph)"


def _fmt(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits + 1}f}" if abs(value) < 1 and digits == 2 else f"{value:.{digits}f}"


def render(results: "list[ProfileResult]") -> "Group":
    """Two tables that fit 80 columns, a row per (model, batch): latency, then throughput and the per-frame estimate.

    The backend goes in the titles when every result shares it, else in a column.
    """
    from rich.console import Group

    from csa_cli.console import table, text

    first = results[0]
    backends = {f"{res.backend} {res.precision}" for res in results}
    shared = next(iter(backends)) if len(backends) == 1 else None
    lead = ["model", "batch"] if shared else ["model", "backend", "batch"]

    def key(res: "ProfileResult", batch: int) -> list[object]:
        return [res.model, batch] if shared else [res.model, f"{res.backend} {res.precision}", batch]

    latency, per_frame = [], []
    for res in results:
        for r in res.results:
            latency.append([*key(res, r.batch), _fmt(r.median_ms), _fmt(r.p90_ms), _fmt(r.p99_ms), f"{r.mean_ms:.2f} ± {r.std_ms:.2f}", _fmt(r.min_ms)])
            per_frame.append(
                [
                    *key(res, r.batch),
                    _fmt(r.throughput_ips, 1),
                    _fmt(r.per_image_ms),
                    _fmt(r.macs_per_frame / 1e9 if r.macs_per_frame is not None else None, 3),
                    _fmt(r.traffic_bytes_per_frame / 1e6 if r.traffic_bytes_per_frame is not None else None, 1),
                    _fmt(r.floor_ms),
                    _fmt(r.x_floor, 1),
                ]
            )
    where = f"{first.machine.title(first.device)}" + (f", {shared}" if shared else "")
    times = ["median ms", "p90", "p99", "mean ± std", "min"]
    frames = ["img/s", "ms/img", "GMAC*", "MB*", "floor ms", "×floor"]
    notes = [f"* per frame, {ESTIMATE}; floor = max(2·MACs / peak FLOP rate, bytes / bandwidth), × floor = median / floor", first.settings]
    if first.roofline is not None:
        notes.append(f"peaks: {first.roofline.peak_gflops:.0f} GFLOP/s, {first.roofline.bandwidth_gbs:.1f} GB/s ({first.roofline.device_name})")
    notes += sorted({r.roofline_note for r in results if r.roofline_note})
    if first.load is not None:
        notes.append(f"machine {first.load.describe()} when timing started")
    parts = [
        table(f"csa profile: latency ({where})", lead + times, latency, numeric={"batch", *times}),
        table("throughput and per-frame cost", lead + frames, per_frame, numeric={"batch", *frames}),
    ]
    spreads = [(res, r.batch, r.ratio) for res in results for r in res.results if r.ratio]
    ratios = [[*key(res, b), f"{s.ratio:.2f}", f"{s.low:.2f}-{s.high:.2f}", s.verdict] for res, b, s in spreads]
    if ratios:
        base = next(r.ratio_to for res in results for r in res.results if r.ratio_to)
        parts.append(table(f"side by side (interleaved): latency / {base}", [*lead, "ratio", "95% interval", "verdict"], ratios, numeric={"batch", "ratio"}))
    return Group(*parts, text("\n".join(notes), style="dim"))


EXAMPLES = examples(
    ("two zoo models timed side by side (interleaved), ratios to the first", "csa profile convnext-tiny csa-tiny"),
    ("an exported graph on ONNX Runtime, 50 timed runs at batch 1", "csa export csa-tiny --weights random | csa profile --iterations 50"),
    ("PyTorch on the GPU with CUDA graphs (needs a GPU)", "csa profile csa-tiny --device cuda --precision fp16 --batch 1,8"),
)
BATCH_WHY = "profile shows how latency and throughput scale with the batch; a static-batch file: its own"

D = options.defaults_of(api.profile)


def register(app: typer.Typer) -> None:
    """Add the command(s) to `app`. Long because typer reads each option from the command's
    signature: one annotated parameter per option."""

    @app.command("profile", short_help="Latency, throughput, memory traffic and roofline.", epilog=EXAMPLES)
    @stage_command("profile")
    def profile(
        out: Output,
        inputs: list[str] | None = typer.Argument(
            None,
            metavar="MODEL|ONNX|ENGINE|RECORD",
            help="Zoo models, ONNX files, TensorRT engines or record files (.json); or none, to read the record piped on stdin.",
            show_default=False,
        ),
        backend: str | None = options.BACKEND(D.backend),
        batch: str | None = options.BATCH(D.batch, shown="1,4,8,16", why=BATCH_WHY),
        threads: int | None = options.THREADS(D.threads),
        iterations: int | None = options.ITERATIONS(D.iterations),
        seconds: float | None = options.SECONDS(D.seconds),
        warmup: int = options.WARMUP(D.warmup),
        plot: Path | None = typer.Option(D.plot, "--plot", metavar="FILE", help="Write latency vs batch as a PNG."),
        weights: str = options.WEIGHTS(D.weights),
        device: str | None = options.DEVICE(D.device, shown="cuda for torch where there is one, else cpu", why="profile times the fastest place"),
        precision: str = options.PRECISION(D.precision),
        dynamic_batch: bool = options.DYNAMIC_BATCH(D.dynamic_batch),
        cuda_graphs: bool = typer.Option(
            D.cuda_graphs, "--cuda-graphs/--no-cuda-graphs", help="Replay CUDA graphs (torch on CUDA). Default: on.", show_default=False
        ),
        estimate: bool = typer.Option(
            D.estimate,
            "--estimate/--no-estimate",
            help="Static traffic/MACs estimate and roofline floor. Default: on.",
            show_default=False,
        ),
        img_size: str | None = options.IMG_SIZE(D.img_size),
        manifest: Path | None = options.MANIFEST(D.manifest),
    ) -> None:
        """Latency (median, p90, p99, mean ± std, min), throughput and per-image latency at each batch size,
        with memory traffic and MACs per frame (static estimate) and a roofline floor. A bundle is
        timed on its device: run its validate.sh there, then `csa import-timings`.
        \f
        Long because typer reads each option from this signature: one annotated parameter per
        option.
        """
        results = api.profile_results(
            *[CommandInput(a) for a in (inputs or [None])],  # type: ignore[list-item]
            backend=backend,
            batch=batch,
            threads=threads,
            iterations=iterations,
            seconds=seconds,
            warmup=warmup,
            plot=plot,
            weights=weights,
            device=device,
            precision=precision,
            dynamic_batch=dynamic_batch,
            cuda_graphs=cuda_graphs,
            estimate=estimate,
            img_size=img_size,
            manifest=manifest,
        )
        if out.json:
            for res in results:
                out.emit_record(res.to_record())
        else:
            out.stdout.print(render(results))

"""`csa import-timings`: trtexec --exportTimes JSON from a device -> the results store for `csa compare`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from csa_cli.cli import options
from csa_cli.cli.common import stage_command
from csa_cli.cli.options import examples
from csa_cli.console import Output, table

if TYPE_CHECKING:
    from csa_cli.records import Record


def _render(record: Record) -> Any:
    rows = [
        [record.model, r["batch"], f"{r['median_ms']:.3f}", f"{r['p99_ms']:.3f}", f"{r['throughput_ips']:.1f}", r["iterations"]]
        for r in record.field("results", [])
    ]
    device = (record.field("machine") or {}).get("device")
    return table(f"TensorRT timings on {device} (stored for csa compare)", ["model", "batch", "median ms", "p99 ms", "images/s", "runs"], rows)


EXAMPLES = examples(
    (
        "timings a bundle's validate.sh measured on the Orin (model, batch and precision read from the bundle)",
        "csa import-timings bundle/results/times_b1.json",
    ),
    ("a trtexec --exportTimes file from elsewhere", "csa import-timings times.json --model csa-tiny --batch 8 --precision mixed --device 'Orin AGX'"),
)


def register(app: typer.Typer) -> None:
    @app.command("import-timings", short_help="trtexec timings from a device, for csa compare.", epilog=EXAMPLES)
    @stage_command("import-timings")
    def import_timings(
        out: Output,
        file: Path = typer.Argument(..., metavar="FILE", help="A trtexec --exportTimes JSON file (a bundle's results/times_bN.json)."),
        model: str | None = options.MODEL(None, shown="read from the bundle"),
        batch: int | None = typer.Option(None, "--batch", metavar="N", help="Batch size of the engine. Default: read from times_bN.json."),
        precision: str | None = typer.Option(None, "--precision", metavar="PRECISION", help="fp32 | fp16 | int8 | mixed. Default: read from the bundle."),
        device: str | None = typer.Option(None, "--device", metavar="NAME", help='Where they were measured, e.g. "Orin AGX".'),
    ) -> None:
        """Import trtexec timings measured on a device, for `csa compare`."""
        from csa_cli.stages.engine.timings import import_timings as run_import

        record = run_import(file, model=model, batch=batch, precision=precision, device=device)
        out.info(f"stored: {record.field('stored')}")
        out.emit(record, lambda: _render(record))

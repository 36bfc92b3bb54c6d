"""`csa import-timings`: trtexec --exportTimes JSON from a device -> the results store for `csa compare`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from csa_cli.cli.common import stage_command
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


def register(app: typer.Typer) -> None:
    @app.command("import-timings")
    @stage_command("import-timings")
    def import_timings(
        out: Output,
        file: Annotated[Path, typer.Argument(help="A trtexec --exportTimes JSON file (a bundle's results/times_bN.json).")],
        model: Annotated[str | None, typer.Option("--model", help="Zoo model the timings belong to (read from the bundle when inside one).")] = None,
        batch: Annotated[int | None, typer.Option("--batch", help="Batch size of the engine (read from times_bN.json).")] = None,
        precision: Annotated[str | None, typer.Option("--precision", help="fp32 | fp16 | int8 | mixed (read from the bundle).")] = None,
        device: Annotated[str | None, typer.Option("--device", help='Where they were measured, e.g. "Orin AGX".')] = None,
    ) -> None:
        """Import trtexec timings measured on a device, for `csa compare`."""
        from csa_cli.stages.engine.timings import import_timings as run_import

        record = run_import(file, model=model, batch=batch, precision=precision, device=device)
        out.info(f"stored: {record.field('stored')}")
        out.emit(record, lambda: _render(record))

"""`csa doctor`: what this machine has, and what each piece enables."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from csa_cli.cli.common import stage_command
from csa_cli.cli.options import examples
from csa_cli.console import Output, table

EXAMPLES = examples(
    ("what this machine has, and what each piece enables", "csa doctor"),
    ("the same as JSON, for a bug report", "csa doctor --json"),
)
if TYPE_CHECKING:
    from csa_cli.measure.machine import Check


def _status(check: Check) -> str:
    if not check.present:
        return "absent"
    return "too old" if check.problem else "present"


def register(app: typer.Typer) -> None:
    @app.command("doctor", short_help="This machine's backends and what each enables.", epilog=EXAMPLES)
    @stage_command("doctor")
    def doctor(out: Output) -> None:
        """Report python, torch, onnxruntime providers, CUDA and TensorRT, and what each enables."""
        from csa_cli.measure.machine import probe_environment

        checks = probe_environment()
        out.emit_data(
            {"schema": 1, "kind": "doctor", "checks": [c.model_dump() for c in checks]},
            lambda: table(
                "csa doctor",
                ["component", "status", "version / detail", "enables"],
                [[c.component, _status(c), c.detail + (f"\n{c.problem}" if c.problem else ""), c.enables] for c in checks],
            ),
        )

"""`csa check [MODEL|ONNX|record]`: TensorRT restricted-mode (safety scope) and DLA compliance of a graph.

Exit 0 compliant, 3 not. On non-compliance the record, verdict included, is still printed
first (and no error record follows): the next stage sees "check": {"compliant": false} and
stops unless it is given --force.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from csa_cli import api
from csa_cli.cli import options
from csa_cli.cli.common import stage_command
from csa_cli.cli.options import examples
from csa_cli.console import Output
from csa_cli.errors import ExitCode
from csa_cli.inputs import CommandInput

if TYPE_CHECKING:
    from rich.console import RenderableType

    from csa_cli.stages.check.report import CheckReport


def render_report(report: CheckReport, report_path: str | None) -> RenderableType:
    """Findings grouped by rule set, rule and op: one row each, with a sample node and the source."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    groups: dict[tuple[str, str, str, str], list[str]] = {}
    sources: dict[tuple[str, str, str, str], str] = {}
    for f in [*report.violations, *report.warnings]:
        key = (f.verdict, f.rule_set, f.rule, f.op)
        groups.setdefault(key, []).append(f.node)
        sources[key] = f.source
    view = Table(title=Text(f"csa check: {report.model or report.path} ({report.rules})"))
    for col in ("verdict", "rule set", "rule", "op", "nodes", "e.g.", "source"):
        view.add_column(col, overflow="fold", no_wrap=col == "verdict")
    for key in sorted(groups, key=lambda k: (k[0] != "violation", k[1] != "restricted", k[2], k[3])):
        verdict, rule_set, rule, op = key
        style = "red" if verdict == "violation" else "yellow"
        cells = (rule_set, rule, op, str(len(groups[key])), groups[key][0], sources[key])
        view.add_row(Text(verdict, style=style), *(Text(c) for c in cells))  # node names and sources are never markup
    verdict = Text(report.summary(), style="bold green" if report.compliant else "bold red")
    parts: list[RenderableType] = [view] if groups else []
    parts += [verdict, Text(report.rule_source_note, style="dim")]
    if report_path:
        parts.append(Text(f"report: {report_path}"))
    return Group(*parts)


EXAMPLES = examples(
    ("export a zoo model, then check it against TensorRT restricted mode", "csa check csa-tiny"),
    ("an ONNX file against the DLA rules too, with a report of every node", "csa check model.onnx --rules all --report check-report"),
    ("ConvNeXt's graph, passed on with its verdict: exit 3 (LayerNorm and GELU)", "csa export convnext-tiny --weights pretrained | csa check"),
)

D = options.defaults_of(api.check)


def register(app: typer.Typer) -> None:
    @app.command("check", short_help="TensorRT restricted-mode / DLA compliance of a graph.", epilog=EXAMPLES)
    @stage_command("check")
    def check(
        out: Output,
        source: str | None = options.input_argument("MODEL", "ONNX", "RECORD"),
        rules: str = options.RULES(D.rules),
        report: Path | None = options.REPORT(D.report),
        batch: str | None = options.BATCH(D.batch, shown="1"),
        img_size: str | None = options.IMG_SIZE(D.img_size),
        weights: str = options.WEIGHTS(D.weights),
        manifest: Path | None = options.MANIFEST(D.manifest),
    ) -> None:
        """Check a graph against TensorRT restricted mode / Orin DLA rules: exit 0 compliant, 3 not.

        A MODEL is exported first (--batch, --img-size and --weights say how).
        """
        record, result = api.check_detail(CommandInput(source), rules=rules, report=report, batch=batch, img_size=img_size, weights=weights, manifest=manifest)
        report_path = (record.field("check") or {}).get("report")
        out.emit(record, lambda: render_report(result, report_path))
        if not result.compliant:
            # Not out.error(): that would append an error record after the verdict on a pipe.
            out.stderr.print(f"Error: {result.model or result.path}: {result.summary()}", style="bold red", highlight=False, markup=False)
            out.stderr.print("Hint: --report DIR lists every node with its rule and source", highlight=False, markup=False)
            raise typer.Exit(int(ExitCode.CHECK_FAILED))

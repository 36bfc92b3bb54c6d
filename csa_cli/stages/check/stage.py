"""`csa check`: the stage around the checker (inputs, report files, the record, exit 3)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from csa_cli.errors import UsageError
from csa_cli.stages.check.checks import check_onnx
from csa_cli.stages.check.report import CheckReport
from csa_cli.stages.check.rules import RULE_SELECTIONS

if TYPE_CHECKING:
    from csa_cli.records import Record


# --- the rules ------------------------------------------------------------------------------


def check_stage(
    *,
    record: Record | None = None,
    path: str | Path | None = None,
    model: str | None = None,
    rules: str = "restricted",
    report_dir: str | Path | None = None,
    manifest: str | Path | None = None,
) -> tuple[Record, CheckReport]:
    """The `csa check` stage: the input record (or one made for a file / a freshly exported MODEL) with "check" added.

    A MODEL is exported first (weights auto, the model's default batch and size).
    """
    from csa_cli.records import make_record

    if rules not in RULE_SELECTIONS:
        raise UsageError(f"unknown rule set {rules!r}", hint="use --rules restricted, dla or all")
    if (record is None and model is not None) or (record is not None and record.kind == "checkpoint"):
        from csa_cli.stages.export.stage import export_stage

        # A MODEL, or `csa pull M | csa check`: export first, with the checkpoint's weights if piped.
        name = record.model if record is not None else model
        if not name:
            raise UsageError("the checkpoint record names no model")
        record = export_stage(name, weights=(record.weights if record is not None else None) or "auto", manifest=manifest)
    if record is not None:
        if record.kind in ("engine", "bundle"):
            raise UsageError(f"csa check reads ONNX graphs, not a {record.kind!r}", hint="check the ONNX or quantized record the engine was built from")
        if not record.path:
            raise UsageError(f"the {record.kind!r} record names no file to check")
        path = record.path
    if path is None:
        raise UsageError("no input: give a MODEL or an ONNX file, or pipe the record of a previous csa stage")
    report = check_onnx(path, rules, name=record.model if record is not None else None)
    report_path = str(report.write_markdown(report_dir)) if report_dir is not None else None
    if record is None:
        record = make_record("onnx", path=str(path))
    return record.with_fields(check=report.verdict(report_path)), report

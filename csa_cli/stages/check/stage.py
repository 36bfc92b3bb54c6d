"""`csa check`: the stage around the checker (inputs, report files, the record, exit 3)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from csa_cli.errors import CsaError, UsageError
from csa_cli.stages.check.report import CheckReport
from csa_cli.stages.check.rules import RULE_SELECTIONS

REPORT_FILE = "report.json"


def _check_code() -> str:
    """The checker's own code and the graph readers it uses: a change there is a new check."""
    from csa_cli.store import source_hash

    here = Path(__file__).resolve().parent
    graph = here.parents[1] / "graph"
    return source_hash([here / "checks.py", here / "rules.py", here / "report.py", graph / "index.py", graph / "onnx_file.py", graph / "qdq.py"])


def _cached_check(path: Path, rules: str, model: str | None) -> CheckReport:
    """check_onnx, kept under CSA_HOME by the graph's content hash, rules and checker code: a second check reads the report.

    The key comes from the file's (stamp-remembered) sha256, so a cached check never loads onnx.
    """
    from csa_cli.paths import sha256_stamped
    from csa_cli.store import artifact_key, cached_or_built

    if not path.is_file():
        raise CsaError(f"file not found: {path}", hint="check the path")
    inputs = {"onnx": sha256_stamped(path), "rules": rules, "code": _check_code()}

    def build(tmp: Path) -> None:
        from csa_cli.stages.check.checks import check_onnx

        (tmp / REPORT_FILE).write_text(check_onnx(path, rules, name=model).model_dump_json())

    folder, _ = cached_or_built(model or "_files", "check", artifact_key(**inputs), inputs, build)
    report = CheckReport.model_validate_json((folder / REPORT_FILE).read_text())
    return report.model_copy(update={"model": model, "path": str(path)})


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
    export_options: dict[str, Any] | None = None,
) -> tuple[Record, CheckReport]:
    """The `csa check` stage: the input record (or one made for a file / a freshly exported MODEL) with "check" added.

    A MODEL is exported first (`export_options`: batch, img_size, weights; by default weights auto,
    batch 1 and the model's eval size). A piped checkpoint record gives its own weights.
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
        how = dict(export_options or {})
        if record is not None and record.weights:
            how["weights"] = record.weights
        record = export_stage(name, **{"weights": "auto", **how}, manifest=manifest)
    if record is not None:
        if record.kind in ("engine", "bundle"):
            raise UsageError(f"csa check reads ONNX graphs, not a {record.kind!r}", hint="check the ONNX or quantized record the engine was built from")
        if not record.path:
            raise UsageError(f"the {record.kind!r} record names no file to check")
        path = record.path
    if path is None:
        raise UsageError("no input: give a MODEL or an ONNX file, or pipe the record of a previous csa stage")
    report = _cached_check(Path(path), rules, record.model if record is not None else None)
    report_path = str(report.write_markdown(report_dir)) if report_dir is not None else None
    if record is None:
        record = make_record("onnx", path=str(path))
    return record.with_fields(check=report.verdict(report_path)), report

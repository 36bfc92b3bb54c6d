"""Checks and builds agree (shared/reference/cli-conventions.md, "A failed verdict travels").

A build that demands compliance (--restricted, --safe, --dla without GPU fallback) runs the rules
it needs itself (tensorrt/capability.demanded_rules) and refuses a non-compliant graph (exit 3)
unless --force. Any other build proceeds and carries the upstream `csa check` verdict into its
record and the bundle's README. A DLA build with GPU fallback is told which layers break the DLA
rules: they will run on the GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from csa_cli import events
from csa_cli.errors import CheckFailed
from csa_cli.graph.onnx_file import OnnxInfo
from csa_cli.tensorrt.capability import demanded_rules


@dataclass
class Verdicts:
    """What the build checked itself (`own`) and the upstream verdict it carries (`upstream`), in words."""

    own: str | None = None
    upstream: str | None = None
    dla_violations: int | None = None


def describe_upstream(check: Any) -> str | None:
    """One line for an upstream check verdict (`csa check`'s record field, or `csa run`'s check step)."""
    if not isinstance(check, dict) or "compliant" not in check:
        return None
    rules = check.get("rules", "restricted")
    text = f"{'compliant' if check.get('compliant') else 'not compliant'} under the {rules} rules ({check.get('violations', '?')} violations)"
    dla = check.get("dla")
    if isinstance(dla, dict) and "compliant" in dla:
        text += f"; DLA rules: {'compliant' if dla.get('compliant') else 'not compliant'} ({dla.get('violations', '?')} violations)"
    return text


def gate(infos: list[OnnxInfo], *, restricted: bool, safe: bool, dla_core: int | None, gpu_fallback: bool, force: bool, upstream: Any) -> Verdicts:
    """Run the demanded rules (refusing unless --force), warn about DLA fallback, carry the upstream verdict."""
    from csa_cli.stages.check.checks import check_onnx

    verdicts = Verdicts()
    demanded = demanded_rules(restricted=restricted, safe=safe, dla_core=dla_core, gpu_fallback=gpu_fallback)
    summaries = []
    for rules in demanded:
        for info in infos:
            report = check_onnx(info.path, rules)
            summaries.append(f"{Path(info.path).name} (batch {info.batch or 'dynamic'}, {rules} rules): {report.summary()}")
            if rules == "dla":
                verdicts.dla_violations = len(report.violations)
            if not report.compliant:
                ops = ", ".join(report.violated_ops)
                label = "restricted-mode" if rules == "restricted" else "DLA"
                message = f"{Path(info.path).name} is not {label} compliant: {len(report.violations)} violation(s) in {ops} ({report.summary()})"
                if not force:
                    raise CheckFailed(message, hint="fix the graph (see `csa check --rules " + rules + " --report DIR`), or add --force to build anyway")
                events.warn(message + " (--force: going on)")
    if demanded:
        verdicts.own = "; ".join(summaries)
    if dla_core is not None and "dla" not in demanded and infos:
        report = check_onnx(infos[0].path, "dla")
        verdicts.dla_violations = len(report.violations)
        if not report.compliant:
            events.warn(
                f"{len(report.violations)} layer(s) of {Path(infos[0].path).name} break the DLA rules ({', '.join(report.violated_ops)}): "
                "with GPU fallback they run on the GPU (see `csa check --rules dla`)"
            )
    verdicts.upstream = None if demanded else describe_upstream(upstream)
    if verdicts.upstream and isinstance(upstream, dict) and upstream.get("compliant") is False:
        events.warn(f"upstream check: {verdicts.upstream}; building anyway, as this build demands no compliance (the record and README say so)")
    return verdicts

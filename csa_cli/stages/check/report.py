"""A check's report: findings per node, verdict counts, the markdown a user reads (pydantic)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from csa_cli.paths import atomic_write_text
from csa_cli.stages.check.rules import RULE_SOURCE_NOTE, RULES, RuleSelection, RuleSet, Verdict


class Finding(BaseModel):
    """One rule's verdict on one node (or graph input/output)."""

    node: str
    op: str
    rule: str
    rule_set: RuleSet
    verdict: Literal["violation", "warning"]
    message: str
    source: str


class NodeResult(BaseModel):
    """Per node: op, name, the worst verdict, and the rule and source behind it."""

    op: str
    name: str
    verdict: Verdict
    rule: str | None = None
    source: str | None = None
    message: str | None = None
    findings: list[Finding] = Field(default_factory=list)


class VerdictCounts(BaseModel):
    ok: int = 0
    violation: int = 0
    warning: int = 0


class CheckReport(BaseModel):
    """The checker's verdict on one graph."""

    model: str | None = None
    path: str | None = None
    rules: RuleSelection
    compliant: bool
    rule_sets: dict[str, bool] = Field(description="compliance per rule set that was run")
    nodes: list[NodeResult]
    violations: list[Finding]
    warnings: list[Finding]
    counts_by_op: dict[str, VerdictCounts]
    counts_by_rule: dict[str, VerdictCounts]
    op_set: list[str]
    rule_source_note: str = RULE_SOURCE_NOTE

    @property
    def violated_rules(self) -> list[str]:
        return sorted({f.rule for f in self.violations})

    @property
    def violated_ops(self) -> list[str]:
        return sorted({f.op for f in self.violations})

    def summary(self) -> str:
        """One line: the verdict per rule set, then the violations by rule."""
        sets = ", ".join(f"{name}: {'compliant' if ok else 'NOT compliant'}" for name, ok in self.rule_sets.items())
        if self.compliant:
            return f"compliant ({sets}); 0 violations, {len(self.warnings)} warnings"
        reasons = ", ".join(f"{rule} x{c.violation}" for rule, c in self.counts_by_rule.items() if c.violation)
        return f"NOT compliant ({sets}); {len(self.violations)} violations: {reasons}"

    def verdict(self, report: str | None = None) -> dict[str, object]:
        """The "check" field a record carries downstream of `csa check`."""
        return {
            "rules": self.rules,
            "compliant": self.compliant,
            "rule_sets": self.rule_sets,
            "violations": len(self.violations),
            "warnings": len(self.warnings),
            "reasons": {rule: c.violation for rule, c in self.counts_by_rule.items() if c.violation},
            "report": report,
        }

    def to_markdown(self) -> str:
        title = self.model or (Path(self.path).name if self.path else "ONNX graph")
        lines = [
            f"# TensorRT compliance check: {title}",
            "",
            f"- graph: `{self.path}`" if self.path else "- graph: (in memory)",
            f"- rule set: `{self.rules}`",
            f"- verdict: **{self.summary()}**",
            f"- nodes: {len(self.nodes)}; op set: {', '.join(self.op_set)}",
            "",
            f"> {self.rule_source_note}",
            "",
            "## Counts by rule",
            "",
            "| rule | rule set(s) | violations | warnings |",
            "| --- | --- | ---: | ---: |",
        ]
        for rule, c in self.counts_by_rule.items():
            sets = sorted({f.rule_set for f in [*self.violations, *self.warnings] if f.rule == rule})
            lines.append(f"| {rule} | {', '.join(sets)} | {c.violation} | {c.warning} |")
        lines += ["", "## Counts by op", "", "| op | ok | violation | warning |", "| --- | ---: | ---: | ---: |"]
        for op, c in self.counts_by_op.items():
            lines.append(f"| {op} | {c.ok} | {c.violation} | {c.warning} |")
        for heading, findings in (("Violations", self.violations), ("Warnings", self.warnings)):
            lines += ["", f"## {heading} ({len(findings)})", ""]
            if not findings:
                lines.append("None.")
                continue
            lines += ["| node | op | rule set | rule | detail |", "| --- | --- | --- | --- | --- |"]
            lines += [f"| `{f.node}` | {f.op} | {f.rule_set} | {f.rule} | {f.message} |" for f in findings]
        used = sorted({(f.rule, f.rule_set) for f in [*self.violations, *self.warnings]})
        lines += ["", "## Rules and their sources", "", "| rule | rule set | checks | source |", "| --- | --- | --- | --- |"]
        for rule in RULES.values():
            for rule_set, source in rule.sources.items():
                if self.rules in ("all", rule_set):
                    mark = " (fired)" if (rule.id, rule_set) in used else ""
                    lines.append(f"| {rule.id}{mark} | {rule_set} | {rule.title} | {source} |")
        return "\n".join(lines) + "\n"

    def write_markdown(self, folder: str | Path) -> Path:
        """Write the markdown report into `folder` (atomically); returns its path."""
        stem = self.model or (Path(self.path).stem if self.path else "graph")
        path = Path(folder) / f"check-{stem}-{self.rules}.md"
        return atomic_write_text(path, self.to_markdown())

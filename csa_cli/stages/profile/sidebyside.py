"""`csa profile A B ...`: several targets timed side by side, interleaved round by round.

Each batch size opens every target's stepper at once and runs measure/sidebyside.interleave, so
the ratios to the first target (the baseline) compare like with like on a shared machine; each
row then carries its ratio with a bootstrap 95% interval (measure/stats.RatioSpread).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from csa_cli import events
from csa_cli.measure.sidebyside import SideBySide, interleave
from csa_cli.measure.stats import summarize
from csa_cli.records import Record
from csa_cli.stages.profile.records import BatchResult, ProfileOptions, ProfileResult
from csa_cli.stages.profile.stage import Pending, apply_floors, prepare_target

Target = tuple[str | None, Path | None, Record | None]
"""(model, path, record): what `csa profile` was given for one argument."""


def labels_for(pendings: Sequence[Pending]) -> list[str]:
    """One distinct label per target: the model, with backend and precision where names repeat."""
    names = [p.model for p in pendings]
    labels = [n if names.count(n) == 1 else f"{n} ({p.probe.backend} {p.probe.precision})" for n, p in zip(names, pendings, strict=True)]
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label} #{seen[label]}")
    return out


def measure_side_by_side(pendings: Sequence[Pending], settings_text: str | None = None) -> tuple[list[ProfileResult], dict[int, SideBySide]]:
    """Every batch size that more than one target runs, interleaved; a batch only one target has, alone.

    The first target is the baseline of every ratio.
    """
    labels = labels_for(pendings)
    rows: dict[str, list[BatchResult]] = {label: [] for label in labels}
    runs: dict[int, SideBySide] = {}
    batches = sorted({b for p in pendings for b in p.batches})
    measure = pendings[0].options.measure
    load = None
    with events.progress("timing side by side", len(batches), "batch sizes") as bar:
        for batch in batches:
            here = [(label, p) for label, p in zip(labels, pendings, strict=True) if batch in p.batches]
            contenders = {label: (lambda p=p, b=batch: p.probe.stepper(b, measure)) for label, p in here}
            side = interleave(contenders, measure, baseline=here[0][0])
            runs[batch] = side
            load = load or side.load_before
            for label, _ in here:
                row = BatchResult(**summarize(side.samples_ms[label], batch, measure.warmup).model_dump())
                spread = side.ratio(label)
                if spread is not None:
                    row.ratio_to, row.ratio = side.baseline, spread
                rows[label].append(row)
                said = f"median {row.median_ms:.2f} ms" + (f", {spread.describe()} of {side.baseline}" if spread else "")
                events.info(f"  batch {batch:>3} {label}: {said}")
            bar.advance()
    described = settings_text or (next(iter(runs.values())).describe() if runs else measure.describe())
    results = []
    for label, pending in zip(labels, pendings, strict=True):
        apply_floors(rows[label], pending.costs, pending.peaks)
        results.append(pending.finish(rows[label], described, load))
    return results, runs


def profile_side_by_side(targets: Sequence[Target], options: ProfileOptions) -> list[ProfileResult]:
    """One target: measured alone. Several: prepared first (exports, costs, peaks), then interleaved."""
    pendings = [prepare_target(model=m, path=p, record=r, options=options) for m, p, r in targets]
    if len(pendings) == 1:
        return [pendings[0].run()]
    return measure_side_by_side(pendings)[0]

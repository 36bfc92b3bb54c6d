"""`csa profile --plot`: latency and per-image latency against batch size, one line per model."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from csa_cli.errors import CsaError
from csa_cli.stages.profile.records import ProfileResult


def plot_latency(results: Sequence[ProfileResult], path: Path) -> Path:
    """Median latency vs batch (a min-p99 band) and per-image latency, one line per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from csa_cli.paths import atomic_path

    if not results:
        raise CsaError("nothing to plot")
    fig, (ax_lat, ax_img) = plt.subplots(1, 2, figsize=(12, 4.8), constrained_layout=True)
    batches: set[int] = set()
    for res in results:
        xs = [r.batch for r in res.results]
        batches.update(xs)
        label = f"{res.model} ({res.backend}, {res.precision})"
        (line,) = ax_lat.plot(xs, [r.median_ms for r in res.results], marker="o", label=label)
        ax_lat.fill_between(xs, [r.min_ms for r in res.results], [r.p99_ms for r in res.results], color=line.get_color(), alpha=0.15)
        ax_img.plot(xs, [r.per_image_ms for r in res.results], marker="o", color=line.get_color(), label=label)
    ticks = sorted(batches)
    for ax, ylabel, title in (
        (ax_lat, "latency per batch, ms (median; band min-p99)", "Latency vs batch"),
        (ax_img, "latency per image, ms (median / batch)", "Per-image latency vs batch"),
    ):
        ax.set_xscale("log", base=2)
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.set_xlabel("batch size")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.set_ylim(bottom=0)
        ax.legend(fontsize="small")
    machine = results[0].machine
    fig.suptitle(f"csa profile on {machine.title(results[0].device)} ({results[0].settings})")
    target = Path(path)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return target

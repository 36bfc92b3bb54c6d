"""curves.png: training loss and validation top-1 per epoch (matplotlib, as stages/profile/plot.py)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from csa_cli.stages.train.records import EpochMetrics


def plot_curves(history: Sequence[EpochMetrics], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from csa_cli.paths import atomic_path

    epochs = [m.epoch for m in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    ax_loss.plot(epochs, [m.train_loss for m in history], marker="o")
    ax_loss.set_title("Training loss")
    ax_loss.set_ylabel("loss (mean over the epoch)")
    for label, values in (
        ("val top-1", [m.val_top1 for m in history]),
        ("val top-5", [m.val_top5 for m in history]),
        ("val top-1 (EMA)", [m.val_top1_ema for m in history]),
    ):
        if any(v is not None for v in values):
            ax_acc.plot(epochs, [v if v is not None else float("nan") for v in values], marker="o", label=label)
    ax_acc.set_title("Validation accuracy")
    ax_acc.set_ylabel("%")
    ax_acc.set_ylim(0, 102)  # 100 % stays visible above the frame
    if ax_acc.get_legend_handles_labels()[0]:
        ax_acc.legend(fontsize="small")
    for ax in (ax_loss, ax_acc):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
    target = Path(path)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return target

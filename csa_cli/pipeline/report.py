"""The study as a markdown report with PNG plots (matplotlib, Agg backend: no display needed).

Numbers are written with fixed decimals from the Study (pipeline/compare.py), which holds the
stored results unchanged; a missing number is written "missing", never estimated.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from csa_cli.paths import atomic_path
from csa_cli.pipeline.compare import CPU_INT8_LABEL, ESTIMATE_LABEL, Study

MISSING = "missing"
REPORT_FILE = "report.md"
PLOTS = {
    "table1": "table1_params_macs.png",
    "fig5": "fig5_top1.png",
    "fig6": "fig6_latency.png",
    "fig7": "fig7_traffic.png",
}


def fmt(value: float | None, digits: int) -> str:
    return MISSING if value is None else f"{value:.{digits}f}"


def fmt_bool(value: bool | None, violations: int | None = None) -> str:
    if value is None:
        return MISSING
    return "yes" if value else f"no ({violations} violations)" if violations is not None else "no"


def table1_rows(study: Study) -> tuple[list[str], list[list[str]]]:
    cols = ["model", "weights", "params (M)", "GMACs", "restricted mode", "DLA"]
    rows = [
        [r.model, r.weights or MISSING, fmt(r.params_m, 3), fmt(r.gmacs, 3), fmt_bool(r.restricted, r.restricted_violations), fmt_bool(r.dla, r.dla_violations)]
        for r in study.table1
    ]
    return cols, rows


def fig5_rows(study: Study) -> tuple[list[str], list[list[str]]]:
    cols = ["model", "weights", "FP32 top-1 (%)", "FP16 top-1 (%)", "mixed top-1 (%)", "drop (pp)"]
    cols += [f"{CPU_INT8_LABEL} top-1 (%)", f"{CPU_INT8_LABEL} drop (pp)", "images (fp32/mixed)", "backend"]
    rows = []
    for r in study.fig5:
        drop = MISSING if r.drop is None else f"{r.drop:.2f} (from {r.drop_from})"
        images = f"{r.images.get('fp32', MISSING)}/{r.images.get('mixed', MISSING)}"
        backends = set(r.backend.values())
        backend = backends.pop() if len(backends) == 1 else ", ".join(f"{p}: {b}" for p, b in r.backend.items()) or MISSING
        cpu = [fmt(r.cpu_int8, 2), MISSING if r.cpu_int8_drop is None else f"{r.cpu_int8_drop:.2f} (from fp32)"]
        rows.append([r.model, r.weights or MISSING, fmt(r.fp32, 2), fmt(r.fp16, 2), fmt(r.mixed, 2), drop, *cpu, images, backend])
    return cols, rows


def ratio_cell(ratio: float | None, interval: tuple[float, float] | None, wide: bool) -> str:
    """'0.912 [0.880, 0.950]', with the verdict where the interval is wider than ±10%."""
    if ratio is None or interval is None:
        return fmt(ratio, 3)
    text = f"{ratio:.3f} [{interval[0]:.3f}, {interval[1]:.3f}]"
    return f"{text} spread too wide for the claim" if wide else text


def fig6_rows(study: Study) -> tuple[list[str], list[list[str]]]:
    cols = ["model"]
    cols += [f"b{b} latency (ms)" for b in study.batches]
    cols += [f"b{b} / {study.baseline}" for b in study.batches]
    for device in study.devices:
        cols += [f"{device} b{b} (ms)" for b in study.batches]
        cols += [f"{device} b{b} / {study.baseline}" for b in study.batches]
    cpu_batch = next((r.cpu_int8_batch for r in study.fig6 if r.cpu_int8_batch is not None), study.batches[0])
    cols += [f"{CPU_INT8_LABEL} b{cpu_batch} (ms)", f"{CPU_INT8_LABEL} / FP32"]
    rows = []
    for r in study.fig6:
        row = [r.model]
        row += [fmt(r.latency_ms.get(b), 3) for b in study.batches]
        row += [ratio_cell(r.ratio.get(b), r.interval.get(b), r.wide.get(b, False)) for b in study.batches]
        for device in study.devices:
            row += [fmt(r.device_ms.get(device, {}).get(b), 3) for b in study.batches]
            row += [fmt(r.device_ratio.get(device, {}).get(b), 3) for b in study.batches]
        row += [fmt(r.cpu_int8_ms, 3), ratio_cell(r.cpu_int8_ratio, r.cpu_int8_interval, r.cpu_int8_wide)]
        rows.append(row)
    return cols, rows


def fig7_rows(study: Study) -> tuple[list[str], list[list[str]]]:
    precision = next((r.precision for r in study.fig7 if r.precision), "engine")
    cols = ["model"] + [f"b{b} fused estimate @{precision} (MB/frame)" for b in study.batches]
    cols += [f"b{b} estimate (MB/frame)" for b in study.batches] + [f"b{b} measured (MB/frame)" for b in study.batches]
    rows = [
        [r.model]
        + [fmt(r.fused_mb.get(b), 3) for b in study.batches]
        + [fmt(r.estimate_mb.get(b), 3) for b in study.batches]
        + [fmt(r.measured_mb.get(b), 3) for b in study.batches]
        for r in study.fig7
    ]
    return cols, rows


TABLES = {
    "table1": ("Table 1: model size, complexity and TensorRT restricted-mode compliance", table1_rows),
    "fig5": ("Fig. 5: ImageNet top-1, FP32/FP16 vs mixed precision (FP32+FP16+INT8)", fig5_rows),
    "fig6": ("Fig. 6: latency at 224x224 per batch size, and ratio to the baseline", fig6_rows),
    "fig7": (f"Fig. 7: memory traffic per frame, estimates (fused at the engine's precision; unfused, {ESTIMATE_LABEL}) and measured", fig7_rows),
}


def markdown_table(cols: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(cols) + " |", "| " + " | ".join("---" for _ in cols) + " |"]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def to_markdown(study: Study, plots: dict[str, str] | None = None, title: str = "CSA study: the seed's comparison, side by side") -> str:
    machine = ", ".join(f"{k}: {v}" for k, v in study.machine.items() if isinstance(v, str | int | float)) or MISSING
    parts = [
        f"# {title}",
        "",
        f"Models: {', '.join(study.models)}. Baseline for ratios: {study.baseline}. Latency backend: {study.backend}. "
        f"Dataset: {study.dataset or MISSING}. Batch sizes: {', '.join(map(str, study.batches))}.",
        "",
        f"Machine (from the profile results): {machine}.",
        "",
        "Every number below is read from a stored result under CSA_HOME/results; a cell that says "
        f"'{MISSING}' was not measured (no dataset, no TensorRT, no device timings), not estimated.",
        "",
    ]
    for note in study.notes:
        parts.append(f"- {note}")
    parts.append("")
    for name, (heading, rows_of) in TABLES.items():
        cols, rows = rows_of(study)
        parts += [f"## {heading}", "", markdown_table(cols, rows), ""]
        if plots and name in plots:
            parts += [f"![{heading}]({plots[name]})", ""]
    if study.runs:
        parts += ["## What the pipeline did", ""]
        parts += [f"- {model}: {what}" for model, what in study.runs.items()]
        parts.append("")
    return "\n".join(parts)


# ------------------------------------------------------------------ plots


def _figure(title: str) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    ax.set_title(title, fontsize=12)
    ax.grid(True, alpha=0.3)
    return fig, ax


def _save(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def _missing_text(ax: Any, what: str) -> None:
    ax.text(0.5, 0.5, f"{what}: missing (not measured)", ha="center", va="center", transform=ax.transAxes, fontsize=11, color="gray")


def plot_table1(study: Study, path: Path) -> None:
    fig, ax = _figure("Table 1: parameters and MACs per image (static, from the ONNX graph)")
    models = [r.model for r in study.table1]
    xs = range(len(models))
    width = 0.38
    params = [r.params_m or 0.0 for r in study.table1]
    macs = [r.gmacs or 0.0 for r in study.table1]
    ax.bar([x - width / 2 for x in xs], params, width, label="params (M)", color="tab:blue")
    ax2 = ax.twinx()
    ax2.bar([x + width / 2 for x in xs], macs, width, label="GMACs / image", color="tab:orange")
    labels = [f"{r.model}\nrestricted: {fmt_bool(r.restricted)}" for r in study.table1]
    ax.set_xticks(list(xs), labels, fontsize=9)
    ax.set_xlabel("model (TensorRT restricted-mode compliance)")
    ax.set_ylabel("parameters (millions)")
    ax2.set_ylabel("GMACs per image")
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(handles, ["params (M)", "GMACs / image"], loc="upper left")
    if not any(params) and not any(macs):
        _missing_text(ax, "params / MACs")
    _save(fig, path)


def plot_fig5(study: Study, path: Path) -> None:
    dataset = study.dataset or next((r.dataset for r in study.fig5 if r.dataset), None)
    fig, ax = _figure(f"Fig. 5: top-1 by precision ({dataset or 'dataset not named'})")
    models = [r.model for r in study.fig5]
    xs = list(range(len(models)))
    width = 0.27
    series = [("FP32", "fp32", "tab:blue"), ("FP16", "fp16", "tab:green"), ("mixed (FP32+FP16+INT8)", "mixed", "tab:red")]
    for i, (label, attr, color) in enumerate(series):
        values = [getattr(r, attr) for r in study.fig5]
        bars = ax.bar([x + (i - 1) * width for x in xs], [v or 0.0 for v in values], width, label=label, color=color)
        for bar, v in zip(bars, values, strict=True):
            ax.annotate(MISSING if v is None else f"{v:.1f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(xs, [f"{r.model}\n(weights: {r.weights or '?'})" for r in study.fig5], fontsize=9)
    ax.set_xlabel("model")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_ylim(0, 105)
    ax.legend(loc="upper right")
    _save(fig, path)


def _line_plot(study: Study, path: Path, title: str, ylabel: str, series: list[tuple[str, dict[int, float | None], str]]) -> None:
    fig, ax = _figure(title)
    drawn = 0
    for label, values, style in series:
        points = [(b, values.get(b)) for b in study.batches if values.get(b) is not None]
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], style, marker="o", label=label)
            drawn += 1
    ax.set_xscale("log", base=2)
    ax.set_xticks(study.batches, [str(b) for b in study.batches])
    ax.set_xlabel("batch size")
    ax.set_ylabel(ylabel)
    if drawn:
        ax.legend(loc="best", fontsize=9)
    else:
        _missing_text(ax, ylabel)
    _save(fig, path)


def plot_fig6(study: Study, path: Path) -> None:
    series = [(f"{r.model} ({study.backend})", r.latency_ms, "-") for r in study.fig6]
    for device in study.devices:
        series += [(f"{r.model} ({device}, imported)", r.device_ms.get(device, {}), "--") for r in study.fig6]
    _line_plot(study, path, f"Fig. 6: latency per batch at 224x224 ({study.backend})", "median latency per batch (ms)", series)


def plot_fig7(study: Study, path: Path) -> None:
    series = [(f"{r.model} (fused estimate @{r.precision})", r.fused_mb, "-") for r in study.fig7 if any(v is not None for v in r.fused_mb.values())]
    series += [(f"{r.model} (unfused estimate)", r.estimate_mb, "--") for r in study.fig7]
    series += [(f"{r.model} (measured)", r.measured_mb, ":") for r in study.fig7 if any(v is not None for v in r.measured_mb.values())]
    _line_plot(study, path, "Fig. 7: memory traffic per frame (static estimates: fused at the engine precision, and unfused)", "MB per frame", series)


def write_report(study: Study, folder: str | Path, *, report_name: str = REPORT_FILE, plots_subdir: str = "") -> Path:
    """FOLDER/report_name and the four PNGs (in FOLDER/plots_subdir), each written atomically.

    Other files already in FOLDER are left alone (it may be docs/).
    """
    target = Path(folder)
    plot_dir = target / plots_subdir if plots_subdir else target
    plot_dir.mkdir(parents=True, exist_ok=True)
    plot_table1(study, plot_dir / PLOTS["table1"])
    plot_fig5(study, plot_dir / PLOTS["fig5"])
    plot_fig6(study, plot_dir / PLOTS["fig6"])
    plot_fig7(study, plot_dir / PLOTS["fig7"])
    links = {k: f"{plots_subdir}/{v}" if plots_subdir else v for k, v in PLOTS.items()}
    report = target / report_name
    with atomic_path(report) as tmp:
        tmp.write_text(to_markdown(study, links), encoding="utf-8")
    return report

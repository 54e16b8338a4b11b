"""One figure per ablation table: overall IoU per row with 95% CIs, and the paired differences beside the paper's.

Left panel: our overall IoU (mean ± 95% CI over seeds) per row: against L for Table 4 (the
paper's curve on a second axis), against the parameter count for Table 6, against the training time
per step for Table P (quality against cost, both with CI bars), one tick per row otherwise. Right
panel: each row's paired difference to the full model with its CI (dots) and the paper's difference
(crosses, where the paper has one), in points of overall IoU. :func:`plot_curves` draws the rows'
mean learning curves.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from dcmfnet.ablations.summary import RowResult
from dcmfnet.ablations.tables import Table

__all__ = ["plot_curves", "plot_table"]


def _errorbar(interval_half_width: float | None) -> float:
    return 0.0 if interval_half_width is None else 100 * interval_half_width


def plot_table(table: Table, results: Sequence[RowResult], split: str, path: Path) -> Path:
    """Save the figure of ``table`` to ``path`` (PNG) and return ``path``."""
    # deferred: matplotlib takes a second to import; reading and tabulating runs (dcmfnet ablate --dry-run,
    # runs.jsonl) never needs it
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    distinct = [result for index, result in enumerate(results)  # one entry per model, in the paper's order
                if all(other.row.key != result.row.key for other in results[:index])]  # fmt: skip
    measured = [result for result in distinct if split in result.metrics]
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    figure.suptitle(f"Table {table.number}: {table.title} ({split})", fontsize=10)

    means = [100 * result.metrics[split]["overall_iou"].mean for result in measured]
    bars = [_errorbar(result.metrics[split]["overall_iou"].half_width) for result in measured]
    if table.x_axis == "igf_layers":
        xs = [float(result.row.switches()["igf_layers"]) for result in measured]
        left.errorbar(xs, means, yerr=bars, fmt="o-", capsize=4, label="ours (mean ± 95% CI)")
        left.set_xlabel("IGF depth L")
        paper = left.twinx()
        paper.plot([r.row.switches()["igf_layers"] for r in distinct], [r.row.paper["overall_iou"] for r in distinct],
                   "x--", color="gray", label="paper (right axis)")  # fmt: skip
        paper.set_ylabel("paper overall IoU (%)", color="gray")
        figure.legend(loc="lower center", ncol=2, fontsize=8)
    elif table.x_axis == "cost":
        timed = [result for result in measured if result.seconds_per_step is not None]
        means = [100 * result.metrics[split]["overall_iou"].mean for result in timed]
        bars = [_errorbar(result.metrics[split]["overall_iou"].half_width) for result in timed]
        xs = [1000 * result.seconds_per_step.mean for result in timed if result.seconds_per_step is not None]
        x_bars = [1000 * (result.seconds_per_step.half_width or 0.0) for result in timed
                  if result.seconds_per_step is not None]  # fmt: skip
        left.errorbar(xs, means, xerr=x_bars, yerr=bars, fmt="o", capsize=4)
        for x, y, result in zip(xs, means, timed, strict=True):
            left.annotate(result.row.paper_row, (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
        left.set_xlabel("training time per step (ms, one thread)")
    elif table.x_axis == "parameters":
        xs = [(result.parameters or 0) / 1e6 for result in measured]
        left.errorbar(xs, means, yerr=bars, fmt="o", capsize=4)
        for x, y, result in zip(xs, means, measured, strict=True):
            left.annotate(result.row.paper_row, (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
        left.set_xlabel("parameters (M)")
    else:
        xs = list(range(len(measured)))
        left.errorbar(xs, means, yerr=bars, fmt="o", capsize=4)
        left.set_xticks(xs, [result.row.paper_row for result in measured])
        left.set_xlabel("paper row")
    left.set_ylabel(f"overall IoU (%), {split}")
    left.grid(alpha=0.3)

    variants = [result for result in distinct if not result.row.is_full]
    full_paper = next(result.row for result in results if result.row.is_full).paper.get("overall_iou")
    ys = list(range(len(variants)))
    for y, result in zip(ys, variants, strict=True):
        difference = result.differences.get(split)
        if difference is not None:
            right.errorbar([100 * difference.mean], [y], xerr=[_errorbar(difference.half_width)], fmt="o",
                           color="C0", capsize=4)  # fmt: skip
        if full_paper is not None and "overall_iou" in result.row.paper:
            right.plot([result.row.paper["overall_iou"] - full_paper], [y], "x", color="gray", markersize=8)
    right.invert_yaxis()  # the paper's order from the top
    right.axvline(0.0, color="black", linewidth=0.8)
    right.set_yticks(ys, [f"{result.row.paper_row}: {result.row.describe()}" for result in variants], fontsize=8)
    right.set_xlabel("Δ overall IoU vs full model (points): ours ● with 95% CI, paper ×")
    right.grid(alpha=0.3)
    figure.tight_layout(rect=(0, 0.06 if table.x_axis == "igf_layers" else 0, 1, 0.95))
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_curves(table: Table, results: Sequence[RowResult], path: Path) -> Path:
    """Save the rows' mean learning curves (val overall IoU against optimizer steps) to ``path`` (PNG)."""
    import matplotlib  # deferred, as in plot_table

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    seen: set[str] = set()
    for result in results:
        if not result.curve or result.row.key in seen:
            continue
        seen.add(result.row.key)
        steps = [step for step, _, _ in result.curve]
        axis.plot(steps, [100 * value for _, value, _ in result.curve], "o-", markersize=3,
                  label=f"{result.row.paper_row}: {result.row.describe()}")  # fmt: skip
    axis.set_xlabel("optimizer step")
    axis.set_ylabel("val overall IoU (%), mean over seeds")
    axis.set_title(f"Table {table.number}: learning curves", fontsize=10)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path

"""The loss curves (and, for classifiers, test accuracy) as one PNG."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from gradtx.compare.deps import require
from gradtx.compare.report import settings
from gradtx.compare.train import RunResult

_STYLES = ("-", "--", ":")  # after the ten colours come round, the line style tells lines apart


def _positive(values: Sequence[float]) -> list[float]:
    # A log axis cannot show 0, NaN or infinity; NaN leaves a gap where matplotlib draws nothing.
    return [x if math.isfinite(x) and x > 0 else math.nan for x in values]


def write_png(
    path: Path, title: str, results: Sequence[RunResult], target: float, loss_label: str
) -> None:
    """Log-scale loss against step, one line per optimizer, the target as a dashed line; a
    second panel with the test error per epoch (log scale, so that the first point, near
    chance, and the last ones, a few percent apart, are all on the plot) when the runs
    measured one. One legend for both panels, outside them, so it covers no line."""
    # The Figure API draws with the Agg canvas and no pyplot: no GUI backend, no global state.
    figure_module = require("matplotlib.figure", "matplotlib", "the loss-curve plot")
    with_accuracy = any(r.accuracies for r in results)
    fig = figure_module.Figure(figsize=(13 if with_accuracy else 8, 6.5), layout="constrained")
    axes = fig.subplots(1, 2 if with_accuracy else 1, squeeze=False)[0]
    colors = [f"C{i % 10}" for i in range(len(results))]
    styles = [_STYLES[(i // 10) % len(_STYLES)] for i in range(len(results))]

    loss_ax = axes[0]
    for r, color, style in zip(results, colors, styles, strict=True):
        # For minibatch tasks the curve's last point is the full-training-set loss, a different
        # measurement from the running mean before it; the table reports it, the plot leaves it.
        curve = r.plotted()
        label = f"{r.name} ({settings(r.hyperparameters)})"
        loss_ax.plot(range(len(curve)), _positive(curve), style, color=color, label=label, lw=1.4)
    loss_ax.axhline(target, color="0.4", ls="--", lw=1, label=f"target {target:g}")
    loss_ax.set(yscale="log", xlabel="step", ylabel=loss_label, title="training loss")
    loss_ax.grid(True, which="major", alpha=0.3)

    if with_accuracy:
        acc_ax = axes[1]
        for r, color, style in zip(results, colors, styles, strict=True):
            # A perfect score (0% error) has no place on a log axis: drawn at half an example.
            floor = 50.0 / r.test_size if r.test_size else 0.1
            error = [max(100 * (1 - a), floor) for a in r.accuracies]
            acc_ax.plot(r.eval_steps, error, style, color=color, marker=".", ms=4)
        acc_ax.set(yscale="log", xlabel="step", ylabel="test error (%), log scale")
        acc_ax.set_title("test error, measured every epoch")
        acc_ax.grid(True, which="both", alpha=0.3)
    handles, labels = loss_ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(3, len(labels)),
               fontsize=8)
    fig.suptitle(title, fontsize=11)
    fig.savefig(path, dpi=110)

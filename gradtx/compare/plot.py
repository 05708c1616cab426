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
    second panel with the test accuracy per epoch when the runs measured one."""
    # The Figure API draws with the Agg canvas and no pyplot: no GUI backend, no global state.
    figure_module = require("matplotlib.figure", "matplotlib", "the loss-curve plot")
    with_accuracy = any(r.accuracies for r in results)
    fig = figure_module.Figure(figsize=(13 if with_accuracy else 8, 5.5), layout="constrained")
    axes = fig.subplots(1, 2 if with_accuracy else 1, squeeze=False)[0]
    colors = [f"C{i % 10}" for i in range(len(results))]
    styles = [_STYLES[(i // 10) % len(_STYLES)] for i in range(len(results))]

    loss_ax = axes[0]
    for r, color, style in zip(results, colors, styles, strict=True):
        # For minibatch tasks the curve's last point is the full-training-set loss, a different
        # measurement from the running mean before it; the table reports it, the plot leaves it.
        curve = r.curve()[:-1] if r.window > 1 else r.curve()
        label = f"{r.name} ({settings(r.hyperparameters)})"
        loss_ax.plot(range(len(curve)), _positive(curve), style, color=color, label=label, lw=1.4)
    loss_ax.axhline(target, color="0.4", ls="--", lw=1, label=f"target {target:g}")
    loss_ax.set(yscale="log", xlabel="step", ylabel=loss_label, title="training loss")
    loss_ax.grid(True, which="major", alpha=0.3)
    loss_ax.legend(fontsize=8, loc="best")

    if with_accuracy:
        acc_ax = axes[1]
        for r, color, style in zip(results, colors, styles, strict=True):
            acc = [100 * a for a in r.accuracies]
            acc_ax.plot(r.eval_steps, acc, style, color=color, marker=".", ms=4, label=r.name)
        # Zoom on the range that tells the good optimizers apart; a failed run pulls it down.
        finals = [100 * r.accuracies[-1] for r in results if r.accuracies]
        low = max(0.0, min(finals) - 10.0) if finals else 0.0
        acc_ax.set(ylim=(low, 100.5), xlabel="step", ylabel="test accuracy (%)")
        acc_ax.set_title("test accuracy, measured every epoch")
        acc_ax.grid(True, alpha=0.3)
        acc_ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(title, fontsize=11)
    fig.savefig(path, dpi=110)

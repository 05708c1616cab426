"""The comparison's results as a printed table, CSV files and JSON files."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gradtx.compare.train import RunResult


def settings(hyperparameters: Mapping[str, Any]) -> str:
    """``lr=0.1 momentum=0.9``: the hyperparameters an optimizer was built with, short."""
    parts = []
    for key, value in hyperparameters.items():
        key = "lr" if key == "learning_rate" else key
        parts.append(f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}")
    return " ".join(parts)


def summary_rows(results: Sequence[RunResult], target: float) -> list[dict[str, Any]]:
    """One dict per optimizer: what the table shows, unformatted."""
    rows = []
    for r in results:
        interval = r.accuracy_interval()
        rows.append({
            "optimizer": r.name,
            "start_loss": r.start_loss,
            "final_loss": r.final_loss,
            "test_accuracy": r.test_accuracy,
            "test_accuracy_95_low": None if interval is None else interval[0],
            "test_accuracy_95_high": None if interval is None else interval[1],
            "steps_to_target": r.steps_to(target),
            "median_step_us": r.median_step_us,
            "lr_from": r.lr_source,
            "settings": settings(r.hyperparameters),
        })
    return rows


def _accuracy_cell(row: Mapping[str, Any]) -> str:
    acc = row["test_accuracy"]
    if acc is None:
        return "-"
    low, high = row["test_accuracy_95_low"], row["test_accuracy_95_high"]
    if low is None:
        return f"{100 * acc:.1f}%"
    return f"{100 * acc:.1f}% [{100 * low:.1f}, {100 * high:.1f}]"


def format_table(results: Sequence[RunResult], target: float) -> str:
    """A plain-text table, one row per optimizer; a test-accuracy column for classifiers."""
    with_accuracy = any(r.test_accuracy is not None for r in results)
    header = ["optimizer", "final loss"]
    header += ["test acc [95% CI]"] if with_accuracy else []
    header += [f"steps to {target:g}", "us/step", "lr from", "settings"]
    rows = []
    for row in summary_rows(results, target):
        cells = [row["optimizer"], f"{row['final_loss']:.4g}"]
        if with_accuracy:
            cells.append(_accuracy_cell(row))
        steps = row["steps_to_target"]
        cells += ["-" if steps is None else str(steps), f"{row['median_step_us']:.1f}",
                  row["lr_from"]]
        rows.append([*cells, row["settings"]])
    widths = [max(len(line[i]) for line in (header, *rows)) for i in range(len(header))]

    def fmt(line: Sequence[str]) -> str:
        # Names and settings left-aligned, numbers right-aligned, as a reader scans them.
        cells = [line[0].ljust(widths[0])]
        cells += [c.rjust(w) for c, w in zip(line[1:-1], widths[1:-1], strict=True)]
        return "  ".join([*cells, line[-1]]).rstrip()

    return "\n".join([fmt(header), "  ".join("-" * w for w in widths), *map(fmt, rows)])


def legend(results: Sequence[RunResult], target: float, final_loss_label: str) -> str:
    """What the table's columns mean, printed under it."""
    first = results[0]
    window = (f"the mean of the minibatch losses over the last {first.window} steps"
              if first.window > 1 else "the exact loss")
    lines = [
        f"final loss: {final_loss_label}, at the final parameters; at the start it is "
        f"{first.start_loss:.4g} for every optimizer (the same initial parameters).",
        f"steps to {target:g}: the first step from which the plotted training curve "
        f"({window}) stays at or below {target:g} to the end; '-': it ends above.",
    ]
    if first.test_size:
        lines.append(
            f"test acc: on the {first.test_size} held-out test images, with its 95% (Wilson) "
            f"interval: one image is {100 / first.test_size:.2f} points, so runs whose "
            "intervals overlap are not told apart by this test set."
        )
    lines.append(
        "lr from: 'sweep', tuned for this task and these default steps by a sweep over "
        "{1, 3} x 10^k (see gradtx.compare.presets); 'example', the optimizer registry's "
        "example value (no sweep for this task); '--lr', given on the command line "
        "(--lr NAME=VALUE)."
    )
    return "\n".join(lines)


def _finite_or_none(x: float | None) -> float | None:
    # Strict JSON has no NaN or Infinity, and a diverged run produces them.
    return x if x is not None and math.isfinite(x) else None


def _write_csv(path: Path, header: Sequence[str], rows: Any) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n")


def write_files(
    out: Path, config: Mapping[str, Any], results: Sequence[RunResult], target: float
) -> list[Path]:
    """Writes into ``out`` (created if needed) and returns the paths written:

    * ``summary.csv`` and ``summary.json``: the table, plus the run's settings (JSON);
    * ``curves.csv`` (optimizer, step, loss): the loss at the start of every update, on that
      step's batch; ``curves.json``: those losses, the curve compared with the target
      (:meth:`RunResult.curve`) and, for classifiers, the test accuracy per epoch;
    * ``accuracy.csv`` (optimizer, step, test_accuracy), for classifiers only.
    """
    out.mkdir(parents=True, exist_ok=True)
    rows = summary_rows(results, target)
    written = [out / "summary.csv", out / "summary.json", out / "curves.csv", out / "curves.json"]
    _write_csv(written[0], list(rows[0]), (list(row.values()) for row in rows))
    for row, r in zip(rows, results, strict=True):
        row["final_loss"] = _finite_or_none(row["final_loss"])
        row["start_loss"] = _finite_or_none(row["start_loss"])
        row["hyperparameters"] = dict(r.hyperparameters)
    _write_json(written[1], {**config, "results": rows})

    _write_csv(
        written[2],
        ["optimizer", "step", "loss"],
        ((r.name, k, repr(loss)) for r in results for k, loss in enumerate(r.losses)),
    )
    curves = {
        r.name: {
            "loss": [_finite_or_none(x) for x in r.losses],
            "curve": [_finite_or_none(x) for x in r.curve()],
            "eval_steps": r.eval_steps,
            "test_accuracy": r.accuracies,
        }
        for r in results
    }
    _write_json(written[3], {**config, "window": results[0].window, "optimizers": curves})

    if any(r.accuracies for r in results):
        written.append(out / "accuracy.csv")
        _write_csv(
            written[-1],
            ["optimizer", "step", "test_accuracy"],
            (
                (r.name, k, repr(a))
                for r in results
                for k, a in zip(r.eval_steps, r.accuracies, strict=True)
            ),
        )
    return written

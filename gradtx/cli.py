"""The command line: ``python -m gradtx compare`` trains every registry optimizer on one small
problem and prints final loss, steps to a target loss and time per step.

Every optimizer comes from :data:`gradtx.optimizers.registry.OPTIMIZERS` with its ``example``
hyperparameters, so a new registry entry shows up here with no change to this file.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import gradtx as gx
from gradtx.optimizers import registry

LossFn = Callable[[jax.Array], jax.Array]


@dataclass(frozen=True)
class Task:
    """A problem to minimise: its loss, its starting point and a default target loss."""

    loss_fn: LossFn
    start: jax.Array
    target: float


def quadratic_task(seed: int, dim: int = 20) -> Task:
    """``0.5 * sum(lambda_i x_i^2)`` with curvatures log-uniform in [1, 100], from x = 1.

    The curvatures are drawn with ``seed``; the smallest and largest are pinned to 1 and 100 so
    the condition number, which is what makes the problem hard, is 100 for every seed.
    """
    rng = np.random.default_rng(seed)
    log_lambdas = np.sort(rng.uniform(0.0, 2.0, size=dim))
    log_lambdas[0], log_lambdas[-1] = 0.0, 2.0
    lambdas = jnp.asarray(10.0**log_lambdas, dtype=jnp.float32)

    def loss_fn(x: jax.Array) -> jax.Array:
        return 0.5 * jnp.sum(lambdas * x**2)

    return Task(loss_fn, jnp.ones(dim, dtype=jnp.float32), target=1e-3)


def rosenbrock_task(seed: int) -> Task:
    """The 2-D Rosenbrock valley from (-1.5, 2); deterministic, so ``seed`` is unused."""
    del seed

    def loss_fn(xy: jax.Array) -> jax.Array:
        x, y = xy[0], xy[1]
        return (1.0 - x) ** 2 + 100.0 * (y - x**2) ** 2

    # Along the valley floor the loss is about (1 - x)^2, so 2.0 means x has passed about -0.4:
    # well down the valley. That separates the optimizers within the default 300 steps, while
    # reaching the minimum itself (loss 1e-2) takes the Adam family about 700-1300 steps.
    return Task(loss_fn, jnp.array([-1.5, 2.0], dtype=jnp.float32), target=2.0)


TASKS: dict[str, Callable[[int], Task]] = {
    "quadratic": quadratic_task,
    "rosenbrock": rosenbrock_task,
}


@dataclass(frozen=True)
class RunResult:
    """One optimizer's run. ``losses[k]`` is the loss after ``k`` updates (``steps + 1`` values)."""

    name: str
    hyperparameters: dict[str, Any]
    losses: list[float]
    median_step_us: float

    @property
    def final_loss(self) -> float:
        return self.losses[-1]

    def steps_to(self, target: float) -> int | None:
        """The fewest updates after which the loss is at or below ``target``; None if never."""
        return next((k for k, loss in enumerate(self.losses) if loss <= target), None)


def train(info: registry.OptimizerInfo, task: Task, steps: int) -> RunResult:
    """Runs ``steps`` jitted updates of one optimizer, timing each after a compile step."""
    opt = info.factory(**info.example)

    @jax.jit
    def step(params: jax.Array, state: Any) -> tuple[jax.Array, Any, jax.Array]:
        loss, grads = jax.value_and_grad(task.loss_fn)(params)
        updates, state = opt.update(grads, state, params)
        return gx.apply_updates(params, updates), state, loss

    params, state = task.start, opt.init(task.start)
    # The first call compiles; run it once and throw the result away so timings are steady-state.
    jax.block_until_ready(step(params, state))

    losses, times = [], []
    for _ in range(steps):
        t0 = time.perf_counter()
        # Blocking is needed for an honest time: jax dispatches asynchronously.
        params, state, loss = jax.block_until_ready(step(params, state))
        times.append(time.perf_counter() - t0)
        losses.append(loss)
    losses.append(task.loss_fn(params))  # the loss after the last update
    return RunResult(
        name=info.name,
        hyperparameters=dict(info.example),
        losses=[float(x) for x in losses],
        median_step_us=statistics.median(times) * 1e6,
    )


def _steps_cell(steps: int | None) -> str:
    return "-" if steps is None else str(steps)


def format_table(results: Sequence[RunResult], target: float) -> str:
    """A plain-text table, one row per optimizer, columns aligned."""
    header = ("optimizer", "final loss", f"steps to {target:g}", "us/step")
    rows = [
        (r.name, f"{r.final_loss:.4g}", _steps_cell(r.steps_to(target)), f"{r.median_step_us:.1f}")
        for r in results
    ]
    widths = [max(len(line[i]) for line in (header, *rows)) for i in range(len(header))]

    def fmt(line: Sequence[str]) -> str:
        # Names left-aligned, numbers right-aligned, as a reader scans them.
        cells = [line[0].ljust(widths[0])]
        cells += [c.rjust(w) for c, w in zip(line[1:], widths[1:], strict=True)]
        return "  ".join(cells)

    return "\n".join([fmt(header), "  ".join("-" * w for w in widths), *map(fmt, rows)])


def _finite_or_none(x: float) -> float | None:
    # Strict JSON has no NaN or Infinity, and a diverged run produces them.
    return x if math.isfinite(x) else None


def write_outputs(out: Path, args: argparse.Namespace, results: Sequence[RunResult]) -> None:
    """Writes ``curves.csv`` (optimizer, step, loss) and ``summary.json`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "curves.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["optimizer", "step", "loss"])
        for r in results:
            # One row per update step: the loss at the parameters that step started from.
            writer.writerows((r.name, k, repr(loss)) for k, loss in enumerate(r.losses[:-1]))
    summary = {
        "task": args.task,
        "steps": args.steps,
        "seed": args.seed,
        "target": args.target,
        "results": [
            {
                "optimizer": r.name,
                "hyperparameters": r.hyperparameters,
                "initial_loss": _finite_or_none(r.losses[0]),
                "final_loss": _finite_or_none(r.final_loss),
                "steps_to_target": r.steps_to(args.target),
                "median_step_us": r.median_step_us,
            }
            for r in results
        ],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")


# Argument types: raising ArgumentTypeError makes argparse print "argument --NAME: message".


def _optimizer_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",")]
    known = registry.names()
    for name in names:
        if name not in known:
            raise argparse.ArgumentTypeError(
                f"unknown optimizer {name!r}; choose from {', '.join(known)}"
            )
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"an optimizer is listed twice in {text!r}")
    return names


def _int_at_least(minimum: int, description: str) -> Callable[[str], int]:
    """An argparse type for integers >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {description}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {description}, got {value}")
        return value

    return parse


_positive_int = _int_at_least(1, "a positive integer")
_non_negative_int = _int_at_least(0, "an integer >= 0")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gradtx", description="gradtx tools.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    compare = commands.add_parser(
        "compare",
        help="train every optimizer on a small problem and tabulate the results (the default)",
    )
    compare.add_argument("--task", choices=sorted(TASKS), default="quadratic")
    compare.add_argument(
        "--optimizers",
        type=_optimizer_list,
        default=registry.names(),
        help=f"comma-separated registry names (default: all of {','.join(registry.names())})",
    )
    compare.add_argument("--steps", type=_positive_int, default=300)
    compare.add_argument("--seed", type=_non_negative_int, default=0, help="seed for randomness")
    compare.add_argument(
        "--target",
        type=_positive_float,
        default=None,
        help="target loss for the steps-to-target column (default: quadratic 1e-3, rosenbrock 2)",
    )
    compare.add_argument("--out", type=Path, help="also write curves.csv and summary.json here")
    return parser


def compare(args: argparse.Namespace) -> int:
    task = TASKS[args.task](args.seed)
    if args.target is None:
        args.target = task.target
    results = [train(registry.get(name), task, args.steps) for name in args.optimizers]
    start_loss = results[0].losses[0]
    print(f"task={args.task} steps={args.steps} seed={args.seed} start loss={start_loss:.4g}")
    print(format_table(results, args.target))
    if args.out is not None:
        write_outputs(args.out, args, results)
        print(f"wrote {args.out / 'curves.csv'} and {args.out / 'summary.json'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status. Bad options raise ``SystemExit(2)`` via argparse."""
    argv = sys.argv[1:] if argv is None else list(argv)
    # No subcommand (nothing, or options only) means `compare`, so `python -m gradtx` just works.
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv = ["compare", *argv]
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        parser.error(f"argument --out: {str(args.out)!r} exists and is not a directory")
    return compare(args)

"""The command line: ``python -m gradtx compare`` trains several optimizers on one problem, shows
a progress bar for each, prints final loss, test accuracy (for the digits classifiers), steps to
a target loss and time per step, and with ``--out DIR`` writes a loss-curve PNG, CSV and JSON.

The default is the seed articles' comparison: a small CNN on scikit-learn's 8x8 digits, trained
with SGD, momentum, Nesterov, Adagrad, RMSprop, Adadelta, Adam, AdamW and NAdam. The pieces live
in :mod:`gradtx.compare`; scikit-learn, matplotlib and tqdm come with ``gradtx[compare]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gradtx.compare import plot, presets, report, train
from gradtx.compare.deps import INSTALL_HINT, MissingDependency, require
from gradtx.compare.tasks import TASKS

DEFAULT_TASK = "cnn-digits"

# Argument types: raising ArgumentTypeError makes argparse print "argument --NAME: message".


def _optimizer_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",")]
    known = presets.names()
    for name in names:
        if name not in known and name not in presets.GROUPS:
            raise argparse.ArgumentTypeError(
                f"unknown optimizer {name!r}; choose from {', '.join(known)}, "
                f"or a group: {', '.join(presets.GROUPS)}"
            )
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"an optimizer is listed twice in {text!r}")
    # A group's members already listed (adamw,frontier) are kept once.
    return presets.expand(names)


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


def _learning_rate(text: str) -> tuple[str, float]:
    """``NAME=VALUE`` for ``--lr``: an optimizer's name and a positive learning rate."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE (e.g. adam=3e-3), got {text!r}")
    return name.strip(), _positive_float(value)


def _per_task(attribute: str) -> str:
    return ", ".join(f"{name} {getattr(spec, attribute):g}" for name, spec in TASKS.items())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gradtx", description="gradtx tools.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    compare = commands.add_parser(
        "compare",
        help="train several optimizers on a small problem and compare them (the default)",
        description="Trains each optimizer on one problem with the same start and batches, "
        "then prints final loss, test accuracy (digits tasks), steps to a target loss and time "
        'per step. Needs the compare extra: pip install "gradtx[compare]".',
    )
    compare.add_argument(
        "--task",
        choices=list(TASKS),
        default=DEFAULT_TASK,
        help=f"the problem (default: {DEFAULT_TASK})",
    )
    compare.add_argument(
        "--optimizers",
        type=_optimizer_list,
        default=list(presets.DEFAULT_OPTIMIZERS),
        help=f"comma-separated names (default: {','.join(presets.DEFAULT_OPTIMIZERS)}); "
        f"also any of {','.join(n for n in presets.names() if n not in presets.PRESETS)}; "
        f"or 'frontier' for {','.join(presets.frontier())}",
    )
    compare.add_argument(
        "--steps",
        type=_positive_int,
        default=None,
        help=f"updates per optimizer (default per task: {_per_task('default_steps')})",
    )
    compare.add_argument(
        "--seed",
        type=_non_negative_int,
        default=0,
        help="seed for the problem, the initial weights and the minibatch order (default 0)",
    )
    compare.add_argument(
        "--target",
        type=_positive_float,
        default=None,
        help=f"target loss for the steps-to-target column (default: {_per_task('target')})",
    )
    compare.add_argument(
        "--lr",
        type=_learning_rate,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="the learning rate of one optimizer of --optimizers (repeatable: --lr adam=3e-3 "
        "--lr sgd=0.1); by default each uses the rate a sweep chose for the task",
    )
    compare.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="directory for curves.png, summary.csv/json, curves.csv/json (and accuracy.csv)",
    )
    return parser


def _check_dependencies(args: argparse.Namespace) -> None:
    # Checked before any training, so that a missing package fails in a second, not at the end,
    # and all at once, so that one install command fixes everything.
    needed = [("tqdm", "tqdm", "progress bars")]
    if TASKS[args.task].classifier:
        needed.append(("sklearn.datasets", "scikit-learn", "the digits data set"))
    if args.out is not None:
        needed.append(("matplotlib.figure", "matplotlib", "the loss-curve plot"))
    missing = []
    for module, package, purpose in needed:
        try:
            require(module, package, purpose)
        except MissingDependency:
            missing.append(f"{package} (for {purpose})")
    if missing:
        raise MissingDependency(
            f"`python -m gradtx compare` needs {', '.join(missing)}, not installed. "
            f"Install with: {INSTALL_HINT}"
        )


def compare(args: argparse.Namespace) -> int:
    spec = TASKS[args.task]
    steps = spec.default_steps if args.steps is None else args.steps
    target = spec.target if args.target is None else args.target
    task = spec.build(args.seed)
    overrides = dict(args.lr)
    print(f"task {task.name}: {task.description}")
    print(f"steps {steps}, seed {args.seed}, target loss {target:g}", flush=True)
    results = []
    for name in args.optimizers:
        resolved = presets.resolve(name, args.task)
        if name in overrides:
            resolved = dataclasses.replace(
                resolved, lr_source="--lr",
                hyperparameters={**resolved.hyperparameters, "learning_rate": overrides[name]})
        opt = resolved.build()
        result = train.train(task, name, opt, resolved.hyperparameters, steps,
                             resolved.eval_params)
        results.append(dataclasses.replace(result, lr_source=resolved.lr_source))
    print(report.format_table(results, target))
    print(report.legend(results, target, task.final_loss_label))
    if args.out is not None:
        config: dict[str, Any] = {
            "task": task.name,
            "description": task.description,
            "steps": steps,
            "seed": args.seed,
            "target": target,
            "learning_rate_overrides": overrides,
        }
        written = report.write_files(args.out, config, results, target)
        png = args.out / "curves.png"
        loss_label = "loss (mean over the last epoch)" if task.window > 1 else "loss"
        plot.write_png(png, f"{task.name}: {task.description}", results, target, loss_label)
        print("wrote " + ", ".join(str(p) for p in [png, *written]))
    return 0


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return actions[0].choices[name]


def _check_learning_rates(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """``--lr`` names optimizers being compared, each once."""
    names = [name for name, _ in args.lr]
    for name in names:
        if name not in args.optimizers:
            parser.error(f"argument --lr: {name!r} is not among --optimizers "
                         f"({','.join(args.optimizers)})")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        parser.error(f"argument --lr: {repeated[0]!r} is given twice")


def _check_out(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """``--out`` is a directory this process can write into (created if needed), found out
    before any training rather than after it."""
    if args.out is None:
        return
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"argument --out: {str(args.out)!r} exists and is not a directory")
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=args.out):
            pass
    except OSError as err:
        parser.error(f"argument --out: cannot write to {str(args.out)!r}: "
                     f"{err.strerror or err}")


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status. Bad options raise ``SystemExit(2)`` via argparse;
    a missing optional package prints what to install and returns 1."""
    argv = sys.argv[1:] if argv is None else list(argv)
    # No subcommand (nothing, or options only) means `compare`, so `python -m gradtx` just works.
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv = ["compare", *argv]
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    # The subcommand's own usage for its own errors (argparse would print the top level's).
    compare_parser = _subparser(parser, "compare")
    if unknown:
        target = compare_parser if args.command == "compare" else parser
        target.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command == "compare":
        _check_learning_rates(compare_parser, args)
    try:
        _check_dependencies(args)
        if args.command == "compare":
            _check_out(compare_parser, args)
        return compare(args)
    except MissingDependency as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

"""``python -m benchmarks [--quick] [--out PATH] [--repeats N] [--save-results PATH]``: run the
benchmark and write the Markdown report. ``--render PATH`` writes the report again from the
results a run saved, measuring nothing (for changes to the report's text)."""

from __future__ import annotations

import argparse
import datetime
import importlib
import os
import pickle
import shlex
import sys
from collections.abc import Sequence

from benchmarks.progress import log

# Before JAX is imported: on a GPU, let torch contenders share the device (JAX would otherwise
# take most of its memory up front).
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

# Modules that may add a section: each exposes ``run(quick: bool) -> str`` (Markdown).
OPTIONAL_SECTIONS = ("benchmarks.state_quality", "benchmarks.sharding", "benchmarks.multihost",
                     "benchmarks.large_run", "benchmarks.muon_compile")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny shapes: a smoke run")
    parser.add_argument("--out", default="BENCHMARKS.md", help="report path (Markdown)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="interleaved timing rounds (default 15; 3 with --quick)")
    parser.add_argument("--save-results", metavar="PATH",
                        help="also pickle the measured results to PATH")
    parser.add_argument("--render", metavar="PATH",
                        help="measure nothing: write the report from results saved to PATH")
    return parser.parse_args(argv)


def optional_sections(quick: bool) -> list[str]:
    """Markdown of the optional section modules that exist (missing ones are skipped)."""
    sections = []
    for name in OPTIONAL_SECTIONS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name != name:  # the module exists but something it imports does not
                raise
            continue
        log(f"optional section {name}")
        sections.append(module.run(quick))
    return sections


def main(argv: Sequence[str] | None = None) -> str:
    """Run the benchmark, write the report, and return its path."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    from benchmarks import report, suite
    from benchmarks.settings import make_settings

    if args.render:
        with open(args.render, "rb") as f:
            results = pickle.load(f)  # the caller's own file, written by --save-results
    else:
        settings = make_settings(args.quick, args.repeats)
        command = shlex.join(["python", "-m", "benchmarks", *argv])
        date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
        results = suite.run(settings, command, date)
        results.extra_sections = optional_sections(args.quick)
        if args.save_results:
            with open(args.save_results, "wb") as f:
                pickle.dump(results, f)
    with open(args.out, "w") as f:
        f.write(report.render(results))
    log(f"wrote {args.out}")
    return args.out


if __name__ == "__main__":
    main()

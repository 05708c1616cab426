"""Timing: fresh JIT compilation, and interleaved step timing of several runners."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from typing import Any

import jax

from benchmarks.runners import Runner, jax_step


@contextmanager
def no_persistent_cache():
    """Turn JAX's persistent compilation cache off, so each compilation is a real one."""
    previous = jax.config.jax_enable_compilation_cache
    jax.config.update("jax_enable_compilation_cache", False)
    try:
        yield
    finally:
        jax.config.update("jax_enable_compilation_cache", previous)


def warm_up_compiler() -> None:
    """Compile something small once, so the first timed compilation does not pay for
    initialising the compiler backend."""
    jax.jit(lambda x: x * 2 + 1).lower(jax.ShapeDtypeStruct((8,), "float32")).compile()


def compile_step(
    opt: Any, apply_updates: Callable | None, params: Any, grads: Any
) -> tuple[Any, float]:
    """Lower and compile the donating step from scratch; returns (executable, seconds).

    ``params`` and ``grads`` are trees of ``jax.ShapeDtypeStruct``; the in-memory caches are
    cleared first so that tracing, lowering and XLA compilation are all counted.
    """
    state = jax.eval_shape(opt.init, params)
    jax.clear_caches()
    start = time.perf_counter()
    lowered = jax.jit(jax_step(opt, apply_updates), donate_argnums=(0, 1)).lower(
        params, state, grads
    )
    compiled = lowered.compile()
    return compiled, time.perf_counter() - start


def _one_step(runner: Runner) -> float:
    start = time.perf_counter()
    runner.run(1)
    return max(time.perf_counter() - start, 1e-7)


def interleaved(
    runners: Mapping[str, Runner],
    rounds: int,
    warmup: int,
    round_seconds: float,
    budget_seconds: float = float("inf"),
    min_rounds: int = 3,
) -> tuple[dict[str, float], int]:
    """Median seconds per step of each runner, timed round-robin, and the rounds used.

    After ``warmup`` (at least one) untimed steps each, every round runs each runner for its
    own number of steps (about ``round_seconds`` worth, at least one); the per-step time of a
    round is its duration over its steps, and the result is the median over the rounds. Interleaving
    spreads any drift of the machine (other load, clocks) over all runners alike. Where one
    round of all runners would take so long that ``rounds`` of them exceed ``budget_seconds``,
    fewer rounds are run (never fewer than ``min_rounds``).
    """
    # The fastest warm-up step sets the steps per round: one slow step (a page fault, another
    # process) should not cut the rounds.
    one = {name: min(_one_step(r) for _ in range(max(1, warmup))) for name, r in runners.items()}
    steps = {name: max(1, min(1000, round(round_seconds / t))) for name, t in one.items()}
    per_round = sum(steps[name] * one[name] for name in runners)
    rounds = max(min(rounds, min_rounds), min(rounds, int(budget_seconds // per_round)))
    samples: dict[str, list[float]] = {name: [] for name in runners}
    gc.collect()
    gc.disable()  # a collection inside a timed round would be charged to one runner
    try:
        for _ in range(rounds):
            for name, runner in runners.items():
                start = time.perf_counter()
                runner.run(steps[name])
                samples[name].append((time.perf_counter() - start) / steps[name])
    finally:
        gc.enable()
    return {name: statistics.median(s) for name, s in samples.items()}, rounds

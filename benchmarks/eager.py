"""Eager step time: optimizer steps called without ``jax.jit`` around them.

For each benchmarked optimizer, gradtx against Optax on a small MLP-like tree
(:func:`benchmarks.shapes.eager_shape`): build the optimizer, ``init``, then call ``update``
and ``apply_updates`` eagerly, step after step. gradtx's declared optimizers run their eager
``update`` as one cached compiled program; the ``gradtx disable_jit`` contender runs the same
step under ``jax.disable_jit()``, op by op, for information. Measured per optimizer and
contender: the first step's time (with JAX's in-memory caches cleared just before it, so it
includes every compilation the step needs), the median step time after the warm-up steps
(contenders interleaved, one step each per round), and the XLA compilations during the first
step and during the timed steps.

``python -m benchmarks.eager [--quick]`` prints the section and its rows of the Targets table.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import optax

import gradtx as gx
from benchmarks import shapes, timing
from benchmarks.optimizers import OPTIMIZERS, OptimizerSpec
from benchmarks.progress import log
from benchmarks.results import EagerResult, EagerRow
from benchmarks.runners import to_device
from benchmarks.settings import Settings

# JAX records this event once per XLA compilation (jit programs and eagerly dispatched
# primitives alike); a persistent-cache hit skips it, so measurements turn that cache off.
COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"

GRADTX = "gradtx"
OPTAX = "optax"
OP_BY_OP = "gradtx disable_jit"
BASELINE = OPTAX  # eager ratios are contender / Optax


class EagerContender(NamedTuple):
    """A row of the eager table: how it builds the optimizer, how it applies the updates, and
    whether its steps run under ``jax.disable_jit()``."""

    name: str
    factory: Callable[[OptimizerSpec], Any]
    apply_updates: Callable
    disable_jit: bool = False


EAGER_CONTENDERS: tuple[EagerContender, ...] = (
    EagerContender(GRADTX, lambda spec: spec.gradtx(), gx.apply_updates),
    EagerContender(OPTAX, lambda spec: spec.optax(), optax.apply_updates),
    EagerContender(OP_BY_OP, lambda spec: spec.gradtx(), gx.apply_updates, disable_jit=True),
)


class CompileCounter:
    """Counts XLA compilations while entered (a JAX monitoring listener)."""

    def __init__(self) -> None:
        self.count = 0

    def _listener(self, event: str, duration_secs: float, **kwargs: Any) -> None:
        if event == COMPILE_EVENT:
            self.count += 1

    def __enter__(self) -> CompileCounter:
        jax.monitoring.register_event_duration_secs_listener(self._listener)
        return self

    def __exit__(self, *exc: object) -> None:
        jax.monitoring.unregister_event_duration_listener(self._listener)


class EagerStepper:
    """One contender's optimizer, state and parameters, stepped eagerly."""

    def __init__(self, contender: EagerContender, spec: OptimizerSpec, params: dict,
                 grads: dict) -> None:
        self._opt = contender.factory(spec)
        self._apply_updates = contender.apply_updates
        self._mode = jax.disable_jit if contender.disable_jit else contextlib.nullcontext
        self.params = to_device(params)
        self._grads = to_device(grads)
        with self._mode():
            self._state = self._opt.init(self.params)
        jax.block_until_ready(self._state)

    def step(self) -> float:
        """One un-jitted step (update, then apply it); its seconds, until the results are
        ready."""
        start = time.perf_counter()
        with self._mode():
            updates, self._state = self._opt.update(self._grads, self._state, self.params)
            self.params = self._apply_updates(self.params, updates)
        jax.block_until_ready((self.params, self._state))
        return time.perf_counter() - start


def _first_step(contender: EagerContender, spec: OptimizerSpec, params: dict, grads: dict,
                counter: CompileCounter) -> tuple[float, int]:
    """Seconds and compilations of a fresh optimizer's first step, from cleared caches."""
    stepper = EagerStepper(contender, spec, params, grads)
    jax.clear_caches()
    before = counter.count
    seconds = stepper.step()
    return seconds, counter.count - before


def measure_optimizer(spec: OptimizerSpec, settings: Settings, params: dict, grads: dict,
                      counter: CompileCounter,
                      contenders: Sequence[EagerContender] = EAGER_CONTENDERS,
                      ) -> dict[str, EagerRow]:
    """Every contender's row for one optimizer.

    First each contender's cold first step (caches cleared before each). Then, on fresh
    optimizers and states, ``settings.eager_warmup_steps`` untimed steps each, and
    ``settings.eager_steps`` timed steps in rounds of one step per contender, counting the
    compilations each contender's timed steps trigger.
    """
    first = {c.name: _first_step(c, spec, params, grads, counter) for c in contenders}
    steppers = {c.name: EagerStepper(c, spec, params, grads) for c in contenders}
    for stepper in steppers.values():
        for _ in range(settings.eager_warmup_steps):
            stepper.step()
    samples: dict[str, list[float]] = {name: [] for name in steppers}
    compiles = dict.fromkeys(steppers, 0)
    gc.collect()
    gc.disable()  # a collection inside a step would be charged to one contender
    try:
        for _ in range(settings.eager_steps):
            for name, stepper in steppers.items():
                before = counter.count
                samples[name].append(stepper.step())
                compiles[name] += counter.count - before
    finally:
        gc.enable()
    return {
        name: EagerRow(first[name][0], first[name][1], statistics.median(samples[name]),
                       compiles[name])
        for name in steppers
    }


def measure(settings: Settings, optimizers: Sequence[str] | None = None) -> EagerResult:
    """The eager section's measurements (persistent compilation cache off throughout)."""
    names = list(OPTIMIZERS if optimizers is None else optimizers)
    shape = shapes.eager_shape()
    log(f"eager steps: {shape.title}")
    params = shapes.host_tree(shape, seed=0, scale=0.02)
    grads = shapes.host_tree(shape, seed=1, scale=0.01)
    result = EagerResult(shape, names, [c.name for c in EAGER_CONTENDERS],
                         settings.eager_warmup_steps, settings.eager_steps)
    with timing.no_persistent_cache(), CompileCounter() as counter:
        timing.warm_up_compiler()
        for name in names:
            rows = measure_optimizer(OPTIMIZERS[name], settings, params, grads, counter)
            result.rows.update({(name, c): row for c, row in rows.items()})
            log(f"  eager {name}: " + ", ".join(
                f"{c} first {row.first_seconds:.3f} s, {row.step_seconds * 1e3:.3f} ms/step, "
                f"{row.compiles} compilations" for c, row in rows.items()))
    return result


def main(argv: Sequence[str] | None = None) -> str:
    """Measure, print the section and its Targets rows, and return that text."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.eager", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer timed steps: a smoke run")
    args = parser.parse_args(argv)
    from benchmarks import formatting as fmt
    from benchmarks import report, targets
    from benchmarks.settings import make_settings

    result = measure(make_settings(args.quick))
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = "python -m benchmarks.eager" + (" --quick" if args.quick else "")
    rows = [list(row) for row in targets.eager_rows(result)]
    text = (
        report.eager_table(result)
        + f"\n\n*Measured by `{command}` on {date}.*\n\n"
        + "Targets rows:\n\n"
        + fmt.table(["Target", "Shape", "Measured", "Verdict"], rows)
    )
    print(text)
    return text


if __name__ == "__main__":
    main()

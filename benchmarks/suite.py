"""Runs the whole benchmark: bandwidth, then per shape and optimizer the compilations, memory
analyses and interleaved step timings of every contender, then the eager (un-jitted) steps."""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import numpy as np
import torch

import gradtx as gx
from benchmarks import bandwidth, eager, hlo, machine, memory, shapes, timing
from benchmarks.contenders import APPLY_UPDATES, CONTENDERS, TORCH_FUSED, Contender, is_jax
from benchmarks.optimizers import OPTIMIZERS, OptimizerSpec
from benchmarks.progress import log
from benchmarks.results import Results, ShapeResult
from benchmarks.runners import JaxRunner, Runner, TorchRunner
from benchmarks.settings import Settings
from benchmarks.shapes import Shape


def platform() -> str:
    """The JAX platform everything runs on: ``"cpu"`` or ``"gpu"`` (or another backend)."""
    return jax.devices()[0].platform


def torch_device(jax_platform: str) -> str | None:
    """Where torch contenders run: beside JAX on CPU, on CUDA on a GPU, else not at all."""
    if jax_platform == "cpu":
        return "cpu"
    if jax_platform == "gpu" and torch.cuda.is_available():
        return "cuda"
    return None


def _abstract(tree: dict[str, np.ndarray]) -> dict[str, jax.ShapeDtypeStruct]:
    return {k: jax.ShapeDtypeStruct(v.shape, np.float32) for k, v in tree.items()}


class _Layout(NamedTuple):
    """What a contender's step gets: the tree as it is, or :func:`gradtx.pack_leaves` buffers."""

    params: dict
    grads: dict
    unpack: Callable | None


def _layout(contender: Contender, params: dict, grads: dict) -> _Layout:
    if not contender.packed:
        return _Layout(params, grads, None)
    packed_params, unpack = gx.pack_leaves(params)
    packed_grads, _ = gx.pack_leaves(grads)
    host = {k: np.asarray(v) for k, v in packed_params.items()}
    return _Layout(host, {k: np.asarray(v) for k, v in packed_grads.items()}, unpack)


def build_runners(
    spec: OptimizerSpec,
    contenders: Sequence[Contender],
    params: dict[str, np.ndarray],
    grads: dict[str, np.ndarray],
    device: str | None,
    result: ShapeResult | None = None,
    compile_repeats: int = 1,
    single_compile_seconds: float = float("inf"),
) -> dict[str, Runner]:
    """A runner per contender that has this optimizer (others are recorded as n/a).

    JAX contenders are compiled ``compile_repeats`` times from scratch, interleaved, except
    that one whose first compilation took over ``single_compile_seconds`` is compiled once; the
    median compile time, the number of compilations, the memory analysis, the compiled
    step's kernels (:mod:`benchmarks.hlo`) and the host memory it faults in per step go into
    ``result`` when given.
    """
    made = {c.name: c.factory(spec) for c in contenders}
    jax_ones = [c for c in contenders if is_jax(c) and made[c.name] is not None]
    layouts = {c.name: _layout(c, params, grads) for c in jax_ones}
    compiled, seconds = {}, {c.name: [] for c in jax_ones}
    for _ in range(compile_repeats):
        for c in jax_ones:
            if seconds[c.name] and seconds[c.name][0] > single_compile_seconds:
                continue
            layout = layouts[c.name]
            exe, s = timing.compile_step(made[c.name], APPLY_UPDATES[c.library],
                                         _abstract(layout.params), _abstract(layout.grads))
            compiled[c.name] = exe
            seconds[c.name].append(s)
    runners: dict[str, Runner] = {}
    for c in contenders:
        opt = made[c.name]
        if opt is None or (not is_jax(c) and device is None):
            if result is not None:
                result.step_seconds[(spec.name, c.name)] = None
            continue
        if is_jax(c):
            layout = layouts[c.name]
            runner = JaxRunner(compiled[c.name], opt, layout.params, layout.grads,
                               layout.unpack, list(params))
            if result is not None:
                key = (spec.name, c.name)
                result.compile_seconds[key] = float(np.median(seconds[c.name]))
                result.compile_counts[key] = len(seconds[c.name])
                row = memory.analyse(compiled[c.name], runner.state_bytes(), runner.peak_delta())
                if row is not None:
                    result.memory[key] = row
                stats = hlo.analyse(compiled[c.name])
                if stats is not None:
                    result.kernels[key] = stats
                faulted = runner.faulted_bytes()
                if faulted is not None:
                    result.faulted_bytes[key] = faulted
        else:
            runner = TorchRunner(opt, params, grads, device)
        runners[c.name] = runner
    return runners


def run_shape(
    shape: Shape,
    optimizers: Sequence[str],
    contenders: Sequence[Contender],
    settings: Settings,
    device: str | None,
) -> ShapeResult:
    """Compile, analyse and time every optimizer × contender on one tree."""
    log(f"shape: {shape.title}")
    result = ShapeResult(shape, list(optimizers), [c.name for c in contenders])
    params = shapes.host_tree(shape, seed=0, scale=0.02)
    grads = shapes.host_tree(shape, seed=1, scale=0.01)
    for name in optimizers:
        spec = OPTIMIZERS[name]
        runners = build_runners(spec, contenders, params, grads, device, result,
                                settings.compile_repeats, settings.single_compile_seconds)
        for c in runners:
            if (name, c) in result.compile_seconds:
                stats = result.kernels.get((name, c))
                kernels = "" if stats is None else (
                    f", {stats.kernels} kernels, "
                    f"{stats.bytes_per_param(shape.n_params):.1f} B/param")
                log(f"  {name} {c}: compiled in {result.compile_seconds[(name, c)]:.3f} s "
                    f"(median of {result.compile_counts[(name, c)]}){kernels}")
        times, result.rounds[name] = timing.interleaved(
            runners, settings.rounds, settings.warmup_steps, settings.round_seconds,
            settings.budget_seconds,
        )
        result.step_seconds.update({(name, c): t for c, t in times.items()})
        log(f"  {name} ({result.rounds[name]} rounds): "
            + ", ".join(f"{c} {t * 1e3:.3f} ms" for c, t in times.items()))
        del runners
        gc.collect()
    return result


def run(settings: Settings, command: str, date: str) -> Results:
    """The whole benchmark, as :class:`Results`."""
    plat = platform()
    device = torch_device(plat)
    log(f"JAX platform {plat}; torch contenders on {device or 'nothing (n/a)'}")
    description = machine.describe()  # before the run, so the load average is other work's
    with timing.no_persistent_cache():
        timing.warm_up_compiler()
        copy_bytes = settings.copy_bytes * (1 if plat == "cpu" else 8)
        before = bandwidth.measure(copy_bytes, settings.copy_trials, plat, device)
        names = list(OPTIMIZERS)
        per_shape = [
            run_shape(s, s.optimizers or names, CONTENDERS, settings, device)
            for s in shapes.benchmark_shapes(settings.quick)
        ]
        large = None
        if plat == "gpu":
            fused = [c for c in CONTENDERS if is_jax(c) or c.name == TORCH_FUSED]
            large = run_shape(shapes.gpu_large_shape(settings.quick), ["Adam"], fused,
                              settings, device)
        after = bandwidth.measure(copy_bytes, settings.copy_trials, plat, device)
        eager_result = eager.measure(settings)
    return Results(
        settings=settings,
        command=command,
        date=date,
        platform=plat,
        machine=description,
        bandwidth=bandwidth.best_of(before, after),
        shapes=per_shape,
        large=large,
        bytes_per_param={n: s.bytes_per_param for n, s in OPTIMIZERS.items()},
        eager=eager_result,
    )

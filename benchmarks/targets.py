"""The issue's performance targets, judged from the measured numbers (never hard-coded).

Each verdict compares the value *as printed* (ratios to 2 decimals, seconds to 3, percentages
to 1), so it always agrees with what the tables show."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from benchmarks import eager
from benchmarks import formatting as fmt
from benchmarks.contenders import (
    BASELINE,
    FFI_FUSED,
    FFI_PACKED,
    MULTI_TENSOR,
    OPTAX,
    OPTAX_FLATTEN,
    PACKED,
    TORCH_FUSED,
)
from benchmarks.results import EagerResult, Results, ShapeResult, roofline_pct

MET, MISSED, NOT_MEASURED = "MET", "MISSED", "NOT MEASURED"
COMPILE_LIMIT_S = 1.5
GPU_ROOFLINE_PCT = 85.0
EAGER_RATIO_LIMIT = 1.5
# The multi-tensor path's targets: its step compiles within this on the trees whose leaf shapes
# are all distinct, is at least as fast as Optax's on every tree, and reaches this fraction
# of torch fused Adam's speed on these trees.
MULTI_COMPILE_LIMIT_S = 2.0
MULTI_COMPILE_SHAPES = ("distinct", "distinct-2d")
TORCH_FUSED_FRACTION = 0.8
MULTI_VS_TORCH_SHAPES = ("transformer", "single")
# gradtx's ways to step many leaves at once, and the jax.ffi kernels measured beside them.
MULTI_PATHS = (MULTI_TENSOR, PACKED)
FFI_PATHS = (FFI_FUSED, FFI_PACKED)


class TargetRow(NamedTuple):
    target: str
    scope: str
    measured: str
    verdict: str


def ratios_verdict(ratios: Iterable[float], floor: float = 1.0) -> str:
    """MET when every "other/gradtx" time ratio, as printed, is at least ``floor`` (1.00:
    gradtx as fast or faster; 0.80: at least 0.8 times the other's speed)."""
    values = list(ratios)
    if not values:
        return NOT_MEASURED
    ok = all(round(r, fmt.RATIO_DIGITS) >= floor for r in values)
    return MET if ok else MISSED


def compile_verdict(times: Iterable[float], limit: float = COMPILE_LIMIT_S) -> str:
    """MET when every compile time is at most ``limit`` seconds."""
    values = list(times)
    if not values:
        return NOT_MEASURED
    return MET if all(round(t, fmt.SECONDS_DIGITS) <= limit for t in values) else MISSED


def roofline_verdict(pct: float | None, floor: float = GPU_ROOFLINE_PCT) -> str:
    """MET when the step reaches at least ``floor`` % of the copy bandwidth."""
    if pct is None:
        return NOT_MEASURED
    return MET if round(pct, fmt.PCT_DIGITS) >= floor else MISSED


def ratio_limit_verdict(ratios: Iterable[float], limit: float = EAGER_RATIO_LIMIT) -> str:
    """MET when every time ratio, as printed, is at most ``limit``."""
    values = list(ratios)
    if not values:
        return NOT_MEASURED
    return MET if all(round(r, fmt.RATIO_DIGITS) <= limit for r in values) else MISSED


def no_compile_verdict(counts: Iterable[int]) -> str:
    """MET when no count of compilations is above zero."""
    values = list(counts)
    if not values:
        return NOT_MEASURED
    return MET if all(n == 0 for n in values) else MISSED


def _vs_optax(shape: ShapeResult, contender: str = BASELINE) -> TargetRow:
    """``contender`` at least as fast as Optax's per-leaf step, for every optimizer."""
    ratios = {o: shape.ratio(o, OPTAX, contender) for o in shape.optimizers}
    ratios = {o: r for o, r in ratios.items() if r is not None}
    measured = "n/a"
    if ratios:
        worst = min(ratios, key=ratios.get)
        measured = f"worst {OPTAX}/{contender} = {fmt.ratio(ratios[worst])} ({worst})"
    return TargetRow(f"{contender} ≥ optax step speed, every optimizer", shape.shape.title,
                     measured, ratios_verdict(ratios.values()))


def _vs_torch_fused(shape: ShapeResult, platform: str) -> TargetRow:
    target = f"{BASELINE} ≥ torch fused Adam on CPU"
    r = shape.ratio("Adam", "torch fused", BASELINE)
    if platform != "cpu" or r is None:
        return TargetRow(target, shape.shape.title, f"not a CPU run ({platform})", NOT_MEASURED)
    measured = f"torch fused/{BASELINE} = {fmt.ratio(r)}"
    return TargetRow(target, shape.shape.title, measured, ratios_verdict([r]))


def _compile(shape: ShapeResult) -> TargetRow:
    times = {o: shape.compile_seconds[(o, BASELINE)] for o in shape.optimizers
             if (o, BASELINE) in shape.compile_seconds}
    measured = "n/a"
    if times:
        worst = max(times, key=times.get)
        measured = f"slowest {fmt.seconds(times[worst])} s ({worst})"
    target = f"{BASELINE} compile ≤ {COMPILE_LIMIT_S} s, ~500-leaf tree"
    return TargetRow(target, shape.shape.title, measured, compile_verdict(times.values()))


def _multi_compile(shape: ShapeResult, contender: str) -> TargetRow:
    """``contender``'s compile time on a tree of distinct leaf shapes, with the per-leaf
    steps' and Optax's beside it."""
    times = {o: shape.compile_seconds[(o, contender)] for o in shape.optimizers
             if (o, contender) in shape.compile_seconds}
    measured = "n/a"
    if times:
        worst = max(times, key=times.get)
        others = [(c, shape.compile_seconds.get((worst, c)))
                  for c in (BASELINE, OPTAX, OPTAX_FLATTEN)]
        measured = (f"slowest {fmt.seconds(times[worst])} s ({worst}); "
                    + ", ".join(f"{c} {fmt.seconds(t)} s" for c, t in others if t is not None))
    target = f"{contender} compile ≤ {MULTI_COMPILE_LIMIT_S:g} s, distinct leaf shapes"
    return TargetRow(target, shape.shape.title, measured,
                     compile_verdict(times.values(), MULTI_COMPILE_LIMIT_S))


def _multi_vs_torch_fused(shape: ShapeResult, contender: str) -> TargetRow:
    target = f"{contender} ≥ {TORCH_FUSED_FRACTION:g}× torch fused Adam's speed"
    r = shape.ratio("Adam", TORCH_FUSED, contender)
    if r is None:
        return TargetRow(target, shape.shape.title, "not run", NOT_MEASURED)
    measured = f"{TORCH_FUSED}/{contender} = {fmt.ratio(r)}"
    return TargetRow(target, shape.shape.title, measured,
                     ratios_verdict([r], TORCH_FUSED_FRACTION))


def multi_tensor_rows(results: Results) -> list[TargetRow]:
    """The many-leaf targets, for gradtx's multi-tensor and packed steps: compile time on the
    distinct-shape trees, step speed against Optax on every tree and against torch fused Adam
    on the transformer and the single leaf; the jax.ffi kernels (measured alternatives, Adam
    only) against the same compile and torch-fused targets."""
    rows = [_multi_compile(s, c) for c in (*MULTI_PATHS, *FFI_PATHS) for s in results.shapes
            if s.shape.key in MULTI_COMPILE_SHAPES]
    rows += [_vs_optax(s, c) for c in MULTI_PATHS for s in results.shapes]
    rows += [_multi_vs_torch_fused(s, c) for c in (*MULTI_PATHS, *FFI_PATHS)
             for s in results.shapes if s.shape.key in MULTI_VS_TORCH_SHAPES]
    return rows


def _gpu_large(results: Results) -> TargetRow:
    target = f"{BASELINE} Adam, ≥1B params on GPU, ≥ {GPU_ROOFLINE_PCT:g}% of copy bandwidth"
    large = results.large
    t = None if large is None else large.step_seconds.get(("Adam", BASELINE))
    if large is None or t is None:
        return TargetRow(target, "GPU single leaf", "no GPU visible to JAX", NOT_MEASURED)
    pct = roofline_pct(results, large.shape, "Adam", t)
    return TargetRow(target, large.shape.title, fmt.pct(pct), roofline_verdict(pct))


EAGER_SPEED_TARGET = (f"eager step ≤ {EAGER_RATIO_LIMIT:g}× Optax's for adam, adamw, "
                      "sgd-momentum, rmsprop")
EAGER_COMPILE_TARGET = "no compilation after the second eager step"


def eager_rows(e: EagerResult | None) -> list[TargetRow]:
    """The eager targets: gradtx's eager median step at most ``EAGER_RATIO_LIMIT`` times
    Optax's for every optimizer, and no compilation in gradtx's timed eager steps (compiled
    and ``disable_jit`` rows alike)."""
    if e is None:
        return [TargetRow(t, "eager steps", "not run", NOT_MEASURED)
                for t in (EAGER_SPEED_TARGET, EAGER_COMPILE_TARGET)]
    ratios = {o: e.ratio(o, eager.GRADTX, eager.BASELINE) for o in e.optimizers}
    ratios = {o: r for o, r in ratios.items() if r is not None}
    measured = "n/a"
    if ratios:
        worst = max(ratios, key=ratios.get)
        measured = f"worst {eager.GRADTX}/{eager.BASELINE} = {fmt.ratio(ratios[worst])} ({worst})"
    speed = TargetRow(EAGER_SPEED_TARGET, e.shape.title, measured,
                      ratio_limit_verdict(ratios.values()))
    counts = {(o, c): row.compiles for (o, c), row in e.rows.items()
              if c in (eager.GRADTX, eager.OP_BY_OP)}
    measured = "n/a"
    if counts:
        total = sum(counts.values())
        measured = (f"{total} compilations in steps {e.timed_steps} ({eager.GRADTX} and "
                    f"{eager.OP_BY_OP}, {len(counts)} rows)")
        if total:
            worst = max(counts, key=counts.get)
            measured += f"; most: {worst[0]} {worst[1]} ({counts[worst]})"
    compiles = TargetRow(EAGER_COMPILE_TARGET, e.shape.title, measured,
                         no_compile_verdict(counts.values()))
    return [speed, compiles]


def evaluate(results: Results) -> list[TargetRow]:
    """One row per target and shape it applies to."""
    rows = [_vs_optax(s) for s in results.shapes]
    rows += [_vs_torch_fused(s, results.platform) for s in results.shapes]
    rows += [_compile(s) for s in results.shapes if s.shape.key == "transformer"]
    rows += multi_tensor_rows(results)
    rows.append(_gpu_large(results))
    rows += eager_rows(results.eager)
    return rows

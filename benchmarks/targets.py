"""The issue's performance targets, judged from the measured numbers (never hard-coded).

Each verdict compares the value *as printed* (ratios to 2 decimals, seconds to 3, percentages
to 1), so it always agrees with what the tables show."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from benchmarks import formatting as fmt
from benchmarks.contenders import BASELINE
from benchmarks.results import Results, ShapeResult, roofline_pct

MET, MISSED, NOT_MEASURED = "MET", "MISSED", "NOT MEASURED"
COMPILE_LIMIT_S = 1.5
GPU_ROOFLINE_PCT = 85.0


class TargetRow(NamedTuple):
    target: str
    scope: str
    measured: str
    verdict: str


def ratios_verdict(ratios: Iterable[float]) -> str:
    """MET when every "other/gradtx" time ratio is at least 1.00 (gradtx as fast or faster)."""
    values = list(ratios)
    if not values:
        return NOT_MEASURED
    ok = all(round(r, fmt.RATIO_DIGITS) >= 1.0 for r in values)
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


def _vs_optax(shape: ShapeResult) -> TargetRow:
    ratios = {o: shape.ratio(o, "optax", BASELINE) for o in shape.optimizers}
    ratios = {o: r for o, r in ratios.items() if r is not None}
    measured = "n/a"
    if ratios:
        worst = min(ratios, key=ratios.get)
        measured = f"worst optax/{BASELINE} = {fmt.ratio(ratios[worst])} ({worst})"
    return TargetRow(f"{BASELINE} ≥ optax step speed, every optimizer", shape.shape.title,
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


def _gpu_large(results: Results) -> TargetRow:
    target = f"{BASELINE} Adam, ≥1B params on GPU, ≥ {GPU_ROOFLINE_PCT:g}% of copy bandwidth"
    large = results.large
    t = None if large is None else large.step_seconds.get(("Adam", BASELINE))
    if large is None or t is None:
        return TargetRow(target, "GPU single leaf", "no GPU visible to JAX", NOT_MEASURED)
    pct = roofline_pct(results, large.shape, "Adam", t)
    return TargetRow(target, large.shape.title, fmt.pct(pct), roofline_verdict(pct))


def evaluate(results: Results) -> list[TargetRow]:
    """One row per target and shape it applies to."""
    rows = [_vs_optax(s) for s in results.shapes]
    rows += [_vs_torch_fused(s, results.platform) for s in results.shapes]
    rows += [_compile(s) for s in results.shapes if s.shape.key == "transformer"]
    rows.append(_gpu_large(results))
    return rows

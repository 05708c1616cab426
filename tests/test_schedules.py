"""Learning-rate schedules.

1. Every schedule against a direct Python formula written here, at many counts (up to the
   largest int32), called with Python ints, eagerly on arrays, under vmap and jit, with a traced
   value hyperparameter, and in float32 when x64 is off.
2. Every schedule with a ``torch.optim.lr_scheduler`` equivalent gives torch's learning rate at
   every step (``optimizer.param_groups[0]['lr']``), and ``gx.sgd(momentum=0.9)`` driven by it
   follows the parameter trajectory of torch's SGD driven by the scheduler, in float64. (The
   momentum torch's CyclicLR and OneCycleLR cycle is checked in test_schedules_momentum.py.)
3. Invalid arguments raise errors naming them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx as gx
from gradtx.schedules import (
    constant_schedule,
    cosine_decay_schedule,
    cosine_warm_restarts_schedule,
    cyclic_schedule,
    exponential_decay,
    join_schedules,
    linear_schedule,
    multiply_schedules,
    multistep_schedule,
    one_cycle_momentum_schedule,
    one_cycle_schedule,
    piecewise_constant_schedule,
    polynomial_schedule,
    step_schedule,
    warmup_cosine_decay_schedule,
)
from tests import helpers

RTOL = 1e-10
MAX_INT32 = 2**31 - 1
COUNTS = [*range(130), 500, 4099, 10**6, MAX_INT32 - 1, MAX_INT32]


# --------------------------------------------------------------------------------------------
# 1. Direct formulas


def clip01(x):
    return min(max(x, 0.0), 1.0)


def half_cosine(start, end, f):
    return end + (start - end) * (1 + math.cos(math.pi * f)) / 2


def ref_one_cycle(v, c, total, pct=0.3, div=25.0, final_div=1e4, strategy="cos", three=False):
    """torch's phase table for the learning rate."""
    initial = v / div
    low = initial / final_div
    knots = [initial, v, initial, low] if three else [initial, v, low]
    return ref_phases(c, total, pct, strategy, knots)


def ref_one_cycle_momentum(c, total, base=0.85, high=0.95, pct=0.3, strategy="cos",
                           three=False):
    """torch's phase table for the momentum: max -> base -> max (-> max)."""
    knots = [high, base, high, high] if three else [high, base, high]
    return ref_phases(c, total, pct, strategy, knots)


def ref_phases(c, total, pct, strategy, knots):
    """torch's OneCycleLR phase table, written out; counts past the end hold the last value."""
    ends = [pct * total - 1, 2 * pct * total - 2][: len(knots) - 2] + [total - 1]
    phases = [(end, knots[i], knots[i + 1]) for i, end in enumerate(ends)]
    c = min(c, total - 1)
    begin = 0.0
    for i, (end, a, z) in enumerate(phases):
        if c <= end or i == len(phases) - 1:
            f = (c - begin) / (end - begin) if end != begin else 0.0
            return half_cosine(a, z, f) if strategy == "cos" else a + (z - a) * f
        begin = end
    raise AssertionError("unreachable")


def ref_cyclic(v0, vp, c, up, down=None, mode="triangular", gamma=1.0, scale_fn=None,
               scale_mode="cycle"):
    """CyclicLR's formula, written out with Python floats."""
    total = float(up + (up if down is None else down))
    ratio = up / total
    cycle = math.floor(1 + c / total)
    x = 1.0 + c / total - cycle
    height = x / ratio if x <= ratio else (x - 1) / (ratio - 1)
    if scale_fn is not None:
        scale = scale_fn(float(cycle) if scale_mode == "cycle" else float(c))
    else:
        scale = {"triangular": 1.0, "triangular2": 0.5 ** (cycle - 1),
                 "exp_range": gamma ** c}[mode]
    return v0 + (vp - v0) * height * scale


def ref_warm_restarts(v, c, first, mult, low):
    """The cycle found by walking cycle lengths (Python ints); modulo when they are equal."""
    if mult == 1:
        t, length = c % first, first
    else:
        start, length = 0, first
        while c >= start + length:
            start, length = start + length, length * mult
        t = c - start
    return low + (v - low) * (1 + math.cos(math.pi * t / length)) / 2


class Case(NamedTuple):
    id: str
    make: Callable[[float], Callable]  # the main value hyperparameter -> schedule
    ref: Callable[[float, int], float]
    value: float


CASES = [
    Case("constant", constant_schedule, lambda v, c: v, 0.3),
    Case(
        "linear-up-begin",
        lambda v: linear_schedule(v, 1.0, 40, transition_begin=10),
        lambda v, c: v + (1.0 - v) * clip01((c - 10) / 40),
        0.2,
    ),
    Case(
        "linear-down",
        lambda v: linear_schedule(v, 0.01, 57),
        lambda v, c: v + (0.01 - v) * clip01(c / 57),
        0.7,
    ),
    Case(
        "polynomial",
        lambda v: polynomial_schedule(v, 0.05, 1.7, 45, transition_begin=5),
        lambda v, c: 0.05 + (v - 0.05) * (1 - clip01((c - 5) / 45)) ** 1.7,
        0.9,
    ),
    Case(
        "polynomial-sqrt",
        lambda v: polynomial_schedule(v, 0.0, 0.5, 100),
        lambda v, c: v * (1 - clip01(c / 100)) ** 0.5,
        0.4,
    ),
    Case(
        "exponential",
        lambda v: exponential_decay(v, 7, 0.8),
        lambda v, c: v * 0.8 ** (c / 7),
        0.5,
    ),
    Case(
        "exponential-staircase-begin",
        lambda v: exponential_decay(v, 6, 0.5, transition_begin=13, staircase=True),
        lambda v, c: v * 0.5 ** math.floor(max(c - 13, 0) / 6),
        0.5,
    ),
    Case(
        "exponential-floor",
        lambda v: exponential_decay(v, 3, 0.7, end_value=0.02),
        lambda v, c: max(v * 0.7 ** (c / 3), 0.02),
        0.5,
    ),
    Case(
        "exponential-ceiling",
        lambda v: exponential_decay(v, 4, 1.3, transition_begin=2, end_value=2.0),
        # (the exponent is capped only to keep Python's float power from overflowing)
        lambda v, c: min(v * 1.3 ** min(max(c - 2, 0) / 4, 1000), 2.0),
        0.1,
    ),
    Case(
        "exponential-rate-one",
        lambda v: exponential_decay(v, 4, 1.0, end_value=0.05),
        lambda v, c: v,
        0.1,
    ),
    Case(
        "cosine",
        lambda v: cosine_decay_schedule(v, 50),
        lambda v, c: half_cosine(v, 0.0, min(c, 50) / 50),
        0.6,
    ),
    Case(
        "cosine-alpha",
        lambda v: cosine_decay_schedule(v, 77, alpha=0.1),
        lambda v, c: v * (0.1 + 0.9 * (1 + math.cos(math.pi * min(c, 77) / 77)) / 2),
        0.6,
    ),
    Case(
        "warmup-cosine",
        lambda v: warmup_cosine_decay_schedule(0.01, v, 10, 90, end_value=0.001),
        lambda v, c: (0.01 + (v - 0.01) * c / 10 if c < 10
                      else half_cosine(v, 0.001, min(c - 10, 80) / 80)),
        0.8,
    ),
    Case(
        "warmup-cosine-no-warmup",
        lambda v: warmup_cosine_decay_schedule(0.0, v, 0, 40),
        lambda v, c: half_cosine(v, 0.0, min(c, 40) / 40),
        0.8,
    ),
    Case(
        "piecewise",
        lambda v: piecewise_constant_schedule(v, {30: 0.5, 10: 0.1, 75: 3.0, 0: 2.0}),
        lambda v, c: v * math.prod(s for b, s in {30: 0.5, 10: 0.1, 75: 3.0, 0: 2.0}.items()
                                   if c >= b),
        0.3,
    ),
    Case("piecewise-empty", lambda v: piecewise_constant_schedule(v, {}), lambda v, c: v, 0.3),
    Case(
        "join",
        lambda v: join_schedules(
            [linear_schedule(0.0, v, 10), constant_schedule(0.05), cosine_decay_schedule(v, 30)],
            [10, 25],
        ),
        lambda v, c: (v * c / 10 if c < 10 else 0.05 if c < 25
                      else half_cosine(v, 0.0, min(c - 25, 30) / 30)),
        0.4,
    ),
    Case(
        "step",
        lambda v: step_schedule(v, 9, 0.3),
        lambda v, c: v * 0.3 ** (c // 9),
        0.4,
    ),
    Case(
        "multistep-repeated",
        lambda v: multistep_schedule(v, [5, 20, 20, 61], 0.5),
        lambda v, c: v * 0.5 ** sum(c >= m for m in (5, 20, 20, 61)),
        0.4,
    ),
    Case(
        "one-cycle-cos",
        lambda v: one_cycle_schedule(v, 100),
        lambda v, c: ref_one_cycle(v, c, 100),
        0.5,
    ),
    Case(
        "one-cycle-linear",
        lambda v: one_cycle_schedule(v, 57, pct_start=0.25, anneal_strategy="linear"),
        lambda v, c: ref_one_cycle(v, c, 57, pct=0.25, strategy="linear"),
        0.5,
    ),
    Case(
        "one-cycle-three-phase",
        lambda v: one_cycle_schedule(v, 100, three_phase=True),
        lambda v, c: ref_one_cycle(v, c, 100, three=True),
        0.5,
    ),
    Case(
        "one-cycle-three-phase-linear-fractional",
        lambda v: one_cycle_schedule(v, 73, 0.33, 10.0, 100.0, "linear", True),
        lambda v, c: ref_one_cycle(v, c, 73, 0.33, 10.0, 100.0, "linear", True),
        0.5,
    ),
    Case(  # the second phase ends past the last step: the third is never reached
        "one-cycle-three-phase-long-start",
        lambda v: one_cycle_schedule(v, 50, pct_start=0.6, three_phase=True),
        lambda v, c: ref_one_cycle(v, c, 50, pct=0.6, three=True),
        0.5,
    ),
    Case(  # pct_start * total_steps < 1: both warm phases end before count 0
        "one-cycle-three-phase-tiny-start",
        lambda v: one_cycle_schedule(v, 3, pct_start=0.2, three_phase=True),
        lambda v, c: ref_one_cycle(v, c, 3, pct=0.2, three=True),
        0.5,
    ),
    Case(  # pct_start * total_steps == 1: a warm-up of length zero (torch divides by zero)
        "one-cycle-zero-length-warmup",
        lambda v: one_cycle_schedule(v, 4, pct_start=0.25),
        lambda v, c: ref_one_cycle(v, c, 4, pct=0.25),
        0.5,
    ),
    Case(
        "one-cycle-one-step",
        lambda v: one_cycle_schedule(v, 1),
        lambda v, c: ref_one_cycle(v, c, 1),
        0.5,
    ),
    Case(
        "one-cycle-momentum-cos",
        lambda v: one_cycle_momentum_schedule(100, 0.85, v),
        lambda v, c: ref_one_cycle_momentum(c, 100, 0.85, v),
        0.95,
    ),
    Case(
        "one-cycle-momentum-linear-three-phase-fractional",
        lambda v: one_cycle_momentum_schedule(73, v, 0.99, 0.33, "linear", True),
        lambda v, c: ref_one_cycle_momentum(c, 73, v, 0.99, 0.33, "linear", True),
        0.8,
    ),
    Case(
        "one-cycle-momentum-three-phase-long-start",
        lambda v: one_cycle_momentum_schedule(50, 0.8, v, pct_start=0.6, three_phase=True),
        lambda v, c: ref_one_cycle_momentum(c, 50, 0.8, v, pct=0.6, three=True),
        0.9,
    ),
    Case(
        "cyclic-triangular",
        lambda v: cyclic_schedule(0.01, v, 7),
        lambda v, c: ref_cyclic(0.01, v, c, 7),
        0.5,
    ),
    Case(
        "cyclic-triangular2-asymmetric",
        lambda v: cyclic_schedule(0.01, v, 5, 8, "triangular2"),
        lambda v, c: ref_cyclic(0.01, v, c, 5, 8, "triangular2"),
        0.5,
    ),
    Case(
        "cyclic-exp-range",
        lambda v: cyclic_schedule(0.01, v, 4, 6, "exp_range", gamma=0.99),
        lambda v, c: ref_cyclic(0.01, v, c, 4, 6, "exp_range", 0.99),
        0.5,
    ),
    Case(  # init_value > peak_value: torch's momentum cycle
        "cyclic-momentum-triangular2",
        lambda v: cyclic_schedule(v, 0.8, 6, 3, "triangular2"),
        lambda v, c: ref_cyclic(v, 0.8, c, 6, 3, "triangular2"),
        0.95,
    ),
    Case(  # step_size_down=0: a sawtooth
        "cyclic-sawtooth",
        lambda v: cyclic_schedule(0.0, v, 9, 0),
        lambda v, c: ref_cyclic(0.0, v, c, 9, 0),
        0.5,
    ),
    Case(
        "cyclic-scale-fn-cycle",
        lambda v: cyclic_schedule(0.02, v, 3, 5, scale_fn=lambda k: 0.7 ** k),
        lambda v, c: ref_cyclic(0.02, v, c, 3, 5, scale_fn=lambda k: 0.7 ** k),
        0.5,
    ),
    Case(  # mode is overridden by scale_fn
        "cyclic-scale-fn-iterations",
        lambda v: cyclic_schedule(0.02, v, 4, mode="triangular2",
                                  scale_fn=lambda x: 1.0 / (1.0 + 0.01 * x),
                                  scale_mode="iterations"),
        lambda v, c: ref_cyclic(0.02, v, c, 4, scale_fn=lambda x: 1.0 / (1.0 + 0.01 * x),
                                scale_mode="iterations"),
        0.5,
    ),
    Case(
        "multiply",
        lambda v: multiply_schedules(
            [step_schedule(v, 9, 0.5), linear_schedule(0.1, 1.0, 20), constant_schedule(2.0)]
        ),
        lambda v, c: v * 0.5 ** (c // 9) * (0.1 + 0.9 * clip01(c / 20)) * 2.0,
        0.4,
    ),
    Case(
        "warm-restarts",
        lambda v: cosine_warm_restarts_schedule(v, 7, 1, 0.01),
        lambda v, c: ref_warm_restarts(v, c, 7, 1, 0.01),
        0.5,
    ),
    Case(
        "warm-restarts-doubling",
        lambda v: cosine_warm_restarts_schedule(v, 3, 2),
        lambda v, c: ref_warm_restarts(v, c, 3, 2, 0.0),
        0.5,
    ),
    Case(
        "warm-restarts-tripling",
        lambda v: cosine_warm_restarts_schedule(v, 2, 3, min_value=0.05),
        lambda v, c: ref_warm_restarts(v, c, 2, 3, 0.05),
        0.5,
    ),
    Case(
        "warm-restarts-tenfold",
        lambda v: cosine_warm_restarts_schedule(v, 1, 10, min_value=0.001),
        lambda v, c: ref_warm_restarts(v, c, 1, 10, 0.001),
        0.5,
    ),
]
CASE_PARAMS = [pytest.param(case, id=case.id) for case in CASES]


def expected(case, counts, value=None):
    v = case.value if value is None else value
    return np.asarray([case.ref(v, int(c)) for c in counts], dtype=np.float64)


def assert_values(actual, want, what):
    actual = np.asarray(actual)
    assert actual.dtype == np.float64, what
    assert actual.shape == want.shape, what
    np.testing.assert_allclose(actual, want, rtol=RTOL, atol=1e-15, err_msg=what)


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_python_int_counts(case):
    schedule = case.make(case.value)
    got = [schedule(c) for c in COUNTS[::3]]
    for c, g in zip(COUNTS[::3], got, strict=True):
        assert isinstance(g, jax.Array) and g.shape == (), c
    assert_values(jnp.stack(got), expected(case, COUNTS[::3]), case.id)


@pytest.mark.parametrize("mode", ["array", "vmap", "jit-vmap", "jit-scalar"])
@pytest.mark.parametrize("case", CASE_PARAMS)
def test_int32_counts(case, mode):
    schedule = case.make(case.value)
    counts = jnp.asarray(COUNTS, dtype=jnp.int32)
    if mode == "array":  # elementwise on an array of counts
        got = schedule(counts)
    elif mode == "vmap":
        got = jax.vmap(schedule)(counts)
    elif mode == "jit-vmap":
        got = jax.jit(jax.vmap(schedule))(counts)
    else:  # one compiled function, called with each int32 scalar
        jitted = jax.jit(schedule)
        got = jnp.stack([jitted(c) for c in counts])
    assert_values(got, expected(case, COUNTS), f"{case.id} ({mode})")


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_traced_value_hyperparameter(case):
    """The main value (init/peak/max value) may be a traced array: a vmapped sweep over it."""
    values = jnp.asarray([case.value, 2 * case.value, 0.5 * case.value])
    counts = jnp.asarray(COUNTS, dtype=jnp.int32)
    got = jax.jit(jax.vmap(lambda v: case.make(v)(counts)))(values)
    for row, v in zip(got, values, strict=True):
        assert_values(row, expected(case, COUNTS, float(v)), f"{case.id} at value {v}")


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_float32_when_x64_is_off(case):
    counts = [0, 1, 17, 64, 129]
    with jax.enable_x64(False):
        schedule = case.make(case.value)
        eager = schedule(jnp.asarray(counts, dtype=jnp.int32))
        jitted = jax.jit(jax.vmap(schedule))(jnp.asarray(counts, dtype=jnp.int32))
        scalar = schedule(5)
        assert eager.dtype == jitted.dtype == scalar.dtype == jnp.float32
    for got in (eager, jitted):
        np.testing.assert_allclose(got, expected(case, counts), rtol=2e-5, atol=1e-7)


@pytest.mark.parametrize(("first", "mult"), [(1, 10), (3, 2), (2, 3), (1, 2)])
def test_warm_restarts_exact_at_every_restart(first, mult):
    """Up to the largest int32 count, the value is init_value exactly at each restart count
    (where a floating-point log can land a cycle short) and the near-minimum one step before."""
    schedule = jax.jit(jax.vmap(cosine_warm_restarts_schedule(1.0, first, mult, 0.25)))
    restarts, start, length = [], first, first
    while start <= MAX_INT32:
        restarts.append(start)
        length *= mult
        start += length
    counts = [c for s in restarts for c in (s - 1, s, s + 1) if c <= MAX_INT32]
    got = schedule(jnp.asarray(counts, dtype=jnp.int32))
    want = [ref_warm_restarts(1.0, c, first, mult, 0.25) for c in counts]
    np.testing.assert_allclose(got, want, rtol=RTOL)
    assert np.all(np.asarray(got)[1::3][: len(restarts)] == 1.0)


def test_schedule_drives_scale_by_learning_rate():
    """The count a transform passes is 0 at the first update: updates are -schedule(k) * g."""
    schedule = linear_schedule(1.0, 0.0, 4)
    opt = gx.scale_by_learning_rate(schedule)
    state = opt.init({"w": jnp.ones(2)})
    update = jax.jit(opt.update)
    for k in range(6):
        out, state = update({"w": jnp.full(2, 2.0)}, state)
        np.testing.assert_allclose(out["w"], -2.0 * max(1 - k / 4, 0.0), rtol=RTOL)


# --------------------------------------------------------------------------------------------
# 2. torch.optim.lr_scheduler


TORCH_STEPS = 60
TORCH_LR = 0.1
PARAMS = helpers.make_params()
GRADS = helpers.make_gradients(PARAMS, steps=TORCH_STEPS)
GRADS_STACKED = helpers.stack(GRADS)


class TorchCase(NamedTuple):
    id: str
    schedule: Callable  # base lr -> gradtx schedule
    scheduler: Callable  # (lr_scheduler module, optimizer) -> torch scheduler


def _one_cycle_case(label, total, **kwargs):
    # The keyword names are torch's; OneCycleLR ignores the optimizer's lr (max_lr sets it).
    return TorchCase(
        f"OneCycleLR-{label}",
        lambda lr: one_cycle_schedule(0.5, total, **kwargs),
        lambda s, opt: s.OneCycleLR(opt, max_lr=0.5, total_steps=total, cycle_momentum=False,
                                    **kwargs),
    )


def _cyclic_case(label, up, down=None, mode="triangular", gamma=1.0, scale_fn=None,
                 scale_mode="cycle"):
    # CyclicLR ignores the optimizer's lr (base_lr sets it); the momentum stays fixed here (see
    # test_schedules_momentum.py for the cycled momentum).
    return TorchCase(
        f"CyclicLR-{label}",
        lambda lr: cyclic_schedule(0.01, 0.2, up, down, mode, gamma, scale_fn, scale_mode),
        lambda s, opt: s.CyclicLR(opt, base_lr=0.01, max_lr=0.2, step_size_up=up,
                                  step_size_down=down, mode=mode, gamma=gamma,
                                  scale_fn=scale_fn, scale_mode=scale_mode,
                                  cycle_momentum=False),
    )


def _sequential(*make_schedulers, milestones):
    """SequentialLR of schedulers built, in order, on the same optimizer."""
    return lambda s, opt: s.SequentialLR(
        opt, [make(s, opt) for make in make_schedulers], milestones=milestones
    )


def _chained(*make_schedulers):
    """ChainedScheduler of schedulers built, in order, on the same optimizer."""
    return lambda s, opt: s.ChainedScheduler(
        [make(s, opt) for make in make_schedulers], optimizer=opt
    )


def _constant_lr(lr, factor, total_iters):
    """ConstantLR's gradtx form."""
    return join_schedules(
        [constant_schedule(lr * factor), constant_schedule(lr)], [total_iters]
    )


TORCH_CASES = [
    TorchCase(
        "StepLR",
        lambda lr: step_schedule(lr, 7, gamma=0.5),
        lambda s, opt: s.StepLR(opt, step_size=7, gamma=0.5),
    ),
    TorchCase(
        "MultiStepLR-repeated-milestone",
        lambda lr: multistep_schedule(lr, [5, 12, 12, 40], gamma=0.3),
        lambda s, opt: s.MultiStepLR(opt, milestones=[5, 12, 12, 40], gamma=0.3),
    ),
    TorchCase(
        "ExponentialLR",
        lambda lr: exponential_decay(lr, 1, 0.95),
        lambda s, opt: s.ExponentialLR(opt, gamma=0.95),
    ),
    TorchCase(
        "CosineAnnealingLR",
        lambda lr: cosine_decay_schedule(lr, 60),
        lambda s, opt: s.CosineAnnealingLR(opt, T_max=60),
    ),
    TorchCase(
        "CosineAnnealingLR-eta_min",
        lambda lr: cosine_decay_schedule(lr, 70, alpha=0.013 / lr),
        lambda s, opt: s.CosineAnnealingLR(opt, T_max=70, eta_min=0.013),
    ),
    TorchCase(
        "LinearLR-warmup",
        lambda lr: linear_schedule(lr * 0.25, lr * 1.0, 20),
        lambda s, opt: s.LinearLR(opt, start_factor=0.25, end_factor=1.0, total_iters=20),
    ),
    TorchCase(
        "LinearLR-decay",
        lambda lr: linear_schedule(lr * 1.0, lr * 0.1, 45),
        lambda s, opt: s.LinearLR(opt, start_factor=1.0, end_factor=0.1, total_iters=45),
    ),
    TorchCase(
        "PolynomialLR",
        lambda lr: polynomial_schedule(lr, 0.0, 2.0, 40),
        lambda s, opt: s.PolynomialLR(opt, total_iters=40, power=2.0),
    ),
    _one_cycle_case("cos", 60),
    _one_cycle_case("linear", 60, anneal_strategy="linear"),
    _one_cycle_case("cos-three-phase", 60, three_phase=True),
    _one_cycle_case("linear-three-phase", 60, anneal_strategy="linear", three_phase=True),
    _one_cycle_case(
        "cos-fractional-phases", 73, pct_start=0.33, div_factor=10.0, final_div_factor=100.0
    ),
    _one_cycle_case(
        "linear-three-phase-fractional", 61, pct_start=0.33, anneal_strategy="linear",
        three_phase=True,
    ),
    _cyclic_case("triangular", 5),
    _cyclic_case("triangular-asymmetric", 4, 7),
    _cyclic_case("triangular-sawtooth", 9, 0),
    _cyclic_case("triangular2", 5, 3),
    _cyclic_case("triangular2-default-down", 7, None, "triangular2"),
    _cyclic_case("exp_range", 6, None, "exp_range", 0.97),
    _cyclic_case("exp_range-asymmetric", 3, 8, "exp_range", 0.9),
    _cyclic_case("scale_fn-cycle", 4, 6, scale_fn=lambda k: 0.8 ** k),
    _cyclic_case("scale_fn-iterations", 5, 4, "exp_range", 0.5,
                 scale_fn=lambda x: 1.0 / (1.0 + 0.05 * x), scale_mode="iterations"),
    TorchCase(
        "ConstantLR",
        lambda lr: _constant_lr(lr, 0.25, 9),
        lambda s, opt: s.ConstantLR(opt, factor=0.25, total_iters=9),
    ),
    TorchCase(
        "ConstantLR-defaults",
        lambda lr: _constant_lr(lr, 1 / 3, 5),
        lambda s, opt: s.ConstantLR(opt),
    ),
    TorchCase(
        "LambdaLR",
        lambda lr: lambda count: lr * (1.0 / (1.0 + 0.1 * count)),
        lambda s, opt: s.LambdaLR(opt, lr_lambda=lambda epoch: 1.0 / (1.0 + 0.1 * epoch)),
    ),
    TorchCase(
        "LambdaLR-staircase",
        lambda lr: lambda count: lr * 0.5 ** (count // 10),
        lambda s, opt: s.LambdaLR(opt, lr_lambda=lambda epoch: 0.5 ** (epoch // 10)),
    ),
    TorchCase(
        "MultiplicativeLR-constant",
        lambda lr: exponential_decay(lr, 1, 0.93),
        lambda s, opt: s.MultiplicativeLR(opt, lr_lambda=lambda epoch: 0.93),
    ),
    TorchCase(  # a factor that depends on the step: its product written in closed form
        "MultiplicativeLR-every-10",
        lambda lr: step_schedule(lr, 10, 0.5),
        lambda s, opt: s.MultiplicativeLR(
            opt, lr_lambda=lambda epoch: 0.5 if epoch % 10 == 0 else 1.0
        ),
    ),
    TorchCase(
        "SequentialLR-warmup-exponential",
        lambda lr: join_schedules(
            [linear_schedule(lr * 0.1, lr, 10), exponential_decay(lr, 1, 0.9)], [10]
        ),
        _sequential(
            lambda s, opt: s.LinearLR(opt, start_factor=0.1, total_iters=10),
            lambda s, opt: s.ExponentialLR(opt, gamma=0.9),
            milestones=[10],
        ),
    ),
    TorchCase(  # torch's documented example
        "SequentialLR-constant-exponential",
        lambda lr: join_schedules([_constant_lr(lr, 0.1, 20), exponential_decay(lr, 1, 0.9)],
                                  [20]),
        _sequential(
            lambda s, opt: s.ConstantLR(opt, factor=0.1, total_iters=20),
            lambda s, opt: s.ExponentialLR(opt, gamma=0.9),
            milestones=[20],
        ),
    ),
    TorchCase(  # a milestone before the first scheduler's schedule ends
        "SequentialLR-three",
        lambda lr: join_schedules(
            [linear_schedule(lr * 0.2, lr, 8), cosine_decay_schedule(lr, 20, 0.005 / lr),
             step_schedule(lr, 4, 0.7)],
            [5, 26],
        ),
        _sequential(
            lambda s, opt: s.LinearLR(opt, start_factor=0.2, total_iters=8),
            lambda s, opt: s.CosineAnnealingLR(opt, T_max=20, eta_min=0.005),
            lambda s, opt: s.StepLR(opt, step_size=4, gamma=0.7),
            milestones=[5, 26],
        ),
    ),
    TorchCase(
        "SequentialLR-warm-restarts-multistep",
        lambda lr: join_schedules(
            [cosine_warm_restarts_schedule(lr, 6, 2, 0.01), multistep_schedule(lr, [3, 9])],
            [30],
        ),
        _sequential(
            lambda s, opt: s.CosineAnnealingWarmRestarts(opt, T_0=6, T_mult=2, eta_min=0.01),
            lambda s, opt: s.MultiStepLR(opt, milestones=[3, 9]),
            milestones=[30],
        ),
    ),
    TorchCase(  # torch's documented example
        "ChainedScheduler-constant-exponential",
        lambda lr: multiply_schedules(
            [_constant_lr(lr, 0.1, 20), exponential_decay(1.0, 1, 0.9)]
        ),
        _chained(
            lambda s, opt: s.ConstantLR(opt, factor=0.1, total_iters=20),
            lambda s, opt: s.ExponentialLR(opt, gamma=0.9),
        ),
    ),
    TorchCase(
        "ChainedScheduler-five",
        lambda lr: multiply_schedules([
            linear_schedule(lr * 0.2, lr, 10),
            step_schedule(1.0, 7, 0.5),
            multistep_schedule(1.0, [15, 33], 0.6),
            polynomial_schedule(1.0, 0.0, 1.5, 80),
            cosine_decay_schedule(1.0, 70),
        ]),
        _chained(
            lambda s, opt: s.LinearLR(opt, start_factor=0.2, total_iters=10),
            lambda s, opt: s.StepLR(opt, step_size=7, gamma=0.5),
            lambda s, opt: s.MultiStepLR(opt, milestones=[15, 33], gamma=0.6),
            lambda s, opt: s.PolynomialLR(opt, total_iters=80, power=1.5),
            lambda s, opt: s.CosineAnnealingLR(opt, T_max=70),
        ),
    ),
    TorchCase(
        "CosineAnnealingWarmRestarts-T_mult1",
        lambda lr: cosine_warm_restarts_schedule(lr, 7, 1, min_value=0.01),
        lambda s, opt: s.CosineAnnealingWarmRestarts(opt, T_0=7, T_mult=1, eta_min=0.01),
    ),
    TorchCase(
        "CosineAnnealingWarmRestarts-T_mult2",
        lambda lr: cosine_warm_restarts_schedule(lr, 3, 2, min_value=0.02),
        lambda s, opt: s.CosineAnnealingWarmRestarts(opt, T_0=3, T_mult=2, eta_min=0.02),
    ),
    TorchCase(
        "CosineAnnealingWarmRestarts-T_mult3",
        lambda lr: cosine_warm_restarts_schedule(lr, 2, 3),
        lambda s, opt: s.CosineAnnealingWarmRestarts(opt, T_0=2, T_mult=3),
    ),
]


def torch_run(torch, make_scheduler, steps=TORCH_STEPS):
    """torch SGD(momentum=0.9) + scheduler: the lr each step used, and the parameters after it."""
    keys = sorted(PARAMS)
    tensors = [torch.tensor(PARAMS[k], dtype=torch.float64, requires_grad=True) for k in keys]
    opt = torch.optim.SGD(tensors, lr=TORCH_LR, momentum=0.9)
    scheduler = make_scheduler(torch.optim.lr_scheduler, opt)
    lrs, traj = [], []
    for g in GRADS[:steps]:
        lrs.append(opt.param_groups[0]["lr"])
        for tensor, k in zip(tensors, keys, strict=True):
            tensor.grad = torch.tensor(g[k], dtype=torch.float64)
        opt.step()
        scheduler.step()
        traj.append({k: t.detach().numpy().copy() for k, t in zip(keys, tensors, strict=True)})
    return lrs, traj


TORCH_PARAMS = [pytest.param(case, id=case.id) for case in TORCH_CASES]


@pytest.mark.parametrize("case", TORCH_PARAMS)
def test_learning_rates_equal_torch(case, torch_float64):
    torch_lrs, _ = torch_run(torch_float64, case.scheduler)
    schedule = case.schedule(TORCH_LR)
    eager = [float(schedule(k)) for k in range(TORCH_STEPS)]
    jitted = jax.jit(jax.vmap(schedule))(jnp.arange(TORCH_STEPS, dtype=jnp.int32))
    for got in (eager, jitted):
        np.testing.assert_allclose(got, torch_lrs, rtol=1e-9, atol=0)


@pytest.mark.parametrize("mode", ["jit", "eager"])
@pytest.mark.parametrize("case", TORCH_PARAMS)
def test_sgd_trajectory_equals_torch(case, mode, torch_float64):
    _, torch_traj = torch_run(torch_float64, case.scheduler)
    opt = gx.sgd(learning_rate=case.schedule(TORCH_LR), momentum=0.9)
    if mode == "jit":
        ours = jax.jit(helpers.run_scan, static_argnums=0)(opt, PARAMS, GRADS_STACKED)
    else:
        ours = helpers.run_steps(opt, PARAMS, GRADS)
    for t, want in enumerate(torch_traj):
        for key, w in want.items():
            atol = 1e-12 * max(1.0, float(np.max(np.abs(w))))
            np.testing.assert_allclose(
                np.asarray(ours[key][t]), w, rtol=1e-9, atol=atol,
                err_msg=f"step {t + 1}, leaf {key!r}",
            )


def test_cosine_annealing_lr_after_t_max(torch_float64):
    """As documented: torch's recursive CosineAnnealingLR rises again after T_max (period
    2 T_max); cosine_decay_schedule stays at alpha * init_value. Equal up to T_max."""
    t_max, eta_min = 20, 0.01
    torch_lrs, _ = torch_run(
        torch_float64, lambda s, opt: s.CosineAnnealingLR(opt, T_max=t_max, eta_min=eta_min),
        steps=2 * t_max + 1,
    )
    ours = np.asarray(
        jax.vmap(cosine_decay_schedule(TORCH_LR, t_max, alpha=eta_min / TORCH_LR))(
            jnp.arange(2 * t_max + 1)
        )
    )
    np.testing.assert_allclose(ours[: t_max + 1], torch_lrs[: t_max + 1], rtol=1e-9)
    np.testing.assert_allclose(ours[t_max:], eta_min, rtol=1e-12)
    assert np.all(np.asarray(torch_lrs[t_max + 1:]) > eta_min * 1.01)
    np.testing.assert_allclose(torch_lrs[2 * t_max], TORCH_LR, rtol=1e-9)


# --------------------------------------------------------------------------------------------
# 3. Invalid arguments


def const(c):
    return constant_schedule(1.0)(c)


BAD_ARGUMENTS = [
    (lambda: constant_schedule(float("nan")), ValueError, "value"),
    (lambda: linear_schedule(1.0, 0.0, 0), ValueError, "transition_steps"),
    (lambda: linear_schedule(1.0, 0.0, -5), ValueError, "transition_steps"),
    (lambda: linear_schedule(1.0, 0.0, 10.5), ValueError, "transition_steps"),
    (lambda: linear_schedule(1.0, 0.0, True), TypeError, "transition_steps"),
    (lambda: linear_schedule(1.0, 0.0, 2**31), ValueError, "transition_steps"),
    (lambda: linear_schedule(1.0, 0.0, 10, transition_begin=-1), ValueError, "transition_begin"),
    (lambda: linear_schedule(float("nan"), 0.0, 10), ValueError, "init_value"),
    (lambda: polynomial_schedule(1.0, 0.0, 0.0, 10), ValueError, "power"),
    (lambda: polynomial_schedule(1.0, 0.0, 1.0, 0), ValueError, "transition_steps"),
    (lambda: exponential_decay(1.0, 0, 0.5), ValueError, "transition_steps"),
    (lambda: exponential_decay(1.0, 10, -0.1), ValueError, "decay_rate"),
    (lambda: exponential_decay(1.0, 10, 0.5, transition_begin=-2), ValueError,
     "transition_begin"),
    (lambda: exponential_decay(1.0, 10, 0.5, staircase=1), TypeError, "staircase"),
    (lambda: exponential_decay(1.0, 10, 0.5, end_value=2.0), ValueError, "end_value"),
    (lambda: exponential_decay(1.0, 10, 1.5, end_value=0.5), ValueError, "end_value"),
    (lambda: cosine_decay_schedule(1.0, 0), ValueError, "decay_steps"),
    (lambda: cosine_decay_schedule(1.0, 10, alpha=-0.1), ValueError, "alpha"),
    (lambda: warmup_cosine_decay_schedule(0.0, 1.0, 10, 10), ValueError, "decay_steps"),
    (lambda: warmup_cosine_decay_schedule(0.0, 1.0, -1, 10), ValueError, "warmup_steps"),
    (lambda: warmup_cosine_decay_schedule(0.0, float("nan"), 1, 10), ValueError, "peak_value"),
    (lambda: piecewise_constant_schedule(1.0, {5: 0.1, -1: 0.5}), ValueError,
     "boundaries_and_scales"),
    (lambda: piecewise_constant_schedule(1.0, {5: -0.1}), ValueError, "boundaries_and_scales"),
    (lambda: piecewise_constant_schedule(1.0, {2.5: 0.1}), ValueError, "boundaries_and_scales"),
    (lambda: piecewise_constant_schedule(1.0, {"5": 0.1}), TypeError, "boundaries_and_scales"),
    (lambda: piecewise_constant_schedule(1.0, [(5, 0.1)]), TypeError, "boundaries_and_scales"),
    (lambda: join_schedules([], []), ValueError, "schedules"),
    (lambda: join_schedules([const, 0.5], [3]), TypeError, "schedules"),
    (lambda: join_schedules([const, const], [3, 5]), ValueError, "boundaries"),
    (lambda: join_schedules([const, const, const], [10, 5]), ValueError, "boundaries"),
    (lambda: join_schedules([const, const, const], [5, 5]), ValueError, "boundaries"),
    (lambda: join_schedules([const, const], [-1]), ValueError, "boundaries"),
    (lambda: step_schedule(1.0, 0), ValueError, "step_size"),
    (lambda: step_schedule(1.0, 5, gamma=-1.0), ValueError, "gamma"),
    (lambda: multistep_schedule(1.0, [10, 5]), ValueError, "milestones"),
    (lambda: multistep_schedule(1.0, [-1, 5]), ValueError, "milestones"),
    (lambda: multistep_schedule(1.0, 5), TypeError, "milestones"),
    (lambda: join_schedules([const, const], 3), TypeError, "boundaries"),
    (lambda: multistep_schedule(1.0, [5], gamma=-0.5), ValueError, "gamma"),
    (lambda: one_cycle_schedule(1.0, 100, pct_start=0.0), ValueError, "pct_start"),
    (lambda: one_cycle_schedule(1.0, 100, pct_start=1.0), ValueError, "pct_start"),
    (lambda: one_cycle_schedule(1.0, 100, pct_start=1.5), ValueError, "pct_start"),
    (lambda: one_cycle_schedule(1.0, 100, pct_start=-0.1), ValueError, "pct_start"),
    (lambda: one_cycle_schedule(1.0, 100, anneal_strategy="cosine"), ValueError,
     "anneal_strategy"),
    (lambda: one_cycle_schedule(1.0, 0), ValueError, "total_steps"),
    (lambda: one_cycle_schedule(1.0, 100, div_factor=0.0), ValueError, "div_factor"),
    (lambda: one_cycle_schedule(1.0, 100, final_div_factor=-1.0), ValueError,
     "final_div_factor"),
    (lambda: one_cycle_schedule(1.0, 100, three_phase=1), TypeError, "three_phase"),
    (lambda: one_cycle_schedule(-1.0, 100), ValueError, "max_value"),
    (lambda: cosine_warm_restarts_schedule(1.0, 0), ValueError, "first_period"),
    (lambda: cosine_warm_restarts_schedule(1.0, 5, 0), ValueError, "period_multiplier"),
    (lambda: cosine_warm_restarts_schedule(1.0, 5, 1.5), ValueError, "period_multiplier"),
    (lambda: cosine_warm_restarts_schedule(1.0, 5, min_value=float("nan")), ValueError,
     "min_value"),
    (lambda: one_cycle_schedule(1.0, 100, anneal_strategy=None), TypeError, "anneal_strategy"),
    (lambda: one_cycle_momentum_schedule(0), ValueError, "total_steps"),
    (lambda: one_cycle_momentum_schedule(100, base_momentum=float("nan")), ValueError,
     "base_momentum"),
    (lambda: one_cycle_momentum_schedule(100, max_momentum="0.95"), TypeError, "max_momentum"),
    (lambda: one_cycle_momentum_schedule(100, pct_start=1.0), ValueError, "pct_start"),
    (lambda: one_cycle_momentum_schedule(100, anneal_strategy="cosine"), ValueError,
     "anneal_strategy"),
    (lambda: one_cycle_momentum_schedule(100, anneal_strategy=1), TypeError, "anneal_strategy"),
    (lambda: one_cycle_momentum_schedule(100, three_phase=1), TypeError, "three_phase"),
    (lambda: cyclic_schedule(float("nan"), 1.0), ValueError, "init_value"),
    (lambda: cyclic_schedule(0.1, None), TypeError, "peak_value"),
    (lambda: cyclic_schedule(0.1, 1.0, 0), ValueError, "step_size_up"),
    (lambda: cyclic_schedule(0.1, 1.0, 5, -1), ValueError, "step_size_down"),
    (lambda: cyclic_schedule(0.1, 1.0, 5, 2.5), ValueError, "step_size_down"),
    (lambda: cyclic_schedule(0.1, 1.0, 5, mode="triangle"), ValueError, "mode"),
    (lambda: cyclic_schedule(0.1, 1.0, 5, mode=None), TypeError, "mode"),
    (lambda: cyclic_schedule(0.1, 1.0, 5, gamma=-0.5), ValueError, "gamma"),
    (lambda: cyclic_schedule(0.1, 1.0, 5, gamma="0.9"), TypeError, "gamma"),
    (lambda: cyclic_schedule(0.1, 1.0, 5, scale_fn=0.5), TypeError, "scale_fn"),
    (lambda: cyclic_schedule(0.1, 1.0, 5, scale_mode="iteration"), ValueError, "scale_mode"),
    (lambda: cyclic_schedule(0.1, 1.0, 5, scale_mode=True), TypeError, "scale_mode"),
    (lambda: multiply_schedules([]), ValueError, "schedules"),
    (lambda: multiply_schedules([const, 0.5]), TypeError, "schedules"),
    (lambda: multiply_schedules(const), TypeError, "schedules"),
    (lambda: multiply_schedules(2.0), TypeError, "schedules"),
]


@pytest.mark.parametrize(("build", "error", "name"), BAD_ARGUMENTS)
def test_invalid_arguments_name_the_argument(build, error, name):
    with pytest.raises(error, match=re.escape(f"`{name}")):
        build()


def test_traced_step_argument_is_a_type_error_naming_it():
    with pytest.raises(TypeError, match="`decay_steps`"):
        jax.jit(lambda n: cosine_decay_schedule(1.0, n)(0))(10)


def test_traced_values_are_accepted_unchecked():
    """Inside jit the value arguments cannot be checked; the schedule is still built."""
    got = jax.jit(lambda v, r: exponential_decay(v, 2, r, end_value=0.1)(4))(1.0, 0.5)
    np.testing.assert_allclose(got, 0.25, rtol=RTOL)


def test_integer_like_step_arguments():
    schedule = linear_schedule(1.0, 0.0, np.int64(4), transition_begin=jnp.asarray(1))
    np.testing.assert_allclose(schedule(3), 0.5, rtol=RTOL)
    # 0-d float arrays with a whole value are read as ints too.
    schedule = linear_schedule(1.0, 0.0, np.asarray(4.0), transition_begin=jnp.asarray(1.0))
    np.testing.assert_allclose(schedule(3), 0.5, rtol=RTOL)


# Every step argument of every schedule, as a builder of the schedule from that argument alone.
STEP_ARGUMENTS = [
    ("transition_steps", lambda x: linear_schedule(1.0, 0.0, x)),
    ("transition_begin", lambda x: linear_schedule(1.0, 0.0, 10, transition_begin=x)),
    ("transition_steps", lambda x: polynomial_schedule(1.0, 0.0, 1.0, x)),
    ("transition_begin", lambda x: polynomial_schedule(1.0, 0.0, 1.0, 10, x)),
    ("transition_steps", lambda x: exponential_decay(1.0, x, 0.5)),
    ("transition_begin", lambda x: exponential_decay(1.0, 10, 0.5, transition_begin=x)),
    ("decay_steps", lambda x: cosine_decay_schedule(1.0, x)),
    ("warmup_steps", lambda x: warmup_cosine_decay_schedule(0.0, 1.0, x, 100)),
    ("decay_steps", lambda x: warmup_cosine_decay_schedule(0.0, 1.0, 5, x)),
    ("boundaries_and_scales", lambda x: piecewise_constant_schedule(1.0, {x: 0.5})),
    ("boundaries", lambda x: join_schedules([const, const], [x])),
    ("step_size", lambda x: step_schedule(1.0, x)),
    ("milestones", lambda x: multistep_schedule(1.0, [x])),
    ("total_steps", lambda x: one_cycle_schedule(1.0, x)),
    ("first_period", lambda x: cosine_warm_restarts_schedule(1.0, x)),
    ("period_multiplier", lambda x: cosine_warm_restarts_schedule(1.0, 5, x)),
    ("total_steps", lambda x: one_cycle_momentum_schedule(x)),
    ("step_size_up", lambda x: cyclic_schedule(0.1, 1.0, x)),
    ("step_size_down", lambda x: cyclic_schedule(0.1, 1.0, 5, x)),
]


def _steps_schedules(n):
    """One schedule of each kind, every step argument passed through ``n``."""
    return {
        "linear": linear_schedule(1.0, 0.1, n(10), transition_begin=n(3)),
        "polynomial": polynomial_schedule(1.0, 0.1, 2.0, n(10), n(3)),
        "exponential": exponential_decay(1.0, n(7), 0.5, transition_begin=n(2)),
        "exponential_staircase": exponential_decay(1.0, n(7), 0.5, n(2), staircase=True),
        "cosine_decay": cosine_decay_schedule(1.0, n(10), 0.1),
        "warmup_cosine": warmup_cosine_decay_schedule(0.0, 1.0, n(3), n(12)),
        "piecewise": piecewise_constant_schedule(1.0, {n(3): 0.5, n(8): 0.1}),
        "join": join_schedules([const, linear_schedule(1.0, 0.0, n(5))], [n(4)]),
        "step": step_schedule(1.0, n(3), 0.5),
        "multistep": multistep_schedule(1.0, [n(2), n(5), n(5)], 0.5),
        "one_cycle": one_cycle_schedule(1.0, n(20), three_phase=True),
        "warm_restarts": cosine_warm_restarts_schedule(1.0, n(3), n(2)),
        "one_cycle_momentum": one_cycle_momentum_schedule(n(20), three_phase=True),
        "cyclic": cyclic_schedule(0.1, 1.0, n(3), n(5), "triangular2"),
    }


@pytest.mark.parametrize(
    "as_float", [float, np.float64, np.float32], ids=["float", "np.float64", "np.float32"]
)
def test_integral_float_step_arguments_equal_ints(as_float):
    """``transition_steps=10.0`` (as configs write it) builds the same schedule as ``10``."""
    counts = jnp.arange(60)
    with_ints = _steps_schedules(int)
    with_floats = _steps_schedules(as_float)
    for kind, schedule in with_ints.items():
        np.testing.assert_array_equal(
            np.asarray(with_floats[kind](counts)), np.asarray(schedule(counts)), err_msg=kind
        )


@pytest.mark.parametrize(("name", "build"), STEP_ARGUMENTS)
def test_fractional_step_arguments_are_value_errors_naming_them(name, build):
    for bad in (10.5, np.float64(2.25), math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match=re.escape(f"`{name}")):
            build(bad)


@pytest.mark.parametrize(("name", "build"), STEP_ARGUMENTS)
def test_step_arguments_of_a_wrong_type_are_type_errors_naming_them(name, build):
    wrong = ["5", True, np.True_, (5,), 5 + 0j]
    if name != "step_size_down":  # None is its default (step_size_up)
        wrong.append(None)
    if name != "boundaries_and_scales":  # a dict key cannot be a list (it is not hashable)
        wrong += [[5], np.asarray([5])]
    for bad in wrong:
        with pytest.raises(TypeError, match=re.escape(f"`{name}")):
            build(bad)


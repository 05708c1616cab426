"""The Optax-compatible transforms and wrappers (zero_nans, keep_params_nonnegative, adaptive
gradient clipping, scale_by_param_block_norm, conditionally_transform/mask, periodic_update,
snapshot, monitor, measure_with_ema) against Optax 0.2.8 (a test-only reference), in float64
over 30 steps of the parity gradients (zero steps, 1e-9 and 1e4 entries), step for step, eager
and under jit (lax.scan), outputs and states, to rtol 1e-9."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx as gx
from gradtx.transforms.block_norm import scale_by_param_block_norm
from gradtx.transforms.numerics import ZeroNansState, keep_params_nonnegative, zero_nans
from gradtx.transforms.periodic import periodic_update
from gradtx.transforms.unitwise_clipping import adaptive_grad_clip, unitwise_clip, unitwise_norm
from gradtx.wrappers.conditional import (
    ConditionallyMaskState,
    ConditionallyTransformState,
    conditionally_mask,
    conditionally_transform,
)
from gradtx.wrappers.monitoring import (
    MonitorState,
    SnapshotState,
    measure_with_ema,
    monitor,
    snapshot,
)
from tests import helpers

STEPS = 30
PARAMS = helpers.make_params()
GRADS = helpers.make_gradients(PARAMS, steps=STEPS)

# Leaves of every rank the default units of unitwise_norm know, and a squeezable one.
UNIT_PARAMS = {
    "s": np.asarray(0.7),
    "v": np.linspace(-1.0, 2.0, 5),
    "col": np.linspace(0.5, 1.5, 5).reshape(1, 5, 1),
    "m": np.arange(12.0).reshape(4, 3) / 7 - 0.5,
    "h": np.cos(np.arange(24.0)).reshape(2, 3, 4),
    "k": np.sin(np.arange(48.0)).reshape(2, 2, 3, 4),
    "k3": np.cos(np.arange(48.0) * 0.3).reshape(2, 2, 2, 3, 2),
    "z": np.zeros((3, 2)),
}
AXIS_PARAMS = {k: UNIT_PARAMS[k] for k in ("m", "h", "k", "z")}


def unit_grads(params, seed=3):
    """Gradients for ``params``: steps of zeros, of tiny and of huge entries."""
    rng = np.random.default_rng(seed)
    scales = [0.0, 1e-9, 1.0, 1e4, 0.3, 30.0]
    return [
        {k: rng.normal(size=np.shape(p)) * scales[t % len(scales)] for k, p in params.items()}
        for t in range(STEPS)
    ]


def run(tx, params, grads, record, *, jit, move=True, extras=None):
    """Per-step (outputs, record(state)) stacked, leading axis = step; params follow the
    updates when ``move``. ``extras``: per-step dicts of extra keyword arguments. ``jit``:
    True, one lax.scan; "step", each step jitted on its own (the Optax reference: the
    structure of some of its states changes at the first step); False, eager."""
    extras = extras if extras is not None else [{}] * len(grads)
    params = jax.tree_util.tree_map(jnp.asarray, params)

    def step(carry, xs):
        p, state = carry
        g, extra = xs
        out, state = tx.update(g, state, p, **extra)
        if move:
            p = jax.tree_util.tree_map(lambda a, b: a + b, p, out)
        return (p, state), (out, record(state))

    if jit is True:
        xs = (helpers.stack(grads), helpers.stack(extras))
        _, result = jax.jit(lambda p: jax.lax.scan(step, (p, tx.init(p)), xs))(params)
        return result
    one_step = jax.jit(step) if jit == "step" else step
    carry, outs = (params, tx.init(params)), []
    for g, extra in zip(grads, extras, strict=True):
        g = jax.tree_util.tree_map(jnp.asarray, g)
        extra = {k: jnp.asarray(v) for k, v in extra.items()}
        carry, out = one_step(carry, (g, extra))
        outs.append(out)
    return helpers.np_stack(jax.tree_util.tree_map(np.asarray, outs))


def assert_tree_close(got, want, message):
    got_leaves, got_def = jax.tree_util.tree_flatten(got)
    want_leaves, want_def = jax.tree_util.tree_flatten(want)
    assert got_def == want_def, f"{message}: {got_def} != {want_def}"
    for a, b in zip(got_leaves, want_leaves, strict=True):
        # A float32 entry (measure_with_ema's float32 average) is compared to a few float32
        # ulps: XLA rounds a jitted float32 division differently from an eager one by an ulp,
        # as Optax jitted differs from Optax eager. Everything else is float64, to rtol 1e-9.
        narrow = np.asarray(a).dtype == np.float32 or np.asarray(b).dtype == np.float32
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        assert a.shape == b.shape, message
        helpers.assert_close_per_step(a, b, message, rtol=4e-7 if narrow else 1e-9)


def check(gx_tx, optax_tx, params, grads, gx_record, optax_record, label, **kw):
    want = run(optax_tx, params, grads, optax_record, jit="step", **kw)
    for jit in (False, True):
        got = run(gx_tx, params, grads, gx_record, jit=jit, **kw)
        assert_tree_close(got, want, f"{label}, jit={jit}")


def no_state(state):
    return ()


# --------------------------------------------------------------------------------------------
# zero_nans, keep_params_nonnegative


def test_zero_nans():
    grads = [
        {k: np.where(np.arange(np.size(g)).reshape(np.shape(g)) % 3 == t % 3, np.nan, g)
         if t % 4 == 1 else g for k, g in step.items()}
        for t, step in enumerate(GRADS)
    ]
    grads[5]["w"][0, 0] = np.inf
    check(zero_nans(), optax.zero_nans(), PARAMS, grads, lambda s: s.found_nan,
          lambda s: s.found_nan, "zero_nans")
    state = zero_nans().init(PARAMS)
    assert isinstance(state, ZeroNansState)
    assert not any(bool(x) for x in jax.tree_util.tree_leaves(state.found_nan))


def test_keep_params_nonnegative():
    params = jax.tree_util.tree_map(np.abs, PARAMS)
    grads = [jax.tree_util.tree_map(lambda g: -g, step) for step in GRADS]
    check(keep_params_nonnegative(), optax.keep_params_nonnegative(), params, grads,
          no_state, no_state, "keep_params_nonnegative")
    with pytest.raises(ValueError, match="params"):
        keep_params_nonnegative().update(GRADS[1], gx.EmptyState())


# --------------------------------------------------------------------------------------------
# Adaptive gradient clipping, unit norms, scale_by_param_block_norm


@pytest.mark.parametrize("axis", [None, 0, (0, 1), -1])
def test_unitwise_norm(axis):
    params = UNIT_PARAMS if axis is None else AXIS_PARAMS
    for name, x in params.items():
        got = unitwise_norm(jnp.asarray(x), axis=axis)
        want = optax.transforms.unitwise_norm(jnp.asarray(x), axis=axis)
        helpers.assert_close_per_step(got[None], want[None], f"{name}, axis={axis}")
    with pytest.raises(ValueError, match="axis"):
        unitwise_norm(jnp.ones((2,) * 6))
    with pytest.raises(TypeError, match="`axis`"):
        unitwise_norm(jnp.ones(3), axis="0")


def test_unitwise_clip():
    rng = np.random.default_rng(0)
    grad = jnp.asarray(rng.normal(size=(4, 3)))
    g_norm = unitwise_norm(grad)
    for max_norm in (g_norm * 0.5, g_norm, g_norm * 2, jnp.zeros_like(g_norm)):
        for div_eps in (1e-6, 0.1):
            got = unitwise_clip(g_norm, max_norm, grad, div_eps)
            want = optax.transforms.unitwise_clip(g_norm, max_norm, grad, div_eps)
            helpers.assert_close_per_step(got[None], want[None], f"div_eps={div_eps}")
    with pytest.raises(ValueError, match="shape"):
        unitwise_clip(g_norm, g_norm[:1], grad)
    with pytest.raises(ValueError, match="`div_eps`"):
        unitwise_clip(g_norm, g_norm, grad, -1.0)


# Every value of every argument at least once.
AGC_GRID = [
    dict(clipping=0.01, eps=1e-3, axis=None),
    dict(clipping=0.5, eps=1.0, axis=0),
    dict(clipping=10.0, eps=1e-3, axis=(0, 1)),
    dict(clipping=0.0, eps=0.0, axis=None),
]


@pytest.mark.parametrize("kwargs", AGC_GRID, ids=helpers.label)
def test_adaptive_grad_clip(kwargs):
    params = UNIT_PARAMS if kwargs["axis"] is None else AXIS_PARAMS
    check(adaptive_grad_clip(**kwargs), optax.adaptive_grad_clip(**kwargs), params,
          unit_grads(params), no_state, no_state, "adaptive_grad_clip")


def test_adaptive_grad_clip_traced_hyperparameters():
    """clipping and eps may be traced: one vmapped run over a batch of values."""
    params = jax.tree_util.tree_map(jnp.asarray, UNIT_PARAMS)
    grads = jax.tree_util.tree_map(jnp.asarray, unit_grads(UNIT_PARAMS)[3])
    values = jnp.asarray([[0.01, 1e-3], [0.5, 1.0], [10.0, 1e-3]])

    def one(v):
        tx = adaptive_grad_clip(v[0], v[1])
        return tx.update(grads, tx.init(params), params)[0]

    got = jax.vmap(one)(values)
    for i, (c, e) in enumerate(values.tolist()):
        tx = optax.adaptive_grad_clip(c, e)
        want = tx.update(grads, tx.init(params), params)[0]
        assert_tree_close(jax.tree_util.tree_map(lambda x, i=i: x[i][None], got),
                          jax.tree_util.tree_map(lambda x: x[None], want), f"point {i}")


@pytest.mark.parametrize("min_scale", [1e-3, 10.0])
def test_scale_by_param_block_norm(min_scale):
    params = dict(UNIT_PARAMS)
    check(scale_by_param_block_norm(min_scale), optax.scale_by_param_block_norm(min_scale),
          params, unit_grads(params), no_state, no_state, f"min_scale={min_scale}", move=False)


# --------------------------------------------------------------------------------------------
# conditionally_transform, conditionally_mask


def _conditional_record(state):
    return state.step, state.inner_state[0].mu, state.inner_state[0].nu, \
        state.inner_state[0].count


def _gx_conditional_record(state):
    # scale_by_adam's two bias corrections keep one count each (equal to each other).
    counts = [x for path, x in jax.tree_util.tree_flatten_with_path(state.inner_state)[0]
              if getattr(path[-1], "name", None) == "count"]
    return state.step, gx.tree_get(state.inner_state, "mu"), \
        gx.tree_get(state.inner_state, "nu"), counts[0]


def _every_third_skipped(step):
    return step % 3 != 1


def _positive_value(step, value):
    return (value > 0) & (step >= 0)


@pytest.mark.parametrize(
    "kind, forward_extra_args", [("transform", False), ("mask", True), ("mask", False)]
)
def test_conditionally(kind, forward_extra_args):
    gx_wrap = conditionally_transform if kind == "transform" else conditionally_mask
    optax_wrap = optax.conditionally_transform if kind == "transform" else \
        optax.conditionally_mask
    condition = _positive_value if forward_extra_args else _every_third_skipped
    extras = [{"value": np.float64(np.sin(t))} for t in range(STEPS)]
    gx_tx = gx_wrap(gx.chain(gx.scale_by_adam(), gx.scale(-0.1)), condition, forward_extra_args)
    optax_tx = optax_wrap(optax.chain(optax.scale_by_adam(), optax.scale(-0.1)), condition,
                          forward_extra_args)
    check(gx_tx, optax_tx, PARAMS, GRADS, _gx_conditional_record, _conditional_record,
          f"{kind}, forward_extra_args={forward_extra_args}", extras=extras)
    state = gx_tx.init(PARAMS)
    cls = ConditionallyTransformState if kind == "transform" else ConditionallyMaskState
    assert isinstance(state, cls)
    assert state._fields == type(optax_tx.init(PARAMS))._fields


# --------------------------------------------------------------------------------------------
# periodic_update


def test_periodic_update():
    new = jax.tree_util.tree_map(jnp.asarray, PARAMS)
    old = jax.tree_util.tree_map(jnp.zeros_like, new)
    jitted = jax.jit(periodic_update)
    for update_period in (1, 3):
        for steps in range(8):
            want = optax.periodic_update(new, old, steps, update_period)
            for fn in (periodic_update, jitted):
                got = fn(new, old, jnp.asarray(steps), jnp.asarray(update_period))
                assert_tree_close(jax.tree_util.tree_map(lambda x: x[None], got),
                                  jax.tree_util.tree_map(lambda x: x[None], want),
                                  f"steps={steps}, period={update_period}")
    assert periodic_update(new, old, 6, 3) is new
    assert periodic_update(new, old, 7, 3) is old


# --------------------------------------------------------------------------------------------
# snapshot, measure_with_ema, monitor


def _sq_norm(u):
    return sum(jnp.sum(x * x) for x in jax.tree_util.tree_leaves(u))


def test_snapshot():
    def measure(u):
        return {"norm": jnp.sqrt(_sq_norm(u)), "w0": u["w"][0]}

    gx_tx = gx.chain(gx.scale(2.0), snapshot("m", measure), gx.clip(1.0))
    optax_tx = optax.chain(optax.scale(2.0), optax.snapshot("m", measure), optax.clip(1.0))
    check(gx_tx, optax_tx, PARAMS, GRADS, lambda s: s[1].measurement,
          lambda s: s[1].measurement, "snapshot")
    state = snapshot("m", measure).init(PARAMS)
    assert isinstance(state, SnapshotState)
    assert_tree_close(jax.tree_util.tree_map(lambda x: x[None], state.measurement),
                      jax.tree_util.tree_map(lambda x: x[None],
                                             optax.snapshot("m", measure).init(PARAMS)
                                             .measurement), "init")


EMA_GRID = [
    dict(decay=0.9, debias=True, accumulator_dtype=None),
    dict(decay=0.0, debias=False, accumulator_dtype=jnp.float64),
    dict(decay=0.5, debias=False, accumulator_dtype=None),
    dict(decay=0.99, debias=True, accumulator_dtype=jnp.float32),
]


@pytest.mark.parametrize("kwargs", EMA_GRID, ids=helpers.label)
def test_monitor_with_ema(kwargs):
    def measures(lib):
        return {
            "norm": lambda u: jnp.sqrt(_sq_norm(u)),
            "ema": lib(lambda u: {"sq": _sq_norm(u), "b": u["b"]}, **kwargs),
            "clipped": lib(lambda u: _sq_norm(u) > 1.0, **kwargs),
        }

    gx_tx = gx.chain(gx.scale(0.5), monitor(measures(measure_with_ema)))
    optax_tx = optax.chain(optax.scale(0.5), optax.monitor(measures(optax.measure_with_ema)))

    def gx_record(state):
        s = state[1]
        emas = [(m.count, m.ema) for m in s.measure_states[1:]]
        return s.measurements, emas

    def optax_record(state):
        s = state[1]
        emas = [(m[1].count, m[1].ema) for m in s.measure_states[1:]]
        return s.measurements, emas

    check(gx_tx, optax_tx, PARAMS, GRADS, gx_record, optax_record, "monitor")
    state = gx_tx.init(PARAMS)[1]
    assert isinstance(state, MonitorState)
    assert float(state.measurements["norm"]) == 0.0


# --------------------------------------------------------------------------------------------
# Bad arguments are refused by name.


@pytest.mark.parametrize(
    "build, argument, error",
    [
        (lambda: adaptive_grad_clip(-1.0), "clipping", ValueError),
        (lambda: adaptive_grad_clip("1"), "clipping", TypeError),
        (lambda: adaptive_grad_clip(1.0, eps=-1e-3), "eps", ValueError),
        (lambda: adaptive_grad_clip(1.0, eps=float("nan")), "eps", ValueError),
        (lambda: adaptive_grad_clip(1.0, axis=1.5), "axis", TypeError),
        (lambda: adaptive_grad_clip(1.0, axis=(0, True)), "axis", TypeError),
        (lambda: scale_by_param_block_norm(-1.0), "min_scale", ValueError),
        (lambda: scale_by_param_block_norm(None), "min_scale", TypeError),
        (lambda: conditionally_mask(None, _every_third_skipped), "inner", TypeError),
        (lambda: conditionally_transform(gx.scale(1.0), 3), "should_transform_fn", TypeError),
        (lambda: conditionally_mask(gx.scale(1.0), _every_third_skipped, 1),
         "forward_extra_args", TypeError),
        (lambda: periodic_update(1.0, 0.0, 3, 0), "update_period", ValueError),
        (lambda: periodic_update(1.0, 0.0, 3, 1.5), "update_period", ValueError),
        (lambda: periodic_update(1.0, 0.0, 3, True), "update_period", TypeError),
        (lambda: periodic_update(1.0, 0.0, "3", 2), "steps", TypeError),
        (lambda: snapshot(3, jnp.max), "measure_name", TypeError),
        (lambda: snapshot("m", None), "measure", TypeError),
        (lambda: measure_with_ema(jnp.max, decay=1.0), "decay", ValueError),
        (lambda: measure_with_ema(jnp.max, decay=-0.1), "decay", ValueError),
        (lambda: measure_with_ema(jnp.max, 0.9, debias=1), "debias", TypeError),
        (lambda: measure_with_ema(jnp.max, 0.9, accumulator_dtype=jnp.int32),
         "accumulator_dtype", TypeError),
        (lambda: measure_with_ema("max", 0.9), "measure", TypeError),
        (lambda: monitor([jnp.max]), "measures", TypeError),
        (lambda: monitor({"m": 3}), "measures", TypeError),
    ],
)
def test_bad_arguments_are_refused_by_name(build, argument, error):
    with pytest.raises(error, match=f"`{argument}`"):
        build()


@pytest.mark.parametrize("wrap", [np.float64, jnp.asarray])
def test_bad_array_hyperparameters_are_refused_by_name(wrap):
    for build, argument in [
        (lambda v: adaptive_grad_clip(v), "clipping"),
        (lambda v: adaptive_grad_clip(1.0, eps=v), "eps"),
        (lambda v: scale_by_param_block_norm(v), "min_scale"),
        (lambda v: measure_with_ema(jnp.max, v), "decay"),
    ]:
        with pytest.raises(ValueError, match=f"`{argument}`"):
            build(wrap(-1.0))

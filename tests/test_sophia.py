"""Sophia (gx.sophia, scale_by_sophia, hutchinson_estimator_diag_hessian) against Optax 0.2.8's
optax.contrib (a test-only reference), in float64: parameters and states (mu, nu, the key) step
for step over every pair of argument values, eager and jitted, to rtol 1e-9; the loss-aware
calling convention (update(..., obj_fn=f)) and its errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx as gx
from tests import helpers

STEPS = 10
RNG = np.random.default_rng(5)
PARAMS = {"w": RNG.normal(size=(3, 2)), "b": RNG.normal(size=(2,)), "s": np.asarray(0.4)}
BATCHES = [RNG.uniform(-1.0, 1.0, size=(2, 9)) for _ in range(STEPS)]


def loss(p, x):
    """Convex, with a Hessian diag(1 + x0^2 + 0.3 v^2) + 0.04 c c^T (c = x1) over the flat
    parameters v: the coupling makes each Hutchinson draw differ from the diagonal (so the
    signs matter), and is too weak to make an estimate negative (so no step diverges)."""
    v = jnp.concatenate([jnp.ravel(p[k]) for k in sorted(p)])
    return (0.5 * jnp.sum((1.0 + x[0] ** 2) * v**2) + 0.025 * jnp.sum(v**4)
            + 0.02 * jnp.dot(x[1], v) ** 2)


AXES = {
    "b1": [0.965, 0.5],
    "b2": [0.99, 0.0],
    "eps": [1e-8, 1e-2],
    "gamma": [0.01, 1.0],
    "clip_threshold": [1.0, None, 0.05],
    "update_interval": [10, 1, 3],
    "weight_decay": [1e-4, 0.0, 0.1],
    "weight_decay_mask": [None, {"w": True, "b": False, "s": False}],
    "mu_dtype": [None, jnp.float32],
}
POINTS = helpers.all_pairs(AXES)


def trajectory(opt, params, *, jit, optax_style=False):
    """The params after every step and (mu, nu, key) of the state, for STEPS batches."""
    params = jax.tree_util.tree_map(jnp.asarray, params)
    state = opt.init(params)

    def step(params, state, x):
        grads = jax.grad(loss)(params, x)
        updates, state = opt.update(grads, state, params, obj_fn=lambda p: loss(p, x))
        return jax.tree_util.tree_map(lambda p, u: p + u, params, updates), state

    step = jax.jit(step) if jit else step
    out = []
    for x in BATCHES:
        params, state = step(params, state, x)
        inner = state[0] if optax_style else gx.tree_get(state, "hessian_fn_state")
        mu, nu = (inner.mu, inner.nu) if optax_style else (
            gx.tree_get(state, "mu"), gx.tree_get(state, "nu"))
        key = inner.hessian_fn_state.key if optax_style else inner.key
        out.append((params, mu, nu, key))
    return helpers.np_stack(jax.tree_util.tree_map(np.asarray, out))


# Every point jitted, one with a float32 mu eagerly too (an eager Sophia step is slow, and
# the eager and jitted programs are the same code).
CASES = [(p, True) for p in POINTS] + [(POINTS[1], False)]


@pytest.mark.parametrize(("point", "jit"), CASES,
                         ids=[f"{helpers.label(p)}-{'jit' if j else 'eager'}" for p, j in CASES])
def test_sophia_equals_optax(point, jit):
    seed = jax.random.PRNGKey(3)
    ours = gx.sophia(0.05, **point,
                     hessian_diagonal_fn=gx.hutchinson_estimator_diag_hessian(seed))
    theirs = optax.contrib.sophia(
        0.05, **point, hessian_diagonal_fn=optax.contrib.hutchinson_estimator_diag_hessian(seed))
    got = trajectory(ours, PARAMS, jit=jit)
    want = trajectory(theirs, PARAMS, jit=True, optax_style=True)
    # A float32 mu: Optax multiplies it by the Python-float b1 in float32, gradtx in the
    # gradient's float64 (as test_optimistic's optimistic_adam): equal to float32 rounding.
    narrow = point["mu_dtype"] is not None
    names = ("params", "mu", "nu", "key")
    for name, a, b in zip(names, got, want, strict=True):
        for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
            helpers.assert_close_per_step(
                np.asarray(x, np.float64), np.asarray(y, np.float64), f"{name} at {point}",
                rtol=1e-6 if narrow else 1e-9, atol_scale=1e-6 if narrow else 1e-12)


def test_the_default_estimator_is_optaxs_default():
    """No hessian_diagonal_fn: Hutchinson's with seed 0 on both sides."""
    got = trajectory(gx.sophia(0.05), PARAMS, jit=True)
    want = trajectory(optax.contrib.sophia(0.05), PARAMS, jit=True, optax_style=True)
    for a, b in zip(jax.tree_util.tree_leaves(got[0]), jax.tree_util.tree_leaves(want[0]),
                    strict=True):
        helpers.assert_close_per_step(a, b, "default estimator")


def test_hutchinson_estimates_the_diagonal_on_average():
    """E[z * Hz] = diag(H): the mean of many draws approaches the exact diagonal."""
    a = jnp.asarray(RNG.normal(size=(4, 4)))
    hessian = a @ a.T + jnp.eye(4)
    quad = lambda p: 0.5 * p["x"] @ hessian @ p["x"]
    est = gx.hutchinson_estimator_diag_hessian(1)
    params = {"x": jnp.ones(4)}

    def draw(state, _):
        out, state = est.update(params, state, params, obj_fn=quad)
        return state, out["x"]

    _, draws = jax.lax.scan(draw, est.init(params), None, length=4000)
    np.testing.assert_allclose(np.mean(draws, axis=0), np.diag(hessian), atol=0.25)
    assert not np.allclose(draws[0], np.diag(hessian))  # one draw is noisy


def test_the_hessian_is_refreshed_every_update_interval_steps():
    calls = []

    def counting_estimator():
        def update(updates, state, params=None, **extra):
            jax.debug.callback(lambda: calls.append(1))
            return jax.tree_util.tree_map(jnp.ones_like, updates), state
        return gx.GradientTransformation(lambda p: (), update)

    opt = gx.sophia(0.1, update_interval=3, hessian_diagonal_fn=counting_estimator())
    params = jax.tree_util.tree_map(jnp.asarray, PARAMS)
    state = opt.init(params)
    step = jax.jit(opt.update)
    for _ in range(7):
        _, state = step(params, state, params)
    jax.effects_barrier()
    assert len(calls) == 3  # steps 1, 4 and 7


def test_sophia_win_rate_is_printed(capfd):
    opt = gx.sophia(0.1, verbose=True, print_win_rate_every_n_steps=2)
    params = jax.tree_util.tree_map(jnp.asarray, PARAMS)
    state = opt.init(params)
    for x in BATCHES[:2]:
        grads = jax.grad(loss)(params, x)
        _, state = opt.update(grads, state, params, obj_fn=lambda p, x=x: loss(p, x))
    jax.effects_barrier()
    assert capfd.readouterr().out.count("Sophia optimizer win rate") == 1


def test_sophia_errors():
    params = jax.tree_util.tree_map(jnp.asarray, PARAMS)
    opt = gx.sophia()
    with pytest.raises(ValueError, match="obj_fn"):
        opt.update(params, opt.init(params), params)
    with pytest.raises(ValueError, match="params"):
        gx.scale_by_sophia().update(params, gx.scale_by_sophia().init(params))
    with pytest.raises(ValueError, match="print_win_rate_every_n_steps"):
        gx.sophia(verbose=True)
    with pytest.raises(TypeError, match="hessian_diagonal_fn"):
        gx.sophia(hessian_diagonal_fn=3)
    with pytest.raises(ValueError, match="update_interval"):
        gx.sophia(update_interval=0)
    with pytest.raises(ValueError, match="b2"):
        gx.sophia(b2=1.0)
    with pytest.raises(TypeError, match="sophia"):
        gx.sophia().init({"z": jnp.ones(2, jnp.complex64)})

"""optimistic_gradient_descent, optimistic_adam and optimistic_adam_v2 (and their transforms)
against Optax 0.2.8 step for step, in float64 over the 50-step gradient sequence of the parity
tests (zero steps, 1e-9 and 1e4 entries): every value of every argument, both ways of every
switch, jitted (vmapped over the traced hyperparameters) and eager, to rtol 1e-9. Also: bad
arguments are refused by name, and the optimistic steps settle a bilinear game."""

from __future__ import annotations

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx as gx
from gradtx.optimizers.optimistic import (
    optimistic_adam,
    optimistic_adam_v2,
    optimistic_gradient_descent,
)
from gradtx.transforms.adam_scalings import nesterov_first_moment, scale_by_adam
from gradtx.transforms.optimistic import (
    ScaleByOptimisticGradientState,
    scale_by_optimistic_gradient,
)
from tests import helpers

PARAMS = helpers.make_params()
GRADS = helpers.make_gradients(PARAMS)
GRADS_STACKED = helpers.stack(GRADS)


def _optax_optimistic_adam(*args, **kwargs):
    with warnings.catch_warnings():  # Optax deprecates it for optimistic_adam_v2
        warnings.simplefilter("ignore", DeprecationWarning)
        return optax.optimistic_adam(*args, **kwargs)


def _scan(opt, apply):
    def step(carry, g):
        params, state = carry
        updates, state = opt.update(g, state, params)
        params = apply(params, updates)
        return (params, state), params

    (_, state), traj = jax.lax.scan(step, (PARAMS, opt.init(PARAMS)), GRADS_STACKED)
    return traj, state


def _eager(opt, grads=GRADS):
    params, state = PARAMS, opt.init(PARAMS)
    traj = []
    for g in grads:
        updates, state = opt.update(g, state, params)
        params = gx.apply_updates(params, updates)
        traj.append(params)
    return helpers.np_stack(traj), state


def assert_trajectories_close(got, want, what):
    for key in want:
        helpers.assert_close_per_step(got[key], want[key], f"leaf {key!r}, {what}")


def _close(got, want, what):
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want),
                    strict=True):
        b = np.asarray(b)
        atol = 1e-12 * max(1.0, float(np.max(np.abs(b), initial=0.0)))
        np.testing.assert_allclose(np.asarray(a), b, rtol=1e-9, atol=atol, err_msg=what)


def _optax_parts(state):
    """Optax's ScaleByAdamState and ScaleByOptimisticGradientState inside a chain's state."""
    leaves = jax.tree_util.tree_leaves(state, is_leaf=lambda x: hasattr(x, "_fields"))
    adam = next((s for s in leaves if type(s).__name__ == "ScaleByAdamState"), None)
    optimistic = next(s for s in leaves
                      if type(s).__name__ == "ScaleByOptimisticGradientState")
    return adam, optimistic


def assert_state_close(got, want, what):
    """``previous_gradient`` (and Adam's ``mu``, ``nu``) equal Optax's; the count is Optax's
    Adam count, and Optax's ``is_initial_step`` is ``count == 0``."""
    adam, optimistic = _optax_parts(want)
    _close(gx.tree_get(got, "previous_gradient"), optimistic.previous_gradient,
           f"previous_gradient, {what}")
    assert bool(optimistic.is_initial_step) == (int(got.count) == 0)
    if adam is not None:
        _close(gx.tree_get(got, "mu"), adam.mu, f"mu, {what}")
        _close(gx.tree_get(got, "nu"), adam.nu, f"nu, {what}")
        assert int(got.count) == int(adam.count)


_ADAM_GRID = {"b1": [0.0, 0.9], "b2": [0.0, 0.999], "eps": [1e-8, 0.1], "eps_root": [0.0, 1e-8]}

# (gradtx factory, Optax factory, numeric grid, switch grid)
CASES = {
    "optimistic_gradient_descent": (
        optimistic_gradient_descent,
        optax.optimistic_gradient_descent,
        {"learning_rate": [1e-3, 0.1, 1.0], "alpha": [0.0, 0.5, 1.0], "beta": [0.0, 1.0, 2.0]},
        {},
    ),
    "optimistic_adam": (
        optimistic_adam,
        _optax_optimistic_adam,
        {"learning_rate": [1e-3, 0.1], "optimism": [0.0, 0.5], **_ADAM_GRID},
        {"nesterov": [False, True]},
    ),
    "optimistic_adam_v2": (
        optimistic_adam_v2,
        optax.optimistic_adam_v2,
        {"learning_rate": [1e-3, 0.1], "alpha": [0.01, 1.0], "beta": [0.0, 1.0], **_ADAM_GRID},
        {"nesterov": [False, True]},
    ),
}


def _static_cases():
    for name, (_, _, _, switches) in CASES.items():
        for static in helpers.product(switches):
            yield pytest.param(name, static, id=f"{name}[{helpers.label(static)}]")


@pytest.mark.parametrize(("name", "static"), list(_static_cases()))
def test_grid_matches_optax_jitted(name, static):
    """Every point of the numeric grid, traced (vmapped) and jitted, with each switch setting;
    the whole trajectory and the final state."""
    ours, theirs, numeric, _ = CASES[name]
    points = helpers.product(numeric)
    hyper = {k: jnp.asarray([p[k] for p in points], jnp.float64) for k in numeric}

    def run(hp):
        return _scan(ours(**hp, **static), gx.apply_updates), \
            _scan(theirs(**hp, **static), optax.apply_updates)

    (traj, state), (want, want_state) = jax.jit(jax.vmap(run))(hyper)
    for i, point in enumerate(points):
        def pick(tree, i=i):
            return jax.tree_util.tree_map(lambda x: x[i], tree)

        what = f"{name}({helpers.label({**point, **static})})"
        assert_trajectories_close(pick(traj), pick(want), what)
        assert_state_close(pick(state), pick(want_state), what)


@pytest.mark.parametrize(("name", "static"), list(_static_cases()))
def test_eager_matches_optax(name, static):
    """Eager steps with Python-float hyperparameters, at the defaults and at the last value
    of every axis (learning_rate given: Optax requires it)."""
    ours, theirs, numeric, _ = CASES[name]
    for point in ({"learning_rate": 0.1}, {k: v[-1] for k, v in numeric.items()}):
        kwargs = {**point, **static}
        traj, state = _eager(ours(**kwargs))
        want, want_state = jax.jit(lambda kwargs=kwargs: _scan(theirs(**kwargs),
                                                               optax.apply_updates))()
        assert_trajectories_close(traj, want, f"{name}({kwargs}) eager")
        assert_state_close(state, want_state, f"{name}({kwargs}) eager")


@pytest.mark.parametrize("nesterov", [False, True])
def test_optimistic_adam_default_optimism_and_mu_dtype(nesterov):
    """``optimism=None`` (the learning rate), as Optax; a float32 first moment to float32
    precision (rtol 1e-6): Optax multiplies the float32 moment by its Python-float ``b1`` in
    float32 and the float64 gradient by ``1 - b1`` in float64, gradtx rounds the decay to the
    moment's dtype (plain moments) or updates the moment in float64 (Nesterov's), so the two
    round differently within float32's precision."""
    for kwargs, rtol in (({"learning_rate": 0.05}, 1e-9),
                         ({"learning_rate": 0.05, "mu_dtype": jnp.float32}, 1e-6)):
        kwargs = {**kwargs, "nesterov": nesterov}
        traj, state = jax.jit(lambda kwargs=kwargs: _scan(optimistic_adam(**kwargs),
                                                          gx.apply_updates))()
        want, want_state = jax.jit(lambda kwargs=kwargs: _scan(_optax_optimistic_adam(**kwargs),
                                                               optax.apply_updates))()
        for key in want:
            helpers.assert_close_per_step(traj[key], want[key], f"{key}, {kwargs}", rtol=rtol,
                                          atol_scale=rtol / 10)
        assert gx.tree_get(state, "mu")["w"].dtype == want_state[0].mu["w"].dtype
        np.testing.assert_allclose(gx.tree_get(state, "mu")["w"], want_state[0].mu["w"],
                                   rtol=10 * rtol)


@pytest.mark.parametrize("name", ["optimistic_gradient_descent", "optimistic_adam_v2"])
def test_learning_rate_schedules_match_optax(name):
    ours, theirs, _, _ = CASES[name]
    schedule = optax.exponential_decay(0.3, transition_steps=5, decay_rate=0.5)
    traj, _ = _eager(ours(learning_rate=schedule))
    want, _ = jax.jit(lambda: _scan(theirs(learning_rate=schedule), optax.apply_updates))()
    assert_trajectories_close(traj, want, f"{name} with a schedule")


def test_optimistic_adam_is_v2_with_unit_learning_rate():
    """As documented: optimistic_adam(η, o) is optimistic_adam_v2(1, alpha=η, beta=o), and a
    schedule (which Optax refuses for optimistic_adam) drives both roles."""
    schedule = optax.linear_schedule(0.1, 0.01, 40)
    for v1, v2 in (
        (optimistic_adam(0.1, 0.3), optimistic_adam_v2(1.0, alpha=0.1, beta=0.3)),
        (optimistic_adam(schedule), optimistic_adam_v2(1.0, alpha=schedule, beta=schedule)),
    ):
        a, _ = jax.jit(lambda v1=v1: _scan(v1, gx.apply_updates))()
        b, _ = jax.jit(lambda v2=v2: _scan(v2, gx.apply_updates))()
        assert_trajectories_close(a, b, "v1 against v2")
    with pytest.raises(ValueError, match="does not support"):
        _optax_optimistic_adam(schedule)


# --------------------------------------------------------------------------------------------
# The transforms on their own


def test_scale_by_optimistic_gradient_matches_optax_on_its_own():
    for kwargs in ({}, {"alpha": 0.3, "beta": 2.0}, {"beta": 0.0}):
        ours, theirs = scale_by_optimistic_gradient(**kwargs), \
            optax.scale_by_optimistic_gradient(**kwargs)
        state, want_state = ours.init(PARAMS), theirs.init(PARAMS)
        assert isinstance(state, ScaleByOptimisticGradientState) and int(state.count) == 0
        for t, g in enumerate(GRADS[:12]):
            got, state = ours.update(g, state)
            want, want_state = theirs.update(g, want_state)
            _close(got, want, f"scale_by_optimistic_gradient({kwargs}) step {t + 1}")
            _close(state.previous_gradient, want_state.previous_gradient, "previous_gradient")
        assert int(state.count) == 12


@pytest.mark.parametrize("nesterov", [False, True])
def test_scale_by_adam_with_eps_root_and_nesterov_matches_optax(nesterov):
    kwargs = dict(b1=0.8, b2=0.99, eps=1e-6, eps_root=1e-10, nesterov=nesterov)
    ours, theirs = scale_by_adam(**kwargs), optax.scale_by_adam(**kwargs)

    def run(tx):
        def step(state, g):
            out, state = tx.update(g, state)
            return state, out

        return jax.lax.scan(step, tx.init(PARAMS), GRADS_STACKED)

    (state, got), (want_state, want) = jax.jit(lambda: (run(ours), run(theirs)))()
    for key in want:
        helpers.assert_close_per_step(got[key], want[key], f"{key}, nesterov={nesterov}")
    _close(gx.tree_get(state, "mu"), want_state.mu, "mu")
    _close(gx.tree_get(state, "nu"), want_state.nu, "nu")


def test_nesterov_first_moment_formula():
    b = 0.7
    tx = nesterov_first_moment(b)
    state = tx.init(jnp.zeros(2))
    m = np.zeros(2)
    for t, g in enumerate([np.array([1.0, -2.0]), np.array([0.5, 4.0]), np.zeros(2)], start=1):
        out, state = tx.update(jnp.asarray(g), state)
        m = b * m + (1 - b) * g
        want = b * m / (1 - b ** (t + 1)) + (1 - b) * g / (1 - b**t)
        np.testing.assert_allclose(out, want, rtol=1e-14, err_msg=f"step {t}")
    np.testing.assert_allclose(state.mu, m, rtol=1e-14)


def test_state_names_and_single_count():
    state = optimistic_adam_v2(0.1).init(PARAMS)
    for name in ("mu", "nu", "previous_gradient", "count"):
        gx.tree_get(state, name)
    counts = [s for s in jax.tree_util.tree_leaves(state.inner_state, is_leaf=lambda x: x is None)
              if s is None]
    assert counts  # the transforms' own counts are left to the optimizer's


# --------------------------------------------------------------------------------------------
# A game, and errors


def test_optimistic_steps_settle_a_bilinear_game():
    """min_x max_y xy: simultaneous gradient descent spirals out, the optimistic methods
    spiral in (Optax's docstring example for optimistic_adam_v2: distance 2.236 to 0.001)."""

    def distance(opt, steps=1025):
        def step(carry, _):
            params, state = carry
            x, y = params
            updates, state = opt.update((y, -x), state, params)
            return (gx.apply_updates(params, updates), state), None

        params = (jnp.asarray(1.0), jnp.asarray(2.0))
        (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), length=steps)
        return float(jnp.hypot(*params))

    start = math.hypot(1.0, 2.0)
    assert distance(gx.sgd(learning_rate=0.1)) > start
    assert distance(optimistic_gradient_descent(0.1)) < 1e-2 * start
    assert distance(optimistic_adam_v2(1.0, alpha=1e-2, beta=1.0)) < 1e-2
    assert distance(optimistic_adam(1e-2, 1.0)) < 1e-2


@pytest.mark.parametrize("factory", [optimistic_gradient_descent, optimistic_adam,
                                     optimistic_adam_v2])
def test_bad_arguments_are_refused_by_name(factory):
    declarations = factory._injection.declarations
    for argument, declaration in declarations.items():
        for bad in declaration.invalid_values():
            kwargs = {"learning_rate": 0.1, argument: bad}
            with pytest.raises(ValueError, match=f"`{argument}`"):
                factory(**kwargs)
            if declaration.live:
                built = {"optimism": 0.5} if argument == "optimism" else {}
                state = factory(learning_rate=0.1, **built).init(PARAMS)
                with pytest.raises(ValueError, match=f"`{argument}`"):
                    gx.set_hyperparam(state, argument, bad)
    for argument in ("learning_rate", "alpha", "beta", "optimism", "eps_root"):
        if argument in declarations:
            with pytest.raises(ValueError, match=f"`{argument}`"):
                factory(**{"learning_rate": 0.1, argument: -0.5})
            with pytest.raises(TypeError, match=f"`{argument}`"):
                factory(**{"learning_rate": 0.1, argument: "0.1"})
    if "nesterov" in declarations:
        with pytest.raises(TypeError, match="`nesterov`"):
            factory(learning_rate=0.1, nesterov=1)
        with pytest.raises(TypeError, match="`mu_dtype`"):
            factory(learning_rate=0.1, mu_dtype=jnp.int32)
    with pytest.raises(TypeError, match="learning_rate"):
        factory()  # required, as in Optax


def test_transforms_refuse_bad_arguments_by_name():
    for build, argument, bad in (
        (scale_by_optimistic_gradient, "alpha", -1.0),
        (scale_by_optimistic_gradient, "beta", math.nan),
        (nesterov_first_moment, "decay", 1.0),
        (scale_by_adam, "b1", 1.0),
        (scale_by_adam, "eps_root", -1e-8),
    ):
        with pytest.raises(ValueError, match=f"`{argument}`"):
            build(**{argument: bad})

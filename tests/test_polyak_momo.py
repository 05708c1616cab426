"""polyak_sgd, momo and momo_adam (and their transforms) against Optax 0.2.8 step for step, in
float64 over the 50-step gradient sequence of the parity tests (zero steps, 1e-9 and 1e4
entries) with a loss per step that is sometimes below the bound, near it or far above it: every
value of every argument, both ways of every switch, jitted (vmapped over the traced
hyperparameters) and eager, to rtol 1e-9. Also: the loss is required by name, bad arguments
are refused by name."""

from __future__ import annotations

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx as gx
from gradtx.optimizers.polyak import momo, momo_adam, polyak_sgd
from gradtx.transforms.polyak import (
    MomoAdamState,
    MomoState,
    scale_by_momo,
    scale_by_momo_adam,
    scale_by_polyak,
)
from tests import helpers

PARAMS = helpers.make_params()
GRADS = helpers.make_gradients(PARAMS)
GRADS_STACKED = helpers.stack(GRADS)


def _losses(steps: int = helpers.STEPS, seed: int = 5) -> np.ndarray:
    """One loss per step: negative, around 1, and up to 1e9 (the squared gradient norms of
    the sequence are mostly near 1e8, so Polyak steps range from far below to far above 1)."""
    rng = np.random.default_rng(seed)
    scale = 10.0 ** rng.integers(-2, 10, size=steps)
    return rng.uniform(-0.5, 3.0, size=steps) * scale


VALUES = _losses()


# --------------------------------------------------------------------------------------------
# Runners


def _scan(opt, apply, params, grads_stacked, values):
    def step(carry, inputs):
        params, state = carry
        g, v = inputs
        updates, state = opt.update(g, state, params, value=v)
        params = apply(params, updates)
        return (params, state), params

    (_, state), traj = jax.lax.scan(step, (params, opt.init(params)), (grads_stacked, values))
    return traj, state


def _eager(opt, apply, params, grads, values):
    state = opt.init(params)
    traj = []
    for g, v in zip(grads, values, strict=True):
        updates, state = opt.update(g, state, params, value=v)
        params = apply(params, updates)
        traj.append(params)
    return helpers.np_stack(traj), state


def gradtx_scan(opt):
    return _scan(opt, gx.apply_updates, PARAMS, GRADS_STACKED, jnp.asarray(VALUES))


def optax_scan(opt):
    return _scan(opt, optax.apply_updates, PARAMS, GRADS_STACKED, jnp.asarray(VALUES))


def assert_trajectories_close(got, want, what):
    for key in want:
        helpers.assert_close_per_step(got[key], want[key], f"leaf {key!r}, {what}")


def assert_state_close(got, want, names, what):
    """The gradtx state entries ``names`` (found by name) equal Optax's fields of the same
    name, and the step counts agree."""
    for name in names:
        g, w = gx.tree_get(got, name), getattr(want, name)
        for a, b in zip(jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(w), strict=True):
            b = np.asarray(b)
            atol = 1e-12 * max(1.0, float(np.max(np.abs(b), initial=0.0)))
            np.testing.assert_allclose(np.asarray(a), b, rtol=1e-9, atol=atol,
                                       err_msg=f"state {name!r}, {what}")
    # polyak_sgd's Optax state is a chain's tuple, with no count.
    if "count" in getattr(want, "_fields", ()):
        np.testing.assert_array_equal(np.asarray(got.count), np.asarray(want.count))


# (gradtx factory, Optax factory, numeric grid, switch grid, state fields compared)
CASES = {
    "polyak_sgd": (
        polyak_sgd,
        optax.polyak_sgd,
        {
            "max_learning_rate": [1e-3, 1.0, 1e3],
            "scaling": [1.0, 0.5],
            "f_min": [0.0, 1.0, -2.0],
            "eps": [0.0, 1e-3, 10.0],
        },
        {"variant": ["sps", "sps+"]},
        (),
    ),
    "momo": (
        momo,
        optax.contrib.momo,
        {
            "learning_rate": [1.0, 0.1, 1e-3],
            "beta": [0.0, 0.5, 0.9],
            "lower_bound": [0.0, -1.0, 2.0],
            "weight_decay": [0.0, 0.1],
        },
        {"adapt_lower_bound": [False, True]},
        ("exp_avg", "barf", "gamma", "lb"),
    ),
    "momo_adam": (
        momo_adam,
        optax.contrib.momo_adam,
        {
            "learning_rate": [1e-2, 1.0],
            "b1": [0.0, 0.9],
            "b2": [0.0, 0.999],
            "eps": [1e-8, 0.1],
            "lower_bound": [0.0, -1.0],
            "weight_decay": [0.0, 0.1],
        },
        {"adapt_lower_bound": [False, True]},
        ("exp_avg", "exp_avg_sq", "barf", "gamma", "lb"),
    ),
}


def _static_cases():
    for name, (_, _, _, switches, _) in CASES.items():
        for static in helpers.product(switches):
            yield pytest.param(name, static, id=f"{name}[{helpers.label(static)}]")


# --------------------------------------------------------------------------------------------
# Every grid point against Optax


@pytest.mark.parametrize(("name", "static"), list(_static_cases()))
def test_grid_matches_optax_jitted(name, static):
    """Every point of the numeric grid, traced (vmapped) and jitted, with each switch setting;
    the whole trajectory and the final state."""
    ours, theirs, numeric, _, fields = CASES[name]
    points = helpers.product(numeric)
    hyper = {k: jnp.asarray([p[k] for p in points], jnp.float64) for k in numeric}

    def run(hp):
        return gradtx_scan(ours(**hp, **static)), optax_scan(theirs(**hp, **static))

    (traj, state), (want, want_state) = jax.jit(jax.vmap(run))(hyper)
    for i, point in enumerate(points):
        what = f"{name}({helpers.label({**point, **static})})"
        def pick(tree, i=i):
            return jax.tree_util.tree_map(lambda x: x[i], tree)

        assert_trajectories_close(pick(traj), pick(want), what)
        assert_state_close(pick(state), pick(want_state), fields, what)


@pytest.mark.parametrize(("name", "static"), list(_static_cases()))
def test_eager_matches_optax(name, static):
    """Eager steps (a Python loop, Python-float hyperparameters) at the defaults and at the
    last value of every axis."""
    ours, theirs, numeric, _, fields = CASES[name]
    for point in ({}, {k: v[-1] for k, v in numeric.items()}):
        kwargs = {**point, **static}
        traj, state = _eager(ours(**kwargs), gx.apply_updates, PARAMS, GRADS, VALUES)
        want, want_state = jax.jit(lambda kwargs=kwargs: optax_scan(theirs(**kwargs)))()
        assert_trajectories_close(traj, want, f"{name}({kwargs}) eager")
        assert_state_close(state, want_state, fields, f"{name}({kwargs}) eager")


def test_the_grids_reach_every_branch():
    """The data is not trivial for the Polyak step: some steps are capped, some are not, some
    losses fall below the bound, and the zero-gradient steps take no step."""
    norms = np.asarray([sum(float(np.sum(g[k] ** 2)) for k in g) for g in GRADS])
    zero = norms == 0
    assert zero.sum() == len(helpers.ZERO_STEPS)
    ratio = VALUES[~zero] / norms[~zero]
    assert (ratio > 1.0).any() and ((ratio > 0) & (ratio < 1e-3)).any() and (ratio < 0).any()
    for lr in (1e-3, 1.0):  # capped and uncapped steps at each cap
        assert (ratio > lr).any() and ((ratio > 0) & (ratio < lr)).any()


@pytest.mark.parametrize("name", list(CASES))
def test_schedules_match_optax(name):
    """``scaling`` (polyak_sgd) and ``learning_rate`` (momo, momo_adam) as schedules, evaluated
    at the steps taken before each step, as Optax does."""
    ours, theirs, _, _, _ = CASES[name]
    argument = "scaling" if name == "polyak_sgd" else "learning_rate"
    schedule = optax.exponential_decay(0.9, transition_steps=5, decay_rate=0.5)
    kwargs = {argument: schedule}
    traj, _ = jax.jit(lambda: gradtx_scan(ours(**kwargs)))()
    want, _ = jax.jit(lambda: optax_scan(theirs(**kwargs)))()
    assert_trajectories_close(traj, want, f"{name} with a schedule")
    traj, _ = _eager(ours(**kwargs), gx.apply_updates, PARAMS, GRADS, VALUES)
    assert_trajectories_close(traj, want, f"{name} with a schedule, eager")


# --------------------------------------------------------------------------------------------
# The transforms on their own


def test_scale_by_polyak_matches_optax_on_its_own():
    for variant in ("sps", "sps+"):
        for kwargs in ({}, {"f_min": 1.0, "max_learning_rate": 1e-4, "eps": 1e-3}):
            ours = scale_by_polyak(**kwargs, variant=variant)
            theirs = optax.scale_by_polyak(**kwargs, variant=variant)
            state, want_state = ours.init(PARAMS), theirs.init(PARAMS)
            assert state == gx.EmptyState()
            for g, v in zip(GRADS, VALUES, strict=True):
                got, state = ours.update(g, state, value=v)
                want, want_state = theirs.update(g, want_state, value=v)
                assert_trajectories_close({k: got[k][None] for k in got},
                                          {k: np.asarray(want[k])[None] for k in want},
                                          f"scale_by_polyak({kwargs}, {variant})")


@pytest.mark.parametrize("adapt", [False, True])
def test_momo_transforms_keep_their_own_count_and_match_optax(adapt):
    """Built on their own (outside an optimizer) the transforms count their steps; their
    updates and states are Optax's, jitted and eager (op by op: the first 12 steps)."""
    for ours, theirs, fields in (
        (scale_by_momo(0.1, adapt_lower_bound=adapt, weight_decay=0.1),
         optax.contrib.momo(0.1, adapt_lower_bound=adapt, weight_decay=0.1),
         ("exp_avg", "barf", "gamma", "lb")),
        (scale_by_momo_adam(adapt_lower_bound=adapt, lower_bound=-1.0),
         optax.contrib.momo_adam(adapt_lower_bound=adapt, lower_bound=-1.0),
         ("exp_avg", "exp_avg_sq", "barf", "gamma", "lb")),
    ):
        traj, state = jax.jit(lambda ours=ours: gradtx_scan(ours))()
        want, want_state = jax.jit(lambda theirs=theirs: optax_scan(theirs))()
        assert type(state) in (MomoState, MomoAdamState)
        assert int(state.count) == helpers.STEPS
        assert_trajectories_close(traj, want, "transform on its own")
        assert_state_close(state, want_state, fields, "transform on its own")
        eager, _ = _eager(ours, gx.apply_updates, PARAMS, GRADS[:12], VALUES[:12])
        assert_trajectories_close(eager, {k: v[:12] for k, v in want.items()},
                                  "transform on its own, eager")


def test_state_names_and_single_count():
    opt = momo_adam()
    state = opt.init(PARAMS)
    for name in ("exp_avg", "exp_avg_sq", "barf", "gamma", "lb", "count"):
        gx.tree_get(state, name)
    inner = jax.tree_util.tree_leaves(state.inner_state, is_leaf=lambda x: x is None)
    assert None in inner  # the transform's own count is left to the optimizer's
    assert float(gx.tree_get(momo(lower_bound=-3.0).init(PARAMS), "lb")) == -3.0


def test_scalars_take_the_narrowest_parameter_dtype_and_keep_it():
    params = {"a": jnp.ones(3, jnp.float32), "b": jnp.ones(2, jnp.bfloat16)}
    grads = jax.tree_util.tree_map(lambda p: jnp.full_like(p, 0.5), params)
    for opt in (momo(), momo_adam(), polyak_sgd()):
        state = opt.init(params)
        updates, new_state = opt.update(grads, state, params, value=jnp.asarray(2.0))
        assert jax.tree_util.tree_map(lambda x: x.dtype, new_state) == \
            jax.tree_util.tree_map(lambda x: x.dtype, state)
        assert {k: u.dtype for k, u in updates.items()} == {k: p.dtype for k, p in params.items()}
    assert momo().init(params).inner_state[0].barf.dtype == jnp.bfloat16


def test_hypergradients_are_finite_through_zero_gradient_steps():
    """The no-step branch (zero squared norm) divides by 1, not 0, so derivatives through a
    trajectory with zero gradients stay finite."""
    grads = [{k: np.zeros_like(v) for k, v in PARAMS.items()}] + GRADS[:6]

    def final(hp, factory, argument):
        opt, params = factory(**{argument: hp}), PARAMS
        state = opt.init(params)
        for g, v in zip(grads, VALUES, strict=False):
            updates, state = opt.update(g, state, params, value=v)
            params = gx.apply_updates(params, updates)
        return jnp.sum(params["w"])

    for factory, argument in ((polyak_sgd, "f_min"), (momo, "lower_bound"),
                              (momo_adam, "lower_bound")):
        d = jax.jit(jax.grad(final), static_argnums=(1, 2))(0.5, factory, argument)
        assert np.isfinite(d), (factory.__name__, argument)


# --------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize("factory", [polyak_sgd, momo, momo_adam])
def test_the_loss_is_required_by_name(factory):
    opt = factory()
    state = opt.init(PARAMS)
    needed_by = {"polyak_sgd": "scale_by_polyak", "momo": "scale_by_momo",
                 "momo_adam": "scale_by_momo_adam"}[factory.__name__]
    with pytest.raises(ValueError, match=f"{needed_by} needs the extra argument `value`"):
        opt.update(GRADS[1], state, PARAMS)
    with pytest.raises(ValueError, match=f"{needed_by} needs the loss value"):
        opt.update(GRADS[1], state, PARAMS, value=None)
    with pytest.raises(ValueError, match="`value`"):
        jax.jit(lambda g, s, p: opt.update(g, s, p))(GRADS[1], state, PARAMS)


@pytest.mark.parametrize("factory", [momo, momo_adam])
def test_momo_needs_the_parameters(factory):
    opt = factory()
    with pytest.raises(ValueError, match="scale_by_momo.* needs the parameters"):
        opt.update(GRADS[1], opt.init(PARAMS), value=1.0)


@pytest.mark.parametrize("factory", [polyak_sgd, momo, momo_adam])
def test_bad_arguments_are_refused_by_name(factory):
    declarations = factory._injection.declarations
    for argument, declaration in declarations.items():
        for bad in declaration.invalid_values():
            with pytest.raises(ValueError, match=f"`{argument}`"):
                factory(**{argument: bad})
            if declaration.live:
                state = factory().init(PARAMS)
                with pytest.raises(ValueError, match=f"`{argument}`"):
                    gx.set_hyperparam(state, argument, bad)
    for argument in ("adapt_lower_bound",) if "adapt_lower_bound" in declarations else ():
        with pytest.raises(TypeError, match=f"`{argument}`"):
            factory(**{argument: 1})
    for argument in ("learning_rate", "scaling", "max_learning_rate", "eps", "weight_decay"):
        if argument in declarations:
            with pytest.raises(ValueError, match=f"`{argument}`"):
                factory(**{argument: -0.5})
            with pytest.raises(TypeError, match=f"`{argument}`"):
                factory(**{argument: "0.1"})


def test_variant_is_one_of_two_strings():
    with pytest.raises(ValueError, match='`variant` must be one of .*"sps", "sps\\+"|`variant`'):
        polyak_sgd(variant="sps-")
    with pytest.raises(ValueError, match="`variant`"):
        polyak_sgd(variant=None)
    with pytest.raises(TypeError, match="`variant`"):
        polyak_sgd(variant=1)
    with pytest.raises(ValueError, match="`variant`"):
        scale_by_polyak(variant="SPS")


def test_transforms_refuse_bad_arguments_by_name():
    for build, argument, bad in (
        (scale_by_polyak, "max_learning_rate", -1.0),
        (scale_by_polyak, "f_min", math.nan),
        (scale_by_momo, "beta", 1.0),
        (scale_by_momo, "learning_rate", -1.0),
        (scale_by_momo, "lower_bound", math.nan),
        (scale_by_momo_adam, "b2", 1.5),
        (scale_by_momo_adam, "eps", -1e-8),
        (scale_by_momo_adam, "weight_decay", -0.1),
    ):
        with pytest.raises(ValueError, match=f"`{argument}`"):
            build(**{argument: bad})


def test_docstring_examples_agree_with_optax():
    """The docstrings' first steps are Optax's (which prints the same objective values)."""
    params = jnp.array([1.0, 2.0, 3.0])
    loss, grads = jax.value_and_grad(lambda x: jnp.sum(x**2))(params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for ours, theirs in ((polyak_sgd(), optax.polyak_sgd()),
                             (momo(), optax.contrib.momo()),
                             (momo_adam(0.1), optax.contrib.momo_adam(0.1))):
            got, _ = ours.update(grads, ours.init(params), params, value=loss)
            want, _ = theirs.update(grads, theirs.init(params), params, value=loss)
            np.testing.assert_allclose(got, want, rtol=1e-12)

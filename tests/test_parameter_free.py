"""COCOB, DoG, DoWG, layer-wise DoG and Mechanic against Optax 0.2.8 (``optax.contrib.cocob``,
``dog``, ``dowg``, ``mechanize`` and ``optax.scale_by_distance_over_gradients``), in float64
over the 50-step gradient sequence of the parity tests (all-zero steps, the first among them,
and 1e-9 and 1e4 entries), to rtol 1e-9.

Each grid runs its numeric hyperparameters traced (one vmapped, jitted program per setting of
the fixed arguments) on both sides, so every value of every argument is covered; one point of
each setting also runs eagerly. The states are compared field by field where Optax keeps the
same quantity.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx as gx
from gradtx.core import is_flattenable
from gradtx.hyperparams.declarations import NON_NEGATIVE, PERIOD, POSITIVE
from gradtx.optimizers._common import LEARNING_RATE, optimizer
from gradtx.optimizers.parameter_free import cocob, dog, dowg
from gradtx.transforms.parameter_free import (
    ScaleByCocobState,
    ScaleByDogState,
    ScaleByDowgState,
    scale_by_cocob,
    scale_by_distance_over_gradients,
    scale_by_dog,
    scale_by_dowg,
)
from gradtx.wrappers.mechanize import MechanizeState, mechanize
from tests import helpers

RTOL = 1e-9
PARAMS = helpers.make_params()
GRADS = helpers.make_gradients(PARAMS)
GRADS_STACKED = helpers.stack(GRADS)
assert len(GRADS) >= 30 and not any(GRADS[0][k].any() for k in GRADS[0])  # a zero first step


def _schedule(count):
    return 0.8 * 0.97 ** jnp.asarray(count, jnp.float64)


MASK_TREE = {"w": True, "b": False, "s": True}


def _mask_fn(params):
    return {k: k != "s" for k in params}


# --------------------------------------------------------------------------------------------
# Running both sides


def run(opt, params, grads_stacked):
    """(parameters after each step, stacked; the final state), compiled with ``lax.scan``."""

    def step(carry, g):
        p, state = carry
        updates, state = opt.update(g, state, p)
        p = gx.apply_updates(p, updates)
        return (p, state), p

    (_, state), traj = jax.lax.scan(step, (params, opt.init(params)), grads_stacked)
    return traj, state


def run_grid(build, points, static, params=PARAMS, grads=GRADS_STACKED):
    """``run`` for every point, the points' values traced (vmapped in one jitted program)."""
    hyper = {k: jnp.asarray([p[k] for p in points], jnp.float64) for k in points[0]}
    return jax.jit(jax.vmap(lambda hp: run(build(**hp, **static), params, grads)))(hyper)


def find(state, cls):
    """The one ``cls`` instance inside a (chain's) state."""
    if isinstance(state, cls):
        return state
    if isinstance(state, (tuple, list)):
        for part in state:
            found = find(part, cls)
            if found is not None:
                return found
    return None


def assert_trees_close(got, want, what):
    got_leaves, want_leaves = jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)
    assert len(got_leaves) == len(want_leaves), what
    for g, w in zip(got_leaves, want_leaves, strict=True):
        g, w = np.asarray(g), np.asarray(w)
        atol = 1e-12 * max(1.0, float(np.max(np.abs(w), initial=0.0)))
        np.testing.assert_allclose(g.reshape(w.shape), w, rtol=RTOL, atol=atol, err_msg=what)


def assert_trajectories_close(got, want, what):
    for key in PARAMS:
        helpers.assert_close_per_step(np.asarray(got[key]).reshape(np.shape(want[key])),
                                      want[key], f"leaf {key!r}, {what}")


def at(tree, i):
    return jax.tree_util.tree_map(lambda x: x[i], tree)


def check_grid(ours, theirs, numeric, static, fields, eager=True):
    """The whole numeric grid with the ``static`` arguments, jitted and traced on both sides
    (trajectories and the state ``fields``: (gradtx class, Optax class, [(gradtx field,
    Optax field)])), then (with ``eager``) the first point eagerly with Python numbers."""
    points = helpers.product(numeric)
    traj, state = run_grid(ours, points, static)
    want_traj, want_state = run_grid(theirs, points, static)
    for i, point in enumerate(points):
        what = f"{helpers.label({**point, **static})}"
        assert_trajectories_close(at(traj, i), at(want_traj, i), what)
        ours_cls, optax_cls, pairs = fields
        mine, reference = find(at(state, i), ours_cls), find(at(want_state, i), optax_cls)
        for our_field, optax_field in pairs:
            assert_trees_close(getattr(mine, our_field), getattr(reference, optax_field),
                               f"state {our_field}, {what}")
    if eager:
        got = helpers.run_steps(ours(**points[0], **static), PARAMS, GRADS)
        assert_trajectories_close(got, at(want_traj, 0), f"eager, {points[0]}")


# --------------------------------------------------------------------------------------------
# COCOB

COCOB_FIELDS = (ScaleByCocobState, optax.contrib.COCOBState, [
    (f, f) for f in ("init_particles", "cumulative_gradients", "scale", "subgradients", "reward")
])
COCOB_GRID = {
    "learning_rate": [1.0, 0.05],
    "alpha": [100.0, 10.0, 0.0],
    "eps": [1e-8, 1e-3],
    "weight_decay": [0.0, 0.1],
}


@pytest.mark.parametrize("static", [
    {}, {"mask": MASK_TREE}, {"mask": _mask_fn, "learning_rate": _schedule},
], ids=["plain", "mask-tree", "mask-fn-schedule"])
def test_cocob_equals_optax(static):
    numeric = {k: v for k, v in COCOB_GRID.items() if k not in static}
    check_grid(cocob, optax.contrib.cocob, numeric, static, COCOB_FIELDS)


# --------------------------------------------------------------------------------------------
# DoG


DOG_FIELDS = (ScaleByDogState, optax.contrib.DoGState, [
    (f, f) for f in ("is_init_step", "init_params", "max_dist", "sum_sq_norm_grads")
])


@pytest.mark.parametrize(("tag", "values", "static"), [
    ("heuristic", [1e-6, 1e-4], {}),
    ("distance", [0.1, 1e-3], {"weight_decay": [0.0, 0.01], "mask": MASK_TREE}),
    ("learning_rate", [0.01, 1e-3], {"weight_decay": [0.1]}),
    ("heuristic", [1e-6], {"learning_rate": _schedule, "weight_decay": [0.01],
                           "mask": _mask_fn}),
], ids=["heuristic", "distance-decay-mask", "learning-rate-decay", "schedule-mask-fn"])
def test_dog_equals_optax(tag, values, static):
    numeric = {"learning_rate": [1.0, 0.5], "eps": [1e-8, 1e-4], "value": values}
    numeric.update({k: v for k, v in static.items() if isinstance(v, list)})
    static = {k: v for k, v in static.items() if not isinstance(v, list)}
    numeric = {k: v for k, v in numeric.items() if k not in static}

    def with_pair(factory):
        def build(value, **kwargs):
            return factory(init_step=(tag, value), **kwargs)
        return build

    check_grid(with_pair(dog), with_pair(optax.contrib.dog), numeric, static, DOG_FIELDS)


def test_dog_defaults_and_python_zero_decay_equal_optax_eagerly():
    """Python numbers (a Python 0 decay leaves its step out) against Optax's defaults."""
    for kwargs in ({}, {"weight_decay": 0.0, "init_step": ("distance", 0.5)}):
        ours = helpers.run_steps(dog(**kwargs), PARAMS, GRADS)
        want, _ = jax.jit(run, static_argnums=0)(optax.contrib.dog(**kwargs), PARAMS,
                                                 GRADS_STACKED)
        assert_trajectories_close(ours, want, f"dog({kwargs})")


# --------------------------------------------------------------------------------------------
# DoWG


DOWG_FIELDS = (ScaleByDowgState, optax.contrib.DoWGState, [
    (f, f) for f in ("init_params", "weighted_sq_norm_grads", "estim_sq_dist")
])


@pytest.mark.parametrize("static", [
    {},
    {"init_estim_sq_dist": [0.1, 1e-3], "weight_decay": [0.0, 0.01]},
    {"learning_rate": _schedule, "weight_decay": [0.1], "mask": MASK_TREE},
], ids=["defaults", "estimate-decay", "schedule-mask"])
def test_dowg_equals_optax(static):
    numeric = {"learning_rate": [1.0, 0.5], "eps": [1e-4, 1e-8]}
    numeric.update({k: v for k, v in static.items() if isinstance(v, list)})
    static = {k: v for k, v in static.items() if not isinstance(v, list)}
    numeric = {k: v for k, v in numeric.items() if k not in static}
    check_grid(dowg, optax.contrib.dowg, numeric, static, DOWG_FIELDS)


@pytest.mark.parametrize("factory", ["cocob", "dog", "dowg"])
def test_a_mask_for_a_prefix_of_the_tree_equals_optax(factory):
    """As in Optax, a mask may stop at a subtree: True or False for all of it."""
    params = {"layer": {"w": PARAMS["w"], "b": PARAMS["b"]}, "head": PARAMS["s"]}
    grads = [{"layer": {"w": g["w"], "b": g["b"]}, "head": g["s"]} for g in GRADS[:30]]
    kwargs = {"weight_decay": 0.1, "mask": {"layer": False, "head": True}}
    ours = helpers.run_steps(globals()[factory](**kwargs), params, grads)
    want = helpers.run_steps(getattr(optax.contrib, factory)(**kwargs), params, grads)
    unmasked = helpers.run_steps(globals()[factory](weight_decay=0.1), params, grads)
    for path in (("layer", "w"), ("layer", "b"), ("head",)):
        got, expected = ours, want
        for key in path:
            got, expected = got[key], expected[key]
        helpers.assert_close_per_step(got, expected, f"{factory} {path}")
    assert not np.allclose(ours["layer"]["w"], unmasked["layer"]["w"])


# --------------------------------------------------------------------------------------------
# Layer-wise DoG (a transformation: no optimizer around it)


LDOG_GRID = {"reps_rel": [1e-6, 1e-4], "eps": [1e-8, 1e-4], "global_scale": [-1.0, 1.0, -0.5]}


@pytest.mark.parametrize("param_dtype", [jnp.float32, None], ids=["float32", "none"])
def test_scale_by_distance_over_gradients_equals_optax(param_dtype):
    points = helpers.product(LDOG_GRID)
    traj, state = run_grid(scale_by_distance_over_gradients, points,
                           {"param_dtype": param_dtype})
    optax_params = dict(PARAMS, s=np.reshape(PARAMS["s"], (1,)))
    optax_grads = dict(GRADS_STACKED, s=GRADS_STACKED["s"][:, None])
    want_traj, want_state = run_grid(optax.scale_by_distance_over_gradients, points,
                                     {"param_dtype": param_dtype}, optax_params, optax_grads)
    assert traj["s"].shape == (len(points), len(GRADS))  # the 0-d leaf stays 0-d
    for i, point in enumerate(points):
        assert_trajectories_close(at(traj, i), at(want_traj, i), helpers.label(point))
        mine = at(state, i)
        for field in ("max_dist", "grad_sum_of_squares", "init_params"):
            assert_trees_close(getattr(mine, field), getattr(at(want_state, i), field),
                               f"state {field}, {point}")
        assert mine.init_params["w"].dtype == (param_dtype or jnp.float64)
    if param_dtype is None:
        return  # eagerly (op by op) for one setting
    kwargs = {**points[-1], "param_dtype": param_dtype}
    eager = helpers.run_steps(scale_by_distance_over_gradients(**kwargs), PARAMS, GRADS)
    assert_trajectories_close(eager, at(want_traj, len(points) - 1), f"eager {kwargs}")


def test_scale_by_distance_over_gradients_is_per_leaf():
    """One step size per leaf: not flattenable, unlike DoG, DoWG and COCOB."""
    assert not is_flattenable(scale_by_distance_over_gradients())
    for tx in (scale_by_dog(("heuristic", 1e-6)), scale_by_dowg(), scale_by_cocob()):
        assert is_flattenable(tx)


# --------------------------------------------------------------------------------------------
# Mechanic


MECHANIC_FIELDS = (MechanizeState, optax.contrib.MechanicState, [
    (f, f) for f in ("r", "m", "v", "s", "x0")
])
MECHANIC_GRID = {"weight_decay": [1e-2, 0.0, 0.1], "eps": [1e-8, 1e-4], "s_init": [1e-6, 1e-3]}
BASES = {
    "sgd": (lambda: gx.sgd(0.1, momentum=0.9), lambda: optax.sgd(0.1, momentum=0.9)),
    "adam": (lambda: gx.adam(0.05), lambda: optax.adam(0.05)),
}


@pytest.mark.parametrize(("base", "num_betas"), [("sgd", 6), ("adam", 1)])
def test_mechanize_equals_optax(base, num_betas):
    ours_base, optax_base = BASES[base]

    def ours(**kwargs):
        return mechanize(ours_base(), **kwargs)

    def theirs(**kwargs):
        return optax.contrib.mechanize(optax_base(), **kwargs)

    # Eagerly (op by op: the wrapper on its own is not compiled) for the first setting only.
    check_grid(ours, theirs, MECHANIC_GRID, {"num_betas": num_betas}, MECHANIC_FIELDS,
               eager=(base, num_betas) == ("sgd", 6))
    # Standalone, the wrapper keeps its own count, as Optax's does.
    _, state = run(ours(num_betas=num_betas), PARAMS, GRADS_STACKED)
    assert int(state.count) == len(GRADS)


@optimizer(
    learning_rate=LEARNING_RATE, momentum=NON_NEGATIVE.omitted_when_zero(),
    weight_decay=NON_NEGATIVE, eps=POSITIVE, s_init=POSITIVE, num_betas=PERIOD,
)
def mechanize_sgd(learning_rate=0.1, momentum=0.9, weight_decay=1e-2, eps=1e-8, s_init=1e-6,
                  num_betas=6):
    """The registry's form: Mechanic around SGD, every number live (its count shared)."""
    return mechanize(gx.sgd.__wrapped__(learning_rate, momentum=momentum), weight_decay, eps,
                     s_init, num_betas)


def test_mechanize_inside_an_optimizer_equals_optax():
    points = helpers.product({"learning_rate": [0.1, 1.0], "s_init": [1e-6, 1e-2]})
    traj, state = run_grid(mechanize_sgd, points, {})

    def theirs(learning_rate, s_init):
        return optax.contrib.mechanize(optax.sgd(learning_rate, momentum=0.9), s_init=s_init)

    want, want_state = run_grid(theirs, points, {})
    for i, point in enumerate(points):
        assert_trajectories_close(at(traj, i), at(want, i), helpers.label(point))
        mine = find(at(state, i).inner_state, MechanizeState)
        assert mine.count is None  # the optimizer's one count
        assert_trees_close(mine.s, at(want_state, i).s, f"state s, {point}")


def test_mechanize_starts_from_the_parameters_of_its_first_update():
    """init may see placeholder parameters (weights loaded afterwards): x0 is taken from the
    first update, as in Optax."""
    zeros = jax.tree_util.tree_map(np.zeros_like, PARAMS)

    def first_steps(opt):
        state = opt.init(zeros)
        params = PARAMS
        for g in GRADS[1:6]:
            updates, state = opt.update(g, state, params)
            params = jax.tree_util.tree_map(lambda p, u: p + u, params, updates)
        return params, state

    ours, state = first_steps(mechanize(gx.sgd(0.1)))
    want, want_state = first_steps(optax.contrib.mechanize(optax.sgd(0.1)))
    assert_trees_close(ours, want, "params")
    assert_trees_close(state.x0, PARAMS, "x0")
    assert_trees_close(state.s, want_state.s, "s")


def test_mechanize_hands_extra_arguments_to_its_base():
    opt = mechanize(gx.chain(helpers.scale_by_value(), gx.scale(-1.0)), s_init=0.5)
    params = {"w": jnp.asarray([1.0, -2.0])}
    updates, _ = opt.update({"w": jnp.asarray([0.5, -3.0])}, opt.init(params), params,
                            value=2.0)
    np.testing.assert_allclose(updates["w"], [-0.5, 3.0], rtol=1e-14)  # -s_0 * 2 g
    with pytest.raises(ValueError, match="value"):
        opt.update({"w": jnp.ones(2)}, opt.init(params), params)


def test_mechanize_casts_a_gradient_of_another_width_and_refuses_another_kind():
    """Its own sums see the gradient in the parameter's dtype, as its base does."""
    params = {"w": jnp.asarray([1.0, -2.0, 0.5])}
    grads = [{"w": jnp.asarray([0.3, -0.1, 0.7], jnp.float32) * (k + 1)} for k in range(3)]
    opt = mechanize(gx.sgd(0.1), s_init=0.1)
    mixed = helpers.run_steps(opt, params, grads)
    cast = helpers.run_steps(opt, params, [{"w": g["w"].astype(jnp.float64)} for g in grads])
    assert mixed["w"].dtype == jnp.float64
    np.testing.assert_array_equal(mixed["w"], cast["w"])
    with pytest.raises(TypeError, match=r"\['w'\]"):
        opt.update({"w": jnp.ones(3, jnp.int32)}, opt.init(params), params)


def test_mechanize_is_flattenable_when_its_base_is():
    assert is_flattenable(mechanize(gx.sgd(0.1)))
    assert not is_flattenable(mechanize(gx.chain(scale_by_distance_over_gradients())))


# --------------------------------------------------------------------------------------------
# What every one shares


@pytest.mark.parametrize("opt", [
    cocob(), dog(), dowg(), mechanize(gx.sgd(0.1)), scale_by_distance_over_gradients(),
], ids=["cocob", "dog", "dowg", "mechanize", "ldog"])
def test_update_needs_params(opt):
    params = {"w": jnp.ones(3)}
    with pytest.raises(ValueError, match="needs the parameters"):
        opt.update({"w": jnp.ones(3)}, opt.init(params))


@pytest.mark.parametrize("factory", [cocob, dog, dowg], ids=lambda f: f.__name__)
def test_gradient_in_the_learning_rate_is_finite_through_zero_steps(factory):
    """The first step has an all-zero gradient (a distance of 0, a sum of 0): no inf * 0."""
    params = {"w": jnp.asarray([1.0, -2.0]), "b": jnp.asarray(0.5)}
    grads = [jax.tree_util.tree_map(lambda p: p * 0.0, params)]
    grads += [jax.tree_util.tree_map(lambda p, t=t: p * (t + 1.0) - 0.3, params)
              for t in range(4)]

    def final(lr):
        traj = helpers.run_steps(factory(learning_rate=lr), params, grads)
        return sum(jnp.sum(x[-1]) for x in jax.tree_util.tree_leaves(traj))

    grad = jax.jit(jax.grad(final))(0.7)
    assert np.isfinite(grad)
    h, compiled = 1e-6, jax.jit(final)
    np.testing.assert_allclose(grad, (compiled(0.7 + h) - compiled(0.7 - h)) / (2 * h),
                               rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize(("factory", "argument", "value"), [
    (cocob, "learning_rate", -0.1),
    (cocob, "alpha", -1.0),
    (cocob, "eps", 0.0),
    (cocob, "weight_decay", -1e-3),
    (dog, "learning_rate", float("nan")),
    (dog, "eps", -1e-8),
    (dog, "weight_decay", -0.1),
    (dowg, "eps", 0.0),
    (dowg, "weight_decay", float("nan")),
], ids=lambda x: getattr(x, "__name__", str(x)))
def test_bad_numbers_are_refused_by_name(factory, argument, value):
    helpers.assert_refused_by_name(factory, argument, value, {"w": jnp.ones(3)})


def test_bad_initial_estimate_is_refused_by_name():
    """init_estim_sq_dist is live only when given (None builds the other chain)."""
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="`init_estim_sq_dist`"):
            dowg(init_estim_sq_dist=bad)
    state = dowg(init_estim_sq_dist=0.1).init({"w": jnp.ones(3)})
    with pytest.raises(ValueError, match="`init_estim_sq_dist`"):
        gx.set_hyperparam(state, "init_estim_sq_dist", 0.0)


@pytest.mark.parametrize("init_step", [
    ("heuristic", 0.0), ("distance", -1.0), ("learning_rate", float("nan")), ("warmup", 1e-6),
], ids=str)
def test_bad_init_step_is_refused_by_name(init_step):
    for build in (dog, lambda init_step: scale_by_dog(init_step)):
        with pytest.raises(ValueError, match="`init_step`"):
            build(init_step=init_step)


@pytest.mark.parametrize("init_step", ["heuristic", 1e-6, ("heuristic",), (1, 1e-6)], ids=str)
def test_init_step_of_the_wrong_type_is_refused_by_name(init_step):
    with pytest.raises(TypeError, match="`init_step`"):
        dog(init_step=init_step)


def test_mask_of_the_wrong_type_is_refused_by_name():
    for factory in (cocob, dog, dowg):
        with pytest.raises(TypeError, match="`mask`"):
            factory(weight_decay=0.1, mask="all")


@pytest.mark.parametrize(("build", "argument"), [
    (lambda: scale_by_cocob(alpha=-1.0), "alpha"),
    (lambda: scale_by_cocob(eps=0.0), "eps"),
    (lambda: scale_by_dog(("distance", 1.0), eps=-1.0), "eps"),
    (lambda: scale_by_dowg(init_estim_sq_dist=-1.0), "init_estim_sq_dist"),
    (lambda: scale_by_dowg(eps=float("nan")), "eps"),
    (lambda: scale_by_distance_over_gradients(reps_rel=0.0), "reps_rel"),
    (lambda: scale_by_distance_over_gradients(eps=-1.0), "eps"),
    (lambda: scale_by_distance_over_gradients(global_scale=float("nan")), "global_scale"),
    (lambda: mechanize(gx.sgd(0.1), weight_decay=-1.0), "weight_decay"),
    (lambda: mechanize(gx.sgd(0.1), eps=0.0), "eps"),
    (lambda: mechanize(gx.sgd(0.1), s_init=0.0), "s_init"),
    (lambda: mechanize(gx.sgd(0.1), num_betas=0), "num_betas"),
    (lambda: mechanize(gx.sgd(0.1), num_betas=2.5), "num_betas"),
], ids=lambda x: x if isinstance(x, str) else "")
def test_transforms_refuse_bad_values_by_name(build, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        build()


def test_bad_types_are_refused_by_name():
    with pytest.raises(TypeError, match="`param_dtype`"):
        scale_by_distance_over_gradients(param_dtype=jnp.int32)
    with pytest.raises(TypeError, match="`num_betas`"):
        mechanize(gx.sgd(0.1), num_betas=True)
    with pytest.raises(TypeError, match="mechanize"):
        mechanize(gx.sgd)  # the factory, not an optimizer

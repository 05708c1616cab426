"""ACProp and Simplified AdEMAMix against Optax 0.2.8 (optax.contrib.acprop,
optax.contrib.simplified_ademamix and their scale_by_ transforms), in float64 over the 50-step
gradient sequence of the parity tests (zero steps, 1e-9 and 1e4 entries), to rtol 1e-9: every
point of a grid of every argument with the numbers traced (vmapped, jitted), a few points
eagerly with Python numbers (Optax's op by op), the state entries
that Optax also keeps, schedules, masks, and the refusal of bad arguments by name."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib
import pytest

import gradtx as gx
from gradtx.optimizers.acprop import acprop
from gradtx.optimizers.simplified_ademamix import simplified_ademamix
from gradtx.transforms.acprop import scale_by_acprop
from gradtx.transforms.simplified_ademamix import (
    ScaleBySimplifiedAdEMAMixState,
    scale_by_simplified_ademamix,
)
from tests import helpers

PARAMS = helpers.make_params()
GRADS = helpers.make_gradients(PARAMS)
GRADS_STACKED = helpers.stack(GRADS)
assert len(GRADS) >= 30


def _flat(tree) -> list[tuple[str, np.ndarray]]:
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [(jax.tree_util.keystr(path), np.asarray(x)) for path, x in leaves]


def assert_trees_close(got, want, what: str) -> None:
    """Leaf by leaf (leading axis = step), as tests.helpers.assert_close_per_step compares."""
    got, want = _flat(got), _flat(want)
    assert len(got) == len(want), (what, [k for k, _ in got], [k for k, _ in want])
    for (key, g), (_, w) in zip(got, want, strict=True):
        w = w.reshape(g.shape)
        if np.iscomplexobj(g) or np.iscomplexobj(w):  # real and imaginary parts side by side
            g, w = (np.stack([x.real, x.imag], axis=-1) for x in (g, w))
        helpers.assert_close_per_step(g.astype(np.float64), w.astype(np.float64),
                                      f"{what}, {key}")


def _point(tree, i):
    return jax.tree_util.tree_map(lambda x: x[i], tree)


def run_grid(make_gx, make_optax, record_gx, record_optax, points, params=PARAMS,
             grads=GRADS_STACKED):
    """Both optimizers over every point (the numbers traced: one vmapped, jitted scan each);
    asserts that the trajectories and the recorded states agree at every point."""
    hyper = {k: jnp.asarray([p[k] for p in points], jnp.float64) for k in points[0]}

    def runner(make, record):
        def one(hp):
            return helpers.run_scan_with_state(make(**hp), params, grads, record)
        return jax.jit(jax.vmap(one))(hyper)

    got, want = (jax.tree_util.tree_map(np.asarray, runner(make, record))
                 for make, record in ((make_gx, record_gx), (make_optax, record_optax)))
    for i, point in enumerate(points):
        assert_trees_close(_point(got, i), _point(want, i), f"jitted, vmapped, {point}")


def run_eager(opt_gx, opt_optax, record_gx, record_optax, what, params=PARAMS, grads=GRADS):
    got = helpers.run_steps_with_state(opt_gx, params, grads, record_gx)
    want = helpers.run_steps_with_state(opt_optax, params, grads, record_optax)
    assert_trees_close(got, want, f"eager, {what}")


def grid(axes, allowed=lambda p: True):
    names = list(axes)
    points = [dict(zip(names, v, strict=True)) for v in itertools.product(*axes.values())]
    return [p for p in points if allowed(p)]


def _not_both_eps_zero(p):
    # With eps = eps_root = 0 a first all-zero gradient leaves a zero denominator: NaN for
    # both (checked once below); the grid keeps the informative points.
    return p["eps"] > 0 or p["eps_root"] > 0


# --------------------------------------------------------------------------------------------
# ACProp

ACPROP_GRID = {
    "learning_rate": [1e-3, 0.1],
    "b1": [0.0, 0.5, 0.9],
    "b2": [0.0, 0.9, 0.999],
    "eps": [0.0, 1e-16, 1e-3],
    "eps_root": [0.0, 1e-16, 1e-3],
    "weight_decay": [0.0, 0.1],
}


def _acprop_gx_state(state):
    return {"mu": gx.tree_get(state, "mu"), "nu": gx.tree_get(state, "nu"), "count": state.count}


def _acprop_optax_state(state):
    inner = state[0]  # chain(scale_by_acprop, add_decayed_weights, scale_by_learning_rate)
    return {"mu": inner.mu, "nu": inner.nu, "count": inner.count}


def test_acprop_grid_matches_optax_jitted():
    points = grid(ACPROP_GRID, _not_both_eps_zero)
    assert len(points) >= 200
    run_grid(acprop, optax.contrib.acprop, _acprop_gx_state, _acprop_optax_state, points)


@pytest.mark.parametrize("kwargs", [
    {"learning_rate": 1e-3},
    {"learning_rate": 0.1, "b1": 0.5, "b2": 0.9, "eps": 1e-3, "eps_root": 0.0,
     "weight_decay": 0.1},
    {"learning_rate": 0.01, "eps": 0.0, "eps_root": 0.0},  # NaN from step 2 for both
], ids=["defaults", "every-argument", "no-eps"])
def test_acprop_matches_optax_eagerly(kwargs):
    run_eager(acprop(**kwargs), optax.contrib.acprop(**kwargs), _acprop_gx_state,
              _acprop_optax_state, kwargs)


def test_acprop_first_step_and_asynchrony():
    """Step 1 divides by 1 + eps; step 2 by the second moment of step 1 alone."""
    b2, eps_root = 0.9, 1e-3
    opt = acprop(learning_rate=1.0, b1=0.5, b2=b2, eps=0.0, eps_root=eps_root)
    params = {"x": jnp.zeros(2)}
    state = opt.init(params)
    g1, g2 = jnp.asarray([2.0, -1.0]), jnp.asarray([1.0, 3.0])
    u1, state = opt.update({"x": g1}, state, params)
    np.testing.assert_allclose(u1["x"], -g1, rtol=1e-15)
    u2, _ = opt.update({"x": g2}, state, params)
    s1 = (1 - b2) * g1**2 + eps_root  # error against m_0 = 0
    np.testing.assert_allclose(u2["x"], -g2 / np.sqrt(s1 / (1 - b2)), rtol=1e-14)


def test_scale_by_acprop_matches_optax_and_keeps_its_own_count():
    kwargs = {"b1": 0.7, "b2": 0.95, "eps": 1e-6, "eps_root": 1e-9}

    def record(state):
        return {"mu": state.mu, "nu": state.nu, "count": state.count}

    for runner, grads in ((helpers.run_steps_with_state, GRADS),
                          (helpers.run_scan_with_state, GRADS_STACKED)):
        got = runner(scale_by_acprop(**kwargs), PARAMS, grads, record)
        want = runner(optax.contrib.scale_by_acprop(**kwargs), PARAMS, grads, record)
        assert_trees_close(got, want, f"scale_by_acprop, {runner.__name__}")


def test_scale_by_acprop_matches_optax_on_complex_leaves():
    rng = np.random.default_rng(3)
    params = {"z": rng.normal(size=3) + 1j * rng.normal(size=3)}
    grads = [{"z": rng.normal(size=3) + 1j * rng.normal(size=3)} for _ in range(30)]
    got = helpers.run_steps(scale_by_acprop(), params, grads)
    want = helpers.run_steps(optax.contrib.scale_by_acprop(), params, grads)
    assert_trees_close(got, want, "complex")


# --------------------------------------------------------------------------------------------
# Simplified AdEMAMix

ADEMAMIX_GRID = {
    "learning_rate": [1e-4, 1e-2],
    "b1": [0.0, 0.5, 0.99],
    "b2": [0.0, 0.5, 0.95],
    "alpha": [0.0, 1.0, 8.0],
    "eps": [0.0, 1e-8, 1e-3],
    "eps_root": [0.0, 1e-8, 1e-2],
    "weight_decay": [0.0, 0.1],
}


def _ademamix_gx_state(state):
    return {"m": gx.tree_get(state, "m"), "n": gx.tree_get(state, "n"), "count": state.count}


def _ademamix_optax_state(state):
    inner = state[0]
    return {"m": inner.m, "n": inner.n, "count": inner.t}


def test_simplified_ademamix_grid_matches_optax_jitted():
    points = grid(ADEMAMIX_GRID, _not_both_eps_zero)
    assert len(points) >= 500
    run_grid(simplified_ademamix, optax.contrib.simplified_ademamix, _ademamix_gx_state,
             _ademamix_optax_state, points)


@pytest.mark.parametrize("kwargs", [
    {"learning_rate": 1e-5},
    {"learning_rate": 0.01, "b1": 0.9, "b2": 0.99, "alpha": 3.0, "eps": 1e-6,
     "eps_root": 1e-4, "weight_decay": 0.1},
], ids=["defaults", "every-argument"])
def test_simplified_ademamix_matches_optax_eagerly(kwargs):
    run_eager(simplified_ademamix(**kwargs), optax.contrib.simplified_ademamix(**kwargs),
              _ademamix_gx_state, _ademamix_optax_state, kwargs)


def test_simplified_ademamix_with_schedules_matches_optax():
    """alpha, the learning rate and the weight decay as schedules of the step count, each
    evaluated at the number of steps already taken, as Optax does."""
    kwargs = {
        # float64 values (optax.linear_schedule of an int32 count is float32, and XLA rounds
        # its division differently compiled and op by op).
        "learning_rate": lambda count: 1e-2 / (1.0 + 0.05 * count),
        "alpha": lambda count: 0.25 * count,
        "weight_decay": lambda count: 0.1 / (1.0 + count),
        "eps_root": 1e-8,
    }
    run_eager(simplified_ademamix(**kwargs), optax.contrib.simplified_ademamix(**kwargs),
              _ademamix_gx_state, _ademamix_optax_state, "schedules")


def test_scale_by_simplified_ademamix_matches_optax_with_a_schedule():
    kwargs = {"b1": 0.9, "b2": 0.8, "alpha": lambda count: 1.0 + 0.5 * count, "eps": 1e-6}

    def record(state):
        if isinstance(state, ScaleBySimplifiedAdEMAMixState):
            return {"m": state.m, "n": state.n, "count": state.count}
        return {"m": state.m, "n": state.n, "count": state.t}

    for runner, grads in ((helpers.run_steps_with_state, GRADS),
                          (helpers.run_scan_with_state, GRADS_STACKED)):
        got = runner(scale_by_simplified_ademamix(**kwargs), PARAMS, grads, record)
        want = runner(optax.contrib.scale_by_simplified_ademamix(**kwargs), PARAMS, grads,
                      record)
        assert_trees_close(got, want, f"scale_by_simplified_ademamix, {runner.__name__}")


# --------------------------------------------------------------------------------------------
# Masks (both optimizers)

NESTED = {"layer": {"w": PARAMS["w"], "b": PARAMS["b"]}, "s": PARAMS["s"]}
NESTED_GRADS = [{"layer": {"w": g["w"], "b": g["b"]}, "s": g["s"]} for g in GRADS]

MASKS = {
    "full-tree": {"layer": {"w": True, "b": False}, "s": True},
    "prefix": {"layer": False, "s": True},
    "function": lambda tree: {"layer": {"w": True, "b": False}, "s": False},
    "function-prefix": lambda tree: {"layer": True, "s": False},
}


@pytest.mark.parametrize("mask", list(MASKS.values()), ids=list(MASKS))
@pytest.mark.parametrize("name", ["acprop", "simplified_ademamix"])
def test_weight_decay_mask_matches_optax(name, mask):
    ours, theirs = {
        "acprop": (acprop, optax.contrib.acprop),
        "simplified_ademamix": (simplified_ademamix, optax.contrib.simplified_ademamix),
    }[name]
    kwargs = {"learning_rate": 0.01, "weight_decay": 0.5, "mask": mask}
    got = helpers.run_steps(ours(**kwargs), NESTED, NESTED_GRADS)
    want = helpers.run_steps(theirs(**kwargs), NESTED, NESTED_GRADS)
    assert_trees_close(got, want, f"{name}, mask")


def test_mask_selects_the_decayed_leaves():
    """With zero gradients only the masked-in leaves move (decay alone)."""
    zeros = [jax.tree_util.tree_map(np.zeros_like, NESTED)] * 3
    for factory in (acprop, simplified_ademamix):
        traj = helpers.run_steps(
            factory(learning_rate=0.1, weight_decay=0.5, eps=1.0, mask=MASKS["prefix"]),
            NESTED, zeros)
        np.testing.assert_array_equal(traj["layer"]["w"][-1], NESTED["layer"]["w"])
        np.testing.assert_allclose(traj["s"][-1], NESTED["s"] * 0.95**3, rtol=1e-14)


# --------------------------------------------------------------------------------------------
# Bad arguments

@pytest.mark.parametrize("factory", [acprop, simplified_ademamix])
def test_bad_arguments_are_refused_by_name(factory):
    declarations = factory._injection.declarations
    checked = 0
    for name, declaration in declarations.items():
        if not declaration.live:
            continue
        for value in declaration.invalid_values():
            helpers.assert_refused_by_name(factory, name, value, PARAMS)
            checked += 1
    assert checked >= 10
    for bad, error in (({"w": "yes"}, TypeError), (True, TypeError), ({}, ValueError)):
        with pytest.raises(error, match="`mask`"):
            factory(weight_decay=0.1, mask=bad)
    opt = factory(weight_decay=0.1, mask={"w": True, "other": False})
    with pytest.raises(ValueError, match="`mask`"):
        opt.update(PARAMS, opt.init(PARAMS), PARAMS)
    with pytest.raises(TypeError, match=factory.__name__):
        factory().init({"z": jnp.ones(2, jnp.complex128)})


@pytest.mark.parametrize("transform, arguments", [
    (scale_by_acprop, ("b1", "b2", "eps", "eps_root")),
    (scale_by_simplified_ademamix, ("b1", "b2", "alpha", "eps", "eps_root")),
])
def test_transform_bad_arguments_are_refused_by_name(transform, arguments):
    for name in arguments:
        for value in (-0.5, float("nan")) + ((1.0,) if name in ("b1", "b2") else ()):
            with pytest.raises(ValueError, match=f"`{name}`"):
                transform(**{name: value})

"""Adan, NovoGrad and MADGRAD, and their scale_by_* transforms, against Optax 0.2.8 in float64.

Every point of each grid (every value of every argument, in their full product) runs 50
steps of the parity tests' gradients (zero steps, 1e-9 and 1e4 entries) with the
hyperparameters traced (vmapped), jitted as one ``lax.scan``, on both sides; trajectories and
the state entries Optax also keeps are compared at every step to rtol 1e-9. Eager runs with
Python numbers, schedules, masks, complex leaves and the argument checks are tested apart.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx as gx
from gradtx.optimizers.adan import adan
from gradtx.optimizers.madgrad import madgrad
from gradtx.optimizers.masks import broadcast_mask
from gradtx.optimizers.novograd import novograd
from gradtx.transforms.adan import ScaleByAdanState, scale_by_adan
from gradtx.transforms.madgrad import MadgradState, scale_by_madgrad
from gradtx.transforms.novograd import ScaleByNovogradState, scale_by_novograd
from tests import helpers

RTOL = 1e-9
# The leaf "s" renamed: MADGRAD's state has an entry "s" (Optax's name), which the leaf's
# name would make ambiguous for tree_get.
PARAMS = {("scalar" if k == "s" else k): v for k, v in helpers.make_params().items()}
GRADS = helpers.make_gradients(PARAMS)
GRADS_STACKED = helpers.stack(GRADS)

GRIDS = {
    "adan": {
        "learning_rate": [1e-3, 0.1],
        "b1": [0.0, 0.5, 0.98],
        "b2": [0.0, 0.5, 0.92],
        "b3": [0.0, 0.5, 0.99],
        "eps": [1e-8, 0.1],
        "eps_root": [0.0, 1e-8],
        "weight_decay": [0.0, 0.1],
    },
    "novograd": {
        "learning_rate": [1e-3, 0.1],
        "b1": [0.0, 0.5, 0.9],
        "b2": [0.0, 0.25, 0.9],
        "eps": [1e-6, 0.1],
        "eps_root": [0.0, 1e-8],
        "weight_decay": [0.0, 0.1],
    },
    "madgrad": {
        "learning_rate": [1e-3, 0.1, 1.0],
        "momentum": [0.0, 0.5, 0.9],
        "weight_decay": [0.0, 0.1],
        "eps": [1e-6, 0.1],
    },
}
OURS = {"adan": adan, "novograd": novograd, "madgrad": madgrad}
THEIRS = {"adan": optax.adan, "novograd": optax.novograd, "madgrad": optax.contrib.madgrad}
# gradtx's state entry -> Optax's, for the entries both keep.
STATE_ENTRIES = {
    "adan": {"count": "t", "m": "m", "v": "v", "n": "n", "g": "g"},
    "novograd": {"count": "count", "mu": "mu", "nu": "nu"},
    "madgrad": {"count": "count", "grad_sum_sq": "grad_sum_sq", "s": "s", "x0": "x0"},
}


def _record(get, entries):
    return lambda state: {name: get(state, name) for name in entries}


def _ours_record(name):
    return _record(gx.tree_get, STATE_ENTRIES[name])


OPTAX_STATES = {"adan": optax.ScaleByAdanState, "novograd": optax.ScaleByNovogradState,
                "madgrad": optax.contrib.MadgradState}


def _theirs_record(name):
    """Optax's entries, read from its scale_by_* state (a schedule adds another count)."""
    cls = OPTAX_STATES[name]

    def record(state):
        found = [x for x in jax.tree_util.tree_leaves(state, is_leaf=lambda x: isinstance(
            x, cls)) if isinstance(x, cls)]
        assert len(found) == 1
        return {key: getattr(found[0], key) for key in STATE_ENTRIES[name].values()}

    return record


def _assert_runs_equal(name, ours, theirs, what):
    """``ours`` and ``theirs``: (trajectory, recorded states), leading axis = step."""
    (traj, states), (want_traj, want_states) = ours, theirs
    for key in want_traj:
        helpers.assert_close_per_step(traj[key], want_traj[key], f"{what}, leaf {key!r}",
                                      rtol=RTOL)
    for ours_name, theirs_name in STATE_ENTRIES[name].items():
        got, want = states[ours_name], want_states[theirs_name]
        if ours_name == "count":
            np.testing.assert_array_equal(got, want, err_msg=f"{what}, count")
            continue
        for key in want:
            helpers.assert_close_per_step(got[key], want[key],
                                          f"{what}, state {ours_name!r}, leaf {key!r}", rtol=RTOL)


def _point(values, i):
    return {k: float(v[i]) for k, v in values.items()}


# --------------------------------------------------------------------------------------------
# The grids, jitted and vmapped over the traced hyperparameters


def _first_failing_point(got, want, rtol=RTOL, atol_scale=1e-12):
    """The first point (leading axis) at which ``got`` and ``want`` (points, steps, ...)
    differ by more than :func:`helpers.assert_close_per_step` allows, or None: the same test,
    for every point at once."""
    got, want = np.asarray(got), np.asarray(want)
    flat = np.abs(want).reshape(want.shape[0], want.shape[1], -1)
    atol = atol_scale * np.maximum(1.0, np.nanmax(flat, axis=2, initial=0.0))
    atol = atol.reshape(atol.shape + (1,) * (want.ndim - 2))
    with np.errstate(invalid="ignore"):
        ok = (got == want) | (np.abs(got - want) <= rtol * np.abs(want) + atol)
    ok |= np.isnan(got) & np.isnan(want)
    bad = ~ok.reshape(ok.shape[0], -1).all(axis=1)
    return int(np.argmax(bad)) if bad.any() else None


@pytest.mark.parametrize("name", list(GRIDS))
def test_grid_matches_optax_step_for_step(name):
    points = helpers.product(GRIDS[name])
    values = {k: jnp.asarray([p[k] for p in points], jnp.float64) for k in GRIDS[name]}
    ours_record, theirs_record = _ours_record(name), _theirs_record(name)

    def ours(hp):
        return helpers.run_scan_with_state(OURS[name](**hp), PARAMS, GRADS_STACKED, ours_record)

    def theirs(hp):
        return helpers.run_scan_with_state(THEIRS[name](**hp), PARAMS, GRADS_STACKED,
                                           theirs_record)

    got = jax.tree_util.tree_map(np.asarray, jax.jit(jax.vmap(ours))(values))
    want = jax.tree_util.tree_map(np.asarray, jax.jit(jax.vmap(theirs))(values))
    assert np.all(np.isfinite(want[0]["w"]))
    # Every leaf and state entry at once; a failing point is then compared alone, for the
    # message that names its step, leaf and hyperparameters.
    pairs = [(got[0][key], want[0][key]) for key in want[0]]
    for ours_name, theirs_name in STATE_ENTRIES[name].items():
        if ours_name == "count":
            np.testing.assert_array_equal(got[1]["count"], want[1][theirs_name])
            continue
        pairs += [(got[1][ours_name][key], want[1][theirs_name][key]) for key in PARAMS]
    for ours_leaf, theirs_leaf in pairs:
        i = _first_failing_point(ours_leaf, theirs_leaf)
        if i is not None:
            pick = jax.tree_util.tree_map(lambda x, i=i: x[i], (got, want))
            _assert_runs_equal(name, *pick, f"{name}({_point(values, i)})")
            raise AssertionError("unreachable: the point failed above")


# --------------------------------------------------------------------------------------------
# Eager runs with Python numbers (the usual call), and op by op


EAGER_POINTS = {
    "adan": [{"learning_rate": 1e-3},
             {"learning_rate": 0.05, "b1": 0.9, "b2": 0.8, "b3": 0.95, "eps": 1e-6,
              "eps_root": 0.0, "weight_decay": 0.02}],
    "novograd": [{"learning_rate": 1e-3},
                 {"learning_rate": 0.05, "b1": 0.8, "b2": 0.5, "eps": 1e-8, "eps_root": 1e-10,
                  "weight_decay": 0.02}],
}


EAGER_GRADS = GRADS[:30]  # the first 30 steps: all three kinds of steps, at less cost


def _run_eager(opt, record, grads=EAGER_GRADS, params=PARAMS):
    """:func:`helpers.run_steps_with_state`, stacked with NumPy (``jnp.stack`` compiles a
    program per shape and number of steps)."""
    state, traj, states = opt.init(params), [], []
    for g in grads:
        updates, state = opt.update(g, state, params)
        params = gx.apply_updates(params, updates)
        traj.append(jax.tree_util.tree_map(np.asarray, params))
        states.append(jax.tree_util.tree_map(np.asarray, record(state)))
    return helpers.np_stack(traj), helpers.np_stack(states)


@pytest.mark.parametrize(("name", "kwargs"), [
    pytest.param(name, kw, id=f"{name}-{i}")
    for name, points in EAGER_POINTS.items() for i, kw in enumerate(points)
])
def test_eager_with_python_numbers_matches_optax(name, kwargs):
    ours = _run_eager(OURS[name](**kwargs), _ours_record(name))
    theirs = _run_eager(THEIRS[name](**kwargs), _theirs_record(name))
    _assert_runs_equal(name, ours, theirs, f"{name}({kwargs}) eager")


@pytest.mark.parametrize("name", list(OURS))
def test_op_by_op_matches_optax(name):
    """Under ``jax.disable_jit``: gradtx's update as written, not its cached compiled step."""
    kwargs = {"learning_rate": 0.05}
    grads = GRADS[:8]
    theirs_opt = THEIRS[name](**kwargs)
    if name == "madgrad":  # float64 arrays, as gradtx's live hyperparameters are
        theirs_opt = optax.inject_hyperparams(optax.contrib.madgrad)(**kwargs)
    theirs = _run_eager(theirs_opt, _theirs_record(name), grads)
    with jax.disable_jit():
        ours = _run_eager(OURS[name](**kwargs), _ours_record(name), grads)
    _assert_runs_equal(name, ours, theirs, f"{name} op by op")


def test_madgrad_with_python_numbers_matches_injected_optax():
    """gradtx's hyperparameters are float64 arrays; Optax computes with the same types under
    ``optax.inject_hyperparams``, and then agrees to the last bits."""
    kwargs = {"learning_rate": 0.05, "momentum": 0.5, "weight_decay": 0.02, "eps": 1e-4}
    ours = _run_eager(madgrad(**kwargs), _ours_record("madgrad"))
    theirs = _run_eager(optax.inject_hyperparams(optax.contrib.madgrad)(**kwargs),
                        _theirs_record("madgrad"))
    _assert_runs_equal("madgrad", ours, theirs, "madgrad eager")


def test_madgrad_differs_from_optax_with_a_python_learning_rate_by_float32_rounding():
    """The documented difference: with a Python-number learning rate, Optax's weight
    (η + ε)√(k+1) is float32. Each weight is off by a relative 6e-8 at most; the sums carry
    that into the steps, amplified where they cancel, to about 1e-6 of the distance
    travelled here (bounded by 5e-6)."""
    ours = helpers.run_steps(madgrad(learning_rate=0.05), PARAMS, EAGER_GRADS)
    theirs = helpers.run_steps(optax.contrib.madgrad(learning_rate=0.05), PARAMS, EAGER_GRADS)
    worst = 0.0
    for key in PARAMS:
        got, want = np.asarray(ours[key]), np.asarray(theirs[key])
        steps = len(want)
        gap = np.abs(got - want).reshape(steps, -1).max(axis=1)
        moved = np.abs(want - PARAMS[key]).reshape(steps, -1).max(axis=1)
        assert np.all(gap <= 5e-6 * moved + 1e-12), key
        worst = max(worst, float(gap.max()))
    assert worst > 1e-10  # the float32 rounding is visible in float64
    # The standalone transform, given Python numbers, types the weight as Optax does.
    tx = gx.chain(scale_by_madgrad(0.05), gx.scale(1.0))
    np.testing.assert_array_equal(helpers.run_steps(tx, PARAMS, EAGER_GRADS)["w"], theirs["w"])


# --------------------------------------------------------------------------------------------
# Schedules and masks


def _decaying(value):
    # A strongly typed float64 value, as gradtx stores a schedule's value (a Python float
    # would be weakly typed in Optax, which matters to MADGRAD's float32 weight only).
    return lambda count: jnp.asarray(value, jnp.float64) * 0.9 ** count


@pytest.mark.parametrize(("name", "kwargs"), [
    ("adan", {"learning_rate": _decaying(0.1), "weight_decay": _decaying(0.05)}),
    ("novograd", {"learning_rate": _decaying(0.1), "weight_decay": 0.05}),
    ("madgrad", {"learning_rate": _decaying(0.1), "weight_decay": 0.05}),
], ids=["adan", "novograd", "madgrad"])
def test_schedules_match_optax(name, kwargs):
    ours = helpers.run_scan_with_state(OURS[name](**kwargs), PARAMS, GRADS_STACKED,
                                       _ours_record(name))
    theirs = helpers.run_scan_with_state(THEIRS[name](**kwargs), PARAMS, GRADS_STACKED,
                                         _theirs_record(name))
    _assert_runs_equal(name, ours, theirs, f"{name} with schedules")


def test_scale_by_madgrad_evaluates_a_schedule_at_the_steps_taken():
    schedule = _decaying(0.1)
    ours = helpers.run_steps(gx.chain(scale_by_madgrad(schedule, 0.5), gx.scale(1.0)),
                             PARAMS, GRADS[:10])
    theirs = helpers.run_steps(optax.contrib.scale_by_madgrad(schedule, 0.5), PARAMS, GRADS[:10])
    for key in PARAMS:
        helpers.assert_close_per_step(ours[key], theirs[key], key, rtol=RTOL)


NESTED = {"layer": {"w": PARAMS["w"], "b": PARAMS["b"]}, "c": PARAMS["scalar"]}
NESTED_GRADS = [{"layer": {"w": g["w"], "b": g["b"]}, "c": g["scalar"]} for g in GRADS[:8]]
MASKS = {
    "full-tree": {"layer": {"w": True, "b": False}, "c": True},
    "prefix": {"layer": True, "c": False},
    "function": lambda p: jax.tree_util.tree_map(lambda x: jnp.ndim(x) > 1, p),
}


@pytest.mark.parametrize("mask", list(MASKS.values()), ids=list(MASKS))
def test_adan_weight_decay_mask_matches_optax(mask):
    kwargs = {"learning_rate": 0.05, "weight_decay": 0.3}
    ours = helpers.run_steps(adan(**kwargs, mask=mask), NESTED, NESTED_GRADS)
    theirs = helpers.run_steps(optax.adan(**kwargs, mask=mask), NESTED, NESTED_GRADS)
    every_leaf = helpers.run_steps(optax.adan(**kwargs), NESTED, NESTED_GRADS)
    flat_ours, flat_theirs, flat_every = (
        jax.tree_util.tree_leaves_with_path(t) for t in (ours, theirs, every_leaf))
    for (path, got), (_, want) in zip(flat_ours, flat_theirs, strict=True):
        helpers.assert_close_per_step(got, want, jax.tree_util.keystr(path), rtol=RTOL)
    # The mask acts: some leaf differs from the run that decays every leaf.
    assert any(not np.allclose(got, every)
               for (_, got), (_, every) in zip(flat_ours, flat_every, strict=True))


def test_broadcast_mask_spreads_a_prefix_over_each_subtree():
    params = {"a": {"x": jnp.ones(2), "y": None}, "b": jnp.ones(3)}
    assert broadcast_mask({"a": False, "b": True}, params) == {
        "a": {"x": False, "y": None}, "b": True}
    assert broadcast_mask(True, params) == {"a": {"x": True, "y": None}, "b": True}


def test_adan_with_a_mask_is_not_flattenable():
    assert gx.is_flattenable(adan())
    assert not gx.is_flattenable(adan(weight_decay=0.1, mask={"w": True}))


# --------------------------------------------------------------------------------------------
# Leaves: complex parameters, None leaves, params needed or not


def test_novograd_on_complex_parameters_matches_optax():
    rng = np.random.default_rng(5)
    params = {"z": rng.normal(size=(3, 2)) + 1j * rng.normal(size=(3, 2)),
              "x": rng.normal(size=4)}
    grads = [jax.tree_util.tree_map(
        lambda p: rng.normal(size=p.shape) + (1j * rng.normal(size=p.shape) if
                                              np.iscomplexobj(p) else 0), params)
        for _ in range(6)]
    kwargs = {"learning_rate": 0.05, "b1": 0.8, "weight_decay": 0.1}
    ours = helpers.run_steps(novograd(**kwargs), params, grads)
    theirs = helpers.run_steps(optax.novograd(**kwargs), params, grads)
    for key in params:
        assert ours[key].dtype == params[key].dtype
        helpers.assert_close_per_step(ours[key], theirs[key], key, rtol=RTOL)


def test_scale_by_adan_on_complex_leaves_matches_optax():
    rng = np.random.default_rng(6)
    params = {"z": jnp.asarray(rng.normal(size=3) + 1j * rng.normal(size=3))}
    grads = [{"z": rng.normal(size=3) + 1j * rng.normal(size=3)} for _ in range(6)]
    ours = helpers.run_steps(scale_by_adan(0.5, 0.7, 0.9, 1e-3, 1e-6), params, grads)
    theirs = helpers.run_steps(optax.scale_by_adan(0.5, 0.7, 0.9, 1e-3, 1e-6), params, grads)
    helpers.assert_close_per_step(ours["z"], theirs["z"], "z", rtol=RTOL)


@pytest.mark.parametrize("factory", [adan, madgrad], ids=["adan", "madgrad"])
def test_complex_parameters_are_refused_by_name(factory):
    with pytest.raises(TypeError, match=f"{factory.__name__} does not support complex.*'z'"):
        factory().init({"z": jnp.ones(2, jnp.complex128)})


@pytest.mark.parametrize("name", list(OURS))
def test_none_leaves_are_left_alone(name):
    params = {"w": jnp.ones(3), "frozen": None}
    opt = OURS[name](learning_rate=0.1, weight_decay=0.1)
    state = opt.init(params)
    updates, state = opt.update({"w": jnp.asarray([0.5, -1.0, 2.0]), "frozen": None}, state,
                                params)
    assert updates["frozen"] is None and np.all(np.asarray(updates["w"]) != 0)


def test_madgrad_needs_the_parameters_and_novograd_only_for_weight_decay():
    g = {"w": jnp.ones(2)}
    with pytest.raises(ValueError, match="needs the parameters"):
        tx = scale_by_madgrad(0.1)
        tx.update(g, tx.init(g))
    with pytest.raises(ValueError, match="needs the parameters"):
        tx = scale_by_novograd(weight_decay=0.1)
        tx.update(g, tx.init(g))
    tx = scale_by_novograd()
    out, _ = tx.update(g, tx.init(g))
    np.testing.assert_allclose(out["w"], 1 / (np.sqrt(2.0) + 1e-8), rtol=1e-15)


def test_standalone_transforms_keep_their_own_count_and_optax_state_layout():
    p = {"w": jnp.ones(2)}
    adan_state = scale_by_adan().init(p)
    assert isinstance(adan_state, ScaleByAdanState) and int(adan_state.count) == 0
    nov = scale_by_novograd(mu_dtype=jnp.float32)
    nov_state = nov.init(p)
    assert isinstance(nov_state, ScaleByNovogradState)
    assert nov_state.mu["w"].dtype == jnp.float32 and nov_state.nu["w"].shape == ()
    _, nov_state = nov.update({"w": jnp.asarray([3.0, 4.0])}, nov_state)
    assert nov_state.mu["w"].dtype == jnp.float32 and float(nov_state.nu["w"]) == 25.0
    mad_state = scale_by_madgrad(0.1).init(p)
    assert isinstance(mad_state, MadgradState)
    np.testing.assert_array_equal(mad_state.x0["w"], p["w"])
    # Inside an optimizer the one count is the optimizer's.
    assert gx.tree_get(adan().init(p), "inner_state")[0].count is None


def test_madgrad_is_differentiable_in_the_learning_rate_through_zero_gradients():
    """A zero gradient entry leaves G = 0, where the cube root's derivative is infinite; the
    step's derivative there is 0 (s = 0 too), not NaN."""
    params = {"w": jnp.asarray([1.0, -2.0, 0.5])}
    grads = [{"w": jnp.asarray([0.3 * (k + 1), 0.0, -0.2])} for k in range(5)]

    def final(lr):
        return jnp.sum(helpers.run_steps(madgrad(learning_rate=lr), params, grads)["w"][-1])

    grad = jax.grad(final)(0.05)
    h = 1e-6
    np.testing.assert_allclose(grad, (final(0.05 + h) - final(0.05 - h)) / (2 * h), rtol=1e-6)


# --------------------------------------------------------------------------------------------
# Bad arguments


def _numeric_invalid_cases():
    for name, factory in OURS.items():
        for argument, declaration in factory._injection.declarations.items():
            if declaration.live:
                for value in declaration.invalid_values():
                    yield pytest.param(factory, argument, value,
                                       id=f"{name}-{argument}={value}")


@pytest.mark.parametrize(("factory", "argument", "value"), list(_numeric_invalid_cases()))
def test_bad_numbers_are_refused_by_name(factory, argument, value):
    helpers.assert_refused_by_name(factory, argument, value, PARAMS)


@pytest.mark.parametrize("bad", [{"w": 0.5}, (1.0,), {"w": "yes"}, True, dict, object()])
def test_adan_refuses_a_mask_of_another_type_by_name(bad):
    with pytest.raises(TypeError, match="`mask`"):
        adan(weight_decay=0.1, mask=bad)


@pytest.mark.parametrize("bad", [{}, (), {"layer": {}}])
def test_adan_refuses_a_mask_without_leaves_by_name(bad):
    with pytest.raises(ValueError, match="`mask`"):
        adan(weight_decay=0.1, mask=bad)


def test_adan_accepts_bool_arrays_in_a_mask():
    mask = {"w": np.asarray([[True], [False], [True], [True]]), "b": jnp.asarray(False),
            "scalar": True}
    opt = adan(learning_rate=0.1, weight_decay=0.5, mask=mask)
    updates, _ = opt.update(jax.tree_util.tree_map(jnp.zeros_like, PARAMS), opt.init(PARAMS),
                            PARAMS)
    # A zero gradient: the step is the decay alone, -η λ θ where the mask is True.
    np.testing.assert_allclose(updates["w"], -0.05 * PARAMS["w"] * mask["w"], rtol=1e-15)
    np.testing.assert_array_equal(updates["b"], 0.0)


@pytest.mark.parametrize(("factory", "kwargs", "argument"), [
    (scale_by_adan, {"b1": 1.0}, "b1"),
    (scale_by_adan, {"b2": -0.1}, "b2"),
    (scale_by_adan, {"b3": 1.5}, "b3"),
    (scale_by_adan, {"eps": -1.0}, "eps"),
    (scale_by_adan, {"eps_root": float("nan")}, "eps_root"),
    (scale_by_novograd, {"b1": 1.0}, "b1"),
    (scale_by_novograd, {"b2": -0.5}, "b2"),
    (scale_by_novograd, {"eps": -1e-8}, "eps"),
    (scale_by_novograd, {"eps_root": -1.0}, "eps_root"),
    (scale_by_novograd, {"weight_decay": -0.1}, "weight_decay"),
    (scale_by_madgrad, {"learning_rate": -0.1}, "learning_rate"),
    (scale_by_madgrad, {"learning_rate": 0.1, "momentum": 1.0}, "momentum"),
    (scale_by_madgrad, {"learning_rate": 0.1, "eps": -1.0}, "eps"),
])
def test_transforms_refuse_bad_numbers_by_name(factory, kwargs, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        factory(**kwargs)


def test_scale_by_novograd_refuses_a_bad_mu_dtype_by_name():
    with pytest.raises(TypeError, match="`mu_dtype`"):
        scale_by_novograd(mu_dtype=jnp.int32)

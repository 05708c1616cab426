"""Live hyperparameters: read and changed mid-run through the state, with no recompilation,
matching torch when ``param_groups[0][...]`` is changed at the same step."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx as gx
from gradtx.optimizers.registry import OPTIMIZERS, with_torch_equivalent
from tests import helpers

BY_NAME = {"ids": lambda info: info.name}
# Where torch's learning rate acts later than the next step: Rprop uses it only as the initial
# step size, ASGD's new rate applies from the step after; Schedule-Free's y still moves toward
# its average z at learning rate 0 (the interpolation weight comes from the largest rate so far).
LEARNING_RATE_LATER = {"rprop", "asgd", "schedule_free_sgd", "schedule_free_adamw", "madgrad",
                       "mechanize_sgd"}
PARAMS = helpers.make_params()
GRADS = helpers.make_gradients(PARAMS, steps=40)


def _like(info, tree):
    """``tree`` as ``info``'s optimizer takes it: the same leaf names and entries (Muon gets
    every leaf as a matrix)."""
    return info.params_like(tree)


@pytest.mark.parametrize("info", OPTIMIZERS, **BY_NAME)
def test_every_numeric_argument_is_readable(info):
    kwargs = {k: v[-1] for k, v in info.grid.items()}
    kwargs = kwargs if info.constraint(kwargs) else dict(info.example)
    state = info.build(**kwargs).init(_like(info, PARAMS))
    for name, value in kwargs.items():
        if not info.declarations[name].live:  # switches, strings, counts: fixed at build time
            continue
        np.testing.assert_allclose(gx.get_hyperparam(state, name), value)


@pytest.mark.parametrize("info", OPTIMIZERS, **BY_NAME)
def test_unknown_name_lists_the_known_ones(info):
    state = info.build().init(_like(info, PARAMS))
    with pytest.raises(KeyError, match="no hyperparameter 'lr'.*learning_rate"):
        gx.get_hyperparam(state, "lr")
    with pytest.raises(KeyError, match="known: .*learning_rate"):
        gx.set_hyperparam(state, "not_a_name", 1.0)


def test_schedule_value_is_the_one_used_at_the_latest_step():
    opt = gx.sgd(learning_rate=lambda count: 0.1 / (1.0 + count))
    state = opt.init(PARAMS)
    assert float(gx.get_hyperparam(state, "learning_rate")) == pytest.approx(0.1)
    step = jax.jit(opt.update)
    for k in range(4):
        _, state = step(GRADS[k], state, PARAMS)
        assert float(gx.get_hyperparam(state, "learning_rate")) == pytest.approx(0.1 / (1 + k))


def test_setting_a_scheduled_value_makes_it_constant():
    opt = gx.sgd(learning_rate=lambda count: 0.1 / (1.0 + count))
    state = gx.set_hyperparam(opt.init(PARAMS), "learning_rate", 0.02)
    g = {k: np.ones_like(v) for k, v in PARAMS.items()}
    for _ in range(3):
        updates, state = opt.update(g, state, PARAMS)
        np.testing.assert_allclose(updates["b"], -0.02)


@pytest.mark.parametrize("info", OPTIMIZERS, **BY_NAME)
def test_setting_a_value_does_not_recompile_a_jitted_step(info):
    opt = info.build(**info.example)

    @jax.jit
    def step(params, state, grads):
        updates, state = opt.update(grads, state, params)
        return gx.apply_updates(params, updates), state

    params = jax.tree_util.tree_map(jnp.asarray, _like(info, PARAMS))
    grads = [jax.tree_util.tree_map(jnp.asarray, _like(info, g)) for g in GRADS[:3]]
    state = opt.init(params)
    params, state = step(params, state, grads[0])
    params, state = step(params, state, grads[1])
    compiled = step._cache_size()
    before = jax.tree_util.tree_map(np.asarray, params)
    state = gx.set_hyperparam(state, "learning_rate", 0.0)
    params, state = step(params, state, grads[2])
    assert step._cache_size() == compiled == 1
    if info.name in LEARNING_RATE_LATER:
        return
    # learning rate 0: this step moved nothing
    for key in PARAMS:
        np.testing.assert_array_equal(params[key], before[key])


def _torch_with_change(torch, info, kwargs, at_step, group_changes):
    params = _like(info, PARAMS)
    keys = sorted(params)
    tensors = [torch.tensor(params[k], requires_grad=True) for k in keys]
    topt = helpers.torch_optimizer(torch, info, tensors, kwargs)
    traj = []
    for t, g in enumerate(GRADS):
        if t == at_step:
            topt.param_groups[0].update(group_changes)
        g = _like(info, g)
        for tensor, k in zip(tensors, keys, strict=True):
            tensor.grad = torch.tensor(g[k])
        helpers.torch_step(torch, topt)
        traj.append({k: x.detach().numpy().copy() for k, x in zip(keys, tensors, strict=True)})
    return traj


def _gradtx_with_change(info, opt, at_step, changes):
    params = _like(info, PARAMS)
    state, traj = opt.init(params), []
    step = jax.jit(opt.update)
    for t, g in enumerate(GRADS):
        if t == at_step:
            for name, value in changes.items():
                state = gx.set_hyperparam(state, name, value)
        updates, state = step(_like(info, g), state, params)
        params = gx.apply_updates(params, updates)
        traj.append(params)
    return traj


CHANGES = [(info, {"learning_rate": 0.01}, {"lr": 0.01}) for info in with_torch_equivalent()]
CHANGES += [
    (next(i for i in OPTIMIZERS if i.name == "sgd"), {"momentum": 0.5}, {"momentum": 0.5}),
    (next(i for i in OPTIMIZERS if i.name == "adam"), {"b1": 0.8}, {"betas": (0.8, 0.999)}),
    (next(i for i in OPTIMIZERS if i.name == "rmsprop"), {"decay": 0.9}, {"alpha": 0.9}),
]


@pytest.mark.parametrize(
    ("info", "ours", "theirs"), CHANGES, ids=[f"{c[0].name}-{next(iter(c[1]))}" for c in CHANGES]
)
def test_changed_value_matches_torch_param_groups(info, ours, theirs, torch_float64):
    kwargs = {"learning_rate": 0.05}
    if info.name in ("sgd", "rmsprop"):
        kwargs["momentum"] = 0.9
    expected = _torch_with_change(torch_float64, info, kwargs, 20, theirs)
    got = _gradtx_with_change(info, info.build(**kwargs), 20, ours)
    for t, (want, have) in enumerate(zip(expected, got, strict=True)):
        for key in PARAMS:
            np.testing.assert_allclose(have[key], want[key], rtol=1e-9, atol=1e-12,
                                       err_msg=f"step {t + 1} {key}")


def test_a_python_zero_that_removed_a_step_is_readable_but_not_settable():
    state = gx.sgd(learning_rate=0.1).init(PARAMS)
    assert float(gx.get_hyperparam(state, "momentum")) == 0.0
    with pytest.raises(ValueError, match="'momentum' was built as a Python 0"):
        gx.set_hyperparam(state, "momentum", 0.9)
    # an array zero keeps the step, so it can be changed later
    state = gx.sgd(learning_rate=0.1, momentum=jnp.asarray(0.0)).init(PARAMS)
    state = gx.set_hyperparam(state, "momentum", 0.9)
    assert float(gx.get_hyperparam(state, "momentum")) == pytest.approx(0.9)


@pytest.mark.parametrize(
    ("name", "value"),
    [("learning_rate", -1.0), ("b1", 1.0), ("b2", -0.5), ("eps", float("nan"))],
)
def test_invalid_set_values_raise_naming_the_hyperparameter(name, value):
    state = gx.adam().init(PARAMS)
    with pytest.raises(ValueError, match=name):
        gx.set_hyperparam(state, name, value)


def test_set_keeps_dtype_and_works_under_jit():
    state = gx.adam().init(PARAMS)
    dtype = gx.get_hyperparam(state, "learning_rate").dtype
    new = jax.jit(lambda s, v: gx.set_hyperparam(s, "learning_rate", v))(state, 0.5)
    assert gx.get_hyperparam(new, "learning_rate").dtype == dtype
    assert float(gx.get_hyperparam(new, "learning_rate")) == 0.5
    assert float(gx.get_hyperparam(state, "learning_rate")) == pytest.approx(1e-3)  # unchanged


def test_nested_and_grouped_states_are_addressable():
    inner = gx.chain(gx.scale(1.0), gx.adam(0.1))
    state = inner.init(PARAMS)
    assert float(gx.get_hyperparam(state, "learning_rate")) == pytest.approx(0.1)

    groups = {"fast": gx.adam(0.1).init(PARAMS), "slow": gx.sgd(0.01).init(PARAMS)}
    with pytest.raises(KeyError, match="ambiguous.*fast/learning_rate.*slow/learning_rate"):
        gx.get_hyperparam(groups, "learning_rate")
    groups = gx.set_hyperparam(groups, "slow/learning_rate", 0.5)
    assert float(gx.get_hyperparam(groups, "slow/learning_rate")) == 0.5
    assert float(gx.get_hyperparam(groups, "fast/learning_rate")) == pytest.approx(0.1)
    assert float(gx.get_hyperparam(groups, "b1")) == pytest.approx(0.9)  # only adam has b1

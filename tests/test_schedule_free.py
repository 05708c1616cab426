"""Schedule-Free SGD and AdamW equal the authors' ``schedulefree`` package (SGDScheduleFree and
AdamWScheduleFree in train mode) to rtol 1e-9 in float64, step for step, across a grid of every
argument, jitted (hyperparameters traced under vmap, steps under lax.scan) and eager, for both of
the reference's implementations (``foreach`` off and on); the evaluation parameters equal the
reference's parameters after ``.eval()``, and switching the reference to eval mode and back
mid-run does not move it off gradtx's trajectory. Also: schedules, hyperparameters set between
steps, the transform on its own, the state's names and dtypes, and bad arguments.

The comparison is test_parity's: ``|ours - ref| <= 1e-9 |ref| + 1e-12 max(1, max|leaf|)``.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx as gx
from gradtx.transforms.schedule_free import ScheduleFreeState
from tests import helpers

RTOL = 1e-9
ATOL_SCALE = 1e-12
STEPS = 12
PARAMS = helpers.make_params()
# Zero gradients at the first step, entries of 1e-9 and 1e4 (helpers.make_gradients).
GRADS = helpers.make_gradients(PARAMS, steps=STEPS)
GRADS_STACKED = helpers.stack(GRADS)
KEYS = sorted(PARAMS)
# The reference is switched to eval mode after these steps (0-based) and its parameters
# recorded, then switched back to train mode before the next step.
EVAL_AFTER = (4, STEPS - 1)

FACTORIES = {"sgd": gx.schedule_free_sgd, "adamw": gx.schedule_free_adamw}
REFERENCE_CLASSES = {"sgd": "SGDScheduleFree", "adamw": "AdamWScheduleFree"}
# Every argument (the state dtypes aside), each value exercising a path: no warmup and a
# warmup shorter than the run, uniform and step-weighted averages, weights with and without
# the learning rate (warmup makes the difference), decay off and on.
GRIDS = {
    "sgd": {
        "learning_rate": [0.1, 1.0],
        "momentum": [0.5, 0.9],
        "weight_decay": [0.0, 0.1],
        "warmup_steps": [0.0, 3.0],
        "r": [0.0, 1.0],
        "weight_lr_power": [0.0, 2.0],
    },
    "adamw": {
        "learning_rate": [0.0025, 0.1],
        "b1": [0.5, 0.9],
        "b2": [0.9, 0.999],
        "eps": [1e-8, 0.1],
        "weight_decay": [0.0, 0.1],
        "warmup_steps": [0.0, 3.0],
        "r": [0.0, 1.0],
        "weight_lr_power": [0.0, 2.0],
    },
}
DEFAULTS = {
    "sgd": dict(learning_rate=1.0, momentum=0.9, weight_decay=0.0, warmup_steps=0, r=0.0,
                weight_lr_power=2.0),
    "adamw": dict(learning_rate=0.0025, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0,
                  warmup_steps=0, r=0.0, weight_lr_power=2.0),
}
# Every argument at a value other than its default, in one run.
LOADED = {
    "sgd": dict(learning_rate=0.3, momentum=0.7, weight_decay=0.05, warmup_steps=4, r=0.5,
                weight_lr_power=1.0),
    "adamw": dict(learning_rate=0.05, b1=0.8, b2=0.95, eps=1e-3, weight_decay=0.05,
                  warmup_steps=4, r=0.5, weight_lr_power=1.0),
}


def reference_kwargs(name, kwargs):
    """The reference's arguments: ``lr``, AdamW's ``betas`` pair, the rest by the same name."""
    full = {**DEFAULTS[name], **kwargs}
    out = {k: v for k, v in full.items() if k not in ("learning_rate", "b1", "b2")}
    out["lr"] = full["learning_rate"]
    if name == "adamw":
        out["betas"] = (full["b1"], full["b2"])
    return out


def _numpy(x):
    return x.detach().numpy().copy()


def reference(torch, name, kwargs, *, foreach=False, grads=GRADS, lr_lambda=None,
              changes=None):
    """The reference's parameters after each step (stacked: leaf key -> array with a leading
    step axis) and its parameters in eval mode after the steps of ``EVAL_AFTER`` (step ->
    leaf key -> array). ``changes``: step -> param-group entries set before that step."""
    import schedulefree

    tensors = [torch.tensor(np.asarray(PARAMS[k]), dtype=torch.float64, requires_grad=True)
               for k in KEYS]
    opt = getattr(schedulefree, REFERENCE_CLASSES[name])(
        tensors, **reference_kwargs(name, kwargs), foreach=foreach
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda) if lr_lambda else None
    opt.train()
    traj, evals = [], {}
    for t, g in enumerate(grads):
        for key, value in (changes or {}).get(t, {}).items():
            opt.param_groups[0][key] = value
        for tensor, k in zip(tensors, KEYS, strict=True):
            # A fresh tensor each step: the reference changes its gradients in place.
            tensor.grad = torch.tensor(np.asarray(g[k]), dtype=torch.float64)
        opt.step()
        if sched is not None:
            sched.step()
        traj.append({k: _numpy(x) for k, x in zip(KEYS, tensors, strict=True)})
        if t in EVAL_AFTER:
            opt.eval()
            evals[t] = {k: _numpy(x) for k, x in zip(KEYS, tensors, strict=True)}
            opt.train()
    return helpers.np_stack(traj), evals


@functools.cache
def _reference_cached(name, items, foreach):
    import torch

    return reference(torch, name, dict(items), foreach=foreach)


def reference_run(name, kwargs, foreach=False):
    """The reference's run for these arguments, computed once for the jit and eager tests."""
    return _reference_cached(name, tuple(sorted(kwargs.items())), foreach)


def _record(state, params):
    return gx.schedule_free_eval_params(state, params)


def run_steps(opt, params=PARAMS, grads=GRADS):
    """Eager steps: the parameters and the evaluation parameters after each step, stacked."""
    state, traj, evals = opt.init(params), [], []
    for g in grads:
        updates, state = opt.update(g, state, params)
        params = gx.apply_updates(params, updates)
        traj.append(params)
        evals.append(_record(state, params))
    return helpers.stack(traj), helpers.stack(evals)


def run_scan(opt, params=PARAMS, grads_stacked=GRADS_STACKED):
    """:func:`run_steps` as one ``lax.scan``."""

    def step(carry, g):
        params, state = carry
        updates, state = opt.update(g, state, params)
        params = gx.apply_updates(params, updates)
        return (params, state), (params, _record(state, params))

    _, out = jax.lax.scan(step, (params, opt.init(params)), grads_stacked)
    return out


def _close(got, want, message):
    want = np.asarray(want)
    atol = ATOL_SCALE * max(1.0, float(np.max(np.abs(want), initial=0.0)))
    np.testing.assert_allclose(np.asarray(got), want, rtol=RTOL, atol=atol, err_msg=message)


def assert_matches(expected, ours, message, index=None):
    """``ours`` (stacked parameters and evaluation parameters, with a leading batch axis when
    ``index`` is given) equals the reference's run at every step and at its eval points."""
    (traj, evals), (ref_traj, ref_evals) = ours, expected
    pick = (lambda x: np.asarray(x)[index]) if index is not None else np.asarray
    for k in KEYS:
        helpers.assert_close_per_step(pick(traj[k]), ref_traj[k], f"param {k!r}, {message}",
                                      rtol=RTOL, atol_scale=ATOL_SCALE)
        for t, ref_x in ref_evals.items():
            _close(pick(evals[k])[t], ref_x[k], f"eval params {k!r} after step {t + 1}, {message}")


# ---------------------------------------------------------------------------------------------
# The grid, traced under vmap: jitted and eager, against both reference implementations.


@pytest.mark.parametrize("mode", ["jit", "eager"])
@pytest.mark.parametrize("name", list(FACTORIES))
def test_grid_matches_reference(name, mode):
    points = helpers.product(GRIDS[name])
    hyper = {k: jnp.asarray([p[k] for p in points], jnp.float64) for k in GRIDS[name]}
    factory = FACTORIES[name]
    if mode == "jit":
        out = jax.jit(jax.vmap(lambda hp: run_scan(factory(**hp))))(hyper)
    else:
        out = jax.vmap(lambda hp: run_steps(factory(**hp)))(hyper)
    out = jax.tree_util.tree_map(np.asarray, out)
    for i, point in enumerate(points):
        for foreach in (False, True):
            assert_matches(reference_run(name, point, foreach), out,
                           f"{point}, foreach={foreach}", index=i)


def _python_float_cases():
    for name in FACTORIES:
        points = [{}, {"weight_decay": 0.1}, {"warmup_steps": 3, "r": 1.0}, LOADED[name]]
        for point in points:
            label = ",".join(f"{k}={v}" for k, v in point.items()) or "defaults"
            yield pytest.param(name, point, id=f"{name}[{label}]")


@pytest.mark.parametrize(("name", "kwargs"), list(_python_float_cases()))
def test_python_numbers_match_reference(name, kwargs):
    """Hyperparameters as Python numbers (a Python 0 weight decay leaves its step out),
    eagerly (each update one compiled program) and in one jitted scan."""
    opt = FACTORIES[name](**kwargs)
    expected = reference_run(name, kwargs)
    assert_matches(expected, run_steps(opt), kwargs)
    assert_matches(expected, jax.jit(run_scan, static_argnums=0)(opt), kwargs)


@pytest.mark.parametrize("name", list(FACTORIES))
def test_schedule_matches_reference_with_lambda_lr(name, torch_float64):
    """A schedule as learning rate equals the reference driven by torch's LambdaLR (stepped
    after every step): the reference reads its group's ``lr`` at each step, warmup on top."""
    base = 0.2 if name == "sgd" else 0.05

    def factor(count):
        return 0.9**count

    kwargs = {"learning_rate": base, "warmup_steps": 3, "r": 1.0}
    expected = reference(torch_float64, name, kwargs, lr_lambda=factor)
    opt = FACTORIES[name](**{**kwargs, "learning_rate": lambda count: base * factor(count)})
    assert_matches(expected, run_steps(opt), "schedule")
    assert_matches(expected, jax.jit(run_scan, static_argnums=0)(opt), "schedule")


@pytest.mark.parametrize("name", list(FACTORIES))
def test_hyperparameters_set_between_steps_act_as_in_the_reference(name, torch_float64):
    """``set_hyperparam`` before a step acts as changing the reference's param group there,
    the interpolation weight included (the evaluation parameters then use the new one)."""
    beta = "momentum" if name == "sgd" else "b1"
    group_beta = "momentum" if name == "sgd" else "betas"
    new_beta = 0.6 if name == "sgd" else (0.6, 0.999)
    changes = {2: {"lr": 0.05}, 6: {group_beta: new_beta, "lr": 0.2}}
    expected = reference(torch_float64, name, {"learning_rate": 0.1}, changes=changes)
    opt = FACTORIES[name](learning_rate=0.1)
    params, state = PARAMS, opt.init(PARAMS)
    traj, evals = [], []
    for t, g in enumerate(GRADS):
        if t == 2:
            state = gx.set_hyperparam(state, "learning_rate", 0.05)
        if t == 6:
            state = gx.set_hyperparam(state, "learning_rate", 0.2)
            state = gx.set_hyperparam(state, beta, 0.6)
        updates, state = opt.update(g, state, params)
        params = gx.apply_updates(params, updates)
        traj.append(params)
        evals.append(gx.schedule_free_eval_params(state, params))
    assert_matches(expected, (helpers.stack(traj), helpers.stack(evals)), "changes")


# ---------------------------------------------------------------------------------------------
# The evaluation parameters, the transform on its own, the state.


def test_transform_on_its_own_equals_the_optimizers():
    schedule = lambda count: 0.3 * 0.95**count  # noqa: E731
    sgd_alone = gx.chain(
        gx.add_decayed_weights(0.1), gx.scale_by_schedule_free(schedule, 0.8, 3, 1.0, 1.0)
    )
    sgd = gx.schedule_free_sgd(schedule, momentum=0.8, weight_decay=0.1, warmup_steps=3,
                               r=1.0, weight_lr_power=1.0)
    adamw_alone = gx.chain(
        gx.divide_by_root(gx.identity(), gx.chain(gx.ema_of_squares(0.99),
                                                  gx.bias_correction(0.99)), eps=1e-6),
        gx.add_decayed_weights(0.1),
        gx.scale_by_schedule_free(schedule, 0.8, 3, 1.0, 1.0),
    )
    adamw = gx.schedule_free_adamw(schedule, b1=0.8, b2=0.99, eps=1e-6, weight_decay=0.1,
                                   warmup_steps=3, r=1.0, weight_lr_power=1.0)
    for alone, optimizer in ((sgd_alone, sgd), (adamw_alone, adamw)):
        (a, a_eval), (b, b_eval) = run_steps(alone), run_steps(optimizer)
        for k in KEYS:
            np.testing.assert_allclose(a[k], b[k], rtol=1e-14, atol=1e-15)
            np.testing.assert_allclose(a_eval[k], b_eval[k], rtol=1e-14, atol=1e-15)
        own = alone.init(PARAMS)[-1]
        assert isinstance(own, ScheduleFreeState) and int(own.count) == 0


def test_eval_params_before_a_step_are_the_params_and_work_through_wrappers():
    params = {"w": jnp.asarray([[1.0, -2.0]]), "b": jnp.asarray(3.0)}
    opt = gx.schedule_free_adamw(learning_rate=0.1, weight_decay=0.01)
    state = opt.init(params)
    for k in params:
        np.testing.assert_array_equal(gx.schedule_free_eval_params(state, params)[k], params[k])
    grads = {"w": jnp.asarray([[1.0, 0.5]]), "b": jnp.asarray(-1.0)}
    for _ in range(3):
        updates, state = opt.update(grads, state, params)
        params = gx.apply_updates(params, updates)
    want = gx.schedule_free_eval_params(state, params)
    # Inside a chain, under jit, inside a dict, and in a state whose NamedTuples became dicts
    # (as a checkpoint restored without its target structure): found by its names.
    chained = {"opt": (gx.EmptyState(), state)}
    plain = state.inner_state[-1]._asdict()
    for where in (chained, {"inner": {"state": plain}}):
        got = jax.jit(gx.schedule_free_eval_params)(where, params)
        for k in params:
            np.testing.assert_array_equal(got[k], want[k])
    with pytest.raises(ValueError, match="2 Schedule-Free states side by side"):
        gx.schedule_free_eval_params((state, state), params)
    with pytest.raises(ValueError, match="holds no Schedule-Free state"):
        gx.schedule_free_eval_params(gx.adamw().init(params), params)


def test_eval_params_with_parameters_named_like_the_state_entries():
    """Parameters named ``z`` or ``interpolation`` make those names ambiguous in the state
    (``z/z``); the Schedule-Free state is still found, by its type."""
    params = {"z": jnp.asarray([1.0, -1.0]), "interpolation": jnp.asarray(2.0)}
    opt = gx.schedule_free_sgd(learning_rate=0.1, momentum=0.5)
    state = opt.init(params)
    for _ in range(2):
        updates, state = opt.update(params, state, params)
        params = gx.apply_updates(params, updates)
    z = state.inner_state[-1].z
    got = gx.schedule_free_eval_params(state, params)
    for k in params:
        np.testing.assert_allclose(got[k], params[k] - (z[k] - params[k]), rtol=1e-15)


def test_eval_params_of_complex_parameters_are_those_of_their_real_pairs():
    rng = np.random.default_rng(0)
    params = {"w": jnp.asarray(rng.normal(size=3) + 1j * rng.normal(size=3))}
    grads = [{"w": jnp.asarray(rng.normal(size=3) + 1j * rng.normal(size=3))} for _ in range(4)]

    def pair(tree):
        return jax.tree_util.tree_map(lambda z: jnp.stack([z.real, z.imag]), tree)

    opt = gx.schedule_free_sgd(learning_rate=0.1, weight_decay=0.1, warmup_steps=2)
    (traj, evals), (real_traj, real_evals) = (
        run_steps(opt, params, grads), run_steps(opt, pair(params), [pair(g) for g in grads])
    )
    assert evals["w"].dtype == jnp.complex128
    np.testing.assert_allclose(pair(traj)["w"], real_traj["w"].swapaxes(0, 1), rtol=1e-14)
    np.testing.assert_allclose(pair(evals)["w"], real_evals["w"].swapaxes(0, 1), rtol=1e-14)


def test_state_names_and_dtypes():
    params = {"w": jnp.ones((3, 2), jnp.float32), "b": jnp.ones(2, jnp.float32)}
    state = gx.schedule_free_adamw(learning_rate=0.1, b1=0.8, z_dtype=jnp.bfloat16).init(params)
    assert gx.tree_get(state, "z")["w"].dtype == jnp.bfloat16
    assert gx.tree_get(state, "nu")["w"].dtype == jnp.float32
    for name in ("weight_sum", "lr_max"):
        assert float(gx.tree_get(state, name)) == 0.0
    assert math.isclose(float(gx.tree_get(state, "interpolation")), 0.8)
    assert int(gx.tree_get(state, "count")) == 0
    state = gx.schedule_free_sgd().init(params)
    np.testing.assert_array_equal(gx.tree_get(state, "z")["w"], params["w"])
    assert gx.tree_get(state, "z")["w"] is not params["w"]  # a copy, so both can be donated
    opt = gx.schedule_free_sgd(learning_rate=0.5, warmup_steps=2)
    _, state = opt.update(params, opt.init(params), params)
    assert float(gx.tree_get(state, "lr_max")) == 0.25  # warmed up: 0.5 * 1/2
    assert float(gx.tree_get(state, "weight_sum")) == 0.0625


def test_zero_learning_rate_and_weights_keep_the_parameters():
    """A zero learning rate gives zero weights (weight_sum 0, c = 0, as the reference's
    ZeroDivisionError branch): nothing moves and nothing is NaN."""
    opt = gx.schedule_free_sgd(learning_rate=0.0)
    params = {"w": jnp.asarray([1.0, 2.0])}
    state = opt.init(params)
    for _ in range(2):
        updates, state = opt.update({"w": jnp.asarray([1.0, -1.0])}, state, params)
        params = gx.apply_updates(params, updates)
    np.testing.assert_array_equal(params["w"], [1.0, 2.0])
    np.testing.assert_array_equal(gx.schedule_free_eval_params(state, params)["w"], [1.0, 2.0])


# ---------------------------------------------------------------------------------------------
# Bad arguments.

BAD = {
    "sgd": [
        ("learning_rate", -0.1), ("learning_rate", math.nan), ("momentum", 0.0),
        ("momentum", 1.0), ("momentum", -0.5), ("momentum", 1.5), ("weight_decay", -0.1),
        ("warmup_steps", -1.0), ("r", -1.0), ("weight_lr_power", -2.0), ("r", math.nan),
    ],
    "adamw": [
        ("learning_rate", -0.1), ("b1", 0.0), ("b1", 1.0), ("b2", 1.0), ("b2", -0.1),
        ("eps", -1e-8), ("weight_decay", -0.1), ("warmup_steps", -1.0), ("r", -1.0),
        ("weight_lr_power", -2.0), ("weight_lr_power", math.nan),
    ],
}
# The arguments the reference itself checks (SGDScheduleFree; AdamWScheduleFree checks none).
REFERENCE_CHECKS = {"sgd": {"learning_rate", "momentum", "weight_decay"}, "adamw": set()}


def _bad_cases():
    for name, cases in BAD.items():
        for argument, value in cases:
            yield pytest.param(name, argument, value, id=f"{name}-{argument}={value}")


@pytest.mark.parametrize(("name", "argument", "value"), list(_bad_cases()))
def test_bad_arguments_raise_naming_them(name, argument, value, torch_float64):
    helpers.assert_refused_by_name(FACTORIES[name], argument, value, PARAMS)
    if argument in REFERENCE_CHECKS[name] and not math.isnan(value):
        with pytest.raises(ValueError):
            reference(torch_float64, name, {argument: value}, grads=GRADS[:1])


def test_transform_refuses_bad_arguments_by_name():
    for argument, value in (("learning_rate", -1.0), ("b1", 0.0), ("b1", 1.0),
                            ("warmup_steps", -1), ("r", -0.5), ("weight_lr_power", -1.0)):
        with pytest.raises(ValueError, match=f"`{argument}`"):
            gx.scale_by_schedule_free(**{"learning_rate": 0.1, argument: value})
    with pytest.raises(ValueError, match="needs the parameters"):
        opt = gx.scale_by_schedule_free(0.1)
        opt.update(PARAMS, opt.init(PARAMS))

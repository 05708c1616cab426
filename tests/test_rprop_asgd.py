"""Rprop and ASGD equal torch.optim.Rprop and torch.optim.ASGD to rtol 1e-9 in float64 over 50
steps, across a grid of every argument, jitted (hyperparameters traced under vmap, steps under
lax.scan) and eager; their state (Rprop's step sizes, ASGD's eta, mu and averaged parameters)
equals torch's at every step; bad arguments are refused by name.

The comparison is test_parity's: ``|ours - torch| <= 1e-9 |torch| + 1e-12 max(1, max|leaf|)``.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx as gx
from gradtx.optimizers.asgd import asgd
from gradtx.optimizers.rprop import rprop
from gradtx.transforms.averaged_sgd import polyak_average, scale_by_asgd_learning_rate
from gradtx.transforms.rprop import scale_by_rprop
from gradtx.wrappers.averaging import averaged_params, with_param_average
from tests import helpers

RTOL = 1e-9
ATOL_SCALE = 1e-12
PARAMS = helpers.make_params()
GRADS = helpers.make_gradients(PARAMS)
GRADS_STACKED = helpers.stack(GRADS)
KEYS = sorted(PARAMS)

FACTORIES = {"rprop": rprop, "asgd": asgd}
TORCH_CLASSES = {"rprop": "Rprop", "asgd": "ASGD"}
# The state compared with torch's at every step: gradtx name -> torch name.
STATE_NAMES = {
    "rprop": {"step_size": "step_size", "prev": "prev"},
    "asgd": {"ax": "ax", "eta": "eta", "mu": "mu"},
}
GRIDS = {
    "rprop": {
        # 100 is above two of the max step sizes: the first steps are clipped.
        "learning_rate": [1e-3, 0.1, 100.0],
        "eta_minus": [0.1, 0.5, 0.9],
        "eta_plus": [1.1, 1.2, 2.0],
        "min_step_size": [0.0, 1e-6, 1e-3],
        # 1e-4 is below the min step size 1e-3: torch's clamp then gives the max.
        "max_step_size": [1e-4, 1.0, 50.0],
        "maximize": [False, True],
    },
    "asgd": {
        "learning_rate": [1e-3, 0.01, 0.1],
        "lambd": [0.0, 1e-4, 0.1],
        "alpha": [0.0, 0.75, 1.0],
        # 0: averaging from step 2 (a running mean); 7.5: from step 10, with weights that are
        # not 1/k; 1e6: never (the average is the latest parameters).
        "t0": [0.0, 7.5, 1e6],
        "weight_decay": [0.0, 0.1],
        "maximize": [False, True],
    },
}
DEFAULTS = {
    "rprop": dict(learning_rate=1e-2, eta_minus=0.5, eta_plus=1.2, min_step_size=1e-6,
                  max_step_size=50.0, maximize=False),
    "asgd": dict(learning_rate=1e-2, lambd=1e-4, alpha=0.75, t0=1e6, weight_decay=0.0,
                 maximize=False),
}


def torch_kwargs(name, kwargs):
    """torch's arguments: ``lr``, and Rprop's ``etas`` and ``step_sizes`` pairs."""
    full = {**DEFAULTS[name], **kwargs}
    out = {k: v for k, v in full.items()
           if k not in ("learning_rate", "eta_minus", "eta_plus", "min_step_size",
                        "max_step_size")}
    out["lr"] = full["learning_rate"]
    if name == "rprop":
        out["etas"] = (full["eta_minus"], full["eta_plus"])
        out["step_sizes"] = (full["min_step_size"], full["max_step_size"])
    return out


def _numpy(x):
    return x.detach().numpy().copy()


def torch_run(torch, name, kwargs, params=PARAMS, grads=GRADS, lr_lambda=None, **extra):
    """Parameters and state after each step of torch, stacked (leading axis = step): leaf key
    -> array, and state name -> leaf key -> array."""
    tensors = [torch.tensor(np.asarray(params[k]), dtype=torch.float64, requires_grad=True)
               for k in KEYS]
    if extra.get("differentiable"):
        tensors = [x.clone() for x in tensors]  # a differentiable step needs non-leaf tensors
    opt = getattr(torch.optim, TORCH_CLASSES[name])(
        tensors, **torch_kwargs(name, kwargs), **extra
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda) if lr_lambda else None
    traj, states = [], []
    for g in grads:
        for tensor, k in zip(tensors, KEYS, strict=True):
            tensor.grad = torch.tensor(np.asarray(g[k]), dtype=torch.float64)
        opt.step()
        if sched is not None:
            sched.step()
        traj.append({k: _numpy(t) for k, t in zip(KEYS, tensors, strict=True)})
        states.append({
            ours: {k: _numpy(opt.state[t][theirs]) for k, t in zip(KEYS, tensors, strict=True)}
            for ours, theirs in STATE_NAMES[name].items()
        })
    return _stacked(traj), _stacked(states)


def _stacked(trees):
    return jax.tree_util.tree_map(lambda *xs: np.stack(xs), *trees)


@functools.cache
def _torch_cached(name, items):
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        return torch_run(torch, name, dict(items))
    finally:
        torch.set_default_dtype(previous)


def torch_reference(name, kwargs):
    """torch's run for these arguments, computed once for the jit and the eager test."""
    return _torch_cached(name, tuple(sorted(kwargs.items())))


def _state_of(name, state):
    """The compared state of a gradtx state: a dict of trees (scalars for eta and mu)."""
    out = {}
    for ours in STATE_NAMES[name]:
        out[ours] = averaged_params(state) if ours == "ax" else gx.tree_get(state, ours)
    return out


def run_steps(name, opt, params, grads):
    return helpers.run_steps_with_state(opt, params, grads, functools.partial(_state_of, name))


def run_scan(name, opt, params, grads_stacked):
    return helpers.run_scan_with_state(opt, params, grads_stacked,
                                       functools.partial(_state_of, name))


def _close(got, want, message):
    want = np.asarray(want)
    atol = ATOL_SCALE * max(1.0, float(np.max(np.abs(want), initial=0.0)))
    np.testing.assert_allclose(np.asarray(got), want, rtol=RTOL, atol=atol, err_msg=message)


def _close_steps(got, want, message):
    """:func:`_close` at every step at once (leading axis = step); a failure is reported at
    its first step."""
    got, want = np.asarray(got), np.asarray(want)
    flat = np.abs(want).reshape(len(want), -1)
    atol = ATOL_SCALE * np.maximum(1.0, flat.max(axis=1, initial=0.0))
    atol = atol.reshape((-1,) + (1,) * (want.ndim - 1))
    ok = (np.abs(got - want) <= RTOL * np.abs(want) + atol) | (np.isnan(got) & np.isnan(want))
    if not ok.all():
        t = int(np.argmin(ok.reshape(len(ok), -1).all(axis=1)))
        _close(got[t], want[t], f"step {t + 1}, {message}")


def assert_matches(name, expected, ours, kwargs, index=None):
    """``ours`` (stacked params and state, with a leading batch axis when ``index`` is given)
    equals torch's run ``expected`` at every step."""
    traj, states = ours
    pick = (lambda x: x[index]) if index is not None else (lambda x: x)
    torch_traj, torch_states = expected
    for k in KEYS:
        _close_steps(pick(traj[k]), torch_traj[k], f"param {k!r}, {kwargs}")
    for field, per_key in torch_states.items():
        for k in KEYS:
            scalar = field in ("eta", "mu")  # one per optimizer here, one per tensor in torch
            got = pick(states[field] if scalar else states[field][k])
            _close_steps(got, per_key[k], f"state {field!r}[{k!r}], {kwargs}")


def _grid_cases():
    for name, grid in GRIDS.items():
        for maximize in grid["maximize"]:
            yield pytest.param(name, {"maximize": maximize}, id=f"{name}[maximize={maximize}]")


@pytest.mark.parametrize("mode", ["jit", "eager"])
@pytest.mark.parametrize(("name", "static"), list(_grid_cases()))
def test_grid_matches_torch(name, static, mode):
    """The full product of the numeric grid, vmapped over traced hyperparameters, per bool."""
    numeric = {k: v for k, v in GRIDS[name].items() if k != "maximize"}
    points = helpers.product(numeric)
    hyper = {k: jnp.asarray([p[k] for p in points], jnp.float64) for k in numeric}
    factory = FACTORIES[name]

    if mode == "jit":
        def run(hp):
            return run_scan(name, factory(**hp, **static), PARAMS, GRADS_STACKED)
        out = jax.jit(jax.vmap(run))(hyper)
    else:
        def run(hp):
            return run_steps(name, factory(**hp, **static), PARAMS, GRADS)
        out = jax.vmap(run)(hyper)

    for i, point in enumerate(points):
        kwargs = {**point, **static}
        assert_matches(name, torch_reference(name, kwargs), out, kwargs, index=i)


def _python_float_cases():
    for name, grid in GRIDS.items():
        points = [{}] + [{k: v} for k, values in grid.items() for v in values]
        for point in points:
            label = ",".join(f"{k}={v}" for k, v in point.items()) or "defaults"
            yield pytest.param(name, point, id=f"{name}[{label}]")


@pytest.mark.parametrize(("name", "kwargs"), list(_python_float_cases()))
def test_python_floats_match_torch(name, kwargs):
    """Hyperparameters as Python numbers (a Python 0 weight decay leaves its step out), eager
    and jitted."""
    expected = torch_reference(name, kwargs)
    opt = FACTORIES[name](**kwargs)
    assert_matches(name, expected, run_steps(name, opt, PARAMS, GRADS), kwargs)
    compiled = jax.jit(lambda p, g: run_scan(name, opt, p, g))(PARAMS, GRADS_STACKED)
    assert_matches(name, expected, compiled, kwargs)


TORCH_IMPLEMENTATIONS = [
    pytest.param({"foreach": False}, id="single-tensor"),
    pytest.param({"foreach": True}, id="foreach"),
    pytest.param({"differentiable": True}, id="differentiable"),
]
LOADED = {
    "rprop": {"learning_rate": 0.1, "eta_minus": 0.3, "eta_plus": 1.5, "maximize": True},
    "asgd": {"learning_rate": 0.05, "lambd": 0.1, "t0": 5.0, "weight_decay": 0.1,
             "maximize": True},
}


@pytest.mark.parametrize("extra", TORCH_IMPLEMENTATIONS)
@pytest.mark.parametrize("name", list(FACTORIES))
def test_torch_implementation_switches_do_not_matter(name, extra, torch_float64):
    """torch's ``foreach`` and ``differentiable`` give the same run and state to rtol 1e-9.
    ``capturable`` needs an
    accelerator: torch refuses it on CPU, and its step is the single-tensor one written with
    ``torch.where`` and tensor scalars."""
    expected = torch_run(torch_float64, name, LOADED[name], **extra)
    ours = run_steps(name, FACTORIES[name](**LOADED[name]), PARAMS, GRADS)
    assert_matches(name, expected, ours, extra)


@pytest.mark.parametrize("name", list(FACTORIES))
def test_schedule_matches_torch_lambda_lr(name, torch_float64):
    """A schedule as learning rate equals torch's LambdaLR stepped after every step: Rprop
    reads it only at the first step; ASGD's eta takes each step's value for the next."""
    base = 0.05

    def factor(count):
        return 0.95**count

    expected = torch_run(torch_float64, name, {"learning_rate": base}, lr_lambda=factor)
    opt = FACTORIES[name](learning_rate=lambda count: base * factor(count))
    assert_matches(name, expected, run_steps(name, opt, PARAMS, GRADS), "schedule")
    compiled = jax.jit(lambda p, g: run_scan(name, opt, p, g))(PARAMS, GRADS_STACKED)
    assert_matches(name, expected, compiled, "schedule")


@pytest.mark.parametrize("name", list(FACTORIES))
def test_learning_rate_set_between_steps_acts_as_in_torch(name, torch_float64):
    """A learning rate set before the first step is used there (torch creates its state at the
    first step); set later, Rprop ignores it and ASGD uses it from the next step on."""
    torch = torch_float64
    changes = {0: 0.2, 10: 0.001}  # step index -> new learning rate before that step
    tensors = [torch.tensor(PARAMS[k], requires_grad=True) for k in KEYS]
    topt = getattr(torch.optim, TORCH_CLASSES[name])(tensors, **torch_kwargs(name, {}))
    opt = FACTORIES[name]()
    params, state = PARAMS, opt.init(PARAMS)
    for t, g in enumerate(GRADS):
        if t in changes:
            topt.param_groups[0]["lr"] = changes[t]
            state = gx.set_hyperparam(state, "learning_rate", changes[t])
        for tensor, k in zip(tensors, KEYS, strict=True):
            tensor.grad = torch.tensor(g[k])
        topt.step()
        updates, state = opt.update(g, state, params)
        params = gx.apply_updates(params, updates)
        for tensor, k in zip(tensors, KEYS, strict=True):
            _close(params[k], _numpy(tensor), f"step {t + 1}, {k!r}")


# ---------------------------------------------------------------------------------------------
# The transforms on their own (own step counts) and the averaged parameters.


def test_transforms_on_their_own_equal_the_optimizers():
    # A schedule as Rprop's learning rate: only its value at the first step is used.
    rprop_chain = gx.chain(
        scale_by_rprop(lambda count: 0.1 + count, 0.3, 1.5, 1e-3, 1.0), gx.scale(-1.0)
    )
    asgd_chain = gx.chain(
        gx.add_decayed_weights(0.1),
        scale_by_asgd_learning_rate(lambda count: 0.05 * 0.9**count, 0.1, 0.5),
        polyak_average(3.0),
    )
    pairs = [
        (rprop_chain, rprop(0.1, 0.3, 1.5, 1e-3, 1.0)),
        (asgd_chain, asgd(lambda count: 0.05 * 0.9**count, 0.1, 0.5, 3.0)),
    ]
    for alone, optimizer in pairs:
        a, b = helpers.run_steps(alone, PARAMS, GRADS), helpers.run_steps(optimizer, PARAMS, GRADS)
        for k in KEYS:
            np.testing.assert_allclose(a[k], b[k], rtol=1e-14, atol=1e-15)
        counts = [s.count for s in alone.init(PARAMS) if "count" in getattr(s, "_fields", ())]
        assert counts and all(int(c) == 0 for c in counts)  # own counts, outside an optimizer


def test_averaged_params_reads_asgds_average():
    opt = asgd(learning_rate=0.1, t0=0.0)
    state = opt.init(PARAMS)
    for k in KEYS:  # torch's ax starts at zero
        np.testing.assert_array_equal(averaged_params(state)[k], np.zeros_like(PARAMS[k]))
    updates, state = opt.update(GRADS[0], state, PARAMS)
    first = gx.apply_updates(PARAMS, updates)
    assert averaged_params(state) is gx.tree_get(state, "ax")
    # Inside a chain, and on a traced state.
    chained = gx.chain(gx.identity(), opt)
    _, chained_state = jax.jit(chained.update)(GRADS[0], chained.init(PARAMS), PARAMS)
    for k in KEYS:
        np.testing.assert_array_equal(jax.jit(averaged_params)(chained_state)[k], first[k])
    # with_param_average around ASGD: the outer average is the one returned.
    wrapped = with_param_average(asgd(learning_rate=0.1, t0=0.0), decay=0.5)
    wrapped_state = wrapped.init(PARAMS)
    assert averaged_params(wrapped_state) is wrapped_state.average
    # Two averages side by side are ambiguous; an optimizer that does not average has none.
    with pytest.raises(ValueError, match="2 parameter averages side by side"):
        averaged_params((state, state))
    with pytest.raises(ValueError, match="holds no parameter average"):
        averaged_params(rprop().init(PARAMS))


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_average_follows_the_parameters_until_averaging_starts(jit):
    """While mu = 1 (steps up to t0 + 2) the average is the parameters, as torch copies them
    (up to the last bit: XLA may fuse the step's multiply and add differently inside the update
    than in apply_updates); from the next step on it is a weighted mean."""
    opt = asgd(learning_rate=0.1, lambd=0.01, t0=3.0)
    update = jax.jit(opt.update) if jit else opt.update
    params, state = PARAMS, opt.init(PARAMS)
    for t, g in enumerate(GRADS[1:8], start=1):
        updates, state = update(g, state, params)
        params = gx.apply_updates(params, updates)
        same = [np.allclose(averaged_params(state)[k], params[k], rtol=1e-15, atol=0)
                for k in KEYS]
        assert all(same) == (t <= 5), t


def test_state_names():
    state = rprop(learning_rate=0.3).init(PARAMS)
    assert set(gx.tree_get(state, "step_size")) == set(KEYS)
    np.testing.assert_array_equal(gx.tree_get(state, "step_size")["w"], np.full((4, 3), 0.3))
    np.testing.assert_array_equal(gx.tree_get(state, "prev")["w"], np.zeros((4, 3)))
    assert int(gx.tree_get(state, "count")) == 0
    state = asgd(learning_rate=0.3).init(PARAMS)
    assert float(gx.tree_get(state, "eta")) == 0.3
    assert float(gx.tree_get(state, "mu")) == 1.0
    assert set(gx.tree_get(state, "ax")) == set(KEYS)


def test_non_finite_gradients():
    """Rprop: an Inf moves the parameter by one step; a NaN reaches the parameter (torch's
    sign of NaN is 0, so there the parameter would stay) and leaves the step size alone."""
    params = {"w": jnp.zeros(3)}
    opt = rprop(learning_rate=0.1)
    state = opt.init(params)
    updates, state = opt.update({"w": jnp.asarray([1.0, 1.0, 1.0])}, state, params)
    params = gx.apply_updates(params, updates)
    updates, state = opt.update({"w": jnp.asarray([math.inf, math.nan, 1.0])}, state, params)
    np.testing.assert_allclose(updates["w"][jnp.asarray([0, 2])], [-0.12, -0.12])
    assert bool(jnp.isnan(updates["w"][1]))
    np.testing.assert_allclose(gx.tree_get(state, "step_size")["w"], [0.12, 0.1, 0.12])


# ---------------------------------------------------------------------------------------------
# Bad arguments.

BAD = {
    "rprop": [
        ("learning_rate", -1e-3), ("learning_rate", math.nan),
        ("eta_minus", 0.0), ("eta_minus", 1.0), ("eta_minus", 1.5), ("eta_minus", -0.5),
        ("eta_plus", 1.0), ("eta_plus", 0.5), ("eta_plus", math.nan),
        ("min_step_size", -1e-6), ("max_step_size", -1.0), ("max_step_size", math.nan),
    ],
    "asgd": [
        ("learning_rate", -1e-3), ("lambd", -1e-4), ("alpha", -0.75), ("t0", -1.0),
        ("weight_decay", -0.1), ("t0", math.nan), ("alpha", math.nan),
    ],
}
# The arguments torch itself checks (the others it accepts whatever their value).
TORCH_CHECKS = {
    "rprop": {"learning_rate", "eta_minus", "eta_plus"},
    "asgd": {"learning_rate", "weight_decay"},
}


def _bad_cases():
    for name, cases in BAD.items():
        for argument, value in cases:
            yield pytest.param(name, argument, value, id=f"{name}-{argument}={value}")


@pytest.mark.parametrize(("name", "argument", "value"), list(_bad_cases()))
def test_bad_arguments_raise_naming_them(name, argument, value, torch_float64):
    helpers.assert_refused_by_name(FACTORIES[name], argument, value, PARAMS)
    if argument in TORCH_CHECKS[name] and not math.isnan(value):
        with pytest.raises(ValueError):
            torch_run(torch_float64, name, {argument: value}, grads=GRADS[:1])


@pytest.mark.parametrize("name", list(FACTORIES))
def test_a_non_bool_maximize_is_refused(name):
    with pytest.raises(TypeError, match="`maximize`"):
        FACTORIES[name](maximize=1)


def test_bounds_torch_does_not_check_are_accepted_as_torch_does():
    """min_step_size > max_step_size is allowed (every step size is then the max)."""
    opt = rprop(learning_rate=0.1, min_step_size=1.0, max_step_size=0.5)
    params = {"w": jnp.zeros(2)}
    updates, state = opt.update({"w": jnp.asarray([1.0, -1.0])}, opt.init(params), params)
    np.testing.assert_array_equal(updates["w"], [-0.5, 0.5])

"""adafactor_torch equals torch.optim.Adafactor to rtol 1e-9 in float64 over 25 steps, across a
grid of every argument, jitted (hyperparameters traced under vmap, steps under lax.scan) and
eager: parameters and state (``row_var``, ``col_var``, ``variance``, ``count``/``step``) at
every step, on leaves of shapes (4, 3), (3,), () and (2, 3, 4) (factored over its last two
axes, the first a batch axis).

The gradients have all-zero steps (the first among them, so the statistics start at zero),
steps scaled by 1e-12 and 1e-9 (below the default eps1, so its floors act) and by 1e5 and 1e6
(so the update clipping acts), and single rows and entries scaled by 1e-10 and 1e8. The
parameters include a scalar and a 3-d leaf whose RMS is below eps2 (the parameter-scale floor
acts). The grid's learning rate 0.5 exceeds 1/sqrt(t) from step 5 on (the relative step is
then 1/sqrt(t)); the others stay below it.

The comparison is test_parity's: ``|ours - torch| <= 1e-9 |torch| + 1e-12 max(1, max|leaf|)``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx as gx
from gradtx.optimizers.adafactor_torch import adafactor_torch
from gradtx.transforms.clipping import clip_by_block_rms
from gradtx.transforms.factored import block_rms, scale_by_param_block_rms
from gradtx.transforms.factored_torch import (
    FactoredVarianceState,
    scale_by_factored_variance,
    scale_by_relative_step_cap,
)
from tests import helpers

RTOL = 1e-9
ATOL_SCALE = 1e-12
STEPS = 25
SHAPES = {"w": (4, 3), "b": (3,), "s": (), "t": (2, 3, 4)}
KEYS = sorted(SHAPES)
FACTORED = ("t", "w")
# Whole steps scaled: zero, tiny (below eps1 = 2.2e-16 once squared) and huge.
SCALES = {0: 0.0, 1: 1e-12, 6: 1e-9, 9: 0.0, 16: 1e6, 21: 1e5}
STATE_NAMES = ("row_var", "col_var", "variance")
GRID = {
    "learning_rate": [1e-3, 1e-2, 0.1, 0.5],
    "beta2_decay": [-0.8, -0.5, -1.0],
    "eps1": [1e-30, 1e-3],  # and None, the default: a static choice
    # torch refuses d < 1 (see test_bad_arguments_raise_naming_them).
    "d": [1.0, 2.0],
    "weight_decay": [0.0, 0.1],
}
# eps2 and maximize go in pairs, each pair with the full product of the grid above: a torch
# run costs ~30 ms (Python per tensor and step), and the full product with both would double
# the file's time.
EPS2_MAXIMIZE = [(1e-3, False), (0.1, True)]
DEFAULTS = dict(learning_rate=1e-2, beta2_decay=-0.8, eps1=None, eps2=1e-3, d=1.0,
                weight_decay=0.0, maximize=False)


def make_params(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "w": rng.normal(size=(4, 3)),
        "b": rng.normal(size=(3,)),
        "s": np.float64(0.05),  # below eps2 = 0.1
        "t": 1e-4 * rng.normal(size=(2, 3, 4)),  # below eps2 = 1e-3
    }


def make_grads(seed=1):
    rng = np.random.default_rng(seed)
    out = []
    for t in range(STEPS):
        g = {k: rng.normal(size=shape) * SCALES.get(t, 1.0) for k, shape in SHAPES.items()}
        if t == 13:
            g["w"][1] *= 1e-10
            g["t"][0, 2, 1] *= 1e8
            g["b"][0] *= 1e-10
        if t == 18:
            g["w"][:, 2] *= 1e6
            g["t"][1] *= 1e-10
        out.append(g)
    return out


PARAMS = make_params()
GRADS = make_grads()
GRADS_JAX = [{k: jnp.asarray(v) for k, v in g.items()} for g in GRADS]
GRADS_STACKED = helpers.stack(GRADS_JAX)


def torch_kwargs(kwargs):
    full = {**DEFAULTS, **kwargs}
    return dict(lr=full["learning_rate"], beta2_decay=full["beta2_decay"],
                eps=(full["eps1"], full["eps2"]), d=full["d"],
                weight_decay=full["weight_decay"], maximize=full["maximize"])


def _numpy(x):
    return x.detach().numpy().copy()


def torch_run(torch, kwargs, lr_lambda=None, **extra):
    """Parameters, state (name -> leaf -> array, for the leaves torch keeps it for) and step
    counts after each step of torch, stacked (leading axis = step)."""
    tensors = {k: torch.tensor(PARAMS[k], requires_grad=True) for k in KEYS}
    opt = torch.optim.Adafactor(list(tensors.values()), **torch_kwargs(kwargs), **extra)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda) if lr_lambda else None
    traj, states, counts = [], [], []
    for g in GRADS:
        for k, tensor in tensors.items():
            tensor.grad = torch.tensor(g[k])
        opt.step()
        if sched is not None:
            sched.step()
        traj.append({k: _numpy(x) for k, x in tensors.items()})
        states.append({name: {k: _numpy(opt.state[x][name]) for k, x in tensors.items()
                              if name in opt.state[x]} for name in STATE_NAMES})
        counts.append({k: float(opt.state[x]["step"]) for k, x in tensors.items()})
    return helpers.np_stack(traj), helpers.np_stack(states), helpers.np_stack(counts)


@functools.cache
def _torch_cached(items):
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        return torch_run(torch, dict(items))
    finally:
        torch.set_default_dtype(previous)


def torch_reference(kwargs):
    """torch's run for these arguments, computed once for the jit and the eager test."""
    return _torch_cached(tuple(sorted(kwargs.items())))


def run_steps(opt, params, grads):
    return helpers.run_steps_with_state(opt, params, grads, STATE_NAMES)


def run_scan(opt, params, grads_stacked):
    return helpers.run_scan_with_state(opt, params, grads_stacked, STATE_NAMES)


def _close(got, want, message):
    helpers.assert_close_per_step(got, want, message, RTOL, ATOL_SCALE)


def assert_matches(expected, ours, kwargs, index=None):
    (traj, states), pick = ours, ((lambda x: x[index]) if index is not None else (lambda x: x))
    torch_traj, torch_states, torch_counts = expected
    for k in KEYS:
        _close(pick(traj[k]), torch_traj[k], f"param {k!r}, {kwargs}")
        np.testing.assert_array_equal(pick(states["count"]), torch_counts[k], err_msg=kwargs)
    for name in STATE_NAMES:
        assert set(torch_states[name]) == (set(FACTORED) if name != "variance"
                                           else set(KEYS) - set(FACTORED))
        for k, want in torch_states[name].items():
            _close(pick(states[name][k]), want, f"{name}[{k!r}], {kwargs}")


def _params():
    return {k: jnp.asarray(v) for k, v in PARAMS.items()}


# ---------------------------------------------------------------------------------------------
# The grid.


@pytest.mark.parametrize("mode", ["jit", "eager"])
@pytest.mark.parametrize("eps1_none", [False, True], ids=["eps1", "eps1=None"])
@pytest.mark.parametrize(("eps2", "maximize"), EPS2_MAXIMIZE)
def test_grid_matches_torch(eps2, maximize, eps1_none, mode, torch_float64):
    """The full product of the numeric grid, vmapped over traced hyperparameters, per static
    choice (``maximize``, and ``eps1=None``) and its eps2."""
    grid = {k: v for k, v in GRID.items() if not (eps1_none and k == "eps1")}
    static = {"maximize": maximize, **({"eps1": None} if eps1_none else {})}
    points = [{**p, "eps2": eps2} for p in helpers.product(grid)]
    hyper = {k: jnp.asarray([p[k] for p in points], jnp.float64) for k in points[0]}

    if mode == "jit":
        def run(hp):
            return run_scan(adafactor_torch(**hp, **static), _params(), GRADS_STACKED)
        out = jax.jit(jax.vmap(run))(hyper)
    else:
        def run(hp):
            return run_steps(adafactor_torch(**hp, **static), _params(), GRADS_JAX)
        out = jax.vmap(run)(hyper)

    for i, point in enumerate(points):
        kwargs = {**point, **static}
        assert_matches(torch_reference(kwargs), out, kwargs, index=i)


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"learning_rate": 0.5, "beta2_decay": -2.0, "eps1": 1e-20, "eps2": 0.1, "d": 1.5,
          "weight_decay": 0.3, "maximize": True},
     {"eps1": 0.0}],
    ids=["defaults", "loaded", "eps1=0"],
)
def test_python_floats_match_torch(kwargs, torch_float64):
    """Hyperparameters as Python numbers (a Python 0 weight decay leaves its step out), eager
    and jitted. ``loaded`` has beta2_decay < -1, which torch accepts. eps1 = 0 is accepted too,
    and since the first gradient is zero, every leaf is NaN from the first step on in both
    (0/0 in the factored estimate, 0 * rsqrt(0) in the others)."""
    expected = torch_reference(kwargs)
    opt = adafactor_torch(**kwargs)
    assert_matches(expected, run_steps(opt, _params(), GRADS_JAX), kwargs)
    compiled = jax.jit(lambda p, g: run_scan(opt, p, g))(_params(), GRADS_STACKED)
    assert_matches(expected, compiled, kwargs)
    for k in KEYS:
        assert np.isnan(expected[0][k]).all() == (kwargs.get("eps1") == 0.0)
        assert not np.isnan(expected[0][k]).any() or kwargs.get("eps1") == 0.0


@pytest.mark.parametrize("extra", [{"foreach": False}, {"foreach": True}],
                         ids=["single-tensor", "foreach"])
def test_torch_implementation_switch_does_not_matter(extra, torch_float64):
    kwargs = {"learning_rate": 0.5, "beta2_decay": -0.5, "eps1": 1e-3, "eps2": 0.1,
              "d": 2.0, "weight_decay": 0.1, "maximize": True}
    expected = torch_run(torch_float64, kwargs, **extra)
    assert_matches(expected, run_steps(adafactor_torch(**kwargs), _params(), GRADS_JAX), extra)


def test_schedule_matches_torch_lambda_lr(torch_float64):
    """A schedule equals torch's LambdaLR stepped after every step: each step's learning rate
    caps that step's relative step and scales its weight decay."""
    def factor(count):
        return 0.9**count

    kwargs = {"learning_rate": 0.8, "weight_decay": 0.1}
    expected = torch_run(torch_float64, kwargs, lr_lambda=factor)
    opt = adafactor_torch(learning_rate=lambda count: 0.8 * factor(count), weight_decay=0.1)
    assert_matches(expected, run_steps(opt, _params(), GRADS_JAX), "schedule")
    compiled = jax.jit(lambda p, g: run_scan(opt, p, g))(_params(), GRADS_STACKED)
    assert_matches(expected, compiled, "schedule")


# ---------------------------------------------------------------------------------------------
# The data exercises what it claims to.


@functools.cache
def _variance_scan(eps1_none):
    """A compiled run of scale_by_factored_variance over the gradients, with beta2_decay (and
    eps1) traced: one compilation for every decay."""

    def run(beta2_decay, eps1):
        transform = scale_by_factored_variance(beta2_decay, None if eps1_none else eps1)

        def step(state, g):
            u, state = transform.update(g, state)
            return state, u

        return jax.lax.scan(step, transform.init(_params()), GRADS_STACKED)[1]

    return jax.jit(run)


def _scaled_updates(beta2_decay, eps1):
    """The output of scale_by_factored_variance at every step (before clipping)."""
    out = _variance_scan(eps1 is None)(beta2_decay, 0.0 if eps1 is None else eps1)
    return [jax.tree_util.tree_map(lambda x, t=t: x[t], out) for t in range(STEPS)]


@pytest.mark.parametrize("beta2_decay", GRID["beta2_decay"])
def test_the_clipping_and_the_floors_act(beta2_decay):
    """For each decay: some leaf-steps have RMS(U) above 2 (both thresholds clip), some
    between 1 and 2 (only d = 1 clips), some below 1; with eps1 = 1e-3 the floor of the
    estimate acts at some steps and not at others; the default eps1 floors the mean of the
    row statistics of the early tiny steps; RMS(params) < eps2 for two leaves."""
    rms = np.asarray([[float(block_rms(u[k])) for k in KEYS]
                      for u in _scaled_updates(beta2_decay, None)])
    assert (rms > 2).sum() >= 3 and ((rms > 1) & (rms < 2)).sum() >= 3
    assert ((rms > 0) & (rms < 1)).sum() >= 3
    # With eps1 = 1e-3 an entry whose estimate is floored at 1e-6 has |U| = 1e3 |g| exactly;
    # an entry above the floor has less.
    pairs = [(np.ravel(u[k]), np.ravel(g[k]))
             for u, g in zip(_scaled_updates(beta2_decay, 1e-3), GRADS_JAX, strict=True)
             for k in KEYS]
    ratios = np.concatenate([np.abs(u[g != 0]) / (1e3 * np.abs(g[g != 0])) for u, g in pairs])
    floored = np.isclose(ratios, 1.0, rtol=1e-9, atol=0)
    assert floored.sum() >= 10 and (ratios < 0.99).sum() >= 10
    # The default eps1: at step 2 (tiny gradients after a zero step) the row statistics'
    # mean is below 2.2e-16, so the estimate's denominator is the floor.
    row = scale_by_factored_variance(beta2_decay)
    state = row.init(_params())
    for g in GRADS_JAX[:2]:
        _, state = row.update(g, state)
    assert float(jnp.mean(state.row_var["w"])) < np.finfo(np.float64).eps
    assert float(block_rms(jnp.asarray(PARAMS["t"]))) < 1e-3
    assert abs(float(PARAMS["s"])) < 0.1


def test_relative_step_cap():
    """min(1, 1/(lr sqrt t)) at t = 1, 2, ...; 1 for a zero learning rate."""
    for lr in (0.0, 0.1, 0.5, 2.0):
        cap = scale_by_relative_step_cap(lr)
        state = cap.init({"x": jnp.zeros(2)})
        for t in range(1, 8):
            out, state = cap.update({"x": jnp.ones(2)}, state)
            want = 1.0 if lr == 0 else min(1.0, 1 / (lr * np.sqrt(t)))
            np.testing.assert_allclose(out["x"], [want, want], rtol=1e-15)


# ---------------------------------------------------------------------------------------------
# The transforms, state, dtypes.


def test_transforms_on_their_own_equal_the_optimizer():
    def lr(count):
        return 0.6 * 0.95**count

    alone = gx.chain(
        scale_by_factored_variance(-0.6, 1e-3),
        clip_by_block_rms(1.5),
        scale_by_param_block_rms(0.05),
        scale_by_relative_step_cap(lr),
        gx.add_decayed_weights(0.2),
        gx.scale_by_learning_rate(lr),
    )
    optimizer = adafactor_torch(lr, -0.6, 1e-3, 0.05, 1.5, 0.2)
    a = jax.jit(helpers.run_scan, static_argnums=0)(alone, _params(), GRADS_STACKED)
    b = jax.jit(helpers.run_scan, static_argnums=0)(optimizer, _params(), GRADS_STACKED)
    for k in KEYS:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-14, atol=1e-15)
    counts = [s.count for s in alone.init(_params()) if "count" in getattr(s, "_fields", ())]
    assert len(counts) == 3 and all(int(c) == 0 for c in counts)  # variance, cap, schedule


def test_state_names_and_shapes():
    state = adafactor_torch().init(_params())
    shapes = {name: {k: gx.tree_get(state, name)[k].shape for k in KEYS}
              for name in STATE_NAMES}
    assert shapes == {
        "row_var": {"w": (4, 1), "t": (2, 3, 1), "b": (1,), "s": (1,)},
        "col_var": {"w": (1, 3), "t": (2, 1, 4), "b": (1,), "s": (1,)},
        "variance": {"w": (1,), "t": (1,), "b": (3,), "s": ()},
    }
    assert int(gx.tree_get(state, "count")) == 0
    assert isinstance(scale_by_factored_variance().init(_params()), FactoredVarianceState)


def test_eps1_none_is_each_leafs_machine_epsilon():
    """eps1=None equals eps1 = finfo(dtype).eps of each leaf: float64 and float32 leaves side
    by side (torch would take the first parameter's for both)."""
    params = {"w": jnp.asarray(PARAMS["w"]), "v": jnp.asarray(PARAMS["t"], jnp.float32)}
    grads = helpers.stack([{"w": jnp.asarray(g["w"]), "v": jnp.asarray(g["t"], jnp.float32)}
                           for g in GRADS])

    def run(eps1):
        opt = adafactor_torch(learning_rate=0.1, eps1=eps1)
        return jax.jit(lambda p, g: helpers.run_scan(opt, p, g))(params, grads)

    default = run(None)
    for k, dtype in (("w", np.float64), ("v", np.float32)):
        explicit = run(float(np.finfo(dtype).eps))
        np.testing.assert_allclose(default[k], explicit[k], rtol=1e-6 if k == "v" else 1e-14)
        assert default[k].dtype == dtype
    # The other epsilon gives another run: the choice matters on this data.
    other = run(float(np.finfo(np.float64).eps))
    assert not np.allclose(default["v"], other["v"], rtol=1e-3)


# ---------------------------------------------------------------------------------------------
# Bad arguments.


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"learning_rate": -1e-3}, "learning_rate"),
        ({"beta2_decay": 0.1}, "beta2_decay"),  # torch: beta2_decay <= 0
        ({"beta2_decay": float("nan")}, "beta2_decay"),
        ({"eps1": -1e-30}, "eps1"),
        ({"eps2": -1e-3}, "eps2"),
        ({"d": 0.5}, "d"),  # torch: d >= 1
        ({"d": float("nan")}, "d"),
        ({"weight_decay": -0.1}, "weight_decay"),
    ],
)
def test_bad_arguments_raise_naming_them(kwargs, argument, torch_float64):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        adafactor_torch(**kwargs)
    if "nan" not in repr(kwargs):  # torch's checks let NaN through
        with pytest.raises(ValueError):
            torch_float64.optim.Adafactor([torch_float64.zeros(2, requires_grad=True)],
                                          **torch_kwargs(kwargs))


def test_bad_switch_and_complex_parameters():
    with pytest.raises(TypeError, match="maximize"):
        adafactor_torch(maximize=1)
    with pytest.raises(TypeError, match=r"adafactor_torch does not support complex.*\['z'\]"):
        adafactor_torch().init({"z": jnp.zeros((2, 2), jnp.complex128)})
    opt = adafactor_torch()
    state = opt.init({"w": jnp.zeros((2, 3))})
    with pytest.raises(ValueError, match=r"\['w'\]"):
        opt.update({"w": jnp.zeros((3, 2))}, state, {"w": jnp.zeros((3, 2))})

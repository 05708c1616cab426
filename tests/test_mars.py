"""MARS beyond the registry's matrix: the AdamW step it gives vectors and scalars
(``optimize_1d=False``, the default; the matrix runs every leaf through MARS's own step),
``lr_1d`` under schedules and mid-run changes, Newton–Schulz on leaves of three dimensions in
float64, and the state's names. Every comparison is against ``pytorch_optimizer.MARS``
(pytorch-optimizer 4.1.0) in float64, to the parity test's tolerance."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx as gx
from gradtx.optimizers import registry
from tests import helpers

INFO = registry.get("mars")
RTOL = 1e-9
PARAMS = {**helpers.make_params(), "k": np.random.default_rng(5).normal(size=(3, 2, 4))}
GRADS = helpers.make_gradients(PARAMS, steps=20)
STACKED = helpers.stack(GRADS)

# The vectors' own arguments, with the switches that change their step.
GRID_1D = {
    "learning_rate": [1e-3, 0.1],
    "lr_1d": [3e-3, 0.05],
    "b1_1d": [0.0, 0.9],
    "b2_1d": [0.5, 0.95],
    "weight_decay_1d": [0.0, 0.1],
    "mars_type": ["adamw", "lion", "shampoo"],
    "weight_decouple": [False, True],
    "fixed_decay": [False, True],
    "ams_bound": [False, True],
    "cautious": [False, True],
    "maximize": [False, True],
}
POINTS_1D = [{**p, "optimize_1d": False} for p in helpers.all_pairs(GRID_1D, INFO.constraint)]


def _assert_close(expected, got, what):
    for t, want in enumerate(expected):
        for key, value in want.items():
            atol = 1e-12 * max(1.0, float(np.max(np.abs(value))))
            np.testing.assert_allclose(np.asarray(got[key][t]), value, rtol=RTOL, atol=atol,
                                       err_msg=f"step {t + 1}, leaf {key!r}, {what}")


@pytest.mark.parametrize("point", POINTS_1D, ids=helpers.label)
def test_vectors_and_scalars_take_the_references_adamw(point, torch_float64):
    expected = helpers.torch_trajectory(torch_float64, INFO, point, PARAMS, GRADS)
    opt = INFO.build(**point)
    traj = jax.jit(lambda p, g: helpers.run_scan(opt, p, g))(PARAMS, STACKED)
    _assert_close(expected, traj, point)


def test_eager_steps_equal_the_reference(torch_float64):
    point = POINTS_1D[0]
    expected = helpers.torch_trajectory(torch_float64, INFO, point, PARAMS, GRADS[:6])
    _assert_close(expected, helpers.run_steps(INFO.build(**point), PARAMS, GRADS[:6]), point)


def _torch_run(torch, kwargs, between=None):
    keys = sorted(PARAMS)
    tensors = [torch.tensor(PARAMS[k], requires_grad=True) for k in keys]
    opt = helpers.torch_optimizer(torch, INFO, tensors, kwargs)
    traj = []
    for t, g in enumerate(GRADS):
        for tensor, k in zip(tensors, keys, strict=True):
            tensor.grad = torch.tensor(g[k])
        helpers.torch_step(torch, opt)
        if between is not None:
            between(t, opt)
        traj.append({k: x.detach().numpy().copy() for k, x in zip(keys, tensors, strict=True)})
    return traj


def test_lr_1d_given_the_schedule_of_lr_equals_a_lambda_lr(torch_float64):
    """The reference scales the vectors' rate with lr's scheduler; gradtx's lr_1d takes the
    same schedule explicitly."""
    torch = torch_float64

    def factor(count):
        return 0.9**count

    keys = sorted(PARAMS)
    tensors = [torch.tensor(PARAMS[k], requires_grad=True) for k in keys]
    topt = helpers.torch_optimizer(torch, INFO, tensors, {"learning_rate": 0.05,
                                                            "optimize_1d": False})
    sched = torch.optim.lr_scheduler.LambdaLR(topt, lr_lambda=factor)
    expected = []
    for g in GRADS:
        for tensor, k in zip(tensors, keys, strict=True):
            tensor.grad = torch.tensor(g[k])
        topt.step()
        sched.step()
        expected.append({k: x.detach().numpy().copy() for k, x in zip(keys, tensors,
                                                                           strict=True)})
    opt = gx.mars(learning_rate=lambda c: 0.05 * factor(c), lr_1d=lambda c: 3e-3 * factor(c))
    _assert_close(expected, helpers.run_steps(opt, PARAMS, GRADS), "schedules")


def test_changing_lr_mid_run_moves_lr_1d_in_the_reference_only(torch_float64):
    """Setting the group's lr scales the reference's vector rate by lr/lr_0; in gradtx the
    two are set separately (here to the same effect)."""
    lr0, lr1 = 0.05, 0.02

    def change(t, opt):
        if t == 4:
            opt.param_groups[0]["lr"] = lr1

    expected = _torch_run(torch_float64, {"learning_rate": lr0, "optimize_1d": False}, change)
    opt = gx.mars(learning_rate=lr0)
    state, params, traj = opt.init(PARAMS), PARAMS, []
    step = jax.jit(opt.update)
    for t, g in enumerate(GRADS):
        if t == 5:
            state = gx.set_hyperparam(state, "learning_rate", lr1)
            state = gx.set_hyperparam(state, "lr_1d", 3e-3 * lr1 / lr0)
        updates, state = step(g, state, params)
        params = gx.apply_updates(params, updates)
        traj.append(params)
    _assert_close(expected, helpers.stack(traj), "lr changed at step 6")


def test_shampoo_on_a_three_dimensional_leaf_in_float64(torch_float64, monkeypatch):
    """The reference's Newton–Schulz run in float64 (its one bfloat16 cast made float64):
    every formula checked at full precision, with a (3, 2, 4) leaf seen as (3, 8) and the
    factor sqrt(3/2) taken from its first two axes."""
    import pytorch_optimizer.optimizer.mars as reference

    original = reference.zero_power_via_newton_schulz_5
    monkeypatch.setattr(reference, "zero_power_via_newton_schulz_5",
                        functools.partial(original, dtype=torch_float64.float64))
    kwargs = {"mars_type": "shampoo", "learning_rate": 0.02, "ns_dtype": None}
    expected = helpers.torch_trajectory(torch_float64, INFO, kwargs, PARAMS, GRADS)
    opt = INFO.build(**kwargs)
    _assert_close(expected, jax.jit(lambda p, g: helpers.run_scan(opt, p, g))(PARAMS, STACKED),
                  kwargs)


def test_state_names_and_groups():
    opt = gx.mars(ams_bound=True)
    state = opt.init(PARAMS)
    last = gx.tree_get(state, "mars/last_grad")
    assert last["w"].shape == (4, 3) and last["k"].shape == (3, 2, 4)
    assert last["b"] is None and last["s"] is None  # the AdamW group keeps no gradient
    assert gx.tree_get(state, "adamw/mu")["b"].shape == (3,)
    assert gx.tree_get(state, "adamw/nu_max")["w"] is None
    everything = gx.mars(optimize_1d=True).init(PARAMS)
    assert gx.tree_get(everything, "last_grad")["b"].shape == (3,)


def test_shampoo_refuses_complex_parameters_by_path():
    params = {"w": jnp.ones((2, 2), jnp.complex128)}
    with pytest.raises(TypeError, match=r"mars_type='shampoo'.*\['w'\]"):
        gx.mars(mars_type="shampoo").init(params)
    gx.mars(mars_type="lion").init(params)  # the other types take complex as real pairs

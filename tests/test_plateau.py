"""reduce_on_plateau against torch's ReduceLROnPlateau: the parameters and the learning rate step
for step, eagerly and under jit, over a grid of the scheduler's arguments; metrics given every
step or every 5th step; per-group rates and floors; steps without a metric; bad arguments.

Every gradient is taken at the parameters the optimizer produced, so a learning rate lowered at
the wrong step changes every later parameter.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx as gx
from gradtx.wrappers.plateau import ReduceOnPlateauState, reduce_on_plateau

STEPS = 40
RTOL = 1e-10
THRESHOLD = 0.01  # large enough that "rel" and "abs" differ on the metrics below

_rng = np.random.default_rng(0)
SHAPES = {"w": (3, 2), "b": (2,)}
PARAMS = {k: _rng.normal(size=s) for k, s in SHAPES.items()}
CENTRE = {k: _rng.normal(size=s) for k, s in SHAPES.items()}

# Decreasing, then small steps (improvements under "rel" near 0.2, not under "abs"), then flat
# and noisy, then improving again and flat: every reduction path is taken somewhere.
METRICS = np.concatenate(
    [
        1.0 - 0.08 * np.arange(10),
        [0.2, 0.197, 0.194, 0.191, 0.2, 0.21, 0.188, 0.186, 0.184, 0.19],
        0.18 + 0.01 * _rng.uniform(-1.0, 1.0, size=10),
        [0.15, 0.14, 0.13, 0.12, 0.12, 0.12, 0.121, 0.119, 0.12, 0.12],
    ]
)
assert METRICS.shape == (STEPS,)


def np_grad(theta):
    """Gradient of sum((theta - centre)^2 / 2 - 0.1 cos(3 theta))."""
    return {k: (theta[k] - CENTRE[k]) + 0.3 * np.sin(3 * theta[k]) for k in theta}


def jax_grad(theta):
    return {k: (theta[k] - CENTRE[k]) + 0.3 * jnp.sin(3 * theta[k]) for k in theta}


def _torch_run(torch, make_opt, sched_kwargs, metrics, every=1, groups=None):
    """(params, lrs) after each step: ``opt.step()`` then ``sched.step(metric)`` on steps
    ``i`` with ``(i + 1) % every == 0``."""
    tp = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in PARAMS.items()}
    if groups is None:
        opt = make_opt([tp[k] for k in sorted(tp)])
    else:
        opt = make_opt([{"params": [tp[k] for k in ks], **kw} for ks, kw in groups])
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, **sched_kwargs)
    history = []
    for i in range(STEPS):
        grads = np_grad({k: v.detach().numpy() for k, v in tp.items()})
        opt.zero_grad()
        for k, v in tp.items():
            v.grad = torch.tensor(grads[k], dtype=torch.float64)
        opt.step()
        if (i + 1) % every == 0:
            sched.step(float(metrics[i]))
        history.append(
            (
                {k: v.detach().numpy().copy() for k, v in tp.items()},
                [g["lr"] for g in opt.param_groups],
            )
        )
    return history


def _gx_run(opt, metrics, use_jit, every=1):
    """(params, state) after each step of ``opt`` wrapped by the caller."""
    params = {k: jnp.asarray(v) for k, v in PARAMS.items()}
    state = opt.init(params)

    def with_metric(params, state, value):
        updates, state = opt.update(jax_grad(params), state, params, value=value)
        return gx.apply_updates(params, updates), state

    def without_metric(params, state):
        updates, state = opt.update(jax_grad(params), state, params)
        return gx.apply_updates(params, updates), state

    if use_jit:
        with_metric, without_metric = jax.jit(with_metric), jax.jit(without_metric)
    history = []
    for i in range(STEPS):
        if (i + 1) % every == 0:
            params, state = with_metric(params, state, jnp.asarray(metrics[i]))
        else:
            params, state = without_metric(params, state)
        history.append((params, state))
    return history


def _compare(torch_history, gx_history, names=("learning_rate",)):
    for step, ((tparams, tlrs), (params, state)) in enumerate(
        zip(torch_history, gx_history, strict=True)
    ):
        for k in tparams:
            np.testing.assert_allclose(
                np.asarray(params[k]), tparams[k], rtol=RTOL, atol=0, err_msg=f"step {step} {k}"
            )
        for name, tlr in zip(names, tlrs, strict=True):
            lr = float(gx.get_hyperparam(state, name))
            assert lr == pytest.approx(tlr, rel=1e-12, abs=0), (step, name, lr, tlr)


OPTIMIZERS = {
    "sgd": (lambda: gx.sgd(0.1, momentum=0.9), lambda t: lambda p: t.optim.SGD(p, 0.1, 0.9)),
    "adam": (lambda: gx.adam(0.05), lambda t: lambda p: t.optim.Adam(p, 0.05)),
}

GRID = list(
    itertools.product(["min", "max"], ["rel", "abs"], [0, 2], [0, 3], [0.0, 1e-3], [0.1, 0.5])
)


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
@pytest.mark.parametrize("mode,threshold_mode,patience,cooldown,min_lr,factor", GRID)
def test_matches_torch_grid(
    torch_float64, optimizer, mode, threshold_mode, patience, cooldown, min_lr, factor
):
    torch = torch_float64
    make_gx, make_torch = OPTIMIZERS[optimizer]
    kwargs = dict(
        mode=mode,
        factor=factor,
        patience=patience,
        threshold=THRESHOLD,
        threshold_mode=threshold_mode,
        cooldown=cooldown,
        min_lr=min_lr,
    )
    metrics = METRICS if mode == "min" else -METRICS
    expected = _torch_run(torch, make_torch(torch), kwargs, metrics)
    lrs = [h[1][0] for h in expected]
    assert lrs[-1] < lrs[0]  # the run does reduce
    for use_jit in (False, True):
        got = _gx_run(reduce_on_plateau(make_gx(), **kwargs), metrics, use_jit)
        _compare(expected, got)


@pytest.mark.parametrize("use_jit", [False, True])
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_metric_every_fifth_step(torch_float64, optimizer, use_jit):
    torch = torch_float64
    make_gx, make_torch = OPTIMIZERS[optimizer]
    kwargs = dict(factor=0.5, patience=0, threshold=THRESHOLD, cooldown=1)
    # Metrics that stop improving early, so the rate falls several times in 8 metrics.
    metrics = np.where(np.arange(STEPS) < 12, 1.0 - 0.01 * np.arange(STEPS), 0.9)
    expected = _torch_run(torch, make_torch(torch), kwargs, metrics, every=5)
    got = _gx_run(reduce_on_plateau(make_gx(), **kwargs), metrics, use_jit, every=5)
    assert len({h[1][0] for h in expected}) > 2
    _compare(expected, got)
    assert int(got[-1][1].last_epoch) == STEPS // 5


@pytest.mark.parametrize("use_jit", [False, True])
def test_two_groups_with_their_own_floors(torch_float64, use_jit):
    torch = torch_float64
    kwargs = dict(factor=0.5, patience=1, threshold=THRESHOLD)
    floors = {"a": 0.02, "b": 0.004}
    expected = _torch_run(
        torch,
        lambda groups: torch.optim.SGD(groups, lr=0.1, momentum=0.9),
        {**kwargs, "min_lr": [floors["a"], floors["b"]]},
        METRICS,
        groups=[(["w"], {"lr": 0.1}), (["b"], {"lr": 0.01})],
    )
    inner = gx.multi_transform(
        {"a": gx.sgd(0.1, momentum=0.9), "b": gx.sgd(0.01, momentum=0.9)},
        {"w": "a", "b": "b"},
    )
    got = _gx_run(reduce_on_plateau(inner, **kwargs, min_lr=floors), METRICS, use_jit)
    _compare(expected, got, names=("a/learning_rate", "b/learning_rate"))
    # Both floors are reached, at different steps.
    assert [h[1] for h in expected[-1:]] == [[floors["a"], floors["b"]]]


def test_without_value_runs_only_the_inner_optimizer():
    inner = gx.sgd(0.1, momentum=0.9)
    opt = reduce_on_plateau(inner, patience=0)
    params = {k: jnp.asarray(v) for k, v in PARAMS.items()}
    state = opt.init(params)
    inner_state = inner.init(params)
    for _ in range(5):
        grads = jax_grad(params)
        updates, state = opt.update(grads, state, params)
        expected, inner_state = inner.update(grads, inner_state, params)
        for k in params:
            np.testing.assert_array_equal(updates[k], expected[k])
        params = gx.apply_updates(params, updates)
    assert isinstance(state, ReduceOnPlateauState)
    assert float(state.best) == np.inf
    assert int(state.num_bad_epochs) == int(state.cooldown_counter) == 0
    assert int(state.last_epoch) == 0
    assert float(gx.get_hyperparam(state, "learning_rate")) == 0.1
    # value=None is the same as no value.
    _, state = opt.update(jax_grad(params), state, params, value=None)
    assert int(state.last_epoch) == 0


def test_first_metric_sets_best_and_bad_metrics_lower_the_rate():
    opt = reduce_on_plateau(gx.sgd(1.0), mode="max", factor=0.5, patience=0, cooldown=1)
    params = {"w": jnp.zeros(2)}
    state = opt.init(params)
    assert float(state.best) == -np.inf
    lrs = []
    for metric in [1.0, 0.5, 0.5, 0.5, 2.0]:
        _, state = opt.update({"w": jnp.ones(2)}, state, params, value=metric)
        lrs.append(float(gx.get_hyperparam(state, "learning_rate")))
    # bad -> halve (cooldown 1), next bad ignored in cooldown, next bad -> halve, improvement.
    assert lrs == [1.0, 0.5, 0.5, 0.25, 0.25]
    assert float(state.best) == 2.0


def test_scheduled_rate_becomes_constant_when_lowered():
    schedule = gx.linear_schedule(1.0, 0.5, transition_steps=10)
    opt = reduce_on_plateau(gx.sgd(schedule), factor=0.1, patience=0)
    params = {"w": jnp.zeros(())}
    state = opt.init(params)
    step = jax.jit(lambda s, v: opt.update({"w": jnp.ones(())}, s, params, value=v)[1])
    state = step(state, 1.0)
    assert bool(state.inner_state.scheduled["learning_rate"])
    state = step(state, 2.0)  # bad: the rate used at this step (0.95) becomes 0.095
    assert not bool(state.inner_state.scheduled["learning_rate"])
    assert float(gx.get_hyperparam(state, "learning_rate")) == pytest.approx(0.095, rel=1e-12)
    state = step(state, 0.5)  # improvement: the rate stays lowered, not back on the schedule
    assert float(gx.get_hyperparam(state, "learning_rate")) == pytest.approx(0.095, rel=1e-12)


def test_eps_blocks_small_reductions():
    opt = reduce_on_plateau(gx.sgd(1e-8), patience=0, eps=1e-8)
    params = {"w": jnp.zeros(())}
    state = opt.init(params)
    for v in [1.0, 2.0, 3.0]:
        _, state = opt.update({"w": jnp.ones(())}, state, params, value=v)
    assert float(gx.get_hyperparam(state, "learning_rate")) == 1e-8


def test_min_lr_labels_are_checked():
    inner = gx.multi_transform({"a": gx.sgd(0.1), "b": gx.sgd(0.01)}, {"w": "a", "b": "b"})
    params = {k: jnp.asarray(v) for k, v in PARAMS.items()}
    with pytest.raises(ValueError, match="'b'"):
        reduce_on_plateau(inner, min_lr={"a": 0.0}).init(params)
    with pytest.raises(ValueError, match="'c'"):
        reduce_on_plateau(inner, min_lr={"a": 0.0, "b": 0.0, "c": 0.0}).init(params)
    with pytest.raises(ValueError, match="min_lr"):
        reduce_on_plateau(gx.sgd(0.1), min_lr={"a": 0.0}).init(params)
    with pytest.raises(ValueError, match="learning_rate"):
        reduce_on_plateau(gx.scale(-0.1)).init(params)


def test_non_scalar_metric_is_refused():
    opt = reduce_on_plateau(gx.sgd(0.1))
    params = {"w": jnp.zeros(2)}
    state = opt.init(params)
    with pytest.raises(ValueError, match="value"):
        opt.update({"w": jnp.ones(2)}, state, params, value=jnp.ones(2))


@pytest.mark.parametrize(
    "kwargs,error,name",
    [
        (dict(mode="minimum"), ValueError, "mode"),
        (dict(mode=None), TypeError, "mode"),
        (dict(threshold_mode="relative"), ValueError, "threshold_mode"),
        (dict(threshold_mode=1), TypeError, "threshold_mode"),
        (dict(factor=1.0), ValueError, "factor"),
        (dict(factor=-0.1), ValueError, "factor"),
        (dict(factor="0.1"), TypeError, "factor"),
        (dict(patience=-1), ValueError, "patience"),
        (dict(patience=1.5), ValueError, "patience"),
        (dict(patience=True), TypeError, "patience"),
        (dict(cooldown=-1), ValueError, "cooldown"),
        (dict(cooldown="3"), TypeError, "cooldown"),
        (dict(threshold=-1e-4), ValueError, "threshold"),
        (dict(threshold=None), TypeError, "threshold"),
        (dict(eps=-1.0), ValueError, "eps"),
        (dict(min_lr=-1e-3), ValueError, "min_lr"),
        (dict(min_lr=[0.0, 0.0]), TypeError, "min_lr"),
        (dict(min_lr={"a": -1.0}), ValueError, "min_lr"),
        (dict(min_lr={1: 0.0}), TypeError, "min_lr"),
        (dict(min_lr=float("nan")), ValueError, "min_lr"),
    ],
)
def test_bad_arguments(kwargs, error, name):
    with pytest.raises(error, match=name):
        reduce_on_plateau(gx.sgd(0.1), **kwargs)


def test_inner_must_be_a_transformation():
    with pytest.raises(TypeError, match="GradientTransformation"):
        reduce_on_plateau(gx.sgd)

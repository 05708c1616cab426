"""The torch state_dict bridge: a run moved between torch.optim and gradtx after 20 steps
continues exactly (20 + 20 steps == 40 steps of either library, float64, rtol 1e-9), for every
registry optimizer with a torch equivalent, with param groups, schedules and complex
parameters; a state_dict that does not fit raises a ValueError naming what differs."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx as gx
from gradtx.optimizers.registry import with_torch_equivalent
from tests import helpers

RTOL = 1e-9
HALF = 20
PARAMS = helpers.make_params()
GRADS = helpers.make_gradients(PARAMS, steps=2 * HALF)
KEYS = sorted(PARAMS)  # tree_leaves order of a dict


def _data(info):
    """PARAMS and GRADS as the optimizer takes them (Muon: the same entries as matrices)."""
    return info.params_like(PARAMS), [info.params_like(g) for g in GRADS]


def _configs(info):
    """The registry example, and every grid axis at its last value (booleans on, the extra
    state they create included), switching booleans off until torch accepts the point."""
    last = {k: v[-1] for k, v in info.grid.items()}
    for name in [k for k, v in last.items() if v is True]:
        if info.constraint(last):
            break
        last[name] = False
    return [dict(info.example), last]


CASES = [
    pytest.param(info, kw, id=f"{info.name}-{i}")
    for info in with_torch_equivalent() if info.torch_state
    for i, kw in enumerate(_configs(info))
]


def _torch_opt(torch, info, kwargs, params):
    tensors = [torch.tensor(np.asarray(params[k]), requires_grad=True) for k in KEYS]
    return tensors, helpers.torch_optimizer(torch, info, tensors, kwargs)


def _torch_steps(torch, tensors, opt, grads):
    traj = []
    for g in grads:
        for t, k in zip(tensors, KEYS, strict=True):
            t.grad = torch.tensor(np.asarray(g[k]))
        helpers.torch_step(torch, opt)
        traj.append({k: t.detach().numpy().copy() for k, t in zip(KEYS, tensors, strict=True)})
    return traj


def _gradtx_steps(tx, params, state, grads):
    traj = []
    for g in grads:
        updates, state = tx.update(g, state, params)
        params = gx.apply_updates(params, updates)
        traj.append(jax.tree_util.tree_map(np.asarray, params))
    return traj, params, state


def _assert_close(ours, theirs, what):
    for k in KEYS:
        np.testing.assert_allclose(
            ours[k], theirs[k], rtol=RTOL, atol=1e-12 * max(1.0, np.abs(theirs[k]).max()),
            err_msg=f"{what}: {k}",
        )


def _assert_same_state(a, b):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=RTOL, atol=1e-300)


@pytest.mark.parametrize("info, kwargs", CASES)
def test_torch_then_gradtx(info, kwargs, torch_float64):
    torch = torch_float64
    params0, grads = _data(info)
    tensors, opt = _torch_opt(torch, info, kwargs, params0)
    _torch_steps(torch, tensors, opt, grads[:HALF])
    params = {k: jnp.asarray(t.detach().numpy()) for k, t in zip(KEYS, tensors, strict=True)}
    tx = info.build(**kwargs)
    state = gx.from_torch_state_dict(tx, params, opt.state_dict())
    # The imported state is the one gradtx reaches by itself over the same 20 steps.
    _, _, own = _gradtx_steps(tx, jax.tree_util.tree_map(jnp.asarray, params0),
                              tx.init(params0), grads[:HALF])
    if "step" not in info.torch_state:  # torch's SGD keeps no step count: gradtx says 1
        assert int(state.count) == 1
        state, own = state._replace(count=own.count), own
    _assert_same_state(state, own)
    theirs = _torch_steps(torch, tensors, opt, grads[HALF:])
    ours, _, _ = _gradtx_steps(tx, params, state, grads[HALF:])
    for t in (0, HALF - 1):
        _assert_close(ours[t], theirs[t], f"step {HALF + t + 1}")


@pytest.mark.parametrize("info, kwargs", CASES)
def test_gradtx_then_torch(info, kwargs, torch_float64):
    torch = torch_float64
    params0, grads = _data(info)
    tx = info.build(**kwargs)
    params = jax.tree_util.tree_map(jnp.asarray, params0)
    _, params, state = _gradtx_steps(tx, params, tx.init(params), grads[:HALF])
    ours, _, _ = _gradtx_steps(tx, params, state, grads[HALF:])
    tensors, opt = _torch_opt(torch, info, kwargs, params)
    exported = gx.to_torch_state_dict(tx, params, state)
    # torch's LBFGS keeps its one state under its first parameter.
    assert set(exported["state"]) == (
        {0} if info.torch_class == "LBFGS" else set(range(len(KEYS))))
    # Every array is a tensor (LBFGS also keeps Python numbers and lists of tensors, as torch).
    arrays = [x for entry in exported["state"].values() for v in entry.values()
              for x in (v if isinstance(v, list) else [v]) if not isinstance(x, (int, float))]
    assert arrays and all(isinstance(x, torch.Tensor) for x in arrays)
    opt.load_state_dict(exported)
    theirs = _torch_steps(torch, tensors, opt, grads[HALF:])
    for t in (0, HALF - 1):
        _assert_close(ours[t], theirs[t], f"step {HALF + t + 1}")


def test_state_keys_are_torchs(torch_float64):
    """Exported per-parameter keys and param-group keys are exactly those of torch's own
    state_dict after a step (torch-only implementation switches aside)."""
    torch = torch_float64
    only_torch = {"foreach", "capturable", "differentiable", "fused"}
    for info in with_torch_equivalent():
        if not info.torch_state:
            continue
        params0, grads = _data(info)
        for kwargs in _configs(info):
            tx = info.build(**kwargs)
            params = jax.tree_util.tree_map(jnp.asarray, params0)
            _, params, state = _gradtx_steps(tx, params, tx.init(params), grads[:2])
            ours = gx.to_torch_state_dict(tx, params, state)
            tensors, opt = _torch_opt(torch, info, kwargs, params0)
            _torch_steps(torch, tensors, opt, grads[:2])
            theirs = opt.state_dict()
            assert {k: set(v) for k, v in ours["state"].items()} == {
                k: set(v) for k, v in theirs["state"].items()}, info.name
            group, torch_group = ours["param_groups"][0], theirs["param_groups"][0]
            assert set(group) == set(torch_group) - only_torch, info.name
            for key, value in torch_group.items():
                if key not in only_torch:
                    assert group[key] == pytest.approx(value, rel=1e-12), (info.name, key)


def test_param_groups_are_multi_transform_labels(torch_float64):
    """Two Adam groups with their own learning rates and weight decay = torch.optim.Adam with
    two param groups; torch numbers the parameters group after group."""
    torch = torch_float64
    labels = {"b": "fast", "s": "slow", "w": "slow"}
    tx = gx.multi_transform(
        {"slow": gx.adam(1e-3, amsgrad=True), "fast": gx.adam(0.05, weight_decay=0.1,
                                                             amsgrad=True)}, labels)
    slow, fast = ["s", "w"], ["b"]

    def torch_opt(params):
        t = {k: torch.tensor(np.asarray(params[k]), requires_grad=True) for k in KEYS}
        opt = torch.optim.Adam(
            [{"params": [t[k] for k in slow], "lr": 1e-3},
             {"params": [t[k] for k in fast], "lr": 0.05, "weight_decay": 0.1}], amsgrad=True)
        return t, opt

    def torch_steps(t, opt, grads):
        out = []
        for g in grads:
            for k in KEYS:
                t[k].grad = torch.tensor(np.asarray(g[k]))
            opt.step()
            out.append({k: t[k].detach().numpy().copy() for k in KEYS})
        return out

    t, opt = torch_opt(PARAMS)
    torch_steps(t, opt, GRADS[:HALF])
    params = {k: jnp.asarray(t[k].detach().numpy()) for k in KEYS}
    state = gx.from_torch_state_dict(tx, params, opt.state_dict())
    theirs = torch_steps(t, opt, GRADS[HALF:])
    ours, _, _ = _gradtx_steps(tx, params, state, GRADS[HALF:])
    _assert_close(ours[-1], theirs[-1], "torch -> gradtx")

    params = jax.tree_util.tree_map(jnp.asarray, PARAMS)
    _, params, state = _gradtx_steps(tx, params, tx.init(params), GRADS[:HALF])
    exported = gx.to_torch_state_dict(tx, params, state)
    # Keyed by tree_leaves index (b, s, w); the groups list their leaves.
    assert [g["params"] for g in exported["param_groups"]] == [[1, 2], [0]]
    t, opt = torch_opt(params)
    opt.load_state_dict(exported)
    ours, _, _ = _gradtx_steps(tx, params, state, GRADS[HALF:])
    theirs = torch_steps(t, opt, GRADS[HALF:])
    _assert_close(ours[-1], theirs[-1], "gradtx -> torch")


SCHEDULED = [
    pytest.param(lambda: gx.adam(gx.exponential_decay(0.05, 1, 0.9)), "Adam", {"lr": 0.05},
                 lambda torch, opt: torch.optim.lr_scheduler.ExponentialLR(opt, 0.9),
                 id="adam-ExponentialLR"),
    pytest.param(lambda: gx.sgd(gx.exponential_decay(0.1, 7, 0.5, staircase=True),
                                momentum=0.9),
                 "SGD", {"lr": 0.1, "momentum": 0.9},
                 lambda torch, opt: torch.optim.lr_scheduler.StepLR(opt, 7, 0.5),
                 id="sgd-StepLR"),
]


def _torch_scheduled_run(torch, name, torch_kw, make_sched, params, grads, sd=None):
    tensors = [torch.tensor(np.asarray(params[k]), requires_grad=True) for k in KEYS]
    opt = getattr(torch.optim, name)(tensors, **torch_kw)
    sched = make_sched(torch, opt)
    if sd is not None:  # torch's order for resuming: build both, then load both
        opt.load_state_dict(sd)
        sched.load_state_dict(sd["lr_scheduler"])
    traj = []
    for g in grads:
        for t, k in zip(tensors, KEYS, strict=True):
            t.grad = torch.tensor(np.asarray(g[k]))
        opt.step()
        sched.step()
        traj.append({k: t.detach().numpy().copy() for k, t in zip(KEYS, tensors, strict=True)})
    return traj, opt


@pytest.mark.parametrize("make_tx, name, torch_kw, make_sched", SCHEDULED)
def test_scheduler_position_moves_both_ways(make_tx, name, torch_kw, make_sched,
                                            torch_float64):
    """The schedule continues where the other library left it; SGD keeps no step count, so
    ``step=`` gives it."""
    torch = torch_float64
    tx = make_tx()
    run = functools.partial(_torch_scheduled_run, torch, name, torch_kw, make_sched)
    # gradtx -> torch
    params = jax.tree_util.tree_map(jnp.asarray, PARAMS)
    _, params20, state = _gradtx_steps(tx, params, tx.init(params), GRADS[:HALF])
    ours, _, _ = _gradtx_steps(tx, params20, state, GRADS[HALF:])
    exported = gx.to_torch_state_dict(tx, params20, state)
    assert exported["lr_scheduler"]["last_epoch"] == HALF
    theirs, _ = run(params20, GRADS[HALF:], exported)
    _assert_close(ours[-1], theirs[-1], f"{name}: gradtx -> torch")
    # torch -> gradtx
    traj, opt = run(PARAMS, GRADS[:HALF])
    params20 = {k: jnp.asarray(v) for k, v in traj[-1].items()}
    step = HALF if name == "SGD" else None
    state = gx.from_torch_state_dict(tx, params20, opt.state_dict(), step=step)
    # The state reads as one that took the 20 steps itself (the rate of its last step).
    _, _, own = _gradtx_steps(tx, jax.tree_util.tree_map(jnp.asarray, PARAMS),
                              tx.init(PARAMS), GRADS[:HALF])
    _assert_same_state(state, own)
    ours, _, _ = _gradtx_steps(tx, params20, state, GRADS[HALF:])
    full, _ = run(PARAMS, GRADS)
    _assert_close(ours[-1], full[-1], f"{name}: torch -> gradtx")
    if name == "SGD":
        with pytest.raises(ValueError, match="keeps no step count.*pass step="):
            gx.from_torch_state_dict(tx, params20, opt.state_dict())


def test_complex_parameters(torch_float64):
    torch = torch_float64
    rng = np.random.default_rng(3)
    params = {"z": rng.normal(size=3) + 1j * rng.normal(size=3)}
    grads = [{"z": rng.normal(size=3) + 1j * rng.normal(size=3)} for _ in range(2 * HALF)]
    tx = gx.adam(0.05, amsgrad=True)
    z = torch.tensor(params["z"], requires_grad=True)
    opt = torch.optim.Adam([z], lr=0.05, amsgrad=True)
    for g in grads[:HALF]:
        z.grad = torch.tensor(g["z"])
        opt.step()
    state = gx.from_torch_state_dict(tx, {"z": jnp.asarray(z.detach().numpy())},
                                     opt.state_dict())
    p = {"z": jnp.asarray(z.detach().numpy())}
    for g in grads[HALF:]:
        z.grad = torch.tensor(g["z"])
        opt.step()
        u, state = tx.update(g, state, p)
        p = gx.apply_updates(p, u)
    np.testing.assert_allclose(np.asarray(p["z"]), z.detach().numpy(), rtol=RTOL)
    exported = gx.to_torch_state_dict(tx, p, state)
    assert exported["state"][0]["exp_avg"].dtype == torch.complex128


def _torch_adam_sd(torch, params, **kwargs):
    tensors = [torch.tensor(np.asarray(params[k]), requires_grad=True) for k in sorted(params)]
    opt = torch.optim.Adam(tensors, **kwargs)
    for t in tensors:
        t.grad = torch.ones_like(t)
    opt.step()
    return opt.state_dict()


@pytest.mark.parametrize(
    "make_tx, params, kwargs, match",
    [
        (lambda: gx.sgd(0.1, momentum=0.9), PARAMS, {}, r"not one of torch.optim.SGD.*betas"),
        (lambda: gx.adamw(1e-3), PARAMS, {}, r"decoupled_weight_decay"),
        (lambda: gx.adam(1e-3), {"w": PARAMS["w"]}, {}, r"has 3 parameters.*has 1"),
        (lambda: gx.adam(1e-3), {**PARAMS, "w": np.ones((3, 4))}, {},
         r"state\[2\]\['exp_avg'\] has shape \(4, 3\).*\['w'\].*shape \(3, 4\)"),
        (lambda: gx.adam(1e-3), PARAMS, {"amsgrad": True}, r"amsgrad=True.*amsgrad=False"),
        (lambda: gx.adam(1e-3, amsgrad=True), PARAMS, {"amsgrad": True, "eps": 1e-3},
         None),
        (lambda: gx.adam(gx.linear_schedule(1e-3, 0.0, 100)), PARAMS, {"lr": 0.5},
         r"schedule whose value at step 1"),
        (lambda: gx.rprop(), PARAMS, {}, r"not one of torch.optim.Rprop"),
        (lambda: gx.sign_sgd(1e-3), PARAMS, {}, r"sign_sgd has no torch equivalent"),
    ],
    ids=["other-optimizer", "adam-into-adamw", "parameter-count", "shape", "argument",
         "live-eps-accepted", "schedule", "rprop", "no-equivalent"],
)
def test_mismatches_raise_naming_what_differs(make_tx, params, kwargs, match, torch_float64):
    sd = _torch_adam_sd(torch_float64, PARAMS, **kwargs)
    tx = make_tx()
    if match is None:  # a live hyperparameter is taken from torch, not refused
        state = gx.from_torch_state_dict(tx, params, sd)
        assert float(gx.get_hyperparam(state, "eps")) == 1e-3
        return
    with pytest.raises(ValueError, match=match):
        gx.from_torch_state_dict(tx, params, sd)


def test_another_optimizers_state_keys_raise(torch_float64):
    """Same param-group keys, other per-parameter state: Adam's state under AdamW's groups."""
    sd = _torch_adam_sd(torch_float64, PARAMS, amsgrad=True)
    sd["param_groups"][0]["amsgrad"] = False
    with pytest.raises(ValueError, match="max_exp_avg_sq"):
        gx.from_torch_state_dict(gx.adam(1e-3), PARAMS, sd)


def test_fresh_optimizer_exports_empty_state(torch_float64):
    tx = gx.adam(1e-3)
    exported = gx.to_torch_state_dict(tx, PARAMS, tx.init(PARAMS))
    assert exported["state"] == {}
    assert exported["param_groups"][0]["params"] == [0, 1, 2]
    state = gx.from_torch_state_dict(tx, PARAMS, exported)
    _assert_same_state(state, tx.init(PARAMS))


def test_optimizers_it_does_not_carry_raise(monkeypatch):
    """A registry entry with a torch class but no torch_state is refused, not half-exported."""
    from gradtx.optimizers import registry

    patched = tuple(dataclasses.replace(i, torch_state={}) if i.name == "adam" else i
                    for i in registry.OPTIMIZERS)
    monkeypatch.setattr(registry, "OPTIMIZERS", patched)
    params = jax.tree_util.tree_map(jnp.asarray, PARAMS)
    tx = gx.adam()
    with pytest.raises(ValueError, match="does not carry adam's state"):
        gx.to_torch_state_dict(tx, params, tx.init(params))


def test_lbfgs_in_param_groups_is_refused():
    params = jax.tree_util.tree_map(jnp.asarray, PARAMS)
    tx = gx.multi_transform({"a": gx.lbfgs(max_iter=1)}, {k: "a" for k in PARAMS})
    with pytest.raises(ValueError, match="LBFGS has one param group"):
        gx.to_torch_state_dict(tx, params, tx.init(params))

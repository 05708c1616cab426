"""Shared helpers of the test matrix: gradient sequences, the torch reference runner, and the
JAX runners (eager and jitted)."""

from __future__ import annotations

import importlib
import itertools
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import gradtx as gx
from gradtx.optimizers.registry import OptimizerInfo

STEPS = 50
ZERO_STEPS = (0, 7, 31)  # steps whose whole gradient is zero


def make_params(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "w": rng.normal(size=(4, 3)),
        "b": rng.normal(size=(3,)),
        "s": np.asarray(rng.normal()),
    }


def make_gradients(params, steps: int = STEPS, seed: int = 1) -> list[dict[str, np.ndarray]]:
    """A gradient sequence with all-zero steps and tiny (1e-9) and huge (1e4) entries."""
    rng = np.random.default_rng(seed)
    out = []
    for t in range(steps):
        step = {}
        for key, p in params.items():
            g = rng.normal(size=np.shape(p))
            if g.ndim and g.size > 2:
                flat = g.reshape(-1)
                flat[0] *= 1e-9
                flat[1] *= 1e4
            elif t % 5 == 3:
                g = g * 1e4
            elif t % 5 == 4:
                g = g * 1e-9
            step[key] = np.zeros_like(g) if t in ZERO_STEPS else g
        out.append(step)
    return out


def torch_step(torch, opt) -> None:
    """``opt.step()`` for an optimizer fed dense ``.grad`` tensors, as each torch class needs
    it: SparseAdam gets the sparse form of each gradient (rows along axis 0 that are entirely
    zero left out, as an ``nn.Embedding(sparse=True)`` gives them), LBFGS a closure (its first
    evaluation is the gradient already set and a NaN loss; with ``max_iter=1`` it evaluates
    nothing more)."""
    if isinstance(opt, torch.optim.SparseAdam):
        for group in opt.param_groups:
            for p in group["params"]:
                if p.grad is not None and not p.grad.is_sparse:
                    p.grad = p.grad.to_sparse(sparse_dim=min(1, p.grad.dim()))
        opt.step()
    elif isinstance(opt, torch.optim.LBFGS):
        # A NaN loss: gradtx's update, given no value, records NaN as the previous loss.
        opt.step(lambda: torch.full((), float("nan")))
    else:
        opt.step()


def reference_class(torch, info: OptimizerInfo):
    """The torch class ``info`` is checked against: ``torch.optim.<name>``, or the reference
    package's class (imported here: the packages are test extras)."""
    module = torch.optim if info.torch_module == "torch.optim" else \
        importlib.import_module(info.torch_module)
    return getattr(module, info.torch_class_name)


def torch_optimizer(torch, info: OptimizerInfo, tensors, kwargs: Mapping[str, Any]):
    """The reference optimizer over ``tensors`` with gradtx's ``kwargs``, ready to step
    (schedule-free ones are put in train mode, as their authors require before a step)."""
    opt = reference_class(torch, info)(tensors, **info.torch_kwargs(kwargs))
    if callable(getattr(opt, "train", None)):
        opt.train()
    if info.torch_patch is not None:
        step = type(opt).step

        def patched_step(self, *args, **kw):
            with info.torch_patch(torch):
                return step(self, *args, **kw)

        # A bound method, as torch's LR schedulers expect to find (they wrap ``__func__``).
        opt.step = types.MethodType(patched_step, opt)
    return opt


def torch_trajectory(torch, info: OptimizerInfo, kwargs: Mapping[str, Any], params, grads):
    """Parameters after each step of the torch reference: a list of dicts.
    Real leaves become float64 tensors, complex ones complex128."""
    keys = sorted(params)

    def tensor(x):
        x = np.asarray(x)
        return torch.tensor(x.astype(np.complex128 if np.iscomplexobj(x) else np.float64))

    tensors = [tensor(params[k]).requires_grad_() for k in keys]
    opt = torch_optimizer(torch, info, tensors, kwargs)
    traj = []
    for g in grads:
        for t, k in zip(tensors, keys, strict=True):
            t.grad = tensor(g[k])
        torch_step(torch, opt)
        traj.append({k: t.detach().numpy().copy() for k, t in zip(keys, tensors, strict=True)})
    return traj


def run_steps(opt: gx.GradientTransformation, params, grads):
    """Eager run: a Python loop of un-jitted steps. Returns stacked params, leading axis = step."""
    state = opt.init(params)
    traj = []
    for g in grads:
        updates, state = opt.update(g, state, params)
        params = gx.apply_updates(params, updates)
        traj.append(params)
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *traj)


def run_scan(opt: gx.GradientTransformation, params, grads_stacked):
    """Compiled run: ``lax.scan`` over stacked gradients. Same output as :func:`run_steps`."""

    def step(carry, g):
        params, state = carry
        updates, state = opt.update(g, state, params)
        params = gx.apply_updates(params, updates)
        return (params, state), params

    _, traj = jax.lax.scan(step, (params, opt.init(params)), grads_stacked)
    return traj


def named_state(state, names):
    """The state entries ``names`` (and the step count), for comparing with torch's state."""
    return {name: gx.tree_get(state, name) for name in (*names, "count")}


def _recorder(record):
    return record if callable(record) else (lambda state: named_state(state, record))


def run_steps_with_state(opt, params, grads, record):
    """:func:`run_steps`, also returning what ``record(state)`` gives after each step (or
    the state entries named in ``record``), stacked with the leading axis = step."""
    record = _recorder(record)
    state = opt.init(params)
    traj, states = [], []
    for g in grads:
        updates, state = opt.update(g, state, params)
        params = gx.apply_updates(params, updates)
        traj.append(params)
        states.append(record(state))
    return stack(traj), stack(states)


def run_scan_with_state(opt, params, grads_stacked, record):
    """:func:`run_scan`, also returning ``record(state)`` (or the named entries) per step."""
    record = _recorder(record)

    def step(carry, g):
        params, state = carry
        updates, state = opt.update(g, state, params)
        params = gx.apply_updates(params, updates)
        return (params, state), (params, record(state))

    _, out = jax.lax.scan(step, (params, opt.init(params)), grads_stacked)
    return out


def assert_close_per_step(got, want, message, rtol=1e-9, atol_scale=1e-12):
    """Every step at once (leading axis = step), as test_parity compares: ``|got - want| <=
    rtol |want| + atol_scale max(1, max |want at that step|)``, NaN equal to NaN and an
    infinity to itself; a failure names its first step."""
    got, want = np.asarray(got), np.asarray(want)
    flat = np.abs(want).reshape(len(want), -1)
    atol = atol_scale * np.maximum(1.0, np.nanmax(flat, axis=1, initial=0.0))
    atol = atol.reshape((-1,) + (1,) * (want.ndim - 1))
    with np.errstate(invalid="ignore"):  # inf - inf: equal infinities pass as got == want
        ok = (got == want) | (np.abs(got - want) <= rtol * np.abs(want) + atol)
    ok |= np.isnan(got) & np.isnan(want)
    if not ok.all():
        t = int(np.argmin(ok.reshape(len(ok), -1).all(axis=1)))
        np.testing.assert_allclose(got[t], want[t], rtol=rtol, atol=float(atol[t].max()),
                                   err_msg=f"step {t + 1}, {message}")


def np_stack(trees):
    """Stacked with NumPy (jnp.stack would compile a program per shape)."""
    return jax.tree_util.tree_map(lambda *xs: np.stack(xs), *trees)


def stack(trees: Sequence[Any]):
    return jax.tree_util.tree_map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *trees)


def split_grid(info: OptimizerInfo):
    """Splits the grid into static axes (switches, strings, counts: every argument that does
    not live in the state, and numbers whose grid includes None, which builds another chain)
    and numeric axes (traceable, so vmapped in one program)."""
    declarations = info.declarations
    static = {k: v for k, v in info.grid.items()
              if not declarations[k].live or any(x is None for x in v)}
    numeric = {k: v for k, v in info.grid.items() if k not in static}
    return static, numeric


def label(point: Mapping[str, Any]) -> str:
    """``k=v,...`` for a test id, the same in every process: a function by its name, not by
    its repr (which holds its address, and pytest-xdist workers must collect the same ids)."""
    def text(value):
        return getattr(value, "__name__", None) or str(value) if callable(value) else str(value)

    return ",".join(f"{k}={text(v)}" for k, v in point.items())


def product(axes: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    names = list(axes)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*axes.values())]


def all_pairs(
    axes: Mapping[str, Sequence[Any]], allowed: Callable[[dict], bool] = lambda point: True
) -> list[dict[str, Any]]:
    """Points of the product in which every value of every axis occurs together with every
    value of every other axis: greedily, the product's point that covers the most pairs not
    yet covered, until none is left (deterministic). Only points ``allowed`` accepts are
    candidates, so a pair that no allowed point holds is not asked for."""
    names = list(axes)

    def point(row):
        return {names[i]: axes[names[i]][v] for i, v in row}

    candidates = [row for row in (tuple(enumerate(r)) for r in itertools.product(*(
        range(len(axes[n])) for n in names))) if allowed(point(row))]

    def pairs(row):
        return {(a, b) for a, b in itertools.combinations(row, 2)}

    missing = set().union(*(pairs(row) for row in candidates)) if candidates else set()
    chosen = []
    while missing:
        best = max(candidates, key=lambda row: len(pairs(row) & missing))
        chosen.append(best)
        missing -= pairs(best)
    if not chosen and candidates:  # a single axis: its values are the points
        chosen = candidates
    return [point(row) for row in chosen]


def grid_points(
    info: OptimizerInfo, axes: Mapping[str, Sequence[Any]], static: Mapping[str, Any] = {}
):
    """The points of ``axes`` the parity sweep runs with the ``static`` settings, those the
    registry's constraint allows: their product, or all pairs of the allowed points where the
    registry entry asks for it (:attr:`OptimizerInfo.grid_strength`)."""
    def allowed(point):
        return info.constraint({**point, **static})

    if info.grid_strength == 2:
        return all_pairs(axes, allowed)
    return [p for p in product(axes) if allowed(p)]


def static_points(info: OptimizerInfo) -> list[dict[str, Any]]:
    """The settings of the grid's static axes (switches, choices: each a program of its own)
    that the parity sweep runs, those the registry's constraint allows: all of them, or all
    pairs of them where the entry asks for it."""
    static, _ = split_grid(info)
    if info.grid_strength == 2:
        return all_pairs(static, info.constraint)
    return [p for p in product(static) if info.constraint(p)]


def one_at_a_time(info: OptimizerInfo) -> list[dict[str, Any]]:
    """Defaults, then every grid value of every hyperparameter changed alone."""
    points = [{}]
    for name, values in info.grid.items():
        points += [{name: v} for v in values]
    unique = []
    for p in points:
        if p not in unique:
            unique.append(p)
    return unique


def assert_refused_by_name(factory, argument: str, value, params) -> None:
    """``factory(argument=value)`` raises ``ValueError`` naming the argument, for the value as
    a Python number, a NumPy scalar and a JAX array, and so does ``set_hyperparam`` on a state
    of the optimizer built without it (with weight decay 0.1 where the argument is the decay:
    a Python 0 leaves the step out, which then cannot be set)."""
    import pytest

    for bad in (value, np.float64(value), jnp.asarray(value)):
        with pytest.raises(ValueError, match=f"`{argument}`"):
            factory(**{argument: bad})
    state = factory(**({"weight_decay": 0.1} if argument == "weight_decay" else {})).init(params)
    if factory._injection.declarations[argument].live:
        with pytest.raises(ValueError, match=f"`{argument}`"):
            gx.set_hyperparam(state, argument, value)


def quadratic_problem(seed: int = 0):
    """``(params, centre, curvature)``: a matrix, a vector and a scalar leaf with a separable
    quadratic's centre and positive curvature per entry, for wrapper tests."""
    rng = np.random.default_rng(seed)
    shapes = {"w": (4, 3), "b": (3,), "s": ()}
    params = {k: rng.normal(size=s) for k, s in shapes.items()}
    centre = {k: rng.normal(size=s) for k, s in shapes.items()}
    curvature = {k: rng.uniform(0.5, 2.0, size=s) for k, s in shapes.items()}
    return params, centre, curvature


def scale_by_value() -> gx.GradientTransformation:
    """A loss-aware transform: multiplies the updates by the extra argument ``value``."""

    def init(params):
        del params
        return gx.EmptyState()

    def update(updates, state, params=None, **extra_args):
        value = gx.extra_arg(extra_args, "value", "scale_by_value")
        return jax.tree_util.tree_map(lambda u: u * value, updates), state

    return gx.GradientTransformation(init, update)

"""L-BFGS equals torch.optim.LBFGS in float64: each ``update`` is one ``step(closure)``.

* Step by step from torch's state: before every step the parameters and the whole state are
  taken from torch (through ``state_with_history``), so each step is compared on its own;
  after it the parameters, every state entry (``d``, ``t``, the history as torch's lists,
  ``H_diag``, ``prev_flat_grad``, ``prev_loss``) and the counts (``func_evals``, ``n_iter``,
  exactly) must equal torch's. Rosenbrock (2-D and 6-D), an ill-conditioned quadratic
  (condition 1e4) and a small MLP (four leaves), for max_iter in {1, 5, 20}, history_size in
  {3, 100}, with and without the strong-Wolfe line search; eager and jitted.
* Free running: gradtx's own state carried over 10 steps.
* Problems chosen to reach torch's rarer branches (early return, each stopping test, the
  zoom's small-bracket stop and end moves, pairs refused by the curvature test), complex
  parameters (the flat state interleaves their parts as torch's), and the line search alone
  on synthetic objectives that reach every branch of ``_strong_wolfe``.
* ``max_iter=1`` without a closure against torch fed the same gradients; bad arguments.

Tolerance: ``|ours - torch| <= rtol |torch| + 1e-12 max(1, max|torch|)`` with rtol 1e-9, save
where noted. L-BFGS iterations amplify rounding: torch itself, started from a point moved by
one unit in the last place, differs from its own run by up to 1e-6 after one 20-iteration
step on the 6-D Rosenbrock with history 3 (measured). The differences here come from the order
of summation in dot products and sums (XLA's against torch's); they are of that size.
"""

from __future__ import annotations

import copy
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx as gx
from gradtx.optimizers.lbfgs import (
    LbfgsRunState,
    history_as_lists,
    lbfgs,
    state_with_history,
)
from gradtx.transforms import line_search

RTOL = 1e-9
ATOL_SCALE = 1e-12
STEPS = 5

# -- problems ----------------------------------------------------------------------------------

_rng = np.random.default_rng(0)
_Q, _ = np.linalg.qr(_rng.standard_normal((5, 5)))
QUAD_A = _Q @ np.diag(np.logspace(0, 4, 5)) @ _Q.T
QUAD_A = (QUAD_A + QUAD_A.T) / 2
QUAD_B = _rng.standard_normal(5)
MLP_X = _rng.standard_normal((8, 3))
MLP_Y = _rng.standard_normal((8, 2))
MLP_PARAMS = {
    "w1": _rng.standard_normal((3, 4)) * 0.5, "b1": np.zeros(4),
    "w2": _rng.standard_normal((4, 2)) * 0.5, "b2": np.zeros(2),
}
ABS_C = np.random.default_rng(1).standard_normal(4)
EXP_A = np.array([2.0, 1.0, 3.0])
_crng = np.random.default_rng(2)
CPLX_A = _crng.standard_normal((4, 3)) + 1j * _crng.standard_normal((4, 3))
CPLX_B = _crng.standard_normal(4) + 1j * _crng.standard_normal(4)


def _rosenbrock(x, lib):
    return lib.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)


def _quad(x, lib, const):
    return 0.5 * x @ (const(QUAD_A) @ x) - const(QUAD_B) @ x


def _mlp(p, lib, const):
    hidden = lib.tanh(const(MLP_X) @ p["w1"] + p["b1"])
    return lib.mean((hidden @ p["w2"] + p["b2"] - const(MLP_Y)) ** 2)


def _abs(x, lib, const):  # a kink: the zoom's small-bracket stop, the lack-of-progress stop
    return lib.sum(lib.abs(x - const(ABS_C))) + 0.05 * lib.sum(x**2)


def _complex(p, lib, const):  # complex parameters beside a real one
    residual = const(CPLX_A) @ p["z"] - const(CPLX_B)
    return lib.sum(lib.abs(residual) ** 2) + lib.sum((p["r"] - 1.0) ** 2 * p["r"] ** 2)


def _exp(x, lib, const):
    return lib.sum(lib.exp(x)) - lib.sum(x * const(EXP_A))


# name -> (initial parameters, loss(params, lib, const)), written once for jnp and torch.
PROBLEMS = {
    "rosen2": ({"x": np.array([-1.2, 1.0])}, lambda p, lib, c: _rosenbrock(p["x"], lib)),
    "rosen6": ({"x": np.array([-1.2, 1.0, -0.5, 0.8, 1.5, -1.0])},
               lambda p, lib, c: _rosenbrock(p["x"], lib)),
    "quad": ({"x": np.ones(5)}, lambda p, lib, c: _quad(p["x"], lib, c)),
    "mlp": (MLP_PARAMS, _mlp),
    "abs": ({"x": np.full(4, 2.0)}, lambda p, lib, c: _abs(p["x"], lib, c)),
    "exp": ({"x": np.array([1.0, -2.0, 0.5])}, lambda p, lib, c: _exp(p["x"], lib, c)),
    "quartic": ({"x": np.array([3.0, -3.0])}, lambda p, lib, c: lib.sum(p["x"] ** 4)),
    "complex": ({"r": np.array([0.3, 2.0]), "z": np.array([1.0 + 1.0j, -0.5j, 2.0])}, _complex),
}
MAIN = ("rosen2", "rosen6", "quad", "mlp")
CONFIGS = [
    dict(max_iter=m, history_size=h, line_search_fn=ls)
    for ls in (None, "strong_wolfe") for m in (1, 5, 20) for h in (3, 100)
]


def _config_id(kwargs):
    return "-".join(f"{k}={v}" for k, v in sorted(kwargs.items()))


@functools.cache
def value_and_grad(name):
    """The problem's jitted ``params -> (loss, grads)``, shared by every case. Gradients of
    complex parameters in torch's convention: the conjugate of ``jax.grad``'s."""
    loss = jax.value_and_grad(lambda p: PROBLEMS[name][1](p, jnp, jnp.asarray))

    def value_and_grads(p):
        value, grads = loss(p)
        return value, jax.tree_util.tree_map(jnp.conj, grads)

    return jax.jit(value_and_grads)


def _initial(name):
    return {k: jnp.asarray(v) for k, v in PROBLEMS[name][0].items()}


# -- torch -------------------------------------------------------------------------------------


def _snapshot(torch, opt, tensors):
    """torch's parameters (leaf order) and state, as NumPy."""
    state = opt.state[tensors[0]]
    out = {"params": [t.detach().numpy().copy() for t in tensors],
           "state_dict": copy.deepcopy(opt.state_dict())}
    for key, value in state.items():
        if key == "al":
            continue
        if isinstance(value, list):
            out[key] = [float(v) if key == "ro" else v.numpy().copy() for v in value]
        elif isinstance(value, torch.Tensor) and value.ndim > 0:
            out[key] = value.numpy().copy()
        else:
            out[key] = float(value)
    return out


@functools.cache
def _torch_cached(name, items, steps):
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        params0, loss = PROBLEMS[name]
        keys = sorted(params0)  # jax.tree_util.tree_leaves order of a dict
        tensors = [torch.tensor(params0[k], requires_grad=True) for k in keys]
        kwargs = dict(items)
        kwargs["lr"] = kwargs.pop("learning_rate", 1.0)
        opt = torch.optim.LBFGS(tensors, **kwargs)

        def closure():
            opt.zero_grad()
            value = loss(dict(zip(keys, tensors, strict=True)), torch, torch.tensor)
            value.backward()
            return value

        records = []
        for _ in range(steps):
            before = _snapshot(torch, opt, tensors)
            returned = float(opt.step(closure).detach())
            records.append((before, _snapshot(torch, opt, tensors), returned))
        return records
    finally:
        torch.set_default_dtype(previous)


def torch_run(name, kwargs, steps=STEPS):
    """Per step: (torch before the step, torch after it, the loss step returned)."""
    return _torch_cached(name, tuple(sorted(kwargs.items())), steps)


def from_torch(state, snap):
    """``state`` with its LbfgsRunState replaced by torch's state ``snap``: how a torch
    state_dict maps onto gradtx's."""

    def convert(run):
        if not isinstance(run, LbfgsRunState):
            return run
        counts = dict(func_evals=jnp.asarray(int(snap.get("func_evals", 0)), jnp.int32),
                      n_iter=jnp.asarray(int(snap.get("n_iter", 0)), jnp.int32))
        if "d" not in snap:  # torch has no other entry before its first iteration
            return run._replace(**counts)
        dtype = run.d.dtype
        run = run._replace(
            **counts, d=jnp.asarray(snap["d"]), t=jnp.asarray(snap["t"], dtype),
            h_diag=jnp.asarray(snap["H_diag"], dtype),
            prev_flat_grad=jnp.asarray(snap["prev_flat_grad"]),
            prev_loss=jnp.asarray(snap["prev_loss"], dtype),
        )
        n = run.d.shape[0]
        return state_with_history(
            run, np.reshape(snap["old_dirs"], (-1, n)), np.reshape(snap["old_stps"], (-1, n)),
            snap["ro"],
        )

    return jax.tree_util.tree_map(
        convert, state, is_leaf=lambda x: isinstance(x, LbfgsRunState))


# -- comparisons -------------------------------------------------------------------------------


def _close(got, want, rtol, message):
    got, want = np.asarray(got), np.asarray(want)
    if np.iscomplexobj(got) or np.iscomplexobj(want):  # as pairs of reals
        got, want = (np.stack([np.real(x), np.imag(x)]) for x in (got, want))
    got, want = got.astype(np.float64), want.astype(np.float64)
    assert got.shape == want.shape, f"{message}: shape {got.shape} != {want.shape}"
    atol = ATOL_SCALE * max(1.0, float(np.max(np.abs(want), initial=0.0)))
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=message)


def _close_rows(got, want, rtol, message):
    """Vectors of the state compared row by row, each relative to its largest entry: their
    small entries are differences of larger numbers (y = g - g_prev, a direction from the
    two-loop recursion), exact only to the rounding of the large ones."""
    got = np.atleast_2d(np.asarray(got, dtype=np.float64))
    want = np.atleast_2d(np.asarray(want, dtype=np.float64))
    assert got.shape == want.shape, f"{message}: shape {got.shape} != {want.shape}"
    for i, (a, b) in enumerate(zip(got, want, strict=True)):
        scale = float(np.max(np.abs(b), initial=0.0))
        np.testing.assert_allclose(a, b, rtol=0, atol=rtol * scale + 1e-300,
                                   err_msg=f"{message} (row {i})")


def check_state(state, snap, rtol, where):
    """Every entry of gradtx's state against torch's after the same step."""
    run = gx.tree_get(state, "n_iter"), gx.tree_get(state, "func_evals")
    assert (int(run[0]), int(run[1])) == (snap["n_iter"], snap["func_evals"]), (
        f"{where}: (n_iter, func_evals) {int(run[0]), int(run[1])} != torch's "
        f"{snap['n_iter'], snap['func_evals']}"
    )
    if "d" not in snap:
        return
    for ours, theirs in [("t", "t"), ("h_diag", "H_diag"), ("prev_loss", "prev_loss")]:
        _close(gx.tree_get(state, ours), snap[theirs], rtol, f"{where}: {ours}")
    for name in ("d", "prev_flat_grad"):
        _close_rows(gx.tree_get(state, name), snap[name], rtol, f"{where}: {name}")
    dirs, stps, ro = history_as_lists(state)
    assert len(ro) == len(snap["ro"]), f"{where}: history length {len(ro)} != {len(snap['ro'])}"
    n = dirs.shape[1]
    _close_rows(dirs, np.reshape(snap["old_dirs"], (-1, n)), rtol, f"{where}: old_dirs")
    _close_rows(stps, np.reshape(snap["old_stps"], (-1, n)), rtol, f"{where}: old_stps")
    _close(ro, snap["ro"], rtol, f"{where}: ro")


def check_exported(exported, snap, rtol, where):
    """gradtx's state written as a torch state_dict equals torch's own after the same step."""
    theirs = snap["state_dict"]
    assert exported["param_groups"][0] == theirs["param_groups"][0], where
    ours = exported["state"][0]
    assert set(ours) == set(theirs["state"][0]) - {"al"}, where
    assert (ours["n_iter"], ours["func_evals"]) == (snap["n_iter"], snap["func_evals"]), where
    if "d" not in snap:
        return
    for key in ("t", "H_diag", "prev_loss"):
        _close(ours[key], snap[key], rtol, f"{where}: exported {key}")
    for key in ("d", "prev_flat_grad"):
        _close_rows(ours[key], snap[key], rtol, f"{where}: exported {key}")
    n = len(ours["d"])
    for key in ("old_dirs", "old_stps"):
        assert len(ours[key]) == len(snap[key]), f"{where}: exported {key} length"
        if ours[key]:
            _close_rows(np.stack(ours[key]), np.reshape(snap[key], (-1, n)), rtol,
                        f"{where}: exported {key}")
    _close([float(x) for x in ours["ro"]], snap["ro"], rtol, f"{where}: exported ro")


def check_params(params, snap, rtol, where):
    for leaf, want in zip(jax.tree_util.tree_leaves(params), snap["params"], strict=True):
        _close(leaf, want, rtol, f"{where}: params")


@functools.cache
def _jitted_update(name, items):
    """One compiled update per (problem, configuration), ``f`` closed over."""
    opt = lbfgs(**dict(items))
    f = value_and_grad(name)
    return jax.jit(lambda g, s, p, v: opt.update(g, s, p, value=v, value_and_grad_fn=f))


def run_from_torch(name, kwargs, rtol, jit=False, steps=STEPS):
    """Each step from torch's parameters and state; compared with torch after it."""
    opt = lbfgs(**kwargs)
    f = value_and_grad(name)
    update = _jitted_update(name, tuple(sorted(kwargs.items()))) if jit else (
        lambda g, s, p, v: opt.update(g, s, p, value=v, value_and_grad_fn=f))
    treedef = jax.tree_util.tree_structure(_initial(name))
    template = opt.init(_initial(name))
    for k, (before, after, returned) in enumerate(torch_run(name, kwargs, steps)):
        where = f"{name} {_config_id(kwargs)} step {k + 1}"
        params = jax.tree_util.tree_unflatten(treedef, [jnp.asarray(p) for p in before["params"]])
        value, grads = f(params)
        _close(value, returned, rtol, f"{where}: loss")  # torch's step returns orig_loss
        # torch's state through the bridge equals the prototype mapping below, entry by entry.
        imported = gx.from_torch_state_dict(opt, params, before["state_dict"])
        prototype = from_torch(template, before)
        for a, b in zip(jax.tree_util.tree_leaves(imported.inner_state),
                        jax.tree_util.tree_leaves(prototype.inner_state), strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=where)
        updates, state = update(grads, imported, params, value)
        new_params = gx.apply_updates(params, updates)
        check_params(new_params, after, rtol, where)
        check_state(state, after, rtol, where)
        check_exported(gx.to_torch_state_dict(opt, new_params, state, as_tensor=np.asarray),
                       after, rtol, where)


# Looser tolerances, measured (the largest difference over the 5 steps, eager and jitted,
# in brackets; all other cases hold 1e-9 on every entry):
# * the quadratic near its minimum: its gradient A x - b is O(1) terms cancelling to
#   O(1e-8), so the gradient (both libraries' autodiff) and the directions built from it carry
#   relative rounding of ~1e-8;
# * steps whose iterations amplify rounding: torch itself, from parameters moved by one unit
#   in the last place, differs from its own run by 7.6e-7 (6-D Rosenbrock, history 3, line
#   search, 20 iterations), 2e-9 (the same, 5 iterations), 3.9e-9 (the quadratic, history 3,
#   no search), 3e-10 (the MLP, history 100, no search) after one step.
SW = "strong_wolfe"
LOOSE = {
    ("quad", 5, 100, None): 1e-7,  # [5.7e-9]
    ("quad", 5, 100, SW): 1e-7,  # [5.7e-9]
    ("quad", 20, 100, None): 1e-7,  # [3.7e-9]
    ("quad", 20, 100, SW): 1e-7,  # [3.7e-9]
    ("quad", 20, 3, None): 1e-6,  # [5.0e-8]
    ("quad", 20, 3, SW): 1e-5,  # [2.9e-8; 2.5e-6 of its row on the AMD EPYC]
    ("rosen2", 20, 3, None): 1e-8,  # [2.1e-9]
    ("rosen6", 5, 3, SW): 1e-7,  # [1.6e-8]
    ("rosen6", 20, 3, SW): 1e-5,  # [6.2e-7]
    ("mlp", 20, 100, None): 1e-7,  # [2.1e-8]
    # Measured on a second CPU (AMD EPYC; the values above are from an Intel Xeon), where the
    # last-place rounding of both libraries differs: row 2 of old_stps after step 4-5.
    ("rosen6", 20, 3, None): 1e-8,  # [2.8e-9]
    ("mlp", 5, 100, SW): 1e-7,  # [9.9e-9, the free run]
    ("complex", 5, 3, SW): 1e-8,  # [1.7e-9, the rare-branches run]
}


def _rtol(name, kwargs):
    key = (name, kwargs["max_iter"], kwargs["history_size"], kwargs["line_search_fn"])
    return LOOSE.get(key, RTOL)


@pytest.mark.usefixtures("torch_float64")
@pytest.mark.parametrize("kwargs", CONFIGS, ids=_config_id)
@pytest.mark.parametrize("name", MAIN)
def test_each_step_matches_torch(name, kwargs):
    run_from_torch(name, kwargs, _rtol(name, kwargs))


JIT_CASES = [
    ("rosen2", dict(max_iter=20, history_size=3, line_search_fn="strong_wolfe")),
    ("rosen6", dict(max_iter=5, history_size=100, line_search_fn=None)),
    ("quad", dict(max_iter=20, history_size=100, line_search_fn="strong_wolfe")),
    ("mlp", dict(max_iter=5, history_size=3, line_search_fn="strong_wolfe")),
    ("mlp", dict(max_iter=20, history_size=3, line_search_fn=None)),
]


@pytest.mark.usefixtures("torch_float64")
@pytest.mark.parametrize(("name", "kwargs"), JIT_CASES,
                         ids=[f"{n}-{_config_id(k)}" for n, k in JIT_CASES])
def test_jitted_step_matches_torch(name, kwargs):
    run_from_torch(name, kwargs, _rtol(name, kwargs), jit=True)


# Problems and arguments that reach torch's rarer branches (measured with a line trace of
# torch.optim.lbfgs): the early return on a small first gradient and the optimality stop;
# the stops on the slope, on max|t d| and on the loss change; pairs refused by y.s > 1e-10;
# the line search running out of evaluations; the zoom's small-bracket stop and its moves
# away from the bracket's ends; the cubic without a real minimiser.
RARE = [
    ("abs", dict(learning_rate=1.0, max_iter=20, history_size=100,
                 line_search_fn="strong_wolfe")),  # small bracket, max|t d|, y.s refused
    ("abs", dict(learning_rate=0.1, max_iter=20, history_size=3,
                 line_search_fn="strong_wolfe")),  # end moves, small bracket
    # The search keeps its own bracket tolerance, 1e-9, whatever tolerance_change is.
    ("abs", dict(learning_rate=1.0, max_iter=20, history_size=100, tolerance_change=1e-5,
                 line_search_fn="strong_wolfe")),
    ("quartic", dict(max_iter=20, history_size=3, line_search_fn=None)),  # loss change
    ("quartic", dict(max_iter=20, history_size=100,
                     line_search_fn="strong_wolfe")),  # loss change, slope stop
    ("exp", dict(learning_rate=0.01, max_iter=20, history_size=100,
                 line_search_fn="strong_wolfe")),  # early return, optimality stop
    ("exp", dict(learning_rate=1.0, max_iter=5, history_size=3,
                 line_search_fn=None)),  # slope stop without a search, y.s refused
    ("rosen2", dict(learning_rate=1e-4, tolerance_change=1e-3, max_iter=5, history_size=3,
                    line_search_fn=None)),  # max|t d| small while the loss still moves
    ("rosen2", dict(learning_rate=0.01, max_iter=20, history_size=100,
                    line_search_fn="strong_wolfe")),  # out of evaluations, no real minimiser
    # Complex parameters: the flat state interleaves real and imaginary parts as torch's.
    ("complex", dict(max_iter=5, history_size=3, line_search_fn="strong_wolfe")),
    ("complex", dict(max_iter=5, history_size=100, line_search_fn=None)),
    ("quad", dict(learning_rate=10.0, max_iter=20, history_size=100,
                  line_search_fn="strong_wolfe")),  # early return
    ("quad", dict(learning_rate=0.5, max_iter=7, max_eval=4, history_size=2,
                  tolerance_grad=1e-5, tolerance_change=1e-6,
                  line_search_fn=None)),  # out of evaluations without a search
]


@pytest.mark.usefixtures("torch_float64")
@pytest.mark.parametrize(("name", "kwargs"), RARE,
                         ids=[f"{n}-{_config_id(k)}" for n, k in RARE])
def test_rare_branches_match_torch(name, kwargs):
    run_from_torch(name, kwargs, _rtol(name, kwargs))


# Free running, 10 steps, gradtx's own state carried: one iteration per step (the history
# wraps around with history_size=3); and five with the line search on the MLP. Free runs with
# more iterations per step accumulate the differences above from step to step (measured: up
# to 7e-4 after 10 steps on the 2-D Rosenbrock with history 3).
FREE = [(n, dict(max_iter=1, history_size=3, line_search_fn=ls))
        for n in MAIN for ls in (None, "strong_wolfe")]
FREE += [("mlp", dict(max_iter=5, history_size=100, line_search_fn="strong_wolfe"))]


@pytest.mark.usefixtures("torch_float64")
@pytest.mark.parametrize(("name", "kwargs"), FREE,
                         ids=[f"{n}-{_config_id(k)}" for n, k in FREE])
def test_free_run_matches_torch(name, kwargs):
    opt = lbfgs(**kwargs)
    f = value_and_grad(name)
    params = _initial(name)
    state = opt.init(params)
    rtol = _rtol(name, kwargs)
    for k, (_, after, returned) in enumerate(torch_run(name, kwargs, steps=10)):
        where = f"{name} {_config_id(kwargs)} free step {k + 1}"
        value, grads = f(params)
        _close(value, returned, rtol, f"{where}: loss")
        updates, state = opt.update(grads, state, params, value=value, value_and_grad_fn=f)
        params = gx.apply_updates(params, updates)
        check_params(params, after, rtol, where)
        check_state(state, after, rtol, where)


# -- the state_dict bridge: 20 steps in one library, 20 in the other --------------------------

BRIDGE_CASES = [("mlp", dict(max_iter=1, history_size=5, line_search_fn=None)),
                ("rosen2", dict(max_iter=1, history_size=3, line_search_fn=None))]


@pytest.mark.parametrize(("name", "kwargs"), BRIDGE_CASES, ids=[n for n, _ in BRIDGE_CASES])
def test_run_moves_between_torch_and_gradtx(name, kwargs, torch_float64):
    """torch 20 steps, its state_dict into gradtx, 20 gradtx steps == 40 torch steps; and
    gradtx 20 steps, exported into a fresh torch LBFGS, 20 torch steps == 40 gradtx steps
    (history wrapped included)."""
    torch = torch_float64
    opt = lbfgs(**kwargs)
    f = value_and_grad(name)
    records = torch_run(name, kwargs, steps=40)
    treedef = jax.tree_util.tree_structure(_initial(name))

    def gradtx_steps(params, state, n):
        for _ in range(n):
            value, grads = f(params)
            updates, state = opt.update(grads, state, params, value=value, value_and_grad_fn=f)
            params = gx.apply_updates(params, updates)
        return params, state

    before = records[20][0]
    params = jax.tree_util.tree_unflatten(treedef, [jnp.asarray(p) for p in before["params"]])
    state = gx.from_torch_state_dict(opt, params, before["state_dict"])
    params, _ = gradtx_steps(params, state, 20)
    check_params(params, records[39][1], RTOL, f"{name}: torch 20 + gradtx 20")

    params20, state20 = gradtx_steps(_initial(name), opt.init(_initial(name)), 20)
    params40, _ = gradtx_steps(params20, state20, 20)
    keys = sorted(PROBLEMS[name][0])
    tensors = [torch.tensor(np.asarray(params20[k]), requires_grad=True) for k in keys]
    topt = torch.optim.LBFGS(tensors, lr=1.0, **kwargs)
    topt.load_state_dict(gx.to_torch_state_dict(opt, params20, state20))
    loss = PROBLEMS[name][1]

    def closure():
        topt.zero_grad()
        value = loss(dict(zip(keys, tensors, strict=True)), torch, torch.tensor)
        value.backward()
        return value

    for _ in range(20):
        topt.step(closure)
    check_params(params40, {"params": [t.detach().numpy() for t in tensors]}, RTOL,
                 f"{name}: gradtx 20 + torch 20")


# -- max_iter=1 without a closure --------------------------------------------------------------

_grad_rng = np.random.default_rng(7)
GRAD_SEQUENCE = [_grad_rng.standard_normal(6) for _ in range(12)]
GRAD_SEQUENCE[3] = GRAD_SEQUENCE[2] * 1.5  # a pair with y.s of either sign, by chance or not
GRAD_SEQUENCE[5] = np.full(6, 1e-8)  # below tolerance_grad: torch returns at once
LOSS_SEQUENCE = [float(v) for v in _grad_rng.standard_normal(12)]
SPLIT = [(0, 2), (2, 6)]  # two leaves, a (2,) and a (2, 2)


def _as_tree(flat):
    return {"a": jnp.asarray(flat[0:2]), "b": jnp.asarray(flat[2:6]).reshape(2, 2)}


@pytest.mark.parametrize(("learning_rate", "history_size"), [(1.0, 2), (0.05, 100)])
def test_gradient_sequence_without_closure(torch_float64, history_size, learning_rate):
    torch = torch_float64
    x0 = np.linspace(-1.0, 1.0, 6)
    tensors = [torch.tensor(x0[0:2], requires_grad=True),
               torch.tensor(x0[2:6].reshape(2, 2), requires_grad=True)]
    topt = torch.optim.LBFGS(tensors, lr=learning_rate, max_iter=1, history_size=history_size)
    opt = lbfgs(learning_rate=learning_rate, max_iter=1, history_size=history_size)
    params = _as_tree(x0)
    state = opt.init(params)
    no_value = opt.init(params)
    plain = params

    def scan_step(carry, inputs):
        params, state = carry
        g, v = inputs
        updates, state = opt.update(_as_tree(g), state, params, value=v)
        params = gx.apply_updates(params, updates)
        return (params, state), params

    _, scanned = jax.lax.scan(
        scan_step, (params, opt.init(params)),
        (jnp.asarray(np.stack(GRAD_SEQUENCE)), jnp.asarray(LOSS_SEQUENCE)))

    for k, (g, v) in enumerate(zip(GRAD_SEQUENCE, LOSS_SEQUENCE, strict=True)):

        def closure(g=g, v=v):
            for tensor, (lo, hi) in zip(tensors, SPLIT, strict=True):
                tensor.grad = torch.tensor(g[lo:hi]).reshape(tensor.shape)
            return torch.tensor(v)

        topt.step(closure)
        after = _snapshot(torch, topt, tensors)
        updates, state = opt.update(_as_tree(g), state, params, value=v)  # eager
        params = gx.apply_updates(params, updates)
        where = f"gradient step {k + 1}"
        check_params(params, after, RTOL, where)
        check_state(state, after, RTOL, where)
        check_params(jax.tree_util.tree_map(lambda x, k=k: x[k], scanned), after, RTOL,
                     f"{where} (lax.scan)")
        # Without value: the same step, prev_loss is NaN.
        updates, no_value = opt.update(_as_tree(g), no_value, plain)
        plain = gx.apply_updates(plain, updates)
        check_params(plain, after, RTOL, f"{where} (no value)")
        if "d" in after:
            assert np.isnan(float(gx.tree_get(no_value, "prev_loss")))
    assert after["n_iter"] == len(GRAD_SEQUENCE) - 1  # the small gradient made no iteration
    assert after["func_evals"] == len(GRAD_SEQUENCE)


# -- the line search alone ---------------------------------------------------------------------

# Synthetic objectives along one direction: a value and a slope that need not agree (the search
# sees only those), from which torch's _strong_wolfe reaches all its branches: these seeds
# cover (measured with a line trace of torch) the Wolfe point while bracketing (5, 9), running
# out of evaluations (2, 3, 6), the zoom's small-bracket stop (8, 14, 20), its moves from the
# lower end (8, 24) and from the upper end (21, 23), a step of insufficient progress (1, 8),
# the Wolfe point in the zoom (0, 4), the swap of the bracket's ends (1, 21), the cubic
# without a real minimiser (44, 65), and the last evaluation of the bracketing phase failing
# the checks (223, 362: torch's bracket is then [0, t], not [t_prev, t]). Left out: seeds whose
# trial steps stop changing, where a tie f_new >= f_prev between two evaluations at the same
# point decides, and the objective compiled in two places (jit) differs in its last bit.
SEARCH_SEEDS = sorted(
    {0, 1, 2, 3, 4, 5, 6, 8, 9, 14, 20, 21, 23, 24, 44, 65, 223, 362, *range(30, 40)})


def _synthetic(seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(4)
    w = rng.uniform(0.5, 8, 2)
    ph = rng.uniform(0, 6, 2)
    t0 = float(10 ** rng.uniform(-2, 1))
    max_ls = int(rng.integers(0, 26))
    g0 = -abs(rng.standard_normal()) - 0.1
    return np.concatenate([a, w, ph]), t0, g0, max_ls


def _phi(coef, t, lib):
    a, w, ph = coef[0:4], coef[4:6], coef[6:8]
    value = a[0] * lib.sin(w[0] * t + ph[0]) + abs(a[1]) * (t - abs(a[2])) ** 2
    slope = a[3] * lib.cos(w[1] * t + ph[1]) + 2 * abs(a[1]) * (t - abs(a[2]))
    return value, slope


def _our_search(coef, t0, g0, max_ls):
    def vg(x):
        value, slope = _phi(coef, x[0], jnp)
        return value, jnp.reshape(slope, (1,))

    f0 = _phi(coef, jnp.zeros([]), jnp)[0]
    return line_search.strong_wolfe(vg, jnp.zeros(1), t0, jnp.ones(1), f0,
                                    jnp.reshape(g0, (1,)), g0, max_ls)


def test_strong_wolfe_matches_torch(torch_float64):
    torch = torch_float64
    from torch.optim.lbfgs import _strong_wolfe

    jitted = jax.jit(_our_search)
    for seed in SEARCH_SEEDS:
        coef, t0, g0, max_ls = _synthetic(seed)

        def obj(x, t, d, coef=coef):
            value, slope = _phi(coef, float(t), np)
            return float(value), torch.tensor([slope])

        f0 = float(_phi(coef, 0.0, np)[0])
        want = _strong_wolfe(obj, torch.zeros(1), t0, torch.ones(1), f0, torch.tensor([g0]),
                             torch.tensor(g0), max_ls=max_ls)
        args = (jnp.asarray(coef), jnp.asarray(t0), jnp.asarray(g0), max_ls)
        for how, got in [("eager", _our_search(*args)), ("jit", jitted(*args))]:
            where = f"seed {seed} ({how})"
            assert int(got[3]) == want[3], f"{where}: evaluations {int(got[3])} != {want[3]}"
            # sin and cos of NumPy and XLA may differ in the last place.
            _close(got[2], float(want[2]), 1e-11, f"{where}: t")
            _close(got[0], want[0], 1e-11, f"{where}: f")
            _close(got[1], want[1].numpy(), 1e-11, f"{where}: g")


def test_cubic_minimizer():
    # The cubic through (0, 0) with slope -1 and (1, 0) with slope 1 has its minimum at 1/2
    # by symmetry; bounds clip it; a cubic without a real minimiser gives the middle.
    mid = line_search.cubic_minimizer(0.0, 0.0, -1.0, 1.0, 0.0, 1.0)
    np.testing.assert_allclose(float(mid), 0.5)
    np.testing.assert_allclose(
        float(line_search.cubic_minimizer(0.0, 0.0, -1.0, 1.0, 0.0, 1.0, (0.7, 2.0))), 0.7)
    # d1 = g1 + g2 - 3 (f1 - f2) / (x1 - x2) = 0 and d1^2 - g1 g2 < 0: no real minimiser.
    np.testing.assert_allclose(
        float(line_search.cubic_minimizer(0.0, 0.0, -1.0, 3.0, -2.0, -1.0)), 1.5)
    # Swapped points give the same minimiser.
    np.testing.assert_allclose(
        float(line_search.cubic_minimizer(1.0, 0.0, 1.0, 0.0, 0.0, -1.0)), 0.5)


# -- state helpers, arguments ------------------------------------------------------------------


def test_history_helpers_round_trip():
    opt = lbfgs(max_iter=1, history_size=3)
    params = {"a": jnp.zeros(2), "b": jnp.zeros((2, 2))}
    state = opt.init(params)
    for g in GRAD_SEQUENCE[:8]:
        updates, state = opt.update(_as_tree(g), state, params, value=0.0)
        params = gx.apply_updates(params, updates)
    dirs, stps, ro = history_as_lists(state)
    assert len(ro) == 3 and int(gx.tree_get(state, "history_start")) != 0  # wrapped around
    moved = state_with_history(state, dirs, stps, ro)
    assert int(gx.tree_get(moved, "history_start")) == 0
    for a, b in zip(history_as_lists(moved), (dirs, stps, ro), strict=True):
        np.testing.assert_array_equal(a, b)
    # The same step from either layout.
    g = _as_tree(GRAD_SEQUENCE[9])
    u1, s1 = opt.update(g, state, params, value=0.0)
    u2, s2 = opt.update(g, moved, params, value=0.0)
    for x, y in zip(jax.tree_util.tree_leaves(u1), jax.tree_util.tree_leaves(u2), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-14, atol=1e-15)
    with pytest.raises(ValueError, match="history_size=3"):
        state_with_history(state, np.zeros((4, 6)), np.zeros((4, 6)), np.zeros(4))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        (dict(line_search_fn="wolfe"), "line_search_fn"),
        (dict(learning_rate=-1.0), "learning_rate"),
        (dict(max_iter=0), "max_iter"),
        (dict(max_iter=2.5), "max_iter"),
        (dict(max_eval=0), "max_eval"),
        (dict(history_size=0), "history_size"),
        (dict(tolerance_grad=-1e-3), "tolerance_grad"),
        (dict(tolerance_change=float("nan")), "tolerance_change"),
    ],
)
def test_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        lbfgs(**kwargs)


def test_a_line_search_fn_that_is_not_a_string_is_a_type_error():
    with pytest.raises(TypeError, match="line_search_fn"):
        lbfgs(line_search_fn=1)


@pytest.mark.parametrize(
    "kwargs", [dict(), dict(max_iter=1, line_search_fn="strong_wolfe"), dict(max_iter=2)],
    ids=["default", "search", "two_iterations"])
def test_missing_closure(kwargs):
    opt = lbfgs(**kwargs)
    params = {"x": jnp.ones(3)}
    state = opt.init(params)
    f = value_and_grad("rosen2")
    with pytest.raises(ValueError, match="value_and_grad_fn"):
        opt.update(params, state, params, value=1.0)
    with pytest.raises(ValueError, match="`value`"):
        opt.update(params, state, params, value_and_grad_fn=f)
    with pytest.raises(ValueError, match="value_and_grad_fn"):  # under jit too
        jax.jit(lambda g, s, p: opt.update(g, s, p, value=1.0))(params, state, params)


def test_needs_params():
    opt = lbfgs(max_iter=1)
    params = {"x": jnp.ones(3)}
    with pytest.raises(ValueError, match="params"):
        opt.update(params, opt.init(params))

"""Muon equals torch.optim.Muon to rtol 1e-9 in float64 over 30 steps, on square, tall and wide
matrices (two of one shape), with all-zero gradient steps,
tiny (1e-9) and huge (1e4) entries and whole steps scaled by 1e4 and 1e-12 (the latter below
``eps``, so the norm's floor is exercised): across a grid of every argument, jitted (numeric
hyperparameters traced under vmap, steps under lax.scan) and eager (vmap without jit); the
momentum buffer equals torch's at every step, with ``batch_by_shape`` both ways (one
Newton–Schulz per shape or per matrix). Also:
non-matrix leaves refused by path, bad arguments refused by name, and the Muon + AdamW recipe.

Two references. torch's Muon always runs Newton–Schulz in bfloat16 (``grad.bfloat16()``),
whatever the parameters' dtype; gradtx's default (``ns_dtype=jnp.bfloat16``) does the same and
is compared with torch as it is. ``ns_dtype=None`` runs the iteration in float64, compared with
torch's Muon in which that one cast is made a float64 copy instead (``Tensor.bfloat16``
patched for the duration of the reference run; every operation is torch's own). The float64
comparison checks every formula at full precision; the bfloat16 one checks torch's rounding.

The comparison is test_parity's: ``|ours - torch| <= 1e-9 |torch| + 1e-12 max(1, max|leaf|)``.
"""

from __future__ import annotations

import contextlib
import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx as gx
from gradtx.optimizers.muon import NON_MUON_NAMES, is_hidden_matrix, muon, muon_with_adamw
from gradtx.transforms.orthogonalize import (
    adjust_muon_learning_rate,
    muon_lr_ratio,
    newton_schulz,
    orthogonalize_by_newton_schulz,
    scale_by_muon_momentum,
)
from tests import helpers

RTOL = 1e-9
ATOL_SCALE = 1e-12
STEPS = 30
EAGER_STEPS = 8  # op by op under vmap is slow; the first 8 steps hold two zero steps, a huge
# and a tiny one
# Tall, wide, square, and a second tall one (two matrices of one shape, each its own state).
SHAPES = {"a": (4, 3), "b": (3, 5), "c": (6, 6), "d": (4, 3)}
KEYS = sorted(SHAPES)
ZERO_STEPS = (0, 7, 22)
OTHER_COEFFICIENTS = (2.0, -1.5, 0.5)


def _params(seed=0):
    rng = np.random.default_rng(seed)
    return {k: rng.normal(size=s) for k, s in SHAPES.items()}


def _gradients(steps=STEPS, seed=1):
    """Every step: a tiny and a huge entry in each matrix; steps 3, 8, ... scaled by 1e4 and
    4, 9, ... by 1e-12 (norm about 1e-8: below both values of eps, so without momentum the
    floor decides the step); the steps in ZERO_STEPS all zero."""
    rng = np.random.default_rng(seed)
    out = []
    for t in range(steps):
        step = {}
        for k, shape in SHAPES.items():
            g = rng.normal(size=shape)
            g.reshape(-1)[0] *= 1e-9
            g.reshape(-1)[1] *= 1e4
            if t % 5 == 3:
                g = g * 1e4
            elif t % 5 == 4:
                g = g * 1e-12
            step[k] = np.zeros_like(g) if t in ZERO_STEPS else g
        out.append(step)
    return out


PARAMS = _params()
GRADS = _gradients()
GRADS_STACKED = helpers.stack(GRADS)

DEFAULTS = dict(
    learning_rate=1e-3, weight_decay=0.1, momentum=0.95, nesterov=True,
    ns_coefficients=(3.4445, -4.775, 2.0315), eps=1e-7, ns_steps=5, adjust_lr_fn=None,
)
NUMERIC = {
    "learning_rate": [0.02, 0.1],
    "weight_decay": [0.0, 0.1],
    "momentum": [0.0, 0.5, 0.95],
    "eps": [1e-7, 1e-3],
}
# The fixed arguments: every value of each, in pairs, without the full product (each case is a
# compilation).
# batch_by_shape (not a torch argument) batches "a" and "d", the two (4, 3) matrices.
STATIC_FLOAT64 = [
    {},
    {"nesterov": False, "ns_steps": 1, "adjust_lr_fn": "original", "batch_by_shape": True},
    {"adjust_lr_fn": "match_rms_adamw", "ns_coefficients": OTHER_COEFFICIENTS,
     "batch_by_shape": True},
    {"nesterov": False, "ns_steps": 1, "adjust_lr_fn": "match_rms_adamw",
     "ns_coefficients": OTHER_COEFFICIENTS},
]
STATIC_BFLOAT16 = [
    {},
    {"nesterov": False, "ns_steps": 1, "adjust_lr_fn": "match_rms_adamw",
     "ns_coefficients": OTHER_COEFFICIENTS, "batch_by_shape": True},
]


# -- torch --------------------------------------------------------------------------------------


@contextlib.contextmanager
def _newton_schulz_in_float64(torch):
    """torch's Muon with its bfloat16 cast replaced by a copy in the same dtype (a new tensor,
    as the cast makes one: torch divides it in place)."""
    original = torch.Tensor.bfloat16
    torch.Tensor.bfloat16 = lambda self, *args, **kwargs: self.clone()
    try:
        yield
    finally:
        torch.Tensor.bfloat16 = original


def _torch_kwargs(kwargs):
    full = {**DEFAULTS, **kwargs}
    out = {k: v for k, v in full.items() if k not in ("learning_rate", "batch_by_shape")}
    out["lr"] = full["learning_rate"]
    return out


@functools.cache
def _torch_cached(items, float64, schedule_decay):
    import torch

    kwargs = dict(items)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: more threads only contend
    try:
        return _torch_run(torch, kwargs, float64, schedule_decay)
    finally:
        torch.set_num_threads(threads)


def _torch_run(torch, kwargs, float64, schedule_decay):
    tensors = [torch.tensor(PARAMS[k], dtype=torch.float64, requires_grad=True) for k in KEYS]
    opt = torch.optim.Muon(tensors, **_torch_kwargs(kwargs))
    scheduler = None
    if schedule_decay is not None:
        scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: schedule_decay**t)
    traj, buffers = [], []
    context = _newton_schulz_in_float64(torch) if float64 else contextlib.nullcontext()
    with context:
        for g in GRADS:
            for tensor, k in zip(tensors, KEYS, strict=True):
                tensor.grad = torch.tensor(g[k], dtype=torch.float64)
            opt.step()
            if scheduler is not None:
                scheduler.step()
            traj.append({k: t.detach().numpy().copy() for k, t in zip(KEYS, tensors, strict=True)})
            buffers.append({
                k: opt.state[t]["momentum_buffer"].detach().numpy().copy()
                for k, t in zip(KEYS, tensors, strict=True)
            })
    return helpers.stack(traj), helpers.stack(buffers)


def torch_reference(kwargs, float64, schedule_decay=None):
    """torch's parameters and momentum buffers after each step (leading axis = step), computed
    once per arguments."""
    items = tuple(sorted((k, v) for k, v in kwargs.items()))
    return _torch_cached(items, float64, schedule_decay)


# -- gradtx -------------------------------------------------------------------------------------


def run_scan(opt, params, grads_stacked):
    def step(carry, g):
        params, state = carry
        updates, state = opt.update(g, state, params)
        params = gx.apply_updates(params, updates)
        return (params, state), (params, gx.tree_get(state, "momentum_buffer"))

    _, out = jax.lax.scan(step, (params, opt.init(params)), grads_stacked)
    return out


def run_steps(opt, params, grads):
    state = opt.init(params)
    traj, buffers = [], []
    for g in grads:
        updates, state = opt.update(g, state, params)
        params = gx.apply_updates(params, updates)
        traj.append(params)
        buffers.append(gx.tree_get(state, "momentum_buffer"))
    return helpers.stack(traj), helpers.stack(buffers)


def _close_steps(got, want, message):
    """The tolerance at every step (leading axis = step); NaN matches NaN."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    flat = np.abs(want).reshape(len(want), -1)
    atol = ATOL_SCALE * np.maximum(1.0, np.nanmax(flat, axis=1, initial=0.0))
    atol = atol.reshape((-1,) + (1,) * (want.ndim - 1))
    ok = (np.abs(got - want) <= RTOL * np.abs(want) + atol) | (np.isnan(got) & np.isnan(want))
    if not ok.all():
        t = int(np.argmin(ok.reshape(len(ok), -1).all(axis=1)))
        np.testing.assert_allclose(got[t], want[t], rtol=RTOL, err_msg=f"step {t + 1}, {message}")


def assert_matches(expected, ours, kwargs, index=None, steps=STEPS):
    pick = (lambda x: x[index]) if index is not None else (lambda x: x)
    names = ("param", "momentum_buffer")
    for name, want, got in zip(names, expected, ours, strict=True):
        for k in KEYS:
            _close_steps(pick(got[k])[:steps], want[k][:steps], f"{name} {k!r}, {kwargs}")


# -- the grid -----------------------------------------------------------------------------------


def _grid_cases():
    for dtype_name, cases in (("float64", STATIC_FLOAT64), ("bfloat16", STATIC_BFLOAT16)):
        for static in cases:
            label = ",".join(f"{k}={v}" for k, v in static.items()) or "defaults"
            yield pytest.param(dtype_name, static, id=f"{dtype_name}[{label}]")


def _grid_points():
    points = helpers.product(NUMERIC)
    hyper = {k: jnp.asarray([p[k] for p in points], jnp.float64) for k in NUMERIC}
    return points, hyper


@pytest.mark.parametrize(("dtype_name", "static"), list(_grid_cases()))
def test_grid_matches_torch_jitted(dtype_name, static):
    """All 24 numeric points at once (vmapped, traced), per set of fixed arguments."""
    float64 = dtype_name == "float64"
    ns_dtype = None if float64 else jnp.bfloat16
    points, hyper = _grid_points()

    def run(hp):
        return run_scan(muon(**hp, **static, ns_dtype=ns_dtype), PARAMS, GRADS_STACKED)

    out = jax.jit(jax.vmap(run))(hyper)
    for i, point in enumerate(points):
        kwargs = {**point, **static}
        assert_matches(torch_reference(kwargs, float64), out, kwargs, index=i)


@pytest.mark.parametrize("dtype_name", ["float64", "bfloat16"])
def test_grid_matches_torch_eager(dtype_name):
    """The same numeric points op by op (vmap without jit), over the first steps."""
    float64 = dtype_name == "float64"
    static = {} if float64 else STATIC_BFLOAT16[1]
    ns_dtype = None if float64 else jnp.bfloat16
    points, hyper = _grid_points()

    def run(hp):
        return run_steps(muon(**hp, **static, ns_dtype=ns_dtype), PARAMS, GRADS[:EAGER_STEPS])

    out = jax.vmap(run)(hyper)
    for i, point in enumerate(points):
        kwargs = {**point, **static}
        expected = torch_reference(kwargs, float64)
        assert_matches(expected, out, kwargs, index=i, steps=EAGER_STEPS)


PYTHON_CASES = [
    ({}, True),  # torch's defaults, bfloat16
    ({"weight_decay": 0.0, "learning_rate": 0.05}, True),  # a Python 0 leaves the step out
    ({"weight_decay": 0, "adjust_lr_fn": "match_rms_adamw", "momentum": 0.0}, False),
]


@pytest.mark.parametrize(("kwargs", "bfloat16"), PYTHON_CASES)
def test_python_floats_match_torch(kwargs, bfloat16):
    """Python numbers, updates called eagerly (each runs the cached compiled step)."""
    ns_dtype = jnp.bfloat16 if bfloat16 else None
    opt = muon(**kwargs, ns_dtype=ns_dtype)
    expected = torch_reference(kwargs, float64=not bfloat16)
    assert_matches(expected, run_steps(opt, PARAMS, GRADS), kwargs)


def test_learning_rate_schedule_matches_torch_lambda_lr():
    """A schedule scales the adjusted learning rate and the weight decay, as torch's LambdaLR
    changes the group's lr that both read."""
    opt = muon(learning_rate=lambda count: 0.1 * 0.9**count, ns_dtype=None)
    expected = torch_reference({"learning_rate": 0.1}, float64=True, schedule_decay=0.9)
    assert_matches(expected, run_steps(opt, PARAMS, GRADS), "schedule")


def test_float32_parameters_keep_their_dtype_and_track_float64():
    params = {k: jnp.asarray(v, jnp.float32) for k, v in PARAMS.items()}
    opt = muon(learning_rate=0.02)
    traj, buffers = run_steps(opt, params, GRADS[:5])
    assert all(traj[k].dtype == jnp.float32 and buffers[k].dtype == jnp.float32 for k in KEYS)
    want, _ = torch_reference({"learning_rate": 0.02}, float64=False)
    # float32 momentum may round to another bfloat16 neighbour than float64's, rarely: a
    # change of about lr / 256 in one entry.
    for k in KEYS:
        np.testing.assert_allclose(traj[k], want[k][:5], rtol=1e-5, atol=2e-4)


# -- the pieces ---------------------------------------------------------------------------------


def test_newton_schulz_matches_torchs_on_its_own():
    """torch's private iteration, on tall, wide, square, zero and badly scaled matrices."""
    import torch
    from torch.optim._muon import _zeropower_via_newtonschulz as torch_ns

    rng = np.random.default_rng(5)
    matrices = [rng.normal(size=(7, 2)), rng.normal(size=(1, 4)) * 1e6,
                rng.normal(size=(3, 3)) * 1e-12, np.zeros((3, 4))]
    coefficients, steps, eps = OTHER_COEFFICIENTS, 3, 1e-11
    ours = jax.jit(newton_schulz, static_argnums=(1, 3), static_argnames="dtype")
    for m in matrices:
        want_bf16 = torch_ns(torch.tensor(m), coefficients, steps, eps).double().numpy()
        with _newton_schulz_in_float64(torch):
            want_f64 = torch_ns(torch.tensor(m), coefficients, steps, eps).numpy()
        got_bf16 = ours(jnp.asarray(m), coefficients, eps, steps)
        got_f64 = ours(jnp.asarray(m), coefficients, eps, steps, dtype=None)
        assert got_bf16.dtype == got_f64.dtype == jnp.float64
        np.testing.assert_array_equal(np.asarray(got_bf16), want_bf16, err_msg=str(m.shape))
        np.testing.assert_allclose(np.asarray(got_f64), want_f64, rtol=1e-12, atol=1e-15)


def _loops(jaxpr) -> int:
    """The loops (``scan``: ``fori_loop`` with a fixed trip count, or ``while``) in a printed
    jaxpr, sub-jaxprs included: one per Newton–Schulz run."""
    text = str(jaxpr)
    return text.count("scan[") + text.count("while[")


def test_batch_by_shape_runs_one_iteration_per_shape():
    """Three (8, 4) matrices and a (4, 8): four Newton–Schulz loops leaf by leaf, two batched
    (the step's output is checked against torch by the grid above)."""
    tree = {"a": jnp.ones((8, 4)), "b": jnp.ones((8, 4)), "c": jnp.ones((8, 4)),
            "d": jnp.ones((4, 8))}
    loops = {}
    for batch in (False, True):
        opt = muon(0.02, batch_by_shape=batch)
        loops[batch] = _loops(jax.make_jaxpr(opt.update)(tree, opt.init(tree), tree))
    assert loops == {False: 4, True: 2}
    # The recipe passes it on (its AdamW half has no loop).
    tree = {**tree, "bias": jnp.ones(4)}
    for batch, expected in ((False, 4), (True, 2)):
        opt = muon_with_adamw(0.02, batch_by_shape=batch)
        assert _loops(jax.make_jaxpr(opt.update)(tree, opt.init(tree), tree)) == expected
    with pytest.raises(TypeError, match="batch_by_shape"):
        muon_with_adamw(0.02, batch_by_shape="yes")


def test_newton_schulz_orthogonalises():
    """With the cubic coefficients (1.5, -0.5, 0), which converge, the iteration gives
    :math:`U V^\\top` of the SVD; torch's default quintic ones leave the singular values in
    about [0.7, 1.2] after 5 steps."""
    rng = np.random.default_rng(6)
    m = rng.normal(size=(6, 4))
    u, _, vt = np.linalg.svd(m, full_matrices=False)
    polar = newton_schulz(jnp.asarray(m), (1.5, -0.5, 0.0), 1e-7, 60, dtype=None)
    np.testing.assert_allclose(np.asarray(polar), u @ vt, atol=1e-10)
    quintic = newton_schulz(jnp.asarray(m), ns_steps=5, dtype=None)
    singular = np.linalg.svd(np.asarray(quintic), compute_uv=False)
    assert singular.min() > 0.6 and singular.max() < 1.25, singular


def test_zero_update_and_eps():
    zero = jnp.zeros((3, 2))
    np.testing.assert_array_equal(newton_schulz(zero, eps=1e-7, dtype=None), zero)
    np.testing.assert_array_equal(newton_schulz(zero, eps=1e-7), zero)
    assert np.isnan(np.asarray(newton_schulz(zero, eps=0.0, dtype=None))).all()  # as torch


def test_lr_ratio_and_momentum_pieces():
    assert muon_lr_ratio((8, 2)) == muon_lr_ratio((8, 2), "original") == 2.0
    assert muon_lr_ratio((2, 8)) == 1.0
    assert muon_lr_ratio((4, 9), "match_rms_adamw") == 0.2 * 3.0
    adjust = adjust_muon_learning_rate("match_rms_adamw")
    out, _ = adjust.update({"w": jnp.ones((4, 9))}, adjust.init(None))
    np.testing.assert_allclose(out["w"], 0.6)
    momentum = scale_by_muon_momentum(0.5, nesterov=False)
    state = momentum.init({"w": jnp.zeros((1, 2))})
    out, state = momentum.update({"w": jnp.asarray([[2.0, 4.0]])}, state)
    np.testing.assert_allclose(out["w"], [[1.0, 2.0]])
    np.testing.assert_allclose(state.momentum_buffer["w"], [[1.0, 2.0]])
    nesterov = scale_by_muon_momentum(0.5, nesterov=True)
    state = nesterov.init({"w": jnp.zeros((1, 2))})
    out, _ = nesterov.update({"w": jnp.asarray([[2.0, 4.0]])}, state)
    np.testing.assert_allclose(out["w"], [[1.5, 3.0]])  # (1 - mu) g + mu B = 1 + 0.5


# -- non-matrix leaves --------------------------------------------------------------------------


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_non_matrix_leaves_are_refused_by_path(jit):
    good = {"layer": {"w": jnp.ones((3, 3))}}
    for bad_leaf, shape in [(jnp.ones(3), r"\(3,\)"), (jnp.ones(()), r"\(\)"),
                            (jnp.ones((2, 3, 3)), r"\(2, 3, 3\)")]:
        params = {"layer": {"w": jnp.ones((3, 3)), "b": bad_leaf}}
        with pytest.raises(ValueError, match=rf"\['layer'\]\['b'\] has shape {shape}") as err:
            muon().init(params)
        assert "muon_with_adamw" in str(err.value)
    opt = muon()
    state = opt.init(good)
    update = jax.jit(opt.update) if jit else opt.update
    with pytest.raises(ValueError, match=r"\['layer'\]\['w'\] has shape \(9,\).*muon_with_adamw"):
        update({"layer": {"w": jnp.ones(9)}}, state)
    for transform in (orthogonalize_by_newton_schulz(), adjust_muon_learning_rate()):
        with pytest.raises(ValueError, match=r"\[0\] has shape \(4,\)"):
            transform.init([jnp.ones(4)])


def test_complex_parameters_are_refused():
    with pytest.raises(TypeError, match="muon"):
        muon().init({"w": jnp.ones((2, 2), jnp.complex64)})


# -- bad arguments ------------------------------------------------------------------------------

BAD_VALUES = [
    ("learning_rate", -0.1, ValueError), ("learning_rate", math.nan, ValueError),
    ("weight_decay", -0.1, ValueError), ("momentum", -0.1, ValueError),
    ("momentum", 1.0, ValueError), ("eps", -1e-7, ValueError),
    ("ns_steps", 0, ValueError), ("ns_steps", 100, ValueError), ("ns_steps", 2.5, ValueError),
    ("ns_steps", True, TypeError), ("ns_steps", "5", TypeError),
    ("adjust_lr_fn", "adamw", ValueError), ("adjust_lr_fn", "Original", ValueError),
    ("adjust_lr_fn", 3, TypeError),
    ("ns_coefficients", (3.4445, -4.775), ValueError),
    ("ns_coefficients", (1.0, math.nan, 1.0), ValueError),
    ("ns_coefficients", (1.0, 2.0, math.inf), ValueError),
    ("ns_coefficients", "abc", TypeError), ("ns_coefficients", (1.0, "x", 2.0), TypeError),
    ("ns_coefficients", (1.0, True, 2.0), TypeError), ("ns_coefficients", 3.0, TypeError),
    ("nesterov", "yes", TypeError), ("nesterov", 1, TypeError),
    ("ns_dtype", jnp.int32, TypeError),
]


@pytest.mark.parametrize(("name", "value", "error"), BAD_VALUES,
                         ids=[f"{n}={v!r}" for n, v, _ in BAD_VALUES])
def test_bad_arguments_are_refused_by_name(name, value, error):
    with pytest.raises(error, match=f"`{name}`"):
        muon(**{name: value})
    with pytest.raises(error, match=f"`{name}`"):
        muon_with_adamw(**{name: value})


def test_good_fixed_arguments_are_normalised():
    opt = muon(ns_coefficients=[2, -1.5, np.float32(0.5)], ns_steps=3.0, adjust_lr_fn="original")
    state = opt.init({"w": jnp.ones((2, 2))})
    assert type(state)._static["ns_coefficients"] == (2.0, -1.5, 0.5)
    assert type(state)._static["ns_steps"] == 3


@pytest.mark.parametrize(("name", "value"), [
    ("adamw_learning_rate", -1.0), ("adamw_b1", 1.0), ("adamw_b2", -0.5),
    ("adamw_eps", -1.0), ("adamw_weight_decay", -0.1),
])
def test_recipe_names_adamw_arguments_as_given(name, value):
    with pytest.raises(ValueError, match=f"`{name}`"):
        muon_with_adamw(**{name: value})


def test_recipe_refuses_a_bad_predicate():
    with pytest.raises(TypeError, match="`muon_leaves`"):
        muon_with_adamw(muon_leaves="mlp")
    opt = muon_with_adamw(muon_leaves=lambda path, leaf: leaf.ndim)
    with pytest.raises(TypeError, match=r"Python bool.*\['w'\]"):
        opt.init({"w": jnp.ones((2, 2))})
    opt = muon_with_adamw(muon_leaves=lambda path, leaf: True)
    with pytest.raises(ValueError, match=r"\['b'\] has shape \(2,\)"):
        opt.init({"w": jnp.ones((2, 2)), "b": jnp.ones(2)})


# -- the recipe ---------------------------------------------------------------------------------


def _transformer_params(seed=7):
    rng = np.random.default_rng(seed)

    def normal(*shape):
        return jnp.asarray(rng.normal(size=shape))

    block = lambda: {  # noqa: E731
        "attn": {"qkv": normal(8, 24), "out_proj": normal(8, 8)},
        "mlp": {"fc1": {"kernel": normal(8, 16), "bias": normal(16)},
                "fc2": {"kernel": normal(16, 8), "bias": normal(8)}},
        "ln": {"scale": normal(8), "bias": normal(8)},
    }
    return {
        "tok_embeddings": normal(11, 8),
        "wpe": normal(6, 8),
        "blocks": [block()],
        "final_norm": {"scale": normal(8)},
        "lm_head": normal(8, 11),
        "temperature": normal(),
    }


HIDDEN = {"qkv", "out_proj", "kernel"}  # the last key of every hidden matrix above


def _at(tree, path):
    """The subtree of ``tree`` at a key path of dict keys and list indices."""
    for key in path:
        tree = tree[key.key if hasattr(key, "key") else key.idx]
    return tree


def _expected_label(path) -> str:
    names = [getattr(k, "key", None) for k in path]
    return "muon" if names[-1] in HIDDEN else "adamw"


def test_recipe_trains_each_leaf_with_the_right_optimizer():
    params = _transformer_params()
    labels = jax.tree_util.tree_map_with_path(lambda p, _: _expected_label(p), params)
    assert jax.tree_util.tree_leaves(labels).count("muon") == 4
    rng = np.random.default_rng(8)
    grads = [jax.tree_util.tree_map(lambda p: jnp.asarray(rng.normal(size=p.shape)), params)
             for _ in range(6)]
    grads[2] = jax.tree_util.tree_map(jnp.zeros_like, grads[2])
    muon_args = dict(learning_rate=0.02, weight_decay=0.05, momentum=0.9, ns_steps=4,
                     adjust_lr_fn="match_rms_adamw")
    adamw_args = dict(learning_rate=3e-3, b1=0.8, b2=0.99, eps=1e-6, weight_decay=0.02)
    recipe = muon_with_adamw(**muon_args, **{f"adamw_{k}": v for k, v in adamw_args.items()})
    ours = helpers.run_steps(recipe, params, grads)

    # Each group run alone on its leaves (both optimizers treat leaves independently).
    flat = {jax.tree_util.keystr(p): p for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]}
    groups = {"muon": muon(**muon_args), "adamw": gx.adamw(**adamw_args)}
    alone = {}
    for label, opt in groups.items():
        paths = {k: p for k, p in flat.items() if _expected_label(p) == label}
        pick = lambda tree, paths=paths: {k: _at(tree, p) for k, p in paths.items()}  # noqa: E731
        alone.update(helpers.run_steps(opt, pick(params), [pick(g) for g in grads]))
    for key, path in flat.items():
        np.testing.assert_allclose(_at(ours, path), alone[key], rtol=1e-12, atol=1e-15,
                                   err_msg=key)
    state = recipe.init(params)
    buffers = gx.tree_get(state, "momentum_buffer")
    moments = gx.tree_get(state, "mu")
    for key, path in flat.items():
        label = _expected_label(path)
        has_buffer, has_moment = _at(buffers, path) is not None, _at(moments, path) is not None
        assert (has_buffer, has_moment) == (label == "muon", label == "adamw"), key
    # Each group's hyperparameters are read (and set) by the group's label.
    assert float(gx.get_hyperparam(state, "muon/learning_rate")) == 0.02
    assert float(gx.get_hyperparam(state, "adamw/learning_rate")) == 3e-3


def test_recipe_with_own_predicate_and_jit():
    params = _transformer_params()
    everything_2d = muon_with_adamw(muon_leaves=lambda path, leaf: leaf.ndim == 2)
    buffers = gx.tree_get(everything_2d.init(params), "momentum_buffer")
    assert buffers["lm_head"] is not None and buffers["tok_embeddings"] is not None
    assert buffers["blocks"][0]["mlp"]["fc1"]["bias"] is None
    opt = muon_with_adamw(learning_rate=0.02)
    grads = jax.tree_util.tree_map(jnp.ones_like, params)
    eager, _ = opt.update(grads, opt.init(params), params)
    jitted, _ = jax.jit(opt.update)(grads, opt.init(params), params)
    for x, y in zip(jax.tree_util.tree_leaves(eager), jax.tree_util.tree_leaves(jitted),
                    strict=True):
        np.testing.assert_array_equal(x, y)


class _Layer(NamedTuple):
    kernel: jax.Array
    bias: jax.Array


def test_default_split_by_names():
    m, v = jnp.ones((3, 3)), jnp.ones(3)
    tree = {
        "lm_head": m, "tok_embeddings": m, "Embed_0": {"embedding": m}, "wte": m, "wpe": m,
        "classifier": {"kernel": m}, "output": m, "logits": {"w": m}, "UnEmbed": m,
        "layers": [{"mlp": {"w": m}, "attn": _Layer(kernel=m, bias=v)}],
        "conv": jnp.ones((3, 3, 2, 2)), "scale": jnp.ones(()),
    }
    chosen = jax.tree_util.tree_map_with_path(is_hidden_matrix, tree)
    selected = [jax.tree_util.keystr(p) for p, x in jax.tree_util.tree_flatten_with_path(chosen)[0]
                if x]
    assert selected == ["['layers'][0]['attn'].kernel", "['layers'][0]['mlp']['w']"]
    assert "embed" in NON_MUON_NAMES and "head" in NON_MUON_NAMES

"""The generic matrix every registered optimizer goes through: error inputs, dtypes, odd
trees, mismatched gradient trees and convergence. jit against eager, vmap over a
hyperparameter and the gradient in the learning rate are properties, checked on drawn problems
in tests/test_properties.py."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx as gx
from gradtx.optimizers import registry
from gradtx.optimizers.registry import OPTIMIZERS
from tests import helpers

BY_NAME = {"ids": lambda info: info.name}


def _like(info, tree):
    """``tree`` as ``info``'s optimizer takes it: the same leaf names and entries (Muon gets
    every leaf as a matrix)."""
    return info.params_like(tree)


def _invalid_cases():
    for info in OPTIMIZERS:
        for kwargs, argument in info.invalid:
            yield pytest.param(info, kwargs, argument, id=f"{info.name}-{helpers.label(kwargs)}")


@pytest.mark.parametrize(("info", "kwargs", "argument"), list(_invalid_cases()))
def test_invalid_hyperparameter_raises_naming_it(info, kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        info.build(**kwargs)


def _numeric_invalid_cases():
    # Fixed arguments (nesterov's bool, a period's int) are static: always checked at build time.
    return [case for case in _invalid_cases()
            if all(case.values[0].declarations[k].live for k in case.values[1])]


@pytest.mark.parametrize(("info", "kwargs", "argument"), _numeric_invalid_cases())
def test_invalid_values_are_accepted_when_traced(info, kwargs, argument):
    """Traced values cannot be inspected, so they are not rejected (the step still runs)."""
    numeric = dict(kwargs)
    params = _like(info, {"w": jnp.ones(3)})

    def step(hyper):
        opt = info.build(**hyper)
        updates, _ = opt.update(_like(info, {"w": jnp.ones(3)}), opt.init(params), params)
        return updates

    jax.jit(step)({k: jnp.asarray(v) for k, v in numeric.items()})


def _random_grads(params, steps, seed=3):
    rng = np.random.default_rng(seed)
    return [jax.tree_util.tree_map(lambda p: rng.normal(size=np.shape(p)), params)
            for _ in range(steps)]


DTYPES = [jnp.bfloat16, jnp.float16, jnp.float32, jnp.float64]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: jnp.dtype(d).name)
@pytest.mark.parametrize("info", OPTIMIZERS, **BY_NAME)
def test_dtypes_are_preserved(info, dtype):
    params = _like(info, {"w": jnp.full((4, 3), 0.5, dtype), "b": jnp.zeros((3,), dtype)})
    opt = info.build(**info.example)
    state = opt.init(params)
    state_dtypes = [x.dtype for x in jax.tree_util.tree_leaves(state)]
    step = jax.jit(opt.update)
    for g in _random_grads(params, 3):
        g = jax.tree_util.tree_map(lambda x: jnp.asarray(x, dtype), g)
        updates, state = step(g, state, params)
        assert all(u.dtype == dtype for u in jax.tree_util.tree_leaves(updates))
        params = gx.apply_updates(params, updates)
    assert all(p.dtype == dtype for p in jax.tree_util.tree_leaves(params))
    assert [x.dtype for x in jax.tree_util.tree_leaves(state)] == state_dtypes
    assert all(bool(jnp.all(jnp.isfinite(p))) for p in jax.tree_util.tree_leaves(params))


ODD_TREES = {
    "empty-dict": {},
    "empty-tuple": (),
    "scalar": jnp.asarray(1.5),
    "none-leaves": {"w": jnp.ones((2, 2)), "frozen": None, "nested": {"x": None, "y": jnp.ones(2)}},
    "empty-containers": {"a": [], "b": {}, "c": (jnp.asarray(2.0),)},
    # Size-0 leaves beside a real one (an embedding of an empty vocabulary, a layer of width 0).
    "empty-leaves": {"w": jnp.ones((2, 2)), "rows0": jnp.ones((0, 3)), "cols0": jnp.ones((3, 0)),
                     "v0": jnp.ones((0,))},
}


@pytest.mark.parametrize("tree", list(ODD_TREES.values()), ids=list(ODD_TREES))
@pytest.mark.parametrize("info", OPTIMIZERS, **BY_NAME)
def test_odd_trees(info, tree):
    tree = _like(info, tree)
    opt = info.build(**info.example)
    state = opt.init(tree)
    grads = jax.tree_util.tree_map(lambda p: jnp.full_like(p, 0.25), tree)
    for update in (opt.update, jax.jit(opt.update)):
        new_state = state
        for _ in range(info.first_moving_step):
            updates, new_state = update(grads, new_state, tree)
        assert jax.tree_util.tree_structure(updates, is_leaf=lambda x: x is None) == \
            jax.tree_util.tree_structure(tree, is_leaf=lambda x: x is None)
        assert jax.tree_util.tree_structure(new_state) == jax.tree_util.tree_structure(state)
        new_params = gx.apply_updates(tree, updates)
        leaves = jax.tree_util.tree_leaves
        for p, q in zip(leaves(tree), leaves(new_params), strict=True):
            assert q.shape == p.shape and q.dtype == p.dtype
            # A non-zero gradient moved every parameter (an empty one has nothing to move).
            assert p.size == 0 or not np.allclose(q, p)


@pytest.mark.parametrize("info", OPTIMIZERS, **BY_NAME)
def test_state_is_a_pytree_of_arrays(info):
    state = info.build(**info.example).init(_like(info, helpers.make_params()))
    leaves = jax.tree_util.tree_leaves(state)
    assert all(isinstance(x, jax.Array) for x in leaves)


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("info", OPTIMIZERS, **BY_NAME)
def test_mismatched_gradient_tree_names_the_path(info, jit):
    params = _like(info, {"w": jnp.ones((4, 3)), "b": jnp.ones(3)})
    opt = info.build(**info.example)
    state = opt.init(params)
    update = jax.jit(opt.update) if jit else opt.update

    def grads(**leaves):
        return _like(info, leaves)

    with pytest.raises(ValueError, match=r"\['b'\]"):
        update(grads(w=jnp.ones((4, 3))), state, params)
    with pytest.raises(ValueError, match=r"\['c'\]"):
        update(grads(w=jnp.ones((4, 3)), b=jnp.ones(3), c=jnp.ones(1)), state, params)
    with pytest.raises(ValueError, match=r"\['w'\].*\(3, 4\).*\(4, 3\)"):
        update(grads(w=jnp.ones((3, 4)), b=jnp.ones(3)), state, params)


@pytest.mark.parametrize("info", OPTIMIZERS, **BY_NAME)
def test_mismatched_tree_without_params_is_caught_by_state_or_apply(info):
    """Without ``params`` in update, per-parameter state or ``apply_updates`` names the path
    (or, for an optimizer that needs the parameters, the error says so)."""
    params = _like(info, {"w": jnp.ones((4, 3)), "b": jnp.ones(3)})
    opt = info.build(**info.example)
    state = opt.init(params)
    with pytest.raises(ValueError, match=r"\['w'\]|needs the parameters"):
        updates, _ = opt.update(_like(info, {"w": jnp.ones((4, 4)), "b": jnp.ones(3)}), state)
        gx.apply_updates(params, updates)


def _quadratic():
    curvature = jnp.logspace(0.0, 2.0, 20)  # condition number 100

    def loss(x):
        return 0.5 * jnp.sum(curvature * x["x"] ** 2)

    return loss, {"x": jnp.ones(20)}


@pytest.mark.parametrize("info", OPTIMIZERS, **BY_NAME)
def test_converges_on_an_ill_conditioned_quadratic(info):
    loss, params = _quadratic()
    params = _like(info, params)
    opt = info.build(**info.example)

    @jax.jit
    def step(params, state):
        grads = jax.grad(loss)(params)
        updates, state = opt.update(grads, state, params)
        return gx.apply_updates(params, updates), state

    state, start = opt.init(params), loss(params)
    for _ in range(500):
        params, state = step(params, state)
    assert loss(params) < 1e-4 * start, f"{info.name}: {loss(params)} vs start {start}"


@pytest.mark.parametrize("info", registry.with_torch_equivalent(), **BY_NAME)
def test_defaults_are_torch_defaults(info):
    """Every gradtx default, translated to torch's names, is torch.optim's default."""
    import inspect

    import torch

    ours = {
        k: p.default for k, p in inspect.signature(info.factory).parameters.items()
    }
    theirs = {
        k: p.default
        for k, p in inspect.signature(helpers.reference_class(torch, info)).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    # torch_extra is the reference's mode that gradtx equals, fixed, not defaulted
    # (DAdaptAdam's decouple=True is gx.dadapt_adamw).
    translated = {k: v for k, v in info.torch_kwargs(ours).items() if k not in info.torch_extra}
    for name, value in translated.items():
        assert name in theirs, f"{info.name}: torch has no argument {name!r}"
        if callable(value) and callable(theirs[name]):  # a function of the step (ADOPT's clip)
            for t in range(1, 50):
                assert float(theirs[name](t)) == float(value(t)), f"{info.name}.{name}({t})"
            continue
        assert theirs[name] == value, f"{info.name}.{name}: gradtx {value}, torch {theirs[name]}"

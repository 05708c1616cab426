"""gradtx transformations are drop-in wherever an Optax GradientTransformation is accepted."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from flax.training import train_state

import gradtx as gx
from gradtx.optimizers.registry import OPTIMIZERS


def _loss(params, x, y):
    # Reshaped, so that the parameters may also be given as matrices (``params_like``).
    w, b = params["w"].reshape(3), params["b"].reshape(())
    return jnp.mean((x @ w + b - y) ** 2)


@pytest.mark.parametrize("info", OPTIMIZERS, ids=lambda i: i.name)
def test_flax_train_state_matches_a_manual_loop(info):
    x = jnp.asarray(np.random.default_rng(0).normal(size=(16, 3)))
    y = x @ jnp.asarray([1.0, -2.0, 0.5]) + 0.3
    params = info.params_like({"w": jnp.zeros(3), "b": jnp.zeros(())})
    tx = info.build(**info.example)

    ts = train_state.TrainState.create(apply_fn=None, params=params, tx=tx)
    manual, opt_state = params, tx.init(params)
    for _ in range(5):
        ts = ts.apply_gradients(grads=jax.grad(_loss)(ts.params, x, y))
        updates, opt_state = tx.update(jax.grad(_loss)(manual, x, y), opt_state, manual)
        manual = gx.apply_updates(manual, updates)
    for key in params:
        np.testing.assert_allclose(ts.params[key], manual[key], rtol=1e-12)
    assert _loss(ts.params, x, y) < _loss(params, x, y)


def test_nnx_optimizer_trains_a_linear_model():
    model = nnx.Linear(3, 1, rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, gx.adamw(learning_rate=0.05), wrt=nnx.Param)
    x = jnp.asarray(np.random.default_rng(1).normal(size=(32, 3)))
    y = x @ jnp.asarray([[1.0], [-2.0], [0.5]])

    def loss(m):
        return jnp.mean((m(x) - y) ** 2)

    start = loss(model)
    for _ in range(50):
        grads = nnx.grad(loss)(model)
        optimizer.update(model, grads)
    assert loss(model) < 0.1 * start


def test_mixes_with_optax_transformations_both_ways():
    params = {"w": jnp.ones(3)}
    grads = {"w": jnp.asarray([1.0, -2.0, 3.0])}
    inside_optax = optax.chain(optax.clip(1.5), gx.sgd(learning_rate=0.1))
    inside_gradtx = gx.chain(optax.clip(1.5), gx.sgd(learning_rate=0.1))
    for tx in (inside_optax, inside_gradtx):
        updates, _ = tx.update(grads, tx.init(params), params)
        np.testing.assert_allclose(updates["w"], [-0.1, 0.15, -0.15])


@pytest.mark.parametrize("info", OPTIMIZERS, ids=lambda i: i.name)
def test_state_round_trips_through_flax_serialization(info):
    from flax import serialization

    params = info.params_like({"w": jnp.arange(3.0), "b": jnp.ones(())})
    tx = info.build(**info.example)
    state = tx.init(params)
    for i in range(3):
        grads = info.params_like({"w": jnp.ones(3) * i, "b": jnp.ones(())})
        updates, state = tx.update(grads, state, params)
    restored = serialization.from_bytes(tx.init(params), serialization.to_bytes(state))
    assert jax.tree_util.tree_structure(restored) == jax.tree_util.tree_structure(state)
    for a, b in zip(jax.tree_util.tree_leaves(restored), jax.tree_util.tree_leaves(state),
                    strict=True):
        np.testing.assert_array_equal(a, b)

"""A small image-classification task for the Flax tests: scikit-learn's bundled digits (1797
8x8 grey images, no download) and small CNNs for it, in linen and in nnx.

Everything is float32 on purpose: ``tests/conftest.py`` turns on x64, under which a bare
``jnp.asarray(0.5)`` or a NumPy float array would be float64, so arrays are made float32
explicitly here and the parameters are checked to be float32.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from flax.training import train_state

NUM_CLASSES = 10
TEST_SIZE = 360  # of 1797 images: 1437 to train on
SPLIT_SEED = 0


class Digits(NamedTuple):
    x_train: np.ndarray  # (1437, 8, 8, 1) float32 in [0, 1], NHWC
    y_train: np.ndarray  # (1437,) int32
    x_test: np.ndarray  # (360, 8, 8, 1)
    y_test: np.ndarray  # (360,)


@functools.cache
def load_digits() -> Digits:
    """The digits data set, scaled to [0, 1], split once with a fixed seed (the same split in
    every test)."""
    from sklearn.datasets import load_digits as sklearn_digits

    data = sklearn_digits()
    # The pixels are integers 0..16.
    images = (data.images / 16.0).astype(np.float32)[..., None]
    labels = data.target.astype(np.int32)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(labels))
    test, train = order[:TEST_SIZE], order[TEST_SIZE:]
    return Digits(images[train], labels[train], images[test], labels[test])


def minibatches(
    num_examples: int, batch_size: int, epochs: int, seed: int = 0
) -> Iterator[np.ndarray]:
    """Index arrays of shuffled minibatches, ``epochs`` passes over the data. The last, short
    batch of each epoch is dropped so that every batch has one shape (one compilation)."""
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = rng.permutation(num_examples)
        for start in range(0, num_examples - batch_size + 1, batch_size):
            yield order[start : start + batch_size]


class CNN(nn.Module):
    """Two 3x3 convolutions (16 and 32 channels, "same" padding) and a dense layer.

    No pooling: on 8x8 images it cost about a point of test accuracy when tuning."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.relu(nn.Conv(16, (3, 3), param_dtype=jnp.float32, dtype=jnp.float32)(x))
        x = nn.relu(nn.Conv(32, (3, 3), param_dtype=jnp.float32, dtype=jnp.float32)(x))
        x = x.reshape(x.shape[0], -1)
        return nn.Dense(NUM_CLASSES, param_dtype=jnp.float32, dtype=jnp.float32)(x)


def init_cnn(seed: int = 0) -> dict:
    """Float32 parameters of :class:`CNN` (raises if any leaf is not float32)."""
    params = CNN().init(jax.random.key(seed), jnp.zeros((1, 8, 8, 1), jnp.float32))["params"]
    check_float32(params)
    return params


def check_float32(tree) -> None:
    dtypes = {str(x.dtype) for x in jax.tree_util.tree_leaves(tree)}
    if dtypes != {"float32"}:
        raise AssertionError(f"expected float32 parameters only, got {sorted(dtypes)}")


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    log_probs = jax.nn.log_softmax(logits)
    return -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None], axis=1))


def cnn_loss(params, x: jax.Array, y: jax.Array) -> jax.Array:
    return cross_entropy(CNN().apply({"params": params}, x), y)


@jax.jit
def cnn_accuracy(params, x: jax.Array, y: jax.Array) -> jax.Array:
    return jnp.mean(jnp.argmax(CNN().apply({"params": params}, x), axis=-1) == y)


@jax.jit
def train_state_step(state: train_state.TrainState, x: jax.Array, y: jax.Array):
    """One step of a Flax ``TrainState`` on a minibatch; returns the new state and the loss.
    Jitted once per optimizer (the optimizer is static in the state's tree structure)."""
    loss, grads = jax.value_and_grad(cnn_loss)(state.params, x, y)
    return state.apply_gradients(grads=grads), loss


def train_cnn(tx, *, epochs: int, batch_size: int = 64, seed: int = 0) -> train_state.TrainState:
    """Trains :class:`CNN` on the digits training set with ``tx`` in a Flax ``TrainState``."""
    data = load_digits()
    state = train_state.TrainState.create(apply_fn=CNN().apply, params=init_cnn(seed), tx=tx)
    for idx in minibatches(len(data.y_train), batch_size, epochs, seed):
        state, _ = train_state_step(state, data.x_train[idx], data.y_train[idx])
    return state


def accuracy_on_test_set(params) -> float:
    data = load_digits()
    return float(cnn_accuracy(params, data.x_test, data.y_test))


class NnxCNN(nnx.Module):
    """:class:`CNN` written with ``flax.nnx``."""

    def __init__(self, rngs: nnx.Rngs):
        kw = dict(param_dtype=jnp.float32, dtype=jnp.float32, rngs=rngs)
        self.conv1 = nnx.Conv(1, 16, (3, 3), **kw)
        self.conv2 = nnx.Conv(16, 32, (3, 3), **kw)
        self.dense = nnx.Linear(8 * 8 * 32, NUM_CLASSES, **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = nnx.relu(self.conv1(x))
        x = nnx.relu(self.conv2(x))
        return self.dense(x.reshape(x.shape[0], -1))

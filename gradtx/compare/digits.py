"""scikit-learn's bundled 8x8 handwritten digits (no download) and two small classifiers for
them, a CNN and an MLP, written in plain JAX (no Flax: it is not a dependency of gradtx).

Everything is float32, as real training is, whatever ``jax_enable_x64`` says.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from gradtx.compare.deps import require

Layer = dict[str, jax.Array]
Params = dict[str, Layer]

# The train/test split ignores --seed, so every run is scored on the same held-out images and
# accuracies from different seeds compare like with like.
SPLIT_SEED = 0
TEST_FRACTION = 0.2
BATCH_SIZE = 64
# --seed feeds two independent NumPy streams: initial weights and minibatch order.
_INIT_STREAM, _SHUFFLE_STREAM = 0, 1


@dataclass(frozen=True)
class DigitsData:
    """Images as ``(n, 8, 8, 1)`` float32 in [0, 1] (NHWC) and labels as int32 in 0..9."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@functools.cache
def load() -> DigitsData:
    """The 1797 digits, shuffled once with a fixed seed and split 80/20 into train and test."""
    datasets = require("sklearn.datasets", "scikit-learn", "the digits data set")
    bunch = datasets.load_digits()
    images = (np.asarray(bunch.images) / 16.0).astype(np.float32)[..., None]  # pixels are 0..16
    labels = np.asarray(bunch.target, dtype=np.int32)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(labels))
    n_test = round(len(labels) * TEST_FRACTION)
    test, train = order[:n_test], order[n_test:]
    return DigitsData(images[train], labels[train], images[test], labels[test])


def batches(data: DigitsData, seed: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Endless minibatches: each epoch a fresh shuffle drawn from ``seed``. The last partial
    batch of an epoch is dropped so that every batch has one shape (one compilation)."""
    rng = np.random.default_rng([seed, _SHUFFLE_STREAM])
    n = len(data.y_train)
    while True:
        order = rng.permutation(n)
        for start in range(0, n - BATCH_SIZE + 1, BATCH_SIZE):
            idx = order[start : start + BATCH_SIZE]
            yield data.x_train[idx], data.y_train[idx]


def steps_per_epoch(data: DigitsData) -> int:
    return len(data.y_train) // BATCH_SIZE


def _normal(
    rng: np.random.Generator, shape: tuple[int, ...], fan_in: int, gain: float
) -> jax.Array:
    # Variance gain / fan_in: gain 2 (He) before a ReLU keeps activations from shrinking layer
    # by layer; gain 1 (LeCun) for the logits. NumPy draws them: eager jax.random would compile
    # one small program per shape, seconds of start-up for a handful of arrays.
    std = math.sqrt(gain / fan_in)
    return jnp.asarray((std * rng.standard_normal(shape)).astype(np.float32))


def _dense(rng: np.random.Generator, fan_in: int, fan_out: int, gain: float) -> Layer:
    w = _normal(rng, (fan_in, fan_out), fan_in, gain)
    return {"w": w, "b": jnp.zeros(fan_out, dtype=jnp.float32)}


def _conv(rng: np.random.Generator, size: int, c_in: int, c_out: int) -> Layer:
    w = _normal(rng, (size, size, c_in, c_out), size * size * c_in, 2.0)  # HWIO
    return {"w": w, "b": jnp.zeros(c_out, dtype=jnp.float32)}


def init_mlp(seed: int, hidden: int = 128) -> Params:
    """64 pixels -> ``hidden`` ReLU units -> 10 logits."""
    rng = np.random.default_rng([seed, _INIT_STREAM])
    return {"hidden": _dense(rng, 64, hidden, 2.0), "out": _dense(rng, hidden, 10, 1.0)}


def mlp_logits(params: Params, x: jax.Array) -> jax.Array:
    h = x.reshape(x.shape[0], -1)
    h = jax.nn.relu(h @ params["hidden"]["w"] + params["hidden"]["b"])
    return h @ params["out"]["w"] + params["out"]["b"]


def init_cnn(seed: int) -> Params:
    """conv 3x3 (16) -> ReLU -> conv 3x3 (32) -> ReLU -> 2x2 max pool -> dense 512 -> 10."""
    rng = np.random.default_rng([seed, _INIT_STREAM])
    return {
        "conv1": _conv(rng, 3, 1, 16),
        "conv2": _conv(rng, 3, 16, 32),
        "out": _dense(rng, 4 * 4 * 32, 10, 1.0),
    }


def _conv2d(layer: dict[str, jax.Array], x: jax.Array) -> jax.Array:
    y = jax.lax.conv_general_dilated(
        x, layer["w"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    return y + layer["b"]


def cnn_logits(params: Params, x: jax.Array) -> jax.Array:
    h = jax.nn.relu(_conv2d(params["conv1"], x))
    h = jax.nn.relu(_conv2d(params["conv2"], h))
    # 2x2 max pooling: 8x8 -> 4x4, a quarter of the inputs to the dense layer.
    h = jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    h = h.reshape(h.shape[0], -1)
    return h @ params["out"]["w"] + params["out"]["b"]


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy of integer ``labels``."""
    log_probs = jax.nn.log_softmax(logits)
    return -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None], axis=1))


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return jnp.mean(jnp.argmax(logits, axis=1) == labels)


def train_scan(
    opt,
    params: Params,
    logits_fn,
    steps: int,
    seed: int = 0,
    evaluate=lambda params: (),
):
    """``steps`` minibatch steps of ``opt`` on the digits training set as one compiled
    ``jax.lax.scan`` (batches drawn by :func:`batches` with ``seed``).

    Returns ``(losses, state, evaluate(final_params))``: the per-step minibatch losses, the
    final optimizer state, and whatever ``evaluate`` computes from the final parameters inside
    the same compiled program."""
    from gradtx.core import apply_updates  # gradtx.compare is an optional extra of gradtx

    data = load()
    stream = batches(data, seed)
    xs, ys = map(np.stack, zip(*(next(stream) for _ in range(steps)), strict=True))

    def loss_fn(p, x, y):
        return cross_entropy(logits_fn(p, x), y)

    def step(carry, batch):
        p, s = carry
        loss, grads = jax.value_and_grad(loss_fn)(p, *batch)
        updates, s = opt.update(grads, s, p)
        return (apply_updates(p, updates), s), loss

    @jax.jit
    def run(params, xs, ys):
        (params, state), losses = jax.lax.scan(step, (params, opt.init(params)), (xs, ys))
        return losses, state, evaluate(params)

    return jax.block_until_ready(run(params, xs, ys))

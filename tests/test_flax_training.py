"""gradtx optimizers train real models in Flax, unchanged: a linen CNN in a
``flax.training.train_state.TrainState`` with every torch-style optimizer, and an nnx CNN in an
``nnx.Optimizer`` with clipping, weight decay on the kernels only and a schedule, each to at
least 97% test accuracy on scikit-learn's digits (see tests/digits_cnn.py).

Every optimizer runs 12 epochs on the same warm-up + cosine schedule (one epoch of linear
warm-up from 0, then cosine decay to 0); only the peak learning rate (and, for plain SGD, the
batch size) is tuned per optimizer. Annealing to zero makes the final accuracy far less
sensitive to the last few minibatches than a constant learning rate.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import gradtx as gx
from tests import digits_cnn

EPOCHS = 12
BATCH = 64
TARGET = 0.97


def _steps_per_epoch(batch_size: int) -> int:
    return len(digits_cnn.load_digits().y_train) // batch_size  # short batches are dropped


def _schedule(peak: float, batch_size: int = BATCH) -> gx.Schedule:
    per_epoch = _steps_per_epoch(batch_size)
    return gx.warmup_cosine_decay_schedule(
        0.0, peak, warmup_steps=per_epoch, decay_steps=EPOCHS * per_epoch
    )


# name -> (optimizer factory taking the schedule, peak learning rate, batch size)
OPTIMIZERS = {
    # Plain SGD needs more, smaller steps; a peak above ~0.5 at batch 64 diverges.
    "sgd": (lambda lr: gx.sgd(lr), 0.3, 32),
    "sgd_momentum": (lambda lr: gx.sgd(lr, momentum=0.9), 0.1, BATCH),
    "sgd_nesterov": (lambda lr: gx.sgd(lr, momentum=0.9, nesterov=True), 0.1, BATCH),
    "adagrad": (lambda lr: gx.adagrad(lr), 0.1, BATCH),
    "rmsprop": (lambda lr: gx.rmsprop(lr), 5e-3, BATCH),
    "adadelta": (lambda lr: gx.adadelta(lr), 4.0, BATCH),
    "adam": (lambda lr: gx.adam(lr), 1e-2, BATCH),
    "adamw": (lambda lr: gx.adamw(lr, weight_decay=1e-2), 1e-2, BATCH),
    "nadam": (lambda lr: gx.nadam(lr), 1e-2, BATCH),
}


def _float_leaves(tree) -> list[jax.Array]:
    leaves = jax.tree_util.tree_leaves(tree)
    return [x for x in leaves if jnp.issubdtype(jnp.result_type(x), jnp.floating)]


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_train_state_trains_a_cnn_on_digits(name):
    factory, peak, batch_size = OPTIMIZERS[name]
    state = digits_cnn.train_cnn(
        factory(_schedule(peak, batch_size)), epochs=EPOCHS, batch_size=batch_size
    )

    assert int(state.step) == EPOCHS * _steps_per_epoch(batch_size)
    digits_cnn.check_float32(state.params)
    # Per-parameter statistics (plain SGD keeps none) keep the parameters' dtype even with x64
    # on; only the scalar hyperparameters may be float64.
    stats = [x for x in _float_leaves(state.opt_state) if np.ndim(x) > 0]
    assert all(x.dtype == jnp.float32 for x in stats)
    assert len(stats) > 0 or name == "sgd"
    # The learning rate that drove the last step: the schedule's value near its end.
    np.testing.assert_allclose(
        gx.get_hyperparam(state.opt_state, "learning_rate"),
        _schedule(peak, batch_size)(state.step - 1),
        rtol=1e-6,
    )
    accuracy = digits_cnn.accuracy_on_test_set(state.params)
    assert accuracy >= TARGET, f"{name}: test accuracy {accuracy:.4f}"


# nnx: clipping, then AdamW on the kernels and Adam on the biases, on one schedule.

NNX_PEAK = 1e-2
WEIGHT_DECAY = 1e-2


def _decay_group(x) -> str:
    # Kernels (conv and dense) have two or more dimensions, biases one.
    return "decay" if jnp.ndim(x) >= 2 else "no_decay"


def _nnx_tx() -> gx.GradientTransformation:
    schedule = _schedule(NNX_PEAK)
    # gx.adamw has no mask argument: multi_transform gives each group its own optimizer.
    # The labels come from the params tree itself. nnx calls init on a tree of nnx.Param
    # variables and update on the bare arrays; labelling by ndim works on both.
    return gx.chain(
        gx.clip_by_global_norm(1.0),
        gx.multi_transform(
            {
                "decay": gx.adamw(schedule, weight_decay=WEIGHT_DECAY),
                "no_decay": gx.adam(schedule),
            },
            lambda params: jax.tree_util.tree_map(_decay_group, params),
        ),
    )


def _raw_opt_state(optimizer: nnx.Optimizer):
    """The optimizer state as the bare pytree that ``tx.init`` / ``tx.update`` see.

    ``nnx.Optimizer`` stores ``tx.init``'s output in ``optimizer.opt_state`` with every array
    wrapped in an ``nnx.OptArray`` (or ``OptVariable``) while keeping gradtx's NamedTuples and
    dicts around them; ``nnx.as_pure`` unwraps them (what ``Optimizer.update`` itself does before
    calling ``tx.update``)."""
    return nnx.as_pure(optimizer.opt_state)


@nnx.jit
def _nnx_step(model, optimizer, x, y):
    def loss(m):
        return digits_cnn.cross_entropy(m(x), y)

    grads = nnx.grad(loss)(model)
    optimizer.update(model, grads)


def test_nnx_optimizer_trains_a_cnn_with_masked_weight_decay_and_a_schedule():
    data = digits_cnn.load_digits()
    model = digits_cnn.NnxCNN(nnx.Rngs(0))
    digits_cnn.check_float32(nnx.as_pure(nnx.state(model, nnx.Param)))
    optimizer = nnx.Optimizer(model, _nnx_tx(), wrt=nnx.Param)

    # get_hyperparam works on the wrapped state too, returning the nnx variable.
    wrapped = gx.get_hyperparam(optimizer.opt_state, "decay/learning_rate")
    assert isinstance(wrapped, nnx.Variable)

    learning_rates = []
    for idx in digits_cnn.minibatches(len(data.y_train), BATCH, EPOCHS):
        _nnx_step(model, optimizer, data.x_train[idx], data.y_train[idx])
        state = _raw_opt_state(optimizer)
        learning_rates.append(
            [gx.get_hyperparam(state, f"{g}/learning_rate") for g in ("decay", "no_decay")]
        )

    # After step k (counting from 0) the state holds the value step k used: schedule(k).
    steps = EPOCHS * _steps_per_epoch(BATCH)
    expected = np.asarray([_schedule(NNX_PEAK)(k) for k in range(steps)])
    learning_rates = np.asarray(learning_rates)
    assert learning_rates.shape == (steps, 2)
    np.testing.assert_allclose(learning_rates[:, 0], expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(learning_rates[:, 0], learning_rates[:, 1])
    assert learning_rates[:, 0].max() == pytest.approx(NNX_PEAK)

    # Adam state only for the biases in their group, AdamW state only for the kernels.
    state = _raw_opt_state(optimizer)
    groups = state[1].inner_states
    for group, wanted in (("decay", lambda x: x.ndim >= 2), ("no_decay", lambda x: x.ndim < 2)):
        stats = [x for x in _float_leaves(groups[group].inner_state) if np.ndim(x) > 0]
        assert stats and all(wanted(x) for x in stats), group

    logits = model(jnp.asarray(data.x_test))
    accuracy = float(jnp.mean(jnp.argmax(logits, axis=-1) == data.y_test))
    assert accuracy >= TARGET, f"nnx: test accuracy {accuracy:.4f}"


def test_nnx_weight_decay_reaches_kernels_only():
    # With zero gradients, Adam's and AdamW's moments stay zero, so the only change left is
    # AdamW's decoupled decay: theta <- theta - lr_t * wd * theta on the kernels, nothing on
    # the biases (which must stay bitwise unchanged). Clipping a zero gradient must not
    # produce NaNs either.
    model = digits_cnn.NnxCNN(nnx.Rngs(1))
    optimizer = nnx.Optimizer(model, _nnx_tx(), wrt=nnx.Param)
    before = jax.tree_util.tree_map(np.asarray, nnx.as_pure(nnx.state(model, nnx.Param)))
    zeros = jax.tree_util.tree_map(jnp.zeros_like, nnx.state(model, nnx.Param))
    steps = 5
    for _ in range(steps):
        optimizer.update(model, zeros)
    after = nnx.as_pure(nnx.state(model, nnx.Param))

    schedule = _schedule(NNX_PEAK)
    for layer in ("conv1", "conv2", "dense"):
        np.testing.assert_array_equal(after[layer]["bias"], before[layer]["bias"])
        kernel = before[layer]["kernel"]
        for k in range(steps):
            # The same float32 operations as gradtx: u = wd * theta; u = -lr * u; theta + u.
            update = np.float32(WEIGHT_DECAY) * kernel
            kernel = kernel + -np.float32(schedule(k)) * update
        np.testing.assert_allclose(after[layer]["kernel"], kernel, rtol=1e-6)
        assert not np.array_equal(after[layer]["kernel"], before[layer]["kernel"])

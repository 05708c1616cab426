"""The problems the comparison trains on, each built from a seed.

A task gives a starting point, a loss of ``(params, batch)``, a stream of batches (always the
empty tuple for the full-batch problems) and, for the classifiers, a test accuracy. Every
optimizer in a run starts from the same parameters and sees the same batches in the same order.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradtx.compare import chars, digits

Batch = tuple[Any, ...]


@dataclass(frozen=True)
class Task:
    """A problem to minimise.

    Attributes:
        name: the ``--task`` name.
        description: one line for the run's header.
        params: the starting point (a pytree of float32 arrays).
        loss_fn: ``(params, batch) -> scalar`` training loss, the function differentiated.
        batches: a fresh iterator over one batch per step; the same sequence on every call.
        final_loss_fn: ``params -> scalar``, the loss reported after training (for the digits
            the loss on the whole training set, for ``char-transformer`` the loss on its
            held-out text, for the others ``loss_fn`` itself).
        window: the loss curve is averaged over this many steps (an epoch, for the digits)
            before it is compared with the target, so one lucky minibatch does not count as
            reaching it.
        accuracy_fn: ``params -> scalar`` test accuracy, for classifiers; None otherwise.
        final_loss_label: what ``final_loss_fn`` measures, for the table's legend ("the loss
            on the whole training set (1437 images)").
        test_size: the number of test examples ``accuracy_fn`` averages over (0: none).
    """

    name: str
    description: str
    params: Any
    loss_fn: Callable[[Any, Batch], jax.Array]
    batches: Callable[[], Iterator[Batch]]
    final_loss_fn: Callable[[Any], jax.Array]
    window: int = 1
    accuracy_fn: Callable[[Any], jax.Array] | None = None
    final_loss_label: str = "the exact loss (a full-batch problem)"
    test_size: int = 0


def _full_batch(
    name: str,
    description: str,
    params: jax.Array,
    fn: Callable[[jax.Array], jax.Array],
) -> Task:
    return Task(
        name=name,
        description=description,
        params=params,
        loss_fn=lambda p, batch: fn(p),
        batches=lambda: itertools.repeat(()),
        final_loss_fn=fn,
    )


def quadratic(seed: int, dim: int = 20) -> Task:
    """``0.5 * sum(lambda_i (Q x)_i^2)``: curvatures log-uniform in [1, 100] along the axes of
    a random rotation ``Q``, from a random normal start.

    Everything is drawn with ``seed``; the smallest and largest curvatures are pinned to 1 and
    100 so the condition number, which is what makes the problem hard, is 100 for every seed.
    The rotation keeps it hard for per-coordinate step sizes (Adagrad, RMSprop, Adam, ...),
    which would undo the conditioning of an axis-aligned quadratic.
    """
    rng = np.random.default_rng(seed)
    log_lambdas = np.sort(rng.uniform(0.0, 2.0, size=dim))
    log_lambdas[0], log_lambdas[-1] = 0.0, 2.0
    lambdas = jnp.asarray(10.0**log_lambdas, dtype=jnp.float32)
    rotation = jnp.asarray(np.linalg.qr(rng.standard_normal((dim, dim)))[0], dtype=jnp.float32)
    start = jnp.asarray(rng.standard_normal(dim), dtype=jnp.float32)

    def loss(x: jax.Array) -> jax.Array:
        return 0.5 * jnp.sum(lambdas * (rotation @ x) ** 2)

    description = f"rotated ill-conditioned quadratic, {dim} dims, condition number 100"
    return _full_batch("quadratic", description, start, loss)


def rosenbrock(seed: int) -> Task:
    """The 2-D Rosenbrock valley from (-1.5, 2); deterministic, so ``seed`` is unused."""
    del seed

    def loss(xy: jax.Array) -> jax.Array:
        x, y = xy[0], xy[1]
        return (1.0 - x) ** 2 + 100.0 * (y - x**2) ** 2

    description = "2-D Rosenbrock valley from (-1.5, 2), minimum 0 at (1, 1)"
    start = jnp.array([-1.5, 2.0], dtype=jnp.float32)
    return _full_batch("rosenbrock", description, start, loss)


def _digits_task(
    name: str,
    description: str,
    params: Any,
    logits_fn: Callable[[Any, jax.Array], jax.Array],
    seed: int,
) -> Task:
    data = digits.load()
    x_train, y_train = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    x_test, y_test = jnp.asarray(data.x_test), jnp.asarray(data.y_test)

    def loss(p: Any, batch: Batch) -> jax.Array:
        x, y = batch
        return digits.cross_entropy(logits_fn(p, x), y)

    sizes = f"{len(data.y_train)} train / {len(data.y_test)} test images"
    return Task(
        name=name,
        description=f"{description}; {sizes}, batch {digits.BATCH_SIZE}",
        params=params,
        loss_fn=loss,
        batches=lambda: digits.batches(data, seed),
        final_loss_fn=lambda p: digits.cross_entropy(logits_fn(p, x_train), y_train),
        window=digits.steps_per_epoch(data),
        accuracy_fn=lambda p: digits.accuracy(logits_fn(p, x_test), y_test),
        final_loss_label=f"the loss on the whole training set ({len(data.y_train)} images)",
        test_size=len(data.y_test),
    )


def cnn_digits(seed: int) -> Task:
    """A small CNN (two 3x3 convolutions, max pooling, a dense layer) on the 8x8 digits."""
    params = digits.init_cnn(seed)
    description = "CNN (conv16-conv32-pool-dense) on scikit-learn's 8x8 digits"
    return _digits_task("cnn-digits", description, params, digits.cnn_logits, seed)


def mlp_digits(seed: int) -> Task:
    """A one-hidden-layer MLP on the 8x8 digits."""
    params = digits.init_mlp(seed)
    description = "MLP (64-128-10) on scikit-learn's 8x8 digits"
    return _digits_task("mlp-digits", description, params, digits.mlp_logits, seed)


# char-transformer's curve is averaged over this many steps (an epoch would be 90: too coarse for
# a 200-step run).
CHAR_WINDOW = 20


def char_transformer(seed: int) -> Task:
    """Next-character prediction with a tiny decoder-only transformer, on text that ships with
    Python: the sources of the standard library's :mod:`textwrap` and :mod:`difflib`, read with
    :func:`inspect.getsource` (about 100 KB of ASCII, half docstring prose and half code; no
    download, the same text on every run with one Python version; see
    :mod:`gradtx.compare.chars`). Chosen because every Python 3.11+ has it, it is large enough
    that 200 steps of 32 windows of 32 characters do not memorise it, and English and Python
    together give a model something to learn at several scales (spelling, words, indentation).

    The model: token and position embeddings, two pre-norm blocks of causal self-attention
    (2 heads) and a GELU MLP, width 32, an output layer: 32,000 parameters, all float32. The
    first 90% of the text trains (random windows drawn with ``seed``, which also draws the
    initial weights); the reported final loss is the cross-entropy on the last 10%, held out,
    in nats per character (ln 96 = 4.56 for a uniform guess). The training curve is the
    minibatch loss, averaged over :data:`CHAR_WINDOW` steps for the steps-to-target column.
    """
    data = chars.load()
    held_out = jnp.asarray(chars.held_out_windows(data))
    description = (
        f"char-level transformer ({chars.count_params(chars.init(seed)):,} params) on the "
        f"sources of {' + '.join(chars.SOURCE_MODULES)}; {len(data.train):,} train / "
        f"{len(data.held_out):,} held-out chars, batch {chars.BATCH_SIZE}x{chars.CONTEXT}, "
        "final loss held out, nats/char"
    )
    return Task(
        name="char-transformer",
        description=description,
        params=chars.init(seed),
        loss_fn=lambda p, batch: chars.loss(p, batch[0]),
        batches=lambda: ((windows,) for windows in chars.batches(data, seed)),
        final_loss_fn=lambda p: chars.loss(p, held_out),
        window=CHAR_WINDOW,
        final_loss_label=f"the loss on the held-out text ({len(data.held_out):,} chars)",
    )


@dataclass(frozen=True)
class TaskSpec:
    """A ``--task`` entry: how to build it and its defaults, known without building it (building
    a digits task loads the data, which needs scikit-learn)."""

    build: Callable[[int], Task]
    default_steps: int
    target: float
    classifier: bool = False


# The classifiers' target is a training cross-entropy of 0.05 (the loss starts near ln 10 = 2.3).
TASKS: dict[str, TaskSpec] = {
    "cnn-digits": TaskSpec(cnn_digits, default_steps=600, target=0.05, classifier=True),
    "mlp-digits": TaskSpec(mlp_digits, default_steps=600, target=0.05, classifier=True),
    "rosenbrock": TaskSpec(rosenbrock, default_steps=1000, target=1e-2),
    "quadratic": TaskSpec(quadratic, default_steps=300, target=1e-3),
    # Starts at ln 96 = 4.56 nats/char; 2.6 is where the unigram statistics are long learnt and
    # the model has started on words (AdamW gets there in about 100 of its 200 steps).
    "char-transformer": TaskSpec(char_transformer, default_steps=200, target=2.6),
}

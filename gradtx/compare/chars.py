"""A character-level language-modelling task on text that ships with Python (no download), and a
tiny decoder-only transformer for it, written in plain JAX (no Flax: it is not a dependency of
gradtx).

The text is the source code of two standard-library modules, :mod:`textwrap` then
:mod:`difflib`, read with :func:`inspect.getsource` from the running interpreter's own files:
about 100 KB of pure ASCII (on CPython 3.11, 103,026 characters), half English prose (their long
docstrings) and half Python. Every CPython 3.11+ install has both modules as ``.py`` files, so
nothing is downloaded and the text is the same on every run with one Python version; another
version's copy differs by a few lines, which moves the losses a little. (A Python installed
without its standard library's sources, as some embedded builds are, has no text to read:
:func:`load` then raises ``OSError``.)

Characters map to a fixed 96-symbol vocabulary, newline and the 95 printable ASCII characters;
any other character (none in these modules) maps to ``?``. The first 90% of the text trains,
the last 10% (the end of :mod:`difflib`) is held out. Losses are cross-entropies in nats per
character; a model that knows nothing scores ln 96 = 4.56.

Everything is float32, as real training is, whatever ``jax_enable_x64`` says.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

# The text: these modules' sources, in this order, joined by a blank line.
SOURCE_MODULES = ("textwrap", "difflib")
VOCAB = "\n" + "".join(chr(c) for c in range(32, 127))
VOCAB_SIZE = len(VOCAB)  # 96
_UNKNOWN = VOCAB.index("?")
HELD_OUT_FRACTION = 0.1

# The model and its batches.
CONTEXT = 32  # characters each sequence sees (and is scored on)
BATCH_SIZE = 32  # sequences per step
D_MODEL = 32
N_HEADS = 2
N_LAYERS = 2
MLP_RATIO = 4
# --seed feeds two independent NumPy streams, as for the digits: initial weights, batch windows.
_INIT_STREAM, _BATCH_STREAM = 0, 1

Params = dict[str, Any]


@dataclass(frozen=True)
class CharData:
    """The text as int32 vocabulary indices, split into training and held-out parts."""

    train: np.ndarray
    held_out: np.ndarray
    sources: tuple[str, ...]  # the files the text was read from

    @property
    def size(self) -> int:
        return len(self.train) + len(self.held_out)


def encode(text: str) -> np.ndarray:
    """Vocabulary indices of ``text``'s characters (``?``'s for characters outside it)."""
    lookup = np.full(128, _UNKNOWN, dtype=np.int32)
    for i, c in enumerate(VOCAB):
        lookup[ord(c)] = i
    codes = np.frombuffer(text.encode("ascii", errors="replace"), dtype=np.uint8)
    return lookup[np.minimum(codes, 127)]


def decode(ids: Any) -> str:
    return "".join(VOCAB[int(i)] for i in np.asarray(ids).reshape(-1))


def text() -> str:
    """The task's text: the sources of :data:`SOURCE_MODULES`, joined by a blank line."""
    return "\n\n".join(inspect.getsource(importlib.import_module(m)) for m in SOURCE_MODULES)


@functools.cache
def load() -> CharData:
    """The encoded text, split: the first 90% trains, the last 10% is held out."""
    ids = encode(text())
    n_train = round(len(ids) * (1 - HELD_OUT_FRACTION))
    sources = tuple(inspect.getsourcefile(importlib.import_module(m)) or m for m in SOURCE_MODULES)
    return CharData(ids[:n_train], ids[n_train:], sources)


def batches(data: CharData, seed: int) -> Iterator[np.ndarray]:
    """Endless batches of ``BATCH_SIZE`` windows of ``CONTEXT + 1`` training characters (inputs
    and, shifted by one, targets), each starting at a position drawn uniformly with ``seed``."""
    rng = np.random.default_rng([seed, _BATCH_STREAM])
    offsets = np.arange(CONTEXT + 1)
    while True:
        starts = rng.integers(0, len(data.train) - CONTEXT, size=BATCH_SIZE)
        yield data.train[starts[:, None] + offsets]


def steps_per_epoch(data: CharData) -> int:
    """Steps that draw, on average, as many characters as the training text has."""
    return len(data.train) // (BATCH_SIZE * CONTEXT)


def held_out_windows(data: CharData) -> np.ndarray:
    """The held-out text cut into consecutive, non-overlapping windows of ``CONTEXT + 1``
    (the tail that does not fill one is left out)."""
    n = (len(data.held_out) - 1) // CONTEXT
    offsets = np.arange(CONTEXT + 1)
    return data.held_out[np.arange(n)[:, None] * CONTEXT + offsets]


def _normal(rng: np.random.Generator, shape: tuple[int, ...], std: float) -> jax.Array:
    # NumPy draws them: eager jax.random would compile one small program per shape.
    return jnp.asarray((std * rng.standard_normal(shape)).astype(np.float32))


def _matrix(rng: np.random.Generator, fan_in: int, fan_out: int, gain: float = 1.0) -> jax.Array:
    return _normal(rng, (fan_in, fan_out), gain / math.sqrt(fan_in))


def _scale(d: int) -> jax.Array:
    return jnp.ones(d, dtype=jnp.float32)


def init(seed: int) -> Params:
    """GPT-2-shaped, without biases except the output layer's (as many recent models): token
    and position embeddings (std 0.02), ``N_LAYERS`` pre-norm blocks of causal self-attention
    and a GELU MLP (layer norms with a scale only), a final layer norm and the output layer
    ``out``. Matrices are drawn with variance 1 / fan_in, the residual projections' scaled down
    by ``1 / sqrt(2 N_LAYERS)`` (GPT-2's), the output layer's at std 0.02 so that the first
    predictions are near uniform (loss near ln 96). 32,000 parameters with the defaults, 24,576
    of them in the blocks' eight matrices.

    The names matter to :func:`gradtx.muon_with_adamw`'s split: both embeddings contain
    ``embed`` and the output layer is ``out``, so Muon takes exactly the blocks' matrices."""
    rng = np.random.default_rng([seed, _INIT_STREAM])
    d, hidden = D_MODEL, MLP_RATIO * D_MODEL
    residual_gain = 1.0 / math.sqrt(2 * N_LAYERS)
    blocks = []
    for _ in range(N_LAYERS):
        blocks.append(
            {
                "ln1": _scale(d),
                "attn": {"qkv": _matrix(rng, d, 3 * d), "proj": _matrix(rng, d, d, residual_gain)},
                "ln2": _scale(d),
                "mlp": {
                    "fc": _matrix(rng, d, hidden),
                    "proj": _matrix(rng, hidden, d, residual_gain),
                },
            }
        )
    return {
        "embed": _normal(rng, (VOCAB_SIZE, d), 0.02),
        "pos_embed": _normal(rng, (CONTEXT, d), 0.02),
        "blocks": blocks,
        "ln_f": _scale(d),
        "out": {
            "w": _normal(rng, (d, VOCAB_SIZE), 0.02),
            "b": jnp.zeros(VOCAB_SIZE, dtype=jnp.float32),
        },
    }


def _layer_norm(scale: jax.Array, x: jax.Array) -> jax.Array:
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean((x - mean) ** 2, axis=-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + 1e-5) * scale


def _attention(p: dict, x: jax.Array) -> jax.Array:
    b, t, d = x.shape
    head = d // N_HEADS
    qkv = (x @ p["qkv"]).reshape(b, t, 3, N_HEADS, head).transpose(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]  # (batch, heads, t, head)
    scores = (q @ k.swapaxes(-1, -2)) / math.sqrt(head)
    causal = jnp.tril(jnp.ones((t, t), dtype=bool))
    weights = jax.nn.softmax(jnp.where(causal, scores, -1e30), axis=-1)
    y = (weights @ v).transpose(0, 2, 1, 3).reshape(b, t, d)
    return y @ p["proj"]


def logits(params: Params, ids: jax.Array) -> jax.Array:
    """``(batch, t)`` indices, ``t <= CONTEXT`` -> ``(batch, t, VOCAB_SIZE)`` next-character
    logits, position ``i`` seeing characters ``0..i`` only."""
    t = ids.shape[1]
    # One-hot products rather than a gather: the same numbers, and a cheaper gradient to compile.
    x = jax.nn.one_hot(ids, VOCAB_SIZE) @ params["embed"] + params["pos_embed"][:t]
    for block in params["blocks"]:
        x = x + _attention(block["attn"], _layer_norm(block["ln1"], x))
        h = _layer_norm(block["ln2"], x)
        x = x + jax.nn.gelu(h @ block["mlp"]["fc"]) @ block["mlp"]["proj"]
    x = _layer_norm(params["ln_f"], x)
    return x @ params["out"]["w"] + params["out"]["b"]


def loss(params: Params, windows: jax.Array) -> jax.Array:
    """Mean next-character cross-entropy (nats per character) over ``(batch, t + 1)`` windows:
    each of the first ``t`` characters predicts the one after it."""
    log_probs = jax.nn.log_softmax(logits(params, windows[:, :-1]))
    return -jnp.mean(jnp.sum(log_probs * jax.nn.one_hot(windows[:, 1:], VOCAB_SIZE), axis=-1))


def count_params(params: Params) -> int:
    return sum(int(np.size(leaf)) for leaf in jax.tree.leaves(params))

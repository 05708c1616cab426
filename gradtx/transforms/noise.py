r"""Gradient noise (Neelakantan et al., 2015, "Adding Gradient Noise Improves Learning for Very
Deep Networks"): Gaussian noise whose variance anneals with the step count is added to every
update.

The noise is drawn with :mod:`jax.random` exactly as ``optax.add_noise`` draws it, so that the
same key gives the same noise, bit for bit: at each step the stored key is split into the next
stored key and a sample key; the sample key is split into one key per leaf of the updates (in
their flattening order); each leaf's noise is ``jax.random.normal(leaf_key, leaf.shape,
leaf.dtype)``.
"""

from __future__ import annotations

import operator
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradtx import live, validation
from gradtx import tree as _tree
from gradtx.core import GradientTransformation
from gradtx.transforms import counting

# The int seeds jax.random.key takes: int64's range.
_SEED_RANGE = (-(2**63), 2**63 - 1)


class AddNoiseState(NamedTuple):
    """:func:`add_noise`'s state.

    Attributes:
        count: the number of updates seen so far (None inside an optimizer, which keeps one
            count for all its transforms).
        rng_key: the key the next step's noise is drawn from, as its raw data
            (``jax.random.key_data``, a ``uint32`` array), so that the state holds plain
            arrays only; ``jax.random.wrap_key_data(rng_key)`` gives the typed key.
    """

    count: jax.Array | None
    rng_key: jax.Array


def is_typed_key(value) -> bool:
    dtype = getattr(value, "dtype", None)
    return dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key)


def check_seed(name: str, value):
    """An int seed for ``jax.random.key`` (a Python or NumPy int in int64's range), or None."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"`{name}` must be an int seed or a jax.random key, got {value!r}.")
    try:
        seed = operator.index(value)
    except TypeError:
        raise TypeError(
            f"`{name}` must be an int seed or a jax.random key, got {value!r}."
        ) from None
    low, high = _SEED_RANGE
    if not low <= seed <= high:
        raise ValueError(f"`{name}` must be an int seed in [-2**63, 2**63 - 1], got {value!r}.")
    return seed


def check_key(name: str, value):
    """A random key argument: an int seed, a typed key (``jax.random.key``) holding one key,
    a legacy raw key (``jax.random.PRNGKey``, a ``uint32`` array), or None (seed 0).
    Returned as it was given (an int seed as a Python int)."""
    if value is None:
        return None
    if is_typed_key(value):
        if jnp.shape(value) != ():
            raise ValueError(
                f"`{name}` must hold one key, got a key array of shape {jnp.shape(value)}."
            )
        return value
    dtype = getattr(value, "dtype", None)
    if dtype is not None and np.dtype(dtype) == np.uint32 and np.ndim(value) >= 1:
        try:
            jax.random.wrap_key_data(value)
        except (TypeError, ValueError) as err:
            raise ValueError(f"`{name}`: not a raw key of the default generator: {err}") from None
        return value
    return check_seed(name, value)


def key_data(key) -> jax.Array:
    """The raw data of the key a checked ``key`` argument stands for (None: seed 0)."""
    if is_typed_key(key):
        return jax.random.key_data(key)
    if getattr(key, "dtype", None) is not None and np.dtype(key.dtype) == np.uint32:
        return jnp.asarray(key)
    return jax.random.key_data(jax.random.key(0 if key is None else key))


def resolve_key(key, seed=None):
    """``(the key or seed to draw from, its implementation)`` for a transform's ``key`` and
    Optax's older ``seed`` argument, both checked (at most one given; None: seed 0). The
    implementation is that of a typed key, None otherwise (the default generator)."""
    check_key("key", key)
    check_seed("seed", seed)
    if seed is not None and key is not None:
        raise ValueError("Give `key` or `seed`, not both (`seed` is Optax's older name).")
    chosen = seed if seed is not None else key
    return chosen, jax.random.key_impl(chosen) if is_typed_key(chosen) else None


def add_noise(
    eta: float | jax.Array,
    gamma: float | jax.Array,
    key: jax.Array | int | None = None,
    *,
    seed: int | None = None,
) -> GradientTransformation:
    r"""Adds annealed Gaussian noise to the updates (Neelakantan et al., 2015):

    .. math::
        \text{out}_t = u_t + \sigma_t\, z_t, \qquad
        \sigma_t = \sqrt{\eta / t^{\gamma}}, \qquad z_t \sim \mathcal N(0, I)

    with :math:`t` counting the updates from 1. The noise is that of ``optax.add_noise``
    (Optax 0.2.8) for the same key, bit for bit (see this module's docstring).

    Args:
        eta: :math:`\eta \ge 0`, the variance at the first step.
        gamma: :math:`\gamma \ge 0`, the decay exponent of the variance.
        key: the random key: an int seed, a ``jax.random.key``, or a legacy raw
            ``jax.random.PRNGKey``. None: seed 0 (Optax warns that it will require one).
        seed: Optax's older (deprecated there) name for an int ``key``; give one or the other.

    State: :class:`AddNoiseState` (``count``, and ``rng_key`` as raw key data where Optax
    stores the typed key). Not elementwise: the noise depends on how the parameters are split
    into leaves.
    """
    validation.check_non_negative("eta", eta)
    validation.check_non_negative("gamma", gamma)
    chosen, impl = resolve_key(key, seed)

    def init(params):
        del params
        return AddNoiseState(count=counting.init_count(), rng_key=key_data(chosen))

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        taken, count = counting.advance(state.count, "add_noise")
        t = counting.as_float(taken) + 1
        std = jnp.sqrt(live.read(eta) / t ** live.read(gamma))
        next_key, sample_key = jax.random.split(jax.random.wrap_key_data(state.rng_key, impl=impl))
        leaves, treedef = jax.tree_util.tree_flatten(updates)
        leaf_keys = jax.random.split(sample_key, len(leaves))
        noisy = [
            u + _tree.cast_like(std, u) * jax.random.normal(k, jnp.shape(u), jnp.result_type(u))
            for u, k in zip(leaves, leaf_keys, strict=True)
        ]
        new_state = AddNoiseState(count=count, rng_key=jax.random.key_data(next_key))
        return jax.tree_util.tree_unflatten(treedef, noisy), new_state

    return GradientTransformation(init, update)

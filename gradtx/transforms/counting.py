"""Step counters: the optimizer's one shared count, or a transformation's own.

A transformation that needs the number of steps taken (a bias correction, a schedule) keeps
no counter of its own inside an optimizer built by :func:`gradtx.inject_hyperparams`: it reads
the optimizer's count (:func:`gradtx.live.step_count`), so the optimizer's state
holds one step count. Built on its own, outside any optimizer, it keeps its own count. Its
state stores ``None`` (an empty subtree) in place of the count in the first case.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gradtx import live

_MAX_INT32 = jnp.iinfo(jnp.int32).max


def increment(count: jax.Array) -> jax.Array:
    """``count + 1`` that saturates instead of wrapping to a negative number after 2**31 - 1."""
    return jnp.where(count < _MAX_INT32, count + 1, _MAX_INT32).astype(jnp.int32)


def zero_count() -> jax.Array:
    return jnp.zeros([], jnp.int32)


def init_count() -> jax.Array | None:
    """The count a transformation's ``init`` stores: None where the enclosing optimizer shares
    its count, else a zero of its own."""
    return None if live.step_count() is not None else zero_count()


def advance(own: jax.Array | None, name: str) -> tuple[jax.Array, jax.Array | None]:
    """``(steps taken before this one, the count to store)`` for a transformation whose stored
    count is ``own`` (None: read the optimizer's shared count)."""
    if own is not None:
        return own, increment(own)
    shared = live.step_count()
    if shared is None:
        raise ValueError(
            f"{name}: this state was made inside an optimizer that keeps one step count for "
            "all its transforms, so it has none of its own. Call update through that "
            "optimizer (or build the transformation on its own to give it its own count)."
        )
    return shared, None


def as_float(count: jax.Array) -> jax.Array:
    """A count as a float of the default width. Powers such as ``beta ** t`` take it: an
    integer exponent with a concrete value compiles a new program for every value when run
    eagerly."""
    return jnp.asarray(count, dtype=jnp.result_type(float))

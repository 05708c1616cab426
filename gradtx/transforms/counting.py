"""Step counters kept in transformation states."""

from __future__ import annotations

import jax
import jax.numpy as jnp

_MAX_INT32 = jnp.iinfo(jnp.int32).max


def increment(count: jax.Array) -> jax.Array:
    """``count + 1`` that saturates instead of wrapping to a negative number after 2**31 - 1."""
    return jnp.where(count < _MAX_INT32, count + 1, _MAX_INT32).astype(jnp.int32)


def zero_count() -> jax.Array:
    return jnp.zeros([], jnp.int32)

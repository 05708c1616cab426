r"""A slow copy of a tree that takes the latest values every ``update_period`` steps (the
target network of DQN, the teacher of some self-supervised methods)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from gradtx import validation
from gradtx.core import PyTree


def _check_integer(name: str, value, minimum: int) -> None:
    """A concrete ``value`` must be an integer (or a whole float) >= ``minimum``; a traced one
    must have an integer dtype. Errors name ``name``."""
    if validation.is_traced(value):
        if not jnp.issubdtype(jnp.result_type(value), jnp.integer):
            raise TypeError(f"`{name}` must be an integer, got a traced {value.dtype} value.")
        return
    if isinstance(value, (np.ndarray, jax.Array)) and value.ndim == 0 and jnp.issubdtype(
        value.dtype, jnp.integer
    ):
        value = int(value)
    validation.as_integral(name, value, minimum)


def periodic_update(
    new_tensors: PyTree,
    old_tensors: PyTree,
    steps: int | jax.Array,
    update_period: int | jax.Array,
) -> PyTree:
    r"""``new_tensors`` at the steps that are multiples of ``update_period``, else
    ``old_tensors``:

    .. math:: \theta^{\text{slow}} \leftarrow \begin{cases} \theta & t \bmod K = 0 \\
        \theta^{\text{slow}} & \text{otherwise} \end{cases}

    A function on trees, not a transformation: call it after each optimizer step with the step
    count :math:`t` (``steps``) to keep a copy that is refreshed every :math:`K` steps (Mnih
    et al., 2015; Grill et al., 2020). The two trees must have one structure, shapes and
    dtypes. Eagerly (concrete ``steps`` and ``update_period``) the chosen tree is returned as
    it is; traced, it is a ``lax.cond`` (a selection under ``vmap``). Same as
    ``optax.periodic_update`` (Optax 0.2.8).

    Args:
        new_tensors: the latest values.
        old_tensors: the slow copy.
        steps: :math:`t`, the number of steps taken (an integer).
        update_period: :math:`K \ge 1`, an integer.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.transforms.periodic import periodic_update
        >>> online, target = jnp.ones(2), jnp.zeros(2)
        >>> periodic_update(online, target, steps=3, update_period=2).tolist()
        [0.0, 0.0]
        >>> periodic_update(online, target, steps=4, update_period=2).tolist()
        [1.0, 1.0]
    """
    _check_integer("steps", steps, minimum=np.iinfo(np.int64).min)
    _check_integer("update_period", update_period, minimum=1)
    refresh = jnp.mod(steps, update_period) == 0
    if not validation.is_traced(refresh):
        return new_tensors if bool(refresh) else old_tensors
    return jax.lax.cond(refresh, lambda: new_tensors, lambda: old_tensors)

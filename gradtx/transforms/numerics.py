r"""Guards on the numbers of a step: replacing NaN updates by zeros, and keeping parameters
non-negative."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradtx.core import GradientTransformation, PyTree, flattenable, stateless


class ZeroNansState(NamedTuple):
    """Which leaves held a NaN at the latest step.

    Attributes:
        found_nan: a tree shaped like the parameters with one boolean scalar per leaf: True when
            that leaf of the latest incoming updates held at least one NaN (all False after
            ``init``).
    """

    found_nan: PyTree


def zero_nans() -> GradientTransformation:
    r"""Replaces every NaN entry of the updates by zero and records which leaves had one:

    .. math:: u_i \leftarrow \begin{cases} 0 & u_i \text{ is NaN} \\ u_i & \text{otherwise}
        \end{cases}

    Infinities are left as they are. The state only reports what happened (the transform never
    reads it), so that a run can log or count the steps that were repaired. Equal step for step
    to ``optax.zero_nans`` (Optax 0.2.8), state included.

    State: :class:`ZeroNansState` ``(found_nan)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.transforms.numerics import zero_nans
        >>> tx = zero_nans()
        >>> params = {"a": jnp.zeros(2), "b": jnp.zeros(2)}
        >>> grads = {"a": jnp.array([1.0, jnp.nan]), "b": jnp.ones(2)}
        >>> updates, state = tx.update(grads, tx.init(params))
        >>> updates["a"].tolist(), bool(state.found_nan["a"]), bool(state.found_nan["b"])
        ([1.0, 0.0], True, False)
    """

    def init(params):
        return ZeroNansState(
            found_nan=jax.tree_util.tree_map(lambda p: jnp.zeros((), jnp.bool_), params)
        )

    def update(updates, state, params=None, **extra_args):
        del state, params, extra_args
        found = jax.tree_util.tree_map(lambda u: jnp.any(jnp.isnan(u)), updates)
        out = jax.tree_util.tree_map(
            lambda u: jnp.where(jnp.isnan(u), jnp.zeros((), jnp.result_type(u)), u), updates
        )
        return out, ZeroNansState(found_nan=found)

    return GradientTransformation(init, update)


def keep_params_nonnegative() -> GradientTransformation:
    r"""Shortens any update that would take a parameter below zero so that it lands exactly on
    zero:

    .. math:: u_i \leftarrow \begin{cases} -\theta_i & \theta_i + u_i < 0 \\ u_i &
        \text{otherwise} \end{cases}

    Put it last in a chain, since it acts on the final update. It assumes the parameters start
    non-negative: a negative :math:`\theta_i` is moved to 0 by any update that leaves it
    negative. Equal step for step to ``optax.keep_params_nonnegative`` (Optax 0.2.8).

    ``update`` needs ``params``. Keeps no state (:class:`gradtx.EmptyState`).

    Example:
        >>> import gradtx as gx, jax.numpy as jnp
        >>> from gradtx.transforms.numerics import keep_params_nonnegative
        >>> opt = gx.chain(gx.sgd(1.0), keep_params_nonnegative())
        >>> params = jnp.array([0.5, 2.0])
        >>> updates, _ = opt.update(jnp.array([1.0, 1.0]), opt.init(params), params)
        >>> gx.apply_updates(params, updates).tolist()
        [0.0, 1.0]
    """

    def clamp(updates, params):
        def leaf(u, p):
            return jnp.where(p + u < 0, -p.astype(jnp.result_type(u)), u)

        return jax.tree_util.tree_map(leaf, updates, params)

    return flattenable(stateless(clamp, needs_params=True, name="keep_params_nonnegative"))

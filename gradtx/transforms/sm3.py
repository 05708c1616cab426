r"""SM3's scaling (Anil et al., 2019, "Memory-Efficient Adaptive Optimization"): Adagrad whose
per-entry accumulator is replaced by one accumulator per index of each axis, so that a
:math:`m \times n` matrix keeps :math:`m + n` numbers instead of :math:`mn`.

The accumulator of an entry is read as the smallest of the accumulators of the slices through
it (its row's and its column's, for a matrix), the squared gradient is added, and each slice
keeps the largest result over its entries (SM3-II in the paper).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradtx import live, validation
from gradtx import tree as _tree
from gradtx.core import GradientTransformation, PyTree
from gradtx.transforms.moments import ema_update


class ScaleBySM3State(NamedTuple):
    """:func:`scale_by_sm3`'s state, laid out as Optax's.

    Attributes:
        mu: per leaf, a list of accumulators, one vector per axis (of that axis' length) for
            a leaf of two or more dimensions; for a vector or a scalar, one accumulator of the
            leaf's shape (Adagrad's, as the cover of singletons).
        nu: the moving average of the scaled updates (the momentum), shaped like the leaves.
    """

    mu: PyTree
    nu: PyTree


def _zeros_per_axis(p) -> list[jax.Array]:
    p = jnp.asarray(p)
    if p.ndim < 2:
        return [_tree.fill_like(p)]
    return [jnp.zeros((n,), p.dtype) for n in p.shape]


def _along(v: jax.Array, axis: int, ndim: int) -> jax.Array:
    """The vector ``v`` of one axis shaped to broadcast along that axis of an ``ndim`` array."""
    return v.reshape((1,) * axis + (-1,) + (1,) * (ndim - axis - 1))


def _others(axis: int, ndim: int) -> tuple[int, ...]:
    return tuple(i for i in range(ndim) if i != axis)


def scale_by_sm3(
    b1: float | jax.Array = 0.9,
    b2: float | jax.Array = 1.0,
    eps: float | jax.Array = 1e-8,
) -> GradientTransformation:
    r"""SM3's scaling, with momentum (Anil et al., 2019, SM3-II). For a leaf of two or more
    dimensions, with :math:`\mu^{(k)}` the accumulator vector of axis :math:`k`:

    .. math::
        a_t &= c\, g_t^2 + \beta_2 \min_k \mu^{(k)}_{t-1}[i_k], \qquad
        c = \begin{cases} 1 & \beta_2 = 1 \\ 1-\beta_2 & \beta_2 < 1 \end{cases} \\
        \mu^{(k)}_t[j] &= \max_{i:\ i_k = j} a_t[i] \\
        \nu_t &= \beta_1 \nu_{t-1} + (1-\beta_1)\, g_t\, \hat a_t, \qquad
        \hat a_t = \begin{cases} (a_t + \epsilon)^{-1/2} & a_t > 0 \\ 0 & a_t = 0
        \end{cases}

    and the output is :math:`\nu_t`. With the default :math:`\beta_2 = 1` the accumulators
    are sums (the paper's SM3); :math:`\beta_2 < 1` makes them moving averages. A vector or
    a scalar keeps one accumulator per entry, :math:`a_t = c\,g_t^2 + \beta_2 a_{t-1}`.

    Equal step for step to ``optax.scale_by_sm3`` (Optax 0.2.8), which fails on scalar leaves
    (gradtx treats a scalar as a vector of one entry). Not elementwise: the accumulators are
    shared along each axis.

    Args:
        b1: :math:`\beta_1 \in [0, 1)`, the momentum of the scaled updates.
        b2: :math:`\beta_2 \in [0, 1]`, the decay of the accumulators (1: no decay).
        eps: :math:`\epsilon \ge 0`, added to the accumulator under the root.

    State: :class:`ScaleBySM3State` (``mu``, the accumulators; ``nu``, the momentum).
    """
    validation.check_unit_interval("b1", b1)
    validation.check_interval("b2", b2, 0.0, 1.0)
    validation.check_non_negative("eps", eps)

    def init(params):
        return ScaleBySM3State(
            mu=jax.tree_util.tree_map(_zeros_per_axis, params),
            nu=_tree.full_like(params),
        )

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        beta1, beta2, epsilon = live.read(b1), live.read(b2), live.read(eps)
        beta2 = jnp.asarray(beta2, jnp.result_type(float))
        # Once per step: the weight of the new squared gradient (1 for sums).
        weight = jnp.where(beta2 == 1, jnp.ones_like(beta2), 1 - beta2)

        def leaf(u, stored_nu, stored_mu):
            g, nu, *accumulators = _tree.widen(u, stored_nu, *stored_mu)
            if g.ndim < 2:
                previous = accumulators[0]
            else:
                previous = functools.reduce(
                    jnp.minimum, (_along(v, k, g.ndim) for k, v in enumerate(accumulators))
                )
            a = _tree.cast_like(weight, g) * (g * g) + _tree.cast_like(beta2, g) * previous
            inverse_root = jnp.where(
                a > 0, jax.lax.rsqrt(a + _tree.cast_like(epsilon, a)), jnp.zeros_like(a)
            )
            nu_next = ema_update(nu, g * inverse_root, beta1)
            if g.ndim < 2:
                new_mu = [a]
            else:
                # The empty-array guard (initial=0) leaves every other value alone: a >= 0.
                new_mu = [jnp.max(a, axis=_others(k, g.ndim), initial=0.0)
                          for k in range(g.ndim)]
            mu = [new.astype(old.dtype) for new, old in zip(new_mu, stored_mu, strict=True)]
            return nu_next, nu_next.astype(stored_nu.dtype), mu

        results = _tree.map_state(leaf, updates, state.nu, state.mu, name="scale_by_sm3")
        out, nu, mu = _tree.split_tuples(results, updates, 3)
        return out, ScaleBySM3State(mu=mu, nu=nu)

    return GradientTransformation(init, update)

r"""Sign-based updates: the elementwise sign (signSGD) and Lion's sign of an interpolated
momentum. Both discard magnitudes, so every entry moves by exactly the learning rate."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gradtx import live, validation
from gradtx import tree as _tree
from gradtx.core import GradientTransformation, flattenable, stateless
from gradtx.transforms.moments import FirstMomentState, ema_update


def scale_by_sign() -> GradientTransformation:
    r"""Replaces every update by its sign, :math:`\text{out} = \operatorname{sign}(u)`, with
    :math:`\operatorname{sign}(0) = 0`. Keeps no state.

    Preceded by :func:`gradtx.ema` it is Signum (Bernstein et al., 2018).
    """

    return flattenable(stateless(lambda updates, params: jax.tree_util.tree_map(jnp.sign, updates)))


def scale_by_lion(
    b1: float | jax.Array = 0.9, b2: float | jax.Array = 0.99, *, dtype=None
) -> GradientTransformation:
    r"""Lion's direction (Chen et al., 2023): the sign of an interpolation between the momentum
    and the update, with the momentum then tracked at a second rate:

    .. math::
        \text{out}_t = \operatorname{sign}\bigl(\beta_1 m_{t-1} + (1-\beta_1) u_t\bigr), \qquad
        m_t = \beta_2 m_{t-1} + (1-\beta_2) u_t, \qquad m_0 = 0

    Both lines are moving-average steps of the same :math:`m_{t-1}`, so both go through
    :func:`gradtx.ema_update`; only the second is stored, in ``dtype`` (default: the
    parameters').
    """
    dtype = validation.check_state_dtype("dtype", dtype)
    validation.check_unit_interval("b1", b1)
    validation.check_unit_interval("b2", b2)

    def init(params):
        return FirstMomentState(mu=_tree.full_like(params, 0.0, dtype))

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        beta1, beta2 = live.read(b1), live.read(b2)

        def leaf(u, m):
            return jnp.sign(ema_update(m, u, beta1)), ema_update(m, u, beta2)

        out, (mu,) = _tree.leafwise(leaf, updates, state.mu, name="scale_by_lion")
        return out, FirstMomentState(mu=mu)

    return flattenable(GradientTransformation(init, update))

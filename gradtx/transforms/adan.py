r"""Adan's scaling (Xie et al., 2022, "Adan: Adaptive Nesterov Momentum Algorithm for Faster
Optimizing Deep Models"): Adam-like moments of the gradient and of its change between steps,
the Nesterov momentum estimate that spares a gradient at an extrapolated point."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradtx import live, validation
from gradtx import tree as _tree
from gradtx.core import GradientTransformation, PyTree, flattenable
from gradtx.transforms import counting
from gradtx.transforms.moments import ema_update


class ScaleByAdanState(NamedTuple):
    r""":func:`scale_by_adan`'s state (Optax's ``ScaleByAdanState``, whose ``t`` is ``count``).

    Attributes:
        m: :math:`m_t`, the moving average of the gradients, per parameter.
        v: :math:`v_t`, the moving average of the differences of consecutive gradients.
        n: :math:`n_t`, the moving average of :math:`|g_t + (1-\beta_2)(g_t - g_{t-1})|^2`.
        g: :math:`g_t`, the latest gradient (zero before the first step).
        count: the number of updates seen; None inside an optimizer, which keeps one count
            for all its transforms.
    """

    m: PyTree
    v: PyTree
    n: PyTree
    g: PyTree
    count: jax.Array | None


def _squared_magnitude(x: jax.Array) -> jax.Array:
    """:math:`|x|^2` elementwise, real for a complex ``x``."""
    if jnp.iscomplexobj(x):
        return jnp.real(x) ** 2 + jnp.imag(x) ** 2
    return x * x


def scale_by_adan(
    b1: float | jax.Array = 0.98,
    b2: float | jax.Array = 0.92,
    b3: float | jax.Array = 0.99,
    eps: float | jax.Array = 1e-8,
    eps_root: float | jax.Array = 0.0,
) -> GradientTransformation:
    r"""Adan's scaling, with :math:`\Delta_t = g_t - g_{t-1}` (:math:`\Delta_1 = 0`):

    .. math::
        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) \Delta_t \\
        n_t &= \beta_3 n_{t-1} + (1-\beta_3) \bigl|g_t + (1-\beta_2)\Delta_t\bigr|^2 \\
        \text{out}_t &= \frac{\hat m_t + (1-\beta_2)\hat v_t}
            {\sqrt{\hat n_t + \epsilon_{\text{root}}} + \epsilon}, \qquad
        \hat x_t = \frac{x_t}{1-\beta^t}\ \text{(each with its own}\ \beta)

    with every moment starting at zero, equal step for step to ``optax.scale_by_adan``
    (Optax 0.2.8). The betas weigh the *old* value, as in Adam and in Optax's code; the paper
    writes the same averages with :math:`1-\beta` in place of :math:`\beta`, and starts them
    at the first gradient rather than at zero with a bias correction.

    One transformation rather than a ``parallel`` of moments: :math:`v` and :math:`n` both
    need :math:`\Delta_t`, and so the previous gradient, in one place.
    """
    for name, value in (("b1", b1), ("b2", b2), ("b3", b3)):
        validation.check_unit_interval(name, value)
    validation.check_non_negative("eps", eps)
    validation.check_non_negative("eps_root", eps_root)

    def init(params):
        return ScaleByAdanState(
            m=_tree.full_like(params, 0.0),
            v=_tree.full_like(params, 0.0),
            n=_tree.full_like(params, 0.0),
            g=_tree.full_like(params, 0.0),
            count=counting.init_count(),
        )

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        taken, count = counting.advance(state.count, "scale_by_adan")
        t = counting.as_float(taken) + 1
        first = taken == 0
        beta1, beta2, beta3 = (jnp.asarray(live.read(b), t.dtype) for b in (b1, b2, b3))
        epsilon, epsilon_root = live.read(eps), live.read(eps_root)
        # Per-step scalars, computed once outside the elementwise work.
        inverse1, inverse2, inverse3 = (1 / (1 - b**t) for b in (beta1, beta2, beta3))
        diff_weight = 1 - beta2

        def leaf(g, m, v, n, previous):
            # No previous gradient at the first step: the difference is 0 there.
            diff = jnp.where(first, jnp.zeros_like(g), g - previous)
            m = ema_update(m, g, beta1)
            v = ema_update(v, diff, beta2)
            weight = _tree.cast_like(diff_weight, g)
            n = ema_update(n, _squared_magnitude(g + weight * diff), beta3)
            numerator = m * _tree.cast_like(inverse1, m) + weight * (
                v * _tree.cast_like(inverse2, v)
            )
            n_hat = n * _tree.cast_like(inverse3, n)
            denominator = jnp.sqrt(n_hat + _tree.cast_like(epsilon_root, n)) + _tree.cast_like(
                epsilon, n
            )
            return numerator / denominator, m, v, n, g

        out, (m, v, n, g) = _tree.leafwise(
            leaf, updates, state.m, state.v, state.n, state.g, name="scale_by_adan"
        )
        return out, ScaleByAdanState(m=m, v=v, n=n, g=g, count=count)

    return flattenable(GradientTransformation(init, update))

r"""Simplified AdEMAMix's scaling (Morwani et al., 2025, "Connections between Schedule-Free
Optimizers, AdEMAMix, and Accelerated SGD Variants"): one momentum buffer that *sums* the
gradients with decay :math:`\beta_1` (no :math:`1-\beta_1` factor), mixed with :math:`\alpha`
times the current gradient, over Adam's bias-corrected second moment."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradtx import live, validation
from gradtx import tree as _tree
from gradtx.core import GradientTransformation, PyTree, ScalarOrSchedule, flattenable
from gradtx.transforms import counting
from gradtx.transforms.moments import ema_update


class ScaleBySimplifiedAdEMAMixState(NamedTuple):
    """:func:`scale_by_simplified_ademamix`'s state.

    Attributes:
        m: the momentum, :math:`m_t = \\beta_1 m_{t-1} + g_t` (Optax's ``m``).
        n: the moving second moment of the gradients (Optax's ``n``).
        count: the number of updates seen so far (Optax's ``t``); None inside an optimizer,
            which keeps one count for all its transforms.
    """

    m: PyTree
    n: PyTree
    count: jax.Array | None


def scale_by_simplified_ademamix(
    b1: float | jax.Array = 0.99,
    b2: float | jax.Array = 0.95,
    alpha: ScalarOrSchedule = 0.0,
    eps: float | jax.Array = 1e-8,
    eps_root: float | jax.Array = 0.0,
) -> GradientTransformation:
    r"""Simplified AdEMAMix's scaling (Morwani et al., 2025):

    .. math::
        m_t &= \beta_1 m_{t-1} + g_t, \qquad
        n_t = \beta_2 n_{t-1} + (1-\beta_2)\, g_t^2 \\
        \text{out}_t &= \frac{m_t + \alpha_t\, g_t}
            {\sqrt{n_t / (1-\beta_2^t) + \epsilon_{\text{root}}} + \epsilon}

    with :math:`m_0 = n_0 = 0`. :math:`m_t` is not an average: it grows to about
    :math:`g/(1-\beta_1)`, so the learning rate is about :math:`1-\beta_1` times Adam's. With
    :math:`\alpha = 0` it is Adam with that rescaled momentum, uncorrected.

    Equal step for step to ``optax.contrib.scale_by_simplified_ademamix`` (Optax 0.2.8).

    Args:
        b1: :math:`\beta_1 \in [0, 1)`, the momentum's decay.
        b2: :math:`\beta_2 \in [0, 1)`, the second moment's decay.
        alpha: :math:`\alpha \ge 0`, the weight of the current gradient; a number or a
            schedule of the number of steps already taken (0 at the first step), as Optax's.
        eps: :math:`\epsilon \ge 0`, added to the root.
        eps_root: :math:`\epsilon_{\text{root}} \ge 0`, added under the root.

    State: :class:`ScaleBySimplifiedAdEMAMixState` (``m``, ``n``, ``count``).
    """
    validation.check_unit_interval("b1", b1)
    validation.check_unit_interval("b2", b2)
    validation.check_non_negative("alpha", alpha)
    validation.check_non_negative("eps", eps)
    validation.check_non_negative("eps_root", eps_root)

    def init(params):
        return ScaleBySimplifiedAdEMAMixState(
            m=_tree.full_like(params),
            n=_tree.full_like(params),
            count=counting.init_count(),
        )

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        taken, count = counting.advance(state.count, "scale_by_simplified_ademamix")
        t = counting.as_float(taken) + 1
        mixing = live.read(alpha)
        if callable(mixing):  # a schedule, on its own (an optimizer evaluates it itself)
            mixing = mixing(taken)
        beta1, beta2 = live.read(b1), live.read(b2)
        epsilon, epsilon_root = live.read(eps), live.read(eps_root)
        # Per step, outside the elementwise work.
        inverse2 = 1 / (1 - jnp.asarray(beta2, t.dtype) ** t)

        def leaf(g, m, n):
            m = g + _tree.cast_like(beta1, m) * m
            n = ema_update(n, g * g, beta2)
            n_hat = n * _tree.cast_like(inverse2, n)
            denom = jnp.sqrt(n_hat + _tree.cast_like(epsilon_root, n)) + _tree.cast_like(
                epsilon, n
            )
            return (m + _tree.cast_like(mixing, g) * g) / denom, m, n

        out, (m, n) = _tree.leafwise(
            leaf, updates, state.m, state.n, name="scale_by_simplified_ademamix"
        )
        return out, ScaleBySimplifiedAdEMAMixState(m=m, n=n, count=count)

    return flattenable(GradientTransformation(init, update))

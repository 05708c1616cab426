r"""Optimistic gradients for games (min-max problems).

Gradient descent on a game such as :math:`\min_x \max_y xy` circles or spirals away from the
equilibrium. Optimistic gradient descent (Popov, 1980; Daskalakis et al., 2018; Mokhtari et
al., 2020) extrapolates with the last gradient, :math:`(\alpha + \beta) g_t - \beta g_{t-1}`,
a cheap stand-in for the extra gradient of the extragradient method, and converges in the
last iterate.

:func:`scale_by_optimistic_gradient` is that extrapolation, on any updates (raw gradients,
or Adam's normalised ones: ``optax.optimistic_adam`` runs it after
``gradtx.scale_by_adam(..., eps_root=..., nesterov=True)``).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradtx import live, validation
from gradtx import tree as _tree
from gradtx.core import GradientTransformation, PyTree, flattenable
from gradtx.transforms import counting


class ScaleByOptimisticGradientState(NamedTuple):
    """The state of :func:`scale_by_optimistic_gradient`.

    Attributes:
        previous_gradient: the updates of the previous step (zeros before the first; Optax's
            field of the same name).
        count: the number of updates seen (Optax's ``is_initial_step`` is ``count == 0``);
            None inside an optimizer, which keeps one count for all its transforms.
    """

    previous_gradient: PyTree
    count: jax.Array | None


def scale_by_optimistic_gradient(
    alpha: float | jax.Array = 1.0, beta: float | jax.Array = 1.0
) -> GradientTransformation:
    r"""The generalised optimistic gradient (Mokhtari et al., 2020):

    .. math::
        \text{out}_t = (\alpha + \beta)\, u_t - \beta\, u_{t-1}, \qquad u_0 = u_1

    so the first step is :math:`\alpha u_1`. With :math:`\alpha = \beta = 1` it is
    :math:`2u_t - u_{t-1}`, Popov's optimistic step; :math:`\beta = 0` gives :math:`\alpha u_t`.
    It keeps the previous updates, in the parameters' dtype. Equal to
    ``optax.scale_by_optimistic_gradient`` (Optax 0.2.8).

    Args:
        alpha: :math:`\alpha \ge 0`, the weight of the current updates.
        beta: :math:`\beta \ge 0`, the weight of the extrapolation (a negative momentum).
    """
    validation.check_non_negative("alpha", alpha)
    validation.check_non_negative("beta", beta)

    def init(params):
        return ScaleByOptimisticGradientState(
            previous_gradient=_tree.full_like(params, 0.0), count=counting.init_count()
        )

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        taken, count = counting.advance(state.count, "scale_by_optimistic_gradient")
        first = taken == 0
        a, b = live.read(alpha), live.read(beta)

        def leaf(u, previous):
            previous = jnp.where(first, u, previous)
            out = _tree.cast_like(a + b, u) * u - _tree.cast_like(b, u) * previous
            return out, u

        out, (previous,) = _tree.leafwise(
            leaf, updates, state.previous_gradient, name="scale_by_optimistic_gradient"
        )
        return out, ScaleByOptimisticGradientState(previous_gradient=previous, count=count)

    return flattenable(GradientTransformation(init, update))

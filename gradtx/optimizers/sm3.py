r"""SM3 (Anil et al., 2019): Adagrad with one accumulator per index of each axis."""

from __future__ import annotations

import jax

from gradtx.core import GradientTransformation, ScalarOrSchedule
from gradtx.optimizers._common import BETA, LEARNING_RATE, optimizer, optimizer_chain
from gradtx.transforms.scaling import scale_by_learning_rate
from gradtx.transforms.sm3 import scale_by_sm3


@optimizer(learning_rate=LEARNING_RATE, momentum=BETA)
def sm3(
    learning_rate: ScalarOrSchedule = 1e-2,
    momentum: float | jax.Array = 0.9,
) -> GradientTransformation:
    r"""SM3 (Anil et al., 2019, "Memory-Efficient Adaptive Optimization", SM3-II with
    momentum): Adagrad whose per-entry sum of squared gradients is replaced by one sum per
    index of each axis (row and column sums for a matrix), so a :math:`m \times n` matrix
    keeps :math:`m + n` accumulators instead of :math:`mn`.

    For a leaf of two or more dimensions, with :math:`\mu^{(k)}` the accumulator vector of
    axis :math:`k`:

    .. math::
        a_t &= g_t^2 + \min_k \mu^{(k)}_{t-1}[i_k], \qquad
        \mu^{(k)}_t[j] = \max_{i:\ i_k = j} a_t[i] \\
        \nu_t &= \beta\, \nu_{t-1} + (1-\beta)\, g_t\, \hat a_t, \qquad
        \hat a_t = \begin{cases} (a_t + 10^{-8})^{-1/2} & a_t > 0 \\ 0 & a_t = 0
        \end{cases} \\
        \theta_t &= \theta_{t-1} - \eta_t\, \nu_t

    with :math:`\beta` = ``momentum`` and all accumulators starting at 0. A vector or a
    scalar keeps Adagrad's per-entry sum, :math:`a_t = a_{t-1} + g_t^2`.

    Chain: ``scale_by_sm3(b1=momentum) → scale_by_learning_rate(η)``.

    Args:
        learning_rate: :math:`\eta \ge 0`, a number or a schedule of the step count.
        momentum: :math:`\beta \in [0, 1)`, the decay of the moving average of the scaled
            gradients.

    State (named, for :func:`gradtx.tree_get`): ``mu`` (per leaf, the list of accumulators)
    and ``nu`` (the momentum), as Optax's ``ScaleBySM3State``; and ``count``.

    Equal step for step to ``optax.sm3`` (Optax 0.2.8). Differences: Optax has no default
    learning rate (1e-2 here, Adagrad's) and takes no schedule for it; Optax fails on scalar
    leaves, which gradtx treats as vectors of one entry. Complex parameters are refused, as
    in Optax.

    Example:
        >>> import gradtx as gx, jax.numpy as jnp
        >>> from gradtx.optimizers.sm3 import sm3
        >>> opt = sm3(learning_rate=0.1)
        >>> params = {"w": jnp.ones((2, 2))}
        >>> g = {"w": jnp.array([[3.0, 1.0], [2.0, -4.0]])}
        >>> updates, state = opt.update(g, opt.init(params), params)
        >>> [[round(float(u), 6) for u in row] for row in updates["w"]]  # -η (1-β) sign(g)
        [[-0.01, -0.01], [-0.01, 0.01]]
        >>> [v.tolist() for v in gx.tree_get(state, "mu")["w"]]  # row and column maxima of g²
        [[9.0, 16.0], [9.0, 16.0]]
    """
    return optimizer_chain(
        scale_by_sm3(momentum),
        scale_by_learning_rate(learning_rate),
        real_only="sm3",
    )

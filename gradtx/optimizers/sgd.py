"""Stochastic gradient descent with torch's momentum, dampening and Nesterov options."""

from __future__ import annotations

import jax
from jax.typing import DTypeLike

from gradtx import validation
from gradtx.core import GradientTransformation, ScalarOrSchedule
from gradtx.hyperparams.declarations import (
    CLOSED_UNIT_INTERVAL,
    NON_NEGATIVE,
    STATE_DTYPE,
    SWITCH,
    WEIGHT_DECAY,
)
from gradtx.optimizers._common import (
    LEARNING_RATE,
    MAXIMIZE,
    negate_if,
    optimizer,
    optimizer_chain,
    weight_decay_if,
)
from gradtx.transforms.momentum import check_nesterov, scale_by_momentum
from gradtx.transforms.scaling import scale_by_learning_rate


@optimizer(
    learning_rate=LEARNING_RATE,
    momentum=NON_NEGATIVE.omitted_when_zero(),
    dampening=CLOSED_UNIT_INTERVAL,
    nesterov=SWITCH,
    weight_decay=WEIGHT_DECAY,
    maximize=MAXIMIZE,
    mu_dtype=STATE_DTYPE,
    rules=(check_nesterov,),
)
def sgd(
    learning_rate: ScalarOrSchedule = 1e-3,
    momentum: float | jax.Array = 0.0,
    dampening: float | jax.Array = 0.0,
    nesterov: bool = False,
    weight_decay: float | jax.Array = 0.0,
    maximize: bool = False,
    mu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Stochastic gradient descent, equal step for step to ``torch.optim.SGD``.

    .. math::
        g_t &\leftarrow \pm\nabla_\theta f(\theta_{t-1}) + \lambda\,\theta_{t-1}
            \quad (- \text{ when maximizing}) \\
        b_1 &= g_1, \qquad b_t = \mu\, b_{t-1} + (1-\tau)\, g_t \\
        \theta_t &= \theta_{t-1} - \eta\, d_t, \qquad
            d_t = g_t + \mu\, b_t \ \text{(Nesterov)},\ \ b_t \ \text{(momentum)},\ \
            g_t \ (\mu = 0)

    Chain: ``[scale(-1)] → [add_decayed_weights(λ)] → [scale_by_momentum(μ, τ, nesterov)] →
    scale_by_learning_rate(η)``; bracketed steps are left out when not used.

    Args:
        learning_rate: :math:`\eta`, a float, array or schedule ``count -> value``.
        momentum: :math:`\mu \ge 0`.
        dampening: :math:`\tau \in [0, 1]`.
        nesterov: Nesterov momentum (needs :math:`\mu > 0` and :math:`\tau = 0`).
        weight_decay: L2 penalty :math:`\lambda \ge 0`, added to the gradient.
        maximize: maximise the objective instead of minimising it.

    State dtype: ``mu_dtype`` stores the momentum buffer in another dtype (``jnp.bfloat16`` halves
    the state); None keeps the parameters' dtype. Updates are computed in the wider dtype.

    State (named, for :func:`gradtx.tree_get`): ``count``, the one step count, and
    ``momentum_buffer`` (torch's buffer; only with momentum).

    torch.optim: ``SGD(params, lr, momentum, dampening, weight_decay, nesterov, maximize)``.

    Differences from ``optax.sgd``: Optax has no default learning rate, no dampening and no
    ``weight_decay`` argument; its momentum buffer starts at zero, which gives the same first
    buffer as torch's only because it has no dampening.

    Example:
        >>> import gradtx as gx, jax.numpy as jnp
        >>> opt = gx.sgd(learning_rate=0.1, momentum=0.9, nesterov=True)
        >>> params = {"w": jnp.ones(3)}
        >>> state = opt.init(params)
        >>> updates, state = opt.update({"w": jnp.ones(3)}, state, params)
        >>> params = gx.apply_updates(params, updates)
    """
    use_momentum = not validation.is_static_zero(momentum)
    return optimizer_chain(
        negate_if(maximize),
        weight_decay_if(weight_decay),
        scale_by_momentum(momentum, dampening, nesterov, dtype=mu_dtype) if use_momentum else None,
        scale_by_learning_rate(learning_rate),
    )

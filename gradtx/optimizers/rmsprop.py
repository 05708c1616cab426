"""RMSProp and Adadelta: steps divided by the root of a moving average of squared gradients
(Adadelta also rescales by the root of its past steps' average)."""


from __future__ import annotations

import jax
from jax.typing import DTypeLike

from gradtx import validation
from gradtx.core import GradientTransformation, ScalarOrSchedule
from gradtx.hyperparams.declarations import (
    NON_NEGATIVE,
    STATE_DTYPE,
    SWITCH,
    UNIT_INTERVAL,
    WEIGHT_DECAY,
)
from gradtx.optimizers._common import (
    EPS,
    LEARNING_RATE,
    MAXIMIZE,
    negate_if,
    optimizer,
    optimizer_chain,
    weight_decay_if,
)
from gradtx.transforms.momentum import scale_by_momentum
from gradtx.transforms.root_scaling import scale_by_past_update_rms, scale_by_rms
from gradtx.transforms.scaling import scale_by_learning_rate


@optimizer(
    learning_rate=LEARNING_RATE,
    decay=UNIT_INTERVAL,
    eps=EPS,
    weight_decay=WEIGHT_DECAY,
    momentum=NON_NEGATIVE.omitted_when_zero(),
    centered=SWITCH,
    maximize=MAXIMIZE,
    mu_dtype=STATE_DTYPE,
    nu_dtype=STATE_DTYPE,
)
def rmsprop(
    learning_rate: ScalarOrSchedule = 1e-2,
    decay: float | jax.Array = 0.99,
    eps: float | jax.Array = 1e-8,
    weight_decay: float | jax.Array = 0.0,
    momentum: float | jax.Array = 0.0,
    centered: bool = False,
    maximize: bool = False,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""RMSProp (Hinton, 2012), equal step for step to ``torch.optim.RMSprop``.

    .. math::
        g_t &\leftarrow \pm\nabla_\theta f(\theta_{t-1}) + \lambda\,\theta_{t-1} \\
        v_t &= \alpha v_{t-1} + (1-\alpha) g_t^2, \qquad
            \bar g_t = \alpha \bar g_{t-1} + (1-\alpha) g_t \ \text{(centered only)} \\
        d_t &= \frac{g_t}{\sqrt{v_t - [\bar g_t^2]} + \epsilon}, \qquad
            b_t = \mu\, b_{t-1} + d_t \ \ (b_0 = 0;\ \text{only when } \mu > 0) \\
        \theta_t &= \theta_{t-1} - \eta\, b_t \ \ \text{or}\ \ \theta_{t-1} - \eta\, d_t

    ``decay`` is torch's ``alpha``. Chain: ``[scale(-1)] → [add_decayed_weights(λ)] →
    scale_by_rms(α, ε, centered) → [scale_by_momentum(μ)] → scale_by_learning_rate(η)``.

    State dtypes: ``nu_dtype`` stores the mean square and ``mu_dtype`` the mean gradient
    (``centered``) and the momentum buffer in another dtype (``jnp.bfloat16`` halves them);
    None keeps the parameters' dtype. Updates are computed in the wider dtype.

    State (named, for :func:`gradtx.tree_get`): ``count``, the one step count, and ``nu``
    (torch's ``square_avg``), ``mu`` (``grad_avg``, centered only), ``momentum_buffer`` (only
    with momentum).

    torch.optim: ``RMSprop(params, lr, alpha, eps, weight_decay, momentum, centered, maximize)``.

    Differences from ``optax.rmsprop``: Optax defaults to ``decay=0.9`` and puts eps inside the
    root (``eps_in_sqrt=True``); it has no ``weight_decay``.

    Example:
        >>> import gradtx as gx
        >>> opt = gx.rmsprop(learning_rate=1e-3, momentum=0.9, centered=True)
    """
    return optimizer_chain(
        negate_if(maximize),
        weight_decay_if(weight_decay),
        scale_by_rms(decay, eps, centered=centered, mu_dtype=mu_dtype, nu_dtype=nu_dtype),
        None
        if validation.is_static_zero(momentum)
        else scale_by_momentum(momentum, dtype=mu_dtype),
        scale_by_learning_rate(learning_rate),
    )


@optimizer(
    learning_rate=LEARNING_RATE,
    rho=UNIT_INTERVAL,
    eps=EPS,
    weight_decay=WEIGHT_DECAY,
    maximize=MAXIMIZE,
    nu_dtype=STATE_DTYPE,
)
def adadelta(
    learning_rate: ScalarOrSchedule = 1.0,
    rho: float | jax.Array = 0.9,
    eps: float | jax.Array = 1e-6,
    weight_decay: float | jax.Array = 0.0,
    maximize: bool = False,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Adadelta (Zeiler, 2012), equal step for step to ``torch.optim.Adadelta``.

    .. math::
        g_t &\leftarrow \pm\nabla_\theta f(\theta_{t-1}) + \lambda\,\theta_{t-1} \\
        v_t &= \rho v_{t-1} + (1-\rho) g_t^2 \\
        \Delta_t &= \frac{\sqrt{a_{t-1} + \epsilon}}{\sqrt{v_t + \epsilon}}\, g_t, \qquad
            a_t = \rho a_{t-1} + (1-\rho) \Delta_t^2 \\
        \theta_t &= \theta_{t-1} - \eta\, \Delta_t

    Chain: ``[scale(-1)] → [add_decayed_weights(λ)] → scale_by_rms(ρ, ε, eps_in_sqrt=True) →
    scale_by_past_update_rms(ρ, ε) → scale_by_learning_rate(η)``.

    State dtype: ``nu_dtype`` stores both running averages of squares (of gradients and of
    steps) in another dtype (``jnp.bfloat16`` halves the state); None keeps the parameters'
    dtype. Updates are computed in the wider dtype.

    State (named, for :func:`gradtx.tree_get`): ``count``, the one step count, and ``nu``
    (torch's ``square_avg``), ``acc_delta``.

    torch.optim: ``Adadelta(params, lr, rho, eps, weight_decay, maximize)``.

    Differences from ``optax.adadelta``: Optax's ``learning_rate`` defaults to ``None``, which
    applies no step size and no sign flip (so ``optax.adadelta()`` as is moves up the
    gradient); gradtx follows torch's default of 1.0 and descends. Optax also takes a
    ``weight_decay_mask``; here use :func:`gradtx.masked` or :func:`gradtx.multi_transform`.

    Example:
        >>> import gradtx as gx
        >>> opt = gx.adadelta(rho=0.95)
    """
    return optimizer_chain(
        negate_if(maximize),
        weight_decay_if(weight_decay),
        scale_by_rms(rho, eps, eps_in_sqrt=True, nu_dtype=nu_dtype),
        scale_by_past_update_rms(rho, eps, dtype=nu_dtype),
        scale_by_learning_rate(learning_rate),
    )

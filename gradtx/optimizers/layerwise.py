"""Layer-wise adaptive optimizers: LAMB and LARS scale each parameter leaf's step by a trust
ratio, the ratio of the parameter's norm to its update's norm. torch.optim has neither."""

from __future__ import annotations

import jax
from jax.typing import DTypeLike

from gradtx import validation
from gradtx.core import GradientTransformation, ScalarOrSchedule
from gradtx.hyperparams.declarations import NON_NEGATIVE, STATE_DTYPE, WEIGHT_DECAY
from gradtx.optimizers._common import (
    BETA,
    EPS,
    LEARNING_RATE,
    optimizer,
    optimizer_chain,
    weight_decay_if,
)
from gradtx.transforms.adam_scalings import scale_by_adam
from gradtx.transforms.momentum import scale_by_momentum
from gradtx.transforms.scaling import scale_by_learning_rate
from gradtx.transforms.trust_ratio import scale_by_trust_ratio


@optimizer(
    learning_rate=LEARNING_RATE, b1=BETA, b2=BETA, eps=EPS, weight_decay=WEIGHT_DECAY,
    mu_dtype=STATE_DTYPE, nu_dtype=STATE_DTYPE,
)
def lamb(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: float | jax.Array = 0.9,
    b2: float | jax.Array = 0.999,
    eps: float | jax.Array = 1e-6,
    weight_decay: float | jax.Array = 0.0,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""LAMB (You et al., 2020, "Large Batch Optimization for Deep Learning: Training BERT in
    76 minutes", Algorithm 2): AdamW's direction, rescaled per leaf by a trust ratio.

    .. math::
        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2 \\
        r_t &= \frac{m_t / (1-\beta_1^t)}{\sqrt{v_t / (1-\beta_2^t)} + \epsilon}
            + \lambda\,\theta_{t-1} \\
        \theta_t &= \theta_{t-1} - \eta_t\, \frac{\|\theta_{t-1}\|}{\|r_t\|}\, r_t

    with norms over each whole leaf (a "layer"), and a ratio of 1 for a leaf where either norm
    is zero. The paper's scaling function :math:`\phi` is the identity here.

    Chain: ``scale_by_adam(β1, β2, ε) → [add_decayed_weights(λ)] → scale_by_trust_ratio() →
    scale_by_learning_rate(η)``.

    State dtypes: ``mu_dtype`` stores the first moment and ``nu_dtype`` the second in another
    dtype (``jnp.bfloat16`` halves the state); None keeps the parameters' dtype. Updates are
    computed in the wider dtype.

    State (named, for :func:`gradtx.tree_get`): ``count``, the one step count, and ``mu``,
    ``nu`` (Adam's moments).

    torch.optim: none.

    Differences from ``optax.lamb``: Optax has no default learning rate and an extra
    ``eps_root``; the update rule is otherwise the same.

    Example:
        >>> import jax.numpy as jnp
        >>> opt = lamb(learning_rate=0.1, weight_decay=0.01)
        >>> params = {"w": jnp.asarray([3.0, 4.0])}
        >>> updates, state = opt.update({"w": jnp.asarray([1.0, 0.0])}, opt.init(params), params)
        >>> float(jnp.linalg.norm(updates["w"]))  # eta * ||theta||
        0.5
    """
    return optimizer_chain(
        scale_by_adam(b1, b2, eps, mu_dtype=mu_dtype, nu_dtype=nu_dtype),
        weight_decay_if(weight_decay),
        scale_by_trust_ratio(),
        scale_by_learning_rate(learning_rate),
    )


@optimizer(
    learning_rate=LEARNING_RATE,
    momentum=NON_NEGATIVE.omitted_when_zero(),
    weight_decay=WEIGHT_DECAY,
    trust_coefficient=NON_NEGATIVE,
    eps=EPS,
    mu_dtype=STATE_DTYPE,
)
def lars(
    learning_rate: ScalarOrSchedule = 1e-3,
    momentum: float | jax.Array = 0.9,
    weight_decay: float | jax.Array = 0.0,
    trust_coefficient: float | jax.Array = 1e-3,
    eps: float | jax.Array = 0.0,
    mu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""LARS (You et al., 2017, "Large Batch Training of Convolutional Networks", Algorithm 1):
    momentum SGD whose step is rescaled per leaf by a trust ratio.

    .. math::
        \ell_t &= \frac{\kappa\, \|\theta_{t-1}\|}
                      {\|g_t\| + \lambda\|\theta_{t-1}\| + \epsilon} \quad
            (1 \text{ where either norm is } 0) \\
        b_t &= \mu\, b_{t-1} + \ell_t\, (g_t + \lambda\theta_{t-1}), \qquad b_0 = 0 \\
        \theta_t &= \theta_{t-1} - \eta_t\, b_t

    with norms over each whole leaf and trust coefficient :math:`\kappa` (the paper's
    :math:`\eta`), as in the paper's Algorithm 1, except that the learning rate multiplies after
    the momentum (as in torch's SGD), where the paper puts :math:`\eta_t` inside the buffer;
    the two agree for a constant learning rate.

    A Python zero ``momentum`` leaves the momentum (and its state) out. LARS is normally run
    with a large global learning rate (several units in the paper), since :math:`\kappa`
    shrinks each step to about :math:`\kappa\|\theta\|`; the defaults (:math:`\eta = 10^{-3}`,
    :math:`\kappa = 10^{-3}`, :math:`\mu = 0.9`) are conservative.

    Chain: ``scale_by_trust_ratio(trust_coefficient=κ, eps=ε, weight_decay=λ) →
    [scale_by_momentum(μ)] → scale_by_learning_rate(η)``. ``update`` needs ``params``.

    State dtype: ``mu_dtype`` stores the momentum buffer in another dtype (``jnp.bfloat16`` halves
    the state); None keeps the parameters' dtype. Updates are computed in the wider dtype.

    State (named, for :func:`gradtx.tree_get`): ``count``, the one step count, and
    ``momentum_buffer`` (only with momentum).

    torch.optim: none.

    Differences from ``optax.lars``: Optax has no default learning rate, scales by the learning
    rate before its momentum (equal for constant rates), and offers Nesterov momentum and masks
    for the decay and the trust ratio; here there are none.

    Example:
        >>> import jax.numpy as jnp
        >>> opt = lars(learning_rate=1.0, momentum=0.9, trust_coefficient=0.01)
        >>> params = {"w": jnp.asarray([3.0, 4.0])}
        >>> updates, state = opt.update({"w": jnp.asarray([0.0, 2.0])}, opt.init(params), params)
        >>> [round(u, 8) for u in updates["w"].tolist()]  # kappa ||theta|| along -g
        [-0.0, -0.05]
    """
    return optimizer_chain(
        scale_by_trust_ratio(
            trust_coefficient=trust_coefficient, eps=eps, weight_decay=weight_decay
        ),
        None
        if validation.is_static_zero(momentum)
        else scale_by_momentum(momentum, dtype=mu_dtype),
        scale_by_learning_rate(learning_rate),
    )

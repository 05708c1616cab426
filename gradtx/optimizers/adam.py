"""The Adam family: Adam, AMSGrad (``adam(amsgrad=True)``), AdamW and NAdam."""

from __future__ import annotations

import jax
from jax.typing import DTypeLike

from gradtx.core import GradientTransformation, ScalarOrSchedule, chain
from gradtx.hyperparams.declarations import NON_NEGATIVE, SWITCH
from gradtx.optimizers._common import (
    ADAM_LIKE,
    MAXIMIZE,
    negate_if,
    optimizer,
    optimizer_chain,
    weight_decay_if,
)
from gradtx.transforms.adam_scalings import scale_by_adam
from gradtx.transforms.moments import bias_correction, ema_of_squares
from gradtx.transforms.momentum import nadam_momentum
from gradtx.transforms.root_scaling import divide_by_root
from gradtx.transforms.scaling import scale_by_learning_rate


@optimizer(**ADAM_LIKE, amsgrad=SWITCH, maximize=MAXIMIZE)
def adam(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: float | jax.Array = 0.9,
    b2: float | jax.Array = 0.999,
    eps: float | jax.Array = 1e-8,
    weight_decay: float | jax.Array = 0.0,
    amsgrad: bool = False,
    maximize: bool = False,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Adam (Kingma & Ba, 2015), or AMSGrad (Reddi et al., 2018) with ``amsgrad=True``, equal
    step for step to ``torch.optim.Adam``.

    .. math::
        g_t &\leftarrow \pm\nabla_\theta f(\theta_{t-1}) + \lambda\,\theta_{t-1} \\
        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2 \\
        \hat m_t &= \frac{m_t}{1-\beta_1^t}, \qquad
        \hat v_t = \frac{v_t \ \text{or}\ \max_{i \le t} v_i \ \text{(AMSGrad)}}{1-\beta_2^t} \\
        \theta_t &= \theta_{t-1} - \eta\, \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}

    ``weight_decay`` here is L2 regularisation added to the gradient, as in torch's Adam; for
    decoupled decay use :func:`adamw`. ``b1, b2`` are torch's ``betas``.

    Chain: ``[scale(-1)] → [add_decayed_weights(λ)] → scale_by_adam(β1, β2, ε, amsgrad) →
    scale_by_learning_rate(η)``, where ``scale_by_adam`` is
    ``divide_by_root(chain(ema(β1), bias_correction(β1)),
    chain(ema_of_squares(β2), [running_max()], bias_correction(β2)), eps=ε)``.

    State dtypes: ``mu_dtype`` stores the first moment and ``nu_dtype`` the second in another
    dtype (``jnp.bfloat16`` halves the state); None keeps the parameters' dtype. Updates are
    computed in the wider dtype.

    State (named, for :func:`gradtx.tree_get`): ``count``, the one step count, and ``mu``
    (torch's ``exp_avg``), ``nu`` (``exp_avg_sq``), ``nu_max`` (``max_exp_avg_sq``, AMSGrad
    only).

    torch.optim: ``Adam(params, lr, betas=(b1, b2), eps, weight_decay, amsgrad, maximize)``.

    Differences from ``optax.adam``: Optax has no default learning rate, no ``weight_decay`` and
    no ``amsgrad`` argument; ``optax.amsgrad`` takes the running max of the *bias-corrected*
    second moment, torch and gradtx of the raw one (then bias-correct it).

    Example:
        >>> import gradtx as gx
        >>> opt = gx.adam(learning_rate=3e-4, b2=0.99, amsgrad=True)
    """
    return optimizer_chain(
        negate_if(maximize),
        weight_decay_if(weight_decay),
        scale_by_adam(b1, b2, eps, amsgrad, mu_dtype=mu_dtype, nu_dtype=nu_dtype),
        scale_by_learning_rate(learning_rate),
    )


@optimizer(**ADAM_LIKE, amsgrad=SWITCH, maximize=MAXIMIZE)
def adamw(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: float | jax.Array = 0.9,
    b2: float | jax.Array = 0.999,
    eps: float | jax.Array = 1e-8,
    weight_decay: float | jax.Array = 1e-2,
    amsgrad: bool = False,
    maximize: bool = False,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""AdamW (Loshchilov & Hutter, 2019): Adam with decoupled weight decay, equal step for
    step to ``torch.optim.AdamW``.

    .. math::
        g_t &\leftarrow \pm\nabla_\theta f(\theta_{t-1}) \\
        \hat m_t, \hat v_t &\ \text{as in Adam} \\
        \theta_t &= \theta_{t-1}(1 - \eta\lambda)
            - \eta\, \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}

    Chain: ``[scale(-1)] → scale_by_adam(β1, β2, ε, amsgrad) → [add_decayed_weights(λ)] →
    scale_by_learning_rate(η)``: decay after the moments and before the learning rate is
    decoupled decay.

    State dtypes: ``mu_dtype`` stores the first moment and ``nu_dtype`` the second in another
    dtype (``jnp.bfloat16`` halves the state); None keeps the parameters' dtype. Updates are
    computed in the wider dtype.

    State (named, for :func:`gradtx.tree_get`): ``count``, the one step count, and ``mu``
    (torch's ``exp_avg``), ``nu`` (``exp_avg_sq``), ``nu_max`` (``max_exp_avg_sq``, AMSGrad
    only).

    torch.optim: ``AdamW(params, lr, betas=(b1, b2), eps, weight_decay, amsgrad, maximize)``.

    Differences from ``optax.adamw``: Optax defaults to ``weight_decay=1e-4`` (torch: 1e-2) and
    has no default learning rate and no ``amsgrad``.

    Example:
        >>> import gradtx as gx
        >>> opt = gx.adamw(learning_rate=1e-3, weight_decay=0.05)
    """
    return optimizer_chain(
        negate_if(maximize),
        scale_by_adam(b1, b2, eps, amsgrad, mu_dtype=mu_dtype, nu_dtype=nu_dtype),
        weight_decay_if(weight_decay),
        scale_by_learning_rate(learning_rate),
    )


@optimizer(
    **ADAM_LIKE,
    momentum_decay=NON_NEGATIVE,
    decoupled_weight_decay=SWITCH,
    maximize=MAXIMIZE,
)
def nadam(
    learning_rate: ScalarOrSchedule = 2e-3,
    b1: float | jax.Array = 0.9,
    b2: float | jax.Array = 0.999,
    eps: float | jax.Array = 1e-8,
    weight_decay: float | jax.Array = 0.0,
    momentum_decay: float | jax.Array = 4e-3,
    decoupled_weight_decay: bool = False,
    maximize: bool = False,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""NAdam (Dozat, 2016): Adam with Nesterov momentum and a momentum schedule, equal step for
    step to ``torch.optim.NAdam``.

    .. math::
        g_t &\leftarrow \pm\nabla_\theta f(\theta_{t-1}) + [\lambda\,\theta_{t-1}] \\
        \mu_t &= \beta_1\bigl(1 - \tfrac12\, 0.96^{t\psi}\bigr), \qquad
        \Pi_t = \textstyle\prod_{i \le t} \mu_i \\
        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2 \\
        \theta_t &= \theta_{t-1}[(1-\eta\lambda)] - \eta\,
            \frac{\frac{1-\mu_t}{1-\Pi_t} g_t + \frac{\mu_{t+1}}{1-\Pi_{t}\mu_{t+1}} m_t}
                 {\sqrt{v_t / (1-\beta_2^t)} + \epsilon}

    with the first bracket for L2 decay and the second for ``decoupled_weight_decay=True``
    (NAdamW). :math:`\psi` is ``momentum_decay``.

    Chain: ``[scale(-1)] → [add_decayed_weights(λ)] → divide_by_root(nadam_momentum(β1, ψ),
    chain(ema_of_squares(β2), bias_correction(β2)), eps=ε) → [add_decayed_weights(λ)] →
    scale_by_learning_rate(η)``, with decay on one side or the other.

    State dtypes: ``mu_dtype`` stores the first moment and ``nu_dtype`` the second in another
    dtype (``jnp.bfloat16`` halves the state); None keeps the parameters' dtype. Updates are
    computed in the wider dtype.

    State (named, for :func:`gradtx.tree_get`): ``count``, the one step count, and ``mu``
    (torch's ``exp_avg``), ``mu_product``, ``nu`` (``exp_avg_sq``).

    torch.optim: ``NAdam(params, lr, betas=(b1, b2), eps, weight_decay, momentum_decay,
    decoupled_weight_decay, maximize)``.

    Differences from ``optax.nadam``: Optax's NAdam is Adam with a Nesterov look-ahead and no
    momentum schedule (:math:`\psi = 0` in spirit, with a different bias correction); its
    trajectories differ from torch's and gradtx's.

    Example:
        >>> import gradtx as gx
        >>> opt = gx.nadam(weight_decay=0.01, decoupled_weight_decay=True)
    """
    decay = weight_decay_if(weight_decay)
    return optimizer_chain(
        negate_if(maximize),
        None if decoupled_weight_decay else decay,
        divide_by_root(
            nadam_momentum(b1, momentum_decay, dtype=mu_dtype),
            chain(ema_of_squares(b2, dtype=nu_dtype), bias_correction(b2)),
            eps=eps,
        ),
        decay if decoupled_weight_decay else None,
        scale_by_learning_rate(learning_rate),
    )

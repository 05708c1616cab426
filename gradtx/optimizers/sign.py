"""Sign-based optimizers: Lion and signSGD / Signum. torch.optim has neither."""

from __future__ import annotations

import jax
from jax.typing import DTypeLike

from gradtx import validation
from gradtx.core import GradientTransformation, ScalarOrSchedule
from gradtx.hyperparams.declarations import STATE_DTYPE, UNIT_INTERVAL, WEIGHT_DECAY
from gradtx.optimizers._common import (
    BETA,
    LEARNING_RATE,
    optimizer,
    optimizer_chain,
    weight_decay_if,
)
from gradtx.transforms.moments import ema
from gradtx.transforms.scaling import scale_by_learning_rate
from gradtx.transforms.sign import scale_by_lion, scale_by_sign


@optimizer(
    learning_rate=LEARNING_RATE, b1=BETA, b2=BETA, weight_decay=WEIGHT_DECAY,
    mu_dtype=STATE_DTYPE,
)
def lion(
    learning_rate: ScalarOrSchedule = 1e-4,
    b1: float | jax.Array = 0.9,
    b2: float | jax.Array = 0.99,
    weight_decay: float | jax.Array = 0.0,
    mu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Lion, EvoLved Sign Momentum (Chen et al., 2023, "Symbolic Discovery of Optimization
    Algorithms", Algorithm 2).

    .. math::
        c_t &= \beta_1 m_{t-1} + (1-\beta_1)\, g_t \\
        \theta_t &= \theta_{t-1} - \eta_t \bigl(\operatorname{sign}(c_t)
            + \lambda\,\theta_{t-1}\bigr) \\
        m_t &= \beta_2 m_{t-1} + (1-\beta_2)\, g_t, \qquad m_0 = 0

    Every entry moves by :math:`\eta_t` per step (plus decay), so Lion wants a learning rate
    3-10x smaller than AdamW's, and correspondingly a larger decoupled weight decay
    :math:`\lambda` (the paper's advice). Defaults are the paper's :math:`\beta_1 = 0.9`,
    :math:`\beta_2 = 0.99` and :math:`\eta = 10^{-4}`; decay is off by default.

    Chain: ``scale_by_lion(β1, β2) → [add_decayed_weights(λ)] → scale_by_learning_rate(η)``.

    State dtype: ``mu_dtype`` stores the momentum in another dtype (``jnp.bfloat16`` halves
    the state); None keeps the parameters' dtype. Updates are computed in the wider dtype.

    State (named, for :func:`gradtx.tree_get`): ``count``, the one step count, and ``mu`` (the
    momentum).

    torch.optim: none. Reference: ``lion_pytorch.Lion`` (lion-pytorch 0.2.5, the paper's
    authors' PyTorch port), equal step for step (float64, rtol 1e-9, every argument); its
    ``decoupled_weight_decay=True`` is ``weight_decay=wd / lr_0`` here. A complex parameter is
    stepped as its real and imaginary parts (lion-pytorch takes ``sgn`` of the complex entry).

    Differences from ``optax.lion``: Optax has no default learning rate, defaults to
    ``weight_decay=1e-3`` (here 0). The update rule is the same.

    Example:
        >>> import jax.numpy as jnp
        >>> opt = lion(learning_rate=3e-4, weight_decay=0.1)
        >>> params = {"w": jnp.ones(3)}
        >>> updates, state = opt.update({"w": jnp.asarray([1.0, -2.0, 0.0])},
        ...                             opt.init(params), params)
        >>> [round(u, 8) for u in updates["w"].tolist()]  # -eta (sign(g) + lambda theta)
        [-0.00033, 0.00027, -3e-05]
    """
    return optimizer_chain(
        scale_by_lion(b1, b2, dtype=mu_dtype),
        weight_decay_if(weight_decay),
        scale_by_learning_rate(learning_rate),
    )


@optimizer(
    learning_rate=LEARNING_RATE,
    momentum=UNIT_INTERVAL.omitted_when_zero(),
    mu_dtype=STATE_DTYPE,
)
def sign_sgd(
    learning_rate: ScalarOrSchedule = 1e-3,
    momentum: float | jax.Array = 0.0,
    mu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""signSGD, or Signum with ``momentum > 0`` (Bernstein et al., 2018, "signSGD: Compressed
    Optimisation for Non-Convex Problems", Algorithms 1 and 3).

    .. math::
        m_t &= \beta\, m_{t-1} + (1-\beta)\, g_t, \qquad m_0 = 0 \\
        \theta_t &= \theta_{t-1} - \eta_t \operatorname{sign}(m_t)

    With :math:`\beta = 0` this is :math:`\theta_t = \theta_{t-1} - \eta_t
    \operatorname{sign}(g_t)`, and a Python zero leaves the momentum (and its state) out.
    :math:`\operatorname{sign}(0) = 0`. The moving average is not bias-corrected: the sign does
    not see a positive scale factor.

    Chain: ``[ema(β)] → scale_by_sign() → scale_by_learning_rate(η)``.

    State dtype: ``mu_dtype`` stores the momentum in another dtype (``jnp.bfloat16`` halves
    the state); None keeps the parameters' dtype. Updates are computed in the wider dtype.

    State (named, for :func:`gradtx.tree_get`): ``count``, the one step count, and ``mu`` (the
    momentum; only when it is not a Python 0).

    torch.optim: none.

    Differences from Optax: ``optax.sign_sgd`` has no momentum and ``optax.signum`` defaults to
    ``beta=0.9``; here one function covers both, with momentum off by default. Neither Optax
    function has a default learning rate.

    Example:
        >>> import jax.numpy as jnp
        >>> opt = sign_sgd(learning_rate=0.01, momentum=0.9)
        >>> params = {"w": jnp.ones(3)}
        >>> updates, state = opt.update({"w": jnp.asarray([0.5, -2.0, 0.0])},
        ...                             opt.init(params), params)
        >>> [round(u, 8) for u in updates["w"].tolist()]
        [-0.01, 0.01, -0.0]
    """
    return optimizer_chain(
        None if validation.is_static_zero(momentum) else ema(momentum, dtype=mu_dtype),
        scale_by_sign(),
        scale_by_learning_rate(learning_rate),
    )

r"""Optimizers with a Polyak step size, which take the loss of each step as
``update(grads, state, params, value=loss)``: SGD with the stochastic Polyak step, MoMo and
MoMo-Adam (their transforms live in :mod:`gradtx.transforms.polyak`).

A missing ``value=`` raises a ``ValueError`` naming the transform that needs it."""

from __future__ import annotations

import dataclasses

import jax

from gradtx.core import GradientTransformation, ScalarOrSchedule
from gradtx.hyperparams.declarations import NON_NEGATIVE, SWITCH, FixedArgument, Hyperparam
from gradtx.optimizers._common import BETA, EPS, LEARNING_RATE, optimizer, optimizer_chain
from gradtx.transforms.polyak import (
    check_variant,
    scale_by_momo,
    scale_by_momo_adam,
    scale_by_polyak,
)
from gradtx.transforms.scaling import scale_by_learning_rate


@dataclasses.dataclass(frozen=True)
class _AnyNumber(Hyperparam):
    """A number with no bounds (NaN is refused), for the docs' argument tables."""

    def describe(self) -> str:
        return "any number, array or schedule"


# A bound of the loss: any real number.
LOSS_BOUND = _AnyNumber()

VARIANT = FixedArgument(
    checker=check_variant, text='"sps" or "sps+"', refused=("sps-", "SPS"),
)


@optimizer(
    max_learning_rate=NON_NEGATIVE, scaling=LEARNING_RATE, f_min=LOSS_BOUND, eps=EPS,
    variant=VARIANT,
)
def polyak_sgd(
    max_learning_rate: float | jax.Array = 1.0,
    scaling: ScalarOrSchedule = 1.0,
    f_min: float | jax.Array = 0.0,
    eps: float | jax.Array = 0.0,
    variant: str = "sps",
) -> GradientTransformation:
    r"""SGD with the stochastic Polyak step size (SPS; Loizou et al., 2021, "Stochastic
    Polyak Step-size for SGD"), capped at ``max_learning_rate``; with ``variant="sps+"``
    (Garrigos et al., 2023) only a loss above :math:`f^\star` moves the parameters. It needs
    the loss: ``update(grads, state, params, value=loss)``.

    With :math:`s_t` = ``scaling`` (a number or a schedule) and the loss :math:`f_t`:

    .. math::
        \gamma_t &= \min\left(\frac{f_t - f^\star}{s_t^2 \lVert g_t\rVert^2 + \epsilon},\
            \gamma_{\max}\right) \quad \bigl((f_t - f^\star)_+ \text{ for sps+}\bigr) \\
        \theta_t &= \theta_{t-1} - \gamma_t\, s_t\, g_t

    and no step (:math:`\gamma_t = 0`) when :math:`s_t^2 \lVert g_t\rVert^2 + \epsilon` is at
    most the float64 machine epsilon. :math:`\lVert g_t\rVert` is the norm of all the leaves
    together. The Polyak step is taken on the scaled gradient :math:`s_t g_t`, as in Optax's
    chain: for :math:`\epsilon = 0` an uncapped step is *divided* by :math:`s_t`,
    :math:`(f_t - f^\star) g_t / (s_t\lVert g_t\rVert^2)`, and a capped one multiplied,
    :math:`\gamma_{\max} s_t g_t` (Optax's docstring formula, :math:`s_t \min(\ldots)`,
    holds for :math:`s_t = 1`).

    Chain: ``scale_by_learning_rate(s) → scale_by_polyak(f*, γ_max, ε, variant)``.

    Args:
        max_learning_rate: :math:`\gamma_{\max} \ge 0`, the largest step.
        scaling: :math:`s_t \ge 0`, a number or a schedule ``count -> value``.
        f_min: :math:`f^\star`, a lower bound of the loss (0 for a model that can fit its
            data exactly); too high a guess stalls, too low overshoots.
        eps: :math:`\epsilon \ge 0`, added to the squared norm.
        variant: ``"sps"``, or ``"sps+"`` for the positive part of :math:`f_t - f^\star`.

    State (named, for :func:`gradtx.tree_get`): ``count``, the one step count (the Polyak
    step keeps no state).

    torch.optim: none. Equal step for step to ``optax.polyak_sgd`` (Optax 0.2.8), the same
    arguments and defaults; no difference in the numbers.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from gradtx.optimizers.polyak import polyak_sgd
        >>> opt = polyak_sgd()
        >>> params = jnp.array([1.0, 2.0, 3.0])
        >>> loss, grads = jax.value_and_grad(lambda x: jnp.sum(x**2))(params)
        >>> updates, state = opt.update(grads, opt.init(params), params, value=loss)
        >>> updates.tolist()  # -f g / |g|^2 = -14 (2x) / 56 = -x / 2
        [-0.5, -1.0, -1.5]
    """
    return optimizer_chain(
        scale_by_learning_rate(scaling),
        scale_by_polyak(f_min, max_learning_rate, eps, variant),
    )


@optimizer(
    learning_rate=LEARNING_RATE, beta=BETA, lower_bound=LOSS_BOUND, weight_decay=NON_NEGATIVE,
    adapt_lower_bound=SWITCH,
)
def momo(
    learning_rate: ScalarOrSchedule = 1.0,
    beta: float | jax.Array = 0.9,
    lower_bound: float | jax.Array = 0.0,
    weight_decay: float | jax.Array = 0.0,
    adapt_lower_bound: bool = False,
) -> GradientTransformation:
    r"""MoMo (Schaipp et al., 2023, "MoMo: Momentum Models for Adaptive Learning Rates"): SGD
    with momentum whose step size is the lesser of ``learning_rate`` and a Polyak step of a
    model of the loss built from moving averages. It needs the loss:
    ``update(grads, state, params, value=loss)``.

    With the loss :math:`f_t`, :math:`\rho = 1 + \alpha_t\lambda`, :math:`\beta_1 = 0` and
    :math:`\beta_t = \beta` afterwards (the first step takes the first loss and gradient as
    they are):

    .. math::
        \bar f_t &= \beta_t \bar f_{t-1} + (1-\beta_t) f_t, \quad
        m_t = \beta_t m_{t-1} + (1-\beta_t) g_t, \quad
        \gamma_t = \beta_t \gamma_{t-1} + (1-\beta_t) \langle g_t, \theta_{t-1}\rangle \\
        \tau_t &= \min\left(\alpha_t,\ \frac{\bigl(\rho(\bar f_t - f_* - \gamma_t) +
            \langle m_t, \theta_{t-1}\rangle\bigr)_+}{\lVert m_t\rVert^2}\right) \\
        \theta_t &= \theta_{t-1} - \frac{\alpha_t\lambda}{\rho}\,\theta_{t-1} - \tau_t m_t

    with no step along :math:`m_t` when :math:`\lVert m_t\rVert^2` is at most the float64
    machine epsilon. :math:`f_*` is ``lower_bound``; with ``adapt_lower_bound`` it is an
    estimate that starts there and is updated at every step (never below ``lower_bound``),
    as :func:`gradtx.scale_by_momo` details.

    Chain: ``scale_by_momo(α, β, f_*, λ, adapt_lower_bound)``, one transform: the step size
    needs the average of the gradients, their inner products with the parameters and the
    losses together.

    Args:
        learning_rate: :math:`\alpha_t \ge 0`, the largest step size (a number or a schedule
            ``count -> value``); MoMo is meant to take a large one, 1 by default.
        beta: :math:`\beta \in [0, 1)`, the momentum of the averages.
        lower_bound: :math:`f_*`, a lower bound of the loss (0 for most losses).
        weight_decay: :math:`\lambda \ge 0`, decoupled weight decay, folded into the step as
            in the paper's AdamW-style variant.
        adapt_lower_bound: estimate the lower bound on the fly (when none is known).

    State (named, for :func:`gradtx.tree_get`): ``count``, the one step count, and Optax's
    ``MomoState`` fields ``exp_avg`` (:math:`m`), ``barf`` (:math:`\bar f`), ``gamma``
    (:math:`\gamma`), ``lb`` (:math:`f_*`); the scalars are kept in the narrowest dtype of the
    parameters.

    torch.optim: none. Equal step for step to ``optax.contrib.momo`` (Optax 0.2.8), the same
    arguments and defaults; no difference in the numbers.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from gradtx.optimizers.polyak import momo
        >>> opt = momo()
        >>> params = jnp.array([1.0, 2.0, 3.0])
        >>> loss, grads = jax.value_and_grad(lambda x: jnp.sum(x**2))(params)
        >>> updates, state = opt.update(grads, opt.init(params), params, value=loss)
        >>> updates.tolist()  # step 1 is SPS: -f g / |g|^2 = -x / 2
        [-0.5, -1.0, -1.5]
    """
    return optimizer_chain(
        scale_by_momo(learning_rate, beta, lower_bound, weight_decay, adapt_lower_bound)
    )


@optimizer(
    learning_rate=LEARNING_RATE, b1=BETA, b2=BETA, eps=EPS, lower_bound=LOSS_BOUND,
    weight_decay=NON_NEGATIVE, adapt_lower_bound=SWITCH,
)
def momo_adam(
    learning_rate: ScalarOrSchedule = 1e-2,
    b1: float | jax.Array = 0.9,
    b2: float | jax.Array = 0.999,
    eps: float | jax.Array = 1e-8,
    lower_bound: float | jax.Array = 0.0,
    weight_decay: float | jax.Array = 0.0,
    adapt_lower_bound: bool = False,
) -> GradientTransformation:
    r"""MoMo-Adam (Schaipp et al., 2023, Algorithm 3): Adam(W) whose step size is the lesser
    of ``learning_rate`` and a Polyak step of the averaged model, measured in Adam's metric.
    It needs the loss: ``update(grads, state, params, value=loss)``.

    With the loss :math:`f_t`, :math:`\rho = 1 + \alpha_t\lambda`, :math:`c_1 = 1-\beta_1^t`,
    :math:`c_2 = 1-\beta_2^t`:

    .. math::
        \bar f_t &= \beta_1 \bar f_{t-1} + (1-\beta_1) f_t, \quad
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2 \\
        \gamma_t &= \beta_1 \gamma_{t-1} + (1-\beta_1) \langle g_t, \theta_{t-1}\rangle,
        \qquad D_t = \epsilon + \sqrt{v_t / c_2} \\
        \tau_t &= \min\left(\frac{\alpha_t}{c_1},\
            \frac{\bigl(\rho(\bar f_t - c_1 f_* - \gamma_t) +
            \langle m_t, \theta_{t-1}\rangle\bigr)_+}{\langle m_t, m_t / D_t\rangle}\right) \\
        \theta_t &= \theta_{t-1} - \frac{\alpha_t\lambda}{\rho}\,\theta_{t-1}
            - \tau_t \frac{m_t}{D_t}

    with no step along :math:`m_t / D_t` when :math:`\langle m_t, m_t/D_t\rangle` is at most
    the float64 machine epsilon; ``adapt_lower_bound`` estimates :math:`f_*` on the fly as
    :func:`gradtx.scale_by_momo_adam` details.

    Chain: ``scale_by_momo_adam(α, β1, β2, ε, f_*, λ, adapt_lower_bound)``, one transform.

    Args:
        learning_rate: :math:`\alpha_t \ge 0`, the largest step size (a number or a schedule
            ``count -> value``).
        b1: :math:`\beta_1 \in [0, 1)`, the decay of the first moment and of the averaged
            loss and inner product.
        b2: :math:`\beta_2 \in [0, 1)`, the decay of the second moment.
        eps: :math:`\epsilon \ge 0`, added to the root of the second moment.
        lower_bound: :math:`f_*`, a lower bound of the loss (0 for most losses).
        weight_decay: :math:`\lambda \ge 0`, decoupled weight decay as in AdamW.
        adapt_lower_bound: estimate the lower bound on the fly (when none is known).

    State (named, for :func:`gradtx.tree_get`): ``count``, the one step count, and Optax's
    ``MomoAdamState`` fields ``exp_avg`` (:math:`m`), ``exp_avg_sq`` (:math:`v`), ``barf``,
    ``gamma``, ``lb``.

    torch.optim: none. Equal step for step to ``optax.contrib.momo_adam`` (Optax 0.2.8), the
    same arguments and defaults; no difference in the numbers.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from gradtx.optimizers.polyak import momo_adam
        >>> opt = momo_adam(learning_rate=0.1)
        >>> params = jnp.array([1.0, 2.0, 3.0])
        >>> loss, grads = jax.value_and_grad(lambda x: jnp.sum(x**2))(params)
        >>> updates, state = opt.update(grads, opt.init(params), params, value=loss)
        >>> [round(u, 6) for u in updates.tolist()]  # capped: -α sign(g), as Adam's first step
        [-0.1, -0.1, -0.1]
    """
    return optimizer_chain(
        scale_by_momo_adam(
            learning_rate, b1, b2, eps, lower_bound, weight_decay, adapt_lower_bound
        )
    )

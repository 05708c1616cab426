r"""Optimizers for games (min-max problems): optimistic gradient descent and optimistic Adam
(their transforms live in :mod:`gradtx.transforms.optimistic`)."""

from __future__ import annotations

import jax
from jax.typing import DTypeLike

from gradtx.core import GradientTransformation, ScalarOrSchedule
from gradtx.hyperparams.declarations import NON_NEGATIVE, STATE_DTYPE, SWITCH
from gradtx.optimizers._common import BETA, EPS, LEARNING_RATE, optimizer, optimizer_chain
from gradtx.transforms.adam_scalings import scale_by_adam
from gradtx.transforms.optimistic import scale_by_optimistic_gradient
from gradtx.transforms.scaling import scale, scale_by_learning_rate

_ADAM = dict(b1=BETA, b2=BETA, eps=EPS, eps_root=NON_NEGATIVE, mu_dtype=STATE_DTYPE,
             nesterov=SWITCH)


@optimizer(learning_rate=LEARNING_RATE, alpha=NON_NEGATIVE, beta=NON_NEGATIVE)
def optimistic_gradient_descent(
    learning_rate: ScalarOrSchedule,
    alpha: float | jax.Array = 1.0,
    beta: float | jax.Array = 1.0,
) -> GradientTransformation:
    r"""Optimistic gradient descent (Popov, 1980; Mokhtari et al., 2020, "A Unified Analysis
    of Extra-gradient and Optimistic Gradient Methods for Saddle Point Problems"): gradient
    descent that extrapolates with the previous gradient, an approximation of the
    extragradient method at one gradient per step. On min-max games, where gradient descent
    circles or diverges, its last iterate converges.

    .. math::
        u_t &= (\alpha + \beta)\, g_t - \beta\, g_{t-1}, \qquad g_0 = g_1 \\
        \theta_t &= \theta_{t-1} - \eta_t u_t

    so the first step is :math:`-\eta_1\alpha g_1`. For a game, pass each player's gradient
    of its own loss (for :math:`\min_x\max_y f`: :math:`\nabla_x f` and :math:`-\nabla_y f`).

    Chain: ``scale_by_optimistic_gradient(α, β) → scale_by_learning_rate(η)``.

    Args:
        learning_rate: :math:`\eta_t \ge 0`, a number or a schedule ``count -> value``
            (required, as in Optax).
        alpha: :math:`\alpha \ge 0`, the weight of the current gradient.
        beta: :math:`\beta \ge 0`, the weight of the extrapolation (a negative momentum).

    State (named, for :func:`gradtx.tree_get`): ``count``, the one step count, and
    ``previous_gradient`` (Optax's; its ``is_initial_step`` is ``count == 0``).

    torch.optim: none. Equal step for step to ``optax.optimistic_gradient_descent``
    (Optax 0.2.8), the same arguments and defaults. ``alpha`` and ``beta`` may also be
    schedules here (Optax's signature allows them but its update fails on one).

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.optimizers.optimistic import optimistic_gradient_descent
        >>> opt = optimistic_gradient_descent(learning_rate=0.1)
        >>> params = {"w": jnp.array([1.0, -2.0])}
        >>> state = opt.init(params)
        >>> updates, state = opt.update({"w": jnp.array([1.0, 1.0])}, state, params)
        >>> [round(float(u), 6) for u in updates["w"]]  # the first step is -η α g
        [-0.1, -0.1]
        >>> updates, state = opt.update({"w": jnp.array([3.0, 0.0])}, state, params)
        >>> [round(float(u), 6) for u in updates["w"]]  # -η (2 g_2 - g_1)
        [-0.5, 0.1]
    """
    return optimizer_chain(
        scale_by_optimistic_gradient(alpha, beta),
        scale_by_learning_rate(learning_rate),
    )


@optimizer(learning_rate=LEARNING_RATE, optimism=NON_NEGATIVE.or_none(), **_ADAM)
def optimistic_adam(
    learning_rate: float | jax.Array,
    optimism: float | jax.Array | None = None,
    b1: float | jax.Array = 0.9,
    b2: float | jax.Array = 0.999,
    eps: float | jax.Array = 1e-08,
    eps_root: float | jax.Array = 0.0,
    mu_dtype: DTypeLike | None = None,
    *,
    nesterov: bool = True,
) -> GradientTransformation:
    r"""Optimistic Adam (Daskalakis et al., 2018, "Training GANs with Optimism"): Adam's
    normalised step, extrapolated with the previous one, with the learning rate as the
    weight of the current step and the optimism :math:`o` (the learning rate by default, as
    in the paper) as the weight of the extrapolation.

    .. math::
        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2 \\
        r_t &= \frac{\hat m_t}{\sqrt{v_t/(1-\beta_2^t) + \epsilon_{\text{root}}} + \epsilon},
        \qquad r_0 = r_1 \\
        \theta_t &= \theta_{t-1} - \eta\, r_t - o\,(r_t - r_{t-1})

    where :math:`\hat m_t = m_t/(1-\beta_1^t)`, or with ``nesterov`` (the default) Dozat's
    look-ahead :math:`\beta_1 m_t/(1-\beta_1^{t+1}) + (1-\beta_1) g_t/(1-\beta_1^t)`.

    Chain: ``scale_by_adam(β1, β2, ε, eps_root=ε_root, nesterov=nesterov) →
    scale_by_optimistic_gradient(η, o) → scale(-1)``.

    Args:
        learning_rate: :math:`\eta \ge 0` (required, as in Optax).
        optimism: :math:`o \ge 0`; None: :math:`\eta`.
        b1: :math:`\beta_1 \in [0, 1)`, the decay of the first moment.
        b2: :math:`\beta_2 \in [0, 1)`, the decay of the second moment.
        eps: :math:`\epsilon \ge 0`, added to the root.
        eps_root: :math:`\epsilon_{\text{root}} \ge 0`, added under the root.
        mu_dtype: the dtype the first moment is stored in; None: the parameters'.
        nesterov: Dozat's Nesterov look-ahead in the first moment.

    State (named, for :func:`gradtx.tree_get`): ``count``, the one step count, ``mu``,
    ``nu`` (Optax's ``ScaleByAdamState``) and ``previous_gradient`` (:math:`r_{t-1}`).

    torch.optim: none. Equal step for step to ``optax.optimistic_adam`` (Optax 0.2.8), the
    same arguments and defaults. Optax deprecates it for :func:`optimistic_adam_v2` (and
    warns); gradtx does not warn. Optax refuses a schedule as ``learning_rate``; gradtx
    evaluates it (for both roles when ``optimism`` is None).

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.optimizers.optimistic import optimistic_adam
        >>> opt = optimistic_adam(learning_rate=0.1, nesterov=False)
        >>> params = {"w": jnp.array([1.0, -2.0])}
        >>> updates, state = opt.update({"w": jnp.array([0.5, -3.0])}, opt.init(params), params)
        >>> [round(float(u), 6) for u in updates["w"]]  # the first step is Adam's, -η sign(g)
        [-0.1, 0.1]
    """
    return optimizer_chain(
        scale_by_adam(b1, b2, eps, eps_root=eps_root, nesterov=nesterov, mu_dtype=mu_dtype),
        scale_by_optimistic_gradient(learning_rate, learning_rate if optimism is None
                                     else optimism),
        scale(-1.0),
    )


@optimizer(learning_rate=LEARNING_RATE, alpha=NON_NEGATIVE, beta=NON_NEGATIVE, **_ADAM)
def optimistic_adam_v2(
    learning_rate: ScalarOrSchedule,
    *,
    alpha: float | jax.Array = 1.0,
    beta: float | jax.Array = 1.0,
    b1: float | jax.Array = 0.9,
    b2: float | jax.Array = 0.999,
    eps: float | jax.Array = 1e-08,
    eps_root: float | jax.Array = 0.0,
    mu_dtype: DTypeLike | None = None,
    nesterov: bool = True,
) -> GradientTransformation:
    r"""Optimistic Adam (Daskalakis et al., 2018) with the extrapolation's weights
    :math:`\alpha, \beta` apart from the learning rate: Optax's reworked interface to
    :func:`optimistic_adam` (the same algorithm).

    .. math::
        r_t &= \frac{\hat m_t}{\sqrt{v_t/(1-\beta_2^t) + \epsilon_{\text{root}}} + \epsilon},
        \qquad r_0 = r_1 \\
        \theta_t &= \theta_{t-1} - \eta_t\bigl((\alpha + \beta)\, r_t - \beta\, r_{t-1}\bigr)

    with Adam's moments :math:`m_t, v_t` and :math:`\hat m_t` as in :func:`optimistic_adam`
    (Dozat's Nesterov look-ahead by default). ``optimistic_adam(η, o)`` is
    ``optimistic_adam_v2(1, alpha=η, beta=o)``.

    Chain: ``scale_by_adam(β1, β2, ε, eps_root=ε_root, nesterov=nesterov) →
    scale_by_optimistic_gradient(α, β) → scale_by_learning_rate(η)``.

    Args:
        learning_rate: :math:`\eta_t \ge 0`, a number or a schedule ``count -> value``
            (required, as in Optax).
        alpha: :math:`\alpha \ge 0`, the weight of the current normalised step.
        beta: :math:`\beta \ge 0`, the weight of the extrapolation.
        b1: :math:`\beta_1 \in [0, 1)`, the decay of the first moment.
        b2: :math:`\beta_2 \in [0, 1)`, the decay of the second moment.
        eps: :math:`\epsilon \ge 0`, added to the root.
        eps_root: :math:`\epsilon_{\text{root}} \ge 0`, added under the root.
        mu_dtype: the dtype the first moment is stored in; None: the parameters'.
        nesterov: Dozat's Nesterov look-ahead in the first moment.

    State (named, for :func:`gradtx.tree_get`): ``count``, the one step count, ``mu``,
    ``nu`` (Optax's ``ScaleByAdamState``) and ``previous_gradient`` (:math:`r_{t-1}`).

    torch.optim: none. Equal step for step to ``optax.optimistic_adam_v2`` (Optax 0.2.8), the
    same arguments and defaults; ``alpha`` and ``beta`` may also be schedules here.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.optimizers.optimistic import optimistic_adam_v2
        >>> opt = optimistic_adam_v2(0.1, nesterov=False)
        >>> params = {"w": jnp.array([1.0, -2.0])}
        >>> updates, state = opt.update({"w": jnp.array([0.5, -3.0])}, opt.init(params), params)
        >>> [round(float(u), 6) for u in updates["w"]]  # the first step is -η α sign(g)
        [-0.1, 0.1]
    """
    return optimizer_chain(
        scale_by_adam(b1, b2, eps, eps_root=eps_root, nesterov=nesterov, mu_dtype=mu_dtype),
        scale_by_optimistic_gradient(alpha, beta),
        scale_by_learning_rate(learning_rate),
    )

"""Rprop, resilient backpropagation: per-entry step sizes driven by the sign of the gradient."""

from __future__ import annotations

import jax

from gradtx.core import GradientTransformation, ScalarOrSchedule
from gradtx.hyperparams.declarations import NON_NEGATIVE, Hyperparam
from gradtx.optimizers._common import (
    LEARNING_RATE,
    MAXIMIZE,
    negate_if,
    optimizer,
    optimizer_chain,
)
from gradtx.transforms.rprop import scale_by_rprop
from gradtx.transforms.scaling import scale

# torch's check: 0 < eta_minus < 1 < eta_plus.
ETA_MINUS = Hyperparam(low=0.0, high=1.0, low_closed=False, high_closed=False)
ETA_PLUS = Hyperparam(low=1.0, low_closed=False)


@optimizer(
    learning_rate=LEARNING_RATE,
    eta_minus=ETA_MINUS,
    eta_plus=ETA_PLUS,
    min_step_size=NON_NEGATIVE,
    max_step_size=NON_NEGATIVE,
    maximize=MAXIMIZE,
)
def rprop(
    learning_rate: ScalarOrSchedule = 1e-2,
    eta_minus: float | jax.Array = 0.5,
    eta_plus: float | jax.Array = 1.2,
    min_step_size: float | jax.Array = 1e-6,
    max_step_size: float | jax.Array = 50.0,
    maximize: bool = False,
) -> GradientTransformation:
    r"""Rprop, resilient backpropagation (Riedmiller & Braun, 1993), equal step for step to
    ``torch.optim.Rprop``.

    Each entry has its own step size :math:`s`, starting at the learning rate :math:`\eta`;
    only the sign of the gradient moves the parameter:

    .. math::
        g_t &\leftarrow \pm\nabla_\theta f(\theta_{t-1}), \qquad
            p_t = g_t\, \tilde g_{t-1}, \qquad \tilde g_0 = 0, \qquad s_0 = \eta \\
        s_t &= \min\bigl(\max(f_t\, s_{t-1},\ s_{\min}),\ s_{\max}\bigr), \qquad
            f_t = \eta_+ \ (p_t > 0),\ \ \eta_- \ (p_t < 0),\ \ 1 \ (p_t = 0) \\
        \tilde g_t &= 0 \ (p_t < 0), \ \ g_t \ \text{otherwise} \\
        \theta_t &= \theta_{t-1} - s_t \operatorname{sign}(\tilde g_t)

    An entry whose gradient changed sign shrinks its step and does not move at that step. The
    learning rate is the initial step size only: it is not multiplied into the step, and
    changing it after the first step (``set_hyperparam``, a schedule) has no effect, as in
    torch. The step sizes are clipped at every step, the first included.

    Chain: ``[scale(-1)] → scale_by_rprop(η, η-, η+, s_min, s_max) → scale(-1)``.

    Args:
        learning_rate: :math:`\eta \ge 0`, the initial step size.
        eta_minus: :math:`\eta_- \in (0, 1)`, the factor of a step size whose gradient changed
            sign.
        eta_plus: :math:`\eta_+ > 1`, the factor of a step size whose gradient kept its sign.
        min_step_size: :math:`s_{\min} \ge 0`.
        max_step_size: :math:`s_{\max} \ge 0`. As in torch, :math:`s_{\min} \le s_{\max}`
            is not required: with :math:`s_{\min} > s_{\max}` every step size is
            :math:`s_{\max}`.
        maximize: maximise the objective instead of minimising it.

    State (named, for :func:`gradtx.tree_get`): ``count``, the one step count (torch's
    ``step``), ``prev`` (torch's ``prev``: the last gradient as used, zero where it changed
    sign) and ``step_size`` (torch's ``step_size``).

    torch.optim: ``Rprop(params, lr, etas=(eta_minus, eta_plus),
    step_sizes=(min_step_size, max_step_size), maximize)``. torch checks only
    :math:`\eta \ge 0` and :math:`0 < \eta_- < 1 < \eta_+`; gradtx also refuses negative step
    size bounds. A NaN gradient differs: torch's ``sign`` of NaN is 0 (the parameter stays in
    place for that step), here the NaN reaches the parameter, as in gradtx's other optimizers.

    Differences from ``optax.rprop``: Optax has no default learning rate and no ``maximize``.
    Where :math:`p_t = 0` (the first step, after a sign change, a zero gradient) Optax keeps
    the step size unclipped, torch and gradtx clip it, so with a learning rate outside
    :math:`[s_{\min}, s_{\max}]` the trajectories differ from the first step. Optax stores the
    previous signed step instead of the previous gradient (the same signs while step sizes
    are positive).

    Example:
        >>> import gradtx as gx, jax.numpy as jnp
        >>> opt = rprop(learning_rate=0.1)
        >>> params = {"w": jnp.zeros(3)}
        >>> state = opt.init(params)
        >>> for g in ([1.0, -2.0, 0.0], [3.0, 1.0, -1.0]):
        ...     updates, state = opt.update({"w": jnp.asarray(g)}, state, params)
        ...     params = gx.apply_updates(params, updates)
        >>> [round(x, 6) for x in params["w"].tolist()]  # w[1] flipped sign: it stays put
        [-0.22, 0.1, 0.1]
        >>> [round(x, 6) for x in gx.tree_get(state, "step_size")["w"].tolist()]
        [0.12, 0.05, 0.1]
    """
    return optimizer_chain(
        negate_if(maximize),
        scale_by_rprop(learning_rate, eta_minus, eta_plus, min_step_size, max_step_size),
        scale(-1.0),
    )

"""Averaged stochastic gradient descent (ASGD), as torch.optim.ASGD."""

from __future__ import annotations

import jax

from gradtx.core import GradientTransformation, ScalarOrSchedule
from gradtx.hyperparams.declarations import NON_NEGATIVE, WEIGHT_DECAY
from gradtx.optimizers._common import (
    LEARNING_RATE,
    MAXIMIZE,
    negate_if,
    optimizer,
    optimizer_chain,
    weight_decay_if,
)
from gradtx.transforms.averaged_sgd import polyak_average, scale_by_asgd_learning_rate
from gradtx.transforms.decay import add_decayed_weights


@optimizer(
    learning_rate=LEARNING_RATE,
    lambd=NON_NEGATIVE,
    alpha=NON_NEGATIVE,
    t0=NON_NEGATIVE,
    weight_decay=WEIGHT_DECAY,
    maximize=MAXIMIZE,
)
def asgd(
    learning_rate: ScalarOrSchedule = 1e-2,
    lambd: float | jax.Array = 1e-4,
    alpha: float | jax.Array = 0.75,
    t0: float | jax.Array = 1e6,
    weight_decay: float | jax.Array = 0.0,
    maximize: bool = False,
) -> GradientTransformation:
    r"""Averaged stochastic gradient descent (Polyak & Juditsky, 1992), equal step for step to
    ``torch.optim.ASGD``: SGD with a decaying learning rate and a shrinking pull toward zero,
    plus a running average of the parameters, read with :func:`gradtx.averaged_params`.

    .. math::
        g_t &\leftarrow \pm\nabla_\theta f(\theta_{t-1}) + \omega\,\theta_{t-1} \\
        \theta_t &= \theta_{t-1}(1 - \lambda\eta_t) - \eta_t\, g_t
            = \theta_{t-1} - \eta_t\,(g_t + \lambda\,\theta_{t-1}) \\
        \bar\theta_t &= \bar\theta_{t-1} + \mu_t\,(\theta_t - \bar\theta_{t-1}) \\
        \eta_1 &= \gamma, \quad \eta_{t+1} = \frac{\gamma}{(1 + \lambda\gamma t)^{\alpha}},
        \qquad \mu_1 = 1, \quad \mu_{t+1} = \frac{1}{\max(1,\ t - t_0)}

    with the learning rate :math:`\gamma` and the weight decay :math:`\omega`. The average
    :math:`\bar\theta_t` follows the parameters (:math:`\mu_t = 1`) up to step
    :math:`\lfloor t_0\rfloor + 2` and averages them from there; the steps themselves do not
    use it. :math:`\eta_{t+1}` and :math:`\mu_{t+1}` are computed at the end of step :math:`t`
    from that step's values, as torch does: a learning rate (or :math:`\lambda`,
    :math:`\alpha`, :math:`t_0`) changed by ``set_hyperparam`` or a schedule takes effect at the
    next step.

    Chain: ``[scale(-1)] → [add_decayed_weights(ω)] → add_decayed_weights(λ) →
    scale_by_asgd_learning_rate(γ, λ, α) → polyak_average(t0)``; bracketed steps are left out
    when not used.

    Args:
        learning_rate: :math:`\gamma \ge 0`, a float, array or schedule ``count -> value``.
        lambd: :math:`\lambda \ge 0`, the decay term (of both the parameters and the learning
            rate).
        alpha: :math:`\alpha \ge 0`, the power of the learning rate's decay.
        t0: :math:`t_0 \ge 0`, the step after which averaging starts.
        weight_decay: L2 penalty :math:`\omega \ge 0`, added to the gradient.
        maximize: maximise the objective instead of minimising it.

    State (named, for :func:`gradtx.tree_get`): ``count``, the one step count (torch's
    ``step``), ``eta`` (torch's ``eta``, the next step's learning rate), ``mu`` (torch's
    ``mu``) and ``ax`` (torch's ``ax``, the averaged parameters, also returned by
    :func:`gradtx.averaged_params`; zero before the first step). ``eta`` and ``mu`` are
    scalars in the default float dtype, as torch keeps them in its default dtype.

    torch.optim: ``ASGD(params, lr, lambd, alpha, t0, weight_decay, maximize)``. torch checks
    only :math:`\gamma \ge 0` and :math:`\omega \ge 0`; gradtx also refuses negative
    :math:`\lambda`, :math:`\alpha` and :math:`t_0`. The parameter step is torch's
    single-tensor step (its default on CPU) up to rounding: torch multiplies by
    :math:`1 - \lambda\eta_t` first, gradtx adds :math:`\lambda\theta` to the gradient (torch's
    ``foreach`` step does the same).

    Differences from Optax: Optax has no ASGD.

    Example:
        >>> import gradtx as gx, jax.numpy as jnp
        >>> opt = asgd(learning_rate=0.1, lambd=0.0, t0=0.0)
        >>> params = {"w": jnp.asarray([1.0, -1.0])}
        >>> state = opt.init(params)
        >>> for g in ([1.0, 1.0], [1.0, -1.0], [2.0, 0.0]):
        ...     updates, state = opt.update({"w": jnp.asarray(g)}, state, params)
        ...     params = gx.apply_updates(params, updates)
        >>> [round(x, 6) for x in params["w"].tolist()]
        [0.6, -1.0]
        >>> # mu is 1 at steps 1 and 2, then 1/2: the mean of the last two parameters
        >>> [round(x, 6) for x in gx.averaged_params(state)["w"].tolist()]
        [0.7, -1.0]
    """
    return optimizer_chain(
        negate_if(maximize),
        weight_decay_if(weight_decay),
        add_decayed_weights(lambd),
        scale_by_asgd_learning_rate(learning_rate, lambd, alpha),
        polyak_average(t0),
    )

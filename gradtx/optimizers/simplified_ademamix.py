r"""Simplified AdEMAMix (Morwani et al., 2025): one summed momentum mixed with the current
gradient, over Adam's second moment."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from gradtx.core import GradientTransformation, ScalarOrSchedule
from gradtx.hyperparams.declarations import NON_NEGATIVE, WEIGHT_DECAY
from gradtx.optimizers._common import BETA, EPS, LEARNING_RATE, optimizer, optimizer_chain
from gradtx.optimizers.masks import MASK, masked_weight_decay
from gradtx.transforms.scaling import scale_by_learning_rate
from gradtx.transforms.simplified_ademamix import scale_by_simplified_ademamix


@optimizer(
    learning_rate=LEARNING_RATE, b1=BETA, b2=BETA, alpha=NON_NEGATIVE, eps=EPS, eps_root=EPS,
    weight_decay=WEIGHT_DECAY, mask=MASK,
)
def simplified_ademamix(
    learning_rate: ScalarOrSchedule = 1e-5,
    b1: float | jax.Array = 0.99,
    b2: float | jax.Array = 0.95,
    alpha: ScalarOrSchedule = 0.0,
    eps: float | jax.Array = 1e-8,
    eps_root: float | jax.Array = 0.0,
    weight_decay: float | jax.Array = 0.0,
    mask: Any | Callable[[Any], Any] | None = None,
) -> GradientTransformation:
    r"""Simplified AdEMAMix (Morwani et al., 2025, "Connections between Schedule-Free
    Optimizers, AdEMAMix, and Accelerated SGD Variants"): AdEMAMix with its two momenta
    replaced by one that sums the gradients, plus :math:`\alpha` times the current gradient,
    and no warm-up schedules to tune.

    .. math::
        m_t &= \beta_1 m_{t-1} + g_t, \qquad
        n_t = \beta_2 n_{t-1} + (1-\beta_2)\, g_t^2 \\
        \theta_t &= \theta_{t-1} - \eta_t \Bigl(\frac{m_t + \alpha_t g_t}
            {\sqrt{n_t / (1-\beta_2^t) + \epsilon_{\text{root}}} + \epsilon}
            + \lambda\,\theta_{t-1}\Bigr)

    with :math:`m_0 = n_0 = 0`. :math:`m_t` is a sum, not an average (about
    :math:`g/(1-\beta_1)` for a steady gradient), so :math:`\eta` is about :math:`1-\beta_1`
    times an Adam learning rate: the default 1e-5 is Adam's 1e-3 for the default
    :math:`\beta_1 = 0.99`. :math:`\alpha` (and :math:`\eta`, :math:`\lambda`) may be
    schedules of the number of steps already taken. The weight decay :math:`\lambda` is
    decoupled and scaled by the learning rate; ``mask`` (a tree of bools like the parameters
    or a prefix of it, or a function of the parameters) selects the entries it applies to.

    Chain: ``scale_by_simplified_ademamix(β1, β2, α, ε, ε_root) →
    [add_decayed_weights(λ, mask)] → scale_by_learning_rate(η)``.

    Args:
        learning_rate: :math:`\eta \ge 0`, a number or a schedule of the step count.
        b1: :math:`\beta_1 \in [0, 1)`, the momentum's decay.
        b2: :math:`\beta_2 \in [0, 1)`, the second moment's decay.
        alpha: :math:`\alpha \ge 0`, the weight of the current gradient (or a schedule).
        eps: :math:`\epsilon \ge 0`, added to the root.
        eps_root: :math:`\epsilon_{\text{root}} \ge 0`, added under the root.
        weight_decay: :math:`\lambda \ge 0` (a Python 0 leaves the decay out).
        mask: which leaves are decayed: None (all), a tree of bools with the parameters'
            structure or a prefix of it, or a function of the parameters returning one.

    State (named, for :func:`gradtx.tree_get`): ``count``, the one step count, and ``m``,
    ``n`` (the momentum and the second moment, Optax's names).

    Equal step for step to ``optax.contrib.simplified_ademamix`` (Optax 0.2.8). Differences:
    Optax has no default learning rate; a ``mask`` function gets the parameters (Optax's gets
    the updates, a tree of the same structure); complex parameters are refused.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.optimizers.simplified_ademamix import simplified_ademamix
        >>> opt = simplified_ademamix(learning_rate=0.1, alpha=1.0, eps=0.0)
        >>> params = {"w": jnp.array([1.0, -2.0])}
        >>> updates, state = opt.update({"w": jnp.array([0.5, -3.0])}, opt.init(params), params)
        >>> [round(float(u), 6) for u in updates["w"]]  # step 1: -η (1 + α) g / |g|
        [-0.2, 0.2]
    """
    return optimizer_chain(
        scale_by_simplified_ademamix(b1, b2, alpha, eps, eps_root),
        masked_weight_decay(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
        real_only="simplified_ademamix",
    )

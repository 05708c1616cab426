r"""ACProp (Zhuang et al., 2021), as ``optax.contrib.acprop`` computes it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from gradtx.core import GradientTransformation, ScalarOrSchedule
from gradtx.hyperparams.declarations import WEIGHT_DECAY
from gradtx.optimizers._common import BETA, EPS, LEARNING_RATE, optimizer, optimizer_chain
from gradtx.optimizers.masks import MASK, masked_weight_decay
from gradtx.transforms.acprop import scale_by_acprop
from gradtx.transforms.scaling import scale_by_learning_rate


@optimizer(
    learning_rate=LEARNING_RATE, b1=BETA, b2=BETA, eps=EPS, eps_root=EPS,
    weight_decay=WEIGHT_DECAY, mask=MASK,
)
def acprop(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: float | jax.Array = 0.9,
    b2: float | jax.Array = 0.999,
    eps: float | jax.Array = 1e-16,
    eps_root: float | jax.Array = 1e-16,
    weight_decay: float | jax.Array = 0.0,
    mask: Any | Callable[[Any], Any] | None = None,
) -> GradientTransformation:
    r"""ACProp (Zhuang et al., 2021, "Momentum Centering and Asynchronous Update for Adaptive
    Gradient Methods"): AdaBelief's centred second moment, applied asynchronously: the
    gradient is divided by the second moment of the steps *before* it.

    .. math::
        \theta_t &= \theta_{t-1} - \eta_t \Bigl(\frac{g_t}{\sqrt{\hat s_{t-1}} + \epsilon}
            + \lambda\,\theta_{t-1}\Bigr), \qquad
            \hat s_{t-1} = \begin{cases} 1 & t = 1 \\ s_{t-1} / (1-\beta_2^{t-1}) & t > 1
            \end{cases} \\
        s_t &= \beta_2 s_{t-1} + (1-\beta_2)(g_t - m_{t-1})^2 + \epsilon_{\text{root}},
        \qquad m_t = \beta_1 m_{t-1} + (1-\beta_1)\, g_t

    with :math:`m_0 = s_0 = 0`: the first step is :math:`-\eta\, g_1/(1+\epsilon)`. The
    first moment only centres the second (the step's numerator is the raw gradient), and
    :math:`\epsilon_{\text{root}}` accumulates in the stored :math:`s_t`. The weight decay
    :math:`\lambda` is decoupled and scaled by the learning rate; ``mask`` (a tree of bools
    like the parameters or a prefix of it, or a function of the parameters) selects the
    entries it applies to.

    Chain: ``scale_by_acprop(β1, β2, ε, ε_root) → [add_decayed_weights(λ, mask)] →
    scale_by_learning_rate(η)``.

    Args:
        learning_rate: :math:`\eta \ge 0`, a number or a schedule of the step count.
        b1: :math:`\beta_1 \in [0, 1)`, the decay of the first moment.
        b2: :math:`\beta_2 \in [0, 1)`, the decay of the centred second moment.
        eps: :math:`\epsilon \ge 0`, added to the root.
        eps_root: :math:`\epsilon_{\text{root}} \ge 0`, added to the stored second moment.
        weight_decay: :math:`\lambda \ge 0` (a Python 0 leaves the decay out).
        mask: which leaves are decayed: None (all), a tree of bools with the parameters'
            structure or a prefix of it, or a function of the parameters returning one.

    State (named, for :func:`gradtx.tree_get`): ``count``, the one step count, and ``mu``
    (:math:`m`), ``nu`` (:math:`s`), as Optax's ``ScaleByBeliefState``.

    Equal step for step to ``optax.contrib.acprop`` (Optax 0.2.8). Differences: Optax has no
    default learning rate (1e-3 here, the authors' default); a ``mask`` function gets the
    parameters (Optax's gets the updates, a tree of the same structure); complex parameters
    are refused (Optax takes :math:`|g - m|^2` of complex entries; the transform
    ``scale_by_acprop`` does too).

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.optimizers.acprop import acprop
        >>> opt = acprop(learning_rate=0.1)
        >>> params = {"w": jnp.array([1.0, -2.0])}
        >>> updates, state = opt.update({"w": jnp.array([0.5, -3.0])}, opt.init(params), params)
        >>> [round(float(u), 6) for u in updates["w"]]  # the first step is -η g
        [-0.05, 0.3]
    """
    return optimizer_chain(
        scale_by_acprop(b1, b2, eps, eps_root),
        masked_weight_decay(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
        real_only="acprop",
    )

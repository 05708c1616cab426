r"""Adan (Xie et al., 2022): adaptive Nesterov momentum, as ``optax.adan`` computes it."""

from __future__ import annotations

from typing import Any

import jax

from gradtx.core import GradientTransformation, ScalarOrSchedule
from gradtx.hyperparams.declarations import NON_NEGATIVE, WEIGHT_DECAY
from gradtx.optimizers._common import BETA, EPS, LEARNING_RATE, optimizer, optimizer_chain
from gradtx.optimizers.masks import MASK, masked_weight_decay
from gradtx.transforms.adan import scale_by_adan
from gradtx.transforms.scaling import scale_by_learning_rate


@optimizer(
    learning_rate=LEARNING_RATE, b1=BETA, b2=BETA, b3=BETA, eps=EPS, eps_root=NON_NEGATIVE,
    weight_decay=WEIGHT_DECAY, mask=MASK,
)
def adan(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: float | jax.Array = 0.98,
    b2: float | jax.Array = 0.92,
    b3: float | jax.Array = 0.99,
    eps: float | jax.Array = 1e-8,
    eps_root: float | jax.Array = 1e-8,
    weight_decay: float | jax.Array = 0.0,
    mask: Any = None,
) -> GradientTransformation:
    r"""Adan (Xie et al., 2022, "Adan: Adaptive Nesterov Momentum Algorithm for Faster
    Optimizing Deep Models"): Adam whose first moment adds a moving average of the gradient's
    change between steps (a Nesterov momentum estimate, with no gradient at an extrapolated
    point), divided by the root of a second moment of that corrected gradient; equal step for
    step to ``optax.adan`` (Optax 0.2.8).

    .. math::
        \Delta_t &= g_t - g_{t-1} \ (\Delta_1 = 0), \qquad
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) \Delta_t \\
        n_t &= \beta_3 n_{t-1} + (1-\beta_3)\bigl(g_t + (1-\beta_2)\Delta_t\bigr)^2 \\
        \theta_t &= \theta_{t-1} - \eta\Bigl(
            \frac{\hat m_t + (1-\beta_2)\hat v_t}{\sqrt{\hat n_t + \epsilon_{\text{root}}}
            + \epsilon} + \lambda\,\theta_{t-1}\Bigr), \qquad
        \hat x_t = \frac{x_t}{1-\beta^t}

    with :math:`m, v, n` starting at zero and each bias-corrected by its own
    :math:`\beta`. The betas weigh the old value, as in Optax's code (the paper and Optax's
    docstring write :math:`1-\beta` for them). The weight decay is decoupled and additive,
    :math:`-\eta\lambda\theta`, as in Optax; the paper's Algorithm 1 divides by
    :math:`1+\lambda\eta` instead.

    Chain: ``scale_by_adan(β1, β2, β3, ε, ε_root) → [add_decayed_weights(λ, mask)] →
    scale_by_learning_rate(η)``.

    Args:
        learning_rate: :math:`\eta \ge 0`, a number or a schedule of the step count.
        b1: :math:`\beta_1 \in [0, 1)`, the decay of the gradients' average.
        b2: :math:`\beta_2 \in [0, 1)`, the decay of the average of their differences.
        b3: :math:`\beta_3 \in [0, 1)`, the decay of the second moment.
        eps: :math:`\epsilon \ge 0`, added to the root.
        eps_root: :math:`\epsilon_{\text{root}} \ge 0`, added under the root.
        weight_decay: :math:`\lambda \ge 0`, a number or a schedule; a Python 0 leaves the
            decay out.
        mask: which leaves are decayed: None (all), a tree of bools with the parameters'
            structure or a prefix of it (``True`` decays the leaf or subtree; bool arrays
            that broadcast against a leaf select entries), or a function of the parameters
            that returns one.

    State (named, for :func:`gradtx.tree_get`): ``count``, the one step count (Optax's
    ``t``), ``m``, ``v``, ``n`` (the moments) and ``g`` (the latest gradient), as in Optax's
    ``ScaleByAdanState``.

    torch.optim: none.

    Differences from ``optax.adan``: none in the numbers. Optax has no default learning rate
    (1e-3 here, the authors' default), calls a ``mask`` function with the updates rather than
    the parameters (the same tree for masks that read shapes), and takes a bare ``True`` or
    ``False`` as a mask of the whole tree, refused here (``mask=None`` decays every leaf,
    ``weight_decay=0`` none), as gradtx keeps bools for switches. Complex parameters are
    refused: Optax's :math:`n_t` holds :math:`|\cdot|^2` of each complex entry, which
    gradtx's real view of complex leaves would split.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.optimizers.adan import adan
        >>> opt = adan(learning_rate=0.1, eps=0.0, eps_root=0.0)
        >>> params = {"w": jnp.array([1.0, -2.0])}
        >>> updates, state = opt.update({"w": jnp.array([0.5, -3.0])}, opt.init(params), params)
        >>> [round(float(u), 6) for u in updates["w"]]  # the first step is -η g / |g|
        [-0.1, 0.1]
    """
    return optimizer_chain(
        scale_by_adan(b1, b2, b3, eps, eps_root),
        masked_weight_decay(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
        real_only="adan",
    )

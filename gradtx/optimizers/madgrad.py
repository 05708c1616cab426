r"""MADGRAD (Defazio & Jelassi, 2021): momentumized, adaptive, dual-averaged steps, as
``optax.contrib.madgrad`` computes them."""

from __future__ import annotations

import jax

from gradtx.core import GradientTransformation, ScalarOrSchedule
from gradtx.hyperparams.declarations import WEIGHT_DECAY
from gradtx.optimizers._common import (
    BETA,
    EPS,
    LEARNING_RATE,
    optimizer,
    optimizer_chain,
    weight_decay_if,
)
from gradtx.transforms.madgrad import scale_by_madgrad


@optimizer(learning_rate=LEARNING_RATE, momentum=BETA, weight_decay=WEIGHT_DECAY, eps=EPS)
def madgrad(
    learning_rate: ScalarOrSchedule = 1e-2,
    momentum: float | jax.Array = 0.9,
    weight_decay: float | jax.Array = 0.0,
    eps: float | jax.Array = 1e-6,
) -> GradientTransformation:
    r"""MADGRAD (Defazio & Jelassi, 2021, "Adaptivity without Compromise: A Momentumized,
    Adaptive, Dual Averaged Gradient Method for Stochastic Optimization"): dual averaging
    from the initial parameters with a cube-root adaptive denominator, and momentum by
    averaging the iterates; equal step for step to ``optax.contrib.madgrad`` (Optax 0.2.8).

    With :math:`k` the number of steps before this one and :math:`x_0` the parameters given
    to ``init``:

    .. math::
        g_k &\leftarrow \nabla f(x_k) + \lambda\, x_k, \qquad
        c_k = (\eta_k + \epsilon)\sqrt{k+1} \\
        G_{k+1} &= G_k + c_k\, g_k^2, \qquad s_{k+1} = s_k + c_k\, g_k, \qquad
        G_0 = s_0 = 0 \\
        z_{k+1} &= x_0 - \frac{s_{k+1}}{G_{k+1}^{1/3} + \epsilon}, \qquad
        x_{k+1} = (1-\mu)\, z_{k+1} + \mu\, x_k

    The learning rate weighs the sums (it is not a final scaling), as in the paper; the
    weight decay is L2 regularisation added to the gradient, and :math:`\epsilon` is also
    added to the learning rate, as in the authors' PyTorch code.

    Chain: ``[add_decayed_weights(λ)] → scale_by_madgrad(η, μ, ε)``.

    Args:
        learning_rate: :math:`\eta \ge 0`, a number or a schedule of the step count.
        momentum: :math:`\mu \in [0, 1)`, the weight of the current iterate.
        weight_decay: :math:`\lambda \ge 0`; a Python 0 leaves the decay out.
        eps: :math:`\epsilon \ge 0`.

    State (named, for :func:`gradtx.tree_get`): ``count``, the one step count, ``grad_sum_sq``
    (:math:`G`), ``s`` and ``x0``, as in Optax's ``MadgradState``.

    torch.optim: none.

    Differences from ``optax.contrib.madgrad``: Optax has no default learning rate (1e-2
    here, the authors' default). The numbers are Optax's whenever Optax gets its learning
    rate as an array, as ``optax.inject_hyperparams(optax.contrib.madgrad)`` gives it and as
    gradtx always holds it (a live hyperparameter). Given a Python number, Optax computes
    :math:`c_k` in float32 (a weakly typed number times the float32 :math:`\sqrt{k+1}` of its
    int32 step count, a root gradtx keeps in float32 too); in float64 its steps then differ
    from these by that rounding: a relative 6e-8 on each :math:`c_k`, which the sums carry
    into the steps (about 1e-6 of the distance travelled in gradtx's tests). Rounding
    :math:`c_k` to float32 here as well would make the step jagged in the learning rate
    (finite differences in :math:`\eta` would disagree with its derivative). Complex
    parameters are refused (Optax fails on them: it takes the cube root of a complex sum).

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.optimizers.madgrad import madgrad
        >>> opt = madgrad(learning_rate=0.1, momentum=0.0, eps=0.0)
        >>> params = {"w": jnp.array([1.0, -2.0])}
        >>> updates, state = opt.update({"w": jnp.array([8.0, -1.0])}, opt.init(params), params)
        >>> # step 0: G = η g², s = η g, so the step is -η^{2/3} g / |g|^{2/3}
        >>> [round(float(u), 6) for u in updates["w"]]
        [-0.430887, 0.215443]
    """
    return optimizer_chain(
        weight_decay_if(weight_decay),
        scale_by_madgrad(learning_rate, momentum, eps),
        real_only="madgrad",
    )

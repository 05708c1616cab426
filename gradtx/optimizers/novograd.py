r"""NovoGrad (Ginsburg et al., 2019): layer-wise normalised gradients in a momentum, as
``optax.novograd`` computes it."""

from __future__ import annotations

import jax

from gradtx.core import GradientTransformation, ScalarOrSchedule
from gradtx.hyperparams.declarations import NON_NEGATIVE, WEIGHT_DECAY
from gradtx.optimizers._common import BETA, EPS, LEARNING_RATE, optimizer, optimizer_chain
from gradtx.transforms.novograd import scale_by_novograd
from gradtx.transforms.scaling import scale_by_learning_rate


@optimizer(
    learning_rate=LEARNING_RATE, b1=BETA, b2=BETA, eps=EPS, eps_root=NON_NEGATIVE,
    weight_decay=WEIGHT_DECAY,
)
def novograd(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: float | jax.Array = 0.9,
    b2: float | jax.Array = 0.25,
    eps: float | jax.Array = 1e-6,
    eps_root: float | jax.Array = 0.0,
    weight_decay: float | jax.Array = 0.0,
) -> GradientTransformation:
    r"""NovoGrad (Ginsburg et al., 2019, "Stochastic Gradient Methods with Layer-wise Adaptive
    Moments for Training of Deep Networks"): each leaf's gradient divided by the root of a
    moving average of its squared norm (one second moment per layer, so half Adam's memory),
    plus weight decay, accumulated in a momentum; equal step for step to ``optax.novograd``
    (Optax 0.2.8).

    For each leaf (layer) :math:`\theta` with gradient :math:`g_t`:

    .. math::
        v_t &= \begin{cases} \|g_1\|^2 & t = 1 \\
            \beta_2 v_{t-1} + (1-\beta_2)\|g_t\|^2 & t > 1 \end{cases} \\
        m_t &= \beta_1 m_{t-1} + \frac{g_t}{\sqrt{v_t + \epsilon_{\text{root}}} + \epsilon}
            + \lambda\,\theta_{t-1}, \qquad m_0 = 0 \\
        \theta_t &= \theta_{t-1} - \eta\, m_t

    :math:`v_t` is one scalar per leaf, started at the first squared norm (no bias
    correction); the momentum adds each term undamped, so in the long run the step is about
    :math:`1/(1-\beta_1)` times the normalised gradient. The weight decay is inside the
    momentum, as in the paper.

    Chain: ``scale_by_novograd(β1, β2, ε, ε_root, λ) → scale_by_learning_rate(η)``.

    Args:
        learning_rate: :math:`\eta \ge 0`, a number or a schedule of the step count.
        b1: :math:`\beta_1 \in [0, 1)`, the momentum.
        b2: :math:`\beta_2 \in [0, 1)`, the decay of the squared norms' average.
        eps: :math:`\epsilon \ge 0`, added to the root.
        eps_root: :math:`\epsilon_{\text{root}} \ge 0`, added under the root.
        weight_decay: :math:`\lambda \ge 0`; a Python 0 leaves the decay out.

    State (named, for :func:`gradtx.tree_get`): ``count``, the one step count, ``mu`` (the
    momentum) and ``nu`` (one squared-norm average per leaf), as in Optax's
    ``ScaleByNovogradState``.

    torch.optim: none.

    Differences from ``optax.novograd``: none in the numbers. Optax has no default learning
    rate (1e-3 here) and fails on a schedule as ``weight_decay`` (it multiplies the function);
    here it is evaluated at the step count like any schedule. Complex parameters are taken as
    pairs of reals, which gives the same norms and so Optax's steps.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.optimizers.novograd import novograd
        >>> opt = novograd(learning_rate=0.1, eps=0.0)
        >>> params = {"w": jnp.array([1.0, -2.0]), "b": jnp.array(3.0)}
        >>> grads = {"w": jnp.array([3.0, -4.0]), "b": jnp.array(-0.5)}
        >>> updates, state = opt.update(grads, opt.init(params), params)
        >>> [round(float(u), 6) for u in updates["w"]]  # -η g / ||g||, per leaf
        [-0.06, 0.08]
        >>> round(float(updates["b"]), 6)
        0.1
    """
    return optimizer_chain(
        scale_by_novograd(b1, b2, eps, eps_root, weight_decay),
        scale_by_learning_rate(learning_rate),
    )

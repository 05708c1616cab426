"""torch.optim.Adafactor: torch's variant of Adafactor (Shazeer & Stern, 2018), which differs from
the paper's (:func:`gradtx.adafactor`) in its decay schedule, the place of its epsilon, its
relative step size and its weight decay."""

from __future__ import annotations

import jax

from gradtx.core import GradientTransformation, ScalarOrSchedule
from gradtx.hyperparams.declarations import WEIGHT_DECAY, Hyperparam
from gradtx.optimizers._common import (
    EPS,
    LEARNING_RATE,
    MAXIMIZE,
    negate_if,
    optimizer,
    optimizer_chain,
    weight_decay_if,
)
from gradtx.transforms.clipping import clip_by_block_rms
from gradtx.transforms.factored import scale_by_param_block_rms
from gradtx.transforms.factored_torch import (
    scale_by_factored_variance,
    scale_by_relative_step_cap,
)
from gradtx.transforms.scaling import scale_by_learning_rate

# torch's checks: beta2_decay <= 0 and a clipping threshold d >= 1.
BETA2_DECAY = Hyperparam(high=0.0)
CLIPPING_THRESHOLD = Hyperparam(low=1.0)


@optimizer(
    learning_rate=LEARNING_RATE,
    beta2_decay=BETA2_DECAY,
    eps1=EPS.or_none(),
    eps2=EPS,
    d=CLIPPING_THRESHOLD,
    weight_decay=WEIGHT_DECAY,
    maximize=MAXIMIZE,
)
def adafactor_torch(
    learning_rate: ScalarOrSchedule = 1e-2,
    beta2_decay: float | jax.Array = -0.8,
    eps1: float | jax.Array | None = None,
    eps2: float | jax.Array = 1e-3,
    d: float | jax.Array = 1.0,
    weight_decay: float | jax.Array = 0.0,
    maximize: bool = False,
) -> GradientTransformation:
    r"""Adafactor as ``torch.optim.Adafactor`` implements it, equal step for step.

    .. math::
        g_t &\leftarrow \pm\nabla_\theta f(\theta_{t-1}), \qquad w_t = t^{\tau}, \qquad
            \rho_t = \min(\eta, 1/\sqrt t) \\
        R_t &= (1-w_t) R_{t-1} + w_t \operatorname{mean}_j g_t^2, \quad
            C_t = (1-w_t) C_{t-1} + w_t \operatorname{mean}_i g_t^2, \quad
            \hat V_t = \frac{R_t C_t}{\max(\operatorname{mean}_i R_t, \epsilon_1)}
            \quad (\ge 2 \text{ dims}) \\
        \hat V_t &= (1-w_t) \hat V_{t-1} + w_t g_t^2 \quad (0 \text{ or } 1 \text{ dim}) \\
        U_t &= \frac{g_t}{\sqrt{\max(\hat V_t, \epsilon_1^2)}}, \qquad
            \hat U_t = \frac{U_t}{\max\bigl(1, \operatorname{RMS}(U_t)/d\bigr)} \\
        \theta_t &= (1 - \eta\lambda)\,\theta_{t-1}
            - \rho_t \max\bigl(\epsilon_2, \operatorname{RMS}(\theta_{t-1})\bigr)\, \hat U_t

    RMS, the clipping and the factoring are per leaf; a leaf of shape :math:`(\dots, n, m)` is
    factored over its last two axes (leading axes are batch axes), a 0-d or 1-d leaf keeps a
    full second moment. Means, not sums, as in torch (the same :math:`\hat V_t`).

    How it differs from the paper's Adafactor (:func:`gradtx.adafactor`), as torch does:
    :math:`\hat\beta_t = 1 - t^{\tau}` with :math:`\tau \le 0` (the paper's
    :math:`1 - t^{-c}` is :math:`\tau = -c`, and :math:`\tau < -1` is allowed);
    :math:`\epsilon_1` floors the mean of :math:`R_t` and :math:`\hat V_t` instead of being
    added to :math:`g_t^2`; the relative step is capped by the learning rate instead of
    :math:`10^{-2}`; the decay is decoupled and scaled by :math:`\eta`, not :math:`\rho_t`;
    there is no momentum, and the parameter scale is always on.

    Chain: ``[scale(-1)] → scale_by_factored_variance(τ, ε1) → clip_by_block_rms(d) →
    scale_by_param_block_rms(ε2) → scale_by_relative_step_cap(η) → [add_decayed_weights(λ)]
    → scale_by_learning_rate(η)``: the cap, :math:`\min(1, 1/(\eta\sqrt t))`, times
    :math:`\eta` is :math:`\rho_t`, while the decay in between is multiplied by :math:`\eta`
    alone.

    Args:
        learning_rate: :math:`\eta \ge 0`: the cap of the relative step size and the factor
            of the weight decay. A float, an array or a schedule ``count -> value``.
        beta2_decay: :math:`\tau \le 0`, the decay exponent of the second moment.
        eps1: :math:`\epsilon_1 \ge 0`, or None for the machine epsilon of each parameter's
            dtype (2.2e-16 for float64, 1.2e-7 for float32).
        eps2: :math:`\epsilon_2 \ge 0`, the floor of the parameter scale.
        d: :math:`d \ge 1`, the clipping threshold of :math:`\operatorname{RMS}(U_t)`.
        weight_decay: :math:`\lambda \ge 0`, decoupled weight decay.
        maximize: maximise the objective instead of minimising it.

    State (named, for :func:`gradtx.tree_get`): ``count``, the one step count (torch's
    ``step``, a float tensor there), and torch's ``row_var`` (shape :math:`(\dots, n, 1)`),
    ``col_var`` (:math:`(\dots, 1, m)`) and ``variance``, in torch's shapes. The slots a leaf
    does not use, absent from torch's state, hold one-element placeholders.

    torch.optim: ``Adafactor(params, lr, beta2_decay, eps=(eps1, eps2), d, weight_decay,
    maximize)``; torch takes the two epsilons as one tuple. As torch, gradtx refuses complex
    parameters. Where they differ:

    * ``eps1=None``: torch takes the machine epsilon of the *first* parameter (with a
      gradient) of its group for the whole group, gradtx that of each parameter's dtype; they
      differ only in a group that mixes float widths.
    * torch computes :math:`\max(\epsilon_2, \operatorname{RMS}(\theta))` with Python's
      ``max``, which returns :math:`\epsilon_2` for a NaN RMS; here a NaN parameter gives a
      NaN step.

    Differences from ``optax.adafactor``: see :func:`gradtx.adafactor`; Optax has no
    equivalent of torch's variant (its epsilon is added to the squared gradient, its decay is
    not scaled by the learning rate, it factors only large axes).

    Example:
        >>> import gradtx as gx, jax.numpy as jnp
        >>> opt = adafactor_torch(learning_rate=0.1)
        >>> params = {"w": jnp.ones((4, 3)), "b": jnp.ones(3)}
        >>> state = opt.init(params)
        >>> [gx.tree_get(state, k)["w"].shape for k in ("row_var", "col_var")]
        [(4, 1), (1, 3)]
        >>> gx.tree_get(state, "variance")["b"].shape
        (3,)
        >>> grads = {"w": jnp.full((4, 3), 2.0), "b": jnp.asarray([1.0, -1.0, 0.0])}
        >>> updates, state = opt.update(grads, state, params)
        >>> params = gx.apply_updates(params, updates)
        >>> [round(x, 6) for x in params["b"].tolist()]  # steps of rho * RMS(b) = 0.1
        [0.9, 1.1, 1.0]
        >>> round(float(params["w"][0, 0]), 6)
        0.9
    """
    return optimizer_chain(
        negate_if(maximize),
        scale_by_factored_variance(beta2_decay, eps1),
        clip_by_block_rms(d),
        scale_by_param_block_rms(eps2),
        scale_by_relative_step_cap(learning_rate),
        weight_decay_if(weight_decay),
        scale_by_learning_rate(learning_rate),
        real_only="adafactor_torch",
    )

r"""Sophia (Liu et al., 2023): momentum over a clipped, Hessian-scaled denominator, as
``optax.contrib.sophia`` computes it."""

from __future__ import annotations

from typing import Any

import jax

from gradtx import validation
from gradtx.core import GradientTransformation, ScalarOrSchedule
from gradtx.hyperparams.declarations import (
    NON_NEGATIVE,
    PERIOD,
    STATE_DTYPE,
    SWITCH,
    WEIGHT_DECAY,
    FixedArgument,
)
from gradtx.optimizers._common import BETA, EPS, LEARNING_RATE, optimizer, optimizer_chain
from gradtx.optimizers.masks import MASK, masked_weight_decay
from gradtx.transforms.scaling import scale_by_learning_rate
from gradtx.transforms.sophia import check_estimator, scale_by_sophia


def _check_period(name: str, value):
    return validation.check_static_int(name, value, minimum=0)


ESTIMATOR = FixedArgument(
    checker=check_estimator,
    text="None (Hutchinson's estimator, seed 0) or a transformation returning the Hessian "
         "diagonal",
    refused=(3,),
    none_allowed=True,
)
PRINT_PERIOD = FixedArgument(checker=_check_period, text="an int >= 0", refused=(-1,))


def check_printing(values) -> None:
    """``verbose`` prints every ``print_win_rate_every_n_steps`` steps: a period of 0 cannot."""
    if values.get("verbose") and values.get("print_win_rate_every_n_steps") == 0:
        raise ValueError("`verbose=True` needs `print_win_rate_every_n_steps` >= 1 (got 0).")


@optimizer(
    learning_rate=LEARNING_RATE, b1=BETA, b2=BETA, eps=EPS, weight_decay=WEIGHT_DECAY,
    weight_decay_mask=MASK, gamma=NON_NEGATIVE, clip_threshold=NON_NEGATIVE.or_none(),
    update_interval=PERIOD, hessian_diagonal_fn=ESTIMATOR, mu_dtype=STATE_DTYPE,
    verbose=SWITCH, print_win_rate_every_n_steps=PRINT_PERIOD, rules=(check_printing,),
)
def sophia(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: float | jax.Array = 0.965,
    b2: float | jax.Array = 0.99,
    eps: float | jax.Array = 1e-8,
    weight_decay: float | jax.Array = 1e-4,
    weight_decay_mask: Any = None,
    gamma: float | jax.Array = 0.01,
    clip_threshold: float | jax.Array | None = 1.0,
    update_interval: int = 10,
    hessian_diagonal_fn: GradientTransformation | None = None,
    mu_dtype: Any = None,
    verbose: bool = False,
    print_win_rate_every_n_steps: int = 0,
) -> GradientTransformation:
    r"""Sophia (Liu et al., 2023, "Sophia: A Scalable Stochastic Second-order Optimizer for
    Language Model Pre-training"), Sophia-H: momentum divided by a moving average of the
    Hessian's diagonal (Hutchinson's estimate, refreshed every ``update_interval`` steps),
    clipped elementwise, with decoupled weight decay; equal step for step to
    ``optax.contrib.sophia`` (Optax 0.2.8).

    .. math::
        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t \\
        \theta_t &= \theta_{t-1} - \eta_t\Bigl(\operatorname{clip}\Bigl(
            \frac{m_t / (1-\beta_1^t)}{\max(\gamma h_{t-1}, \epsilon)}, -\rho, \rho\Bigr)
            + \lambda\theta_{t-1}\Bigr) \\
        h_t &= \beta_2 h_{t-1} + (1-\beta_2)\, z \odot \nabla^2 f(\theta_{t-1}) z
            \quad\text{at } t = 1, k+1, 2k+1, \ldots \ (h_0 = 0)

    with :math:`z` random signs and :math:`k` = ``update_interval``. The Hessian estimate needs
    the objective: ``opt.update(grads, state, params, obj_fn=lambda p: loss(p, batch))``, a
    function of the params alone returning the scalar loss (one Hessian-vector product per
    refresh, about one more gradient's cost). Another estimator (Sophia-G's Gauss–Newton
    one, or one that averages across devices) goes in ``hessian_diagonal_fn``, and gets every
    extra argument of ``update``.

    Chain: ``scale_by_sophia(β1, β2, ε, γ, ρ, k, estimator) → add_decayed_weights(λ, mask)
    → scale_by_learning_rate(η)``.

    Args:
        learning_rate: :math:`\eta_t \ge 0`, a number or a schedule.
        b1: :math:`\beta_1 \in [0, 1)`.
        b2: :math:`\beta_2 \in [0, 1)`, per refresh.
        eps: :math:`\epsilon \ge 0`.
        weight_decay: :math:`\lambda \ge 0`, decoupled (not scaled by the clipping).
        weight_decay_mask: None, a tree of bools (the params' structure or a prefix), or a
            function of the params returning one: True where weight decay applies.
        gamma: :math:`\gamma \ge 0`.
        clip_threshold: :math:`\rho \ge 0`, or None for no clipping.
        update_interval: :math:`k \ge 1`.
        hessian_diagonal_fn: None (a :func:`gradtx.hutchinson_estimator_diag_hessian` with
            seed 0), or an estimator transformation.
        mu_dtype: the dtype of :math:`m`; None: the parameters'.
        verbose: print the share of unclipped entries every
            ``print_win_rate_every_n_steps`` steps (the authors keep it in 0.1–0.5 by tuning
            :math:`\gamma`).
        print_win_rate_every_n_steps: the period (>= 1 when ``verbose``).

    State (named, for :func:`gradtx.tree_get`): ``count``, ``mu``, ``nu`` (the Hessian
    average :math:`h`) and ``hessian_fn_state`` (Hutchinson's: ``key``).

    torch.optim: none (the authors' code is torch, not a package). Differences from Optax: a
    default learning rate (1e-3; Optax requires one); the default estimator is made per call
    (Optax shares one built at import, with the same seed); complex parameters are refused.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.optimizers.sophia import sophia
        >>> opt = sophia(learning_rate=0.1, weight_decay=0.0)
        >>> loss = lambda p: jnp.sum(p["w"] ** 2)
        >>> params = {"w": jnp.array([1.0, -2.0])}
        >>> grads = {"w": 2 * params["w"]}
        >>> updates, state = opt.update(grads, opt.init(params), params, obj_fn=loss)
        >>> [round(float(u), 6) for u in updates["w"]]  # h_0 = 0: the first step is clipped
        [-0.1, 0.1]
    """
    return optimizer_chain(
        scale_by_sophia(
            b1, b2, eps, gamma, clip_threshold, update_interval, hessian_diagonal_fn,
            mu_dtype, verbose, print_win_rate_every_n_steps,
        ),
        masked_weight_decay(weight_decay, weight_decay_mask),
        scale_by_learning_rate(learning_rate),
        real_only="sophia",
    )

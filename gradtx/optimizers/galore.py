r"""GaLore (Zhao et al., 2024): Adam (or another scaling) on low-rank projections of each
matrix's gradient, as ``optax.contrib.galore`` computes it."""

from __future__ import annotations

from typing import Any

import jax

from gradtx.core import GradientTransformation, ScalarOrSchedule
from gradtx.hyperparams.declarations import PERIOD, WEIGHT_DECAY, FixedArgument, Hyperparam
from gradtx.optimizers._common import LEARNING_RATE, optimizer, optimizer_chain
from gradtx.optimizers.masks import MASK, masked_weight_decay
from gradtx.transforms.galore import check_base_optimizer, scale_by_galore
from gradtx.transforms.scaling import scale_by_learning_rate

BASE = FixedArgument(
    checker=check_base_optimizer,
    text="None (gx.scale_by_adam()) or a transformation that needs no params",
    refused=(3,),
    none_allowed=True,
)


def _check_dimension_numbers(name: str, value):
    if value is None or callable(value) or isinstance(value, (tuple, dict, list)):
        return value
    raise TypeError(f"`{name}` must be None, a GaLoreDimensionNumbers, a tree of them like the "
                    f"params, or a function of the params; got {type(value).__name__}.")


DIMENSION_NUMBERS = FixedArgument(
    checker=_check_dimension_numbers,
    text="None (every 2-D leaf), a GaLoreDimensionNumbers, a tree of them, or a function",
    refused=(3,),
    none_allowed=True,
)


@optimizer(
    learning_rate=LEARNING_RATE, rank=PERIOD, update_proj_gap=PERIOD,
    scale=Hyperparam(), base_optimizer=BASE, weight_decay=WEIGHT_DECAY, mask=MASK,
    weight_dimension_numbers=DIMENSION_NUMBERS,
)
def galore(
    learning_rate: ScalarOrSchedule = 1e-3,
    rank: int = 128,
    update_proj_gap: int = 200,
    scale: float | jax.Array = 1.0,
    base_optimizer: GradientTransformation | None = None,
    weight_decay: float | jax.Array = 0.0,
    mask: Any = None,
    weight_dimension_numbers: Any = None,
) -> GradientTransformation:
    r"""GaLore (Zhao et al., 2024, "GaLore: Memory-Efficient LLM Training by Gradient Low-Rank
    Projection"): each matrix's gradient is projected on a rank-:math:`r` basis of its own
    singular vectors, refreshed every ``update_proj_gap`` steps; Adam (or ``base_optimizer``)
    steps there, and its update is projected back. Full-parameter training with optimizer
    state of :math:`r \times n` (or :math:`m \times r`) per :math:`m \times n` matrix. Equal
    step for step to ``optax.contrib.galore`` (Optax 0.2.8).

    .. math::
        R_t &= P_t^\top G_t \ (m \ge n) \quad\text{or}\quad G_t P_t, \qquad
        P_t \text{ from the SVD of } G_t \text{ at } t = 1, k+1, 2k+1, \ldots \\
        \theta_t &= \theta_{t-1} - \eta_t \bigl(s\, P_t \rho(R_t)
            \ \text{or}\ s\, \rho(R_t) P_t^\top \; + \lambda \theta_{t-1}\bigr)

    with :math:`\rho` = ``base_optimizer`` (Adam's scaling by default), :math:`s` =
    ``scale``; leaves that are not projected (vectors, scalars, and with the default
    ``weight_dimension_numbers`` every leaf but the 2-D ones) get :math:`\rho(G_t)` itself,
    without :math:`s`, as in Optax.

    Chain: ``scale_by_galore(r, k, s, ρ, dims) → add_decayed_weights(λ, mask) →
    scale_by_learning_rate(η)``.

    Args:
        learning_rate: :math:`\eta_t \ge 0`, a number or a schedule.
        rank: :math:`r \ge 1`.
        update_proj_gap: :math:`k \ge 1`.
        scale: :math:`s`.
        base_optimizer: a transformation that needs no params (``gx.scale_by_adam(...)``,
            ``gx.scale_by_lion()``, ``gx.scale_by_rms(...)``); weight decay goes in
            ``weight_decay``, applied in the full space. None: ``gx.scale_by_adam()``.
        weight_decay: :math:`\lambda \ge 0`, decoupled.
        mask: None, a tree of bools or a function of the params: where weight decay applies.
        weight_dimension_numbers: see :func:`gradtx.scale_by_galore`.

    State (named, for :func:`gradtx.tree_get`): ``count``, ``base_optimizer_state`` (Adam's
    ``mu`` and ``nu``, at the projected shapes) and ``projector``.

    torch.optim: none (the authors' ``galore-torch`` wraps torch's Adam). Differences from
    Optax: a default learning rate (1e-3; Optax requires one); ``scale`` may be live
    (``gx.set_hyperparam``); complex parameters are refused.

    Example:
        >>> import gradtx as gx, jax.numpy as jnp
        >>> opt = gx.galore(learning_rate=0.01, rank=2)
        >>> params = {"w": jnp.ones((8, 4)), "b": jnp.zeros(4)}
        >>> state = opt.init(params)
        >>> gx.tree_get(state, "projector")["w"].shape, gx.tree_get(state, "mu")["w"].shape
        ((8, 2), (2, 4))
    """
    return optimizer_chain(
        scale_by_galore(rank, update_proj_gap, scale, base_optimizer, weight_dimension_numbers),
        masked_weight_decay(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
        real_only="galore",
    )


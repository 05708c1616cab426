r"""Optimizers without a learning rate to tune: COCOB, DoG and DoWG, each a short chain of
the transforms in :mod:`gradtx.transforms.parameter_free`, and each equal step for step to its
namesake in ``optax.contrib`` (Optax 0.2.8), whose argument names and defaults they keep. The
learning rate defaults to 1 and is a multiplier (give it the shape of a schedule, or leave
it)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from gradtx.core import GradientTransformation, ScalarOrSchedule
from gradtx.hyperparams.declarations import NON_NEGATIVE, POSITIVE, WEIGHT_DECAY, FixedArgument
from gradtx.optimizers._common import LEARNING_RATE, optimizer, optimizer_chain
from gradtx.optimizers.masks import MASK, masked_weight_decay
from gradtx.transforms.parameter_free import (
    check_init_step,
    scale_by_cocob,
    scale_by_dog,
    scale_by_dowg,
)
from gradtx.transforms.scaling import scale_by_learning_rate

INIT_STEP = FixedArgument(
    checker=check_init_step,
    text="a pair (tag, value > 0), tag 'distance', 'learning_rate' or 'heuristic'",
    refused=(("heuristic", 0.0), ("learning_rate", -1.0), ("distance", float("nan")),
             ("warmup", 1e-6)),
)

Mask = Any | Callable[[Any], Any] | None


def _decay(weight_decay, mask) -> GradientTransformation | None:
    """Optax's ``add_decayed_weights(weight_decay, mask)``, left out for None (Optax's
    ``identity()``) or a Python 0 (which adds nothing)."""
    return None if weight_decay is None else masked_weight_decay(weight_decay, mask)


@optimizer(
    learning_rate=LEARNING_RATE, alpha=NON_NEGATIVE, eps=POSITIVE, weight_decay=WEIGHT_DECAY,
    mask=MASK,
)
def cocob(
    learning_rate: ScalarOrSchedule = 1.0,
    alpha: float | jax.Array = 100.0,
    eps: float | jax.Array = 1e-8,
    weight_decay: float | jax.Array = 0.0,
    mask: Mask = None,
) -> GradientTransformation:
    r"""COCOB-Backprop (Orabona & Tommasi, 2017, "Training Deep Networks without Learning
    Rates Through Coin Betting", Algorithm 2): each entry bets a fraction of the wealth its
    past gradients have earned on the sign of the next move, with no learning rate.

    .. math::
        g_t &\leftarrow \eta_t\,\bigl(\nabla_\theta f(\theta_{t-1}) + \lambda\,\theta_{t-1}\bigr)
            \\
        L_t &= \max(L_{t-1}, |g_t|), \qquad G_t = G_{t-1} + |g_t|, \qquad
        R_t = \max\bigl(R_{t-1} - g_t(\theta_{t-1} - \theta_0),\ 0\bigr), \qquad
        C_t = C_{t-1} - g_t \\
        \theta_t &= \theta_0 + \frac{C_t}{L_t \max(G_t + L_t,\ \alpha L_t)}\,(L_t + R_t)

    entry by entry, with :math:`\theta_0` the parameters given to ``init``, :math:`L_0` =
    ``eps`` and :math:`G_0 = R_0 = C_0 = 0`. As in Optax, the learning rate :math:`\eta_t`
    multiplies the gradient *before* the bet; the bet is invariant to the gradient's scale
    (but for ``eps``), so a constant :math:`\eta` changes little: it is there for schedules.
    ``weight_decay`` is L2 regularisation added to the gradient, on the entries ``mask``
    marks (all when None).

    Chain: ``[add_decayed_weights(λ, mask)] → scale_by_learning_rate(η, flip_sign=False) →
    scale_by_cocob(α, ε)``; the decay is left out for a Python 0.

    State (named, for :func:`gradtx.tree_get`): ``count``, the one step count, and
    ``init_particles`` (:math:`\theta_0`), ``cumulative_gradients`` (:math:`C`), ``scale``
    (:math:`L`), ``subgradients`` (:math:`G`), ``reward`` (:math:`R`), per parameter.

    torch.optim: none. Equal step for step to ``optax.contrib.cocob`` (Optax 0.2.8), with the
    same arguments and defaults. Differences: none in the numbers. ``eps`` must be positive
    (Optax takes 0, with which a zero gradient entry gives 0/0); complex parameters are
    stepped as their real and imaginary parts.

    Args:
        learning_rate: :math:`\eta \ge 0`, a multiplier of the gradient, or a schedule.
        alpha: :math:`\alpha \ge 0`, which caps the fraction bet in the first steps.
        eps: :math:`L_0 > 0`.
        weight_decay: :math:`\lambda \ge 0`.
        mask: which leaves are decayed: None (all), a tree of bools (the parameters' tree or
            a prefix of it), or a function of the parameters returning one.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.optimizers.parameter_free import cocob
        >>> opt = cocob()
        >>> params = {"w": jnp.array([1.0, -2.0])}
        >>> updates, state = opt.update({"w": jnp.array([0.5, -3.0])}, opt.init(params), params)
        >>> [round(float(u), 6) for u in updates["w"]]  # the first step is -sign(g) / α
        [-0.01, 0.01]
    """
    return optimizer_chain(
        _decay(weight_decay, mask),
        scale_by_learning_rate(learning_rate, flip_sign=False),
        scale_by_cocob(alpha, eps),
    )


@optimizer(
    learning_rate=LEARNING_RATE, init_step=INIT_STEP, eps=POSITIVE,
    weight_decay=WEIGHT_DECAY.or_none(), mask=MASK,
)
def dog(
    learning_rate: ScalarOrSchedule = 1.0,
    init_step: tuple[str, float | jax.Array] = ("heuristic", 1e-6),
    eps: float | jax.Array = 1e-8,
    weight_decay: float | jax.Array | None = None,
    mask: Mask = None,
) -> GradientTransformation:
    r"""DoG, Distance over Gradients (Ivgi et al., 2023, "DoG is SGD's Best Friend: A
    Parameter-Free Dynamic Step Size Schedule"): SGD whose step size is the largest distance
    travelled from the initial parameters over the root of the summed squared gradient norms.

    .. math::
        g_t &\leftarrow \nabla_\theta f(\theta_{t-1}) + \lambda\,\theta_{t-1} \\
        \bar r_t &= \max\bigl(\bar r_{t-1},\ \lVert\theta_{t-1} - \theta_0\rVert\bigr), \qquad
        G_t = G_{t-1} + \lVert g_t\rVert^2 \\
        \theta_t &= \theta_{t-1} - \eta_t\, \frac{\bar r_t}{\sqrt{G_t + \epsilon}}\, g_t

    with the norms over all the parameters at once, :math:`\theta_0` the parameters given to
    ``init`` and :math:`G_0 = 0`. ``init_step`` sets the start: ``("heuristic", a)``,
    :math:`\bar r_0 = a(1 + \lVert\theta_0\rVert)` (the paper suggests :math:`a = 10^{-6}`, or
    :math:`10^{-4}` with batch normalisation); ``("distance", r)``, :math:`\bar r_0 = r`;
    ``("learning_rate", s)``, a first step of size :math:`s` (and :math:`\bar r_0 = 0`). The
    first step is small by design: the step size grows with the distance travelled. The
    authors recommend averaging the iterates (:func:`gradtx.with_param_average`).
    ``weight_decay`` (None: none) is L2 regularisation on the entries ``mask`` marks.

    Chain: ``[add_decayed_weights(λ, mask)] → scale_by_dog(init_step, ε) →
    scale_by_learning_rate(η)``.

    State (named, for :func:`gradtx.tree_get`): ``count``, the one step count, and
    ``is_init_step``, ``init_params`` (:math:`\theta_0`), ``max_dist`` (:math:`\bar r`),
    ``sum_sq_norm_grads`` (:math:`G`); the scalars in the default float dtype.

    torch.optim: none. Equal step for step to ``optax.contrib.dog`` (Optax 0.2.8), with the
    same arguments and defaults. Differences: none in the numbers. ``init_step`` is fixed when
    the optimizer is built (it cannot be set later), and its value must be positive (0 never
    moves), as must ``eps`` (with 0, a zero first gradient gives 0/0); Optax keeps the scalars
    in the narrowest parameter dtype (the same in float32 or float64 alone).

    Args:
        learning_rate: :math:`\eta \ge 0`, a multiplier of the step, or a schedule.
        init_step: ``(tag, value)`` with the tag ``"heuristic"``, ``"distance"`` or
            ``"learning_rate"`` and the value positive.
        eps: :math:`\epsilon > 0`, added to :math:`G_t`.
        weight_decay: :math:`\lambda \ge 0`, or None for none.
        mask: which leaves are decayed: None (all), a tree of bools (the parameters' tree or
            a prefix of it), or a function of the parameters returning one.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.optimizers.parameter_free import dog
        >>> opt = dog(init_step=("distance", 0.5))
        >>> params = {"w": jnp.array([1.0, -2.0])}
        >>> updates, state = opt.update({"w": jnp.array([3.0, 4.0])}, opt.init(params), params)
        >>> [round(float(u), 6) for u in updates["w"]]  # -r_0 g / ||g||
        [-0.3, -0.4]
    """
    return optimizer_chain(
        _decay(weight_decay, mask),
        scale_by_dog(init_step, eps),
        scale_by_learning_rate(learning_rate),
    )


@optimizer(
    learning_rate=LEARNING_RATE, init_estim_sq_dist=POSITIVE.or_none(), eps=POSITIVE,
    weight_decay=WEIGHT_DECAY.or_none(), mask=MASK,
)
def dowg(
    learning_rate: ScalarOrSchedule = 1.0,
    init_estim_sq_dist: float | jax.Array | None = None,
    eps: float | jax.Array = 1e-4,
    weight_decay: float | jax.Array | None = None,
    mask: Mask = None,
) -> GradientTransformation:
    r"""DoWG, Distance over Weighted Gradients (Khaled et al., 2023, "DoWG Unleashed: An
    Efficient Universal Parameter-Free Gradient Descent Method"): DoG whose gradient norms are
    weighted by the squared distance estimate of their step.

    .. math::
        g_t &\leftarrow \nabla_\theta f(\theta_{t-1}) + \lambda\,\theta_{t-1} \\
        \bar r_t^2 &= \max\bigl(\bar r_{t-1}^2,\ \lVert\theta_{t-1} - \theta_0\rVert^2\bigr),
        \qquad v_t = v_{t-1} + \bar r_t^2\, \lVert g_t\rVert^2 \\
        \theta_t &= \theta_{t-1} - \eta_t\, \frac{\bar r_t^2}{\sqrt{v_t} + \epsilon}\, g_t

    with the norms over all the parameters at once, :math:`\theta_0` the parameters given to
    ``init``, :math:`v_0 = 0` and :math:`\bar r_0^2` = ``init_estim_sq_dist`` (``eps`` when
    None). ``weight_decay`` (None: none) is L2 regularisation on the entries ``mask`` marks.

    Chain: ``[add_decayed_weights(λ, mask)] → scale_by_dowg(r̄_0², ε) →
    scale_by_learning_rate(η)``.

    State (named, for :func:`gradtx.tree_get`): ``count``, the one step count, and
    ``init_params`` (:math:`\theta_0`), ``weighted_sq_norm_grads`` (:math:`v`),
    ``estim_sq_dist`` (:math:`\bar r^2`); the scalars in the default float dtype.

    torch.optim: none. Equal step for step to ``optax.contrib.dowg`` (Optax 0.2.8), with the
    same arguments and defaults. Differences: none in the numbers. ``eps`` and
    ``init_estim_sq_dist`` must be positive (Optax takes 0, which gives 0/0 or never moves);
    Optax keeps the scalars in the narrowest parameter dtype (the same in float32 or float64
    alone).

    Args:
        learning_rate: :math:`\eta \ge 0`, a multiplier of the step, or a schedule.
        init_estim_sq_dist: :math:`\bar r_0^2 > 0`, the initial guess of the squared distance
            to the solution; None: ``eps``.
        eps: :math:`\epsilon > 0`, added to :math:`\sqrt{v_t}`.
        weight_decay: :math:`\lambda \ge 0`, or None for none.
        mask: which leaves are decayed: None (all), a tree of bools (the parameters' tree or
            a prefix of it), or a function of the parameters returning one.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.optimizers.parameter_free import dowg
        >>> opt = dowg(init_estim_sq_dist=0.25, eps=1e-12)
        >>> params = {"w": jnp.array([1.0, -2.0])}
        >>> updates, state = opt.update({"w": jnp.array([3.0, 4.0])}, opt.init(params), params)
        >>> [round(float(u), 6) for u in updates["w"]]  # -r_0 g / ||g||, r_0 = 0.5
        [-0.3, -0.4]
    """
    return optimizer_chain(
        _decay(weight_decay, mask),
        scale_by_dowg(init_estim_sq_dist, eps),
        scale_by_learning_rate(learning_rate),
    )

r"""Mechanic (Cutkosky, Defazio & Mehta, 2023, "Mechanic: A Learning Rate Tuner"): a wrapper
that learns, as the run goes, the scale by which to multiply the updates of any base
optimizer."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradtx import core, validation
from gradtx import tree as _tree
from gradtx.core import GradientTransformation, PyTree, flattenable, is_flattenable
from gradtx.optimizers import leaf_kinds
from gradtx.transforms import counting
from gradtx.transforms.d_adaptation import _root, _scalar, _scalar_dtype
from gradtx.transforms.parameter_free import squared_norm


class MechanizeState(NamedTuple):
    r"""The state of :func:`mechanize` (Optax's ``MechanicState`` field names).

    Attributes:
        base_optimizer_state: the base optimizer's state.
        count: the steps taken (an int32 scalar); None inside an optimizer, whose one step
            count gives it.
        r: :math:`r`, one accumulated reward per :math:`\beta` (a vector of ``num_betas``).
        m: :math:`m`, the running maximum of :math:`|h|` per :math:`\beta`.
        v: :math:`v`, the discounted sum of :math:`h^2` per :math:`\beta`.
        s: :math:`s`, the scale learnt per :math:`\beta`; the updates are scaled by their sum.
        x0: the parameters the run started from, :math:`\theta_0` (those given to the first
            ``update``).
    """

    base_optimizer_state: PyTree
    count: jax.Array | None
    r: jax.Array
    m: jax.Array
    v: jax.Array
    s: jax.Array
    x0: PyTree


def _vdot(a: PyTree, b: PyTree) -> jax.Array:
    """The real inner product of two trees, leaf by leaf in their order (a full contraction
    of each pair of leaves, at the highest precision), as a scalar of the default float
    dtype."""
    total = jnp.zeros([], _scalar_dtype())
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        if jnp.iscomplexobj(x) or jnp.iscomplexobj(y):
            dot = jnp.sum((jnp.conj(x) * y).real)
        else:
            dot = jnp.tensordot(x, y, jnp.ndim(x), precision=jax.lax.Precision.HIGHEST)
        total = total + dot.astype(total.dtype)
    return total


def mechanize(
    base_optimizer: GradientTransformation,
    weight_decay: float | jax.Array = 1e-2,
    eps: float | jax.Array = 1e-8,
    s_init: float | jax.Array = 1e-6,
    num_betas: int = 6,
) -> GradientTransformation:
    r"""Mechanic around ``base_optimizer``: the parameters move to
    :math:`\theta_0 + S_t \Delta_t`, where :math:`\Delta_t` is the sum of the base
    optimizer's updates so far and the scale :math:`S_t` is learnt online (by coin betting,
    with :math:`n` = ``num_betas`` discount factors run side by side). With :math:`u_t` the
    base update of the gradient :math:`g_t`, :math:`\lambda` = ``weight_decay``, :math:`s_0`
    = ``s_init`` and :math:`\beta_i = 1 - 10^{-i}` for :math:`i = 1..n`:

    .. math::
        S_{t-1} &= \textstyle\sum_i s_{t-1,i}, \qquad
        \Delta_{t-1} = (\theta_0 - \theta_{t-1}) / (S_{t-1} + \epsilon) \\
        \tilde g_t &= g_t + \lambda\, S_{t-1}\,
            \frac{\lVert g_t\rVert}{\lVert\theta_{t-1}\rVert + \epsilon}\, \theta_{t-1},
        \qquad h_t = \langle \tilde g_t, \Delta_{t-1} \rangle \\
        m_t &= \max(\beta\, m_{t-1},\ |h_t| + \epsilon), \qquad
        v_t = \beta^2 v_{t-1} + h_t^2, \qquad
        r_t = \beta\, r_{t-1} + \operatorname{clip}(h_t, -m_{t-1}, m_{t-1})\, s_{t-1} \\
        s_t &= \frac{(s_0 / n)\, m_t + \max(r_t, 0)}{\sqrt{v_t} + \epsilon}, \qquad
        \theta_t = \theta_0 - S_t\,(\Delta_{t-1} - u_t)

    elementwise in :math:`i` for :math:`m, v, r, s` (:math:`m_0 = v_0 = r_0 = 0`,
    :math:`s_{0,i} = s_0`), with the norms and the inner product over all the parameters at
    once. :math:`\theta_0` is the parameters given to the first ``update`` (those given to
    ``init`` are replaced, as a run that loads pre-trained weights after ``init`` needs). The
    output is :math:`\theta_t - \theta_{t-1}`. The decay term is Mechanic's own, independent
    of any weight decay in the base optimizer; it does not reach the base optimizer, which
    sees :math:`g_t`. Mechanic replaces the tuning of the base learning rate, not its
    schedule: give the base optimizer a schedule that peaks at 1.

    Equal step for step to ``optax.contrib.mechanize`` (Optax 0.2.8), with the same
    arguments and defaults. Differences: none in the numbers. Optax keeps :math:`r, m, v, s`
    in the narrowest parameter dtype; here they are in the default float dtype (the same in
    float32 or float64 alone); complex parameters, which Optax's clip refuses, are handled
    here with the real inner product; ``eps`` and ``s_init`` must be positive (Optax takes 0,
    which gives 0/0 or never moves).

    Args:
        base_optimizer: the optimizer whose updates are rescaled (any transformation; its
            update is the signed change of the parameters, as gradtx's optimizers give it).
        weight_decay: :math:`\lambda \ge 0`.
        eps: :math:`\epsilon > 0`.
        s_init: :math:`s_0 > 0`, the initial scale (the first steps are :math:`s_0` times the
            base updates).
        num_betas: :math:`n \ge 1`, a Python int: the discount factors
            :math:`1 - 10^{-1}, \dots, 1 - 10^{-n}`.

    ``update`` needs ``params``; a gradient of another floating-point width than its
    parameter is cast to the parameter's dtype, one of another kind (integer, real for
    complex) refused by path. State: :class:`MechanizeState`. It is
    :func:`gradtx.flattenable` when the base optimizer is.

    Example:
        >>> import jax.numpy as jnp
        >>> import gradtx as gx
        >>> from gradtx.wrappers.mechanize import mechanize
        >>> opt = mechanize(gx.sgd(learning_rate=1.0), s_init=0.5)
        >>> params = {"w": jnp.array([1.0, -2.0])}
        >>> updates, state = opt.update({"w": jnp.array([0.5, -3.0])}, opt.init(params), params)
        >>> [round(float(u), 6) for u in updates["w"]]  # the first step is -s_0 g
        [-0.25, 1.5]
    """
    core._check_transforms((base_optimizer,), "mechanize")
    validation.check_non_negative("weight_decay", weight_decay)
    validation.check_interval("eps", eps, 0.0, low_closed=False)
    validation.check_interval("s_init", s_init, 0.0, low_closed=False)
    n = validation.check_static_int("num_betas", num_betas)
    # Python floats, as the paper writes them: 0.9, 0.99, ...
    beta_values = [1.0 - 0.1**i for i in range(1, n + 1)]
    base_update = core.with_extra_args(base_optimizer.update)

    def init(params):
        zeros = jnp.zeros([n], _scalar_dtype())
        return MechanizeState(
            base_optimizer_state=base_optimizer.init(params),
            count=counting.init_count(),
            r=zeros,
            m=zeros,
            v=zeros,
            s=jnp.full([n], _scalar(s_init)),
            x0=jax.tree_util.tree_map(jnp.copy, params),
        )

    def update(updates, state, params=None, **extra_args):
        _tree.check_params(params, updates, name="mechanize")
        # A gradient of another float width than its parameter is cast to the parameter's
        # dtype first, as every gradtx optimizer casts it (so the base optimizer and the sums
        # here see the same numbers).
        updates = leaf_kinds.cast_gradients(updates, params)
        taken, count = counting.advance(state.count, "mechanize")
        base_updates, base_state = base_update(
            updates, state.base_optimizer_state, params, **extra_args
        )
        _tree.check_match(params, base_updates, reference_name="params",
                          other_name="base optimizer's updates")
        first = taken == 0
        x0 = jax.tree_util.tree_map(lambda p, x: jnp.where(first, p, x), params, state.x0)

        decay, epsilon, start = _scalar(weight_decay), _scalar(eps), _scalar(s_init)
        scale_sum = jnp.sum(state.s)
        coefficient = (decay * scale_sum * _root(squared_norm(updates))
                       / (_root(squared_norm(params)) + epsilon))
        decayed = jax.tree_util.tree_map(
            lambda g, p: g + _tree.cast_like(coefficient, p) * p, updates, params
        )
        denominator = scale_sum + epsilon
        delta_prev = jax.tree_util.tree_map(
            lambda p, x: (x - p) / _tree.cast_like(denominator, p), params, x0
        )
        h = _vdot(decayed, delta_prev)

        betas = jnp.asarray(beta_values, _scalar_dtype())
        clipped = jnp.clip(h, -state.m, state.m)
        m = jnp.maximum(betas * state.m, jnp.abs(h) + epsilon)
        v = betas**2 * state.v + h**2
        r = betas * state.r + clipped * state.s
        wealth = (start / n) * m + jnp.maximum(0.0, r)
        s = wealth / (_root(v) + epsilon)

        total = jnp.sum(s)

        def step(x, d, u, p):
            target = x - _tree.cast_like(total, d) * (d - u)
            return target - p

        out = jax.tree_util.tree_map(step, x0, delta_prev, base_updates, params)
        return out, MechanizeState(
            base_optimizer_state=base_state, count=count, r=r, m=m, v=v, s=s, x0=x0
        )

    return flattenable(GradientTransformation(init, update), is_flattenable(base_optimizer))

r"""Step sizes of the Polyak kind, which need the loss value of each step: the stochastic
Polyak step (SPS; Loizou et al., 2021) and MoMo's momentum models (Schaipp et al., 2023).

Polyak's step size for a loss :math:`f` with known lower bound :math:`f^\star` is
:math:`(f(x) - f^\star) / \lVert\nabla f(x)\rVert^2`: the step that would reach
:math:`f^\star` if :math:`f` were linear. It is one number for all the parameters, so these
transforms reduce over every leaf at once, and they read the loss from ``update``'s extra
argument ``value=`` (:func:`gradtx.extra_arg` raises a ``ValueError`` naming the transform
when it is missing):

.. code-block:: python

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, state = opt.update(grads, state, params, value=loss)

* :func:`scale_by_polyak` multiplies the updates by the capped Polyak step.
* :func:`scale_by_momo` and :func:`scale_by_momo_adam` are MoMo and MoMo-Adam: momentum
  (or Adam) whose step size is the minimum of the learning rate and a Polyak step of a model
  built from averaged losses, gradients and inner products. Their output is the whole update
  (weight decay included, sign flipped), ready for :func:`gradtx.apply_updates`.
"""

from __future__ import annotations

import functools
import operator
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradtx import live, validation
from gradtx import tree as _tree
from gradtx.core import EmptyState, GradientTransformation, PyTree, extra_arg, flattenable
from gradtx.transforms import counting, moments

VARIANTS = ("sps", "sps+")

# Below this, a squared norm counts as zero and no step is taken: the machine epsilon of
# float64, whatever the parameters' dtype (Optax's threshold, ``jnp.finfo(float).eps``).
_ZERO_NORM = float(np.finfo(np.float64).eps)


def check_variant(name, value):
    """``"sps"`` or ``"sps+"``."""
    return validation.check_choice(name, value, VARIANTS)


def loss_value(extra_args, needed_by: str):
    """The loss passed to ``update`` as ``value=``; a ``ValueError`` naming ``needed_by`` when
    it is missing or None."""
    value = extra_arg(extra_args, "value", needed_by)
    if value is None:
        raise ValueError(
            f"{needed_by} needs the loss value of this step: call "
            "update(updates, state, params, value=loss) with the loss (jax.value_and_grad "
            "gives it with the gradient); got value=None."
        )
    return value


def _add_up(per_leaf) -> jax.Array:
    """The sum of per-leaf scalars, added one leaf after another from 0, in the leaves'
    order (as Optax adds them, so that sums agree to the last bit)."""
    return functools.reduce(operator.add, per_leaf, 0)


def squared_norm(tree: PyTree) -> jax.Array:
    r""":math:`\lVert u\rVert^2 = \sum_{\text{leaves}} \sum_i u_i^2`, over all the leaves."""
    return jnp.asarray(_add_up(jnp.sum(u * u) for u in jax.tree_util.tree_leaves(tree)))


def inner_product(a: PyTree, b: PyTree) -> jax.Array:
    r""":math:`\langle a, b\rangle = \sum_{\text{leaves}} \sum_i a_i b_i` of two trees of the
    same structure (real leaves; optimizers hand complex leaves over as real pairs)."""
    pairs = zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True)
    return jnp.asarray(_add_up(
        jnp.tensordot(x, y, jnp.ndim(x), precision=jax.lax.Precision.HIGHEST) for x, y in pairs
    ))


def _safe_divide(numerator, denominator, is_zero):
    """``numerator / denominator`` where ``is_zero`` is False; 0 where it is True. The
    denominator is replaced by 1 there first, so no inf or NaN reaches a gradient taken
    through the step."""
    return jnp.where(is_zero, 0.0, numerator / jnp.where(is_zero, 1.0, denominator))


def _lowest_dtype(params) -> np.dtype:
    """The narrowest dtype among the parameters (Optax keeps MoMo's scalars in it, so that
    they never widen the parameters' updates); the default float for an empty tree."""
    dtypes = [jnp.result_type(p) for p in jax.tree_util.tree_leaves(params)]
    if not dtypes:
        return jnp.result_type(float)
    return min(dtypes, key=lambda d: np.dtype(d).itemsize)


def _scaled(tree, factor):
    """Every leaf times the scalar ``factor``, in the leaf's dtype."""
    return jax.tree_util.tree_map(lambda u: _tree.cast_like(factor, u) * u, tree)


# --------------------------------------------------------------------------------------------
# The stochastic Polyak step


def scale_by_polyak(
    f_min: float | jax.Array = 0.0,
    max_learning_rate: float | jax.Array = 1.0,
    eps: float | jax.Array = 0.0,
    variant: str = "sps",
) -> GradientTransformation:
    r"""Multiplies the updates :math:`u` by the stochastic Polyak step (Loizou et al., 2021),
    with the loss :math:`f` given as ``update(..., value=f)``:

    .. math::
        \gamma = \min\left(\frac{f - f^\star}{\lVert u\rVert^2 + \epsilon},\
            \gamma_{\max}\right), \qquad \text{out} = \gamma\, u

    and :math:`\gamma = 0` when :math:`\lVert u\rVert^2 + \epsilon` is at most the float64
    machine epsilon (no step on a zero gradient). :math:`\lVert u\rVert` is the norm of all
    the leaves together. ``variant="sps+"`` (Garrigos et al., 2023) takes the positive part
    :math:`(f - f^\star)_+`, so a loss below ``f_min`` gives no step rather than a step
    backwards.

    Args:
        f_min: :math:`f^\star`, a lower bound of the loss (0 for a model that can fit the
            data exactly).
        max_learning_rate: :math:`\gamma_{\max} \ge 0`, the cap of the step.
        eps: :math:`\epsilon \ge 0`, added to the squared norm.
        variant: ``"sps"`` or ``"sps+"``.

    State: :class:`gradtx.EmptyState` (none). Equal to ``optax.scale_by_polyak``
    (Optax 0.2.8).
    """
    validation.check_interval("f_min", f_min)
    validation.check_non_negative("max_learning_rate", max_learning_rate)
    validation.check_non_negative("eps", eps)
    check_variant("variant", variant)

    def init(params):
        del params
        return EmptyState()

    def update(updates, state, params=None, **extra_args):
        del params
        value = loss_value(extra_args, "scale_by_polyak")
        norm = squared_norm(updates)
        gap = (jnp.asarray(value) - jnp.asarray(live.read(f_min))).astype(norm.dtype)
        if variant == "sps+":
            gap = jnp.maximum(gap, 0)
        denominator = norm + live.read(eps)
        step = jnp.minimum(
            _safe_divide(gap, denominator, denominator <= _ZERO_NORM),
            live.read(max_learning_rate),
        )
        return _scaled(updates, step), state

    return flattenable(GradientTransformation(init, update))


# --------------------------------------------------------------------------------------------
# MoMo


class MomoState(NamedTuple):
    r"""The state of :func:`scale_by_momo`, with Optax's field names.

    Attributes:
        exp_avg: :math:`m`, the moving average of the gradients, per parameter.
        barf: :math:`\bar f`, the moving average of the losses (a scalar).
        gamma: :math:`\gamma`, the moving average of :math:`\langle g_t, x_t\rangle`.
        lb: :math:`f_*`, the lower bound of the loss in use (moves only with
            ``adapt_lower_bound``).
        count: the number of updates seen; None inside an optimizer, which keeps one count
            for all its transforms.
    """

    exp_avg: PyTree
    barf: jax.Array
    gamma: jax.Array
    lb: jax.Array
    count: jax.Array | None


class MomoAdamState(NamedTuple):
    r"""The state of :func:`scale_by_momo_adam`: :class:`MomoState`'s fields and Adam's
    second moment ``exp_avg_sq`` (:math:`v`), with Optax's field names."""

    exp_avg: PyTree
    exp_avg_sq: PyTree
    barf: jax.Array
    gamma: jax.Array
    lb: jax.Array
    count: jax.Array | None


def _check_momo(learning_rate, lower_bound, weight_decay, adapt_lower_bound) -> None:
    validation.check_non_negative("learning_rate", learning_rate)
    validation.check_interval("lower_bound", lower_bound)
    validation.check_non_negative("weight_decay", weight_decay)
    validation.check_bool("adapt_lower_bound", adapt_lower_bound)


def _learning_rate_now(learning_rate, taken):
    """The learning rate of this step: a schedule evaluated at the steps taken before it (a
    transform built on its own); a number or a live value otherwise."""
    if callable(learning_rate):
        return jnp.asarray(learning_rate(taken))
    return live.read(learning_rate)


def _scalars_init(params, lower_bound):
    dtype = _lowest_dtype(params)
    zero = jnp.zeros([], dtype)
    return zero, zero, jnp.asarray(live.read(lower_bound), dtype)


def _momo_step(barf, gamma, iprod, norm, lb, alpha, weight_decay, lower_bound, adapt, bc1=None):
    """MoMo's step size :math:`\\tau_t`, the decay factor of the parameters and the floor of the
    lower bound, shared by MoMo and MoMo-Adam (``bc1``: MoMo-Adam's first-moment bias
    correction :math:`1-\\beta_1^t`, by which it scales the lower bound and the cap; None for
    MoMo, none)."""
    lower = live.read(lower_bound)
    decayed = alpha * live.read(weight_decay)
    rho = 1 + decayed
    scaled_lb = lb if bc1 is None else bc1 * lb
    if adapt:
        cap = rho * (barf - gamma) + iprod
        floor = cap / (2 * rho) if bc1 is None else cap / (2 * bc1 * rho)
        lb = jnp.where(cap < rho * scaled_lb, jnp.maximum(floor, lower), lb)
        scaled_lb = lb if bc1 is None else bc1 * lb
    gap = jnp.maximum(rho * (barf - scaled_lb - gamma) + iprod, 0.0)
    largest = alpha if bc1 is None else alpha / bc1
    tau = jnp.minimum(largest, _safe_divide(gap, norm, norm <= _ZERO_NORM))
    return tau, -decayed / rho, lower


def scale_by_momo(
    learning_rate: float | jax.Array = 1.0,
    beta: float | jax.Array = 0.9,
    lower_bound: float | jax.Array = 0.0,
    weight_decay: float | jax.Array = 0.0,
    adapt_lower_bound: bool = False,
) -> GradientTransformation:
    r"""MoMo's update (Schaipp et al., 2023, "MoMo: Momentum Models for Adaptive Learning
    Rates", Algorithm 1 with weight decay): SGD with momentum whose step size is the lesser
    of the learning rate :math:`\alpha_t` and a Polyak step of the averaged model. With the
    loss :math:`f_t` given as ``update(..., value=f_t)``, parameters :math:`x_t`, gradient
    :math:`g_t`, :math:`\rho = 1 + \alpha_t\lambda`, and :math:`\beta_t = \beta` but
    :math:`\beta_1 = 0` (the first step takes the first loss and gradient as they are):

    .. math::
        \bar f_t &= \beta_t \bar f_{t-1} + (1-\beta_t) f_t, \quad
        m_t = \beta_t m_{t-1} + (1-\beta_t) g_t, \quad
        \gamma_t = \beta_t \gamma_{t-1} + (1-\beta_t) \langle g_t, x_t\rangle \\
        \tau_t &= \min\left(\alpha_t,\
            \frac{\bigl(\rho(\bar f_t - f_* - \gamma_t) + \langle m_t, x_t\rangle\bigr)_+}
                 {\lVert m_t\rVert^2}\right), \qquad
        \text{out}_t = -\frac{\alpha_t\lambda}{\rho}\, x_t - \tau_t m_t

    with :math:`\tau_t = 0` when :math:`\lVert m_t\rVert^2` is at most the float64 machine
    epsilon. With ``adapt_lower_bound`` the bound :math:`f_*` (``lb``, starting at
    ``lower_bound``) is first lowered to :math:`\max(c/(2\rho), \text{lower\_bound})` when
    :math:`c = \rho(\bar f_t - \gamma_t) + \langle m_t, x_t\rangle < \rho f_*`, and after the
    step set to :math:`\max(\bar f_t + \langle m_t, x_t\rangle - \gamma_t -
    \tfrac12\tau_t\lVert m_t\rVert^2, \text{lower\_bound})`.

    The output is the whole update (sign flipped, decay included); it needs the parameters.
    A ``learning_rate`` schedule is evaluated at the number of steps taken before this one.
    The scalars :math:`\bar f, \gamma, f_*` are kept in the narrowest dtype of the
    parameters, :math:`m` in each parameter's dtype. Equal to the update of
    ``optax.contrib.momo`` (Optax 0.2.8).
    """
    _check_momo(learning_rate, lower_bound, weight_decay, adapt_lower_bound)
    validation.check_unit_interval("beta", beta)

    def init(params):
        barf, gamma, lb = _scalars_init(params, lower_bound)
        return MomoState(
            exp_avg=_tree.full_like(params, 0.0), barf=barf, gamma=gamma, lb=lb,
            count=counting.init_count(),
        )

    def update(updates, state, params=None, **extra_args):
        _tree.check_params(params, updates, name="scale_by_momo")
        value = loss_value(extra_args, "scale_by_momo")
        taken, count = counting.advance(state.count, "scale_by_momo")
        dtype = state.barf.dtype
        # The first step takes the first loss and gradient as they are (no average yet).
        b = jnp.where(taken == 0, 0.0, live.read(beta))

        def leaf(g, m):
            m = moments.ema_update(m, g, b)
            return m, m

        _, (exp_avg,) = _tree.leafwise(leaf, updates, state.exp_avg, name="scale_by_momo")
        barf = moments.ema_update(state.barf, jnp.asarray(value, dtype), b)
        gamma = moments.ema_update(state.gamma, inner_product(updates, params).astype(dtype), b)
        norm = squared_norm(exp_avg)
        iprod = inner_product(exp_avg, params)
        tau, decay, lower = _momo_step(
            barf, gamma, iprod, norm, state.lb, _learning_rate_now(learning_rate, taken),
            weight_decay, lower_bound, adapt_lower_bound,
        )

        def step(m, p):
            return _tree.cast_like(decay, p) * p - _tree.cast_like(tau, m) * m

        out = jax.tree_util.tree_map(step, exp_avg, params)
        if adapt_lower_bound:
            new_lb = jnp.maximum((barf + iprod - gamma) - 0.5 * tau * norm, lower)
        else:
            new_lb = state.lb
        return out, MomoState(
            exp_avg=exp_avg, barf=barf.astype(dtype), gamma=gamma.astype(dtype),
            lb=jnp.asarray(new_lb, dtype), count=count,
        )

    return flattenable(GradientTransformation(init, update))


def scale_by_momo_adam(
    learning_rate: float | jax.Array = 1e-2,
    b1: float | jax.Array = 0.9,
    b2: float | jax.Array = 0.999,
    eps: float | jax.Array = 1e-8,
    lower_bound: float | jax.Array = 0.0,
    weight_decay: float | jax.Array = 0.0,
    adapt_lower_bound: bool = False,
) -> GradientTransformation:
    r"""MoMo-Adam's update (Schaipp et al., 2023, Algorithm 3): MoMo's Polyak step in the
    metric of Adam's preconditioner. With :math:`\rho = 1 + \alpha_t\lambda` and the bias
    corrections :math:`c_{1} = 1-\beta_1^t`, :math:`c_{2} = 1-\beta_2^t`:

    .. math::
        \bar f_t &= \beta_1 \bar f_{t-1} + (1-\beta_1) f_t, \quad
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2 \\
        \gamma_t &= \beta_1 \gamma_{t-1} + (1-\beta_1) \langle g_t, x_t\rangle, \qquad
        D_t = \epsilon + \sqrt{v_t / c_2}, \qquad
        \lVert m_t\rVert_D^2 = \langle m_t, m_t / D_t\rangle \\
        \tau_t &= \min\left(\frac{\alpha_t}{c_1},\
            \frac{\bigl(\rho(\bar f_t - c_1 f_* - \gamma_t) + \langle m_t, x_t\rangle
                  \bigr)_+}{\lVert m_t\rVert_D^2}\right), \qquad
        \text{out}_t = -\frac{\alpha_t\lambda}{\rho}\, x_t - \tau_t \frac{m_t}{D_t}

    with :math:`\tau_t = 0` when :math:`\lVert m_t\rVert_D^2` is at most the float64 machine
    epsilon. With ``adapt_lower_bound``, :math:`f_*` is first lowered to
    :math:`\max(c/(2 c_1 \rho), \text{lower\_bound})` when :math:`c = \rho(\bar f_t -
    \gamma_t) + \langle m_t, x_t\rangle < \rho c_1 f_*`, and after the step set to
    :math:`\max\bigl((\bar f_t + \langle m_t, x_t\rangle - \gamma_t -
    \tfrac12\tau_t\lVert m_t\rVert_D^2)/c_1, \text{lower\_bound}\bigr)`.

    The output is the whole update (sign flipped, decay included); it needs the parameters.
    Unlike :func:`scale_by_momo` the averages start at zero and are bias-corrected. Equal to
    the update of ``optax.contrib.momo_adam`` (Optax 0.2.8).
    """
    _check_momo(learning_rate, lower_bound, weight_decay, adapt_lower_bound)
    validation.check_unit_interval("b1", b1)
    validation.check_unit_interval("b2", b2)
    validation.check_non_negative("eps", eps)

    def init(params):
        barf, gamma, lb = _scalars_init(params, lower_bound)
        return MomoAdamState(
            exp_avg=_tree.full_like(params, 0.0), exp_avg_sq=_tree.full_like(params, 0.0),
            barf=barf, gamma=gamma, lb=lb, count=counting.init_count(),
        )

    def update(updates, state, params=None, **extra_args):
        _tree.check_params(params, updates, name="scale_by_momo_adam")
        value = loss_value(extra_args, "scale_by_momo_adam")
        taken, count = counting.advance(state.count, "scale_by_momo_adam")
        dtype = state.barf.dtype
        t = counting.as_float(taken) + 1
        beta1, beta2, epsilon = live.read(b1), live.read(b2), live.read(eps)
        bc1 = (1 - jnp.asarray(beta1, t.dtype) ** t).astype(dtype)
        bc2 = (1 - jnp.asarray(beta2, t.dtype) ** t).astype(dtype)

        def leaf(g, m, v):
            m = moments.ema_update(m, g, beta1)
            v = moments.ema_update(v, g * g, beta2)
            return m, m, v

        _, (exp_avg, exp_avg_sq) = _tree.leafwise(
            leaf, updates, state.exp_avg, state.exp_avg_sq, name="scale_by_momo_adam"
        )
        precond = jax.tree_util.tree_map(
            lambda v: _tree.cast_like(epsilon, v) + jnp.sqrt(v / _tree.cast_like(bc2, v)),
            exp_avg_sq,
        )
        norm = inner_product(exp_avg, jax.tree_util.tree_map(operator.truediv, exp_avg, precond))
        barf = moments.ema_update(state.barf, jnp.asarray(value, dtype), beta1)
        gamma = moments.ema_update(
            state.gamma, inner_product(updates, params).astype(dtype), beta1
        )
        iprod = inner_product(exp_avg, params)
        tau, decay, lower = _momo_step(
            barf, gamma, iprod, norm, state.lb, _learning_rate_now(learning_rate, taken),
            weight_decay, lower_bound, adapt_lower_bound, bc1,
        )

        def step(m, d, p):
            return _tree.cast_like(decay, p) * p - _tree.cast_like(tau, m) * m / d

        out = jax.tree_util.tree_map(step, exp_avg, precond, params)
        if adapt_lower_bound:
            new_lb = jnp.maximum(((barf + iprod - gamma) - 0.5 * tau * norm) / bc1, lower)
        else:
            new_lb = state.lb
        return out, MomoAdamState(
            exp_avg=exp_avg, exp_avg_sq=exp_avg_sq, barf=barf.astype(dtype),
            gamma=gamma.astype(dtype), lb=jnp.asarray(new_lb, dtype), count=count,
        )

    return flattenable(GradientTransformation(init, update))

"""Dividing updates by the root of a second-moment statistic: the shared core of RMSProp,
Adagrad, Adadelta, Adam, AMSGrad and NAdam."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradtx import live, validation
from gradtx import tree as _tree
from gradtx.core import GradientTransformation, PyTree, flattenable, identity, parallel
from gradtx.transforms import moments


def divide_by_root(
    numerator: GradientTransformation,
    second_moment: GradientTransformation,
    *,
    eps: float | jax.Array,
    eps_in_sqrt: bool = False,
    eps_root: float | jax.Array = 0.0,
) -> GradientTransformation:
    """Divides one statistic of the updates by the root of another, both of the *same* input:

    .. math::
        \\text{out} = \\frac{n(u)}{\\sqrt{v(u) + \\epsilon_{\\text{root}}} + \\epsilon}
        \\quad\\text{or, with } \\texttt{eps\\_in\\_sqrt}, \\quad
        \\frac{n(u)}{\\sqrt{v(u) + \\epsilon_{\\text{root}} + \\epsilon}}

    (``eps_root``, Optax's, keeps the root's derivative finite at :math:`v = 0`; a Python 0
    leaves it out.)

    ``numerator`` and ``second_moment`` are any transformations; they run side by side through
    :func:`gradtx.parallel`. Adam's scaling is::

        divide_by_root(chain(ema(b1), bias_correction(b1)),
                  chain(ema_of_squares(b2), bias_correction(b2)), eps=eps)
    """
    validation.check_non_negative("eps", eps)
    validation.check_bool("eps_in_sqrt", eps_in_sqrt)
    validation.check_non_negative("eps_root", eps_root)
    with_root_eps = not validation.is_static_zero(eps_root)

    def divide(n, v):
        e = _tree.cast_like(eps, v)  # a live eps is read here
        if with_root_eps:
            v = v + _tree.cast_like(eps_root, v)
        return n / (jnp.sqrt(v + e) if eps_in_sqrt else jnp.sqrt(v) + e)

    return parallel(numerator, second_moment, combine=divide, elementwise=True)


def scale_by_rms(
    decay: float | jax.Array = 0.99,
    eps: float | jax.Array = 1e-8,
    centered: bool = False,
    eps_in_sqrt: bool = False,
    *,
    mu_dtype=None,
    nu_dtype=None,
) -> GradientTransformation:
    """Divides updates by the root of their moving second moment (RMSProp's scaling):

    .. math::
        v_t = \\alpha v_{t-1} + (1-\\alpha) u_t^2, \\qquad
        \\text{out}_t = \\frac{u_t}{\\sqrt{v_t - [m_t^2]} + \\epsilon}

    where :math:`[m_t^2]`, the squared moving mean, is subtracted only when ``centered``.
    :math:`v` is stored in ``nu_dtype``, :math:`m` in ``mu_dtype`` (default: the parameters').
    Defaults and eps placement follow ``torch.optim.RMSprop`` (eps outside the root), unlike
    ``optax.scale_by_rms`` (decay 0.9, eps inside the root).
    """
    if centered:
        statistic = moments.ema_variance(decay, mu_dtype=mu_dtype, nu_dtype=nu_dtype)
    else:
        statistic = moments.ema_of_squares(decay, dtype=nu_dtype)
    return divide_by_root(identity(), statistic, eps=eps, eps_in_sqrt=eps_in_sqrt)


def scale_by_rss(
    initial_accumulator_value: float | jax.Array = 0.0,
    eps: float | jax.Array = 1e-10,
    *,
    nu_dtype=None,
) -> GradientTransformation:
    """Divides updates by the root of the running sum of their squares (Adagrad's scaling):

    .. math:: s_t = s_{t-1} + u_t^2, \\qquad \\text{out}_t = \\frac{u_t}{\\sqrt{s_t} + \\epsilon}

    :math:`s` is stored in ``nu_dtype`` (default: the parameters' dtype).
    """
    validation.check_non_negative("initial_accumulator_value", initial_accumulator_value)
    return divide_by_root(
        identity(), moments.sum_of_squares(initial_accumulator_value, dtype=nu_dtype), eps=eps
    )


class PastUpdateRmsState(NamedTuple):
    """The moving average of the squared outputs (torch's Adadelta's ``acc_delta``)."""

    acc_delta: PyTree


def scale_by_past_update_rms(
    decay: float | jax.Array = 0.9, eps: float | jax.Array = 1e-6, *, dtype=None
) -> GradientTransformation:
    """Multiplies updates by the RMS of this transformation's own previous outputs, then
    records the new output (Adadelta's unit correction, Zeiler 2012):

    .. math::
        \\Delta_t = \\sqrt{a_{t-1} + \\epsilon}\\; u_t, \\qquad
        a_t = \\rho\\, a_{t-1} + (1-\\rho)\\, \\Delta_t^2

    It outputs :math:`\\Delta_t`. Preceded by ``scale_by_rms(rho, eps, eps_in_sqrt=True)`` it
    gives Adadelta's step. :math:`a` is stored in ``dtype`` (default: the parameters').
    """
    dtype = validation.check_state_dtype("dtype", dtype)
    validation.check_unit_interval("decay", decay)
    validation.check_non_negative("eps", eps)

    def init(params):
        return PastUpdateRmsState(acc_delta=_tree.full_like(params, 0.0, dtype))

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        rho, epsilon = live.read(decay), live.read(eps)

        def leaf(u, acc):
            delta = jnp.sqrt(acc + _tree.cast_like(epsilon, acc)) * u
            return delta, moments.ema_update(acc, delta * delta, rho)

        out, (acc,) = _tree.leafwise(
            leaf, updates, state.acc_delta, name="scale_by_past_update_rms"
        )
        return out, PastUpdateRmsState(acc_delta=acc)

    return flattenable(GradientTransformation(init, update))

"""Running statistics of the updates: moving averages, sums of squares, running maxima, and the
bias correction of a moving average.

Each transformation here outputs the statistic itself (not the updates scaled by it), so that
optimizers can combine statistics of the same gradient with :func:`gradtx.parallel`. All of
them share one per-leaf accumulator, :func:`_accumulator`, so no optimizer holds a private copy
of moment code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradtx import live, validation
from gradtx import tree as _tree
from gradtx.core import GradientTransformation, PyTree, flattenable, parallel
from gradtx.transforms import counting


class FirstMomentState(NamedTuple):
    """A moving average of the updates, per parameter (Adam's :math:`m`)."""

    mu: PyTree


class SecondMomentState(NamedTuple):
    """A statistic of the squared (or absolute) updates, per parameter (Adam's :math:`v`)."""

    nu: PyTree


class RunningMaxState(NamedTuple):
    """The running maximum of a second moment, per parameter (AMSGrad's :math:`\\hat v`)."""

    nu_max: PyTree


class SumOfSquaresState(NamedTuple):
    """The running sum of squared updates, per parameter (Adagrad's accumulator)."""

    sum_of_squares: PyTree


class CountState(NamedTuple):
    """The number of updates seen so far; None inside an optimizer, which keeps one count for
    all its transforms (see :mod:`gradtx.transforms.counting`)."""

    count: jax.Array | None


def ema_update(moment: jax.Array, value: jax.Array, decay) -> jax.Array:
    """One step of an exponential moving average, :math:`\\beta m + (1-\\beta) x`, in the
    moment's dtype. Every moving average in gradtx goes through this function."""
    decay = _tree.cast_like(decay, moment)
    return (decay * moment + (1 - decay) * value).astype(moment.dtype)


def _accumulator(
    state_class: type,
    name: str,
    step: Callable[[jax.Array, jax.Array], jax.Array],
    of: Callable[[jax.Array], jax.Array] = lambda u: u,
    initial_value: float | jax.Array = 0.0,
    dtype=None,
) -> GradientTransformation:
    """A transformation that keeps one per-parameter statistic ``s`` (the one field of
    ``state_class``), updates it with ``s <- step(s, of(u))`` and outputs the new ``s``.

    ``s`` is stored in ``dtype`` (default: each parameter's dtype). The step is computed in the
    wider of the state's and the update's dtypes, and its unrounded result is the output, so a
    bfloat16 state costs precision only in what is carried to the next step. Hyperparameters
    that ``step`` uses are read by it (they may be live)."""
    dtype = validation.check_state_dtype("dtype", dtype)

    def init(params):
        return state_class(_tree.full_like(params, live.read(initial_value), dtype))

    def update(updates, state, params=None, **extra_args):
        del params, extra_args

        def leaf(u, s):
            new = step(s, of(u))
            return new, new

        out, (statistic,) = _tree.leafwise(leaf, updates, state[0], name=name)
        return out, state_class(statistic)

    return flattenable(GradientTransformation(init, update))


def _square(u):
    return u * u


def ema(decay: float | jax.Array, *, dtype=None) -> GradientTransformation:
    """The exponential moving average of the updates (a first moment), starting at zero:

    .. math:: m_t = \\beta\\, m_{t-1} + (1-\\beta)\\, u_t

    It outputs :math:`m_t`. Follow it with :func:`bias_correction` for Adam's :math:`\\hat m_t`.
    ``dtype`` is the dtype the average is stored in (default: the parameters').
    """
    validation.check_unit_interval("decay", decay)
    return _accumulator(
        FirstMomentState, "ema", lambda s, x: ema_update(s, x, live.read(decay)), dtype=dtype
    )


def ema_of_squares(decay: float | jax.Array, *, dtype=None) -> GradientTransformation:
    """The exponential moving average of the squared updates (an uncentered second moment),
    starting at zero:

    .. math:: v_t = \\beta\\, v_{t-1} + (1-\\beta)\\, u_t^2

    It outputs :math:`v_t`, stored in ``dtype`` (default: the parameters').
    """
    validation.check_unit_interval("decay", decay)
    return _accumulator(
        SecondMomentState, "ema_of_squares", lambda s, x: ema_update(s, x, live.read(decay)),
        of=_square, dtype=dtype,
    )


def ema_variance(
    decay: float | jax.Array, *, mu_dtype=None, nu_dtype=None
) -> GradientTransformation:
    """The moving variance of the updates, :math:`v_t - m_t^2`, where :math:`v_t` is
    :func:`ema_of_squares` and :math:`m_t` is :func:`ema` of the same input (centered RMSProp).
    """
    return parallel(
        ema_of_squares(decay, dtype=nu_dtype),
        ema(decay, dtype=mu_dtype),
        combine=lambda sq, m: sq - m * m,
        elementwise=True,
    )


def sum_of_squares(
    initial_value: float | jax.Array = 0.0, *, dtype=None
) -> GradientTransformation:
    """The running sum of squared updates (Adagrad's accumulator), starting at
    ``initial_value``:

    .. math:: s_t = s_{t-1} + u_t^2, \\qquad s_0 = \\text{initial\\_value}
    """
    validation.check_non_negative("initial_value", initial_value)
    return _accumulator(
        SumOfSquaresState, "sum_of_squares", lambda s, x: (s + x).astype(s.dtype), of=_square,
        initial_value=initial_value, dtype=dtype,
    )


def running_max(*, dtype=None) -> GradientTransformation:
    """The elementwise running maximum of the updates, starting at zero as torch's AMSGrad does
    (it is meant for non-negative statistics such as a second moment):

    .. math:: \\hat v_t = \\max(\\hat v_{t-1}, u_t), \\qquad \\hat v_0 = 0
    """
    return _accumulator(RunningMaxState, "running_max", jnp.maximum, dtype=dtype)


def bias_correction(decay: float | jax.Array) -> GradientTransformation:
    """Divides updates by :math:`1-\\beta^t`, where :math:`t` counts this transformation's
    updates from 1. This corrects the bias toward zero of a moving average that starts at zero:

    .. math:: \\hat m_t = m_t / (1-\\beta^t)

    Place it after :func:`ema` or :func:`ema_of_squares` (or after :func:`running_max`, for
    torch's AMSGrad) with the same ``decay``.
    """
    validation.check_unit_interval("decay", decay)

    def init(params):
        del params
        return CountState(count=counting.init_count())

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        taken, count = counting.advance(state.count, "bias_correction")
        # The reciprocal is computed once per step, outside the elementwise work: a multiply
        # per element instead of a divide, which costs several times more (an optimizer step
        # on CPU is bound by its divides and square roots as much as by memory).
        t = counting.as_float(taken) + 1
        inverse = 1 / (1 - jnp.asarray(live.read(decay), t.dtype) ** t)
        out = jax.tree_util.tree_map(lambda u: u * _tree.cast_like(inverse, u), updates)
        return out, CountState(count=count)

    return flattenable(GradientTransformation(init, update))


def weighted_infinity_norm(
    decay: float | jax.Array, eps: float | jax.Array = 0.0, *, dtype=None
) -> GradientTransformation:
    """The exponentially weighted infinity norm of the updates (Adamax's denominator, Kingma &
    Ba, 2015, section 7.1), starting at zero:

    .. math:: s_t = \\max(\\beta\\, s_{t-1},\\ |u_t| + \\epsilon)

    It outputs :math:`s_t`. ``eps`` sits inside the max, as in ``torch.optim.Adamax``, so that
    :math:`s_t \\ge \\epsilon` and dividing by it is safe even after all-zero updates.
    """
    validation.check_unit_interval("decay", decay)
    validation.check_non_negative("eps", eps)

    def step(s, x):
        return jnp.maximum(_tree.cast_like(decay, s) * s, x + _tree.cast_like(eps, s))

    return _accumulator(
        SecondMomentState, "weighted_infinity_norm", step, of=jnp.abs, dtype=dtype
    )


def yogi_second_moment(
    decay: float | jax.Array, initial_value: float | jax.Array = 1e-6, *, dtype=None
) -> GradientTransformation:
    """Yogi's additive second moment (Zaheer et al., 2018), starting at ``initial_value``:

    .. math::
        v_t = v_{t-1} - (1-\\beta)\\,\\operatorname{sign}(v_{t-1} - u_t^2)\\, u_t^2,
        \\qquad v_0 = \\text{initial\\_value}

    Where :func:`ema_of_squares` moves :math:`v` a fraction :math:`1-\\beta` of the *gap* to
    :math:`u^2`, this moves it by :math:`(1-\\beta)u^2` toward :math:`u^2`: when the updates
    become small, :math:`v` shrinks by little, so a divisor :math:`\\sqrt{v}` does not let the
    effective step grow quickly. It outputs :math:`v_t` (positive at every step when
    :math:`v_0 > 0`).
    """
    validation.check_unit_interval("decay", decay)
    validation.check_non_negative("initial_value", initial_value)

    def step(v, x):
        rate = 1 - _tree.cast_like(decay, v)
        return (v - rate * jnp.sign(v - x) * x).astype(v.dtype)

    return _accumulator(
        SecondMomentState, "yogi_second_moment", step, of=_square,
        initial_value=initial_value, dtype=dtype,
    )

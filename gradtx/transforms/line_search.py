r"""The strong-Wolfe line search of ``torch.optim.LBFGS`` on a flat parameter vector, and the
loop and branch helpers it is written with.

:func:`strong_wolfe` searches along a direction :math:`d` from :math:`x` for a step :math:`t`
with

.. math::
    f(x + t d) \le f(x) + c_1 t\, g^\top d \quad \text{(sufficient decrease)}, \qquad
    |\nabla f(x + t d)^\top d| \le -c_2\, g^\top d \quad \text{(curvature)},

as torch's ``_strong_wolfe`` does: a bracketing phase that grows the step by cubic
interpolation (clipped to :math:`[t + 0.01 (t - t_\text{prev}),\ 10 t]`) until a bracket or a
Wolfe point is found, then a zoom phase that shrinks the bracket by cubic interpolation, kept
at least a tenth of the bracket away from its ends after a step of insufficient progress. At
most ``max_ls`` evaluations follow the first one.

:func:`while_loop` and :func:`cond` run as plain Python while their predicate is a concrete
value and as ``lax.while_loop`` and ``lax.cond`` once it is traced, so the search is compiled
under ``jit`` and runs without compiling anything (one evaluation of the objective after the
other, as torch does) when it is called eagerly with an objective that is not traced.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx import validation

# torch's constants for L-BFGS's search: LBFGS.step passes none of them.
C1 = 1e-4
C2 = 0.9
TOLERANCE_CHANGE = 1e-9


def while_loop(cond_fn: Callable[[Any], Any], body_fn: Callable[[Any], Any], carry):
    """``lax.while_loop(cond_fn, body_fn, carry)``, run as a Python loop while ``cond_fn``
    returns a concrete value. Once it returns a traced one (inside ``jit``, or once the carry
    holds values an objective traced) the rest of the loop is handed to ``lax.while_loop``
    from the current carry, so the carry's types must be those ``lax.while_loop`` keeps."""
    while True:
        keep = cond_fn(carry)
        if validation.is_traced(keep):
            return jax.lax.while_loop(cond_fn, body_fn, carry)
        if not bool(keep):
            return carry
        carry = body_fn(carry)


def cond(pred, true_fn: Callable[[Any], Any], false_fn: Callable[[Any], Any], operand):
    """``lax.cond(pred, true_fn, false_fn, operand)``, a Python ``if`` for a concrete
    ``pred``: only the chosen branch runs, and nothing is compiled."""
    if validation.is_traced(pred):
        return jax.lax.cond(pred, true_fn, false_fn, operand)
    return true_fn(operand) if bool(pred) else false_fn(operand)


def _py_max(a, b):
    """Python's ``max(a, b)``: ``a`` unless ``b > a`` (so NaN comparisons keep ``a``)."""
    return jnp.where(b > a, b, a)


def _py_min(a, b):
    """Python's ``min(a, b)``: ``a`` unless ``b < a``."""
    return jnp.where(b < a, b, a)


def cubic_minimizer(x1, f1, g1, x2, f2, g2, bounds=None):
    r"""The minimiser of the cubic through :math:`(x_1, f_1)`, :math:`(x_2, f_2)` with slopes
    :math:`g_1, g_2`, clipped to ``bounds`` (default: between the two points); the middle of
    the bounds when the cubic has no real minimiser. torch's ``_cubic_interpolate``:

    .. math::
        d_1 = g_1 + g_2 - 3 \frac{f_1 - f_2}{x_1 - x_2}, \quad
        d_2 = \sqrt{d_1^2 - g_1 g_2}, \quad
        x^\star = x_2 - (x_2 - x_1) \frac{g_2 + d_2 - d_1}{g_2 - g_1 + 2 d_2}
        \ (x_1 \le x_2; \text{ the mirror image otherwise}).
    """
    ordered = x1 <= x2
    if bounds is None:
        low, high = jnp.where(ordered, x1, x2), jnp.where(ordered, x2, x1)
    else:
        low, high = bounds
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1**2 - g1 * g2
    real = d2_square >= 0
    d2 = jnp.sqrt(jnp.where(real, d2_square, 0))
    from_x2 = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
    from_x1 = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
    clipped = _py_min(_py_max(jnp.where(ordered, from_x2, from_x1), low), high)
    return jnp.where(real, clipped, (low + high) / 2.0)


class _Bracketing(NamedTuple):
    t_prev: jax.Array
    f_prev: jax.Array
    g_prev: jax.Array
    gtd_prev: jax.Array
    t: jax.Array
    f_new: jax.Array
    g_new: jax.Array
    gtd_new: jax.Array
    ls_iter: jax.Array
    evals: jax.Array
    stop: jax.Array  # 0: go on, 1: a bracket [t_prev, t] is found, 2: t satisfies Wolfe


class _Zoom(NamedTuple):
    bracket: jax.Array  # (2,) steps
    bracket_f: jax.Array  # (2,) values
    bracket_g: jax.Array  # (2, n) gradients
    bracket_gtd: jax.Array  # (2,) slopes along d
    low: jax.Array  # index of the lower value; the other one is 1 - low
    done: jax.Array
    insuf_progress: jax.Array
    ls_iter: jax.Array
    evals: jax.Array


class _Start(NamedTuple):
    """The start of the search: value, gradient and slope at ``x``, and the constants."""

    f: jax.Array
    g: jax.Array
    gtd: jax.Array
    c1: jax.Array
    c2: jax.Array


# The steps of the search between two evaluations are compiled once per shape (they call
# nothing of the user's), so that an eager search dispatches a few programs per evaluation.


def _armijo_fails(s: _Start, step, value):
    return value > s.f + s.c1 * step * s.gtd


def _curvature_holds(s: _Start, slope):
    return jnp.abs(slope) <= -s.c2 * s.gtd


@jax.jit
def _bracketed(s: _Start, c: _Bracketing) -> _Bracketing:
    """``c`` with torch's checks at the top of a bracketing iteration in ``stop``."""
    up = _armijo_fails(s, c.t, c.f_new) | ((c.ls_iter > 1) & (c.f_new >= c.f_prev))
    stop = jnp.where(_curvature_holds(s, c.gtd_new), 2, jnp.where(c.gtd_new >= 0, 1, 0))
    return c._replace(stop=jnp.where(up, 1, stop).astype(jnp.int32))


@jax.jit
def _extrapolated(c: _Bracketing) -> jax.Array:
    """The next trial step of the bracketing phase."""
    bounds = (c.t + 0.01 * (c.t - c.t_prev), c.t * 10)
    step = cubic_minimizer(c.t_prev, c.f_prev, c.gtd_prev, c.t, c.f_new, c.gtd_new, bounds)
    return step.astype(c.t.dtype)


@jax.jit
def _zoom_start(s: _Start, b: _Bracketing, max_ls) -> _Zoom:
    # torch: out of evaluations, the bracket is [0, t] (checked before the other outcomes);
    # a Wolfe point is a bracket of one point; else the bracket [t_prev, t].
    out = b.ls_iter == max_ls
    found = ~out & (b.stop == 2)

    def pick(start, prev, new):
        return jnp.where(out, jnp.stack([start, new]),
                         jnp.where(found, jnp.stack([new, new]), jnp.stack([prev, new])))

    bracket = pick(jnp.zeros_like(b.t), b.t_prev, b.t)
    bracket_f = pick(s.f, b.f_prev, b.f_new)
    bracket_g = pick(s.g, b.g_prev, b.g_new)
    bracket_gtd = pick(s.gtd, b.gtd_prev, b.gtd_new)
    return _Zoom(bracket, bracket_f, bracket_g, bracket_gtd, _low(bracket_f), found,
                 jnp.asarray(False), b.ls_iter, b.evals)


@jax.jit
def _zooming(z: _Zoom, d_norm, max_ls, tolerance_change) -> jax.Array:
    small = jnp.abs(z.bracket[1] - z.bracket[0]) * d_norm < tolerance_change
    return ~z.done & (z.ls_iter < max_ls) & ~small


@jax.jit
def _zoom_trial(z: _Zoom) -> tuple[jax.Array, jax.Array]:
    """The next trial step of the zoom phase and the new ``insuf_progress``."""
    b0, b1 = z.bracket[0], z.bracket[1]
    step = cubic_minimizer(b0, z.bracket_f[0], z.bracket_gtd[0],
                           b1, z.bracket_f[1], z.bracket_gtd[1]).astype(b0.dtype)
    top, bottom = _py_max(b0, b1), _py_min(b0, b1)
    eps = 0.1 * (top - bottom)
    near_end = _py_min(top - step, step - bottom) < eps
    at_end = z.insuf_progress | (step >= top) | (step <= bottom)
    # Close to an end after a step of insufficient progress (or at an end): a tenth of the
    # bracket away from the nearer end.
    moved = jnp.where(jnp.abs(step - top) < jnp.abs(step - bottom), top - eps, bottom + eps)
    return jnp.where(near_end & at_end, moved, step), near_end & ~at_end


@jax.jit
def _zoomed(s: _Start, z: _Zoom, step, insuf, f_new, g_new, gtd_new) -> _Zoom:
    """The bracket after the evaluation at ``step``."""
    low, high = z.low, 1 - z.low
    worse = _armijo_fails(s, step, f_new) | (f_new >= z.bracket_f[low])
    wolfe = ~worse & _curvature_holds(s, gtd_new)
    flip = ~worse & ~wolfe & (gtd_new * (z.bracket[high] - z.bracket[low]) >= 0)
    # Worse: the new point replaces the high end. Else the old low end replaces the high end
    # (flip), then the new point the low end.
    new_at = jnp.where(worse, high, low)
    slots = jnp.arange(2)

    def place(values, new):
        shape = (2,) + (1,) * (values.ndim - 1)
        values = jnp.where((flip & (slots == high)).reshape(shape), values[low], values)
        return jnp.where((slots == new_at).reshape(shape), new, values)

    bracket_f = place(z.bracket_f, f_new)
    return _Zoom(
        place(z.bracket, step), bracket_f, place(z.bracket_g, g_new),
        place(z.bracket_gtd, gtd_new), jnp.where(worse, _low(bracket_f), z.low), wolfe,
        insuf, z.ls_iter + 1, z.evals + 1,
    )


def _low(bracket_f):
    """torch's ``low_pos``: 0 when ``f[0] <= f[1]``, else 1."""
    return jnp.where(bracket_f[0] <= bracket_f[1], 0, 1).astype(jnp.int32)


def strong_wolfe(
    value_and_grad: Callable[[jax.Array], tuple[jax.Array, jax.Array]],
    x: jax.Array,
    t: jax.Array,
    d: jax.Array,
    f: jax.Array,
    g: jax.Array,
    gtd: jax.Array,
    max_ls,
    *,
    c1: float = C1,
    c2: float = C2,
    tolerance_change: float = TOLERANCE_CHANGE,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """torch's ``_strong_wolfe`` on flat vectors: ``(f_new, g_new, t, evaluations)``.

    Args:
        value_and_grad: ``x -> (value, gradient)`` of the objective on flat vectors.
        x: the starting point; ``t``: the first trial step; ``d``: the direction.
        f, g, gtd: the value, gradient and slope :math:`g^\\top d` at ``x``.
        max_ls: the most evaluations after the first one (may be traced).
        c1, c2: the sufficient-decrease and curvature constants.
        tolerance_change: the zoom phase stops once the bracket times ``max|d|`` is smaller.

    The returned step, value and gradient are those of the best point of the final bracket
    (or of the Wolfe point); the evaluations count the first one. With ``max_ls = 0`` the one
    evaluation at ``t`` is compared with the start and the better of ``0`` and ``t`` returned.
    All of ``t``, ``f``, ``gtd`` and the values ``value_and_grad`` returns are scalars of
    ``x``'s dtype.
    """
    dtype = x.dtype
    s = _Start(f, g, gtd, jnp.asarray(c1, dtype), jnp.asarray(c2, dtype))
    max_ls = jnp.asarray(max_ls, jnp.int32)
    zero, one = jnp.zeros([], jnp.int32), jnp.ones([], jnp.int32)
    d_norm = jnp.max(jnp.abs(d), initial=0.0)
    tolerance = jnp.asarray(tolerance_change, dtype)

    def evaluate(step):
        value, grad = value_and_grad(x + step * d)
        return value, grad, jnp.dot(grad, d)

    def grow(c: _Bracketing) -> _Bracketing:
        step = _extrapolated(c)
        f_new, g_new, gtd_new = evaluate(step)
        c = _Bracketing(c.t, c.f_new, c.g_new, c.gtd_new, step, f_new, g_new, gtd_new,
                        c.ls_iter + 1, c.evals + 1, c.stop)
        return _bracketed(s, c)

    def shrink(z: _Zoom) -> _Zoom:
        step, insuf = _zoom_trial(z)
        return _zoomed(s, z, step, insuf, *evaluate(step))

    f_new, g_new, gtd_new = evaluate(t)
    first = _Bracketing(jnp.zeros([], dtype), f, g, gtd, t, f_new, g_new, gtd_new, zero, one,
                        zero)
    b = while_loop(lambda c: (c.stop == 0) & (c.ls_iter < max_ls), grow, _bracketed(s, first))
    z = while_loop(lambda z: _zooming(z, d_norm, max_ls, tolerance), shrink,
                   _zoom_start(s, b, max_ls))
    return z.bracket_f[z.low], z.bracket_g[z.low], z.bracket[z.low], z.evals

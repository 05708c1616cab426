r"""The pieces of ``torch.optim.Adafactor`` whose rules differ from the paper's (those are in
:mod:`gradtx.transforms.factored`): its second-moment estimate, with :math:`\epsilon_1` in
torch's places and its own decay schedule, and its relative step size
:math:`\min(\eta, 1/\sqrt t)`.

:func:`gradtx.optimizers.adafactor_torch.adafactor_torch` composes them with the shared pieces
(:func:`~gradtx.transforms.clipping.clip_by_block_rms`,
:func:`~gradtx.transforms.factored.scale_by_param_block_rms`).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradtx import live, validation
from gradtx import tree as _tree
from gradtx.core import GradientTransformation, PyTree, ScalarOrSchedule
from gradtx.transforms import counting
from gradtx.transforms.moments import CountState, ema_update


class FactoredVarianceState(NamedTuple):
    """Per-leaf second-moment statistics, named and shaped as torch.optim.Adafactor's state.

    A leaf of shape ``(..., n, m)`` (two or more dimensions) has ``row_var`` of shape
    ``(..., n, 1)`` and ``col_var`` of shape ``(..., 1, m)``; a 0-d or 1-d leaf has
    ``variance`` of its own shape. The slots a leaf does not use (torch has no such key) are
    one-element placeholder arrays of shape ``(1,)``, as in
    :class:`gradtx.transforms.factored.FactoredRmsState`. ``count`` is None inside an
    optimizer, which keeps one count for all its transforms (torch's ``step``).
    """

    count: jax.Array | None
    row_var: PyTree
    col_var: PyTree
    variance: PyTree


_PLACEHOLDER_SHAPE = (1,)


def _slot_shapes(shape: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
    """``(row_var, col_var, variance)`` shapes for a leaf of ``shape``."""
    if len(shape) >= 2:
        return shape[:-1] + (1,), shape[:-2] + (1,) + shape[-1:], _PLACEHOLDER_SHAPE
    return _PLACEHOLDER_SHAPE, _PLACEHOLDER_SHAPE, shape


def scale_by_factored_variance(
    beta2_decay: float | jax.Array = -0.8,
    eps1: float | jax.Array | None = None,
) -> GradientTransformation:
    r"""Divides updates by the root of torch.optim.Adafactor's second-moment estimate.

    With :math:`t` counting this transformation's updates from 1 and
    :math:`w_t = t^{\tau}` (:math:`\tau \le 0` is ``beta2_decay``; :math:`w_1 = 1`, so no bias
    correction is needed):

    * a leaf of shape :math:`(\dots, n, m)` keeps moving averages of the row and column means
      of :math:`u_t^2` (leading axes are batch axes):

      .. math::
          R_t = (1-w_t) R_{t-1} + w_t \operatorname{mean}_j u_t^2, \qquad
          C_t = (1-w_t) C_{t-1} + w_t \operatorname{mean}_i u_t^2, \qquad
          \hat V_t = \frac{R_t C_t}{\max(\operatorname{mean}_i R_t,\ \epsilon_1)}

    * a 0-d or 1-d leaf keeps :math:`\hat V_t = (1-w_t) \hat V_{t-1} + w_t u_t^2`.

    It outputs :math:`u_t / \sqrt{\max(\hat V_t, \epsilon_1^2)}`. Unlike the paper (and
    :func:`gradtx.transforms.factored.scale_by_factored_rms`), :math:`\epsilon_1` is not
    added to :math:`u_t^2`: it floors the mean of :math:`R_t` and the estimate itself, where
    torch puts it. With :math:`\epsilon_1 = 0`, zero statistics (zero updates from the start)
    give NaN, as in torch: 0/0 in a factored estimate, :math:`0 \cdot \infty` in the output.

    Args:
        beta2_decay: :math:`\tau \le 0`; :math:`\tau = -c` gives the paper's
            :math:`\hat\beta_t = 1 - t^{-c}`.
        eps1: :math:`\epsilon_1 \ge 0`, or None for the machine epsilon of each leaf's dtype
            (torch's default).
    """
    validation.check_interval("beta2_decay", beta2_decay, high=0.0)
    if eps1 is not None:
        validation.check_non_negative("eps1", eps1)

    def init(params):
        def slots(p):
            dtype = jnp.result_type(p)
            row, col, full = _slot_shapes(jnp.shape(p))
            variance = (
                _tree.fill_like(p, 0.0, dtype) if full == jnp.shape(p)
                else jnp.zeros(full, dtype)
            )
            return jnp.zeros(row, dtype), jnp.zeros(col, dtype), variance

        row_var, col_var, variance = _tree.split_tuples(
            jax.tree_util.tree_map(slots, params), params, 3
        )
        return FactoredVarianceState(
            count=counting.init_count(), row_var=row_var, col_var=col_var, variance=variance
        )

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        _tree.check_match(
            state.variance, updates, reference_name="scale_by_factored_variance state",
            other_name="updates", shapes=False,
        )
        taken, count = counting.advance(state.count, "scale_by_factored_variance")
        t = counting.as_float(taken) + 1
        weight = t ** jnp.asarray(live.read(beta2_decay), t.dtype)
        decay = 1 - weight
        epsilon = None if eps1 is None else jnp.asarray(live.read(eps1))

        def leaf(path, u, row_var, col_var, variance):
            dtype = variance.dtype
            u = u.astype(dtype)
            _check_slots(path, u.shape, row_var, col_var, variance)
            eps = jnp.finfo(dtype).eps if epsilon is None else epsilon
            floor = _tree.cast_like(eps, u)
            floor_squared = _tree.cast_like(jnp.square(jnp.asarray(eps)), u)
            squares = u * u
            if u.ndim >= 2:
                row_var = ema_update(row_var, jnp.mean(squares, axis=-1, keepdims=True), decay)
                col_var = ema_update(col_var, jnp.mean(squares, axis=-2, keepdims=True), decay)
                row_mean = jnp.maximum(jnp.mean(row_var, axis=-2, keepdims=True), floor)
                estimate = row_var * col_var / row_mean
            else:
                variance = ema_update(variance, squares, decay)
                estimate = variance
            out = u * jax.lax.rsqrt(jnp.maximum(estimate, floor_squared))
            return out.astype(dtype), row_var, col_var, variance

        quads = jax.tree_util.tree_map_with_path(
            leaf, updates, state.row_var, state.col_var, state.variance
        )
        out, row_var, col_var, variance = _tree.split_tuples(quads, updates, 4)
        return out, FactoredVarianceState(
            count=count, row_var=row_var, col_var=col_var, variance=variance
        )

    return GradientTransformation(init, update)


def _check_slots(path, shape, row_var, col_var, variance):
    expected = _slot_shapes(shape)
    got = (row_var.shape, col_var.shape, variance.shape)
    if got != expected:
        raise ValueError(
            "The updates tree does not match the scale_by_factored_variance state at "
            f"{jax.tree_util.keystr(path)}: an update of shape {shape} needs statistics of "
            f"shapes (row_var, col_var, variance) {expected}, the state has {got}."
        )


def scale_by_relative_step_cap(learning_rate: ScalarOrSchedule = 1e-2) -> GradientTransformation:
    r"""Multiplies updates by :math:`\min\bigl(1,\ 1/(\eta_t \sqrt t)\bigr)`, with :math:`t`
    counting this transformation's updates from 1.

    Followed by ``scale_by_learning_rate(η)`` this gives a step of torch.optim.Adafactor's
    relative step size :math:`\rho_t = \min(\eta_t, 1/\sqrt t)`, while a weight decay added
    in between (``add_decayed_weights(λ)``) is scaled by :math:`\eta_t` alone, as torch's
    :math:`\theta \leftarrow (1 - \eta\lambda)\theta` is. :math:`\eta_t = 0` gives the
    factor 1 (no division by zero).

    Args:
        learning_rate: :math:`\eta \ge 0`, the same value (or schedule ``count -> value``) as
            the ``scale_by_learning_rate`` that follows.
    """
    validation.check_non_negative("learning_rate", learning_rate)

    def init(params):
        del params
        return CountState(count=counting.init_count())

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        taken, count = counting.advance(state.count, "scale_by_relative_step_cap")
        t = counting.as_float(taken) + 1
        lr = learning_rate(taken) if callable(learning_rate) else live.read(learning_rate)
        # 1 / (0 * sqrt(t)) is inf, so a zero learning rate gives the factor 1.
        factor = jnp.minimum(1, 1 / (jnp.asarray(lr, t.dtype) * jnp.sqrt(t)))
        out = jax.tree_util.tree_map(lambda u: u * _tree.cast_like(factor, u), updates)
        return out, CountState(count=count)

    return GradientTransformation(init, update)

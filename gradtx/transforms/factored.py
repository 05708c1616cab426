r"""Adafactor's pieces (Shazeer & Stern, 2018): a second-moment estimate factored into row and
column statistics, clipping of a leaf's update by its RMS, and scaling by a parameter's RMS.

For a leaf of shape :math:`(\dots, n, m)` the factored estimate keeps :math:`n + m` numbers per
leading index instead of :math:`nm`; that is what makes Adafactor's memory sublinear.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradtx import live, validation
from gradtx import tree as _tree
from gradtx.core import GradientTransformation, PyTree, stateless
from gradtx.transforms import counting
from gradtx.transforms.moments import ema_update
from gradtx.transforms.trust_ratio import block_norm


class FactoredRmsState(NamedTuple):
    """Per-leaf second-moment statistics and the step count.

    A factored leaf of shape ``(..., n, m)`` has ``row`` of shape ``(..., n)`` and ``col`` of
    shape ``(..., m)``, and an empty ``full``; any other leaf has ``full`` of its own shape and
    unused ``row`` and ``col``. Unused slots are one-element placeholder arrays, so that every
    state leaf is an array (checkpointers such as orbax refuse zero-size arrays and treat
    ``None`` specially) and a factored matrix costs ``n + m + 1`` numbers.
    ``count`` is None inside an optimizer, which keeps one count for all its transforms.
    """

    count: jax.Array | None
    row: PyTree
    col: PyTree
    full: PyTree


def _is_factored(shape, factored: bool) -> bool:
    return factored and len(shape) >= 2


_PLACEHOLDER_SHAPE = (1,)


def _empty(p) -> jax.Array:
    return jnp.zeros(_PLACEHOLDER_SHAPE, jnp.result_type(p))


def block_rms(x: jax.Array) -> jax.Array:
    r"""The root mean square of a whole leaf, :math:`\sqrt{\tfrac1N \sum_i x_i^2}`, with a zero
    gradient at :math:`x = 0` (see :func:`gradtx.transforms.trust_ratio.block_norm`)."""
    return block_norm(x) / math.sqrt(max(x.size, 1))


def scale_by_factored_rms(
    decay_rate: float | jax.Array = 0.8,
    eps: float | jax.Array = 1e-30,
    factored: bool = True,
) -> GradientTransformation:
    r"""Divides updates by the root of Adafactor's second-moment estimate.

    With :math:`\hat\beta_t = 1 - t^{-c}` (:math:`t` counts from 1, so :math:`\hat\beta_1 = 0`
    and no bias correction is needed) and :math:`S_t = u_t^2 + \epsilon_1`:

    * a leaf with at least two dimensions (when ``factored``) keeps moving averages of the
      means of :math:`S_t` over its last axis (:math:`r`, one per row) and over its
      second-to-last axis (:math:`c`, one per column), and estimates

      .. math::
          r_t = \hat\beta_t r_{t-1} + (1-\hat\beta_t)\, \operatorname{mean}_j S_t, \quad
          c_t = \hat\beta_t c_{t-1} + (1-\hat\beta_t)\, \operatorname{mean}_i S_t, \quad
          \hat V_{t,ij} = \frac{r_{t,i}\, c_{t,j}}{\operatorname{mean}_i r_{t,i}}

      (the paper's :math:`R_t C_t / 1^\top R_t` with row and column sums; the means give the
      same :math:`\hat V_t` and stay in range in low precision). Leading axes are batch axes.
    * any other leaf keeps the full average :math:`\hat V_t = \hat\beta_t \hat V_{t-1} +
      (1-\hat\beta_t) S_t`.

    It outputs :math:`u_t / \sqrt{\hat V_t}` (0 where :math:`\hat V_t = 0`, which only happens
    when :math:`\epsilon_1` underflows, as 1e-30 does in float16, and the gradient is zero or
    underflows too).

    Args:
        decay_rate: :math:`c \in [0, 1]`; the paper uses 0.8 (1 gives the running mean).
        eps: :math:`\epsilon_1 \ge 0`, added to the squared updates.
        factored: factor leaves with two or more dimensions.
    """
    validation.check_interval("decay_rate", decay_rate, 0.0, 1.0)
    validation.check_non_negative("eps", eps)
    if not isinstance(factored, bool):
        raise TypeError(f"`factored` must be a bool, got {factored!r}.")

    def init(params):
        def slots(p):
            shape, dtype = jnp.shape(p), jnp.result_type(p)
            if _is_factored(shape, factored):
                col_shape = shape[:-2] + shape[-1:]
                return jnp.zeros(shape[:-1], dtype), jnp.zeros(col_shape, dtype), _empty(p)
            return _empty(p), _empty(p), _tree.fill_like(p, 0.0, dtype)

        row, col, full = _tree.split_tuples(
            jax.tree_util.tree_map(slots, params), params, 3
        )
        return FactoredRmsState(count=counting.init_count(), row=row, col=col, full=full)

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        _tree.check_match(
            state.full, updates, reference_name="scale_by_factored_rms state",
            other_name="updates", shapes=False,
        )
        taken, count = counting.advance(state.count, "scale_by_factored_rms")
        t = counting.as_float(taken) + 1
        decay = 1 - t ** -jnp.asarray(live.read(decay_rate), t.dtype)
        epsilon = live.read(eps)

        def leaf(path, u, row, col, full):
            dtype = full.dtype
            u = u.astype(dtype)
            _check_slots(path, u.shape, row, col, full, factored)
            squares = u * u + _tree.cast_like(epsilon, u)
            if _is_factored(u.shape, factored):
                row = ema_update(row, jnp.mean(squares, axis=-1), decay)
                col = ema_update(col, jnp.mean(squares, axis=-2), decay)
                row_mean = jnp.mean(row, axis=-1, keepdims=True)
                # All-zero rows (eps underflowed, zero gradients) give V = 0 rather than 0/0.
                row_mean = jnp.where(row_mean == 0, 1, row_mean)
                v = (row / row_mean)[..., :, None] * col[..., None, :]
            else:
                full = ema_update(full, squares, decay)
                v = full
            # 0 only where V is exactly 0 (V >= 0): a NaN in V stays NaN in the output, so a
            # NaN gradient shows in the parameters instead of silently zeroing their step.
            zero = v == 0
            out = jnp.where(zero, 0, u / jnp.sqrt(jnp.where(zero, 1, v)))
            return out.astype(dtype), row, col, full

        quads = jax.tree_util.tree_map_with_path(leaf, updates, state.row, state.col, state.full)
        out, row, col, full = _tree.split_tuples(quads, updates, 4)
        return out, FactoredRmsState(count=count, row=row, col=col, full=full)

    return GradientTransformation(init, update)


def _check_slots(path, shape, row, col, full, factored):
    if _is_factored(shape, factored):
        expected = (shape[:-1], shape[:-2] + shape[-1:], _PLACEHOLDER_SHAPE)
    else:
        expected = (_PLACEHOLDER_SHAPE, _PLACEHOLDER_SHAPE, shape)
    got = (row.shape, col.shape, full.shape)
    if got != expected:
        raise ValueError(
            "The updates tree does not match the scale_by_factored_rms state at "
            f"{jax.tree_util.keystr(path)}: an update of shape {shape} needs statistics of "
            f"shapes (row, col, full) {expected}, the state has {got}."
        )


def scale_by_param_block_rms(min_scale: float | jax.Array = 1e-3) -> GradientTransformation:
    r"""Multiplies each leaf's update by the RMS of its parameter, floored at
    :math:`\epsilon_2`, so that steps are relative to the parameter's scale (Adafactor's
    "relative step size"):

    .. math:: \text{out} = \max\bigl(\epsilon_2, \operatorname{RMS}(\theta)\bigr)\, u

    Args:
        min_scale: :math:`\epsilon_2 \ge 0`.

    ``update`` needs ``params``.
    """
    validation.check_non_negative("min_scale", min_scale)

    def scale(updates, params):
        floor = live.read(min_scale)

        def leaf(u, p):
            factor = jnp.maximum(_tree.cast_like(floor, u), block_rms(p.astype(u.dtype)))
            return factor * u

        return jax.tree_util.tree_map(leaf, updates, params)

    return stateless(scale, needs_params=True, name="scale_by_param_block_rms")

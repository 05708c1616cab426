r"""Clipping updates: elementwise by value, by the global L2 norm of the whole tree, and by the
RMS of each leaf (block).

Norms and RMS values are accumulated in float32 or wider, whatever the leaves' dtype, so bf16
and f16 updates neither overflow nor lose the small entries when squared and summed; only the
resulting scale factor is cast to each leaf's dtype, so every leaf keeps its dtype. None leaves
are skipped. No clipping transform keeps state.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from gradtx import tree as _tree
from gradtx import validation
from gradtx.core import GradientTransformation, PyTree, flattenable, stateless

# torch.nn.utils.clip_grad_norm_ adds this to the norm before dividing by it.
_TORCH_NORM_EPS = 1e-6


def _real_accumulation_dtype(dtype) -> jnp.dtype:
    """The real dtype, float32 or wider, in which squares of ``dtype`` values are summed."""
    return jnp.finfo(jnp.promote_types(dtype, jnp.float32)).dtype


def _sum_of_squares(u: jax.Array) -> jax.Array:
    x = u.astype(jnp.promote_types(u.dtype, jnp.float32))
    squares = jnp.real(x * jnp.conj(x)) if jnp.iscomplexobj(x) else x * x
    return jnp.sum(squares)


def global_norm(tree: PyTree) -> jax.Array:
    r"""The L2 norm of all the entries of all the leaves of ``tree``, taken together:

    .. math:: \lVert u \rVert = \sqrt{\textstyle\sum_{\text{leaves } l} \sum_i u_{l,i}^2}

    None leaves are skipped; an empty tree has norm 0. The result is a scalar of the widest
    leaf dtype, and at least float32 (bf16 and f16 leaves are squared and summed in float32).
    It is one reduction: the per-leaf sums of squares are added, then rooted once (never a norm
    of per-leaf norms), so with sharded leaves the cross-device sums are independent scalar
    all-reduces that XLA can combine into one.
    """
    leaves = [jnp.asarray(u) for u in jax.tree_util.tree_leaves(tree)]
    dtype = functools.reduce(
        jnp.promote_types,
        (_real_accumulation_dtype(u.dtype) for u in leaves),
        jnp.dtype(jnp.float32),
    )
    if not leaves:
        return jnp.zeros((), dtype)
    sums = jnp.stack([_sum_of_squares(u).astype(dtype) for u in leaves])
    return jnp.sqrt(jnp.sum(sums))


def _scaled(u, factor: jax.Array) -> jax.Array:
    """``u * factor`` in ``u``'s dtype: the factor, computed wider, never promotes the leaf."""
    u = jnp.asarray(u)
    return u * factor.astype(u.dtype)


def clip(max_delta: float | jax.Array) -> GradientTransformation:
    r"""Clamps every entry of every update to :math:`[-\delta, \delta]`:

    .. math:: u \leftarrow \min(\max(u, -\delta), \delta)

    The same as ``torch.nn.utils.clip_grad_value_(params, clip_value=δ)`` (and ``optax.clip``).
    NaN entries stay NaN.

    Args:
        max_delta: :math:`\delta \ge 0`.
    """
    validation.check_non_negative("max_delta", max_delta)

    def clamp(u):
        d = _tree.cast_like(max_delta, u)
        return jnp.clip(u, -d, d)

    return flattenable(stateless(lambda updates, params: jax.tree_util.tree_map(clamp, updates)))


def clip_by_global_norm(max_norm: float | jax.Array) -> GradientTransformation:
    r"""Scales all updates by one factor so that their global L2 norm is at most about
    ``max_norm``, exactly as ``torch.nn.utils.clip_grad_norm_(params, max_norm)`` does:

    .. math::
        g = \sqrt{\textstyle\sum_{\text{leaves}} \sum_i u_i^2}, \qquad
        c = \min\!\Big(\frac{m}{g + 10^{-6}},\ 1\Big), \qquad u \leftarrow c\, u

    :math:`g` is :func:`global_norm` (float32 or wider); :math:`c` is computed in that dtype
    and then cast to each leaf's dtype. The :math:`10^{-6}` is torch's: it keeps the division
    finite when every update is zero, and means a clipped tree ends with norm
    :math:`m\,g/(g + 10^{-6})`, a hair under :math:`m`. The clamp at 1 means updates whose norm
    is already small are multiplied by exactly 1, never enlarged. As in torch, a NaN norm makes
    every update NaN and an infinite one zeroes the finite entries.

    Differences from ``optax.clip_by_global_norm``: Optax divides by :math:`g` itself, with no
    epsilon, and rescales only when :math:`g > m`; the two agree to about
    :math:`10^{-6}/g` in relative terms.

    Args:
        max_norm: :math:`m \ge 0`.

    Keeps no state (:class:`gradtx.EmptyState`).

    Example:
        >>> import gradtx as gx, jax.numpy as jnp
        >>> from gradtx.transforms.clipping import clip_by_global_norm
        >>> opt = gx.chain(clip_by_global_norm(1.0), gx.sgd(learning_rate=0.1, momentum=0.9))
        >>> params = {"w": jnp.ones(3)}
        >>> updates, state = opt.update({"w": jnp.full(3, 10.0)}, opt.init(params), params)
    """
    validation.check_non_negative("max_norm", max_norm)

    def rescale(updates):
        g = global_norm(updates)
        coef = jnp.minimum(_tree.cast_like(max_norm, g) / (g + _TORCH_NORM_EPS), 1.0)
        return jax.tree_util.tree_map(lambda u: _scaled(u, coef), updates)

    return flattenable(stateless(lambda updates, params: rescale(updates)))


def clip_by_block_rms(threshold: float | jax.Array) -> GradientTransformation:
    r"""Scales each leaf (block) on its own so that its root-mean-square is at most
    ``threshold``:

    .. math::
        r = \sqrt{\tfrac{1}{n}\textstyle\sum_{i=1}^{n} u_i^2}, \qquad
        u \leftarrow \begin{cases} u\,\tau / r & r > \tau \\ u & \text{otherwise} \end{cases}

    where :math:`n` is the number of entries of the leaf. Unlike a norm, the RMS does not grow
    with the size of the leaf, so one threshold suits a bias vector and a large weight matrix
    alike; clipped leaves end with RMS exactly :math:`\tau` (up to rounding), as in
    ``optax.clip_by_block_rms``. torch has no equivalent. :math:`r` is computed in float32 or
    wider and the factor :math:`\tau/r` cast to the leaf's dtype. A NaN :math:`r` leaves the
    leaf as it is (already NaN); an empty leaf is returned unchanged.

    Args:
        threshold: :math:`\tau \ge 0`.
    """
    validation.check_non_negative("threshold", threshold)

    def rescale(u):
        u = jnp.asarray(u)
        rms = jnp.sqrt(_sum_of_squares(u) / max(u.size, 1))
        tau = _tree.cast_like(threshold, rms)
        over = rms > tau
        # Divide only where the leaf is clipped (so rms > tau >= 0): no 0/0 when tau = rms = 0,
        # and no NaN in the derivative of the branch jnp.where discards.
        factor = jnp.where(over, tau / jnp.where(over, rms, 1.0), 1.0)
        return _scaled(u, factor)

    return stateless(lambda updates, params: jax.tree_util.tree_map(rescale, updates))

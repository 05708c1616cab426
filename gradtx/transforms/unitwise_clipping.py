r"""Adaptive gradient clipping (AGC, Brock et al., 2021): each *unit* of an update (a column of
a dense kernel, an output filter of a convolution) is clipped relative to the norm of the same
unit of its parameter, so that no step changes a unit by more than a fixed fraction of its size.

Norms are accumulated in float32 or wider whatever the leaves' dtype and returned in the leaf's
(real) dtype.
"""

from __future__ import annotations

import operator

import jax
import jax.numpy as jnp

from gradtx import live, validation
from gradtx import tree as _tree
from gradtx.core import GradientTransformation, stateless

# The reduction axes of a unit when `axis` is None, by rank (a leaf whose squeezed shape has at
# most one axis is one unit).
_DEFAULT_AXES = {2: (0,), 3: (0,), 4: (0, 1, 2), 5: (0, 1, 2, 3)}


def _check_axis(axis) -> tuple[int, ...] | None:
    """``axis`` (None, an int or a tuple of ints) as a tuple, refused by name otherwise."""
    if axis is None:
        return None
    items = axis if isinstance(axis, tuple) else (axis,)
    try:
        if any(isinstance(a, bool) for a in items):
            raise TypeError
        return tuple(operator.index(a) for a in items)
    except TypeError:
        raise TypeError(f"`axis` must be None, an int or a tuple of ints, got {axis!r}.") from None


def _reduction_axes(x: jax.Array, axis: tuple[int, ...] | None) -> tuple[int, ...]:
    if axis is not None:
        return axis
    if jnp.squeeze(x).ndim <= 1:
        return tuple(range(x.ndim))
    if x.ndim not in _DEFAULT_AXES:
        raise ValueError(
            f"unitwise_norm: no default units for a leaf of shape {x.shape} (ranks 1 to 5 "
            "have one); pass `axis`, the axes that make up one unit."
        )
    return _DEFAULT_AXES[x.ndim]


def unitwise_norm(x: jax.Array, axis: int | tuple[int, ...] | None = None) -> jax.Array:
    r"""The L2 norm of each unit of ``x``, broadcast back to ``x``'s shape: every entry is
    replaced by the norm of the unit it belongs to,

    .. math:: \lVert x \rVert_{\text{unit}(i)} = \sqrt{\textstyle\sum_{j \in \text{unit}(i)}
        |x_j|^2}

    A unit is the slice of ``x`` spanned by the axes ``axis`` (an int or a tuple). With
    ``axis=None`` the units follow the usual layouts: a scalar or a vector (any shape with at
    most one axis longer than 1) is one unit; a rank-2 ``(in, out)`` kernel or a rank-3
    multi-head kernel reduces over axis 0; a rank-4 ``HWIO`` convolution over axes (0, 1, 2); a
    rank-5 ``DHWIO`` one over axes (0, 1, 2, 3). Other ranks need ``axis`` (``ValueError``
    otherwise). Complex entries contribute :math:`|x_j|^2`.

    Same as ``optax.transforms.unitwise_norm`` (Optax 0.2.8).
    """
    axes = _check_axis(axis)
    x = jnp.asarray(x)
    reduce = _reduction_axes(x, axes)
    wide = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    squares = jnp.real(wide * jnp.conj(wide)) if jnp.iscomplexobj(wide) else wide * wide
    norm = jnp.sqrt(jnp.sum(squares, axis=reduce, keepdims=True))
    real_dtype = jnp.finfo(jnp.promote_types(x.dtype, jnp.float32)).dtype
    out_dtype = jnp.finfo(x.dtype).dtype if jnp.issubdtype(x.dtype, jnp.inexact) else real_dtype
    return jnp.broadcast_to(norm.astype(out_dtype), x.shape)


def unitwise_clip(
    g_norm: jax.Array,
    max_norm: jax.Array,
    grad: jax.Array,
    div_eps: float | jax.Array = 1e-6,
) -> jax.Array:
    r"""Rescales the entries of ``grad`` whose unit norm ``g_norm`` is at least ``max_norm`` so
    that the unit's norm becomes ``max_norm``:

    .. math:: g_i \leftarrow \begin{cases} g_i & n_i < m_i \\
        g_i\, m_i / \max(n_i, \epsilon) & \text{otherwise} \end{cases}

    ``g_norm`` (:math:`n`, e.g. :func:`unitwise_norm` of ``grad``), ``max_norm`` (:math:`m`)
    and ``grad`` must have one shape (``ValueError`` otherwise). ``div_eps``
    (:math:`\epsilon \ge 0`) only keeps the division finite when :math:`n = m = 0`.

    Same as ``optax.transforms.unitwise_clip`` (Optax 0.2.8).
    """
    validation.check_non_negative("div_eps", div_eps)
    g_norm, max_norm, grad = jnp.asarray(g_norm), jnp.asarray(max_norm), jnp.asarray(grad)
    if not g_norm.shape == max_norm.shape == grad.shape:
        raise ValueError(
            "unitwise_clip: `g_norm`, `max_norm` and `grad` must have one shape, got "
            f"{g_norm.shape}, {max_norm.shape} and {grad.shape}."
        )
    eps = _tree.cast_like(div_eps, g_norm)
    clipped = grad * (max_norm / jnp.maximum(g_norm, eps))
    return jnp.where(g_norm < max_norm, grad, clipped)


def adaptive_grad_clip(
    clipping: float | jax.Array,
    eps: float | jax.Array = 1e-3,
    axis: int | tuple[int, ...] | None = None,
) -> GradientTransformation:
    r"""Adaptive gradient clipping (Brock et al., 2021): each unit of an update is clipped to
    at most ``clipping`` times the norm of the same unit of its parameter,

    .. math::
        m = \lambda \max(\lVert\theta\rVert_{\text{unit}}, \epsilon), \qquad
        u \leftarrow \begin{cases} u & \lVert u\rVert_{\text{unit}} < m \\
        u\, m / \max(\lVert u\rVert_{\text{unit}}, 10^{-6}) & \text{otherwise} \end{cases}

    with the units of :func:`unitwise_norm` (``axis``, or the layout defaults when None) and
    the clip of :func:`unitwise_clip`. :math:`\epsilon` keeps zero-initialised parameters
    (biases) from freezing. Equal step for step to ``optax.adaptive_grad_clip`` (Optax 0.2.8).

    Args:
        clipping: :math:`\lambda \ge 0`, the largest ratio of a unit's update norm to its
            parameter norm.
        eps: :math:`\epsilon \ge 0`, the floor of the parameter norm.
        axis: the axes making up one unit (an int, a tuple of ints), or None for the defaults.

    ``update`` needs ``params``. Keeps no state (:class:`gradtx.EmptyState`).

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.transforms.unitwise_clipping import adaptive_grad_clip
        >>> tx = adaptive_grad_clip(0.1)
        >>> params = jnp.array([3.0, 4.0])
        >>> updates, _ = tx.update(jnp.array([0.0, 10.0]), tx.init(params), params)
        >>> updates.tolist()
        [0.0, 0.5]
    """
    validation.check_non_negative("clipping", clipping)
    validation.check_non_negative("eps", eps)
    axes = _check_axis(axis)

    def clip_units(updates, params):
        lam, floor = live.read(clipping), live.read(eps)

        def leaf(u, p):
            g_norm = unitwise_norm(u, axes)
            p_norm = unitwise_norm(p, axes)
            max_norm = _tree.cast_like(lam, p_norm) * jnp.maximum(
                p_norm, _tree.cast_like(floor, p_norm)
            )
            return unitwise_clip(g_norm, max_norm.astype(g_norm.dtype), u)

        return jax.tree_util.tree_map(leaf, updates, params)

    return stateless(clip_units, needs_params=True, name="adaptive_grad_clip")

r"""Stateless normalisations of the updates: gradient centralisation (per leaf) and division by
the global norm of all the leaves (with or without a safeguard)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gradtx import live, validation
from gradtx.core import GradientTransformation, flattenable, stateless
from gradtx.transforms.clipping import global_norm


def _subtract_mean(u: jax.Array) -> jax.Array:
    u = jnp.asarray(u)
    if u.ndim < 2:
        return u
    return u - jnp.mean(u, axis=tuple(range(1, u.ndim)), keepdims=True)


def centralize() -> GradientTransformation:
    r"""Gradient centralisation (Yong et al., 2020, "Gradient Centralization: A New
    Optimization Technique for Deep Neural Networks"): from every leaf of two or more
    dimensions, subtracts its mean over all axes but the first,

    .. math:: u_{i,\dots} \leftarrow u_{i,\dots} - \operatorname{mean}_{\dots}(u_{i,\dots})

    so each slice along the first axis (one output unit of a ``(out, in, ...)`` kernel) sums
    to zero. Vectors and scalars pass unchanged. Keeps no state. Equal to
    ``optax.centralize`` (Optax 0.2.8).

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.transforms.normalization import centralize
        >>> tx = centralize()
        >>> g = {"w": jnp.asarray([[1.0, 2.0, 3.0], [4.0, 6.0, 8.0]])}
        >>> out, _ = tx.update(g, tx.init(None))
        >>> out["w"].tolist()
        [[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0]]
    """
    return stateless(
        lambda updates, params: jax.tree_util.tree_map(_subtract_mean, updates),
        name="centralize",
    )


def _divided(updates, divisor: jax.Array):
    """Every leaf divided by the scalar ``divisor``, cast to the leaf's dtype."""
    def leaf(u):
        u = jnp.asarray(u)
        return u / divisor.astype(u.dtype)

    return jax.tree_util.tree_map(leaf, updates)


def normalize_by_update_norm(
    scale_factor: float | jax.Array = 1.0, eps: float | jax.Array = 1e-6
) -> GradientTransformation:
    r"""Divides the updates by their global L2 norm (all leaves together), plus ``eps``, and
    multiplies them by ``scale_factor``:

    .. math:: u \leftarrow u \,/\, \bigl((\lVert u \rVert + \epsilon) / s\bigr)

    computed in that order, as ``optax.normalize_by_update_norm`` (Optax 0.2.8) does, so a
    zero :math:`s` gives zero updates and :math:`\epsilon = 0` with all-zero updates gives
    NaN. :math:`\lVert u \rVert` is :func:`gradtx.global_norm` (summed in float32 or wider,
    where Optax sums bf16 leaves in bf16). Keeps no state.

    Args:
        scale_factor: :math:`s`, any real number (negative flips the direction: ``-1.0``
            makes the result a descent step).
        eps: :math:`\epsilon \ge 0`.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.transforms.normalization import normalize_by_update_norm
        >>> tx = normalize_by_update_norm(scale_factor=2.0, eps=0.0)
        >>> out, _ = tx.update({"a": jnp.asarray([3.0]), "b": jnp.asarray([-4.0])}, tx.init(None))
        >>> round(float(out["a"][0]), 6), round(float(out["b"][0]), 6)
        (1.2, -1.6)
    """
    validation.check_interval("scale_factor", scale_factor)
    validation.check_non_negative("eps", eps)

    def divide(updates, params):
        norm = global_norm(updates)
        epsilon, factor = live.read(eps), live.read(scale_factor)
        divisor = (norm + jnp.asarray(epsilon, norm.dtype)) / jnp.asarray(factor, norm.dtype)
        return _divided(updates, divisor)

    return flattenable(stateless(divide, name="normalize_by_update_norm"))


def normalize() -> GradientTransformation:
    r"""Divides the updates by their global L2 norm (all leaves together),
    :math:`u \leftarrow u / \lVert u \rVert`, with no safeguard: all-zero updates become NaN,
    as in ``optax.contrib.normalize`` (Optax 0.2.8), which it equals (its ``NormalizeState``
    is :class:`gradtx.EmptyState`). :func:`normalize_by_update_norm` adds an ``eps``. Keeps no
    state.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.transforms.normalization import normalize
        >>> tx = normalize()
        >>> out, _ = tx.update({"a": jnp.asarray([3.0]), "b": jnp.asarray([-4.0])}, tx.init(None))
        >>> round(float(out["a"][0]), 6), round(float(out["b"][0]), 6)
        (0.6, -0.8)
    """
    return flattenable(
        stateless(lambda updates, params: _divided(updates, global_norm(updates)),
                  name="normalize")
    )

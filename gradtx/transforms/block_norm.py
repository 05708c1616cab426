r"""Scaling each leaf's update by the L2 norm of its parameter (the block), floored."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gradtx import live, validation
from gradtx import tree as _tree
from gradtx.core import GradientTransformation, stateless
from gradtx.transforms.clipping import global_norm


def scale_by_param_block_norm(min_scale: float | jax.Array = 1e-3) -> GradientTransformation:
    r"""Multiplies each leaf's update by the L2 norm of all the entries of its parameter,
    floored at :math:`\epsilon`, so that steps are relative to the size of the block:

    .. math:: \text{out} = \max\bigl(\epsilon, \lVert\theta\rVert_2\bigr)\, u

    The norm is taken over the whole leaf (the Frobenius norm of a matrix), in float32 or wider,
    and the factor cast to the update's dtype. The RMS variant is
    :func:`~gradtx.scale_by_param_block_rms`. Equal step for step to
    ``optax.scale_by_param_block_norm`` (Optax 0.2.8).

    Args:
        min_scale: :math:`\epsilon \ge 0`.

    ``update`` needs ``params``. Keeps no state (:class:`gradtx.EmptyState`).

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.transforms.block_norm import scale_by_param_block_norm
        >>> tx = scale_by_param_block_norm(min_scale=0.5)
        >>> params = {"w": jnp.array([3.0, 4.0]), "b": jnp.zeros(2)}
        >>> updates, _ = tx.update({"w": jnp.ones(2), "b": jnp.ones(2)}, tx.init(params), params)
        >>> updates["w"].tolist(), updates["b"].tolist()
        ([5.0, 5.0], [0.5, 0.5])
    """
    validation.check_non_negative("min_scale", min_scale)

    def scale(updates, params):
        floor = live.read(min_scale)

        def leaf(u, p):
            norm = global_norm(p)
            factor = jnp.maximum(_tree.cast_like(floor, norm), norm)
            return _tree.cast_like(factor, u) * u

        return jax.tree_util.tree_map(leaf, updates, params)

    return stateless(scale, needs_params=True, name="scale_by_param_block_norm")

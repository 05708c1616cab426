"""Weight decay: adding a multiple of the parameters to the updates."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from gradtx import tree as _tree
from gradtx import validation
from gradtx.core import GradientTransformation, PyTree, flattenable, stateless


def add_decayed_weights(
    weight_decay: float | jax.Array = 0.0,
    mask: PyTree | Callable[[PyTree], PyTree] | None = None,
) -> GradientTransformation:
    """Adds :math:`\\lambda\\,\\theta` to the updates: :math:`u \\leftarrow u + \\lambda\\,\\theta`.

    Before the moment transforms this is torch's ``weight_decay`` (L2 regularisation, as in
    ``torch.optim.Adam``); after them and before the learning rate it is decoupled weight decay
    (as in ``torch.optim.AdamW``), because :math:`-\\eta(u + \\lambda\\theta)` equals torch's
    :math:`\\theta \\leftarrow \\theta(1-\\eta\\lambda) - \\eta u`.

    Args:
        weight_decay: :math:`\\lambda \\ge 0`.
        mask: optional tree with the structure of the parameters whose leaves are bools (or
            bool arrays that broadcast against the parameter), or a function of the parameters
            that returns one; entries marked ``False`` are not decayed.

    ``update`` needs ``params``.
    """
    validation.check_non_negative("weight_decay", weight_decay)

    def add(updates, params):
        leaf_mask = mask(params) if callable(mask) else mask

        def decay(u, p, keep=True):
            decayed = u + _tree.cast_like(weight_decay, u) * p.astype(u.dtype)
            return jnp.where(keep, decayed, u) if leaf_mask is not None else decayed

        if leaf_mask is None:
            return jax.tree_util.tree_map(decay, updates, params)
        _tree.check_match(
            params, leaf_mask, reference_name="params", other_name="mask", shapes=False
        )
        return jax.tree_util.tree_map(decay, updates, params, leaf_mask)

    return flattenable(stateless(add, needs_params=True, name="add_decayed_weights"))

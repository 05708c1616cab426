"""Optax's weight-decay ``mask`` argument, shared by the optimizers ported from Optax (Adan,
ACProp, Simplified AdEMAMix, DoG, ...): its declaration, and the decay step it selects."""

from __future__ import annotations

from collections.abc import Callable

import jax
import numpy as np

from gradtx import validation
from gradtx.core import GradientTransformation, PyTree
from gradtx.hyperparams.declarations import FixedArgument
from gradtx.optimizers._common import weight_decay_if
from gradtx.transforms.decay import add_decayed_weights


def _is_bool_leaf(leaf) -> bool:
    if isinstance(leaf, (bool, np.bool_)):
        return True
    return isinstance(leaf, (np.ndarray, jax.Array)) and leaf.dtype == np.bool_


def check_mask(name: str, value):
    """None, a function (of the parameters), or a tree of bools: ``TypeError`` naming ``name``
    for anything else (a class, a bare bool, a tree with another leaf), ``ValueError`` naming
    it for a tree without leaves (it could match no parameters)."""
    if value is None:
        return None
    if callable(value) and not isinstance(value, type):
        return value
    wanted = (f"`{name}` must be None, a tree of bools (True: decay that leaf or subtree) or "
              "a function of the parameters that returns one")
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(
            f"{wanted}, got the bool {value!r} (for every leaf, use mask=None; for none, "
            "weight_decay=0)."
        )
    if isinstance(value, type):
        raise TypeError(f"{wanted}, got the class {value!r}.")
    leaves = jax.tree_util.tree_leaves(value)
    bad = [leaf for leaf in leaves if not _is_bool_leaf(leaf)]
    if bad:
        raise TypeError(f"{wanted}; it has the leaf {bad[0]!r}.")
    if not leaves:
        raise ValueError(f"{wanted}; got {value!r}, which has no leaves to match the "
                         "parameters.")
    return value


MASK = FixedArgument(
    checker=check_mask,
    text="None, a tree of bools (the parameters' structure or a prefix of it), or a function "
         "of the parameters that returns one",
    refused=({}, ()),
    none_allowed=True,
)


def broadcast_mask(mask: PyTree, params: PyTree) -> PyTree:
    """A mask given for a prefix of ``params`` (``True`` for a whole subtree), spread to one
    entry per leaf of ``params``, as Optax's masks are read."""
    try:
        return jax.tree_util.tree_map(
            lambda keep, subtree: jax.tree_util.tree_map(lambda _: keep, subtree), mask, params
        )
    except ValueError as error:
        raise ValueError(
            f"`mask` must have the structure of the parameters, or a prefix of it: {error}"
        ) from None


def masked_weight_decay(
    weight_decay, mask: PyTree | Callable[[PyTree], PyTree] | None
) -> GradientTransformation | None:
    """``add_decayed_weights(weight_decay)`` on the leaves ``mask`` selects (a mask may be a
    prefix of the parameters' tree, as in Optax), left out for a Python 0. With a mask the
    step is not flattenable (it treats leaves differently), so ``gradtx.multi_tensor``
    refuses it."""
    if mask is None or validation.is_static_zero(weight_decay):
        return weight_decay_if(weight_decay)

    def full_mask(params):
        given = mask(params) if callable(mask) else mask
        return broadcast_mask(given, params)

    decay = add_decayed_weights(weight_decay, full_mask)

    def update(updates, state, params=None, **extra_args):
        return decay.update(updates, state, params, **extra_args)

    return GradientTransformation(decay.init, update)

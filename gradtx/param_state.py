"""Mapping a function over the parameter-shaped parts of an optimizer state: the moments,
buffers and parameter copies that hold one entry per parameter.

The typical use is sharding: given the params' ``PartitionSpec`` tree, build the state's
(``tree_map_params(opt, lambda _, spec: spec, state, specs, transform_non_params=lambda _:
P())``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

PyTree = Any

__all__ = ["tree_map_params"]


@jax.tree_util.register_pytree_node_class
class _Params:
    """Stands in for the whole params tree when ``init`` is traced: a node with no leaves, so
    every ``tree_map`` over the params returns it, and it marks where each parameter-shaped
    tree sits in the state."""

    def tree_flatten(self):
        return (), None

    @classmethod
    def tree_unflatten(cls, aux, children):
        del aux, children
        return cls()


def tree_map_params(
    initable: Callable[[PyTree], PyTree] | Any,
    f: Callable[..., Any],
    state: PyTree,
    /,
    *rest: PyTree,
    transform_non_params: Callable[[Any], Any] | None = None,
    is_leaf: Callable[[Any], bool] | None = None,
) -> PyTree:
    """Applies ``f`` leaf by leaf to every tree in ``state`` that mirrors the params tree
    (with ``rest``, trees of the params' structure, as further arguments), and
    ``transform_non_params`` (if given) to every other leaf of the state.

    Which parts of ``state`` mirror the params is found by calling ``init`` (of ``initable``,
    a transformation or an init function) on a stand-in for the params; so a state entry
    counts when ``init`` built it by mapping over the params (moments, momentum buffers,
    parameter copies), and not when it only has the params' shapes by chance. Entries that
    ``init`` builds from the leaves' shapes in another way (Adafactor's factored rows and
    columns, SOAP's preconditioners, L-BFGS's flat history) are not parameter trees and go to
    ``transform_non_params``.

    Args:
        initable: a :class:`gradtx.GradientTransformation` (or anything with ``init``), or an
            init function ``params -> state``.
        f: ``f(state_leaf, *rest_leaves)`` for each leaf of each parameter-shaped tree.
        state: the state to map over, made by the same ``init``.
        rest: trees of the params' structure, passed leaf by leaf to ``f``.
        transform_non_params: applied to each other leaf of ``state``; None leaves them as
            they are.
        is_leaf: passed to ``jax.tree_util.tree_map`` over each parameter-shaped tree.

    Returns:
        ``state`` with the mapped values, of the same tree structure.

    Equal to ``optax.tree_map_params``. An ``init`` that reads the leaves themselves (a
    custom one; gradtx's own do not) cannot run on the stand-in; then ``init``'s own error is
    raised, with a note saying so.

    Example:
        >>> import gradtx as gx, jax.numpy as jnp
        >>> opt = gx.adam()
        >>> params = {"w": jnp.zeros((2, 3))}
        >>> names = gx.tree_map_params(opt, lambda _, n: n, opt.init(params), {"w": "weight"},
        ...                            transform_non_params=lambda _: None)
        >>> gx.tree_get(names, "mu"), gx.tree_get(names, "nu")
        ({'w': 'weight'}, {'w': 'weight'})
    """
    init = initable.init if hasattr(initable, "init") else initable
    if not callable(init):
        raise TypeError(
            "tree_map_params: `initable` must be a transformation or an init function, got "
            f"{type(initable).__name__}."
        )
    try:
        marked = init(_Params())
    except Exception as err:
        err.add_note(
            "tree_map_params calls init on a stand-in for the params (a tree with no leaves) "
            "to find the parameter-shaped parts of the state; this init needs the leaves."
        )
        raise

    def is_marker(x):
        return isinstance(x, _Params)

    def visit(mark, value):
        if is_marker(mark):
            return jax.tree_util.tree_map(f, value, *rest, is_leaf=is_leaf)
        return value if transform_non_params is None else transform_non_params(value)

    try:
        return jax.tree_util.tree_map(visit, marked, state, is_leaf=is_marker)
    except ValueError as err:
        raise ValueError(
            "tree_map_params: `state` does not have the structure `initable.init` gives; pass "
            f"the state made by the same transformation. ({err})"
        ) from None

"""Tree utilities shared by every transformation: structure checks that name paths, and the
leafwise map used for per-parameter state."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from gradtx import live, validation

PyTree = Any


def is_none(x) -> bool:
    """For ``is_leaf``: treat ``None`` as a leaf rather than an empty subtree."""
    return x is None


def _flatten(tree):
    # None leaves are kept as leaves so a None facing an array is reported, not skipped.
    leaves, treedef = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_none)
    return leaves, treedef


def path_str(keypath) -> str:
    """A key path as text, e.g. ``['w']['b']``; ``<root>`` for the root."""
    return jax.tree_util.keystr(keypath) or "<root>"


def _shape(x):
    return None if x is None else tuple(jnp.shape(x))


# How many paths a structure mismatch lists on each side before "and N more".
_MAX_PATHS_LISTED = 10


def _list_paths(paths: list[str]) -> str:
    listed = ", ".join(paths[:_MAX_PATHS_LISTED])
    hidden = len(paths) - _MAX_PATHS_LISTED
    return f"{listed} and {hidden} more" if hidden > 0 else listed


def _structure_difference(
    ref_leaves, oth_leaves, ref_def, oth_def, reference_name: str, other_name: str
) -> str:
    """What differs between two tree structures: every path one side has and the other lacks
    (both sides, so that a renamed key shows its old and its new name), or, when the paths
    agree, the container types."""
    ref_paths = [path_str(k) for k, _ in ref_leaves]
    oth_paths = [path_str(k) for k, _ in oth_leaves]
    ref_set, oth_set = set(ref_paths), set(oth_paths)
    missing = [p for p in ref_paths if p not in oth_set]
    unexpected = [p for p in oth_paths if p not in ref_set]
    parts = []
    if missing:
        parts.append(f"missing: {other_name} has no entry at {_list_paths(missing)}")
    if unexpected:
        entries = "an entry" if len(unexpected) == 1 else "entries"
        parts.append(
            f"unexpected: {other_name} has {entries} at {_list_paths(unexpected)} that "
            f"{reference_name} lacks"
        )
    if not parts:
        return (
            f"the container types differ: {reference_name} is {ref_def}, "
            f"{other_name} is {oth_def}"
        )
    return "; ".join(parts)


def check_match(
    reference: PyTree,
    other: PyTree,
    *,
    reference_name: str,
    other_name: str,
    shapes: bool = True,
) -> None:
    """Raises ``ValueError`` when ``other`` differs from ``reference`` in structure, naming
    every path missing from ``other`` and every unexpected one (up to ten of each), or (with
    ``shapes``) naming the first path whose leaf shape differs. Reads static information only,
    so it costs nothing under jit."""
    ref_leaves, ref_def = _flatten(reference)
    oth_leaves, oth_def = _flatten(other)
    if ref_def != oth_def:
        detail = _structure_difference(
            ref_leaves, oth_leaves, ref_def, oth_def, reference_name, other_name
        )
        raise ValueError(
            f"The {other_name} tree does not match the {reference_name} tree: {detail}."
        )
    for (keypath, r), (_, o) in zip(ref_leaves, oth_leaves, strict=True):
        if (r is None) != (o is None):
            which = other_name if o is None else reference_name
            raise ValueError(
                f"The {other_name} tree does not match the {reference_name} tree at "
                f"{path_str(keypath)}: {which} has None there and the other has an array."
            )
        if shapes and _shape(r) != _shape(o):
            raise ValueError(
                f"The {other_name} tree does not match the {reference_name} tree at "
                f"{path_str(keypath)}: shape {_shape(o)} where {reference_name} has {_shape(r)}."
            )


def check_params(params: PyTree, updates: PyTree, *, name: str) -> None:
    """For a transformation called ``name`` that needs the parameters: raises ``ValueError``
    when ``params`` is None (unless ``updates`` is too: a mask that leaves out a whole tree
    that is one array passes None for both), or names the first path where it does not match
    ``updates``."""
    if params is None and updates is not None:
        raise ValueError(f"{name} needs the parameters: call update(updates, state, params).")
    check_match(params, updates, reference_name="params", other_name="updates")


def map_state(
    fn: Callable[..., Any], updates: PyTree, *state_trees: PyTree, name: str
) -> PyTree:
    """``tree_map(fn, updates, *state_trees)`` after checking that ``updates`` matches the first
    state tree; ``name`` (the transformation's name) goes into the error message."""
    if state_trees:
        check_match(
            state_trees[0], updates, reference_name=f"{name} state", other_name="updates"
        )
    return jax.tree_util.tree_map(fn, updates, *state_trees)


def fill_like(p, value=0.0, dtype=None) -> jax.Array:
    """An array shaped like the parameter ``p`` filled with ``value``, in ``dtype`` or, when it
    is None, in ``p``'s dtype, and sharded like ``p``, eagerly and under jit."""
    out = jnp.full_like(p, value, dtype=dtype)
    if validation.is_traced(p):
        # Eagerly full_like copies p's sharding, but under jit p's sharding is unknown while
        # tracing, and a constant depends on no input, so the partitioner would place it on
        # its own (replicated, or on one device). Selecting elementwise between the fill and p
        # ties the two, so p's sharding propagates to the fill (at the cost of reading p once
        # at init). The predicate is a False behind a barrier, so that it is not folded away
        # before propagation. (jax.experimental.shard_alike ties arrays too, but in jax 0.10
        # its calls on equal shapes lower to one sharding group, tying unrelated parameters.)
        never = jax.lax.optimization_barrier(jnp.zeros((), bool))
        out = jnp.where(never, jax.lax.convert_element_type(p, out.dtype), out)
    return out


def full_like(params: PyTree, value=0.0, dtype=None) -> PyTree:
    """A tree shaped like ``params`` filled with ``value``, each leaf in ``dtype`` or, when it
    is None, in its parameter's dtype, and sharded like its parameter (see
    :func:`fill_like`)."""
    return jax.tree_util.tree_map(lambda p: fill_like(p, value, dtype), params)


def widen(*leaves: jax.Array) -> tuple[jax.Array, ...]:
    """The leaves cast to their common (widest) dtype, for computing a state update: a
    bfloat16 moment is updated in float32 when the gradient is float32, then stored narrow."""
    dtype = jnp.result_type(*leaves)
    return tuple(x.astype(dtype) for x in leaves)


def cast_like(x, leaf) -> jax.Array:
    """``x`` (a Python scalar, an array or a live hyperparameter, which is read) as an array of
    ``leaf``'s dtype, so that hyperparameters never promote a bf16 or f32 update to a wider
    dtype."""
    return jnp.asarray(live.read(x), dtype=jnp.result_type(leaf))


def split_tuples(tree_of_tuples: PyTree, like: PyTree, n: int) -> tuple[PyTree, ...]:
    """Turns a tree (shaped like ``like``) whose leaves are n-tuples into n trees."""
    return tuple(
        jax.tree_util.tree_map(lambda _, t, i=i: t[i], like, tree_of_tuples) for i in range(n)
    )


def leafwise(
    step: Callable[..., tuple[jax.Array, ...]],
    updates: PyTree,
    *state_trees: PyTree,
    name: str,
) -> tuple[PyTree, tuple[PyTree, ...]]:
    """The one per-leaf loop of the transformations that keep per-parameter state.

    For each leaf, ``step(u, *s) -> (out, *new_s)`` runs on the update and the matching leaves
    of ``state_trees``, all cast to their widest dtype (a bfloat16 moment is updated in float32
    when the gradient is float32); each new state leaf is stored back in its old dtype, while
    ``out`` keeps the wide result. Returns ``(outputs, new_state_trees)``. ``updates`` is
    checked against the first state tree (``name``, the transformation's, goes into the
    error).
    """

    def leaf(u, *stored):
        out, *new = step(*widen(u, *stored))
        return (out, *(n.astype(s.dtype) for n, s in zip(new, stored, strict=True)))

    results = map_state(leaf, updates, *state_trees, name=name)
    parts = split_tuples(results, updates, 1 + len(state_trees))
    return parts[0], parts[1:]


def map_by_shape(fn: Callable[[jax.Array], jax.Array], tree: PyTree) -> PyTree:
    """``jax.tree_util.tree_map(fn, tree)`` with the leaves of one shape and dtype stacked and
    mapped by one ``jax.vmap(fn)``: a matrix function (Newton–Schulz, an eigendecomposition)
    is then traced and compiled once per distinct shape instead of once per leaf. ``fn`` must
    act on one leaf at a time (no reduction across the stacked axis); a shape held by one leaf
    is mapped as it is. ``None`` leaves stay ``None``.

    Example:
        >>> import gradtx as gx, jax.numpy as jnp
        >>> tree = {"a": jnp.ones((2, 3)), "b": 2 * jnp.ones((2, 3)), "c": jnp.ones(4)}
        >>> out = gx.map_by_shape(lambda m: m / m.sum(), tree)
        >>> round(float(out["b"][0, 0]), 4), float(out["c"][0])
        (0.1667, 0.25)
    """
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    groups: dict[tuple, list[int]] = {}
    for i, leaf in enumerate(leaves):
        groups.setdefault((jnp.shape(leaf), jnp.result_type(leaf)), []).append(i)
    out: list[Any] = [None] * len(leaves)
    for members in groups.values():
        if len(members) == 1:
            out[members[0]] = fn(leaves[members[0]])
            continue
        mapped = jax.vmap(fn)(jnp.stack([leaves[i] for i in members]))
        for k, i in enumerate(members):
            out[i] = mapped[k]
    return treedef.unflatten(out)

r"""Selecting parameters: apply a transformation to some leaves only (:func:`masked`), a
different transformation to each group of leaves (:func:`multi_transform`, gradtx's param
groups), or stop some leaves from training (:func:`freeze`).

A selection is static: it decides which leaves the inner transformation's state covers, so it is
made of Python bools (or labels), never of traced values. Leaves left out of a selection are
replaced by ``None`` before the inner transformation sees them, and every gradtx transformation
keeps no state for a ``None`` leaf, so a group's state costs memory only for its own leaves.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradtx import core, validation
from gradtx import tree as _tree
from gradtx.core import GradientTransformation, OptState, PyTree, stateless

Mask = PyTree | Callable[[PyTree], PyTree]


class MaskedState(NamedTuple):
    """The inner transformation's state, built for the selected leaves only."""

    inner_state: OptState


class MultiTransformState(NamedTuple):
    """Each group's state, keyed by the group's label. ``inner_states[label]`` is the state of
    ``transforms[label]`` built for the leaves with that label only."""

    inner_states: dict[str, OptState]


def _expand(
    prefix: PyTree, tree: PyTree, name: str, tree_name: str = "params"
) -> list[tuple[Any, Any]]:
    """``(path in prefix, value)`` for every leaf of ``tree`` (``None`` leaves included), read from
    ``prefix``: a tree with ``tree``'s structure, or a prefix of it whose leaves then hold for
    their whole subtree."""
    prefix_leaves, prefix_def = jax.tree_util.tree_flatten_with_path(
        prefix, is_leaf=_tree.is_none
    )
    try:
        subtrees = prefix_def.flatten_up_to(tree)
    except (ValueError, TypeError):
        # Name the first path that differs; a mismatch that is only of container types falls
        # through to the generic message.
        _tree.check_match(tree, prefix, reference_name=tree_name, other_name=name, shapes=False)
        raise ValueError(
            f"The {name} tree is neither the {tree_name} tree's structure nor a prefix of it: "
            f"{name} is {prefix_def}, {tree_name} is {jax.tree_util.tree_structure(tree)}."
        ) from None
    expanded = []
    for (path, value), sub in zip(prefix_leaves, subtrees, strict=True):
        count = len(jax.tree_util.tree_leaves(sub, is_leaf=_tree.is_none))
        expanded += [(path, value)] * count
    return expanded


def _as_flag(value, path, name: str) -> bool:
    if value is None:
        return False
    if validation.is_traced(value):
        raise TypeError(
            f"{name} at {_tree.path_str(path)} is traced; a selection must be static (Python "
            "bools) because it decides which leaves the inner state covers."
        )
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (np.ndarray, jax.Array)) and value.shape == () and value.dtype == bool:
        return bool(value)
    raise TypeError(
        f"{name} at {_tree.path_str(path)} must be a bool, got {value!r}; masks select whole "
        "leaves (for an elementwise mask, multiply the updates instead)."
    )


def _flags(mask: PyTree, tree: PyTree, tree_name: str) -> list[bool]:
    """One Python bool per leaf of ``tree`` (``None`` leaves included), read from ``mask``."""
    return [_as_flag(v, p, "mask") for p, v in _expand(mask, tree, "mask", tree_name)]


def _select(tree: PyTree, flags: list[bool]) -> PyTree:
    """``tree`` with its unselected leaves replaced by ``None``."""
    leaves, treedef = jax.tree_util.tree_flatten(tree, is_leaf=_tree.is_none)
    return treedef.unflatten([x if f else None for x, f in zip(leaves, flags, strict=True)])


def _merge(original: PyTree, selected: PyTree, flags: list[bool]) -> PyTree:
    """``selected``'s leaves where ``flags`` is True, ``original``'s elsewhere."""
    leaves, treedef = jax.tree_util.tree_flatten(original, is_leaf=_tree.is_none)
    new_leaves = jax.tree_util.tree_leaves(selected, is_leaf=_tree.is_none)
    if len(new_leaves) != len(leaves):
        raise ValueError(
            "masked: the inner transformation returned a tree of a different structure: "
            f"{jax.tree_util.tree_structure(selected)}, expected that of {treedef}."
        )
    return treedef.unflatten(
        [n if f else o for o, n, f in zip(leaves, new_leaves, flags, strict=True)]
    )


def masked(inner: GradientTransformation, mask: Mask) -> GradientTransformation:
    r"""Applies ``inner`` to the selected leaves only; the other updates pass through unchanged.

    .. math::
        \text{out}_i = \begin{cases} \text{inner}(u_S)_i & i \in S \\ u_i & i \notin S
        \end{cases}

    where :math:`S` is the set of leaves whose mask entry is ``True`` and :math:`u_S` is the
    updates with every other leaf replaced by ``None``. ``inner`` never sees the unselected
    leaves (nor their ``params``), so its state has entries for the selected leaves only.

    Args:
        inner: the transformation for the selected leaves.
        mask: a tree of bools with the structure of the params (or a prefix of it: a bool then
            selects or leaves out a whole subtree), or a callable ``params -> such a tree``. It
            is called on ``params`` in ``init``, and in ``update`` on ``params`` or, when
            ``params`` is None, on the updates. The bools must be static (Python or NumPy
            bools), since they decide the structure of the state; ``None`` counts as False.

    State: :class:`MaskedState` ``(inner_state)``.

    Optax's ``masked`` is the same idea; there the inner state holds placeholders for the
    unselected leaves, here it holds nothing for them.

    Example:
        >>> import gradtx as gx, jax.numpy as jnp
        >>> from gradtx.wrappers.masking import masked
        >>> params = {"w": jnp.ones(2), "b": jnp.ones(2)}
        >>> opt = masked(gx.sgd(0.5), {"w": True, "b": False})
        >>> updates, state = opt.update({"w": jnp.ones(2), "b": jnp.ones(2)}, opt.init(params))
        >>> updates["w"].tolist(), updates["b"].tolist()
        ([-0.5, -0.5], [1.0, 1.0])
    """

    def init(params):
        flags = _flags(mask(params) if callable(mask) else mask, params, "params")
        return MaskedState(inner_state=inner.init(_select(params, flags)))

    inner_update = core.with_extra_args(inner.update)

    def update(updates, state, params=None, **extra_args):
        if params is not None:
            # One list of flags selects from both trees, so they must agree.
            _tree.check_match(params, updates, reference_name="params", other_name="updates")
        resolved = mask(updates if params is None else params) if callable(mask) else mask
        flags = _flags(resolved, updates, "updates")
        inner_params = None if params is None else _select(params, flags)
        out, inner_state = inner_update(
            _select(updates, flags), state.inner_state, inner_params, **extra_args
        )
        return _merge(updates, out, flags), MaskedState(inner_state=inner_state)

    return GradientTransformation(init, update)


def multi_transform(
    transforms: Mapping[str, GradientTransformation],
    param_labels: PyTree | Callable[[PyTree], PyTree],
) -> GradientTransformation:
    r"""A different transformation for each group of parameters: gradtx's param groups.

    Every leaf carries a string label; ``transforms[label]`` transforms the leaves with that
    label (through :func:`masked`, so it sees only them and keeps state only for them). The
    groups are disjoint, so the order in which they run does not matter.

    Args:
        transforms: a dict ``label -> transformation``. Labels that no leaf carries are allowed
            (their state is empty).
        param_labels: a tree of strings with the structure of the params (or a prefix of it),
            or a callable ``params -> such a tree``, called as ``mask`` is in :func:`masked`.
            A label with no entry in ``transforms`` raises ``ValueError`` naming the label and
            its path. ``None`` params need no label.

    State: :class:`MultiTransformState` ``(inner_states)``, a dict keyed by label, so
    ``gx.get_hyperparam(state, "decay/learning_rate")`` finds a group's hyperparameter.

    torch.optim: the param groups of any optimizer, e.g.
    ``torch.optim.SGD([{"params": decay, "lr": 0.1}, {"params": no_decay, "lr": 0.01}])``.
    Unlike torch, the groups may run different optimizers.

    Example: AdamW on the matrices, Adam without weight decay on the biases.

        >>> import gradtx as gx, jax, jax.numpy as jnp
        >>> from gradtx.wrappers.masking import multi_transform
        >>> params = {"w": jnp.ones((2, 2)), "b": jnp.zeros(2)}
        >>> labels = lambda p: jax.tree_util.tree_map(
        ...     lambda x: "decay" if x.ndim > 1 else "no_decay", p)
        >>> opt = multi_transform({"decay": gx.adamw(1e-3), "no_decay": gx.adam(1e-2)}, labels)
        >>> state = opt.init(params)
        >>> sorted(state.inner_states)
        ['decay', 'no_decay']
        >>> grads = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
        >>> updates, state = opt.update(grads, state, params)
        >>> [round(float(x), 6) for x in (updates["w"][0, 0], updates["b"][0])]
        [-0.00101, -0.01]
    """
    if not isinstance(transforms, Mapping):
        raise TypeError(
            f"multi_transform: `transforms` must be a dict label -> transformation, got "
            f"{type(transforms).__name__}."
        )
    for label, t in transforms.items():
        if not isinstance(label, str):
            raise TypeError(f"multi_transform: labels must be strings, got {label!r}.")
        if not (callable(getattr(t, "init", None)) and callable(getattr(t, "update", None))):
            raise TypeError(
                f"multi_transform: transforms[{label!r}] is a {type(t).__name__}, not a "
                "GradientTransformation."
            )

    def labels_of(tree, tree_name):
        """Checked labels for ``tree``: a list aligned with its leaves (None where no label)."""
        resolved = param_labels(tree) if callable(param_labels) else param_labels
        labels = []
        leaves = jax.tree_util.tree_leaves(tree, is_leaf=_tree.is_none)
        expanded = _expand(resolved, tree, "param_labels", tree_name)
        for leaf, (path, label) in zip(leaves, expanded, strict=True):
            if leaf is None:
                labels.append(None)
                continue
            if not isinstance(label, str):
                raise TypeError(
                    f"param_labels at {_tree.path_str(path)} must be a string, got {label!r}."
                )
            if label not in transforms:
                raise ValueError(
                    f"multi_transform: label {label!r} at {_tree.path_str(path)} has no "
                    f"transformation; known labels: {sorted(transforms)}."
                )
            labels.append(label)
        return labels

    def group(label, labels, tree):
        """``transforms[label]`` masked to the leaves of ``tree`` labelled ``label``."""
        treedef = jax.tree_util.tree_structure(tree, is_leaf=_tree.is_none)
        return masked(transforms[label], treedef.unflatten([x == label for x in labels]))

    def init(params):
        labels = labels_of(params, "params")
        return MultiTransformState(
            inner_states={k: group(k, labels, params).init(params).inner_state for k in transforms}
        )

    def update(updates, state, params=None, **extra_args):
        if params is not None:
            _tree.check_match(params, updates, reference_name="params", other_name="updates")
        reference = updates if params is None else params
        labels = labels_of(reference, "updates" if params is None else "params")
        new_states = {}
        for k in transforms:
            # The groups are disjoint: each one changes only its own leaves of `updates`.
            updates, s = group(k, labels, reference).update(
                updates, MaskedState(inner_state=state.inner_states[k]), params, **extra_args
            )
            new_states[k] = s.inner_state
        return updates, MultiTransformState(inner_states=new_states)

    # Read by the torch state_dict bridge, which maps the groups to torch's param groups.
    update._gradtx_groups = (transforms, labels_of)
    return GradientTransformation(init, update)


def set_to_zero() -> GradientTransformation:
    """Replaces every update by zeros of the same shape and dtype; keeps no state.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.wrappers.masking import set_to_zero
        >>> set_to_zero().update({"w": jnp.ones(2)}, None)[0]["w"].tolist()
        [0.0, 0.0]
    """

    return stateless(lambda updates, params: jax.tree_util.tree_map(jnp.zeros_like, updates))


def freeze(mask: Mask) -> GradientTransformation:
    """Stops the selected leaves from training: their updates become zero, so
    ``apply_updates`` leaves those params as they are; the other updates pass through.

    ``freeze(mask)`` is ``masked(set_to_zero(), mask)``; put it at the end of a chain (after the
    learning rate, and after any weight decay), e.g. ``gx.chain(gx.adamw(1e-3), freeze(mask))``.
    ``mask`` is as in :func:`masked` (``True`` = frozen). The frozen leaves still pass through
    the optimizer before this, so it keeps state for them; to save that memory as well, use
    ``multi_transform({"train": opt, "frozen": set_to_zero()}, labels)`` instead.

    torch: ``param.requires_grad_(False)`` (or leaving the parameter out of the optimizer).

    Example:
        >>> import gradtx as gx, jax.numpy as jnp
        >>> from gradtx.wrappers.masking import freeze
        >>> params = {"w": jnp.ones(2), "b": jnp.ones(2)}
        >>> opt = gx.chain(gx.sgd(0.5), freeze({"w": False, "b": True}))
        >>> updates, _ = opt.update({"w": jnp.ones(2), "b": jnp.ones(2)}, opt.init(params))
        >>> params = gx.apply_updates(params, updates)
        >>> params["w"].tolist(), params["b"].tolist()
        ([0.5, 0.5], [1.0, 1.0])
    """
    return masked(set_to_zero(), mask)

"""Multi-tensor execution: a flattenable transformation run on a few concatenated buffers
instead of leaf by leaf, so that the optimizer's arithmetic compiles into a handful of kernels
however many leaves the model has; and packed parameters (:func:`pack_leaves`), which remove
the per-leaf work from the step altogether.

The layout (which leaf goes into which buffer, at which offset) is a pure function of the
leaves' shapes and dtypes and of the ``shardings`` given at construction, so ``init`` and every
``update`` agree on it without storing it, eagerly and under ``jit``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradtx import tree as _tree
from gradtx import validation
from gradtx.core import (
    GradientTransformation,
    OptState,
    Params,
    PyTree,
    is_flattenable,
    with_extra_args,
)
from gradtx.optimizers import leaf_kinds


class MultiTensorState(NamedTuple):
    """The state of :func:`multi_tensor`.

    Attributes:
        inner_state: the wrapped transformation's state over the buffers: a dict from group
            name (``"float32"``, or a sharded leaf's own group) to one array. Names such as
            ``mu`` read it as usual (:func:`gradtx.tree_get`), buffer by buffer;
            :func:`per_leaf_state` gives it leaf by leaf.
    """

    inner_state: OptState


@dataclasses.dataclass(frozen=True)
class _Slot:
    group: str
    start: int
    shape: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class _Layout:
    treedef: Any
    slots: tuple[_Slot, ...]
    groups: Mapping[str, tuple[int, ...]]  # group -> buffer shape
    dtypes: Mapping[str, Any]  # group -> dtype

    def pack(self, tree: PyTree) -> dict[str, jax.Array]:
        leaves = self.treedef.flatten_up_to(tree)
        parts: dict[str, list] = {g: [] for g in self.groups}
        for slot, leaf in zip(self.slots, leaves, strict=True):
            # A gradient of another float width is cast to its parameter's, as every
            # optimizer does leaf by leaf.
            leaf = jnp.asarray(leaf, self.dtypes[slot.group])
            if self.groups[slot.group] == slot.shape:  # a group of its own: kept as it is
                parts[slot.group].append(leaf)
            else:
                parts[slot.group].append(leaf.reshape(-1))
        return {
            g: p[0] if len(p) == 1 and p[0].shape == self.groups[g] else jnp.concatenate(p)
            for g, p in parts.items()
        }

    def unpack(self, buffers: Mapping[str, jax.Array]) -> PyTree:
        leaves = []
        for slot in self.slots:
            buffer = buffers[slot.group]
            if self.groups[slot.group] == slot.shape:
                leaves.append(buffer)
            else:
                size = math.prod(slot.shape)
                part = jax.lax.slice_in_dim(buffer, slot.start, slot.start + size)
                leaves.append(part.reshape(slot.shape))
        return self.treedef.unflatten(leaves)


def _sharding_group(sharding) -> str | None:
    """None for a leaf that may share a buffer (no sharding given, or a replicated one); else
    the group name that keeps it alone."""
    if sharding is None or getattr(sharding, "is_fully_replicated", False):
        return None
    return "own"


def _layout(tree: PyTree, shardings: PyTree | None) -> _Layout:
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    paths = [p for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]
    if shardings is None:
        leaf_shardings = [None] * len(leaves)
    else:
        leaf_shardings = treedef.flatten_up_to(shardings)
    slots, sizes, dtypes = [], {}, {}
    for path, leaf, sharding in zip(paths, leaves, leaf_shardings, strict=True):
        dtype = jnp.result_type(leaf)
        if not jnp.issubdtype(dtype, jnp.floating):
            raise TypeError(
                f"multi_tensor: the leaf at {jax.tree_util.keystr(path)} has dtype {dtype}; "
                "it runs floating-point leaves only (keep complex or integer leaves out, e.g. "
                "with gx.multi_transform)."
            )
        shape = tuple(np.shape(leaf))
        if _sharding_group(sharding) is None:
            group = jnp.dtype(dtype).name
            dtypes[group] = dtype
            slots.append(_Slot(group, sizes.get(group, 0), shape))
            sizes[group] = sizes.get(group, 0) + math.prod(shape)
        else:
            group = f"{jnp.dtype(dtype).name}{jax.tree_util.keystr(path)}"
            slots.append(_Slot(group, 0, shape))
            sizes[group], dtypes[group] = shape, dtype
    groups = {g: size if isinstance(size, tuple) else (size,) for g, size in sizes.items()}
    return _Layout(treedef, tuple(slots), groups, dtypes)


def _check_unsharded(params: PyTree) -> None:
    """Eagerly, a leaf split over devices without ``shardings=`` would be gathered into a
    buffer every step: refused, naming it."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        if not isinstance(leaf, jax.Array) or validation.is_traced(leaf):
            continue  # under jit the sharding is not known here
        sharding = leaf.sharding
        if not sharding.is_fully_replicated:
            raise ValueError(
                f"multi_tensor: the leaf at {jax.tree_util.keystr(path)} is split over "
                f"devices ({sharding}); pass the parameters' shardings, "
                "gx.multi_tensor(tx, shardings=...), so that it keeps its own buffer instead "
                "of being gathered into a shared one."
            )


def multi_tensor(
    transform: GradientTransformation, *, shardings: PyTree | None = None
) -> GradientTransformation:
    r"""Runs ``transform`` on a few buffers instead of leaf by leaf: the leaves of each
    floating-point dtype are raveled and concatenated into one buffer, ``transform`` steps the
    buffers, and its output is split back into the leaves. The optimizer's arithmetic then
    compiles into a few kernels whatever the number of leaves (torch's ``foreach``/multi-tensor
    path plays this part there); what remains per leaf is the split of the output, one array
    per leaf. :func:`pack_leaves` removes that too, for a run that keeps its parameters packed.

    ``transform`` must be flattenable (:func:`gradtx.flattenable`: its result does not depend
    on how the parameters are split into leaves): every elementwise optimizer (SGD, Adam and
    their variants, Adagrad, RMSprop, Adadelta, Rprop, ASGD, Lion, sign SGD), chains of them
    with :func:`~gradtx.clip_by_global_norm`, :func:`~gradtx.add_decayed_weights` and the other
    elementwise transforms, and :func:`~gradtx.lookahead`, :func:`~gradtx.with_param_average`,
    :func:`~gradtx.accumulate_gradients` and :func:`~gradtx.reduce_on_plateau` around one. A
    transformation that works leaf by leaf (LAMB, LARS, Adafactor, Muon, L-BFGS, masks,
    per-leaf clipping, state quantization) raises ``ValueError``: to treat groups of leaves
    differently, put a ``multi_tensor`` per label inside :func:`~gradtx.multi_transform`.

    The result equals ``transform`` run leaf by leaf up to the last bit or two: the same
    operations run on every element, but XLA fuses the two programs differently and may turn a
    multiply and an add into one fused multiply-add in one of them (``tests/test_multi_tensor.py``
    measures at most 2 ulps over 6 steps; most optimizers agree bit for bit). A global norm
    (clipping) sums in another order, a relative difference below 1e-6 in float32.

    Args:
        transform: a flattenable transformation.
        shardings: the parameters' shardings (a tree like them, e.g. what is given to
            ``jax.jit``'s ``in_shardings``), for parameters split over devices. A leaf that is
            not fully replicated then keeps a buffer of its own (its shape and sharding
            unchanged, so the step adds no communication); replicated ones share. Without it,
            every leaf of a dtype shares one buffer, and an ``init`` called eagerly on a split
            leaf raises.

    The state is :class:`MultiTensorState`: ``transform``'s state over the buffers, a pytree of
    arrays that checkpoints as any other. :func:`per_leaf_state` turns it into the state
    ``transform`` keeps leaf by leaf (to inspect it, or to resume without ``multi_tensor``) and
    :func:`multi_tensor_state` goes the other way.

    Example:
        >>> import gradtx as gx, jax.numpy as jnp
        >>> params = {"w": jnp.ones((3, 2), jnp.float32), "b": jnp.zeros(2, jnp.float32)}
        >>> opt = gx.multi_tensor(gx.chain(gx.clip_by_global_norm(1.0), gx.adamw(1e-3)))
        >>> state = opt.init(params)
        >>> sorted(gx.tree_get(state, "mu"))  # one buffer for every float32 leaf
        ['float32']
        >>> updates, state = opt.update(params, state, params)
        >>> updates["w"].shape
        (3, 2)
    """
    if not is_flattenable(transform):
        raise ValueError(
            "multi_tensor: this transformation is not flattenable (it works leaf by leaf, or "
            "is not declared with gx.flattenable): run it without multi_tensor, or put the "
            "flattenable part in a multi_tensor of its own."
        )
    step = with_extra_args(transform.update)

    def init(params):
        if shardings is None:
            _check_unsharded(params)
        layout = _layout(params, shardings)
        return MultiTensorState(transform.init(layout.pack(params)))

    def update(updates, state, params=None, **extra_args):
        if not isinstance(state, MultiTensorState):
            raise ValueError(
                f"multi_tensor: expected a MultiTensorState, got {type(state).__name__}: pass "
                "the state this transformation's init returned."
            )
        if params is not None:
            # As every optimizer does leaf by leaf: packing would otherwise reshape a gradient
            # of another shape and cast one of another kind (integer, bool, complex) silently.
            _tree.check_match(params, updates, reference_name="params", other_name="gradient")
            updates = leaf_kinds.cast_gradients(updates, params)
        # The parameters' layout, as init made it (gradients may be of another width).
        layout = _layout(updates if params is None else params, shardings)
        flat_params = None if params is None else layout.pack(params)
        out, inner_state = step(layout.pack(updates), state.inner_state, flat_params,
                                **extra_args)
        return layout.unpack(out), MultiTensorState(inner_state)

    return GradientTransformation(init, update)


def _convert(state: PyTree, layout: _Layout, to_leaves: bool) -> PyTree:
    """Replaces each subtree of ``state`` laid out as the buffers (to_leaves) or as the
    parameters (not to_leaves) with the other form; scalars and other entries stay."""
    buffer_shapes = {g: tuple(shape) for g, shape in layout.groups.items()}

    def is_buffers(x):
        return (isinstance(x, dict) and set(x) == set(buffer_shapes)
                and all(np.shape(x[g]) == s for g, s in buffer_shapes.items()))

    def is_leaves(x):
        try:
            leaves = layout.treedef.flatten_up_to(x)
        except (ValueError, TypeError):
            return False
        return all(np.shape(v) == s.shape for v, s in zip(leaves, layout.slots, strict=True))

    match = is_buffers if to_leaves else is_leaves
    convert = layout.unpack if to_leaves else layout.pack
    return jax.tree_util.tree_map(
        lambda x: convert(x) if match(x) else x, state, is_leaf=match
    )


def per_leaf_state(state: MultiTensorState, params: Params,
                   shardings: PyTree | None = None) -> OptState:
    """The state the wrapped transformation keeps when run leaf by leaf, from the state of
    :func:`multi_tensor` for ``params`` (and the same ``shardings``): every entry laid out as
    the buffers becomes a tree like ``params``; counts and other scalars stay."""
    if not isinstance(state, MultiTensorState):
        raise ValueError(f"per_leaf_state: expected a MultiTensorState, got "
                         f"{type(state).__name__}.")
    return _convert(state.inner_state, _layout(params, shardings), to_leaves=True)


def multi_tensor_state(state: OptState, params: Params,
                       shardings: PyTree | None = None) -> MultiTensorState:
    """The inverse of :func:`per_leaf_state`: the state of ``multi_tensor(transform)`` from
    ``transform``'s own state for ``params``."""
    return MultiTensorState(_convert(state, _layout(params, shardings), to_leaves=False))


def pack_leaves(params: Params, *, shardings: PyTree | None = None):
    """``(buffers, unpack)``: the leaves of ``params`` concatenated into one buffer per dtype
    (split leaves alone, given ``shardings``), as :func:`multi_tensor` lays them out, and the
    function that turns such buffers back into a tree like ``params``.

    For the fastest compile, keep the parameters packed for the whole run: step any
    flattenable optimizer on ``buffers`` and call the model on ``unpack(buffers)`` inside the
    loss, so that ``jax.grad`` gives the gradient as buffers too. The step then has no
    per-leaf work at all (``multi_tensor`` still splits its output into the leaves, and
    XLA:CPU compiles every per-leaf output as a kernel of its own).

    Example:
        >>> import gradtx as gx, jax, jax.numpy as jnp
        >>> params = {"w": jnp.ones((3, 2), jnp.float32), "b": jnp.zeros(2, jnp.float32)}
        >>> buffers, unpack = gx.pack_leaves(params)
        >>> {k: v.shape for k, v in buffers.items()}
        {'float32': (8,)}
        >>> loss = lambda buffers: jnp.sum(unpack(buffers)["w"] ** 2)
        >>> opt = gx.adam(1e-2)
        >>> state = opt.init(buffers)
        >>> updates, state = opt.update(jax.grad(loss)(buffers), state, buffers)
        >>> buffers = gx.apply_updates(buffers, updates)
        >>> unpack(buffers)["w"].shape
        (3, 2)
    """
    layout = _layout(params, shardings)
    return layout.pack(params), layout.unpack

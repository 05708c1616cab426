"""Hypothesis strategies for parameter trees, gradients shaped like them, and hyperparameters.

`hypothesis <https://hypothesis.readthedocs.io>`_ is imported when a strategy is built, never
when this module is imported, so ``import gradtx.testing`` works without it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

    from gradtx.optimizers.registry import OptimizerInfo

PyTree = Any

__all__ = ["arrays_like", "hyperparameters", "pytrees"]


def _hypothesis():
    try:
        import hypothesis.extra.numpy as hnp
        import hypothesis.strategies as st
    except ImportError as err:
        raise ImportError(
            "gradtx.testing's strategies need hypothesis, which gradtx does not install: "
            "pip install hypothesis"
        ) from err
    return st, hnp


# Dict keys of drawn trees: short names, as in real parameter trees.
_KEYS = ("w", "b", "kernel", "bias", "scale", "emb", "gamma", "beta", "a", "c", "d", "e")


def _values(st, elements: SearchStrategy[float] | None) -> SearchStrategy[float]:
    """``elements``, or by default finite floats in [-2, 2]."""
    if elements is not None:
        return elements
    return st.floats(-2.0, 2.0, allow_nan=False, allow_infinity=False, allow_subnormal=False)


def _array(hnp, shape, dtype, values: SearchStrategy[float]) -> SearchStrategy[jax.Array]:
    """Arrays of ``shape`` and ``dtype``: ``values`` drawn as float64, then cast to ``dtype``."""
    return hnp.arrays(np.float64, shape, elements=values).map(
        functools.partial(jnp.asarray, dtype=dtype)
    )


def pytrees(
    *,
    shapes: Sequence[Sequence[int]] | None = None,
    dtypes: Sequence[Any] = (jnp.float32,),
    min_leaves: int = 1,
    max_leaves: int = 4,
    max_depth: int = 2,
    none_leaves: bool = False,
    scalar_leaves: bool = True,
    elements: SearchStrategy[float] | None = None,
) -> SearchStrategy[PyTree]:
    """A hypothesis strategy for parameter trees: nested dicts, lists and tuples of arrays.

    Each tree has between ``min_leaves`` and ``max_leaves`` leaves, nested at most ``max_depth``
    containers deep (a one-leaf tree may be a bare array, never a bare ``None``, which
    ``update`` would read as "no parameters"). Every array leaf takes a shape from
    ``shapes`` and a dtype from ``dtypes``; its values are drawn from ``elements`` (default:
    finite floats in [-2, 2]) and cast to the dtype.

    Args:
        shapes: the leaf shapes to choose from; by default, shapes of one or two axes of length
            1 to 3.
        dtypes: the leaf dtypes to choose from (``jnp.bfloat16`` works too).
        min_leaves: the fewest leaves (0 allows empty trees such as ``{}``).
        max_leaves: the most leaves.
        max_depth: the deepest nesting of containers (at least 1).
        none_leaves: let some leaves be ``None`` (a parameter without gradient, as frozen
            leaves are in gradtx); they count among the leaves.
        scalar_leaves: add shape ``()`` to the shapes.
        elements: a strategy for the values, as Python floats.

    Example:
        >>> from hypothesis import given, settings
        >>> from gradtx.testing import pytrees
        >>> @settings(max_examples=10, derandomize=True, database=None)
        ... @given(pytrees(max_leaves=3))
        ... def test_leaf_count(tree):
        ...     import jax
        ...     assert 1 <= len(jax.tree_util.tree_leaves(tree)) <= 3
        >>> test_leaf_count()
    """
    st, hnp = _hypothesis()
    if not 0 <= min_leaves <= max_leaves:
        raise ValueError(
            f"need 0 <= min_leaves <= max_leaves, got min_leaves={min_leaves}, "
            f"max_leaves={max_leaves}."
        )
    if max_depth < 1:
        raise ValueError(f"`max_depth` must be >= 1, got {max_depth}.")
    dtypes = [jnp.dtype(d) for d in dtypes]
    if not dtypes:
        raise ValueError("`dtypes` must name at least one dtype.")
    if shapes is None:
        shape_strategy = hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=3)
    else:
        shape_strategy = st.sampled_from([tuple(s) for s in shapes])
    if scalar_leaves:
        shape_strategy = st.one_of(shape_strategy, st.just(()))
    values = _values(st, elements)

    @st.composite
    def leaf(draw):
        # The last choice is None, so that shrinking goes toward array leaves.
        if none_leaves and draw(st.integers(0, 3)) == 3:
            return None
        dtype = draw(st.sampled_from(dtypes))
        shape = draw(shape_strategy)
        return draw(_array(hnp, shape, dtype, values))

    @st.composite
    def container(draw, items, depth):
        # Splits items into groups, each a child: a bare leaf or a nested container.
        if depth < max_depth and len(items) > 1 and draw(st.booleans()):
            cuts = sorted(draw(st.sets(st.integers(1, len(items) - 1), max_size=len(items) - 1)))
            groups = [items[i:j] for i, j in zip([0, *cuts], [*cuts, len(items)], strict=True)]
            children = [
                g[0] if len(g) == 1 and draw(st.booleans()) else draw(container(g, depth + 1))
                for g in groups
            ]
        else:
            children = list(items)
        kind = draw(st.sampled_from(["dict", "list", "tuple"]))
        if kind == "dict":
            keys = draw(
                st.lists(
                    st.sampled_from(_KEYS),
                    min_size=len(children),
                    max_size=len(children),
                    unique=True,
                )
            )
            return dict(zip(keys, children, strict=True))
        return children if kind == "list" else tuple(children)

    @st.composite
    def tree(draw):
        n = draw(st.integers(min_leaves, max_leaves))
        items = [draw(leaf()) for _ in range(n)]
        # A bare None is not a tree of parameters: update(..., params=None) means "no params".
        if n == 1 and items[0] is not None and draw(st.booleans()):
            return items[0]
        return draw(container(items, 1))

    return tree()


def arrays_like(tree: PyTree, *, elements: SearchStrategy[float] | None = None
                ) -> SearchStrategy[PyTree]:
    """A hypothesis strategy for trees shaped like ``tree``: gradients for given parameters.

    The result has ``tree``'s structure (``None`` leaves stay ``None``) and each array leaf's
    shape and dtype, with values drawn from ``elements`` (default: finite floats in [-2, 2]).

    Example:
        >>> import jax.numpy as jnp
        >>> from hypothesis import given, settings
        >>> from gradtx.testing import arrays_like
        >>> params = {"w": jnp.zeros((2, 3), jnp.float32), "frozen": None}
        >>> @settings(max_examples=5, derandomize=True, database=None)
        ... @given(arrays_like(params))
        ... def test_shapes(grads):
        ...     assert grads["w"].shape == (2, 3) and grads["frozen"] is None
        >>> test_shapes()
    """
    st, hnp = _hypothesis()
    values = _values(st, elements)
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    specs = [(np.shape(x), jnp.result_type(x)) for x in leaves]

    @st.composite
    def draw_like(draw):
        new = [draw(_array(hnp, shape, dtype, values)) for shape, dtype in specs]
        return jax.tree_util.tree_unflatten(treedef, new)

    return draw_like()


def hyperparameters(
    info: OptimizerInfo,
    *,
    names: Iterable[str] | None = None,
    fixed: Mapping[str, Any] | None = None,
) -> SearchStrategy[dict[str, Any]]:
    """A hypothesis strategy for keyword arguments of a registered optimizer.

    ``info`` is an entry of ``gradtx.optimizers.registry.OPTIMIZERS``. Each hyperparameter in
    ``names`` (default: all of ``info.grid``) takes one of its grid values; the others keep
    ``info.example``'s value, or the default; ``fixed`` overrides both. Combinations that
    ``info.constraint`` rejects (Nesterov without momentum, ...) are never drawn. Shrinking
    goes toward each grid's first value.

    Example:
        >>> from hypothesis import given, settings
        >>> from gradtx.optimizers import registry
        >>> from gradtx.testing import hyperparameters
        >>> info = registry.get("sgd")
        >>> @settings(max_examples=5, derandomize=True, database=None)
        ... @given(hyperparameters(info, fixed={"weight_decay": 0.0}))
        ... def test_builds(kwargs):
        ...     assert kwargs["weight_decay"] == 0.0
        ...     info.factory(**kwargs)
        >>> test_builds()
    """
    st, _ = _hypothesis()
    chosen = list(info.grid) if names is None else list(names)
    unknown = [n for n in chosen if n not in info.grid]
    if unknown:
        raise ValueError(
            f"{info.name}: no grid for {', '.join(map(repr, unknown))}; the grid has "
            f"{', '.join(info.grid)}."
        )
    fixed = dict(fixed or {})
    base = dict(info.example)
    drawn = {n: st.sampled_from(list(info.grid[n])) for n in chosen if n not in fixed}
    return (
        st.fixed_dictionaries(drawn)
        .map(lambda values: {**base, **values, **fixed})
        .filter(info.constraint)
    )

"""What the optimizers accept as leaves, checked with the offending path named.

* Parameters are floating-point or complex. Integer and bool leaves (a step counter kept in a
  model's parameters) are refused rather than silently left alone or updated in integer
  arithmetic; a ``None`` leaf is the way to keep a leaf out of an optimizer.
* A gradient has its parameter's kind (real or complex). A different floating-point width is
  cast to the parameter's dtype, so the state (built from the parameters) keeps its dtype and
  the step is the one the parameter's dtype gives; torch refuses such gradients outright.
* A complex leaf ``z`` of shape ``S`` is handed to the update rules as the real leaf
  ``stack([Re z, Im z])`` of shape ``(2, *S)`` and the result is turned back into ``z``'s
  dtype: real and imaginary parts are independent reals, as in ``torch.optim``
  (``torch.view_as_real``), and a whole-leaf norm is the complex norm.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from gradtx import tree as _tree
from gradtx.core import PyTree

_REMEDY = (
    "Keep integer and bool leaves out of the optimizer: replace them by None, or give them "
    "their own group, e.g. gx.multi_transform({'train': opt, 'frozen': gx.set_to_zero()}, "
    "labels)."
)


def _dtype(x) -> np.dtype:
    dtype = getattr(x, "dtype", None)
    return np.dtype(dtype) if dtype is not None else np.dtype(jnp.result_type(x))


def _kind(dtype: np.dtype) -> str:
    if dtype == jax.dtypes.float0:
        return "float0"
    if jnp.issubdtype(dtype, jnp.complexfloating):
        return "complex"
    if jnp.issubdtype(dtype, jnp.floating):
        return "real"
    return "other"


def _leaves(tree):
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [(_tree.path_str(path), x) for path, x in leaves]


def _check_param(path: str, dtype: np.dtype, real_only: str | None) -> None:
    kind = _kind(dtype)
    if kind in ("other", "float0"):
        raise TypeError(
            f"The parameter at {path} has dtype {dtype}: optimizers update floating-point and "
            f"complex parameters only. {_REMEDY}"
        )
    if kind == "complex" and real_only is not None:
        raise TypeError(
            f"{real_only} does not support complex parameters, and the one at {path} is "
            f"{dtype}. Split it into its real and imaginary parts (two real leaves)."
        )


def check_params(params: PyTree, real_only: str | None = None) -> None:
    """Raises ``TypeError`` naming the first leaf of ``params`` that is not floating-point or
    complex (or that is complex, when ``real_only`` names an optimizer that refuses them)."""
    for path, p in _leaves(params):
        _check_param(path, _dtype(p), real_only)


def check_gradients(updates: PyTree, real_only: str | None = None) -> None:
    """For ``update`` called without ``params``: raises ``TypeError`` naming the first gradient
    leaf that is not floating-point or complex."""
    for path, g in _leaves(updates):
        dtype = _dtype(g)
        kind = _kind(dtype)
        if kind in ("other", "float0"):
            raise TypeError(
                f"The gradient at {path} has dtype {dtype}: gradients must be floating-point "
                f"or complex. {_REMEDY}"
            )
        if kind == "complex" and real_only is not None:
            _check_param(path, dtype, real_only)


def cast_gradients(updates: PyTree, params: PyTree, real_only: str | None = None) -> PyTree:
    """``updates`` with each leaf cast to its parameter's dtype, after checking that both are
    floating-point or both complex (``TypeError`` naming the first path that is not).

    The trees must already match in structure (see :func:`gradtx.tree.check_match`). Leaves
    already in their parameter's dtype are returned as they are."""
    casts = []
    for (path, g), (_, p) in zip(_leaves(updates), _leaves(params), strict=True):
        g_dtype, p_dtype = _dtype(g), _dtype(p)
        _check_param(path, p_dtype, real_only)
        g_kind = _kind(g_dtype)
        if g_kind != _kind(p_dtype):
            hint = (
                " (float0 is the gradient of an integer input)" if g_kind == "float0" else ""
            )
            raise TypeError(
                f"The gradient at {path} has dtype {g_dtype}{hint} where the parameter has "
                f"{p_dtype}: a gradient must be real for a real parameter and complex for a "
                "complex one (its floating-point width may differ: it is cast to the "
                "parameter's dtype)."
            )
        casts.append(g_dtype != p_dtype)
    if not any(casts):
        return updates

    def cast(g, p):
        dtype = _dtype(p)
        return g if _dtype(g) == dtype else jnp.asarray(g, dtype=dtype)

    return jax.tree_util.tree_map(cast, updates, params)


def _is_complex(x) -> bool:
    return _kind(_dtype(x)) == "complex"


def as_real(tree: PyTree) -> PyTree:
    """``tree`` with every complex leaf ``z`` replaced by the real ``stack([Re z, Im z])``."""
    if tree is None or not any(_is_complex(x) for x in jax.tree_util.tree_leaves(tree)):
        return tree

    def split(x):
        return jnp.stack([jnp.real(x), jnp.imag(x)]) if _is_complex(x) else x

    return jax.tree_util.tree_map(split, tree)


def from_real(out: PyTree, like: PyTree) -> PyTree:
    """Undoes :func:`as_real` on ``out`` where ``like`` (the tree given to ``as_real``) has a
    complex leaf: ``out[0] + i out[1]`` in that leaf's dtype."""
    if not any(_is_complex(x) for x in jax.tree_util.tree_leaves(like)):
        return out

    def join(o, x):
        if not _is_complex(x):
            return o
        part = jnp.finfo(_dtype(x)).dtype  # float64 for complex128
        return jax.lax.complex(o[0].astype(part), o[1].astype(part))

    return jax.tree_util.tree_map(join, out, like)

r"""GaLore's scaling (Zhao et al., 2024, "GaLore: Memory-Efficient LLM Training by Gradient
Low-Rank Projection"): each matrix's gradient is projected on a rank-:math:`r` basis of its
singular vectors (recomputed every few steps), a base optimizer steps in that small space, and
its update is projected back. The base optimizer's state then has the small shapes, which is
the memory GaLore saves.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx import live, validation
from gradtx.core import GradientTransformation, PyTree, with_extra_args
from gradtx.transforms import counting


class GaLoreDimensionNumbers(NamedTuple):
    """Which axes of a leaf make the rows (``reduction_axis``) and the columns
    (``output_axis``) of the matrix GaLore projects: a ``(embed, heads, head_dim)`` attention
    kernel is the matrix ``embed x (heads·head_dim)`` with ``reduction_axis=0,
    output_axis=(1, 2)``. Every axis must be named on one side. Optax's class of the same name.
    """

    reduction_axis: Sequence[int] | int = 0
    output_axis: Sequence[int] | int = 1


class GaLoreState(NamedTuple):
    """:func:`scale_by_galore`'s state (Optax's ``GaLoreState``).

    Attributes:
        count: the number of updates seen; None inside an optimizer, which keeps one count.
        base_optimizer_state: the base optimizer's state, shaped like the projected gradients
            (:math:`r \\times n` or :math:`m \\times r` for a projected matrix, the leaf's own
            shape otherwise).
        projector: per leaf, the basis :math:`P` (``(m, r)`` or ``(n, r)``), or a ``(0, 0)``
            array for a leaf that is not projected.
    """

    count: jax.Array | None
    base_optimizer_state: Any
    projector: PyTree


def _axes(ndim: int, spec: GaLoreDimensionNumbers, path: str) -> tuple[tuple, tuple]:
    def as_tuple(axis):
        return (axis,) if isinstance(axis, int) else tuple(axis)

    rows = tuple(a % ndim for a in as_tuple(spec.reduction_axis))
    cols = tuple(a % ndim for a in as_tuple(spec.output_axis))
    if set(rows) & set(cols):
        raise ValueError(f"galore: the leaf at {path}: reduction axes {rows} and output axes "
                         f"{cols} overlap (GaLoreDimensionNumbers {tuple(spec)}).")
    if len(set(rows) | set(cols)) != ndim:
        raise ValueError(f"galore: the leaf at {path} has {ndim} axes; its "
                         f"GaLoreDimensionNumbers {tuple(spec)} must name every one.")
    return rows, cols


class _Matrix(NamedTuple):
    """How one leaf is seen as a matrix: its axes' order, the matrix's and the transposed
    leaf's shapes, and on which side it is projected."""

    order: tuple
    shape2d: tuple
    transposed: tuple
    left: bool  # m >= n: P is (m, r), projected as P^T G; else (n, r), as G P
    rank: int

    def to_matrix(self, x):
        return jnp.transpose(x, self.order).reshape(self.shape2d)

    def from_matrix(self, y):
        inverse = tuple(sorted(range(len(self.order)), key=lambda i: self.order[i]))
        return jnp.transpose(y.reshape(self.transposed), inverse)


def _matrix(shape, spec, rank: int, path: str) -> _Matrix | None:
    if spec is None:
        return None
    if len(shape) < 2:
        raise ValueError(f"galore: the leaf at {path} has shape {tuple(shape)}; only leaves of "
                         "two or more axes are projected (give it None).")
    rows, cols = _axes(len(shape), spec, path)
    m, n = math.prod(shape[a] for a in rows), math.prod(shape[a] for a in cols)
    return _Matrix(order=rows + cols, shape2d=(m, n),
                   transposed=tuple(shape[a] for a in rows + cols), left=m >= n,
                   rank=min(rank, m, n))


def scale_by_galore(
    rank: int = 128,
    update_proj_gap: int = 200,
    scale: float | jax.Array = 1.0,
    base_optimizer: GradientTransformation | None = None,
    weight_dimension_numbers: Any = None,
) -> GradientTransformation:
    r"""GaLore's scaling. For a leaf seen as an :math:`m \times n` matrix :math:`G_t`, with
    :math:`r' = \min(r, m, n)` and :math:`k` = ``update_proj_gap``:

    .. math::
        P_t &= \begin{cases} \text{the first } r' \text{ left (} m \ge n \text{) or right
            singular vectors of } G_t & k \mid t - 1 \\ P_{t-1} & \text{otherwise}
            \end{cases} \\
        R_t &= P_t^\top G_t \ (m \ge n) \quad\text{or}\quad G_t P_t \\
        \text{out}_t &= s\, P_t\, \rho(R_t) \quad\text{or}\quad s\, \rho(R_t)\, P_t^\top

    where :math:`\rho` is the base optimizer (run on every leaf at once, the unprojected ones
    at full size) and :math:`s` = ``scale``. The SVD runs in float32 (as Optax's) and the
    basis is kept in the leaf's dtype; under ``jit`` it runs only on refresh steps.

    Args:
        rank: :math:`r \ge 1`, the projection's rank (at most the matrix's smaller side).
        update_proj_gap: :math:`k \ge 1`, the steps between refreshes of the basis.
        scale: :math:`s`, a factor on the updates.
        base_optimizer: the transformation run in the small space, one that needs no params
            (``gx.scale_by_adam()``, ``gx.scale_by_lion()``, ...; its ``update`` gets
            ``params=None``); None: ``gx.scale_by_adam()``.
        weight_dimension_numbers: which leaves are projected, and as which matrix: None (every
            2-D leaf, as itself), one :class:`GaLoreDimensionNumbers` (for every leaf of two
            or more axes), a tree of them (None for a leaf left alone) like the params, or a
            function of the params returning one.

    State: :class:`GaLoreState`. Equal step for step to ``optax.contrib.scale_by_galore``
    (Optax 0.2.8).
    """
    rank = validation.check_static_int("rank", rank)
    update_proj_gap = validation.check_static_int("update_proj_gap", update_proj_gap)
    if base_optimizer is None:
        from gradtx.transforms.adam_scalings import scale_by_adam

        base_optimizer = scale_by_adam()
    check_base_optimizer("base_optimizer", base_optimizer)
    base_step = with_extra_args(base_optimizer.update)

    def is_spec(x) -> bool:
        return x is None or isinstance(x, GaLoreDimensionNumbers)

    def specs(tree):
        given = weight_dimension_numbers
        if given is None:
            return jax.tree_util.tree_map(
                lambda p: GaLoreDimensionNumbers() if jnp.ndim(p) == 2 else None, tree)
        if isinstance(given, GaLoreDimensionNumbers):
            return jax.tree_util.tree_map(lambda p: given if jnp.ndim(p) >= 2 else None, tree)
        return given(tree) if callable(given) else given

    def matrices(tree) -> list[_Matrix | None]:
        """Per leaf of ``tree`` (flattening order), how it is projected (None: it is not)."""
        leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
        try:
            spec_leaves = jax.tree_util.tree_structure(tree).flatten_up_to(specs(tree))
        except (ValueError, TypeError) as err:
            raise ValueError(
                "galore: `weight_dimension_numbers` must have the params' structure (None "
                f"for a leaf left alone): {err}") from None
        out = []
        for (path, leaf), spec in zip(leaves, spec_leaves, strict=True):
            if not is_spec(spec):
                raise TypeError(f"galore: the dimension numbers of the leaf at "
                                f"{jax.tree_util.keystr(path)} must be a "
                                f"GaLoreDimensionNumbers or None, got {spec!r}.")
            out.append(_matrix(jnp.shape(leaf), spec, rank, jax.tree_util.keystr(path)))
        return out

    def init(params):
        leaves, treedef = jax.tree_util.tree_flatten(params)
        projectors, small = [], []
        for p, mat in zip(leaves, matrices(params), strict=True):
            dtype = jnp.result_type(p)
            if mat is None:
                projectors.append(jnp.zeros((0, 0), dtype))
                small.append(jnp.zeros(jnp.shape(p), dtype))
                continue
            m, n = mat.shape2d
            projectors.append(jnp.zeros((m if mat.left else n, mat.rank), dtype))
            small.append(jnp.zeros((mat.rank, n) if mat.left else (m, mat.rank), dtype))
        unflatten = treedef.unflatten
        return GaLoreState(
            count=counting.init_count(),
            base_optimizer_state=base_optimizer.init(unflatten(small)),
            projector=unflatten(projectors),
        )

    def update(updates, state, params=None, **extra_args):
        del params
        taken, count = counting.advance(state.count, "scale_by_galore")
        refresh = taken % update_proj_gap == 0
        leaves, treedef = jax.tree_util.tree_flatten(updates)
        mats = matrices(updates)
        projectors = treedef.flatten_up_to(state.projector)
        small, new_projectors = [], []
        for g, mat, proj in zip(leaves, mats, projectors, strict=True):
            if mat is None:
                small.append(g)
                new_projectors.append(proj)
                continue
            g2 = mat.to_matrix(g)

            def basis(g2=g2, mat=mat):
                u, _, vh = jnp.linalg.svd(g2.astype(jnp.float32), full_matrices=False)
                chosen = u[:, :mat.rank] if mat.left else vh[:mat.rank, :].T
                return chosen.astype(g2.dtype)

            proj = jax.lax.cond(refresh, basis, lambda proj=proj: proj)
            small.append(proj.T @ g2 if mat.left else g2 @ proj)
            new_projectors.append(proj)
        stepped, base_state = base_step(treedef.unflatten(small), state.base_optimizer_state,
                                        None, **extra_args)
        s = live.read(scale)
        out = []
        for u, g, mat, proj in zip(treedef.flatten_up_to(stepped), leaves, mats,
                                   new_projectors, strict=True):
            if mat is None:
                out.append(u)
                continue
            full = proj @ u if mat.left else u @ proj.T
            out.append((s * mat.from_matrix(full)).astype(jnp.result_type(g)))
        return treedef.unflatten(out), GaLoreState(
            count=count, base_optimizer_state=base_state,
            projector=treedef.unflatten(new_projectors))

    return GradientTransformation(init, update)


def check_base_optimizer(name: str, value):
    """None, or a transformation (``init`` and ``update``)."""
    if value is None:
        return None
    if not (callable(getattr(value, "init", None)) and callable(getattr(value, "update", None))):
        raise TypeError(f"`{name}` must be None or a GradientTransformation (one that needs no "
                        f"params, such as gx.scale_by_adam()), got {type(value).__name__}.")
    return value


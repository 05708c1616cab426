r"""Orthogonalised updates, the pieces of Muon: the quintic Newton–Schulz iteration that maps a
matrix to a nearly orthogonal one, Muon's momentum, and its learning-rate factor by matrix
shape. Each piece works on matrices (2-D leaves) only and names the path of any other leaf.

Newton–Schulz: with :math:`X_0 = G / \max(\lVert G\rVert_F, \epsilon)` and coefficients
:math:`(a, b, c)`,

.. math::
    A_k = X_k X_k^\top, \qquad X_{k+1} = a X_k + (b A_k + c A_k^2) X_k

Each step applies the odd polynomial :math:`p(\sigma) = a\sigma + b\sigma^3 + c\sigma^5` to every
singular value of :math:`X_0` (whose singular values lie in :math:`[0, 1]` after the Frobenius
normalisation) and keeps the singular vectors, so :math:`X_k \approx U V^\top` for
:math:`G = U \Sigma V^\top`. The default coefficients (Jordan et al., 2024) trade exactness for
speed: five steps bring the singular values that are not tiny next to the Frobenius norm to
roughly :math:`[0.7, 1.2]`, not to 1 (much smaller ones grow by about :math:`a` per step).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradtx import live, validation
from gradtx import tree as _tree
from gradtx.core import EmptyState, GradientTransformation, PyTree

DEFAULT_NS_COEFFICIENTS = (3.4445, -4.775, 2.0315)
"""Keller Jordan's quintic coefficients :math:`(a, b, c)`, torch.optim.Muon's default."""

ADJUST_LR_FNS = (None, "original", "match_rms_adamw")
"""The values of ``adjust_lr_fn``: None (the same as ``"original"``), ``"original"`` and
``"match_rms_adamw"``."""

MAX_NS_STEPS = 99
"""torch.optim.Muon refuses 100 or more Newton–Schulz steps (at its first step)."""


# -- checks -------------------------------------------------------------------------------------


def check_ns_coefficients(name: str, value) -> tuple[float, float, float]:
    """Three finite real numbers (a tuple, a list or a 1-D array of 3), returned as a tuple of
    Python floats. ``TypeError`` naming ``name`` for another type (a string, a bool, a traced
    value), ``ValueError`` naming it for another length or a NaN or infinite entry."""
    if isinstance(value, (str, bytes, dict, set)) or value is None or isinstance(value, bool):
        raise TypeError(f"`{name}` must be a tuple of three numbers (a, b, c), got {value!r}.")
    items = None if validation.is_traced(value) else _items(value)
    if validation.is_traced(value) or any(validation.is_traced(v) for v in items or ()):
        raise TypeError(
            f"`{name}` must be concrete: the Newton-Schulz coefficients are fixed when the "
            f"optimizer is built, got a traced value {value!r}."
        )
    if items is None:
        raise TypeError(f"`{name}` must be a tuple of three numbers (a, b, c), got {value!r}.")
    if len(items) != 3:
        raise ValueError(
            f"`{name}` must have exactly three entries (a, b, c), got {len(items)}: {value!r}."
        )
    out = []
    for item in items:
        if isinstance(item, (bool, np.bool_, str, bytes)):
            raise TypeError(f"`{name}` must hold real numbers, got {item!r} in {value!r}.")
        try:
            number = np.asarray(item)
        except (TypeError, ValueError):
            number = None
        if number is None or number.shape != () or not (
            np.issubdtype(number.dtype, np.floating) or np.issubdtype(number.dtype, np.integer)
        ):
            raise TypeError(f"`{name}` must hold real numbers, got {item!r} in {value!r}.")
        if not math.isfinite(float(number)):
            raise ValueError(f"`{name}` must hold finite numbers, got {value!r}.")
        out.append(float(number))
    return tuple(out)


def _items(value) -> list | None:
    """The entries of a sequence or a 1-D array, or None when ``value`` is neither."""
    if isinstance(value, (np.ndarray, jax.Array)):
        return list(value) if value.ndim == 1 else None
    if isinstance(value, Sequence):
        return list(value)
    return None


def check_ns_steps(name: str, value) -> int:
    """A whole number of Newton–Schulz steps in ``[1, 99]`` (torch refuses 100 or more),
    returned as an int; the type and range errors of :func:`gradtx.validation.as_integral`."""
    return validation.as_integral(name, value, 1, MAX_NS_STEPS)


def check_adjust_lr_fn(name: str, value) -> str | None:
    """One of :data:`ADJUST_LR_FNS`: ``ValueError`` naming ``name`` for another string,
    ``TypeError`` for anything else but None."""
    return validation.check_choice(name, value, ADJUST_LR_FNS)


def check_matrices(tree: PyTree, who: str, hint: str = "") -> None:
    """Raises ``ValueError`` naming the path (``jax.tree_util.keystr``) and the shape of the
    first leaf of ``tree`` that is not a matrix (``ndim != 2``). ``None`` leaves are skipped
    (they are the leaves a mask left out). Reads shapes only: free under jit."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if np.ndim(leaf) != 2:
            raise ValueError(
                f"{who} works on matrices (2-D leaves) only; the leaf at "
                f"{_tree.path_str(path)} has shape {tuple(np.shape(leaf))}.{hint}"
            )


def _per_matrix(
    who: str, fn: Callable[[jax.Array], jax.Array] | None = None, hint: str = "",
    batch_by_shape: bool = False,
) -> GradientTransformation:
    """A stateless transformation that refuses any leaf that is not a matrix (at ``init`` and
    ``update``, naming its path, ``who`` and ``hint``) and maps ``fn`` over the update
    matrices (passes them through when ``fn`` is None): leaf by leaf, or with
    ``batch_by_shape`` one vmapped call per shape and dtype (``gradtx.map_by_shape``)."""
    map_matrices = _tree.map_by_shape if batch_by_shape else jax.tree_util.tree_map

    def init(params):
        check_matrices(params, who, hint)
        return EmptyState()

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        check_matrices(updates, who, hint)
        return (updates if fn is None else map_matrices(fn, updates)), state

    return GradientTransformation(init, update)


def matrices_only(who: str, hint: str = "") -> GradientTransformation:
    """Passes updates through unchanged after checking that every leaf is a matrix: the
    first step of an optimizer defined on matrices only, so that its error names the
    optimizer (``who``) and says what to do instead (``hint``)."""
    return _per_matrix(who, None, hint)


# -- Newton-Schulz ------------------------------------------------------------------------------


def newton_schulz(
    matrix: jax.Array,
    ns_coefficients: Sequence[float] = DEFAULT_NS_COEFFICIENTS,
    eps: float | jax.Array = 1e-7,
    ns_steps: int = 5,
    *,
    dtype: Any = jnp.bfloat16,
) -> jax.Array:
    r"""The quintic Newton–Schulz iteration on one matrix, in torch.optim.Muon's order of
    operations; the result has ``matrix``'s dtype.

    A matrix with more rows than columns is transposed first (and the result back), so the
    Gram matrix :math:`X X^\top` is the smaller one. Then :math:`X \leftarrow X /
    \max(\lVert X\rVert_F, \epsilon)` and ``ns_steps`` times :math:`A = X X^\top`,
    :math:`B = b A + c A A`, :math:`X \leftarrow a X + B X` (see the module's docstring). A zero
    matrix stays zero (for :math:`\epsilon > 0`).

    ``dtype`` is the dtype the iteration runs in: ``jnp.bfloat16`` (the default) as torch
    runs it whatever the parameters' dtype, or None for the matrix's own dtype. A narrow
    dtype (bfloat16, float16) rounds every intermediate matrix to it, as torch does, and
    multiplies with float32 accumulation; float32 and float64 multiply at full precision
    (no TF32).
    """
    a, b, c = check_ns_coefficients("ns_coefficients", ns_coefficients)
    if np.ndim(matrix) != 2:
        raise ValueError(f"newton_schulz needs a matrix, got shape {tuple(np.shape(matrix))}.")
    if jnp.iscomplexobj(matrix):
        raise ValueError("newton_schulz needs a real matrix, got a complex one.")
    original = jnp.result_type(matrix)
    work = original if dtype is None else jnp.dtype(dtype)
    rounded, matmul = _arithmetic(work)
    wide = jnp.promote_types(work, jnp.float32)
    # A float64 matrix reaches bfloat16 through float32, as torch converts it.
    x = rounded(jnp.asarray(matrix).astype(wide))
    tall = x.shape[0] > x.shape[1]
    if tall:
        x = x.T
    norm = rounded(jnp.sqrt(jnp.sum(jnp.square(x))))
    norm = jnp.maximum(norm, rounded(jnp.asarray(live.read(eps), wide)))
    x = rounded(x / norm)
    x = jax.lax.fori_loop(0, ns_steps, _newton_schulz_step(a, b, c, work), x)
    if tall:
        x = x.T
    return x.astype(original)


def _arithmetic(work):
    """``(rounded, matmul)`` for an iteration in the dtype ``work``.

    torch multiplies narrow matrices with float32 accumulation and rounds each result (an
    addmm's included) once to the narrow dtype. Here every value is carried in the wider of
    ``work`` and float32 and rounded to ``work``'s precision by an explicit ``reduce_precision``
    (not a round trip through the narrow dtype, which a compiler allowed excess precision may
    skip); matmul operands are cast to ``work`` (exactly: they are already rounded), so a
    bfloat16 iteration multiplies in bfloat16. float32 and float64 multiply at full precision
    (no TF32)."""
    wide = jnp.promote_types(work, jnp.float32)
    info = jnp.finfo(work)

    def rounded(y):
        if work == wide:
            return y
        return jax.lax.reduce_precision(y, exponent_bits=info.nexp, mantissa_bits=info.nmant)

    def matmul(p, q):
        return jnp.matmul(
            p.astype(work), q.astype(work), precision=jax.lax.Precision.HIGHEST,
            preferred_element_type=wide,
        )

    return rounded, matmul


@functools.lru_cache(maxsize=64)
def _newton_schulz_step(a: float, b: float, c: float, work) -> Callable:
    """One step :math:`X \\leftarrow a X + (b A + c A^2) X`, :math:`A = X X^\\top`, as a
    ``fori_loop`` body. One function object per set of coefficients and dtype, so that the
    loop traced from it is cached when it runs eagerly."""
    rounded, matmul = _arithmetic(work)

    def step(_, x):
        gram = rounded(matmul(x, x.T))
        poly = rounded(c * matmul(gram, gram) + b * gram)
        return rounded(a * x + matmul(poly, x))

    return step


def orthogonalize_by_newton_schulz(
    ns_coefficients: Sequence[float] = DEFAULT_NS_COEFFICIENTS,
    eps: float | jax.Array = 1e-7,
    ns_steps: int = 5,
    *,
    dtype: Any = jnp.bfloat16,
    batch_by_shape: bool = False,
) -> GradientTransformation:
    r"""Replaces every update matrix :math:`U` by :math:`\mathrm{NS}^{(a,b,c)}_k(U;\ \epsilon)`,
    its orthogonalisation by ``ns_steps`` = :math:`k` quintic Newton–Schulz steps
    (``newton_schulz``), as torch.optim.Muon does; keeps no state.

    Args:
        ns_coefficients: :math:`(a, b, c)`, three finite numbers, fixed at build time.
        eps: :math:`\epsilon \ge 0`, the floor of the Frobenius norm that the update is divided
            by (torch's ``clamp(min=eps)``, not an added term); with 0, a zero update gives NaN,
            as in torch. It may be a live hyperparameter.
        ns_steps: :math:`k \in [1, 99]`.
        dtype: the dtype the iteration runs in: ``jnp.bfloat16`` as torch, or None for each
            update's own dtype (see ``newton_schulz``). The output keeps the update's dtype.
        batch_by_shape: stack the matrices of one shape and dtype and run one batched
            (``jax.vmap``) iteration per shape (``gradtx.map_by_shape``) instead of one per
            leaf: the same numbers, traced once per shape, and on accelerators fewer, larger
            kernels. False (the default) runs leaf by leaf, which measured faster to compile
            and no slower to run on XLA:CPU (``python -m benchmarks.muon_compile``).

    Every leaf must be a real matrix (2-D): ``init`` and ``update`` raise ``ValueError``
    naming the path of any other.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.transforms.orthogonalize import orthogonalize_by_newton_schulz
        >>> ortho = orthogonalize_by_newton_schulz(ns_steps=5, dtype=None)
        >>> u = {"w": jnp.asarray([[3.0, 0.0], [0.0, 0.5]])}
        >>> out, _ = ortho.update(u, ortho.init(u))
        >>> [round(x, 2) for x in jnp.diag(out["w"]).tolist()]  # singular values near 1
        [0.71, 1.04]
    """
    coefficients = check_ns_coefficients("ns_coefficients", ns_coefficients)
    steps = check_ns_steps("ns_steps", ns_steps)
    validation.check_non_negative("eps", eps)
    dtype = validation.check_state_dtype("dtype", dtype)
    validation.check_bool("batch_by_shape", batch_by_shape)
    return _per_matrix(
        "orthogonalize_by_newton_schulz",
        lambda u: newton_schulz(u, coefficients, live.read(eps), steps, dtype=dtype),
        batch_by_shape=batch_by_shape,
    )


# -- learning-rate factor -----------------------------------------------------------------------


def muon_lr_ratio(shape: Sequence[int], adjust_lr_fn: str | None = None) -> float:
    r"""torch.optim.Muon's factor of the learning rate for a parameter of ``shape``
    :math:`(A, B, \dots)`:

    * None or ``"original"`` (Keller Jordan's): :math:`\sqrt{\max(1, A/B)}`;
    * ``"match_rms_adamw"`` (Moonshot's, Liu et al., 2025):
      :math:`0.2\sqrt{\max(A, B)}`, so that the update's RMS is about AdamW's.

    torch lays a linear layer's weight out as ``(out_features, in_features)``, so
    :math:`A/B` is fan-out over fan-in there; a Flax ``Dense`` kernel is
    ``(in_features, out_features)``, for which the same formula gives fan-in over fan-out.

    Example:
        >>> from gradtx.transforms.orthogonalize import muon_lr_ratio
        >>> muon_lr_ratio((8, 2)), muon_lr_ratio((2, 8)), muon_lr_ratio((4, 9), "match_rms_adamw")
        (2.0, 1.0, 0.6000000000000001)
    """
    adjust_lr_fn = check_adjust_lr_fn("adjust_lr_fn", adjust_lr_fn)
    rows, cols = (int(n) for n in tuple(shape)[:2])
    if adjust_lr_fn == "match_rms_adamw":
        return 0.2 * math.sqrt(max(rows, cols))
    if cols == 0:  # an empty matrix: no update to scale (torch divides by zero here)
        return 1.0
    return math.sqrt(max(1, rows / cols))


def adjust_muon_learning_rate(adjust_lr_fn: str | None = None) -> GradientTransformation:
    """Multiplies each update matrix by ``muon_lr_ratio`` of its shape, torch.optim.Muon's
    ``adjust_lr_fn`` (None, ``"original"`` or ``"match_rms_adamw"``); keeps no state. Placed
    before ``scale_by_learning_rate``, the update is :math:`-\\eta\\,r(A, B)\\,U`, torch's
    adjusted learning rate times the update. Every leaf must be a matrix (``ValueError`` naming
    the path of any other)."""
    adjust_lr_fn = check_adjust_lr_fn("adjust_lr_fn", adjust_lr_fn)

    def leaf(u):
        ratio = muon_lr_ratio(u.shape, adjust_lr_fn)
        return (jnp.asarray(ratio, u.dtype) * u).astype(u.dtype)

    return _per_matrix("adjust_muon_learning_rate", leaf)


# -- momentum -----------------------------------------------------------------------------------


class MuonMomentumState(NamedTuple):
    """The state of :func:`scale_by_muon_momentum`.

    Attributes:
        momentum_buffer: the moving average of the updates, per parameter, starting at zero:
            torch.optim.Muon's ``momentum_buffer``.
    """

    momentum_buffer: PyTree


def scale_by_muon_momentum(
    momentum: float | jax.Array = 0.95, nesterov: bool = True
) -> GradientTransformation:
    r"""Muon's momentum, as torch.optim.Muon computes it: a moving average of the updates
    that starts at zero, and optionally its Nesterov look-ahead,

    .. math::
        B_t = \mu B_{t-1} + (1-\mu)\, u_t, \qquad
        \text{out}_t = (1-\mu)\, u_t + \mu B_t \ \text{(Nesterov)} \quad\text{or}\quad B_t

    (torch's ``buf.lerp_(grad, 1 - momentum)`` and ``grad.lerp(buf, momentum)``). There is no
    bias correction: the first steps are small, which the orthogonalisation that follows
    undoes (it divides by the norm).

    Args:
        momentum: :math:`\mu \in [0, 1)`; 0 passes the updates through.
        nesterov: use the look-ahead :math:`(1-\mu) u_t + \mu B_t` instead of :math:`B_t`.

    State: :class:`MuonMomentumState` ``(momentum_buffer)``, in the parameters' dtypes.
    """
    validation.check_unit_interval("momentum", momentum)
    validation.check_bool("nesterov", nesterov)

    def init(params):
        return MuonMomentumState(momentum_buffer=_tree.full_like(params, 0.0))

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        mu = live.read(momentum)

        def leaf(u, buf):
            m = _tree.cast_like(mu, buf)
            new_buf = _lerp(buf, u, 1 - m)
            out = _lerp(u, new_buf, m) if nesterov else new_buf
            return out, new_buf

        out, (buf,) = _tree.leafwise(
            leaf, updates, state.momentum_buffer, name="scale_by_muon_momentum"
        )
        return out, MuonMomentumState(momentum_buffer=buf)

    return GradientTransformation(init, update)


def _lerp(start: jax.Array, end: jax.Array, weight: jax.Array) -> jax.Array:
    """:math:`s + w(e - s)`, evaluated from the nearer end as torch's ``lerp`` does: from
    ``start`` for :math:`|w| < 1/2`, else as :math:`e - (e - s)(1 - w)`, so that a weight of 1
    gives ``end`` exactly."""
    diff = end - start
    return jnp.where(jnp.abs(weight) < 0.5, start + weight * diff, end - diff * (1 - weight))

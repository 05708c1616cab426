r"""SOAP's scaling (Vyas et al., 2024, "SOAP: Improving and Stabilizing Shampoo using Adam"):
Adam run in the eigenbases of Shampoo's per-dimension statistics, the bases refreshed every
few steps by one round of power iteration and a QR decomposition."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradtx import live, validation
from gradtx import tree as _tree
from gradtx.core import GradientTransformation, PyTree
from gradtx.transforms import counting
from gradtx.transforms.adam_scalings import _check_betas
from gradtx.transforms.orthogonalize import _lerp

DATA_FORMATS = ("channels_first", "channels_last")
"""The values of ``data_format``: how a 4-D leaf is laid out before its dimensions are merged
(``"channels_last"`` leaves are seen as ``(d0, d3, d1, d2)``)."""

EIGH_SHIFT = 1e-30
"""Added to the diagonal of each statistic before the first eigendecomposition, as the
reference does."""


def check_data_format(name: str, value) -> str:
    """One of :data:`DATA_FORMATS`, by name; ``ValueError`` for another string, ``TypeError``
    for anything else."""
    return validation.check_choice(name, value, DATA_FORMATS)


def check_dimension(name: str, value) -> int:
    """A whole number >= 1 (``precondition_frequency``, ``max_precondition_dim``), as an
    int."""
    return validation.as_integral(name, value, 1)


class SoapState(NamedTuple):
    """:func:`scale_by_soap`'s state.

    Attributes:
        mu: the first moment of the gradient, in the parameters' own basis (the reference's
            ``exp_avg``).
        nu: the second moment of the gradient projected on the eigenbases (``exp_avg_sq``),
            shaped like the parameter.
        gg: per leaf, a tuple with one statistic :math:`L_i` (``GG``) per dimension of the
            (merged) leaf, None for a dimension left unpreconditioned.
        q: per leaf, the eigenbasis :math:`Q_i` of each statistic (``Q``), None where ``gg``
            is None.
        count: the step count, None inside an optimizer (which keeps one).
    """

    mu: PyTree
    nu: PyTree
    gg: PyTree
    q: PyTree
    count: jax.Array | None


def merged_shape(shape, max_precondition_dim: int) -> tuple[int, ...]:
    """The shape a leaf is seen as with ``merge_dims``: consecutive dimensions multiplied
    together while the product stays at most ``max_precondition_dim`` (a dimension that alone
    exceeds it is preceded by a 1, as the reference writes it). A leaf that merges into one
    dimension is that dimension: the reference fails on such leaves (it asks for shape
    ``(1,)``), the authors' code gives this."""
    merged, product = [], 1
    for dim in shape:
        product *= dim
        if product > max_precondition_dim:
            merged.append(product // dim)
            product = dim
    merged.append(product)
    return tuple(merged)


class _Layout(NamedTuple):
    """How one leaf is preconditioned: ``dims`` the shape it is seen as (None: its own),
    ``channels_last`` whether it is transposed to ``(d0, d3, d1, d2)`` first, and ``kept``
    which of the dimensions of ``dims`` carry a statistic."""

    shape: tuple[int, ...]
    dims: tuple[int, ...]
    channels_last: bool
    kept: tuple[bool, ...]

    def view(self, x: jax.Array) -> jax.Array:
        if self.channels_last:
            x = jnp.transpose(x, (0, 3, 1, 2))
        return x.reshape(self.dims)

    def unview(self, x: jax.Array) -> jax.Array:
        if self.channels_last:
            s = self.shape
            return jnp.transpose(x.reshape(s[0], s[3], s[1], s[2]), (0, 2, 3, 1))
        return x.reshape(self.shape)


def _layout(shape, max_dim: int, merge_dims: bool, precondition_1d: bool,
            data_format: str) -> _Layout:
    shape = tuple(shape)
    if len(shape) == 1:  # vectors: never merged, preconditioned only with precondition_1d
        return _Layout(shape, shape, False, (precondition_1d and shape[0] <= max_dim,))
    dims, channels_last = shape, False
    if merge_dims:
        channels_last = data_format == "channels_last" and len(shape) == 4
        if channels_last:
            dims = (shape[0], shape[3], shape[1], shape[2])
        dims = merged_shape(dims, max_dim)
    return _Layout(shape, dims, channels_last, tuple(d <= max_dim for d in dims))


def _project(x: jax.Array, bases, back: bool = False) -> jax.Array:
    """``x`` with each axis ``i`` multiplied by :math:`Q_i^\\top` (by :math:`Q_i` with
    ``back``); an axis without a basis is left as it is. Axis by axis, front to back."""
    for q in bases:
        if q is None:
            x = jnp.moveaxis(x, 0, -1)
        else:
            x = jnp.tensordot(x, q, axes=((0,), (1 if back else 0,)))
    return x


def _statistics(x: jax.Array, layout: _Layout):
    """The outer product of ``x`` (in its view) along each kept axis: :math:`X_{(i)}
    X_{(i)}^\\top`, None elsewhere."""
    out = []
    for i, kept in enumerate(layout.kept):
        if not kept:
            out.append(None)
            continue
        others = tuple(j for j in range(x.ndim) if j != i)
        out.append(jnp.tensordot(x, x, axes=(others, others)))
    return tuple(out)


def _eigenbases(gg) -> tuple:
    """The eigenvectors of each statistic, by decreasing eigenvalue (the reference's
    ``eigh`` of :math:`L + 10^{-30} I`, columns reversed)."""
    out = []
    for m in gg:
        if m is None:
            out.append(None)
            continue
        # LAPACK has no half-precision eigh: those run in float32 (the reference, failing,
        # retries in float64).
        wide = jnp.promote_types(m.dtype, jnp.float32)
        shifted = m.astype(wide) + jnp.asarray(EIGH_SHIFT, wide) * jnp.eye(m.shape[0], dtype=wide)
        _, vectors = jnp.linalg.eigh(shifted, symmetrize_input=False)
        out.append(vectors[:, ::-1].astype(m.dtype))
    return tuple(out)


def _refreshed(gg, bases, nu_view: jax.Array, qr_dtype):
    """One round of power iteration: for each axis, :math:`L_i Q_i`'s columns ordered by
    decreasing :math:`\\operatorname{diag}(Q_i^\\top L_i Q_i)`, orthonormalised by QR (in
    ``qr_dtype``); the second moment's axis is put in the same order."""
    out = []
    for i, (m, q) in enumerate(zip(gg, bases, strict=True)):
        if m is None:
            out.append(None)
            continue
        product = m @ q
        estimate = jnp.sum(q * product, axis=0)
        order = jnp.argsort(estimate, descending=True, stable=True)
        nu_view = jnp.take(nu_view, order, axis=i)
        iterate = jnp.take(product, order, axis=1)
        narrow = iterate.astype(jnp.promote_types(iterate.dtype, jnp.float32)
                                if qr_dtype is None else qr_dtype)
        basis, _ = jnp.linalg.qr(narrow)
        out.append(basis.astype(m.dtype))
    return tuple(out), nu_view


def scale_by_soap(
    b1: float | jax.Array = 0.95,
    b2: float | jax.Array = 0.95,
    shampoo_beta: float | jax.Array | None = None,
    eps: float | jax.Array = 1e-8,
    precondition_frequency: int = 10,
    max_precondition_dim: int = 10000,
    merge_dims: bool = False,
    precondition_1d: bool = False,
    correct_bias: bool = True,
    normalize_gradient: bool = False,
    data_format: str = "channels_first",
    *,
    qr_dtype: Any = jnp.float32,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> GradientTransformation:
    r"""SOAP's update direction, leaf by leaf (steps :math:`t = 1, 2, \ldots`).

    Each leaf :math:`G` (seen as a tensor of shape :math:`(d_1, \ldots, d_k)`, after
    ``merge_dims``) keeps, for every axis :math:`i` with :math:`d_i \le`
    ``max_precondition_dim``, a statistic :math:`L_i` (:math:`d_i \times d_i`) and its
    eigenbasis :math:`Q_i`; other axes have :math:`Q_i = I`. A vector has one only with
    ``precondition_1d``. With :math:`\mathcal{P}(X) = X \times_1 Q_1^\top \cdots \times_k
    Q_k^\top` and :math:`\mathcal{P}^{-1}` its inverse (the :math:`Q_i`), and
    :math:`\beta_s` = ``shampoo_beta`` (:math:`\beta_2` when None):

    .. math::
        L_{i,t} &= \beta_s L_{i,t-1} + (1-\beta_s)\, G_{t(i)} G_{t(i)}^\top \\
        m_t &= \beta_1 m_{t-1} + (1-\beta_1) G_t, \qquad
        v_t = \beta_2 v_{t-1} + (1-\beta_2)\, \mathcal{P}_{t-1}(G_t)^2 \\
        n_t &= \mathcal{P}_{t-1}^{-1}\!\left(\frac{\mathcal{P}_{t-1}(m_t)}{\sqrt{v_t} +
            \epsilon}\right), \qquad
        u_t = n_t\,\frac{\sqrt{1-\beta_2^{t-1}}}{1-\beta_1^{t-1}}

    (:math:`G_{(i)}` the leaf unfolded along axis :math:`i`). The first step only starts the
    statistics and takes their eigenvectors, by decreasing eigenvalue, as :math:`Q_1`; it
    outputs zeros, and the moments start at step 2 (so the bias corrections count
    :math:`t-1`). After the step :math:`t` with :math:`t - 1` a multiple of
    ``precondition_frequency`` (:math:`t > 1`), each basis is refreshed by one power iteration:
    the columns of :math:`L_{i,t} Q_i` sorted by decreasing :math:`\operatorname{diag}(Q_i^\top
    L_{i,t} Q_i)` and orthonormalised by a QR decomposition in ``qr_dtype`` (float32, as the
    reference, whatever the parameters' dtype; None: theirs), and the axis :math:`i` of
    :math:`v_t` is put in the same order.

    ``correct_bias=False`` leaves out the factor of :math:`u_t`; ``normalize_gradient`` divides
    :math:`n_t` by :math:`\sqrt{\operatorname{mean}(n_t^2)} + \epsilon`. ``merge_dims``
    multiplies consecutive axes together while the product stays at most
    ``max_precondition_dim`` (vectors are left as they are), a 4-D ``"channels_last"`` leaf
    seen as :math:`(d_0, d_3, d_1, d_2)` first.

    State: :class:`SoapState` (``mu``, ``nu``, ``gg``, ``q``, ``count``); ``mu_dtype`` and
    ``nu_dtype`` store the moments in another dtype (the statistics and bases keep the
    leaf's).
    """
    _check_betas(b1, b2)
    if shampoo_beta is not None:
        validation.check_unit_interval("shampoo_beta", shampoo_beta)
    validation.check_non_negative("eps", eps)
    frequency = check_dimension("precondition_frequency", precondition_frequency)
    max_dim = check_dimension("max_precondition_dim", max_precondition_dim)
    for name, value in (("merge_dims", merge_dims), ("precondition_1d", precondition_1d),
                        ("correct_bias", correct_bias),
                        ("normalize_gradient", normalize_gradient)):
        validation.check_bool(name, value)
    data_format = check_data_format("data_format", data_format)
    qr_dtype = validation.check_state_dtype("qr_dtype", qr_dtype)
    if qr_dtype is not None and jnp.dtype(qr_dtype) not in (jnp.float32, jnp.float64):
        raise ValueError(
            f"qr_dtype must be float32, float64 or None (the statistics' dtype, float32 at "
            f"least), not {jnp.dtype(qr_dtype).name}: LAPACK has no QR in that dtype."
        )
    mu_dtype = validation.check_state_dtype("mu_dtype", mu_dtype)
    nu_dtype = validation.check_state_dtype("nu_dtype", nu_dtype)

    def layout(p) -> _Layout:
        return _layout(np.shape(p), max_dim, merge_dims, precondition_1d, data_format)

    def zeros_for(p):
        shape = layout(p)
        dtype = jnp.result_type(p)
        return tuple(jnp.zeros((d, d), dtype) if kept else None
                     for d, kept in zip(shape.dims, shape.kept, strict=True))

    def init(params):
        zeros = _tree.full_like
        gg = jax.tree_util.tree_map(zeros_for, params)
        return SoapState(
            mu=zeros(params, 0.0, mu_dtype),
            nu=zeros(params, 0.0, nu_dtype),
            gg=gg,
            q=gg,
            count=counting.init_count(),
        )

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        taken, count = counting.advance(state.count, "scale_by_soap")
        beta1, beta2 = live.read(b1), live.read(b2)
        beta_s = beta2 if shampoo_beta is None else live.read(shampoo_beta)
        s = counting.as_float(taken)  # the reference's step: t - 1
        factor = jnp.sqrt(1 - beta2**s) / (1 - beta1**s) if correct_bias else None
        first = taken == 0
        refresh = taken % frequency == 0

        def step(g, m, v, gg, q):
            shape = layout(g)

            def cast(x):
                return _tree.cast_like(x, g)

            stats = _statistics(shape.view(g), shape)
            gg = tuple(
                None if old is None else _lerp(
                    old, new.astype(old.dtype), _tree.cast_like(1 - beta_s, old))
                for old, new in zip(gg, stats, strict=True)
            )

            def start(m, v, q):
                return jnp.zeros_like(g), m, v, _eigenbases(gg)

            def advance(m, v, q):
                projected = _project(shape.view(g), q)
                m = _lerp(m, g, cast(1 - beta1))
                v = _lerp(v, shape.unview(projected * projected), cast(1 - beta2))
                ratio = _project(shape.view(m), q) / (jnp.sqrt(shape.view(v)) + cast(
                    live.read(eps)))
                n = shape.unview(_project(ratio, q, back=True))
                if normalize_gradient:
                    n = n / (jnp.sqrt(jnp.mean(n * n)) + cast(live.read(eps)))
                if factor is not None:
                    n = n * cast(factor)

                def refreshed(v, q):
                    q, v_view = _refreshed(gg, q, shape.view(v), qr_dtype)
                    return shape.unview(v_view), q

                if any(shape.kept):
                    v, q = jax.lax.cond(refresh, refreshed, lambda v, q: (v, q), v, q)
                return n, m, v, q

            return jax.lax.cond(first, start, advance, m, v, q) + (gg,)

        return _map_leaves(step, updates, state, count)

    return GradientTransformation(init, update)


def _map_leaves(step, updates, state: SoapState, count):
    """``step(g, m, v, gg, q)`` over the leaves of ``updates``, the moments computed in the
    widest dtype of the leaf's arrays and stored back in their own."""
    _tree.check_match(state.mu, updates, reference_name="scale_by_soap state",
                      other_name="updates")
    leaves, treedef = jax.tree_util.tree_flatten(updates)
    columns = tuple([] for _ in range(5))
    for g, m, v, gg, q in zip(
        leaves, treedef.flatten_up_to(state.mu), treedef.flatten_up_to(state.nu),
        treedef.flatten_up_to(state.gg), treedef.flatten_up_to(state.q), strict=True
    ):
        wide = jnp.result_type(g, m, v)
        out, m_new, v_new, q_new, gg_new = step(
            g.astype(wide), m.astype(wide), v.astype(wide), gg, q
        )
        for column, value in zip(
            columns, (out, m_new.astype(m.dtype), v_new.astype(v.dtype), gg_new, q_new),
            strict=True,
        ):
            column.append(value)
    out, mu, nu, gg, q = (jax.tree_util.tree_unflatten(treedef, c) for c in columns)
    return out, SoapState(mu=mu, nu=nu, gg=gg, q=q, count=count)

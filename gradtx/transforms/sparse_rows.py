r"""Adam restricted to the rows a gradient touches: torch.optim.SparseAdam's scaling, for the
sparse gradients of embeddings (:func:`gradtx.sparse_adam`)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradtx import live, validation
from gradtx import tree as _tree
from gradtx.core import GradientTransformation, PyTree
from gradtx.transforms import counting


class SparseAdamState(NamedTuple):
    """The state of :func:`scale_by_sparse_adam`.

    Attributes:
        mu: the first moment of every row, per parameter: torch's ``exp_avg``.
        nu: the second moment of every row, per parameter: torch's ``exp_avg_sq``.
        count: the number of updates seen; None inside an optimizer, which keeps one count
            for all its transforms (torch's ``step``).
    """

    mu: PyTree
    nu: PyTree
    count: jax.Array | None


def present_rows(u: jax.Array) -> jax.Array:
    """Where a leaf's update has a row that is not entirely zero: a bool array of shape
    ``(n, 1, ..., 1)`` for a leaf of shape ``(n, ...)``, the entries themselves (``u != 0``) for
    a 1-D or 0-d leaf. A NaN entry makes its row present."""
    nonzero = u != 0
    if u.ndim < 2:
        return nonzero
    return jnp.any(nonzero, axis=tuple(range(1, u.ndim)), keepdims=True)


def _moved_toward(old: jax.Array, new: jax.Array, decay) -> jax.Array:
    r""":math:`\beta\,\text{old} + (1-\beta)\,\text{new}` written as torch's SparseAdam
    computes it, :math:`\text{old} + (1-\beta)(\text{new} - \text{old})`.

    The two forms round differently, and not always in the last bits only: with
    :math:`\beta = 0` and :math:`|\text{new}| \ll |\text{old}|` (a small gradient after a huge
    one) this form keeps only the bits of ``new`` above the precision of ``old`` (a relative
    error of 1e-5 in float64 for a ratio of 1e-11), so matching torch to 1e-9 needs the same
    form. :func:`gradtx.transforms.moments.ema_update` is the more accurate one."""
    rate = 1 - _tree.cast_like(decay, old)
    return (old + (new - old) * rate).astype(old.dtype)


def scale_by_sparse_adam(
    b1: float | jax.Array = 0.9,
    b2: float | jax.Array = 0.999,
    eps: float | jax.Array = 1e-8,
) -> GradientTransformation:
    r"""SparseAdam's scaling, as ``torch.optim.SparseAdam`` computes it: Adam restricted to the
    rows (slices along axis 0; entries of a 1-D or 0-d leaf) whose update is not entirely zero.

    With :math:`t` counting this transformation's updates from 1, for a *present* row
    :math:`r` (one with a nonzero entry):

    .. math::
        m_{t,r} &= \beta_1 m_{t-1,r} + (1-\beta_1) u_{t,r}, \qquad
        v_{t,r} = \beta_2 v_{t-1,r} + (1-\beta_2) u_{t,r}^2 \\
        \text{out}_{t,r} &= \frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t}\,
            \frac{m_{t,r}}{\sqrt{v_{t,r}} + \epsilon}

    and an *absent* row keeps :math:`m, v` as they were (no decay) and outputs 0. :math:`t`
    advances at every update, also one where every row is absent, so the bias corrections of a
    row use the number of updates seen, not the number of times the row was present. Note the
    place of :math:`\epsilon`: torch's SparseAdam adds it to the raw :math:`\sqrt{v}`, so this
    is :math:`\hat m / (\sqrt{\hat v} + \epsilon / \sqrt{1-\beta_2^t})` in Adam's terms, not
    :func:`gradtx.scale_by_adam`. The averages are computed in
    torch's form :math:`m + (1-\beta)(u - m)`, whose rounding differs from gradtx's other
    moving averages by more than the last bits when :math:`\beta` is small and the update far
    smaller than the average (see ``_moved_toward``).

    Args:
        b1: :math:`\beta_1 \in [0, 1)`.
        b2: :math:`\beta_2 \in [0, 1)`.
        eps: :math:`\epsilon > 0` (an entry that was zero in every update where its row was
            present has :math:`m = v = 0`).

    The state (:class:`SparseAdamState`) keeps ``mu`` and ``nu`` in the parameters' dtypes.
    """
    validation.check_unit_interval("b1", b1)
    validation.check_unit_interval("b2", b2)
    validation.check_interval("eps", eps, 0.0, low_closed=False)

    def init(params):
        return SparseAdamState(
            mu=_tree.full_like(params, 0.0),
            nu=_tree.full_like(params, 0.0),
            count=counting.init_count(),
        )

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        taken, count = counting.advance(state.count, "scale_by_sparse_adam")
        t = counting.as_float(taken) + 1
        beta1, beta2, epsilon = live.read(b1), live.read(b2), live.read(eps)
        # torch's step size lr * sqrt(1 - b2^t) / (1 - b1^t), less lr: once per step.
        correction = jnp.sqrt(1 - jnp.asarray(beta2, t.dtype) ** t) / (
            1 - jnp.asarray(beta1, t.dtype) ** t
        )

        def leaf(u, m, v):
            present = present_rows(u)
            m = jnp.where(present, _moved_toward(m, u, beta1), m)
            v = jnp.where(present, _moved_toward(v, u * u, beta2), v)
            ratio = m / (jnp.sqrt(v) + _tree.cast_like(epsilon, v))
            out = jnp.where(present, ratio * _tree.cast_like(correction, v), 0)
            return out.astype(v.dtype), m, v

        out, (mu, nu) = _tree.leafwise(
            leaf, updates, state.mu, state.nu, name="scale_by_sparse_adam"
        )
        return out, SparseAdamState(mu=mu, nu=nu, count=count)

    return GradientTransformation(init, update)

r"""MARS's scaling (Yuan et al., 2024, "MARS: Unleashing the Power of Variance Reduction for
Training Large Models"): a first moment of a variance-reduced gradient, preconditioned like
AdamW, like Lion, or by Newton–Schulz orthogonalisation ("shampoo"), and the plain AdamW step
that MARS gives to parameters it does not treat (vectors and scalars, by default)."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradtx import live, validation
from gradtx import tree as _tree
from gradtx.core import GradientTransformation, PyTree
from gradtx.transforms import counting
from gradtx.transforms.adam_scalings import _check_betas
from gradtx.transforms.orthogonalize import DEFAULT_NS_COEFFICIENTS, _lerp, newton_schulz

MARS_TYPES = ("adamw", "lion", "shampoo")
"""The values of ``mars_type``: how the first moment is preconditioned."""

SECOND_MOMENT_FLOOR = 1e-15
"""Added to the second moment under the root, as the reference does (besides ``eps``)."""


def check_mars_type(name: str, value) -> str:
    """One of :data:`MARS_TYPES`, by name; ``ValueError`` for another string, ``TypeError``
    for anything else."""
    return validation.check_choice(name, value, MARS_TYPES)


class MarsState(NamedTuple):
    """:func:`scale_by_mars`'s state.

    Attributes:
        mu: the first moment (the reference's ``exp_avg``).
        nu: the second moment (``exp_avg_sq``); untouched by the Lion and Newton–Schulz
            preconditioners, kept so that the state has one layout.
        nu_max: the running maximum of ``nu`` (``max_exp_avg_sq``) with ``ams_bound``, else
            None.
        last_grad: the previous step's gradient (``last_grad``), which the variance
            reduction subtracts; None for the plain AdamW step (``gamma=None``).
        count: the step count, None inside an optimizer (which keeps one).
    """

    mu: PyTree
    nu: PyTree
    nu_max: PyTree
    last_grad: PyTree
    count: jax.Array | None


def scale_by_mars(
    b1: float | jax.Array = 0.95,
    b2: float | jax.Array = 0.99,
    gamma: float | jax.Array | None = 0.025,
    mars_type: str = "adamw",
    eps: float | jax.Array = 1e-8,
    ams_bound: bool = False,
    cautious: bool = False,
    *,
    stored_decay: float | jax.Array | None = None,
    ns_dtype: Any = jnp.bfloat16,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> GradientTransformation:
    r"""MARS's update direction, leaf by leaf (steps :math:`t = 1, 2, \ldots`).

    With ``gamma`` :math:`= \gamma`, the gradient is first corrected by the change since the
    previous step and clipped to unit norm (the leaf's Frobenius norm):

    .. math::
        c_t &= g_t + \gamma\,\frac{\beta_1}{1-\beta_1}\,(g_t - g_{t-1}), \qquad
        c_t \leftarrow c_t / \max(1, \lVert c_t\rVert) \\
        m_t &= \beta_1 m_{t-1} + (1-\beta_1)\, c_t

    (:math:`g_0 = 0`). Then, by ``mars_type``:

    * ``"adamw"``: :math:`v_t = \beta_2 v_{t-1} + (1-\beta_2) c_t^2` and the output is
      :math:`\dfrac{m_t / (1-\beta_1^t)}{(\sqrt{v_t + 10^{-15}} + \epsilon) /
      \sqrt{1-\beta_2^t}}` (with ``ams_bound``, :math:`v_t` under the root is replaced by its
      running maximum);
    * ``"lion"``: :math:`\operatorname{sign}(m_t)`;
    * ``"shampoo"``: for a leaf of two or more dimensions, reshaped to
      :math:`(d_0, d_1 d_2\cdots)`, :math:`\mathrm{NS}(m_t / (1-\beta_1))\,
      \sqrt{\max(1, d_0/d_1)}` (five quintic Newton–Schulz steps run in ``ns_dtype``, floor
      :math:`\epsilon` on the norm, as :func:`gradtx.orthogonalize_by_newton_schulz`); other
      leaves take the ``"adamw"`` output.

    ``gamma=None`` is the plain AdamW step (:math:`c_t = g_t`, no clipping, no stored
    gradient, ``mars_type`` must be ``"adamw"``), which MARS gives the parameters it does not
    treat. With ``cautious``, :math:`m_t` is masked before the preconditioner where its sign
    disagrees with :math:`g_t` and rescaled by :math:`n/(k+1)` (:math:`n` entries, :math:`k`
    kept), as the reference does.

    ``stored_decay`` :math:`\lambda`: the reference's coupled weight decay, which it adds to the
    gradient only after the step is computed, so that it reaches the next step through the
    stored gradient alone: :math:`g_{t-1}` is then :math:`g_{t-1} + \lambda\theta_{t-2}`
    (needs ``params``). None stores the gradient itself.

    State: :class:`MarsState` (``mu``, ``nu``, ``nu_max``, ``last_grad``, ``count``);
    ``mu_dtype`` stores the first moment and the previous gradient, ``nu_dtype`` the second
    moments, in another dtype (None: the parameters').
    """
    _check_betas(b1, b2)
    if gamma is not None:
        validation.check_non_negative("gamma", gamma)
    mars_type = check_mars_type("mars_type", mars_type)
    if gamma is None and mars_type != "adamw":
        raise ValueError(
            f"scale_by_mars: gamma=None is the plain AdamW step; mars_type must then be "
            f"'adamw', got {mars_type!r}."
        )
    validation.check_non_negative("eps", eps)
    validation.check_bool("ams_bound", ams_bound)
    validation.check_bool("cautious", cautious)
    if stored_decay is not None:
        validation.check_non_negative("stored_decay", stored_decay)
    ns_dtype = validation.check_state_dtype("ns_dtype", ns_dtype)
    mu_dtype = validation.check_state_dtype("mu_dtype", mu_dtype)
    nu_dtype = validation.check_state_dtype("nu_dtype", nu_dtype)
    corrected = gamma is not None

    def init(params):
        zeros = _tree.full_like
        return MarsState(
            mu=zeros(params, 0.0, mu_dtype),
            nu=zeros(params, 0.0, nu_dtype),
            nu_max=zeros(params, 0.0, nu_dtype) if ams_bound else None,
            last_grad=zeros(params, 0.0, mu_dtype) if corrected else None,
            count=counting.init_count(),
        )

    def update(updates, state, params=None, **extra_args):
        del extra_args
        if stored_decay is not None and params is None:
            raise ValueError(
                "scale_by_mars with stored_decay needs params: call update(updates, state, "
                "params)."
            )
        taken, count = counting.advance(state.count, "scale_by_mars")
        t = counting.as_float(taken) + 1
        beta1, beta2 = live.read(b1), live.read(b2)
        bias1 = 1 - beta1**t
        root_bias2 = jnp.sqrt(1 - beta2**t)

        def step(g, m, v, vmax, last, p):
            def cast(x):
                return _tree.cast_like(x, g)

            c = g
            if corrected:
                c = g + (g - last) * cast(live.read(gamma) * (beta1 / (1 - beta1)))
                c = c / jnp.maximum(jnp.sqrt(jnp.sum(jnp.square(c))), cast(1.0))
            m = _lerp(m, c, cast(1 - beta1))
            u = m
            if cautious:
                mask = (u * g > 0).astype(u.dtype)
                u = u * (mask * (mask.size / (jnp.sum(mask) + 1)))
            if corrected and mars_type == "lion":
                out = jnp.sign(u)
            elif corrected and mars_type == "shampoo" and np.ndim(g) >= 2:
                out = _orthogonalized(u * cast(1 / (1 - beta1)), eps, ns_dtype)
            else:
                v = cast(beta2) * v + cast(1 - beta2) * c * c
                if ams_bound:
                    vmax = jnp.maximum(vmax, v)
                second = vmax if ams_bound else v
                floor = cast(SECOND_MOMENT_FLOOR)
                denominator = (jnp.sqrt(second + floor) + cast(live.read(eps))) / cast(
                    root_bias2
                ) * cast(bias1)
                out = u / denominator
            if corrected:
                last = g if stored_decay is None else g + cast(live.read(stored_decay)) * p
            return out, m, v, vmax, last

        out, mu, nu, nu_max, last = _map_leaves(
            step, updates, state.mu, state.nu, state.nu_max, state.last_grad, params
        )
        return out, MarsState(
            mu=mu, nu=nu, nu_max=nu_max if ams_bound else None,
            last_grad=last if corrected else None, count=count,
        )

    return GradientTransformation(init, update)


def _map_leaves(step, updates, mu, nu, nu_max, last, params):
    """``step(g, m, v, vmax, last, p)`` over the leaves of ``updates`` (``nu_max``, ``last``
    and ``params`` may be None as a whole), each state leaf computed in the widest dtype of the
    leaf's arrays and stored back in its own. Returns five trees shaped like ``updates``."""
    _tree.check_match(mu, updates, reference_name="scale_by_mars state", other_name="updates")
    leaves, treedef = jax.tree_util.tree_flatten(updates)

    def flat(tree):
        return [None] * len(leaves) if tree is None else treedef.flatten_up_to(tree)

    columns = tuple([] for _ in range(5))
    for g, m, v, vmax, prev, p in zip(
        leaves, flat(mu), flat(nu), flat(nu_max), flat(last), flat(params), strict=True
    ):
        wide = jnp.result_type(*(x for x in (g, m, v, vmax, prev) if x is not None))

        def up(x, wide=wide):
            return None if x is None else x.astype(wide)

        new = step(up(g), up(m), up(v), up(vmax), up(prev), p)
        olds = (None, m, v, vmax, prev)
        for column, value, old in zip(columns, new, olds, strict=True):
            column.append(value if old is None or value is None else value.astype(old.dtype))
    return tuple(jax.tree_util.tree_unflatten(treedef, column) for column in columns)


def _orthogonalized(u: jax.Array, eps, ns_dtype) -> jax.Array:
    """The "shampoo" preconditioner: Newton–Schulz of ``u`` seen as a ``(d0, rest)`` matrix,
    times :math:`\\sqrt{\\max(1, d_0/d_1)}` (the reference's factor, from the first two axes
    of the leaf)."""
    shape = np.shape(u)
    factor = math.sqrt(max(1.0, shape[0] / shape[1])) if shape[1] else 1.0
    matrix = u.reshape(shape[0], -1)
    out = newton_schulz(matrix, DEFAULT_NS_COEFFICIENTS, live.read(eps), 5, dtype=ns_dtype)
    if ns_dtype is None:
        return (out * jnp.asarray(factor, out.dtype)).reshape(shape)
    # The reference scales the narrow result in place: in float32, rounded to ns_dtype.
    wide = jnp.promote_types(ns_dtype, jnp.float32)
    scaled = (out.astype(wide) * jnp.asarray(factor, wide)).astype(ns_dtype)
    return scaled.astype(u.dtype).reshape(shape)

r"""NovoGrad's scaling (Ginsburg et al., 2019, "Stochastic Gradient Methods with Layer-wise
Adaptive Moments for Training of Deep Networks"): the gradient of each leaf divided by the
root of a moving average of that leaf's squared norm, a second moment with one number per
leaf (per layer) instead of one per entry, then accumulated in a momentum."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradtx import live, validation
from gradtx import tree as _tree
from gradtx.core import GradientTransformation, PyTree
from gradtx.transforms import counting
from gradtx.transforms.moments import ema_update


class ScaleByNovogradState(NamedTuple):
    r""":func:`scale_by_novograd`'s state (Optax's ``ScaleByNovogradState``).

    Attributes:
        mu: :math:`m_t`, the momentum, per parameter (in ``mu_dtype``).
        nu: :math:`v_t`, one scalar per leaf: the moving average of the leaf's squared norm
            :math:`\|g_t\|^2`, in the parameter's dtype.
        count: the number of updates seen; None inside an optimizer, which keeps one count
            for all its transforms.
    """

    mu: PyTree
    nu: PyTree
    count: jax.Array | None


def _squared_norm(x: jax.Array) -> jax.Array:
    r""":math:`\|x\|^2 = \sum_i |x_i|^2` over a whole leaf, a real scalar."""
    if jnp.iscomplexobj(x):
        return jnp.sum(jnp.real(x) ** 2 + jnp.imag(x) ** 2)
    return jnp.sum(x * x)


def _zero_per_leaf(p: jax.Array) -> jax.Array:
    """A scalar zero in ``p``'s dtype: ``nu``'s entry for the leaf ``p``, sharded like ``p``
    when ``p`` is itself a scalar (a scalar of a larger leaf is left to the compiler)."""
    if jnp.ndim(p) == 0:
        return _tree.fill_like(p, 0.0)
    return jnp.zeros([], jnp.result_type(p))


def scale_by_novograd(
    b1: float | jax.Array = 0.9,
    b2: float | jax.Array = 0.25,
    eps: float | jax.Array = 1e-8,
    eps_root: float | jax.Array = 0.0,
    weight_decay: float | jax.Array = 0.0,
    mu_dtype=None,
) -> GradientTransformation:
    r"""NovoGrad's scaling, for each leaf :math:`g_t` of the updates with its parameter
    :math:`\theta`:

    .. math::
        v_t &= \begin{cases} \|g_1\|^2 & t = 1 \\
            \beta_2 v_{t-1} + (1-\beta_2)\|g_t\|^2 & t > 1 \end{cases} \\
        m_t &= \beta_1 m_{t-1} + \frac{g_t}{\sqrt{v_t + \epsilon_{\text{root}}} + \epsilon}
            + \lambda\,\theta, \qquad m_0 = 0, \qquad \text{out}_t = m_t

    equal step for step to ``optax.scale_by_novograd`` (Optax 0.2.8). :math:`v_t` is one
    scalar per leaf, started at the first squared norm rather than at zero (so it needs no
    bias correction); the momentum adds each step's term undamped (no :math:`1-\beta_1`).
    The weight decay :math:`\lambda` is added inside the momentum, as in the paper; a Python
    0 leaves it out, and ``update`` then needs no ``params``.

    :math:`m` is stored in ``mu_dtype`` (default: the parameters' dtype); the output is the
    unrounded :math:`m_t` (Optax outputs it rounded to ``mu_dtype``: the same in one dtype).
    Not flattenable: :math:`\|g_t\|` is a norm per leaf.
    """
    validation.check_unit_interval("b1", b1)
    validation.check_unit_interval("b2", b2)
    validation.check_non_negative("eps", eps)
    validation.check_non_negative("eps_root", eps_root)
    validation.check_non_negative("weight_decay", weight_decay)
    mu_dtype = validation.check_state_dtype("mu_dtype", mu_dtype)
    decays = not validation.is_static_zero(weight_decay)

    def init(params):
        return ScaleByNovogradState(
            mu=_tree.full_like(params, 0.0, mu_dtype),
            nu=jax.tree_util.tree_map(_zero_per_leaf, params),
            count=counting.init_count(),
        )

    def update(updates, state, params=None, **extra_args):
        del extra_args
        if decays:
            _tree.check_params(params, updates, name="scale_by_novograd")
        taken, count = counting.advance(state.count, "scale_by_novograd")
        beta1 = live.read(b1)
        # The first step sets v to the squared norm: an average that forgets everything.
        beta2 = jnp.where(taken == 0, 0.0, jnp.asarray(live.read(b2), jnp.result_type(float)))
        epsilon, epsilon_root = live.read(eps), live.read(eps_root)
        decay = live.read(weight_decay) if decays else None

        def leaf(g, m, v, p=None):
            v = ema_update(v, _squared_norm(g).astype(v.dtype), beta2)
            # One reciprocal per leaf (v is a scalar), then a multiply per entry.
            inverse = 1 / (jnp.sqrt(v + _tree.cast_like(epsilon_root, v))
                           + _tree.cast_like(epsilon, v))
            term = g * inverse.astype(g.dtype)
            if p is not None:
                term = term + _tree.cast_like(decay, g) * p.astype(g.dtype)
            m_wide, term = _tree.widen(m, term)
            new_m = _tree.cast_like(beta1, m_wide) * m_wide + term
            return new_m, new_m.astype(m.dtype), v

        trees = (updates, state.mu, state.nu) + ((params,) if decays else ())
        results = _tree.map_state(leaf, *trees, name="scale_by_novograd")
        out, mu, nu = _tree.split_tuples(results, updates, 3)
        return out, ScaleByNovogradState(mu=mu, nu=nu, count=count)

    return GradientTransformation(init, update)

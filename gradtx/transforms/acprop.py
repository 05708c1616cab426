r"""ACProp's scaling (Zhuang et al., 2021, "Momentum Centering and Asynchronous Update for
Adaptive Gradient Methods"): AdaBelief's centred second moment, used *asynchronously*: the
step divides the raw gradient by the statistic of the previous steps, which does not yet hold
this gradient."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gradtx import live, validation
from gradtx import tree as _tree
from gradtx.core import GradientTransformation, flattenable
from gradtx.transforms import counting
from gradtx.transforms.adam_scalings import BeliefState
from gradtx.transforms.moments import ema_update


def _abs_square(x: jax.Array) -> jax.Array:
    """:math:`|x|^2`, real for a complex ``x``."""
    return jnp.real(x * jnp.conj(x)) if jnp.iscomplexobj(x) else x * x


def scale_by_acprop(
    b1: float | jax.Array = 0.9,
    b2: float | jax.Array = 0.999,
    eps: float | jax.Array = 1e-16,
    eps_root: float | jax.Array = 1e-16,
) -> GradientTransformation:
    r"""ACProp's scaling (Zhuang et al., 2021):

    .. math::
        \text{out}_t &= \frac{g_t}{\sqrt{\hat s_{t-1}} + \epsilon}, \qquad
        \hat s_{t-1} = \begin{cases} 1 & t = 1 \\ s_{t-1} / (1-\beta_2^{t-1}) & t > 1
        \end{cases} \\
        s_t &= \beta_2 s_{t-1} + (1-\beta_2)\,|g_t - m_{t-1}|^2 + \epsilon_{\text{root}},
        \qquad m_t = \beta_1 m_{t-1} + (1-\beta_1)\, g_t

    with :math:`m_0 = s_0 = 0`. The prediction error is taken against the *previous* first
    moment :math:`m_{t-1}` (as in the authors' code and Optax's), and the step uses the second
    moment of the steps before this one (the "asynchronous" update); the first step divides
    by :math:`1 + \epsilon`. :math:`\epsilon_{\text{root}}` is added to the stored
    :math:`s_t`, so it accumulates.

    Equal step for step to ``optax.contrib.scale_by_acprop`` (Optax 0.2.8), complex leaves
    included (:math:`|\cdot|^2` is the squared modulus there).

    Args:
        b1: :math:`\beta_1 \in [0, 1)`, the decay of the first moment.
        b2: :math:`\beta_2 \in [0, 1)`, the decay of the centred second moment.
        eps: :math:`\epsilon \ge 0`, added to the root.
        eps_root: :math:`\epsilon_{\text{root}} \ge 0`, added to the stored second moment.

    State: :class:`gradtx.BeliefState` (``mu``, ``nu``, ``count``; Optax's
    ``ScaleByBeliefState`` too).
    """
    validation.check_unit_interval("b1", b1)
    validation.check_unit_interval("b2", b2)
    validation.check_non_negative("eps", eps)
    validation.check_non_negative("eps_root", eps_root)

    def init(params):
        return BeliefState(
            mu=_tree.full_like(params),
            nu=_tree.full_like(params),
            count=counting.init_count(),
        )

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        taken, count = counting.advance(state.count, "scale_by_acprop")
        first = taken == 0
        beta1, beta2 = live.read(b1), live.read(b2)
        epsilon, epsilon_root = live.read(eps), live.read(eps_root)
        # Per step: the bias correction of s_{t-1}, over t - 1 steps (any count at t = 1,
        # where the corrected value is replaced by 1).
        previous = counting.as_float(jnp.maximum(taken, 1))
        inverse2 = 1 / (1 - jnp.asarray(beta2, previous.dtype) ** previous)

        def leaf(g, m, s):
            error = g - m
            s_hat = jnp.where(first, jnp.ones_like(s), s * _tree.cast_like(inverse2, s))
            out = g / (jnp.sqrt(s_hat) + _tree.cast_like(epsilon, s))
            m = ema_update(m, g, beta1)
            s = ema_update(s, _abs_square(error), beta2) + _tree.cast_like(epsilon_root, s)
            return out, m, s

        out, (mu, nu) = _tree.leafwise(leaf, updates, state.mu, state.nu, name="scale_by_acprop")
        return out, BeliefState(mu=mu, nu=nu, count=count)

    return flattenable(GradientTransformation(init, update))

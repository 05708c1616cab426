r"""MADGRAD's scaling (Defazio & Jelassi, 2021, "Adaptivity without Compromise: A
Momentumized, Adaptive, Dual Averaged Gradient Method for Stochastic Optimization"): dual
averaging from the initial parameters, with a cube-root adaptive denominator and momentum by
averaging of the iterates."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradtx import live, validation
from gradtx import tree as _tree
from gradtx.core import GradientTransformation, PyTree, ScalarOrSchedule, flattenable
from gradtx.transforms import counting


class MadgradState(NamedTuple):
    r""":func:`scale_by_madgrad`'s state (Optax's ``MadgradState``).

    Attributes:
        grad_sum_sq: :math:`G_k = \sum_{i \le k} \lambda_i g_i^2`, per parameter.
        s: :math:`s_k = \sum_{i \le k} \lambda_i g_i`, per parameter.
        x0: :math:`x_0`, the parameters given to ``init`` (the centre of the dual averaging).
        count: the number of updates seen; None inside an optimizer, which keeps one count
            for all its transforms.
    """

    grad_sum_sq: PyTree
    s: PyTree
    x0: PyTree
    count: jax.Array | None


def _weight(learning_rate, eps, taken) -> jax.Array:
    r""":math:`\lambda_k = (\eta + \epsilon)\sqrt{k + 1}` for ``taken`` = :math:`k`, typed
    as Optax types it (see :func:`scale_by_madgrad`)."""
    root = jnp.sqrt(jnp.asarray(taken + 1, jnp.float32))
    return (jnp.asarray(learning_rate) + jnp.asarray(eps)) * root


def _cube_root(x: jax.Array) -> jax.Array:
    r""":math:`x^{1/3}` of a sum of squares (:math:`x \ge 0`), with a zero gradient at
    :math:`x = 0` rather than the cube root's infinite one: there :math:`s = 0` as well, so
    the step does not change to first order, and a NaN would otherwise reach gradients taken
    through the step (in the learning rate, say) wherever a gradient entry is zero. The
    values are ``jnp.cbrt``'s."""
    positive = x > 0
    return jnp.where(positive, jnp.cbrt(jnp.where(positive, x, 1)), jnp.zeros_like(x))


def scale_by_madgrad(
    learning_rate: ScalarOrSchedule,
    momentum: float | jax.Array = 0.9,
    eps: float | jax.Array = 1e-6,
) -> GradientTransformation:
    r"""MADGRAD's step, as an update (the new parameters minus the current ones):

    .. math::
        \lambda_k &= (\eta_k + \epsilon)\sqrt{k+1}, \qquad
        G_{k+1} = G_k + \lambda_k g_k^2, \qquad s_{k+1} = s_k + \lambda_k g_k \\
        z_{k+1} &= x_0 - \frac{s_{k+1}}{G_{k+1}^{1/3} + \epsilon}, \qquad
        x_{k+1} = (1-\mu)\, z_{k+1} + \mu\, x_k, \qquad \text{out}_k = x_{k+1} - x_k

    with :math:`k` the number of steps before this one, :math:`G_0 = s_0 = 0`, momentum
    :math:`\mu` and :math:`x_0` the parameters given to ``init``; equal step for step to
    ``optax.contrib.scale_by_madgrad`` (Optax 0.2.8), :math:`\lambda_k` typed as there
    (below). The learning rate is inside the step (it weighs the sums), so no
    ``scale_by_learning_rate`` follows; a schedule is evaluated at :math:`k`. ``update``
    needs ``params``.

    The dtype of :math:`\lambda_k` follows Optax 0.2.8's: :math:`\sqrt{k+1}` is float32
    (Optax takes ``jnp.sqrt`` of its int32 step count), multiplied by :math:`\eta + \epsilon`
    in their own dtype. So a Python-number learning rate (weakly typed) gives a float32
    :math:`\lambda_k`, as in Optax, and a float64 array a float64 one, also as in Optax. Inside
    the optimizer ``madgrad`` the learning rate is always an array (a live hyperparameter);
    see there.
    """
    validation.check_non_negative("learning_rate", learning_rate)
    validation.check_unit_interval("momentum", momentum)
    validation.check_non_negative("eps", eps)

    def init(params):
        return MadgradState(
            grad_sum_sq=_tree.full_like(params, 0.0),
            s=_tree.full_like(params, 0.0),
            # A copy: the parameters' own buffers may be donated to a jitted step later.
            x0=jax.tree_util.tree_map(jnp.copy, params),
            count=counting.init_count(),
        )

    def update(updates, state, params=None, **extra_args):
        del extra_args
        _tree.check_params(params, updates, name="scale_by_madgrad")
        taken, count = counting.advance(state.count, "scale_by_madgrad")
        rate = learning_rate(taken) if callable(learning_rate) else live.read(learning_rate)
        epsilon = live.read(eps)
        weight = _weight(rate, epsilon, taken)
        mu = live.read(momentum)
        keep = 1 - jnp.asarray(mu)  # in the hyperparameter's own dtype, then cast per leaf

        def leaf(g, sum_sq, s, x0, x):
            # The increments are computed in the wider of float32 and g's dtype, then stored
            # in g's, as Optax does.
            sum_sq = sum_sq + (weight * (g * g)).astype(g.dtype)
            s = s + (weight * g).astype(g.dtype)
            z = x0 - s / (_cube_root(sum_sq) + _tree.cast_like(epsilon, sum_sq))
            new_x = _tree.cast_like(keep, z) * z + _tree.cast_like(mu, x) * x
            return new_x - x, sum_sq, s

        results = _tree.map_state(
            leaf, updates, state.grad_sum_sq, state.s, state.x0, params, name="scale_by_madgrad"
        )
        out, sum_sq, s = _tree.split_tuples(results, updates, 3)
        return out, MadgradState(grad_sum_sq=sum_sq, s=s, x0=state.x0, count=count)

    return flattenable(GradientTransformation(init, update))

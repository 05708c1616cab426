r"""Layer-wise trust ratios (LARS, LAMB): each parameter leaf's update is rescaled so that its
norm is a fixed fraction of the parameter's norm."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gradtx import tree as _tree
from gradtx import validation
from gradtx.core import GradientTransformation, stateless


def block_norm(x: jax.Array) -> jax.Array:
    r"""The Euclidean norm of a whole leaf, :math:`\|x\| = \sqrt{\sum_i x_i^2}`, in its dtype.

    At :math:`x = 0` the norm is 0 and its gradient is 0 rather than NaN: the square root is
    taken of a placeholder there, so differentiating through an optimizer step (for example in
    the learning rate) stays finite when a leaf or its update is exactly zero.
    """
    squares = jnp.sum(jnp.square(x))
    positive = squares > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, squares, 1)), 0).astype(x.dtype)


def scale_by_trust_ratio(
    min_norm: float | jax.Array = 0.0,
    trust_coefficient: float | jax.Array = 1.0,
    eps: float | jax.Array = 0.0,
    weight_decay: float | jax.Array = 0.0,
) -> GradientTransformation:
    r"""Multiplies each leaf's update by its trust ratio, computed from whole-leaf norms:

    .. math::
        a = \max(\|\theta\|, n_{\min}), \qquad b = \max(\|u\|, n_{\min}), \qquad
        r = \begin{cases} c\, a / (b + \lambda a + \epsilon) & a > 0 \text{ and } b > 0 \\
                          1 & \text{otherwise} \end{cases}, \qquad
        \text{out} = r\, (u + \lambda\theta)

    with trust coefficient :math:`c`. A ratio of 1 where either norm is zero lets a
    zero-initialised leaf (a bias) start moving, and leaves a zero update at zero. It is 1, not
    :math:`c`, as in the widely used LARS and LAMB implementations (and Optax's).

    Args:
        min_norm: :math:`n_{\min} \ge 0`, a floor on both norms (0 disables it).
        trust_coefficient: :math:`c \ge 0` (LARS's :math:`\eta`; 1 for LAMB).
        eps: :math:`\epsilon \ge 0`, added to the update norm.
        weight_decay: :math:`\lambda \ge 0`, LARS's weight decay (You et al., 2017,
            Algorithm 1): it enters the denominator as :math:`\lambda\|\theta\|` and the
            scaled vector as :math:`\lambda\theta`. With 0 (LAMB, which decays before the
            ratio) the output is :math:`r\,u`.

    ``update`` needs ``params``. Keeps no state.
    """
    validation.check_non_negative("min_norm", min_norm)
    validation.check_non_negative("trust_coefficient", trust_coefficient)
    validation.check_non_negative("eps", eps)
    validation.check_non_negative("weight_decay", weight_decay)
    decays = not validation.is_static_zero(weight_decay)

    def scale(updates, params):
        def leaf(u, p):
            floor = _tree.cast_like(min_norm, u)
            p = p.astype(u.dtype)
            decay = _tree.cast_like(weight_decay, u)
            param_norm = jnp.maximum(block_norm(p), floor)
            update_norm = jnp.maximum(block_norm(u), floor)
            usable = (param_norm > 0) & (update_norm > 0)
            denominator = update_norm + _tree.cast_like(eps, u)
            if decays:
                denominator = denominator + decay * param_norm
                u = u + decay * p
            ratio = (
                _tree.cast_like(trust_coefficient, u)
                * param_norm
                / jnp.where(usable, denominator, 1)
            )
            return jnp.where(usable, ratio, 1).astype(u.dtype) * u

        return jax.tree_util.tree_map(leaf, updates, params)

    return stateless(scale, needs_params=True, name="scale_by_trust_ratio")

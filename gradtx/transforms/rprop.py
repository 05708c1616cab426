r"""Resilient backpropagation (Rprop): one step size per entry, grown while the gradient keeps
its sign and shrunk when it flips; only the sign of the gradient moves the parameter."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradtx import live, validation
from gradtx import tree as _tree
from gradtx.core import GradientTransformation, PyTree, ScalarOrSchedule, flattenable
from gradtx.transforms import counting


class RpropState(NamedTuple):
    """The state of :func:`scale_by_rprop`.

    Attributes:
        prev: the previous step's update, per parameter, as it was used (zero where its sign
            flipped): torch's ``prev``.
        step_size: the step size of every entry: torch's ``step_size``.
        count: the number of updates seen; None inside an optimizer, which keeps one count
            for all its transforms.
    """

    prev: PyTree
    step_size: PyTree
    count: jax.Array | None


def scale_by_rprop(
    learning_rate: ScalarOrSchedule = 1e-2,
    eta_minus: float | jax.Array = 0.5,
    eta_plus: float | jax.Array = 1.2,
    min_step_size: float | jax.Array = 1e-6,
    max_step_size: float | jax.Array = 50.0,
) -> GradientTransformation:
    r"""Rprop's direction (Riedmiller & Braun, 1993), with torch.optim.Rprop's semantics.

    With :math:`u_t` the update (the gradient), :math:`p_t = u_t\, \tilde u_{t-1}`
    (:math:`\tilde u_0 = 0`) and :math:`s_0 = \eta`, the learning rate:

    .. math::
        s_t &= \operatorname{clip}\bigl(f_t\, s_{t-1},\ s_{\min},\ s_{\max}\bigr), \qquad
            f_t = \begin{cases} \eta_+ & p_t > 0 \\ \eta_- & p_t < 0 \\ 1 & p_t = 0
            \end{cases} \\
        \tilde u_t &= \begin{cases} 0 & p_t < 0 \\ u_t & \text{otherwise} \end{cases}, \qquad
        \text{out}_t = s_t \operatorname{sign}(\tilde u_t)

    so an entry whose update changed sign does not move at this step, and its next step
    starts afresh (:math:`p_{t+1} = 0`). The output has the sign of the update: follow it by
    ``scale(-1.0)`` to descend (:func:`gradtx.rprop` does). The learning rate is the
    initial step size only, and it is not multiplied into the output.

    :math:`\operatorname{clip}(x, a, b) = \min(\max(x, a), b)`, as torch's ``clamp``: with
    :math:`s_{\min} > s_{\max}` every step size is :math:`s_{\max}`. The clip applies at every
    step, the first one included (a learning rate above :math:`s_{\max}` gives first steps of
    :math:`s_{\max}`). :math:`\eta` is read at the first step (torch creates its step sizes
    then); changing it later has no effect, as in torch.

    Non-finite updates: a NaN product :math:`p_t` leaves the step size as it is
    (:math:`f_t = 1`), as in torch. A NaN update reaches the output (:math:`\operatorname{sign}`
    of NaN is NaN here); torch's ``sign`` of NaN is 0, so there a NaN gradient leaves the
    parameter in place for that step. An infinite update gives a finite output.

    Args:
        learning_rate: :math:`\eta \ge 0`, the initial step size: a float, an array, or a
            schedule ``count -> value`` (only its value at the first step is used).
        eta_minus: :math:`\eta_- \in (0, 1)`, the factor of a step size whose update flipped
            sign.
        eta_plus: :math:`\eta_+ > 1`, the factor of a step size whose update kept its sign.
        min_step_size: :math:`s_{\min} \ge 0`.
        max_step_size: :math:`s_{\max} \ge 0`.

    The state (:class:`RpropState`) keeps ``prev`` and ``step_size`` in the parameters' dtypes.

    Differs from ``optax.scale_by_rprop``: see :func:`gradtx.rprop`.
    """
    validation.check_non_negative("learning_rate", learning_rate)
    validation.check_interval("eta_minus", eta_minus, 0.0, 1.0, low_closed=False,
                              high_closed=False)
    validation.check_interval("eta_plus", eta_plus, 1.0, low_closed=False)
    validation.check_non_negative("min_step_size", min_step_size)
    validation.check_non_negative("max_step_size", max_step_size)

    def initial_size(count):
        return learning_rate(count) if callable(learning_rate) else live.read(learning_rate)

    def init(params):
        return RpropState(
            prev=_tree.full_like(params, 0.0),
            step_size=_tree.full_like(params, initial_size(counting.zero_count())),
            count=counting.init_count(),
        )

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        taken, count = counting.advance(state.count, "scale_by_rprop")
        first = taken == 0
        lr = initial_size(taken)

        def leaf(u, prev, size):
            product = u * prev
            plus, minus = _tree.cast_like(eta_plus, u), _tree.cast_like(eta_minus, u)
            # A NaN product gives 1, as in torch (its sign of NaN is 0).
            factor = jnp.where(product > 0, plus, jnp.where(product < 0, minus, 1))
            # torch creates the step sizes at its first step, from the learning rate then.
            size = jnp.where(first, _tree.cast_like(lr, size), size)
            size = jnp.minimum(
                jnp.maximum(size * factor, _tree.cast_like(min_step_size, u)),
                _tree.cast_like(max_step_size, u),
            )
            kept = jnp.where(product < 0, jnp.zeros_like(u), u)
            return jnp.sign(kept) * size, kept, size

        out, (prev, step_size) = _tree.leafwise(
            leaf, updates, state.prev, state.step_size, name="scale_by_rprop"
        )
        return out, RpropState(prev=prev, step_size=step_size, count=count)

    return flattenable(GradientTransformation(init, update))

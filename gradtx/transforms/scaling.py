"""Multiplying updates by a constant, a learning rate, or a schedule."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradtx import live, validation
from gradtx import tree as _tree
from gradtx.core import GradientTransformation, ScalarOrSchedule, flattenable, stateless
from gradtx.transforms import counting


class ScheduleState(NamedTuple):
    """The number of updates done so far; the schedule is evaluated at it. None inside an
    optimizer, which keeps one count for all its transforms."""

    count: jax.Array | None


def scale(step_size: float | jax.Array) -> GradientTransformation:
    """Multiplies every update by ``step_size``: :math:`u \\leftarrow s\\,u`.

    ``gx.scale(-1.0)`` turns a maximisation into a minimisation (torch's ``maximize=True``).
    """
    validation.check_interval("step_size", step_size)

    def multiply(updates, params):
        factor = live.read(step_size)
        return jax.tree_util.tree_map(lambda u: _tree.cast_like(factor, u) * u, updates)

    return flattenable(stateless(multiply))


def scale_by_learning_rate(
    learning_rate: ScalarOrSchedule, *, flip_sign: bool = True
) -> GradientTransformation:
    """Multiplies updates by :math:`-\\eta_t` (or :math:`+\\eta_t` with ``flip_sign=False``).

    ``learning_rate`` is a float, a JAX array (it may be traced), or a schedule: a callable
    ``count -> value`` evaluated at the number of updates already applied (0 at the first step).
    Only a schedule keeps state (its step count).
    """
    validation.check_non_negative("learning_rate", learning_rate)
    sign = -1.0 if flip_sign else 1.0

    def apply(lr, updates):
        step = sign * jnp.asarray(lr)  # once per step, not per leaf
        return jax.tree_util.tree_map(lambda u: _tree.cast_like(step, u) * u, updates)

    if not callable(learning_rate):
        return flattenable(
            stateless(lambda updates, params: apply(live.read(learning_rate), updates))
        )

    def init(params):
        del params
        return ScheduleState(count=counting.init_count())

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        taken, count = counting.advance(state.count, "scale_by_learning_rate")
        return apply(learning_rate(taken), updates), ScheduleState(count=count)

    return flattenable(GradientTransformation(init, update))

r"""Running a transformation only at the steps a condition on the step count selects: on the
other steps its updates are either passed through unchanged (:func:`conditionally_transform`)
or zeroed (:func:`conditionally_mask`), and its state is kept as it was."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax

from gradtx import core, validation
from gradtx.core import GradientTransformation, OptState
from gradtx.transforms.counting import increment, zero_count
from gradtx.wrappers.finite import init_skippable, run_or_skip

ConditionFn = Callable[..., Any]
"""``should_transform_fn(step, **extra_args) -> bool scalar``: ``step`` is the number of
earlier calls of ``update`` (an int32 scalar); the extra arguments come only with
``forward_extra_args=True``."""


class ConditionallyTransformState(NamedTuple):
    """The inner transformation's state and the step count.

    Attributes:
        inner_state: the inner transformation's state, as of the last step that ran it.
        step: the number of calls of ``update`` so far (int32, saturating), whether or not they
            ran the inner transformation.
    """

    inner_state: OptState
    step: jax.Array


class ConditionallyMaskState(NamedTuple):
    """The step count and the inner transformation's state.

    Attributes:
        step: the number of calls of ``update`` so far (int32, saturating), whether or not they
            ran the inner transformation.
        inner_state: the inner transformation's state, as of the last step that ran it.
    """

    step: jax.Array
    inner_state: OptState


def _check(inner, should_transform_fn, forward_extra_args) -> None:
    if not isinstance(inner, GradientTransformation):
        raise TypeError(f"`inner` must be a GradientTransformation, got {inner!r}.")
    if not callable(should_transform_fn):
        raise TypeError(
            f"`should_transform_fn` must be a callable step -> bool, got {should_transform_fn!r}."
        )
    validation.check_bool("forward_extra_args", forward_extra_args)


def _condition(should_transform_fn, step, forward_extra_args, extra_args) -> jax.Array:
    return should_transform_fn(step, **(extra_args if forward_extra_args else {}))


def _run_or_pass(run, inner, updates, state, params, **extra_args):
    """``inner.update(...)`` when ``run``; otherwise ``(updates, state)`` as they are. Under jit
    only the branch taken runs (a ``lax.cond``, so ``inner`` must keep the updates' shapes and
    dtypes); eagerly it is a Python ``if``."""
    inner_update = core.with_extra_args(inner.update)

    def step():
        return inner_update(updates, state, params, **extra_args)

    if not validation.is_traced(run):
        return step() if bool(run) else (updates, state)
    return jax.lax.cond(run, step, lambda: (updates, state))


def conditionally_transform(
    inner: GradientTransformation,
    should_transform_fn: ConditionFn,
    forward_extra_args: bool = False,
) -> GradientTransformation:
    r"""Runs ``inner`` only at the steps ``should_transform_fn`` selects, and passes the updates
    through unchanged at the others:

    .. math:: (u, s_{\text{inner}}) \leftarrow \begin{cases}
        \text{inner}(u, s_{\text{inner}}) & f(t) \\ (u, s_{\text{inner}}) & \text{otherwise}
        \end{cases}, \qquad t \leftarrow t + 1

    where :math:`t` counts the earlier calls of ``update`` from 0. On a skipped step
    ``inner``'s state is returned bit for bit, so its own counts (bias corrections, schedules)
    count only the steps it ran. Under ``jit`` only the branch taken runs (a ``lax.cond``), so
    ``inner`` must output updates of the incoming shapes and dtypes.
    To zero the updates of the skipped steps instead, use :func:`conditionally_mask`. Equal
    step for step to ``optax.conditionally_transform`` (Optax 0.2.8), state included.

    Args:
        inner: the transformation to run.
        should_transform_fn: ``f(step, **extra_args) -> bool scalar`` (see
            ``ConditionFn``, a function of the step count).
        forward_extra_args: also pass ``update``'s extra keyword arguments (``value=``...) to
            ``should_transform_fn``; ``inner`` gets them either way.

    State: :class:`ConditionallyTransformState` ``(inner_state, step)``.

    Example:
        >>> import gradtx as gx, jax.numpy as jnp
        >>> from gradtx.wrappers.conditional import conditionally_transform
        >>> tx = conditionally_transform(gx.scale(10.0), lambda step: step % 2 == 1)
        >>> state = tx.init(jnp.zeros(1))
        >>> out = []
        >>> for _ in range(3):
        ...     updates, state = tx.update(jnp.ones(1), state)
        ...     out.append(float(updates[0]))
        >>> out, int(state.step)
        ([1.0, 10.0, 1.0], 3)
    """
    _check(inner, should_transform_fn, forward_extra_args)

    def init(params):
        return ConditionallyTransformState(
            inner_state=init_skippable(inner, params), step=zero_count()
        )

    def update(updates, state, params=None, **extra_args):
        run = _condition(should_transform_fn, state.step, forward_extra_args, extra_args)
        out, inner_state = _run_or_pass(
            run, inner, updates, state.inner_state, params, **extra_args
        )
        return out, ConditionallyTransformState(
            inner_state=inner_state, step=increment(state.step)
        )

    return GradientTransformation(init, update)


def conditionally_mask(
    inner: GradientTransformation,
    should_transform_fn: ConditionFn,
    forward_extra_args: bool = False,
) -> GradientTransformation:
    r"""Runs ``inner`` only at the steps ``should_transform_fn`` selects, and outputs zero
    updates at the others:

    .. math:: (u, s_{\text{inner}}) \leftarrow \begin{cases}
        \text{inner}(u, s_{\text{inner}}) & f(t) \\ (0, s_{\text{inner}}) & \text{otherwise}
        \end{cases}, \qquad t \leftarrow t + 1

    where :math:`t` counts the earlier calls of ``update`` from 0. On a skipped step the
    parameters do not move and ``inner``'s state is returned bit for bit (so its own counts
    count only the steps it ran). Under ``jit`` only the branch taken runs (a ``lax.cond``).
    To pass the updates through unchanged instead, use :func:`conditionally_transform`. Equal
    step for step to ``optax.conditionally_mask`` (Optax 0.2.8), state included.

    Args:
        inner: the transformation to run.
        should_transform_fn: ``f(step, **extra_args) -> bool scalar`` (see
            ``ConditionFn``, a function of the step count).
        forward_extra_args: also pass ``update``'s extra keyword arguments (``value=``...) to
            ``should_transform_fn``; ``inner`` gets them either way.

    State: :class:`ConditionallyMaskState` ``(step, inner_state)``.

    Example:
        >>> import gradtx as gx, jax.numpy as jnp
        >>> from gradtx.wrappers.conditional import conditionally_mask
        >>> tx = conditionally_mask(gx.sgd(0.5), lambda step: step >= 1)
        >>> state = tx.init(jnp.zeros(1))
        >>> out = []
        >>> for _ in range(3):
        ...     updates, state = tx.update(jnp.ones(1), state)
        ...     out.append(float(updates[0]))
        >>> out
        [0.0, -0.5, -0.5]
    """
    _check(inner, should_transform_fn, forward_extra_args)

    def init(params):
        return ConditionallyMaskState(step=zero_count(), inner_state=init_skippable(inner, params))

    def update(updates, state, params=None, **extra_args):
        run = _condition(should_transform_fn, state.step, forward_extra_args, extra_args)
        out, inner_state = run_or_skip(
            run, inner, updates, state.inner_state, params, **extra_args
        )
        return out, ConditionallyMaskState(step=increment(state.step), inner_state=inner_state)

    return GradientTransformation(init, update)

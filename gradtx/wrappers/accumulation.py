r"""Gradient accumulation: one optimizer step per ``k`` micro-batches, on their mean gradient."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradtx import tree as _tree
from gradtx import validation
from gradtx.core import GradientTransformation, OptState, PyTree, flattenable, is_flattenable
from gradtx.transforms.counting import zero_count
from gradtx.wrappers.finite import init_skippable, run_or_skip


class AccumulationState(NamedTuple):
    """The micro-batch gradients gathered so far and the inner transformation's state.

    Attributes:
        micro_step: gradients gathered since the last step of the inner transformation
            (int32, ``0 <= micro_step < every_k``).
        grad_sum: their sum, per parameter, in the parameter's dtype.
        inner_state: the inner transformation's state, changed only on emitting calls.
        emitted: whether the latest call applied the inner transformation (False before any
            call). Read it to know when the params actually changed, e.g. to step a
            learning-rate logger or count optimizer steps.
    """

    micro_step: jax.Array
    grad_sum: PyTree
    inner_state: OptState
    emitted: jax.Array


def accumulate_gradients(inner: GradientTransformation, every_k: int) -> GradientTransformation:
    r"""Averages the gradients of ``every_k`` micro-batches and applies ``inner`` once to the
    mean.

    With :math:`k` = ``every_k``, the :math:`n`-th call (counting from 1) with gradient
    :math:`g_n` outputs

    .. math::
        \text{out}_n = \begin{cases}
            \text{inner}\Bigl(\tfrac1k \sum_{i=n-k+1}^{n} g_i\Bigr) & k \mid n \\
            0 & \text{otherwise}
        \end{cases}

    so ``k`` calls with :math:`g_1..g_k` move the params exactly as one call of ``inner`` with
    their mean, the gradient of the loss averaged over the ``k`` micro-batches (when every
    micro-batch has the same size). Between emitting calls the updates are zeros and ``inner``'s
    state is not touched; under ``jit`` ``inner`` runs only on emitting calls (a ``lax.cond``).
    The sum is kept in each parameter's dtype. ``AccumulationState.emitted`` tells whether the
    latest call applied ``inner``.

    Args:
        inner: the optimizer to apply to the mean gradient.
        every_k: the number of micro-batches per step, a positive int (1: ``inner`` itself, up
            to the round trip of each gradient through the parameter's dtype).

    torch: calling ``loss.backward()`` on ``k`` micro-batches with each loss divided by ``k``,
    then ``optimizer.step(); optimizer.zero_grad()``. Like ``optax.MultiSteps`` with its
    default (averaging) behaviour.

    Example:
        >>> import gradtx as gx, jax.numpy as jnp
        >>> from gradtx.wrappers.accumulation import accumulate_gradients
        >>> opt = accumulate_gradients(gx.sgd(0.5), every_k=2)
        >>> params = {"w": jnp.zeros(2)}
        >>> state = opt.init(params)
        >>> updates, state = opt.update({"w": jnp.array([1.0, 2.0])}, state, params)
        >>> updates["w"].tolist(), bool(state.emitted)
        ([0.0, 0.0], False)
        >>> updates, state = opt.update({"w": jnp.array([3.0, 4.0])}, state, params)
        >>> updates["w"].tolist(), bool(state.emitted)
        ([-1.0, -1.5], True)
    """
    every_k = validation.check_static_int("every_k", every_k)

    def init(params):
        return AccumulationState(
            micro_step=zero_count(),
            grad_sum=_tree.full_like(params),
            inner_state=init_skippable(inner, params),
            emitted=jnp.asarray(False),
        )

    def update(updates, state, params=None, **extra_args):
        grad_sum = _tree.map_state(
            lambda u, s: (s + u.astype(s.dtype)).astype(s.dtype),
            updates, state.grad_sum, name="accumulate_gradients",
        )
        micro_step = state.micro_step + 1
        emit = micro_step >= every_k
        mean = jax.tree_util.tree_map(
            lambda s: (s / _tree.cast_like(every_k, s)).astype(s.dtype), grad_sum
        )
        out, inner_state = run_or_skip(emit, inner, mean, state.inner_state, params, **extra_args)
        return out, AccumulationState(
            micro_step=jnp.where(emit, zero_count(), micro_step).astype(jnp.int32),
            grad_sum=jax.tree_util.tree_map(
                lambda s: jnp.where(emit, jnp.zeros_like(s), s), grad_sum
            ),
            inner_state=inner_state,
            emitted=emit,
        )

    return flattenable(GradientTransformation(init, update), is_flattenable(inner))

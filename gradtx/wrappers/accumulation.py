r"""Gradient accumulation: one optimizer step per ``k`` micro-batches, on their mean gradient."""

from __future__ import annotations

from typing import NamedTuple, Protocol

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
        gradient_step: the number of steps of the inner transformation so far (Optax's
            ``MultiStepsState.gradient_step``).
        skip_state: what ``should_skip_update_fn`` returned last beside its decision (``()``
            without one), for monitoring: e.g. ``num_not_finite`` of :func:`skip_not_finite`.
    """

    micro_step: jax.Array
    grad_sum: PyTree
    inner_state: OptState
    emitted: jax.Array
    gradient_step: jax.Array
    skip_state: PyTree = ()


class ShouldSkipUpdateFunction(Protocol):
    """The ``should_skip_update_fn`` of :func:`accumulate_gradients` (Optax's protocol of the
    same name): ``fn(updates, gradient_step, params) -> (skip, skip_state)``.

    ``updates`` are the incoming micro-batch gradients, ``gradient_step`` the number of steps
    of the inner transformation so far and ``params`` the params passed to ``update`` (or
    None). ``skip`` is a boolean scalar array, True to drop this micro-batch; ``skip_state``
    is any tree of arrays, kept in ``AccumulationState.skip_state`` (of the same structure at
    every call, the first being on zero updates at init).
    """

    def __call__(
        self, updates: PyTree, gradient_step: jax.Array, params: PyTree | None
    ) -> tuple[jax.Array, PyTree]: ...


def skip_not_finite(
    updates: PyTree, gradient_step: jax.Array, params: PyTree | None
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """A ``should_skip_update_fn`` for :func:`accumulate_gradients`: skips a micro-batch whose
    gradients hold a NaN or an Inf.

    Returns ``(skip, {"should_skip": skip, "num_not_finite": n})`` with ``n`` the number of
    NaN and Inf entries. Equal to ``optax.skip_not_finite``.
    """
    del gradient_step, params
    counts = [jnp.sum(~jnp.isfinite(u)) for u in jax.tree_util.tree_leaves(updates)]
    num_not_finite = jnp.sum(jnp.stack(counts)) if counts else jnp.zeros((), jnp.int32)
    skip = num_not_finite > 0
    return skip, {"should_skip": skip, "num_not_finite": num_not_finite}


def skip_large_updates(
    updates: PyTree,
    gradient_step: jax.Array,
    params: PyTree | None,
    max_squared_norm: float | jax.Array,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """A ``should_skip_update_fn`` for :func:`accumulate_gradients` once ``max_squared_norm``
    is bound (``functools.partial(skip_large_updates, max_squared_norm=m)``): skips a
    micro-batch unless the squared global norm of its gradients is below ``m`` (so a NaN norm
    skips too).

    Returns ``(skip, {"should_skip": skip, "norm_squared": s})``, the squares summed leaf by
    leaf in the gradients' dtype. Equal to ``optax.skip_large_updates``.
    """
    del gradient_step, params
    sums = [jnp.sum(jnp.square(u)) for u in jax.tree_util.tree_leaves(updates)]
    norm_squared = jnp.sum(jnp.stack(sums)) if sums else jnp.zeros(())
    skip = ~(norm_squared < max_squared_norm)
    return skip, {"should_skip": skip, "norm_squared": norm_squared}


def _check_skip(skip) -> jax.Array:
    if jnp.shape(skip) != () or jnp.result_type(skip) != jnp.bool_:
        raise ValueError(
            "`should_skip_update_fn` must return a boolean scalar array first, got "
            f"dtype {jnp.result_type(skip)} and shape {jnp.shape(skip)}."
        )
    return jnp.asarray(skip)


def accumulate_gradients(
    inner: GradientTransformation,
    every_k: int,
    *,
    should_skip_update_fn: ShouldSkipUpdateFunction | None = None,
) -> GradientTransformation:
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
        should_skip_update_fn: None, or a :class:`ShouldSkipUpdateFunction` deciding for each
            call whether to drop its gradients (:func:`skip_not_finite`,
            :func:`skip_large_updates`, or your own). A dropped call is as if it never
            happened: zero updates, the sum, ``micro_step``, ``gradient_step`` and ``inner``'s
            state unchanged, and ``emitted`` False; only ``skip_state`` changes.

    torch: calling ``loss.backward()`` on ``k`` micro-batches with each loss divided by ``k``,
    then ``optimizer.step(); optimizer.zero_grad()``. Like ``optax.MultiSteps`` with its
    default (averaging) behaviour and its ``should_skip_update_fn``; Optax averages with a
    running mean (Welford) and gradtx sums then divides, so the two agree to rounding.

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

    def skip_decision(updates, gradient_step, params):
        if should_skip_update_fn is None:
            return jnp.asarray(False), ()
        skip, skip_state = should_skip_update_fn(updates, gradient_step, params)
        return _check_skip(skip), skip_state

    def init(params):
        _, skip_state = skip_decision(_tree.full_like(params), zero_count(), params)
        return AccumulationState(
            micro_step=zero_count(),
            grad_sum=_tree.full_like(params),
            inner_state=init_skippable(inner, params),
            emitted=jnp.asarray(False),
            gradient_step=zero_count(),
            skip_state=skip_state,
        )

    def update(updates, state, params=None, **extra_args):
        skip, skip_state = skip_decision(updates, state.gradient_step, params)
        # Without a skip function no call is dropped: the selects are left out of the step.
        guarded = should_skip_update_fn is not None

        def add(u, s):
            total = (s + u.astype(s.dtype)).astype(s.dtype)
            return jnp.where(skip, s, total) if guarded else total

        grad_sum = _tree.map_state(add, updates, state.grad_sum, name="accumulate_gradients")
        taken = jnp.where(skip, 0, 1) if guarded else 1
        micro_step = state.micro_step + jnp.asarray(taken, state.micro_step.dtype)
        emit = micro_step >= every_k
        if guarded:
            emit = jnp.logical_and(emit, jnp.logical_not(skip))
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
            gradient_step=state.gradient_step + emit.astype(state.gradient_step.dtype),
            skip_state=skip_state,
        )

    return flattenable(GradientTransformation(init, update), is_flattenable(inner))

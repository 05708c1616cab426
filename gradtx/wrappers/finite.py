r"""Skipping steps whose gradients hold NaN or Inf, so one bad batch does not poison the params
or the optimizer's state."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradtx import core, live, validation
from gradtx.core import GradientTransformation, OptState, Params, Updates
from gradtx.transforms.counting import increment, zero_count


class ApplyIfFiniteState(NamedTuple):
    """Counters of non-finite steps and the inner transformation's state.

    Attributes:
        notfinite_count: consecutive steps with a NaN or Inf in the incoming updates, up to and
            including the latest one (0 after a finite step).
        last_finite: whether the latest step's updates were all finite (True before any step).
        total_notfinite: steps with a NaN or Inf so far.
        inner_state: the inner transformation's state, as of the last step that ran it.
    """

    notfinite_count: jax.Array
    last_finite: jax.Array
    total_notfinite: jax.Array
    inner_state: OptState


def run_or_skip(
    run: jax.Array,
    inner: GradientTransformation,
    updates: Updates,
    state: OptState,
    params: Params | None = None,
    **extra_args,
) -> tuple[Updates, OptState]:
    """``inner.update(updates, state, params, **extra_args)`` when the boolean scalar ``run``
    is True;
    otherwise zero updates (of the shapes and dtypes ``inner`` would output) and ``state``
    returned as it is, bit for bit.

    Under ``jit`` only the branch taken runs (a ``lax.cond``); under ``vmap`` with a batched
    ``run`` both run and each example selects its own; eagerly (a concrete ``run``) it is a
    Python ``if``. The wrappers that skip steps
    (:func:`apply_if_finite`, :func:`gradtx.wrappers.accumulation.accumulate_gradients`) are
    built on this.
    """

    inner_update = core.with_extra_args(inner.update)

    def step():
        return inner_update(updates, state, params, **extra_args)

    def skip():
        shapes = jax.eval_shape(lambda: step()[0])
        return jax.tree_util.tree_map(lambda x: jnp.zeros(x.shape, x.dtype), shapes), state

    if not validation.is_traced(run):
        # Eagerly a Python `if`: a lax.cond of fresh closures would be recompiled at every call.
        return step() if bool(run) else skip()
    return jax.lax.cond(run, step, skip)


def init_skippable(inner: GradientTransformation, params: Params) -> OptState:
    """``inner.init(params)`` for a wrapper that skips some of ``inner``'s steps: inner
    transforms then keep their own step counts, since the enclosing optimizer's count also
    counts the skipped steps."""
    with live.own_counts():
        return inner.init(params)


def all_finite(tree) -> jax.Array:
    """True when no leaf of ``tree`` holds a NaN or an Inf (True for an empty tree)."""
    checks = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)]
    return jnp.all(jnp.stack(checks)) if checks else jnp.asarray(True)


def apply_if_finite(
    inner: GradientTransformation, max_consecutive_errors: int | jax.Array
) -> GradientTransformation:
    r"""Skips a step whose incoming updates hold a NaN or an Inf, unless too many in a row did.

    On each step, with :math:`c` the number of consecutive non-finite steps including this one:

    * all updates finite: ``inner`` runs as usual and :math:`c` is reset to 0;
    * some NaN or Inf and :math:`c \le` ``max_consecutive_errors``: the step is skipped: the
      output updates are zeros (so ``apply_updates`` leaves the params as they are) and
      ``inner``'s state is returned unchanged, bit for bit;
    * some NaN or Inf and :math:`c >` ``max_consecutive_errors``: ``inner`` runs on the bad
      updates as usual, so a persistent failure shows in the params instead of silently
      freezing training. Every further bad step in the run also goes through.

    Args:
        inner: the transformation to protect (usually the whole optimizer).
        max_consecutive_errors: how many bad steps in a row are skipped, an int :math:`\ge 0`
            (0: none is skipped; the counters still count).

    State: :class:`ApplyIfFiniteState` ``(notfinite_count, last_finite, total_notfinite,
    inner_state)``. Under ``jit`` the inner transformation runs only on the steps it is applied
    (a ``lax.cond``).

    torch has no built-in equivalent; ``torch.amp.GradScaler.step`` skips non-finite steps in
    the same way (and lowers its loss scale). Same semantics as ``optax.apply_if_finite``.

    Example:
        >>> import gradtx as gx, jax.numpy as jnp
        >>> from gradtx.wrappers.finite import apply_if_finite
        >>> opt = apply_if_finite(gx.sgd(0.5), max_consecutive_errors=2)
        >>> params = {"w": jnp.ones(2)}
        >>> state = opt.init(params)
        >>> updates, state = opt.update({"w": jnp.array([1.0, jnp.nan])}, state, params)
        >>> updates["w"].tolist(), int(state.notfinite_count), bool(state.last_finite)
        ([0.0, 0.0], 1, False)
        >>> updates, state = opt.update({"w": jnp.ones(2)}, state, params)
        >>> updates["w"].tolist(), int(state.notfinite_count), int(state.total_notfinite)
        ([-0.5, -0.5], 0, 1)
    """
    _check_max_errors(max_consecutive_errors)

    def init(params):
        return ApplyIfFiniteState(
            notfinite_count=zero_count(),
            last_finite=jnp.asarray(True),
            total_notfinite=zero_count(),
            inner_state=init_skippable(inner, params),
        )

    def update(updates, state, params=None, **extra_args):
        finite = all_finite(updates)
        count = jnp.where(finite, zero_count(), increment(state.notfinite_count))
        total = jnp.where(finite, state.total_notfinite, increment(state.total_notfinite))
        run = finite | (count > jnp.asarray(max_consecutive_errors))
        out, inner_state = run_or_skip(
            run, inner, updates, state.inner_state, params, **extra_args
        )
        return out, ApplyIfFiniteState(
            notfinite_count=count, last_finite=finite, total_notfinite=total,
            inner_state=inner_state,
        )

    return GradientTransformation(init, update)


def _check_max_errors(value) -> None:
    name = "max_consecutive_errors"
    if isinstance(value, bool) or not (
        isinstance(value, (int, float, np.integer, np.floating, jax.Array, np.ndarray))
    ):
        raise TypeError(f"`{name}` must be an int >= 0, got {value!r}.")
    concrete = validation.concrete(value)
    if concrete is not None and not (
        np.issubdtype(np.asarray(value).dtype, np.integer) and (concrete >= 0).all()
    ):
        raise ValueError(f"`{name}` must be an int >= 0, got {value!r}.")

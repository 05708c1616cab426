r"""Lookahead (Zhang et al., 2019, "Lookahead Optimizer: k steps forward, 1 step back"): an
inner optimizer moves the fast weights for ``k`` steps, then slow weights move part of the way
toward them and the fast weights restart from the slow ones."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradtx import core, live, validation
from gradtx import tree as _tree
from gradtx.core import GradientTransformation, PyTree, flattenable, is_flattenable
from gradtx.transforms import counting


class LookaheadState(NamedTuple):
    r"""The state of :func:`lookahead`.

    Attributes:
        inner_state: the inner transformation's state (kept across synchronisations).
        slow: the slow weights :math:`\phi`, a tree shaped like the parameters, in their dtypes.
        fast_steps: the number of fast steps since the slow weights last moved, in
            ``[0, sync_period)``; an int32 scalar. It counts modulo ``sync_period`` so that it
            never overflows. None inside an optimizer, whose one step count gives it.
    """

    inner_state: PyTree
    slow: PyTree
    fast_steps: jax.Array | None


def lookahead(
    inner: GradientTransformation,
    sync_period: int,
    alpha: float | jax.Array = 0.5,
) -> GradientTransformation:
    r"""Lookahead around ``inner``: ``sync_period`` steps forward, one step back.

    The parameters the caller holds are the fast weights :math:`\theta`; the slow weights
    :math:`\phi` live in the state, starting at the parameters given to ``init``. With
    :math:`k` = ``sync_period``, :math:`\alpha` = ``alpha`` and :math:`d_t` the inner update at
    step :math:`t` (computed from the gradient at :math:`\theta_{t-1}`):

    .. math::
        \tilde\theta_t &= \theta_{t-1} + d_t \\
        \phi_t &= \begin{cases}
            \phi_{t-1} + \alpha\,(\tilde\theta_t - \phi_{t-1}) & k \mid t \\
            \phi_{t-1} & \text{otherwise}
        \end{cases} \\
        \theta_t &= \begin{cases} \phi_t & k \mid t \\ \tilde\theta_t & \text{otherwise}
        \end{cases}

    so the returned update is :math:`d_t` on ordinary steps and :math:`\phi_t - \theta_{t-1}`
    on every ``sync_period``-th step, which resets the fast weights to the new slow weights
    (``apply_updates`` gives :math:`\phi_t` up to the rounding of one subtraction and one
    addition). The inner state (momentum, Adam's moments) is kept across resets, as in the
    paper's experiments. ``alpha=1`` is the inner optimizer alone, ``alpha=0`` returns to the
    initial parameters every ``sync_period`` steps.

    ``update`` needs ``params`` (the fast weights). The slow weights are ``state.slow``; right
    after a synchronisation they equal the parameters, so a run whose length is a multiple of
    ``sync_period`` ends on them.

    Differences from ``optax.lookahead``: Optax's parameters are a ``LookaheadParams`` pair of
    fast and slow trees that the caller builds and unpacks (and its updates are such a pair
    too); here the parameters stay a plain tree, the slow weights are kept in the state, and the
    fast weights are reset through the returned update. Optax also calls the interpolation
    factor ``slow_step_size`` and has a ``reset_state`` option, which gradtx does not.

    Args:
        inner: the fast optimizer, any transformation.
        sync_period: :math:`k`, a positive Python int: the slow weights move every ``k`` steps.
        alpha: :math:`\alpha \in [0, 1]`, the slow weights' step toward the fast ones; a float
            or an array (it may be traced).

    Example:
        >>> import jax.numpy as jnp
        >>> import gradtx as gx
        >>> from gradtx.wrappers.lookahead import lookahead
        >>> opt = lookahead(gx.sgd(learning_rate=1.0), sync_period=2, alpha=0.5)
        >>> params = {"w": jnp.zeros(2)}
        >>> state = opt.init(params)
        >>> for _ in range(2):  # fast: 0 -> -1 -> -2, then slow: 0 + 0.5 * (-2 - 0)
        ...     updates, state = opt.update({"w": jnp.ones(2)}, state, params)
        ...     params = gx.apply_updates(params, updates)
        >>> print(params["w"], state.slow["w"])
        [-1. -1.] [-1. -1.]
    """
    core._check_transforms((inner,), "lookahead")
    period = _check_sync_period(sync_period)
    validation.check_interval("alpha", alpha, 0.0, 1.0)

    def init(params):
        # The slow weights are a copy of the parameters, in their dtypes.
        slow = jax.tree_util.tree_map(jnp.array, params)
        return LookaheadState(
            inner_state=inner.init(params),
            slow=slow,
            fast_steps=counting.init_count(),
        )

    inner_update = core.with_extra_args(inner.update)

    def update(updates, state, params=None, **extra_args):
        _tree.check_params(params, updates, name="lookahead")
        inner_updates, inner_state = inner_update(
            updates, state.inner_state, params, **extra_args
        )
        _tree.check_match(
            params, inner_updates, reference_name="params", other_name="inner updates"
        )
        _tree.check_match(params, state.slow, reference_name="params", other_name="slow weights")
        taken, own = counting.advance(state.fast_steps, "lookahead")
        position = (taken + 1) % period
        fast_steps = None if own is None else position
        sync = position == 0
        weight = live.read(alpha)

        def slow_step(p, d, s):
            fast = (p + d).astype(p.dtype)
            return jnp.where(sync, s + _tree.cast_like(weight, s) * (fast - s), s).astype(s.dtype)

        slow = jax.tree_util.tree_map(slow_step, params, inner_updates, state.slow)

        def out_step(p, d, s):
            # On a sync step the update carries the fast weights onto the new slow weights.
            return jnp.where(sync, (s - p).astype(d.dtype), d)

        out = jax.tree_util.tree_map(out_step, params, inner_updates, slow)
        return out, LookaheadState(inner_state=inner_state, slow=slow, fast_steps=fast_steps)

    return flattenable(GradientTransformation(init, update), is_flattenable(inner))


def _check_sync_period(sync_period) -> int:
    return validation.check_static_int("sync_period", sync_period)

r"""Reduce-on-plateau: lower the learning rates of an optimizer when a monitored metric stops
improving, step for step as ``torch.optim.lr_scheduler.ReduceLROnPlateau``."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradtx import core, validation
from gradtx.core import GradientTransformation, PyTree, flattenable, is_flattenable
from gradtx.hyperparams.inject import HyperparamsState

_NAME = "reduce_on_plateau"
_LR = "learning_rate"


class ReduceOnPlateauState(NamedTuple):
    """The state of :func:`reduce_on_plateau`, with the meaning of the attributes of torch's
    ``ReduceLROnPlateau`` of the same names.

    Attributes:
        inner_state: the inner optimizer's state; its ``learning_rate`` hyperparameters hold the
            lowered rates.
        best: the best metric seen so far, a float scalar: ``+inf`` (``mode="min"``) or
            ``-inf`` (``mode="max"``) before the first metric.
        num_bad_epochs: metrics in a row that were not better than ``best`` (reset by an
            improvement, by a reduction and during cooldown), an int32 scalar.
        cooldown_counter: metrics left in the cooldown after the latest reduction, an int32
            scalar; no bad epochs are counted while it is positive.
        last_epoch: the number of metrics received (steps with ``value``), an int32 scalar.
    """

    inner_state: PyTree
    best: jax.Array
    num_bad_epochs: jax.Array
    cooldown_counter: jax.Array
    last_epoch: jax.Array


def reduce_on_plateau(
    inner: GradientTransformation,
    mode: str = "min",
    factor: float = 0.1,
    patience: int = 10,
    threshold: float = 1e-4,
    threshold_mode: str = "rel",
    cooldown: int = 0,
    min_lr: float | Mapping[str, float] = 0.0,
    eps: float = 1e-8,
) -> GradientTransformation:
    r"""Runs ``inner`` and lowers its learning rates when the metric ``value`` plateaus.

    ``update(updates, state, params, value=metric)`` is torch's ``optimizer.step()`` followed by
    ``scheduler.step(metric)``: the inner optimizer steps with its current rates, then the
    metric :math:`m` updates the plateau state. An ``update`` without ``value`` (or with
    ``value=None``) runs only the inner optimizer and leaves the plateau state as it is, so the
    metric can be given once per epoch, as torch users call the scheduler. All extra arguments,
    ``value`` included, are passed on to ``inner``.

    With :math:`b` = ``best``, :math:`\tau` = ``threshold``, the metric is an improvement when

    .. math::
        \text{min, rel: } m < b\,(1-\tau) \qquad
        \text{min, abs: } m < b-\tau \qquad
        \text{max, rel: } m > b\,(1+\tau) \qquad
        \text{max, abs: } m > b+\tau

    An improvement sets :math:`b = m` and the bad-epoch count to 0; otherwise the count grows
    by one. During a cooldown (``cooldown_counter > 0``) the counter goes down by one and the
    bad-epoch count is reset to 0. When the count exceeds ``patience``, every learning rate
    :math:`\eta` of the inner optimizer (every ``learning_rate`` of a
    :class:`~gradtx.HyperparamsState` inside its state, the groups of
    :func:`gradtx.multi_transform` separately) becomes

    .. math::
        \eta' = \max(\eta \cdot \text{factor},\ \eta_{\min}),
        \quad\text{applied only if } \eta - \eta' > \text{eps},

    the cooldown starts (``cooldown_counter = cooldown``) and the count is reset to 0.
    :func:`gradtx.get_hyperparam` shows the lowered rate right after the step that lowered it,
    as torch's ``param_groups[i]["lr"]`` does. The decision is made with ``jnp.where``, so the
    update runs the same under ``jax.jit`` and eagerly; the metric may be traced.

    A learning rate that followed a schedule is lowered from the value it had at this step and
    then stays at the lowered constant, as after :func:`gradtx.set_hyperparam` (torch's
    scheduler overwrites the group's ``lr`` the same way). A rate whose reduction ``eps`` blocks
    keeps following its schedule.

    torch.optim: ``ReduceLROnPlateau(opt, mode, factor, patience, threshold, threshold_mode,
    cooldown, min_lr, eps)`` with ``opt.step(); scheduler.step(metric)``. A per-group ``min_lr``
    list becomes a dict keyed by the labels of :func:`gradtx.multi_transform`.

    Differences from ``optax.contrib.reduce_on_plateau``: Optax's version is a transformation
    chained after the optimizer that scales the updates (with ``rtol``/``atol``,
    ``accumulation_size`` and ``min_scale``); this one wraps the optimizer and lowers its stored
    learning rates, with torch's arguments and semantics.

    Args:
        inner: the optimizer whose learning rates are lowered; its state must hold at least one
            ``learning_rate`` hyperparameter (a gradtx optimizer, or several in
            :func:`gradtx.multi_transform`).
        mode: ``"min"`` (the metric should decrease) or ``"max"`` (it should increase).
        factor: the factor in :math:`[0, 1)` by which rates are multiplied.
        patience: the number of bad metrics tolerated before a reduction, an int >= 0.
        threshold: :math:`\tau \ge 0`, the margin that makes a metric an improvement.
        threshold_mode: ``"rel"`` or ``"abs"``, as in the formulas above.
        cooldown: the number of metrics after a reduction during which bad metrics are not
            counted, an int >= 0.
        min_lr: the lower bound of the rates, >= 0: a float for all of them, or a dict from the
            labels of the groups (the dict key above each optimizer's state, as in
            ``"label/learning_rate"``) to floats, one for every group.
        eps: the smallest reduction applied, >= 0.

    Example:
        >>> import jax.numpy as jnp
        >>> import gradtx as gx
        >>> from gradtx.wrappers.plateau import reduce_on_plateau
        >>> opt = reduce_on_plateau(gx.sgd(learning_rate=0.1), factor=0.5, patience=1)
        >>> params = {"w": jnp.zeros(2)}
        >>> state = opt.init(params)
        >>> for metric in [3.0, 2.0, 2.0, 2.0]:  # two metrics without improvement: halve
        ...     updates, state = opt.update({"w": jnp.ones(2)}, state, params, value=metric)
        ...     params = gx.apply_updates(params, updates)
        >>> print(gx.get_hyperparam(state, "learning_rate"))
        0.05
    """
    core._check_transforms((inner,), _NAME)
    if not isinstance(mode, str):
        raise TypeError(f"`mode` must be 'min' or 'max', got {mode!r}.")
    if mode not in ("min", "max"):
        raise ValueError(f"`mode` must be 'min' or 'max', got {mode!r}.")
    if not isinstance(threshold_mode, str):
        raise TypeError(f"`threshold_mode` must be 'rel' or 'abs', got {threshold_mode!r}.")
    if threshold_mode not in ("rel", "abs"):
        raise ValueError(f"`threshold_mode` must be 'rel' or 'abs', got {threshold_mode!r}.")
    factor = _static_float("factor", factor, high=1.0)
    threshold = _static_float("threshold", threshold)
    eps = _static_float("eps", eps)
    patience = validation.as_integral("patience", patience, 0)
    cooldown = validation.as_integral("cooldown", cooldown, 0)
    if isinstance(min_lr, Mapping):
        for label in min_lr:
            if not isinstance(label, str):
                raise TypeError(f"`min_lr` labels must be str, got {label!r}.")
        min_lrs = {k: _static_float(f"min_lr[{k!r}]", v) for k, v in min_lr.items()}
    else:
        min_lrs = _static_float("min_lr", min_lr)

    def is_better(current, best):
        # The same arithmetic as torch's _is_better, with the constant folded in Python.
        if mode == "min" and threshold_mode == "rel":
            return current < best * (1.0 - threshold)
        if mode == "min":
            return current < best - threshold
        if threshold_mode == "rel":
            return current > best * (threshold + 1.0)
        return current > best + threshold

    def init(params):
        inner_state = inner.init(params)
        _check_rates(inner_state, min_lrs)
        float_dtype = jnp.result_type(float)
        return ReduceOnPlateauState(
            inner_state=inner_state,
            best=jnp.asarray(math.inf if mode == "min" else -math.inf, dtype=float_dtype),
            num_bad_epochs=jnp.zeros((), jnp.int32),
            cooldown_counter=jnp.zeros((), jnp.int32),
            last_epoch=jnp.zeros((), jnp.int32),
        )

    inner_update = core.with_extra_args(inner.update)

    def update(updates, state, params=None, **extra_args):
        if not isinstance(state, ReduceOnPlateauState):
            raise ValueError(
                f"{_NAME}: expected a ReduceOnPlateauState, got {type(state).__name__}. Was "
                "the state made by this transformation's init?"
            )
        new_updates, inner_state = inner_update(updates, state.inner_state, params, **extra_args)
        value = extra_args.get("value")
        if value is None:
            return new_updates, state._replace(inner_state=inner_state)

        if np.size(value) != 1:
            raise ValueError(
                f"{_NAME}: `value` must be a scalar metric, got shape {np.shape(value)}."
            )
        current = jnp.reshape(jnp.asarray(value, dtype=state.best.dtype), ())
        better = is_better(current, state.best)
        best = jnp.where(better, current, state.best)
        bad = jnp.where(better, 0, state.num_bad_epochs + 1).astype(jnp.int32)
        in_cooldown = state.cooldown_counter > 0
        cooldown_counter = jnp.where(
            in_cooldown, state.cooldown_counter - 1, state.cooldown_counter
        ).astype(jnp.int32)
        bad = jnp.where(in_cooldown, 0, bad).astype(jnp.int32)
        reduce = bad > patience
        cooldown_counter = jnp.where(reduce, cooldown, cooldown_counter).astype(jnp.int32)
        bad = jnp.where(reduce, 0, bad).astype(jnp.int32)
        inner_state = _lower_rates(inner_state, min_lrs, factor, eps, reduce)
        return new_updates, ReduceOnPlateauState(
            inner_state=inner_state,
            best=best,
            num_bad_epochs=bad,
            cooldown_counter=cooldown_counter,
            last_epoch=(state.last_epoch + 1).astype(jnp.int32),
        )

    return flattenable(GradientTransformation(init, update), is_flattenable(inner))


def _static_float(name: str, value, high: float | None = None) -> float:
    """A non-negative Python float (below ``high`` when given), checked by name."""
    if high is None:
        validation.check_interval(name, value, 0.0, math.inf)
    else:
        validation.check_interval(name, value, 0.0, high, high_closed=False)
    if callable(value) or validation.is_traced(value) or np.size(value) != 1:
        raise TypeError(f"`{name}` must be a concrete number, got {value!r}.")
    return float(np.asarray(value).reshape(()))


def _is_hyperparams_state(x) -> bool:
    return isinstance(x, HyperparamsState)


def _labels(path) -> tuple[str, ...]:
    return tuple(str(k.key) for k in path if isinstance(k, jax.tree_util.DictKey))


def _map_rate_nodes(state, fn, labels=()):
    """``state`` with every HyperparamsState (nested ones too) passed through ``fn(node,
    labels)``, ``labels`` being the dict keys above it."""

    def visit(path, node):
        if not isinstance(node, HyperparamsState):
            return node
        node_labels = labels + _labels(path)
        node = node._replace(inner_state=_map_rate_nodes(node.inner_state, fn, node_labels))
        return fn(node, node_labels)

    return jax.tree_util.tree_map_with_path(visit, state, is_leaf=_is_hyperparams_state)


def _min_lr_for(min_lrs, labels) -> float:
    if not isinstance(min_lrs, dict):
        return min_lrs
    qualified = "/".join(labels)
    if qualified in min_lrs:
        return min_lrs[qualified]
    if labels and labels[-1] in min_lrs:
        return min_lrs[labels[-1]]
    where = repr(qualified) if labels else "the optimizer outside any labelled group"
    raise ValueError(
        f"{_NAME}: `min_lr` has no entry for the learning rate of {where}; labels given: "
        f"{', '.join(sorted(map(repr, min_lrs))) or 'none'}."
    )


def _check_rates(inner_state, min_lrs) -> None:
    """Every learning rate has its ``min_lr``, every ``min_lr`` label is used, and there is at
    least one learning rate to lower."""
    used: set[str] = set()
    found = []

    def check(node, labels):
        if _LR in node.hyperparams:
            found.append(labels)
            _min_lr_for(min_lrs, labels)
            if isinstance(min_lrs, dict):
                qualified = "/".join(labels)
                used.add(qualified if qualified in min_lrs else labels[-1])
        return node

    _map_rate_nodes(inner_state, check)
    if not found:
        raise ValueError(
            f"{_NAME}: the inner optimizer's state holds no live `learning_rate` to lower "
            "(wrap a gradtx optimizer, or several in multi_transform)."
        )
    if isinstance(min_lrs, dict):
        unused = sorted(set(min_lrs) - used)
        if unused:
            raise ValueError(
                f"{_NAME}: `min_lr` labels {', '.join(map(repr, unused))} match no learning "
                "rate of the inner optimizer."
            )


def _lower_rates(inner_state, min_lrs, factor, eps, reduce):
    def lower(node, labels):
        if _LR not in node.hyperparams:
            return node
        old = node.hyperparams[_LR]
        new = jnp.maximum(old * factor, _min_lr_for(min_lrs, labels)).astype(old.dtype)
        apply = reduce & (old - new > eps)
        scheduled = dict(node.scheduled)
        if _LR in scheduled:
            scheduled[_LR] = jnp.where(apply, False, scheduled[_LR])
        return node._replace(
            hyperparams={**node.hyperparams, _LR: jnp.where(apply, new, old)},
            scheduled=scheduled,
        )

    return _map_rate_nodes(inner_state, lower)

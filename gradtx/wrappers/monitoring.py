r"""Recording measurements of the updates in the state, without changing the updates: what
:func:`snapshot` records is the value of one function at the latest step, what :func:`monitor`
records may also be smoothed over steps (:func:`measure_with_ema`). Put them anywhere in a
chain to see the updates at that point; read the values back with :func:`gradtx.tree_get`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx import core, live, validation
from gradtx import tree as _tree
from gradtx.core import GradientTransformation, OptState, PyTree, Updates
from gradtx.transforms.counting import as_float, increment, zero_count

Measure = Callable[[Updates], PyTree]
"""``measure(updates) -> tree of arrays``, a pure function (it is traced under ``jit``)."""


class SnapshotState(NamedTuple):
    """The latest measurement.

    Attributes:
        measurement: ``{measure_name: measure(updates)}`` at the latest step
            (``measure(params)`` after ``init``).
    """

    measurement: dict[str, Any]


class MonitorState(NamedTuple):
    """The latest measurements and the measures' own states.

    Attributes:
        measurements: ``{name: measurement}`` at the latest step, one entry per measure, in
            the order given (after ``init``: zeros shaped like a first measurement).
        measure_states: the state of each measure's transformation, in the same order
            (:class:`gradtx.EmptyState` for a plain function).
    """

    measurements: dict[str, PyTree]
    measure_states: tuple[OptState, ...]


class MeasureWithEmaState(NamedTuple):
    """The moving average of a measurement.

    Attributes:
        count: the number of updates so far (int32, saturating).
        ema: the (not bias-corrected) moving average of the measurement, shaped like it.
    """

    count: jax.Array
    ema: PyTree


def _check_measure(name: str, measure) -> None:
    if not callable(measure) or isinstance(measure, GradientTransformation):
        raise TypeError(f"`{name}` must be a callable updates -> measurement, got {measure!r}.")


def snapshot(measure_name: str, measure: Measure) -> GradientTransformation:
    r"""Stores ``measure(updates)`` in the state under ``measure_name`` and passes the updates
    through unchanged:

    .. math:: s \leftarrow \{\text{name}: \mu(u)\}, \qquad u \leftarrow u

    Place it in a chain to record the updates as they are at that point (their norm before
    clipping, say). ``init`` stores ``measure(params)``, so the state has the same structure
    before and after the first step. Equal step for step to ``optax.snapshot`` (Optax 0.2.8),
    state included.

    Args:
        measure_name: the key of the measurement in the state (a string).
        measure: ``updates -> tree of arrays``.

    State: :class:`SnapshotState` ``(measurement)``.

    Example:
        >>> import gradtx as gx, jax.numpy as jnp
        >>> from gradtx.wrappers.monitoring import snapshot
        >>> opt = gx.chain(snapshot("g_max", jnp.max), gx.sgd(0.1))
        >>> params = jnp.zeros(2)
        >>> _, state = opt.update(jnp.array([1.0, 3.0]), opt.init(params), params)
        >>> float(state[0].measurement["g_max"])
        3.0
    """
    if not isinstance(measure_name, str):
        raise TypeError(f"`measure_name` must be a string, got {measure_name!r}.")
    _check_measure("measure", measure)

    def init(params):
        return SnapshotState(measurement={measure_name: measure(params)})

    def update(updates, state, params=None, **extra_args):
        del state, params, extra_args
        return updates, SnapshotState(measurement={measure_name: measure(updates)})

    return GradientTransformation(init, update)


def measure_with_ema(
    measure: Measure,
    decay: float | jax.Array,
    debias: bool = True,
    accumulator_dtype=None,
) -> GradientTransformation:
    r"""The exponential moving average of a measurement of the updates, for :func:`monitor`:

    .. math::
        m_t = \beta\, m_{t-1} + (1-\beta)\, \mu(u_t), \qquad
        \text{out}_t = \frac{m_t}{1-\beta^t}\ \text{(with debias; else } m_t\text{)}

    with :math:`m_0 = 0` shaped like ``measure(params)``. Its output is the measurement, not
    an update: use it as a measure of :func:`monitor`, which keeps the updates. Equal step for
    step to ``optax.measure_with_ema`` (Optax 0.2.8), outputs and the average :math:`m_t`
    included. One difference in the state's dtype: Optax's average starts in the
    measurement's dtype and becomes a float at the first step, so a boolean or integer
    measurement changes the state's dtype (which ``lax.scan`` refuses); here it is a float
    from the start (the default float, or ``accumulator_dtype``).

    Args:
        measure: ``updates -> tree of arrays``.
        decay: :math:`\beta \in [0, 1)`.
        debias: divide by :math:`1-\beta^t` (a bool).
        accumulator_dtype: the dtype :math:`m` is stored in (default: the measurement's, or
            the default float for a boolean or integer measurement).

    State: :class:`MeasureWithEmaState` ``(count, ema)``.
    """
    _check_measure("measure", measure)
    validation.check_unit_interval("decay", decay)
    validation.check_bool("debias", debias)
    dtype = validation.check_state_dtype("accumulator_dtype", accumulator_dtype)

    def zeros(x):
        x = jnp.asarray(x)
        stored = dtype or (x.dtype if jnp.issubdtype(x.dtype, jnp.inexact)
                           else jnp.result_type(float))
        return jnp.zeros(x.shape, stored)

    def init(params):
        return MeasureWithEmaState(
            count=zero_count(), ema=jax.tree_util.tree_map(zeros, measure(params))
        )

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        beta = live.read(decay)
        count = increment(state.count)

        def leaf(x, m):
            # Rounded as Optax rounds: the decayed average in its stored dtype, the new term
            # in the measurement's dtype (computed in the default float, then rounded to the
            # average's dtype, for a boolean or integer measurement), their sum in the wider
            # of the two; only the stored average is rounded back to its dtype.
            x = jnp.asarray(x)
            exact = not jnp.issubdtype(x.dtype, jnp.inexact)
            if exact:
                x = x.astype(jnp.result_type(float))
            term = _tree.cast_like(1 - jnp.asarray(beta), x) * x
            new = _tree.cast_like(beta, m) * m + (term.astype(m.dtype) if exact else term)
            stored = new.astype(m.dtype)
            if not debias:
                return new, stored
            t = as_float(count)
            correction = 1 - jnp.asarray(beta, t.dtype) ** t
            return new / correction.astype(new.dtype), stored

        pairs = jax.tree_util.tree_map(leaf, measure(updates), state.ema)
        out = jax.tree_util.tree_map(lambda _, pair: pair[0], state.ema, pairs)
        ema = jax.tree_util.tree_map(lambda _, pair: pair[1], state.ema, pairs)
        return out, MeasureWithEmaState(count=count, ema=ema)

    return GradientTransformation(init, update)


def monitor(measures: Mapping[str, GradientTransformation | Measure]) -> GradientTransformation:
    r"""Records several measurements of the updates in the state, and passes the updates
    through unchanged:

    .. math:: s_{\text{name}} \leftarrow \mu_{\text{name}}(u) \ \text{for each measure},
        \qquad u \leftarrow u

    Each measure is a plain function ``updates -> tree`` (as in :func:`snapshot`) or a
    transformation whose *output* is the measurement and whose state it keeps (such as
    :func:`measure_with_ema`); transformations get ``params`` and the extra arguments of
    ``update``. Equal step for step to ``optax.monitor`` (Optax 0.2.8), state included after
    the first step. One difference: after ``init`` Optax's ``measurements`` is an empty dict,
    which changes the state's structure at the first step (``lax.scan`` refuses that); here it
    holds zeros shaped like a first measurement (of the parameters, through a trace only).

    Args:
        measures: a dict ``{name: measure}``.

    State: :class:`MonitorState` ``(measurements, measure_states)``.

    Example:
        >>> import gradtx as gx, jax.numpy as jnp
        >>> from gradtx.wrappers.monitoring import measure_with_ema, monitor
        >>> tx = monitor({"max": jnp.max, "max_ema": measure_with_ema(jnp.max, decay=0.5)})
        >>> state = tx.init(jnp.zeros(2))
        >>> for g in (2.0, 4.0):
        ...     updates, state = tx.update(jnp.full(2, g), state)
        >>> float(state.measurements["max"]), round(float(state.measurements["max_ema"]), 4)
        (4.0, 3.3333)
    """
    if not isinstance(measures, Mapping) or not all(isinstance(k, str) for k in measures):
        raise TypeError(f"`measures` must be a dict of names to measures, got {measures!r}.")
    transforms = {}
    for name, measure in measures.items():
        if isinstance(measure, GradientTransformation):
            transforms[name] = measure
        elif callable(measure):
            transforms[name] = core.stateless(lambda u, p, m=measure: m(u))
        else:
            raise TypeError(
                f"`measures`: {name!r} must be a GradientTransformation or a callable, got "
                f"{measure!r}."
            )
    names = tuple(transforms)
    steps = {name: core.with_extra_args(t.update) for name, t in transforms.items()}

    def init(params):
        states = tuple(transforms[name].init(params) for name in names)

        def first(params, states):
            return {
                name: steps[name](params, s, params)[0]
                for name, s in zip(names, states, strict=True)
            }

        shapes = jax.eval_shape(first, params, states)
        measurements = jax.tree_util.tree_map(lambda x: jnp.zeros(x.shape, x.dtype), shapes)
        return MonitorState(measurements=measurements, measure_states=states)

    def update(updates, state, params=None, **extra_args):
        measurements, states = {}, []
        for name, s in zip(names, state.measure_states, strict=True):
            measurements[name], new = steps[name](updates, s, params, **extra_args)
            states.append(new)
        return updates, MonitorState(measurements=measurements, measure_states=tuple(states))

    return GradientTransformation(init, update)

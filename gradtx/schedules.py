r"""Learning-rate schedules: pure functions ``count -> value``.

``count`` is the number of updates already applied (0 at the first step), as kept by
:func:`gradtx.scale_by_learning_rate`. A schedule is accepted wherever a learning rate is, e.g.
``gx.sgd(learning_rate=gx.cosine_decay_schedule(0.1, 1000))``. Every schedule here is built from
``jax.numpy`` operations only, so it can be jitted, vmapped and differentiated, takes a Python
int or an integer array (of any shape: it is applied elementwise) and returns an array of the
default float dtype (float64 under ``jax_enable_x64``, float32 otherwise).

Arguments that count steps (``transition_steps``, ``boundaries``, ...) must be concrete
integers: Python or NumPy ints, or floats with a whole value (``10.0``, as configs often write
them), which are read as ints. Arguments that are values (``init_value``, ``decay_rate``, ...)
may be Python floats or JAX arrays, traced ones included; concrete values are validated when the
schedule is built.

The schedules that have a ``torch.optim.lr_scheduler`` counterpart give, at ``count = k``, the
learning rate torch uses for optimizer step ``k`` when ``scheduler.step()`` is called after each
``optimizer.step()``. ``LambdaLR(opt, lr_lambda)`` needs no function here: any callable
``lambda count: lr * lr_lambda(count)`` is a schedule (written with ``jax.numpy``, as ``count``
is an int32 array under ``jit``).
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from gradtx import validation
from gradtx.core import Schedule

# Counts are int32 (see transforms/counting.py): a step argument past this is never reached.
_MAX_COUNT = int(np.iinfo(np.int32).max)
_ANNEAL_STRATEGIES = ("cos", "linear")


# --------------------------------------------------------------------------------------------
# Argument checks


def _check_steps(name: str, value, minimum: int) -> int:
    """``value`` as a Python int in ``[minimum, 2**31 - 1]``: an int or a whole float (``10.0``).
    A wrong type raises ``TypeError`` naming ``name``, a fractional float or a value out of range
    ``ValueError``; step arguments must be concrete."""
    return validation.as_integral(name, value, minimum, _MAX_COUNT)


def _check_step_sequence(name: str, values, minimum: int) -> list[int]:
    """Each of ``values`` checked by :func:`_check_steps`, named ``name[i]``."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise TypeError(f"`{name}` must be a sequence of integers, got {values!r}.")
    return [_check_steps(f"{name}[{i}]", v, minimum) for i, v in enumerate(values)]


def _check_increasing(name: str, steps: Sequence[int], *, strict: bool) -> None:
    for earlier, later in zip(steps, steps[1:], strict=False):
        if later < earlier or (strict and later == earlier):
            order = "strictly increasing" if strict else "non-decreasing"
            raise ValueError(f"`{name}` must be {order}, got {list(steps)!r}.")


# --------------------------------------------------------------------------------------------
# Shared pieces: the interpolations of a clipped fraction that the schedules are built from.


def _as_float(x) -> jax.Array:
    """``x`` as an array of the default float dtype (float64 under x64, float32 otherwise)."""
    return jnp.asarray(x, dtype=float)


def _fraction(count, begin, length) -> jax.Array:
    r""":math:`\operatorname{clip}((c - b) / L, 0, 1)`: how far ``count`` is through a span."""
    return jnp.clip((_as_float(count) - begin) / length, 0.0, 1.0)


def _linear(start, end, fraction) -> jax.Array:
    return _as_float(start) + (_as_float(end) - _as_float(start)) * fraction


def _cosine(start, end, fraction) -> jax.Array:
    r"""Half a cosine from ``start`` (fraction 0) to ``end`` (fraction 1):
    :math:`e + (s - e)\,\tfrac12\,(1 + \cos \pi f)`."""
    start, end = _as_float(start), _as_float(end)
    return end + (start - end) * 0.5 * (1.0 + jnp.cos(jnp.pi * fraction))


# --------------------------------------------------------------------------------------------
# Schedules


def constant_schedule(value: float | jax.Array) -> Schedule:
    r"""The same value at every step: :math:`v(c) = v`.

    torch.optim.lr_scheduler: none needed (a fixed ``lr``).

    Example:
        >>> from gradtx.schedules import constant_schedule
        >>> float(constant_schedule(0.5)(10))
        0.5
    """
    validation.check_interval("value", value)

    def schedule(count):
        return jnp.broadcast_to(_as_float(value), jnp.shape(count))

    return schedule


def linear_schedule(
    init_value: float | jax.Array,
    end_value: float | jax.Array,
    transition_steps: int,
    transition_begin: int = 0,
) -> Schedule:
    r"""Linear interpolation from ``init_value`` to ``end_value``, held before and after:

    .. math::
        v(c) = v_0 + (v_1 - v_0)\,\operatorname{clip}\!\Big(\frac{c - b}{T}, 0, 1\Big)

    with :math:`b` = ``transition_begin`` and :math:`T` = ``transition_steps`` (at least 1).

    torch.optim.lr_scheduler: ``LinearLR(opt, start_factor, end_factor, total_iters)`` on a
    base rate ``lr`` is ``linear_schedule(lr * start_factor, lr * end_factor, total_iters)``.

    Example:
        >>> from gradtx.schedules import linear_schedule
        >>> warmup = linear_schedule(0.0, 1.0, transition_steps=4)
        >>> [float(warmup(c)) for c in range(6)]
        [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    """
    validation.check_interval("init_value", init_value)
    validation.check_interval("end_value", end_value)
    steps = _check_steps("transition_steps", transition_steps, 1)
    begin = _check_steps("transition_begin", transition_begin, 0)

    def schedule(count):
        return _linear(init_value, end_value, _fraction(count, begin, steps))

    return schedule


def polynomial_schedule(
    init_value: float | jax.Array,
    end_value: float | jax.Array,
    power: float | jax.Array,
    transition_steps: int,
    transition_begin: int = 0,
) -> Schedule:
    r"""Polynomial decay from ``init_value`` to ``end_value``, held before and after:

    .. math::
        v(c) = v_1 + (v_0 - v_1)\,\Big(1 - \operatorname{clip}\!\Big(\frac{c - b}{T}, 0, 1
        \Big)\Big)^{p}

    with :math:`p` = ``power`` (> 0), :math:`b` = ``transition_begin``, :math:`T` =
    ``transition_steps`` (at least 1). ``power=1`` is :func:`linear_schedule`.

    torch.optim.lr_scheduler: ``PolynomialLR(opt, total_iters, power)`` on a base rate ``lr``
    is ``polynomial_schedule(lr, 0.0, power, total_iters)``.

    Example:
        >>> from gradtx.schedules import polynomial_schedule
        >>> sched = polynomial_schedule(1.0, 0.0, power=2.0, transition_steps=4)
        >>> [float(sched(c)) for c in range(5)]
        [1.0, 0.5625, 0.25, 0.0625, 0.0]
    """
    validation.check_interval("init_value", init_value)
    validation.check_interval("end_value", end_value)
    validation.check_interval("power", power, 0.0, low_closed=False)
    steps = _check_steps("transition_steps", transition_steps, 1)
    begin = _check_steps("transition_begin", transition_begin, 0)

    def schedule(count):
        remaining = 1.0 - _fraction(count, begin, steps)
        return _as_float(end_value) + (
            _as_float(init_value) - _as_float(end_value)
        ) * remaining ** _as_float(power)

    return schedule


def exponential_decay(
    init_value: float | jax.Array,
    transition_steps: int,
    decay_rate: float | jax.Array,
    transition_begin: int = 0,
    staircase: bool = False,
    end_value: float | jax.Array | None = None,
) -> Schedule:
    r"""Exponential decay (or growth) by ``decay_rate`` every ``transition_steps`` steps:

    .. math::
        v(c) = v_0\, r^{\,e(c)}, \qquad
        e(c) = \frac{\max(c - b, 0)}{T} \ \ \text{or}\ \
        \Big\lfloor \frac{\max(c - b, 0)}{T} \Big\rfloor \ \text{(staircase)}

    with :math:`r` = ``decay_rate`` (:math:`\ge 0`), :math:`T` = ``transition_steps`` (at least
    1), :math:`b` = ``transition_begin``. With ``end_value`` the result is clipped to it: a floor
    when decaying (:math:`r < 1`), a ceiling when growing (:math:`r > 1`).

    torch.optim.lr_scheduler: ``ExponentialLR(opt, gamma)`` on a base rate ``lr`` is
    ``exponential_decay(lr, 1, gamma)``; ``StepLR`` is the staircase form (see
    :func:`step_schedule`). ``MultiplicativeLR(opt, lr_lambda)``, the rate multiplied by
    ``lr_lambda(k)`` at each step ``k``, is ``exponential_decay(lr, 1, gamma)`` for a constant
    factor ``gamma``; for a factor that changes with ``k``, write the product
    ``lr * lr_lambda(1) * ... * lr_lambda(c)`` in closed form as a callable of the count.

    Example:
        >>> from gradtx.schedules import exponential_decay
        >>> sched = exponential_decay(1.0, transition_steps=2, decay_rate=0.5, staircase=True)
        >>> [float(sched(c)) for c in range(5)]
        [1.0, 1.0, 0.5, 0.5, 0.25]
    """
    validation.check_interval("init_value", init_value)
    steps = _check_steps("transition_steps", transition_steps, 1)
    validation.check_non_negative("decay_rate", decay_rate)
    begin = _check_steps("transition_begin", transition_begin, 0)
    validation.check_bool("staircase", staircase)
    if end_value is not None:
        validation.check_interval("end_value", end_value)
        _check_clip_side(init_value, decay_rate, end_value)

    def schedule(count):
        exponent = jnp.maximum(_as_float(count) - begin, 0.0) / steps
        if staircase:
            exponent = jnp.floor(exponent)
        rate = _as_float(decay_rate)
        value = _as_float(init_value) * rate**exponent
        if end_value is None:
            return value
        end = _as_float(end_value)
        clipped = jnp.where(rate < 1, jnp.maximum(value, end), jnp.minimum(value, end))
        return jnp.where(rate == 1, value, clipped)

    return schedule


def _check_clip_side(init_value, decay_rate, end_value) -> None:
    """A floor above the start (or a ceiling below it) would flatten the whole schedule."""
    init, rate, end = (validation.concrete(v) for v in (init_value, decay_rate, end_value))
    if init is None or rate is None or end is None:
        return
    if np.any((rate < 1) & (end > init)) or np.any((rate > 1) & (end < init)):
        raise ValueError(
            f"`end_value` must lie on the side `init_value` moves towards (<= init_value when "
            f"decay_rate < 1, >= when > 1), got end_value={end_value!r}, "
            f"init_value={init_value!r}, decay_rate={decay_rate!r}."
        )


def cosine_decay_schedule(
    init_value: float | jax.Array, decay_steps: int, alpha: float | jax.Array = 0.0
) -> Schedule:
    r"""Cosine annealing from ``init_value`` to ``alpha * init_value`` over ``decay_steps``
    steps, then held (Loshchilov & Hutter, 2017, without restarts):

    .. math::
        v(c) = v_0\Big(\alpha + (1 - \alpha)\,\tfrac12\Big(1 + \cos\frac{\pi \min(c, D)}{D}
        \Big)\Big)

    with :math:`D` = ``decay_steps`` (at least 1) and :math:`\alpha \ge 0` the final fraction.

    torch.optim.lr_scheduler: ``CosineAnnealingLR(opt, T_max, eta_min)`` on a base rate ``lr``
    is ``cosine_decay_schedule(lr, T_max, alpha=eta_min / lr)`` for the first ``T_max`` steps
    and at ``T_max``. After ``T_max`` torch's rate rises again along the cosine (period
    ``2 T_max``) while this schedule stays at ``alpha * init_value``; for periodic restarts use
    :func:`cosine_warm_restarts_schedule`.

    Example:
        >>> from gradtx.schedules import cosine_decay_schedule
        >>> sched = cosine_decay_schedule(1.0, decay_steps=4, alpha=0.1)
        >>> [round(float(sched(c)), 6) for c in (0, 2, 4, 100)]
        [1.0, 0.55, 0.1, 0.1]
    """
    validation.check_interval("init_value", init_value)
    steps = _check_steps("decay_steps", decay_steps, 1)
    validation.check_non_negative("alpha", alpha)

    def schedule(count):
        final = _as_float(alpha) * _as_float(init_value)
        return _cosine(init_value, final, _fraction(count, 0, steps))

    return schedule


def warmup_cosine_decay_schedule(
    init_value: float | jax.Array,
    peak_value: float | jax.Array,
    warmup_steps: int,
    decay_steps: int,
    end_value: float | jax.Array = 0.0,
) -> Schedule:
    r"""A linear warm-up from ``init_value`` to ``peak_value``, then cosine annealing to
    ``end_value``:

    .. math::
        v(c) = \begin{cases}
            v_0 + (v_p - v_0)\,\dfrac{c}{W} & c < W \\[4pt]
            v_1 + (v_p - v_1)\,\tfrac12\Big(1 + \cos\dfrac{\pi \min(c - W,\, D - W)}{D - W}\Big)
                & c \ge W
        \end{cases}

    ``decay_steps`` (:math:`D`) is the length of the whole schedule, warm-up included, as in
    Optax: the cosine part lasts :math:`D - W` steps, so ``decay_steps`` must exceed
    ``warmup_steps`` (:math:`W \ge 0`). The value is ``peak_value`` at ``c = W`` and
    ``end_value`` from ``c = D`` on.

    torch.optim.lr_scheduler: no single class; ``SequentialLR`` of a ``LinearLR`` and a
    ``CosineAnnealingLR`` builds the same shape.

    Example:
        >>> from gradtx.schedules import warmup_cosine_decay_schedule
        >>> sched = warmup_cosine_decay_schedule(0.0, 1.0, warmup_steps=2, decay_steps=6)
        >>> [round(float(sched(c)), 6) for c in range(7)]
        [0.0, 0.5, 1.0, 0.853553, 0.5, 0.146447, 0.0]
    """
    validation.check_interval("init_value", init_value)
    validation.check_interval("peak_value", peak_value)
    validation.check_interval("end_value", end_value)
    warmup = _check_steps("warmup_steps", warmup_steps, 0)
    total = _check_steps("decay_steps", decay_steps, 0)
    if total <= warmup:
        raise ValueError(
            f"`decay_steps` counts the warm-up too, so it must exceed warmup_steps={warmup}, "
            f"got {decay_steps!r}."
        )
    def decay(count):
        return _cosine(peak_value, end_value, _fraction(count, 0, total - warmup))

    if warmup == 0:
        return decay
    return join_schedules([linear_schedule(init_value, peak_value, warmup), decay], [warmup])


def piecewise_constant_schedule(
    init_value: float | jax.Array, boundaries_and_scales: Mapping[int, float | jax.Array]
) -> Schedule:
    r"""``init_value`` multiplied by ``scale`` at each ``boundary`` (from that count on):

    .. math:: v(c) = v_0 \prod_{i:\ b_i \le c} s_i

    ``boundaries_and_scales`` maps each boundary :math:`b_i \ge 0` (an int) to its scale
    :math:`s_i \ge 0`.

    torch.optim.lr_scheduler: ``MultiStepLR`` is this with every scale equal to ``gamma`` (see
    :func:`multistep_schedule`).

    Example:
        >>> from gradtx.schedules import piecewise_constant_schedule
        >>> sched = piecewise_constant_schedule(1.0, {2: 0.5, 4: 0.25})
        >>> [float(sched(c)) for c in range(6)]
        [1.0, 1.0, 0.5, 0.5, 0.125, 0.125]
    """
    validation.check_interval("init_value", init_value)
    if not isinstance(boundaries_and_scales, Mapping):
        raise TypeError(
            "`boundaries_and_scales` must be a mapping {boundary: scale}, got "
            f"{type(boundaries_and_scales).__name__}."
        )
    items = []
    for boundary, scale in boundaries_and_scales.items():
        items.append((_check_steps("boundaries_and_scales", boundary, 0), scale))
        validation.check_non_negative(f"boundaries_and_scales[{boundary!r}]", scale)
    items.sort(key=lambda item: item[0])

    def schedule(count):
        value = jnp.broadcast_to(_as_float(init_value), jnp.shape(count))
        for boundary, scale in items:
            value = value * jnp.where(jnp.asarray(count) >= boundary, _as_float(scale), 1.0)
        return value

    return schedule


def join_schedules(schedules: Sequence[Schedule], boundaries: Sequence[int]) -> Schedule:
    r"""Runs ``schedules[0]``, then switches to the next schedule at each boundary; the
    schedule started at boundary :math:`b_i` sees the count relative to it:

    .. math::
        v(c) = \begin{cases}
            s_0(c) & c < b_1 \\
            s_i(c - b_i) & b_i \le c < b_{i+1}
        \end{cases}

    ``boundaries`` are :math:`n - 1` strictly increasing counts for :math:`n` schedules.

    torch.optim.lr_scheduler: ``SequentialLR(opt, schedulers, milestones)`` on a base rate
    ``lr`` is ``join_schedules(schedules, milestones)``, each schedule the gradtx form of its
    scheduler on the same ``lr``: at a milestone torch restarts the next scheduler at its step 0
    from the base rate, as this schedule restarts the count. (The one exception is a
    ``MultiplicativeLR`` after a milestone, which torch starts at the previous scheduler's last
    rate times ``lr_lambda(0)``.) ``ConstantLR(opt, factor, total_iters)`` is
    ``join_schedules([constant_schedule(lr * factor), constant_schedule(lr)], [total_iters])``
    for ``total_iters >= 1`` (with ``total_iters=0`` torch applies ``factor`` for ever).

    Example:
        >>> from gradtx.schedules import constant_schedule, join_schedules, linear_schedule
        >>> sched = join_schedules(
        ...     [linear_schedule(0.0, 1.0, 2), constant_schedule(0.5)], boundaries=[3]
        ... )
        >>> [float(sched(c)) for c in range(5)]
        [0.0, 0.5, 1.0, 0.5, 0.5]
    """
    schedules = list(schedules)
    if not schedules:
        raise ValueError("`schedules` must hold at least one schedule.")
    for i, s in enumerate(schedules):
        if not callable(s):
            raise TypeError(f"`schedules[{i}]` must be callable, got {type(s).__name__}.")
    starts = _check_step_sequence("boundaries", boundaries, 0)
    if len(starts) != len(schedules) - 1:
        raise ValueError(
            f"`boundaries` must hold one entry fewer than `schedules` ({len(schedules) - 1}), "
            f"got {len(starts)}."
        )
    _check_increasing("boundaries", starts, strict=True)

    def schedule(count):
        count = jnp.asarray(count)
        value = _as_float(schedules[0](count))
        for start, later in zip(starts, schedules[1:], strict=True):
            value = jnp.where(count >= start, _as_float(later(count - start)), value)
        return value

    return schedule


def multiply_schedules(schedules: Sequence[Schedule]) -> Schedule:
    r"""The product of schedules evaluated at the same count:

    .. math:: v(c) = \prod_i s_i(c)

    ``schedules`` holds at least one schedule. Give the first the base value and the others
    the base value 1 (so that they are factors), e.g. a warm-up factor on a step decay.

    torch.optim.lr_scheduler: ``ChainedScheduler([A, B, ...])`` on a base rate ``lr`` is
    ``multiply_schedules([a(lr), b(1.0), ...])``, where ``a(lr)`` is the gradtx form of ``A``
    with base rate ``lr`` and ``b(1.0)`` that of ``B`` with base rate 1. This holds for the
    schedulers that rescale the current rate at each step, whose rates multiply: ``ConstantLR``,
    ``LinearLR``, ``ExponentialLR``, ``StepLR``, ``MultiStepLR``, ``PolynomialLR``,
    ``MultiplicativeLR``, and ``CosineAnnealingLR`` with ``eta_min=0`` up to ``T_max``. The
    others (``LambdaLR``, ``CyclicLR``, ``OneCycleLR``, ``CosineAnnealingWarmRestarts``) set
    the rate from the base rate, overwriting what the schedulers before them did.

    Example:
        >>> from gradtx.schedules import linear_schedule, multiply_schedules, step_schedule
        >>> sched = multiply_schedules(
        ...     [step_schedule(1.0, step_size=2, gamma=0.5), linear_schedule(0.5, 1.0, 2)]
        ... )
        >>> [float(sched(c)) for c in range(5)]
        [0.5, 0.75, 0.5, 0.5, 0.25]
    """
    if isinstance(schedules, (str, bytes)) or not isinstance(schedules, Iterable):
        raise TypeError(f"`schedules` must be a sequence of schedules, got {schedules!r}.")
    schedules = list(schedules)
    if not schedules:
        raise ValueError("`schedules` must hold at least one schedule.")
    for i, s in enumerate(schedules):
        if not callable(s):
            raise TypeError(f"`schedules[{i}]` must be callable, got {type(s).__name__}.")

    def schedule(count):
        value = _as_float(schedules[0](count))
        for factor in schedules[1:]:
            value = value * _as_float(factor(count))
        return value

    return schedule


def step_schedule(
    init_value: float | jax.Array, step_size: int, gamma: float | jax.Array = 0.1
) -> Schedule:
    r"""``init_value`` multiplied by ``gamma`` every ``step_size`` steps:
    :math:`v(c) = v_0\,\gamma^{\lfloor c / S \rfloor}`.

    The staircase form of :func:`exponential_decay`, named after its torch equivalent.

    torch.optim.lr_scheduler: ``StepLR(opt, step_size, gamma)`` on a base rate ``lr`` is
    ``step_schedule(lr, step_size, gamma)``.

    Example:
        >>> from gradtx.schedules import step_schedule
        >>> sched = step_schedule(1.0, step_size=2, gamma=0.5)
        >>> [float(sched(c)) for c in range(5)]
        [1.0, 1.0, 0.5, 0.5, 0.25]
    """
    # Checked here so that errors name this function's arguments, not exponential_decay's.
    size = _check_steps("step_size", step_size, 1)
    validation.check_non_negative("gamma", gamma)
    return exponential_decay(init_value, size, gamma, staircase=True)


def multistep_schedule(
    init_value: float | jax.Array, milestones: Iterable[int], gamma: float | jax.Array = 0.1
) -> Schedule:
    r"""``init_value`` multiplied by ``gamma`` at each milestone:
    :math:`v(c) = v_0\,\gamma^{\#\{i:\ m_i \le c\}}`.

    ``milestones`` are non-decreasing counts; a milestone listed twice multiplies by
    :math:`\gamma^2`, as in torch. A thin wrapper over :func:`piecewise_constant_schedule`.

    torch.optim.lr_scheduler: ``MultiStepLR(opt, milestones, gamma)`` on a base rate ``lr`` is
    ``multistep_schedule(lr, milestones, gamma)``.

    Example:
        >>> from gradtx.schedules import multistep_schedule
        >>> sched = multistep_schedule(1.0, milestones=[1, 3], gamma=0.5)
        >>> [float(sched(c)) for c in range(4)]
        [1.0, 0.5, 0.5, 0.25]
    """
    steps = _check_step_sequence("milestones", milestones, 0)
    _check_increasing("milestones", steps, strict=False)
    validation.check_non_negative("gamma", gamma)
    repeats = collections.Counter(steps)
    return piecewise_constant_schedule(
        init_value, {m: gamma if n == 1 else gamma**n for m, n in repeats.items()}
    )


def _check_choice(name: str, value, choices: tuple[str, ...]) -> str:
    """``value``, one of the strings ``choices``: ``TypeError`` naming ``name`` for a non-string,
    ``ValueError`` for another string."""
    if not isinstance(value, str):
        raise TypeError(f"`{name}` must be one of {choices}, got {value!r}.")
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {choices}, got {value!r}.")
    return value


def _check_one_cycle(total_steps, pct_start, anneal_strategy, three_phase):
    """The phase arguments shared by the two 1cycle schedules: ``total_steps`` as an int and
    the interpolation ``anneal_strategy`` names."""
    total = _check_steps("total_steps", total_steps, 1)
    validation.check_interval("pct_start", pct_start, 0.0, 1.0, low_closed=False, high_closed=False)
    anneal = _check_choice("anneal_strategy", anneal_strategy, _ANNEAL_STRATEGIES)
    validation.check_bool("three_phase", three_phase)
    return total, _cosine if anneal == "cos" else _linear


def _one_cycle(count, total: int, pct_start, anneal, knots: Sequence) -> jax.Array:
    """torch's ``OneCycleLR`` phase table at ``count``: ``len(knots) - 1`` phases (two, or
    three for ``three_phase``), phase ``i`` going from ``knots[i]`` to ``knots[i + 1]``; the
    learning rate and the momentum are the same table with different knots."""
    pct = _as_float(pct_start)
    ends = [pct * total - 1, 2 * pct * total - 2][: len(knots) - 2] + [total - 1.0]
    c = jnp.clip(_as_float(count), 0.0, total - 1.0)
    # The last phase is the fallback; earlier ones take over where c <= their end.
    value = None
    for i in reversed(range(len(ends))):
        begin = ends[i - 1] if i else 0.0
        length = ends[i] - begin
        fraction = jnp.where(length > 0, (c - begin) / jnp.where(length > 0, length, 1), 0)
        phase_value = anneal(knots[i], knots[i + 1], fraction)
        value = phase_value if value is None else jnp.where(c <= ends[i], phase_value, value)
    return value


def one_cycle_schedule(
    max_value: float | jax.Array,
    total_steps: int,
    pct_start: float | jax.Array = 0.3,
    div_factor: float | jax.Array = 25.0,
    final_div_factor: float | jax.Array = 1e4,
    anneal_strategy: str = "cos",
    three_phase: bool = False,
) -> Schedule:
    r"""The 1cycle policy (Smith & Topin, 2017), equal to torch's ``OneCycleLR`` learning rate.

    With :math:`v_0 = v_{\max}/d` (``div_factor``), :math:`v_{\min} = v_0 / d_f`
    (``final_div_factor``), :math:`N` = ``total_steps`` and :math:`p` = ``pct_start``, the
    phases end at the (possibly fractional) counts

    .. math::
        e_1 = pN - 1, \qquad e_2 = 2pN - 2 \ \text{(three-phase only)}, \qquad e_{\rm last} = N-1

    and go :math:`v_0 \to v_{\max} \to v_{\min}` (two phases) or
    :math:`v_0 \to v_{\max} \to v_0 \to v_{\min}` (``three_phase=True``). A count :math:`c`
    belongs to the first phase whose end is :math:`\ge c` (the last phase otherwise); in a phase
    from :math:`e_{\rm prev}` (0 for the first) to :math:`e` going from :math:`a` to :math:`z`,

    .. math::
        f = \frac{c - e_{\rm prev}}{e - e_{\rm prev}}, \qquad
        v(c) = z + (a - z)\,\tfrac12(1 + \cos \pi f) \ \ \text{(cos)} \quad\text{or}\quad
        a + (z - a)\, f \ \ \text{(linear)}.

    From ``c = N - 1`` on the value is held (torch refuses to step past ``N``); it is
    :math:`v_{\min}` unless a three-phase cycle ends its second phase past ``N - 1``
    (:math:`2pN - 2 \ge N - 1`), which torch allows too and never reaches the third phase.
    In the one configuration where torch divides by zero (:math:`pN = 1`, a first phase of
    length zero), the value at ``c = 0`` is :math:`v_0`.

    torch.optim.lr_scheduler: ``OneCycleLR(opt, max_lr, total_steps, pct_start,
    anneal_strategy, div_factor=..., final_div_factor=..., three_phase=...)``. torch also cycles
    the momentum (or Adam's ``betas[0]``) by default (``cycle_momentum=True``); give the
    optimizer's ``momentum`` (or ``b1``) :func:`one_cycle_momentum_schedule` with the same
    ``total_steps``, ``pct_start``, ``anneal_strategy`` and ``three_phase`` to reproduce that,
    or pass ``cycle_momentum=False`` to ``OneCycleLR`` for a fixed momentum.

    Example:
        >>> from gradtx.schedules import one_cycle_schedule
        >>> sched = one_cycle_schedule(0.1, total_steps=100)
        >>> [round(float(sched(c)), 6) for c in (0, 29, 99)]
        [0.004, 0.1, 0.0]
    """
    validation.check_non_negative("max_value", max_value)
    total, anneal = _check_one_cycle(total_steps, pct_start, anneal_strategy, three_phase)
    validation.check_interval("div_factor", div_factor, 0.0, low_closed=False)
    validation.check_interval("final_div_factor", final_div_factor, 0.0, low_closed=False)

    def schedule(count):
        peak = _as_float(max_value)
        initial = peak / _as_float(div_factor)
        final = initial / _as_float(final_div_factor)
        knots = [initial, peak, initial, final] if three_phase else [initial, peak, final]
        return _one_cycle(count, total, pct_start, anneal, knots)

    return schedule


def one_cycle_momentum_schedule(
    total_steps: int,
    base_momentum: float | jax.Array = 0.85,
    max_momentum: float | jax.Array = 0.95,
    pct_start: float | jax.Array = 0.3,
    anneal_strategy: str = "cos",
    three_phase: bool = False,
) -> Schedule:
    r"""The momentum of the 1cycle policy, equal to the momentum (or Adam's ``betas[0]``)
    torch's ``OneCycleLR`` sets with its default ``cycle_momentum=True``.

    The same phases as :func:`one_cycle_schedule` (same :math:`N` = ``total_steps``,
    :math:`p` = ``pct_start``, interpolation and phase ends), going the other way: with
    :math:`m_b` = ``base_momentum`` and :math:`m_{\max}` = ``max_momentum``,
    :math:`m_{\max} \to m_b \to m_{\max}` (two phases) or
    :math:`m_{\max} \to m_b \to m_{\max} \to m_{\max}` (``three_phase=True``): the momentum is
    lowest where the learning rate peaks. Held from ``c = N - 1`` on, like the learning rate.

    torch.optim.lr_scheduler: ``OneCycleLR(opt, max_lr, total_steps, pct_start,
    anneal_strategy, base_momentum=..., max_momentum=..., three_phase=...)`` drives
    ``torch.optim.SGD`` like ``gx.sgd(learning_rate=one_cycle_schedule(max_lr, total_steps,
    ...), momentum=one_cycle_momentum_schedule(total_steps, base_momentum, max_momentum,
    ...))``, and ``torch.optim.Adam`` like ``gx.adam(..., b1=one_cycle_momentum_schedule(...))``
    (torch overwrites the optimizer's own momentum or ``betas[0]``).

    Example:
        >>> from gradtx.schedules import one_cycle_momentum_schedule
        >>> sched = one_cycle_momentum_schedule(total_steps=100)
        >>> [round(float(sched(c)), 6) for c in (0, 29, 99)]
        [0.95, 0.85, 0.95]
    """
    total, anneal = _check_one_cycle(total_steps, pct_start, anneal_strategy, three_phase)
    validation.check_interval("base_momentum", base_momentum)
    validation.check_interval("max_momentum", max_momentum)

    def schedule(count):
        high, low = _as_float(max_momentum), _as_float(base_momentum)
        knots = [high, low, high, high] if three_phase else [high, low, high]
        return _one_cycle(count, total, pct_start, anneal, knots)

    return schedule


def cosine_warm_restarts_schedule(
    init_value: float | jax.Array,
    first_period: int,
    period_multiplier: int = 1,
    min_value: float | jax.Array = 0.0,
) -> Schedule:
    r"""Cosine annealing with warm restarts (SGDR, Loshchilov & Hutter, 2017), equal to torch's
    ``CosineAnnealingWarmRestarts``.

    Cycle :math:`i = 0, 1, \dots` lasts :math:`T_i = T_0 m^i` steps and starts at
    :math:`S_i = \sum_{j<i} T_j` (:math:`= i T_0` for :math:`m = 1`,
    :math:`T_0 (m^i - 1)/(m - 1)` otherwise). At count :math:`c` in cycle :math:`i`
    (:math:`S_i \le c < S_{i+1}`),

    .. math::
        v(c) = v_{\min} + (v_0 - v_{\min})\,\tfrac12\Big(1 + \cos\frac{\pi (c - S_i)}{T_i}\Big)

    with :math:`T_0` = ``first_period`` (at least 1), :math:`m` = ``period_multiplier`` (an
    integer, at least 1, as in torch) and :math:`v_{\min}` = ``min_value``. The cycle index is
    exact at every int32 count: for :math:`m = 1` it is :math:`\lfloor c / T_0 \rfloor`; for
    :math:`m > 1` it is the number of restart counts :math:`S_1, S_2, \dots \le c` (at most 31
    fit in int32), compared as integers, where a floating-point
    :math:`\lfloor \log_m(1 + c (m-1)/T_0) \rfloor` can land one cycle short at a restart.

    torch.optim.lr_scheduler: ``CosineAnnealingWarmRestarts(opt, T_0, T_mult, eta_min)`` on a
    base rate ``lr`` is ``cosine_warm_restarts_schedule(lr, T_0, T_mult, eta_min)`` when
    ``scheduler.step()`` is called once per optimizer step.

    Example:
        >>> from gradtx.schedules import cosine_warm_restarts_schedule
        >>> sched = cosine_warm_restarts_schedule(1.0, first_period=2, period_multiplier=2)
        >>> [round(float(sched(c)), 6) for c in range(7)]
        [1.0, 0.5, 1.0, 0.853553, 0.5, 0.146447, 1.0]
    """
    validation.check_interval("init_value", init_value)
    period = _check_steps("first_period", first_period, 1)
    multiplier = _check_steps("period_multiplier", period_multiplier, 1)
    validation.check_interval("min_value", min_value)

    if multiplier == 1:

        def position(count):
            return count % period, period

    else:
        # Restart counts S_1, S_2, ... up to the largest int32 count, and every cycle's length.
        restarts, lengths, start, length = [], [period], period, period
        while start <= _MAX_COUNT:
            restarts.append(start)
            length *= multiplier
            lengths.append(length)
            start += length
        restarts_array = np.asarray(restarts, dtype=np.int64)
        lengths_array = np.asarray(lengths, dtype=np.float64)
        starts_array = np.asarray([0, *restarts], dtype=np.int64)

        def position(count):
            cycle = jnp.sum(count[..., None] >= restarts_array, axis=-1)
            return count - jnp.asarray(starts_array)[cycle], jnp.asarray(lengths_array)[cycle]

    def schedule(count):
        count = jnp.maximum(jnp.asarray(count), 0)
        in_cycle, length = position(count)
        return _cosine(init_value, min_value, _as_float(in_cycle) / _as_float(length))

    return schedule


_CYCLIC_MODES = ("triangular", "triangular2", "exp_range")
_SCALE_MODES = ("cycle", "iterations")


def cyclic_schedule(
    init_value: float | jax.Array,
    peak_value: float | jax.Array,
    step_size_up: int = 2000,
    step_size_down: int | None = None,
    mode: str = "triangular",
    gamma: float | jax.Array = 1.0,
    scale_fn: Schedule | None = None,
    scale_mode: str = "cycle",
) -> Schedule:
    r"""Cyclical learning rates (Smith, 2017), equal to torch's ``CyclicLR`` learning rate
    and, with ``init_value > peak_value``, to its momentum.

    Each cycle lasts :math:`T = U + D` steps, :math:`U` = ``step_size_up`` (at least 1) going
    from ``init_value`` towards ``peak_value`` and :math:`D` = ``step_size_down`` (``None``:
    :math:`U`; 0 gives a sawtooth) coming back. With :math:`r = U / T`, at count :math:`c`

    .. math::
        k = \Big\lfloor 1 + \frac{c}{T} \Big\rfloor, \quad
        x = 1 + \frac{c}{T} - k, \quad
        h = \begin{cases} x / r & x \le r \\ (x - 1)/(r - 1) & x > r \end{cases}, \quad
        v(c) = v_0 + (v_p - v_0)\, h\, \sigma

    where :math:`k \ge 1` is the cycle, :math:`h \in [0, 1]` the triangle and :math:`\sigma`
    scales the amplitude: 1 (``mode="triangular"``), :math:`2^{-(k-1)}` (``"triangular2"``,
    halved each cycle), :math:`\gamma^{c}` (``"exp_range"``, :math:`\gamma` = ``gamma``
    :math:`\ge 0`), or ``scale_fn(k)`` (``scale_mode="cycle"``) or ``scale_fn(c)``
    (``"iterations"``) when ``scale_fn`` is given, which then overrides ``mode``. ``scale_fn``
    is called with a float array (the cycle :math:`k` or the count :math:`c`) and must be
    written with ``jax.numpy``; ``scale_mode`` is used with ``scale_fn`` only, as in torch.

    torch.optim.lr_scheduler: ``CyclicLR(opt, base_lr, max_lr, step_size_up, step_size_down,
    mode, gamma, scale_fn, scale_mode)`` sets the learning rate
    ``cyclic_schedule(base_lr, max_lr, step_size_up, step_size_down, mode, gamma, scale_fn,
    scale_mode)``; the optimizer's own ``lr`` is not used. With its default
    ``cycle_momentum=True`` it also sets the momentum (or Adam's ``betas[0]``) to
    ``cyclic_schedule(max_momentum, base_momentum, ...)`` with the same cycle arguments: the
    momentum starts at ``max_momentum`` and is lowest where the rate peaks. Give that schedule
    as the optimizer's ``momentum`` (or ``b1``).

    Example:
        >>> from gradtx.schedules import cyclic_schedule
        >>> lr = cyclic_schedule(0.1, 1.0, step_size_up=2)
        >>> [round(float(lr(c)), 6) for c in range(6)]
        [0.1, 0.55, 1.0, 0.55, 0.1, 0.55]
        >>> momentum = cyclic_schedule(0.9, 0.8, step_size_up=2)
        >>> [round(float(momentum(c)), 6) for c in range(6)]
        [0.9, 0.85, 0.8, 0.85, 0.9, 0.85]
    """
    validation.check_interval("init_value", init_value)
    validation.check_interval("peak_value", peak_value)
    up = _check_steps("step_size_up", step_size_up, 1)
    down = up if step_size_down is None else _check_steps("step_size_down", step_size_down, 0)
    _check_choice("mode", mode, _CYCLIC_MODES)
    validation.check_non_negative("gamma", gamma)
    if scale_fn is not None and not callable(scale_fn):
        raise TypeError(f"`scale_fn` must be callable or None, got {type(scale_fn).__name__}.")
    _check_choice("scale_mode", scale_mode, _SCALE_MODES)
    total = float(up + down)
    ratio = up / total  # a Python float, as in torch

    def schedule(count):
        c = _as_float(count)
        position = c / total
        cycle = jnp.floor(1.0 + position)
        x = 1.0 + position - cycle
        if down == 0:  # x < 1 = ratio: always rising
            height = x / ratio
        else:
            height = jnp.where(x <= ratio, x / ratio, (x - 1.0) / (ratio - 1.0))
        if scale_fn is not None:
            scale = _as_float(scale_fn(cycle if scale_mode == "cycle" else c))
        elif mode == "triangular":
            scale = 1.0
        elif mode == "triangular2":
            scale = 1.0 / 2.0 ** (cycle - 1.0)
        else:
            scale = _as_float(gamma) ** c
        init = _as_float(init_value)
        return init + (_as_float(peak_value) - init) * height * scale

    return schedule


__all__ = [
    "constant_schedule",
    "cosine_decay_schedule",
    "cosine_warm_restarts_schedule",
    "cyclic_schedule",
    "exponential_decay",
    "join_schedules",
    "linear_schedule",
    "multiply_schedules",
    "multistep_schedule",
    "one_cycle_momentum_schedule",
    "one_cycle_schedule",
    "piecewise_constant_schedule",
    "polynomial_schedule",
    "step_schedule",
    "warmup_cosine_decay_schedule",
]

"""Checks of hyperparameters. Concrete values are checked when a transformation is built;
traced values (inside jit, vmap or grad) cannot be inspected and are accepted as they are."""

from __future__ import annotations

import math
import operator

import jax
import jax.numpy as jnp
import numpy as np


def is_traced(value) -> bool:
    return isinstance(value, jax.core.Tracer)


def concrete(value) -> np.ndarray | None:
    """The value as a NumPy array, or None when it is traced or a schedule."""
    if callable(value) or is_traced(value):
        return None
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"expected a number or an array, got {value!r}") from err


_NOT_NUMBERS = (bool, np.bool_, str, bytes, list, tuple, dict, set)


def check_interval(
    name: str,
    value,
    low: float = -math.inf,
    high: float = math.inf,
    *,
    low_closed: bool = True,
    high_closed: bool = True,
) -> None:
    """Raises ``ValueError`` naming ``name`` when a concrete ``value`` is NaN or outside the
    interval, and ``TypeError`` naming it when ``value`` is not a number, an array or a schedule
    (a string, a list, ``None``, a bool). Traced values and schedules pass."""
    if value is None or isinstance(value, _NOT_NUMBERS):
        # NumPy would read "0.1" and [0.1] as numbers and True as 1: refuse them by name here
        # rather than fail later inside a step (or silently run with them).
        raise TypeError(f"`{name}` must be a number, an array or a schedule, got {value!r}.")
    try:
        arr = concrete(value)
    except TypeError as err:
        raise TypeError(f"`{name}`: {err}") from None
    if arr is None:
        return
    lo_ok = arr >= low if low_closed else arr > low
    hi_ok = arr <= high if high_closed else arr < high
    if np.any(np.isnan(arr)) or not np.all(lo_ok & hi_ok):
        interval = (
            f"{'[' if low_closed else '('}{low:g}, {high:g}{']' if high_closed else ')'}"
        )
        raise ValueError(f"`{name}` must be in {interval}, got {value!r}.")


def check_non_negative(name: str, value) -> None:
    check_interval(name, value, 0.0, math.inf)


def check_unit_interval(name: str, value) -> None:
    """0 <= value < 1: the range of every decay rate and beta."""
    check_interval(name, value, 0.0, 1.0, high_closed=False)


def is_static_zero(value) -> bool:
    """True only for a Python number equal to zero.

    Optimizers leave out a step (weight decay, momentum) when its hyperparameter is a Python
    zero. An array, even a concrete zero, keeps the step, so the state has the same structure
    whatever value the array later takes (under jit, vmap, or when it is changed mid-run).
    """
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == 0


# What each hyperparameter name means across gradtx, for checks of values set mid-run.
_UNIT_INTERVAL_NAMES = frozenset({"b1", "b2", "decay", "rho"})
_CLOSED_UNIT_NAMES = frozenset({"dampening"})


def check_hyperparameter(name: str, value) -> None:
    """Checks a value for the hyperparameter called ``name``: betas and decay rates in [0, 1),
    dampening-like fractions in [0, 1], everything else finite and >= 0."""
    if name in _UNIT_INTERVAL_NAMES:
        check_unit_interval(name, value)
    elif name in _CLOSED_UNIT_NAMES:
        check_interval(name, value, 0.0, 1.0)
    else:
        check_non_negative(name, value)


def check_bool(name: str, value) -> None:
    """Raises ``TypeError`` naming ``name`` unless ``value`` is a Python bool (a static switch)."""
    if not isinstance(value, bool):
        raise TypeError(f"`{name}` must be a bool, got {value!r}.")


def check_state_dtype(name: str, dtype):
    """A state dtype argument (``mu_dtype``, ``nu_dtype``, ...): None (the parameters' dtype)
    or a floating-point dtype, returned as a NumPy dtype."""
    if dtype is None:
        return None
    try:
        resolved = jnp.dtype(dtype)
    except TypeError as err:
        raise TypeError(f"`{name}` must be a floating-point dtype or None, got {dtype!r}.") from err
    if not jnp.issubdtype(resolved, jnp.floating):
        raise TypeError(f"`{name}` must be a floating-point dtype or None, got {dtype!r}.")
    return resolved


def check_static_int(name: str, value, minimum: int = 1) -> int:
    """A structural integer argument (a period, a block size): a Python or NumPy int, not a
    bool, at least ``minimum``. Returns it as an int; raises ``ValueError`` naming ``name``."""
    if not isinstance(value, bool):
        try:
            number = operator.index(value)
        except TypeError:
            number = None
        if number is not None and number >= minimum:
            return number
    wanted = "a positive int" if minimum == 1 else f"an int >= {minimum}"
    raise ValueError(f"`{name}` must be {wanted}, got {value!r}.")

"""Checks of hyperparameters. Concrete values are checked when a transformation is built;
traced values (inside jit, vmap or grad) cannot be inspected and are accepted as they are."""

from __future__ import annotations

import math
import operator

import jax
import jax.numpy as jnp
import numpy as np

from gradtx import live


def is_traced(value) -> bool:
    return isinstance(value, jax.core.Tracer)


def concrete(value) -> np.ndarray | None:
    """The value as a NumPy array, or None when it is traced, a schedule or a live
    hyperparameter (its value is checked where it is set)."""
    if callable(value) or is_traced(value) or live.is_live(value):
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


def check_bool(name: str, value) -> None:
    """Raises ``TypeError`` naming ``name`` unless ``value`` is a Python bool (a static switch)."""
    if not isinstance(value, bool):
        raise TypeError(f"`{name}` must be a bool, got {value!r}.")


def check_choice(name: str, value, choices: tuple) -> str | None:
    """One of the strings (or None) in ``choices``: ``ValueError`` naming ``name`` for another
    string, ``TypeError`` for anything else."""
    allowed = ", ".join("None" if c is None else repr(c) for c in choices)
    if value is not None and not isinstance(value, str):
        raise TypeError(f"`{name}` must be one of {allowed}, got {value!r}.")
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {allowed}, got {value!r}.")
    return value


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


def _float_scalar(value) -> float | None:
    """``value`` as a Python float when it is a floating-point scalar (a Python or NumPy float,
    or a 0-d float array), None otherwise."""
    if isinstance(value, (float, np.floating)):
        return float(value)
    if (
        isinstance(value, (np.ndarray, jax.Array))
        and value.ndim == 0
        and jnp.issubdtype(value.dtype, jnp.floating)
    ):
        return float(value)
    return None


def _integral(name: str, value) -> int:
    """``value`` as an int, whatever its range; the type and whole-number checks of
    :func:`as_integral`."""
    if is_traced(value):
        # A count fixes the structure of what is built (a period, a block, a schedule's
        # segments), so it must be known before tracing.
        raise TypeError(f"`{name}` must be a concrete integer, got a traced value {value!r}.")
    if not isinstance(value, (bool, np.bool_)):  # True would otherwise pass as 1
        try:
            return operator.index(value)
        except TypeError:
            pass
        number = _float_scalar(value)
        if number is not None:
            if not number.is_integer():  # also False for NaN and infinities
                raise ValueError(f"`{name}` must be a whole number, got {value!r}.")
            return int(number)
    raise TypeError(f"`{name}` must be an integer or a whole float, got {value!r}.")


def as_integral(name: str, value, minimum: int, maximum: int | None = None) -> int:
    """``value``, a count or a size, as a Python int in ``[minimum, maximum]``.

    Accepts a Python or NumPy int and a float with a whole value (``10.0``,
    ``np.float64(10.0)``, a 0-d array), since configs often write step counts as floats. Raises
    ``TypeError`` naming ``name`` for any other type (a bool, a string, None, a list, a traced
    value) and ``ValueError`` naming it for a fractional, NaN or infinite float, or a value out
    of range.
    """
    number = _integral(name, value)
    if number < minimum or (maximum is not None and number > maximum):
        if maximum is not None:
            wanted = f"an integer in [{minimum}, {maximum}]"
        else:
            wanted = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"`{name}` must be {wanted}, got {value!r}.")
    return number


def check_static_int(name: str, value, minimum: int = 1) -> int:
    """A structural integer argument (a period, a block size): an int or a whole float, at
    least ``minimum``, returned as an int. A wrong type (a bool, a string, None) raises
    ``TypeError`` naming ``name``; a fractional float or a value below ``minimum`` raises
    ``ValueError`` naming it (see :func:`as_integral`)."""
    return as_integral(name, value, minimum)

"""One declaration per hyperparameter: its kind, its valid range, and whether it lives in the
state. The constructor's checks, :func:`gradtx.set_hyperparam`, the registry's invalid values,
the bad-input tests and the docs' argument tables all read the same declarations.

An optimizer declares each of its arguments with :func:`gradtx.inject_hyperparams`::

    @inject_hyperparams(declarations=dict(learning_rate=NON_NEGATIVE, b1=UNIT_INTERVAL,
                                          amsgrad=SWITCH, mu_dtype=STATE_DTYPE))
    def my_adam(learning_rate=1e-3, b1=0.9, amsgrad=False, mu_dtype=None): ...

Rules that tie several arguments together (Nesterov momentum needs ``momentum > 0``) are
functions of all the values, given with ``rules=``; they see NumPy arrays for concrete numbers
and ``None`` where a value is unknown (traced, or a schedule).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

from gradtx import validation

Rule = Callable[[Mapping[str, Any]], None]

_NUMBER, _SWITCH, _DTYPE, _INT = "number", "switch", "dtype", "int"


@dataclasses.dataclass(frozen=True)
class Hyperparam:
    """What one argument of an optimizer accepts.

    Attributes:
        kind: ``"number"`` (a float, an array or a schedule; lives in the state), ``"switch"``
            (a Python bool, fixed at build time), ``"dtype"`` (a state dtype or None, fixed)
            or ``"int"`` (a structural int such as a period, fixed).
        low, high, low_closed, high_closed: the valid interval of a number.
        minimum: the least valid value of an int.
        omit_when_zero: a Python 0 leaves the argument's step out of the optimizer (as torch
            skips a zero weight decay); it is then readable but cannot be set.
        none_allowed: None is a valid value (it selects a documented default behaviour).
    """

    kind: str = _NUMBER
    low: float = -math.inf
    high: float = math.inf
    low_closed: bool = True
    high_closed: bool = True
    minimum: int = 1
    omit_when_zero: bool = False
    none_allowed: bool = False

    @property
    def live(self) -> bool:
        """Whether the value lives in the optimizer's state (numbers and schedules do)."""
        return self.kind == _NUMBER

    def omitted_when_zero(self) -> Hyperparam:
        return dataclasses.replace(self, omit_when_zero=True)

    def or_none(self) -> Hyperparam:
        return dataclasses.replace(self, none_allowed=True)

    def check(self, name: str, value):
        """Raises (ValueError for a bad value, TypeError for a wrong type, both naming
        ``name``) or returns the value in its normal form (a dtype as a NumPy dtype)."""
        if value is None and self.none_allowed:
            return None
        if self.kind == _NUMBER:
            validation.check_interval(
                name, value, self.low, self.high,
                low_closed=self.low_closed, high_closed=self.high_closed,
            )
            return value
        if self.kind == _SWITCH:
            validation.check_bool(name, value)
            return value
        if self.kind == _DTYPE:
            return validation.check_state_dtype(name, value)
        return validation.check_static_int(name, value, self.minimum)

    def describe(self) -> str:
        """The accepted values in words, for the docs' argument tables."""
        extra = " or None" if self.none_allowed else ""
        if self.kind == _SWITCH:
            return "bool" + extra
        if self.kind == _DTYPE:
            return "floating-point dtype or None"
        if self.kind == _INT:
            return f"int >= {self.minimum}" + extra
        if self.high == math.inf:
            bound = f"> {self.low:g}" if not self.low_closed else f">= {self.low:g}"
        else:
            bound = (
                f"{'[' if self.low_closed else '('}{self.low:g}, {self.high:g}"
                f"{']' if self.high_closed else ')'}"
            )
        return f"number {bound}, array or schedule" + extra

    def invalid_values(self) -> tuple:
        """Values of the right type that the check refuses: just outside each end of the
        interval, and NaN."""
        if self.kind == _INT:
            return (self.minimum - 1,)
        if self.kind != _NUMBER:
            return ()
        out = []
        if self.low > -math.inf:
            out.append(self.low - 0.5 if self.low_closed else self.low)
        if self.high < math.inf:
            out.append(self.high + 0.5 if self.high_closed else self.high)
        return (*out, math.nan)


NON_NEGATIVE = Hyperparam(low=0.0)
"""A number >= 0: learning rates, eps, weight decay, momentum."""
POSITIVE = Hyperparam(low=0.0, low_closed=False)
UNIT_INTERVAL = Hyperparam(low=0.0, high=1.0, high_closed=False)
"""A number in [0, 1): betas and decay rates."""
CLOSED_UNIT_INTERVAL = Hyperparam(low=0.0, high=1.0)
"""A number in [0, 1]: dampening, interpolation weights."""
OPEN_UNIT_INTERVAL = Hyperparam(low=0.0, high=1.0, low_closed=False, high_closed=False)
"""A number in (0, 1): Schedule-Free's interpolation weight, which it divides by."""
WEIGHT_DECAY = NON_NEGATIVE.omitted_when_zero()
@dataclasses.dataclass(frozen=True)
class FixedArgument(Hyperparam):
    """A fixed (build-time) argument that a function checks: a tuple of coefficients, a choice
    among strings, a bounded int (``kind="int"``). Like every declaration it refuses values by
    name (``check``, which returns the value in normal form), describes itself for the docs
    (``describe``) and lists values it refuses (``invalid_values``)."""

    kind: str = "fixed"
    checker: Callable[[str, Any], Any] | None = None
    text: str = ""
    refused: tuple = ()

    def check(self, name: str, value):
        return self.checker(name, value)

    def describe(self) -> str:
        return self.text

    def invalid_values(self) -> tuple:
        return self.refused


SWITCH = Hyperparam(kind=_SWITCH)
STATE_DTYPE = Hyperparam(kind=_DTYPE)
PERIOD = Hyperparam(kind=_INT)


def check_all(
    declarations: Mapping[str, Hyperparam], rules, values: Mapping[str, Any]
) -> dict[str, Any]:
    """Checks every value against its declaration, then the rules; returns the values in
    normal form."""
    checked = {name: declarations[name].check(name, v) for name, v in values.items()}
    check_rules(rules, checked)
    return checked


def check_rules(rules, values: Mapping[str, Any]) -> None:
    known = {name: _known(v) for name, v in values.items()}
    for rule in rules:
        rule(known)


def _known(value):
    """A concrete number as a NumPy array; None for what cannot be inspected (traced values,
    schedules, placeholders); other values (bools, dtypes) as they are."""
    if value is None or isinstance(value, bool) or callable(value):
        return None if callable(value) else value
    try:
        return validation.concrete(value)
    except TypeError:
        return value

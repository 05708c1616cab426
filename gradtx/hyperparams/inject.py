"""Optimizers whose numeric hyperparameters live in their state.

:func:`inject_hyperparams` wraps a factory of transformations. Calling the wrapped factory
checks every argument once, then builds the factory's chain once, with each live
hyperparameter replaced by a placeholder (see :mod:`gradtx.live`). ``init`` stores
the values in a :class:`HyperparamsState`; ``update`` evaluates the schedules at the step count
and runs the chain in a step scope that gives the placeholders this step's values. Nothing is
rebuilt and nothing is validated per step, jitted or eager.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradtx import live, validation
from gradtx.core import (
    GradientTransformation,
    OptState,
    flattenable,
    is_flattenable,
    with_extra_args,
)
from gradtx.hyperparams import declarations as decl
from gradtx.transforms.counting import increment, zero_count


class HyperparamsState(NamedTuple):
    """The state of an optimizer with live hyperparameters.

    Each optimizer (and each set of its fixed arguments, such as ``amsgrad``) has its own
    subclass, so that a state handed to another optimizer is refused by name.

    Attributes:
        count: steps taken so far, the optimizer's one step count: schedules, bias
            corrections and every other step-dependent transform read it.
        hyperparams: the live values: before the first step, the values the first step will
            use; afterwards, the values used at the latest step.
        scheduled: for each hyperparameter given as a schedule, True while it follows the
            schedule (``set_hyperparam`` turns it into a constant).
        fixed: hyperparameters given as a Python 0 that removed a step from the optimizer
            (weight decay, momentum, ...): readable, not settable.
        inner_state: the state of the optimizer's chain.
    """

    count: jax.Array
    hyperparams: dict[str, jax.Array]
    scheduled: dict[str, jax.Array]
    fixed: dict[str, jax.Array]
    inner_state: OptState

    def __reduce__(self):
        # An optimizer's state class is made at run time: pickle (and copy) it as the
        # optimizer's factory, found by name, and the fixed arguments that select the class.
        injection = getattr(type(self), "_injection", None)
        if injection is None:
            return (type(self), tuple(self))
        return (_restore_state, (injection.importable(), dict(type(self)._static), tuple(self)))


def _restore_state(factory, static, fields) -> HyperparamsState:
    return factory._injection.state_class(static)(*fields)


# (raw factory, fixed arguments) -> its state class, shared by every optimizer built alike, also
# through a second inject_hyperparams, so that their states are interchangeable.
_STATE_CLASSES: dict[Any, type] = {}


class _Injection:
    """What one wrapped factory knows: its raw factory, signature and declarations."""

    def __init__(self, factory, static_args, omit_when_zero, declarations, rules, dtype):
        self.factory = factory
        self.name = getattr(factory, "__name__", "optimizer")
        self.signature = inspect.signature(factory)
        self.static_names = frozenset(static_args)
        self.zero_names = frozenset(omit_when_zero)
        self.declarations = dict(declarations) if declarations is not None else None
        self.rules = tuple(rules)
        self.dtype = dtype
        self._check_names()

    def _check_names(self) -> None:
        params = self.signature.parameters
        named = {
            "static_args": self.static_names,
            "omit_when_zero": self.zero_names,
            "declarations": set(self.declarations or ()),
        }
        for what, names in named.items():
            unknown = sorted(set(names) - set(params))
            if unknown:
                raise ValueError(
                    f"inject_hyperparams({self.name}): {what} names {unknown}, which "
                    f"{self.name} does not take; its arguments are {list(params)}."
                )
        for p in params.values():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise TypeError(
                    f"inject_hyperparams({self.name}): *args and **kwargs cannot be injected; "
                    "name every argument."
                )
        if self.declarations is not None:
            missing = sorted(set(params) - set(self.declarations))
            if missing:
                raise ValueError(
                    f"inject_hyperparams({self.name}): declarations must cover every argument; "
                    f"{missing} are not declared."
                )

    # -- construction --------------------------------------------------------------------------

    def check(self, values: dict[str, Any]) -> dict[str, Any]:
        """The constructor's rules, applied to all the values; returns them in normal form."""
        if self.declarations is not None:
            return decl.check_all(self.declarations, self.rules, values)
        values = {
            k: validation.check_state_dtype(k, v) if k.endswith("_dtype") else v
            for k, v in values.items()
        }
        self.factory(**values)  # an undeclared factory's own checks are its rules
        return values

    def classify(self, values: Mapping[str, Any]):
        """Splits the values into static, fixed (Python zeros that leave a step out), live
        numbers and schedules."""
        static, fixed, numbers, schedules = {}, {}, {}, {}
        for name, value in values.items():
            d = self.declarations[name] if self.declarations is not None else None
            if d is not None:
                is_live, omit = d.live and value is not None, d.omit_when_zero
            else:
                is_live = name not in self.static_names and not name.endswith("_dtype") and (
                    callable(value) or _is_number(value)
                )
                omit = name in self.zero_names
            if name in self.static_names or not is_live:
                static[name] = value
            elif (omit or name in self.zero_names) and validation.is_static_zero(value):
                fixed[name] = value
            elif callable(value):
                schedules[name] = value
            else:
                numbers[name] = value
        return static, fixed, numbers, schedules

    def state_class(self, static: Mapping[str, Any]) -> type:
        """The HyperparamsState subclass of this factory with these fixed arguments."""
        try:
            key = (self.factory, tuple(sorted((k, _hashable(v)) for k, v in static.items())))
            hash(key)
        except TypeError:  # an unhashable fixed argument: a class for this optimizer alone
            key = None
        cls = _STATE_CLASSES.get(key) if key is not None else None
        if cls is None:
            title = "".join(part.capitalize() for part in self.name.split("_"))
            cls = type(f"{title}State", (HyperparamsState,), {"__slots__": ()})
            cls.__module__ = getattr(self.factory, "__module__", __name__)
            cls._injection, cls._static = self, dict(static)
            if key is not None:
                _STATE_CLASSES[key] = cls
        return cls

    def importable(self):
        """The wrapped factory as its module names it, for pickling a state by reference."""
        module = sys.modules.get(getattr(self.factory, "__module__", ""), None)
        found = getattr(module, getattr(self.factory, "__qualname__", ""), None)
        if getattr(getattr(found, "_injection", None), "factory", None) is not self.factory:
            raise TypeError(
                f"cannot pickle a state of {self.name}: its factory is not importable as "
                f"{getattr(self.factory, '__module__', '?')}.{self.name}."
            )
        return found

    def describe(self, static: Mapping[str, Any]) -> str:
        """``name(arg=value, ...)`` with the fixed arguments that differ from the defaults."""
        params = self.signature.parameters
        shown = [
            f"{k}={v!r}"
            for k, v in static.items()
            if k in params and not _same(params[k].default, v)
        ]
        return f"{self.name}({', '.join(shown)})"

    # -- changes mid-run -----------------------------------------------------------------------

    def check_new_value(self, node: HyperparamsState, name: str, value) -> None:
        """``set_hyperparam``'s check: the constructor's rules, with the other arguments at the
        values the state holds now."""
        static = type(node)._static
        current = {k: _as_python(v) for k, v in node.hyperparams.items()}
        zeros = {k: 0.0 for k in node.fixed}
        values = {**static, **zeros, **current, name: value}
        if self.declarations is not None:
            self.declarations[name].check(name, value)
            decl.check_rules(self.rules, values)
        else:
            self.factory(**values)


def _same(a, b) -> bool:
    try:
        return a is b or bool(a == b)
    except (TypeError, ValueError):  # arrays compare elementwise
        return False


def _hashable(value):
    if isinstance(value, (list, dict, set, np.ndarray, jax.Array)):
        raise TypeError("unhashable")
    return value


def _as_python(value):
    """A stored value for the constructor's checks: a NumPy copy when concrete."""
    return value if validation.is_traced(value) else np.asarray(value)


def _as_array(value, dtype=None) -> jax.Array:
    """A stored hyperparameter: an array of ``dtype``, or of the value's own dtype (a Python
    number: the default float). Never weakly typed, so the state's types are the same before
    and after a step and a compiled step is not compiled again."""
    if dtype is None:
        is_array = isinstance(value, (jax.Array, np.ndarray)) or validation.is_traced(value)
        dtype = jnp.result_type(value) if is_array else jnp.result_type(float)
    return jnp.asarray(value, dtype=dtype)


def _is_number(value) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, (int, float, np.ndarray, jax.Array)) or validation.is_traced(value)


def inject_hyperparams(
    factory: Callable[..., GradientTransformation] | None = None,
    *,
    static_args: Iterable[str] = (),
    omit_when_zero: Iterable[str] = (),
    hyperparam_dtype: Any = None,
    declarations: Mapping[str, decl.Hyperparam] | None = None,
    rules: Iterable[decl.Rule] = (),
):
    """Wraps a factory of transformations so that its numeric arguments live in the state.

    The wrapped factory takes the same arguments. Numbers and arrays become live
    hyperparameters, callables become schedules (``count -> value``, evaluated at the number
    of steps already taken) whose current value is live, and everything else (bools, strings,
    ``None``, dtypes, and the names in ``static_args``) stays fixed at build time. A name in
    ``omit_when_zero`` given as a Python 0 stays a Python 0 (the factory leaves its step out, as
    torch skips a zero weight decay); it can be read but not set. ``hyperparam_dtype`` is the
    dtype of the stored values (default: the values' own, a Python float as the default float).

    ``declarations`` maps every argument to a :class:`~gradtx.Hyperparam`; the
    optimizers of gradtx are declared, so their checks, :func:`set_hyperparam` and their docs
    read one description. Without declarations, the factory itself is called once with the
    given values to check them, and again by :func:`set_hyperparam` with the new value.

    The wrapped factory builds its chain once: its ``update`` neither rebuilds it nor checks
    anything in Python, jitted or eager. Wrapping an already wrapped factory (Optax's idiom
    ``inject_hyperparams(adamw)(learning_rate=schedule)``) gives the same optimizer, with
    the extra ``static_args`` and ``omit_when_zero``: the values you pass drive the step.

    Example:
        >>> import gradtx as gx, jax.numpy as jnp
        >>> scale = gx.inject_hyperparams(gx.scale)(step_size=2.0)
        >>> state = scale.init({"w": jnp.zeros(2)})
        >>> state = gx.set_hyperparam(state, "step_size", 0.5)
        >>> scale.update({"w": jnp.asarray([2.0, -4.0])}, state)[0]["w"].tolist()
        [1.0, -2.0]
    """
    options = dict(
        static_args=tuple(static_args), omit_when_zero=tuple(omit_when_zero),
        hyperparam_dtype=hyperparam_dtype, declarations=declarations, rules=tuple(rules),
    )
    if factory is None:
        return functools.partial(inject_hyperparams, **options)
    base = getattr(factory, "_injection", None)
    if isinstance(base, _Injection):
        # Already injected: one injection over the same raw factory, so that the values given
        # here are the ones the step uses (a second layer would freeze the inner one's).
        injection = _Injection(
            base.factory,
            base.static_names | set(options["static_args"]),
            base.zero_names | set(options["omit_when_zero"]),
            declarations if declarations is not None else base.declarations,
            base.rules + options["rules"],
            hyperparam_dtype if hyperparam_dtype is not None else base.dtype,
        )
    else:
        injection = _Injection(
            factory, options["static_args"], options["omit_when_zero"], declarations,
            options["rules"], hyperparam_dtype,
        )

    @functools.wraps(injection.factory)
    def build(*args, **kwargs) -> GradientTransformation:
        bound = injection.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        values = injection.check(dict(bound.arguments))
        static, fixed, numbers, schedules = injection.classify(values)
        return _build(injection, static, fixed, numbers, schedules)

    build._injection = injection
    return build


class _Chain:
    """The factory's transformation, built once with placeholders; or, for a factory whose
    transforms cannot read placeholders (not gradtx's, e.g. an Optax factory), built again
    with the current values at every ``init`` and ``update``, as Optax's own injection does."""

    def __init__(self, injection: _Injection, static, fixed, live_names, owner):
        self.injection, self.static, self.fixed = injection, static, fixed
        placeholders = {name: live.Live(name, owner) for name in live_names}
        self.built = None
        try:
            self.built = injection.factory(**static, **fixed, **placeholders)
        except live.UnreadPlaceholder:
            if injection.declarations is not None:
                raise  # a declared optimizer is gradtx's own: its transforms read placeholders

    def run(self, method: str, values, *args, **kwargs):
        if self.built is not None:
            try:
                return _call(self.built, method, *args, **kwargs)
            except live.UnreadPlaceholder:
                if self.injection.declarations is not None:
                    raise
                self.built = None  # a foreign transform: rebuild per call from now on
        rebuilt = self.injection.factory(**self.static, **self.fixed, **values)
        return _call(rebuilt, method, *args, **kwargs)


def _call(transform: GradientTransformation, method: str, *args, **kwargs):
    if method == "init":
        return transform.init(*args)
    return with_extra_args(transform.update)(*args, **kwargs)


def _build(injection: _Injection, static, fixed, numbers, schedules) -> GradientTransformation:
    owner = object()  # identifies this optimizer's placeholders
    inner = _Chain(injection, static, fixed, (*numbers, *schedules), owner)
    state_class = injection.state_class(static)
    dtype = injection.dtype

    def scheduled_value(name, count, like=None):
        value = schedules[name](count)
        return _as_array(value, dtype if like is None else like.dtype)

    def init(params):
        count = zero_count()
        values = {k: _as_array(v, dtype) for k, v in numbers.items()}
        values.update({k: scheduled_value(k, count) for k in schedules})
        with live.step_scope(owner, values, count):
            inner_state = inner.run("init", values, params)
        return state_class(
            count=count,
            hyperparams=values,
            scheduled={k: jnp.asarray(True) for k in schedules},
            fixed={k: _as_array(v, dtype) for k, v in fixed.items()},
            inner_state=inner_state,
        )

    def step(updates, state, params=None, **extra_args):
        if type(state) is not state_class:
            raise ValueError(_wrong_state_message(injection, static, state))
        values = dict(state.hyperparams)
        for name in schedules:
            old = values[name]
            values[name] = jnp.where(
                state.scheduled[name], scheduled_value(name, state.count, old), old
            )
        with live.step_scope(owner, values, state.count):
            updates, inner_state = inner.run(
                "update", values, updates, state.inner_state, params, **extra_args
            )
        return updates, state._replace(
            count=increment(state.count), hyperparams=values, inner_state=inner_state
        )

    # Read by the torch state_dict bridge: a schedule's value at a given count.
    step._gradtx_schedules = schedules
    # Flattenable when the transformation the factory builds is (multi_tensor reads this).
    elementwise = inner.built is not None and is_flattenable(inner.built)
    if injection.declarations is None:
        return flattenable(GradientTransformation(init, step), elementwise)
    # A declared optimizer is a chain of gradtx's own pure transforms, so its eager update can
    # run as one cached compiled program: op by op, every step would dispatch dozens of small
    # kernels. Under jit, vmap or grad, and under jax.disable_jit(), it runs as written.
    compiled = jax.jit(step)

    def update(updates, state, params=None, **extra_args):
        if _can_compile(updates, state, params, extra_args):
            return compiled(updates, state, params, **extra_args)
        return step(updates, state, params, **extra_args)

    update._gradtx_schedules = schedules
    return flattenable(GradientTransformation(init, update), elementwise)


def _can_compile(*trees) -> bool:
    """Whether an eager call can go through the compiled update: every leaf is a concrete
    array or number (no tracer from an enclosing transformation, no callable extra
    argument)."""
    for leaf in jax.tree_util.tree_leaves(trees):
        if isinstance(leaf, jax.core.Tracer) or not isinstance(
            leaf, (jax.Array, np.ndarray, np.generic, int, float, complex, bool)
        ):
            return False
    return True


def _wrong_state_message(injection: _Injection, static, state) -> str:
    this = injection.describe(static)
    if isinstance(state, HyperparamsState) and hasattr(type(state), "_injection"):
        other = type(state)._injection.describe(type(state)._static)
        made_by = f"a state made by {other}"
    else:
        made_by = f"a {type(state).__name__}"
    return (
        f"{this}.update got {made_by}, not one made by {this}.init. Pass the state that this "
        "optimizer's init returned (and its later updates)."
    )

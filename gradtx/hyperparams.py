"""Live hyperparameters: values kept in the optimizer state, readable and changeable mid-run.

Every gradtx optimizer keeps its numeric hyperparameters in its state (a
:class:`HyperparamsState`), so

* ``get_hyperparam(state, "learning_rate")`` reads the value used at the latest step (for a
  schedule, the schedule's value at that step), for logging;
* ``set_hyperparam(state, "learning_rate", 1e-4)`` returns a state in which the new value takes
  effect at the next step. The state keeps its shapes and dtypes, so a jitted training step that
  takes the state as an argument is not recompiled (what torch users do with
  ``optimizer.param_groups[0]["lr"] = ...``).

Names may be qualified by the labels of the dicts that hold the optimizer's state (for example
the groups of :func:`gradtx.multi_transform`): ``"decay/learning_rate"``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradtx import validation
from gradtx.core import GradientTransformation, OptState
from gradtx.transforms.counting import increment, zero_count


class HyperparamsState(NamedTuple):
    """The state of an optimizer with live hyperparameters.

    Attributes:
        count: updates applied so far; schedules are evaluated at it.
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


def _as_array(value) -> jax.Array:
    if isinstance(value, (jax.Array, np.ndarray)) or validation.is_traced(value):
        return jnp.asarray(value)
    return jnp.asarray(value, dtype=jnp.result_type(float))


def _is_number(value) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, (int, float, np.ndarray, jax.Array)) or validation.is_traced(value)


def inject_hyperparams(
    factory: Callable[..., GradientTransformation] | None = None,
    *,
    static_args: Iterable[str] = (),
    omit_when_zero: Iterable[str] = (),
):
    """Wraps a factory of transformations so that its numeric arguments live in the state.

    The wrapped factory takes the same arguments. Numbers and arrays become live
    hyperparameters, callables become schedules (``count -> value``) whose current value is
    live, and everything else (bools, strings, ``None``, and the names in ``static_args``) stays
    fixed at build time, as do arguments whose name ends in ``_dtype`` (``mu_dtype``: a dtype
    such as ``jnp.bfloat16`` is callable, but it is not a schedule). A name in
    ``omit_when_zero`` given as a Python 0 stays a Python 0 (the
    factory leaves its step out, as torch skips a zero weight decay); it can be read but not
    set.

    Every gradtx optimizer is already wrapped; use this for your own factories.

    Example:
        >>> import gradtx as gx, jax.numpy as jnp
        >>> scale = gx.inject_hyperparams(gx.scale)(step_size=2.0)
        >>> state = scale.init({"w": jnp.zeros(2)})
        >>> state = gx.set_hyperparam(state, "step_size", 0.5)
        >>> scale.update({"w": jnp.asarray([2.0, -4.0])}, state)[0]["w"].tolist()
        [1.0, -2.0]
    """
    if factory is None:
        return functools.partial(
            inject_hyperparams, static_args=static_args, omit_when_zero=omit_when_zero
        )
    static_names = frozenset(static_args)
    zero_names = frozenset(omit_when_zero)
    signature = inspect.signature(factory)

    @functools.wraps(factory)
    def build(*args, **kwargs) -> GradientTransformation:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        values = dict(bound.arguments)
        for name, value in values.items():
            if name.endswith("_dtype"):
                values[name] = validation.check_state_dtype(name, value)
        factory(**values)  # validates concrete values now, with the caller's argument names

        static, fixed, live, schedules = {}, {}, {}, {}
        for name, value in values.items():
            if name in static_names or name.endswith("_dtype"):
                static[name] = value
            elif name in zero_names and validation.is_static_zero(value):
                fixed[name] = value
            elif callable(value):
                schedules[name] = value
            elif _is_number(value):
                live[name] = value
            else:
                static[name] = value

        def make(hyperparams):
            return factory(**static, **fixed, **hyperparams)

        def scheduled_value(name, count, like):
            return jnp.asarray(schedules[name](count), dtype=like.dtype)

        def init(params):
            count = zero_count()
            hyperparams = {k: _as_array(v) for k, v in live.items()}
            for name, schedule in schedules.items():
                hyperparams[name] = _as_array(schedule(count))
            return HyperparamsState(
                count=count,
                hyperparams=hyperparams,
                scheduled={k: jnp.asarray(True) for k in schedules},
                fixed={k: _as_array(v) for k, v in fixed.items()},
                inner_state=make(hyperparams).init(params),
            )

        def update(updates, state, params=None):
            if not isinstance(state, HyperparamsState):
                raise ValueError(
                    f"{factory.__name__}: expected a HyperparamsState, got "
                    f"{type(state).__name__}. Was the state made by this optimizer's init?"
                )
            hyperparams = dict(state.hyperparams)
            for name in schedules:
                old = hyperparams[name]
                hyperparams[name] = jnp.where(
                    state.scheduled[name], scheduled_value(name, state.count, old), old
                )
            updates, inner_state = make(hyperparams).update(updates, state.inner_state, params)
            return updates, state._replace(
                count=increment(state.count), hyperparams=hyperparams, inner_state=inner_state
            )

        return GradientTransformation(init, update)

    return build


def _is_hyperparams_state(x) -> bool:
    return isinstance(x, HyperparamsState)


def _labels(path) -> list[str]:
    return [str(k.key) for k in path if isinstance(k, jax.tree_util.DictKey)]


def _entries(state: OptState) -> list[tuple[tuple, str, str, bool]]:
    """(path, qualified name, bare name, fixed) for every hyperparameter in ``state``."""
    found = []
    flat, _ = jax.tree_util.tree_flatten_with_path(state, is_leaf=_is_hyperparams_state)
    for path, node in flat:
        if not isinstance(node, HyperparamsState):
            continue
        prefix = "/".join(_labels(path))
        for names, fixed in ((node.hyperparams, False), (node.fixed, True)):
            for name in names:
                qualified = f"{prefix}/{name}" if prefix else name
                found.append((path, qualified, name, fixed))
    return found


def _find(state: OptState, name: str):
    if not isinstance(name, str):
        raise TypeError(f"hyperparameter name must be a str, got {name!r}")
    entries = _entries(state)
    matches = [e for e in entries if e[1] == name or e[1].endswith("/" + name)]
    known = ", ".join(sorted({e[1] for e in entries})) or "none (no HyperparamsState found)"
    if not matches:
        raise KeyError(f"no hyperparameter {name!r} in this state; known: {known}")
    if len(matches) > 1:
        options = ", ".join(m[1] for m in matches)
        raise KeyError(f"hyperparameter {name!r} is ambiguous; qualify it as one of: {options}")
    return matches[0]


def _node_at(state, path) -> HyperparamsState:
    flat, _ = jax.tree_util.tree_flatten_with_path(state, is_leaf=_is_hyperparams_state)
    return next(node for p, node in flat if p == path)


def get_hyperparam(state: OptState, name: str) -> jax.Array:
    """The current value of hyperparameter ``name`` in an optimizer state.

    For a schedule this is the value used at the latest step (before any step, the value the
    first step will use). ``name`` may be qualified by dict labels (``"decay/learning_rate"``).
    Raises ``KeyError`` listing the known names when ``name`` is unknown or ambiguous.
    """
    path, _, bare, fixed = _find(state, name)
    node = _node_at(state, path)
    return (node.fixed if fixed else node.hyperparams)[bare]


def set_hyperparam(state: OptState, name: str, value) -> OptState:
    """A copy of ``state`` in which hyperparameter ``name`` is ``value`` from the next step on.

    The value keeps the stored dtype and shape, so a jitted step taking the state as an
    argument does not recompile. A hyperparameter that followed a schedule becomes this
    constant. Concrete values are checked (``ValueError`` naming the hyperparameter).
    """
    path, qualified, bare, fixed = _find(state, name)
    if fixed:
        raise ValueError(
            f"{qualified!r} was built as a Python 0, which leaves its step out of the "
            "optimizer, so it cannot be changed; build the optimizer with a non-zero value or "
            f"with {bare}=jnp.asarray(0.0) to change it later."
        )
    validation.check_hyperparameter(bare, value)
    node = _node_at(state, path)
    old = node.hyperparams[bare]
    new_value = jnp.broadcast_to(jnp.asarray(value, dtype=old.dtype), old.shape)
    new_node = node._replace(
        hyperparams={**node.hyperparams, bare: new_value},
        scheduled={
            k: (jnp.zeros_like(v) if k == bare else v) for k, v in node.scheduled.items()
        },
    )

    def replace(p, x):
        return new_node if p == path else x

    return jax.tree_util.tree_map_with_path(replace, state, is_leaf=_is_hyperparams_state)

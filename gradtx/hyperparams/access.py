"""Reading and changing live hyperparameters in an optimizer state.

* ``get_hyperparam(state, "learning_rate")`` reads the value used at the latest step (for a
  schedule, the schedule's value at that step), for logging;
* ``set_hyperparam(state, "learning_rate", 1e-4)`` returns a state in which the new value takes
  effect at the next step, after the checks of the constructor that owns the value. The state
  keeps its shapes and dtypes, so a jitted training step that takes the state as an argument is
  not recompiled (what torch users do with ``optimizer.param_groups[0]["lr"] = ...``).

Names may be qualified by the labels of the dicts that hold the optimizer's state (for example
the groups of :func:`gradtx.multi_transform`): ``"decay/learning_rate"``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gradtx import validation
from gradtx.core import OptState
from gradtx.hyperparams.inject import HyperparamsState


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
    constant. A concrete value is checked by the rules of the constructor that built the
    optimizer, with its other arguments at their current values (``ValueError`` naming the
    hyperparameter).
    """
    path, qualified, bare, fixed = _find(state, name)
    if fixed:
        raise ValueError(
            f"{qualified!r} was built as a Python 0, which leaves its step out of the "
            "optimizer, so it cannot be changed; build the optimizer with a non-zero value or "
            f"with {bare}=jnp.asarray(0.0) to change it later."
        )
    node = _node_at(state, path)
    injection = getattr(type(node), "_injection", None)
    validation.check_interval(bare, value)  # a number or an array (None would make it fixed)
    if injection is not None:  # else a HyperparamsState built by hand: only the type is known
        injection.check_new_value(node, bare, value)
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

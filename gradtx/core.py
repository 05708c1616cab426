"""The core protocol: a gradient transformation is a pure ``(init, update)`` pair.

Two combinators compose transformations:

* :func:`chain` runs transformations in series; each sees the previous one's output.
* :func:`parallel` runs transformations side by side on the *same* input and merges their outputs
  leaf by leaf. Adam needs this: both of its moments are statistics of the raw gradient, so a
  series of transforms cannot express it, but ``parallel(first_moment, second_moment, combine=...)``
  can, while each moment, its bias correction and its running max stay separate, reusable pieces.
"""

from __future__ import annotations

import collections
import inspect
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp

from gradtx import tree as _tree

PyTree = Any
Params = PyTree
Updates = PyTree
OptState = PyTree
Schedule = Callable[[jax.Array], jax.Array]
ScalarOrSchedule = float | jax.Array | Schedule


class InitFn(Protocol):
    def __call__(self, params: Params) -> OptState: ...


class UpdateFn(Protocol):
    def __call__(
        self, updates: Updates, state: OptState, params: Params | None = None, **extra_args: Any
    ) -> tuple[Updates, OptState]: ...


class GradientTransformation(NamedTuple):
    """A pure pair of functions that transforms gradients into updates.

    ``init(params) -> state`` builds the state (a pytree of arrays) for a tree of parameters.
    ``update(updates, state, params=None, **extra_args) -> (updates, state)`` transforms one
    step's updates (usually the gradients) and returns the new state. Neither function has side
    effects, so both can be jitted, vmapped, differentiated and sharded.

    ``extra_args`` carry what a loss-aware transformation needs besides the gradient, by
    keyword: ``value=loss`` (plateau schedules, line searches), ``value_fn``, ``grad``, ...
    Every gradtx transformation accepts them, combinators and wrappers hand them to every
    transformation inside, and one that needs an argument raises a ``ValueError`` naming it
    when it is missing (:func:`extra_arg`).

    The layout is the same as Optax's ``GradientTransformation`` and
    ``GradientTransformationExtraArgs`` (a NamedTuple of ``init`` and ``update``), so a gradtx
    optimizer can be handed to anything that takes an Optax one, such as Flax's ``TrainState``
    or ``nnx.Optimizer`` (whose ``update(model, grads, value=loss)`` reaches it).
    """

    init: InitFn
    update: UpdateFn


GradientTransformationExtraArgs = GradientTransformation
"""The same class: every gradtx transformation takes extra arguments (Optax's name)."""


class EmptyState(NamedTuple):
    """The state of a transformation that keeps none."""


def identity() -> GradientTransformation:
    """Returns updates unchanged; keeps no state."""

    def init(params):
        del params
        return EmptyState()

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        return updates, state

    return flattenable(GradientTransformation(init, update))


def stateless(
    fn: Callable[[Updates, Params | None], Updates],
    *,
    needs_params: bool = False,
    name: str | None = None,
) -> GradientTransformation:
    """A transformation that keeps no state: ``update`` returns ``fn(updates, params)``.

    With ``needs_params``, ``update`` raises a ``ValueError`` (naming ``name``) when called
    without ``params`` and checks that they match the updates, naming the first path that
    differs.

    Example:
        >>> import gradtx as gx, jax, jax.numpy as jnp
        >>> halve = gx.stateless(lambda u, p: jax.tree_util.tree_map(lambda x: x / 2, u))
        >>> halve.update({"w": jnp.ones(2)}, halve.init(None))[0]["w"].tolist()
        [0.5, 0.5]
    """
    label = name or getattr(fn, "__name__", "this transformation")

    def init(params):
        del params
        return EmptyState()

    def update(updates, state, params=None, **extra_args):
        del extra_args
        if needs_params:
            _tree.check_params(params, updates, name=label)
        return fn(updates, params), state

    return GradientTransformation(init, update)


_FLATTENABLE = "_gradtx_flattenable"


def is_flattenable(transform: GradientTransformation) -> bool:
    """Whether ``transform`` is declared flattenable (see :func:`flattenable`)."""
    return bool(getattr(transform.update, _FLATTENABLE, False))


def flattenable(transform: GradientTransformation, when: bool = True) -> GradientTransformation:
    """``transform``, declared (when ``when``) to give the same result however the parameters
    are split into leaves: its steps are elementwise, or reduce over all leaves at once (global
    norm clipping). :func:`gradtx.multi_tensor` runs only such transformations, on a few
    concatenated buffers. A transformation that reduces over each leaf (trust ratios, factored
    moments, Newton–Schulz) or treats leaves differently (masks) must not be declared so."""
    if not when:
        return transform
    step = with_extra_args(transform.update)

    def update(updates, state, params=None, **extra_args):
        return step(updates, state, params, **extra_args)

    update.__dict__.update(getattr(transform.update, "__dict__", {}))  # other markers it has
    setattr(update, _FLATTENABLE, True)
    return GradientTransformation(transform.init, update)


def chain(*transforms: GradientTransformation) -> GradientTransformation:
    """Composes transformations in series: each one transforms the output of the previous.

    The state is a tuple holding each transformation's state, in order.

    Example:
        >>> import gradtx as gx
        >>> sgd_with_l2 = gx.chain(gx.add_decayed_weights(1e-4), gx.scale_by_learning_rate(0.1))
    """
    _check_transforms(transforms, "chain")
    steps = [with_extra_args(t.update) for t in transforms]

    def init(params):
        return tuple(t.init(params) for t in transforms)

    def update(updates, state, params=None, **extra_args):
        _check_state_length(state, transforms, "chain")
        new_state = []
        for step, s in zip(steps, state, strict=True):
            updates, s = step(updates, s, params, **extra_args)
            new_state.append(s)
        return updates, tuple(new_state)

    return flattenable(GradientTransformation(init, update),
                       all(is_flattenable(t) for t in transforms))


def named_chain(*named: tuple[str, GradientTransformation]) -> GradientTransformation:
    """:func:`chain` with a name for each transformation: ``named_chain(("clip", a), ("adam",
    b))`` runs ``a`` then ``b``, and its state is a dict from each name to that
    transformation's state (an ``OrderedDict``, kept in the chain's order), so that
    ``state["adam"]`` reaches one part.

    Equal to ``optax.named_chain``. Names must be distinct strings.

    Example:
        >>> import gradtx as gx, jax.numpy as jnp
        >>> opt = gx.named_chain(("clip", gx.clip_by_global_norm(1.0)), ("adam", gx.adam()))
        >>> list(opt.init({"w": jnp.zeros(3)}))
        ['clip', 'adam']
    """
    for i, pair in enumerate(named):
        if not (isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[0], str)):
            raise TypeError(
                f"named_chain: argument {i} must be a (name, transformation) pair with a str "
                f"name, got {pair!r}."
            )
    names = [name for name, _ in named]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"named_chain: names must be distinct; repeated: {repeated}.")
    transforms = [t for _, t in named]
    _check_transforms(transforms, "named_chain")
    steps = [with_extra_args(t.update) for t in transforms]

    def init(params):
        return collections.OrderedDict((n, t.init(params)) for n, t in named)

    def update(updates, state, params=None, **extra_args):
        if not isinstance(state, dict) or list(state) != names:
            got = list(state) if isinstance(state, dict) else type(state).__name__
            raise ValueError(
                f"named_chain: expected a state dict with the names {names}, got {got}. Was the "
                "state made by this transformation's init?"
            )
        new_state = collections.OrderedDict()
        for name, step in zip(names, steps, strict=True):
            updates, new_state[name] = step(updates, state[name], params, **extra_args)
        return updates, new_state

    return flattenable(GradientTransformation(init, update),
                       all(is_flattenable(t) for t in transforms))


def parallel(
    *transforms: GradientTransformation,
    combine: Callable[..., jax.Array],
    elementwise: bool = False,
) -> GradientTransformation:
    """Runs transformations side by side on the same input and merges their outputs.

    Every transformation receives the same incoming ``updates`` (and ``params``); the output is
    ``combine(out_1, ..., out_n)`` applied leaf by leaf. The state is a tuple of each branch's
    state, in order.

    This is how gradtx builds optimizers whose statistics all come from the raw gradient. Adam,
    for example, is ``parallel(first_moment, second_moment, combine=...)`` in which each branch
    is itself a chain of small transforms (see :func:`gradtx.divide_by_root`).

    ``elementwise=True`` declares that ``combine`` works element by element, so that the
    whole is :func:`flattenable` when every branch is.

    Example:
        >>> import gradtx as gx
        >>> variance = gx.parallel(
        ...     gx.ema_of_squares(0.99), gx.ema(0.99), combine=lambda sq, m: sq - m * m
        ... )
    """
    _check_transforms(transforms, "parallel")
    if not transforms:
        raise ValueError("parallel needs at least one transformation.")
    if not callable(combine):
        raise TypeError(f"parallel: `combine` must be callable, got {type(combine).__name__}.")

    branches = [with_extra_args(t.update) for t in transforms]

    def init(params):
        return tuple(t.init(params) for t in transforms)

    def update(updates, state, params=None, **extra_args):
        _check_state_length(state, transforms, "parallel")
        outputs, new_state = [], []
        for branch, s in zip(branches, state, strict=True):
            out, s = branch(updates, s, params, **extra_args)
            outputs.append(out)
            new_state.append(s)
        merged = jax.tree_util.tree_map(combine, *outputs)
        return merged, tuple(new_state)

    return flattenable(GradientTransformation(init, update),
                       elementwise and all(is_flattenable(t) for t in transforms))


def apply_updates(params: Params, updates: Updates) -> Params:
    """Returns ``params + updates``, leaf by leaf, each result in its parameter's dtype.

    ``None`` leaves in ``params`` pass through. A tree of updates that does not match the
    parameters raises a ``ValueError`` naming the first path that differs.
    """
    _tree.check_match(params, updates, reference_name="params", other_name="updates")

    def add(p, u):
        return jnp.asarray(p + u, dtype=jnp.result_type(p))

    return jax.tree_util.tree_map(add, params, updates)


def extra_arg(extra_args: dict[str, Any], name: str, needed_by: str) -> Any:
    """``extra_args[name]`` for a transformation called ``needed_by`` that cannot run without
    it; a ``ValueError`` naming both when it is missing.

    Example:
        >>> import gradtx as gx
        >>> gx.extra_arg({"value": 1.5}, "value", "my_plateau")
        1.5
    """
    if name not in extra_args:
        given = ", ".join(sorted(extra_args)) or "none"
        raise ValueError(
            f"{needed_by} needs the extra argument `{name}`: call "
            f"update(updates, state, params, {name}=...) (extra arguments given: {given})."
        )
    return extra_args[name]


def with_extra_args(update: Callable) -> Callable:
    """``update`` itself when it takes ``**extra_args``; else a wrapper that drops them, so
    that a transformation written for the three-argument protocol (an Optax
    ``GradientTransformation``, a user's own) still composes. Decided once, when composing."""
    try:
        parameters = inspect.signature(update).parameters.values()
    except (TypeError, ValueError):
        return update
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return update

    def without_extra_args(updates, state, params=None, **extra_args):
        del extra_args
        return update(updates, state, params)

    return without_extra_args


def _check_transforms(transforms, where):
    for i, t in enumerate(transforms):
        if not isinstance(t, GradientTransformation) and not (
            callable(getattr(t, "init", None)) and callable(getattr(t, "update", None))
        ):
            raise TypeError(
                f"{where}: argument {i} is a {type(t).__name__}, not a GradientTransformation "
                "(did you forget to call it, e.g. gx.identity() instead of gx.identity?)."
            )


def _check_state_length(state, transforms, where):
    if not isinstance(state, tuple) or len(state) != len(transforms):
        got = f"a tuple of {len(state)}" if isinstance(state, tuple) else type(state).__name__
        raise ValueError(
            f"{where}: expected a state tuple of {len(transforms)} entries (one per "
            f"transformation), got {got}. Was the state made by this transformation's init?"
        )

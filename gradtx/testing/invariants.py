"""The invariant checker: :func:`check_transformation` and the checks it runs, one per invariant.

Each check is a function of a ``_Context`` (the call's inputs, and the runs its checks share)
that returns ``None`` when its invariant holds or a sentence saying where it breaks; ``_CHECKS``
maps the invariants' names to them. Needs JAX and NumPy only.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradtx import tree as _tree
from gradtx import validation
from gradtx.core import GradientTransformation, Params, Updates, apply_updates, chain
from gradtx.core import identity as _identity

__all__ = ["DEFAULT_CHECKS", "OPTIONAL_CHECKS", "check_transformation"]

# Documented where they are public, in gradtx/testing/__init__.py (Sphinx reads the docstrings
# of module-level data from the source of the module it documents them in).
DEFAULT_CHECKS: tuple[str, ...] = (
    "jit_equals_eager",
    "deterministic",
    "chain_identity",
    "state_stable",
    "updates_match_params",
    "vmap_equals_loop",
)
OPTIONAL_CHECKS: tuple[str, ...] = ("zero_fixed_point", "scale_invariant")

# Gradient scales for "scale_invariant": powers of two, so that scaling is exact in floating
# point and an invariant transformation returns the same bits up to eps.
_SCALES = (0.25, 4.0)


class _Broken(Exception):
    """A run found a broken invariant other than the one being checked (reported under it)."""

    def __init__(self, invariant: str, detail: str):
        super().__init__(detail)
        self.invariant = invariant
        self.detail = detail


class _Run(NamedTuple):
    updates: list  # per step
    params: list  # after each step
    states: list  # states[0] from init, states[t] after step t


def _updates_problem(params, updates) -> str | None:
    try:
        _tree.check_match(params, updates, reference_name="params", other_name="updates")
    except ValueError as err:
        return str(err)
    flat_p, _ = jax.tree_util.tree_flatten_with_path(params)
    flat_u = jax.tree_util.tree_leaves(updates)
    for (path, p), u in zip(flat_p, flat_u, strict=True):
        if jnp.result_type(u) != jnp.result_type(p):
            return (
                f"the updates at {_tree.path_str(path)} have dtype {jnp.result_type(u)} where "
                f"the params have {jnp.result_type(p)}."
            )
    return None


def _run(init, update, params, grads_sequence) -> _Run:
    """Runs ``init`` then one ``update`` per gradient tree, applying each step's updates."""
    state = init(params)
    run = _Run([], [], [state])
    for t, grads in enumerate(grads_sequence, start=1):
        updates, state = update(grads, state, params=params)
        problem = _updates_problem(params, updates)
        if problem is not None:
            raise _Broken("updates_match_params", f"at step {t}: {problem}")
        params = apply_updates(params, updates)
        run.updates.append(updates)
        run.params.append(params)
        run.states.append(state)
    return run


def _difference(a, b, *, exact: bool, rtol: float, atol: float) -> str | None:
    """Where the trees ``a`` and ``b`` first differ, as text, or None when they agree."""
    flat_a, def_a = jax.tree_util.tree_flatten_with_path(a, is_leaf=_tree.is_none)
    flat_b, def_b = jax.tree_util.tree_flatten_with_path(b, is_leaf=_tree.is_none)
    if def_a != def_b:
        return f"the tree structures differ: {def_a} vs {def_b}"
    for (path, x), (_, y) in zip(flat_a, flat_b, strict=True):
        where = _tree.path_str(path)
        if x is None or y is None:
            if (x is None) != (y is None):
                return f"{where} is None in one run only"
            continue
        x, y = np.asarray(x), np.asarray(y)
        if x.shape != y.shape or x.dtype != y.dtype:
            return f"{where} is {x.dtype}{list(x.shape)} vs {y.dtype}{list(y.shape)}"
        if exact:
            if x.tobytes() != y.tobytes():
                return f"{where} is not bitwise equal: {_largest_gap(x, y)}"
            continue
        xf, yf = x.astype(np.float64), y.astype(np.float64)
        close = np.isclose(xf, yf, rtol=rtol, atol=atol, equal_nan=True)
        if not np.all(close):
            return f"{where} differs: {_largest_gap(x, y)} (rtol={rtol:g}, atol={atol:g})"
    return None


def _largest_gap(x: np.ndarray, y: np.ndarray) -> str:
    xf, yf = x.astype(np.float64).ravel(), y.astype(np.float64).ravel()
    if xf.size == 0:
        return "empty arrays"
    with np.errstate(invalid="ignore"):
        gap = np.abs(xf - yf)
    gap = np.where(np.isnan(xf) & np.isnan(yf), 0.0, gap)
    gap = np.where(np.isnan(gap), np.inf, gap)
    i = int(np.argmax(gap))
    return f"{float(xf[i])!r} vs {float(yf[i])!r} at flat index {i} (largest gap {gap[i]:.3g})"


def _compare_runs(a: _Run, b: _Run, *, exact: bool, rtol: float, atol: float) -> str | None:
    """The first step at which two runs' updates, new params or states differ."""
    for t in range(len(a.updates)):
        for what, x, y in (
            ("updates", a.updates[t], b.updates[t]),
            ("params", a.params[t], b.params[t]),
            ("state", a.states[t + 1], b.states[t + 1]),
        ):
            diff = _difference(x, y, exact=exact, rtol=rtol, atol=atol)
            if diff is not None:
                return f"step {t + 1}, {what}: {diff}"
    return None


def _aval(x) -> tuple:
    aval = jax.typeof(x)
    return tuple(aval.shape), aval.dtype, bool(getattr(aval, "weak_type", False))


def _describe_aval(aval: tuple) -> str:
    shape, dtype, weak = aval
    return f"{dtype}{list(shape)}" + (" (weakly typed)" if weak else "")


class _Context:
    """The inputs of one check_transformation call, and runs shared between its checks."""

    def __init__(self, tx, params, grads_sequence, rtol, atol, batch_size):
        self.tx = tx
        self.params = params
        self.grads = grads_sequence
        self.rtol = rtol
        self.atol = atol
        self.batch_size = batch_size
        self.traces = 0

    def run(self, tx=None, params=None, grads=None) -> _Run:
        tx = self.tx if tx is None else tx
        return _run(
            tx.init,
            tx.update,
            self.params if params is None else params,
            self.grads if grads is None else grads,
        )

    @functools.cached_property
    def eager(self) -> _Run:
        return self.run()

    @functools.cached_property
    def jitted(self) -> _Run:
        def counted_update(updates, state, params=None):
            self.traces += 1  # runs once per trace, not per call
            return self.tx.update(updates, state, params=params)

        return _run(jax.jit(self.tx.init), jax.jit(counted_update), self.params, self.grads)


def _check_jit_equals_eager(ctx: _Context) -> str | None:
    diff = _compare_runs(ctx.eager, ctx.jitted, exact=False, rtol=ctx.rtol, atol=ctx.atol)
    if diff is not None:
        return f"jax.jit(update) and eager update differ at {diff}"
    return None


def _check_deterministic(ctx: _Context) -> str | None:
    diff = _compare_runs(ctx.eager, ctx.run(), exact=True, rtol=0.0, atol=0.0)
    if diff is not None:
        return (
            f"two eager runs from the same inputs differ at {diff} (does update read Python "
            "state, a global random source or the clock?)"
        )
    return None


def _check_chain_identity(ctx: _Context) -> str | None:
    for label, composed, position in (
        ("chain(identity(), tx)", chain(_identity(), ctx.tx), 1),
        ("chain(tx, identity())", chain(ctx.tx, _identity()), 0),
    ):
        run = ctx.run(composed)
        inner = _Run(run.updates, run.params, [s[position] for s in run.states])
        diff = _compare_runs(ctx.eager, inner, exact=True, rtol=0.0, atol=0.0)
        if diff is not None:
            return f"{label} and tx differ at {diff}"
    return None


def _check_state_stable(ctx: _Context) -> str | None:
    states = ctx.eager.states  # states[0] from init, states[t] after step t
    def0 = jax.tree_util.tree_structure(states[0])
    avals0 = None
    for t, state in enumerate(states):
        flat, treedef = jax.tree_util.tree_flatten_with_path(state)
        if treedef != def0:
            return f"the state's structure changed at step {t}: {def0} became {treedef}"
        when = f"at step {t} " if t else ""
        for path, leaf in flat:
            if not isinstance(leaf, (jax.Array, np.ndarray)):
                return (
                    f"{when}the state leaf at {_tree.path_str(path)} is of type "
                    f"{type(leaf).__name__} ({leaf!r}), not an array; a state must be a pytree "
                    "of arrays."
                )
        avals = [_aval(leaf) for _, leaf in flat]
        avals0 = avals if avals0 is None else avals0
        for (path, _), aval0, aval in zip(flat, avals0, avals, strict=True):
            if aval != aval0:
                return (
                    f"the state leaf at {_tree.path_str(path)} was {_describe_aval(aval0)} after "
                    f"init and is {_describe_aval(aval)} after step {t}; a jitted step "
                    "taking the state as an argument recompiles."
                )
    ctx.jitted  # noqa: B018 (computes the jitted run, counting traces)
    if ctx.traces > 1:
        return (
            f"jax.jit(update) was traced {ctx.traces} times in {len(ctx.grads)} steps with "
            "inputs of unchanging shapes and dtypes; a jitted training loop would recompile."
        )
    return None


def _check_updates_match_params(ctx: _Context) -> str | None:
    ctx.eager  # noqa: B018 (the run raises _Broken at the first mismatched step)
    return None


def _batch(tree, i: int, scale: float, shift: float):
    return jax.tree_util.tree_map(lambda x: x * (1 + scale * i) + shift * i, tree)


def _check_vmap_equals_loop(ctx: _Context) -> str | None:
    if not jax.tree_util.tree_leaves(ctx.params):
        return None  # nothing to batch over
    # Batch element i has its own parameters and gradients (element 0 is the caller's).
    members = [
        (_batch(ctx.params, i, 0.25, 0.0), [_batch(g, i, 0.5, 0.1) for g in ctx.grads])
        for i in range(ctx.batch_size)
    ]

    def stack(*xs):
        return jnp.stack([jnp.asarray(x) for x in xs])

    params_b = jax.tree_util.tree_map(stack, *[m[0] for m in members])
    grads_b = jax.tree_util.tree_map(stack, *[m[1] for m in members])

    def run(params, grads):
        r = ctx.run(params=params, grads=grads)
        return r.updates, r.params, r.states[1:]

    batched = jax.vmap(run)(params_b, grads_b)
    for i, (params, grads) in enumerate(members):
        loop = ctx.eager if i == 0 else ctx.run(params=params, grads=grads)
        member = jax.tree_util.tree_map(lambda x, i=i: x[i], batched)
        vmapped = _Run(member[0], member[1], [None, *member[2]])
        diff = _compare_runs(loop, vmapped, exact=False, rtol=ctx.rtol, atol=ctx.atol)
        if diff is not None:
            return (
                f"batch element {i} of jax.vmap over a batch of {ctx.batch_size} parameter and "
                f"gradient trees differs from running it alone at {diff}"
            )
    return None


def _check_zero_fixed_point(ctx: _Context) -> str | None:
    zeros = [jax.tree_util.tree_map(jnp.zeros_like, g) for g in ctx.grads]
    run = ctx.run(grads=zeros)
    for t, params in enumerate(run.params, start=1):
        diff = _difference(ctx.params, params, exact=False, rtol=ctx.rtol, atol=ctx.atol)
        if diff is not None:
            return f"zero gradients moved the parameters at step {t}: {diff}"
    return None


def _check_scale_invariant(ctx: _Context) -> str | None:
    for c in _SCALES:
        scaled = [jax.tree_util.tree_map(lambda g, c=c: g * c, g) for g in ctx.grads]
        run = ctx.run(grads=scaled)
        pairs = zip(ctx.eager.updates, run.updates, strict=True)
        for t, (ours, theirs) in enumerate(pairs, start=1):
            diff = _difference(ours, theirs, exact=False, rtol=ctx.rtol, atol=ctx.atol)
            if diff is not None:
                return f"gradients scaled by {c:g} change the updates at step {t}: {diff}"
    return None


_CHECKS: dict[str, Callable[[_Context], str | None]] = {
    "jit_equals_eager": _check_jit_equals_eager,
    "deterministic": _check_deterministic,
    "chain_identity": _check_chain_identity,
    "state_stable": _check_state_stable,
    "updates_match_params": _check_updates_match_params,
    "vmap_equals_loop": _check_vmap_equals_loop,
    "zero_fixed_point": _check_zero_fixed_point,
    "scale_invariant": _check_scale_invariant,
}


def _validate_checks(checks) -> tuple[str, ...]:
    if isinstance(checks, str) or not isinstance(checks, Iterable):
        raise TypeError(
            f"`checks` must be a tuple of check names, got {checks!r} (for one check, write "
            f"checks=({checks!r},))."
        )
    checks = tuple(checks)
    unknown = [c for c in checks if c not in _CHECKS]
    if unknown:
        raise ValueError(
            f"unknown check(s) {', '.join(map(repr, unknown))}; known: "
            f"{', '.join(_CHECKS)}."
        )
    return checks


def _random_gradients(params, steps: int, seed: int) -> list:
    rng = np.random.default_rng(seed)

    def draw(p):
        return jnp.asarray(rng.standard_normal(np.shape(p)), dtype=jnp.result_type(p))

    return [jax.tree_util.tree_map(draw, params) for _ in range(steps)]


def _strongly_typed(tree):
    return jax.tree_util.tree_map(lambda x: jnp.asarray(x, dtype=jnp.result_type(x)), tree)


def check_transformation(
    tx: GradientTransformation,
    params: Params,
    grads_sequence: Sequence[Updates] | None = None,
    *,
    steps: int = 3,
    rtol: float = 1e-5,
    atol: float = 1e-6,
    checks: Sequence[str] = DEFAULT_CHECKS,
    batch_size: int = 2,
    seed: int = 0,
) -> None:
    """Checks that a gradient transformation keeps the invariants gradtx's optimizers keep.

    Runs ``tx`` from ``tx.init(params)`` for one step per tree in ``grads_sequence``, adding
    each step's updates to the parameters, and raises ``AssertionError`` naming every invariant
    in ``checks`` that fails (an exception raised while checking one counts as its failure).

    The default checks (:data:`DEFAULT_CHECKS`), which every gradtx optimizer passes:

    * ``"jit_equals_eager"``: ``jax.jit`` of ``init`` and ``update`` gives the eager updates,
      parameters and states, to ``rtol`` and ``atol``.
    * ``"deterministic"``: a second eager run is bitwise equal to the first (no Python-side
      state, global random source or clock).
    * ``"chain_identity"``: ``chain(identity(), tx)`` and ``chain(tx, identity())`` give
      bitwise the updates and states of ``tx`` (``update`` takes ``params`` as its third
      positional argument, as :func:`gradtx.chain` passes it).
    * ``"state_stable"``: the state is a pytree of arrays whose structure, shapes, dtypes and
      weak types never change across steps, and ``jax.jit(update)`` is traced once, so a jitted
      training loop never recompiles.
    * ``"updates_match_params"``: every step's updates have the parameters' tree structure
      (``None`` leaves included), shapes and dtypes.
    * ``"vmap_equals_loop"``: ``jax.vmap`` over a leading axis of ``batch_size`` different
      parameter and gradient trees equals running each alone, to ``rtol`` and ``atol``.

    Optional checks (:data:`OPTIONAL_CHECKS`), for transformations meant to have the property:

    * ``"zero_fixed_point"``: all-zero gradients leave the parameters where they are (to
      ``rtol`` and ``atol``; pass ``rtol=0, atol=0`` for exactly). Holds for gradtx's optimizers
      without weight decay.
    * ``"scale_invariant"``: gradients multiplied by 0.25 or by 4 give the same updates (to
      ``rtol`` and ``atol``), as Adam-like steps do when their eps is 0.

    Args:
        tx: the transformation to check.
        params: a pytree of floating-point parameters (``None`` leaves allowed).
        grads_sequence: the gradient trees of the steps, each shaped like ``params``. By default,
            ``steps`` trees of standard normal values in the parameters' dtypes.
        steps: the number of steps when ``grads_sequence`` is not given.
        rtol: relative tolerance of the comparisons that are not bitwise. The defaults suit
            float32; in float64, 1e-12 is usually met.
        atol: absolute tolerance of the same comparisons.
        checks: the names of the invariants to check, a tuple of names from
            :data:`DEFAULT_CHECKS` and :data:`OPTIONAL_CHECKS`.
        batch_size: the batch size of ``"vmap_equals_loop"``.
        seed: the seed of the default gradients.

    Raises:
        AssertionError: an invariant fails; the message names each failed invariant and the
            first step, tree path and values where it fails.
        ValueError: a name in ``checks`` is unknown, or an argument is out of range.
        TypeError: ``checks`` is a single string rather than a tuple of them.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import gradtx as gx
        >>> from gradtx.testing import check_transformation
        >>> params = {"w": jnp.ones(3, jnp.float32), "b": jnp.zeros((), jnp.float32)}
        >>> check_transformation(gx.adam(learning_rate=0.1), params)  # passes: returns None
        >>> halve_in_f16 = gx.stateless(
        ...     lambda u, p: jax.tree_util.tree_map(lambda x: (x / 2).astype(jnp.float16), u)
        ... )
        >>> try:
        ...     check_transformation(halve_in_f16, params, checks=("updates_match_params",))
        ... except AssertionError as err:
        ...     print(err)
        check_transformation: 1 of 1 invariant(s) failed:
        [updates_match_params] at step 1: the updates at ['b'] have dtype float16 where the params have float32.
    """  # noqa: E501 (the expected output is one line)
    checks = _validate_checks(checks)
    if grads_sequence is None:
        steps = validation.check_static_int("steps", steps)
        grads_sequence = _random_gradients(params, steps, seed)
    else:
        grads_sequence = list(grads_sequence)
        if not grads_sequence:
            raise ValueError("`grads_sequence` must hold at least one gradient tree.")
    if not (rtol >= 0 and atol >= 0):
        raise ValueError(f"`rtol` and `atol` must be >= 0, got rtol={rtol!r}, atol={atol!r}.")
    batch_size = validation.check_static_int("batch_size", batch_size, minimum=2)

    # Weakly typed inputs (jnp.asarray(0.5)) would become strongly typed after one step of
    # apply_updates and retrace a jitted step whatever tx does: start from strong types.
    params, grads_sequence = _strongly_typed(params), [_strongly_typed(g) for g in grads_sequence]
    ctx = _Context(tx, params, grads_sequence, rtol, atol, batch_size)
    failures: dict[str, str] = {}
    for name in checks:
        try:
            detail = _CHECKS[name](ctx)
        except _Broken as broken:
            failures.setdefault(broken.invariant, broken.detail)
            continue
        except Exception as err:  # noqa: BLE001 (any error is this invariant's failure)
            detail = f"raised {type(err).__name__}: {err}"
        if detail is not None:
            failures.setdefault(name, detail)
    if failures:
        lines = "\n".join(f"[{name}] {detail}" for name, detail in failures.items())
        raise AssertionError(
            f"check_transformation: {len(failures)} of {len(checks)} invariant(s) failed:\n"
            f"{lines}"
        )

"""L-BFGS, equal step for step to ``torch.optim.LBFGS``: one ``update`` runs up to ``max_iter``
quasi-Newton iterations, evaluating the objective through ``value_and_grad_fn`` as torch calls
its closure."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradtx import live, validation
from gradtx import tree as _tree
from gradtx.core import GradientTransformation, ScalarOrSchedule
from gradtx.hyperparams.declarations import NON_NEGATIVE, PERIOD, FixedArgument
from gradtx.optimizers import leaf_kinds
from gradtx.optimizers._common import LEARNING_RATE, optimizer
from gradtx.transforms import line_search
from gradtx.transforms.counting import increment

# torch stores a curvature pair only when y.s exceeds this.
CURVATURE_THRESHOLD = 1e-10
LINE_SEARCHES = ("strong_wolfe",)


def _check_line_search_fn(name: str, value) -> str | None:
    """None or one of :data:`LINE_SEARCHES`: ``ValueError`` naming the argument for another
    string, ``TypeError`` for anything else."""
    return validation.check_choice(name, value, (*LINE_SEARCHES, None))


LINE_SEARCH_FN = FixedArgument(
    checker=_check_line_search_fn,
    text=" or ".join([repr(c) for c in LINE_SEARCHES] + ["None"]),
    refused=("not_a_strong_wolfe",),
    none_allowed=True,
)


class LbfgsRunState(NamedTuple):
    """What torch's LBFGS keeps between steps (its one state entry), flat over the parameters.

    The flat vector is every parameter leaf raveled and concatenated in
    ``jax.tree_util.tree_leaves`` order (torch's order of its params), in their common real
    dtype; a complex leaf contributes its real and imaginary parts interleaved, as torch's
    ``view_as_real`` (so the layout is torch's ``_gather_flat_grad``).
    Before the first iteration of a run (``n_iter == 0``) every field but the two counts is a
    placeholder: torch has no such key yet.

    Attributes:
        func_evals: objective evaluations so far, the first one of each step included: torch's
            ``func_evals``.
        n_iter: iterations so far, over all steps: torch's ``n_iter``.
        d: the latest direction: torch's ``d``.
        t: the latest step length: torch's ``t``.
        old_dirs: ``(history_size, n)`` ring buffer of gradient differences :math:`y`:
            torch's ``old_dirs``.
        old_stps: ``(history_size, n)`` ring buffer of steps :math:`s`: torch's ``old_stps``.
        ro: ``(history_size,)`` ring buffer of :math:`1 / y^\\top s`: torch's ``ro``.
        history_start: the row of the oldest pair.
        history_len: the number of pairs held (``len(old_dirs)`` in torch). torch's list entry
            ``i`` (oldest first) is row ``(history_start + i) % history_size``; see
            ``history_as_lists`` and ``state_with_history``.
        h_diag: the scale :math:`\\gamma` of the initial inverse Hessian: torch's ``H_diag``.
        prev_flat_grad: the gradient at the start of the latest iteration: torch's
            ``prev_flat_grad``.
        prev_loss: the objective at the start of the latest iteration: torch's ``prev_loss``
            (NaN when ``update`` was given no ``value``).
    """

    func_evals: jax.Array
    n_iter: jax.Array
    d: jax.Array
    t: jax.Array
    old_dirs: jax.Array
    old_stps: jax.Array
    ro: jax.Array
    history_start: jax.Array
    history_len: jax.Array
    h_diag: jax.Array
    prev_flat_grad: jax.Array
    prev_loss: jax.Array


def _find_run_state(state) -> LbfgsRunState:
    if isinstance(state, LbfgsRunState):
        return state
    found = [
        x for x in jax.tree_util.tree_leaves(
            state, is_leaf=lambda x: isinstance(x, LbfgsRunState))
        if isinstance(x, LbfgsRunState)
    ]
    if len(found) != 1:
        raise ValueError(f"expected a state holding one LbfgsRunState, found {len(found)}.")
    return found[0]


def history_as_lists(state) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(old_dirs, old_stps, ro)`` of an L-BFGS state (the optimizer's, or its
    :class:`LbfgsRunState`) as NumPy arrays of ``history_len`` rows, oldest first, as torch's
    lists are ordered."""
    run = _find_run_state(state)
    size = run.ro.shape[0]
    rows = (int(run.history_start) + np.arange(int(run.history_len))) % size
    return (np.asarray(run.old_dirs)[rows], np.asarray(run.old_stps)[rows],
            np.asarray(run.ro)[rows])


def state_with_history(state, old_dirs, old_stps, ro):
    """``state`` (the optimizer's, or an :class:`LbfgsRunState`) with its history replaced by
    torch-ordered lists (oldest first; arrays of shape ``(k, n)``, ``(k, n)``, ``(k,)`` or
    sequences of rows): the inverse of ``history_as_lists``. The pairs are stored from
    row 0; the other rows are zeros."""
    run = _find_run_state(state)
    size, n = run.old_dirs.shape
    old_dirs, old_stps = (np.asarray(a, dtype=run.old_dirs.dtype).reshape(-1, n)
                          for a in (old_dirs, old_stps))
    ro = np.asarray(ro, dtype=run.ro.dtype).reshape(-1)
    k = len(ro)
    if not len(old_dirs) == len(old_stps) == k or k > size:
        raise ValueError(
            f"state_with_history: old_dirs, old_stps and ro must have the same number of "
            f"entries, at most history_size={size}; got {len(old_dirs)}, {len(old_stps)}, {k}."
        )

    def padded(a):
        out = np.zeros((size,) + a.shape[1:], a.dtype)
        out[:k] = a
        return jnp.asarray(out)

    new = run._replace(
        old_dirs=padded(old_dirs), old_stps=padded(old_stps), ro=padded(ro),
        history_start=jnp.zeros([], jnp.int32), history_len=jnp.asarray(k, jnp.int32),
    )
    return jax.tree_util.tree_map(
        lambda x: new if x is run else x, state, is_leaf=lambda x: x is run)


# -- flat vectors ------------------------------------------------------------------------------


def _is_complex(x) -> bool:
    return jnp.issubdtype(jnp.result_type(x), jnp.complexfloating)


def _dtype_of(leaves):
    """The flat vector's dtype: the leaves' common one, its real part for complex leaves."""
    if not leaves:
        return jnp.result_type(float)
    common = jnp.result_type(*leaves)
    return jnp.finfo(common).dtype if jnp.issubdtype(common, jnp.complexfloating) else common


def _numel(leaf) -> int:
    """Entries of ``leaf`` in the flat vector (a complex entry is two reals, as in torch)."""
    return int(np.size(leaf)) * (2 if _is_complex(leaf) else 1)


def _flatten(tree, dtype) -> jax.Array:
    """All leaves raveled and concatenated; a complex leaf as torch's ``view_as_real``: real
    and imaginary parts interleaved."""

    def real_view(x):
        x = jnp.asarray(x)
        if _is_complex(x):
            x = jnp.stack([jnp.real(x), jnp.imag(x)], axis=-1)
        return jnp.ravel(x).astype(dtype)

    leaves = jax.tree_util.tree_leaves(tree)
    if not leaves:
        return jnp.zeros([0], dtype)
    return jnp.concatenate([real_view(x) for x in leaves])


def _unflatten(flat: jax.Array, like):
    """The inverse of :func:`_flatten`: a tree like ``like``, in its leaves' dtypes."""
    leaves, treedef = jax.tree_util.tree_flatten(like)
    out, start = [], 0
    for leaf in leaves:
        size, shape, dtype = _numel(leaf), np.shape(leaf), jnp.result_type(leaf)
        part = flat[start:start + size]
        if _is_complex(leaf):
            pairs = part.reshape(shape + (2,)).astype(jnp.finfo(dtype).dtype)
            out.append(jax.lax.complex(pairs[..., 0], pairs[..., 1]))
        else:
            out.append(part.reshape(shape).astype(dtype))
        start += size
    return treedef.unflatten(out)


def _checked(inner: GradientTransformation) -> GradientTransformation:
    """``inner`` behind the leaf checks every optimizer makes (see
    :func:`gradtx.optimizers._common.optimizer_chain`), without turning complex leaves into
    ``(2, *shape)`` real ones: the flat vector interleaves their parts, as torch's does, and
    ``value_and_grad_fn`` is called on the parameters as they are."""

    def init(params):
        leaf_kinds.check_params(params)
        return (inner.init(params),)

    def update(updates, state, params=None, **extra_args):
        if params is not None:
            _tree.check_match(params, updates, reference_name="params", other_name="gradient")
            updates = leaf_kinds.cast_gradients(updates, params)
        else:
            leaf_kinds.check_gradients(updates)
        out, inner_state = inner.update(updates, state[0], params, **extra_args)
        return out, (inner_state,)

    return GradientTransformation(init, update)


# -- the direction -----------------------------------------------------------------------------


def _remember(run: LbfgsRunState, y, s, ys) -> LbfgsRunState:
    """Appends ``(y, s, 1/ys)``, dropping the oldest pair when the buffer is full."""
    size = run.ro.shape[0]
    full = run.history_len == size
    row = jnp.where(full, run.history_start, (run.history_start + run.history_len) % size)
    return run._replace(
        old_dirs=run.old_dirs.at[row].set(y),
        old_stps=run.old_stps.at[row].set(s),
        ro=run.ro.at[row].set(1.0 / ys),
        history_start=jnp.where(full, (run.history_start + 1) % size, run.history_start),
        history_len=jnp.where(full, run.history_len, run.history_len + 1),
        h_diag=ys / jnp.dot(y, y),
    )


def _two_loop(run: LbfgsRunState, g) -> jax.Array:
    """The two-loop recursion: ``-H g`` for the L-BFGS inverse Hessian ``H``. Both loops run
    ``history_size`` times and skip the rows not in use, so that their length is static (the
    step can then be differentiated in reverse mode)."""
    size = run.ro.shape[0]
    k = run.history_len

    def row(i):
        return (run.history_start + i) % size

    def newest_first(j, carry):
        def use(carry):
            q, al = carry
            i = k - 1 - j
            a = jnp.dot(run.old_stps[row(i)], q) * run.ro[row(i)]
            return q - a * run.old_dirs[row(i)], al.at[i].set(a)

        return jax.lax.cond(j < k, use, lambda carry: carry, carry)

    q, al = jax.lax.fori_loop(0, size, newest_first, (-g, jnp.zeros_like(run.ro)))

    def oldest_first(i, r):
        def use(r):
            be = jnp.dot(run.old_dirs[row(i)], r) * run.ro[row(i)]
            return r + run.old_stps[row(i)] * (al[i] - be)

        return jax.lax.cond(i < k, use, lambda r: r, r)

    return jax.lax.fori_loop(0, size, oldest_first, q * run.h_diag)


@jax.jit
def _begin_iteration(run: LbfgsRunState, g, loss, lr) -> tuple[LbfgsRunState, jax.Array]:
    """The state after the direction and the initial step length of one more iteration, and
    the slope :math:`g^\\top d`. The direction is ``-g`` on the first iteration of the run,
    else that of the two-loop recursion after the memory update. Compiled once per shape: it
    calls nothing of the user's."""
    run = run._replace(n_iter=increment(run.n_iter))
    first = run.n_iter == 1

    def steepest(run):
        zero = jnp.zeros([], jnp.int32)
        return run._replace(d=-g, history_start=zero, history_len=zero,
                            h_diag=jnp.ones([], g.dtype))

    def quasi_newton(run):
        y = g - run.prev_flat_grad
        s = run.d * run.t
        ys = jnp.dot(y, s)
        run = jax.lax.cond(ys > CURVATURE_THRESHOLD, lambda r: _remember(r, y, s, ys),
                           lambda r: r, run)
        return run._replace(d=_two_loop(run, g))

    run = jax.lax.cond(first, steepest, quasi_newton, run)
    inverse_l1 = 1.0 / jnp.sum(jnp.abs(g))
    # torch's min(1, 1/|g|_1) * lr: Python's min keeps 1 unless the other is smaller.
    first_t = jnp.where(inverse_l1 < 1.0, inverse_l1, 1.0) * lr
    run = run._replace(prev_flat_grad=g, prev_loss=loss, t=jnp.where(first, first_t, lr))
    return run, jnp.dot(g, run.d)


def _largest(v):
    return jnp.max(jnp.abs(v), initial=0.0)


@jax.jit
def _stops(run: LbfgsRunState, loss, optimal, n_iter, evals, max_iter, max_eval, tol_change):
    """torch's checks after a move, in its order (all of them stop the step)."""
    return (
        (n_iter == max_iter) | (evals >= max_eval) | optimal
        | (_largest(run.d * run.t) <= tol_change)
        | (jnp.abs(loss - run.prev_loss) < tol_change)
    )


# -- one step ----------------------------------------------------------------------------------


class _Loop(NamedTuple):
    run: LbfgsRunState
    x: jax.Array
    loss: jax.Array
    g: jax.Array
    n_iter: jax.Array  # iterations of this step
    evals: jax.Array  # evaluations of this step (torch's current_evals)
    done: jax.Array


def scale_by_torch_lbfgs(
    learning_rate: ScalarOrSchedule = 1.0,
    max_iter: int = 20,
    max_eval: int | None = None,
    tolerance_grad: float | jax.Array = 1e-7,
    tolerance_change: float | jax.Array = 1e-9,
    history_size: int = 100,
    line_search_fn: str | None = None,
) -> GradientTransformation:
    """The transformation inside :func:`lbfgs`: its output is the change of the parameters
    over one torch step. Numeric arguments may be live placeholders (read per step)."""
    if max_eval is None:
        max_eval = max_iter * 5 // 4
    use_search = line_search_fn is not None
    needs_closure = use_search or max_iter > 1

    def init(params):
        leaves = jax.tree_util.tree_leaves(params)
        dtype = _dtype_of(leaves)
        n = sum(_numel(x) for x in leaves)
        zero, vec = jnp.zeros([], jnp.int32), jnp.zeros([n], dtype)
        return LbfgsRunState(
            func_evals=zero, n_iter=zero, d=vec, t=jnp.zeros([], dtype),
            old_dirs=jnp.zeros([history_size, n], dtype),
            old_stps=jnp.zeros([history_size, n], dtype),
            ro=jnp.zeros([history_size], dtype), history_start=zero, history_len=zero,
            h_diag=jnp.ones([], dtype), prev_flat_grad=vec,
            prev_loss=jnp.full([], jnp.nan, dtype),
        )

    def update(updates, state, params=None, **extra_args):
        if params is None:
            raise ValueError("lbfgs needs the parameters: call update(grads, state, params).")
        f = extra_args.get("value_and_grad_fn")
        value = extra_args.get("value")
        if needs_closure and (f is None or value is None):
            missing = "value_and_grad_fn" if f is None else "value"
            raise ValueError(
                f"lbfgs(max_iter={max_iter}, line_search_fn={line_search_fn!r}) evaluates the "
                f"objective again within a step, as torch calls its closure: pass `{missing}` "
                "to update, as update(grads, state, params, value=loss, "
                "value_and_grad_fn=f) with f(params) -> (loss, grads) (only max_iter=1 without "
                "a line search needs neither)."
            )
        leaves = jax.tree_util.tree_leaves(params)
        dtype = _dtype_of(leaves)
        n = sum(_numel(x) for x in leaves)
        if state.d.shape != (n,):
            raise ValueError(
                f"lbfgs: the state holds flat vectors of {state.d.shape[0]} entries, made for "
                f"other parameters than these ({n} entries in all): pass the state that "
                "init(params) returned for these parameters."
            )
        lr, tol_grad, tol_change = (
            jnp.asarray(live.read(v), dtype)
            for v in (learning_rate, tolerance_grad, tolerance_change)
        )

        def value_and_grad(x):
            loss, grads = f(_unflatten(x, params))
            _tree.check_match(params, grads, reference_name="params",
                              other_name="value_and_grad_fn's gradient")
            grads = leaf_kinds.cast_gradients(grads, params)
            loss = jnp.asarray(loss)
            if loss.shape != ():
                raise ValueError(
                    f"value_and_grad_fn must return a scalar loss, got shape {loss.shape}.")
            return loss.astype(dtype), _flatten(grads, dtype)

        def iterate(c: _Loop) -> _Loop:
            run, gtd = _begin_iteration(c.run, c.g, c.loss, lr)
            c = c._replace(run=run, n_iter=c.n_iter + 1)

            def move(c: _Loop) -> _Loop:
                run = c.run
                if use_search:
                    loss, g, t, evals = line_search.strong_wolfe(
                        value_and_grad, c.x, run.t, run.d, c.loss, c.g, gtd,
                        max_ls=max_eval - c.evals,
                    )
                    x = c.x + t * run.d
                    optimal = _largest(g) <= tol_grad
                else:
                    t = run.t
                    x = c.x + t * run.d

                    def evaluate(_):
                        loss, g = value_and_grad(x)
                        return loss, g, jnp.ones([], jnp.int32), _largest(g) <= tol_grad

                    def last(_):
                        return c.loss, c.g, jnp.zeros([], jnp.int32), jnp.asarray(False)

                    if max_iter == 1:  # torch never evaluates again: f may be absent
                        loss, g, evals, optimal = last(None)
                    else:
                        loss, g, evals, optimal = line_search.cond(
                            c.n_iter != max_iter, evaluate, last, None)
                run = run._replace(t=t, func_evals=run.func_evals + evals)
                total = c.evals + evals
                done = _stops(run, loss, optimal, c.n_iter, total, max_iter, max_eval,
                              tol_change)
                return _Loop(run, x, loss, g, c.n_iter, total, done)

            return line_search.cond(
                ~(gtd > -tol_change), move, lambda c: c._replace(done=jnp.asarray(True)), c)

        x = _flatten(params, dtype)
        g = _flatten(updates, dtype)
        loss = jnp.full([], jnp.nan, dtype) if value is None else jnp.asarray(value, dtype)
        one = jnp.ones([], jnp.int32)
        start = _Loop(
            state._replace(func_evals=increment(state.func_evals)), x, loss, g,
            jnp.zeros([], jnp.int32), one, _largest(g) <= tol_grad,
        )
        if max_iter == 1:  # no loop: reverse-mode differentiable without a line search
            end = line_search.cond(~start.done, iterate, lambda c: c, start)
        else:
            end = line_search.while_loop(
                lambda c: ~c.done & (c.n_iter < max_iter), iterate, start)
        new_params = _unflatten(end.x, params)
        out = jax.tree_util.tree_map(
            lambda new, p: jnp.asarray(new - p, dtype=jnp.result_type(p)), new_params, params)
        return out, end.run

    return GradientTransformation(init, update)


@optimizer(
    learning_rate=LEARNING_RATE,
    max_iter=PERIOD,
    max_eval=PERIOD.or_none(),
    tolerance_grad=NON_NEGATIVE,
    tolerance_change=NON_NEGATIVE,
    history_size=PERIOD,
    line_search_fn=LINE_SEARCH_FN,
)
def lbfgs(
    learning_rate: ScalarOrSchedule = 1.0,
    max_iter: int = 20,
    max_eval: int | None = None,
    tolerance_grad: float | jax.Array = 1e-7,
    tolerance_change: float | jax.Array = 1e-9,
    history_size: int = 100,
    line_search_fn: str | None = None,
) -> GradientTransformation:
    r"""L-BFGS (Liu & Nocedal, 1989), equal step for step to ``torch.optim.LBFGS``.

    One ``update(grads, state, params, value=loss, value_and_grad_fn=f)`` is one torch
    ``step(closure)``: ``value`` and ``grads`` are the closure's first evaluation at
    ``params``, and ``f(params) -> (loss, grads)`` (a tree like ``params``) gives every further
    one. The output is the change of the parameters over the step.

    All parameters form one flat vector :math:`x` (leaves raveled in ``tree_leaves`` order).
    With :math:`g` the gradient there, a step returns at once when
    :math:`\max|g| \le \tau_g`. Otherwise it runs iterations :math:`k = 1, 2, \dots` (counted
    over the whole run) of

    .. math::
        s &= t_{k-1} d_{k-1}, \quad y = g_k - g_{k-1}: \ \text{if } y^\top s > 10^{-10},
            \text{ store } (y, s, \rho = 1/y^\top s) \text{ (the oldest is dropped beyond }
            m \text{)}, \ \gamma = \frac{y^\top s}{y^\top y} \\
        q &= -g_k; \quad \text{newest to oldest: } \alpha_i = \rho_i s_i^\top q, \ \
            q \leftarrow q - \alpha_i y_i \\
        d_k &= r, \quad r = \gamma q; \quad \text{oldest to newest: }
            \beta_i = \rho_i y_i^\top r, \ \ r \leftarrow r + (\alpha_i - \beta_i) s_i

    with :math:`d_1 = -g_1` and :math:`\gamma = 1` at the run's first iteration. The step
    length is :math:`t = \min(1, 1/\lVert g_1\rVert_1)\,\eta` at the first iteration,
    :math:`t = \eta` after; with ``line_search_fn="strong_wolfe"`` a strong-Wolfe search from
    that :math:`t` (``gradtx.transforms.line_search.strong_wolfe``: :math:`c_1 = 10^{-4}`,
    :math:`c_2 = 0.9`, its own bracket tolerance :math:`10^{-9}`, at most ``max_eval`` minus
    the evaluations so far) picks it. Then :math:`x \leftarrow x + t d_k` and, without a line
    search, the objective is evaluated again unless this was the ``max_iter``-th iteration.

    The step stops, in torch's order: when :math:`g^\top d > -\tau_c` (before moving); after
    ``max_iter`` iterations; once the step's evaluations reach ``max_eval``; when
    :math:`\max|g| \le \tau_g`; when :math:`\max|t d| \le \tau_c`; when the loss changed by
    less than :math:`\tau_c`.

    Chain: ``scale_by_torch_lbfgs(...)``, one transformation whose ``update`` runs the whole
    step, behind the leaf checks every optimizer makes. It compiles under ``jax.jit``
    (``lax.while_loop``\ s bounded by ``max_iter`` and ``max_eval``) and, called eagerly with a
    Python ``value_and_grad_fn``, runs one evaluation after the other without recompiling.
    With ``max_iter=1`` and no line search it has no loop and can be differentiated in reverse
    mode.

    Args:
        learning_rate: :math:`\eta \ge 0`.
        max_iter: iterations per step (int >= 1).
        max_eval: evaluations per step, the first one included; None: ``max_iter * 5 // 4``.
        tolerance_grad: :math:`\tau_g \ge 0`, on :math:`\max|g|`.
        tolerance_change: :math:`\tau_c \ge 0`, on the slope, the step and the loss change.
        history_size: :math:`m`, the pairs kept (int >= 1).
        line_search_fn: None or ``"strong_wolfe"``.

    ``value_and_grad_fn`` (and ``value``) may be left out only with ``max_iter=1`` and no line
    search, where torch never calls its closure again; ``value`` is then only stored.

    State (named, for :func:`gradtx.tree_get`): :class:`LbfgsRunState`, torch's state with the
    same names in snake case: ``func_evals``, ``n_iter``, ``d``, ``t``, ``old_dirs``,
    ``old_stps``, ``ro`` (ring buffers of ``history_size`` rows; ``history_as_lists``
    gives torch's lists, oldest first, and ``state_with_history`` sets them),
    ``history_start``, ``history_len``, ``h_diag`` (``H_diag``), ``prev_flat_grad``,
    ``prev_loss``. torch's scratch list ``al`` is not kept. The optimizer's ``count`` counts
    updates (torch's steps).

    torch.optim: ``LBFGS(params, lr, max_iter, max_eval, tolerance_grad, tolerance_change,
    history_size, line_search_fn)``; ``step(closure)`` is ``update`` with ``value``, ``grads``
    from the closure's first call and ``value_and_grad_fn`` for the rest. torch checks only
    :math:`\eta \ge 0`; gradtx also refuses negative tolerances and counts below 1, and an
    unknown ``line_search_fn`` at construction (torch at its first step). A complex parameter
    is a pair of reals, interleaved in the flat vector as torch's ``view_as_real`` does; its
    gradients, from ``grads`` and from ``value_and_grad_fn`` alike, follow torch's convention
    (the conjugate of ``jax.grad``'s).

    Differences from ``optax.lbfgs``: Optax's ``update`` is one iteration (``scale_by_lbfgs``
    and a zoom line search, ``scale_by_zoom_linesearch``, which calls ``value_fn``), not up to
    ``max_iter``; it stores every pair (no :math:`y^\top s > 10^{-10}` test) in a memory of 10
    by default, scales its first step by :math:`\min(1, 1/\lVert g\rVert_2)` (here the L1
    norm, times :math:`\eta`), and its zoom search (initial guess, quadratic and cubic
    interpolation, approximate Wolfe curvature, safeguards) takes other trial steps than
    torch's ``_strong_wolfe``; it has no tolerances and no evaluation budget.

    Example:
        >>> import gradtx as gx, jax, jax.numpy as jnp
        >>> def loss(p):
        ...     return jnp.sum((p["w"] - jnp.arange(3.0)) ** 2 * jnp.asarray([1.0, 10.0, 100.0]))
        >>> f = jax.value_and_grad(loss)
        >>> opt = lbfgs(line_search_fn="strong_wolfe")
        >>> params = {"w": jnp.zeros(3)}
        >>> state = opt.init(params)
        >>> value, grads = f(params)
        >>> updates, state = opt.update(grads, state, params, value=value, value_and_grad_fn=f)
        >>> params = gx.apply_updates(params, updates)
        >>> [round(x, 4) for x in params["w"].tolist()]  # one step: up to 20 iterations
        [0.0, 1.0, 2.0]
        >>> bool(loss(params) < 1e-8), int(gx.tree_get(state, "n_iter")) < 20
        (True, True)
    """
    return _checked(
        scale_by_torch_lbfgs(learning_rate, max_iter, max_eval, tolerance_grad,
                             tolerance_change, history_size, line_search_fn)
    )

r"""Sharpness-Aware Minimization (Foret et al., 2021, "Sharpness-Aware Minimization for
Efficiently Improving Generalization"), and its adaptive variant ASAM (Kwon et al., 2021): the
optimizer steps with the gradient taken at an adversarially perturbed copy of the parameters.
Calling convention of ``optax.contrib.sam``: a transparent mode, in which the caller's
parameters visit the perturbed point, and an opaque mode, in which ``update`` takes the
gradient there itself through the extra argument ``grad_fn``."""

from __future__ import annotations

from collections.abc import Hashable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradtx import core, live, validation
from gradtx import tree as _tree
from gradtx.core import EmptyState, GradientTransformation, OptState, PyTree, flattenable
from gradtx.transforms.clipping import global_norm
from gradtx.transforms.counting import zero_count

_DEFAULT_RHO = 0.05
_NAME = "sam"


class SAMState(NamedTuple):
    """The state of :func:`sam` (the fields of ``optax.contrib.SAMState``).

    Attributes:
        steps_since_sync: calls since the last outer step, in ``[0, sync_period)`` (an int32
            scalar); always 0 in opaque mode, where every call ends with an outer step.
        opt_state: the state of ``optimizer``, which changes only on outer steps.
        adv_state: the state of ``adv_optimizer`` (an ``EmptyState`` for the built-in ascent).
        cache: in transparent mode, the parameters the outer step starts from (the caller's
            parameters at the first call of each period), shaped like them, in their dtypes;
            None in opaque mode.
    """

    steps_since_sync: jax.Array
    opt_state: OptState
    adv_state: OptState
    cache: PyTree | None


def sam(
    optimizer: GradientTransformation,
    adv_optimizer: GradientTransformation | None = None,
    rho: float | jax.Array | None = None,
    sync_period: int = 2,
    reset_state: bool = True,
    opaque_mode: bool = False,
    batch_axis_name: Hashable | None = None,
    adaptive: bool = False,
    eps: float | jax.Array = 1e-12,
) -> GradientTransformation:
    r"""Sharpness-Aware Minimization around ``optimizer``: its step uses the gradient taken
    at the parameters moved uphill by the adversarial ascent.

    With :math:`\theta` the parameters, :math:`k` = ``sync_period`` and :math:`g_0` the
    gradient at :math:`\theta` (the ``updates`` given), one SAM step makes :math:`k - 1`
    ascent steps and then one step of ``optimizer`` from :math:`\theta`:

    .. math::
        \theta^{(0)} &= \theta, \qquad
        \theta^{(i)} = \theta^{(i-1)} + e\bigl(g_{i-1}, \theta^{(i-1)}\bigr), \qquad
        g_i = \nabla L\bigl(\theta^{(i)}\bigr) \quad (1 \le i < k) \\
        \theta &\leftarrow \theta + \mathrm{optimizer}\bigl(g_{k-1};\ \theta\bigr)

    The built-in ascent (``adv_optimizer=None``) is SAM's, or ASAM's with ``adaptive=True``,
    with :math:`T_w = \mathrm{diag}(\lvert w\rvert)` in ASAM and the identity in SAM, the norm
    taken over all the leaves together:

    .. math::
        e(g, w) = \frac{\rho}{\lVert T_w\, g\rVert_2 + \epsilon}\; T_w^2\, g

    so the standard SAM step (``sync_period=2``) is
    :math:`\theta \leftarrow \theta + \mathrm{optimizer}(\nabla L(\theta + e(\nabla
    L(\theta), \theta)))`. Given an ``adv_optimizer`` instead, :math:`e(g, w)` is minus its
    update: it is written as a descent, as in Optax (with
    ``optax.chain(optax.contrib.normalize(), optax.sgd(rho))`` it ascends by ``rho`` along the
    normalized gradient; any gradtx or Optax transformation may be given), and its state is
    reset to its ``init`` after each outer step when ``reset_state``.

    **Transparent mode** (the default) spreads the :math:`k` steps over :math:`k` calls of
    ``update``, each given the gradient at the parameters the caller holds: calls
    :math:`1 \dots k-1` return :math:`e(g_{i-1}, \theta^{(i-1)})` (the parameters visit the
    perturbed points), and call :math:`k` returns :math:`\theta + \mathrm{optimizer}(g_{k-1};
    \theta) - \theta^{(k-1)}`, which takes them back and steps. So the parameters are SAM's
    every ``sync_period`` calls, up to the rounding of the way back. The parameters
    :math:`\theta` of the outer step are kept in ``state.cache``.

    **Opaque mode** (``opaque_mode=True``) makes the whole SAM step in one call, so the rest
    of the training loop never sees the perturbed parameters (needed when something besides
    the parameters changes at each forward pass, such as batch-norm statistics): ``update``
    needs the extra argument ``grad_fn``, a function ``grad_fn(params, i)`` returning the
    gradient at ``params`` for the ascent step ``i`` (``0 ≤ i < k - 1``), and calls it
    :math:`k - 1` times. A missing ``grad_fn`` raises a ``ValueError`` naming it. Under
    ``jit``, call ``update`` inside the jitted function, where ``grad_fn`` may close over the
    batch. With ``batch_axis_name``, each :math:`g_i` from ``grad_fn`` is averaged over that
    named axis (``jax.lax.pmean``; a ``pmap`` or ``vmap`` axis, or a mesh axis under
    ``shard_map``); the ``updates`` given must already be averaged by the caller.

    ``update`` needs ``params`` in both modes. Other extra arguments reach ``optimizer`` and
    ``adv_optimizer``.

    Reference: ``pytorch_optimizer.SAM`` (pytorch-optimizer 4.1.0). ``sam(opt, rho=rho,
    adaptive=adaptive, eps=perturb_eps)``, in either mode, moves the parameters as the
    reference's ``step(closure)`` (``first_step``, the gradient at the perturbed parameters,
    ``second_step``) does around the torch counterpart of ``opt`` (its ``base_optimizer``).
    Its other options (``use_gc``, several parameter groups) have no counterpart here. One
    difference of precision: the reference computes the scale :math:`\rho / (\lVert T_w
    g\rVert + \epsilon)` in float32 whatever the parameters' dtype (it rounds each leaf's norm
    to float32 before summing their squares), so for float64 parameters its perturbation is
    exact to about 1e-7 only; gradtx takes the norm as :func:`gradtx.global_norm` does, in the
    widest parameter dtype (at least float32), and divides in that dtype. With the reference's
    norm taken in float64, the two agree to 1e-9 in float64 (``tests/test_sam.py``); as it
    is, to the precision of its float32 scale.

    Differences from ``optax.contrib.sam`` (read in Optax 0.2.8's source): Optax needs an
    ``adv_optimizer``; here it may be left out for the built-in ascent above, which has
    ``rho``, ``adaptive`` and ``eps`` (Optax's ``chain(normalize(), sgd(rho))`` divides by
    the norm with no :math:`\epsilon`: ``eps=0.0`` agrees with it to rounding). Given an
    ``adv_optimizer``, the parameters move as Optax's in both modes, apart from the rounding
    of the way back (Optax adds :math:`\theta - \theta^{(k-1)}` to the update, gradtx
    subtracts :math:`\theta^{(k-1)}` from :math:`\theta` plus the update). With
    ``sync_period=1`` in transparent mode, each of Optax's steps starts from the parameters
    before the previous step (its cache is one call old), so each call undoes the previous
    one; here every call is a step of ``optimizer`` alone, as in opaque mode. Optax ignores
    ``batch_axis_name`` in transparent mode; here it raises. Optax runs ``optimizer`` at every
    call and discards its result on ascent calls; here, under ``jit``, only the branch taken
    runs (a ``lax.cond``).

    Args:
        optimizer: the outer optimizer, any transformation (``gx.sgd``, ``gx.adam``, ...).
        adv_optimizer: the ascent, written as a descent (its update is negated); None for
            the built-in ascent :math:`e(g, w)`.
        rho: :math:`\rho \ge 0`, the radius of the built-in ascent; a float or an array (it
            may be traced). None (the default) is 0.05, the reference's. It must be left None
            when an ``adv_optimizer`` is given (the radius is then that optimizer's learning
            rate); giving both raises ``ValueError``.
        sync_period: :math:`k`, a positive Python int: one outer step per :math:`k - 1`
            ascent steps. 2 (the default) is SAM; 1 is ``optimizer`` alone.
        reset_state: re-``init`` the state of ``adv_optimizer`` after each outer step
            (default True).
        opaque_mode: make the whole step in one call, with ``grad_fn`` (default False).
        batch_axis_name: in opaque mode, the axis name over which the gradients from
            ``grad_fn`` are averaged (a string or a tuple of them); None (the default) for
            none. Refused in transparent mode.
        adaptive: ASAM's weighting by :math:`\lvert w\rvert` (default False).
        eps: :math:`\epsilon \ge 0`, added to the norm (the reference's ``perturb_eps``,
            default 1e-12); a float or an array. With 0, a zero gradient gives NaN.

    ``adaptive`` and ``eps`` configure the built-in ascent only: given with an
    ``adv_optimizer`` and different from their defaults, they raise ``ValueError``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import gradtx as gx
        >>> loss = lambda p: 0.5 * jnp.sum(p["w"] ** 2)
        >>> params = {"w": jnp.array([3.0, 4.0])}  # the gradient is w; it ascends to 1.1 w
        >>> opt = gx.sam(gx.sgd(0.1), rho=0.5, opaque_mode=True)
        >>> state = opt.init(params)
        >>> grad_fn = lambda p, i: jax.grad(loss)(p)
        >>> updates, state = opt.update(jax.grad(loss)(params), state, params, grad_fn=grad_fn)
        >>> [round(w, 4) for w in gx.apply_updates(params, updates)["w"].tolist()]  # w - 0.11 w
        [2.67, 3.56]

        The same step in transparent mode takes two calls; the first goes to the perturbed
        point, the second comes back and steps:

        >>> opt = gx.sam(gx.sgd(0.1), rho=0.5)
        >>> state = opt.init(params)
        >>> for _ in range(2):
        ...     updates, state = opt.update(jax.grad(loss)(params), state, params)
        ...     params = gx.apply_updates(params, updates)
        ...     print([round(w, 4) for w in params["w"].tolist()])
        [3.3, 4.4]
        [2.67, 3.56]
    """
    core._check_transforms((optimizer,), _NAME)
    period = validation.check_static_int("sync_period", sync_period)
    validation.check_bool("reset_state", reset_state)
    validation.check_bool("opaque_mode", opaque_mode)
    validation.check_bool("adaptive", adaptive)
    axis_name = _check_axis_name(batch_axis_name, opaque_mode)
    if adv_optimizer is None:
        rho = _DEFAULT_RHO if rho is None else rho
        _check_rho(rho)
        validation.check_non_negative("eps", eps)
        ascent = _built_in_ascent(rho, adaptive, eps)
    else:
        core._check_transforms((adv_optimizer,), _NAME)
        _check_built_in_args_unused(rho, adaptive, eps)
        ascent = _ascent_of(adv_optimizer)

    step = core.with_extra_args(optimizer.update)

    def init_adv(params):
        if adv_optimizer is None:
            return EmptyState()
        # Its steps are not the enclosing optimizer's: it keeps counts of its own.
        with live.own_counts():
            return adv_optimizer.init(params)

    def init(params):
        with live.own_counts():  # it skips the ascent calls
            opt_state = optimizer.init(params)
        return SAMState(
            steps_since_sync=zero_count(),
            opt_state=opt_state,
            adv_state=init_adv(params),
            cache=None if opaque_mode else jax.tree_util.tree_map(jnp.array, params),
        )

    def opaque_update(updates, state, params=None, **extra_args):
        _tree.check_params(params, updates, name=_NAME)
        grad_fn = extra_args.get("grad_fn")
        if grad_fn is None:  # missing, or None as Optax's default: the same error
            others = {k: v for k, v in extra_args.items() if k != "grad_fn"}
            core.extra_arg(others, "grad_fn", f"{_NAME} (opaque_mode=True)")
        if not callable(grad_fn):
            raise TypeError(
                f"{_NAME}: the extra argument `grad_fn` must be a function grad_fn(params, i) "
                f"returning the gradient at params, got {grad_fn!r}."
            )
        grads, adv_params, adv_state = updates, params, state.adv_state
        for i in range(period - 1):
            perturbation, adv_state = ascent(grads, adv_state, adv_params, **extra_args)
            adv_params = core.apply_updates(adv_params, perturbation)
            grads = grad_fn(adv_params, i)
            _tree.check_match(
                params, grads, reference_name="params", other_name="gradients from grad_fn"
            )
            if axis_name is not None:
                grads = jax.lax.pmean(grads, axis_name)
        if reset_state:
            adv_state = init_adv(params)
        out, opt_state = step(grads, state.opt_state, params, **extra_args)
        return out, SAMState(
            steps_since_sync=state.steps_since_sync,
            opt_state=opt_state,
            adv_state=adv_state,
            cache=None,
        )

    def transparent_update(updates, state, params=None, **extra_args):
        _tree.check_params(params, updates, name=_NAME)
        _tree.check_match(params, state.cache, reference_name="params", other_name="cache")
        position = state.steps_since_sync
        # The outer step starts from the cache, set at the first call of the period; with a
        # period of 1 that is this very call, so from the parameters themselves.
        outer = params if period == 1 else state.cache

        def outer_step():
            d, opt_state = step(updates, state.opt_state, outer, **extra_args)

            def back_and_step(o, u, p):
                return ((o + u).astype(p.dtype) - p).astype(p.dtype)

            out = jax.tree_util.tree_map(back_and_step, outer, d, params)
            adv_state = init_adv(params) if reset_state else state.adv_state
            return out, opt_state, adv_state, outer

        def ascent_step():
            perturbation, adv_state = ascent(updates, state.adv_state, params, **extra_args)
            out = jax.tree_util.tree_map(lambda e, p: e.astype(p.dtype), perturbation, params)
            first = position == 0
            cache = jax.tree_util.tree_map(
                lambda p, c: jnp.where(first, p, c).astype(c.dtype), params, state.cache
            )
            return out, state.opt_state, adv_state, cache

        if period == 1:
            branches = outer_step()
        else:
            branches = _either(position == period - 1, outer_step, ascent_step)
        out, opt_state, adv_state, cache = branches
        return out, SAMState(
            steps_since_sync=((position + 1) % period).astype(jnp.int32),
            opt_state=opt_state,
            adv_state=adv_state,
            cache=cache,
        )

    if opaque_mode:
        # grad_fn takes the caller's tree of parameters: it cannot run on packed buffers.
        return GradientTransformation(init, opaque_update)
    flat = core.is_flattenable(optimizer) and (
        adv_optimizer is None or core.is_flattenable(adv_optimizer)
    )
    return flattenable(GradientTransformation(init, transparent_update), flat)


def _either(pred, if_true, if_false):
    """``if_true()`` when the boolean scalar ``pred`` holds, else ``if_false()``: a Python
    ``if`` eagerly, a ``lax.cond`` (only the branch taken runs) when traced."""
    if not validation.is_traced(pred):
        return if_true() if bool(pred) else if_false()
    return jax.lax.cond(pred, if_true, if_false)


def _ascent_of(adv_optimizer):
    """The ascent of a user's ``adv_optimizer``: minus its update."""
    adv_update = core.with_extra_args(adv_optimizer.update)

    def ascent(grads, adv_state, params, **extra_args):
        d, adv_state = adv_update(grads, adv_state, params, **extra_args)
        return jax.tree_util.tree_map(jnp.negative, d), adv_state

    return ascent


def _built_in_ascent(rho, adaptive, eps):
    """The ascent :math:`e(g, w)` of SAM (ASAM with ``adaptive``), keeping no state."""

    def ascent(grads, adv_state, params, **extra_args):
        del extra_args
        pairs = [
            (g, p)
            for g, p in zip(
                jax.tree_util.tree_leaves(grads, is_leaf=_tree.is_none),
                jax.tree_util.tree_leaves(params, is_leaf=_tree.is_none),
                strict=True,
            )
            if g is not None
        ]
        norm = global_norm([_weighted(g, p, adaptive) for g, p in pairs])
        scale = jnp.asarray(live.read(rho), norm.dtype) / (
            norm + jnp.asarray(live.read(eps), norm.dtype)
        )

        def perturb(g, p):
            if g is None:
                return None
            s = scale.astype(jnp.result_type(g))
            return (p * p * g) * s if adaptive else g * s

        return jax.tree_util.tree_map(perturb, grads, params, is_leaf=_tree.is_none), adv_state

    return ascent


def _weighted(g, p, adaptive):
    """:math:`T_w g` for one leaf (ASAM's product at least in float32, as the reference)."""
    if not adaptive:
        return g
    wide = jnp.promote_types(jnp.result_type(g), jnp.float32)
    return g.astype(wide) * jnp.abs(p).astype(wide)


def _check_rho(rho) -> None:
    if callable(rho) and not live.is_live(rho):
        raise TypeError(f"`rho` must be a number or an array, got {rho!r}.")
    validation.check_non_negative("rho", rho)


def _check_built_in_args_unused(rho, adaptive, eps) -> None:
    """With an ``adv_optimizer``, the arguments of the built-in ascent must stay at their
    defaults: they could not be honoured."""
    if rho is not None:
        raise ValueError(
            f"{_NAME}: `rho` configures the built-in ascent, but an `adv_optimizer` is given "
            f"(got rho={rho!r}). Put the radius in the adv_optimizer (e.g. its learning rate) "
            "and leave rho=None, or leave adv_optimizer=None."
        )
    if adaptive is not False:
        raise ValueError(
            f"{_NAME}: `adaptive` configures the built-in ascent and cannot apply to a given "
            "`adv_optimizer`; leave adv_optimizer=None for ASAM."
        )
    if not _is_default_eps(eps):
        raise ValueError(
            f"{_NAME}: `eps` configures the built-in ascent and cannot apply to a given "
            f"`adv_optimizer` (got eps={eps!r})."
        )


def _is_default_eps(eps) -> bool:
    concrete = None if validation.is_traced(eps) or live.is_live(eps) else eps
    try:
        return concrete is not None and bool(np.asarray(concrete) == 1e-12)
    except (TypeError, ValueError):
        return False


def _check_axis_name(name, opaque_mode):
    if name is None:
        return None
    names = name if isinstance(name, tuple) else (name,)
    if not names or not all(isinstance(n, str) for n in names):
        raise TypeError(
            f"`batch_axis_name` must be an axis name (a string), a tuple of them, or None, "
            f"got {name!r}."
        )
    if not opaque_mode:
        raise ValueError(
            f"`batch_axis_name` applies in opaque mode only (to the gradients from grad_fn), "
            f"got batch_axis_name={name!r} with opaque_mode=False: in transparent mode, "
            "average the gradients before update."
        )
    return name

r"""D-Adaptation: Adam steps whose size :math:`d` is estimated as the run goes, from how far the
parameters have moved along the gradients. Two estimators share the machinery here: Prodigy's
(Mishchenko & Defazio, 2023) and D-Adapt Adam's (Defazio & Mishchenko, 2023).

Both keep per-parameter moments and a per-parameter sum :math:`s` of past gradients, and a few
scalars for the whole tree: the estimate :math:`d`, the running numerator it is estimated from,
and :math:`k`, the number of steps taken (those not skipped). Every step first sums two numbers
over all the parameters (a dot product of the gradient with a per-parameter quantity, and
:math:`\lVert s\rVert_1`), then sets :math:`d` from them, then steps every parameter with it.
The sums are over all the entries of all the leaves, so the result does not depend on how the
parameters are split into leaves (up to the order of summation): both transforms are
:func:`gradtx.flattenable` (Prodigy only with ``slice_p=1``; a stride over each leaf's entries
depends on where the leaves begin).

Like the references, a step whose :math:`\lVert s\rVert_1` is exactly zero (an all-zero
gradient while :math:`s` is still zero: typically a first step with no gradient) moves
nothing and leaves :math:`d`, the numerator and :math:`k` as they were; the moments take the
step's gradient as usual. A step with learning rate 0 leaves the whole state but the step
count as it was.

The scalars are kept in the default float dtype (float64 with ``jax_enable_x64``, as the
references keep them in Python floats); each leaf's contribution to the sums is computed in its
own dtype, at least float32. The per-parameter statistics are kept in the parameters' dtypes,
but in float32 for float16 parameters: they start at the scale of :math:`d_0 = 10^{-6}` (and
its square), below float16's range.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradtx import live, validation
from gradtx import tree as _tree
from gradtx.core import GradientTransformation, PyTree, ScalarOrSchedule, flattenable
from gradtx.transforms import counting
from gradtx.transforms.moments import ema_update


class ProdigyState(NamedTuple):
    """The state of :func:`scale_by_prodigy`.

    Attributes:
        mu: the first moment of :math:`d_k g` (prodigyopt's ``exp_avg``).
        nu: the second moment of :math:`d_k g` (``exp_avg_sq``).
        s: the weighted sum of past gradients (``s``), over every ``slice_p``-th entry.
        p0: the parameters at ``init`` (``p0``), over every ``slice_p``-th entry.
        d: the step-size estimate :math:`d` (the param group's ``d``).
        d_max: the largest estimate so far (``d_max``).
        numerator: the weighted numerator of the estimate (``d_numerator``).
        k: the steps taken, less those skipped (``k``); bias correction counts these.
        count: the steps taken, for a schedule as learning rate; None inside an optimizer.
    """

    mu: PyTree
    nu: PyTree
    s: PyTree
    p0: PyTree
    d: jax.Array
    d_max: jax.Array
    numerator: jax.Array
    k: jax.Array
    count: jax.Array | None


class DAdaptAdamState(NamedTuple):
    """The state of :func:`scale_by_dadapt_adam`.

    Attributes:
        mu: the first moment of :math:`d_k \\eta_k g` (dadaptation's ``exp_avg``).
        nu: the second moment of :math:`g` (``exp_avg_sq``).
        s: the moving average of :math:`d_k \\eta_k g` (``s``).
        d: the step-size estimate :math:`d` (the param group's ``d``).
        numerator: the weighted numerator of the estimate (``numerator_weighted``).
        k: the steps taken, less those skipped (``k``); bias correction counts these.
        count: the steps taken, for a schedule as learning rate; None inside an optimizer.
    """

    mu: PyTree
    nu: PyTree
    s: PyTree
    d: jax.Array
    numerator: jax.Array
    k: jax.Array
    count: jax.Array | None


# --------------------------------------------------------------------------------------------
# What both estimators share


def _scalar_dtype():
    return jnp.result_type(float)


def _scalar(value) -> jax.Array:
    """A hyperparameter's value at this step (read if it is live) as a scalar of the
    estimator's dtype."""
    return jnp.asarray(live.read(value), _scalar_dtype())


def _larger(a, b):
    """Python's ``max(a, b)``: ``b`` only where ``b > a``, so a NaN ``b`` leaves ``a``."""
    return jnp.where(b > a, b, a)


def _smaller(a, b):
    """Python's ``min(a, b)``: ``b`` only where ``b < a``, so a NaN ``b`` leaves ``a``."""
    return jnp.where(b < a, b, a)


def _check_common(learning_rate, b1, b2, eps, weight_decay, d0, growth_rate) -> None:
    validation.check_non_negative("learning_rate", learning_rate)
    validation.check_unit_interval("b1", b1)
    validation.check_unit_interval("b2", b2)
    validation.check_interval("eps", eps, 0.0, low_closed=False)
    validation.check_non_negative("weight_decay", weight_decay)
    validation.check_interval("d0", d0, 0.0, low_closed=False)
    validation.check_interval("growth_rate", growth_rate, 1.0)


class _Step(NamedTuple):
    """This step's shared scalars: the learning rate, whether the step is active (a positive
    learning rate, the references' ``group_lr > 0``), the betas, and
    :math:`d\\,\\eta\\,\\text{bias correction}` (``dlr``)."""

    lr: jax.Array
    active: jax.Array
    b1: jax.Array
    b2: jax.Array
    dlr: jax.Array


def _begin(state, learning_rate, b1, b2, use_bias_correction: bool, name: str):
    """The learning rate (a schedule evaluated at the step count), the betas and ``dlr``, and
    the count to store."""
    taken, count = counting.advance(state.count, name)
    lr = learning_rate(taken) if callable(learning_rate) else learning_rate
    lr, beta1, beta2 = _scalar(lr), _scalar(b1), _scalar(b2)
    rate = lr
    if use_bias_correction:
        t = state.k.astype(_scalar_dtype()) + 1
        rate = lr * (jnp.sqrt(1 - beta2**t) / (1 - beta1**t))
    return _Step(lr, lr > 0, beta1, beta2, state.d * rate), count


def _sums(leaf: Callable, name: str, updates, params, trees: tuple, read_only: tuple = ()):
    """Runs ``leaf(g, p, *t, *r) -> (sums, *new_t)`` on every leaf (all cast to their widest
    dtype), where ``t`` are the leaves of ``trees``, ``r`` those of ``read_only`` and ``sums``
    a vector of per-leaf reductions; returns ``sums`` added over all the leaves, in the scalar
    dtype, and the new ``trees`` (each leaf in its old dtype)."""
    _tree.check_params(params, updates, name=name)
    _tree.check_match(trees[0], updates, reference_name=f"{name} state", other_name="updates")

    def one(g, p, *stored):
        sums, *new = leaf(*_tree.widen(g, p, *stored))
        return (sums.astype(_scalar_dtype()),
                *(n.astype(s.dtype) for n, s in zip(new, stored[:len(trees)], strict=True)))

    results = jax.tree_util.tree_map(one, updates, params, *trees, *read_only)
    parts = _tree.split_tuples(results, updates, 1 + len(trees))
    per_leaf = jax.tree_util.tree_leaves(parts[0])
    total = sum(per_leaf[1:], per_leaf[0]) if per_leaf else jnp.zeros(2, _scalar_dtype())
    return total, parts[1:]


def _zeros(p) -> jax.Array:
    """A zero per-parameter statistic for the parameter ``p``: in its dtype, but float32 for a
    float16 one. The statistics start at the scale of :math:`d_0 = 10^{-6}` (and its square),
    below float16's smallest normal number (6e-5): stored in float16 they would be zero and
    the estimate would never start."""
    return _tree.fill_like(p, 0.0, jnp.float32 if jnp.result_type(p) == jnp.float16 else None)


def _accumulated(x: jax.Array) -> jax.Array:
    """``x`` in the dtype its sums are taken in: its own, at least float32."""
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _dot(a, b) -> jax.Array:
    return jnp.sum(_accumulated(a) * _accumulated(b))


def _l1(a) -> jax.Array:
    return jnp.sum(jnp.abs(_accumulated(a)))


def _root(x: jax.Array) -> jax.Array:
    """``sqrt(x)`` whose derivative at 0 is 0 rather than inf: :math:`d` depends on the
    learning rate and the moments on :math:`d`, so an entry whose gradient is always 0 would
    otherwise give ``jax.grad`` in the learning rate an ``inf * 0 = NaN``. Values (NaN too) are
    those of ``jnp.sqrt``."""
    zero = x == 0
    return jnp.where(zero, jnp.zeros_like(x), jnp.sqrt(jnp.where(zero, jnp.ones_like(x), x)))


def _kept(condition, new: PyTree, old: PyTree) -> PyTree:
    """``new`` where ``condition`` (a scalar) holds, else ``old``, leaf by leaf."""
    return jax.tree_util.tree_map(lambda n, o: jnp.where(condition, n, o), new, old)


def _adapted(state, step: _Step, moments: tuple, old_moments: tuple, l1, scalars: dict):
    """The state after a step: the moments move when the step is active, the scalars (and
    :math:`k`) when it also has :math:`\\lVert s\\rVert_1 \\ne 0`. Returns it and whether the
    parameters move."""
    moved = step.active & (l1 != 0)
    fields = {
        name: _kept(step.active, new, old)
        for name, new, old in zip(("mu", "nu", "s"), moments, old_moments, strict=True)
    }
    fields.update({name: jnp.where(moved, new, getattr(state, name)).astype(new.dtype)
                   for name, new in scalars.items()})
    fields["k"] = jnp.where(moved, counting.increment(state.k), state.k)
    return state._replace(**fields), moved


def _final_step(direction: Callable, updates, params, moments, weight_decay, step: _Step,
                moved) -> PyTree:
    """The update :math:`-\\text{direction}(g, m, v) - \\lambda\\,\\delta_k\\,\\theta` (the
    decay left out for a Python 0) where the step moves, zero elsewhere.

    With decay, the update is the difference between the parameters the references reach and
    :math:`\\theta`: they decay :math:`\\theta` in place, then step it (two roundings), and
    :math:`\\theta + ((\\theta(1-\\lambda\\delta_k) - \\text{step}) - \\theta)` is that
    result bit for bit wherever it is within a factor 2 of :math:`\\theta` (the subtraction is
    then exact). Last bits of :math:`\\theta` matter: Prodigy's numerator reads
    :math:`\\theta_0 - \\theta` after steps of size :math:`d_0`, a cancellation that turns
    one ulp into a relative 1e-10 of the estimate."""
    decay = None if validation.is_static_zero(weight_decay) else _scalar(weight_decay) * step.dlr

    def leaf(g, p, mu, nu):
        dtype = jnp.result_type(g)
        g, p, mu, nu = _tree.widen(g, p, mu, nu)
        out = -direction(g, mu, nu)
        if decay is not None:
            decayed = p + _tree.cast_like(-decay, p) * p
            out = (decayed + out) - p
        return jnp.where(moved, out, jnp.zeros_like(out)).astype(dtype)

    return jax.tree_util.tree_map(leaf, updates, params, *moments)


# --------------------------------------------------------------------------------------------
# Prodigy


def scale_by_prodigy(
    learning_rate: ScalarOrSchedule = 1.0,
    b1: float | jax.Array = 0.9,
    b2: float | jax.Array = 0.999,
    beta3: float | jax.Array | None = None,
    eps: float | jax.Array = 1e-8,
    weight_decay: float | jax.Array = 0.0,
    use_bias_correction: bool = False,
    safeguard_warmup: bool = False,
    d0: float | jax.Array = 1e-6,
    d_coef: float | jax.Array = 1.0,
    growth_rate: float | jax.Array = float("inf"),
    slice_p: int = 1,
) -> GradientTransformation:
    r"""Prodigy's step (Mishchenko & Defazio, 2023, Algorithm 4 with prodigyopt 1.1's
    options), learning rate and decoupled weight decay included: it outputs the update to
    add to the parameters. With :math:`\hat\imath` every ``slice_p``-th entry,
    :math:`\theta_0` the parameters at ``init`` and :math:`r_k` the bias correction
    :math:`\sqrt{1-\beta_2^{k+1}}/(1-\beta_1^{k+1})` (1 without ``use_bias_correction``):

    .. math::
        \delta_k &= d_k\,\eta_t\, r_k \\
        m &\leftarrow \beta_1 m + (1-\beta_1)\, d_k g, \qquad
        v \leftarrow \beta_2 v + (1-\beta_2)\, d_k^2 g^2 \\
        s &\leftarrow \beta_3 s + \tfrac{d_k}{d_0}\,(d_k \text{ if safeguard else }
            \delta_k)\, g_{\hat\imath} \\
        N_{k+1} &= \beta_3 N_k + \tfrac{d_k}{d_0}\,\delta_k\,
            \langle g_{\hat\imath},\ \theta_{0,\hat\imath} - \theta_{\hat\imath} \rangle, \qquad
        \hat d = c\, N_{k+1} / \lVert s\rVert_1 \\
        d_{k+1} &= \min\bigl(d^{\max}_{k+1},\ \rho\, d'_k\bigr), \qquad
        d^{\max}_{k+1} = \max(d^{\max}_k, \hat d), \qquad
        d'_k = \max(d_k, \hat d) \text{ while } d_k = d_0, \text{ else } d_k \\
        u &= -\delta_k\, \frac{m}{\sqrt{v} + d_{k+1}\epsilon} - \lambda\,\delta_k\,\theta

    where :math:`g, \theta, s` and the moments are over all the leaves, and :math:`\beta_3`
    defaults to :math:`\sqrt{\beta_2}`. With :math:`\beta_1 = 0` the step uses
    :math:`d_{k+1} g` in place of :math:`m`, as prodigyopt does. :math:`c` is ``d_coef`` and
    :math:`\rho` ``growth_rate``; ``weight_decay`` here is the decoupled decay :math:`\lambda`
    (L2 decay is :func:`gradtx.add_decayed_weights` before this transform). A step with
    :math:`\lVert s\rVert_1 = 0` or :math:`\eta_t = 0` is skipped (see the module notes).

    ``slice_p > 1`` estimates :math:`d` from every ``slice_p``-th entry of each leaf (of its
    entries in row-major order): ``s`` and ``p0`` then hold those entries only, as flat
    vectors, and the transformation is no longer :func:`gradtx.flattenable`.

    ``update`` needs ``params``. State: :class:`ProdigyState`.
    """
    _check_common(learning_rate, b1, b2, eps, weight_decay, d0, growth_rate)
    if beta3 is not None:
        validation.check_unit_interval("beta3", beta3)
    validation.check_interval("d_coef", d_coef, 0.0, low_closed=False)
    validation.check_bool("use_bias_correction", use_bias_correction)
    validation.check_bool("safeguard_warmup", safeguard_warmup)
    slice_p = validation.check_static_int("slice_p", slice_p)

    def sliced(x):
        return x if slice_p == 1 else jnp.ravel(x)[::slice_p]

    def init(params):
        d = _scalar(d0)
        return ProdigyState(
            mu=jax.tree_util.tree_map(_zeros, params),
            nu=jax.tree_util.tree_map(_zeros, params),
            s=jax.tree_util.tree_map(lambda p: sliced(_zeros(p)), params),
            # A copy: the parameters' own buffers may be donated to a jitted step later.
            p0=jax.tree_util.tree_map(lambda p: jnp.copy(sliced(p)), params),
            d=d,
            d_max=d,
            numerator=jnp.zeros([], _scalar_dtype()),
            k=counting.zero_count(),
            count=counting.init_count(),
        )

    def update(updates, state, params=None, **extra_args):
        del extra_args
        step, count = _begin(state, learning_rate, b1, b2, use_bias_correction,
                             "scale_by_prodigy")
        d, start = state.d, _scalar(d0)
        beta3_ = jnp.sqrt(step.b2) if beta3 is None else _scalar(beta3)
        ratio = d / start
        s_rate = ratio * (d if safeguard_warmup else step.dlr)

        def leaf(g, p, mu, nu, s, p0):
            g_sliced = sliced(g)
            mu = ema_update(mu, _tree.cast_like(d, g) * g, step.b1)
            nu = ema_update(nu, jnp.square(_tree.cast_like(d, g) * g), step.b2)
            s = _tree.cast_like(beta3_, s) * s + _tree.cast_like(s_rate, s) * g_sliced
            return jnp.stack([_dot(g_sliced, p0 - sliced(p)), _l1(s)]), mu, nu, s

        (dot, l1), (mu, nu, s) = _sums(
            leaf, "scale_by_prodigy", updates, params, (state.mu, state.nu, state.s), (state.p0,)
        )
        numerator = beta3_ * state.numerator + ratio * step.dlr * dot
        # The estimate is kept only where l1 != 0: the other branch divides by 1, not 0, so
        # that its derivative (multiplied by 0) is not NaN.
        d_hat = _scalar(d_coef) * numerator / jnp.where(l1 != 0, l1, 1)
        d_max = _larger(state.d_max, d_hat)
        d_next = _smaller(d_max, jnp.where(d == start, _larger(d, d_hat), d)
                          * _scalar(growth_rate))
        new_state, moved = _adapted(
            state, step, (mu, nu, s), (state.mu, state.nu, state.s), l1,
            {"d": d_next, "d_max": d_max, "numerator": numerator},
        )

        def direction(g, mu, nu):
            denom = _root(nu) + _tree.cast_like(d_next * _scalar(eps), nu)
            with_momentum = _tree.cast_like(step.dlr, mu) * (mu / denom)
            without = _tree.cast_like(step.dlr * d_next, g) * (g / denom)
            return jnp.where(step.b1 > 0, with_momentum, without)

        out = _final_step(direction, updates, params, (mu, nu), weight_decay, step, moved)
        return out, new_state._replace(count=count)

    return flattenable(GradientTransformation(init, update), slice_p == 1)


# --------------------------------------------------------------------------------------------
# D-Adapt Adam


def scale_by_dadapt_adam(
    learning_rate: ScalarOrSchedule = 1.0,
    b1: float | jax.Array = 0.9,
    b2: float | jax.Array = 0.999,
    eps: float | jax.Array = 1e-8,
    weight_decay: float | jax.Array = 0.0,
    use_bias_correction: bool = False,
    d0: float | jax.Array = 1e-6,
    growth_rate: float | jax.Array = float("inf"),
) -> GradientTransformation:
    r"""D-Adapt Adam's step (Defazio & Mishchenko, 2023, Algorithm 4 as dadaptation 3.2
    implements it), learning rate and decoupled weight decay included: it outputs the update
    to add to the parameters. With :math:`r_k` the bias correction
    :math:`\sqrt{1-\beta_2^{k+1}}/(1-\beta_1^{k+1})` (1 without ``use_bias_correction``) and
    :math:`\gamma = \sqrt{\beta_2}`:

    .. math::
        \delta_k &= d_k\,\eta_t\, r_k \\
        N_{k+1} &= \gamma N_k + (1-\gamma)\,\delta_k
            \Bigl\langle g,\ \frac{s}{\sqrt{v} + \epsilon} \Bigr\rangle
            \quad \text{(with the } s, v \text{ of the previous step)} \\
        m &\leftarrow \beta_1 m + (1-\beta_1)\, \delta_k g, \qquad
        v \leftarrow \beta_2 v + (1-\beta_2)\, g^2, \qquad
        s \leftarrow \gamma s + (1-\gamma)\, \delta_k g \\
        d_{k+1} &= \max\Bigl(d_k,\ \min\Bigl(\frac{N_{k+1}}{(1-\gamma)\lVert s\rVert_1},\
            \rho\, d_k\Bigr)\Bigr) \\
        u &= -\frac{m}{\sqrt{v} + \epsilon} - \lambda\,\delta_k\,\theta

    over all the leaves at once; :math:`\rho` is ``growth_rate`` and ``weight_decay`` the
    decoupled decay :math:`\lambda` (``DAdaptAdam(decouple=True)``; its ``decouple=False`` is
    :func:`gradtx.add_decayed_weights` before this transform, with ``weight_decay=0`` here). A
    step with :math:`\lVert s\rVert_1 = 0` or :math:`\eta_t = 0` is skipped (see the module
    notes).

    ``update`` needs ``params``. State: :class:`DAdaptAdamState`.
    """
    _check_common(learning_rate, b1, b2, eps, weight_decay, d0, growth_rate)
    validation.check_bool("use_bias_correction", use_bias_correction)

    def init(params):
        return DAdaptAdamState(
            mu=jax.tree_util.tree_map(_zeros, params),
            nu=jax.tree_util.tree_map(_zeros, params),
            s=jax.tree_util.tree_map(_zeros, params),
            d=_scalar(d0),
            numerator=jnp.zeros([], _scalar_dtype()),
            k=counting.zero_count(),
            count=counting.init_count(),
        )

    def update(updates, state, params=None, **extra_args):
        del extra_args
        step, count = _begin(state, learning_rate, b1, b2, use_bias_correction,
                             "scale_by_dadapt_adam")
        gamma = jnp.sqrt(step.b2)
        epsilon = _scalar(eps)

        def leaf(g, p, mu, nu, s):
            del p
            dot = _dot(g, s / (_root(nu) + _tree.cast_like(epsilon, nu)))
            scaled = _tree.cast_like(step.dlr, g) * g
            mu = ema_update(mu, scaled, step.b1)
            nu = ema_update(nu, jnp.square(g), step.b2)
            s = ema_update(s, scaled, gamma)
            return jnp.stack([dot, _l1(s)]), mu, nu, s

        (dot, l1), (mu, nu, s) = _sums(
            leaf, "scale_by_dadapt_adam", updates, params, (state.mu, state.nu, state.s)
        )
        numerator = gamma * state.numerator + (1 - gamma) * (step.dlr * dot)
        d_hat = numerator / ((1 - gamma) * jnp.where(l1 != 0, l1, 1))  # as in Prodigy
        d_next = _larger(state.d, _smaller(d_hat, state.d * _scalar(growth_rate)))
        new_state, moved = _adapted(
            state, step, (mu, nu, s), (state.mu, state.nu, state.s), l1,
            {"d": d_next, "numerator": numerator},
        )

        def direction(g, mu, nu):
            del g
            return mu / (_root(nu) + _tree.cast_like(epsilon, nu))

        out = _final_step(direction, updates, params, (mu, nu), weight_decay, step, moved)
        return out, new_state._replace(count=count)

    return flattenable(GradientTransformation(init, update))

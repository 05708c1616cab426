r"""Adam's scaling and those of its relatives: Adamax, RAdam, AdaBelief and Yogi.

Adam divides a bias-corrected first moment by the root of a bias-corrected second moment of
the same gradient (:func:`scale_by_adam`). Each relative changes that second statistic or the
way it divides:

* Adamax divides by a decayed running max of :math:`|g|`
  (:func:`~gradtx.weighted_infinity_norm`).
* RAdam multiplies by a *rectified* inverse root of the second moment, or by 1 while the
  variance of that root is not yet tractable (:func:`radam_rectification`).
* Yogi divides by an additive second moment
  (:func:`~gradtx.yogi_second_moment`) and corrects no bias.
* AdaBelief divides by the moving variance of :math:`g_t - m_t`; that needs the first moment
  inside the second, so it is the one fused transform here (:func:`scale_by_belief`).
"""

from __future__ import annotations

import inspect
import math
import operator
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradtx import live, validation
from gradtx import tree as _tree
from gradtx.core import GradientTransformation, PyTree, chain, flattenable, parallel
from gradtx.transforms import counting, moments
from gradtx.transforms.root_scaling import divide_by_root

# RAdam's threshold on the length of the approximated simple moving average: the adaptive
# step is used only when rho_t > 5 (Liu et al., 2020; torch.optim.RAdam).
_RHO_THRESHOLD = 5.0


def _check_betas(b1, b2) -> None:
    # Checked before the inner transforms so that errors name b1/b2 rather than `decay`.
    validation.check_unit_interval("b1", b1)
    validation.check_unit_interval("b2", b2)


def _corrected_first_moment(b1, dtype) -> GradientTransformation:
    return chain(moments.ema(b1, dtype=dtype), moments.bias_correction(b1))



def scale_by_adam(
    b1: float | jax.Array = 0.9,
    b2: float | jax.Array = 0.999,
    eps: float | jax.Array = 1e-8,
    amsgrad: bool = False,
    *,
    eps_root: float | jax.Array = 0.0,
    nesterov: bool = False,
    mu_dtype=None,
    nu_dtype=None,
) -> GradientTransformation:
    """Adam's scaling (Kingma & Ba, 2015), or AMSGrad's with ``amsgrad=True``:

    .. math::
        \\hat m_t = \\frac{m_t}{1-\\beta_1^t}, \\qquad
        \\hat v_t = \\frac{v_t \\ \\text{or}\\ \\max_{i\\le t} v_i}{1-\\beta_2^t},
        \\qquad \\text{out}_t = \\frac{\\hat m_t}{\\sqrt{\\hat v_t + \\epsilon_{\\text{root}}}
        + \\epsilon}

    AMSGrad takes the running max of the raw second moment and bias-corrects it afterwards, as
    torch does; ``optax.amsgrad`` takes the max of the bias-corrected moment instead.
    ``eps_root`` (Optax's; 0, torch's, leaves it out) keeps the root's derivative finite at
    :math:`\\hat v = 0`. ``nesterov=True`` replaces :math:`\\hat m_t` by Dozat's look-ahead
    (:func:`nesterov_first_moment`), as ``optax.scale_by_adam(nesterov=True)``; with both, this
    is ``optax.scale_by_adam`` with the same arguments. :math:`m` is stored in ``mu_dtype``,
    :math:`v` (and its running max) in ``nu_dtype`` (default: the parameters' dtype).
    """
    _check_betas(b1, b2)
    validation.check_bool("nesterov", nesterov)
    first = (nesterov_first_moment(b1, dtype=mu_dtype) if nesterov
             else _corrected_first_moment(b1, mu_dtype))
    validation.check_bool("amsgrad", amsgrad)
    raw_second = moments.ema_of_squares(b2, dtype=nu_dtype)
    if amsgrad:
        raw_second = chain(raw_second, moments.running_max(dtype=nu_dtype))
    second = chain(raw_second, moments.bias_correction(b2))
    return divide_by_root(first, second, eps=eps, eps_root=eps_root)


class NesterovFirstMomentState(NamedTuple):
    """The state of :func:`nesterov_first_moment`: the moving average ``mu`` (:math:`m`) and
    the number of updates seen (None inside an optimizer, which keeps one count for all its
    transforms)."""

    mu: PyTree
    count: jax.Array | None


def nesterov_first_moment(decay: float | jax.Array = 0.9, *, dtype=None) -> GradientTransformation:
    r"""Adam's bias-corrected first moment with Dozat's Nesterov look-ahead (Dozat, 2016,
    "Incorporating Nesterov Momentum into Adam"), as Optax's ``scale_by_adam(nesterov=True)``
    computes it:

    .. math::
        m_t = \beta m_{t-1} + (1-\beta) u_t, \qquad
        \text{out}_t = \beta\, \frac{m_t}{1-\beta^{t+1}} + (1-\beta)\, \frac{u_t}{1-\beta^t}

    (Dozat's momentum schedule, torch's NAdam, is left out.) :math:`m` is stored in ``dtype``
    (default: the parameters').
    """
    validation.check_unit_interval("decay", decay)
    dtype = validation.check_state_dtype("dtype", dtype)

    def init(params):
        return NesterovFirstMomentState(
            mu=_tree.full_like(params, 0.0, dtype), count=counting.init_count()
        )

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        taken, count = counting.advance(state.count, "nesterov_first_moment")
        t = counting.as_float(taken) + 1
        beta = live.read(decay)
        b = jnp.asarray(beta, t.dtype)
        now, ahead = 1 - b**t, 1 - b ** (t + 1)

        def leaf(u, m):
            m = moments.ema_update(m, u, beta)
            c = _tree.cast_like(beta, m)
            out = c * (m / _tree.cast_like(ahead, m)) + (1 - c) * (u / _tree.cast_like(now, u))
            return out, m

        out, (mu,) = _tree.leafwise(leaf, updates, state.mu, name="nesterov_first_moment")
        return out, NesterovFirstMomentState(mu=mu, count=count)

    return flattenable(GradientTransformation(init, update))


def scale_by_adamax(
    b1: float | jax.Array = 0.9,
    b2: float | jax.Array = 0.999,
    eps: float | jax.Array = 1e-8,
    *,
    mu_dtype=None,
    nu_dtype=None,
) -> GradientTransformation:
    r"""Adamax's scaling (Kingma & Ba, 2015, section 7.1), as in ``torch.optim.Adamax``:

    .. math::
        \hat m_t = \frac{m_t}{1-\beta_1^t}, \qquad
        s_t = \max(\beta_2 s_{t-1},\ |g_t| + \epsilon), \qquad
        \text{out}_t = \frac{\hat m_t}{s_t}

    It is ``parallel(chain(ema(β1), bias_correction(β1)), weighted_infinity_norm(β2, ε),
    combine=divide)``.
    The first moment is stored in ``mu_dtype``, the second statistic in ``nu_dtype``
    (default: the parameters' dtype).
    """
    _check_betas(b1, b2)
    return parallel(
        _corrected_first_moment(b1, mu_dtype),
        moments.weighted_infinity_norm(b2, eps, dtype=nu_dtype),
        combine=operator.truediv,
        elementwise=True,
    )


class RectificationState(NamedTuple):
    r"""The number of updates seen so far (the :math:`t` of :math:`\rho_t`); None inside an
    optimizer, which keeps one count for all its transforms."""

    count: jax.Array | None


def radam_rectification(
    decay: float | jax.Array = 0.999, eps: float | jax.Array = 1e-8
) -> GradientTransformation:
    r"""RAdam's rectified inverse root (Liu et al., 2020), as torch.optim.RAdam computes it.

    Its input is the raw moving second moment :math:`v_t` (place it after
    :func:`gradtx.ema_of_squares` with the same ``decay``). With
    :math:`\beta` = ``decay`` and :math:`t` counting this transformation's updates from 1:

    .. math::
        \rho_\infty = \frac{2}{1-\beta} - 1, \qquad
        \rho_t = \rho_\infty - \frac{2t\beta^t}{1-\beta^t}, \qquad
        r_t = \sqrt{\frac{(\rho_t-4)(\rho_t-2)\rho_\infty}{(\rho_\infty-4)(\rho_\infty-2)\rho_t}}

        \text{out}_t = \begin{cases}
            r_t\, \dfrac{\sqrt{1-\beta^t}}{\sqrt{v_t} + \epsilon} & \rho_t > 5 \\[1ex]
            1 & \rho_t \le 5
        \end{cases}

    Multiplying the bias-corrected first moment by it gives RAdam's step. Note where eps sits:
    :math:`\sqrt{1-\beta^t}/(\sqrt{v_t}+\epsilon)`, torch's form, is
    :math:`1/(\sqrt{\hat v_t} + \epsilon/\sqrt{1-\beta^t})`, not Adam's
    :math:`1/(\sqrt{\hat v_t}+\epsilon)`.
    """
    validation.check_unit_interval("decay", decay)
    validation.check_non_negative("eps", eps)

    def init(params):
        del params
        return RectificationState(count=counting.init_count())

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        taken, count = counting.advance(state.count, "radam_rectification")
        t = counting.as_float(taken) + 1
        epsilon = live.read(eps)
        # Per-step scalars, computed once in the default float dtype (as bias_correction does),
        # in torch's order of operations so that the rho_t > 5 test agrees with torch's.
        beta = jnp.asarray(live.read(decay), t.dtype)
        beta_t = beta**t
        correction = 1 - beta_t
        rho_inf = 2 / (1 - beta) - 1
        rho = rho_inf - 2 * t * beta_t / correction
        adaptive = rho > _RHO_THRESHOLD
        ratio = (rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho)
        # The ratio is negative (or 0/0) when rho_t <= 5; that branch is never taken, but a NaN
        # there would still poison gradients taken through jnp.where, so it is replaced first.
        factor = jnp.sqrt(jnp.where(adaptive, ratio, 1.0)) * jnp.sqrt(correction)

        def leaf(v):
            scaled = _tree.cast_like(factor, v) / (jnp.sqrt(v) + _tree.cast_like(epsilon, v))
            return jnp.where(adaptive, scaled, jnp.ones_like(v))

        out = jax.tree_util.tree_map(leaf, updates)
        return out, RectificationState(count=count)

    return flattenable(GradientTransformation(init, update))


def scale_by_radam(
    b1: float | jax.Array = 0.9,
    b2: float | jax.Array = 0.999,
    eps: float | jax.Array = 1e-8,
    *,
    mu_dtype=None,
    nu_dtype=None,
) -> GradientTransformation:
    r"""RAdam's scaling (Liu et al., 2020), as in ``torch.optim.RAdam``:

    .. math::
        \text{out}_t = \hat m_t \cdot \begin{cases}
            r_t \sqrt{1-\beta_2^t} / (\sqrt{v_t} + \epsilon) & \rho_t > 5 \\
            1 & \rho_t \le 5
        \end{cases}

    with :math:`\hat m_t` Adam's bias-corrected first moment, :math:`v_t` the raw moving
    second moment, and :math:`\rho_t, r_t` as in :func:`radam_rectification`. It is
    ``parallel(chain(ema(β1), bias_correction(β1)), chain(ema_of_squares(β2),
    radam_rectification(β2, ε)), combine=multiply)``. The second moment is updated at every
    step, also while it is not used.
    The first moment is stored in ``mu_dtype``, the second statistic in ``nu_dtype``
    (default: the parameters' dtype).
    """
    _check_betas(b1, b2)
    return parallel(
        _corrected_first_moment(b1, mu_dtype),
        chain(moments.ema_of_squares(b2, dtype=nu_dtype), radam_rectification(b2, eps)),
        combine=operator.mul,
        elementwise=True,
    )


def scale_by_yogi(
    b1: float | jax.Array = 0.9,
    b2: float | jax.Array = 0.999,
    eps: float | jax.Array = 1e-3,
    initial_accumulator_value: float | jax.Array = 1e-6,
    *,
    mu_dtype=None,
    nu_dtype=None,
) -> GradientTransformation:
    r"""Yogi's scaling (Zaheer et al., 2018, Algorithm 2), without bias correction as there:

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad
        v_t = v_{t-1} - (1-\beta_2)\operatorname{sign}(v_{t-1} - g_t^2)\, g_t^2, \qquad
        \text{out}_t = \frac{m_t}{\sqrt{v_t} + \epsilon}

    with :math:`m_0 = 0` and :math:`v_0` = ``initial_accumulator_value``. It is
    ``divide_by_root(ema(β1), yogi_second_moment(β2, v_0), eps=ε)``.
    The first moment is stored in ``mu_dtype``, the second statistic in ``nu_dtype``
    (default: the parameters' dtype).
    """
    _check_betas(b1, b2)
    validation.check_non_negative("initial_accumulator_value", initial_accumulator_value)
    return divide_by_root(
        moments.ema(b1, dtype=mu_dtype),
        moments.yogi_second_moment(b2, initial_accumulator_value, dtype=nu_dtype),
        eps=eps,
    )


class BeliefState(NamedTuple):
    """AdaBelief's first moment ``mu`` (:math:`m`), its belief ``nu`` (:math:`s`, the moving
    second moment of :math:`g - m`), and the number of updates seen (None inside an
    optimizer, which keeps one count for all its transforms)."""

    mu: PyTree
    nu: PyTree
    count: jax.Array | None


def scale_by_belief(
    b1: float | jax.Array = 0.9,
    b2: float | jax.Array = 0.999,
    eps: float | jax.Array = 1e-16,
    eps_root: float | jax.Array = 1e-16,
    *,
    mu_dtype=None,
    nu_dtype=None,
) -> GradientTransformation:
    r"""AdaBelief's scaling (Zhuang et al., 2020, Algorithm 2):

    .. math::
        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t \\
        s_t &= \beta_2 s_{t-1} + (1-\beta_2)(g_t - m_t)^2 + \epsilon_{\text{root}} \\
        \text{out}_t &= \frac{m_t / (1-\beta_1^t)}{\sqrt{s_t / (1-\beta_2^t)} + \epsilon}

    :math:`\epsilon_{\text{root}}` is added to the stored :math:`s_t`, so it accumulates
    (to :math:`\epsilon_{\text{root}}/(1-\beta_2)` in the long run), as in the paper and in the
    authors' ``adabelief-pytorch``, where one ``eps`` plays both roles.

    It is one transformation rather than a ``parallel`` of moments because :math:`s_t` is a
    statistic of :math:`g_t - m_t`: sharing one :math:`m` buffer needs both in one place (two
    ``ema(β1)`` branches would store :math:`m` twice). Both averages still go through
    :func:`gradtx.ema_update`.
    The first moment is stored in ``mu_dtype``, the second statistic in ``nu_dtype``
    (default: the parameters' dtype).
    """
    _check_betas(b1, b2)
    validation.check_non_negative("eps", eps)
    validation.check_non_negative("eps_root", eps_root)
    mu_dtype = validation.check_state_dtype("mu_dtype", mu_dtype)
    nu_dtype = validation.check_state_dtype("nu_dtype", nu_dtype)

    def init(params):
        return BeliefState(
            mu=_tree.full_like(params, 0.0, mu_dtype),
            nu=_tree.full_like(params, 0.0, nu_dtype),
            count=counting.init_count(),
        )

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        taken, count = counting.advance(state.count, "scale_by_belief")
        t = counting.as_float(taken) + 1
        beta1, beta2 = live.read(b1), live.read(b2)
        epsilon, epsilon_root = live.read(eps), live.read(eps_root)
        # Per-step scalars, computed once outside the elementwise work.
        inverse1 = 1 / (1 - jnp.asarray(beta1, t.dtype) ** t)
        inverse2 = 1 / (1 - jnp.asarray(beta2, t.dtype) ** t)

        def leaf(g, m, s):
            m = moments.ema_update(m, g, beta1)
            residual = g - m
            s = moments.ema_update(s, residual * residual, beta2)
            s = s + _tree.cast_like(epsilon_root, s)
            m_hat = m * _tree.cast_like(inverse1, m)
            s_hat = s * _tree.cast_like(inverse2, s)
            out = m_hat / (jnp.sqrt(s_hat) + _tree.cast_like(epsilon, s))
            return out, m, s

        out, (mu, nu) = _tree.leafwise(leaf, updates, state.mu, state.nu, name="scale_by_belief")
        return out, BeliefState(mu=mu, nu=nu, count=count)

    return flattenable(GradientTransformation(init, update))


def _adopt_clip(step):
    """ADOPT's default clipping bound at step ``t``: :math:`t^{1/4}`."""
    return step**0.25


def check_clip_value_fn(name, value):
    """None, or a function of one argument (the step)."""
    if value is None:
        return value
    if not callable(value) or isinstance(value, type):
        raise TypeError(
            f"`{name}` must be a function of the step t (1 at the first step), or None for no "
            f"clipping; got {value!r}."
        )
    try:
        inspect.signature(value).bind(1)
    except TypeError:
        raise ValueError(
            f"`{name}` must take one argument, the step t (1 at the first step); {value!r} "
            "cannot be called with one."
        ) from None
    except ValueError:  # no signature to read (some builtins): accept it
        pass
    return value


class AdoptState(NamedTuple):
    """:func:`scale_by_adopt`'s state: the moments and its step count."""

    mu: PyTree
    nu: PyTree
    count: jax.Array | None


def scale_by_adopt(
    b1: float | jax.Array = 0.9,
    b2: float | jax.Array = 0.9999,
    eps: float | jax.Array = 1e-6,
    clip_value_fn=_adopt_clip,
    *,
    mu_dtype=None,
    nu_dtype=None,
) -> GradientTransformation:
    r"""ADOPT's scaling (Taniguchi et al., 2024, "ADOPT: Modified Adam Can Converge with Any
    β2 with the Optimal Rate", Algorithm 2 with clipping): the gradient is normalised by the
    second moment of the *previous* steps, before it enters the first moment.

    .. math::
        t = 1:&\quad v_1 = g_1^2,\ \text{out}_1 = 0 \\
        t > 1:&\quad m_t = \beta_1 m_{t-1} + (1-\beta_1)\,
            \operatorname{clip}\Bigl(\frac{g_t}{\max(\sqrt{v_{t-1}}, \epsilon)},
            c_t\Bigr),\quad \text{out}_t = m_t,\quad
            v_t = \beta_2 v_{t-1} + (1-\beta_2)\,g_t^2

    where :math:`\operatorname{clip}(x, c) = \min(\max(x, -c), c)` and
    :math:`c_t` = ``clip_value_fn(t)`` (default :math:`t^{1/4}`; ``None``: no clipping). The
    first step only initialises :math:`v`. No bias correction.
    """
    _check_betas(b1, b2)
    validation.check_non_negative("eps", eps)
    check_clip_value_fn("clip_value_fn", clip_value_fn)
    mu_dtype = validation.check_state_dtype("mu_dtype", mu_dtype)
    nu_dtype = validation.check_state_dtype("nu_dtype", nu_dtype)

    def init(params):
        return AdoptState(
            mu=_tree.full_like(params, 0.0, mu_dtype),
            nu=_tree.full_like(params, 0.0, nu_dtype),
            count=counting.init_count(),
        )

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        taken, count = counting.advance(state.count, "scale_by_adopt")
        first = taken == 0
        t = counting.as_float(taken) + 1
        beta1, beta2, epsilon = live.read(b1), live.read(b2), live.read(eps)
        bound = None if clip_value_fn is None else jnp.asarray(clip_value_fn(t))

        def leaf(g, m, v):
            normed = g / jnp.maximum(jnp.sqrt(v), _tree.cast_like(epsilon, v))
            if bound is not None:
                c = _tree.cast_like(bound, normed)
                normed = jnp.clip(normed, -c, c)
            m_next = moments.ema_update(m, normed, beta1)
            v_next = moments.ema_update(v, g * g, beta2)
            out = jnp.where(first, jnp.zeros_like(m_next), m_next)
            return out, jnp.where(first, m, m_next), jnp.where(first, v + g * g, v_next)

        out, (mu, nu) = _tree.leafwise(leaf, updates, state.mu, state.nu, name="scale_by_adopt")
        return out, AdoptState(mu=mu, nu=nu, count=count)

    return flattenable(GradientTransformation(init, update))


class AdemamixState(NamedTuple):
    """:func:`scale_by_ademamix`'s state: the fast and slow first moments, the second moment
    and its step count."""

    mu: PyTree
    nu: PyTree
    mu_slow: PyTree
    count: jax.Array | None


def ademamix_alpha(alpha, t_alpha_beta3, t):
    r"""AdEMAMix's warmed-up :math:`\alpha_t = \min(t\alpha/T, \alpha)`, or :math:`\alpha`
    when ``t_alpha_beta3`` (:math:`T`) is None."""
    if t_alpha_beta3 is None:
        return alpha
    return jnp.minimum(t * alpha / t_alpha_beta3, alpha)


def _known_number(value):
    """``value`` as a NumPy array when it is a concrete number, else None (traced, live)."""
    if value is None or live.is_live(value) or validation.is_traced(value):
        return None
    return np.asarray(value)


def check_ademamix_warmup(values) -> None:
    """The beta3 warmup interpolates in :math:`\\log\\beta`: with ``t_alpha_beta3`` it needs
    ``b1 > 0`` and ``b3 > 0`` (the reference fails on ``log(0)``, and the formula would give
    NaN). ``values`` maps the names to their values (None where unknown: a traced value or a
    schedule); a rule of :func:`gradtx.ademamix`'s declarations too, so ``set_hyperparam``
    applies it."""
    if values.get("t_alpha_beta3") is None:
        return
    for name in ("b1", "b3"):
        value = values.get(name)
        if value is not None and not (np.asarray(value) > 0).all():
            raise ValueError(
                f"`{name}` must be > 0 when `t_alpha_beta3` is given (the beta3 warmup "
                f"interpolates log b1 and log b3), got {name}={np.asarray(value).tolist()}; set "
                "t_alpha_beta3=None for no warmup."
            )


def ademamix_beta3(b1, b3, t_alpha_beta3, t):
    r"""AdEMAMix's warmed-up slow decay: :math:`\beta_{3,t}` moves from :math:`\beta_1` to
    :math:`\beta_3` over :math:`T` steps so that the slow average's half-life grows linearly,
    :math:`\beta_{3,t} = \min\bigl(\exp\bigl(\frac{\ln\beta_1 \ln\beta_3}
    {(1 - t/T)\ln\beta_3 + (t/T)\ln\beta_1}\bigr), \beta_3\bigr)`; :math:`\beta_3` when
    ``t_alpha_beta3`` is None."""
    if t_alpha_beta3 is None:
        return b3
    log1, log3 = jnp.log(b1), jnp.log(b3)
    frac = t / t_alpha_beta3
    return jnp.minimum(jnp.exp(log1 * log3 / ((1.0 - frac) * log3 + frac * log1)), b3)


def scale_by_ademamix(
    b1: float | jax.Array = 0.9,
    b2: float | jax.Array = 0.999,
    b3: float | jax.Array = 0.9999,
    alpha: float | jax.Array = 5.0,
    t_alpha_beta3: float | jax.Array | None = None,
    eps: float | jax.Array = 1e-8,
    *,
    mu_dtype=None,
    nu_dtype=None,
) -> GradientTransformation:
    r"""AdEMAMix's scaling (Pagliardini et al., 2024, "The AdEMAMix Optimizer: Better, Faster,
    Older"): Adam's bias-corrected fast moment plus :math:`\alpha_t` times a slow,
    uncorrected moment with a much longer memory.

    .. math::
        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad
        s_t = \beta_{3,t} s_{t-1} + (1-\beta_{3,t}) g_t, \qquad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2 \\
        \text{out}_t &= \frac{m_t / (1-\beta_1^t) + \alpha_t\, s_t}
            {\sqrt{v_t} / \sqrt{1-\beta_2^t} + \epsilon}

    :math:`\alpha_t` and :math:`\beta_{3,t}` warm up over ``t_alpha_beta3`` steps
    (``ademamix_alpha``, ``ademamix_beta3`` in this module); None keeps them at :math:`\alpha`,
    :math:`\beta_3`. :math:`m`, :math:`s` are stored in ``mu_dtype``, :math:`v` in
    ``nu_dtype``.
    """
    _check_betas(b1, b2)
    validation.check_unit_interval("b3", b3)
    validation.check_non_negative("alpha", alpha)
    if t_alpha_beta3 is not None:
        validation.check_interval("t_alpha_beta3", t_alpha_beta3, 0.0, math.inf,
                                  low_closed=False)
    check_ademamix_warmup({name: _known_number(value) for name, value in (
        ("t_alpha_beta3", t_alpha_beta3), ("b1", b1), ("b3", b3))})
    validation.check_non_negative("eps", eps)
    mu_dtype = validation.check_state_dtype("mu_dtype", mu_dtype)
    nu_dtype = validation.check_state_dtype("nu_dtype", nu_dtype)

    def init(params):
        return AdemamixState(
            mu=_tree.full_like(params, 0.0, mu_dtype),
            nu=_tree.full_like(params, 0.0, nu_dtype),
            mu_slow=_tree.full_like(params, 0.0, mu_dtype),
            count=counting.init_count(),
        )

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        taken, count = counting.advance(state.count, "scale_by_ademamix")
        t = counting.as_float(taken) + 1
        beta1, beta2, beta3 = (jnp.asarray(live.read(b), t.dtype) for b in (b1, b2, b3))
        horizon = None if t_alpha_beta3 is None else live.read(t_alpha_beta3)
        # Per-step scalars, computed once outside the elementwise work.
        alpha_t = ademamix_alpha(jnp.asarray(live.read(alpha), t.dtype), horizon, t)
        beta3_t = ademamix_beta3(beta1, beta3, horizon, t)
        inverse1 = 1 / (1 - beta1**t)
        root2 = jnp.sqrt(1 - beta2**t)
        epsilon = live.read(eps)

        def leaf(g, m, v, s):
            m = moments.ema_update(m, g, beta1)
            v = moments.ema_update(v, g * g, beta2)
            s = moments.ema_update(s, g, beta3_t)
            mixed = m * _tree.cast_like(inverse1, m) + _tree.cast_like(alpha_t, s) * s
            denom = jnp.sqrt(v) / _tree.cast_like(root2, v) + _tree.cast_like(epsilon, v)
            return mixed / denom, m, v, s

        out, (mu, nu, mu_slow) = _tree.leafwise(
            leaf, updates, state.mu, state.nu, state.mu_slow, name="scale_by_ademamix"
        )
        return out, AdemamixState(mu=mu, nu=nu, mu_slow=mu_slow, count=count)

    return flattenable(GradientTransformation(init, update))

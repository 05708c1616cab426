r"""Adam's scaling and those of its relatives: Adamax, RAdam, AdaBelief and Yogi.

Adam divides a bias-corrected first moment by the root of a bias-corrected second moment of
the same gradient (:func:`scale_by_adam`). Each relative changes that second statistic or the
way it divides:

* Adamax divides by a decayed running max of :math:`|g|`
  (:func:`~gradtx.transforms.moments.weighted_infinity_norm`).
* RAdam multiplies by a *rectified* inverse root of the second moment, or by 1 while the
  variance of that root is not yet tractable (:func:`radam_rectification`).
* Yogi divides by an additive second moment
  (:func:`~gradtx.transforms.moments.yogi_second_moment`) and corrects no bias.
* AdaBelief divides by the moving variance of :math:`g_t - m_t`; that needs the first moment
  inside the second, so it is the one fused transform here (:func:`scale_by_belief`).
"""

from __future__ import annotations

import operator
from typing import NamedTuple

import jax
import jax.numpy as jnp

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
    mu_dtype=None,
    nu_dtype=None,
) -> GradientTransformation:
    """Adam's scaling (Kingma & Ba, 2015), or AMSGrad's with ``amsgrad=True``:

    .. math::
        \\hat m_t = \\frac{m_t}{1-\\beta_1^t}, \\qquad
        \\hat v_t = \\frac{v_t \\ \\text{or}\\ \\max_{i\\le t} v_i}{1-\\beta_2^t},
        \\qquad \\text{out}_t = \\frac{\\hat m_t}{\\sqrt{\\hat v_t} + \\epsilon}

    AMSGrad takes the running max of the raw second moment and bias-corrects it afterwards, as
    torch does; ``optax.amsgrad`` takes the max of the bias-corrected moment instead.
    :math:`m` is stored in ``mu_dtype``, :math:`v` (and its running max) in ``nu_dtype``
    (default: the parameters' dtype).
    """
    _check_betas(b1, b2)
    first = _corrected_first_moment(b1, mu_dtype)
    validation.check_bool("amsgrad", amsgrad)
    raw_second = moments.ema_of_squares(b2, dtype=nu_dtype)
    if amsgrad:
        raw_second = chain(raw_second, moments.running_max(dtype=nu_dtype))
    second = chain(raw_second, moments.bias_correction(b2))
    return divide_by_root(first, second, eps=eps)


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

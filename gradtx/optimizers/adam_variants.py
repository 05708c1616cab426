r"""Relatives of Adam: Adamax, RAdam, AdaBelief, Yogi, ADOPT and AdEMAMix, each a short chain
of public transforms (their scalings live in :mod:`gradtx.transforms.adam_scalings`)."""

from __future__ import annotations

import jax
from jax.typing import DTypeLike

from gradtx.core import GradientTransformation, ScalarOrSchedule
from gradtx.hyperparams.declarations import (
    NON_NEGATIVE,
    POSITIVE,
    STATE_DTYPE,
    SWITCH,
    WEIGHT_DECAY,
    FixedArgument,
)
from gradtx.optimizers._common import (
    ADAM_LIKE,
    BETA,
    EPS,
    LEARNING_RATE,
    MAXIMIZE,
    negate_if,
    optimizer,
    optimizer_chain,
    weight_decay_if,
)
from gradtx.transforms.adam_scalings import (
    _adopt_clip,
    check_ademamix_warmup,
    check_clip_value_fn,
    scale_by_adamax,
    scale_by_ademamix,
    scale_by_adopt,
    scale_by_belief,
    scale_by_radam,
    scale_by_yogi,
)
from gradtx.transforms.scaling import scale, scale_by_learning_rate


@optimizer(**ADAM_LIKE, maximize=MAXIMIZE)
def adamax(
    learning_rate: ScalarOrSchedule = 2e-3,
    b1: float | jax.Array = 0.9,
    b2: float | jax.Array = 0.999,
    eps: float | jax.Array = 1e-8,
    weight_decay: float | jax.Array = 0.0,
    maximize: bool = False,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Adamax (Kingma & Ba, 2015, section 7.1): Adam with the infinity norm in place of the
    second moment, equal step for step to ``torch.optim.Adamax``.

    .. math::
        g_t &\leftarrow \pm\nabla_\theta f(\theta_{t-1}) + \lambda\,\theta_{t-1} \\
        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad
        s_t = \max(\beta_2 s_{t-1},\ |g_t| + \epsilon) \\
        \theta_t &= \theta_{t-1} - \frac{\eta}{1-\beta_1^t}\, \frac{m_t}{s_t}

    ``weight_decay`` is L2 regularisation added to the gradient, as in torch.

    Chain: ``[scale(-1)] → [add_decayed_weights(λ)] → scale_by_adamax(β1, β2, ε) →
    scale_by_learning_rate(η)``, where ``scale_by_adamax`` is
    ``parallel(chain(ema(β1), bias_correction(β1)), weighted_infinity_norm(β2, ε),
    combine=divide)``.

    State dtypes: ``mu_dtype`` stores the first moment and ``nu_dtype`` the second in another
    dtype (``jnp.bfloat16`` halves the state); None keeps the parameters' dtype. Updates are
    computed in the wider dtype.

    State (named, for :func:`gradtx.tree_get`): ``count``, the one step count, and ``mu``
    (torch's ``exp_avg``), ``nu`` (the weighted infinity norm, torch's ``exp_inf``).

    torch.optim: ``Adamax(params, lr, betas=(b1, b2), eps, weight_decay, maximize)``.

    Differences from ``optax.adamax``: the same update (eps inside the max, no bias correction
    of :math:`s_t`); Optax has no default learning rate, no ``weight_decay`` and no
    ``maximize``.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.optimizers.adam_variants import adamax
        >>> opt = adamax(learning_rate=0.1)
        >>> params = {"w": jnp.array([1.0, -2.0])}
        >>> updates, state = opt.update({"w": jnp.array([0.5, -3.0])}, opt.init(params), params)
        >>> [round(float(u), 6) for u in updates["w"]]  # the first step is -η sign(g)
        [-0.1, 0.1]
    """
    return optimizer_chain(
        negate_if(maximize),
        weight_decay_if(weight_decay),
        scale_by_adamax(b1, b2, eps, mu_dtype=mu_dtype, nu_dtype=nu_dtype),
        scale_by_learning_rate(learning_rate),
    )


@optimizer(**ADAM_LIKE, decoupled_weight_decay=SWITCH, maximize=MAXIMIZE)
def radam(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: float | jax.Array = 0.9,
    b2: float | jax.Array = 0.999,
    eps: float | jax.Array = 1e-8,
    weight_decay: float | jax.Array = 0.0,
    decoupled_weight_decay: bool = False,
    maximize: bool = False,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""RAdam (Liu et al., 2020): Adam whose adaptive term is switched on only once the
    variance of :math:`1/\sqrt{\hat v_t}` is tractable, and then rectified; equal step for step
    to ``torch.optim.RAdam``.

    .. math::
        g_t &\leftarrow \pm\nabla_\theta f(\theta_{t-1}) + [\lambda\,\theta_{t-1}] \\
        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2, \qquad
        \hat m_t = \frac{m_t}{1-\beta_1^t} \\
        \rho_\infty &= \frac{2}{1-\beta_2} - 1, \qquad
        \rho_t = \rho_\infty - \frac{2t\beta_2^t}{1-\beta_2^t}, \qquad
        r_t = \sqrt{\frac{(\rho_t-4)(\rho_t-2)\rho_\infty}
                         {(\rho_\infty-4)(\rho_\infty-2)\rho_t}} \\
        \theta_t &= \theta_{t-1}[(1-\eta\lambda)] - \eta\, \hat m_t \cdot
            \begin{cases}
                r_t \sqrt{1-\beta_2^t} / (\sqrt{v_t} + \epsilon) & \rho_t > 5 \\
                1 & \rho_t \le 5
            \end{cases}

    with the first bracket for L2 decay and the second for ``decoupled_weight_decay=True``.
    While :math:`\rho_t \le 5` (the first five steps for :math:`\beta_2 \ge 0.9`; every step
    when :math:`\beta_2 \le 2/3`, where :math:`\rho_\infty \le 5`) the step is SGD with the
    bias-corrected momentum :math:`\hat m_t`. The paper's Algorithm 2 switches at
    :math:`\rho_t > 4` and has no :math:`\epsilon` (its adaptive term is
    :math:`\sqrt{(1-\beta_2^t)/v_t}`); gradtx follows torch's threshold of 5 and eps.

    Chain: ``[scale(-1)] → [add_decayed_weights(λ)] → scale_by_radam(β1, β2, ε) →
    [add_decayed_weights(λ)] → scale_by_learning_rate(η)``, with decay on one side or the
    other; ``scale_by_radam`` is ``parallel(chain(ema(β1), bias_correction(β1)),
    chain(ema_of_squares(β2), radam_rectification(β2, ε)), combine=multiply)``.

    State dtypes: ``mu_dtype`` stores the first moment and ``nu_dtype`` the second in another
    dtype (``jnp.bfloat16`` halves the state); None keeps the parameters' dtype. Updates are
    computed in the wider dtype.

    State (named, for :func:`gradtx.tree_get`): ``count``, the one step count, and ``mu``
    (torch's ``exp_avg``), ``nu`` (``exp_avg_sq``).

    torch.optim: ``RAdam(params, lr, betas=(b1, b2), eps, weight_decay, decoupled_weight_decay,
    maximize)``.

    Differences from ``optax.radam``: Optax adds eps to the root of the *bias-corrected* second
    moment, :math:`\hat m_t r_t / (\sqrt{\hat v_t} + \epsilon)`, where torch and gradtx divide by
    :math:`\sqrt{\hat v_t} + \epsilon/\sqrt{1-\beta_2^t}`; it switches at
    :math:`\rho_t \ge 5` (a ``threshold`` argument) rather than :math:`\rho_t > 5`; it has no
    default learning rate and no weight decay, and offers ``nesterov`` and ``eps_root``.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.optimizers.adam_variants import radam
        >>> opt = radam(learning_rate=0.1)
        >>> params = {"w": jnp.array([1.0, -2.0])}
        >>> updates, state = opt.update({"w": jnp.array([0.5, -3.0])}, opt.init(params), params)
        >>> [round(float(u), 6) for u in updates["w"]]  # rho_1 = 1: the step is -η m̂_1 = -η g
        [-0.05, 0.3]
    """
    decay = weight_decay_if(weight_decay)
    return optimizer_chain(
        negate_if(maximize),
        None if decoupled_weight_decay else decay,
        scale_by_radam(b1, b2, eps, mu_dtype=mu_dtype, nu_dtype=nu_dtype),
        decay if decoupled_weight_decay else None,
        scale_by_learning_rate(learning_rate),
    )


@optimizer(**ADAM_LIKE, eps_root=NON_NEGATIVE)
def adabelief(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: float | jax.Array = 0.9,
    b2: float | jax.Array = 0.999,
    eps: float | jax.Array = 1e-16,
    eps_root: float | jax.Array = 1e-16,
    weight_decay: float | jax.Array = 0.0,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""AdaBelief (Zhuang et al., 2020): Adam whose denominator tracks how far the gradient
    strays from its moving average (the "belief") instead of its raw second moment.

    .. math::
        g_t &\leftarrow \nabla_\theta f(\theta_{t-1}) + \lambda\,\theta_{t-1} \\
        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t \\
        s_t &= \beta_2 s_{t-1} + (1-\beta_2)(g_t - m_t)^2 + \epsilon_{\text{root}} \\
        \theta_t &= \theta_{t-1} - \eta\,
            \frac{m_t / (1-\beta_1^t)}{\sqrt{s_t / (1-\beta_2^t)} + \epsilon}

    This is Algorithm 2 of the paper, with its single :math:`\epsilon` split in two:
    ``eps_root`` is added to :math:`s_t` *inside* the moving average (it is stored, so it
    accumulates), ``eps`` to the root. The authors' ``adabelief-pytorch`` (0.2) does the same
    with one ``eps`` for both, so ``eps == eps_root`` reproduces it. Its amsgrad, rectification
    and decoupled-decay options are left out: ``weight_decay`` here is L2 regularisation added
    to the gradient (its ``weight_decouple=False``; for decoupled decay, chain
    ``scale_by_belief``, ``add_decayed_weights`` and ``scale_by_learning_rate`` yourself).

    Chain: ``[add_decayed_weights(λ)] → scale_by_belief(β1, β2, ε, ε_root) →
    scale_by_learning_rate(η)``.

    State dtypes: ``mu_dtype`` stores the first moment and ``nu_dtype`` the second in another
    dtype (``jnp.bfloat16`` halves the state); None keeps the parameters' dtype. Updates are
    computed in the wider dtype.

    State (named, for :func:`gradtx.tree_get`): ``count``, the one step count, and ``mu`` (the
    first moment), ``nu`` (the belief, the moving second moment of :math:`g - m`).

    torch.optim: none.

    Differences from ``optax.adabelief``: the same update rule, including where each eps goes;
    Optax has no default learning rate and no ``weight_decay``, and offers ``nesterov``.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.optimizers.adam_variants import adabelief
        >>> opt = adabelief(learning_rate=0.1)
        >>> params = {"w": jnp.array([1.0, -2.0])}
        >>> updates, state = opt.update({"w": jnp.array([0.5, -3.0])}, opt.init(params), params)
        >>> # step 1: m̂_1 = g and ŝ_1 = 0.81 g², so the step is -η g / (0.9 |g|)
        >>> [round(float(u), 4) for u in updates["w"]]
        [-0.1111, 0.1111]
    """
    return optimizer_chain(
        weight_decay_if(weight_decay),
        scale_by_belief(b1, b2, eps, eps_root, mu_dtype=mu_dtype, nu_dtype=nu_dtype),
        scale_by_learning_rate(learning_rate),
    )


@optimizer(
    learning_rate=LEARNING_RATE, b1=BETA, b2=BETA, eps=EPS,
    initial_accumulator_value=NON_NEGATIVE, mu_dtype=STATE_DTYPE, nu_dtype=STATE_DTYPE,
)
def yogi(
    learning_rate: ScalarOrSchedule = 1e-2,
    b1: float | jax.Array = 0.9,
    b2: float | jax.Array = 0.999,
    eps: float | jax.Array = 1e-3,
    initial_accumulator_value: float | jax.Array = 1e-6,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Yogi (Zaheer et al., 2018): Adam with an additive second moment, which moves by
    :math:`(1-\beta_2)g_t^2` toward :math:`g_t^2` at each step; when gradients shrink, the
    effective learning rate grows more slowly than Adam's.

    .. math::
        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t \\
        v_t &= v_{t-1} - (1-\beta_2)\operatorname{sign}(v_{t-1} - g_t^2)\, g_t^2 \\
        \theta_t &= \theta_{t-1} - \eta\, \frac{m_t}{\sqrt{v_t} + \epsilon}

    with :math:`m_0 = 0` and :math:`v_0` = ``initial_accumulator_value``: the paper's
    Algorithm 2, with the defaults of its experiments (:math:`\eta = 10^{-2}`,
    :math:`\epsilon = 10^{-3}`, larger than Adam's).

    Bias correction: none, as in Algorithm 2. :math:`v` is not an average started at zero (it
    starts at :math:`v_0` and moves additively), so Adam's :math:`1/(1-\beta_2^t)` has no basis
    here, and the uncorrected :math:`m_t` makes the first steps short (a built-in warm-up). A
    strictly positive :math:`v_0` (1e-6, the value Optax uses) keeps :math:`v_t > 0`; 0 is
    allowed.

    Chain: ``scale_by_yogi(β1, β2, ε, v_0) → scale_by_learning_rate(η)``, where
    ``scale_by_yogi`` is ``divide_by_root(ema(β1), yogi_second_moment(β2, v_0), eps=ε)``.

    State dtypes: ``mu_dtype`` stores the first moment and ``nu_dtype`` the second in another
    dtype (``jnp.bfloat16`` halves the state); None keeps the parameters' dtype. Updates are
    computed in the wider dtype.

    State (named, for :func:`gradtx.tree_get`): ``count``, the one step count, and ``mu`` (the
    first moment), ``nu`` (the additive second moment).

    torch.optim: none.

    Differences from ``optax.yogi``: Optax starts :math:`m` at 1e-6 as well as :math:`v`,
    divides both by Adam's bias corrections :math:`1-\beta^t` (which Algorithm 2 does not), does
    not expose :math:`v_0` in ``optax.yogi``, and has no default learning rate.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.optimizers.adam_variants import yogi
        >>> opt = yogi(learning_rate=0.1, initial_accumulator_value=0.0, eps=0.0)
        >>> params = {"w": jnp.array([1.0, -2.0])}
        >>> updates, state = opt.update({"w": jnp.array([0.5, -3.0])}, opt.init(params), params)
        >>> [round(float(u), 4) for u in updates["w"]]  # -η (0.1 g) / sqrt(0.001 g²)
        [-0.3162, 0.3162]
    """
    return optimizer_chain(
        scale_by_yogi(b1, b2, eps, initial_accumulator_value, mu_dtype=mu_dtype, nu_dtype=nu_dtype),
        scale_by_learning_rate(learning_rate),
    )


def _no_argument():
    return 0.25


def _two_arguments(t, u):
    return t


CLIP_VALUE_FN = FixedArgument(
    checker=check_clip_value_fn,
    text="None, or a function of the step t (1 at the first step)",
    refused=(_no_argument, _two_arguments),
    none_allowed=True,
)


@optimizer(
    learning_rate=LEARNING_RATE, b1=BETA, b2=BETA, eps=EPS, clip_value_fn=CLIP_VALUE_FN,
    weight_decay=WEIGHT_DECAY, weight_decouple=SWITCH, fixed_decay=SWITCH, maximize=MAXIMIZE,
    mu_dtype=STATE_DTYPE, nu_dtype=STATE_DTYPE,
)
def adopt(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: float | jax.Array = 0.9,
    b2: float | jax.Array = 0.9999,
    eps: float | jax.Array = 1e-6,
    clip_value_fn=_adopt_clip,
    weight_decay: float | jax.Array = 0.0,
    weight_decouple: bool = False,
    fixed_decay: bool = False,
    maximize: bool = False,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""ADOPT (Taniguchi et al., 2024, "ADOPT: Modified Adam Can Converge with Any β2 with the
    Optimal Rate"): Adam with the gradient normalised by the second moment of the previous
    steps, before the first moment, and clipped.

    .. math::
        t = 1:&\quad v_1 = g_1^2 \text{ (no step)} \\
        t > 1:&\quad m_t = \beta_1 m_{t-1} + (1-\beta_1)\,
            \operatorname{clip}\Bigl(\frac{g_t}{\max(\sqrt{v_{t-1}}, \epsilon)},
            c_t\Bigr) \\
        &\quad \theta_t = \theta_{t-1} - \eta\, m_t, \qquad
            v_t = \beta_2 v_{t-1} + (1-\beta_2)\,g_t^2

    with :math:`c_t` = ``clip_value_fn(t)``, :math:`t^{1/4}` by default (``None``: no
    clipping), and :math:`m_0 = 0`. Weight decay :math:`\lambda` is added to the gradient
    (``weight_decouple=False``), or decoupled: :math:`\theta \leftarrow
    \theta(1 - \eta\lambda)` at every step, the first included, or
    :math:`\theta(1 - \lambda)` with ``fixed_decay=True``.

    Chain: ``[negate] → [add_decayed_weights(λ)] → scale_by_adopt(β1, β2, ε, clip_value_fn) →
    scale_by_learning_rate(η)``, decoupled decay after the moments instead (with
    ``fixed_decay``: ``scale_by_learning_rate(-η) → add_decayed_weights(λ) → scale(-1)``, so
    the decay skips the learning rate).

    State dtypes: ``mu_dtype`` and ``nu_dtype`` store the moments in another dtype; None keeps
    the parameters'.

    State (named, for :func:`gradtx.tree_get`): ``count``, ``mu``, ``nu``.

    torch.optim: none. Reference: ``pytorch_optimizer.ADOPT`` (pytorch-optimizer 4.1.0, which
    follows the authors' code), equal step for step (float64, rtol 1e-9, every argument; its
    ``clip_lambda`` is ``clip_value_fn`` here).

    Differences from ``optax.contrib.adopt``: Optax calls ``clip_value_fn`` with the number of
    steps before this one (0 at the first step, so its default bound is
    :math:`(t-1)^{1/4}`), has no weight decay, no ``maximize``, and a ``nesterov`` switch
    that gradtx does not have.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.optimizers.adam_variants import adopt
        >>> opt = adopt(learning_rate=0.1)
        >>> params = {"w": jnp.array([1.0, -2.0])}
        >>> state = opt.init(params)
        >>> g = {"w": jnp.array([0.5, -3.0])}
        >>> updates, state = opt.update(g, state, params)  # the first step only fills v
        >>> bool(jnp.all(updates["w"] == 0))
        True
        >>> updates, state = opt.update(g, state, params)  # -η (1-β1) g / |g|
        >>> [round(float(u), 4) for u in updates["w"]]
        [-0.01, 0.01]
    """
    scaling = scale_by_adopt(b1, b2, eps, clip_value_fn, mu_dtype=mu_dtype, nu_dtype=nu_dtype)
    return optimizer_chain(
        negate_if(maximize),
        *_with_weight_decay(scaling, learning_rate, weight_decay, weight_decouple, fixed_decay),
    )


def _with_weight_decay(scaling, learning_rate, weight_decay, weight_decouple, fixed_decay):
    """``scaling`` then the learning rate, with pytorch-optimizer's three kinds of weight
    decay: added to the gradient (L2), decoupled (θ(1 - ηλ)), or decoupled and fixed
    (θ(1 - λ), not scaled by the learning rate: the step is -(η u + λθ))."""
    decay = weight_decay_if(weight_decay)
    if not weight_decouple:
        return decay, scaling, scale_by_learning_rate(learning_rate)
    if not fixed_decay:
        return scaling, decay, scale_by_learning_rate(learning_rate)
    return (scaling, scale_by_learning_rate(learning_rate, flip_sign=False), decay,
            scale(-1.0))


@optimizer(
    learning_rate=LEARNING_RATE, b1=BETA, b2=BETA, b3=BETA, alpha=NON_NEGATIVE,
    t_alpha_beta3=POSITIVE.or_none(), eps=EPS, weight_decay=WEIGHT_DECAY,
    weight_decouple=SWITCH, fixed_decay=SWITCH, maximize=MAXIMIZE, mu_dtype=STATE_DTYPE,
    nu_dtype=STATE_DTYPE, rules=(check_ademamix_warmup,),
)
def ademamix(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: float | jax.Array = 0.9,
    b2: float | jax.Array = 0.999,
    b3: float | jax.Array = 0.9999,
    alpha: float | jax.Array = 5.0,
    t_alpha_beta3: float | jax.Array | None = None,
    eps: float | jax.Array = 1e-8,
    weight_decay: float | jax.Array = 0.0,
    weight_decouple: bool = False,
    fixed_decay: bool = False,
    maximize: bool = False,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""AdEMAMix (Pagliardini et al., 2024, "The AdEMAMix Optimizer: Better, Faster, Older"):
    Adam whose numerator mixes the usual fast moment with a slow one that remembers gradients
    for thousands of steps.

    .. math::
        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad
        s_t = \beta_{3,t} s_{t-1} + (1-\beta_{3,t}) g_t, \qquad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2 \\
        \theta_t &= \theta_{t-1} - \eta\,
            \frac{m_t / (1-\beta_1^t) + \alpha_t s_t}{\sqrt{v_t / (1-\beta_2^t)} + \epsilon}

    With ``t_alpha_beta3`` :math:`= T`, :math:`\alpha_t = \min(t\alpha/T, \alpha)` and
    :math:`\beta_{3,t}` rises from :math:`\beta_1` to :math:`\beta_3` over :math:`T` steps
    (the paper's warmups, which keep the slow moment from dominating early); None: no warmup.
    The warmup needs ``b1 > 0`` and ``b3 > 0`` (it interpolates their logarithms); either at 0
    with ``t_alpha_beta3`` raises ``ValueError``, as the reference fails on ``log(0)``.
    Weight decay :math:`\lambda` as in :func:`adopt` (L2, decoupled, or decoupled and fixed).

    Chain: ``[negate] → [add_decayed_weights(λ)] → scale_by_ademamix(β1, β2, β3, α, T, ε) →
    scale_by_learning_rate(η)`` (decoupled decay after the scaling instead).

    State (named, for :func:`gradtx.tree_get`): ``count``, ``mu`` (fast moment), ``nu``,
    ``mu_slow`` (slow moment); ``mu_dtype`` stores both first moments, ``nu_dtype`` the second.

    torch.optim: none. Reference: ``pytorch_optimizer.AdEMAMix`` (pytorch-optimizer 4.1.0,
    which follows the authors' code), equal step for step (float64, rtol 1e-9, every argument;
    its ``betas`` triple is ``b1, b2, b3``). Like the reference, complex parameters are refused.

    Differences from ``optax.contrib.ademamix``: Optax takes the warmups as schedules
    (``alpha_scheduler``, ``b3_scheduler``) instead of one horizon, and its weight decay is
    decoupled only.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.optimizers.adam_variants import ademamix
        >>> opt = ademamix(learning_rate=0.1, alpha=0.0, eps=0.0)  # alpha 0: Adam
        >>> params = {"w": jnp.array([1.0, -2.0])}
        >>> updates, _ = opt.update({"w": jnp.array([0.5, -3.0])}, opt.init(params), params)
        >>> [round(float(u), 4) for u in updates["w"]]
        [-0.1, 0.1]
    """
    scaling = scale_by_ademamix(b1, b2, b3, alpha, t_alpha_beta3, eps, mu_dtype=mu_dtype,
                                nu_dtype=nu_dtype)
    return optimizer_chain(
        negate_if(maximize),
        *_with_weight_decay(scaling, learning_rate, weight_decay, weight_decouple, fixed_decay),
        real_only="ademamix",
    )

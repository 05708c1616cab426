"""Learning-rate-free Adam by D-Adaptation: Prodigy and D-Adapt AdamW. torch.optim has
neither; both equal their authors' packages step for step."""

from __future__ import annotations

import jax

from gradtx.core import GradientTransformation, ScalarOrSchedule
from gradtx.hyperparams.declarations import PERIOD, POSITIVE, SWITCH, WEIGHT_DECAY, Hyperparam
from gradtx.optimizers._common import (
    BETA,
    LEARNING_RATE,
    optimizer,
    optimizer_chain,
    weight_decay_if,
)
from gradtx.transforms.d_adaptation import scale_by_dadapt_adam, scale_by_prodigy

# A factor by which d may grow per step: 1 (d frozen at d0 for D-Adapt Adam) to inf.
GROWTH_RATE = Hyperparam(low=1.0)


@optimizer(
    learning_rate=LEARNING_RATE, b1=BETA, b2=BETA, beta3=BETA.or_none(), eps=POSITIVE,
    weight_decay=WEIGHT_DECAY, decouple=SWITCH, use_bias_correction=SWITCH,
    safeguard_warmup=SWITCH, d0=POSITIVE, d_coef=POSITIVE, growth_rate=GROWTH_RATE,
    slice_p=PERIOD,
)
def prodigy(
    learning_rate: ScalarOrSchedule = 1.0,
    b1: float | jax.Array = 0.9,
    b2: float | jax.Array = 0.999,
    beta3: float | jax.Array | None = None,
    eps: float | jax.Array = 1e-8,
    weight_decay: float | jax.Array = 0.0,
    decouple: bool = True,
    use_bias_correction: bool = False,
    safeguard_warmup: bool = False,
    d0: float | jax.Array = 1e-6,
    d_coef: float | jax.Array = 1.0,
    growth_rate: float | jax.Array = float("inf"),
    slice_p: int = 1,
) -> GradientTransformation:
    r"""Prodigy (Mishchenko & Defazio, 2023, "Prodigy: An Expeditiously Adaptive
    Parameter-Free Learner"): Adam whose step size :math:`d` is estimated from the distance
    travelled from the initial parameters :math:`\theta_0`, so that the learning rate is a
    multiplier of it (leave it at 1, or give it the shape of a schedule).

    .. math::
        \delta_k &= d_k\,\eta_t\, r_k, \qquad
        r_k = \sqrt{1-\beta_2^{k+1}}\,/\,(1-\beta_1^{k+1}) \ \text{or}\ 1 \\
        m_t &= \beta_1 m_{t-1} + (1-\beta_1)\, d_k g_t, \qquad
        v_t = \beta_2 v_{t-1} + (1-\beta_2)\, d_k^2 g_t^2 \\
        s_t &= \beta_3 s_{t-1} + \tfrac{d_k}{d_0}\,(d_k \text{ if safeguard\_warmup else }
            \delta_k)\, g_t \\
        N_{k+1} &= \beta_3 N_k + \tfrac{d_k}{d_0}\,\delta_k\,
            \langle g_t,\ \theta_0 - \theta_{t-1} \rangle, \qquad
        \hat d = c\, N_{k+1} / \lVert s_t\rVert_1 \\
        d_{k+1} &= \min\bigl(\max_{j \le k+1} \hat d_j \vee d_0,\ \rho\, d'_k\bigr), \qquad
        d'_k = \max(d_k, \hat d) \text{ while } d_k = d_0, \text{ else } d_k \\
        \theta_t &= \theta_{t-1} - \delta_k\, \frac{m_t}{\sqrt{v_t} + d_{k+1}\epsilon}
            - \lambda\,\delta_k\,\theta_{t-1}

    with the sums and norms over all the parameters at once, :math:`\beta_3 = \sqrt{\beta_2}`
    by default, :math:`c` = ``d_coef``, :math:`\rho` = ``growth_rate`` and :math:`k` the steps
    taken, less the skipped ones below. With ``decouple=False`` the decay is L2 instead
    (:math:`g_t \leftarrow g_t + \lambda\theta_{t-1}`, and no last term). With
    :math:`\beta_1 = 0`, :math:`m_t` is replaced by :math:`d_{k+1} g_t`. A step with
    :math:`\lVert s_t\rVert_1 = 0` (an all-zero gradient before any other) moves nothing and
    leaves :math:`d, N, k` as they were; a step with :math:`\eta_t = 0` changes nothing but
    the step count. ``safeguard_warmup`` keeps :math:`\eta_t` out of :math:`s`, for warm-up
    schedules; ``growth_rate`` (e.g. 1.02) caps the growth of :math:`d` per step, a warm-up
    of its own.

    ``slice_p > 1`` estimates :math:`d` from every ``slice_p``-th entry of each parameter
    only (prodigyopt's memory saving, an approximation): :math:`s` and :math:`\theta_0` are
    then kept for those entries only.

    Chain: ``[add_decayed_weights(λ) unless decouple] → scale_by_prodigy(η, β1, β2, β3, ε,
    [λ if decouple], ...)``: the learning rate and decoupled decay are scaled by
    :math:`d`, so they are part of the step.

    State (named, for :func:`gradtx.tree_get`): ``count``, the one step count; ``mu``
    (prodigyopt's ``exp_avg``), ``nu`` (``exp_avg_sq``), ``s``, ``p0``, and the scalars
    ``d``, ``d_max``, ``numerator`` (``d_numerator``) and ``k``, which prodigyopt keeps in its
    param group. They are in the default float dtype (float64 with x64, as prodigyopt's are
    Python floats); ``mu``, ``nu``, ``s`` in the parameters' dtypes, but float32 for float16
    parameters (they start at the scale of :math:`d_0`, below float16's range). With
    ``slice_p=1`` the result does not depend on how the parameters are split into leaves (up
    to the order of the sums): :func:`gradtx.flattenable`, so :func:`gradtx.multi_tensor`
    runs it.

    torch.optim: none. Reference: ``prodigyopt.Prodigy`` (prodigyopt 1.1, the authors'),
    equal step for step (float64, rtol 1e-9, every argument), with ``betas=(b1, b2)``. Its
    ``fsdp_in_use`` sums the estimate's numerator and denominator across processes of a
    sharded model; gradtx's sums are over whole (possibly sharded) arrays already, so there is
    no switch. A complex parameter is stepped as its real and imaginary parts (prodigyopt
    fails on one).

    Differences from ``optax.contrib.prodigy``: Optax takes ``betas`` as a pair and names
    ``d0`` ``estim_lr0`` and ``d_coef`` ``estim_lr_coef``; it always bias-corrects (and counts
    every step in it), has only decoupled decay, no ``growth_rate`` (it keeps the running
    maximum of :math:`\hat d`, which equals ``growth_rate=inf``), no ``slice_p``, and no
    skipped step: a first all-zero gradient makes its estimate 0/0, NaN for the rest of the
    run. Its scalars are in the narrowest parameter dtype.

    Example:
        >>> import gradtx as gx
        >>> opt = gx.prodigy(learning_rate=1.0, weight_decay=0.01, use_bias_correction=True)
    """
    return optimizer_chain(
        None if decouple else weight_decay_if(weight_decay),
        scale_by_prodigy(
            learning_rate, b1, b2, beta3, eps, weight_decay if decouple else 0.0,
            use_bias_correction, safeguard_warmup, d0, d_coef, growth_rate, slice_p,
        ),
    )


@optimizer(
    learning_rate=LEARNING_RATE, b1=BETA, b2=BETA, eps=POSITIVE, weight_decay=WEIGHT_DECAY,
    use_bias_correction=SWITCH, d0=POSITIVE, growth_rate=GROWTH_RATE,
)
def dadapt_adamw(
    learning_rate: ScalarOrSchedule = 1.0,
    b1: float | jax.Array = 0.9,
    b2: float | jax.Array = 0.999,
    eps: float | jax.Array = 1e-8,
    weight_decay: float | jax.Array = 0.0,
    use_bias_correction: bool = False,
    d0: float | jax.Array = 1e-6,
    growth_rate: float | jax.Array = float("inf"),
) -> GradientTransformation:
    r"""D-Adapt AdamW (Defazio & Mishchenko, 2023, "Learning-Rate-Free Learning by
    D-Adaptation"): AdamW whose step size :math:`d` is a lower bound on the distance to the
    solution, estimated from the gradients, so that the learning rate is a multiplier of it
    (leave it at 1, or give it the shape of a schedule).

    .. math::
        \delta_k &= d_k\,\eta_t\, r_k, \qquad
        r_k = \sqrt{1-\beta_2^{k+1}}\,/\,(1-\beta_1^{k+1}) \ \text{or}\ 1, \qquad
        \gamma = \sqrt{\beta_2} \\
        N_{k+1} &= \gamma N_k + (1-\gamma)\,\delta_k\,
            \Bigl\langle g_t,\ \frac{s_{t-1}}{\sqrt{v_{t-1}} + \epsilon} \Bigr\rangle \\
        m_t &= \beta_1 m_{t-1} + (1-\beta_1)\, \delta_k g_t, \qquad
        v_t = \beta_2 v_{t-1} + (1-\beta_2)\, g_t^2, \qquad
        s_t = \gamma s_{t-1} + (1-\gamma)\, \delta_k g_t \\
        d_{k+1} &= \max\Bigl(d_k,\ \min\Bigl(\frac{N_{k+1}}{(1-\gamma)\lVert s_t\rVert_1},\
            \rho\, d_k\Bigr)\Bigr) \\
        \theta_t &= \theta_{t-1} - \frac{m_t}{\sqrt{v_t} + \epsilon}
            - \lambda\,\delta_k\,\theta_{t-1}

    with the inner product and norm over all the parameters at once, :math:`\rho` =
    ``growth_rate`` and :math:`k` the steps taken, less the skipped ones below. A step with
    :math:`\lVert s_t\rVert_1 = 0` (an all-zero gradient before any other) moves nothing and
    leaves :math:`d, N, k` as they were; a step with :math:`\eta_t = 0` changes nothing but
    the step count. ``growth_rate`` (e.g. 1.02) caps the growth of :math:`d` per step.

    Chain: ``scale_by_dadapt_adam(η, β1, β2, ε, λ, ...)``: the learning rate and the decay
    are scaled by :math:`d`, so they are part of the step. (dadaptation's
    ``DAdaptAdam(decouple=False)``, L2 decay, is ``chain(add_decayed_weights(λ),
    scale_by_dadapt_adam(...))``.)

    State (named, for :func:`gradtx.tree_get`): ``count``, the one step count; ``mu``
    (dadaptation's ``exp_avg``), ``nu`` (``exp_avg_sq``), ``s``, and the scalars ``d``,
    ``numerator`` (``numerator_weighted``) and ``k``, which dadaptation keeps in its param
    group. They are in the default float dtype (float64 with x64, as dadaptation's are Python
    floats); ``mu``, ``nu``, ``s`` in the parameters' dtypes, but float32 for float16
    parameters (they start at the scale of :math:`d_0`, below float16's range). The result
    does not depend on how the parameters are split into leaves (up to the order of the sums):
    :func:`gradtx.flattenable`, so :func:`gradtx.multi_tensor` runs it.

    torch.optim: none. Reference: ``dadaptation.DAdaptAdam`` with ``decouple=True``
    (dadaptation 3.2, the authors'), equal step for step (float64, rtol 1e-9, every argument),
    with ``betas=(b1, b2)``. Its ``log_every`` only logs; its ``fsdp_in_use`` sums the
    estimate's numerator and denominator across processes of a sharded model, which gradtx's
    sums over whole (possibly sharded) arrays do already. A complex parameter is stepped as
    its real and imaginary parts (dadaptation fails on one).

    Differences from ``optax.contrib.dadapt_adamw``: Optax takes ``betas`` as a pair and names
    ``d0`` ``estim_lr0``; it always bias-corrects (and counts every step in it), has no
    ``growth_rate`` (equal to ``growth_rate=inf``), and no skipped step: a first all-zero
    gradient makes its estimate 0/0, NaN for the rest of the run. Its scalars are in the
    narrowest parameter dtype.

    Example:
        >>> import gradtx as gx
        >>> opt = gx.dadapt_adamw(learning_rate=1.0, weight_decay=0.01)
    """
    return optimizer_chain(
        scale_by_dadapt_adam(
            learning_rate, b1, b2, eps, weight_decay, use_bias_correction, d0, growth_rate
        ),
    )

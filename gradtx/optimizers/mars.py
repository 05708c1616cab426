r"""MARS (Yuan et al., 2024): variance-reduced gradients preconditioned like AdamW, Lion or
Muon for the matrices, AdamW for the rest."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike

from gradtx import validation
from gradtx.core import GradientTransformation, ScalarOrSchedule, chain
from gradtx.hyperparams.declarations import (
    NON_NEGATIVE,
    STATE_DTYPE,
    SWITCH,
    WEIGHT_DECAY,
    FixedArgument,
)
from gradtx.optimizers._common import (
    BETA,
    EPS,
    LEARNING_RATE,
    MAXIMIZE,
    negate_if,
    optimizer,
    optimizer_chain,
)
from gradtx.optimizers.adam_variants import _with_weight_decay
from gradtx.transforms.mars import check_mars_type, scale_by_mars
from gradtx.transforms.scaling import scale_by_learning_rate
from gradtx.wrappers.masking import multi_transform

MARS_TYPE = FixedArgument(
    checker=check_mars_type,
    text="'adamw', 'lion' or 'shampoo'",
    refused=("sgd", "AdamW"),
)


@optimizer(
    learning_rate=LEARNING_RATE, b1=BETA, b2=BETA, gamma=NON_NEGATIVE, mars_type=MARS_TYPE,
    optimize_1d=SWITCH, lr_1d=LEARNING_RATE, b1_1d=BETA, b2_1d=BETA, weight_decay=WEIGHT_DECAY,
    weight_decay_1d=WEIGHT_DECAY, weight_decouple=SWITCH, fixed_decay=SWITCH, ams_bound=SWITCH,
    cautious=SWITCH, eps=EPS, maximize=MAXIMIZE, ns_dtype=STATE_DTYPE, mu_dtype=STATE_DTYPE,
    nu_dtype=STATE_DTYPE,
)
def mars(
    learning_rate: ScalarOrSchedule = 3e-3,
    b1: float | jax.Array = 0.95,
    b2: float | jax.Array = 0.99,
    gamma: float | jax.Array = 0.025,
    mars_type: str = "adamw",
    optimize_1d: bool = False,
    lr_1d: ScalarOrSchedule = 3e-3,
    b1_1d: float | jax.Array = 0.9,
    b2_1d: float | jax.Array = 0.95,
    weight_decay: float | jax.Array = 0.0,
    weight_decay_1d: float | jax.Array = 0.1,
    weight_decouple: bool = True,
    fixed_decay: bool = False,
    ams_bound: bool = False,
    cautious: bool = False,
    eps: float | jax.Array = 1e-8,
    maximize: bool = False,
    ns_dtype: DTypeLike | None = jnp.bfloat16,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""MARS (Yuan et al., 2024, "MARS: Unleashing the Power of Variance Reduction for Training
    Large Models"): a first moment of the gradient corrected by its change since the previous
    step (a STORM-like variance reduction, with the gradients of one batch only), then
    preconditioned.

    For the parameters of two or more dimensions (every parameter with ``optimize_1d=True``),
    with :math:`\gamma` = ``gamma``:

    .. math::
        c_t &= g_t + \gamma\,\frac{\beta_1}{1-\beta_1}\,(g_t - g_{t-1}), \qquad
        c_t \leftarrow c_t / \max(1, \lVert c_t\rVert), \qquad
        m_t = \beta_1 m_{t-1} + (1-\beta_1) c_t \\
        u_t &= \begin{cases}
            \dfrac{m_t / (1-\beta_1^t)}{(\sqrt{v_t + 10^{-15}} + \epsilon)/\sqrt{1-\beta_2^t}},
            \quad v_t = \beta_2 v_{t-1} + (1-\beta_2) c_t^2 & \texttt{"adamw"} \\
            \operatorname{sign}(m_t) & \texttt{"lion"} \\
            \mathrm{NS}_5\bigl(m_t/(1-\beta_1)\bigr)\sqrt{\max(1, d_0/d_1)} & \texttt{"shampoo"}
        \end{cases} \\
        \theta_t &= \theta_{t-1} - \eta\, u_t \quad [- \eta\lambda\,\theta_{t-1}]

    where :math:`\lVert\cdot\rVert` is the leaf's Frobenius norm and :math:`\mathrm{NS}_5` five
    quintic Newton–Schulz steps on the leaf seen as a :math:`(d_0, d_1 d_2\cdots)` matrix, in
    ``ns_dtype`` (bfloat16 as the reference; None: the parameters' dtype). The other
    parameters (vectors and scalars, by default) take AdamW with the same
    :math:`10^{-15}` under the root: :math:`u_t` as ``"adamw"`` with :math:`c_t = g_t`,
    ``b1_1d``, ``b2_1d``, learning rate ``lr_1d`` and decay ``weight_decay_1d``. With
    ``ams_bound`` the second moment under the root is its running maximum; with ``cautious``
    the entries of :math:`m_t` whose sign disagrees with :math:`g_t` are zeroed before the
    preconditioner and the rest scaled by :math:`n/(k+1)` (:math:`k` kept of :math:`n`).

    Weight decay (``weight_decouple=True``, the default) is decoupled:
    :math:`\theta(1-\eta\lambda)`, or :math:`\theta(1-\lambda)` with ``fixed_decay``. With
    ``weight_decouple=False`` gradtx does what the reference does, which is *not* L2
    regularisation of the step: the reference adds :math:`\lambda\theta` to the gradient only
    after the step is computed, so it reaches the next step only through the stored
    :math:`g_{t-1}` of the correction (and not at all for the AdamW parameters). For L2
    regularisation, chain :func:`gradtx.add_decayed_weights` before ``mars``.

    Chain: ``[negate] → scale_by_mars(β1, β2, γ, mars_type, ε) → [decay] →
    scale_by_learning_rate(η)`` on the matrices and ``scale_by_mars(β1_1d, β2_1d, None) →
    [decay_1d] → scale_by_learning_rate(η_1d)`` on the rest, side by side in a
    :func:`gradtx.multi_transform` with the labels ``"mars"`` and ``"adamw"`` (one chain when
    ``optimize_1d``). Complex parameters are treated as pairs of reals; ``"shampoo"`` refuses
    them.

    State (named, for :func:`gradtx.tree_get`): ``count`` and, per group, ``mu``, ``nu``,
    ``nu_max`` (with ``ams_bound``), ``last_grad`` (the matrices' group): qualify by the
    group (``"mars/mu"``) unless ``optimize_1d``. ``mu_dtype`` stores the first moment and
    the previous gradient in another dtype (``jnp.bfloat16`` halves them), ``nu_dtype`` the
    second moments; None keeps the parameters' dtype.

    torch.optim: none. Reference: ``pytorch_optimizer.MARS`` (pytorch-optimizer 4.1.0, which
    follows the authors' code), equal step for step (float64, rtol 1e-9, every argument; its
    ``betas`` and ``betas_1d`` pairs are ``b1, b2`` and ``b1_1d, b2_1d``; ``"shampoo"`` in
    bfloat16 to bfloat16's rounding, in float64 exactly). One difference: the reference fixes
    the ratio ``lr_1d / lr`` when it is built and scales the vectors' rate with any later
    change of ``lr`` (a scheduler), while gradtx's ``lr_1d`` is a hyperparameter of its own,
    live like every other: with a schedule on ``learning_rate``, give ``lr_1d`` the matching
    schedule.

    Optax has no MARS.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.optimizers.mars import mars
        >>> opt = mars(learning_rate=0.1, lr_1d=0.01)
        >>> params = {"w": jnp.ones((2, 2)), "b": jnp.zeros(2)}
        >>> grads = {"w": jnp.asarray([[0.1, -0.2], [0.0, 0.3]]), "b": jnp.asarray([1.0, -1.0])}
        >>> updates, state = opt.update(grads, opt.init(params), params)
        >>> [round(float(u), 4) for u in updates["w"][0]]  # -η sign(g) at the first step
        [-0.1, 0.1]
        >>> [round(float(u), 4) for u in updates["b"]]  # AdamW at lr_1d, decay 0.1 of θ = 0
        [-0.01, 0.01]
    """
    decoupled = weight_decouple
    stored = None if decoupled or validation.is_static_zero(weight_decay) else weight_decay
    treated = scale_by_mars(
        b1, b2, gamma, mars_type, eps, ams_bound, cautious, stored_decay=stored,
        ns_dtype=ns_dtype, mu_dtype=mu_dtype, nu_dtype=nu_dtype,
    )
    plain = scale_by_mars(
        b1_1d, b2_1d, None, "adamw", eps, ams_bound, cautious, mu_dtype=mu_dtype,
        nu_dtype=nu_dtype,
    )
    if decoupled:
        matrices = _chain(_with_weight_decay(treated, learning_rate, weight_decay, True,
                                             fixed_decay))
        rest = _chain(_with_weight_decay(plain, lr_1d, weight_decay_1d, True, fixed_decay))
    else:
        matrices = chain(treated, scale_by_learning_rate(learning_rate))
        rest = chain(plain, scale_by_learning_rate(lr_1d))
    return optimizer_chain(
        negate_if(maximize),
        matrices if optimize_1d else multi_transform(
            {"mars": matrices, "adamw": rest}, _labels
        ),
        real_only="mars with mars_type='shampoo'" if mars_type == "shampoo" else None,
    )


def _chain(steps) -> GradientTransformation:
    """``chain`` of the steps present (None marks a decay left out for a Python zero)."""
    return chain(*(step for step in steps if step is not None))


def _labels(params):
    """``"mars"`` for the leaves of two or more dimensions, ``"adamw"`` for the others (a
    complex leaf is counted with its real-and-imaginary axis, as the reference counts it)."""
    return jax.tree_util.tree_map(lambda p: "mars" if np.ndim(p) >= 2 else "adamw", params)

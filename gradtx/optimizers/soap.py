r"""SOAP (Vyas et al., 2024): Adam in the eigenbases of Shampoo's preconditioner."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from gradtx import live, validation
from gradtx import tree as _tree
from gradtx.core import GradientTransformation, ScalarOrSchedule, flattenable, stateless
from gradtx.hyperparams.declarations import STATE_DTYPE, SWITCH, WEIGHT_DECAY, FixedArgument
from gradtx.optimizers._common import (
    BETA,
    EPS,
    LEARNING_RATE,
    MAXIMIZE,
    negate_if,
    optimizer,
    optimizer_chain,
)
from gradtx.transforms import counting
from gradtx.transforms.scaling import scale_by_learning_rate
from gradtx.transforms.soap import check_data_format, check_dimension, scale_by_soap

DIMENSION = FixedArgument(
    kind="int", checker=check_dimension, text="int >= 1", refused=(0, -1),
)
DATA_FORMAT = FixedArgument(
    checker=check_data_format,
    text="'channels_first' or 'channels_last'",
    refused=("NCHW", "channels"),
)


@optimizer(
    learning_rate=LEARNING_RATE, b1=BETA, b2=BETA, shampoo_beta=BETA.or_none(),
    weight_decay=WEIGHT_DECAY, precondition_frequency=DIMENSION,
    max_precondition_dim=DIMENSION, merge_dims=SWITCH, precondition_1d=SWITCH,
    correct_bias=SWITCH, normalize_gradient=SWITCH, data_format=DATA_FORMAT, eps=EPS,
    maximize=MAXIMIZE, qr_dtype=STATE_DTYPE, mu_dtype=STATE_DTYPE, nu_dtype=STATE_DTYPE,
)
def soap(
    learning_rate: ScalarOrSchedule = 3e-3,
    b1: float | jax.Array = 0.95,
    b2: float | jax.Array = 0.95,
    shampoo_beta: float | jax.Array | None = None,
    weight_decay: float | jax.Array = 1e-2,
    precondition_frequency: int = 10,
    max_precondition_dim: int = 10000,
    merge_dims: bool = False,
    precondition_1d: bool = False,
    correct_bias: bool = True,
    normalize_gradient: bool = False,
    data_format: str = "channels_first",
    eps: float | jax.Array = 1e-8,
    maximize: bool = False,
    qr_dtype: DTypeLike | None = jnp.float32,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""SOAP (Vyas et al., 2024, "SOAP: Improving and Stabilizing Shampoo using Adam"): Adam
    run in the eigenbases of Shampoo's per-dimension statistics, which are refreshed every
    ``precondition_frequency`` steps by one power iteration.

    For each leaf :math:`G` (a tensor of shape :math:`(d_1, \ldots, d_k)`), every axis with
    :math:`d_i \le` ``max_precondition_dim`` keeps a statistic :math:`L_i` and a basis
    :math:`Q_i` (other axes: :math:`Q_i = I`; a vector only with ``precondition_1d``). With
    :math:`\mathcal{P}(X) = X \times_1 Q_1^\top \cdots \times_k Q_k^\top` and
    :math:`\beta_s` = ``shampoo_beta`` (:math:`\beta_2` when None), at step :math:`t \ge 2`:

    .. math::
        m_t &= \beta_1 m_{t-1} + (1-\beta_1) G_t, \qquad
        v_t = \beta_2 v_{t-1} + (1-\beta_2)\, \mathcal{P}(G_t)^2 \\
        n_t &= \mathcal{P}^{-1}\!\left(\frac{\mathcal{P}(m_t)}{\sqrt{v_t} + \epsilon}\right),
        \qquad \theta_t = \Bigl(\theta_{t-1} - \eta\,\frac{\sqrt{1-\beta_2^{t-1}}}
        {1-\beta_1^{t-1}}\, n_t\Bigr)(1 - \eta\lambda) \\
        L_{i,t} &= \beta_s L_{i,t-1} + (1-\beta_s)\, G_{t(i)} G_{t(i)}^\top

    (:math:`G_{(i)}` the leaf unfolded along axis :math:`i`). The first step does not move
    the parameters: it starts the statistics and takes their eigenvectors (by decreasing
    eigenvalue) as the bases, so the moments and the bias corrections count from step 2. After
    each step :math:`t > 1` with :math:`t - 1` a multiple of ``precondition_frequency``, each
    basis becomes the QR orthonormalisation of :math:`L_{i,t} Q_i`, its columns sorted by
    decreasing :math:`\operatorname{diag}(Q_i^\top L_{i,t} Q_i)` (the axis :math:`i` of
    :math:`v_t` sorted alike); the QR runs in ``qr_dtype``, float32 as in the reference
    whatever the parameters' dtype (None: theirs).

    ``correct_bias=False`` leaves out the bias-correction factor; ``normalize_gradient``
    divides :math:`n_t` by :math:`\sqrt{\operatorname{mean}(n_t^2)} + \epsilon`; ``merge_dims``
    multiplies consecutive axes together while the product stays at most
    ``max_precondition_dim`` (a 4-D leaf laid out ``"channels_last"``, by ``data_format``, is
    seen as :math:`(d_0, d_3, d_1, d_2)` first; vectors are never merged). The weight decay is
    decoupled and applied, as in the reference, to the parameters *after* the step (and not at
    the first step): the update is :math:`-\eta c\,n_t - \eta\lambda(\theta_{t-1} - \eta c\,
    n_t)`.

    Chain: ``[negate] → scale_by_soap(β1, β2, β_s, ε, …) → scale_by_learning_rate(η) →
    [decay of the stepped parameters]``. Complex parameters are refused.

    State (named, for :func:`gradtx.tree_get`): ``count``, ``mu``, ``nu`` (shaped like the
    parameters), ``gg`` and ``q`` (per leaf, a tuple with one matrix per axis, None where the
    axis is not preconditioned). ``mu_dtype`` and ``nu_dtype`` store the moments in another
    dtype.

    torch.optim: none. Reference: ``pytorch_optimizer.SOAP`` (pytorch-optimizer 4.1.0, which
    follows the authors' code; its ``betas`` pair is ``b1, b2``). Equal step for step in
    float64 to the rounding of the float32 QR, which both take from their own LAPACK (see the
    registry's tolerance note); with no QR refresh in the run, to rtol 1e-9. One difference:
    with ``merge_dims``, the reference fails on any leaf whose dimensions merge into one (more
    than one entry, at most ``max_precondition_dim`` in all, e.g. every vector); gradtx
    leaves vectors as they are and preconditions such a leaf as one dimension, as the
    authors' code does.

    Optax has no SOAP (``optax.contrib`` neither, in 0.2.8).

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.optimizers.soap import soap
        >>> opt = soap(learning_rate=0.1, weight_decay=0.0)
        >>> params = {"w": jnp.ones((2, 2))}
        >>> grads = {"w": jnp.asarray([[0.1, -0.2], [0.0, 0.3]])}
        >>> state = opt.init(params)
        >>> updates, state = opt.update(grads, state, params)
        >>> float(jnp.abs(updates["w"]).max())  # the first step only starts the statistics
        0.0
        >>> updates, state = opt.update(grads, state, params)
        >>> round(float(jnp.abs(updates["w"]).max()), 4) <= 0.1  # then Adam-sized steps
        True
    """
    decay = None if validation.is_static_zero(weight_decay) else _decay_after_step(
        learning_rate, weight_decay
    )
    return optimizer_chain(
        negate_if(maximize),
        scale_by_soap(
            b1, b2, shampoo_beta, eps, precondition_frequency, max_precondition_dim,
            merge_dims, precondition_1d, correct_bias, normalize_gradient, data_format,
            qr_dtype=qr_dtype, mu_dtype=mu_dtype, nu_dtype=nu_dtype,
        ),
        scale_by_learning_rate(learning_rate),
        decay,
        real_only="soap",
    )


def _decay_after_step(learning_rate, weight_decay) -> GradientTransformation:
    """The reference's decoupled decay of the parameters once the step is applied:
    :math:`u \\leftarrow u - \\eta\\lambda(\\theta + u)`, nothing at the first step (which the
    reference skips). Inside the optimizer, whose step count it reads."""

    def decay(updates, params):
        taken, _ = counting.advance(None, "soap")
        rate = live.read(learning_rate) * live.read(weight_decay)
        rate = jnp.where(taken > 0, rate, 0.0)

        def leaf(u, p):
            return u - _tree.cast_like(rate, u) * (p.astype(u.dtype) + u)

        return jax.tree_util.tree_map(leaf, updates, params)

    return flattenable(stateless(decay, needs_params=True, name="soap weight decay"))

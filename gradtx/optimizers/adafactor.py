"""Adafactor (Shazeer & Stern, 2018): Adam-like steps with factored second moments, so that the
optimizer state of a matrix is sublinear in its size. torch.optim has none."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from gradtx import validation
from gradtx.core import GradientTransformation, ScalarOrSchedule
from gradtx.hyperparams.declarations import (
    CLOSED_UNIT_INTERVAL,
    NON_NEGATIVE,
    POSITIVE,
    STATE_DTYPE,
    SWITCH,
    WEIGHT_DECAY,
)
from gradtx.optimizers._common import (
    BETA,
    EPS,
    LEARNING_RATE,
    optimizer,
    optimizer_chain,
    weight_decay_if,
)
from gradtx.transforms.clipping import clip_by_block_rms
from gradtx.transforms.factored import (
    scale_by_factored_rms,
    scale_by_param_block_rms,
)
from gradtx.transforms.moments import ema
from gradtx.transforms.scaling import scale_by_learning_rate


def relative_step_size(count: jax.Array) -> jax.Array:
    r"""The paper's relative step size :math:`\rho_t = \min(10^{-2}, 1/\sqrt t)` at step
    :math:`t` = ``count + 1`` (``count`` is the number of steps already taken)."""
    return jnp.minimum(1e-2, 1 / jnp.sqrt(count + 1.0))


@optimizer(
    learning_rate=LEARNING_RATE.or_none(),
    decay_rate=CLOSED_UNIT_INTERVAL,
    clipping_threshold=POSITIVE.or_none(),
    multiply_by_parameter_scale=SWITCH,
    b1=BETA.omitted_when_zero(),
    weight_decay=WEIGHT_DECAY,
    eps=EPS,
    min_param_scale=NON_NEGATIVE,
    factored=SWITCH,
    mu_dtype=STATE_DTYPE,
)
def adafactor(
    learning_rate: ScalarOrSchedule | None = relative_step_size,
    decay_rate: float | jax.Array = 0.8,
    clipping_threshold: float | jax.Array | None = 1.0,
    multiply_by_parameter_scale: bool = True,
    b1: float | jax.Array = 0.0,
    weight_decay: float | jax.Array = 0.0,
    eps: float | jax.Array = 1e-30,
    min_param_scale: float | jax.Array = 1e-3,
    factored: bool = True,
    mu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Adafactor (Shazeer & Stern, 2018, "Adafactor: Adaptive Learning Rates with Sublinear
    Memory Cost", Algorithms 4 and 5 with the choices of its Section 9).

    .. math::
        \hat\beta_t &= 1 - t^{-c}, \qquad S_t = g_t^2 + \epsilon_1 \\
        \hat V_t &= \frac{R_t C_t}{1^\top R_t} \ \text{with}\
            R_t = \hat\beta_t R_{t-1} + (1-\hat\beta_t) S_t 1, \
            C_t = \hat\beta_t C_{t-1} + (1-\hat\beta_t) 1^\top S_t
            \quad (\text{leaves with } \ge 2 \text{ dims}) \\
        \hat V_t &= \hat\beta_t \hat V_{t-1} + (1-\hat\beta_t) S_t
            \quad (\text{other leaves, or } \texttt{factored=False}) \\
        U_t &= g_t / \sqrt{\hat V_t}, \qquad
            \hat U_t = U_t / \max\bigl(1, \operatorname{RMS}(U_t)/d\bigr) \\
        m_t &= \beta_1 m_{t-1} + (1-\beta_1)\, s_t \hat U_t, \qquad
            s_t = \max\bigl(\epsilon_2, \operatorname{RMS}(\theta_{t-1})\bigr)
            \ \text{or}\ 1 \\
        \theta_t &= \theta_{t-1} - \rho_t \bigl(m_t + \lambda\,\theta_{t-1}\bigr)

    RMS and the factoring are per leaf; a leaf of shape :math:`(\dots, n, m)` is factored over
    its last two axes (leading axes are batch axes) and keeps :math:`n + m` statistics per
    batch index. With :math:`\beta_1 = 0` (the default) :math:`m_t = s_t \hat U_t` and no
    momentum is stored, which is the paper's memory-light setting.

    Args:
        learning_rate: :math:`\rho_t`: a float, array or schedule ``count -> value``; the
            default, :func:`relative_step_size`, is the paper's relative step size
            :math:`\min(10^{-2}, 1/\sqrt t)` (``None`` means the same).
        decay_rate: :math:`c \in [0, 1]` of the second-moment decay
            :math:`\hat\beta_t = 1 - t^{-c}` (paper: 0.8).
        clipping_threshold: :math:`d > 0` of the update clipping (paper: 1), or ``None`` for
            no clipping.
        multiply_by_parameter_scale: scale steps by :math:`s_t`, the parameter's RMS, so that
            :math:`\rho_t` is a relative step (paper: yes). Without it, :math:`s_t = 1` and
            :math:`\rho_t` is an absolute step size.
        b1: :math:`\beta_1 \in [0, 1)`, momentum on the scaled steps (paper: 0; a Python zero
            keeps no momentum state).
        weight_decay: :math:`\lambda \ge 0`, decoupled decay, multiplied by :math:`\rho_t` (not
            by :math:`s_t`) as in AdamW.
        eps: :math:`\epsilon_1 \ge 0` (paper: 1e-30).
        min_param_scale: :math:`\epsilon_2 \ge 0`, the floor of :math:`s_t` (paper: 1e-3).
        factored: factor leaves with two or more dimensions (else every leaf keeps a full
            second moment, RMSProp-like).

    Defaults are the paper's recommended configuration. With ``multiply_by_parameter_scale``
    a parameter initialised at zero moves by only :math:`\epsilon_2 \rho_t` per step at first;
    for a plain absolute step size use ``learning_rate=1e-2, multiply_by_parameter_scale=False``
    (the registry's example).

    Chain: ``scale_by_factored_rms(c, ε1, factored) → [clip_by_block_rms(d)] →
    [scale_by_param_block_rms(ε2)] → [ema(β1)] → [add_decayed_weights(λ)] →
    scale_by_learning_rate(ρ)``.

    State dtype: ``mu_dtype`` stores the momentum (``b1 > 0``) in another dtype
    (``jnp.bfloat16`` halves it); None keeps the parameters' dtype. Updates are computed in
    the wider dtype.
    The factored second-moment statistics, already sublinear in size, keep the parameters'
    dtype.

    State (named, for :func:`gradtx.tree_get`): ``count``, the one step count, and ``row``,
    ``col`` (factored statistics), ``full`` (unfactored ones), ``mu`` (only with ``b1``).

    torch.optim: none.

    Differences from ``optax.adafactor``: Optax factors only leaves whose two largest axes are
    at least ``min_dim_size_to_factor`` (128) long and factors those two axes, here the last two
    axes of every leaf with two or more dimensions; Optax's ``learning_rate=None`` means no
    step-size factor at all, here the paper's relative step size; Optax's decay
    (``weight_decay_rate``) is not multiplied by the learning rate, here it is; Optax keeps
    momentum in float32, here in the parameter's dtype.

    Example:
        >>> import jax.numpy as jnp
        >>> opt = adafactor(learning_rate=0.01, multiply_by_parameter_scale=False)
        >>> params = {"w": jnp.ones((64, 32)), "b": jnp.ones(32)}
        >>> state = opt.init(params)
        >>> stats = state.inner_state[0]  # per-leaf statistics: rows + columns for matrices
        >>> [x.shape for x in (stats.row["w"], stats.col["w"], stats.full["b"])]
        [(64,), (32,), (32,)]
        >>> grads = {"w": jnp.ones((64, 32)), "b": jnp.ones(32)}
        >>> updates, state = opt.update(grads, state, params)
        >>> round(float(updates["b"][0]), 8)
        -0.01
    """
    return optimizer_chain(
        scale_by_factored_rms(decay_rate, eps, factored),
        None if clipping_threshold is None else clip_by_block_rms(clipping_threshold),
        scale_by_param_block_rms(min_param_scale) if multiply_by_parameter_scale else None,
        None if validation.is_static_zero(b1) else ema(b1, dtype=mu_dtype),
        weight_decay_if(weight_decay),
        scale_by_learning_rate(relative_step_size if learning_rate is None else learning_rate),
        real_only="adafactor",
    )

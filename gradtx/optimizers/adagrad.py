"""Adagrad: steps divided by the root of the running sum of squared gradients."""


from __future__ import annotations

import jax
from jax.typing import DTypeLike

from gradtx import live, validation
from gradtx.core import GradientTransformation, ScalarOrSchedule
from gradtx.hyperparams.declarations import (
    NON_NEGATIVE,
    STATE_DTYPE,
    WEIGHT_DECAY,
)
from gradtx.optimizers._common import (
    EPS,
    LEARNING_RATE,
    MAXIMIZE,
    negate_if,
    optimizer,
    optimizer_chain,
    weight_decay_if,
)
from gradtx.transforms.root_scaling import scale_by_rss
from gradtx.transforms.scaling import scale_by_learning_rate


@optimizer(
    learning_rate=LEARNING_RATE,
    lr_decay=NON_NEGATIVE.omitted_when_zero(),
    weight_decay=WEIGHT_DECAY,
    initial_accumulator_value=NON_NEGATIVE,
    eps=EPS,
    maximize=MAXIMIZE,
    nu_dtype=STATE_DTYPE,
)
def adagrad(
    learning_rate: ScalarOrSchedule = 1e-2,
    lr_decay: float | jax.Array = 0.0,
    weight_decay: float | jax.Array = 0.0,
    initial_accumulator_value: float | jax.Array = 0.0,
    eps: float | jax.Array = 1e-10,
    maximize: bool = False,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Adagrad (Duchi et al., 2011), equal step for step to ``torch.optim.Adagrad``.

    .. math::
        g_t &\leftarrow \pm\nabla_\theta f(\theta_{t-1}) + \lambda\,\theta_{t-1} \\
        s_t &= s_{t-1} + g_t^2, \qquad s_0 = \text{initial\_accumulator\_value} \\
        \tilde\eta_t &= \eta_t / \bigl(1 + (t-1)\,\text{lr\_decay}\bigr) \\
        \theta_t &= \theta_{t-1} - \tilde\eta_t\, \frac{g_t}{\sqrt{s_t} + \epsilon}

    Chain: ``[scale(-1)] → [add_decayed_weights(λ)] → scale_by_rss(s_0, ε) →
    scale_by_learning_rate(η̃)``.

    State dtype: ``nu_dtype`` stores the sum of squares in another dtype (``jnp.bfloat16`` halves
    the state); None keeps the parameters' dtype. Updates are computed in the wider dtype.

    State (named, for :func:`gradtx.tree_get`): ``count``, the one step count, and
    ``sum_of_squares`` (torch's ``sum``).

    torch.optim: ``Adagrad(params, lr, lr_decay, weight_decay, initial_accumulator_value, eps,
    maximize)``.

    Differences from ``optax.adagrad``: Optax defaults to ``initial_accumulator_value=0.1`` and
    ``eps=1e-7``, puts eps inside the root (:math:`g/\sqrt{s + \epsilon}`), has no ``lr_decay``
    and no ``weight_decay``.

    Example:
        >>> import gradtx as gx
        >>> opt = gx.adagrad(learning_rate=0.1, lr_decay=1e-3)
    """
    return optimizer_chain(
        negate_if(maximize),
        weight_decay_if(weight_decay),
        scale_by_rss(initial_accumulator_value, eps, nu_dtype=nu_dtype),
        scale_by_learning_rate(_inverse_time_decay(learning_rate, lr_decay)),
    )


def _inverse_time_decay(learning_rate: ScalarOrSchedule, lr_decay) -> ScalarOrSchedule:
    if validation.is_static_zero(lr_decay):
        return learning_rate

    def schedule(count):
        lr = learning_rate(count) if callable(learning_rate) else live.read(learning_rate)
        return lr / (1 + count * live.read(lr_decay))

    return schedule

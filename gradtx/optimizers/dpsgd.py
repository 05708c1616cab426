r"""DP-SGD (Abadi et al., 2016): SGD on clipped, noised per-example gradients."""

from __future__ import annotations

import jax

from gradtx.core import GradientTransformation, ScalarOrSchedule, chain
from gradtx.hyperparams.declarations import NON_NEGATIVE, SWITCH, FixedArgument
from gradtx.optimizers._common import LEARNING_RATE, optimizer, optimizer_chain
from gradtx.transforms.momentum import scale_by_momentum
from gradtx.transforms.noise import check_key
from gradtx.transforms.privacy import differentially_private_aggregate
from gradtx.transforms.scaling import scale_by_learning_rate

SEED = FixedArgument(
    checker=check_key,
    text="an int seed, a jax.random key or a legacy raw PRNGKey",
    refused=(2**63,),
)


@optimizer(
    learning_rate=LEARNING_RATE, l2_norm_clip=NON_NEGATIVE, noise_multiplier=NON_NEGATIVE,
    seed=SEED, momentum=NON_NEGATIVE.or_none(), nesterov=SWITCH,
)
def dpsgd(
    learning_rate: ScalarOrSchedule,
    l2_norm_clip: float | jax.Array,
    noise_multiplier: float | jax.Array,
    seed: int | jax.Array,
    momentum: float | jax.Array | None = None,
    nesterov: bool = False,
) -> GradientTransformation:
    r"""DP-SGD (Abadi et al., 2016, "Deep Learning with Differential Privacy"): SGD, with or
    without momentum, on the mean of per-example gradients clipped to norm :math:`C`, plus
    Gaussian noise of standard deviation :math:`\sigma C`:

    .. math::
        \bar g_t &= \frac{1}{B}\Bigl(\sum_{i=1}^{B} g_{t,i}
            \min\Bigl(1, \frac{C}{\lVert g_{t,i} \rVert}\Bigr) + \sigma C\, z_t\Bigr),
            \qquad z_t \sim \mathcal N(0, I) \\
        b_t &= \mu\, b_{t-1} + \bar g_t, \quad b_0 = 0 \\
        \theta_t &= \theta_{t-1} - \eta_t
            \begin{cases} \bar g_t + \mu b_t & \text{Nesterov} \\ b_t & \text{otherwise}
            \end{cases}

    (no momentum: :math:`\theta_t = \theta_{t-1} - \eta_t \bar g_t`). ``update`` takes
    per-example gradients, each leaf with the batch axis first, as
    ``jax.vmap(jax.grad(loss), in_axes=(None, 0))(params, batch)`` gives them; see
    :func:`gradtx.differentially_private_aggregate`. The privacy guarantee depends on
    :math:`\sigma`, the sampling rate and the number of steps, through a privacy accountant
    outside gradtx.

    Chain: ``differentially_private_aggregate(C, σ, seed) → scale_by_momentum(μ, nesterov)
    → scale_by_learning_rate(η)``.

    Args:
        learning_rate: :math:`\eta_t \ge 0`, a number or a schedule (required, as in Optax).
        l2_norm_clip: :math:`C \ge 0`, the bound on each example's gradient norm.
        noise_multiplier: :math:`\sigma \ge 0`.
        seed: an int seed, a ``jax.random.key`` or a legacy raw ``jax.random.PRNGKey``.
        momentum: :math:`\mu \ge 0`, or None for no momentum.
        nesterov: Nesterov momentum (needs a momentum).

    State (named, for :func:`gradtx.tree_get`): ``rng_key`` (raw key data), ``count``, and
    with momentum ``momentum_buffer``.

    torch.optim: none (Opacus wraps torch's optimizers). Equal step for step to
    ``optax.contrib.dpsgd`` (Optax 0.2.8), the same noise bit for bit for the same seed.
    Differences: ``seed`` may also be a key; the per-example gradients' batch axes are checked
    against the params.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from gradtx.optimizers.dpsgd import dpsgd
        >>> opt = dpsgd(learning_rate=0.1, l2_norm_clip=1.0, noise_multiplier=0.0, seed=0)
        >>> params = {"w": jnp.zeros(2)}
        >>> per_example = {"w": jnp.array([[3.0, 4.0], [0.3, 0.4]])}
        >>> updates, state = opt.update(per_example, opt.init(params), params)
        >>> [round(float(u), 6) for u in updates["w"]]
        [-0.045, -0.06]
    """
    if nesterov and momentum is None:
        raise ValueError("`nesterov=True` needs a `momentum`; got momentum=None.")
    return chain(
        differentially_private_aggregate(l2_norm_clip, noise_multiplier, key=seed),
        optimizer_chain(
            None if momentum is None else scale_by_momentum(momentum, nesterov=nesterov),
            scale_by_learning_rate(learning_rate),
        ),
    )

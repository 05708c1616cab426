r"""Noisy SGD (Neelakantan et al., 2015): SGD with annealed Gaussian gradient noise."""

from __future__ import annotations

import jax

from gradtx.core import GradientTransformation, ScalarOrSchedule
from gradtx.hyperparams.declarations import NON_NEGATIVE, FixedArgument
from gradtx.optimizers._common import LEARNING_RATE, optimizer, optimizer_chain
from gradtx.transforms.noise import add_noise, check_key, check_seed
from gradtx.transforms.scaling import scale_by_learning_rate

KEY = FixedArgument(
    checker=check_key,
    text="an int seed, a jax.random key (or a legacy raw PRNGKey), or None for seed 0",
    refused=(2**63,),
    none_allowed=True,
)
SEED = FixedArgument(
    checker=check_seed,
    text="None, or an int seed (Optax's older name for an int key)",
    refused=(2**63,),
    none_allowed=True,
)


def check_one_key(values) -> None:
    """``key`` and ``seed`` name the same thing: at most one of them is given."""
    if values.get("key") is not None and values.get("seed") is not None:
        raise ValueError("Give `key` or `seed`, not both (`seed` is Optax's older name).")


@optimizer(
    learning_rate=LEARNING_RATE, eta=NON_NEGATIVE, gamma=NON_NEGATIVE, key=KEY, seed=SEED,
    rules=(check_one_key,),
)
def noisy_sgd(
    learning_rate: ScalarOrSchedule = 1e-3,
    eta: float | jax.Array = 0.01,
    gamma: float | jax.Array = 0.55,
    key: jax.Array | int | None = None,
    *,
    seed: int | None = None,
) -> GradientTransformation:
    r"""Noisy SGD (Neelakantan et al., 2015, "Adding Gradient Noise Improves Learning for Very
    Deep Networks"): SGD on the gradient plus Gaussian noise whose variance anneals with the
    step count.

    .. math::
        \theta_t = \theta_{t-1} - \eta_t \bigl(g_t + \sigma_t z_t\bigr), \qquad
        \sigma_t^2 = \frac{\eta}{t^{\gamma}}, \qquad z_t \sim \mathcal N(0, I)

    with :math:`t` counting the steps from 1 (``eta`` is the variance at the first step,
    ``gamma`` its decay exponent). The noise comes from ``key``, drawn as Optax draws it
    (see :func:`gradtx.add_noise`), so the same key gives the same steps.

    Chain: ``add_noise(eta, gamma, key) → scale_by_learning_rate(η)``.

    Args:
        learning_rate: :math:`\eta_t \ge 0`, a number or a schedule of the step count.
        eta: the noise variance at the first step, :math:`\ge 0`.
        gamma: the decay exponent of the variance, :math:`\ge 0`.
        key: an int seed, a ``jax.random.key`` or a legacy raw ``jax.random.PRNGKey``; None:
            seed 0.
        seed: Optax's older name for an int ``key`` (give one or the other).

    State (named, for :func:`gradtx.tree_get`): ``count``, the one step count, and
    ``rng_key``, the raw data of the key the next noise is drawn from (Optax's ``rng_key``
    holds the typed key: ``jax.random.wrap_key_data`` turns one into the other).

    Equal step for step to ``optax.noisy_sgd`` (Optax 0.2.8), the same noise bit for bit for
    the same ``key`` (or ``seed``). Differences: Optax has no default learning rate (1e-3
    here, as :func:`gradtx.sgd`); ``key=None`` is seed 0 without Optax's warning; ``seed``,
    deprecated in Optax, is accepted without a warning; complex parameters are refused
    (Optax draws complex noise).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from gradtx.optimizers.noisy_sgd import noisy_sgd
        >>> opt = noisy_sgd(learning_rate=0.1, eta=0.0, key=jax.random.key(0))  # no noise
        >>> params = {"w": jnp.array([1.0, -2.0])}
        >>> updates, state = opt.update({"w": jnp.array([0.5, -3.0])}, opt.init(params), params)
        >>> [round(float(u), 6) for u in updates["w"]]
        [-0.05, 0.3]
    """
    return optimizer_chain(
        add_noise(eta, gamma, key, seed=seed),
        scale_by_learning_rate(learning_rate),
        real_only="noisy_sgd",
    )

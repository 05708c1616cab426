r"""Averaged SGD's pieces (Polyak & Juditsky, 1992; torch.optim.ASGD): a learning rate that
decays as a power of the step, and a running average of the parameters that starts after a
given step."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradtx import live, validation
from gradtx import tree as _tree
from gradtx.core import GradientTransformation, PyTree, ScalarOrSchedule, flattenable
from gradtx.transforms import counting


class AsgdLearningRateState(NamedTuple):
    """The state of :func:`scale_by_asgd_learning_rate`.

    Attributes:
        eta: the learning rate of the next step (a scalar in the default float dtype):
            torch's ``eta``.
        count: the number of updates seen; None inside an optimizer, which keeps one count
            for all its transforms.
    """

    eta: jax.Array
    count: jax.Array | None


class PolyakAverageState(NamedTuple):
    """The state of :func:`polyak_average`; :func:`gradtx.averaged_params` returns its ``ax``.

    Attributes:
        mu: the weight of the next parameters in the average (a scalar in the default float
            dtype): torch's ``mu``.
        ax: the average of the parameters, shaped like them, in their dtypes (zero before the
            first step): torch's ``ax``.
        count: the number of updates seen; None inside an optimizer, which keeps one count
            for all its transforms.
    """

    mu: jax.Array
    ax: PyTree
    count: jax.Array | None

    # Declares this state an average of the parameters, found by gradtx.averaged_params.
    average_field = "ax"


def _scalar_dtype():
    return jnp.result_type(float)


def scale_by_asgd_learning_rate(
    learning_rate: ScalarOrSchedule = 1e-2,
    lambd: float | jax.Array = 1e-4,
    alpha: float | jax.Array = 0.75,
) -> GradientTransformation:
    r"""Multiplies updates by :math:`-\eta_t`, ASGD's learning rate decaying as a power of the
    step, as in torch.optim.ASGD:

    .. math::
        \eta_1 = \gamma_1, \qquad
        \eta_{t+1} = \frac{\gamma_t}{(1 + \lambda\, \gamma_t\, t)^{\alpha}}, \qquad
        \text{out}_t = -\eta_t\, u_t

    with :math:`\gamma_t` the learning rate at step :math:`t` (a number, or a schedule's value)
    and :math:`t` counting steps from 1. :math:`\eta_{t+1}` is computed at the end of step
    :math:`t` from that step's values, as torch does, so a learning rate changed at step
    :math:`t` takes effect at step :math:`t + 1`; the first step uses the learning rate of
    the first step. :math:`\eta` is kept in the default float dtype (float64 when
    ``jax_enable_x64`` is on), as torch keeps it in its default dtype.

    Args:
        learning_rate: :math:`\gamma \ge 0`, a float, an array or a schedule
            ``count -> value``.
        lambd: :math:`\lambda \ge 0`, the decay term.
        alpha: :math:`\alpha \ge 0`, the power of the decay.
    """
    validation.check_non_negative("learning_rate", learning_rate)
    validation.check_non_negative("lambd", lambd)
    validation.check_non_negative("alpha", alpha)

    def rate(count):
        value = learning_rate(count) if callable(learning_rate) else live.read(learning_rate)
        return jnp.asarray(value, _scalar_dtype())

    def init(params):
        del params
        return AsgdLearningRateState(
            eta=rate(counting.zero_count()), count=counting.init_count()
        )

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        taken, count = counting.advance(state.count, "scale_by_asgd_learning_rate")
        gamma = rate(taken)
        # torch creates its eta at the first step, from the learning rate then.
        eta = jnp.where(taken == 0, gamma, state.eta)
        step = -eta  # once per step, not per leaf
        out = jax.tree_util.tree_map(lambda u: _tree.cast_like(step, u) * u, updates)
        t = counting.as_float(taken) + 1
        decay = jnp.asarray(live.read(lambd), gamma.dtype)
        power = jnp.asarray(live.read(alpha), gamma.dtype)
        next_eta = gamma / (1 + decay * gamma * t) ** power
        return out, AsgdLearningRateState(eta=next_eta.astype(state.eta.dtype), count=count)

    return flattenable(GradientTransformation(init, update))


def polyak_average(t0: float | jax.Array = 1e6) -> GradientTransformation:
    r"""Passes updates through unchanged and keeps ASGD's average of the parameters, as
    torch.optim.ASGD does:

    .. math::
        \theta_t = \theta_{t-1} + d_t, \qquad
        \bar\theta_t = \bar\theta_{t-1} + \mu_t\,(\theta_t - \bar\theta_{t-1}), \qquad
        \mu_1 = 1, \quad \mu_{t+1} = \frac{1}{\max(1,\ t - t_0)}

    with :math:`d_t` the update at step :math:`t` (counted from 1). So :math:`\bar\theta_t` is
    the latest parameters up to step :math:`\lfloor t_0 \rfloor + 2`; for a whole
    :math:`t_0` it is from there the mean of the parameters since step :math:`t_0 + 2`.
    Where :math:`\mu_t = 1` the average is set to :math:`\theta_t` (torch copies it
    there). :math:`\mu_{t+1}` is computed at the end of step :math:`t` with that step's
    :math:`t_0`; :math:`\mu` is kept in the default float dtype, :math:`\bar\theta` (``ax``,
    zero before the first step) in the parameters' dtypes.

    ``update`` needs ``params`` (:math:`\theta_{t-1}`); :math:`\theta_t` is computed as
    ``apply_updates`` would, so place this transformation last in a chain, where :math:`d_t`
    is the update applied. Read the average with :func:`gradtx.averaged_params`.

    Args:
        t0: :math:`t_0 \ge 0`, the step after which averaging starts.
    """
    validation.check_non_negative("t0", t0)

    def init(params):
        return PolyakAverageState(
            mu=jnp.ones([], _scalar_dtype()),
            ax=_tree.full_like(params, 0.0),
            count=counting.init_count(),
        )

    def update(updates, state, params=None, **extra_args):
        del extra_args
        _tree.check_params(params, updates, name="polyak_average")
        _tree.check_match(params, state.ax, reference_name="params", other_name="average")
        taken, count = counting.advance(state.count, "polyak_average")
        mu = state.mu
        copy = mu == 1

        def average(p, d, a):
            new = jnp.asarray(p + d, dtype=jnp.result_type(p)).astype(a.dtype)
            return jnp.where(copy, new, a + (new - a) * _tree.cast_like(mu, a))

        ax = jax.tree_util.tree_map(average, params, updates, state.ax)
        t = counting.as_float(taken) + 1
        start = jnp.asarray(live.read(t0), t.dtype)
        next_mu = 1 / jnp.maximum(1.0, t - start)
        return updates, PolyakAverageState(mu=next_mu.astype(mu.dtype), ax=ax, count=count)

    return flattenable(GradientTransformation(init, update))

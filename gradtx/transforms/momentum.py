"""Momentum: torch's heavy-ball and Nesterov momentum, and NAdam's scheduled momentum."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradtx import live, validation
from gradtx import tree as _tree
from gradtx.core import GradientTransformation, PyTree, flattenable
from gradtx.transforms import counting
from gradtx.transforms.moments import ema_update


class MomentumState(NamedTuple):
    """torch's ``momentum_buffer`` per parameter, and the number of updates seen (None inside
    an optimizer, which keeps one count for all its transforms)."""

    momentum_buffer: PyTree
    count: jax.Array | None


class NadamMomentumState(NamedTuple):
    """The first moment ``mu``, the running product of the momentum schedule, and the step
    count (None inside an optimizer)."""

    mu: PyTree
    mu_product: jax.Array
    count: jax.Array | None


def scale_by_momentum(
    momentum: float | jax.Array = 0.9,
    dampening: float | jax.Array = 0.0,
    nesterov: bool = False,
    *,
    dtype=None,
) -> GradientTransformation:
    """Heavy-ball or Nesterov momentum with torch.optim.SGD's semantics.

    .. math::
        b_1 = u_1, \\qquad b_t = \\mu\\, b_{t-1} + (1-\\tau)\\, u_t \\quad (t > 1)

        \\text{out}_t = u_t + \\mu\\, b_t \\ \\text{(Nesterov)} \\quad\\text{or}\\quad b_t

    with momentum :math:`\\mu` and dampening :math:`\\tau`. The buffer starts as the first update
    itself (not zero, and not damped), as in torch. A momentum of exactly 0 passes updates
    through unchanged, also when it is a traced array.

    The buffer is stored in ``dtype`` (default: the parameters').

    With no dampening, the same steps as ``optax.trace(decay=momentum, nesterov=nesterov)``:
    Optax's buffer starts at zero, so its first step also gives :math:`b_1 = u_1`. Optax has no
    dampening.
    """
    dtype = validation.check_state_dtype("dtype", dtype)
    validation.check_non_negative("momentum", momentum)
    validation.check_interval("dampening", dampening, 0.0, 1.0)
    validation.check_bool("nesterov", nesterov)
    check_nesterov({"nesterov": nesterov, "momentum": validation.concrete(momentum),
                    "dampening": validation.concrete(dampening)})
    # torch skips momentum entirely when it is 0: decided now for a Python number, per step
    # (with a select) for an array, whose value may change or be traced.
    static_momentum = isinstance(momentum, (int, float))
    static_zero = validation.is_static_zero(momentum)

    def init(params):
        buffer = _tree.full_like(params, 0.0, dtype)
        return MomentumState(momentum_buffer=buffer, count=counting.init_count())

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        taken, count = counting.advance(state.count, "scale_by_momentum")
        mu, tau = live.read(momentum), live.read(dampening)
        first = taken == 0

        # The first step, and a zero momentum (torch then keeps no buffer), restart the buffer
        # at u; so the output is the buffer in every case. The choice is made once per step on
        # two scalar weights, b <- w_b * b + w_u * u, not by a select per element.
        restart = first if static_momentum else first | (jnp.asarray(mu) == 0)
        buffer_weight = jnp.where(restart, 0.0, jnp.asarray(mu))
        update_weight = jnp.where(restart, 1.0, 1 - jnp.asarray(tau))

        def leaf(u, buf):
            new_buf = (
                _tree.cast_like(buffer_weight, buf) * buf
                + _tree.cast_like(update_weight, buf) * u
            )
            out = u + _tree.cast_like(mu, buf) * new_buf if nesterov else new_buf
            return (u if static_zero else out), new_buf

        out, (buf,) = _tree.leafwise(leaf, updates, state.momentum_buffer, name="scale_by_momentum")
        return out, MomentumState(momentum_buffer=buf, count=count)

    return flattenable(GradientTransformation(init, update))


def check_nesterov(values: Mapping[str, Any]) -> None:
    """torch's rule: Nesterov momentum needs ``momentum > 0`` and ``dampening = 0``. ``values``
    maps the three names to their values (NumPy arrays, or None where unknown); a rule of
    :func:`gradtx.sgd`'s declarations too, so ``set_hyperparam`` applies it."""
    if not values.get("nesterov"):
        return
    mom, damp = values.get("momentum"), values.get("dampening")
    if mom is not None and not (np.asarray(mom) > 0).all():
        raise ValueError(f"`nesterov=True` needs `momentum` > 0, got momentum={mom!r}.")
    if damp is not None and not (np.asarray(damp) == 0).all():
        raise ValueError(f"`nesterov=True` needs `dampening` = 0, got dampening={damp!r}.")


def nadam_momentum(
    b1: float | jax.Array = 0.9, momentum_decay: float | jax.Array = 4e-3, *, dtype=None
) -> GradientTransformation:
    """NAdam's bias-corrected Nesterov momentum with its momentum schedule (Dozat, 2016), as in
    torch.optim.NAdam:

    .. math::
        \\mu_t = \\beta_1\\bigl(1 - \\tfrac12\\, 0.96^{t\\psi}\\bigr), \\qquad
        \\Pi_t = \\prod_{i \\le t} \\mu_i, \\qquad
        m_t = \\beta_1 m_{t-1} + (1-\\beta_1) u_t

        \\text{out}_t = \\frac{1-\\mu_t}{1-\\Pi_t}\\, u_t
                      + \\frac{\\mu_{t+1}}{1-\\Pi_t\\,\\mu_{t+1}}\\, m_t

    with momentum decay :math:`\\psi`. Divide it by a bias-corrected RMS (see
    :func:`gradtx.divide_by_root`) to get NAdam. :math:`\\Pi_t` is kept in the default float dtype
    (float64 when ``jax_enable_x64`` is on), as torch keeps it in its default dtype;
    :math:`m` in ``dtype`` (default: the parameters').
    """
    dtype = validation.check_state_dtype("dtype", dtype)
    validation.check_unit_interval("b1", b1)
    validation.check_non_negative("momentum_decay", momentum_decay)

    def init(params):
        return NadamMomentumState(
            mu=_tree.full_like(params, 0.0, dtype), mu_product=jnp.ones([]),
            count=counting.init_count(),
        )

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        taken, count = counting.advance(state.count, "nadam_momentum")
        t = counting.as_float(taken) + 1
        beta = jnp.asarray(live.read(b1), state.mu_product.dtype)
        psi = jnp.asarray(live.read(momentum_decay), state.mu_product.dtype)
        mu = beta * (1.0 - 0.5 * 0.96 ** (t * psi))
        mu_next = beta * (1.0 - 0.5 * 0.96 ** ((t + 1) * psi))
        mu_product = state.mu_product * mu
        # Per-step scalars, computed once outside the elementwise work.
        gradient_weight = (1.0 - mu) / (1.0 - mu_product)
        moment_weight = mu_next / (1.0 - mu_product * mu_next)

        def leaf(u, m):
            m = ema_update(m, u, beta)
            out = _tree.cast_like(gradient_weight, m) * u + _tree.cast_like(moment_weight, m) * m
            return out, m

        out, (moment,) = _tree.leafwise(leaf, updates, state.mu, name="nadam_momentum")
        return out, NadamMomentumState(mu=moment, mu_product=mu_product, count=count)

    return flattenable(GradientTransformation(init, update))

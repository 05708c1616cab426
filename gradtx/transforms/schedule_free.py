r"""Schedule-Free learning (Defazio et al., 2024, "The Road Less Scheduled"): the step that
replaces both momentum and a decaying learning-rate schedule by an interpolation between a
base sequence and a weighted running average of it.

Three sequences are involved. :math:`z` takes plain steps along the (preconditioned)
gradient; :math:`x`, the weighted average of the :math:`z` iterates, is where the model is
evaluated; :math:`y = \beta x + (1-\beta) z` is where gradients are taken, and is what the
optimizer steps: the parameters during training. The state keeps :math:`z`; :math:`x` is never
stored, it is recovered from :math:`y` and :math:`z` by :func:`gradtx.schedule_free_eval_params`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradtx import live, validation
from gradtx import tree as _tree
from gradtx.core import GradientTransformation, PyTree, ScalarOrSchedule, flattenable
from gradtx.transforms import counting


class ScheduleFreeState(NamedTuple):
    r"""The state of :func:`scale_by_schedule_free`.

    Attributes:
        z: the base sequence :math:`z`, shaped like the parameters, in ``z_dtype`` (default:
            the parameters' dtypes); equal to the parameters before the first step. The
            reference's per-parameter ``z``.
        weight_sum: :math:`S_t`, the sum of the averaging weights so far (a scalar in the
            default float dtype). The reference's ``weight_sum``.
        lr_max: the largest learning rate used so far, after warmup (a scalar in the default
            float dtype; 0 before the first step, where the reference holds -1: the same for
            every learning rate :math:`\ge 0`). The reference's ``lr_max``.
        interpolation: :math:`\beta` of the latest step (before the first step, of the
            first), the weight of :math:`x` in :math:`y = \beta x + (1-\beta) z`, which
            :func:`gradtx.schedule_free_eval_params` needs to recover :math:`x`.
        count: the number of updates seen; None inside an optimizer, which keeps one count
            for all its transforms.
    """

    z: PyTree
    weight_sum: jax.Array
    lr_max: jax.Array
    interpolation: jax.Array
    count: jax.Array | None


def _check_b1(b1) -> None:
    validation.check_interval("b1", b1, 0.0, 1.0, low_closed=False, high_closed=False)


def scale_by_schedule_free(
    learning_rate: ScalarOrSchedule,
    b1: float | jax.Array = 0.9,
    warmup_steps: float | jax.Array = 0,
    r: float | jax.Array = 0.0,
    weight_lr_power: float | jax.Array = 2.0,
    *,
    z_dtype=None,
) -> GradientTransformation:
    r"""The Schedule-Free step (Defazio et al., 2024), as the authors' ``schedulefree``
    package takes it: the last step of :func:`gradtx.schedule_free_sgd` and
    :func:`gradtx.schedule_free_adamw`.

    Its input :math:`g_t` is the gradient after any preconditioning and weight decay; its
    output is the change of the parameters :math:`y`. With :math:`\eta_t` the learning rate,
    :math:`W` = ``warmup_steps``, :math:`\beta` = ``b1``, :math:`p` = ``weight_lr_power`` and
    :math:`t` counting steps from 1:

    .. math::
        \gamma_t &= \eta_t \cdot \begin{cases} t / W & t - 1 < W \\ 1 & \text{otherwise}
            \end{cases}, \qquad
        \gamma^{\max}_t = \max(\gamma^{\max}_{t-1}, \gamma_t) \\
        w_t &= t^{\,r}\, (\gamma^{\max}_t)^{p}, \qquad S_t = S_{t-1} + w_t, \qquad
        c_t = \begin{cases} w_t / S_t & S_t \ne 0 \\ 0 & S_t = 0 \end{cases} \\
        y_t &= y_{t-1} + c_t\,(z_{t-1} - y_{t-1}) + \gamma_t\,\bigl(\beta(1-c_t) - 1\bigr)\,g_t
            \\
        z_t &= z_{t-1} - \gamma_t\, g_t

    with :math:`z_0 = y_0` (the parameters given to ``init``) and :math:`S_0 = 0`. This is
    :math:`x_t = (1-c_t)\,x_{t-1} + c_t z_t` and :math:`y_t = \beta x_t + (1-\beta) z_t`
    written without :math:`x`: the average :math:`x_t = y_t + (1 - 1/\beta)(z_t - y_t)`, the
    parameters to evaluate the model at, is returned by
    :func:`gradtx.schedule_free_eval_params`. The weights grow with the learning rate during
    warmup (:math:`p > 0`) and with the step (:math:`r > 0`); ``r = 0, weight_lr_power = 0``
    averages all :math:`z` iterates uniformly.

    The per-step scalars (:math:`\gamma_t, w_t, S_t, c_t`) are computed in the default float
    dtype (float64 when ``jax_enable_x64`` is on), as the reference computes them in Python
    floats. ``update`` needs ``params`` (:math:`y_{t-1}`): place the transformation last in a
    chain, where its output is the update applied.

    Args:
        learning_rate: :math:`\eta \ge 0`, a float, an array or a schedule ``count -> value``
            (evaluated at the number of steps already taken); the warmup multiplies it.
        b1: :math:`\beta \in (0, 1)`, the interpolation between the average and the base
            sequence (the reference's ``momentum`` or ``betas[0]``).
        warmup_steps: :math:`W \ge 0`, the length of the linear warmup (0: none).
        r: :math:`r \ge 0`, the power of the step in the averaging weights.
        weight_lr_power: :math:`p \ge 0`, the power of the largest learning rate in the
            averaging weights.
        z_dtype: the dtype :math:`z` is stored in (default: the parameters').

    State: :class:`gradtx.ScheduleFreeState` (``z``, ``weight_sum``, ``lr_max``,
    ``interpolation``, and ``count`` outside an optimizer).

    Example:
        >>> import gradtx as gx, jax.numpy as jnp
        >>> opt = gx.chain(gx.add_decayed_weights(0.1), gx.scale_by_schedule_free(0.5))
        >>> params = {"w": jnp.asarray([1.0, -2.0])}
        >>> state = opt.init(params)
        >>> updates, state = opt.update({"w": jnp.asarray([1.0, 1.0])}, state, params)
        >>> params = gx.apply_updates(params, updates)  # c_1 = 1: y_1 = z_0 - 0.5 (g + 0.1 y_0)
        >>> [round(x, 6) for x in params["w"].tolist()]
        [0.45, -2.4]
    """
    validation.check_non_negative("learning_rate", learning_rate)
    _check_b1(b1)
    validation.check_non_negative("warmup_steps", warmup_steps)
    validation.check_non_negative("r", r)
    validation.check_non_negative("weight_lr_power", weight_lr_power)
    z_dtype = validation.check_state_dtype("z_dtype", z_dtype)

    def scalar(value) -> jax.Array:
        return jnp.asarray(value, jnp.result_type(float))

    def init(params):
        return ScheduleFreeState(
            z=jax.tree_util.tree_map(
                lambda p: jnp.array(p, dtype=z_dtype or jnp.result_type(p)), params
            ),
            weight_sum=scalar(0.0),
            lr_max=scalar(0.0),
            interpolation=scalar(live.read(b1)),
            count=counting.init_count(),
        )

    def update(updates, state, params=None, **extra_args):
        del extra_args
        _tree.check_params(params, updates, name="scale_by_schedule_free")
        taken, count = counting.advance(state.count, "scale_by_schedule_free")
        # Per-step scalars, once per step and in the default float dtype, in the reference's
        # order of operations.
        step = counting.as_float(taken)
        base = learning_rate(taken) if callable(learning_rate) else live.read(learning_rate)
        warmup = scalar(live.read(warmup_steps))
        warming = step < warmup
        # The division is guarded so that W = 0 computes no 1/0 (which would reach gradients
        # taken with respect to the hyperparameters through jnp.where as a NaN).
        sched = jnp.where(warming, (step + 1) / jnp.where(warming, warmup, 1.0), 1.0)
        lr = scalar(base) * sched
        lr_max = jnp.maximum(lr, state.lr_max)
        power_r, power_lr = scalar(live.read(r)), scalar(live.read(weight_lr_power))
        weight = (step + 1) ** power_r * lr_max**power_lr
        weight_sum = state.weight_sum + weight
        empty = weight_sum == 0
        ck = jnp.where(empty, 0.0, weight / jnp.where(empty, 1.0, weight_sum))
        beta = scalar(live.read(b1))
        y_step = lr * (beta * (1 - ck) - 1)

        def leaf(g, z, y):
            g, z_wide, y = _tree.widen(g, z, y)
            out = _tree.cast_like(ck, z_wide) * (z_wide - y) + _tree.cast_like(y_step, g) * g
            new_z = z_wide - _tree.cast_like(lr, g) * g
            return out, new_z.astype(z.dtype)

        results = _tree.map_state(leaf, updates, state.z, params, name="scale_by_schedule_free")
        out, z = _tree.split_tuples(results, updates, 2)
        return out, ScheduleFreeState(
            z=z, weight_sum=weight_sum, lr_max=lr_max,
            interpolation=beta.astype(state.interpolation.dtype), count=count,
        )

    return flattenable(GradientTransformation(init, update))

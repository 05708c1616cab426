"""Schedule-Free SGD and AdamW (Defazio et al., 2024), equal step for step to the authors'
``schedulefree`` package, and the evaluation parameters of either."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from gradtx import tree as _tree
from gradtx.core import GradientTransformation, PyTree, ScalarOrSchedule, chain, identity
from gradtx.hyperparams.declarations import (
    NON_NEGATIVE,
    OPEN_UNIT_INTERVAL,
    STATE_DTYPE,
    WEIGHT_DECAY,
)
from gradtx.named_state import tree_get
from gradtx.optimizers import leaf_kinds
from gradtx.optimizers._common import (
    BETA,
    EPS,
    LEARNING_RATE,
    optimizer,
    optimizer_chain,
    weight_decay_if,
)
from gradtx.transforms.moments import bias_correction, ema_of_squares
from gradtx.transforms.root_scaling import divide_by_root
from gradtx.transforms.schedule_free import ScheduleFreeState, scale_by_schedule_free

# The arguments of the Schedule-Free step that both optimizers take.
_SCHEDULE_FREE = dict(
    learning_rate=LEARNING_RATE,
    weight_decay=WEIGHT_DECAY,
    warmup_steps=NON_NEGATIVE,
    r=NON_NEGATIVE,
    weight_lr_power=NON_NEGATIVE,
    z_dtype=STATE_DTYPE,
)


@optimizer(**_SCHEDULE_FREE, momentum=OPEN_UNIT_INTERVAL)
def schedule_free_sgd(
    learning_rate: ScalarOrSchedule = 1.0,
    momentum: float | jax.Array = 0.9,
    weight_decay: float | jax.Array = 0.0,
    warmup_steps: float | jax.Array = 0,
    r: float | jax.Array = 0.0,
    weight_lr_power: float | jax.Array = 2.0,
    z_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Schedule-Free SGD (Defazio et al., 2024, "The Road Less Scheduled"), equal step for
    step to ``schedulefree.SGDScheduleFree`` in train mode.

    The parameters :math:`y` are where gradients are taken; evaluate the model at
    :math:`x`, given by :func:`schedule_free_eval_params`. No learning-rate schedule is needed
    (warmup is built in), and ``momentum`` is the interpolation :math:`\beta` between the
    average :math:`x` and the base sequence :math:`z` rather than a momentum buffer. With
    :math:`\gamma_t`, :math:`c_t` the warmed-up learning rate and the averaging weight of
    :func:`scale_by_schedule_free`:

    .. math::
        g_t &\leftarrow \nabla f(y_{t-1}) + \lambda\, y_{t-1} \\
        y_t &= y_{t-1} + c_t\,(z_{t-1} - y_{t-1}) + \gamma_t\,\bigl(\beta(1-c_t) - 1\bigr)\,g_t
            \\
        z_t &= z_{t-1} - \gamma_t\, g_t, \qquad z_0 = y_0 \\
        x_t &= y_t + (1 - 1/\beta)\,(z_t - y_t)

    ``weight_decay`` :math:`\lambda` is an L2 penalty added to the gradient at :math:`y`, as
    in the reference.

    Chain: ``[add_decayed_weights(λ)] → scale_by_schedule_free(η, β, warmup_steps, r,
    weight_lr_power)``; the decay is left out for a Python 0.

    Args:
        learning_rate: :math:`\eta \ge 0`, a float, array or schedule ``count -> value``; the
            warmup multiplies it.
        momentum: :math:`\beta \in (0, 1)`.
        weight_decay: L2 penalty :math:`\lambda \ge 0`.
        warmup_steps: :math:`W \ge 0`: the learning rate is :math:`\eta\, t/W` at steps
            :math:`t \le W`.
        r: :math:`r \ge 0`, the power of the step in the averaging weights.
        weight_lr_power: :math:`p \ge 0`, the power of the largest learning rate so far in the
            averaging weights.
        z_dtype: the dtype :math:`z` is stored in; None keeps the parameters' dtype.

    State (named, for :func:`gradtx.tree_get`): ``count``, the one step count (the
    reference's ``k``), ``z`` (the reference's ``z``), ``weight_sum``, ``lr_max`` and
    ``interpolation`` (:math:`\beta` of the latest step); see
    :class:`gradtx.ScheduleFreeState`.

    torch.optim: none. The reference is ``schedulefree.SGDScheduleFree(params, lr, momentum,
    weight_decay, warmup_steps, r, weight_lr_power)`` (its ``foreach`` switch does not change
    the step). It checks only ``lr``, ``weight_decay`` and ``momentum``; gradtx also refuses
    negative ``warmup_steps``, ``r`` and ``weight_lr_power``. Its ``.train()`` and
    ``.eval()`` swap :math:`y` and :math:`x` in place; here the parameters stay :math:`y` and
    :func:`schedule_free_eval_params` returns :math:`x`.

    Differences from ``optax.contrib.schedule_free_sgd``: Optax has no ``r`` (its weights
    are those of ``r = 0``) and calls ``momentum`` ``b1`` and ``z_dtype`` ``state_dtype``.
    Its ``warmup_steps`` (default None, here 0) is a warmup schedule that the SGD step reads
    one step later than the averaging does, so with warmup its first step leaves :math:`z`
    where it is. It computes :math:`y_t` through :math:`x` (dividing by :math:`\beta`),
    which rounds differently.

    Example:
        >>> import gradtx as gx, jax, jax.numpy as jnp
        >>> def f(w): return jnp.sum(w ** 2)
        >>> opt = gx.schedule_free_sgd(learning_rate=0.1)
        >>> params = jnp.asarray([1.0, 2.0, 3.0])
        >>> state = opt.init(params)
        >>> for _ in range(20):
        ...     updates, state = opt.update(jax.grad(f)(params), state, params)
        ...     params = gx.apply_updates(params, updates)
        >>> x = gx.schedule_free_eval_params(state, params)
        >>> print(f"train (y): {f(params):.2e}, eval (x): {f(x):.2e}")
        train (y): 9.23e-03, eval (x): 2.30e-04
    """
    return optimizer_chain(
        weight_decay_if(weight_decay),
        scale_by_schedule_free(
            learning_rate, momentum, warmup_steps, r, weight_lr_power, z_dtype=z_dtype
        ),
    )


@optimizer(**_SCHEDULE_FREE, b1=OPEN_UNIT_INTERVAL, b2=BETA, eps=EPS, nu_dtype=STATE_DTYPE)
def schedule_free_adamw(
    learning_rate: ScalarOrSchedule = 0.0025,
    b1: float | jax.Array = 0.9,
    b2: float | jax.Array = 0.999,
    eps: float | jax.Array = 1e-8,
    weight_decay: float | jax.Array = 0.0,
    warmup_steps: float | jax.Array = 0,
    r: float | jax.Array = 0.0,
    weight_lr_power: float | jax.Array = 2.0,
    z_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
) -> GradientTransformation:
    r"""Schedule-Free AdamW (Defazio et al., 2024, "The Road Less Scheduled"), equal step for
    step to ``schedulefree.AdamWScheduleFree`` in train mode.

    :func:`schedule_free_sgd`'s step on the gradient divided by the root of Adam's
    bias-corrected second moment, with decoupled weight decay taken at :math:`y`. There is no
    first moment: :math:`\beta_1` interpolates between the average :math:`x` (evaluate the
    model at :func:`schedule_free_eval_params`) and the base sequence :math:`z`. With
    :math:`\gamma_t`, :math:`c_t` as in :func:`scale_by_schedule_free`:

    .. math::
        v_t &= \beta_2 v_{t-1} + (1-\beta_2)\, g_t^2, \qquad v_0 = 0 \\
        d_t &= \frac{g_t}{\sqrt{v_t / (1-\beta_2^t)} + \epsilon} + \lambda\, y_{t-1} \\
        y_t &= y_{t-1} + c_t\,(z_{t-1} - y_{t-1})
            + \gamma_t\,\bigl(\beta_1(1-c_t) - 1\bigr)\,d_t \\
        z_t &= z_{t-1} - \gamma_t\, d_t, \qquad z_0 = y_0 \\
        x_t &= y_t + (1 - 1/\beta_1)\,(z_t - y_t)

    Chain: ``divide_by_root(identity(), chain(ema_of_squares(β2), bias_correction(β2)),
    eps=ε) → [add_decayed_weights(λ)] → scale_by_schedule_free(η, β1, warmup_steps, r,
    weight_lr_power)``; the decay is left out for a Python 0.

    Args:
        learning_rate: :math:`\eta \ge 0`, a float, array or schedule ``count -> value``; the
            warmup multiplies it.
        b1: :math:`\beta_1 \in (0, 1)`, the interpolation.
        b2: :math:`\beta_2 \in [0, 1)`, the decay of the second moment.
        eps: :math:`\epsilon \ge 0`, added to the root.
        weight_decay: decoupled weight decay :math:`\lambda \ge 0`.
        warmup_steps: :math:`W \ge 0`: the learning rate is :math:`\eta\, t/W` at steps
            :math:`t \le W`.
        r: :math:`r \ge 0`, the power of the step in the averaging weights.
        weight_lr_power: :math:`p \ge 0`, the power of the largest learning rate so far in the
            averaging weights.
        z_dtype: the dtype :math:`z` is stored in; None keeps the parameters' dtype.
        nu_dtype: the dtype :math:`v` is stored in; None keeps the parameters' dtype.

    State (named, for :func:`gradtx.tree_get`): ``count``, the one step count (the
    reference's ``k``), ``nu`` (the reference's ``exp_avg_sq``), ``z`` (its ``z``),
    ``weight_sum``, ``lr_max`` and ``interpolation`` (:math:`\beta_1` of the latest step);
    see :class:`gradtx.ScheduleFreeState`.

    torch.optim: none. The reference is ``schedulefree.AdamWScheduleFree(params, lr,
    betas=(b1, b2), eps, weight_decay, warmup_steps, r, weight_lr_power)`` (its ``foreach``
    switch does not change the step). It checks none of its arguments; gradtx refuses
    negative ``learning_rate``, ``eps``, ``weight_decay``, ``warmup_steps``, ``r`` and
    ``weight_lr_power``, ``b2`` outside :math:`[0, 1)` and ``b1`` outside :math:`(0, 1)`
    (the evaluation parameters divide by it). Its ``.train()`` and ``.eval()`` swap
    :math:`y` and :math:`x` in place; here the parameters stay :math:`y` and
    :func:`schedule_free_eval_params` returns :math:`x`.

    Differences from ``optax.contrib.schedule_free_adamw``: Optax has no ``r`` (its weights
    are those of ``r = 0``) and calls ``z_dtype`` ``state_dtype``. Its ``warmup_steps``
    (default None, here 0) is a warmup schedule that the AdamW step reads one step later
    than the averaging does, so with warmup its first step leaves :math:`z` where it is. It
    computes :math:`y_t` through :math:`x` (dividing by :math:`\beta_1`), which rounds
    differently. Its chain is the same otherwise.

    Example:
        >>> import gradtx as gx, jax, jax.numpy as jnp
        >>> def f(w): return jnp.sum(w ** 2)
        >>> opt = gx.schedule_free_adamw(learning_rate=0.5, warmup_steps=5)
        >>> params = jnp.asarray([1.0, 2.0, 3.0])
        >>> state = opt.init(params)
        >>> for _ in range(20):
        ...     updates, state = opt.update(jax.grad(f)(params), state, params)
        ...     params = gx.apply_updates(params, updates)
        >>> x = gx.schedule_free_eval_params(state, params)
        >>> print(f"train (y): {f(params):.2e}, eval (x): {f(x):.2e}")
        train (y): 2.44e-02, eval (x): 1.77e-02
        >>> gx.tree_get(state, "nu").shape, float(gx.tree_get(state, "lr_max"))
        ((3,), 0.5)
    """
    return optimizer_chain(
        divide_by_root(
            identity(), chain(ema_of_squares(b2, dtype=nu_dtype), bias_correction(b2)), eps=eps
        ),
        weight_decay_if(weight_decay),
        scale_by_schedule_free(
            learning_rate, b1, warmup_steps, r, weight_lr_power, z_dtype=z_dtype
        ),
    )


def _is_schedule_free_state(x) -> bool:
    return isinstance(x, ScheduleFreeState)


def _schedule_free_entries(state: PyTree) -> tuple[PyTree, jax.Array]:
    """``(z, interpolation)`` of the one Schedule-Free step in ``state``."""
    found = [
        node
        for node in jax.tree_util.tree_leaves(state, is_leaf=_is_schedule_free_state)
        if _is_schedule_free_state(node)
    ]
    if len(found) > 1:
        raise ValueError(
            f"schedule_free_eval_params: the state holds {len(found)} Schedule-Free states "
            "side by side; pass the part of the state that holds the one you want."
        )
    if found:
        return found[0].z, found[0].interpolation
    # A state whose NamedTuples became plain containers (a checkpoint restored without its
    # target structure) still names its entries.
    try:
        return tree_get(state, "z"), tree_get(state, "interpolation")
    except KeyError as error:
        raise ValueError(
            "schedule_free_eval_params: the state holds no Schedule-Free state (entries `z` "
            "and `interpolation`). Pass the state of schedule_free_sgd, schedule_free_adamw or "
            f"scale_by_schedule_free, or of anything containing one. ({error.args[0]})"
        ) from None


def schedule_free_eval_params(state: PyTree, params: PyTree) -> PyTree:
    r"""The parameters to evaluate a Schedule-Free model at: the average :math:`x` of
    :func:`schedule_free_sgd`, :func:`schedule_free_adamw` or
    :func:`scale_by_schedule_free`, from the training parameters :math:`y` and the state.

    .. math:: x = y + (1 - 1/\beta)\,(z - y)

    with :math:`z` and :math:`\beta` (``interpolation``, the one of the latest step) from the
    state. This is what the reference's ``optimizer.eval()`` puts in the parameters; there is
    nothing to undo afterwards (its ``.train()``): keep training from ``params``. Before any
    step (:math:`z = y`) it returns ``params``' values.

    ``state`` is the optimizer's state or anything containing it (a ``chain``, a wrapper, a
    dict); the Schedule-Free state is found by its type, or, in a state whose NamedTuples
    were turned into plain containers, by the names ``z`` and ``interpolation``. Each result
    has its parameter's dtype (complex parameters, stored as real pairs inside the
    optimizers, included). Works eagerly and under ``jit``. For the state of
    :func:`gradtx.multi_tensor`, whose ``z`` is packed into buffers, pass
    ``gx.per_leaf_state(state, params)``.

    Args:
        state: a state holding one :class:`gradtx.ScheduleFreeState`.
        params: the training parameters :math:`y`, as given to ``update``.

    Raises:
        ValueError: the state holds no Schedule-Free state, or several side by side.

    Example:
        >>> import gradtx as gx, jax.numpy as jnp
        >>> opt = gx.schedule_free_sgd(learning_rate=0.1, momentum=0.5)
        >>> params = {"w": jnp.asarray([1.0, 1.0])}
        >>> state = opt.init(params)
        >>> gx.schedule_free_eval_params(state, params)["w"].tolist()  # z = y before a step
        [1.0, 1.0]
        >>> for g in ([1.0, 0.0], [1.0, 0.0]):
        ...     updates, state = opt.update({"w": jnp.asarray(g)}, state, params)
        ...     params = gx.apply_updates(params, updates)
        >>> [round(v, 6) for v in params["w"].tolist()]  # y
        [0.825, 1.0]
        >>> [round(v, 6) for v in gx.schedule_free_eval_params(state, params)["w"].tolist()]
        [0.85, 1.0]
    """
    z, interpolation = _schedule_free_entries(state)
    _tree.check_match(params, z, reference_name="params", other_name="the state's z", shapes=False)
    weight = 1 - 1 / jnp.asarray(interpolation, jnp.result_type(float))

    def leaf(y, z):
        y = jnp.asarray(y)
        pair = leaf_kinds._is_complex(y) and not leaf_kinds._is_complex(z)
        y_wide, z_wide = _tree.widen(leaf_kinds.as_real(y) if pair else y, z)
        x = y_wide + weight.astype(y_wide.dtype) * (z_wide - y_wide)
        return leaf_kinds.from_real(x, y) if pair else x.astype(y.dtype)

    return jax.tree_util.tree_map(leaf, params, z)

r"""Polyak averaging of the parameters: an exponential moving average of the parameters kept
beside an inner optimizer, read back with :func:`averaged_params`."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradtx import core, live, validation
from gradtx import tree as _tree
from gradtx.core import GradientTransformation, PyTree, flattenable, is_flattenable
from gradtx.transforms import counting
from gradtx.transforms.moments import ema_update


class ParamAverageState(NamedTuple):
    """The state of :func:`with_param_average`.

    Attributes:
        inner_state: the inner transformation's state.
        average: the moving average of the parameters, shaped like them, in their dtypes.
        count: the number of steps averaged so far (an int32 scalar, saturating); None inside
            an optimizer, which keeps one count for all its transforms.
    """

    inner_state: PyTree
    average: PyTree
    count: jax.Array | None

    # The field of averaged parameters. A state class with a class attribute ``average_field``
    # declares itself an average of the parameters, which averaged_params returns (torch's
    # ASGD keeps one too: gradtx.polyak_average's PolyakAverageState).
    average_field = "average"


def with_param_average(
    inner: GradientTransformation, decay: float | jax.Array = 0.999
) -> GradientTransformation:
    r"""Runs ``inner`` unchanged and keeps an exponential moving average of the parameters.

    With :math:`\beta` = ``decay``, :math:`\theta_0` the parameters given to ``init`` and
    :math:`d_t` the inner update at step :math:`t`:

    .. math::
        \bar\theta_0 = \theta_0, \qquad
        \theta_t = \theta_{t-1} + d_t, \qquad
        \bar\theta_t = \beta\,\bar\theta_{t-1} + (1-\beta)\,\theta_t

    so :math:`\bar\theta_t = \beta^t\theta_0 + (1-\beta)\sum_{i=1}^t \beta^{t-i}\theta_i`. The
    returned update is :math:`d_t`, unchanged: training follows ``inner`` exactly and the
    average is read with :func:`averaged_params`. ``update`` needs ``params``
    (:math:`\theta_{t-1}`); :math:`\theta_t` is computed as ``apply_updates`` would, in the
    parameter's dtype.

    Place the wrapper outermost, or last in a chain, so that :math:`d_t` is the update actually
    applied.

    torch.optim: ``swa_utils.AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))``
    with ``update_parameters(model)`` after every step. The conventions differ at the start:
    ``AveragedModel`` *copies* the parameters at its first ``update_parameters`` call
    (:math:`\bar\theta_1 = \theta_1`) and averages from the second, whereas gradtx averages in
    the initial parameters (:math:`\bar\theta_0 = \theta_0`, the formula in torch's
    ``get_ema_multi_avg_fn`` docstring). Calling ``update_parameters`` once before the first
    step makes torch's average equal gradtx's at every step; without that call the two differ
    by :math:`\beta^t(\theta_0 - \theta_1)`. gradtx keeps :math:`\theta_0` so that the state is
    fully defined by ``init`` and no step is special under ``jit``.

    Args:
        inner: the optimizer whose parameters are averaged, any transformation.
        decay: :math:`\beta \in [0, 1]`, a float or an array (it may be traced).

    Example:
        >>> import jax.numpy as jnp
        >>> import gradtx as gx
        >>> from gradtx.wrappers.averaging import averaged_params, with_param_average
        >>> opt = with_param_average(gx.sgd(learning_rate=0.5), decay=0.5)
        >>> params = {"w": jnp.array([1.0, 2.0])}
        >>> state = opt.init(params)
        >>> updates, state = opt.update({"w": jnp.ones(2)}, state, params)
        >>> params = gx.apply_updates(params, updates)
        >>> print(params["w"], averaged_params(state)["w"])  # 0.5 * theta_0 + 0.5 * theta_1
        [0.5 1.5] [0.75 1.75]
    """
    core._check_transforms((inner,), "with_param_average")
    validation.check_interval("decay", decay, 0.0, 1.0)

    def init(params):
        return ParamAverageState(
            inner_state=inner.init(params),
            average=jax.tree_util.tree_map(jnp.array, params),
            count=counting.init_count(),
        )

    inner_update = core.with_extra_args(inner.update)

    def update(updates, state, params=None, **extra_args):
        _tree.check_params(params, updates, name="with_param_average")
        inner_updates, inner_state = inner_update(
            updates, state.inner_state, params, **extra_args
        )
        _tree.check_match(
            params, inner_updates, reference_name="params", other_name="inner updates"
        )
        _tree.check_match(params, state.average, reference_name="params", other_name="average")

        beta = live.read(decay)

        def average_step(p, d, a):
            return ema_update(a, (p + d).astype(p.dtype), beta)

        average = jax.tree_util.tree_map(average_step, params, inner_updates, state.average)
        new_state = ParamAverageState(
            inner_state=inner_state, average=average,
            count=counting.advance(state.count, "with_param_average")[1],
        )
        return inner_updates, new_state

    return flattenable(GradientTransformation(init, update), is_flattenable(inner))


def _is_average_state(x) -> bool:
    """A state that declares itself an average of the parameters: a tuple (NamedTuple) whose
    class names its field of averaged parameters in ``average_field``."""
    return isinstance(x, tuple) and isinstance(getattr(type(x), "average_field", None), str)


def averaged_params(state: PyTree) -> PyTree:
    """The averaged parameters kept in ``state`` by :func:`with_param_average`, or by an
    optimizer that averages its parameters itself (:func:`gradtx.asgd`, torch's ``ax``).

    ``state`` is the state of the wrapper or optimizer itself or of anything containing it (a
    ``chain``, ``parallel``, or another wrapper): the state tree is searched for a state that
    declares itself an average (a class attribute ``average_field`` naming the field, as
    :class:`ParamAverageState` has), and the outermost one is used when averages are nested.
    It works on traced states too. An average kept inside an optimizer holds a complex
    parameter as its real pair ``stack([Re, Im])``, as the optimizer's other state does.

    Raises:
        ValueError: when ``state`` holds no average of the parameters, or holds several side
            by side (which one is meant would be ambiguous).
    """
    found = [
        leaf
        for leaf in jax.tree_util.tree_leaves(state, is_leaf=_is_average_state)
        if _is_average_state(leaf)
    ]
    if not found:
        raise ValueError(
            "averaged_params: the state holds no parameter average. Wrap the optimizer with "
            "with_param_average(...) (or use one that averages, such as asgd) and pass the "
            "state made by its init and update."
        )
    if len(found) > 1:
        raise ValueError(
            f"averaged_params: the state holds {len(found)} parameter averages side by side; "
            "pass the part of the state that holds the one you want."
        )
    return getattr(found[0], type(found[0]).average_field)

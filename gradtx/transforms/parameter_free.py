r"""Step sizes without a learning rate to tune: COCOB's coin betting (Orabona & Tommasi, 2017),
DoG, "distance over gradients" (Ivgi et al., 2023), with its layer-wise form LDoG, and DoWG,
"distance over weighted gradients" (Khaled et al., 2023). Each equals its namesake in Optax
0.2.8 step for step.

COCOB bets, entry by entry, a fraction of the "wealth" that past gradients have earned, so its
step grows while the gradient keeps its sign and shrinks when it flips. DoG and DoWG set one
step size for the whole tree from :math:`\lVert\theta_t - \theta_0\rVert`, the distance
travelled from the initial parameters, over the accumulated gradient norms; LDoG sets one per
leaf. All but COCOB return the gradient times a scalar (a step to be negated by the learning
rate); COCOB returns the change of the parameters itself.

Every transformation here needs ``params`` in ``update``, and keeps a copy of the parameters
given to ``init``: give ``init`` the real starting parameters, not placeholders.

DoG's and DoWG's scalars (distances, sums of squared norms) and LDoG's per-leaf ones are kept
in the default float dtype (float64 with ``jax_enable_x64``); each leaf's contribution to a
norm is computed in its own dtype, at least float32. Square roots of sums that can be zero
(a distance at the first step) have a zero derivative there, so that ``jax.grad`` through a
run in a hyperparameter gives no ``inf * 0``; their values are those of ``jnp.sqrt``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradtx import live, validation
from gradtx import tree as _tree
from gradtx.core import GradientTransformation, PyTree, flattenable
from gradtx.transforms.d_adaptation import _accumulated, _root, _scalar, _scalar_dtype


class ScaleByCocobState(NamedTuple):
    """The state of :func:`scale_by_cocob`, per parameter (Optax's field names).

    Attributes:
        init_particles: the parameters given to ``init``, :math:`\\theta_0`.
        cumulative_gradients: :math:`C_t = -\\sum_{k \\le t} g_k`, minus the sum of the
            gradients.
        scale: :math:`L_t`, the largest :math:`|g|` so far (``eps`` at the start).
        subgradients: :math:`G_t = \\sum_{k \\le t} |g_k|`.
        reward: :math:`R_t`, the wealth won so far (never below 0).
    """

    init_particles: PyTree
    cumulative_gradients: PyTree
    scale: PyTree
    subgradients: PyTree
    reward: PyTree


class ScaleByDogState(NamedTuple):
    """The state of :func:`scale_by_dog` (Optax's field names).

    Attributes:
        is_init_step: True until the first step is taken (a bool scalar).
        init_params: the parameters given to ``init``, :math:`\\theta_0`.
        max_dist: :math:`\\bar r_t`, the largest distance :math:`\\lVert\\theta_k -
            \\theta_0\\rVert` so far (starting at :math:`r_\\epsilon`).
        sum_sq_norm_grads: :math:`G_t = \\sum_{k \\le t} \\lVert g_k\\rVert^2`.
    """

    is_init_step: jax.Array
    init_params: PyTree
    max_dist: jax.Array
    sum_sq_norm_grads: jax.Array


class ScaleByDowgState(NamedTuple):
    """The state of :func:`scale_by_dowg` (Optax's field names).

    Attributes:
        init_params: the parameters given to ``init``, :math:`\\theta_0`.
        weighted_sq_norm_grads: :math:`v_t = \\sum_{k \\le t} \\bar r_k^2 \\lVert g_k\\rVert^2`.
        estim_sq_dist: :math:`\\bar r_t^2`, the largest squared distance
            :math:`\\lVert\\theta_k - \\theta_0\\rVert^2` so far (starting at the initial
            estimate).
    """

    init_params: PyTree
    weighted_sq_norm_grads: jax.Array
    estim_sq_dist: jax.Array


class ScaleByDistanceOverGradientsState(NamedTuple):
    """The state of :func:`scale_by_distance_over_gradients`, one scalar per leaf for the
    first two fields (Optax's field names).

    Attributes:
        max_dist: per leaf, :math:`\\bar r_t`, the largest distance of the leaf from its
            initial value so far (starting at ``reps_rel`` times one plus its norm).
        grad_sum_of_squares: per leaf, :math:`G_t`, the sum of the squared norms of its
            gradients.
        init_params: the parameters given to ``init``, in ``param_dtype``.
    """

    max_dist: PyTree
    grad_sum_of_squares: PyTree
    init_params: PyTree


# --------------------------------------------------------------------------------------------
# Sums over the whole tree


def _squared(x: jax.Array) -> jax.Array:
    """The sum of the squared moduli of ``x``'s entries, in its dtype (at least float32)."""
    x = _accumulated(x)
    if jnp.iscomplexobj(x):
        return jnp.sum(jnp.square(x.real) + jnp.square(x.imag))
    return jnp.sum(jnp.square(x))


def squared_norm(tree: PyTree) -> jax.Array:
    """:math:`\\lVert x\\rVert^2` over all the entries of all the leaves of ``tree``, added
    leaf by leaf in their order, as a scalar of the default float dtype (0 for an empty
    tree)."""
    total = jnp.zeros([], _scalar_dtype())
    for leaf in jax.tree_util.tree_leaves(tree):
        total = total + _squared(leaf).astype(total.dtype)
    return total


def squared_distance(a: PyTree, b: PyTree) -> jax.Array:
    """:math:`\\lVert a - b\\rVert^2` over whole trees, each difference in the two leaves'
    common dtype."""
    return squared_norm(jax.tree_util.tree_map(lambda x, y: x - y, a, b))


def _copy(params: PyTree) -> PyTree:
    """A copy of the parameters: their own buffers may be donated to a jitted step later."""
    return jax.tree_util.tree_map(jnp.copy, params)


def _scaled(factor: jax.Array, updates: PyTree) -> PyTree:
    """``factor * u`` for every leaf, in the leaf's dtype."""
    return jax.tree_util.tree_map(lambda u: _tree.cast_like(factor, u) * u, updates)


def _check_positive(name: str, value) -> None:
    validation.check_interval(name, value, 0.0, low_closed=False)


# --------------------------------------------------------------------------------------------
# COCOB


def scale_by_cocob(
    alpha: float | jax.Array = 100.0, eps: float | jax.Array = 1e-8
) -> GradientTransformation:
    r"""COCOB-Backprop's step (Orabona & Tommasi, 2017, "Training Deep Networks without
    Learning Rates Through Coin Betting", Algorithm 2), entry by entry. Its input :math:`g_t`
    is the gradient (after any weight decay); its output is the change of the parameters
    (already signed: add it). With :math:`\theta_0` the parameters given to ``init`` and
    :math:`\alpha` = ``alpha``:

    .. math::
        L_t &= \max(L_{t-1}, |g_t|), \qquad G_t = G_{t-1} + |g_t|, \qquad
        R_t = \max\bigl(R_{t-1} - g_t(\theta_{t-1} - \theta_0),\ 0\bigr), \qquad
        C_t = C_{t-1} - g_t \\
        u_t &= \theta_0 + \frac{C_t}{L_t \max(G_t + L_t,\ \alpha L_t)}\,(L_t + R_t)
            - \theta_{t-1}

    starting at :math:`L_0` = ``eps`` (which keeps the first division finite when a
    gradient entry is zero) and :math:`G_0 = R_0 = C_0 = 0`. The step is invariant to the
    scale of the gradients (but for ``eps``). Equal step for step to
    ``optax.contrib.scale_by_cocob`` (Optax 0.2.8).

    Args:
        alpha: :math:`\alpha \ge 0`, which caps the fraction of the wealth bet in the first
            steps (the paper's 100).
        eps: :math:`L_0 > 0`.

    ``update`` needs ``params``. State: :class:`ScaleByCocobState`.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.transforms.parameter_free import scale_by_cocob
        >>> tx = scale_by_cocob()
        >>> params = {"w": jnp.array([1.0, -2.0])}
        >>> updates, state = tx.update({"w": jnp.array([0.5, -3.0])}, tx.init(params), params)
        >>> # first step: -g / (α |g|), a bet of 1% against the gradient's sign
        >>> [round(float(u), 6) for u in updates["w"]]
        [-0.01, 0.01]
    """
    validation.check_non_negative("alpha", alpha)
    _check_positive("eps", eps)

    def init(params):
        zeros = _tree.full_like(params, 0.0)
        return ScaleByCocobState(
            init_particles=_copy(params),
            cumulative_gradients=zeros,
            scale=_tree.full_like(params, live.read(eps)),
            subgradients=zeros,
            reward=zeros,
        )

    def update(updates, state, params=None, **extra_args):
        del extra_args
        _tree.check_params(params, updates, name="scale_by_cocob")
        bet_cap = live.read(alpha)

        def leaf(g, c, p, p0, big, total, reward):
            stored = (c, big, total, reward)
            g, c, p, p0, big, total, reward = _tree.widen(g, c, p, p0, big, total, reward)
            big = jnp.maximum(big, jnp.abs(g))
            total = total + jnp.abs(g)
            reward = jnp.maximum(reward - g * (p - p0), 0)
            c = c - g
            fraction = c / (big * jnp.maximum(total + big, _tree.cast_like(bet_cap, big) * big))
            out = (p0 + fraction * (big + reward)) - p
            new = (c, big, total, reward)
            return (out, *(n.astype(s.dtype) for n, s in zip(new, stored, strict=True)))

        results = _tree.map_state(
            leaf, updates, state.cumulative_gradients, params, state.init_particles,
            state.scale, state.subgradients, state.reward, name="scale_by_cocob",
        )
        out, c, big, total, reward = _tree.split_tuples(results, updates, 5)
        return out, ScaleByCocobState(
            init_particles=state.init_particles, cumulative_gradients=c, scale=big,
            subgradients=total, reward=reward,
        )

    return flattenable(GradientTransformation(init, update))


# --------------------------------------------------------------------------------------------
# DoG


INIT_STEP_TAGS = ("distance", "learning_rate", "heuristic")


def check_init_step(name: str, value) -> tuple[str, object]:
    """DoG's ``init_step``: a pair ``(tag, number)`` with the tag one of ``"distance"``,
    ``"learning_rate"``, ``"heuristic"`` and the number positive (an array, or traced, is
    accepted; a concrete one is checked). Returned as a tuple. ``TypeError`` naming ``name``
    for another type, ``ValueError`` naming it for another tag or a number that is not
    positive."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list)) or \
            len(value) != 2:
        raise TypeError(
            f"`{name}` must be a pair (tag, value) with the tag one of "
            f"{', '.join(map(repr, INIT_STEP_TAGS))}, got {value!r}."
        )
    tag, number = value
    if not isinstance(tag, str):
        raise TypeError(f"`{name}`: the tag must be a string, got {tag!r}.")
    if tag not in INIT_STEP_TAGS:
        raise ValueError(
            f"`{name}`: the tag must be one of {', '.join(map(repr, INIT_STEP_TAGS))}, "
            f"got {tag!r}."
        )
    try:
        validation.check_interval(name, number, 0.0, low_closed=False)
    except (TypeError, ValueError) as err:
        raise type(err)(f"{err} (the value of the pair)") from None
    return tag, number


def scale_by_dog(
    init_step: tuple[str, float | jax.Array],
    eps: float | jax.Array = 1e-8,
) -> GradientTransformation:
    r"""DoG's step size (Ivgi et al., 2023, "DoG is SGD's Best Friend: A Parameter-Free
    Dynamic Step Size Schedule"): the updates times

    .. math::
        \bar r_t = \max\bigl(\bar r_{t-1},\ \lVert\theta_{t-1} - \theta_0\rVert\bigr), \qquad
        G_t = G_{t-1} + \lVert g_t\rVert^2, \qquad
        \eta_t = \frac{\bar r_t}{\sqrt{G_t + \epsilon}}

    with the norms over the whole tree, :math:`\theta_0` the parameters given to ``init`` and
    :math:`G_0 = 0`. ``init_step`` sets the start:

    * ``("distance", r)``: :math:`\bar r_0 = r` (the paper's :math:`r_\epsilon`);
    * ``("heuristic", a)``: :math:`\bar r_0 = a\,(1 + \lVert\theta_0\rVert)` (the paper
      suggests :math:`a = 10^{-6}`, or :math:`10^{-4}` with batch normalisation);
    * ``("learning_rate", η)``: :math:`\eta_1 = η` at the first step, and :math:`\bar r_0 = 0`.

    The output is :math:`\eta_t g_t` (to be multiplied by minus a learning rate). Equal step
    for step to the ``scale_by_dog`` of ``optax.contrib.dog`` (Optax 0.2.8, where it is not
    public).

    Args:
        init_step: ``(tag, value)`` as above, fixed when built; the value must be positive.
        eps: :math:`\epsilon > 0`, added to :math:`G_t`.

    ``update`` needs ``params``. State: :class:`ScaleByDogState`.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.transforms.parameter_free import scale_by_dog
        >>> tx = scale_by_dog(("distance", 0.5), eps=1e-12)
        >>> params = {"w": jnp.array([1.0, -2.0])}
        >>> out, state = tx.update({"w": jnp.array([3.0, 4.0])}, tx.init(params), params)
        >>> [round(float(u), 6) for u in out["w"]]  # 0.5 g / ||g||, ||g|| = 5
        [0.3, 0.4]
    """
    tag, value = check_init_step("init_step", init_step)
    _check_positive("eps", eps)

    def init(params):
        if tag == "distance":
            start = _scalar(value)
        elif tag == "heuristic":
            start = _scalar(value) * (1 + _root(squared_norm(params)))
        else:
            start = jnp.zeros([], _scalar_dtype())
        return ScaleByDogState(
            is_init_step=jnp.asarray(True),
            init_params=_copy(params),
            max_dist=start,
            sum_sq_norm_grads=jnp.zeros([], _scalar_dtype()),
        )

    def update(updates, state, params=None, **extra_args):
        del extra_args
        _tree.check_params(params, updates, name="scale_by_dog")
        _tree.check_match(params, state.init_params, reference_name="params",
                          other_name="scale_by_dog state")
        distance = _root(squared_distance(state.init_params, params))
        max_dist = jnp.maximum(state.max_dist, distance)
        sum_sq = state.sum_sq_norm_grads + squared_norm(updates)
        step = max_dist / jnp.sqrt(sum_sq + _scalar(eps))
        if tag == "learning_rate":
            step = jnp.where(state.is_init_step, _scalar(value), step)
        return _scaled(step, updates), ScaleByDogState(
            is_init_step=jnp.zeros_like(state.is_init_step),
            init_params=state.init_params,
            max_dist=max_dist,
            sum_sq_norm_grads=sum_sq,
        )

    return flattenable(GradientTransformation(init, update))


# --------------------------------------------------------------------------------------------
# DoWG


def scale_by_dowg(
    init_estim_sq_dist: float | jax.Array | None = None,
    eps: float | jax.Array = 1e-4,
) -> GradientTransformation:
    r"""DoWG's step size (Khaled et al., 2023, "DoWG Unleashed: An Efficient Universal
    Parameter-Free Gradient Descent Method"): the updates times

    .. math::
        \bar r_t^2 = \max\bigl(\bar r_{t-1}^2,\ \lVert\theta_{t-1} - \theta_0\rVert^2\bigr),
        \qquad v_t = v_{t-1} + \bar r_t^2 \lVert g_t\rVert^2, \qquad
        \eta_t = \frac{\bar r_t^2}{\sqrt{v_t} + \epsilon}

    with the norms over the whole tree, :math:`\theta_0` the parameters given to ``init``,
    :math:`v_0 = 0` and :math:`\bar r_0^2` = ``init_estim_sq_dist`` (``eps`` when None). The
    output is :math:`\eta_t g_t` (to be multiplied by minus a learning rate). Equal step for
    step to the ``scale_by_dowg`` of ``optax.contrib.dowg`` (Optax 0.2.8, where it is not
    public).

    Args:
        init_estim_sq_dist: :math:`\bar r_0^2 > 0`, the initial guess of the squared
            distance to the solution; None: ``eps``.
        eps: :math:`\epsilon > 0`, added to :math:`\sqrt{v_t}`.

    ``update`` needs ``params``. State: :class:`ScaleByDowgState`.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.transforms.parameter_free import scale_by_dowg
        >>> tx = scale_by_dowg(init_estim_sq_dist=0.25, eps=1e-12)
        >>> params = {"w": jnp.array([1.0, -2.0])}
        >>> out, state = tx.update({"w": jnp.array([3.0, 4.0])}, tx.init(params), params)
        >>> [round(float(u), 6) for u in out["w"]]  # r² g / (r ||g||) = 0.5 g / 5
        [0.3, 0.4]
    """
    if init_estim_sq_dist is not None:
        _check_positive("init_estim_sq_dist", init_estim_sq_dist)
    _check_positive("eps", eps)

    def init(params):
        start = eps if init_estim_sq_dist is None else init_estim_sq_dist
        return ScaleByDowgState(
            init_params=_copy(params),
            weighted_sq_norm_grads=jnp.zeros([], _scalar_dtype()),
            estim_sq_dist=_scalar(start),
        )

    def update(updates, state, params=None, **extra_args):
        del extra_args
        _tree.check_params(params, updates, name="scale_by_dowg")
        _tree.check_match(params, state.init_params, reference_name="params",
                          other_name="scale_by_dowg state")
        estim = jnp.maximum(state.estim_sq_dist, squared_distance(state.init_params, params))
        weighted = estim * squared_norm(updates) + state.weighted_sq_norm_grads
        step = estim / (_root(weighted) + _scalar(eps))
        return _scaled(step, updates), state._replace(
            estim_sq_dist=estim, weighted_sq_norm_grads=weighted
        )

    return flattenable(GradientTransformation(init, update))


# --------------------------------------------------------------------------------------------
# Layer-wise DoG


def scale_by_distance_over_gradients(
    reps_rel: float | jax.Array = 1e-6,
    eps: float | jax.Array = 1e-8,
    param_dtype=jnp.float32,
    global_scale: float | jax.Array = 1.0,
) -> GradientTransformation:
    r"""Layer-wise DoG, "LDoG" (Ivgi et al., 2023): :func:`scale_by_dog` with one step size
    per leaf. For each leaf :math:`\theta^{(l)}` with gradient :math:`g^{(l)}`:

    .. math::
        \bar r^{(l)}_t = \max\bigl(\bar r^{(l)}_{t-1},\
            \lVert\theta^{(l)}_{t-1} - \theta^{(l)}_0\rVert\bigr), \qquad
        G^{(l)}_t = G^{(l)}_{t-1} + \lVert g^{(l)}_t\rVert^2 \\
        u^{(l)}_t = s\, \frac{\bar r^{(l)}_t}{\sqrt{G^{(l)}_t + \epsilon}}\, g^{(l)}_t

    with :math:`\bar r^{(l)}_0 = \rho\,(1 + \lVert\theta^{(l)}_0\rVert)`, :math:`G^{(l)}_0 = 0`,
    :math:`\rho` = ``reps_rel`` and :math:`s` = ``global_scale`` (``-1.0`` makes it a
    descent step by itself; with ``1.0`` follow it by a learning rate). The initial parameters
    are kept in ``param_dtype`` (float32 by default, as in Optax, so float64 parameters are
    measured from their float32 rounding; None keeps the parameters' dtypes). Equal step for
    step to ``optax.scale_by_distance_over_gradients`` (Optax 0.2.8).

    Differences from Optax: none in the numbers. Optax keeps each :math:`G^{(l)}` as an array
    of shape ``(1,)``, which turns the update of a 0-d leaf into shape ``(1,)``; here both
    per-leaf scalars are 0-d and every update has its leaf's shape and dtype. ``reps_rel`` and
    ``eps`` must be positive (Optax takes 0, which never moves or gives 0/0).

    Args:
        reps_rel: :math:`\rho > 0`, the initial distance relative to one plus the leaf's
            norm (1e-6; 1e-4 for models with batch normalisation).
        eps: :math:`\epsilon > 0`, added to :math:`G^{(l)}_t`.
        param_dtype: the dtype the initial parameters are stored in, or None.
        global_scale: :math:`s`, a factor of every update (typically 1 or -1).

    ``update`` needs ``params``. State: :class:`ScaleByDistanceOverGradientsState`. Each leaf
    has its own step, so the transformation is not :func:`gradtx.flattenable`.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.transforms.parameter_free import scale_by_distance_over_gradients
        >>> tx = scale_by_distance_over_gradients(reps_rel=0.1, eps=1e-12, param_dtype=None)
        >>> params = {"w": jnp.array([3.0, 4.0])}  # norm 5: r_0 = 0.1 * 6
        >>> out, state = tx.update({"w": jnp.array([0.0, 2.0])}, tx.init(params), params)
        >>> [round(float(u), 6) for u in out["w"]]  # 0.6 g / ||g||
        [0.0, 0.6]
    """
    _check_positive("reps_rel", reps_rel)
    _check_positive("eps", eps)
    param_dtype = validation.check_state_dtype("param_dtype", param_dtype)
    validation.check_interval("global_scale", global_scale)

    def init(params):
        def start(p):
            return _scalar(reps_rel) * (1 + _root(_squared(p).astype(_scalar_dtype())))

        return ScaleByDistanceOverGradientsState(
            max_dist=jax.tree_util.tree_map(start, params),
            grad_sum_of_squares=jax.tree_util.tree_map(
                lambda p: jnp.zeros([], _scalar_dtype()), params
            ),
            init_params=jax.tree_util.tree_map(
                lambda p: jnp.array(p, dtype=param_dtype or jnp.result_type(p)), params
            ),
        )

    def update(updates, state, params=None, **extra_args):
        del extra_args
        _tree.check_params(params, updates, name="scale_by_distance_over_gradients")
        epsilon, factor = _scalar(eps), _scalar(global_scale)

        def leaf(g, p, p0, r, g_sos):
            r = jnp.maximum(r, _root(_squared(p - p0).astype(r.dtype)))
            g_sos = g_sos + _squared(g).astype(g_sos.dtype)
            step = factor * (r / jnp.sqrt(g_sos + epsilon))
            return _tree.cast_like(step, g) * g, r, g_sos

        results = _tree.map_state(
            leaf, updates, params, state.init_params, state.max_dist,
            state.grad_sum_of_squares, name="scale_by_distance_over_gradients",
        )
        out, max_dist, g_sos = _tree.split_tuples(results, updates, 3)
        return out, ScaleByDistanceOverGradientsState(
            max_dist=max_dist, grad_sum_of_squares=g_sos, init_params=state.init_params
        )

    return GradientTransformation(init, update)

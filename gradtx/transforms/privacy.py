r"""Differentially private aggregation (Abadi et al., 2016, "Deep Learning with Differential
Privacy"): each example's gradient is clipped to a norm bound, the clipped gradients are
summed, Gaussian noise scaled to the bound is added, and the sum is averaged.

Unlike every other transformation, these take *per-example* gradients: each leaf carries a
batch axis first (``jax.vmap(jax.grad(loss), in_axes=(None, 0))(params, batch)`` gives them),
and what comes out has the parameters' shapes. So the aggregation goes first in a chain.

The noise is drawn with :mod:`jax.random` exactly as ``optax.contrib.differentially_private_
aggregate`` draws it, so the same key gives the same noise, bit for bit: at each step the
stored key is split into ``1 + leaves`` keys, the first becoming the next stored key and the
others one per leaf (in flattening order).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradtx import live, validation
from gradtx import tree as _tree
from gradtx.core import GradientTransformation, PyTree
from gradtx.transforms.noise import key_data, resolve_key


def _check_batched(grads: PyTree, name: str) -> int:
    """The batch size shared by every leaf's first axis; a ValueError naming the path of the
    first leaf without one (or with another size)."""
    leaves = jax.tree_util.tree_flatten_with_path(grads)[0]
    if not leaves:
        raise ValueError(f"`{name}` got an empty tree of per-example gradients.")
    batch = None
    for path, g in leaves:
        shape = jnp.shape(g)
        if not shape:
            raise ValueError(
                f"`{name}` takes per-example gradients, a batch axis first in every leaf; the "
                f"leaf at {_tree.path_str(path)} is a scalar."
            )
        if batch is None:
            batch = shape[0]
        elif shape[0] != batch:
            raise ValueError(
                f"`{name}` takes per-example gradients with one batch size: the leaf at "
                f"{_tree.path_str(path)} has {shape[0]} examples, the first leaf {batch}."
            )
    return batch


def _norm_per_example(g: jax.Array) -> jax.Array:
    """Each example's sum of squares of one leaf, shape ``(batch,)``."""
    squares = jnp.square(g.real) + jnp.square(g.imag) if jnp.iscomplexobj(g) else jnp.square(g)
    return jnp.sum(squares.reshape(g.shape[0], -1), axis=1)


def _clip_and_sum(leaves: list[jax.Array], bound) -> tuple[list[jax.Array], jax.Array]:
    """Sum over examples of ``leaves`` (one group, clipped by its joint norm) and the number
    of examples whose gradient was scaled down."""
    norms = jnp.sqrt(sum(_norm_per_example(g) for g in leaves))
    bound = _tree.cast_like(bound, norms)
    # A zero gradient with a zero bound is 0/0: it is left as it is (factor 1), as in Optax.
    factors = jnp.nan_to_num(jnp.minimum(bound / norms, 1.0), nan=1.0)
    summed = [jnp.tensordot(factors, g, axes=1) for g in leaves]
    return summed, jnp.sum(factors < 1.0)


def per_example_global_norm_clip(
    grads: PyTree, l2_norm_clip: float | jax.Array
) -> tuple[PyTree, jax.Array]:
    r"""Clips each example's gradient to norm :math:`C` and sums them over the batch:

    .. math::
        \text{out} = \sum_{i=1}^{B} g_i \min\Bigl(1, \frac{C}{\lVert g_i \rVert}\Bigr)

    where :math:`g_i` is the ``i``-th slice along the first axis of every leaf and
    :math:`\lVert g_i \rVert` its norm over the whole tree. A zero gradient is left as it is
    even when :math:`C = 0`.

    Args:
        grads: per-example gradients: any tree whose leaves all have the batch axis first.
        l2_norm_clip: :math:`C \ge 0`.

    Returns:
        The tree of clipped sums (the batch axis removed) and the number of examples that were
        scaled down (an int32 scalar).

    Equal to ``optax.per_example_global_norm_clip`` (Optax 0.2.8), which takes a list of
    leaves; here any tree.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.transforms.privacy import per_example_global_norm_clip
        >>> grads = {"w": jnp.array([[0.0, 0.0], [3.0, 4.0], [0.6, 0.8]])}
        >>> summed, clipped = per_example_global_norm_clip(grads, 1.0)
        >>> [round(float(x), 6) for x in summed["w"]], int(clipped)
        ([1.2, 1.6], 1)
    """
    validation.check_non_negative("l2_norm_clip", l2_norm_clip)
    _check_batched(grads, "per_example_global_norm_clip")
    leaves, treedef = jax.tree_util.tree_flatten(grads)
    summed, clipped = _clip_and_sum([jnp.asarray(g) for g in leaves], live.read(l2_norm_clip))
    return jax.tree_util.tree_unflatten(treedef, summed), clipped


def per_example_layer_norm_clip(
    grads: PyTree, global_l2_norm_clip: float | jax.Array, uniform: bool = True
) -> tuple[PyTree, PyTree]:
    r"""Clips each example's gradient leaf by leaf (McMahan et al., 2017) and sums them over
    the batch. With :math:`K` leaves, leaf :math:`k` of :math:`D_k` entries per example out of
    :math:`D` in all is clipped to

    .. math::
        C_k = \begin{cases} C / \sqrt{K} & \text{uniform} \\
                            C \sqrt{D_k / D} & \text{otherwise} \end{cases}

    so that the clipped gradient's global norm is at most :math:`C` either way. With one leaf
    this is :func:`per_example_global_norm_clip`.

    Args:
        grads: per-example gradients, the batch axis first in every leaf.
        global_l2_norm_clip: :math:`C \ge 0`.
        uniform: one bound for every leaf (True), or bounds by the leaves' sizes.

    Returns:
        The tree of clipped sums and a tree of the number of examples scaled down per leaf.

    Equal to ``optax.per_example_layer_norm_clip`` (Optax 0.2.8).
    """
    validation.check_non_negative("global_l2_norm_clip", global_l2_norm_clip)
    validation.check_bool("uniform", uniform)
    _check_batched(grads, "per_example_layer_norm_clip")
    leaves, treedef = jax.tree_util.tree_flatten(grads)
    leaves = [jnp.asarray(g) for g in leaves]
    bound = live.read(global_l2_norm_clip)
    total = sum(g[0].size for g in leaves)
    summed, clipped = [], []
    for g in leaves:
        share = 1.0 / len(leaves) if uniform else g[0].size / total
        (s,), c = _clip_and_sum([g], bound * share**0.5)
        summed.append(s)
        clipped.append(c)
    return (
        jax.tree_util.tree_unflatten(treedef, summed),
        jax.tree_util.tree_unflatten(treedef, clipped),
    )


class DifferentiallyPrivateAggregateState(NamedTuple):
    """:func:`differentially_private_aggregate`'s state.

    Attributes:
        rng_key: the key the next step's noise is drawn from, as raw key data (a ``uint32``
            array; ``jax.random.wrap_key_data`` gives the typed key Optax stores).
    """

    rng_key: jax.Array


def differentially_private_aggregate(
    l2_norm_clip: float | jax.Array,
    noise_multiplier: float | jax.Array,
    key: jax.Array | int | None = None,
    *,
    seed: int | None = None,
) -> GradientTransformation:
    r"""The DP-SGD aggregation (Abadi et al., 2016): per-example gradients in, one noisy mean
    gradient out.

    .. math::
        \text{out} = \frac{1}{B}\Bigl(\sum_{i=1}^{B} g_i
            \min\Bigl(1, \frac{C}{\lVert g_i \rVert}\Bigr) + \sigma C\, z\Bigr),
        \qquad z \sim \mathcal N(0, I)

    with :math:`B` the batch size, :math:`C` = ``l2_norm_clip`` and :math:`\sigma` =
    ``noise_multiplier``. Each leaf of the incoming updates carries the batch axis first
    (see this module's docstring); what comes out has the parameters' shapes, so this goes
    first in a chain. When ``params`` are passed, each leaf must be ``(B, *param.shape)``.
    Gradient accumulation (:func:`gradtx.accumulate_gradients`) around it would average
    noisy means, not clip one larger batch: the privacy accounting must follow.

    Args:
        l2_norm_clip: :math:`C \ge 0`, the bound on each example's gradient norm.
        noise_multiplier: :math:`\sigma \ge 0`, the noise's standard deviation over :math:`C`.
        key: an int seed, a ``jax.random.key`` or a legacy raw ``jax.random.PRNGKey``; None:
            seed 0.
        seed: Optax's older name for an int ``key`` (give one or the other).

    State: :class:`DifferentiallyPrivateAggregateState` (``rng_key`` as raw key data).

    Equal to ``optax.contrib.differentially_private_aggregate`` (Optax 0.2.8), the same noise
    bit for bit for the same key. Differences: ``key=None`` is seed 0 without Optax's warning,
    and the batch axes are checked (against the params when given).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from gradtx.transforms.privacy import differentially_private_aggregate
        >>> dp = differentially_private_aggregate(l2_norm_clip=1.0, noise_multiplier=0.0)
        >>> params = {"w": jnp.zeros(2)}
        >>> per_example = {"w": jnp.array([[3.0, 4.0], [0.3, 0.4]])}
        >>> mean, state = dp.update(per_example, dp.init(params), params)
        >>> [round(float(x), 6) for x in mean["w"]]  # ((0.6, 0.8) + (0.3, 0.4)) / 2
        [0.45, 0.6]
    """
    validation.check_non_negative("l2_norm_clip", l2_norm_clip)
    validation.check_non_negative("noise_multiplier", noise_multiplier)
    chosen, impl = resolve_key(key, seed)

    def init(params):
        del params
        return DifferentiallyPrivateAggregateState(rng_key=key_data(chosen))

    def update(updates, state, params=None, **extra_args):
        del extra_args
        batch = _check_batched(updates, "differentially_private_aggregate")
        if params is not None:
            _tree.check_match(
                params, jax.tree_util.tree_map(lambda g: g[0], updates),
                reference_name="params", other_name="per-example gradient (without its batch axis)",
            )
        leaves, treedef = jax.tree_util.tree_flatten(updates)
        bound = live.read(l2_norm_clip)
        summed, _ = _clip_and_sum([jnp.asarray(g) for g in leaves], bound)
        std = bound * live.read(noise_multiplier)
        next_key, *leaf_keys = jax.random.split(
            jax.random.wrap_key_data(state.rng_key, impl=impl), len(leaves) + 1
        )
        noisy = [
            (s + std * jax.random.normal(k, s.shape, s.dtype)) / batch
            for s, k in zip(summed, leaf_keys, strict=True)
        ]
        new_state = DifferentiallyPrivateAggregateState(rng_key=jax.random.key_data(next_key))
        return jax.tree_util.tree_unflatten(treedef, noisy), new_state

    return GradientTransformation(init, update)

r"""Sophia's scaling (Liu et al., 2023, "Sophia: A Scalable Stochastic Second-order Optimizer
for Language Model Pre-training"): momentum divided by a moving average of the Hessian's
diagonal, clipped elementwise; and Hutchinson's estimator of that diagonal, which needs the
objective function at each step (``update(..., obj_fn=f)``).

The random signs are drawn with :mod:`jax.random` exactly as Optax draws them, so that the
same key gives the same estimates: the stored key is split into the next stored key and a
sample key; the sample key is split into one key per parameter leaf (in flattening order);
each leaf's signs are ``jax.random.rademacher(leaf_key, leaf.shape, float32)``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx import live, validation
from gradtx import tree as _tree
from gradtx.core import GradientTransformation, PyTree, with_extra_args
from gradtx.transforms import counting
from gradtx.transforms.moments import ema_update
from gradtx.transforms.noise import check_key, is_typed_key, key_data


class HutchinsonState(NamedTuple):
    """:func:`hutchinson_estimator_diag_hessian`'s state.

    Attributes:
        key: the key the next signs are drawn from, as raw key data (a ``uint32`` array).
    """

    key: jax.Array


def hutchinson_estimator_diag_hessian(
    random_seed: jax.Array | int | None = None,
) -> GradientTransformation:
    r"""Hutchinson's unbiased estimate of the Hessian's diagonal: with random signs
    :math:`z` (each entry :math:`\pm 1` with probability 1/2),

    .. math:: \text{out} = z \odot \nabla^2 f(\theta)\, z, \qquad
        \mathbb E[\text{out}] = \operatorname{diag} \nabla^2 f(\theta)

    where :math:`\nabla^2 f(\theta) z` is a Hessian-vector product (forward over reverse
    differentiation of ``obj_fn``, one gradient's cost). The incoming updates are ignored.
    ``update`` needs ``params`` and ``obj_fn``, a function of the params alone returning the
    scalar loss (``obj_fn=lambda p: loss(p, batch)``).

    Args:
        random_seed: the key: an int seed, a ``jax.random.key`` or a legacy raw
            ``jax.random.PRNGKey``; None: seed 0 (Optax: ``PRNGKey(0)``).

    State: :class:`HutchinsonState`. Equal to ``optax.contrib.hutchinson_estimator_diag_hessian``
    (Optax 0.2.8), the same signs for the same key; each leaf's signs are in that leaf's dtype
    (Optax casts them all to the narrowest dtype among the leaves, which fails on mixed
    dtypes).
    """
    check_key("random_seed", random_seed)
    impl = jax.random.key_impl(random_seed) if is_typed_key(random_seed) else None

    def init(params):
        del params
        return HutchinsonState(key=key_data(random_seed))

    def update(updates, state, params=None, obj_fn=None, **extra_args):
        del updates, extra_args
        if params is None:
            raise ValueError("hutchinson_estimator_diag_hessian: `update` needs the params.")
        if obj_fn is None or not callable(obj_fn):
            raise ValueError(
                "hutchinson_estimator_diag_hessian: `update` needs `obj_fn=`, a function of "
                "the params alone that returns the scalar loss, e.g. "
                "obj_fn=lambda p: loss(p, batch)."
            )
        next_key, sample_key = jax.random.split(jax.random.wrap_key_data(state.key, impl=impl))
        leaves, treedef = jax.tree_util.tree_flatten(params)
        leaf_keys = jax.random.split(sample_key, len(leaves))
        signs = jax.tree_util.tree_unflatten(treedef, [
            jax.random.rademacher(k, jnp.shape(p), jnp.float32).astype(jnp.result_type(p))
            for p, k in zip(leaves, leaf_keys, strict=True)
        ])
        hvp = jax.jvp(jax.grad(obj_fn), (params,), (signs,))[1]
        product = jax.tree_util.tree_map(lambda h, z: h * z, hvp, signs)
        return product, HutchinsonState(key=jax.random.key_data(next_key))

    return GradientTransformation(init, update)


def check_estimator(name: str, value):
    """None, or a transformation (``init`` and ``update``) returning the Hessian diagonal."""
    if value is None:
        return None
    if not (callable(getattr(value, "init", None)) and callable(getattr(value, "update", None))):
        raise TypeError(
            f"`{name}` must be None or a GradientTransformation that returns the Hessian "
            f"diagonal, got {type(value).__name__}."
        )
    return value


class SophiaState(NamedTuple):
    r""":func:`scale_by_sophia`'s state (Optax's ``SophiaState``).

    Attributes:
        count: the number of updates seen; None inside an optimizer, which keeps one count.
        mu: :math:`m_t`, the moving average of the gradients (in ``mu_dtype``).
        nu: :math:`h_t`, the moving average of the Hessian diagonal estimates.
        hessian_fn_state: the state of the Hessian diagonal estimator.
    """

    count: jax.Array | None
    mu: PyTree
    nu: PyTree
    hessian_fn_state: Any


def scale_by_sophia(
    b1: float | jax.Array = 0.965,
    b2: float | jax.Array = 0.99,
    eps: float | jax.Array = 1e-8,
    gamma: float | jax.Array = 0.01,
    clip_threshold: float | jax.Array | None = 1.0,
    update_interval: int = 10,
    hessian_diagonal_fn: GradientTransformation | None = None,
    mu_dtype: Any = None,
    verbose: bool = False,
    print_win_rate_every_n_steps: int = 0,
) -> GradientTransformation:
    r"""Sophia's scaling. With :math:`t` counting the updates from 1, :math:`k` =
    ``update_interval`` and :math:`\hat H_t` the estimator's output:

    .. math::
        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad
        \text{out}_t = \operatorname{clip}\Bigl(\frac{m_t / (1-\beta_1^t)}
            {\max(\gamma h_{t-1}, \epsilon)}, -\rho, \rho\Bigr) \\
        h_t &= \begin{cases} \beta_2 h_{t-1} + (1-\beta_2)\, \hat H_t & k \mid t - 1 \\
            h_{t-1} & \text{otherwise} \end{cases}

    with :math:`h_0 = 0` (so the first step is :math:`\pm\rho` wherever :math:`m_1 \ne 0`) and
    :math:`\rho` = ``clip_threshold`` (None: no clipping). The estimate is refreshed after the
    step's output, at steps 1, k+1, 2k+1, ...; under ``jit`` it runs only then (a
    ``lax.cond``). Its extra arguments (``obj_fn`` for the default Hutchinson estimator) are
    passed on from ``update``.

    Args:
        b1: :math:`\beta_1 \in [0, 1)`.
        b2: :math:`\beta_2 \in [0, 1)`, per refresh (its effect per step is
            :math:`1-(1-\beta_2)/k`).
        eps: :math:`\epsilon \ge 0`, the floor of the denominator.
        gamma: :math:`\gamma \ge 0`, the scale of the Hessian estimate.
        clip_threshold: :math:`\rho \ge 0`, or None.
        update_interval: :math:`k \ge 1`.
        hessian_diagonal_fn: the estimator, a transformation whose ``update(updates, state,
            params, **extra_args)`` returns the diagonal; None: a new
            :func:`hutchinson_estimator_diag_hessian` with seed 0.
        mu_dtype: the dtype of :math:`m`; None: the parameters'.
        verbose: print the share of entries not clipped (the "win rate", which the authors
            keep between 0.1 and 0.5 by tuning :math:`\gamma`) every
            ``print_win_rate_every_n_steps`` steps, with ``jax.debug.print``.
        print_win_rate_every_n_steps: the printing period, an int >= 1 when ``verbose``.

    Equal step for step to ``optax.contrib.scale_by_sophia`` (Optax 0.2.8).
    """
    for name, value in (("b1", b1), ("b2", b2)):
        validation.check_unit_interval(name, value)
    validation.check_non_negative("eps", eps)
    validation.check_non_negative("gamma", gamma)
    if clip_threshold is not None:
        validation.check_non_negative("clip_threshold", clip_threshold)
    update_interval = validation.check_static_int("update_interval", update_interval)
    validation.check_bool("verbose", verbose)
    if verbose:
        print_win_rate_every_n_steps = validation.check_static_int(
            "print_win_rate_every_n_steps", print_win_rate_every_n_steps)
    mu_dtype = validation.check_state_dtype("mu_dtype", mu_dtype)
    estimator = check_estimator("hessian_diagonal_fn", hessian_diagonal_fn)
    if estimator is None:
        estimator = hutchinson_estimator_diag_hessian()
    estimate = with_extra_args(estimator.update)

    def init(params):
        return SophiaState(
            count=counting.init_count(),
            mu=_tree.full_like(params, 0.0, mu_dtype),
            nu=_tree.full_like(params, 0.0),
            hessian_fn_state=estimator.init(params),
        )

    def update(updates, state, params=None, **extra_args):
        if params is None:
            raise ValueError("scale_by_sophia: `update` needs the params (for the Hessian "
                             "estimate).")
        taken, count = counting.advance(state.count, "scale_by_sophia")
        beta1 = live.read(b1)
        t = counting.as_float(taken) + 1
        correction = 1 - jnp.asarray(beta1, t.dtype) ** t
        epsilon, scale = live.read(eps), live.read(gamma)

        def leaf(g, m, h):
            m = ema_update(m, g, beta1)
            m_hat = m / _tree.cast_like(correction, m)
            out = m_hat / jnp.maximum(_tree.cast_like(scale, h) * h, _tree.cast_like(epsilon, h))
            return out, m, h

        out, (mu, _) = _tree.leafwise(leaf, updates, state.mu, state.nu, name="scale_by_sophia")
        if clip_threshold is not None:
            rho = live.read(clip_threshold)
            if verbose:
                inside = sum(jnp.sum(jnp.abs(u) < rho) for u in jax.tree_util.tree_leaves(out))
                size = sum(jnp.size(u) for u in jax.tree_util.tree_leaves(out))
                jax.lax.cond(
                    (taken + 1) % print_win_rate_every_n_steps == 0,
                    lambda: jax.debug.print("Sophia optimizer win rate: {}", inside / size),
                    lambda: None,
                )
            out = jax.tree_util.tree_map(
                lambda u: jnp.clip(u, -_tree.cast_like(rho, u), _tree.cast_like(rho, u)), out)

        beta2 = live.read(b2)

        def refresh(hessian_state, nu):
            diagonal, hessian_state = estimate(updates, hessian_state, params, **extra_args)
            nu = jax.tree_util.tree_map(lambda h, d: ema_update(h, d, beta2), nu, diagonal)
            return hessian_state, nu

        hessian_state, nu = jax.lax.cond(
            taken % update_interval == 0, refresh, lambda h, n: (h, n),
            state.hessian_fn_state, state.nu,
        )
        return out, SophiaState(count=count, mu=mu, nu=nu, hessian_fn_state=hessian_state)

    return GradientTransformation(init, update)


"""Loss-aware updates: ``update(updates, state, params=None, **extra_args)`` on every
transformation, combinator and wrapper; both ways with Optax's GradientTransformationExtraArgs;
and from ``flax.nnx.Optimizer.update(model, grads, value=loss)``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx as gx
from gradtx.wrappers.accumulation import accumulate_gradients
from gradtx.wrappers.averaging import with_param_average
from gradtx.wrappers.finite import apply_if_finite
from gradtx.wrappers.lookahead import lookahead
from gradtx.wrappers.masking import masked, multi_transform
from tests.helpers import scale_by_value

PARAMS = {"w": jnp.ones(3), "b": jnp.ones(2)}
GRADS = {"w": jnp.full(3, 0.5), "b": jnp.full(2, -1.0)}




def _all_ways():
    sgd = gx.sgd(1.0)
    return {
        "chain": gx.chain(sgd, scale_by_value()),
        "parallel": gx.parallel(scale_by_value(), gx.identity(), combine=lambda a, b: a),
        "inject_hyperparams": gx.inject_hyperparams(lambda s=1.0: gx.chain(gx.scale(s),
                                                                          scale_by_value()))(),
        "masked": masked(scale_by_value(), {"w": True, "b": True}),
        "multi_transform": multi_transform({"a": scale_by_value()}, {"w": "a", "b": "a"}),
        "apply_if_finite": apply_if_finite(scale_by_value(), 2),
        "accumulate_gradients": accumulate_gradients(scale_by_value(), every_k=1),
        "lookahead": lookahead(scale_by_value(), 2, 1.0),
        "with_param_average": with_param_average(scale_by_value(), 0.9),
        "quantize_state": gx.quantize_state(scale_by_value()),
        "optax.chain": optax.chain(optax.identity(), scale_by_value()),
    }


@pytest.mark.parametrize("name", list(_all_ways()))
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_extra_args_reach_inner_transforms(name, jit):
    tx = _all_ways()[name]
    if name == "optax.chain":
        # optax passes extra args only to its GradientTransformationExtraArgs; a gradtx
        # transform is one in all but class, so hand it over as optax expects.
        tx = optax.chain(optax.identity(), optax.GradientTransformationExtraArgs(
            *scale_by_value()))
    update = jax.jit(tx.update) if jit else tx.update
    state = tx.init(PARAMS)
    updates, _ = update(GRADS, state, PARAMS, value=3.0)
    sign = -1.0 if name == "chain" else 1.0
    np.testing.assert_allclose(updates["w"], sign * 3.0 * GRADS["w"])


@pytest.mark.parametrize("name", [n for n in _all_ways() if n != "optax.chain"])
def test_a_missing_extra_arg_is_named(name):
    tx = _all_ways()[name]
    with pytest.raises(ValueError, match="scale_by_value needs the extra argument `value`"):
        tx.update(GRADS, tx.init(PARAMS), PARAMS)


def test_every_registry_optimizer_accepts_extra_args():
    from gradtx.optimizers.registry import OPTIMIZERS

    for info in OPTIMIZERS:
        opt = info.build(**info.example)
        params, grads = info.params_like(PARAMS), info.params_like(GRADS)
        plain, _ = opt.update(grads, opt.init(params), params)
        extra, _ = opt.update(grads, opt.init(params), params, value=1.0, grad=grads)
        np.testing.assert_array_equal(plain["w"], extra["w"])


def test_three_argument_transforms_still_compose():
    """A transform written for the three-argument protocol (a plain Optax one) does not get
    the extra arguments."""
    plain_optax = optax.scale(2.0)  # optax.GradientTransformation: update(u, s, p)
    tx = gx.chain(plain_optax, scale_by_value())
    updates, _ = tx.update(GRADS, tx.init(PARAMS), PARAMS, value=0.5)
    np.testing.assert_allclose(updates["w"], GRADS["w"])


def test_optax_reduce_on_plateau_inside_gx_chain():
    """An Optax loss-aware transform receives value= through gx.chain: after `patience`
    steps without improvement it halves the scale."""
    tx = gx.chain(
        gx.sgd(1.0),
        optax.contrib.reduce_on_plateau(factor=0.5, patience=2, cooldown=0, accumulation_size=1),
    )
    state = tx.init(PARAMS)
    step = jax.jit(tx.update)
    scales = []
    for _ in range(6):
        updates, state = step(GRADS, state, PARAMS, value=jnp.asarray(1.0))  # no improvement
        scales.append(float(updates["w"][0] / -GRADS["w"][0]))
    assert scales[0] == 1.0 and scales[-1] < 1.0, scales


def test_gradtx_inside_optax_chain():
    tx = optax.chain(gx.clip_by_global_norm(1.0), gx.adam(0.1))
    state = tx.init(PARAMS)
    updates, state = tx.update(GRADS, state, PARAMS, value=1.0)
    ref = gx.chain(gx.clip_by_global_norm(1.0), gx.adam(0.1))
    expected, _ = ref.update(GRADS, ref.init(PARAMS), PARAMS)
    np.testing.assert_allclose(updates["w"], expected["w"], rtol=1e-12)


def test_nnx_optimizer_update_value_reaches_the_transform():
    from flax import nnx

    model = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
    seen = []

    def record_value():
        def update(updates, state, params=None, **extra_args):
            seen.append(gx.extra_arg(extra_args, "value", "record_value"))
            return updates, state

        return gx.GradientTransformation(lambda params: gx.EmptyState(), update)

    optimizer = nnx.Optimizer(model, gx.chain(gx.adam(1e-3), record_value()), wrt=nnx.Param)
    x = jnp.ones((4, 3))

    def loss_fn(m):
        return jnp.mean(m(x) ** 2)

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads, value=loss)
    assert len(seen) == 1 and float(seen[0]) == pytest.approx(float(loss))

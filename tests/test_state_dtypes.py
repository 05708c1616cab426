"""Per-moment state dtypes (``mu_dtype``, ``nu_dtype``): every moment-based optimizer stores
its moments in the dtype asked for, computes in the wider dtype, and stays close to the
full-precision trajectory."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx as gx
from gradtx.hyperparams.declarations import STATE_DTYPE
from gradtx.optimizers import registry
from tests import helpers

STEPS = 20


def _params():
    rng = np.random.default_rng(0)
    return {
        "w": jnp.asarray(rng.normal(size=(16, 8)), jnp.float32),
        "b": jnp.asarray(rng.normal(size=(8,)), jnp.float32),
    }


def _grads(step: int):
    rng = np.random.default_rng(100 + step)
    return {
        "w": jnp.asarray(rng.normal(size=(16, 8)), jnp.float32),
        "b": jnp.asarray(rng.normal(size=(8,)), jnp.float32),
    }


def _per_param_leaves(state, params):
    """The state leaves shaped like a parameter (the moments), whatever their dtype."""
    shapes = {p.shape for p in jax.tree_util.tree_leaves(params)}
    return [x for x in jax.tree_util.tree_leaves(state) if x.ndim and x.shape in shapes]


def _run(opt, params, steps=STEPS, grads=_grads):
    state = opt.init(params)
    step = jax.jit(
        lambda p, g, s: (lambda u, s2: (gx.apply_updates(p, u), s2))(*opt.update(g, s, p))
    )
    for t in range(steps):
        params, state = step(params, grads(t), state)
    return params, state


def _kwargs(info, **extra):
    kwargs = dict(info.example)
    if info.name == "adafactor":
        kwargs["b1"] = 0.9  # its momentum, the moment mu_dtype applies to, is off by default
    kwargs.update(extra)
    return kwargs


# Dtype arguments that set how a step computes, not how its state is stored (Muon's and MARS's
# Newton-Schulz dtype, SOAP's QR dtype: tests/test_soap.py checks it).
COMPUTE_DTYPES = ("ns_dtype", "qr_dtype")


def _dtype_args(info) -> list[str]:
    """The dtype arguments (``mu_dtype``, ``nu_dtype``, ``z_dtype``...) that set how the
    state is stored: every declared dtype argument but :data:`COMPUTE_DTYPES`."""
    return [name for name, declaration in info.declarations.items()
            if declaration.kind == STATE_DTYPE.kind and name not in COMPUTE_DTYPES]


def _state_dtypes(info, **kwargs):
    state = jax.eval_shape(info.build(**_kwargs(info, **kwargs)).init,
                           info.params_like(_params()))
    return [x.dtype for x in jax.tree_util.tree_leaves(state)]


WITH_DTYPES = [info for info in registry.OPTIMIZERS if _dtype_args(info)]


@pytest.mark.parametrize("info", WITH_DTYPES, ids=lambda i: i.name)
def test_every_state_dtype_argument_changes_the_state(info):
    """An optimizer that declared a state dtype and ignored it would pass the tests below
    with its other dtype arguments: each one alone must change some state leaf, with the
    registry's example arguments or one of its grid values (RMSprop's ``mu_dtype`` is its
    momentum's, which needs ``momentum > 0``)."""
    points = [{}, *helpers.one_at_a_time(info)]
    for name in _dtype_args(info):
        assert any(
            _state_dtypes(info, **point, **{name: jnp.bfloat16}) != _state_dtypes(info, **point)
            for point in points
        ), name


def test_the_moment_based_optimizers_all_take_state_dtypes():
    names = {info.name for info in WITH_DTYPES}
    expected = {
        "sgd", "adagrad", "rmsprop", "adadelta", "adam", "adamw", "nadam", "adamax", "radam",
        "adabelief", "yogi", "lamb", "lars", "lion", "sign_sgd", "adafactor", "adopt",
        "schedule_free_sgd", "schedule_free_adamw", "ademamix", "mars",
    }
    assert expected <= names


# Only the momentum follows mu_dtype: Adafactor's factored statistics keep float32, and Optax's
# optimistic Adams have no nu_dtype (their second moment and previous update keep the
# parameters' dtype).
PARTLY_NARROW = {"adafactor", "optimistic_adam", "optimistic_adam_v2"}


@pytest.mark.parametrize("info", WITH_DTYPES, ids=lambda i: i.name)
def test_bfloat16_moments_are_stored_narrow_and_track_float32(info):
    dtypes = {name: jnp.bfloat16 for name in _dtype_args(info)}
    params = _params()
    narrow = info.build(**_kwargs(info, **dtypes))
    wide = info.build(**_kwargs(info))

    state = narrow.init(params)
    moments = _per_param_leaves(state, params)
    default_moments = _per_param_leaves(wide.init(params), params)
    assert len(moments) == len(default_moments) > 0
    narrow_bytes = sum(x.nbytes for x in moments)
    wide_bytes = sum(x.nbytes for x in default_moments)
    if info.name in PARTLY_NARROW:
        assert narrow_bytes < wide_bytes
    else:
        assert all(x.dtype == jnp.bfloat16 for x in moments)
        assert narrow_bytes * 2 == wide_bytes

    p_narrow, s_narrow = _run(narrow, params)
    p_wide, _ = _run(wide, params)
    # the state keeps its dtypes through jitted updates; the parameters keep float32
    assert [x.dtype for x in _per_param_leaves(s_narrow, params)] == [x.dtype for x in moments]
    assert all(x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(p_narrow))
    moved = jax.tree_util.tree_map(lambda a, b: float(jnp.max(jnp.abs(a - b))), p_wide, params)
    diff = jax.tree_util.tree_map(lambda a, b: float(jnp.max(jnp.abs(a - b))), p_narrow, p_wide)
    for key in params:
        assert np.isfinite(diff[key])
        # bf16 has 8 bits of mantissa: the trajectories differ, but by much less than they move
        assert diff[key] <= 0.25 * moved[key] + 1e-6, (key, diff[key], moved[key])


def test_default_state_dtype_follows_the_parameters():
    params = {"w": jnp.ones((4,), jnp.bfloat16), "v": jnp.ones((3,), jnp.float32)}
    state = gx.adam().init(params)
    first, second = gx.tree_get(state, "mu"), gx.tree_get(state, "nu")
    assert first["w"].dtype == second["w"].dtype == jnp.bfloat16
    assert first["v"].dtype == second["v"].dtype == jnp.float32


def test_wider_state_than_parameters():
    params = {"w": jnp.linspace(-1, 1, 8).astype(jnp.bfloat16)}
    opt = gx.adam(1e-2, mu_dtype=jnp.float32, nu_dtype=jnp.float32)
    p, state = _run(opt, params, steps=3, grads=lambda t: {"w": jnp.full((8,), 0.1 * (t + 1))})
    assert p["w"].dtype == jnp.bfloat16
    assert all(x.dtype == jnp.float32 for x in _per_param_leaves(state, params))


def test_narrow_state_is_updated_in_the_wider_dtype():
    # One ema step: the output is the float32 average; only the stored copy is rounded.
    g = {"w": jnp.asarray([1.0 + 2.0**-12], jnp.float32)}
    ema = gx.ema(0.5, dtype=jnp.bfloat16)
    state = ema.init(g)
    out, state = ema.update(g, state)
    assert out["w"].dtype == jnp.float32
    assert float(out["w"][0]) == 0.5 * (1.0 + 2.0**-12)
    assert state.mu["w"].dtype == jnp.bfloat16
    assert float(state.mu["w"][0]) == 0.5  # rounded to bf16's 8-bit mantissa


def test_amsgrad_running_max_uses_nu_dtype():
    params = {"w": jnp.zeros((5,), jnp.float32)}
    state = gx.adam(amsgrad=True, nu_dtype=jnp.float16).init(params)
    dtypes = [x.dtype for x in _per_param_leaves(state, params)]
    assert dtypes == [jnp.float32, jnp.float16, jnp.float16]


@pytest.mark.parametrize("bad", [jnp.int32, "not a dtype", bool])
def test_non_float_state_dtype_is_an_error_naming_the_argument(bad):
    with pytest.raises(TypeError, match="`mu_dtype`"):
        gx.adam(mu_dtype=bad)
    with pytest.raises(TypeError, match="`nu_dtype`"):
        gx.rmsprop(nu_dtype=bad)


def test_state_dtypes_are_static_not_live_hyperparameters():
    state = gx.adam(mu_dtype=jnp.bfloat16).init({"w": jnp.zeros(3)})
    assert "mu_dtype" not in state.hyperparams
    with pytest.raises(KeyError):
        gx.set_hyperparam(state, "mu_dtype", 1.0)

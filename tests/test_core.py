"""The core protocol: apply_updates, chain and parallel, and their errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx as gx


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16, jnp.float32, jnp.float64])
def test_apply_updates_keeps_each_param_dtype(dtype):
    params = {"a": jnp.ones(3, dtype), "b": jnp.ones((), jnp.float32)}
    updates = {"a": jnp.full(3, 0.5, jnp.float64), "b": jnp.asarray(0.25, jnp.float64)}
    new = gx.apply_updates(params, updates)
    assert new["a"].dtype == dtype and new["b"].dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(new["a"], np.float64), 1.5)
    np.testing.assert_allclose(new["b"], 1.25)


def test_apply_updates_passes_none_through():
    params = {"a": jnp.ones(2), "frozen": None}
    new = gx.apply_updates(params, {"a": jnp.ones(2), "frozen": None})
    assert new["frozen"] is None
    np.testing.assert_allclose(new["a"], 2.0)


def test_apply_updates_names_the_mismatched_path():
    params = {"a": jnp.ones(2), "b": {"c": jnp.ones(3)}}
    with pytest.raises(ValueError, match=r"\['b'\]\['c'\].*\(4,\).*\(3,\)"):
        gx.apply_updates(params, {"a": jnp.ones(2), "b": {"c": jnp.ones(4)}})
    with pytest.raises(ValueError, match=r"no entry at \['b'\]\['c'\]"):
        gx.apply_updates(params, {"a": jnp.ones(2), "b": {}})
    with pytest.raises(ValueError, match=r"\['a'\].*None"):
        gx.apply_updates(params, {"a": None, "b": {"c": jnp.ones(3)}})


def test_a_renamed_key_names_both_the_missing_and_the_unexpected_path():
    params = {"layer": {"w": jnp.ones(2), "b": jnp.ones(2)}, "head": jnp.ones(())}
    grads = {"layer": {"kernel": jnp.ones(2), "b": jnp.ones(2)}, "head": jnp.ones(())}
    # An optimizer (its gradient check) and a bare transformation (its state check), eager and
    # under jit.
    for opt, start in [
        (gx.sgd(0.1, momentum=0.9), "The gradient tree does not match the params tree: "),
        (gx.ema(0.9), "The updates tree does not match the ema state tree: "),
    ]:
        state = opt.init(params)
        for update in (opt.update, jax.jit(opt.update)):
            with pytest.raises(ValueError) as info:
                update(grads, state, params)
            message = str(info.value)
            assert message.startswith(start), message
            assert "missing: " in message and "has no entry at ['layer']['w']" in message
            assert "unexpected: " in message and "entry at ['layer']['kernel']" in message
    with pytest.raises(ValueError, match=r"no entry at \['layer'\]\['w'\].*"
                                         r"unexpected.*\['layer'\]\['kernel'\]"):
        gx.apply_updates(params, grads)


def test_a_structure_mismatch_lists_every_path_up_to_ten_a_side():
    params = {f"p{i:02d}": jnp.ones(1) for i in range(12)}
    grads = {f"g{i}": jnp.ones(1) for i in range(3)}
    with pytest.raises(ValueError) as info:
        gx.apply_updates(params, grads)
    message = str(info.value)
    missing = message[message.index("missing:"):message.index("unexpected:")]
    assert [f"['p{i:02d}']" in missing for i in range(12)] == [True] * 10 + [False] * 2
    assert "and 2 more" in missing
    assert message.endswith("has entries at ['g0'], ['g1'], ['g2'] that params lacks.")


def test_a_mismatch_of_container_types_only_names_both_structures():
    with pytest.raises(ValueError, match="container types differ"):
        gx.apply_updates([jnp.ones(1), jnp.ones(1)], (jnp.ones(1), jnp.ones(1)))


def test_chain_rejects_what_is_not_a_transformation():
    with pytest.raises(TypeError, match="argument 1.*gx.identity()"):
        gx.chain(gx.identity(), gx.identity)


def test_chain_and_parallel_reject_a_foreign_state():
    params = {"a": jnp.ones(2)}
    tx = gx.chain(gx.ema(0.9), gx.scale(2.0))
    with pytest.raises(ValueError, match="chain: expected a state tuple of 2 entries"):
        tx.update(params, gx.sgd().init(params))
    par = gx.parallel(gx.ema(0.9), gx.identity(), combine=lambda a, b: a + b)
    with pytest.raises(ValueError, match="parallel: expected a state tuple of 2 entries"):
        par.update(params, (gx.FirstMomentState(params),))


def test_parallel_needs_a_callable_combine_and_a_branch():
    with pytest.raises(TypeError, match="combine"):
        gx.parallel(gx.identity(), combine=None)
    with pytest.raises(ValueError, match="at least one"):
        gx.parallel(combine=lambda: 0)


def test_chain_with_identity_is_the_transformation_itself():
    params = {"a": jnp.arange(3.0)}
    grads = [{"a": jnp.asarray([1.0, -2.0, 0.5]) * (i + 1)} for i in range(4)]
    for tx, same in [(gx.adam(0.1), gx.chain(gx.identity(), gx.adam(0.1), gx.identity()))]:
        s1, s2 = tx.init(params), same.init(params)
        for g in grads:
            u1, s1 = tx.update(g, s1, params)
            u2, s2 = same.update(g, s2, params)
            np.testing.assert_array_equal(u1["a"], u2["a"])


def test_adam_is_its_documented_chain():
    """The README's spelled-out Adam equals gx.adam."""
    spelled = gx.chain(
        gx.divide_by_root(
            gx.chain(gx.ema(0.9), gx.bias_correction(0.9)),
            gx.chain(gx.ema_of_squares(0.999), gx.bias_correction(0.999)),
            eps=1e-8,
        ),
        gx.scale_by_learning_rate(1e-3),
    )
    params = {"a": jnp.arange(3.0)}
    s1, s2 = gx.adam().init(params), spelled.init(params)
    for i in range(5):
        g = {"a": jnp.asarray([1.0, -2.0, 0.5]) * (i - 2)}
        u1, s1 = gx.adam().update(g, s1, params)
        u2, s2 = spelled.update(g, s2, params)
        np.testing.assert_array_equal(u1["a"], u2["a"])


def test_step_count_saturates_instead_of_wrapping():
    tx = gx.bias_correction(0.9)
    state = gx.CountState(count=jnp.asarray(jnp.iinfo(jnp.int32).max, jnp.int32))
    _, state = tx.update({"a": jnp.ones(2)}, state)
    assert int(state.count) == jnp.iinfo(jnp.int32).max


def test_optimizer_init_and_update_jit_together():
    """A whole training step, init included, traces once and runs under jit."""
    opt = gx.nadam()

    @jax.jit
    def two_steps(params):
        state = opt.init(params)
        for _ in range(2):
            grads = jax.tree_util.tree_map(jnp.ones_like, params)
            updates, state = opt.update(grads, state, params)
            params = gx.apply_updates(params, updates)
        return params

    out = two_steps({"a": jnp.zeros(3)})
    assert bool(jnp.all(out["a"] < 0))


def test_map_by_shape_equals_tree_map_and_traces_one_call_per_shape():
    rng = np.random.default_rng(0)
    tree = {"a": jnp.asarray(rng.normal(size=(3, 2))), "b": jnp.asarray(rng.normal(size=(3, 2))),
            "c": jnp.asarray(rng.normal(size=(2, 3))), "d": None,
            "e": jnp.asarray(rng.normal(size=(3, 2)), jnp.float32)}
    calls = []

    def fn(m):
        calls.append(m.shape)
        return m @ m.T @ m

    out = gx.map_by_shape(fn, tree)
    want = jax.tree_util.tree_map(lambda m: m @ m.T @ m, tree)
    assert jax.tree_util.tree_structure(out) == jax.tree_util.tree_structure(want)
    for x, y in zip(jax.tree_util.tree_leaves(out), jax.tree_util.tree_leaves(want), strict=True):
        assert x.dtype == y.dtype
        np.testing.assert_allclose(x, y, rtol=1e-6)
    # "a" and "b" (float64, 3x2) share one vmapped call; "c" and the float32 "e" are alone.
    assert sorted(calls) == [(2, 3), (3, 2), (3, 2)]

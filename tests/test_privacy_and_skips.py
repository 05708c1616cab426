"""Differentially private aggregation (per-example clipping, differentially_private_aggregate,
dpsgd), gradient accumulation's skip hook (skip_not_finite, skip_large_updates), named_chain
and tree_map_params, against Optax 0.2.8 (a test-only reference) in float64: outputs and
states step for step, eager and under jit (lax.scan), to rtol 1e-9; and their errors."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx as gx
from tests import helpers
from tests.test_optax_transforms import assert_tree_close, run

STEPS = 12
BATCH = 5
PARAMS = helpers.make_params()


def per_example_grads(seed=0, steps=STEPS):
    """Per-example gradients for PARAMS: examples of zeros, tiny, unit and huge entries."""
    rng = np.random.default_rng(seed)
    scales = np.array([0.0, 1e-9, 1.0, 1e4, 0.3])
    return [
        {k: rng.normal(size=(BATCH, *np.shape(p)))
         * scales[(np.arange(BATCH) + t) % 5].reshape(-1, *[1] * np.ndim(p))
         for k, p in PARAMS.items()}
        for t in range(steps)
    ]


GRADS = per_example_grads()


def assert_same(got, want, message):
    """One step's trees equal to rtol 1e-9 (assert_tree_close on a step axis of length 1)."""
    one_step = lambda tree: jax.tree_util.tree_map(lambda x: np.asarray(x)[None], tree)
    assert_tree_close(one_step(got), one_step(want), message)
BOUNDS = [0.0, 0.5, 3.0, np.inf]


# --------------------------------------------------------------------------------------------
# Per-example clipping


@pytest.mark.parametrize("bound", BOUNDS)
def test_per_example_global_norm_clip(bound):
    for g in GRADS[:5]:
        leaves = jax.tree_util.tree_leaves(g)
        want, want_count = optax.per_example_global_norm_clip(leaves, bound)
        for fn in (gx.per_example_global_norm_clip,
                   jax.jit(gx.per_example_global_norm_clip)):
            got, count = fn(g, bound)
            assert_same(jax.tree_util.tree_leaves(got), want, f"C={bound}")
            assert int(count) == int(want_count)


@pytest.mark.parametrize("uniform", [True, False])
@pytest.mark.parametrize("bound", BOUNDS)
def test_per_example_layer_norm_clip(bound, uniform):
    for g in GRADS[:5]:
        leaves = jax.tree_util.tree_leaves(g)
        want, want_counts = optax.per_example_layer_norm_clip(leaves, bound, uniform)
        got, counts = gx.per_example_layer_norm_clip(g, bound, uniform)
        assert_same(jax.tree_util.tree_leaves(got), want, f"C={bound}, {uniform}")
        assert [int(c) for c in jax.tree_util.tree_leaves(counts)] == [
            int(c) for c in want_counts]
        assert jax.tree_util.tree_structure(counts) == jax.tree_util.tree_structure(g)


def test_per_example_clips_refuse_leaves_without_one_batch_axis():
    with pytest.raises(ValueError, match=r"\['b'\] has 3 examples, the first leaf 5"):
        gx.per_example_global_norm_clip({"a": np.ones((5, 2)), "b": np.ones((3, 2))}, 1.0)
    with pytest.raises(ValueError, match=r"\['b'\] is a scalar"):
        gx.per_example_layer_norm_clip({"a": np.ones((5, 2)), "b": np.float64(1.0)}, 1.0)
    with pytest.raises(ValueError, match="l2_norm_clip"):
        gx.per_example_global_norm_clip({"a": np.ones((5, 2))}, -1.0)


# --------------------------------------------------------------------------------------------
# differentially_private_aggregate, dpsgd


def rng_key(state_key):
    """Optax's typed key or gradtx's raw key data, as raw data."""
    if jnp.issubdtype(state_key.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(state_key)
    return state_key


def check_dp(ours, theirs, label):
    record = lambda s: rng_key(gx.tree_get(s, "rng_key"))
    want = run(theirs, PARAMS, GRADS, record, jit="step")
    for jit in (False, True):
        got = run(ours, PARAMS, GRADS, record, jit=jit)
        assert_tree_close(got, want, f"{label}, jit={jit}")


@pytest.mark.parametrize("noise_multiplier", [0.0, 1.3])
@pytest.mark.parametrize("key", [7, "typed"])
def test_differentially_private_aggregate_equals_optax(noise_multiplier, key):
    key = jax.random.key(11) if key == "typed" else key
    ours = gx.differentially_private_aggregate(2.0, noise_multiplier, key)
    theirs = optax.contrib.differentially_private_aggregate(
        2.0, noise_multiplier, jax.random.key(key) if isinstance(key, int) else key)
    check_dp(ours, theirs, f"sigma={noise_multiplier}")


DPSGD_GRID = [
    dict(momentum=None, nesterov=False),
    dict(momentum=0.0, nesterov=False),
    dict(momentum=0.9, nesterov=False),
    dict(momentum=0.9, nesterov=True),
]


@pytest.mark.filterwarnings("ignore:\"seed\" is deprecated:DeprecationWarning")
@pytest.mark.parametrize("kw", DPSGD_GRID, ids=helpers.label)
@pytest.mark.parametrize("learning_rate", [0.1, "schedule"])
def test_dpsgd_equals_optax(kw, learning_rate):
    lr = optax.linear_schedule(0.2, 0.01, 8) if learning_rate == "schedule" else learning_rate
    ours = gx.dpsgd(lr, 1.5, 0.8, 3, **kw)
    theirs = optax.contrib.dpsgd(lr, 1.5, 0.8, 3, **kw)
    check_dp(ours, theirs, helpers.label(kw))


def test_dpsgd_state_and_hyperparameters():
    opt = gx.dpsgd(0.1, 1.0, 0.5, jax.random.key(2), momentum=0.9)
    state = opt.init(PARAMS)
    assert set(gx.tree_get(state, "momentum_buffer")) == set(PARAMS)
    assert float(gx.get_hyperparam(state, "noise_multiplier")) == 0.5
    # A live noise multiplier of 0 gives the clipped mean itself.
    state = gx.set_hyperparam(state, "noise_multiplier", 0.0)
    out, _ = opt.update(GRADS[2], state, PARAMS)
    clipped, _ = gx.per_example_global_norm_clip(GRADS[2], 1.0)
    want = jax.tree_util.tree_map(lambda c: -0.1 * c / BATCH, clipped)
    assert_same(out, want, "noise_multiplier=0")


def test_dp_errors_name_what_is_wrong():
    dp = gx.differentially_private_aggregate(1.0, 1.0, 0)
    state = dp.init(PARAMS)
    wrong = dict(GRADS[0], w=GRADS[0]["w"][:, :1])
    with pytest.raises(ValueError, match=r"\['w'\]"):
        dp.update(wrong, state, PARAMS)
    unbatched = jax.tree_util.tree_map(lambda g: g[0], GRADS[0])
    with pytest.raises(ValueError, match="per-example"):
        dp.update(unbatched, state, PARAMS)
    with pytest.raises(ValueError, match="nesterov"):
        gx.dpsgd(0.1, 1.0, 1.0, 0, nesterov=True)
    with pytest.raises(ValueError, match="`key` or `seed`"):
        gx.differentially_private_aggregate(1.0, 1.0, 0, seed=1)
    with pytest.raises(ValueError, match="noise_multiplier"):
        gx.dpsgd(0.1, 1.0, -1.0, 0)
    with pytest.raises(TypeError, match="seed"):
        gx.dpsgd(0.1, 1.0, 1.0, "zero")


# --------------------------------------------------------------------------------------------
# accumulate_gradients(..., should_skip_update_fn=...) against optax.MultiSteps


def skippy_grads(steps=18, seed=4):
    """Gradients with NaN and Inf steps and a few large ones."""
    rng = np.random.default_rng(seed)
    out = []
    for t in range(steps):
        g = {k: rng.normal(size=np.shape(p)) for k, p in PARAMS.items()}
        if t % 5 == 1:
            g["w"] = g["w"].copy()
            g["w"].flat[0] = np.nan if t % 2 else np.inf
        if t % 4 == 2:
            g = {k: v * 10.0 for k, v in g.items()}
        out.append(g)
    return out


SKIPS = {
    "not_finite": (gx.skip_not_finite, optax.skip_not_finite),
    "large": (functools.partial(gx.skip_large_updates, max_squared_norm=40.0),
              functools.partial(optax.skip_large_updates, max_squared_norm=40.0)),
}


@pytest.mark.parametrize("every_k", [1, 3])
@pytest.mark.parametrize("skip", sorted(SKIPS))
def test_accumulation_skips_as_multisteps_does(skip, every_k):
    ours_fn, theirs_fn = SKIPS[skip]
    ours = gx.accumulate_gradients(gx.adam(0.1), every_k, should_skip_update_fn=ours_fn)
    theirs = optax.MultiSteps(optax.adam(0.1), every_k, should_skip_update_fn=theirs_fn,
                              accumulator_dtype=jnp.float64).gradient_transformation()
    record = lambda s: (s.gradient_step, s.skip_state, gx.tree_get(s, "mu"))
    record_theirs = lambda s: (s.gradient_step, s.skip_state, s.inner_opt_state[0].mu)
    grads = skippy_grads()
    want = run(theirs, PARAMS, grads, record_theirs, jit="step")
    for jit in (False, True):
        got = run(ours, PARAMS, grads, record, jit=jit)
        # Optax keeps a running mean of the micro-batches, gradtx their sum: equal to rounding.
        got_out, want_out = got[0], want[0]
        assert_tree_close(got_out, want_out, f"{skip}, k={every_k}, jit={jit}")
        assert np.array_equal(got[1][0], want[1][0])
        assert_tree_close(got[1][1], want[1][1], "skip_state")
        assert_tree_close(got[1][2], want[1][2], "mu")
    skipped = np.asarray(want[1][1]["should_skip"])
    assert skipped.any() and not skipped.all(), "the gradients should exercise both branches"


def test_a_skipped_call_leaves_the_state_as_it_was():
    opt = gx.accumulate_gradients(gx.adam(0.1), 2, should_skip_update_fn=gx.skip_not_finite)
    state = opt.init(PARAMS)
    good = jax.tree_util.tree_map(np.ones_like, PARAMS)
    _, state = opt.update(good, state, PARAMS)
    bad = dict(good, b=np.full_like(good["b"], np.nan))
    for update in (opt.update, jax.jit(opt.update)):
        out, after = update(bad, state, PARAMS)
        assert all(not np.any(u) for u in jax.tree_util.tree_leaves(out))
        same = jax.tree_util.tree_map(np.array_equal, after._replace(skip_state=(), emitted=0),
                                      state._replace(skip_state=(), emitted=0))
        assert all(jax.tree_util.tree_leaves(same))
        assert not bool(after.emitted)
        assert int(after.skip_state["num_not_finite"]) == good["b"].size


def test_a_skip_function_must_return_a_boolean_scalar():
    opt = gx.accumulate_gradients(
        gx.sgd(0.1), 2, should_skip_update_fn=lambda u, step, p: (jnp.zeros(2, bool), ()))
    with pytest.raises(ValueError, match="boolean scalar"):
        opt.init(PARAMS)


# --------------------------------------------------------------------------------------------
# named_chain


def test_named_chain_equals_optax():
    ours = gx.named_chain(("clip", gx.clip(0.5)), ("adam", gx.adam(0.1)))
    theirs = optax.named_chain(("clip", optax.clip(0.5)), ("adam", optax.adam(0.1)))
    record = lambda s: list(s)
    grads = helpers.make_gradients(PARAMS, steps=STEPS)
    want = run(theirs, PARAMS, grads, lambda s: (), jit="step")
    for jit in (False, True):
        got = run(ours, PARAMS, grads, lambda s: (), jit=jit)
        assert_tree_close(got, want, f"named_chain, jit={jit}")
    assert record(ours.init(PARAMS)) == ["clip", "adam"]
    assert gx.tree_get(ours.init(PARAMS)["adam"], "mu")["w"].shape == PARAMS["w"].shape


def test_named_chain_passes_extra_arguments_to_every_part():
    opt = gx.named_chain(("scale", gx.scale(0.5)), ("polyak", gx.polyak_sgd(max_learning_rate=1.0)))
    ref = optax.named_chain(("scale", optax.scale(0.5)), ("polyak", optax.polyak_sgd()))
    g = {"w": jnp.asarray([1.0, -2.0])}
    got, _ = opt.update(g, opt.init(g), g, value=jnp.asarray(3.0))
    want, _ = ref.update(g, ref.init(g), g, value=jnp.asarray(3.0))
    assert_same(got, want, "value=")


def test_named_chain_errors():
    with pytest.raises(ValueError, match=r"repeated: \['a'\]"):
        gx.named_chain(("a", gx.identity()), ("a", gx.identity()))
    with pytest.raises(TypeError, match="argument 0"):
        gx.named_chain(gx.identity())
    opt = gx.named_chain(("a", gx.identity()))
    with pytest.raises(ValueError, match=r"names \['a'\]"):
        opt.update(PARAMS, {"b": gx.EmptyState()}, PARAMS)


# --------------------------------------------------------------------------------------------
# tree_map_params


@pytest.mark.parametrize("name", ["adam", "sgd_momentum", "rmsprop", "lion", "chain"])
def test_tree_map_params_maps_what_optax_maps(name):
    """Every parameter-shaped tree of the state (the ones Optax's tree_map_params finds in its
    own optimizer's state) and nothing else."""
    ours, theirs = {
        "adam": (gx.adam(0.1), optax.adam(0.1)),
        "sgd_momentum": (gx.sgd(0.1, momentum=0.9), optax.sgd(0.1, momentum=0.9)),
        "rmsprop": (gx.rmsprop(0.1), optax.rmsprop(0.1)),
        "lion": (gx.lion(0.1), optax.lion(0.1)),
        "chain": (gx.chain(gx.clip_by_global_norm(1.0), gx.adamw(0.1)),
                  optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(0.1))),
    }[name]
    names = {k: f"spec-{k}" for k in PARAMS}

    def mapped(tx):
        out = gx.tree_map_params(tx, lambda _, n: n, tx.init(PARAMS), names,
                                 transform_non_params=lambda _: None)
        return sorted(x for x in jax.tree_util.tree_leaves(out) if isinstance(x, str))

    ours_state = ours.init(PARAMS)
    got = gx.tree_map_params(ours, lambda _, n: n, ours_state, names,
                             transform_non_params=lambda _: None)
    assert jax.tree_util.tree_structure(got, is_leaf=lambda x: x is None) is not None
    want = optax.tree_map_params(theirs, lambda _, n: n, theirs.init(PARAMS), names,
                                 transform_non_params=lambda _: None)
    want_specs = sorted(x for x in jax.tree_util.tree_leaves(want) if isinstance(x, str))
    assert mapped(ours) == want_specs
    # The untouched leaves stay as they are without transform_non_params.
    doubled = gx.tree_map_params(ours, lambda x: 2 * x, ours_state)
    assert jax.tree_util.tree_structure(doubled) == jax.tree_util.tree_structure(ours_state)


def test_tree_map_params_shards_a_state_like_its_params():
    """The use it exists for: a PartitionSpec tree for the state from the params' one."""
    from jax.sharding import PartitionSpec as P

    opt = gx.adamw(0.1)
    specs = {k: P() if np.ndim(v) < 2 else P(None, None) for k, v in PARAMS.items()}
    state = opt.init(PARAMS)
    state_specs = gx.tree_map_params(opt, lambda _, s: s, state, specs,
                                     transform_non_params=lambda _: P())
    assert gx.tree_get(state_specs, "mu") == specs
    assert gx.tree_get(state_specs, "count") == P()


def test_tree_map_params_errors():
    def init_reading_leaves(params):
        return {"n": jnp.zeros(jax.tree_util.tree_leaves(params)[0].shape)}

    with pytest.raises(IndexError) as caught:
        gx.tree_map_params(init_reading_leaves, lambda x: x, None)
    assert "tree_map_params calls init on a stand-in" in "".join(caught.value.__notes__)
    with pytest.raises(TypeError, match="transformation or an init function"):
        gx.tree_map_params(3, lambda x: x, None)
    with pytest.raises(ValueError, match="same transformation"):
        gx.tree_map_params(gx.adam(), lambda x: x, gx.sgd(0.1, momentum=0.9).init(PARAMS))

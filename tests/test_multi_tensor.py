"""gx.multi_tensor: a flattenable transformation stepped on one buffer per dtype equals the same
transformation stepped leaf by leaf (bit for bit for elementwise steps, to a few ulps where a
global norm sums in another order), for every flattenable registry optimizer, jitted and eager;
its state reads by name and converts to and from the per-leaf state; it refuses what it cannot
run; and its jitted step's arithmetic does not grow with the number of leaves.

Sharded parameters are checked in tests/sharding_checks.py (8 simulated devices)."""

from __future__ import annotations

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx as gx
from gradtx.optimizers import registry
from gradtx.optimizers.registry import OPTIMIZERS

STEPS = 6
FLATTENABLE = [i for i in OPTIMIZERS if gx.is_flattenable(i.build(**i.example))]
NOT_FLATTENABLE = [i for i in OPTIMIZERS if i not in FLATTENABLE]
# Flattenable through sums over all the leaves (D-Adaptation's estimate of the step size): one
# sum per buffer instead of one per leaf, so the estimate, and with it every step, may differ
# in its last bits: by about an ulp of the float32 sums (measured over these 6 steps, jitted and
# eager: at most 2.5e-7 relative, in the float32 leaves and in the estimate's scalars).
SUMS_IN_ANOTHER_ORDER = {"prodigy": 1e-6, "dadapt_adamw": 1e-6, "dog": 1e-6, "dowg": 1e-6,
                         "mechanize_sgd": 1e-6}
ELEMENTWISE = [i for i in FLATTENABLE if i.name not in SUMS_IN_ANOTHER_ORDER]
BY_NAME = {"ids": lambda info: info.name}
# XLA compiles the two programs into differently fused kernels, and LLVM may contract a
# multiply and an add into one fused multiply-add in one of them and not the other: a result
# can then differ in its last bit, and over the steps by a few (measured over these 6 steps: at
# most 2 ulps, in a few entries of SGD, RAdam, sign SGD and Lookahead, float32 and float64;
# every other optimizer bit for bit).
ULPS = 4
# AdEMAMix's update adds two terms before it divides: a last-bit difference there shows as up
# to 8 ulps of a parameter entry that the steps carried near zero (measured: 8.0, one entry of
# 0.0115 in float32, jitted, every axis on).
# MADGRAD's update is the difference of two values near the parameter: one last-bit difference
# shows as up to 256 ulps of an entry near zero (about 1 ulp of the leaf's largest entry).
ULPS_OF = {"ademamix": 12, "madgrad": 512}


def _params(seed=0):
    """Leaves of two float widths, several shapes, a scalar, an empty leaf, a None leaf and
    nesting: what the layout has to get right."""
    rng = np.random.default_rng(seed)
    return {
        "layer": {"w": jnp.asarray(rng.normal(size=(4, 3)), jnp.float32),
                  "b": jnp.asarray(rng.normal(size=(3,)), jnp.float32),
                  "frozen": None},
        "head": jnp.asarray(rng.normal(size=(2, 2, 2)), jnp.float64),
        "scale": jnp.asarray(rng.normal(), jnp.float32),
        "empty": jnp.zeros((0, 3), jnp.float32),
        "table": jnp.asarray(rng.normal(size=(5,)), jnp.float64),
    }


def _grads(params, seed=1):
    rng = np.random.default_rng(seed)
    out = []
    for t in range(STEPS):
        scale = 1e3 if t == 2 else 1.0
        g = jax.tree_util.tree_map(
            lambda p, scale=scale: jnp.asarray(rng.normal(size=p.shape) * scale, p.dtype), params)
        out.append(jax.tree_util.tree_map(jnp.zeros_like, g) if t == 4 else g)
    return out


def _run(tx, params, grads, jit=True, state=None):
    """Parameters after each step, and the last state (from ``tx.init`` unless given)."""
    update = jax.jit(tx.update) if jit else tx.update
    state = tx.init(params) if state is None else state
    trajectory = []
    for g in grads:
        updates, state = update(g, state, params)
        params = gx.apply_updates(params, updates)
        trajectory.append(params)
    return trajectory, state


def _ulps(x, y) -> float:
    """The largest difference between ``x`` and ``y`` in units of ``y``'s last place."""
    x, y = np.asarray(x), np.asarray(y)
    if x.size == 0:
        return 0.0
    # Equal values (an infinite hyperparameter too: inf - inf is NaN) are 0 ulps apart.
    gap = np.where(x == y, 0.0, np.abs(x.astype(np.float64) - y))
    return float(np.max(gap / np.spacing(np.abs(y)).astype(np.float64), initial=0.0))


def _assert_trees(a, b, rtol=0.0, ulps=0):
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves(b),
                            strict=True):
        where = jax.tree_util.keystr(path)
        assert x.dtype == y.dtype and x.shape == y.shape, where
        if rtol:
            np.testing.assert_allclose(x, y, rtol=rtol, atol=0, err_msg=where)
        elif ulps:
            assert _ulps(x, y) <= ulps, (where, _ulps(x, y))
        else:
            np.testing.assert_array_equal(x, y, err_msg=where)


def test_the_flattenable_entries_are_the_elementwise_ones():
    assert set(SUMS_IN_ANOTHER_ORDER) <= {i.name for i in FLATTENABLE}
    names = {i.name for i in ELEMENTWISE}
    assert names == {"sgd", "adagrad", "rmsprop", "adadelta", "adam", "adamw", "nadam", "adamax",
                     "radam", "adabelief", "yogi", "rprop", "asgd", "lion", "sign_sgd",
                     "lookahead_sgd", "param_average_adam", "adopt", "ademamix",
                     "schedule_free_sgd", "schedule_free_adamw", "adan", "madgrad", "cocob",
                     "acprop", "simplified_ademamix", "optimistic_gradient_descent",
                     "optimistic_adam", "optimistic_adam_v2"}


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("info", ELEMENTWISE, **BY_NAME)
def test_equals_the_per_leaf_step_to_the_last_bit(info, jit):
    params = _params()
    grads = _grads(params)
    # Every grid axis at its last value too: momentum, Nesterov, AMSGrad, weight decay on.
    for kwargs in (dict(info.example), {k: v[-1] for k, v in info.grid.items()}):
        if not info.constraint(kwargs):
            continue
        tx = info.build(**kwargs)
        want, want_state = _run(tx, params, grads, jit)
        got, got_state = _run(gx.multi_tensor(tx), params, grads, jit)
        ulps = ULPS_OF.get(info.name, ULPS)
        for t in range(STEPS):
            _assert_trees(got[t], want[t], ulps=ulps)
        _assert_trees(gx.per_leaf_state(got_state, params), want_state, ulps=ulps)


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("name", sorted(SUMS_IN_ANOTHER_ORDER))
def test_tree_wide_sums_in_another_order(name, jit):
    """The optimizers whose step reads sums over all the leaves equal the per-leaf step to
    ``SUMS_IN_ANOTHER_ORDER[name]``, relative, in the example and with every grid axis at its
    last value."""
    info = registry.get(name)
    params = _params()
    grads = _grads(params)
    for kwargs in (dict(info.example), {k: v[-1] for k, v in info.grid.items()}):
        tx = info.build(**kwargs)
        want, want_state = _run(tx, params, grads, jit)
        got, got_state = _run(gx.multi_tensor(tx), params, grads, jit)
        for t in range(STEPS):
            _assert_trees(got[t], want[t], rtol=SUMS_IN_ANOTHER_ORDER[name])
        _assert_trees(gx.per_leaf_state(got_state, params), want_state,
                      rtol=SUMS_IN_ANOTHER_ORDER[name])


def test_prodigy_with_a_stride_over_each_leaf_is_refused():
    """Prodigy's slice_p > 1 takes every slice_p-th entry of each leaf: not flattenable."""
    assert gx.is_flattenable(gx.prodigy(slice_p=1))
    with pytest.raises(ValueError, match="not flattenable"):
        gx.multi_tensor(gx.prodigy(slice_p=3))


def test_global_norm_clipping_sums_in_another_order():
    """Clipping reads one norm over all leaves: one sum over each buffer instead of one per
    leaf, so the last bits may differ (float32 here; measured below 1e-6 relative)."""
    params = {k: v for k, v in _params().items() if k != "head" and k != "table"}
    grads = _grads(params)
    tx = gx.chain(gx.clip_by_global_norm(0.5), gx.adamw(1e-2, weight_decay=0.1))
    want, _ = _run(tx, params, grads, jit=True)
    got, _ = _run(gx.multi_tensor(tx), params, grads, jit=True)
    for t in range(STEPS):
        _assert_trees(got[t], want[t], rtol=1e-5)


def test_state_reads_by_name_one_buffer_per_dtype():
    params = _params()
    tx = gx.multi_tensor(gx.adam(1e-3))
    state = tx.init(params)
    mu = gx.tree_get(state, "mu")
    assert sorted(mu) == ["float32", "float64"]
    assert mu["float32"].shape == (12 + 3 + 1 + 0,) and mu["float32"].dtype == jnp.float32
    assert mu["float64"].shape == (8 + 5,) and mu["float64"].dtype == jnp.float64
    assert int(gx.tree_get(state, "count")) == 0
    state = gx.set_hyperparam(state, "learning_rate", 0.5)
    assert float(gx.get_hyperparam(state, "learning_rate")) == 0.5


def test_a_run_moves_between_the_two_forms_and_continues_identically():
    params = _params()
    grads = _grads(params)
    tx = gx.adamw(1e-2, weight_decay=0.1, amsgrad=True)
    mt = gx.multi_tensor(tx)
    full, _ = _run(tx, params, grads, jit=True)
    # Three steps leaf by leaf, then three on buffers, and the other way round.
    half, state = _run(tx, params, grads[:3], jit=True)
    rest, _ = _run(mt, half[-1], grads[3:], state=gx.multi_tensor_state(state, params))
    _assert_trees(rest[-1], full[-1])
    half, state = _run(mt, params, grads[:3], jit=True)
    rest, _ = _run(tx, half[-1], grads[3:], state=gx.per_leaf_state(state, params))
    _assert_trees(rest[-1], full[-1])


def test_gradients_of_another_width_are_cast_as_leaf_by_leaf():
    params = {"w": jnp.ones((3, 2), jnp.bfloat16), "b": jnp.ones(2, jnp.float32)}
    grads = {"w": jnp.full((3, 2), 0.3, jnp.float32), "b": jnp.full(2, 0.3, jnp.bfloat16)}
    tx = gx.sgd(0.1, momentum=0.9)
    want, _ = tx.update(grads, tx.init(params), params)
    mt = gx.multi_tensor(tx)
    got, _ = mt.update(grads, mt.init(params), params)
    _assert_trees(got, want)


def test_inside_multi_transform_each_label_has_its_buffers():
    params = _params()
    grads = _grads(params)
    labels = jax.tree_util.tree_map(lambda p: "decay" if p.ndim >= 2 else "plain", params)
    per_leaf = gx.multi_transform({"decay": gx.adamw(1e-2, weight_decay=0.1),
                                   "plain": gx.sgd(0.1, momentum=0.9)}, labels)
    flat = gx.multi_transform({"decay": gx.multi_tensor(gx.adamw(1e-2, weight_decay=0.1)),
                               "plain": gx.multi_tensor(gx.sgd(0.1, momentum=0.9))}, labels)
    want, _ = _run(per_leaf, params, grads, jit=True)
    got, _ = _run(flat, params, grads, jit=True)
    _assert_trees(got[-1], want[-1])


@pytest.mark.parametrize("info", NOT_FLATTENABLE, **BY_NAME)
def test_leaf_by_leaf_optimizers_are_refused(info):
    with pytest.raises(ValueError, match="not flattenable.*run it without multi_tensor"):
        gx.multi_tensor(info.build(**info.example))


@pytest.mark.parametrize("make", [
    lambda: gx.masked(gx.adam(1e-3), {"w": True, "b": False}),
    lambda: gx.chain(gx.clip_by_block_rms(1.0), gx.sgd(0.1)),
    lambda: gx.quantize_state(gx.adam(1e-3)),
    lambda: gx.chain(gx.adam(1e-3), gx.stateless(lambda u, p: u)),
], ids=["masked", "per-leaf clipping", "quantized state", "undeclared stateless"])
def test_other_leaf_by_leaf_transformations_are_refused(make):
    with pytest.raises(ValueError, match="not flattenable"):
        gx.multi_tensor(make())


def test_declaring_a_transformation_flattenable_lets_it_in():
    halve = gx.flattenable(gx.stateless(lambda u, p: jax.tree_util.tree_map(lambda x: x / 2, u)))
    tx = gx.multi_tensor(gx.chain(halve, gx.sgd(1.0)))
    params = {"w": jnp.ones(3), "b": jnp.ones(())}
    updates, _ = tx.update(params, tx.init(params), params)
    np.testing.assert_array_equal(updates["w"], -0.5 * np.ones(3))


@pytest.mark.parametrize(("leaf", "error"), [
    (jnp.ones(2, jnp.complex64), TypeError),
    (jnp.ones(2, jnp.int32), TypeError),
])
def test_non_float_leaves_are_refused_by_path(leaf, error):
    tx = gx.multi_tensor(gx.adam(1e-3))
    with pytest.raises(error, match=r"\['z'\]"):
        tx.init({"w": jnp.ones(2), "z": leaf})


def test_a_state_of_another_kind_is_refused():
    tx = gx.multi_tensor(gx.adam(1e-3))
    params = {"w": jnp.ones(2)}
    with pytest.raises(ValueError, match="MultiTensorState"):
        tx.update(params, gx.adam(1e-3).init(params), params)


def _arithmetic_count(tx, n_leaves):
    """Equations of the jitted step's jaxpr other than moving data (concatenate, slice,
    reshape, broadcast, convert): the arithmetic that compiles into kernels."""
    params = {f"leaf_{i:03d}": jnp.ones((i + 1,), jnp.float32) for i in range(n_leaves)}
    state = tx.init(params)

    def step(p, s, g):
        updates, s = tx.update(g, s, p)
        return gx.apply_updates(p, updates), s

    jaxpr = jax.make_jaxpr(step)(params, state, params)
    moving = {"concatenate", "slice", "reshape", "broadcast_in_dim", "convert_element_type",
              "squeeze", "dynamic_slice", "pjit", "copy", "copy_p"}

    def count(jaxpr):
        n = 0
        for eqn in jaxpr.eqns:
            for sub in jax.extend.core.jaxprs_in_params(eqn.params):
                n += count(sub)
            if eqn.primitive.name not in moving:
                n += 1
        return n

    return count(jaxpr.jaxpr)


def test_the_steps_arithmetic_does_not_grow_with_the_number_of_leaves():
    adam = gx.chain(gx.clip_by_global_norm(1.0), gx.adamw(1e-3, weight_decay=0.1))
    flat = gx.multi_tensor(adam)
    few, many = _arithmetic_count(flat, 10), _arithmetic_count(flat, 100)
    # apply_updates adds one addition per leaf (it runs on the leaves, outside multi_tensor).
    assert many - few == 90
    per_leaf_few, per_leaf_many = _arithmetic_count(adam, 10), _arithmetic_count(adam, 100)
    assert per_leaf_many - per_leaf_few > 10 * 90


def test_packed_parameters_train_as_the_leaves_do():
    """The run kept packed for good (gx.pack_leaves: the model reads unpack(buffers), the
    gradient comes as buffers) equals the per-leaf run."""
    params = {k: v for k, v in _params().items() if k != "empty"}
    target = jax.tree_util.tree_map(lambda p: p + 1.0, params)

    def loss(tree):
        return sum(jnp.sum((p - q) ** 2 * (i + 1)) for i, (p, q) in enumerate(
            zip(jax.tree_util.tree_leaves(tree), jax.tree_util.tree_leaves(target), strict=True)))

    tx = gx.chain(gx.clip_by_global_norm(10.0), gx.adamw(1e-2, weight_decay=0.1))
    state = tx.init(params)
    buffers, unpack = gx.pack_leaves(params)
    assert sorted(buffers) == ["float32", "float64"]
    packed_state = tx.init(buffers)
    step = jax.jit(lambda p, s: tx.update(jax.grad(loss)(p), s, p))
    packed_step = jax.jit(lambda b, s: tx.update(jax.grad(lambda b: loss(unpack(b)))(b), s, b))
    for _ in range(STEPS):
        updates, state = step(params, state)
        params = gx.apply_updates(params, updates)
        updates, packed_state = packed_step(buffers, packed_state)
        buffers = gx.apply_updates(buffers, updates)
    _assert_trees(unpack(buffers), params, rtol=1e-5)
    _assert_trees(gx.per_leaf_state(gx.MultiTensorState(packed_state), params), state, rtol=1e-5)

"""The wrappers: masked, multi_transform (against torch's param groups), freeze,
accumulate_gradients and apply_if_finite.

Each wrapper is checked against the inner transformation run by hand on what it should see
(the selected leaves, the mean gradient, the finite steps), then for None leaves, empty trees,
dtypes, jit and vmap, and for its errors.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx as gx
from gradtx.wrappers.accumulation import AccumulationState, accumulate_gradients
from gradtx.wrappers.finite import ApplyIfFiniteState, all_finite, apply_if_finite
from gradtx.wrappers.masking import (
    MaskedState,
    MultiTransformState,
    freeze,
    masked,
    multi_transform,
    set_to_zero,
)

tree_leaves = jax.tree_util.tree_leaves
tree_structure = jax.tree_util.tree_structure


# --------------------------------------------------------------------------------------------
# Data and helpers


def make_params(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"w": rng.normal(size=(4, 3)), "b": rng.normal(size=(3,)), "s": np.asarray(rng.normal())}


def make_grads(steps: int, seed: int = 1, like=None) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    like = make_params() if like is None else like
    return [{k: rng.normal(size=np.shape(v)) for k, v in like.items()} for _ in range(steps)]


PARAMS = make_params()


def run(opt, params, grads, *, jit=False):
    """Params after each step, and the states (init's first)."""
    init, update = (jax.jit(opt.init), jax.jit(opt.update)) if jit else (opt.init, opt.update)
    state = init(params)
    params_traj, states = [], [state]
    for g in grads:
        updates, state = update(g, state, params)
        params = gx.apply_updates(params, updates)
        params_traj.append(params)
        states.append(state)
    return params_traj, states


def assert_trees_equal(actual, expected):
    """Same structure, and every leaf equal bit for bit (NaNs included)."""
    assert tree_structure(actual) == tree_structure(expected)
    for a, e in zip(tree_leaves(actual), tree_leaves(expected), strict=True):
        a, e = np.asarray(a), np.asarray(e)
        assert a.dtype == e.dtype and a.shape == e.shape
        assert a.tobytes() == e.tobytes(), (a, e)


def assert_trees_close(actual, expected, rtol=1e-12):
    assert tree_structure(actual) == tree_structure(expected)
    for a, e in zip(tree_leaves(actual), tree_leaves(expected), strict=True):
        np.testing.assert_allclose(
            np.asarray(a, np.float64), np.asarray(e, np.float64), rtol=rtol, atol=0
        )


# jit may fuse elementwise work that eager mode rounds op by op: bf16 differs by a few ulps.
JIT_RTOL = {jnp.bfloat16: 3e-2, jnp.float32: 1e-5, jnp.float64: 1e-12}


def assert_jit_close(jitted, eager):
    assert tree_structure(jitted) == tree_structure(eager)
    for j, e in zip(tree_leaves(jitted), tree_leaves(eager), strict=True):
        rtol = JIT_RTOL[jnp.dtype(e.dtype).type]
        np.testing.assert_allclose(
            np.asarray(j, np.float64), np.asarray(e, np.float64), rtol=rtol, atol=rtol * 1e-2
        )


def sub(tree, keys):
    return {k: tree[k] for k in keys}


# --------------------------------------------------------------------------------------------
# masked


@pytest.mark.parametrize("jit", [False, True])
def test_masked_transforms_selected_leaves_and_passes_the_others_through(jit):
    grads = make_grads(6)
    mask = {"w": True, "b": False, "s": True}
    opt = masked(gx.adam(0.1), mask)
    update = jax.jit(opt.update) if jit else opt.update
    state = opt.init(PARAMS)
    reference = gx.adam(0.1)
    ref_state = reference.init(sub(PARAMS, ["w", "s"]))
    for g in grads:
        out, state = update(g, state, PARAMS)
        ref_out, ref_state = reference.update(
            sub(g, ["w", "s"]), ref_state, sub(PARAMS, ["w", "s"])
        )
        assert_trees_close(sub(out, ["w", "s"]), ref_out)
        assert_trees_equal(out["b"], jnp.asarray(g["b"]))
    assert isinstance(state, MaskedState)


def test_masked_inner_state_covers_selected_leaves_only():
    opt = masked(gx.adam(0.1), {"w": True, "b": False, "s": False})
    state = opt.init(PARAMS)
    selected_only = {"w": PARAMS["w"], "b": None, "s": None}
    assert tree_structure(state.inner_state) == tree_structure(gx.adam(0.1).init(selected_only))
    # Adam keeps two moments: one w-sized buffer each, nothing for b or s.
    buffers = [x for x in tree_leaves(state.inner_state) if np.ndim(x) > 0]
    assert [np.shape(x) for x in buffers] == [(4, 3), (4, 3)]
    # An update keeps that structure.
    _, new_state = opt.update(make_grads(1)[0], state, PARAMS)
    assert tree_structure(new_state) == tree_structure(state)


def test_masked_mask_as_callable_sees_params_or_updates():
    seen = []

    def mask(tree):
        seen.append(tree)
        return jax.tree_util.tree_map(lambda x: np.ndim(x) == 2, tree)

    opt = masked(gx.sgd(0.5), mask)
    state = opt.init(PARAMS)
    assert seen[-1] is PARAMS
    g = make_grads(1)[0]
    out, state = opt.update(g, state, PARAMS)
    assert seen[-1] is PARAMS
    np.testing.assert_array_equal(out["w"], -0.5 * g["w"])
    np.testing.assert_array_equal(out["b"], g["b"])
    out, _ = opt.update(g, state)  # no params: the mask is read from the updates
    assert seen[-1] is g
    np.testing.assert_array_equal(out["w"], -0.5 * g["w"])
    np.testing.assert_array_equal(out["s"], g["s"])


def test_masked_prefix_mask_selects_whole_subtrees():
    params = {"encoder": {"w": np.ones((2, 2)), "b": np.ones(2)}, "head": {"w": np.ones(3)}}
    grads = jax.tree_util.tree_map(lambda p: 2.0 * p, params)
    opt = masked(gx.sgd(0.5), {"encoder": False, "head": True})
    out, state = opt.update(grads, opt.init(params), params)
    assert_trees_equal(out["encoder"], jax.tree_util.tree_map(jnp.asarray, grads["encoder"]))
    np.testing.assert_array_equal(out["head"]["w"], -np.ones(3))
    everything = masked(gx.sgd(0.5), True)
    out, _ = everything.update(grads, everything.init(params), params)
    np.testing.assert_array_equal(out["encoder"]["b"], -np.ones(2))


def test_masked_out_single_array_needs_no_parameters():
    """A mask of False over a tree that is one array leaves the inner transform nothing, not
    even parameters, so one that needs them (AdamW's weight decay) has nothing to refuse."""
    x = jnp.ones(2)
    opt = masked(gx.adamw(0.1), False)
    out, _ = opt.update(x, opt.init(x), x)
    np.testing.assert_array_equal(out, x)
    with pytest.raises(ValueError, match="needs the parameters"):
        gx.adamw(0.1).update(x, gx.adamw(0.1).init(x))


def test_masked_errors_name_the_path():
    with pytest.raises(ValueError, match=r"\['b'\]"):
        masked(gx.sgd(0.1), {"w": True, "s": True}).init(PARAMS)
    with pytest.raises(TypeError, match=r"mask at \['w'\] must be a bool"):
        masked(gx.sgd(0.1), {"w": 1.0, "b": True, "s": True}).init(PARAMS)
    with pytest.raises(TypeError, match=r"must be a bool"):
        masked(gx.sgd(0.1), {"w": np.array([True, False, True]), "b": True, "s": True}).init(
            PARAMS
        )

    def traced_mask(flag):
        return masked(gx.sgd(0.1), {"w": flag, "b": True, "s": True}).init(PARAMS)

    with pytest.raises(TypeError, match="static"):
        jax.jit(traced_mask)(jnp.asarray(True))


# --------------------------------------------------------------------------------------------
# multi_transform


LABELS = {"w": "decay", "b": "no_decay", "s": "no_decay"}


@pytest.mark.parametrize("jit", [False, True])
def test_multi_transform_equals_each_optimizer_on_its_own_leaves(jit):
    grads = make_grads(10)
    decay, no_decay = gx.adamw(1e-2, weight_decay=0.1), gx.adam(3e-2, b1=0.8)
    opt = multi_transform({"decay": decay, "no_decay": no_decay}, LABELS)
    traj, states = run(opt, PARAMS, grads, jit=jit)
    traj_w, _ = run(decay, sub(PARAMS, ["w"]), [sub(g, ["w"]) for g in grads], jit=jit)
    traj_bs, _ = run(no_decay, sub(PARAMS, ["b", "s"]), [sub(g, ["b", "s"]) for g in grads],
                     jit=jit)
    for step in range(len(grads)):
        assert_trees_close(sub(traj[step], ["w"]), traj_w[step])
        assert_trees_close(sub(traj[step], ["b", "s"]), traj_bs[step])
    state = states[-1]
    assert isinstance(state, MultiTransformState)
    assert sorted(state.inner_states) == ["decay", "no_decay"]
    # Each group's state covers its own leaves only.
    assert tree_structure(state.inner_states["decay"]) == tree_structure(
        decay.init({"w": PARAMS["w"], "b": None, "s": None})
    )
    assert tree_structure(state.inner_states["no_decay"]) == tree_structure(
        no_decay.init({"w": None, "b": PARAMS["b"], "s": PARAMS["s"]})
    )


def test_multi_transform_matches_torch_param_groups(torch_float64):
    torch = torch_float64
    steps = 30
    grads = make_grads(steps, seed=3)
    keys = ["w", "b", "s"]
    tensors = {k: torch.tensor(PARAMS[k], requires_grad=True) for k in keys}
    torch_opt = torch.optim.SGD(
        [
            {"params": [tensors["w"]], "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-2},
            {"params": [tensors["b"], tensors["s"]], "lr": 0.03, "momentum": 0.5,
             "dampening": 0.2},
        ],
        lr=1.0,
    )
    opt = multi_transform(
        {
            "decay": gx.sgd(0.1, momentum=0.9, weight_decay=1e-2),
            "no_decay": gx.sgd(0.03, momentum=0.5, dampening=0.2),
        },
        lambda p: jax.tree_util.tree_map(lambda x: "decay" if np.ndim(x) == 2 else "no_decay", p),
    )
    traj, _ = run(opt, jax.tree_util.tree_map(jnp.asarray, PARAMS), grads, jit=True)
    for step, g in enumerate(grads):
        for k in keys:
            tensors[k].grad = torch.tensor(g[k])
        torch_opt.step()
        for k in keys:
            np.testing.assert_allclose(
                np.asarray(traj[step][k]), tensors[k].detach().numpy(), rtol=1e-9, atol=1e-15
            )


def test_multi_transform_groups_are_found_by_label_for_live_hyperparameters():
    opt = multi_transform({"decay": gx.sgd(0.1), "no_decay": gx.sgd(0.01)}, LABELS)
    state = opt.init(PARAMS)
    assert float(gx.get_hyperparam(state, "decay/learning_rate")) == 0.1
    assert float(gx.get_hyperparam(state, "no_decay/learning_rate")) == 0.01
    state = gx.set_hyperparam(state, "no_decay/learning_rate", 0.5)
    g = make_grads(1)[0]
    out, _ = jax.jit(opt.update)(g, state, PARAMS)
    np.testing.assert_allclose(out["w"], -0.1 * g["w"], rtol=1e-15)
    np.testing.assert_allclose(out["b"], -0.5 * g["b"], rtol=1e-15)


def test_multi_transform_unknown_label_names_label_and_path():
    opt = multi_transform({"decay": gx.sgd(0.1)}, {"w": "decay", "b": "bias", "s": "decay"})
    with pytest.raises(ValueError, match=r"'bias' at \['b'\]"):
        opt.init(PARAMS)
    with pytest.raises(ValueError, match=r"'bias' at \['b'\]"):
        opt.update(make_grads(1)[0], MultiTransformState(inner_states={"decay": ()}))
    with pytest.raises(TypeError, match=r"param_labels at \['s'\] must be a string"):
        multi_transform({"a": gx.sgd(0.1)}, {"w": "a", "b": "a", "s": 3}).init(PARAMS)
    with pytest.raises(ValueError, match=r"\['s'\]"):
        multi_transform({"a": gx.sgd(0.1)}, {"w": "a", "b": "a"}).init(PARAMS)
    with pytest.raises(TypeError, match="not a GradientTransformation"):
        multi_transform({"a": gx.sgd}, LABELS)


def test_multi_transform_allows_unused_transforms():
    opt = multi_transform({"decay": gx.sgd(0.5), "no_decay": gx.identity(), "spare": gx.adam()},
                          LABELS)
    g = make_grads(1)[0]
    out, state = opt.update(g, opt.init(PARAMS), PARAMS)
    np.testing.assert_array_equal(out["w"], -0.5 * g["w"])
    np.testing.assert_array_equal(out["b"], g["b"])
    # The spare group's state holds no per-parameter buffers.
    assert all(np.ndim(x) == 0 for x in tree_leaves(state.inner_states["spare"]))


# --------------------------------------------------------------------------------------------
# freeze


@pytest.mark.parametrize("jit", [False, True])
def test_freeze_keeps_masked_params_while_others_train(jit):
    grads = make_grads(8)
    frozen = {"w": False, "b": True, "s": False}
    opt = gx.chain(gx.sgd(0.1, momentum=0.9), freeze(frozen))
    params = jax.tree_util.tree_map(jnp.asarray, PARAMS)
    traj, _ = run(opt, params, grads, jit=jit)
    free_traj, _ = run(gx.sgd(0.1, momentum=0.9), params, grads, jit=jit)
    for step in range(len(grads)):
        assert_trees_equal(traj[step]["b"], params["b"])
        assert_trees_close(sub(traj[step], ["w", "s"]), sub(free_traj[step], ["w", "s"]))
    assert not np.allclose(traj[-1]["w"], params["w"])


def test_set_to_zero_keeps_shapes_and_dtypes():
    updates = {"a": jnp.ones(3, jnp.bfloat16), "b": None, "c": jnp.full((), 2.0, jnp.float32)}
    out, state = set_to_zero().update(updates, set_to_zero().init(updates))
    assert out["b"] is None
    assert out["a"].dtype == jnp.bfloat16 and out["c"].dtype == jnp.float32
    assert not np.any(np.asarray(out["a"], np.float32)) and float(out["c"]) == 0.0
    assert state == gx.EmptyState()


# --------------------------------------------------------------------------------------------
# accumulate_gradients


INNERS = {
    "adam": lambda: gx.adam(0.05),
    "sgd_momentum": lambda: gx.sgd(0.1, momentum=0.9, dampening=0.1),
}


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("inner", sorted(INNERS))
def test_accumulate_gradients_equals_one_step_on_the_mean(inner, k, jit):
    cycles = 4
    grads = make_grads(cycles * k, seed=5)
    opt = accumulate_gradients(INNERS[inner](), every_k=k)
    params = jax.tree_util.tree_map(jnp.asarray, PARAMS)
    traj, states = run(opt, params, grads, jit=jit)

    means = [
        jax.tree_util.tree_map(
            lambda *gs: functools.reduce(np.add, gs) / k, *grads[c * k:(c + 1) * k]
        )
        for c in range(cycles)
    ]
    expected, ref_states = run(INNERS[inner](), params, means, jit=jit)
    # Equal up to rounding: the wrapper runs `inner` compiled inside a lax.cond, which XLA may
    # fuse differently from the reference's own run (a last-bit difference, even for k=1).
    for c in range(cycles):
        assert_trees_close(traj[(c + 1) * k - 1], expected[c])
        assert_trees_close(states[(c + 1) * k].inner_state, ref_states[c + 1])
        # Calls in between leave the params and the inner state exactly as they were.
        for i in range(c * k, (c + 1) * k - 1):
            assert_trees_equal(traj[i], params if c == 0 else traj[c * k - 1])
            assert_trees_equal(states[i + 1].inner_state, states[c * k].inner_state)
    emitted = [bool(s.emitted) for s in states[1:]]
    assert emitted == [(n + 1) % k == 0 for n in range(cycles * k)]
    assert not bool(states[0].emitted)
    assert [int(s.micro_step) for s in states[1:]] == [(n + 1) % k for n in range(cycles * k)]


def test_accumulate_gradients_outputs_zeros_between_emitting_calls():
    opt = accumulate_gradients(gx.sgd(0.5), every_k=3)
    params = {"w": jnp.ones(2), "b": None}
    state = opt.init(params)
    for g, expect in ((1.0, 0.0), (2.0, 0.0), (6.0, -1.5), (3.0, 0.0)):
        out, state = opt.update({"w": jnp.full(2, g), "b": None}, state, params)
        assert out["b"] is None
        np.testing.assert_array_equal(out["w"], np.full(2, expect))
    assert isinstance(state, AccumulationState)
    np.testing.assert_array_equal(state.grad_sum["w"], np.full(2, 3.0))
    assert state.micro_step.dtype == jnp.int32


@pytest.mark.parametrize("bad", [0, -2, 2.5, np.nan, -1.0])
def test_accumulate_gradients_rejects_bad_every_k(bad):
    with pytest.raises(ValueError, match="`every_k`"):
        accumulate_gradients(gx.sgd(0.1), every_k=bad)


@pytest.mark.parametrize("bad", [True, "3", None, [2]])
def test_accumulate_gradients_rejects_every_k_of_a_wrong_type(bad):
    with pytest.raises(TypeError, match="`every_k`"):
        accumulate_gradients(gx.sgd(0.1), every_k=bad)


def test_accumulate_gradients_reads_a_whole_float_every_k_as_an_int():
    params = {"w": jnp.zeros(2)}
    grads = {"w": jnp.ones(2)}
    for every_k in (2.0, np.float64(2.0)):
        opt = accumulate_gradients(gx.sgd(1.0), every_k=every_k)
        state = opt.init(params)
        emitted = []
        for _ in range(4):
            _, state = opt.update(grads, state, params)
            emitted.append(bool(state.emitted))
        assert emitted == [False, True, False, True]


def test_accumulate_gradients_inner_runs_only_on_emitting_calls_under_jit():
    runs = []

    def recording_update(updates, state, params=None):
        jax.debug.callback(lambda: runs.append(1))  # fires only when executed, not traced
        return updates, state

    inner = gx.GradientTransformation(lambda params: gx.EmptyState(), recording_update)
    opt = accumulate_gradients(inner, every_k=3)
    update = jax.jit(opt.update)
    state = opt.init({"w": jnp.zeros(2)})
    for _ in range(6):
        _, state = update({"w": jnp.ones(2)}, state)
    jax.effects_barrier()
    assert len(runs) == 2


# --------------------------------------------------------------------------------------------
# apply_if_finite


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
def test_apply_if_finite_skips_a_bad_step_bitwise(bad_value, jit):
    opt = apply_if_finite(gx.adam(0.1), max_consecutive_errors=3)
    update = jax.jit(opt.update) if jit else opt.update
    params = jax.tree_util.tree_map(jnp.asarray, PARAMS)
    grads = make_grads(3)
    state = opt.init(params)
    updates, state = update(grads[0], state, params)
    params = gx.apply_updates(params, updates)

    bad = dict(grads[1], b=np.array([1.0, bad_value, 2.0]))
    updates, new_state = update(bad, state, params)
    new_params = gx.apply_updates(params, updates)
    assert_trees_equal(new_params, params)
    assert_trees_equal(new_state.inner_state, state.inner_state)
    assert int(new_state.notfinite_count) == 1 and int(new_state.total_notfinite) == 1
    assert not bool(new_state.last_finite)
    for leaf in tree_leaves(updates):
        assert not np.any(np.asarray(leaf))

    # The next finite step is the step the inner optimizer would have taken without the bad one.
    updates, state = update(grads[2], new_state, new_params)
    ref = gx.adam(0.1)
    ref_params = jax.tree_util.tree_map(jnp.asarray, PARAMS)
    ref_state = ref.init(ref_params)
    for g in (grads[0], grads[2]):
        u, ref_state = ref.update(g, ref_state, ref_params)
        ref_params = gx.apply_updates(ref_params, u)
    assert_trees_close(gx.apply_updates(new_params, updates), ref_params, rtol=1e-12)
    assert int(state.notfinite_count) == 0 and int(state.total_notfinite) == 1
    assert bool(state.last_finite)


@pytest.mark.parametrize("max_errors", [0, 2])
def test_apply_if_finite_lets_updates_through_after_too_many_bad_steps(max_errors):
    opt = apply_if_finite(gx.sgd(0.1, momentum=0.9), max_consecutive_errors=max_errors)
    update = jax.jit(opt.update)
    params = jax.tree_util.tree_map(jnp.asarray, PARAMS)
    state = opt.init(params)
    bad = dict(make_grads(1)[0], w=np.full((4, 3), np.nan))
    for n in range(1, max_errors + 1):
        updates, state = update(bad, state, params)
        params = gx.apply_updates(params, updates)
        assert not np.any(np.isnan(params["w"])), n
        assert int(state.notfinite_count) == n
    updates, state = update(bad, state, params)
    params = gx.apply_updates(params, updates)
    assert np.all(np.isnan(params["w"]))
    assert int(state.notfinite_count) == max_errors + 1
    assert int(state.total_notfinite) == max_errors + 1
    # The bad gradient reached the inner state too (the momentum buffer).
    assert any(np.any(np.isnan(x)) for x in tree_leaves(state.inner_state))


def test_apply_if_finite_finite_step_resets_the_consecutive_count():
    opt = apply_if_finite(gx.sgd(0.1), max_consecutive_errors=2)
    params = {"w": jnp.ones(2)}
    state = opt.init(params)
    nan, ok = {"w": jnp.array([np.nan, 0.0])}, {"w": jnp.ones(2)}
    counts = []
    for g in (nan, nan, ok, nan, nan, ok):
        updates, state = opt.update(g, state, params)
        params = gx.apply_updates(params, updates)
        counts.append((int(state.notfinite_count), int(state.total_notfinite)))
    assert counts == [(1, 1), (2, 2), (0, 2), (1, 3), (2, 4), (0, 4)]
    # Four skipped steps, two applied ones.
    np.testing.assert_allclose(params["w"], np.full(2, 0.8), rtol=1e-15)
    assert isinstance(state, ApplyIfFiniteState)


def test_apply_if_finite_under_vmap_decides_per_example():
    opt = apply_if_finite(gx.sgd(0.5), max_consecutive_errors=1)
    params = {"w": jnp.ones((2, 3))}
    grads = {"w": jnp.array([[1.0, np.nan, 1.0], [1.0, 1.0, 1.0]])}
    states = jax.vmap(opt.init)(params)
    updates, states = jax.vmap(opt.update)(grads, states, params)
    np.testing.assert_array_equal(updates["w"], [[0.0, 0.0, 0.0], [-0.5, -0.5, -0.5]])
    np.testing.assert_array_equal(states.notfinite_count, [1, 0])


@pytest.mark.parametrize("bad", [-1, 1.5, jnp.asarray(-2)])
def test_apply_if_finite_rejects_bad_max_consecutive_errors(bad):
    with pytest.raises(ValueError, match="max_consecutive_errors"):
        apply_if_finite(gx.sgd(0.1), max_consecutive_errors=bad)


@pytest.mark.parametrize("bad", [True, "2", None, [2]])
def test_apply_if_finite_rejects_a_wrong_type_of_max_consecutive_errors(bad):
    with pytest.raises(TypeError, match="max_consecutive_errors"):
        apply_if_finite(gx.sgd(0.1), max_consecutive_errors=bad)


def test_all_finite():
    assert bool(all_finite({}))
    assert bool(all_finite({"a": jnp.ones(2), "b": None, "c": jnp.arange(3)}))
    assert not bool(all_finite({"a": jnp.ones(2), "b": jnp.array(np.inf, jnp.bfloat16)}))


# --------------------------------------------------------------------------------------------
# All wrappers: None leaves, scalar leaves, empty trees, dtypes, jit and vmap


WRAPPERS = {
    "masked": lambda: masked(gx.adam(0.1), {"a": True, "b": False, "c": True, "s": False,
                                            "n": True}),
    "multi_transform": lambda: multi_transform(
        {"x": gx.adam(0.1), "y": gx.sgd(0.5, momentum=0.9)},
        {"a": "x", "b": "y", "c": "y", "s": "x", "n": "x"},
    ),
    "freeze": lambda: gx.chain(gx.sgd(0.5), freeze({"a": True, "b": False, "c": False,
                                                    "s": True, "n": True})),
    "accumulate_gradients": lambda: accumulate_gradients(gx.adam(0.1), every_k=2),
    "apply_if_finite": lambda: apply_if_finite(gx.adam(0.1), max_consecutive_errors=1),
}


def mixed_tree(seed):
    """f32, bf16 and f64 leaves, a scalar and a None."""
    rng = np.random.default_rng(seed)
    return {
        "a": jnp.asarray(rng.normal(size=(3,)), jnp.float32),
        "b": jnp.asarray(rng.normal(size=(2, 2)), jnp.bfloat16),
        "c": jnp.asarray(rng.normal(size=(2,)), jnp.float64),
        "s": jnp.asarray(rng.normal(), jnp.float32),
        "n": None,
    }


@pytest.mark.parametrize("name", sorted(WRAPPERS))
def test_wrappers_keep_dtypes_and_none_leaves_and_jit_matches_eager(name):
    opt = WRAPPERS[name]()
    params = mixed_tree(0)
    grads = [mixed_tree(seed) for seed in (1, 2, 3, 4)]
    eager, eager_states = run(opt, params, grads)
    jitted, jitted_states = run(opt, params, grads, jit=True)
    for e, j in zip(eager, jitted, strict=True):
        assert e["n"] is None and j["n"] is None
        for k in ("a", "b", "c", "s"):
            assert e[k].dtype == params[k].dtype == j[k].dtype
            assert e[k].shape == params[k].shape
        assert_jit_close(j, e)
    # The state keeps its structure, shapes and dtypes across updates.
    for s in eager_states[1:] + jitted_states:
        assert tree_structure(s) == tree_structure(eager_states[0])
        for x, y in zip(tree_leaves(s), tree_leaves(eager_states[0]), strict=True):
            assert jnp.result_type(x) == jnp.result_type(y) and np.shape(x) == np.shape(y)
    # Every leaf of the state is an array (no Python scalars).
    assert all(isinstance(x, jax.Array) for x in tree_leaves(eager_states[-1]))


@pytest.mark.parametrize("name", sorted(WRAPPERS))
def test_wrappers_accept_empty_trees(name):
    opt = WRAPPERS[name]()
    if name in ("masked", "freeze", "multi_transform"):
        opt = {
            "masked": lambda: masked(gx.adam(0.1), {}),
            "freeze": lambda: freeze({}),
            "multi_transform": lambda: multi_transform({"x": gx.adam(0.1)}, {}),
        }[name]()
    state = opt.init({})
    updates, state = jax.jit(opt.update)({}, state, {})
    assert updates == {}


@pytest.mark.parametrize("name", sorted(WRAPPERS))
def test_wrappers_vmap_over_a_batch_of_models(name):
    opt = WRAPPERS[name]()
    single = mixed_tree(0)
    params = jax.tree_util.tree_map(lambda x: jnp.stack([x, 2 * x]), single)
    grads = [jax.tree_util.tree_map(lambda x: jnp.stack([x, -x]), mixed_tree(s)) for s in (1, 2)]
    states = jax.vmap(opt.init)(params)
    batched = params
    for g in grads:
        updates, states = jax.jit(jax.vmap(opt.update))(g, states, batched)
        batched = gx.apply_updates(batched, updates)
    # Example i of the batch equals a run on example i alone.
    for i in range(2):
        pick = functools.partial(jax.tree_util.tree_map, lambda x, i=i: x[i])
        alone, _ = run(opt, pick(params), [pick(g) for g in grads])
        assert_jit_close(pick(batched), alone[-1])

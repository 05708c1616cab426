"""Clipping transforms: ``clip`` against NumPy and torch's ``clip_grad_value_``,
``clip_by_global_norm`` against torch's ``clip_grad_norm_`` (alone and in front of SGD and
Adam), ``clip_by_block_rms`` against NumPy, then dtypes, None leaves, empty trees, jit and the
argument checks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx as gx
from gradtx.transforms.clipping import clip, clip_by_block_rms, clip_by_global_norm, global_norm

RTOL = 1e-12
KEYS = ("w", "b", "s")


def make_tree(seed: int = 0, scale: float = 1.0) -> dict[str, np.ndarray]:
    """Three leaves: a matrix, a vector and a scalar."""
    rng = np.random.default_rng(seed)
    return {
        "w": scale * rng.normal(size=(4, 3)),
        "b": scale * rng.normal(size=(3,)),
        "s": np.asarray(scale * rng.normal()),
    }


def apply(transform, updates, params=None):
    return transform.update(updates, transform.init(params), params)[0]


def assert_trees_close(actual, expected, rtol=RTOL):
    structure = jax.tree_util.tree_structure
    assert structure(actual) == structure(expected)
    for a, e in zip(jax.tree_util.tree_leaves(actual), jax.tree_util.tree_leaves(expected),
                    strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=rtol, atol=0)


def torch_tensors(torch, tree):
    return [torch.tensor(np.asarray(tree[k]), dtype=torch.float64) for k in KEYS]


def as_tree(tensors):
    return {k: t.detach().numpy().copy() for k, t in zip(KEYS, tensors, strict=True)}


def torch_clipped(torch, tree, clip_fn, *args):
    """``tree`` after ``clip_fn`` (a torch.nn.utils function) acted on it as gradients."""
    params = [torch.zeros_like(t, requires_grad=True) for t in torch_tensors(torch, tree)]
    for p, g in zip(params, torch_tensors(torch, tree), strict=True):
        p.grad = g
    clip_fn(params, *args)
    return as_tree([p.grad for p in params])


# --------------------------------------------------------------------------------------------
# clip


@pytest.mark.parametrize("max_delta", [0.0, 0.3, 1.0, 100.0])
def test_clip_matches_numpy(max_delta):
    tree = make_tree()
    expected = {k: np.minimum(np.maximum(v, -max_delta), max_delta) for k, v in tree.items()}
    assert_trees_close(apply(clip(max_delta), tree), expected)


@pytest.mark.parametrize("max_delta", [0.0, 0.3, 1.0, 100.0])
def test_clip_matches_torch_clip_grad_value(torch_float64, max_delta):
    torch = torch_float64
    tree = make_tree()
    expected = torch_clipped(torch, tree, torch.nn.utils.clip_grad_value_, max_delta)
    assert_trees_close(apply(clip(max_delta), tree), expected)


def test_clip_changes_only_large_entries():
    out = apply(clip(1.0), {"x": jnp.asarray([-3.0, -0.5, 0.25, 2.0])})
    np.testing.assert_array_equal(np.asarray(out["x"]), [-1.0, -0.5, 0.25, 1.0])


# --------------------------------------------------------------------------------------------
# global_norm and clip_by_global_norm


def test_global_norm_is_the_norm_of_all_entries():
    tree = make_tree()
    flat = np.concatenate([np.ravel(v) for v in tree.values()])
    np.testing.assert_allclose(np.asarray(global_norm(tree)), np.linalg.norm(flat), rtol=RTOL)


@pytest.mark.parametrize(
    ("scale", "max_norm"),
    [
        pytest.param(1.0, 1.0, id="clipped"),
        pytest.param(50.0, 0.25, id="clipped_hard"),
        pytest.param(1.0, 100.0, id="under_max_norm"),
        pytest.param(1e-3, 1.0, id="tiny_updates"),
        pytest.param(1.0, 0.0, id="max_norm_zero"),
    ],
)
def test_clip_by_global_norm_matches_torch(torch_float64, scale, max_norm):
    torch = torch_float64
    tree = make_tree(scale=scale)
    expected = torch_clipped(torch, tree, torch.nn.utils.clip_grad_norm_, max_norm)
    assert_trees_close(apply(clip_by_global_norm(max_norm), tree), expected)


def test_clip_by_global_norm_formula():
    """Clipped: every leaf times m / (g + 1e-6); under the norm: unchanged, bit for bit."""
    tree = make_tree(scale=10.0)
    g = np.sqrt(sum(np.sum(v * v) for v in tree.values()))
    expected = {k: v * (2.0 / (g + 1e-6)) for k, v in tree.items()}
    assert_trees_close(apply(clip_by_global_norm(2.0), tree), expected)
    small = apply(clip_by_global_norm(1e3), tree)
    for k in KEYS:
        np.testing.assert_array_equal(np.asarray(small[k]), tree[k])


def test_clip_by_global_norm_at_exactly_max_norm_matches_torch(torch_float64):
    """With g = m torch still scales, by m / (m + 1e-6); Optax would not."""
    torch = torch_float64
    tree = make_tree()
    max_norm = float(np.sqrt(sum(np.sum(v * v) for v in tree.values())))
    expected = torch_clipped(torch, tree, torch.nn.utils.clip_grad_norm_, max_norm)
    out = apply(clip_by_global_norm(max_norm), tree)
    assert_trees_close(out, expected)
    assert not np.array_equal(np.asarray(out["w"]), tree["w"])


def test_clip_by_global_norm_of_zero_updates_is_zero():
    out = apply(clip_by_global_norm(1.0), {"x": jnp.zeros(3)})
    np.testing.assert_array_equal(np.asarray(out["x"]), np.zeros(3))


def test_clip_by_global_norm_keeps_no_state():
    assert clip_by_global_norm(1.0).init(make_tree()) == gx.EmptyState()


def make_gradients(steps: int, seed: int = 3) -> list[dict[str, np.ndarray]]:
    """Gradients whose norm is sometimes far above 1, sometimes below; one all-zero step."""
    scales = [0.05, 4.0, 0.3, 20.0, 1.0]
    grads = [make_tree(seed + t, scales[t % len(scales)]) for t in range(steps)]
    grads[6] = {k: np.zeros_like(v) for k, v in grads[6].items()}
    return grads


@pytest.mark.parametrize(
    ("make_optimizer", "torch_optimizer"),
    [
        pytest.param(
            lambda: gx.sgd(learning_rate=0.1, momentum=0.9),
            lambda torch, ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9),
            id="sgd_momentum",
        ),
        pytest.param(
            lambda: gx.adam(learning_rate=0.01),
            lambda torch, ps: torch.optim.Adam(ps, lr=0.01),
            id="adam",
        ),
    ],
)
def test_clipped_optimizer_matches_torch_loop(torch_float64, make_optimizer, torch_optimizer):
    torch = torch_float64
    steps = 30
    params0 = make_tree(seed=100)
    grads = make_gradients(steps)
    assert any(float(global_norm(g)) > 1.0 for g in grads)
    assert any(0.0 < float(global_norm(g)) < 1.0 for g in grads)

    tensors = [t.clone().requires_grad_(True) for t in torch_tensors(torch, params0)]
    opt_t = torch_optimizer(torch, tensors)
    expected = []
    for g in grads:
        for p, gt in zip(tensors, torch_tensors(torch, g), strict=True):
            p.grad = gt
        torch.nn.utils.clip_grad_norm_(tensors, 1.0)
        opt_t.step()
        expected.append(as_tree(tensors))

    opt = gx.chain(clip_by_global_norm(1.0), make_optimizer())
    params = jax.tree_util.tree_map(jnp.asarray, params0)
    state = opt.init(params)
    update = jax.jit(opt.update)
    for t, g in enumerate(grads):
        updates, state = update(g, state, params)
        params = gx.apply_updates(params, updates)
        try:
            assert_trees_close(params, expected[t], rtol=1e-9)
        except AssertionError as err:
            raise AssertionError(f"step {t + 1}: {err}") from None


# --------------------------------------------------------------------------------------------
# clip_by_block_rms


def np_block_rms_clip(u, threshold):
    rms = np.sqrt(np.mean(u * u))
    return u * (threshold / rms) if rms > threshold else u


@pytest.mark.parametrize("threshold", [0.0, 0.1, 0.8, 1.2, 10.0])
def test_clip_by_block_rms_matches_numpy(threshold):
    tree = make_tree()
    expected = {k: np_block_rms_clip(v, threshold) for k, v in tree.items()}
    assert_trees_close(apply(clip_by_block_rms(threshold), tree), expected)


def test_clip_by_block_rms_clips_each_leaf_to_the_threshold():
    tree = make_tree(scale=5.0)
    tree["small"] = np.full(4, 0.01)
    out = apply(clip_by_block_rms(0.5), tree)
    for k in ("w", "b", "s"):
        np.testing.assert_allclose(np.sqrt(np.mean(np.asarray(out[k]) ** 2)), 0.5, rtol=RTOL)
    np.testing.assert_array_equal(np.asarray(out["small"]), tree["small"])


def test_clip_by_block_rms_of_zero_leaf_with_zero_threshold():
    out = apply(clip_by_block_rms(0.0), {"x": jnp.zeros(3), "y": jnp.ones(2)})
    np.testing.assert_array_equal(np.asarray(out["x"]), np.zeros(3))
    np.testing.assert_array_equal(np.asarray(out["y"]), np.zeros(2))


# --------------------------------------------------------------------------------------------
# Trees, dtypes, jit


ALL = [
    pytest.param(lambda: clip(0.5), id="clip"),
    pytest.param(lambda: clip_by_global_norm(1.0), id="clip_by_global_norm"),
    pytest.param(lambda: clip_by_block_rms(0.5), id="clip_by_block_rms"),
]


@pytest.mark.parametrize("make_transform", ALL)
def test_none_leaves_pass_through(make_transform):
    tree = make_tree(scale=3.0)
    with_none = {**tree, "frozen": None}
    out = apply(make_transform(), with_none)
    assert out["frozen"] is None
    assert_trees_close({k: out[k] for k in KEYS}, apply(make_transform(), tree))


def test_global_norm_ignores_none_leaves():
    tree = make_tree()
    assert float(global_norm({**tree, "frozen": None})) == float(global_norm(tree))


@pytest.mark.parametrize("make_transform", ALL)
@pytest.mark.parametrize("empty", [{}, (), [], None])
def test_empty_trees(make_transform, empty):
    transform = make_transform()
    state = transform.init(empty)
    out, new_state = transform.update(empty, state)
    assert out == empty
    assert new_state == gx.EmptyState()
    jitted, _ = jax.jit(transform.update)(empty, state)
    assert jitted == empty


def test_global_norm_of_empty_tree_is_zero():
    assert float(global_norm({})) == 0.0
    assert float(global_norm({"a": None})) == 0.0


@pytest.mark.parametrize("make_transform", ALL)
def test_leaf_dtypes_are_kept(make_transform):
    tree = {
        "bf16": jnp.asarray([3.0, -4.0, 0.5], dtype=jnp.bfloat16),
        "f16": jnp.asarray([[2.0, -1.0]], dtype=jnp.float16),
        "f32": jnp.asarray([1.0, 2.0], dtype=jnp.float32),
        "f64": jnp.asarray(7.0, dtype=jnp.float64),
    }
    out = apply(make_transform(), tree)
    for k, v in tree.items():
        assert out[k].dtype == v.dtype, k
        assert out[k].shape == v.shape, k


def test_global_norm_of_bf16_is_accumulated_in_float32():
    # 4096 entries of 1.0: summed one by one in bf16, the squares would stall at 256 (norm 16).
    tree = {"x": jnp.ones(4096, dtype=jnp.bfloat16)}
    norm = global_norm(tree)
    assert norm.dtype == jnp.float32
    assert float(norm) == 64.0
    out = apply(clip_by_global_norm(32.0), tree)
    assert out["x"].dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(out["x"], dtype=np.float32), 0.5, rtol=1e-2)


def test_float16_squares_do_not_overflow():
    # 300**2 = 90000 is above float16's largest value (65504); the norm must still be finite.
    tree = {"x": jnp.full(4, 300.0, dtype=jnp.float16)}
    assert float(global_norm(tree)) == 600.0
    out = apply(clip_by_global_norm(60.0), tree)
    assert out["x"].dtype == jnp.float16
    np.testing.assert_allclose(np.asarray(out["x"], dtype=np.float32), 30.0, rtol=1e-3)
    rms_clipped = apply(clip_by_block_rms(30.0), tree)
    np.testing.assert_allclose(np.asarray(rms_clipped["x"], dtype=np.float32), 30.0, rtol=1e-3)


def test_global_norm_dtype_is_the_widest_leaf():
    tree = {"a": jnp.ones(2, dtype=jnp.bfloat16), "b": jnp.ones(2, dtype=jnp.float64)}
    assert global_norm(tree).dtype == jnp.float64
    assert global_norm({"a": tree["a"]}).dtype == jnp.float32


@pytest.mark.parametrize("make_transform", ALL)
def test_jit_equals_eager(make_transform):
    tree = make_tree(scale=2.0)
    transform = make_transform()
    eager = apply(transform, tree)
    jitted = jax.jit(transform.update)(tree, transform.init(tree))[0]
    assert_trees_close(jitted, eager)


def test_vmap_clips_each_example_on_its_own():
    trees = [make_tree(seed, scale) for seed, scale in ((0, 0.1), (1, 5.0), (2, 30.0))]
    stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trees)
    transform = clip_by_global_norm(1.0)
    out = jax.vmap(lambda u: transform.update(u, gx.EmptyState())[0])(stacked)
    for i, tree in enumerate(trees):
        assert_trees_close(jax.tree_util.tree_map(lambda x, i=i: x[i], out), apply(transform, tree))


def test_hyperparameters_may_be_traced():
    tree = make_tree(scale=3.0)

    @jax.jit
    def run(delta, norm, tau):
        return (
            apply(clip(delta), tree),
            apply(clip_by_global_norm(norm), tree),
            apply(clip_by_block_rms(tau), tree),
        )

    got = run(0.5, 1.0, 0.5)
    want = (apply(clip(0.5), tree), apply(clip_by_global_norm(1.0), tree),
            apply(clip_by_block_rms(0.5), tree))
    for g, w in zip(got, want, strict=True):
        assert_trees_close(g, w)


# --------------------------------------------------------------------------------------------
# Arguments


@pytest.mark.parametrize(
    ("factory", "name"),
    [(clip, "max_delta"), (clip_by_global_norm, "max_norm"), (clip_by_block_rms, "threshold")],
)
@pytest.mark.parametrize("bad", [-1.0, float("nan"), np.float64(-0.5), jnp.asarray(-2.0)])
def test_bad_arguments_raise_naming_them(factory, name, bad):
    with pytest.raises(ValueError, match=f"`{name}`"):
        factory(bad)


@pytest.mark.parametrize("factory", [clip, clip_by_global_norm, clip_by_block_rms])
def test_traced_bad_values_are_accepted(factory):
    tree = {"x": jnp.asarray([1.0, -2.0])}

    @jax.jit
    def run(value):
        return apply(factory(value), tree)

    out = run(-1.0)  # not checked when traced: the caller owns the value
    assert out["x"].shape == (2,)

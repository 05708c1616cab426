"""gx.matrix_view and muon_with_adamw(conv_kernels=...): Muon on convolution kernels seen as
matrices equals torch.optim.Muon run on those matrices, jitted and eager (float64, with
Newton–Schulz in float64 on both sides: ``ns_dtype=None`` and torch's bfloat16 cast made a copy,
as tests/test_muon.py checks its float64 grid)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx as gx
from gradtx.optimizers.muon import muon_with_adamw
from gradtx.wrappers.matrix_view import matrix_shape
from tests import helpers
from tests.test_muon import _newton_schulz_in_float64

STEPS = 6
SHAPES = {
    "torch": {"conv": (8, 3, 3, 3), "conv1d": (4, 6, 5), "dense": (8, 5)},
    "flax": {"conv": (3, 3, 3, 8), "conv1d": (5, 6, 4), "dense": (5, 8)},
}


def _tree(shapes, seed):
    rng = np.random.default_rng(seed)
    return {k: rng.normal(size=s) for k, s in shapes.items()}


def _torch_on_matrices(torch, layout, params, grads, kwargs):
    """torch.optim.Muon on each leaf reshaped to its matrix: parameters after each step, in
    the leaves' own shapes."""
    keys = sorted(params)
    tensors = [torch.tensor(params[k].reshape(matrix_shape(params[k].shape, layout)),
                            requires_grad=True) for k in keys]
    opt = torch.optim.Muon(tensors, **kwargs)
    traj = []
    for g in grads:
        for t, k in zip(tensors, keys, strict=True):
            t.grad = torch.tensor(g[k].reshape(t.shape))
        with _newton_schulz_in_float64(torch):
            opt.step()
        traj.append({k: t.detach().numpy().reshape(params[k].shape).copy()
                     for k, t in zip(keys, tensors, strict=True)})
    return helpers.np_stack(traj)


@pytest.mark.parametrize("mode", ["jit", "eager"])
@pytest.mark.parametrize("adjust_lr_fn", [None, "match_rms_adamw"])
@pytest.mark.parametrize("layout", ["torch", "flax"])
def test_muon_on_kernels_equals_torch_muon_on_their_matrices(layout, adjust_lr_fn, mode,
                                                            torch_float64):
    shapes = SHAPES[layout]
    params, grads = _tree(shapes, 0), [_tree(shapes, t + 1) for t in range(STEPS)]
    kwargs = {"lr": 0.02, "weight_decay": 0.1, "adjust_lr_fn": adjust_lr_fn}
    want = _torch_on_matrices(torch_float64, layout, params, grads, kwargs)
    opt = gx.matrix_view(gx.muon(learning_rate=0.02, weight_decay=0.1,
                                 adjust_lr_fn=adjust_lr_fn, ns_dtype=None), layout)
    jparams = jax.tree_util.tree_map(jnp.asarray, params)
    if mode == "jit":
        got = jax.jit(lambda p, g: helpers.run_scan(opt, p, g))(jparams, helpers.stack(grads))
    else:
        got = helpers.run_steps(opt, jparams, grads)
    for key in shapes:
        assert got[key].shape == (STEPS, *shapes[key])
        helpers.assert_close_per_step(got[key], want[key], f"leaf {key!r}")


def test_matrix_shape():
    assert matrix_shape((8, 3, 3, 3), "torch") == (8, 27)
    assert matrix_shape((3, 3, 3, 8), "flax") == (27, 8)
    assert matrix_shape((4, 5), "flax") == (4, 5)  # matrices and vectors as they are
    assert matrix_shape((7,), "torch") == (7,)


def test_state_is_the_inner_one_on_matrices():
    opt = gx.matrix_view(gx.muon(learning_rate=0.1), "torch")
    params = {"conv": jnp.zeros((8, 3, 3, 3)), "frozen": None}
    state = opt.init(params)
    assert gx.tree_get(state, "momentum_buffer")["conv"].shape == (8, 27)
    assert float(gx.get_hyperparam(state, "learning_rate")) == pytest.approx(0.1)
    updates, _ = opt.update({"conv": jnp.ones((8, 3, 3, 3)), "frozen": None}, state, params)
    assert updates["conv"].shape == (8, 3, 3, 3) and updates["frozen"] is None


def test_bad_layouts_are_refused_by_name():
    with pytest.raises(ValueError, match="layout"):
        gx.matrix_view(gx.muon(), "channels_last")
    with pytest.raises(ValueError, match="conv_kernels"):
        muon_with_adamw(conv_kernels="oihw")


def _params():
    return {
        "embed": jnp.ones((10, 4)),
        "conv": {"kernel": jnp.ones((3, 3, 2, 4)), "bias": jnp.zeros(4)},
        "dense": {"kernel": jnp.ones((4, 4))},
        "head": {"kernel": jnp.ones((3, 3, 4, 10))},  # an output layer, by its name
    }


def test_recipe_trains_kernels_with_muon_only_when_asked():
    params = _params()
    with_kernels = gx.tree_get(muon_with_adamw(conv_kernels="flax").init(params),
                               "momentum_buffer")
    assert with_kernels["conv"]["kernel"].shape == (18, 4)
    assert with_kernels["dense"]["kernel"].shape == (4, 4)
    assert with_kernels["embed"] is None and with_kernels["head"]["kernel"] is None
    assert with_kernels["conv"]["bias"] is None
    default = gx.tree_get(muon_with_adamw().init(params), "momentum_buffer")
    assert default["conv"]["kernel"] is None and default["dense"]["kernel"].shape == (4, 4)


def test_recipe_kernel_step_is_muon_on_the_matrix_view():
    """Within the recipe, a kernel takes the step matrix_view(muon) gives it alone; the
    rest (AdamW) is untouched by the option."""
    params = _params()
    grads = jax.tree_util.tree_map(lambda x: jnp.linspace(-1.0, 1.0, x.size).reshape(x.shape),
                                   params)
    recipe = muon_with_adamw(learning_rate=0.02, conv_kernels="flax", ns_dtype=None)
    updates, _ = recipe.update(grads, recipe.init(params), params)
    alone = gx.matrix_view(gx.muon(learning_rate=0.02, ns_dtype=None), "flax")
    kernel = {"k": params["conv"]["kernel"]}
    want, _ = alone.update({"k": grads["conv"]["kernel"]}, alone.init(kernel), kernel)
    np.testing.assert_allclose(updates["conv"]["kernel"], want["k"], rtol=1e-12)
    plain = muon_with_adamw(learning_rate=0.02, ns_dtype=None)
    other, _ = plain.update(grads, plain.init(params), params)
    np.testing.assert_array_equal(updates["embed"], other["embed"])
    np.testing.assert_array_equal(updates["dense"]["kernel"], other["dense"]["kernel"])

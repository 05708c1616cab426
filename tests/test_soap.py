"""SOAP against pytorch-optimizer's SOAP beyond the registry's matrix: 4-D convolution kernels
with merge_dims in both data formats, max_precondition_dim cutting one side, preconditioned
vectors, several QR refreshes, eager against jit.

The reference runs its QR refresh in float32 whatever the parameters' dtype. Its float32 QR
(MKL's) and jaxlib's differ by float32 rounding, so the exact checks here run both sides with
that QR in float64: gradtx with ``qr_dtype=None``, the reference with its float32 cast turned
into a no-op for float64 tensors (``_float64_qr``). Everything else is the reference's own code,
and matches to rtol 1e-9. One check runs the reference unchanged against the default
``qr_dtype=float32``, at the tolerance the registry states.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx as gx
from gradtx.optimizers import registry
from gradtx.transforms.soap import merged_shape
from tests import helpers

pytorch_optimizer = pytest.importorskip("pytorch_optimizer")

STEPS = 14
# Measured 8.2e-10 (w) and 4.2e-10 (b) of the leaf's largest entry, 14 steps, 2 refreshes.
FLOAT32_QR_TOLERANCE = 1e-8


def _tree(shapes, seed):
    rng = np.random.default_rng(seed)
    return {k: rng.normal(size=s) for k, s in shapes.items()}


def _grads(shapes, steps=STEPS, seed=1, zero_first=False):
    """Random gradients; ``zero_first``: the first one zero, as the registry's data has it.
    A preconditioned vector needs that: its first statistic :math:`g g^\top` has a null
    space of more than one dimension, in which LAPACK's eigenvectors (torch's MKL, jaxlib's)
    are any basis; a zero statistic has the identity's."""
    out = [_tree(shapes, seed + t) for t in range(steps)]
    if zero_first:
        out[0] = {k: np.zeros_like(v) for k, v in out[0].items()}
    return out


def _reference(torch, kwargs, params, grads):
    keys = sorted(params)
    tensors = [torch.tensor(params[k]).requires_grad_() for k in keys]
    args = dict(kwargs)
    args.pop("qr_dtype", None)
    if "learning_rate" in args:
        args["lr"] = args.pop("learning_rate")
    if "b1" in args or "b2" in args:
        args["betas"] = (args.pop("b1", 0.95), args.pop("b2", 0.95))
    opt = pytorch_optimizer.SOAP(tensors, **args)
    traj = []
    for g in grads:
        for t, k in zip(tensors, keys, strict=True):
            t.grad = torch.tensor(g[k])
        opt.step()
        traj.append({k: t.detach().numpy().copy() for k, t in zip(keys, tensors, strict=True)})
    return helpers.np_stack(traj)


def _ours(kwargs, params, grads, mode="jit"):
    opt = gx.soap(**kwargs)
    params = jax.tree_util.tree_map(jnp.asarray, params)
    if mode == "jit":
        return jax.jit(lambda p, g: helpers.run_scan(opt, p, g))(params, helpers.stack(grads))
    return helpers.run_steps(opt, params, grads)


def _check(got, want, rtol=1e-9):
    for key in want:
        helpers.assert_close_per_step(got[key], want[key], f"leaf {key!r}", rtol=rtol)


@pytest.fixture
def _float64_qr(torch_float64):
    """The reference with its QR in the parameters' float64, as the registry's sweep runs it
    (``OptimizerInfo.torch_patch``: its one cast to float32, of the power iterate before
    ``torch.linalg.qr``, returns the float64 tensor itself)."""
    with registry.get("soap").torch_patch(torch_float64):
        yield torch_float64


CASES = [
    pytest.param({"w": (5, 4)}, {"precondition_frequency": 3}, id="matrix,frequency3"),
    pytest.param({"w": (6, 3)}, {"max_precondition_dim": 4, "precondition_frequency": 2},
                 id="one-side-cut"),
    # A refresh once the vector's statistic has full rank (6 non-zero gradients): before,
    # QR's columns beyond its rank are rounding noise, any basis of the rest.
    pytest.param({"b": (5,), "s": ()}, {"precondition_1d": True, "precondition_frequency": 6},
                 id="precondition_1d"),
    pytest.param({"b": (4,), "w": (3, 5)},
                 {"precondition_1d": True, "precondition_frequency": 6, "max_precondition_dim": 4,
                  "normalize_gradient": True, "correct_bias": False, "shampoo_beta": 0.5,
                  "weight_decay": 0.1, "maximize": True, "b1": 0.5, "eps": 0.1,
                  "learning_rate": 0.1},
                 id="precondition_1d,switches"),
    pytest.param({"k": (4, 3, 2, 5)},
                 {"merge_dims": True, "max_precondition_dim": 8, "precondition_frequency": 3},
                 id="conv,merge,channels_first"),
    pytest.param({"k": (4, 3, 2, 5)},
                 {"merge_dims": True, "max_precondition_dim": 8, "precondition_frequency": 3,
                  "data_format": "channels_last"},
                 id="conv,merge,channels_last"),
    pytest.param({"k": (4, 3, 2, 5)}, {"data_format": "channels_last",
                                       "precondition_frequency": 4}, id="conv,unmerged"),
    pytest.param({"w": (4, 3)},
                 {"normalize_gradient": True, "correct_bias": False, "shampoo_beta": 0.5,
                  "weight_decay": 0.1, "maximize": True, "b1": 0.0, "eps": 0.1,
                  "precondition_frequency": 1, "learning_rate": 0.1},
                 id="switches"),
]


@pytest.mark.parametrize(("shapes", "kwargs"), CASES)
def test_matches_reference_with_float64_qr(shapes, kwargs, _float64_qr):
    """Several QR refreshes (``STEPS`` steps), every layout: equal to rtol 1e-9, jitted."""
    params = _tree(shapes, 0)
    grads = _grads(shapes, zero_first=kwargs.get("precondition_1d", False))
    want = _reference(_float64_qr, kwargs, params, grads)
    _check(_ours({**kwargs, "qr_dtype": None}, params, grads), want)


def test_eager_equals_jit(_float64_qr):
    shapes = {"k": (4, 3, 2, 5), "b": (3,)}
    kwargs = {"merge_dims": True, "max_precondition_dim": 2 * 3, "precondition_frequency": 2,
              "data_format": "channels_last", "qr_dtype": None}
    params, grads = _tree(shapes, 0), _grads(shapes, steps=6)
    # vectors of 3 entries with merge_dims fail in the reference above max 2: ours only
    eager, jitted = _ours(kwargs, params, grads, "eager"), _ours(kwargs, params, grads)
    _check(eager, jitted, rtol=1e-12)
    kwargs_ref = {**kwargs}
    shapes.pop("b")
    params, grads = _tree(shapes, 0), _grads(shapes, steps=6)
    want = _reference(_float64_qr, kwargs_ref, params, grads)
    _check(_ours(kwargs, params, grads, "eager"), want)


def test_matches_reference_before_the_first_refresh(torch_float64):
    """Until the first QR refresh (after step ``precondition_frequency + 1``), the unpatched
    reference and the default float32 QR are not involved: rtol 1e-9."""
    shapes = {"w": (5, 4), "b": (4,)}
    params, grads = _tree(shapes, 0), _grads(shapes, steps=6, zero_first=True)
    kwargs = {"precondition_frequency": 5, "precondition_1d": True, "weight_decay": 0.1}
    _check(_ours(kwargs, params, grads), _reference(torch_float64, kwargs, params, grads))


def test_matches_reference_float32_qr(torch_float64):
    """The reference as it is, against the default ``qr_dtype=float32``: equal to the
    tolerance of float32 rounding carried over the steps (the two float32 QRs differ in
    their last bits), on gradients of one scale."""
    shapes = {"w": (5, 4), "b": (4,)}
    params, grads = _tree(shapes, 0), _grads(shapes, zero_first=True)
    kwargs = {"precondition_frequency": 5, "precondition_1d": True}
    got = _ours(kwargs, params, grads)
    want = _reference(torch_float64, kwargs, params, grads)
    for key in want:
        error = np.max(np.abs(np.asarray(got[key]) - want[key])) / np.max(np.abs(want[key]))
        assert error < FLOAT32_QR_TOLERANCE, (key, error)


def test_first_step_does_not_move():
    params = {"w": jnp.ones((3, 2))}
    opt = gx.soap(weight_decay=0.5)
    updates, _ = opt.update({"w": jnp.ones((3, 2))}, opt.init(params), params)
    assert float(jnp.max(jnp.abs(updates["w"]))) == 0.0


def test_merged_shape():
    assert merged_shape((1, 2, 512, 1, 2048, 1, 3, 4), 1024) == (1024, 2048, 12)
    assert merged_shape((1, 2, 768, 1, 2048), 1024) == (2, 768, 2048)
    assert merged_shape((4, 3), 3) == (1, 4, 3)
    assert merged_shape((2, 3), 100) == (6,)


def test_merge_into_one_dimension_is_a_preconditioned_vector():
    """Where the reference fails (a leaf that merges into one dimension), gradtx takes the
    leaf as one preconditioned dimension: the same steps as the flattened vector with
    ``precondition_1d``."""
    params, grads = _tree({"w": (2, 3)}, 0), _grads({"w": (2, 3)}, steps=6)
    merged = _ours({"merge_dims": True, "precondition_frequency": 2}, params, grads)
    flat = _ours(
        {"precondition_1d": True, "precondition_frequency": 2},
        {"w": params["w"].reshape(6)}, [{"w": g["w"].reshape(6)} for g in grads],
    )
    np.testing.assert_allclose(np.asarray(merged["w"]).reshape(6, 6), flat["w"], rtol=1e-12)


def test_state_layout():
    opt = gx.soap(max_precondition_dim=3)
    state = opt.init({"w": jnp.zeros((4, 3)), "b": jnp.zeros(3)})
    gg = gx.tree_get(state, "gg")
    assert gg["w"][0] is None and gg["w"][1].shape == (3, 3)
    assert gg["b"] == (None,)


def test_qr_dtype_sets_the_refresh_precision():
    """float32 and float64 QRs give different trajectories once a refresh has run (and the
    same before); a dtype LAPACK has no QR in is refused by name."""
    shapes = {"w": (5, 4)}
    params, grads = _tree(shapes, 0), _grads(shapes, steps=8)
    kwargs = {"precondition_frequency": 3}
    narrow = _ours({**kwargs, "qr_dtype": jnp.float32}, params, grads)["w"]
    wide = _ours({**kwargs, "qr_dtype": None}, params, grads)["w"]
    np.testing.assert_array_equal(narrow[:4], wide[:4])  # the first refresh follows step 4
    assert np.max(np.abs(np.asarray(narrow[5:]) - np.asarray(wide[5:]))) > 0
    for bad in (jnp.bfloat16, jnp.float16):
        with pytest.raises(ValueError, match="qr_dtype"):
            gx.soap(qr_dtype=bad)

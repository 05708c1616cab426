"""GaLore (gx.galore, scale_by_galore, GaLoreDimensionNumbers) against Optax 0.2.8's
optax.contrib (a test-only reference), in float64: parameters and states (the projectors, the
base optimizer's moments) step for step over every pair of argument values, jitted (lax.scan)
and eager, to rtol 1e-9; and its errors. The SVD runs in float32 on both sides, on the same
inputs, so the bases are the same bits."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from optax.contrib import GaLoreDimensionNumbers as OptaxDims

import gradtx as gx
from tests import helpers
from tests.test_optax_transforms import assert_tree_close, run

STEPS = 8
RNG = np.random.default_rng(7)
# A tall and a wide matrix, a 3-D leaf (projected only when told how), a vector, a scalar.
PARAMS = {"w": RNG.normal(size=(6, 4)), "v": RNG.normal(size=(3, 7)),
          "t": RNG.normal(size=(4, 2, 3)), "b": RNG.normal(size=(5,)), "s": np.asarray(0.3)}
TWO_D = {k: v for k, v in PARAMS.items() if k != "t"}


def grads_for(params, seed=1):
    rng = np.random.default_rng(seed)
    scales = [1.0, 0.0, 1e-3, 10.0, 0.5, 1.0, 2.0, 0.1]  # a zero step: an SVD of zeros
    return [{k: rng.normal(size=np.shape(p)) * scales[t % len(scales)]
             for k, p in params.items()} for t in range(STEPS)]


# Each value of weight_dimension_numbers: (gradtx's, Optax's, the params it runs on).
Dims = gx.GaLoreDimensionNumbers


def _tree(cls):
    return {"w": cls(), "v": None, "t": cls(0, (1, 2)), "b": None, "s": None}


def _three_d_only(cls):
    def pick(params):
        return jax.tree_util.tree_map(lambda x: cls((0, 1), 2) if jnp.ndim(x) == 3 else None,
                                      params)
    return pick


DIMS = {
    "default": (None, None, PARAMS),
    "one_spec": (Dims(1, 0), OptaxDims(1, 0), TWO_D),
    "tree": (_tree(Dims), _tree(OptaxDims), PARAMS),
    "function": (_three_d_only(Dims), _three_d_only(OptaxDims), PARAMS),
}
BASES = {
    "adam": (lambda: None, lambda: None),
    "adam_b1": (lambda: gx.scale_by_adam(b1=0.5, b2=0.9), lambda: optax.scale_by_adam(0.5, 0.9)),
    "lion": (lambda: gx.scale_by_lion(), lambda: optax.scale_by_lion()),
}
AXES = {
    "rank": [2, 1, 128],
    "update_proj_gap": [3, 1, 200],
    "scale": [1.0, 0.5],
    "weight_decay": [0.0, 0.1],
    "mask": ["none", "w_only"],
    "base": sorted(BASES),
    "dims": sorted(DIMS),
}
POINTS = helpers.all_pairs(AXES)


def build(point):
    ours_dims, theirs_dims, params = DIMS[point["dims"]]
    mask = None if point["mask"] == "none" else {k: k == "w" for k in params}
    common = dict(rank=point["rank"], update_proj_gap=point["update_proj_gap"],
                  scale=point["scale"], weight_decay=point["weight_decay"], mask=mask)
    ours_base, theirs_base = BASES[point["base"]]
    ours = gx.galore(0.05, **common, base_optimizer=ours_base(),
                     weight_dimension_numbers=ours_dims)
    theirs = optax.contrib.galore(0.05, **common, base_optimizer=theirs_base(),
                                  weight_dimension_numbers=theirs_dims)
    return ours, theirs, params


def ours_record(state):
    return gx.tree_get(state, "projector")


def theirs_record(state):
    return state[0].projector


# Every point jitted; two eagerly (the same update function, untraced).
CASES = [(p, True) for p in POINTS] + [(p, False) for p in POINTS[:2]]


@pytest.mark.parametrize(("point", "jit"), CASES,
                         ids=[f"{helpers.label(p)}-{'jit' if j else 'eager'}" for p, j in CASES])
def test_galore_equals_optax(point, jit):
    ours, theirs, params = build(point)
    grads = grads_for(params)
    want = run(theirs, params, grads, theirs_record, jit="step")
    got = run(ours, params, grads, ours_record, jit=jit)
    assert_tree_close(got, want, helpers.label(point))


def test_the_base_optimizer_state_has_the_projected_shapes():
    opt = gx.galore(rank=2)
    state = opt.init(PARAMS)
    mu = gx.tree_get(state, "mu")
    assert mu["w"].shape == (2, 4) and mu["v"].shape == (3, 2)  # tall: P^T G; wide: G P
    assert mu["t"].shape == (4, 2, 3) and mu["b"].shape == (5,)  # not projected
    projector = gx.tree_get(state, "projector")
    assert projector["w"].shape == (6, 2) and projector["v"].shape == (7, 2)
    assert projector["b"].shape == (0, 0)
    theirs = optax.contrib.galore(1e-3, rank=2).init(PARAMS)
    assert jax.tree_util.tree_map(jnp.shape, theirs[0].base_optimizer_state.mu) == \
        jax.tree_util.tree_map(jnp.shape, mu)


def test_the_basis_is_refreshed_every_update_proj_gap_steps():
    opt = gx.galore(0.1, rank=1, update_proj_gap=3)
    params = {"w": jnp.asarray(PARAMS["w"])}
    state = opt.init(params)
    bases = []
    for g in grads_for(params)[:5]:
        _, state = jax.jit(opt.update)(g, state, params)
        bases.append(np.asarray(gx.tree_get(state, "projector")["w"]))
    changed = [not np.array_equal(a, b) for a, b in zip(bases, bases[1:], strict=False)]
    assert changed == [False, False, True, False]  # refreshed at steps 1 and 4


def test_galore_errors():
    with pytest.raises(ValueError, match="rank"):
        gx.galore(rank=0)
    with pytest.raises(ValueError, match="update_proj_gap"):
        gx.galore(update_proj_gap=0)
    with pytest.raises(TypeError, match="base_optimizer"):
        gx.galore(base_optimizer=3)
    with pytest.raises(ValueError, match=r"\['t'\].*must name every one"):
        gx.galore(weight_dimension_numbers=gx.GaLoreDimensionNumbers()).init(PARAMS)
    with pytest.raises(ValueError, match="overlap"):
        gx.galore(weight_dimension_numbers=gx.GaLoreDimensionNumbers(0, 0)).init(TWO_D)
    with pytest.raises(ValueError, match=r"\['b'\].*only leaves of two or more axes"):
        dims = {k: gx.GaLoreDimensionNumbers() for k in TWO_D}
        gx.galore(weight_dimension_numbers=dims).init(TWO_D)
    with pytest.raises(ValueError, match="params' structure"):
        gx.galore(weight_dimension_numbers={"w": None}).init(TWO_D)
    with pytest.raises(TypeError, match="galore"):
        gx.galore().init({"z": jnp.ones((2, 2), jnp.complex64)})

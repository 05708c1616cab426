"""SM3, noisy SGD (gradient noise) and the normalisations (centralize, normalize,
normalize_by_update_norm) against Optax 0.2.8, in float64 over the 50-step gradient sequence
of the parity tests (zero steps, 1e-9 and 1e4 entries), to rtol 1e-9: every point of a grid
of every argument with the numbers traced (vmapped, jitted), a few points eagerly with Python
numbers (Optax's op by op), the state entries Optax also keeps, and the refusal of bad
arguments by name. The noise is Optax's bit for bit for the same key."""

from __future__ import annotations

import itertools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib
import pytest

import gradtx as gx
from gradtx.optimizers.noisy_sgd import noisy_sgd
from gradtx.optimizers.sm3 import sm3
from gradtx.transforms.noise import AddNoiseState, add_noise
from gradtx.transforms.normalization import centralize, normalize, normalize_by_update_norm
from gradtx.transforms.sm3 import ScaleBySM3State, scale_by_sm3
from tests import helpers

# A 3-d leaf besides the parity tests' matrix, vector and scalar, so that SM3's cover and
# centralize's mean run over more than one axis.
PARAMS = {**helpers.make_params(), "k": np.random.default_rng(5).normal(size=(2, 3, 4))}
GRADS = helpers.make_gradients(PARAMS)
GRADS_STACKED = helpers.stack(GRADS)
assert len(GRADS) >= 30


def _as_vectors(tree):
    """Scalar leaves as vectors of one entry: Optax's SM3 fails on scalars."""
    return jax.tree_util.tree_map(lambda x: np.reshape(x, (1,)) if np.ndim(x) == 0 else x, tree)


PARAMS_1 = _as_vectors(PARAMS)
GRADS_1 = [_as_vectors(g) for g in GRADS]
GRADS_STACKED_1 = helpers.stack(GRADS_1)


def _flat(tree) -> list[tuple[str, np.ndarray]]:
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [(jax.tree_util.keystr(path), np.asarray(x)) for path, x in leaves]


def assert_trees_close(got, want, what: str) -> None:
    """Leaf by leaf (leading axis = step), as tests.helpers.assert_close_per_step compares;
    a leaf of ``want`` is reshaped to ``got``'s shape (a scalar run by Optax as a vector)."""
    got, want = _flat(got), _flat(want)
    assert len(got) == len(want), (what, [k for k, _ in got], [k for k, _ in want])
    for (key, g), (_, w) in zip(got, want, strict=True):
        helpers.assert_close_per_step(g.astype(np.float64),
                                      w.astype(np.float64).reshape(g.shape), f"{what}, {key}")


def _point(tree, i):
    return jax.tree_util.tree_map(lambda x: x[i], tree)


def grid(axes):
    names = list(axes)
    return [dict(zip(names, v, strict=True)) for v in itertools.product(*axes.values())]


def run_grid(make_gx, make_optax, record_gx, record_optax, points, *, params=PARAMS,
             grads=GRADS_STACKED, optax_params=None, optax_grads=None):
    """Both over every point, the numbers traced (one vmapped, jitted scan each); asserts that
    the trajectories and the recorded states agree at every point."""
    hyper = {k: jnp.asarray([p[k] for p in points], jnp.float64) for k in points[0]}

    def runner(make, record, p, g):
        def one(hp):
            return helpers.run_scan_with_state(make(**hp), p, g, record)
        return jax.tree_util.tree_map(np.asarray, jax.jit(jax.vmap(one))(hyper))

    got = runner(make_gx, record_gx, params, grads)
    want = runner(make_optax, record_optax,
                  params if optax_params is None else optax_params,
                  grads if optax_grads is None else optax_grads)
    for i, point in enumerate(points):
        assert_trees_close(_point(got, i), _point(want, i), f"jitted, vmapped, {point}")


def run_eager(opt_gx, opt_optax, record_gx, record_optax, what, *, params=PARAMS, grads=GRADS,
              optax_params=None, optax_grads=None):
    got = helpers.run_steps_with_state(opt_gx, params, grads, record_gx)
    want = helpers.run_steps_with_state(
        opt_optax, params if optax_params is None else optax_params,
        grads if optax_grads is None else optax_grads, record_optax)
    assert_trees_close(got, want, f"eager, {what}")


# --------------------------------------------------------------------------------------------
# SM3

def _sm3_gx_state(state):
    return {"mu": gx.tree_get(state, "mu"), "nu": gx.tree_get(state, "nu")}


def _sm3_optax_state(state):
    inner = state[0]  # chain(scale_by_sm3, scale)
    return {"mu": inner.mu, "nu": inner.nu}


SM3_ON_VECTORS = dict(optax_params=PARAMS_1, optax_grads=GRADS_STACKED_1)


def test_sm3_grid_matches_optax_jitted():
    points = grid({"learning_rate": [1e-3, 0.1, 1.0], "momentum": [0.0, 0.5, 0.9]})
    run_grid(sm3, optax.sm3, _sm3_gx_state, _sm3_optax_state, points, **SM3_ON_VECTORS)


def test_sm3_matches_optax_eagerly():
    kwargs = {"learning_rate": 0.1, "momentum": 0.5}
    run_eager(sm3(**kwargs), optax.sm3(**kwargs), _sm3_gx_state, _sm3_optax_state, kwargs,
              optax_params=PARAMS_1, optax_grads=GRADS_1)


def test_sm3_takes_a_learning_rate_schedule():
    # float64 values (Optax's own schedules of an int32 count are float32, and XLA rounds
    # them differently compiled and op by op).
    def schedule(count):
        return 0.1 * 0.5 ** (count / 10.0)

    traj = helpers.run_steps(sm3(learning_rate=schedule), PARAMS, GRADS)
    # Optax's sm3 takes a number: its scaling, then the scheduled learning rate.
    reference = optax.chain(optax.scale_by_sm3(0.9), optax.scale_by_learning_rate(schedule))
    assert_trees_close(traj, helpers.run_steps(reference, PARAMS_1, GRADS_1), "schedule")


def _transform_state(state):
    return {"mu": state.mu, "nu": state.nu}


def test_scale_by_sm3_grid_matches_optax():
    """Every point traced and vmapped for gradtx; Optax tests ``b2 != 1`` in Python, so its
    runs take b2 as a number: one vmapped scan per b2, all in one program."""
    b2_values = [0.0, 0.5, 0.99, 1.0]
    small = grid({"b1": [0.0, 0.5, 0.9], "eps": [0.0, 1e-8, 1e-2]})
    points = [{**p, "b2": b2} for b2 in b2_values for p in small]
    hyper = {k: jnp.asarray([p[k] for p in small], jnp.float64) for k in small[0]}

    def ours(hp):
        return helpers.run_scan_with_state(scale_by_sm3(**hp), PARAMS, GRADS_STACKED,
                                           _transform_state)

    @jax.jit
    def theirs(hyper):
        def run(b2):
            def one(hp):
                return helpers.run_scan_with_state(
                    optax.scale_by_sm3(hp["b1"], b2, hp["eps"]), PARAMS_1, GRADS_STACKED_1,
                    _transform_state)
            return jax.vmap(one)(hyper)
        runs = [run(b2) for b2 in b2_values]
        return jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs), *runs)

    all_hyper = {k: jnp.asarray([p[k] for p in points], jnp.float64) for k in points[0]}
    got = jax.tree_util.tree_map(np.asarray, jax.jit(jax.vmap(ours))(all_hyper))
    want = jax.tree_util.tree_map(np.asarray, theirs(hyper))
    for i, point in enumerate(points):
        assert_trees_close(_point(got, i), _point(want, i), f"jitted, vmapped, {point}")


def test_scale_by_sm3_matches_optax_eagerly():
    kwargs = {"b1": 0.7, "b2": 0.9, "eps": 1e-6}
    run_eager(scale_by_sm3(**kwargs), optax.scale_by_sm3(**kwargs), _transform_state,
              _transform_state, kwargs, optax_params=PARAMS_1, optax_grads=GRADS_1)


def test_sm3_state_layout_and_odd_leaves():
    """Optax's layout (a list of per-axis vectors per leaf); a scalar is a vector of one
    entry; empty leaves pass."""
    tx = scale_by_sm3()
    params = {"k": jnp.ones((2, 3, 4)), "b": jnp.ones(3), "s": jnp.ones(()),
              "e": jnp.ones((2, 0, 3))}
    state = tx.init(params)
    assert isinstance(state, ScaleBySM3State)
    assert [v.shape for v in state.mu["k"]] == [(2,), (3,), (4,)]
    assert [v.shape for v in state.mu["b"]] == [(3,)]
    assert [v.shape for v in state.mu["s"]] == [()]
    grads = {"k": jnp.arange(24.0).reshape(2, 3, 4), "b": jnp.asarray([0.0, 2.0, -1.0]),
             "s": jnp.asarray(-3.0), "e": jnp.ones((2, 0, 3))}
    out, state = tx.update(grads, state)
    # Step 1 from zero accumulators: a = g^2, the row/column/depth maxima are kept.
    np.testing.assert_array_equal(state.mu["k"][0], np.max(grads["k"] ** 2, axis=(1, 2)))
    np.testing.assert_array_equal(state.mu["k"][2], np.max(grads["k"] ** 2, axis=(0, 1)))
    np.testing.assert_allclose(out["s"], 0.1 * -3.0 / np.sqrt(9.0 + 1e-8), rtol=1e-12)
    np.testing.assert_array_equal(out["b"][0], 0.0)  # a = 0: the 0/0 convention
    assert out["e"].shape == (2, 0, 3)


# --------------------------------------------------------------------------------------------
# Noisy SGD and add_noise

def _noise_gx_state(state):
    return {"count": state.count, "rng_key": gx.tree_get(state, "rng_key")}


def _noise_optax_state(state):
    inner = state[0]  # chain(add_noise, scale_by_learning_rate)
    return {"count": inner.count, "rng_key": jax.random.key_data(inner.rng_key)}


def test_noisy_sgd_grid_matches_optax_jitted():
    points = grid({"learning_rate": [1e-3, 0.1], "eta": [0.0, 0.01, 1.0],
                   "gamma": [0.0, 0.55, 2.0]})
    run_grid(lambda **kw: noisy_sgd(**kw, key=42), lambda **kw: optax.noisy_sgd(**kw, key=42),
             _noise_gx_state, _noise_optax_state, points)


def test_noisy_sgd_matches_optax_eagerly():
    kwargs = {"learning_rate": 0.1, "eta": 0.5, "gamma": 1.0, "key": 3}
    run_eager(noisy_sgd(**kwargs), optax.noisy_sgd(**kwargs), _noise_gx_state,
              _noise_optax_state, kwargs)


KEY_FORMS = {
    # gradtx's arguments, Optax's arguments (for the same noise)
    "none": ({}, {"key": 0}),
    "int": ({"key": 42}, {"key": 42}),
    "numpy-int": ({"key": np.int64(-3)}, {"key": -3}),
    "typed": ({"key": jax.random.key(7)}, {"key": jax.random.key(7)}),
    "raw": ({"key": jax.random.PRNGKey(9)},
            {"key": jax.random.wrap_key_data(jax.random.PRNGKey(9))}),
    "seed": ({"seed": 11}, {"seed": 11}),
}


@pytest.mark.parametrize("forms", list(KEY_FORMS.values()), ids=list(KEY_FORMS))
def test_every_key_form_gives_optax_key_and_noise(forms):
    ours, theirs = forms
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Optax's seed=
        reference = optax.noisy_sgd(learning_rate=1.0, **theirs)
        tx, tx_ref = add_noise(1.0, 0.5, **ours), optax.add_noise(1.0, 0.5, **theirs)
    state = noisy_sgd(**ours).init(PARAMS)
    np.testing.assert_array_equal(gx.tree_get(state, "rng_key"),
                                  jax.random.key_data(reference.init(PARAMS)[0].rng_key))
    out, _ = tx.update(GRADS[1], tx.init(PARAMS))
    want, _ = tx_ref.update(GRADS[1], tx_ref.init(PARAMS))
    for k in PARAMS:
        np.testing.assert_array_equal(out[k], want[k])


def test_add_noise_is_optax_noise_bit_for_bit():
    """Both op by op: the same numbers, not just close, and the same key after each step."""
    ours, theirs = add_noise(0.3, 0.55, jax.random.key(1)), optax.add_noise(0.3, 0.55, 1)
    state_ours, state_theirs = ours.init(PARAMS), theirs.init(PARAMS)
    assert isinstance(state_ours, AddNoiseState)
    for g in GRADS[:30]:
        out_ours, state_ours = ours.update(g, state_ours)
        out_theirs, state_theirs = theirs.update(g, state_theirs)
        for k in PARAMS:
            np.testing.assert_array_equal(out_ours[k], out_theirs[k])
        np.testing.assert_array_equal(state_ours.rng_key,
                                      jax.random.key_data(state_theirs.rng_key))
        assert int(state_ours.count) == int(state_theirs.count)


def test_add_noise_draws_in_each_leaf_dtype():
    params = {"a": jnp.zeros(1000, jnp.float32), "b": jnp.zeros((), jnp.bfloat16)}
    tx = add_noise(4.0, 0.0, 5)
    out, _ = tx.update(params, tx.init(params))
    assert out["a"].dtype == jnp.float32 and out["b"].dtype == jnp.bfloat16
    want, _ = optax.add_noise(4.0, 0.0, 5).update(params, optax.add_noise(4.0, 0.0, 5).init(
        params))
    np.testing.assert_array_equal(out["a"], want["a"])
    assert 1.8 < float(jnp.std(out["a"])) < 2.2  # sigma = sqrt(eta)


def test_noise_variance_anneals():
    """sigma_t^2 = eta / t^gamma: with zero updates the output is the noise itself."""
    eta, gamma = 2.0, 0.55
    tx = add_noise(eta, gamma, 0)
    zeros = {"x": jnp.zeros(20000)}
    state = tx.init(zeros)
    for t in range(1, 4):
        out, state = tx.update(zeros, state)
        assert abs(float(jnp.var(out["x"])) / (eta / t**gamma) - 1) < 0.05


# --------------------------------------------------------------------------------------------
# Normalisations

def test_centralize_matches_optax():
    run_eager(centralize(), optax.centralize(), lambda s: {}, lambda s: {}, "centralize")
    run_grid(lambda **kw: centralize(), lambda **kw: optax.centralize(), lambda s: {},
             lambda s: {}, [{"unused": 0.0}])


def test_centralize_leaves_vectors_and_zeroes_row_means():
    tx = centralize()
    out, _ = tx.update(GRADS[1], tx.init(PARAMS))
    np.testing.assert_array_equal(out["b"], GRADS[1]["b"])
    np.testing.assert_array_equal(out["s"], GRADS[1]["s"])
    np.testing.assert_allclose(np.mean(out["k"], axis=(1, 2)), 0.0, atol=1e-12)


def test_normalize_matches_optax_including_nan_on_zero_updates():
    run_eager(normalize(), optax.contrib.normalize(), lambda s: {}, lambda s: {}, "normalize")
    run_grid(lambda **kw: normalize(), lambda **kw: optax.contrib.normalize(), lambda s: {},
             lambda s: {}, [{"unused": 0.0}])
    tx = normalize()
    out, state = tx.update(GRADS[1], tx.init(PARAMS))
    np.testing.assert_allclose(float(gx.global_norm(out)), 1.0, rtol=1e-14)
    assert state == gx.EmptyState()
    assert np.isnan(tx.update(GRADS[0], state)[0]["w"]).all()  # step 1 is all zeros


def test_normalize_by_update_norm_grid_matches_optax():
    points = grid({"scale_factor": [1.0, -1.0, 0.5, 0.0], "eps": [0.0, 1e-6, 1.0]})
    run_grid(normalize_by_update_norm, optax.normalize_by_update_norm, lambda s: {},
             lambda s: {}, points)
    for kwargs in ({}, {"scale_factor": -2.0, "eps": 1e-3}):
        run_eager(normalize_by_update_norm(**kwargs), optax.normalize_by_update_norm(**kwargs),
                  lambda s: {}, lambda s: {}, kwargs)


# --------------------------------------------------------------------------------------------
# Bad arguments

@pytest.mark.parametrize("factory", [sm3, noisy_sgd])
def test_bad_numbers_are_refused_by_name(factory):
    checked = 0
    for name, declaration in factory._injection.declarations.items():
        if not declaration.live:
            continue
        for value in declaration.invalid_values():
            helpers.assert_refused_by_name(factory, name, value, PARAMS)
            checked += 1
    assert checked >= 4
    with pytest.raises(TypeError, match=factory.__name__):
        factory().init({"z": jnp.ones(2, jnp.complex128)})


@pytest.mark.parametrize("name", ["key", "seed"])
def test_bad_keys_are_refused_by_name(name):
    for value in (2**63, -(2**63) - 1):
        with pytest.raises(ValueError, match=f"`{name}`"):
            noisy_sgd(**{name: value})
        with pytest.raises(ValueError, match=f"`{name}`"):
            add_noise(0.01, 0.55, **{name: value})
    for value in (0.5, True, "0", [0]):
        with pytest.raises(TypeError, match=f"`{name}`"):
            noisy_sgd(**{name: value})
    assert noisy_sgd._injection.declarations[name].invalid_values() == (2**63,)


def test_key_forms_and_conflicts():
    with pytest.raises(ValueError, match="`key`"):
        noisy_sgd(key=jax.random.split(jax.random.key(0), 2))  # two keys
    with pytest.raises(ValueError, match="`seed`"):
        noisy_sgd(key=1, seed=2)
    with pytest.raises(ValueError, match="`seed`"):
        add_noise(0.01, 0.55, 1, seed=2)
    with pytest.raises(ValueError, match="`key`"):
        add_noise(0.01, 0.55, jnp.zeros(3, jnp.uint32))  # not a threefry key's data


@pytest.mark.parametrize("transform, arguments", [
    (scale_by_sm3, {"b1": (1.0, -0.1), "b2": (1.5, -0.1), "eps": (-1e-8,)}),
    (lambda **kw: add_noise(**{"eta": 0.01, "gamma": 0.55, **kw}),
     {"eta": (-1.0,), "gamma": (-0.5,)}),
    (normalize_by_update_norm, {"eps": (-1.0,)}),
])
def test_transform_bad_arguments_are_refused_by_name(transform, arguments):
    for name, values in arguments.items():
        for value in (*values, float("nan")):
            with pytest.raises(ValueError, match=f"`{name}`"):
                transform(**{name: value})
    if transform is normalize_by_update_norm:
        with pytest.raises(ValueError, match="`scale_factor`"):
            transform(scale_factor=float("nan"))

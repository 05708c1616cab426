"""Adamax, RAdam, AdaBelief and Yogi against direct NumPy transcriptions of their papers'
algorithms, in float64 over the 50-step gradient sequence of the parity tests (zero steps, 1e-9
and 1e4 entries), to rtol 1e-10, across each registry grid with the hyperparameters traced.

Adamax and RAdam are also compared with torch.optim by tests/test_parity.py; here RAdam's two
regimes (plain momentum while rho_t <= 5, rectified adaptive steps after) are checked step by
step, and the new transforms (weighted_infinity_norm, yogi_second_moment,
radam_rectification, scale_by_belief) on their own.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx as gx
from gradtx.optimizers import registry
from gradtx.optimizers.adam_variants import adabelief, adamax, radam, yogi
from gradtx.transforms.adam_scalings import radam_rectification, scale_by_belief
from gradtx.transforms.moments import weighted_infinity_norm, yogi_second_moment
from tests import helpers

RTOL = 1e-10
PARAMS = helpers.make_params()
GRADS = helpers.make_gradients(PARAMS)
GRADS_STACKED = helpers.stack(GRADS)


# --------------------------------------------------------------------------------------------
# NumPy transcriptions of the algorithms, one leaf at a time: step(theta, g, state, t, **hp)
# returns the new theta and state; state is None before the first step.


def numpy_adamax(theta, g, state, t, learning_rate=2e-3, b1=0.9, b2=0.999, eps=1e-8,
                 weight_decay=0.0, maximize=False):
    """Kingma & Ba (2015), Algorithm 2, with torch's eps inside the max and L2 decay."""
    m, u = state if state is not None else (np.zeros_like(theta), np.zeros_like(theta))
    g = (-g if maximize else g) + weight_decay * theta
    m = b1 * m + (1 - b1) * g
    u = np.maximum(b2 * u, np.abs(g) + eps)
    return theta - learning_rate / (1 - b1**t) * m / u, (m, u)


def numpy_radam(theta, g, state, t, learning_rate=1e-3, b1=0.9, b2=0.999, eps=1e-8,
                weight_decay=0.0, decoupled_weight_decay=False, maximize=False):
    """Liu et al. (2020), Algorithm 2, with torch's threshold (rho_t > 5) and eps."""
    m, v = state if state is not None else (np.zeros_like(theta), np.zeros_like(theta))
    g = -g if maximize else g
    if decoupled_weight_decay:
        theta = theta * (1 - learning_rate * weight_decay)
    else:
        g = g + weight_decay * theta
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    m_hat = m / (1 - b1**t)
    rho_inf, rho = radam_rho(b2, t)
    if rho > 5:
        r = math.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
        step = r * m_hat * math.sqrt(1 - b2**t) / (np.sqrt(v) + eps)
    else:
        step = m_hat
    return theta - learning_rate * step, (m, v)


def radam_rho(b2, t):
    rho_inf = 2 / (1 - b2) - 1
    return rho_inf, rho_inf - 2 * t * b2**t / (1 - b2**t)


def numpy_adabelief(theta, g, state, t, learning_rate=1e-3, b1=0.9, b2=0.999, eps=1e-16,
                    eps_root=1e-16, weight_decay=0.0):
    """Zhuang et al. (2020), Algorithm 2 (eps_root inside the stored s, eps outside the root)."""
    m, s = state if state is not None else (np.zeros_like(theta), np.zeros_like(theta))
    g = g + weight_decay * theta
    m = b1 * m + (1 - b1) * g
    s = b2 * s + (1 - b2) * (g - m) ** 2 + eps_root
    m_hat = m / (1 - b1**t)
    s_hat = s / (1 - b2**t)
    return theta - learning_rate * m_hat / (np.sqrt(s_hat) + eps), (m, s)


def numpy_yogi(theta, g, state, t, learning_rate=1e-2, b1=0.9, b2=0.999, eps=1e-3,
               initial_accumulator_value=1e-6):
    """Zaheer et al. (2018), Algorithm 2: no bias correction; v starts at v_0."""
    if state is None:
        state = (np.zeros_like(theta), np.full_like(theta, initial_accumulator_value))
    m, v = state
    m = b1 * m + (1 - b1) * g
    v = v - (1 - b2) * np.sign(v - g * g) * g * g
    return theta - learning_rate * m / (np.sqrt(v) + eps), (m, v)


REFERENCES = {
    "adamax": numpy_adamax,
    "radam": numpy_radam,
    "adabelief": numpy_adabelief,
    "yogi": numpy_yogi,
}


def numpy_trajectory(step, params, grads, **hyper):
    """Parameters after each step, stacked per leaf: {key: array of shape (steps, *shape)}."""
    theta = {k: np.asarray(v, np.float64) for k, v in params.items()}
    state = dict.fromkeys(params)
    traj = {k: [] for k in params}
    for t, g in enumerate(grads, start=1):
        for k in theta:
            theta[k], state[k] = step(theta[k], np.asarray(g[k], np.float64), state[k], t, **hyper)
            traj[k].append(theta[k])
    return {k: np.stack(v) for k, v in traj.items()}


def assert_trajectories_close(got, want, what):
    for key, expected in want.items():
        np.testing.assert_allclose(np.asarray(got[key]), expected, rtol=RTOL, atol=0,
                                   err_msg=f"leaf {key!r}, {what}")


# --------------------------------------------------------------------------------------------
# The registry grids against NumPy


def _grid_cases():
    for name in REFERENCES:
        info = registry.get(name)
        static, _ = helpers.split_grid(info)
        for combo in helpers.product(static):
            label = ",".join(f"{k}={v}" for k, v in combo.items()) or "all"
            yield pytest.param(info, combo, id=f"{name}[{label}]")


@pytest.mark.parametrize(("info", "static"), list(_grid_cases()))
def test_grid_matches_numpy_reference(info, static):
    """Every point of the numeric grid (vmapped, so traced), jitted, per combination of bools."""
    _, numeric = helpers.split_grid(info)
    points = [p for p in helpers.product(numeric) if info.constraint({**p, **static})]
    assert len(points) >= 20
    hyper = {k: jnp.asarray([p[k] for p in points], jnp.float64) for k in numeric}

    def run(hp):
        return helpers.run_scan(info.build(**hp, **static), PARAMS, GRADS_STACKED)

    traj = jax.jit(jax.vmap(run))(hyper)
    for i, point in enumerate(points):
        kwargs = {**point, **static}
        want = numpy_trajectory(REFERENCES[info.name], PARAMS, GRADS, **kwargs)
        assert_trajectories_close({k: v[i] for k, v in traj.items()}, want, kwargs)


@pytest.mark.parametrize("name", list(REFERENCES))
def test_defaults_and_example_match_numpy_with_python_floats(name):
    info = registry.get(name)
    for kwargs in ({}, dict(info.example)):
        want = numpy_trajectory(REFERENCES[name], PARAMS, GRADS, **kwargs)
        assert_trajectories_close(helpers.run_steps(info.build(**kwargs), PARAMS, GRADS),
                                  want, f"{name}({kwargs}) eager")


def test_references_are_not_trivially_equal():
    """The four references give four different trajectories (a mix-up would pass vacuously)."""
    finals = {name: numpy_trajectory(step, PARAMS, GRADS, learning_rate=0.01)["w"][-1]
              for name, step in REFERENCES.items()}
    names = list(finals)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not np.allclose(finals[a], finals[b], rtol=1e-3), (a, b)


# --------------------------------------------------------------------------------------------
# RAdam's two regimes


@pytest.mark.parametrize("b2", [0.9, 0.99, 0.999])
def test_radam_switches_from_momentum_to_rectified_steps_after_step_5(b2, torch_float64):
    rhos = [radam_rho(b2, t)[1] for t in range(1, 51)]
    assert all(r <= 5 for r in rhos[:5]) and all(r > 5 for r in rhos[5:])

    lr, b1 = 0.1, 0.9
    params = {"x": np.asarray([1.0, -2.0, 0.5])}
    rng = np.random.default_rng(7)
    grads = [{"x": rng.normal(size=3)} for _ in range(12)]
    traj = helpers.run_steps(radam(learning_rate=lr, b1=b1, b2=b2), params, grads)

    # While rho_t <= 5: theta_t = theta_{t-1} - lr * m_t / (1 - b1^t), with no second moment.
    m, theta = np.zeros(3), params["x"]
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g["x"]
        momentum_step = theta - lr * m / (1 - b1**t)
        got = np.asarray(traj["x"][t - 1])
        if t <= 5:
            np.testing.assert_allclose(got, momentum_step, rtol=1e-13, err_msg=f"step {t}")
        else:
            assert np.max(np.abs(got - momentum_step)) > 1e-3, f"step {t} is not adaptive"
        theta = got

    info = registry.get("radam")
    expected = helpers.torch_trajectory(torch_float64, info, {"learning_rate": lr, "b2": b2},
                                        params, grads)
    for t, want in enumerate(expected):
        np.testing.assert_allclose(np.asarray(traj["x"][t]), want["x"], rtol=1e-12)


def test_radam_rectification_outputs_one_then_the_rectified_inverse_root():
    b2, eps = 0.9, 1e-3
    tx = radam_rectification(b2, eps)
    state = tx.init({"v": jnp.zeros(2)})
    v = {"v": jnp.asarray([0.25, 4.0])}
    for t in range(1, 11):
        out, state = tx.update(v, state)
        rho_inf, rho = radam_rho(b2, t)
        if rho > 5:
            r = math.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
            want = r * math.sqrt(1 - b2**t) / (np.sqrt([0.25, 4.0]) + eps)
        else:
            want = np.ones(2)
        np.testing.assert_allclose(out["v"], want, rtol=1e-13, err_msg=f"step {t}")
    assert int(state.count) == 10


def test_radam_never_adapts_when_rho_inf_is_at_most_5():
    """b2 = 0.5 gives rho_inf = 3: every step is momentum SGD."""
    tx = radam_rectification(0.5)
    state = tx.init(jnp.zeros(3))
    for _ in range(50):
        out, state = tx.update(jnp.full(3, 2.0), state)
        np.testing.assert_array_equal(out, np.ones(3))


def test_radam_is_differentiable_in_b2_across_both_regimes():
    """The unused branch (sqrt of a negative ratio while rho_t <= 5) must not leak NaN into
    gradients taken through the switch."""
    params = {"x": jnp.asarray([1.0, -2.0])}
    grads = [{"x": jnp.asarray([0.3 * (t + 1), -0.2])} for t in range(8)]

    def final(b2):
        return jnp.sum(helpers.run_steps(radam(learning_rate=0.1, b2=b2), params, grads)["x"][-1])

    grad = jax.grad(final)(0.9)
    assert np.isfinite(grad) and grad != 0
    h = 1e-6
    np.testing.assert_allclose(grad, (final(0.9 + h) - final(0.9 - h)) / (2 * h), rtol=1e-5)


# --------------------------------------------------------------------------------------------
# The other new transforms and choices


def test_weighted_infinity_norm_formula_and_dtype():
    tx = weighted_infinity_norm(0.5, eps=0.01)
    state = tx.init({"a": jnp.zeros(3, jnp.bfloat16), "b": jnp.zeros(2)})
    s_b = np.zeros(2)
    for u_b in ([1.0, -4.0], [0.2, 0.0], [-3.0, 1.0]):
        u = {"a": jnp.ones(3, jnp.bfloat16), "b": jnp.asarray(u_b)}
        out, state = tx.update(u, state)
        s_b = np.maximum(0.5 * s_b, np.abs(u_b) + 0.01)
        np.testing.assert_allclose(out["b"], s_b, rtol=1e-15)
        assert out["a"].dtype == jnp.bfloat16 and state.nu["a"].dtype == jnp.bfloat16
    np.testing.assert_allclose(s_b, [3.01, 1.01])


def test_yogi_second_moment_moves_by_a_fixed_fraction_of_g_squared():
    tx = yogi_second_moment(0.9, initial_value=1.0)
    state = tx.init(jnp.zeros(2))
    # v=1 > g^2=0.25: v falls by 0.1 * 0.25; then v < g^2=4: v rises by 0.1 * 4.
    out, state = tx.update(jnp.asarray([0.5, 0.5]), state)
    np.testing.assert_allclose(out, [0.975, 0.975], rtol=1e-15)
    out, state = tx.update(jnp.asarray([2.0, 0.0]), state)
    np.testing.assert_allclose(out, [1.375, 0.975], rtol=1e-15)  # g = 0 leaves v unchanged


def test_yogi_applies_no_bias_correction():
    """Step 1 is -lr (1 - b1) g / (sqrt(v_1) + eps): the uncorrected first moment."""
    lr, b1, b2, eps, v0 = 0.1, 0.9, 0.999, 1e-3, 1e-6
    g = np.asarray([0.5, -3.0])
    opt = yogi(learning_rate=lr, b1=b1, b2=b2, eps=eps, initial_accumulator_value=v0)
    params = {"w": jnp.zeros(2)}
    updates, _ = opt.update({"w": jnp.asarray(g)}, opt.init(params), params)
    v1 = v0 + (1 - b2) * g * g
    np.testing.assert_allclose(updates["w"], -lr * (1 - b1) * g / (np.sqrt(v1) + eps), rtol=1e-14)


def test_adabelief_eps_root_accumulates_in_the_stored_belief():
    eps_root, b2 = 1e-6, 0.9
    tx = scale_by_belief(b1=0.9, b2=b2, eps=0.0, eps_root=eps_root)
    state = tx.init({"w": jnp.zeros(2)})
    for _ in range(20):
        _, state = tx.update({"w": jnp.zeros(2)}, state)
    np.testing.assert_allclose(state.nu["w"], eps_root * (1 - b2**20) / (1 - b2), rtol=1e-13)
    assert int(state.count) == 20


def test_adabelief_matches_optax_adabelief():
    """The docstring's claim: same update rule as optax.adabelief, eps and eps_root included."""
    import optax

    kwargs = {"learning_rate": 0.05, "b1": 0.8, "b2": 0.99, "eps": 1e-8, "eps_root": 1e-10}
    ours = helpers.run_steps(adabelief(**kwargs), PARAMS, GRADS)
    theirs = helpers.run_steps(optax.adabelief(**kwargs), PARAMS, GRADS)
    for key in PARAMS:
        np.testing.assert_allclose(ours[key], theirs[key], rtol=RTOL)


def test_yogi_differs_from_optax_yogi_by_its_bias_correction():
    """Documented difference: Optax bias-corrects (and starts m at 1e-6), the paper does not."""
    import optax

    ours = helpers.run_steps(yogi(learning_rate=0.01), PARAMS, GRADS[:3])
    theirs = helpers.run_steps(optax.yogi(learning_rate=0.01), PARAMS, GRADS[:3])
    assert not np.allclose(ours["b"][-1], theirs["b"][-1], rtol=1e-3)


def test_scale_by_belief_handles_none_leaves_and_names_mismatched_paths():
    tx = scale_by_belief()
    params = {"w": jnp.ones(2), "frozen": None}
    state = tx.init(params)
    out, state = tx.update({"w": jnp.asarray([0.1, -0.2]), "frozen": None}, state)
    assert out["frozen"] is None and state.mu["frozen"] is None
    with pytest.raises(ValueError, match=r"\['w'\]"):
        tx.update({"w": jnp.ones(3), "frozen": None}, state)


@pytest.mark.parametrize(
    ("factory", "kwargs", "argument"),
    [
        (weighted_infinity_norm, {"decay": 1.0}, "decay"),
        (weighted_infinity_norm, {"decay": 0.9, "eps": -1.0}, "eps"),
        (yogi_second_moment, {"decay": -0.1}, "decay"),
        (yogi_second_moment, {"decay": 0.9, "initial_value": -1.0}, "initial_value"),
        (radam_rectification, {"decay": 1.5}, "decay"),
        (radam_rectification, {"eps": -1e-8}, "eps"),
        (scale_by_belief, {"b1": 1.0}, "b1"),
        (scale_by_belief, {"eps_root": -1.0}, "eps_root"),
    ],
)
def test_new_transforms_reject_invalid_hyperparameters(factory, kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        factory(**kwargs)


@pytest.mark.parametrize("factory", [adamax, radam, adabelief, yogi],
                         ids=lambda f: f.__name__)
def test_jit_and_vmap_over_params_batch(factory):
    """A batch of independent problems under vmap equals a loop over them."""
    opt = factory(learning_rate=0.05)
    batch = jnp.asarray([[1.0, -2.0], [0.5, 3.0], [-1.0, 0.25]])

    def run(x):
        p = {"x": x}
        state = opt.init(p)
        for k in range(6):
            updates, state = opt.update({"x": p["x"] * (k + 1)}, state, p)
            p = gx.apply_updates(p, updates)
        return p["x"]

    batched = jax.jit(jax.vmap(run))(batch)
    for i in range(batch.shape[0]):
        np.testing.assert_allclose(batched[i], run(batch[i]), rtol=1e-12)

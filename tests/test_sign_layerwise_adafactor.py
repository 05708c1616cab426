"""Lion, signSGD/Signum, LAMB, LARS and Adafactor against direct NumPy implementations of their
papers' algorithms (torch.optim has none of them), plus the properties of their transforms.

Each optimizer runs for 36 float64 steps on a tree with a 2-D, a 1-D and a scalar leaf; the
updates of every step must equal the reference's to rtol 1e-10, eager, jitted, and jitted with
every numeric hyperparameter traced. The sweep is the registry grid one value at a time around
the registry example, plus the defaults.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx as gx
from gradtx.optimizers import registry
from gradtx.optimizers.adafactor import adafactor, relative_step_size
from gradtx.optimizers.layerwise import lamb, lars
from gradtx.optimizers.sign import lion, sign_sgd
from gradtx.transforms.clipping import clip_by_block_rms
from gradtx.transforms.factored import (
    FactoredRmsState,
    scale_by_factored_rms,
    scale_by_param_block_rms,
)
from gradtx.transforms.sign import scale_by_lion, scale_by_sign
from gradtx.transforms.trust_ratio import block_norm, scale_by_trust_ratio

RTOL = 1e-10
STEPS = 36
ZERO_STEPS = (4, 17)  # steps whose whole gradient is zero


# --------------------------------------------------------------------------------------------
# Data


def make_params(seed: int = 0, extra: dict | None = None) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    params = {"w": rng.normal(size=(5, 3)), "b": rng.normal(size=(3,)), "s": np.float64(0.7)}
    return {**params, **(extra or {})}


def make_grads(params, steps: int = STEPS, seed: int = 1) -> list[dict[str, np.ndarray]]:
    """Random gradients with all-zero steps and steps scaled by 1e3 and 1e-6."""
    rng = np.random.default_rng(seed)
    out = []
    for t in range(steps):
        scale = 0.0 if t in ZERO_STEPS else {3: 1e3, 5: 1e-6}.get(t % 7, 1.0)
        out.append({k: scale * rng.normal(size=np.shape(p)) for k, p in params.items()})
    return out


# --------------------------------------------------------------------------------------------
# NumPy references: each takes the initial parameters and the gradients and returns the list of
# updates (new minus old parameters) of every step, following the paper's pseudocode.


def _norm(x):
    return np.sqrt(np.sum(np.square(x)))


def _rms(x):
    return np.sqrt(np.mean(np.square(x))) if np.size(x) else 0.0


def np_lion(params, grads, learning_rate=1e-4, b1=0.9, b2=0.99, weight_decay=0.0):
    """Chen et al. (2023), Algorithm 2."""
    theta = {k: np.array(p, float) for k, p in params.items()}
    m = {k: np.zeros_like(p) for k, p in theta.items()}
    steps = []
    for g in grads:
        step = {}
        for k in theta:
            c = b1 * m[k] + (1 - b1) * g[k]
            step[k] = -learning_rate * (np.sign(c) + weight_decay * theta[k])
            m[k] = b2 * m[k] + (1 - b2) * g[k]
            theta[k] = theta[k] + step[k]
        steps.append(step)
    return steps


def np_sign_sgd(params, grads, learning_rate=1e-3, momentum=0.0):
    """Bernstein et al. (2018): signSGD (Algorithm 1), Signum (Algorithm 3) when momentum > 0."""
    m = {k: np.zeros(np.shape(p)) for k, p in params.items()}
    steps = []
    for g in grads:
        step = {}
        for k in m:
            m[k] = momentum * m[k] + (1 - momentum) * g[k]
            step[k] = -learning_rate * np.sign(m[k])
        steps.append(step)
    return steps


def np_lamb(params, grads, learning_rate=1e-3, b1=0.9, b2=0.999, eps=1e-6, weight_decay=0.0):
    """You et al. (2020), Algorithm 2 (LAMB), with phi the identity."""
    theta = {k: np.array(p, float) for k, p in params.items()}
    m = {k: np.zeros_like(p) for k, p in theta.items()}
    v = {k: np.zeros_like(p) for k, p in theta.items()}
    steps = []
    for t, g in enumerate(grads, start=1):
        step = {}
        for k in theta:
            m[k] = b1 * m[k] + (1 - b1) * g[k]
            v[k] = b2 * v[k] + (1 - b2) * g[k] ** 2
            m_hat, v_hat = m[k] / (1 - b1**t), v[k] / (1 - b2**t)
            r = m_hat / (np.sqrt(v_hat) + eps) + weight_decay * theta[k]
            p_norm, r_norm = _norm(theta[k]), _norm(r)
            ratio = p_norm / r_norm if p_norm > 0 and r_norm > 0 else 1.0
            step[k] = -learning_rate * ratio * r
            theta[k] = theta[k] + step[k]
        steps.append(step)
    return steps


def np_lars(params, grads, learning_rate=1e-3, momentum=0.9, weight_decay=0.0,
            trust_coefficient=1e-3, eps=0.0):
    """You et al. (2017), Algorithm 1: local rate kappa ||w|| / (||g|| + beta ||w|| + eps) times
    the decayed gradient g + beta w, into the momentum buffer."""
    theta = {k: np.array(p, float) for k, p in params.items()}
    buf = {k: np.zeros_like(p) for k, p in theta.items()}
    steps = []
    for g in grads:
        step = {}
        for k in theta:
            u = g[k] + weight_decay * theta[k]
            w_norm, g_norm = _norm(theta[k]), _norm(g[k])
            local = (trust_coefficient * w_norm / (g_norm + weight_decay * w_norm + eps)
                     if w_norm > 0 and g_norm > 0 else 1.0)
            buf[k] = momentum * buf[k] + local * u
            step[k] = -learning_rate * buf[k]
            theta[k] = theta[k] + step[k]
        steps.append(step)
    return steps


def np_adafactor(params, grads, learning_rate=None, decay_rate=0.8, clipping_threshold=1.0,
                 multiply_by_parameter_scale=True, b1=0.0, weight_decay=0.0, eps=1e-30,
                 min_param_scale=1e-3, factored=True):
    """Shazeer & Stern (2018), Algorithms 4 (matrices, with row and column *sums*) and 5
    (vectors), with the step size, clipping and optional momentum of its Section 9."""
    theta = {k: np.array(p, float) for k, p in params.items()}
    row = {k: np.zeros(np.shape(p)[:-1]) for k, p in theta.items()}
    col = {k: np.zeros(np.shape(p)[:-2] + np.shape(p)[-1:]) for k, p in theta.items()}
    full = {k: np.zeros_like(p) for k, p in theta.items()}
    m = {k: np.zeros_like(p) for k, p in theta.items()}
    steps = []
    for t, g in enumerate(grads, start=1):
        beta = 1 - t ** (-decay_rate)
        rho = min(1e-2, 1 / math.sqrt(t)) if learning_rate is None else learning_rate
        step = {}
        for k in theta:
            s = g[k] ** 2 + eps
            if factored and np.ndim(s) >= 2:
                row[k] = beta * row[k] + (1 - beta) * s.sum(axis=-1)
                col[k] = beta * col[k] + (1 - beta) * s.sum(axis=-2)
                total = row[k].sum(axis=-1)[..., None, None]
                v_hat = row[k][..., :, None] * col[k][..., None, :] / total
            else:
                full[k] = beta * full[k] + (1 - beta) * s
                v_hat = full[k]
            u = g[k] / np.sqrt(v_hat)
            if clipping_threshold is not None:
                u = u / max(1.0, _rms(u) / clipping_threshold)
            if multiply_by_parameter_scale:
                u = u * max(min_param_scale, _rms(theta[k]))
            m[k] = b1 * m[k] + (1 - b1) * u
            step[k] = -rho * (m[k] + weight_decay * theta[k])
            theta[k] = theta[k] + step[k]
        steps.append(step)
    return steps


REFERENCES = {
    "lion": np_lion,
    "sign_sgd": np_sign_sgd,
    "lamb": np_lamb,
    "lars": np_lars,
    "adafactor": np_adafactor,
}


# --------------------------------------------------------------------------------------------
# Runners


def run_eager(opt, params, grads):
    state, steps = opt.init(params), []
    for g in grads:
        updates, state = opt.update(g, state, params)
        params = gx.apply_updates(params, updates)
        steps.append(updates)
    return steps


def run_jitted(opt, params, grads):
    state, steps = opt.init(params), []
    update = jax.jit(opt.update)
    for g in grads:
        updates, state = update(g, state, params)
        params = gx.apply_updates(params, updates)
        steps.append(updates)
    return steps


@functools.partial(jax.jit, static_argnames=("name", "static"))
def _scan_traced(numeric, params, grads_stacked, *, name, static):
    opt = registry.get(name).build(**numeric, **dict(static))

    def step(carry, g):
        params, state = carry
        updates, state = opt.update(g, state, params)
        return (gx.apply_updates(params, updates), state), updates

    _, updates = jax.lax.scan(step, (params, opt.init(params)), grads_stacked)
    return updates


def run_traced(name, kwargs, params, grads):
    """One compiled scan with every numeric hyperparameter a traced argument."""
    static = tuple(sorted((k, v) for k, v in kwargs.items() if isinstance(v, bool) or v is None))
    numeric = {k: jnp.asarray(v) for k, v in kwargs.items() if (k, v) not in static}
    stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *grads)
    updates = _scan_traced(numeric, params, stacked, name=name, static=static)
    return [jax.tree_util.tree_map(lambda x, t=t: x[t], updates) for t in range(len(grads))]


def assert_steps_close(actual, expected):
    assert len(actual) == len(expected)
    for t, (a, e) in enumerate(zip(actual, expected, strict=True), start=1):
        assert set(a) == set(e)
        for k in e:
            scale = np.max(np.abs(e[k]), initial=0.0)
            np.testing.assert_allclose(
                np.asarray(a[k]), e[k], rtol=RTOL, atol=1e-13 * scale,
                err_msg=f"step {t}, leaf {k!r}",
            )


# --------------------------------------------------------------------------------------------
# The sweep


def _sweep_points(info):
    """The defaults, the example, and each grid value changed alone in the example."""
    points = [{}, dict(info.example)]
    for name, values in info.grid.items():
        points += [{**info.example, name: v} for v in values]
    unique = []
    for p in points:
        if p not in unique:
            unique.append(p)
    return unique


def _cases():
    for name in REFERENCES:
        for i, kwargs in enumerate(_sweep_points(registry.get(name))):
            yield pytest.param(name, kwargs, id=f"{name}-{i}-" + ",".join(
                f"{k}={v}" for k, v in kwargs.items()))


RUNNERS = {"eager": run_eager, "jit": run_jitted}


@pytest.mark.parametrize("mode", ["eager", "jit", "traced"])
@pytest.mark.parametrize(("name", "kwargs"), list(_cases()))
def test_matches_the_papers_algorithm(name, kwargs, mode):
    params = make_params()
    grads = make_grads(params)
    expected = REFERENCES[name](params, grads, **kwargs)
    if mode == "traced":
        actual = run_traced(name, kwargs, params, grads)
    else:
        actual = RUNNERS[mode](registry.get(name).build(**kwargs), params, grads)
    assert_steps_close(actual, expected)


def test_sweep_covers_both_values_of_every_boolean():
    info = registry.get("adafactor")
    points = _sweep_points(info)
    for flag in ("multiply_by_parameter_scale", "factored"):
        assert {p.get(flag, True) for p in points} == {False, True}


ADAFACTOR_EXTRA = [
    {},  # the paper's configuration: relative step size, parameter scale, clipping at 1
    {"clipping_threshold": None},
    {"learning_rate": None, "multiply_by_parameter_scale": False, "b1": 0.9},
    {"learning_rate": 0.02, "clipping_threshold": None, "factored": False, "weight_decay": 0.1},
]


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("kwargs", ADAFACTOR_EXTRA, ids=str)
def test_adafactor_with_none_options_and_batched_matrices(kwargs, jit):
    """``None`` learning rate (the relative step size) and clipping, and a 3-D leaf factored
    over its last two axes."""
    params = make_params(extra={"t": np.random.default_rng(5).normal(size=(2, 4, 3))})
    grads = make_grads(params, steps=40)
    expected = np_adafactor(params, grads, **kwargs)
    actual = (run_jitted if jit else run_eager)(adafactor(**kwargs), params, grads)
    assert_steps_close(actual, expected)


def test_relative_step_size_is_min_of_1e2_and_inverse_root_of_t():
    counts = jnp.asarray([0, 1, 99, 9_999, 10_000, 39_999])
    expected = [min(1e-2, 1 / math.sqrt(c + 1)) for c in counts.tolist()]
    np.testing.assert_allclose(relative_step_size(counts), expected, rtol=1e-12)


# --------------------------------------------------------------------------------------------
# Adafactor's memory


def _numbers(tree) -> int:
    return sum(int(np.size(x)) for x in jax.tree_util.tree_leaves(tree))


def _per_parameter_numbers(state) -> int:
    """Numbers held in non-scalar state leaves (scalars are counts and hyperparameters)."""
    return sum(int(np.size(x)) for x in jax.tree_util.tree_leaves(state) if np.ndim(x) > 0)


def _statistics(state) -> FactoredRmsState:
    """The one FactoredRmsState inside an optimizer state."""
    nodes = jax.tree_util.tree_leaves(state, is_leaf=lambda x: isinstance(x, FactoredRmsState))
    (found,) = [n for n in nodes if isinstance(n, FactoredRmsState)]
    return found


def test_factored_state_holds_rows_plus_columns():
    params = {"w": jnp.zeros((64, 32))}
    state = adafactor(learning_rate=0.01, multiply_by_parameter_scale=False).init(params)
    statistics = _statistics(state)
    assert (statistics.row["w"].shape, statistics.col["w"].shape) == ((64,), (32,))
    # rows + columns, plus a one-element placeholder for the unused full slot
    assert _numbers((statistics.row, statistics.col, statistics.full)) == 64 + 32 + 1
    assert _per_parameter_numbers(state) == 64 + 32 + 1


def test_factored_state_stays_small_after_updates_and_batches_leading_axes():
    params = {"w": jnp.zeros((64, 32)), "t": jnp.zeros((3, 8, 5))}
    opt = adafactor()
    state = opt.init(params)
    for _ in range(2):
        _, state = jax.jit(opt.update)(jax.tree_util.tree_map(jnp.ones_like, params), state,
                                       params)
    stats = _statistics(state)
    assert _numbers((stats.row["w"], stats.col["w"], stats.full["w"])) == 64 + 32 + 1
    assert (stats.row["t"].shape, stats.col["t"].shape) == ((3, 8), (3, 5))


def test_unfactored_and_momentum_states_hold_a_full_copy():
    params = {"w": jnp.zeros((64, 32))}
    assert _numbers(_statistics(adafactor(factored=False).init(params)).full) == 2048
    with_momentum = adafactor(learning_rate=0.01, b1=0.9).init(params)
    assert _per_parameter_numbers(with_momentum) == 64 + 32 + 1 + 2048


def test_rank_one_squared_gradient_is_estimated_exactly():
    """R C / 1'R recovers G² when G² is an outer product, so the first step is sign(G)."""
    g = jnp.outer(jnp.asarray([1.0, -2.0, 3.0]), jnp.asarray([0.5, 4.0]))
    out, _ = scale_by_factored_rms(eps=0.0).update(
        {"g": g}, scale_by_factored_rms(eps=0.0).init({"g": g})
    )
    np.testing.assert_allclose(out["g"], jnp.sign(g), rtol=1e-14)


def test_factored_rms_decay_starts_at_zero():
    """beta_1 = 1 - 1^-c = 0: the first estimate is the first squared gradient alone."""
    t = scale_by_factored_rms(decay_rate=0.8, eps=0.0, factored=False)
    state = t.init({"x": jnp.zeros(2)})
    state = state._replace(full={"x": jnp.asarray([100.0, 100.0])})  # must be forgotten
    out, _ = t.update({"x": jnp.asarray([3.0, -0.5])}, state)
    np.testing.assert_allclose(out["x"], [1.0, -1.0], rtol=1e-14)


def test_factored_rms_in_float16_with_zero_gradients_is_finite():
    """eps = 1e-30 underflows to 0 in float16; a zero gradient then gives a zero update."""
    params = {"w": jnp.zeros((3, 2), jnp.float16), "b": jnp.zeros(2, jnp.float16)}
    opt = adafactor()
    updates, state = opt.update(jax.tree_util.tree_map(jnp.zeros_like, params),
                                opt.init(params), params)
    for leaf in jax.tree_util.tree_leaves((updates, state)):
        assert bool(jnp.all(jnp.isfinite(leaf)))
    assert all(u.dtype == jnp.float16 for u in jax.tree_util.tree_leaves(updates))


def test_factored_rms_mismatched_update_names_the_path():
    t = scale_by_factored_rms()
    state = t.init({"w": jnp.zeros((4, 3)), "b": jnp.zeros(3)})
    with pytest.raises(ValueError, match=r"\['w'\].*\(4, 4\)"):
        t.update({"w": jnp.zeros((4, 4)), "b": jnp.zeros(3)}, state)
    with pytest.raises(ValueError, match=r"\['w'\]"):
        t.update({"w": jnp.zeros(4), "b": jnp.zeros(3)}, state)
    with pytest.raises(ValueError, match=r"\['c'\]"):
        t.update({"w": jnp.zeros((4, 3)), "b": jnp.zeros(3), "c": jnp.zeros(1)}, state)


def test_clip_by_block_rms_caps_the_rms_per_leaf():
    big, small = jnp.asarray([3.0, -4.0]), jnp.asarray([0.1, 0.2])
    out, _ = clip_by_block_rms(0.5).update({"big": big, "small": small}, None)
    np.testing.assert_allclose(jnp.sqrt(jnp.mean(out["big"] ** 2)), 0.5, rtol=1e-14)
    np.testing.assert_allclose(out["big"] / big, out["big"][0] / big[0], rtol=1e-14)
    np.testing.assert_array_equal(out["small"], small)


def test_param_block_rms_floors_the_scale():
    params = {"zero": jnp.zeros(3), "big": jnp.full(3, 2.0)}
    out, _ = scale_by_param_block_rms(1e-3).update(
        {"zero": jnp.ones(3), "big": jnp.ones(3)}, None, params)
    np.testing.assert_allclose(out["zero"], 1e-3, rtol=1e-14)
    np.testing.assert_allclose(out["big"], 2.0, rtol=1e-14)
    with pytest.raises(ValueError, match="needs the parameters"):
        scale_by_param_block_rms().update({"x": jnp.ones(2)}, None)


# --------------------------------------------------------------------------------------------
# Sign transforms


def test_scale_by_sign_keeps_zero_and_dtype():
    out, _ = scale_by_sign().update({"x": jnp.asarray([-2.0, 0.0, 1e-30], jnp.bfloat16)}, None)
    np.testing.assert_array_equal(out["x"].astype(jnp.float32), [-1.0, 0.0, 1.0])
    assert out["x"].dtype == jnp.bfloat16


def test_lion_with_equal_betas_is_signum():
    """With b1 = b2 Lion's interpolation is the stored momentum: Signum with momentum b."""
    params = make_params()
    grads = make_grads(params, steps=12)
    a = run_eager(lion(learning_rate=0.1, b1=0.7, b2=0.7), params, grads)
    b = run_eager(sign_sgd(learning_rate=0.1, momentum=0.7), params, grads)
    assert_steps_close(a, [{k: np.asarray(v) for k, v in s.items()} for s in b])


def test_lion_interpolates_with_b1_but_remembers_with_b2():
    t = scale_by_lion(b1=0.9, b2=0.5)
    state = t.init({"x": jnp.zeros(1)})
    _, state = t.update({"x": jnp.asarray([1.0])}, state)  # m = 0.5
    out, state = t.update({"x": jnp.asarray([-4.0])}, state)
    assert float(out["x"][0]) == 1.0  # 0.9 * 0.5 + 0.1 * (-4) = 0.05 > 0
    np.testing.assert_allclose(state.mu["x"], [-1.75])  # 0.5 * 0.5 + 0.5 * (-4)


def test_sign_sgd_without_momentum_keeps_no_state():
    params = make_params()
    assert _per_parameter_numbers(sign_sgd().init(params)) == 0
    assert _per_parameter_numbers(sign_sgd(momentum=0.9).init(params)) == _per_parameter_numbers(
        params
    )


# --------------------------------------------------------------------------------------------
# Trust ratio


def test_trust_ratio_scales_update_norm_to_param_norm():
    params = {"w": jnp.asarray([3.0, 4.0]), "b": jnp.asarray([0.0, 1.0])}
    updates = {"w": jnp.asarray([0.0, 0.5]), "b": jnp.asarray([2.0, 0.0])}
    out, _ = scale_by_trust_ratio(trust_coefficient=0.1).update(updates, None, params)
    np.testing.assert_allclose(out["w"], [0.0, 0.5], rtol=1e-14)  # 0.1 * 5 / 0.5 = 1
    np.testing.assert_allclose(out["b"], [0.1, 0.0], rtol=1e-14)  # 0.1 * 1 / 2


def test_trust_ratio_is_one_where_either_norm_is_zero():
    params = {"zero_param": jnp.zeros(2), "zero_update": jnp.ones(2)}
    updates = {"zero_param": jnp.asarray([1.0, -2.0]), "zero_update": jnp.zeros(2)}
    out, _ = scale_by_trust_ratio(trust_coefficient=1e-3).update(updates, None, params)
    np.testing.assert_array_equal(out["zero_param"], [1.0, -2.0])
    np.testing.assert_array_equal(out["zero_update"], [0.0, 0.0])


def test_trust_ratio_min_norm_and_eps():
    params, updates = {"x": jnp.asarray([0.0, 0.01])}, {"x": jnp.asarray([0.02, 0.0])}
    out, _ = scale_by_trust_ratio(min_norm=0.1, eps=0.05).update(updates, None, params)
    np.testing.assert_allclose(out["x"], [0.02 * 0.1 / (0.1 + 0.05), 0.0], rtol=1e-14)


def test_trust_ratio_needs_params():
    with pytest.raises(ValueError, match="needs the parameters"):
        scale_by_trust_ratio().update({"x": jnp.ones(2)}, None)
    with pytest.raises(ValueError, match=r"\['y'\]"):
        scale_by_trust_ratio().update({"x": jnp.ones(2)}, None, {"x": jnp.ones(2),
                                                                  "y": jnp.ones(1)})


def test_block_norm_has_a_zero_gradient_at_zero():
    assert float(jax.grad(block_norm)(jnp.zeros(3)).sum()) == 0.0
    np.testing.assert_allclose(jax.grad(block_norm)(jnp.asarray([3.0, 4.0])), [0.6, 0.8])


@pytest.mark.parametrize("factory", [lamb, lars, adafactor], ids=lambda f: f.__name__)
def test_gradient_in_learning_rate_is_finite_with_zero_leaves(factory):
    """A zero-initialised leaf and a zero gradient step hit the zero-norm branches."""
    params = {"w": jnp.ones((3, 2)), "bias": jnp.zeros(2)}
    grads = [{"w": jnp.zeros((3, 2)), "bias": jnp.zeros(2)},
             {"w": jnp.ones((3, 2)), "bias": jnp.asarray([1.0, -1.0])}]

    def final(lr):
        opt = factory(learning_rate=lr)
        state, p = opt.init(params), params
        for g in grads:
            updates, state = opt.update(g, state, p)
            p = gx.apply_updates(p, updates)
        return sum(jnp.sum(x) for x in jax.tree_util.tree_leaves(p))

    assert bool(jnp.isfinite(jax.grad(final)(0.01)))


def test_lars_and_lamb_ask_for_params():
    params = {"w": jnp.ones((4, 3)), "b": jnp.ones(3)}
    opt = lars()
    with pytest.raises(ValueError, match="needs the parameters"):
        opt.update(params, opt.init(params))
    with pytest.raises(ValueError, match="needs the parameters"):
        lars(momentum=0.0).update(params, lars(momentum=0.0).init(params))
    with pytest.raises(ValueError, match="needs the parameters"):
        lamb().update(params, lamb().init(params))


def test_lamb_step_norm_is_learning_rate_times_param_norm():
    params = make_params()
    grads = make_grads(params, steps=3)
    opt = lamb(learning_rate=0.05, weight_decay=0.01)
    state, p = opt.init(params), params
    for g in grads:
        updates, state = opt.update(g, state, p)
        for k in p:
            np.testing.assert_allclose(
                _norm(np.asarray(updates[k])), 0.05 * _norm(np.asarray(p[k])), rtol=1e-12)
        p = gx.apply_updates(p, updates)


@pytest.mark.parametrize(
    ("factory", "defaults"),
    [
        (lion, {"learning_rate": 1e-4, "b1": 0.9, "b2": 0.99, "weight_decay": 0.0,
                "mu_dtype": None}),
        (sign_sgd, {"learning_rate": 1e-3, "momentum": 0.0, "mu_dtype": None}),
        (lamb, {"learning_rate": 1e-3, "b1": 0.9, "b2": 0.999, "eps": 1e-6,
                "weight_decay": 0.0, "mu_dtype": None, "nu_dtype": None}),
        (lars, {"learning_rate": 1e-3, "momentum": 0.9, "weight_decay": 0.0,
                "trust_coefficient": 1e-3, "eps": 0.0, "mu_dtype": None}),
        (adafactor, {"learning_rate": relative_step_size, "decay_rate": 0.8,
                     "clipping_threshold": 1.0,
                     "multiply_by_parameter_scale": True, "b1": 0.0, "weight_decay": 0.0,
                     "eps": 1e-30, "min_param_scale": 1e-3, "factored": True,
                     "mu_dtype": None}),
    ],
    ids=lambda x: getattr(x, "__name__", ""),
)
def test_documented_defaults(factory, defaults):
    import inspect

    actual = {k: v.default for k, v in inspect.signature(factory).parameters.items()}
    assert actual == defaults


def test_bool_arguments_must_be_bools():
    with pytest.raises(TypeError, match="factored"):
        adafactor(factored=1)
    with pytest.raises(TypeError, match="multiply_by_parameter_scale"):
        adafactor(multiply_by_parameter_scale="yes")

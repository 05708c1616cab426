"""Lookahead and parameter averaging against direct NumPy implementations of the algorithms
(Zhang et al., 2019; Polyak averaging with an exponential moving average), and the average
against ``torch.optim.swa_utils.AveragedModel``.

The runs minimise a fixed non-quadratic loss, so every gradient is taken at the fast weights the
wrapper produced: a wrong reset or a wrong slow step changes every later gradient.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx as gx
from gradtx.wrappers.averaging import ParamAverageState, averaged_params, with_param_average
from gradtx.wrappers.lookahead import LookaheadState, lookahead
from tests import helpers

STEPS = 20
RTOL = 1e-10
TORCH_RTOL = 1e-9


# --------------------------------------------------------------------------------------------
# The problem: parameters (with a None leaf), and the gradient of a fixed loss.


PARAMS, CENTRE, CURVATURE = helpers.quadratic_problem()
KEYS = sorted(PARAMS)


def np_grad(theta: dict) -> dict:
    """Gradient of sum(curvature/2 (theta - centre)^2 - 0.1 cos(3 theta)), leaf by leaf."""
    return {
        k: CURVATURE[k] * (theta[k] - CENTRE[k]) + 0.3 * np.sin(3 * theta[k]) for k in theta
    }


def jax_grad(theta: dict) -> dict:
    """The same gradient in JAX; the None leaf has a None gradient."""
    out = {
        k: CURVATURE[k] * (theta[k] - CENTRE[k]) + 0.3 * jnp.sin(3 * theta[k]) for k in KEYS
    }
    out["none"] = None
    return out


def jax_params() -> dict:
    params = {k: jnp.asarray(v) for k, v in PARAMS.items()}
    params["none"] = None
    return params


# --------------------------------------------------------------------------------------------
# NumPy references


class NumpySGD:
    """torch.optim.SGD's rule: the momentum buffer starts at the first gradient."""

    def __init__(self, lr: float, momentum: float = 0.0):
        self.lr, self.momentum, self.buf = lr, momentum, None

    def step(self, g: dict) -> dict:
        if self.momentum == 0.0:
            return {k: -self.lr * g[k] for k in g}
        if self.buf is None:
            self.buf = {k: g[k].copy() for k in g}
        else:
            self.buf = {k: self.momentum * self.buf[k] + g[k] for k in g}
        return {k: -self.lr * self.buf[k] for k in g}


class NumpyAdam:
    """Kingma & Ba's Adam, eps outside the root, as torch.optim.Adam."""

    def __init__(self, lr: float, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8):
        self.lr, self.b1, self.b2, self.eps = lr, b1, b2, eps
        self.m = self.v = None
        self.t = 0

    def step(self, g: dict) -> dict:
        if self.m is None:
            self.m = {k: np.zeros_like(g[k]) for k in g}
            self.v = {k: np.zeros_like(g[k]) for k in g}
        self.t += 1
        out = {}
        for k in g:
            self.m[k] = self.b1 * self.m[k] + (1 - self.b1) * g[k]
            self.v[k] = self.b2 * self.v[k] + (1 - self.b2) * g[k] ** 2
            m_hat = self.m[k] / (1 - self.b1**self.t)
            v_hat = self.v[k] / (1 - self.b2**self.t)
            out[k] = -self.lr * m_hat / (np.sqrt(v_hat) + self.eps)
        return out


INNERS = {
    "sgd": (lambda: gx.sgd(learning_rate=0.1), lambda: NumpySGD(0.1)),
    "sgd_momentum": (
        lambda: gx.sgd(learning_rate=0.05, momentum=0.9),
        lambda: NumpySGD(0.05, momentum=0.9),
    ),
    "adam": (lambda: gx.adam(learning_rate=0.05), lambda: NumpyAdam(0.05)),
}


def np_lookahead(inner, sync_period: int, alpha: float, steps: int = STEPS) -> list[dict]:
    """Algorithm 1 of the paper: k fast steps from the slow weights, then
    phi <- phi + alpha (theta_k - phi) and the fast weights restart at phi. The inner
    optimizer's state carries over from one outer loop to the next."""
    slow = {k: v.copy() for k, v in PARAMS.items()}
    fast = {k: v.copy() for k, v in PARAMS.items()}
    trajectory = []
    for t in range(1, steps + 1):
        d = inner.step(np_grad(fast))
        fast = {k: fast[k] + d[k] for k in fast}
        if t % sync_period == 0:
            slow = {k: slow[k] + alpha * (fast[k] - slow[k]) for k in slow}
            fast = {k: v.copy() for k, v in slow.items()}
        trajectory.append(fast)
    return trajectory


def np_plain(inner, steps: int = STEPS) -> list[dict]:
    theta = {k: v.copy() for k, v in PARAMS.items()}
    trajectory = []
    for _ in range(steps):
        d = inner.step(np_grad(theta))
        theta = {k: theta[k] + d[k] for k in theta}
        trajectory.append(theta)
    return trajectory


def np_average(trajectory: list[dict], decay: float) -> list[dict]:
    """avg_0 = theta_0, avg_t = decay avg_{t-1} + (1 - decay) theta_t."""
    avg = {k: v.copy() for k, v in PARAMS.items()}
    out = []
    for theta in trajectory:
        avg = {k: decay * avg[k] + (1 - decay) * theta[k] for k in avg}
        out.append(avg)
    return out


# --------------------------------------------------------------------------------------------
# JAX runners: gradients at the current parameters, eager or with a jitted step.


def run(opt, mode: str, steps: int = STEPS):
    """The parameters and the state after each step."""

    def step(params, state):
        updates, state = opt.update(jax_grad(params), state, params)
        return gx.apply_updates(params, updates), state

    if mode == "jit":
        step = jax.jit(step)
    params = jax_params()
    state = opt.init(params)
    params_seq, states = [], []
    for _ in range(steps):
        params, state = step(params, state)
        params_seq.append(params)
        states.append(state)
    return params_seq, states


def assert_trees_close(actual: dict, expected: dict, rtol: float = RTOL, what: str = ""):
    for k in KEYS:
        np.testing.assert_allclose(
            np.asarray(actual[k]), expected[k], rtol=rtol, err_msg=f"{what}{k}"
        )


MODES = ["eager", "jit"]


# --------------------------------------------------------------------------------------------
# Lookahead


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("alpha", [0.5, 1.0])
@pytest.mark.parametrize("sync_period", [1, 3, 5])
@pytest.mark.parametrize("inner_name", sorted(INNERS))
def test_lookahead_matches_numpy(inner_name, sync_period, alpha, mode):
    make_gx, make_np = INNERS[inner_name]
    params_seq, states = run(lookahead(make_gx(), sync_period, alpha), mode)
    expected = np_lookahead(make_np(), sync_period, alpha)
    for t, (actual, ref) in enumerate(zip(params_seq, expected, strict=True), start=1):
        assert_trees_close(actual, ref, what=f"step {t}: ")
        assert actual["none"] is None
    for t, state in enumerate(states, start=1):
        assert isinstance(state, LookaheadState)
        assert int(state.fast_steps) == t % sync_period
        if t % sync_period == 0:
            # Right after a synchronisation the fast weights are the slow weights.
            assert_trees_close(state.slow, {k: np.asarray(params_seq[t - 1][k]) for k in KEYS})


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("sync_period", [1, 3, 5])
@pytest.mark.parametrize("inner_name", sorted(INNERS))
def test_lookahead_alpha_one_is_the_inner_optimizer(inner_name, sync_period, mode):
    make_gx, make_np = INNERS[inner_name]
    wrapped, _ = run(lookahead(make_gx(), sync_period, 1.0), mode)
    alone, _ = run(make_gx(), mode)
    reference = np_plain(make_np())
    for t in range(STEPS):
        assert_trees_close(wrapped[t], {k: np.asarray(alone[t][k]) for k in KEYS})
        assert_trees_close(wrapped[t], reference[t])


def test_lookahead_alpha_zero_returns_to_the_start():
    params_seq, _ = run(lookahead(gx.sgd(learning_rate=0.1), 4, 0.0), "eager", steps=8)
    for t in (3, 7):
        assert_trees_close(params_seq[t], PARAMS)
    # Between synchronisations the fast weights do move.
    assert not np.allclose(np.asarray(params_seq[1]["w"]), PARAMS["w"])


def test_lookahead_returns_inner_updates_between_syncs():
    inner = gx.adam(learning_rate=0.05)
    opt = lookahead(inner, 3, 0.5)
    params = jax_params()
    state, inner_state = opt.init(params), inner.init(params)
    grads = jax_grad(params)
    for t in range(1, 4):
        updates, state = opt.update(grads, state, params)
        expected, inner_state = inner.update(grads, inner_state, params)
        same = all(np.array_equal(updates[k], expected[k]) for k in KEYS)
        assert same == (t % 3 != 0), t


def test_lookahead_traced_alpha_under_vmap():
    alphas = jnp.asarray([0.0, 0.3, 0.5, 1.0])

    def final_params(alpha):
        params_seq, _ = run_scan(lookahead(gx.sgd(learning_rate=0.05, momentum=0.9), 3, alpha))
        return params_seq

    batched = jax.jit(jax.vmap(final_params))(alphas)
    for i, alpha in enumerate([0.0, 0.3, 0.5, 1.0]):
        expected = np_lookahead(NumpySGD(0.05, momentum=0.9), 3, alpha)[-1]
        assert_trees_close({k: batched[k][i] for k in KEYS}, expected)


def run_scan(opt, steps: int = STEPS):
    """Final parameters and state of a ``lax.scan`` run (hyperparameters may be traced)."""

    def step(carry, _):
        params, state = carry
        updates, state = opt.update(jax_grad(params), state, params)
        params = gx.apply_updates(params, updates)
        return (params, state), None

    params = jax_params()
    (params, state), _ = jax.lax.scan(step, (params, opt.init(params)), None, length=steps)
    return params, state


# --------------------------------------------------------------------------------------------
# Parameter averaging


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("decay", [0.0, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("inner_name", sorted(INNERS))
def test_param_average_matches_numpy(inner_name, decay, mode):
    make_gx, make_np = INNERS[inner_name]
    params_seq, states = run(with_param_average(make_gx(), decay), mode)
    trajectory = np_plain(make_np())
    averages = np_average(trajectory, decay)
    for t in range(STEPS):
        assert_trees_close(params_seq[t], trajectory[t], what=f"params, step {t + 1}: ")
        average = averaged_params(states[t])
        assert_trees_close(average, averages[t], what=f"average, step {t + 1}: ")
        assert average["none"] is None
        assert int(states[t].count) == t + 1


@pytest.mark.parametrize("inner_name", sorted(INNERS))
def test_param_average_passes_inner_updates_unchanged(inner_name):
    make_gx, _ = INNERS[inner_name]
    wrapped, _ = run(with_param_average(make_gx(), 0.9), "eager")
    alone, _ = run(make_gx(), "eager")
    for a, b in zip(wrapped, alone, strict=True):
        for k in KEYS:
            np.testing.assert_array_equal(a[k], b[k])


def torch_run(torch, inner_name: str, decay: float, align: bool):
    """torch.optim's optimizer and an EMA ``AveragedModel`` on the same problem. With
    ``align``, ``update_parameters`` is also called once before the first step."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    model = torch.nn.ParameterList(
        [torch.nn.Parameter(torch.tensor(PARAMS[k], dtype=torch.float64)) for k in KEYS]
    )
    if inner_name == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=0.05)
    elif inner_name == "sgd_momentum":
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
    averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))
    if align:
        averaged.update_parameters(model)
    params_seq, averages = [], []
    for _ in range(STEPS):
        theta = {k: p.detach().numpy() for k, p in zip(KEYS, model, strict=True)}
        g = np_grad(theta)
        for k, p in zip(KEYS, model, strict=True):
            p.grad = torch.tensor(g[k], dtype=torch.float64)
        opt.step()
        averaged.update_parameters(model)
        params_seq.append({k: p.detach().numpy().copy() for k, p in zip(KEYS, model, strict=True)})
        averages.append(
            {k: p.detach().numpy().copy() for k, p in zip(KEYS, averaged.module, strict=True)}
        )
    return params_seq, averages


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("decay", [0.5, 0.9, 0.999])
@pytest.mark.parametrize("inner_name", sorted(INNERS))
def test_param_average_matches_torch_averaged_model(torch_float64, inner_name, decay, mode):
    torch_params, torch_averages = torch_run(torch_float64, inner_name, decay, align=True)
    make_gx, _ = INNERS[inner_name]
    params_seq, states = run(with_param_average(make_gx(), decay), mode)
    for t in range(STEPS):
        assert_trees_close(params_seq[t], torch_params[t], rtol=TORCH_RTOL)
        assert_trees_close(averaged_params(states[t]), torch_averages[t], rtol=TORCH_RTOL)


@pytest.mark.parametrize("decay", [0.5, 0.9])
def test_param_average_differs_from_unaligned_torch_as_documented(torch_float64, decay):
    """Without the extra first call, AveragedModel copies theta_1 at its first update; the two
    averages then differ by decay^t (theta_0 - theta_1)."""
    torch_params, torch_averages = torch_run(torch_float64, "sgd_momentum", decay, align=False)
    _, states = run(with_param_average(gx.sgd(learning_rate=0.05, momentum=0.9), decay), "eager")
    for t in range(STEPS):
        ours = averaged_params(states[t])
        for k in KEYS:
            gap = decay ** (t + 1) * (PARAMS[k] - torch_params[0][k])
            np.testing.assert_allclose(
                np.asarray(ours[k]) - gap, torch_averages[t][k], rtol=TORCH_RTOL, atol=1e-14
            )
        if t == 0:
            assert not np.allclose(np.asarray(ours["w"]), torch_averages[0]["w"])


def test_param_average_traced_decay_under_vmap():
    decays = [0.0, 0.5, 0.9, 1.0]

    def final_average(decay):
        _, state = run_scan(with_param_average(gx.adam(learning_rate=0.05), decay))
        return averaged_params(state)

    batched = jax.jit(jax.vmap(final_average))(jnp.asarray(decays))
    trajectory = np_plain(NumpyAdam(0.05))
    for i, decay in enumerate(decays):
        assert_trees_close({k: batched[k][i] for k in KEYS}, np_average(trajectory, decay)[-1])


def test_averaged_params_finds_the_average_in_nested_states():
    opt_chain = gx.chain(gx.scale(1.0), with_param_average(gx.sgd(learning_rate=0.1), 0.5))
    inside_lookahead = lookahead(with_param_average(gx.sgd(learning_rate=0.1), 0.5), 3)
    nested = with_param_average(with_param_average(gx.sgd(learning_rate=0.1), 0.5), 0.9)
    trajectory = np_plain(NumpySGD(0.1))
    for opt, decay in ((opt_chain, 0.5), (nested, 0.9)):
        _, states = run(opt, "jit", steps=4)
        assert_trees_close(averaged_params(states[-1]), np_average(trajectory[:4], decay)[-1])
    # Lookahead with sync_period 3 and 2 steps has not synchronised yet: plain SGD so far.
    _, states = run(inside_lookahead, "eager", steps=2)
    assert_trees_close(averaged_params(states[-1]), np_average(trajectory[:2], 0.5)[-1])


def test_averaged_params_errors():
    params = jax_params()
    with pytest.raises(ValueError, match="holds no parameter average"):
        averaged_params(gx.adam().init(params))
    with pytest.raises(ValueError, match="holds no parameter average"):
        averaged_params(())
    both = gx.parallel(
        with_param_average(gx.identity(), 0.5),
        with_param_average(gx.identity(), 0.9),
        combine=lambda a, b: a,
    )
    with pytest.raises(ValueError, match="2 parameter averages"):
        averaged_params(both.init(params))


# --------------------------------------------------------------------------------------------
# Both wrappers: dtypes, empty trees and scalar leaves, params required, argument checks


WRAPPERS = {
    "lookahead": lambda inner: lookahead(inner, 2, 0.5),
    "with_param_average": lambda inner: with_param_average(inner, 0.9),
}


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("wrapper", sorted(WRAPPERS))
def test_dtypes_are_kept(wrapper, dtype):
    opt = WRAPPERS[wrapper](gx.adam(learning_rate=0.01))
    params = {"a": jnp.ones((3,), dtype), "b": jnp.asarray(2.0, dtype), "c": None}
    grads = {"a": jnp.full((3,), 0.5, dtype), "b": jnp.asarray(-1.0, dtype), "c": None}
    state = opt.init(params)
    step = jax.jit(opt.update)
    for _ in range(3):
        updates, state = step(grads, state, params)
        params = gx.apply_updates(params, updates)
    for k in ("a", "b"):
        assert updates[k].dtype == dtype
        assert params[k].dtype == dtype
    kept = state.slow if wrapper == "lookahead" else state.average
    assert kept["a"].dtype == dtype and kept["b"].dtype == dtype and kept["c"] is None


@pytest.mark.parametrize("wrapper", sorted(WRAPPERS))
def test_empty_tree_and_scalar_leaf(wrapper):
    opt = WRAPPERS[wrapper](gx.sgd(learning_rate=0.5))
    updates, _ = jax.jit(opt.update)({}, opt.init({}), {})
    assert updates == {}
    params = jnp.asarray(1.0)
    state = opt.init(params)
    for _ in range(2):
        updates, state = opt.update(jnp.asarray(1.0), state, params)
        params = gx.apply_updates(params, updates)
    assert updates.shape == () and params.shape == ()
    if wrapper == "lookahead":
        # Fast 1 -> 0.5 -> 0, then slow 1 + 0.5 (0 - 1) = 0.5 and the fast weights follow.
        assert math.isclose(float(params), 0.5, rel_tol=1e-12)
    else:
        # 0.9 (0.9 * 1 + 0.1 * 0.5) + 0.1 * 0, and the parameters are plain SGD's.
        assert math.isclose(float(params), 0.0, abs_tol=1e-12)
        assert math.isclose(float(averaged_params(state)), 0.855, rel_tol=1e-12)


@pytest.mark.parametrize("wrapper", sorted(WRAPPERS))
def test_update_needs_params(wrapper):
    opt = WRAPPERS[wrapper](gx.sgd())
    params = jax_params()
    state = opt.init(params)
    with pytest.raises(ValueError, match="needs the parameters"):
        opt.update(jax_grad(params), state)


@pytest.mark.parametrize("wrapper", sorted(WRAPPERS))
def test_mismatched_updates_name_the_path(wrapper):
    opt = WRAPPERS[wrapper](gx.identity())
    params = jax_params()
    grads = jax_grad(params)
    del grads["b"]
    with pytest.raises(ValueError, match=r"\['b'\]"):
        opt.update(grads, opt.init(params), params)


@pytest.mark.parametrize("sync_period", [0, -3, 2.5, math.nan, np.float64(0.5)])
def test_lookahead_rejects_bad_sync_period_values(sync_period):
    with pytest.raises(ValueError, match="`sync_period`"):
        lookahead(gx.sgd(), sync_period)


@pytest.mark.parametrize("sync_period", [True, "3", None, [3], np.asarray([3])])
def test_lookahead_rejects_sync_periods_of_a_wrong_type(sync_period):
    with pytest.raises(TypeError, match="`sync_period`"):
        lookahead(gx.sgd(), sync_period)


@pytest.mark.parametrize("sync_period", [np.int64(3), 3.0, np.float64(3.0)])
def test_lookahead_accepts_numpy_ints_and_whole_floats(sync_period):
    """A whole float (as configs write it) is the same period as the int."""
    params = jax_params()
    grads = jax_grad(params)
    expected = lookahead(gx.sgd(0.1), 3)
    got = lookahead(gx.sgd(0.1), sync_period)
    state_e, state_g = expected.init(params), got.init(params)
    for _ in range(4):
        upd_e, state_e = expected.update(grads, state_e, params)
        upd_g, state_g = got.update(grads, state_g, params)
        for a, b in zip(jax.tree_util.tree_leaves(upd_e), jax.tree_util.tree_leaves(upd_g),
                        strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("alpha", [-0.1, 1.5, math.nan, jnp.asarray(2.0)])
def test_lookahead_rejects_bad_alpha(alpha):
    with pytest.raises(ValueError, match="alpha"):
        lookahead(gx.sgd(), 3, alpha)


@pytest.mark.parametrize("decay", [-0.01, 1.01, math.nan, jnp.asarray(-1.0)])
def test_param_average_rejects_bad_decay(decay):
    with pytest.raises(ValueError, match="decay"):
        with_param_average(gx.sgd(), decay)


@pytest.mark.parametrize("wrapper", sorted(WRAPPERS))
def test_inner_must_be_a_transformation(wrapper):
    with pytest.raises(TypeError, match="not a GradientTransformation"):
        WRAPPERS[wrapper](gx.sgd)


def test_states_are_trees_of_arrays():
    params = jax_params()
    for opt, cls in (
        (lookahead(gx.adam(), 3), LookaheadState),
        (with_param_average(gx.adam(), 0.9), ParamAverageState),
    ):
        state = opt.init(params)
        assert isinstance(state, cls)
        leaves = jax.tree_util.tree_leaves(state)
        assert leaves and all(isinstance(x, jax.Array) for x in leaves)
        _, new_state = opt.update(jax_grad(params), state, params)
        assert jax.tree_util.tree_structure(new_state) == jax.tree_util.tree_structure(state)

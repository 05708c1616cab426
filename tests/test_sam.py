"""gx.sam against pytorch-optimizer 4.1.0's SAM (first_step, then second_step with the gradient
at the perturbed point) around torch.optim.SGD and Adam, and against optax.contrib.sam where
the two are the same algorithm.

The runs minimise a fixed loss that is not quadratic (a tanh term), so the gradient at the
perturbed point differs from the one at the parameters and every later gradient depends on
where each step landed: a wrong perturbation, a wrong way back or an outer step taken from the
wrong point changes the whole trajectory.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx as gx
from tests import helpers

STEPS = 10
RTOL = 1e-9

# --------------------------------------------------------------------------------------------
# The problem: parameters, and a loss in JAX and in torch.


PARAMS, CENTRE, CURVATURE = helpers.quadratic_problem()
KEYS = sorted(PARAMS)  # the order of jax's leaves, and of the torch parameter list


def jax_loss(p, centre=None):
    centre = CENTRE if centre is None else centre
    return sum(
        jnp.sum(0.5 * CURVATURE[k] * (p[k] - centre[k]) ** 2 + 0.7 * jnp.tanh(2.0 * p[k]))
        for k in KEYS
    )


jax_grad = jax.grad(jax_loss)


def jax_params() -> dict:
    return {k: jnp.asarray(v, dtype=jnp.float64) for k, v in PARAMS.items()}


def torch_loss(torch, tensors):
    return sum(
        torch.sum(
            0.5 * torch.from_numpy(np.asarray(CURVATURE[k])) * (t - torch.from_numpy(
                np.asarray(CENTRE[k]))) ** 2
            + 0.7 * torch.tanh(2.0 * t)
        )
        for k, t in zip(KEYS, tensors, strict=True)
    )


# --------------------------------------------------------------------------------------------
# The reference: pytorch_optimizer.SAM, stepped as its docs say.


def _float64_norm(torch):
    """pytorch-optimizer's get_global_gradient_norm (the squared global norm, ASAM-weighted for
    adaptive groups) without its one cast to float32: its SAM computes the perturbation's scale
    in float32 whatever the parameters' dtype, with torch's float32 sqrt, which is not correctly
    rounded in this build (an ulp off in about 15% of cases). No float64 computation can match
    that to 1e-9, so the parity runs take the reference's norm in float64."""

    def norm(param_groups, device=None, *, weight_adaptive=False):
        del device
        squares = []
        for group in param_groups:
            adaptive = weight_adaptive and group.get("adaptive", False)
            for p in group["params"]:
                if p.grad is not None:
                    g = p.grad * p.abs() if adaptive else p.grad
                    squares.append(torch.sum(g * g))
        return torch.stack(squares).sum().reshape(1)

    return norm


def torch_sam_run(torch, base: str, rho: float, adaptive: bool, steps: int = STEPS) -> list:
    """The parameters after each of ``steps`` SAM steps of the reference."""
    from pytorch_optimizer import SAM

    tensors = [torch.tensor(PARAMS[k], dtype=torch.float64, requires_grad=True) for k in KEYS]
    cls, kwargs = TORCH_BASES[base](torch)
    opt = SAM(tensors, cls, rho=rho, adaptive=adaptive, **kwargs)

    def closure():
        opt.zero_grad()
        loss = torch_loss(torch, tensors)
        loss.backward()
        return loss

    out = []
    for _ in range(steps):
        closure()  # the gradient at the parameters, then the step
        opt.step(closure)
        out.append({k: t.detach().numpy().copy() for k, t in zip(KEYS, tensors, strict=True)})
    return out


TORCH_BASES = {
    "sgd": lambda torch: (torch.optim.SGD, {"lr": 0.1}),
    "sgd_momentum": lambda torch: (
        torch.optim.SGD, {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01}
    ),
    "adam": lambda torch: (torch.optim.Adam, {"lr": 0.05}),
}
GX_BASES = {
    "sgd": lambda: gx.sgd(0.1),
    "sgd_momentum": lambda: gx.sgd(0.1, momentum=0.9, weight_decay=0.01),
    "adam": lambda: gx.adam(0.05),
}


# --------------------------------------------------------------------------------------------
# gradtx runners: one update per SAM step (opaque) or two (transparent, sync_period=2).


def _grad_fn(p, i):
    del i
    return jax_grad(p)


def run_gx(opt, steps: int, *, opaque: bool, jit: bool, params=None) -> list:
    """The parameters after each SAM step: every call in opaque mode, every second call in
    transparent mode."""
    params = jax_params() if params is None else params
    state = opt.init(params)

    def step(p, s):
        updates, s = opt.update(jax_grad(p), s, p, grad_fn=_grad_fn)
        return gx.apply_updates(p, updates), s

    if jit:
        step = jax.jit(step)
    out = []
    calls = steps if opaque else 2 * steps
    for t in range(calls):
        params, state = step(params, state)
        if opaque or t % 2 == 1:
            out.append(params)
    return out


def assert_runs_close(got: list, want: list, rtol: float = RTOL, atol: float = 0.0) -> None:
    assert len(got) == len(want)
    for t, (g, w) in enumerate(zip(got, want, strict=True)):
        for k in KEYS:
            np.testing.assert_allclose(
                np.asarray(g[k]), w[k], rtol=rtol, atol=atol, err_msg=f"step {t + 1}, leaf {k}"
            )


# --------------------------------------------------------------------------------------------
# Parity with pytorch_optimizer.SAM


@pytest.fixture
def float64_reference(torch_float64, monkeypatch):
    import pytorch_optimizer.optimizer.sam as reference_module

    monkeypatch.setattr(reference_module, "get_global_gradient_norm", _float64_norm(torch_float64))
    return torch_float64


@pytest.mark.parametrize("base", list(TORCH_BASES))
@pytest.mark.parametrize("rho", [0.05, 0.5])
@pytest.mark.parametrize("adaptive", [False, True], ids=["sam", "asam"])
def test_equals_pytorch_optimizer_sam(float64_reference, base, rho, adaptive):
    """Both modes, jitted and eager, equal the reference step for step to 1e-9 (eager runs on
    a part of the grid: they take long and trace the same code)."""
    want = torch_sam_run(float64_reference, base, rho, adaptive)
    for opaque in (True, False):
        opt = gx.sam(GX_BASES[base](), rho=rho, adaptive=adaptive, opaque_mode=opaque)
        assert_runs_close(run_gx(opt, STEPS, opaque=opaque, jit=True), want)
        if rho == 0.05:
            assert_runs_close(run_gx(opt, STEPS, opaque=opaque, jit=False), want)


@pytest.mark.parametrize("adaptive", [False, True], ids=["sam", "asam"])
def test_close_to_the_unpatched_reference(torch_float64, adaptive):
    """Against the reference as it is, whose perturbation scale is float32: the trajectories
    agree to the float32 precision of that scale (measured: 1e-6 at most over this grid)."""
    for base in ("sgd_momentum", "adam"):
        want = torch_sam_run(torch_float64, base, 0.5, adaptive)
        opt = gx.sam(GX_BASES[base](), rho=0.5, adaptive=adaptive, opaque_mode=True)
        assert_runs_close(run_gx(opt, STEPS, opaque=True, jit=True), want, rtol=1e-5)


def test_default_rho_is_the_reference_default(float64_reference):
    want = torch_sam_run(float64_reference, "sgd", 0.05, False)
    assert_runs_close(run_gx(gx.sam(gx.sgd(0.1)), STEPS, opaque=False, jit=True), want)


def test_transparent_mode_visits_the_perturbed_point():
    """The first call of each period moves the parameters by e(g, w) = rho g / ||g||, and the
    cache keeps the parameters it started from."""
    params = jax_params()
    opt = gx.sam(gx.sgd(0.1), rho=0.3, eps=0.0)
    state = opt.init(params)
    g = jax_grad(params)
    updates, state = opt.update(g, state, params)
    norm = np.sqrt(sum(np.sum(np.asarray(g[k]) ** 2) for k in KEYS))
    for k in KEYS:
        np.testing.assert_allclose(updates[k], 0.3 * np.asarray(g[k]) / norm, rtol=1e-12)
        np.testing.assert_array_equal(state.cache[k], params[k])
    assert int(state.steps_since_sync) == 1


# --------------------------------------------------------------------------------------------
# Parity with optax.contrib.sam


def _optax_adv(rho, momentum=None):
    return optax.chain(optax.contrib.normalize(), optax.sgd(rho, momentum=momentum))


def _run_calls(opt, calls: int, *, jit: bool):
    """The parameters and the state after each call."""
    params = jax_params()
    state = opt.init(params)

    def step(p, s):
        updates, s = opt.update(jax_grad(p), s, p, grad_fn=_grad_fn)
        return gx.apply_updates(p, updates), s

    if jit:
        step = jax.jit(step)
    out = []
    for _ in range(calls):
        params, state = step(params, state)
        out.append((params, state))
    return out


def _assert_trees_close(got, want, rtol=RTOL, what=""):
    got_leaves, got_def = jax.tree_util.tree_flatten(got)
    want_leaves, want_def = jax.tree_util.tree_flatten(want)
    assert len(got_leaves) == len(want_leaves), (what, got_def, want_def)
    for a, b in zip(got_leaves, want_leaves, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=1e-14,
                                   err_msg=what)


@pytest.mark.parametrize("opaque", [False, True], ids=["transparent", "opaque"])
@pytest.mark.parametrize("sync_period", [2, 3])
@pytest.mark.parametrize("reset_state", [True, False])
def test_equals_optax_with_the_same_adv_optimizer(opaque, sync_period, reset_state):
    """The same outer and adversarial optimizers (the adversarial one with momentum, so its
    state and its reset matter) in both: parameters and state equal after every call."""
    kwargs = dict(sync_period=sync_period, reset_state=reset_state, opaque_mode=opaque)
    ours = gx.sam(optax.adam(0.05), _optax_adv(0.2, momentum=0.5), **kwargs)
    theirs = optax.contrib.sam(optax.adam(0.05), _optax_adv(0.2, momentum=0.5), **kwargs)
    calls = 4 * sync_period if not opaque else 6
    got = _run_calls(ours, calls, jit=True)
    want = _run_calls(theirs, calls, jit=True)
    for t, ((p, s), (p_ref, s_ref)) in enumerate(zip(got, want, strict=True)):
        _assert_trees_close(p, p_ref, what=f"params after call {t + 1}")
        for field in ("opt_state", "adv_state", "cache", "steps_since_sync"):
            _assert_trees_close(getattr(s, field), getattr(s_ref, field),
                                what=f"{field} after call {t + 1}")


@pytest.mark.parametrize("opaque", [False, True], ids=["transparent", "opaque"])
@pytest.mark.parametrize("sync_period", [2, 3])
def test_built_in_ascent_equals_optax_normalize_sgd(opaque, sync_period):
    """The built-in ascent with eps=0 is Optax's chain(normalize(), sgd(rho)), also over
    several ascent steps."""
    kwargs = dict(sync_period=sync_period, opaque_mode=opaque)
    ours = gx.sam(gx.sgd(0.1, momentum=0.9), rho=0.2, eps=0.0, **kwargs)
    theirs = optax.contrib.sam(optax.sgd(0.1, momentum=0.9), _optax_adv(0.2), **kwargs)
    calls = 4 * sync_period if not opaque else 6
    got = _run_calls(ours, calls, jit=False)
    want = _run_calls(theirs, calls, jit=False)
    for t, ((p, _), (p_ref, _)) in enumerate(zip(got, want, strict=True)):
        _assert_trees_close(p, p_ref, what=f"params after call {t + 1}")


@pytest.mark.parametrize("opaque", [False, True], ids=["transparent", "opaque"])
def test_sync_period_one_is_the_optimizer_alone(opaque):
    """(Optax's transparent mode differs here: its cache is one call old.)"""
    got = _run_calls(gx.sam(gx.adam(0.05), sync_period=1, opaque_mode=opaque), 5, jit=False)
    want = _run_calls(gx.adam(0.05), 5, jit=False)
    for (p, _), (p_ref, _) in zip(got, want, strict=True):
        _assert_trees_close(p, p_ref, rtol=1e-14)


# --------------------------------------------------------------------------------------------
# vmap, batch_axis_name, extra arguments, multi_tensor, dtypes


@pytest.mark.parametrize("opaque", [False, True], ids=["transparent", "opaque"])
def test_vmap_over_independent_runs(opaque):
    """A batch of three starting points under jit(vmap(step)) equals three separate runs."""
    opt = gx.sam(gx.adam(0.05), rho=0.1, adaptive=True, opaque_mode=opaque)
    starts = [jax.tree_util.tree_map(lambda x, c=c: x + c, jax_params()) for c in (0.0, 0.3, -1)]
    batch = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *starts)
    state = jax.vmap(opt.init)(batch)

    @jax.jit
    @jax.vmap
    def step(p, s):
        updates, s = opt.update(jax_grad(p), s, p, grad_fn=_grad_fn)
        return gx.apply_updates(p, updates), s

    for _ in range(STEPS if opaque else 2 * STEPS):
        batch, state = step(batch, state)
    for i, start in enumerate(starts):
        want = run_gx(opt, STEPS, opaque=opaque, jit=True, params=start)[-1]
        _assert_trees_close(jax.tree_util.tree_map(lambda x, i=i: x[i], batch), want)


def _shard_centres(n: int = 4):
    rng = np.random.default_rng(5)
    return {k: jnp.asarray(CENTRE[k] + rng.normal(size=(n, *np.shape(CENTRE[k])))) for k in KEYS}


def test_batch_axis_name_averages_the_adversarial_gradient():
    """Four data shards under vmap(axis_name="batch"): with batch_axis_name the step equals
    single-device SAM on the mean loss of the shards; without it each shard perturbs with its
    own gradient and the shards drift apart."""
    centres = _shard_centres()
    mean_centre = jax.tree_util.tree_map(lambda c: jnp.mean(c, axis=0), centres)
    rho = 0.3

    def run_sharded(opt):
        def step(p, s, centre):
            local = jax.grad(jax_loss)
            g = jax.lax.pmean(local(p, centre), "batch")
            updates, s = opt.update(g, s, p, grad_fn=lambda q, i: local(q, centre))
            return gx.apply_updates(p, updates), s

        step = jax.jit(jax.vmap(step, in_axes=(0, 0, 0), axis_name="batch"))
        params = jax.tree_util.tree_map(lambda x: jnp.stack([x] * 4), jax_params())
        state = jax.vmap(opt.init)(params)
        for _ in range(STEPS):
            params, state = step(params, state, centres)
        return params

    averaged = run_sharded(gx.sam(gx.sgd(0.1), rho=rho, opaque_mode=True, batch_axis_name="batch"))
    opt = gx.sam(gx.sgd(0.1), rho=rho, opaque_mode=True)
    # The mean of the shards' losses has the gradient of the loss at the mean centre.
    params, state = jax_params(), opt.init(jax_params())
    for _ in range(STEPS):
        g = jax.grad(jax_loss)(params, mean_centre)
        updates, state = opt.update(
            g, state, params, grad_fn=lambda q, i: jax.grad(jax_loss)(q, mean_centre)
        )
        params = gx.apply_updates(params, updates)
    for i in range(4):
        _assert_trees_close(jax.tree_util.tree_map(lambda x, i=i: x[i], averaged), params)

    separate = run_sharded(opt)
    assert not np.allclose(separate["w"][0], separate["w"][1], rtol=1e-6)




@pytest.mark.parametrize("opaque", [False, True], ids=["transparent", "opaque"])
def test_extra_args_reach_both_optimizers(opaque):
    opt = gx.sam(gx.chain(gx.sgd(1.0), helpers.scale_by_value()),
                 gx.chain(gx.sgd(1.0), helpers.scale_by_value()), opaque_mode=opaque)
    params = {"w": jnp.array([1.0, 2.0])}
    state = opt.init(params)
    g = {"w": jnp.array([0.5, -1.0])}
    grad_fn = lambda p, i: {"w": jnp.array([2.0, 3.0])}  # noqa: E731
    updates, state = opt.update(g, state, params, grad_fn=grad_fn, value=3.0)
    # Opaque: ascent -(-3 g), then the step -3 grad_fn. Transparent: the ascent 3 g.
    want = [-6.0, -9.0] if opaque else [1.5, -3.0]
    np.testing.assert_allclose(updates["w"], want)
    with pytest.raises(ValueError, match="`value`"):
        opt.update(g, opt.init(params), params, grad_fn=grad_fn)


def test_missing_grad_fn_is_named():
    opt = gx.sam(gx.sgd(0.1), opaque_mode=True)
    params = jax_params()
    state = opt.init(params)
    with pytest.raises(ValueError, match="`grad_fn`"):
        opt.update(jax_grad(params), state, params)
    with pytest.raises(ValueError, match="`grad_fn`"):
        opt.update(jax_grad(params), state, params, grad_fn=None)
    with pytest.raises(TypeError, match="`grad_fn`"):
        opt.update(jax_grad(params), state, params, grad_fn=3.0)
    with pytest.raises(ValueError, match="grad_fn"):
        opt.update(jax_grad(params), state, params, grad_fn=lambda p, i: {"w": p["w"]})


@pytest.mark.parametrize("opaque", [False, True], ids=["transparent", "opaque"])
def test_params_are_needed(opaque):
    opt = gx.sam(gx.sgd(0.1), opaque_mode=opaque)
    params = jax_params()
    with pytest.raises(ValueError, match="params"):
        opt.update(jax_grad(params), opt.init(params), None, grad_fn=_grad_fn)


def test_multi_tensor_runs_transparent_mode():
    opt = gx.sam(gx.adam(0.05), rho=0.2, adaptive=True)
    assert gx.is_flattenable(opt)
    got = run_gx(gx.multi_tensor(opt), 4, opaque=False, jit=True)
    want = run_gx(opt, 4, opaque=False, jit=True)
    for g, w in zip(got, want, strict=True):
        _assert_trees_close(g, w)
    # grad_fn takes the caller's tree, which multi_tensor would pack.
    assert not gx.is_flattenable(gx.sam(gx.adam(0.05), opaque_mode=True))


def test_dtypes_are_kept():
    params = {"w": jnp.array([1.0, -2.0], jnp.float32), "b": jnp.array([0.5], jnp.float32)}
    opt = gx.sam(gx.adam(0.05), adaptive=True)
    state = opt.init(params)
    g = jax.tree_util.tree_map(lambda x: x * 2, params)
    for _ in range(2):
        updates, state = jax.jit(opt.update)(g, state, params)
        assert all(u.dtype == jnp.float32 for u in jax.tree_util.tree_leaves(updates))
        params = gx.apply_updates(params, updates)
    assert all(c.dtype == jnp.float32 for c in jax.tree_util.tree_leaves(state.cache))
    assert state.steps_since_sync.dtype == jnp.int32
    assert gx.tree_get(state, "steps_since_sync") is state.steps_since_sync


# --------------------------------------------------------------------------------------------
# Bad arguments


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        (dict(rho=-0.1), ValueError, "rho"),
        (dict(rho=float("nan")), ValueError, "rho"),
        (dict(rho="0.1"), TypeError, "rho"),
        (dict(rho=lambda count: 0.1), TypeError, "rho"),
        (dict(sync_period=0), ValueError, "sync_period"),
        (dict(sync_period=1.5), ValueError, "sync_period"),
        (dict(sync_period=True), TypeError, "sync_period"),
        (dict(reset_state=1), TypeError, "reset_state"),
        (dict(opaque_mode="yes"), TypeError, "opaque_mode"),
        (dict(adaptive=None), TypeError, "adaptive"),
        (dict(eps=-1e-12), ValueError, "eps"),
        (dict(batch_axis_name="batch"), ValueError, "batch_axis_name"),
        (dict(batch_axis_name=3, opaque_mode=True), TypeError, "batch_axis_name"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_bad_arguments_are_named(kwargs, error, name):
    with pytest.raises(error, match=f"`{name}`"):
        gx.sam(gx.sgd(0.1), **kwargs)


@pytest.mark.parametrize(
    "kwargs, name",
    [(dict(rho=0.05), "rho"), (dict(adaptive=True), "adaptive"), (dict(eps=1e-8), "eps")],
    ids=["rho", "adaptive", "eps"],
)
def test_built_in_ascent_arguments_with_an_adv_optimizer_raise(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        gx.sam(gx.sgd(0.1), _optax_adv(0.05), **kwargs)


def test_transformations_are_checked():
    with pytest.raises(TypeError, match="sam"):
        gx.sam(gx.sgd)
    with pytest.raises(TypeError, match="sam"):
        gx.sam(gx.sgd(0.1), optax.sgd)

"""Every registered optimizer's parameter trajectory equals torch.optim's to rtol 1e-9 in
float64 over 50 steps jitted (the first 10 eagerly), across the registry's whole
hyperparameter grid (SOAP with its QR refresh in float64 on both sides:
``OptimizerInfo.torch_patch``).

The comparison is elementwise ``|ours - torch| <= 1e-9 |torch| + a max(1, max|leaf|)``, with
``a = OptimizerInfo.parity_atol`` (1e-12 but for SOAP, whose eigendecompositions and QRs,
float64 on both sides but different LAPACKs, take 1e-10; the registry says why). The absolute
term matters only for an entry that passes near zero by cancellation (a parameter pulled to 0
by weight decay, say): there a last-bit difference in the operands of ``p - lr u`` is a large
*relative* difference of a tiny result. At 1e-12 it is 1000 times smaller than the relative
bound on a typical O(1) entry."""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradtx.optimizers.registry import with_torch_equivalent
from tests import helpers

RTOL = 1e-9
# Eager runs (a Python loop of un-jitted steps) take the first EAGER_STEPS steps: they show
# that the eager path computes what the jitted one does (the same update function, traced or
# not), which the jitted runs then check over all 50 steps. Eager dispatch is what made the
# sweep slow: op by op, 50 steps of every point of every grid.
EAGER_STEPS = 10
# The eager grid runs for the first and the last static combination of each entry (all
# switches off, and the last of the product or of the pairs): every numeric grid point, on
# the eager path, with the switches both ways. The jitted grid runs every combination. The two
# paths are one update function, traced or not; running every combination eagerly too was a
# fifth of CI's time (SOAP's eager steps alone, 4 minutes) and found nothing the jitted
# runs and these did not.
def _eager_combos(combos):
    return [combos[0], combos[-1]] if len(combos) > 1 else combos
OPTIMIZERS = with_torch_equivalent()
PARAMS = helpers.make_params()
GRADS = helpers.make_gradients(PARAMS)


@functools.cache
def _data(name):
    """The parameters, the gradient steps and the steps stacked, as the optimizer takes them
    (``params_like``: Muon gets the same entries as matrices)."""
    info = next(i for i in OPTIMIZERS if i.name == name)
    grads = [info.params_like(g) for g in GRADS]
    return info.params_like(PARAMS), grads, helpers.stack(grads)


def _static_cases():
    for info in OPTIMIZERS:
        combos = helpers.static_points(info)
        eager = _eager_combos(combos)
        for combo in combos:
            label = helpers.label(combo)
            for mode in ("jit", "eager") if combo in eager else ("jit",):
                yield pytest.param(info, combo, mode, id=f"{info.name}[{label}]-{mode}")


def _assert_matches(torch_traj, ours, index, kwargs, atol_scale):
    """Each step of ``torch_traj`` against ours (point ``index`` of a vmapped run, or the only
    one), a leaf over all steps at once."""
    for key in torch_traj[0]:
        got = np.asarray(ours[key] if index is None else ours[key][index])
        want = np.stack([expected[key] for expected in torch_traj])
        helpers.assert_close_per_step(got[:len(want)], want,
                                      f"leaf {key!r}, hyperparameters {kwargs}",
                                      rtol=RTOL, atol_scale=atol_scale)


@pytest.mark.parametrize(("info", "static", "mode"), list(_static_cases()))
def test_grid_matches_torch(info, static, mode, torch_float64):
    """The full product of the numeric grid, vmapped (hyperparameters traced), per bool combo:
    jitted for every combo, eagerly for two (see ``_eager_combos``)."""
    _, numeric = helpers.split_grid(info)
    params, grads, grads_stacked = _data(info.name)
    points = helpers.grid_points(info, numeric, static)
    hyper = {k: jnp.asarray([p[k] for p in points], jnp.float64) for k in numeric}

    if mode == "jit":
        def run(hp):
            return helpers.run_scan(info.build(**hp, **static), params, grads_stacked)
        traj = jax.jit(jax.vmap(run))(hyper)
    else:
        def run(hp):
            return helpers.run_steps(info.build(**hp, **static), params, grads[:EAGER_STEPS])
        traj = jax.vmap(run)(hyper)
    traj = jax.tree_util.tree_map(np.asarray, traj)

    steps = grads if mode == "jit" else grads[:EAGER_STEPS]
    for i, point in enumerate(points):
        kwargs = {**point, **static}
        expected = helpers.torch_trajectory(torch_float64, info, kwargs, params, steps)
        _assert_matches(expected, traj, i, kwargs, info.parity_atol)


def _takes_its_own_branch(point) -> bool:
    """A value gradtx may branch on while building the step, when it is a Python number: 0
    (a weight decay or momentum of 0 leaves its step out), None and the switches. Any other
    Python number is folded into the same arithmetic a traced one runs through, which the
    grid checks at every value."""
    return any(v is None or isinstance(v, bool) or v == 0 for v in point.values())


def _python_float_cases():
    for info in OPTIMIZERS:
        static = helpers.static_points(info)
        eager = [{}] + _eager_combos(static)
        special = [p for p in helpers.one_at_a_time(info) if not p or _takes_its_own_branch(p)]
        points = special + [p for p in static if p not in special]
        for point in points:
            if not info.constraint(point):
                continue
            label = helpers.label(point) or "defaults"
            yield pytest.param(info, point, point in eager, id=f"{info.name}[{label}]")


@pytest.mark.parametrize(("info", "kwargs", "eager"), list(_python_float_cases()))
def test_python_floats_match_torch(info, kwargs, eager, torch_float64):
    """Hyperparameters as plain Python numbers, the path most users take: the defaults, every
    static combination, and each value that takes a branch of its own as a Python number
    (``_takes_its_own_branch``), jitted; eagerly too at the defaults and the eager grid's two
    static combinations."""
    params, grads, grads_stacked = _data(info.name)
    expected = helpers.torch_trajectory(torch_float64, info, kwargs, params, grads)
    opt = info.build(**kwargs)
    if eager:
        _assert_matches(expected[:EAGER_STEPS],
                        helpers.run_steps(opt, params, grads[:EAGER_STEPS]), None, kwargs,
                        info.parity_atol)
    compiled = jax.jit(lambda p, g: helpers.run_scan(opt, p, g))(params, grads_stacked)
    _assert_matches(expected, compiled, None, kwargs, info.parity_atol)


@pytest.mark.parametrize("info", OPTIMIZERS, ids=lambda i: i.name)
def test_schedule_matches_torch_lambda_lr(info, torch_float64):
    """A schedule callable as learning rate equals torch's LambdaLR stepped once per step."""
    torch = torch_float64
    base = 0.05
    params, grads, grads_stacked = _data(info.name)

    def factor(count):
        return 0.95**count

    keys = sorted(params)
    tensors = [torch.tensor(params[k], requires_grad=True) for k in keys]
    topt = helpers.torch_optimizer(torch, info, tensors, {"learning_rate": base})
    sched = torch.optim.lr_scheduler.LambdaLR(topt, lr_lambda=factor)
    expected = []
    for g in grads:
        for tensor, k in zip(tensors, keys, strict=True):
            tensor.grad = torch.tensor(g[k])
        helpers.torch_step(torch, topt)
        sched.step()
        expected.append({k: t.detach().numpy().copy() for k, t in zip(keys, tensors, strict=True)})

    opt = info.build(learning_rate=lambda count: base * factor(count))
    _assert_matches(expected[:EAGER_STEPS], helpers.run_steps(opt, params, grads[:EAGER_STEPS]),
                    None, "schedule", info.parity_atol)
    compiled = jax.jit(lambda p, g: helpers.run_scan(opt, p, g))(params, grads_stacked)
    _assert_matches(expected, compiled, None, "schedule", info.parity_atol)


def test_all_pairs_covers_every_pair_of_values():
    """The reduced sweep (``grid_strength=2``) still has every value of every argument next to
    every value of every other one, in far fewer points than the product."""
    axes = {"a": [0, 1, 2], "b": [0, 1], "c": [0, 1], "d": [5, 6], "e": [0, 1], "f": [1, 2]}
    points = helpers.all_pairs(axes)
    assert len(points) < len(helpers.product(axes)) // 4
    for x, y in itertools.combinations(axes, 2):
        assert {(p[x], p[y]) for p in points} == set(itertools.product(axes[x], axes[y]))
    reduced = [i.name for i in OPTIMIZERS if i.grid_strength == 2]
    assert set(reduced) == {"prodigy", "dadapt_adamw", "ademamix", "mars", "soap"}


def test_all_pairs_keeps_to_allowed_points():
    """With a constraint, only allowed points are run, and every pair that some allowed point
    holds is still covered (pytorch-optimizer's fixed_decay without weight_decouple, say)."""
    axes = {"decouple": [False, True], "fixed": [False, True], "a": [0, 1, 2], "b": [0, 1]}

    def allowed(p):
        return p["decouple"] or not p["fixed"]

    points = helpers.all_pairs(axes, allowed)
    assert all(allowed(p) for p in points)
    possible = [p for p in helpers.product(axes) if allowed(p)]
    for x, y in itertools.combinations(axes, 2):
        assert {(p[x], p[y]) for p in points} == {(p[x], p[y]) for p in possible}

"""The momentum torch's CyclicLR and OneCycleLR cycle (``cycle_momentum=True``, their default).

1. The learning rate and the momentum (SGD's ``momentum``, Adam's ``betas[0]``) torch sets at
   every step equal ``cyclic_schedule`` / ``one_cycle_schedule`` and the momentum schedules, for
   a grid of modes, step sizes and phase options over several cycles.
2. ``gx.sgd`` and ``gx.adam`` given both schedules follow the parameter trajectory of torch's
   SGD / Adam driven by the scheduler, in float64, jitted and eagerly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx as gx
from gradtx.schedules import (
    cyclic_schedule,
    one_cycle_momentum_schedule,
    one_cycle_schedule,
)
from tests import helpers

PARAMS = helpers.make_params()
GRADS = helpers.make_gradients(PARAMS, steps=60)


class MomentumCase(NamedTuple):
    id: str
    learning_rate: Callable  # () -> gradtx schedule
    momentum: Callable  # () -> gradtx schedule
    scheduler: Callable  # (lr_scheduler module, optimizer) -> torch scheduler
    steps: int


def cyclic_case(label, up, down=None, mode="triangular", gamma=1.0, scale_fn=None,
                scale_mode="cycle", base_m=0.8, max_m=0.9):
    cycle = dict(step_size_up=up, step_size_down=down, mode=mode, gamma=gamma,
                 scale_fn=scale_fn, scale_mode=scale_mode)
    total = up + (up if down is None else down)
    return MomentumCase(
        f"CyclicLR-{label}",
        lambda: cyclic_schedule(0.01, 0.2, **cycle),
        # The momentum cycles the other way: from max_momentum down to base_momentum.
        lambda: cyclic_schedule(max_m, base_m, **cycle),
        lambda s, opt: s.CyclicLR(opt, base_lr=0.01, max_lr=0.2, base_momentum=base_m,
                                  max_momentum=max_m, **cycle),
        3 * total + 2,  # about three cycles
    )


def one_cycle_case(label, total, base_m=0.85, max_m=0.95, **phases):
    return MomentumCase(
        f"OneCycleLR-{label}",
        lambda: one_cycle_schedule(0.5, total, **phases),
        lambda: one_cycle_momentum_schedule(total, base_m, max_m, **phases),
        lambda s, opt: s.OneCycleLR(opt, max_lr=0.5, total_steps=total, base_momentum=base_m,
                                    max_momentum=max_m, **phases),
        total,
    )


CASES = [
    cyclic_case("triangular", 5),
    cyclic_case("triangular-asymmetric", 4, 7),
    cyclic_case("triangular-sawtooth", 6, 0),
    cyclic_case("triangular2", 5, 3, "triangular2"),
    cyclic_case("triangular2-asymmetric", 3, 6, "triangular2", base_m=0.7, max_m=0.95),
    cyclic_case("exp_range", 6, None, "exp_range", 0.97),
    cyclic_case("exp_range-asymmetric", 7, 4, "exp_range", 0.9),
    cyclic_case("scale_fn-cycle", 4, 6, scale_fn=lambda k: 0.8 ** k),
    cyclic_case("scale_fn-iterations", 5, 4, scale_fn=lambda x: 1.0 / (1.0 + 0.05 * x),
                scale_mode="iterations"),
    one_cycle_case("cos", 50),
    one_cycle_case("linear", 40, anneal_strategy="linear"),
    one_cycle_case("cos-three-phase", 50, three_phase=True),
    one_cycle_case("linear-three-phase-fractional", 47, 0.8, 0.99, pct_start=0.33,
                   anneal_strategy="linear", three_phase=True),
    one_cycle_case("three-phase-long-start", 30, pct_start=0.6, three_phase=True),
    one_cycle_case("fractional", 37, 0.7, 0.9, pct_start=0.27),
]
CASE_PARAMS = [pytest.param(case, id=case.id) for case in CASES]


def torch_run(torch, case, optimizer, steps):
    """torch's optimizer + the case's scheduler: the lr and momentum each step used, and the
    parameters after each step."""
    keys = sorted(PARAMS)
    tensors = [torch.tensor(PARAMS[k], dtype=torch.float64, requires_grad=True) for k in keys]
    if optimizer == "sgd":
        opt = torch.optim.SGD(tensors, lr=0.1, momentum=0.5)  # both are overwritten
    else:
        opt = torch.optim.Adam(tensors, lr=0.1, betas=(0.5, 0.99))  # lr, betas[0] overwritten
    scheduler = case.scheduler(torch.optim.lr_scheduler, opt)
    lrs, momenta, traj = [], [], []
    for g in GRADS[:steps]:
        group = opt.param_groups[0]
        lrs.append(group["lr"])
        momenta.append(group["momentum"] if optimizer == "sgd" else group["betas"][0])
        for tensor, k in zip(tensors, keys, strict=True):
            tensor.grad = torch.tensor(g[k], dtype=torch.float64)
        opt.step()
        scheduler.step()
        traj.append({k: t.detach().numpy().copy() for k, t in zip(keys, tensors, strict=True)})
    return lrs, momenta, traj


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("case", CASE_PARAMS)
def test_learning_rate_and_momentum_equal_torch(case, optimizer, torch_float64):
    lrs, momenta, _ = torch_run(torch_float64, case, optimizer, case.steps)
    counts = jnp.arange(case.steps, dtype=jnp.int32)
    for schedule, want in ((case.learning_rate(), lrs), (case.momentum(), momenta)):
        eager = [float(schedule(k)) for k in range(case.steps)]
        jitted = jax.jit(jax.vmap(schedule))(counts)
        for got in (eager, jitted):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


def assert_trajectory(ours, torch_traj):
    for t, want in enumerate(torch_traj):
        for key, w in want.items():
            atol = 1e-12 * max(1.0, float(np.max(np.abs(w))))
            np.testing.assert_allclose(
                np.asarray(ours[key][t]), w, rtol=1e-9, atol=atol,
                err_msg=f"step {t + 1}, leaf {key!r}",
            )


def run(opt, steps, mode):
    grads = GRADS[:steps]
    if mode == "jit":
        return jax.jit(helpers.run_scan, static_argnums=0)(opt, PARAMS, helpers.stack(grads))
    return helpers.run_steps(opt, PARAMS, grads)


@pytest.mark.parametrize("mode", ["jit", "eager"])
@pytest.mark.parametrize("case", CASE_PARAMS)
def test_sgd_with_cycled_momentum_equals_torch(case, mode, torch_float64):
    steps = case.steps
    _, _, torch_traj = torch_run(torch_float64, case, "sgd", steps)
    opt = gx.sgd(learning_rate=case.learning_rate(), momentum=case.momentum())
    assert_trajectory(run(opt, steps, mode), torch_traj)


@pytest.mark.parametrize("mode", ["jit", "eager"])
@pytest.mark.parametrize("case", CASE_PARAMS)
def test_adam_with_cycled_b1_equals_torch(case, mode, torch_float64):
    """torch cycles Adam's ``betas[0]``, bias correction included (``1 - beta1_t ** t`` with
    the current ``beta1``), as gx.adam does with a ``b1`` schedule."""
    steps = case.steps
    _, _, torch_traj = torch_run(torch_float64, case, "adam", steps)
    opt = gx.adam(learning_rate=case.learning_rate(), b1=case.momentum(), b2=0.99)
    assert_trajectory(run(opt, steps, mode), torch_traj)

"""sparse_adam equals torch.optim.SparseAdam fed the sparse gradients of real
``nn.Embedding(sparse=True)`` tables, to rtol 1e-9 in float64 over 25 steps, across a grid of
every argument, jitted (hyperparameters traced under vmap, steps under lax.scan) and eager:
parameters and state (``mu``/``exp_avg``, ``nu``/``exp_avg_sq``, ``count``/``step``) at every
step. gradtx is fed the dense gradient (``weight.grad.to_dense()``).

The loss is a fixed random linear function of the looked-up rows, so each step's gradient is
known in advance (a scatter-sum of the coefficients), does not depend on the parameters, and is
the same for every grid point. The index batches leave some rows untouched at some steps, look
some rows up several times, and at some steps look nothing up in one table (an empty sparse
gradient: torch's ``step`` still advances) or in both.

The comparison is test_parity's: ``|ours - torch| <= 1e-9 |torch| + 1e-12 max(1, max|leaf|)``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx as gx
from gradtx.optimizers.sparse_adam import sparse_adam
from gradtx.transforms.sparse_rows import present_rows, scale_by_sparse_adam
from tests import helpers

RTOL = 1e-9
ATOL_SCALE = 1e-12
STEPS = 25
TABLES = {"a": (7, 3), "b": (5, 2)}  # name -> (num_embeddings, embedding_dim)
KEYS = sorted(TABLES)
EMPTY = {"a": (10, 17), "b": (2, 6, 10, 14, 21)}  # steps that look nothing up in a table
# Steps whose coefficients are scaled: huge and tiny gradients.
SCALES = {4: 1e4, 9: 1e-6, 15: 1e3, 20: 1e-9}
STATE_NAMES = {"mu": "exp_avg", "nu": "exp_avg_sq"}
GRID = {
    "learning_rate": [1e-3, 0.1],
    "b1": [0.0, 0.5, 0.9],
    "b2": [0.0, 0.9, 0.999],
    "eps": [1e-8, 0.1],
}
DEFAULTS = dict(learning_rate=1e-3, b1=0.9, b2=0.999, eps=1e-8, maximize=False)


def _batches(seed=0):
    """Per step and table: the looked-up indices (with repeats; some rows left out) and the
    coefficients of the linear loss, one row per lookup."""
    rng = np.random.default_rng(seed)
    out = []
    for t in range(STEPS):
        step = {}
        for k, (num, dim) in TABLES.items():
            size = 0 if t in EMPTY[k] else int(rng.integers(1, num))
            idx = rng.integers(0, num, size=size)
            coef = rng.normal(size=(size, dim)) * SCALES.get(t, 1.0)
            step[k] = (idx, coef)
        out.append(step)
    return out


BATCHES = _batches()
PARAMS = {k: np.random.default_rng(10 + i).normal(size=shape)
          for i, (k, shape) in enumerate(sorted(TABLES.items()))}


def _tables(torch, params=PARAMS):
    tables = {}
    for k in KEYS:
        num, dim = TABLES[k]
        emb = torch.nn.Embedding(num, dim, sparse=True, dtype=torch.float64)
        with torch.no_grad():
            emb.weight.copy_(torch.tensor(params[k]))
        tables[k] = emb
    return tables


def _backward(torch, tables, step):
    """The linear loss of one step's lookups, back-propagated into the tables' sparse grads."""
    loss = 0.0
    for k in KEYS:
        idx, coef = step[k]
        rows = tables[k](torch.tensor(idx, dtype=torch.long))
        loss = loss + (rows * torch.tensor(coef)).sum()
    loss.backward()


def _numpy(x):
    return x.detach().numpy().copy()


def torch_run(torch, kwargs, *, dense_to_sparse=False):
    """Parameters and state of torch's SparseAdam after each step, stacked (leading axis =
    step), and the dense gradients it was fed. With ``dense_to_sparse`` the gradients are the
    dense ones converted by ``to_sparse(sparse_dim=1)``, as a generic runner would feed them."""
    full = {**DEFAULTS, **kwargs}
    tables = _tables(torch)
    opt = torch.optim.SparseAdam(
        [tables[k].weight for k in KEYS], lr=full["learning_rate"],
        betas=(full["b1"], full["b2"]), eps=full["eps"], maximize=full["maximize"],
    )
    traj, states, counts, grads = [], [], [], []
    for step in BATCHES:
        opt.zero_grad()
        _backward(torch, tables, step)
        dense = {k: tables[k].weight.grad.to_dense() for k in KEYS}
        if dense_to_sparse:
            for k in KEYS:
                tables[k].weight.grad = dense[k].to_sparse(sparse_dim=1)
        grads.append({k: _numpy(dense[k]) for k in KEYS})
        opt.step()
        weights = {k: tables[k].weight for k in KEYS}
        traj.append({k: _numpy(w) for k, w in weights.items()})
        states.append({ours: {k: _numpy(opt.state[w][theirs]) for k, w in weights.items()}
                       for ours, theirs in STATE_NAMES.items()})
        counts.append({k: opt.state[w]["step"] for k, w in weights.items()})
    return helpers.np_stack(traj), helpers.np_stack(states), helpers.np_stack(counts), grads


@functools.cache
def _torch_cached(items):
    import torch

    return torch_run(torch, dict(items))


def torch_reference(kwargs):
    """torch's run for these arguments, computed once for the jit and the eager test."""
    return _torch_cached(tuple(sorted(kwargs.items())))


@functools.cache
def dense_gradients():
    """The dense gradients of every step (the same for every configuration: the loss is linear
    in the parameters), as gradtx is fed them."""
    return torch_reference({})[3]


def run_steps(opt, params, grads):
    return helpers.run_steps_with_state(opt, params, grads, STATE_NAMES)


def run_scan(opt, params, grads_stacked):
    return helpers.run_scan_with_state(opt, params, grads_stacked, STATE_NAMES)


def _close(got, want, message):
    helpers.assert_close_per_step(got, want, message, RTOL, ATOL_SCALE)


def assert_matches(expected, ours, kwargs, index=None):
    (traj, states), pick = ours, ((lambda x: x[index]) if index is not None else (lambda x: x))
    torch_traj, torch_states, torch_counts, _ = expected
    for k in KEYS:
        _close(pick(traj[k]), torch_traj[k], f"param {k!r}, {kwargs}")
        for name in STATE_NAMES:
            _close(pick(states[name][k]), torch_states[name][k], f"{name}[{k!r}], {kwargs}")
        np.testing.assert_array_equal(pick(states["count"]), torch_counts[k], err_msg=kwargs)


def _gradients():
    grads = [{k: jnp.asarray(g[k]) for k in KEYS} for g in dense_gradients()]
    return grads, helpers.stack(grads)


# ---------------------------------------------------------------------------------------------
# The data is what it claims to be.


def test_batches_cover_the_sparse_cases(torch_float64):
    """Untouched rows, repeated lookups, empty lookups of one table and of both; the dense
    gradient is the scatter-sum of the coefficients, and its all-zero rows are exactly the
    rows that torch's (coalesced) sparse gradient does not list."""
    torch = torch_float64
    tables = _tables(torch)
    untouched = repeated = 0
    for t, step in enumerate(BATCHES):
        for tensor in tables.values():
            tensor.weight.grad = None
        _backward(torch, tables, step)
        for k in KEYS:
            idx, coef = step[k]
            expected = np.zeros(TABLES[k])
            np.add.at(expected, idx, coef)
            grad = tables[k].weight.grad
            assert grad is not None and grad.is_sparse
            np.testing.assert_allclose(_numpy(grad.to_dense()), expected, rtol=1e-15, atol=0)
            listed = set(grad.coalesce().indices()[0].tolist())
            assert listed == set(idx.tolist())
            nonzero_rows = set(np.flatnonzero(np.any(expected != 0, axis=1)).tolist())
            assert nonzero_rows == listed
            untouched += len(listed) < TABLES[k][0]
            repeated += len(listed) < len(idx)
        assert all((len(step[k][0]) == 0) == (t in EMPTY[k]) for k in KEYS)
    assert untouched >= 30 and repeated >= 10
    assert set(EMPTY["a"]) & set(EMPTY["b"])  # a step that touches nothing at all


# ---------------------------------------------------------------------------------------------
# The grid.


@pytest.mark.parametrize("mode", ["jit", "eager"])
@pytest.mark.parametrize("maximize", [False, True])
def test_grid_matches_torch_embeddings(maximize, mode, torch_float64):
    """The full product of the numeric grid, vmapped over traced hyperparameters."""
    points = helpers.product(GRID)
    hyper = {k: jnp.asarray([p[k] for p in points], jnp.float64) for k in GRID}
    params = {k: jnp.asarray(PARAMS[k]) for k in KEYS}
    grads, grads_stacked = _gradients()

    if mode == "jit":
        def run(hp):
            return run_scan(sparse_adam(**hp, maximize=maximize), params, grads_stacked)
        out = jax.jit(jax.vmap(run))(hyper)
    else:
        def run(hp):
            return run_steps(sparse_adam(**hp, maximize=maximize), params, grads)
        out = jax.vmap(run)(hyper)

    for i, point in enumerate(points):
        kwargs = {**point, "maximize": maximize}
        assert_matches(torch_reference(kwargs), out, kwargs, index=i)


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"learning_rate": 0.05, "b1": 0.0, "b2": 0.9, "eps": 0.1, "maximize": True}],
    ids=["defaults", "loaded"],
)
def test_python_floats_match_torch(kwargs, torch_float64):
    """Hyperparameters as Python numbers, eager and jitted."""
    expected = torch_reference(kwargs)
    params = {k: jnp.asarray(PARAMS[k]) for k in KEYS}
    grads, grads_stacked = _gradients()
    opt = sparse_adam(**kwargs)
    assert_matches(expected, run_steps(opt, params, grads), kwargs)
    compiled = jax.jit(lambda p, g: run_scan(opt, p, g))(params, grads_stacked)
    assert_matches(expected, compiled, kwargs)


def test_absent_rows_keep_their_state_and_parameters(torch_float64):
    """Where a row is absent at a step, its parameters and moments equal the previous step's
    exactly, in torch and here; where it is present they change (not vacuous: both happen)."""
    kwargs = {"learning_rate": 0.1, "b1": 0.5, "b2": 0.9}
    traj, states = run_steps(
        sparse_adam(**kwargs), {k: jnp.asarray(PARAMS[k]) for k in KEYS}, _gradients()[0]
    )
    torch_traj = torch_reference(kwargs)[0]
    seen = {True: 0, False: 0}
    for t in range(1, STEPS):
        for k in KEYS:
            absent = ~np.any(dense_gradients()[t][k] != 0, axis=1)
            for ours in (traj[k], states["mu"][k], states["nu"][k], torch_traj[k]):
                same = np.all(np.asarray(ours[t]) == np.asarray(ours[t - 1]), axis=1)
                np.testing.assert_array_equal(same[absent], True)
                assert not same[~absent].any()
            seen[True] += int(absent.sum())
            seen[False] += int((~absent).sum())
    assert seen[True] > 50 and seen[False] > 50


def test_schedule_matches_torch_lambda_lr(torch_float64):
    """A schedule as learning rate equals torch's LambdaLR stepped after every step."""
    torch = torch_float64
    tables = _tables(torch)
    opt = torch.optim.SparseAdam([tables[k].weight for k in KEYS], lr=0.05)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda count: 0.9**count)
    ours = sparse_adam(learning_rate=lambda count: 0.05 * 0.9**count)
    params = {k: jnp.asarray(PARAMS[k]) for k in KEYS}
    state = ours.init(params)
    for t, (step, g) in enumerate(zip(BATCHES, _gradients()[0], strict=True)):
        opt.zero_grad()
        _backward(torch, tables, step)
        opt.step()
        sched.step()
        updates, state = ours.update(g, state, params)
        params = gx.apply_updates(params, updates)
        for k in KEYS:
            np.testing.assert_allclose(params[k], _numpy(tables[k].weight), rtol=RTOL,
                                       atol=ATOL_SCALE, err_msg=f"step {t + 1}, {k}")


# ---------------------------------------------------------------------------------------------
# Dense gradients converted for torch, vectors, scalars, and the one known difference.


def test_dense_to_sparse_gives_torch_the_embedding_result(torch_float64):
    """For a generic runner: feeding torch ``dense.to_sparse(sparse_dim=1)`` instead of the
    Embedding's own (uncoalesced, repeated-index) gradient gives the same run, bit for bit
    (coalescing and densifying add a row's repeated contributions in the same order)."""
    for kwargs in ({}, {"learning_rate": 0.1, "b1": 0.5, "b2": 0.0, "maximize": True}):
        embedding = torch_reference(kwargs)
        converted = torch_run(torch_float64, kwargs, dense_to_sparse=True)
        for a, b in zip(embedding[:3], converted[:3], strict=True):
            for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b),
                            strict=True):
                np.testing.assert_array_equal(x, y)


def _vector_scalar_case():
    rng = np.random.default_rng(3)
    params = {"v": rng.normal(size=6), "s": np.float64(0.7)}
    grads = []
    for t in range(STEPS):
        v = rng.normal(size=6) * SCALES.get(t, 1.0)
        v[rng.random(6) < 0.4] = 0.0  # absent entries
        s = 0.0 if t % 3 == 1 else rng.normal()
        grads.append({"v": v, "s": np.float64(s)})
    return params, grads


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_vector_entries_and_scalars_are_rows(jit, torch_float64):
    """Each entry of a 1-D leaf is a row, and a 0-d leaf is one row: a zero entry (a zero
    scalar) is absent. torch agrees when the dense gradients are converted with
    ``to_sparse(sparse_dim=min(1, dim))`` (a 0-d zero becomes an empty sparse tensor)."""
    torch = torch_float64
    params, grads = _vector_scalar_case()
    kwargs = {"learning_rate": 0.1, "b1": 0.5, "b2": 0.9, "eps": 1e-8, "maximize": True}
    keys = sorted(params)
    tensors = {k: torch.tensor(params[k], requires_grad=True) for k in keys}
    topt = torch.optim.SparseAdam(list(tensors.values()), lr=0.1, betas=(0.5, 0.9),
                                  maximize=True)
    opt = sparse_adam(**kwargs)
    update = jax.jit(opt.update) if jit else opt.update
    ours = {k: jnp.asarray(v) for k, v in params.items()}
    state = opt.init(ours)
    moved = 0
    for t, g in enumerate(grads):
        for k in keys:
            dense = torch.tensor(g[k])
            tensors[k].grad = dense.to_sparse(sparse_dim=min(1, dense.dim()))
        topt.step()
        before = ours
        updates, state = update({k: jnp.asarray(v) for k, v in g.items()}, state, ours)
        ours = gx.apply_updates(ours, updates)
        for k in keys:
            want = _numpy(tensors[k])
            np.testing.assert_allclose(ours[k], want, rtol=RTOL, atol=ATOL_SCALE,
                                       err_msg=f"step {t + 1}, {k}")
            np.testing.assert_array_equal(np.asarray(ours[k] != before[k]), g[k] != 0)
            np.testing.assert_allclose(gx.tree_get(state, "nu")[k],
                                       _numpy(topt.state[tensors[k]]["exp_avg_sq"]),
                                       rtol=RTOL, atol=0)
            moved += int(np.sum(g[k] != 0))
        assert int(gx.tree_get(state, "count")) == topt.state[tensors["v"]]["step"] == t + 1
    assert moved > 50


def test_a_listed_row_with_zero_values_differs_from_torch(torch_float64):
    """The one documented difference: a row looked up twice with contributions that cancel
    exactly is listed in torch's sparse gradient with zero values, so torch treats it as
    present (its moments decay and it moves on its earlier momentum); gradtx sees a dense
    all-zero row and leaves it alone."""
    torch = torch_float64
    table = torch.nn.Embedding(4, 2, sparse=True, dtype=torch.float64)
    with torch.no_grad():
        table.weight.copy_(torch.tensor(PARAMS["b"][:4]))
    topt = torch.optim.SparseAdam([table.weight], lr=0.1)
    opt = sparse_adam(learning_rate=0.1)
    params = {"t": jnp.asarray(PARAMS["b"][:4])}
    state = opt.init(params)
    c = np.asarray([[1.5, -2.0]])
    for idx, coef in (([2], c), ([2, 2], np.concatenate([c, -c]))):
        topt.zero_grad()
        rows = table(torch.tensor(idx))
        (rows * torch.tensor(coef)).sum().backward()
        dense = _numpy(table.weight.grad.to_dense())
        before = _numpy(table.weight)
        topt.step()
        updates, state = opt.update({"t": jnp.asarray(dense)}, state, params)
        params = gx.apply_updates(params, updates)
    assert table.weight.grad.coalesce().indices().tolist() == [[2]]
    np.testing.assert_array_equal(dense, 0.0)
    assert np.all(_numpy(table.weight)[2] != before[2])  # torch moved row 2
    np.testing.assert_array_equal(params["t"][2], before[2])  # gradtx did not
    np.testing.assert_array_equal(np.delete(params["t"], 2, 0), np.delete(before, 2, 0))


# ---------------------------------------------------------------------------------------------
# The transform, names, and bad arguments.


def test_present_rows():
    u = jnp.asarray([[0.0, 0.0], [0.0, -1.0], [jnp.nan, 0.0], [-0.0, 0.0]])
    np.testing.assert_array_equal(present_rows(u)[:, 0], [False, True, True, False])
    assert present_rows(u).shape == (4, 1)
    assert present_rows(jnp.zeros((2, 3, 4))).shape == (2, 1, 1)
    np.testing.assert_array_equal(present_rows(jnp.asarray([0.0, 2.0])), [False, True])
    assert not bool(present_rows(jnp.asarray(0.0)))


def test_transform_on_its_own_equals_the_optimizer():
    params = {k: jnp.asarray(PARAMS[k]) for k in KEYS}
    grads = _gradients()[0]
    alone = gx.chain(scale_by_sparse_adam(0.5, 0.9, 1e-3), gx.scale(-0.1))
    a = helpers.run_steps(alone, params, grads)
    b = helpers.run_steps(sparse_adam(0.1, 0.5, 0.9, 1e-3), params, grads)
    for k in KEYS:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-14, atol=1e-15)
    assert int(alone.init(params)[0].count) == 0  # its own count, outside an optimizer


def test_state_names():
    params = {k: jnp.asarray(PARAMS[k]) for k in KEYS}
    state = sparse_adam().init(params)
    for name in ("mu", "nu"):
        assert set(gx.tree_get(state, name)) == set(KEYS)
        np.testing.assert_array_equal(gx.tree_get(state, name)["a"], np.zeros(TABLES["a"]))
    assert int(gx.tree_get(state, "count")) == 0


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"learning_rate": -1e-3}, "learning_rate"),
        ({"learning_rate": float("nan")}, "learning_rate"),
        ({"eps": 0.0}, "eps"),  # torch: eps > 0
        ({"eps": -1e-8}, "eps"),
        ({"b1": 1.0}, "b1"),
        ({"b1": -0.1}, "b1"),
        ({"b2": 1.0}, "b2"),
        ({"b2": float("nan")}, "b2"),
    ],
)
def test_bad_arguments_raise_naming_them(kwargs, argument, torch_float64):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        sparse_adam(**kwargs)
    # torch refuses the same values.
    torch_kwargs = {**DEFAULTS, **kwargs}
    with pytest.raises(ValueError):
        torch_float64.optim.SparseAdam(
            [torch_float64.zeros(2, requires_grad=True)], lr=torch_kwargs["learning_rate"],
            betas=(torch_kwargs["b1"], torch_kwargs["b2"]), eps=torch_kwargs["eps"],
        )


def test_a_zero_learning_rate_is_accepted_though_torch_refuses_it(torch_float64):
    """lr = 0 leaves the parameters in place (the moments still move), as in gradtx's other
    optimizers; torch's SparseAdam refuses it at construction (a scheduler may still set it)."""
    params = {k: jnp.asarray(PARAMS[k]) for k in KEYS}
    traj, states = run_steps(sparse_adam(learning_rate=0.0), params, _gradients()[0][:3])
    for k in KEYS:
        np.testing.assert_array_equal(traj[k][-1], PARAMS[k])
        assert np.any(np.asarray(states["mu"][k][-1]) != 0)
    with pytest.raises(ValueError, match="learning rate"):
        torch_float64.optim.SparseAdam([torch_float64.zeros(2, requires_grad=True)], lr=0.0)


def test_bad_switch_and_complex_parameters():
    with pytest.raises(TypeError, match="maximize"):
        sparse_adam(maximize=1)
    with pytest.raises(TypeError, match=r"sparse_adam does not support complex.*\['z'\]"):
        sparse_adam().init({"z": jnp.zeros((2, 2), jnp.complex128)})

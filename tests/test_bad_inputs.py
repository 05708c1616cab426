"""Bad inputs, for every optimizer in the registry: invalid hyperparameters of every argument,
gradient trees that do not fit the parameters or the state, integer and bool leaves, mixed
floating-point widths, NaN and Inf gradients, and complex parameters. The tree, leaf-kind,
width and NaN tests run every flattenable optimizer in gx.multi_tensor too. docs/guarantees.md
states what these tests check.

tests/test_matrix.py already covers, and this file does not repeat: the registry's ``invalid``
hyperparameters (ValueError naming the argument, and traced values accepted), flat trees with a
missing, extra or reshaped gradient leaf (eager and jit), None leaves and empty trees.
tests/test_wrappers.py covers apply_if_finite's counters, its threshold and vmap.
"""

from __future__ import annotations

import inspect
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx as gx
from gradtx.optimizers import registry
from gradtx.optimizers.registry import OPTIMIZERS
from tests import helpers

BY_NAME = {"ids": lambda info: info.name}
MODES = pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
W = r"\['layer'\]\['w'\]"  # the path the tree tests break

tree_leaves = jax.tree_util.tree_leaves
tree_map = jax.tree_util.tree_map

FLATTENABLE = [i for i in OPTIMIZERS if gx.is_flattenable(i.build(**i.example))]


# ``(info, multi)``: every optimizer as it is, then every flattenable one in gx.multi_tensor (one
# buffer per dtype), which must refuse, cast and propagate as the optimizer does leaf by leaf.
WITH_MULTI_TENSOR = pytest.mark.parametrize(("info", "multi"), [
    *(pytest.param(i, False, id=i.name) for i in OPTIMIZERS),
    *(pytest.param(i, True, id=f"{i.name}-multi_tensor") for i in FLATTENABLE),
])


def _build(info, multi):
    """``info``'s optimizer with its example hyperparameters, in gx.multi_tensor when
    ``multi``."""
    opt = info.build(**info.example)
    return gx.multi_tensor(opt) if multi else opt


def _params(info, dtype=jnp.float64, seed=0, *, top=None, layer=None):
    """The test parameters (with the leaves ``top`` and ``layer`` added at the top and in
    ``['layer']``) as ``info``'s optimizer takes them: ``info.params_like`` keeps the names and
    values (Muon's are matrices: ``b`` (1, 3), ``head`` (1, 1); ``w`` stays (4, 3))."""
    rng = np.random.default_rng(seed)
    return info.params_like({
        "layer": {
            "w": jnp.asarray(rng.normal(size=(4, 3)), dtype),
            "b": jnp.asarray(rng.normal(size=(3,)), dtype),
            **(layer or {}),
        },
        "head": jnp.asarray(rng.normal(), dtype),
        **(top or {}),
    })


def _grads(params, steps, seed=1):
    rng = np.random.default_rng(seed)
    return [
        tree_map(lambda p: jnp.asarray(rng.normal(size=p.shape), p.dtype), params)
        for _ in range(steps)
    ]


def _with_w(tree, value):
    return {**tree, "layer": {**tree["layer"], "w": value}}


def _update_fn(opt, jit):
    return jax.jit(opt.update) if jit else opt.update


def _assert_trees_equal(a, b):
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(tree_leaves(a), tree_leaves(b), strict=True):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# ---------------------------------------------------------------------------------------------
# Hyperparameters: every argument of every factory, classified by its declaration.


def _arguments(kind):
    return [
        pytest.param(info, name, id=f"{info.name}-{name}")
        for info in OPTIMIZERS
        for name, declaration in info.declarations.items()
        if declaration.kind == kind
    ]


@pytest.mark.parametrize("info", OPTIMIZERS, **BY_NAME)
def test_every_argument_is_declared_and_checked_below(info):
    """Every argument has a declaration of a kind that a test of this section checks."""
    names = list(inspect.signature(info.factory).parameters)
    assert sorted(names) == sorted(info.declarations)
    for name in names:
        assert info.declarations[name].kind in ("number", "switch", "dtype", "int", "fixed"), name


MINUS_ONE = (-1.0, -1, np.float64(-1.0), jnp.asarray(-1.0))
OUT_OF_RANGE = (*MINUS_ONE, math.nan, jnp.asarray(math.nan), np.asarray([0.1, -1.0]))
def _out_of_range(declaration) -> tuple:
    """OUT_OF_RANGE without the -1s where the declaration accepts -1 (torch's Adafactor's
    ``beta2_decay`` is at most 0)."""
    if declaration.low is None or declaration.low < -1 or (
        declaration.low == -1 and declaration.low_closed
    ):
        return tuple(v for v in OUT_OF_RANGE if not any(v is m for m in MINUS_ONE))
    return OUT_OF_RANGE


WRONG_TYPES = ("0.1", b"0.1", [0.1], (0.1,), {"value": 0.1}, True, False, 1 + 1j, object())


@pytest.mark.parametrize(("info", "name"), _arguments("number"))
def test_numeric_hyperparameters_refuse_bad_values_by_name(info, name):
    """Out of the declared range, NaN (Python, NumPy or JAX, scalar or array): ValueError; a
    string, list, tuple, dict, bool, complex or None: TypeError. Both name the argument."""
    pattern = f"`{name}`"
    for bad in _out_of_range(info.declarations[name]) + info.declarations[name].invalid_values():
        with pytest.raises(ValueError, match=pattern):
            info.build(**{name: bad})
    wrong = WRONG_TYPES + (() if info.declarations[name].none_allowed else (None,))
    for bad in wrong:
        with pytest.raises(TypeError, match=pattern):
            info.build(**{name: bad})


def test_a_bool_that_slipped_position_is_refused():
    with pytest.raises(TypeError, match="`dampening`"):
        gx.sgd(0.1, 0.9, True)  # meant nesterov=True


@pytest.mark.parametrize(("info", "name"), _arguments("switch"))
def test_switches_refuse_anything_but_a_python_bool(info, name):
    for bad in ("yes", 1, 0, None, jnp.asarray(True)):
        with pytest.raises(TypeError, match=f"`{name}`"):
            info.build(**{name: bad})


@pytest.mark.parametrize(("info", "name"), _arguments("dtype"))
def test_state_dtypes_refuse_non_floating_dtypes(info, name):
    for bad in (jnp.int32, jnp.bool_, jnp.complex64, "not-a-dtype", 3):
        with pytest.raises(TypeError, match=f"`{name}`"):
            info.build(**{name: bad})


@pytest.mark.parametrize(("info", "name"), _arguments("int"))
def test_static_ints_refuse_anything_but_a_positive_whole_number(info, name):
    """A value out of range or not whole: ValueError; a string, bool, None or list:
    TypeError. Both name the argument; a whole float (2.0) is read as an int."""
    for bad in (0, -1, 2.5, math.nan, math.inf, np.float64(0.5)):
        with pytest.raises(ValueError, match=f"`{name}`"):
            info.build(**{name: bad})
    none_ok = info.declarations[name].none_allowed  # L-BFGS's max_eval: None derives it
    for bad in ("5", True, *([] if none_ok else [None]), [5], jnp.asarray([5])):
        with pytest.raises(TypeError, match=f"`{name}`"):
            info.build(**{name: bad})
    info.build(**{name: 2.0})


@pytest.mark.parametrize(("info", "name"), _arguments("fixed"))
def test_fixed_arguments_refuse_bad_values_and_traced_ones_by_name(info, name):
    """A fixed argument checked by its own function (Muon's Newton–Schulz coefficients, its
    ``adjust_lr_fn``): the values its declaration lists as refused raise ValueError, a dict,
    bool, complex, object or traced value TypeError, both naming the argument; its default
    passes its own check."""
    declaration = info.declarations[name]
    assert declaration.invalid_values() and declaration.describe()
    pattern = f"`{name}`"
    for bad in declaration.invalid_values():
        with pytest.raises(ValueError, match=pattern):
            info.build(**{name: bad})
    for bad in ({"value": 0.1}, True, False, 1 + 1j, object()):
        with pytest.raises(TypeError, match=pattern):
            info.build(**{name: bad})
    with pytest.raises(TypeError, match=pattern):
        jax.jit(lambda x: info.build(**{name: x}))(jnp.asarray([3.0, -4.0, 2.0]))
    default = inspect.signature(info.factory).parameters[name].default
    assert declaration.check(name, default) == default


@pytest.mark.parametrize("info", OPTIMIZERS, **BY_NAME)
def test_a_torch_style_argument_name_is_refused(info):
    with pytest.raises(TypeError, match="'lr'"):
        info.build(lr=0.1)


@pytest.mark.parametrize("info", OPTIMIZERS, **BY_NAME)
def test_set_hyperparam_refuses_bad_values_by_name(info):
    state = info.build(**info.example).init(info.params_like({"w": jnp.ones(3)}))
    assert "learning_rate" in state.hyperparams
    for name in state.hyperparams:
        minus_one = (-1.0,) if _out_of_range(info.declarations[name]) == OUT_OF_RANGE else ()
        for bad in minus_one + (math.nan, jnp.asarray(math.nan)):
            with pytest.raises(ValueError, match=f"`{name}`"):
                gx.set_hyperparam(state, name, bad)
        for bad in ("0.1", [0.1], None, True):
            with pytest.raises(TypeError, match=f"`{name}`"):
                gx.set_hyperparam(state, name, bad)


# ---------------------------------------------------------------------------------------------
# Trees: nested paths, the state made for other parameters, and leaf kinds.


@MODES
@WITH_MULTI_TENSOR
def test_nested_mismatches_name_the_nested_path(info, multi, jit):
    params = _params(info)
    opt = _build(info, multi)
    state = opt.init(params)
    update = _update_fn(opt, jit)
    grads = _grads(params, 1)[0]
    layer = grads["layer"]

    with pytest.raises(ValueError, match=W):
        update({**grads, "layer": {"b": layer["b"]}}, state, params)
    with pytest.raises(ValueError, match=r"\['layer'\]\['extra'\]"):
        update({**grads, "layer": {**layer, "extra": layer["b"]}}, state, params)
    with pytest.raises(ValueError, match=W + r".*\(3, 4\).*\(4, 3\)"):
        update(_with_w(grads, layer["w"].T), state, params)
    with pytest.raises(ValueError, match=W + ".*None"):
        update(_with_w(grads, None), state, params)


# One state over the flat vector of all parameters (torch's LBFGS layout): a state for another
# total size is refused by its size, not a path; a tree of the same sizes renamed is not noticed.
FLAT_STATE = {"lbfgs"}
# A per-parameter state, but a step that reads sums over all the leaves (D-Adaptation's
# estimate of d): a non-finite entry reaches every leaf's step through it, as in the references.
TREE_WIDE_STEP = {"prodigy", "dadapt_adamw", "dog", "dowg", "mechanize_sgd"}


@MODES
@WITH_MULTI_TENSOR
def test_a_state_made_for_other_parameters_names_the_path(info, multi, jit):
    """Gradients and parameters that agree with each other but not with the state ``init``
    built: the state's per-parameter entries name the path."""
    params = _params(info)
    opt = _build(info, multi)
    state = opt.init(params)
    update = _update_fn(opt, jit)
    other = _with_w(params, jnp.ones((5, 3)))

    def rename(tree):  # ['layer']['w'] as ['layer']['v']: same shapes, same leaf order
        return {**tree, "layer": {"v": tree["layer"]["w"], "b": tree["layer"]["b"]}}

    renamed = rename(params)
    if multi:
        # The state is one buffer per dtype, laid out by position from the leaves' shapes: a
        # state for another total size is refused by the buffer's size (12 + 3 + 1 entries,
        # not 15 + 3 + 1), with no path to name; a tree of the same shapes in the same order
        # under other names is not noticed, and steps exactly as the tree it was made for.
        sizes = r"\['float64'\]: shape \((19,\) where .*\(16|16,\) where .*\(19),\)"  # either way
        with pytest.raises(ValueError, match=sizes):
            update(_grads(other, 1)[0], state, other)
        grads = _grads(params, 1)[0]
        want, want_state = update(grads, state, params)
        got, got_state = update(rename(grads), state, renamed)
        _assert_trees_equal(got, rename(want))
        _assert_trees_equal(got_state, want_state)
        return
    if info.name in FLAT_STATE:
        with pytest.raises(ValueError, match=r"made for other parameters.*init\(params\)"):
            update(_grads(other, 1)[0], state, other)
        return
    with pytest.raises(ValueError, match=W):
        update(_grads(other, 1)[0], state, other)
    with pytest.raises(ValueError, match=r"\['layer'\]\['(v|w)'\]"):
        update(_grads(renamed, 1)[0], state, renamed)


BAD_GRADIENT_KINDS = {
    "int": lambda w: w.astype(jnp.int32),
    "bool": lambda w: w > 0,
    "float0": lambda w: np.zeros(w.shape, jax.dtypes.float0),
    "complex-for-real": lambda w: w.astype(jnp.complex128),
}


@MODES
@pytest.mark.parametrize("kind", list(BAD_GRADIENT_KINDS))
@WITH_MULTI_TENSOR
def test_a_gradient_of_another_kind_names_the_path(info, multi, kind, jit):
    params = _params(info)
    opt = _build(info, multi)
    state = opt.init(params)
    grads = _grads(params, 1)[0]
    bad = _with_w(grads, BAD_GRADIENT_KINDS[kind](grads["layer"]["w"]))
    with pytest.raises(TypeError, match=W):
        _update_fn(opt, jit)(bad, state, params)


# They refuse a call without params.
WRAPPERS = {"lookahead_sgd", "param_average_adam", "mechanize_sgd"}


@pytest.mark.parametrize("info", OPTIMIZERS, **BY_NAME)
def test_integer_gradients_without_params_name_the_path(info):
    params = _params(info)
    opt = info.build(**info.example)
    grads = _grads(params, 1)[0]
    bad = _with_w(grads, grads["layer"]["w"].astype(jnp.int32))
    error, pattern = (
        (ValueError, "needs the parameters") if info.name in WRAPPERS else (TypeError, W)
    )
    with pytest.raises(error, match=pattern):
        opt.update(bad, opt.init(params))


@pytest.mark.parametrize("dtype", [jnp.int32, jnp.int64, jnp.uint8, jnp.bool_],
                         ids=lambda d: jnp.dtype(d).name)
@WITH_MULTI_TENSOR
def test_integer_and_bool_parameters_are_refused_by_path(info, multi, dtype):
    params = _params(info, layer={"step": jnp.zeros((), dtype)})
    opt = _build(info, multi)
    # multi_tensor refuses complex leaves too: its remedy names gx.multi_transform alone.
    remedy = "multi_transform" if multi else "multi_transform.*set_to_zero"
    for init in (opt.init, jax.jit(opt.init)):
        with pytest.raises(TypeError, match=r"\['layer'\]\['step'\].*" + remedy):
            init(params)


@pytest.mark.parametrize("info", OPTIMIZERS, **BY_NAME)
def test_the_suggested_remedy_for_integer_leaves_works(info):
    """The error suggests a group of their own with set_to_zero: the integer leaf stays as it
    is, in its dtype, and the others train."""
    params = _params(info, top={"step": jnp.asarray(7, jnp.int32)})
    labels = tree_map(lambda p: "frozen" if p.dtype == jnp.int32 else "train", params)
    opt = gx.multi_transform(
        {"train": info.build(**info.example), "frozen": gx.set_to_zero()}, labels
    )
    state = opt.init(params)
    grads = {**_grads(params, 1)[0], "step": jnp.ones_like(params["step"])}
    for _ in range(info.first_moving_step):
        updates, state = opt.update(grads, state, params)
    new = gx.apply_updates(params, updates)
    assert new["step"].dtype == jnp.int32
    np.testing.assert_array_equal(new["step"], np.full(np.shape(params["step"]), 7))
    assert not np.allclose(new["layer"]["w"], params["layer"]["w"])


WIDTHS = [(jnp.float64, jnp.float32), (jnp.float32, jnp.float64), (jnp.float32, jnp.bfloat16)]


@pytest.mark.parametrize(("param_dtype", "grad_dtype"), WIDTHS,
                         ids=lambda d: jnp.dtype(d).name)
@WITH_MULTI_TENSOR
def test_another_float_width_is_cast_to_the_parameter_dtype(
    info, multi, param_dtype, grad_dtype
):
    """Gradients in another floating-point width give exactly the run on the gradients cast to
    the parameters' dtype beforehand: same updates (in the parameters' dtype), same state."""
    params = _params(info, param_dtype)
    grads = _grads(_params(info, grad_dtype), 3)
    opt = _build(info, multi)

    def run(gs):
        # Op by op (an eager update is otherwise one compiled program, whose fusions may differ
        # in the last bit between the two input dtypes): the same operations in both runs, so
        # bit for bit the same result.
        with jax.disable_jit():
            p, s, out = params, opt.init(params), []
            for g in gs:
                u, s = opt.update(g, s, p)
                out.append(u)
                p = gx.apply_updates(p, u)
        return out, s

    mixed, mixed_state = run(grads)
    cast, cast_state = run([tree_map(lambda g: g.astype(param_dtype), gs) for gs in grads])
    _assert_trees_equal(mixed, cast)
    _assert_trees_equal(mixed_state, cast_state)
    assert all(u.dtype == param_dtype for u in tree_leaves(mixed))


# ---------------------------------------------------------------------------------------------
# NaN and Inf gradients: no filtering by default; apply_if_finite skips the step.

# sign(±inf) = ±1: an infinite gradient gives a finite step.
# Steps bounded whatever the gradient: sign-based ones, and ADOPT, which clips the normalised
# gradient to ±t^(1/4) (an Inf reaches its state, not the parameter).
BOUNDED_STEP = {"lion", "sign_sgd", "rprop", "adopt"}
# Rprop, as torch, zeroes a gradient whose sign flipped: an infinite one that flips leaves the
# state finite (its step size shrinks, its `prev` is 0).


def _finite(x) -> bool:
    return bool(jnp.all(jnp.isfinite(x)))


@pytest.mark.parametrize("bad_value", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
@WITH_MULTI_TENSOR
def test_non_finite_gradients_propagate_by_default(info, multi, bad_value):
    """As in torch: nothing is filtered. A NaN reaches the parameter and the state; an Inf
    reaches the state and, except for sign-based steps, the parameter. Other leaves take
    exactly the step they take without the bad leaf, and keep exactly that state (in
    gx.multi_tensor's buffer too)."""
    params = _params(info)
    opt = _build(info, multi)
    step = jax.jit(opt.update)
    state = opt.init(params)
    first, second = _grads(params, 2)
    updates, state = step(first, state, params)
    params = gx.apply_updates(params, updates)

    w = second["layer"]["w"].at[1, 2].set(bad_value)
    bad_updates, bad_state = step(_with_w(second, w), state, params)
    new = gx.apply_updates(params, bad_updates)
    state_leaves = [x for x in tree_leaves(bad_state.inner_state)
                    if jnp.issubdtype(x.dtype, jnp.inexact)]
    if not (info.name == "rprop" and math.isinf(bad_value)):
        assert not all(_finite(x) for x in state_leaves)
    if math.isnan(bad_value):
        assert bool(jnp.any(jnp.isnan(new["layer"]["w"])))
    else:
        assert _finite(new["layer"]["w"]) == (info.name in BOUNDED_STEP)

    if info.name in FLAT_STATE | TREE_WIDE_STEP:  # every leaf's step reads every gradient: below
        return
    clean_updates, clean_state = step(_with_w(second, jnp.zeros_like(w)), state, params)
    np.testing.assert_array_equal(bad_updates["layer"]["b"], clean_updates["layer"]["b"])
    np.testing.assert_array_equal(bad_updates["head"], clean_updates["head"])
    if multi:
        bad_state, clean_state = (gx.per_leaf_state(s, params) for s in (bad_state, clean_state))
    others = 0
    for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(bad_state),
                            tree_leaves(clean_state), strict=True):
        where = jax.tree_util.keystr(path)
        if "['layer']['w']" not in where:  # the leaf's state, or a part of it (SOAP's tuples)
            np.testing.assert_array_equal(x, y, err_msg=where)
            others += "['layer']['b']" in where
    assert others  # the per-parameter state of ['layer']['b'] was compared


@pytest.mark.parametrize("bad_value", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("name", sorted(n for n in FLAT_STATE | TREE_WIDE_STEP
                                          if registry.get(n).torch_class is not None))
def test_non_finite_gradients_in_a_flat_step_match_torch(name, bad_value, torch_float64):
    """L-BFGS steps along one direction over all parameters, and Prodigy and D-Adapt AdamW
    with one step size estimated from all of them, so a non-finite entry reaches the other
    leaves too: exactly as in the reference (NaN where it has NaN), jitted and eager."""
    info = registry.get(name)
    params = _params(info)
    first, second = _grads(params, 2)
    grads = [first, _with_w(second, second["layer"]["w"].at[1, 2].set(bad_value))]

    def flat(tree):  # torch's parameters in tree_leaves order
        return {f"{i:02d}": np.asarray(x) for i, x in enumerate(tree_leaves(tree))}

    want = helpers.torch_trajectory(torch_float64, info, info.example, flat(params),
                                    [flat(g) for g in grads])
    opt = info.build(**info.example)
    for got in (helpers.run_steps(opt, params, grads),
                jax.jit(helpers.run_scan, static_argnums=0)(opt, params, helpers.stack(grads))):
        for t in range(2):
            step = flat(tree_map(lambda x, t=t: x[t], got))
            for key, value in want[t].items():
                np.testing.assert_allclose(step[key], value, rtol=1e-9, atol=1e-12,
                                           equal_nan=True, err_msg=f"step {t + 1}, leaf {key}")


@MODES
@WITH_MULTI_TENSOR
def test_apply_if_finite_skips_bad_steps_and_loses_nothing(info, multi, jit):
    """Bad steps (a NaN, then an Inf) between good ones: the updates are zeros, the inner
    state is returned bit for bit, and the run afterwards is exactly the run that never saw
    them."""
    params = _params(info)
    good = _grads(params, 4)
    nan = _with_w(good[0], good[0]["layer"]["w"].at[0, 0].set(math.nan))
    inf = {**good[1], "head": jnp.full_like(good[1]["head"], math.inf)}
    opt = _build(info, multi)
    guarded = gx.apply_if_finite(opt, max_consecutive_errors=2)
    step, guarded_step = _update_fn(opt, jit), _update_fn(guarded, jit)

    p, s = params, opt.init(params)
    expected = []
    for g in good:
        u, s = step(g, s, p)
        p = gx.apply_updates(p, u)
        expected.append(p)

    p, gs = params, guarded.init(params)
    got = []
    for g in [good[0], nan, inf, good[1], good[2], nan, good[3]]:
        before = gs.inner_state
        u, gs = guarded_step(g, gs, p)
        if g is nan or g is inf:
            assert all(not np.any(np.asarray(x)) for x in tree_leaves(u))
            _assert_trees_equal(gs.inner_state, before)
        else:
            p = gx.apply_updates(p, u)
            got.append(p)
    assert int(gs.total_notfinite) == 3
    for a, b in zip(got, expected, strict=True):
        _assert_trees_equal(a, b)
    _assert_trees_equal(gs.inner_state, s)


# ---------------------------------------------------------------------------------------------
# Complex parameters: pairs of reals, as torch.optim treats them.


def _complex_params(info, seed=0):
    """Complex parameters as ``info``'s optimizer takes them (``info.params_like``)."""
    rng = np.random.default_rng(seed)

    def draw(*shape):
        return jnp.asarray(rng.normal(size=shape) + 1j * rng.normal(size=shape), jnp.complex128)

    return info.params_like({"w": draw(4, 3), "b": draw(3), "s": draw()})


def _complex_grads(params, steps, seed=1):
    rng = np.random.default_rng(seed)
    out = []
    for t in range(steps):
        g = {k: rng.normal(size=p.shape) + 1j * rng.normal(size=p.shape)
             for k, p in params.items()}
        out.append({k: jnp.asarray(0 * v if t == 3 else v, jnp.complex128) for k, v in g.items()})
    return out


def _gradtx_run(opt, params, grads):
    step = jax.jit(opt.update)
    state, traj = opt.init(params), []
    for g in grads:
        updates, state = step(g, state, params)
        params = gx.apply_updates(params, updates)
        traj.append(params)
    return traj, state


def _complex_configs(info):
    """The registry's example, then every switch on with weight decay and momentum."""
    loaded = dict(info.example)
    for name, values in info.grid.items():
        if all(isinstance(v, bool) for v in values):
            loaded[name] = True
    for name, value in (("weight_decay", 0.1), ("momentum", 0.9), ("lr_decay", 0.01)):
        if name in info.grid:
            loaded[name] = value
    return [c for c in (dict(info.example), loaded) if info.constraint(c)]


# These refuse complex parameters (torch's SparseAdam, Adafactor and Muon do too, and so do
# pytorch-optimizer's AdEMAMix and SOAP).
REAL_ONLY = ("adafactor", "adafactor_torch", "sparse_adam", "muon", "ademamix", "soap", "adan",
             "madgrad", "sm3", "acprop", "simplified_ademamix")
# References that take a complex entry whole where gradtx, like torch.optim, steps a complex
# parameter as two real ones: lion-pytorch's sign is sgn(z) = z/|z|, gradtx's the sign of the
# real and of the imaginary part; schedulefree's AdamW squares g as g·g, not |g|². Checked as
# pairs of reals instead. prodigyopt and dadaptation fail on a complex parameter (their estimate
# of d becomes a complex number they compare with a float).
COMPLEX_UNLIKE_REFERENCE = ("lion", "schedule_free_adamw", "prodigy", "dadapt_adamw")


@pytest.mark.parametrize(
    "info", [i for i in registry.with_torch_equivalent()
             if i.name not in REAL_ONLY + COMPLEX_UNLIKE_REFERENCE], **BY_NAME
)
def test_complex_parameters_match_torch(info, torch_float64):
    params = _complex_params(info)
    grads = _complex_grads(params, 12)
    configs = _complex_configs(info)
    assert len(configs) == 2
    for kwargs in configs:
        ours, _ = _gradtx_run(info.build(**kwargs), params, grads)
        theirs = helpers.torch_trajectory(torch_float64, info, kwargs, params, grads)
        for step, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            for k in params:
                assert a[k].dtype == jnp.complex128
                np.testing.assert_allclose(
                    a[k], b[k], rtol=1e-9, atol=1e-12, err_msg=f"{kwargs} step {step} {k}"
                )


def _stacked(tree):
    return tree_map(lambda z: jnp.stack([z.real, z.imag]), tree)


@pytest.mark.parametrize(
    "info", [i for i in OPTIMIZERS if (i.torch_class is None or i.name in COMPLEX_UNLIKE_REFERENCE)
             and i.name not in REAL_ONLY],
    **BY_NAME,
)
def test_complex_parameters_are_pairs_of_reals(info):
    """Without a torch reference: a complex leaf of shape S steps exactly as the real leaf
    ``stack([Re, Im])`` of shape (2, *S) does, so LAMB's and LARS's whole-leaf norms are the
    complex norms."""
    params = _complex_params(info)
    grads = _complex_grads(params, 8)
    opt = info.build(**info.example)
    ours, state = _gradtx_run(opt, params, grads)
    real, real_state = _gradtx_run(opt, _stacked(params), [_stacked(g) for g in grads])
    for a, b in zip(ours, real, strict=True):
        for k in params:
            assert a[k].dtype == jnp.complex128
            np.testing.assert_allclose(_stacked(a)[k], b[k], rtol=1e-13, atol=1e-15)
    # Per-parameter state is the real (2, *S) array; the wrappers' own state (slow weights,
    # the parameter average) stays complex.
    for x, y in zip(tree_leaves(state), tree_leaves(real_state), strict=True):
        if jnp.iscomplexobj(x):
            assert info.name in WRAPPERS
            x = jnp.stack([x.real, x.imag])
        assert x.dtype == y.dtype
        np.testing.assert_allclose(x, y, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("name", REAL_ONLY)
def test_real_only_optimizers_refuse_complex_parameters_by_path(name):
    info = registry.get(name)
    opt = info.build(**info.example)
    params = _params(info, top={"z": jnp.ones((2, 2), jnp.complex64)})
    with pytest.raises(TypeError, match=rf"{name} does not support.*\['z'\]"):
        opt.init(params)
    real = _params(info)
    with pytest.raises(TypeError, match=W):
        opt.update(_with_w(real, real["layer"]["w"].astype(jnp.complex128)), opt.init(real))


@pytest.mark.parametrize("info", [i for i in OPTIMIZERS if i.name not in REAL_ONLY], **BY_NAME)
def test_a_real_gradient_for_a_complex_parameter_names_the_path(info):
    params = _complex_params(info)
    opt = info.build(**info.example)
    grads = _complex_grads(params, 1)[0]
    with pytest.raises(TypeError, match=r"\['w'\].*complex128"):
        opt.update({**grads, "w": grads["w"].real}, opt.init(params), params)


def test_jax_gradients_of_complex_parameters_are_conjugated_for_torch_parity(torch_float64):
    """jax.grad of a real loss returns the conjugate of torch's ``z.grad``; conjugated, it
    drives gradtx's Adam along torch's trajectory on the same loss."""
    torch = torch_float64
    target = np.asarray([1 + 2j, -0.5 + 0.25j, 3 - 1j])
    start = np.asarray([0.5 - 0.25j, 0.0 + 0.0j, -1 + 1j])

    def loss(z):
        return jnp.sum(jnp.abs(z - target) ** 2 + jnp.real(z) ** 3 / 10)

    opt = gx.adam(learning_rate=0.1, weight_decay=0.01)
    z, state = jnp.asarray(start), opt.init(jnp.asarray(start))
    tz = torch.tensor(start, requires_grad=True)
    topt = torch.optim.Adam([tz], lr=0.1, weight_decay=0.01)
    for _ in range(15):
        topt.zero_grad()
        torch.sum(torch.abs(tz - torch.tensor(target)) ** 2 + tz.real**3 / 10).backward()
        grad = jnp.conj(jax.grad(loss)(z))
        np.testing.assert_allclose(grad, tz.grad.numpy(), rtol=1e-12)
        updates, state = opt.update(grad, state, z)
        z = gx.apply_updates(z, updates)
        topt.step()
        np.testing.assert_allclose(z, tz.detach().numpy(), rtol=1e-9, atol=1e-12)

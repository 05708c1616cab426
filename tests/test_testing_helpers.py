"""gradtx.testing itself: the strategies draw what they promise, and check_transformation
passes correct transformations and names the invariant that a deliberately broken one fails."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gradtx as gx
from gradtx import testing
from gradtx.optimizers import registry
from gradtx.testing import arrays_like, check_transformation, hyperparameters, pytrees

SETTINGS = settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
PARAMS = {
    "w": jnp.linspace(-1.0, 1.0, 6, dtype=jnp.float32).reshape(2, 3),
    "b": jnp.full(3, 0.5, jnp.float32),
    "s": jnp.asarray(2.0, jnp.float32),
    "frozen": None,
}


def _is_none(x):
    return x is None


def _leaves_with_none(tree):
    return jax.tree_util.tree_leaves(tree, is_leaf=_is_none)


def _depth(tree) -> int:
    if isinstance(tree, dict):
        return 1 + max((_depth(v) for v in tree.values()), default=0)
    if isinstance(tree, (list, tuple)):
        return 1 + max((_depth(v) for v in tree), default=0)
    return 0


# --- strategies ------------------------------------------------------------------------------


@SETTINGS
@given(
    pytrees(
        shapes=[(2,), (3, 1)],
        dtypes=(jnp.float32, jnp.bfloat16),
        min_leaves=2,
        max_leaves=5,
        max_depth=3,
        none_leaves=True,
        elements=st.floats(-0.5, 0.5),
    )
)
def test_pytrees_respect_their_bounds(tree):
    leaves = _leaves_with_none(tree)
    assert 2 <= len(leaves) <= 5
    assert 1 <= _depth(tree) <= 3
    for leaf in leaves:
        if leaf is None:
            continue
        assert isinstance(leaf, jax.Array)
        assert leaf.shape in {(2,), (3, 1), ()}
        assert leaf.dtype in {jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16)}
        assert bool(jnp.all(jnp.abs(leaf.astype(jnp.float32)) <= 0.5))


@SETTINGS
@given(pytrees(scalar_leaves=False, max_leaves=3))
def test_pytrees_without_scalars_or_none(tree):
    leaves = _leaves_with_none(tree)
    assert leaves and all(leaf is not None and leaf.ndim >= 1 for leaf in leaves)
    assert all(1 <= side <= 3 for leaf in leaves for side in leaf.shape)


def test_pytrees_cover_every_container_kind_empty_trees_and_none_leaves():
    seen = set()

    @settings(SETTINGS, max_examples=100)
    @given(pytrees(min_leaves=0, max_leaves=3, none_leaves=True))
    def collect(tree):
        assert tree is not None  # a bare None would read as "no parameters"
        seen.add(type(tree).__name__)
        if not _leaves_with_none(tree):
            seen.add("empty")
        if any(leaf is None for leaf in _leaves_with_none(tree)):
            seen.add("none-leaf")
        if isinstance(tree, jax.Array):
            seen.add("bare-array")

    collect()
    assert {"dict", "list", "tuple", "empty", "none-leaf"} <= seen


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"min_leaves": 3, "max_leaves": 2}, "min_leaves"),
        ({"min_leaves": -1}, "min_leaves"),
        ({"max_depth": 0}, "max_depth"),
        ({"dtypes": ()}, "dtypes"),
    ],
)
def test_pytrees_reject_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        pytrees(**kwargs)


@SETTINGS
@given(st.data())
def test_arrays_like_keeps_structure_shapes_and_dtypes(data):
    params = data.draw(pytrees(dtypes=(jnp.float32, jnp.float64, jnp.float16), none_leaves=True))
    grads = data.draw(arrays_like(params, elements=st.floats(1.0, 2.0)))
    assert jax.tree_util.tree_structure(grads, is_leaf=_is_none) == jax.tree_util.tree_structure(
        params, is_leaf=_is_none
    )
    for p, g in zip(_leaves_with_none(params), _leaves_with_none(grads), strict=True):
        assert (p is None) == (g is None)
        if p is not None:
            assert g.shape == p.shape and g.dtype == p.dtype
            assert bool(jnp.all((g >= 1.0) & (g <= 2.0)))


@pytest.mark.parametrize("info", registry.OPTIMIZERS, ids=lambda info: info.name)
@settings(SETTINGS, max_examples=10)
@given(data=st.data())
def test_hyperparameters_come_from_the_grid_and_build(info, data):
    kwargs = data.draw(hyperparameters(info))
    for name, values in info.grid.items():
        assert kwargs[name] in values
    assert info.constraint(kwargs)
    info.build(**kwargs)  # valid: builds without error


@settings(SETTINGS, max_examples=50)
@given(hyperparameters(registry.get("sgd"), names=("nesterov", "momentum", "dampening")))
def test_hyperparameters_never_break_the_constraint(kwargs):
    # nesterov needs momentum > 0 and no dampening (torch refuses it otherwise)
    assert not kwargs["nesterov"] or (kwargs["momentum"] > 0 and kwargs["dampening"] == 0)
    assert kwargs["learning_rate"] == registry.get("sgd").example["learning_rate"]


@SETTINGS
@given(
    hyperparameters(
        registry.get("adam"), names=("b1", "b2"), fixed={"eps": 0.0, "learning_rate": 0.5}
    )
)
def test_hyperparameters_names_and_fixed(kwargs):
    assert set(kwargs) == {"b1", "b2", "eps", "learning_rate"}
    assert kwargs["eps"] == 0.0 and kwargs["learning_rate"] == 0.5


def test_hyperparameters_reject_unknown_names():
    with pytest.raises(ValueError, match=r"no grid for 'lr'.*learning_rate"):
        hyperparameters(registry.get("adam"), names=("lr",))


def test_strategies_without_hypothesis_say_how_to_install_it(monkeypatch):
    for module in ("hypothesis", "hypothesis.strategies", "hypothesis.extra.numpy"):
        monkeypatch.setitem(sys.modules, module, None)  # makes the import fail
    for build in (pytrees, lambda: arrays_like(PARAMS),
                  lambda: hyperparameters(registry.get("sgd"))):
        with pytest.raises(ImportError, match="pip install hypothesis"):
            build()


def test_gradtx_does_not_import_the_testing_module_or_hypothesis():
    code = (
        "import sys, gradtx\n"
        "assert 'gradtx.testing' not in sys.modules\n"
        "assert 'hypothesis' not in sys.modules\n"
        "import gradtx.testing\n"
        "assert 'hypothesis' not in sys.modules  # imported only when a strategy is built\n"
    )
    root = pathlib.Path(__file__).resolve().parents[1]  # this checkout's gradtx
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=root
    )
    assert result.returncode == 0, result.stderr


# --- check_transformation on correct transformations -----------------------------------------


class _MomentumState(NamedTuple):
    buffer: dict
    count: jax.Array


def heavy_ball(momentum: float) -> gx.GradientTransformation:
    """A user's own transformation, written as the docs recommend."""

    def init(params):
        buffer = jax.tree_util.tree_map(jnp.zeros_like, params)
        return _MomentumState(buffer, jnp.zeros((), jnp.int32))

    def update(updates, state, params=None):
        buffer = jax.tree_util.tree_map(
            lambda b, u: (momentum * b + u).astype(b.dtype), state.buffer, updates
        )
        return buffer, _MomentumState(buffer, state.count + 1)

    return gx.GradientTransformation(init, update)


@pytest.mark.parametrize(
    "make",
    [gx.identity, gx.scale_by_adam, lambda: heavy_ball(0.9), lambda: gx.adamw(1e-2)],
    ids=["identity", "scale_by_adam", "heavy_ball", "adamw"],
)
def test_correct_transformations_pass(make):
    check_transformation(make(), PARAMS)
    check_transformation(make(), PARAMS, steps=1, batch_size=3, seed=7)


def test_optional_checks_pass_where_the_property_holds():
    check_transformation(gx.sgd(0.1, momentum=0.9), PARAMS, checks=("zero_fixed_point",),
                         rtol=0, atol=0)
    check_transformation(gx.adam(0.1, eps=0.0), PARAMS, checks=("scale_invariant",))
    check_transformation(gx.lion(0.1), PARAMS, checks=testing.DEFAULT_CHECKS
                         + testing.OPTIONAL_CHECKS)


def test_grads_sequence_and_odd_trees():
    grads = [jax.tree_util.tree_map(lambda p: jnp.full_like(p, 0.5), PARAMS)] * 2
    check_transformation(gx.adam(0.1), PARAMS, grads)
    for tree in ({}, (), {"a": [], "b": None}, jnp.ones(3, jnp.float32)):
        check_transformation(gx.adam(0.1), tree)


def test_weakly_typed_params_are_not_blamed_on_the_transformation():
    # jnp.asarray(0.5) is weakly typed; apply_updates returns strongly typed params, so a
    # jitted step would retrace once whatever the optimizer: the checker starts from strong.
    check_transformation(gx.sgd(0.1, momentum=0.9), {"s": jnp.asarray(0.5)})


# --- check_transformation on broken transformations ------------------------------------------


def _add_to_updates(updates, value):
    return jax.tree_util.tree_map(lambda u: u + jnp.asarray(value, u.dtype), updates)


def counter_not_reset_by_init():
    """Adds a Python-side counter of update calls to the updates: runs differ."""
    calls = [0]

    def update(updates, state, params=None):
        calls[0] += 1
        return _add_to_updates(updates, calls[0]), state

    return gx.GradientTransformation(lambda params: gx.EmptyState(), update)


def counter_read_while_tracing():
    """Reset by init, so eager runs repeat; under jit the value is read once, when tracing."""
    calls = [0]

    def init(params):
        calls[0] = 0
        return gx.EmptyState()

    def update(updates, state, params=None):
        calls[0] += 1
        return _add_to_updates(updates, calls[0]), state

    return gx.GradientTransformation(init, update)


class _Count(NamedTuple):
    count: jax.Array


def count_changing_dtype():
    def init(params):
        return _Count(jnp.zeros((), jnp.int32))

    def update(updates, state, params=None):
        return updates, _Count(state.count + 0.5)  # int32 + Python float -> float

    return gx.GradientTransformation(init, update)


def count_becoming_weakly_typed():
    def init(params):
        return _Count(jnp.zeros((), jnp.float32))

    def update(updates, state, params=None):
        return updates, _Count(jnp.asarray(1.0))  # a weakly typed constant

    return gx.GradientTransformation(init, update)


def python_int_in_state():
    def init(params):
        return {"count": 0}

    def update(updates, state, params=None):
        return updates, {"count": state["count"] + 1}

    return gx.GradientTransformation(init, update)


def params_keyword_only():
    """update takes params by keyword only, so chain (which passes it third) cannot call it."""

    def update(updates, state, *, params=None):
        return updates, state

    return gx.GradientTransformation(lambda params: gx.EmptyState(), update)


def host_normalizer_claiming_to_be_vectorized():
    """A host callback that normalizes by the sum over everything it receives, declared as
    vectorized: under vmap it receives the whole batch and mixes the batch members."""

    def host(x):
        x = np.asarray(x)
        return (x / np.sum(np.abs(x))).astype(x.dtype)

    def normalize(u):
        shape = jax.ShapeDtypeStruct(u.shape, u.dtype)
        return jax.pure_callback(host, shape, u, vmap_method="expand_dims")

    def update(updates, state, params=None):
        return jax.tree_util.tree_map(normalize, updates), state

    return gx.GradientTransformation(lambda params: gx.EmptyState(), update)


def drops_a_leaf():
    def update(updates, state, params=None):
        return {k: v for k, v in updates.items() if k != "b"}, state

    return gx.GradientTransformation(lambda params: gx.EmptyState(), update)


def half_precision_updates():
    def update(updates, state, params=None):
        return jax.tree_util.tree_map(lambda u: u.astype(jnp.float16), updates), state

    return gx.GradientTransformation(lambda params: gx.EmptyState(), update)


def raising():
    def update(updates, state, params=None):
        raise RuntimeError("boom")

    return gx.GradientTransformation(lambda params: gx.EmptyState(), update)


def _failure(make, **kwargs) -> str:
    with pytest.raises(AssertionError) as info:
        check_transformation(make(), PARAMS, **kwargs)
    return str(info.value)


BROKEN = [
    (counter_not_reset_by_init, "deterministic", "two eager runs from the same inputs"),
    (counter_read_while_tracing, "jit_equals_eager", r"jax\.jit\(update\) and eager"),
    (count_changing_dtype, "state_stable", r"\.count was int32\[\] after init and is "
                                           r"float\d\d\[\].* after step 1"),
    (count_becoming_weakly_typed, "state_stable", r"float32\[\] after init and is "
                                                  r"float\d\d\[\] \(weakly typed\)"),
    (python_int_in_state, "state_stable", r"\['count'\] is of type int \(0\), not an array"),
    (params_keyword_only, "chain_identity", "raised TypeError"),
    (host_normalizer_claiming_to_be_vectorized, "vmap_equals_loop", "batch element 0"),
    (drops_a_leaf, "updates_match_params", r"at step 1: .*no entry at \['b'\]"),
    (half_precision_updates, "updates_match_params", r"\['b'\] have dtype float16 where"),
]


@pytest.mark.parametrize(
    ("make", "invariant", "detail"), [pytest.param(*c, id=c[0].__name__) for c in BROKEN]
)
def test_each_broken_transformation_fails_its_invariant(make, invariant, detail):
    message = _failure(make, checks=(invariant,))
    assert message.startswith("check_transformation: 1 of 1 invariant(s) failed:")
    assert f"[{invariant}]" in message
    assert len(re.findall(detail, message)) == 1, message


ISOLATED = [
    (counter_read_while_tracing, "jit_equals_eager"),
    (count_changing_dtype, "state_stable"),
    (count_becoming_weakly_typed, "state_stable"),
    (params_keyword_only, "chain_identity"),
    (host_normalizer_claiming_to_be_vectorized, "vmap_equals_loop"),
    (half_precision_updates, "updates_match_params"),
]


@pytest.mark.parametrize(
    ("make", "invariant"), [pytest.param(*c, id=c[0].__name__) for c in ISOLATED]
)
def test_default_checks_name_only_the_broken_invariant(make, invariant):
    message = _failure(make)
    assert message.startswith("check_transformation: 1 of 6 invariant(s) failed:"), message
    assert f"[{invariant}]" in message


def test_a_counter_breaks_every_check_that_repeats_a_run():
    message = _failure(counter_not_reset_by_init)
    for invariant in ("deterministic", "chain_identity", "jit_equals_eager", "vmap_equals_loop"):
        assert f"[{invariant}]" in message
    assert "[state_stable]" not in message and "[updates_match_params]" not in message


def test_a_structural_mismatch_is_reported_once_under_its_own_name():
    message = _failure(drops_a_leaf)
    assert message.startswith("check_transformation: 1 of 6 invariant(s) failed:")
    assert "[updates_match_params]" in message


def test_an_exception_is_its_invariant_failure():
    message = _failure(raising, checks=("deterministic", "vmap_equals_loop"))
    assert "[deterministic] raised RuntimeError: boom" in message
    assert "[vmap_equals_loop] raised RuntimeError: boom" in message


def test_optional_checks_fail_where_the_property_does_not_hold():
    moved = _failure(lambda: gx.adamw(0.1, weight_decay=0.1), checks=("zero_fixed_point",))
    assert "[zero_fixed_point] zero gradients moved the parameters at step 1" in moved
    scaled = _failure(lambda: gx.sgd(0.1), checks=("scale_invariant",))
    assert "[scale_invariant] gradients scaled by 0.25 change the updates at step 1" in scaled


def test_tolerances_are_used():
    # Adam with eps = 1e-8 is scale invariant up to ~eps / sqrt(v): within 1e-5, not 1e-12.
    check_transformation(gx.adam(0.1), PARAMS, checks=("scale_invariant",), rtol=1e-5)
    with pytest.raises(AssertionError, match=r"rtol=1e-12"):
        check_transformation(
            gx.adam(0.1), PARAMS, checks=("scale_invariant",), rtol=1e-12, atol=0
        )


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"checks": ("jit", "deterministic")}, ValueError, r"unknown check\(s\) 'jit'; known: "
                                                           r"jit_equals_eager"),
        ({"checks": "deterministic"}, TypeError, r"checks=\('deterministic',\)"),
        ({"steps": 0}, ValueError, "steps"),
        ({"grads_sequence": []}, ValueError, "grads_sequence"),
        ({"rtol": -1.0}, ValueError, "rtol"),
        ({"batch_size": 1}, ValueError, "batch_size"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, error, match):
    with pytest.raises(error, match=match):
        check_transformation(gx.sgd(0.1), PARAMS, **kwargs)


def test_check_names_are_all_known():
    known = set(testing.invariants._CHECKS)
    assert set(testing.DEFAULT_CHECKS) | set(testing.OPTIONAL_CHECKS) == known
    assert not set(testing.DEFAULT_CHECKS) & set(testing.OPTIONAL_CHECKS)


def test_the_examples_of_the_testing_page_run():
    """docs/testing.md's Python blocks, in order, in one namespace (they define and call
    hypothesis tests, so they check what the page says)."""
    page = pathlib.Path(__file__).resolve().parents[1] / "docs" / "testing.md"
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), re.S)
    assert len(blocks) >= 3
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(page), "exec"), namespace)

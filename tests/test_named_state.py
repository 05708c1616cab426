"""gx.tree_get / gx.tree_set: entries of a state found by name, replaced by checked copies."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx as gx


class Moments(NamedTuple):
    count: jax.Array
    mu: dict
    nu: dict


class Wrapper(NamedTuple):
    inner_state: object
    scale: jax.Array


def make_state():
    params = {"w": jnp.ones((2, 3), jnp.float32), "b": jnp.zeros(3, jnp.float32)}
    moments = Moments(
        count=jnp.zeros([], jnp.int32),
        mu=jax.tree_util.tree_map(jnp.zeros_like, params),
        nu=jax.tree_util.tree_map(jnp.ones_like, params),
    )
    return {
        "decay": Wrapper(inner_state=(moments, None), scale=jnp.asarray(0.5, jnp.float32)),
        "other": {"lr": jnp.asarray(0.1, jnp.float32)},
    }


def assert_trees_equal(a, b):
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(x, y)


# --------------------------------------------------------------------------------------------
# tree_get


def test_get_leaf():
    state = make_state()
    assert gx.tree_get(state, "count") is state["decay"].inner_state[0].count
    assert gx.tree_get(state, "lr") is state["other"]["lr"]
    assert gx.tree_get(state, "scale") is state["decay"].scale


def test_get_subtree():
    state = make_state()
    assert gx.tree_get(state, "mu") is state["decay"].inner_state[0].mu
    assert gx.tree_get(state, "inner_state") is state["decay"].inner_state
    assert gx.tree_get(state, "other") is state["other"]


def test_get_qualified():
    state = make_state()
    moments = state["decay"].inner_state[0]
    assert gx.tree_get(state, "mu/w") is moments.mu["w"]
    assert gx.tree_get(state, "nu/b") is moments.nu["b"]
    # Tuple positions are skipped: inner_state/mu spans the tuple holding the Moments.
    assert gx.tree_get(state, "inner_state/mu") is moments.mu
    assert gx.tree_get(state, "decay/inner_state/mu/w") is moments.mu["w"]
    assert gx.tree_get(state, "/decay/inner_state/count") is moments.count
    assert gx.tree_get(state, "other/lr") is state["other"]["lr"]


def test_get_missing_lists_candidates():
    with pytest.raises(KeyError) as info:
        gx.tree_get(make_state(), "momentum")
    message = str(info.value)
    assert "'momentum'" in message
    for name in ["count", "decay", "inner_state", "lr", "mu", "mu/w", "nu/b", "scale"]:
        assert name in message
    # Names are listed qualified enough to be unique: "w" alone is ambiguous.
    assert ", w," not in message and not message.rstrip("'\"").endswith(", w")


def test_get_missing_suggests_close_names():
    with pytest.raises(KeyError, match="did you mean 'count'"):
        gx.tree_get(make_state(), "cont")


def test_get_missing_qualified_key():
    with pytest.raises(KeyError, match="no entry named 'other/mu'"):
        gx.tree_get(make_state(), "other/mu")


def test_get_missing_in_tree_without_names():
    with pytest.raises(KeyError, match="no named entries"):
        gx.tree_get((jnp.zeros(2), [jnp.ones(1)]), "mu")


def test_candidate_list_is_capped():
    tree = {f"p{i:03d}": jnp.zeros(1) for i in range(200)}
    with pytest.raises(KeyError, match=r"\(160 more\)"):
        gx.tree_get(tree, "q")


def test_get_ambiguous_lists_qualified_matches():
    with pytest.raises(KeyError) as info:
        gx.tree_get(make_state(), "w")
    message = str(info.value)
    assert "ambiguous" in message
    assert "mu/w" in message and "nu/w" in message


def test_ambiguous_entries_told_apart_only_by_position():
    state = (Moments(jnp.zeros([]), {}, {}), Moments(jnp.ones([]), {}, {}))
    with pytest.raises(KeyError) as info:
        gx.tree_get(state, "count")
    message = str(info.value)
    assert "[0].count" in message and "[1].count" in message
    assert "tree_get(tree[0], 'count')" in message
    assert gx.tree_get(state[1], "count") is state[1].count
    listing = r"did you mean 'count'\? Entries: count \(2 entries\), mu \(2 entries\)"
    with pytest.raises(KeyError, match=listing):
        gx.tree_get(state, "counts")


def test_anchored_key_selects_an_entry_that_ends_another_path():
    tree = {"mu": {"mu": jnp.zeros(2)}}
    with pytest.raises(KeyError, match="one of: /mu, mu/mu"):
        gx.tree_get(tree, "mu")
    assert gx.tree_get(tree, "/mu") is tree["mu"]
    assert gx.tree_get(tree, "mu/mu") is tree["mu"]["mu"]


def test_non_string_key_is_a_type_error():
    with pytest.raises(TypeError, match="str"):
        gx.tree_get(make_state(), 0)
    with pytest.raises(TypeError, match="str"):
        gx.tree_set(make_state(), {1: jnp.zeros([])})


def test_dataclass_nodes_are_named():
    @jax.tree_util.register_dataclass
    @dataclasses.dataclass
    class WithKeys:
        a: jax.Array
        b: jax.Array

    @dataclasses.dataclass
    class WithoutKeys:
        c: jax.Array
        d: jax.Array

    jax.tree_util.register_pytree_node(
        WithoutKeys, lambda x: ((x.c, x.d), None), lambda _, ch: WithoutKeys(*ch)
    )
    tree = {"x": WithKeys(jnp.zeros(1), jnp.ones(1)), "y": WithoutKeys(jnp.zeros(2), jnp.ones(2))}
    assert gx.tree_get(tree, "b") is tree["x"].b
    assert gx.tree_get(tree, "y/d") is tree["y"].d
    new = gx.tree_set(tree, d=np.full(2, 3.0))
    np.testing.assert_array_equal(new["y"].d, [3.0, 3.0])
    np.testing.assert_array_equal(new["y"].c, [0.0, 0.0])


def test_get_inside_jit():
    state = make_state()

    @jax.jit
    def read(s):
        return gx.tree_get(s, "mu/w") + gx.tree_get(s, "other/lr")

    np.testing.assert_allclose(read(state), np.full((2, 3), 0.1, np.float32))


# --------------------------------------------------------------------------------------------
# tree_set


def test_set_returns_changed_copy_and_leaves_input_unchanged():
    state = make_state()
    before = jax.tree_util.tree_map(np.asarray, state)
    new_w = jnp.full((2, 3), 7.0, jnp.float32)
    new = gx.tree_set(state, {"mu/w": new_w})
    assert gx.tree_get(new, "mu/w") is new_w
    assert_trees_equal(state, before)
    # Everything else is the same, shared.
    assert new["other"]["lr"] is state["other"]["lr"]
    assert gx.tree_get(new, "nu") is gx.tree_get(state, "nu")
    assert jax.tree_util.tree_structure(new) == jax.tree_util.tree_structure(state)


def test_set_subtree_and_kwargs():
    state = make_state()
    new_mu = {"w": jnp.full((2, 3), 2.0, jnp.float32), "b": jnp.full(3, 3.0, jnp.float32)}
    new = gx.tree_set(state, mu=new_mu)
    assert_trees_equal(gx.tree_get(new, "mu"), new_mu)
    assert_trees_equal(gx.tree_get(new, "nu"), gx.tree_get(state, "nu"))


def test_set_two_keys_at_once():
    state = make_state()
    new = gx.tree_set(state, {"nu/b": np.arange(3.0)}, count=3, lr=0.01)
    assert new["decay"].inner_state[0].count.dtype == jnp.int32
    assert int(gx.tree_get(new, "count")) == 3
    np.testing.assert_allclose(gx.tree_get(new, "lr"), 0.01, rtol=1e-6)
    assert gx.tree_get(new, "lr").dtype == jnp.float32
    assert gx.tree_get(new, "nu/b").dtype == jnp.float32
    np.testing.assert_array_equal(gx.tree_get(new, "nu/b"), [0.0, 1.0, 2.0])


def test_set_converts_numpy_and_python_values_to_the_old_dtype():
    state = make_state()
    new = gx.tree_set(state, {"mu/w": np.ones((2, 3), np.float64)}, scale=1)
    assert gx.tree_get(new, "mu/w").dtype == jnp.float32
    assert isinstance(gx.tree_get(new, "mu/w"), jax.Array)
    assert gx.tree_get(new, "scale").dtype == jnp.float32 and float(new["decay"].scale) == 1.0


def test_set_wrong_shape_names_key_and_path():
    state = make_state()
    with pytest.raises(ValueError, match=r"'mu/w'.*\['decay'\]\.inner_state\[0\]\.mu\['w'\]"):
        gx.tree_set(state, {"mu/w": jnp.zeros((3, 2), jnp.float32)})
    # A scalar is not broadcast to a non-scalar entry.
    with pytest.raises(ValueError, match="'mu/b'.*shape"):
        gx.tree_set(state, {"mu/b": 0.0})
    with pytest.raises(ValueError, match="'mu/b'.*shape"):
        gx.tree_set(state, {"mu/b": np.zeros((1, 3))})


def test_set_wrong_dtype_names_key():
    state = make_state()
    with pytest.raises(ValueError, match="'mu/w'.*dtype"):
        gx.tree_set(state, {"mu/w": jnp.zeros((2, 3), jnp.int32)})
    # A float does not silently become an integer count.
    with pytest.raises(ValueError, match="'count'.*dtype"):
        gx.tree_set(state, count=1.5)
    with pytest.raises(ValueError, match="'count'.*does not fit"):
        gx.tree_set({"count": jnp.zeros([], jnp.int8)}, count=300)


def test_set_wrong_structure_names_key_and_path():
    state = make_state()
    with pytest.raises(ValueError, match=r"'mu'.*structure.*\['decay'\]\.inner_state\[0\]\.mu"):
        gx.tree_set(state, mu={"w": jnp.zeros((2, 3), jnp.float32)})
    with pytest.raises(ValueError, match="'inner_state'.*structure"):
        gx.tree_set(state, inner_state=gx.tree_get(state, "mu"))
    with pytest.raises(ValueError, match="'lr'.*structure"):
        gx.tree_set(state, lr={"x": jnp.zeros([], jnp.float32)})
    # None is an entry too: it can only be replaced by None.
    with pytest.raises(ValueError, match="structure"):
        gx.tree_set({"a": (jnp.zeros(1), None)}, a=(jnp.zeros(1), jnp.zeros(1)))


def test_set_missing_and_ambiguous_keys():
    state = make_state()
    with pytest.raises(KeyError, match="no entry named 'momentum'"):
        gx.tree_set(state, momentum=0.9)
    with pytest.raises(KeyError, match="ambiguous"):
        gx.tree_set(state, w=jnp.zeros((2, 3), jnp.float32))


def test_set_overlapping_keys():
    state = make_state()
    with pytest.raises(ValueError, match="'mu'.*'mu/w'|'mu/w'.*'mu'"):
        gx.tree_set(state, {"mu/w": jnp.zeros((2, 3), jnp.float32)}, mu=gx.tree_get(state, "mu"))
    with pytest.raises(ValueError, match="same entry"):
        gx.tree_set(state, {"/other/lr": 1.0}, lr=2.0)


def test_set_argument_errors():
    state = make_state()
    with pytest.raises(TypeError, match="given twice"):
        gx.tree_set(state, {"lr": 1.0}, lr=2.0)
    with pytest.raises(TypeError, match="mapping"):
        gx.tree_set(state, [("lr", 1.0)])
    assert gx.tree_set(state) is state


def test_set_entries_named_like_the_arguments():
    tree = {"tree": jnp.zeros([], jnp.float32), "values": jnp.zeros([], jnp.float32)}
    new = gx.tree_set(tree, tree=1.0, values=2.0)
    assert float(new["tree"]) == 1.0 and float(new["values"]) == 2.0


def test_set_under_jit_with_traced_values():
    state = make_state()
    traces = 0

    @jax.jit
    def step(s, lr, w):
        nonlocal traces
        traces += 1
        s = gx.tree_set(s, {"mu/w": w}, lr=lr, count=gx.tree_get(s, "count") + 1)
        return s

    w = jnp.full((2, 3), 4.0, jnp.float32)
    new = step(state, jnp.asarray(0.5, jnp.float32), w)
    assert jax.tree_util.tree_structure(new) == jax.tree_util.tree_structure(state)
    np.testing.assert_array_equal(gx.tree_get(new, "mu/w"), w)
    assert float(gx.tree_get(new, "lr")) == 0.5 and int(gx.tree_get(new, "count")) == 1
    # The result has the input's avals, so feeding it back does not recompile.
    step(new, jnp.asarray(0.25, jnp.float32), w)
    assert traces == 1
    with pytest.raises(ValueError, match="'lr'.*dtype"):
        step(state, jnp.asarray(1, jnp.int32), w)


def test_set_eager_result_does_not_recompile_a_jitted_step():
    state = make_state()
    traces = 0

    @jax.jit
    def step(s):
        nonlocal traces
        traces += 1
        return jax.tree_util.tree_map(lambda x: x + 1, s)

    step(state)
    step(gx.tree_set(state, {"mu/w": np.zeros((2, 3)), "other/lr": 3e-4}, count=7))
    assert traces == 1


# --- The optimizers' named state -------------------------------------------------------------


def _field_names(tree, out):
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        for field, value in zip(tree._fields, tree, strict=True):
            out.add(field)
            _field_names(value, out)
    elif isinstance(tree, (tuple, list)):
        for value in tree:
            _field_names(value, out)
    elif isinstance(tree, dict):
        for value in tree.values():
            _field_names(value, out)
    return out


_PARAMS = {"w": jnp.ones((3, 2)), "b": jnp.ones(2)}


@pytest.mark.parametrize("name", ["adam", "adamw", "nadam", "adamax", "radam"])
def test_adam_family_moments_are_mu_and_nu(name):
    state = getattr(gx, name)().init(_PARAMS)
    assert gx.tree_get(state, "mu")["w"].shape == (3, 2)
    assert gx.tree_get(state, "nu")["b"].shape == (2,)
    new = gx.tree_set(state, mu={"w": jnp.full((3, 2), 2.0), "b": jnp.zeros(2)})
    assert float(gx.tree_get(new, "mu")["w"][0, 0]) == 2.0


def test_amsgrad_running_max_is_nu_max():
    state = gx.adam(amsgrad=True).init(_PARAMS)
    assert gx.tree_get(state, "nu_max")["w"].shape == (3, 2)
    with pytest.raises(KeyError, match="nu_max"):
        gx.tree_get(gx.adam().init(_PARAMS), "nu_max")


def test_every_optimizer_docstring_lists_its_state_names():
    from gradtx.optimizers.registry import OPTIMIZERS

    for info in OPTIMIZERS:
        if info.name in ("lookahead_sgd", "param_average_adam", "mechanize_sgd"):  # registry-only
            continue
        names = set()
        for kwargs in (info.example, {k: v[-1] for k, v in info.grid.items()}):
            if info.constraint(kwargs):
                params = info.params_like(_PARAMS)
                _field_names(info.build(**kwargs).init(params).inner_state, names)
        doc = info.factory.__doc__
        for name in names:
            assert f"``{name}``" in doc, f"{info.name}'s docstring does not name ``{name}``"


def test_count_names_the_optimizers_one_step_count():
    opt = gx.adamw(0.1)
    state = opt.init(_PARAMS)
    _, state = opt.update(_PARAMS, state, _PARAMS)
    assert int(gx.tree_get(state, "count")) == 1

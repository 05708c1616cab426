"""Every public transform against a direct NumPy implementation of the formula in its docstring,
in float64 on a small two-leaf tree over a few steps of random updates.

The same table of cases also checks that states are trees of jax arrays whose structure, shapes
and dtypes an update keeps, and that a jitted run gives the eager result. The last sections
check the errors: tree mismatches name the path, and invalid concrete hyperparameters name the
argument while traced ones are accepted.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx as gx

RTOL = 1e-12
STEPS = 5


# --------------------------------------------------------------------------------------------
# Data and runners


def make_params(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"a": rng.normal(size=(3,)), "b": rng.normal(size=(2, 2))}


def make_updates(steps: int = STEPS, seed: int = 1) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"a": rng.normal(size=(3,)), "b": rng.normal(size=(2, 2))} for _ in range(steps)]


PARAMS = make_params()
UPDATES = make_updates()


def run_eagerly(transform, updates, params):
    """The outputs of each step, and the states: init's first, then each update's."""
    state = transform.init(params)
    outputs, states = [], [state]
    for u in updates:
        out, state = transform.update(u, state, params)
        outputs.append(out)
        states.append(state)
    return outputs, states


def run_jitted(transform, updates, params):
    """As :func:`run_eagerly`, with ``init`` and ``update`` each under ``jax.jit``."""
    init, update = jax.jit(transform.init), jax.jit(transform.update)
    state = init(params)
    outputs, states = [], [state]
    for u in updates:
        out, state = update(u, state, params)
        outputs.append(out)
        states.append(state)
    return outputs, states


def first_output(transform, updates, params):
    return transform.update(updates, transform.init(params), params)[0]


def assert_trees_close(actual, expected):
    treedef, leaves = jax.tree_util.tree_structure, jax.tree_util.tree_leaves
    assert treedef(actual) == treedef(expected)
    for a, e in zip(leaves(actual), leaves(expected), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=RTOL, atol=0)


def assert_sequences_close(actual, expected):
    assert len(actual) == len(expected)
    for step, (a, e) in enumerate(zip(actual, expected, strict=True), start=1):
        try:
            assert_trees_close(a, e)
        except AssertionError as err:
            raise AssertionError(f"step {step}: {err}") from None


# --------------------------------------------------------------------------------------------
# NumPy references. Each ``np_*`` function takes one leaf's updates over time (a list of arrays)
# and returns that leaf's outputs over time; :func:`leafwise` lifts it to trees.


def leafwise(leaf_reference, **hyperparameters):
    """A reference over trees that applies ``leaf_reference`` to each leaf's sequence."""

    def reference(updates, params):
        del params
        per_key = {
            k: leaf_reference([u[k] for u in updates], **hyperparameters) for k in updates[0]
        }
        return [{k: per_key[k][t] for k in per_key} for t in range(len(updates))]

    return reference


def np_identity(us):
    return list(us)


def np_scaled(us, factor):
    return [factor * u for u in us]


def np_scaled_by_schedule(us, schedule, sign):
    return [sign * schedule(t) * u for t, u in enumerate(us)]


def np_ema(us, decay):
    m, out = np.zeros_like(us[0]), []
    for u in us:
        m = decay * m + (1 - decay) * u
        out.append(m)
    return out


def np_ema_of_squares(us, decay):
    return np_ema([u * u for u in us], decay)


def np_ema_variance(us, decay):
    return [v - m * m for v, m in zip(np_ema_of_squares(us, decay), np_ema(us, decay), strict=True)]


def np_sum_of_squares(us, initial_value):
    s, out = np.full_like(us[0], initial_value), []
    for u in us:
        s = s + u * u
        out.append(s)
    return out


def np_running_max(us):
    peak, out = np.zeros_like(us[0]), []
    for u in us:
        peak = np.maximum(peak, u)
        out.append(peak)
    return out


def np_bias_corrected(us, decay):
    return [u / (1 - decay**t) for t, u in enumerate(us, start=1)]


def np_momentum(us, momentum, dampening, nesterov):
    buf, out = None, []
    for u in us:
        buf = u if buf is None else momentum * buf + (1 - dampening) * u
        out.append(u + momentum * buf if nesterov else buf)
    return out


def nadam_mu(t, b1, momentum_decay):
    return b1 * (1 - 0.5 * 0.96 ** (t * momentum_decay))


def np_nadam_momentum(us, b1, momentum_decay):
    m, mu_product, out = np.zeros_like(us[0]), 1.0, []
    for t, u in enumerate(us, start=1):
        mu, mu_next = nadam_mu(t, b1, momentum_decay), nadam_mu(t + 1, b1, momentum_decay)
        mu_product *= mu
        m = b1 * m + (1 - b1) * u
        out.append((1 - mu) / (1 - mu_product) * u + mu_next / (1 - mu_product * mu_next) * m)
    return out


def np_divided_by_root(numerators, second_moments, eps, eps_in_sqrt):
    def root(v):
        return np.sqrt(v + eps) if eps_in_sqrt else np.sqrt(v) + eps

    return [n / root(v) for n, v in zip(numerators, second_moments, strict=True)]


def np_ema_over_root_of_ema_of_squares(us, eps, eps_in_sqrt):
    """``divide_by_root(ema(0.9), ema_of_squares(0.8), eps=eps, eps_in_sqrt=eps_in_sqrt)``."""
    return np_divided_by_root(np_ema(us, 0.9), np_ema_of_squares(us, 0.8), eps, eps_in_sqrt)


def np_ema_plus_ema_of_squares(us):
    """``parallel(ema(0.9), ema_of_squares(0.8), combine=add)``."""
    return [m + v for m, v in zip(np_ema(us, 0.9), np_ema_of_squares(us, 0.8), strict=True)]


def np_rms_scaled(us, decay, eps, centered, eps_in_sqrt):
    v = np_ema_variance(us, decay) if centered else np_ema_of_squares(us, decay)
    return np_divided_by_root(us, v, eps, eps_in_sqrt)


def np_adam(us, b1, b2, eps, amsgrad):
    m_hat = np_bias_corrected(np_ema(us, b1), b1)
    v = np_ema_of_squares(us, b2)
    v_hat = np_bias_corrected(np_running_max(v) if amsgrad else v, b2)
    return np_divided_by_root(m_hat, v_hat, eps, eps_in_sqrt=False)


def np_rss_scaled(us, initial_value, eps):
    return np_divided_by_root(us, np_sum_of_squares(us, initial_value), eps, eps_in_sqrt=False)


def np_past_update_rms_scaled(us, decay, eps):
    acc, out = np.zeros_like(us[0]), []
    for u in us:
        delta = np.sqrt(acc + eps) * u
        acc = decay * acc + (1 - decay) * delta * delta
        out.append(delta)
    return out


def np_decayed_weights(updates, params, weight_decay, decayed_keys):
    """``u + weight_decay * p`` on the leaves in ``decayed_keys``; other leaves unchanged."""
    return [
        {k: u[k] + weight_decay * params[k] if k in decayed_keys else u[k] for k in u}
        for u in updates
    ]


def halving_schedule(count):
    return 0.1 * 0.5**count


# --------------------------------------------------------------------------------------------
# The table: (a function that builds the transform, a reference over trees).


CASES = [
    pytest.param(gx.identity, leafwise(np_identity), id="identity"),
    pytest.param(lambda: gx.scale(2.5), leafwise(np_scaled, factor=2.5), id="scale"),
    pytest.param(lambda: gx.scale(-1.0), leafwise(np_scaled, factor=-1.0), id="scale_negative"),
    pytest.param(
        lambda: gx.scale_by_learning_rate(0.1),
        leafwise(np_scaled, factor=-0.1),
        id="learning_rate_float",
    ),
    pytest.param(
        lambda: gx.scale_by_learning_rate(0.1, flip_sign=False),
        leafwise(np_scaled, factor=0.1),
        id="learning_rate_float_no_flip",
    ),
    pytest.param(
        lambda: gx.scale_by_learning_rate(halving_schedule),
        leafwise(np_scaled_by_schedule, schedule=halving_schedule, sign=-1.0),
        id="learning_rate_schedule",
    ),
    pytest.param(
        lambda: gx.scale_by_learning_rate(halving_schedule, flip_sign=False),
        leafwise(np_scaled_by_schedule, schedule=halving_schedule, sign=1.0),
        id="learning_rate_schedule_no_flip",
    ),
    pytest.param(lambda: gx.ema(0.9), leafwise(np_ema, decay=0.9), id="ema"),
    pytest.param(
        lambda: gx.ema_of_squares(0.8), leafwise(np_ema_of_squares, decay=0.8), id="ema_of_squares"
    ),
    pytest.param(
        lambda: gx.ema_variance(0.7), leafwise(np_ema_variance, decay=0.7), id="ema_variance"
    ),
    pytest.param(
        lambda: gx.sum_of_squares(),
        leafwise(np_sum_of_squares, initial_value=0.0),
        id="sum_of_squares",
    ),
    pytest.param(
        lambda: gx.sum_of_squares(initial_value=0.25),
        leafwise(np_sum_of_squares, initial_value=0.25),
        id="sum_of_squares_initial_value",
    ),
    pytest.param(gx.running_max, leafwise(np_running_max), id="running_max"),
    pytest.param(
        lambda: gx.bias_correction(0.9),
        leafwise(np_bias_corrected, decay=0.9),
        id="bias_correction",
    ),
    pytest.param(
        lambda: gx.scale_by_momentum(0.9),
        leafwise(np_momentum, momentum=0.9, dampening=0.0, nesterov=False),
        id="momentum",
    ),
    pytest.param(
        lambda: gx.scale_by_momentum(0.8, dampening=0.3),
        leafwise(np_momentum, momentum=0.8, dampening=0.3, nesterov=False),
        id="momentum_dampening",
    ),
    pytest.param(
        lambda: gx.scale_by_momentum(0.9, nesterov=True),
        leafwise(np_momentum, momentum=0.9, dampening=0.0, nesterov=True),
        id="momentum_nesterov",
    ),
    pytest.param(
        lambda: gx.scale_by_momentum(jnp.asarray(0.7), dampening=jnp.asarray(0.2)),
        leafwise(np_momentum, momentum=0.7, dampening=0.2, nesterov=False),
        id="momentum_array_hyperparameters",
    ),
    pytest.param(
        gx.nadam_momentum,
        leafwise(np_nadam_momentum, b1=0.9, momentum_decay=4e-3),
        id="nadam_momentum",
    ),
    pytest.param(
        lambda: gx.nadam_momentum(b1=0.8, momentum_decay=0.5),
        leafwise(np_nadam_momentum, b1=0.8, momentum_decay=0.5),
        id="nadam_momentum_fast_schedule",
    ),
    *[
        pytest.param(
            lambda s=in_sqrt: gx.divide_by_root(
                gx.ema(0.9), gx.ema_of_squares(0.8), eps=0.1, eps_in_sqrt=s
            ),
            leafwise(np_ema_over_root_of_ema_of_squares, eps=0.1, eps_in_sqrt=in_sqrt),
            id=f"divide_by_root[eps_in_sqrt={in_sqrt}]",
        )
        for in_sqrt in (False, True)
    ],
    *[
        pytest.param(
            lambda c=centered, s=in_sqrt: gx.scale_by_rms(
                decay=0.8, eps=1e-3, centered=c, eps_in_sqrt=s
            ),
            leafwise(np_rms_scaled, decay=0.8, eps=1e-3, centered=centered, eps_in_sqrt=in_sqrt),
            id=f"rms[centered={centered},eps_in_sqrt={in_sqrt}]",
        )
        for centered in (False, True)
        for in_sqrt in (False, True)
    ],
    *[
        pytest.param(
            lambda a=amsgrad: gx.scale_by_adam(b1=0.9, b2=0.5, eps=1e-3, amsgrad=a),
            leafwise(np_adam, b1=0.9, b2=0.5, eps=1e-3, amsgrad=amsgrad),
            id=f"adam[amsgrad={amsgrad}]",
        )
        for amsgrad in (False, True)
    ],
    pytest.param(
        lambda: gx.scale_by_rss(initial_accumulator_value=0.1, eps=1e-3),
        leafwise(np_rss_scaled, initial_value=0.1, eps=1e-3),
        id="rss",
    ),
    pytest.param(
        lambda: gx.scale_by_past_update_rms(decay=0.9, eps=1e-2),
        leafwise(np_past_update_rms_scaled, decay=0.9, eps=1e-2),
        id="past_update_rms",
    ),
    pytest.param(
        lambda: gx.add_decayed_weights(0.05),
        lambda us, p: np_decayed_weights(us, p, 0.05, decayed_keys={"a", "b"}),
        id="add_decayed_weights",
    ),
    pytest.param(
        lambda: gx.chain(gx.scale(2.0), gx.ema_of_squares(0.9)),
        leafwise(lambda us: np_ema_of_squares(np_scaled(us, 2.0), 0.9)),
        id="chain_scale_then_squares",
    ),
    pytest.param(
        lambda: gx.chain(gx.ema_of_squares(0.9), gx.scale(2.0)),
        leafwise(lambda us: np_scaled(np_ema_of_squares(us, 0.9), 2.0)),
        id="chain_squares_then_scale",
    ),
    pytest.param(
        lambda: gx.parallel(gx.scale(2.0), gx.scale(3.0), combine=lambda a, b: a - b),
        leafwise(np_scaled, factor=-1.0),
        id="parallel_same_input",
    ),
    pytest.param(
        lambda: gx.parallel(gx.ema(0.9), gx.ema_of_squares(0.8), combine=lambda m, v: v + m),
        leafwise(np_ema_plus_ema_of_squares),
        id="parallel_stateful_branches",
    ),
]


# --------------------------------------------------------------------------------------------
# Formulas


@pytest.mark.parametrize(("make_transform", "reference"), CASES)
def test_matches_numpy_reference(make_transform, reference):
    outputs, _ = run_eagerly(make_transform(), UPDATES, PARAMS)
    assert_sequences_close(outputs, reference(UPDATES, PARAMS))


def test_schedule_is_evaluated_at_counts_from_zero():
    seen = []

    def recording_schedule(count):
        seen.append(int(count))
        return 0.1

    run_eagerly(gx.scale_by_learning_rate(recording_schedule, flip_sign=False), UPDATES, PARAMS)
    assert seen == list(range(STEPS))


def test_bias_correction_counts_from_one():
    out = first_output(gx.bias_correction(0.5), UPDATES[0], PARAMS)
    assert_trees_close(out, {k: v / 0.5 for k, v in UPDATES[0].items()})


def test_momentum_buffer_starts_as_first_update_and_dampens_from_step_two():
    transform = gx.scale_by_momentum(0.9, dampening=0.5)
    outputs, _ = run_eagerly(transform, UPDATES[:2], PARAMS)
    first, second = UPDATES[0], UPDATES[1]
    assert_trees_close(outputs[0], first)
    assert_trees_close(outputs[1], {k: 0.9 * first[k] + 0.5 * second[k] for k in first})


def test_nesterov_outputs_update_plus_momentum_times_buffer():
    outputs, _ = run_eagerly(gx.scale_by_momentum(0.9, nesterov=True), UPDATES[:2], PARAMS)
    first, second = UPDATES[0], UPDATES[1]
    buffer = {k: 0.9 * first[k] + second[k] for k in first}
    assert_trees_close(outputs[0], {k: first[k] + 0.9 * first[k] for k in first})
    assert_trees_close(outputs[1], {k: second[k] + 0.9 * buffer[k] for k in first})


@pytest.mark.parametrize("dampening", [0.0, 0.5])
@pytest.mark.parametrize(
    "momentum", [pytest.param(jnp.asarray(0.0), id="array"), pytest.param(0.0, id="float")]
)
def test_zero_momentum_passes_updates_through(momentum, dampening):
    outputs, _ = run_eagerly(gx.scale_by_momentum(momentum, dampening), UPDATES, PARAMS)
    assert_sequences_close(outputs, UPDATES)


def test_traced_zero_momentum_passes_updates_through():
    def outputs_for(momentum):
        return run_eagerly(gx.scale_by_momentum(momentum, dampening=0.5), UPDATES, PARAMS)[0]

    assert_sequences_close(jax.jit(outputs_for)(0.0), UPDATES)


@pytest.mark.parametrize(
    ("mask", "decayed_keys"),
    [
        pytest.param({"a": True, "b": False}, {"a"}, id="tree"),
        pytest.param(lambda params: {"a": False, "b": True}, {"b"}, id="function"),
    ],
)
def test_add_decayed_weights_with_mask(mask, decayed_keys):
    outputs, _ = run_eagerly(gx.add_decayed_weights(0.05, mask=mask), UPDATES, PARAMS)
    assert_sequences_close(outputs, np_decayed_weights(UPDATES, PARAMS, 0.05, decayed_keys))


def test_add_decayed_weights_needs_params():
    transform = gx.add_decayed_weights(0.05)
    with pytest.raises(ValueError, match="params"):
        transform.update(UPDATES[0], transform.init(PARAMS))


# --------------------------------------------------------------------------------------------
# States and jit


@pytest.mark.parametrize(("make_transform", "reference"), CASES)
def test_state_leaves_are_jax_arrays(make_transform, reference):
    del reference
    _, states = run_eagerly(make_transform(), UPDATES, PARAMS)
    for step, state in enumerate(states):
        for leaf in jax.tree_util.tree_leaves(state):
            assert isinstance(leaf, jax.Array), f"state after {step} updates holds {type(leaf)}"


@pytest.mark.parametrize(("make_transform", "reference"), CASES)
def test_update_keeps_state_structure_shapes_and_dtypes(make_transform, reference):
    del reference
    _, states = run_eagerly(make_transform(), UPDATES, PARAMS)
    treedef, leaves = jax.tree_util.tree_structure, jax.tree_util.tree_leaves
    initial = states[0]
    for state in states[1:]:
        assert treedef(state) == treedef(initial)
        for new, old in zip(leaves(state), leaves(initial), strict=True):
            assert (new.shape, new.dtype) == (old.shape, old.dtype)


@pytest.mark.parametrize(("make_transform", "reference"), CASES)
def test_jit_matches_eager(make_transform, reference):
    del reference
    eager_outputs, eager_states = run_eagerly(make_transform(), UPDATES, PARAMS)
    jit_outputs, jit_states = run_jitted(make_transform(), UPDATES, PARAMS)
    assert_sequences_close(jit_outputs, eager_outputs)
    assert_sequences_close(jit_states, eager_states)


# --------------------------------------------------------------------------------------------
# Errors


PER_LEAF_STATEFUL = [
    pytest.param(lambda: gx.ema(0.9), id="ema"),
    pytest.param(lambda: gx.ema_of_squares(0.9), id="ema_of_squares"),
    pytest.param(lambda: gx.ema_variance(0.9), id="ema_variance"),
    pytest.param(gx.sum_of_squares, id="sum_of_squares"),
    pytest.param(gx.running_max, id="running_max"),
    pytest.param(gx.scale_by_momentum, id="scale_by_momentum"),
    pytest.param(gx.nadam_momentum, id="nadam_momentum"),
    pytest.param(gx.scale_by_rms, id="scale_by_rms"),
    pytest.param(gx.scale_by_adam, id="scale_by_adam"),
    pytest.param(gx.scale_by_rss, id="scale_by_rss"),
    pytest.param(gx.scale_by_past_update_rms, id="scale_by_past_update_rms"),
]


@pytest.mark.parametrize("make_transform", PER_LEAF_STATEFUL)
def test_missing_key_names_the_path(make_transform):
    transform = make_transform()
    with pytest.raises(ValueError, match=re.escape("['b']")):
        transform.update({"a": UPDATES[0]["a"]}, transform.init(PARAMS), PARAMS)


@pytest.mark.parametrize("make_transform", PER_LEAF_STATEFUL)
def test_wrong_shape_names_the_path_and_both_shapes(make_transform):
    transform = make_transform()
    updates = {"a": UPDATES[0]["a"], "b": np.ones(4)}
    with pytest.raises(ValueError) as info:
        transform.update(updates, transform.init(PARAMS), PARAMS)
    message = str(info.value)
    for fragment in ("['b']", "(4,)", "(2, 2)"):
        assert fragment in message, f"{fragment!r} not in {message!r}"


INVALID_HYPERPARAMETERS = [
    pytest.param(gx.ema, 1.5, "decay", id="ema_decay_above_one"),
    pytest.param(gx.ema, -0.1, "decay", id="ema_decay_negative"),
    pytest.param(gx.ema_of_squares, 1.0, "decay", id="ema_of_squares_decay_one"),
    pytest.param(gx.ema_variance, 1.5, "decay", id="ema_variance_decay"),
    pytest.param(gx.bias_correction, -0.1, "decay", id="bias_correction_decay"),
    pytest.param(gx.sum_of_squares, -1.0, "initial_value", id="sum_of_squares_initial"),
    pytest.param(gx.scale, float("nan"), "step_size", id="scale_nan"),
    pytest.param(gx.scale_by_learning_rate, -0.1, "learning_rate", id="learning_rate"),
    pytest.param(
        lambda v: gx.scale_by_momentum(momentum=v), -1.0, "momentum", id="momentum_negative"
    ),
    pytest.param(
        lambda v: gx.scale_by_momentum(dampening=v), 1.5, "dampening", id="dampening_above_one"
    ),
    pytest.param(
        lambda v: gx.scale_by_momentum(nesterov=True, momentum=0.9, dampening=v),
        0.5,
        "dampening",
        id="nesterov_with_dampening",
    ),
    pytest.param(
        lambda v: gx.scale_by_momentum(nesterov=True, momentum=v),
        0.0,
        "momentum",
        id="nesterov_without_momentum",
    ),
    pytest.param(lambda v: gx.nadam_momentum(b1=v), 1.0, "b1", id="nadam_b1"),
    pytest.param(
        lambda v: gx.nadam_momentum(momentum_decay=v), -1.0, "momentum_decay", id="nadam_psi"
    ),
    pytest.param(
        lambda v: gx.divide_by_root(gx.identity(), gx.ema_of_squares(0.9), eps=v),
        -1.0,
        "eps",
        id="normalize_eps",
    ),
    pytest.param(lambda v: gx.scale_by_rms(decay=v), 1.5, "decay", id="rms_decay"),
    pytest.param(lambda v: gx.scale_by_rms(eps=v), -1.0, "eps", id="rms_eps"),
    pytest.param(lambda v: gx.scale_by_adam(b1=v), 1.5, "b1", id="adam_b1"),
    pytest.param(lambda v: gx.scale_by_adam(b2=v), 1.5, "b2", id="adam_b2"),
    pytest.param(lambda v: gx.scale_by_adam(eps=v), -1.0, "eps", id="adam_eps"),
    pytest.param(
        lambda v: gx.scale_by_rss(initial_accumulator_value=v),
        -1.0,
        "initial_accumulator_value",
        id="rss_initial",
    ),
    pytest.param(lambda v: gx.scale_by_rss(eps=v), -1.0, "eps", id="rss_eps"),
    pytest.param(
        lambda v: gx.scale_by_past_update_rms(decay=v), 1.5, "decay", id="past_rms_decay"
    ),
    pytest.param(lambda v: gx.scale_by_past_update_rms(eps=v), -1.0, "eps", id="past_rms_eps"),
    pytest.param(gx.add_decayed_weights, -1e-4, "weight_decay", id="weight_decay"),
]


@pytest.mark.parametrize(("make_transform", "value", "argument"), INVALID_HYPERPARAMETERS)
def test_invalid_concrete_hyperparameter_names_the_argument(make_transform, value, argument):
    with pytest.raises(ValueError, match=re.escape(f"`{argument}`")):
        make_transform(value)


@pytest.mark.parametrize(("make_transform", "value", "argument"), INVALID_HYPERPARAMETERS)
def test_invalid_traced_hyperparameter_is_accepted(make_transform, value, argument):
    del argument

    def first_step(v):
        return first_output(make_transform(v), UPDATES[0], PARAMS)

    out = jax.jit(first_step)(value)
    shapes = jax.tree_util.tree_map(np.shape, out)
    assert shapes == jax.tree_util.tree_map(np.shape, UPDATES[0])

"""Properties of every registered optimizer and of the core transforms, on hyperparameters and
trees drawn by hypothesis (derandomized: CI draws the same examples on every run).

Each optimizer's hyperparameters come from its registry grid (gradtx.testing.hyperparameters),
its parameters from gradtx.testing.pytrees (nested dicts, lists and tuples with None and scalar
leaves) and its gradients from gradtx.testing.arrays_like. Float64 throughout (tests/conftest.py
enables x64). Leaf shapes come from a short list, so that the per-shape compilations of eager
JAX operations are shared between examples; this keeps the file at about a minute on two cores.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gradtx as gx
from gradtx.optimizers import registry
from gradtx.optimizers.registry import OPTIMIZERS
from gradtx.testing import arrays_like, check_transformation, hyperparameters, pytrees

BY_NAME = {"ids": lambda info: info.name}
STEPS = 3
SHAPES = [(3,), (2, 3)]

# Few examples per optimizer (there are ~20 optimizers and ~40 transforms); derandomized and
# without an example database, so that every run draws the same ones.
SETTINGS = settings(
    max_examples=3,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

# Values bounded away from zero, for properties that divide by gradients or parameter norms.
AWAY_FROM_ZERO = st.one_of(st.floats(0.125, 2.0), st.floats(-2.0, -0.125))


def trees(**kwargs):
    options = {"shapes": SHAPES, "dtypes": (jnp.float64,), "max_leaves": 3, "none_leaves": True}
    return pytrees(**{**options, **kwargs})


@st.composite
def problems(draw, info=None, *, elements=None, min_leaves=1):
    """Parameters and a sequence of gradient trees shaped like them; for an optimizer ``info``,
    parameters it takes (``info.params_like``: Muon's leaves as matrices, same names and
    values), the gradients then drawn like those."""
    params = draw(trees(elements=elements, min_leaves=min_leaves))
    if info is not None:
        params = info.params_like(params)
    grads = [draw(arrays_like(params, elements=elements)) for _ in range(STEPS)]
    return params, grads


def run(opt, params, grads):
    """Eager steps; the parameters after each one."""
    state, out = opt.init(params), []
    for g in grads:
        updates, state = opt.update(g, state, params)
        params = gx.apply_updates(params, updates)
        out.append(params)
    return out


def assert_trees_equal(a, b, *, rtol=0.0, atol=0.0):
    flat_a, def_a = jax.tree_util.tree_flatten(a)
    flat_b, def_b = jax.tree_util.tree_flatten(b)
    assert def_a == def_b
    for x, y in zip(flat_a, flat_b, strict=True):
        if rtol == 0 and atol == 0:
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
        else:
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def without_weight_decay(info) -> dict:
    """The hyperparameters that pull the parameters toward zero, set to 0 (ASGD's ``lambd``
    decays them as weight decay does)."""
    return {name: 0.0 for name in ("weight_decay", "lambd") if name in info.grid}


# --- the transforms checked besides the optimizers -------------------------------------------


def _ndim_mask(params):
    return jax.tree_util.tree_map(lambda p: p.ndim > 0, params)


def _labels(params):
    return jax.tree_util.tree_map(lambda p: "matrix" if p.ndim > 1 else "other", params)


CORE = {
    "identity": lambda: gx.identity(),
    "scale": lambda: gx.scale(0.5),
    "scale_by_learning_rate": lambda: gx.scale_by_learning_rate(0.1),
    "scale_by_schedule": lambda: gx.scale_by_learning_rate(gx.cosine_decay_schedule(0.1, 10)),
    "add_decayed_weights": lambda: gx.add_decayed_weights(0.1),
    "clip": lambda: gx.clip(0.5),
    "clip_by_global_norm": lambda: gx.clip_by_global_norm(1.0),
    "clip_by_block_rms": lambda: gx.clip_by_block_rms(1.0),
    "ema": lambda: gx.ema(0.9),
    "ema_of_squares": lambda: gx.ema_of_squares(0.9),
    "ema_variance": lambda: gx.ema_variance(0.9),
    "sum_of_squares": lambda: gx.sum_of_squares(0.1),
    "running_max": lambda: gx.chain(gx.ema_of_squares(0.9), gx.running_max()),
    "bias_correction": lambda: gx.chain(gx.ema(0.9), gx.bias_correction(0.9)),
    "weighted_infinity_norm": lambda: gx.weighted_infinity_norm(0.9, 1e-8),
    "yogi_second_moment": lambda: gx.yogi_second_moment(0.9),
    "radam_rectification": lambda: gx.chain(
        gx.ema_of_squares(0.5), gx.radam_rectification(0.5)
    ),
    "parallel": lambda: gx.parallel(
        gx.ema(0.9), gx.ema_of_squares(0.99), combine=lambda m, v: m / (jnp.sqrt(v) + 1e-8)
    ),
    "scale_by_adam": lambda: gx.scale_by_adam(amsgrad=True),
    "scale_by_rms": lambda: gx.scale_by_rms(centered=True),
    "scale_by_rss": lambda: gx.scale_by_rss(0.1),
    "scale_by_momentum": lambda: gx.scale_by_momentum(0.9, nesterov=True),
    "nadam_momentum": lambda: gx.nadam_momentum(),
    "scale_by_adamax": lambda: gx.scale_by_adamax(),
    "scale_by_radam": lambda: gx.scale_by_radam(b2=0.9),
    "scale_by_yogi": lambda: gx.scale_by_yogi(),
    "scale_by_belief": lambda: gx.scale_by_belief(),
    "scale_by_lion": lambda: gx.scale_by_lion(),
    "scale_by_sign": lambda: gx.scale_by_sign(),
    "scale_by_trust_ratio": lambda: gx.scale_by_trust_ratio(),
    "scale_by_factored_rms": lambda: gx.scale_by_factored_rms(),
    "scale_by_param_block_rms": lambda: gx.scale_by_param_block_rms(),
    "scale_by_past_update_rms": lambda: gx.scale_by_past_update_rms(),
    "accumulate_gradients": lambda: gx.accumulate_gradients(gx.adam(0.1), 2),
    "apply_if_finite": lambda: gx.apply_if_finite(gx.adam(0.1), 2),
    "lookahead": lambda: gx.lookahead(gx.sgd(0.1, momentum=0.9), 2),
    "with_param_average": lambda: gx.with_param_average(gx.adam(0.1), 0.9),
    "masked": lambda: gx.masked(gx.adam(0.1), _ndim_mask),
    "freeze": lambda: gx.chain(gx.sgd(0.1), gx.freeze(_ndim_mask)),
    "multi_transform": lambda: gx.multi_transform(
        {"matrix": gx.adamw(0.1), "other": gx.sgd(0.1, momentum=0.5)}, _labels
    ),
    # min_size=2: every moment of the drawn trees is quantized, the 0-d hyperparameters are not
    # (quantized, b2 = 0.999 becomes a float32 code and 1 - b2**t loses five digits).
    "quantize_state": lambda: gx.quantize_state(gx.adam(0.1), block_size=2, min_size=2),
}


# --- the default invariants of check_transformation ------------------------------------------


# Two examples for the three most expensive properties (every example compiles several
# programs): with ~45 optimizers that is 90 drawn problems each, a third of their CI time saved.
@pytest.mark.parametrize("info", OPTIMIZERS, **BY_NAME)
@settings(SETTINGS, max_examples=2)
@given(data=st.data())
def test_default_invariants_hold_on_drawn_inputs(info, data):
    """jit == eager, deterministic, chain(identity(), t) == t == chain(t, identity()), a state
    of arrays with stable structure, shapes and dtypes (one trace of a jitted step), updates
    shaped like the params, and vmap over a batch of params == a loop."""
    kwargs = data.draw(hyperparameters(info), label="hyperparameters")
    params, grads = data.draw(problems(info), label="problem")
    check_transformation(info.build(**kwargs), params, grads, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("info", OPTIMIZERS, **BY_NAME)
def test_check_transformation_passes_with_its_defaults(info):
    """The user-facing call: example hyperparameters, float32 params, default tolerances."""
    params = info.params_like({
        "w": jnp.linspace(-1.0, 1.0, 6, dtype=jnp.float32).reshape(2, 3),
        "b": jnp.zeros(3, jnp.float32),
        "s": jnp.asarray(0.5, jnp.float32),
        "frozen": None,
    })
    check_transformation(info.build(**info.example), params)


@pytest.mark.parametrize("name", list(CORE))
@SETTINGS
@given(data=st.data())
def test_core_transforms_keep_the_default_invariants(name, data):
    params, grads = data.draw(problems(), label="problem")
    check_transformation(CORE[name](), params, grads, rtol=1e-10, atol=1e-12)


# --- composition -----------------------------------------------------------------------------


def _flat_states(opt, params, grads):
    """Updates of each step, and the leaves of the final state (which ignore the nesting)."""
    state, ups = opt.init(params), []
    for g in grads:
        updates, state = opt.update(g, state, params)
        params = gx.apply_updates(params, updates)
        ups.append(updates)
    return ups, jax.tree_util.tree_leaves(state)


@pytest.mark.parametrize("info", OPTIMIZERS, **BY_NAME)
@SETTINGS
@given(data=st.data())
def test_chain_is_associative_around_each_optimizer(info, data):
    """chain(chain(a, opt), c) == chain(a, chain(opt, c)), bitwise, for core transforms a, c."""
    first, last = data.draw(st.tuples(st.sampled_from(list(CORE)), st.sampled_from(list(CORE))))
    kwargs = data.draw(hyperparameters(info))
    params, grads = data.draw(problems(info))
    a, c, opt = CORE[first](), CORE[last](), info.build(**kwargs)
    left = _flat_states(gx.chain(gx.chain(a, opt), c), params, grads)
    right = _flat_states(gx.chain(a, gx.chain(opt, c)), params, grads)
    assert_trees_equal(left, right)


@settings(SETTINGS, max_examples=10)
@given(
    names=st.tuples(*[st.sampled_from(list(CORE))] * 3),
    problem=problems(),
)
def test_chain_of_core_transforms_is_associative(names, problem):
    params, grads = problem
    a, b, c = (CORE[n]() for n in names)
    left = _flat_states(gx.chain(gx.chain(a, b), c), params, grads)
    right = _flat_states(gx.chain(a, gx.chain(b, c)), params, grads)
    assert_trees_equal(left, right)


# --- live hyperparameters --------------------------------------------------------------------


def _numeric_grid_names(info) -> list[str]:
    """The hyperparameters with several grid values that live in the state (numbers): not the
    switches, nor the fixed arguments (Muon's ``ns_steps`` and ``adjust_lr_fn``)."""
    return [
        name
        for name, values in info.grid.items()
        if len(values) > 1 and info.declarations[name].live
    ]


@pytest.mark.parametrize("info", OPTIMIZERS, **BY_NAME)
@settings(SETTINGS, max_examples=2)
@given(data=st.data())
def test_vmap_over_a_hyperparameter_equals_a_loop(info, data):
    """Any numeric hyperparameter, as a traced array under vmap, gives each value's run."""
    name = data.draw(st.sampled_from(_numeric_grid_names(info)), label="hyperparameter")
    kwargs = data.draw(hyperparameters(info), label="others")
    values = data.draw(
        st.lists(st.sampled_from(list(info.grid[name])), min_size=2, max_size=2, unique=True)
        .filter(lambda vs: all(info.constraint({**kwargs, name: v}) for v in vs)),
        label="values",
    )
    params, grads = data.draw(problems(info))

    def trajectory(value):
        return run(info.build(**{**kwargs, name: value}), params, grads)

    batched = jax.vmap(trajectory)(jnp.asarray(values))
    for i, value in enumerate(values):
        looped = trajectory(jnp.asarray(value))
        assert_trees_equal(
            jax.tree_util.tree_map(lambda x, i=i: x[i], batched), looped, rtol=1e-12, atol=1e-14
        )


@settings(SETTINGS, max_examples=6)
@given(
    kwargs=hyperparameters(
        registry.get("sgd"),
        names=("learning_rate", "dampening", "weight_decay", "maximize"),
        fixed={"momentum": 0.0, "nesterov": False},
    ),
    problem=problems(),
)
def test_sgd_without_momentum_is_plain_sgd(kwargs, problem):
    """momentum=0 (a Python zero, or an array, traced or not) is theta - lr (±g + wd theta),
    whatever the dampening: torch skips the buffer, and so does gradtx for any zero."""
    params, grads = problem
    lr, wd = kwargs["learning_rate"], kwargs["weight_decay"]
    sign = -1.0 if kwargs["maximize"] else 1.0
    expected, p = [], params
    for g in grads:
        p = jax.tree_util.tree_map(
            lambda x, gx_: np.asarray(x) - lr * (sign * np.asarray(gx_) + wd * np.asarray(x)),
            p,
            g,
        )
        expected.append(p)

    def with_momentum(momentum):
        return run(gx.sgd(**{**kwargs, "momentum": momentum}), params, grads)

    assert_trees_equal(with_momentum(0.0), expected, rtol=1e-14, atol=1e-15)
    assert_trees_equal(with_momentum(jnp.asarray(0.0)), expected, rtol=1e-14, atol=1e-15)
    assert_trees_equal(jax.jit(with_momentum)(0.0), expected, rtol=1e-14, atol=1e-15)
    batched = jax.vmap(with_momentum)(jnp.asarray([0.0, 0.9]))
    first = jax.tree_util.tree_map(lambda x: x[0], batched)
    assert_trees_equal(first, expected, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("info", OPTIMIZERS, **BY_NAME)
@settings(SETTINGS, max_examples=2)
@given(data=st.data())
def test_gradient_in_the_learning_rate_matches_finite_differences(info, data):
    kwargs = data.draw(hyperparameters(info))
    params, grads = data.draw(problems(info))
    weights = data.draw(arrays_like(params))  # a random direction, so no entry cancels out

    def loss(lr):
        final = run(info.build(**{**kwargs, "learning_rate": lr}), params, grads)[-1]
        terms = jax.tree_util.tree_map(lambda p, w: jnp.sum(p * w), final, weights)
        return sum(jax.tree_util.tree_leaves(terms), jnp.asarray(0.0))

    lr = kwargs["learning_rate"]
    h = 1e-5 * lr
    analytic = jax.grad(loss)(jnp.asarray(lr))
    numeric = (loss(lr + h) - loss(lr - h)) / (2 * h)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-7)


# --- zero gradients and gradient scale --------------------------------------------------------

# Every registered optimizer stays put on zero gradients once weight decay is off: each step
# is (a function of the moments) times the first moment or the gradient, which stay zero, and
# the eps of every grid is positive (with eps = 0, Adam-like steps are 0/0 = NaN). Lookahead's
# slow weights never move; Lion's and signSGD's sign(0) is 0; LAMB's and LARS's trust ratio is
# 1 where a norm is zero.


@pytest.mark.parametrize("info", OPTIMIZERS, **BY_NAME)
@SETTINGS
@given(data=st.data())
def test_zero_gradients_leave_params_unchanged(info, data):
    kwargs = data.draw(hyperparameters(info, fixed=without_weight_decay(info)))
    params, grads = data.draw(problems(info))
    check_transformation(
        info.build(**kwargs), params, grads, checks=("zero_fixed_point",), rtol=0, atol=0
    )


# Optimizers whose step does not ignore a positive factor on every gradient, with the reason.
NOT_SCALE_INVARIANT = {
    "sgd": "its step is linear in the gradient",
    "madgrad": "its step scales as the cube root of the gradient (s / G^(1/3))",
    "mechanize_sgd": "SGD inside: its step is linear in the gradient",
    "optimistic_gradient_descent": "its step is linear in the gradient",
    "sm3": "Optax's SM3 adds a fixed eps = 1e-8 (not an argument) inside the root",
    "acprop": "with eps = eps_root = 0, which the check needs, a zero gradient gives 0 / 0 "
    "(NaN, as in Optax); the registry skips that combination",
    "simplified_ademamix": "with eps = eps_root = 0, which the check needs, a zero gradient gives "
    "0 / 0 (NaN, as in Optax); the registry skips that combination",
    "lookahead_sgd": "SGD inside: its step is linear in the gradient",
    "radam": "while rho_t <= 5 (its first steps, or every step for b2 <= 2/3) the step is SGD "
    "with bias-corrected momentum, linear in the gradient",
    "adadelta": "its step sqrt(a + eps) / sqrt(v + eps) * g has the units of the parameter: "
    "with eps = 0 it never moves (a starts at 0), with eps > 0 it depends on the scale",
    "asgd": "its step is linear in the gradient",
    "schedule_free_sgd": "its z step is linear in the gradient",
    "lbfgs": "its first step is lr * min(1, 1/|g|_1) * g: linear in the gradient while "
    "|g|_1 < 1 (torch's rule), and max|g| <= tolerance_grad stops it",
    "mars": "its corrected gradient is divided by its norm where that exceeds 1, leaf by leaf: "
    "a gradient that crosses norm 1 when scaled changes the mix in the moments",
}
# The check of the exclusions takes gradients of 0.01 (k + 1) * theta, small enough for
# L-BFGS's first step; MARS needs gradients whose norm crosses 1 when scaled by 4.
# Simplified AdEMAMix (eps 1e-8 kept): gradients of 1e-6, where eps is a visible share.
EXCLUSION_GRADIENT_FACTOR = {"mars": 30.0, "simplified_ademamix": 1e-4}
# Hyperparameters set to 0 for the check: each adds a constant to a quantity that scales with
# the gradient (L2 weight decay adds lambda * theta to it).
SCALE_BREAKING = ("eps", "eps_root", "initial_accumulator_value", "weight_decay")
# param_average_adam takes no eps: its Adam keeps torch's 1e-8, so it is invariant up to eps.
SCALE_RTOL = {"param_average_adam": 1e-6}


def test_scale_exclusions_name_registered_optimizers():
    assert set(NOT_SCALE_INVARIANT) <= set(registry.names())
    assert set(SCALE_RTOL) <= set(registry.names()) - set(NOT_SCALE_INVARIANT)


@pytest.mark.parametrize(
    "info", [i for i in OPTIMIZERS if i.name not in NOT_SCALE_INVARIANT], **BY_NAME
)
@SETTINGS
@given(data=st.data())
def test_steps_ignore_the_scale_of_the_gradient(info, data):
    """Adam-like steps (and sign and trust-ratio steps) are invariant under g -> c g, c > 0,
    once eps-like constants are 0 (gradients scaled by 1/4 and by 4, exact in binary)."""
    # 0, or where the optimizer refuses 0 (torch's SparseAdam: eps > 0) a value too small to
    # change any sum it enters.
    fixed = {name: 0.0 if info.declarations[name].low_closed else 1e-300
             for name in SCALE_BREAKING if name in info.grid}
    kwargs = data.draw(hyperparameters(info, fixed=fixed))
    params, grads = data.draw(problems(info, elements=AWAY_FROM_ZERO))
    check_transformation(
        info.build(**kwargs),
        params,
        grads,
        checks=("scale_invariant",),
        rtol=SCALE_RTOL.get(info.name, 1e-12),
        atol=1e-15,
    )


@pytest.mark.parametrize("name", sorted(NOT_SCALE_INVARIANT))
def test_the_excluded_optimizers_do_depend_on_the_scale(name):
    """Keeps NOT_SCALE_INVARIANT honest: each entry fails the check with its example."""
    info = registry.get(name)
    params = info.params_like({"w": jnp.linspace(0.5, 1.5, 6).reshape(2, 3), "b": jnp.ones(3)})
    # Small gradients (|g|_1 < 1 even scaled by 4, where L-BFGS's first step is linear).
    factor = 0.01 * EXCLUSION_GRADIENT_FACTOR.get(name, 1.0)
    grads = [jax.tree_util.tree_map(lambda p, k=k: factor * (k + 1) * p, params)
             for k in range(3)]
    with pytest.raises(AssertionError, match=r"\[scale_invariant\] gradients scaled by"):
        check_transformation(
            info.build(**info.example), params, grads, checks=("scale_invariant",), rtol=1e-6
        )

"""Core v2's injection: an optimizer is checked and built once; its hyperparameters live in the
state, every numeric one may be a schedule, ``set_hyperparam`` applies the constructor's rules,
re-injecting an optimizer (Optax's idiom) drives the step, a foreign state is refused by name,
an optimizer keeps one step count, and eager steps compile nothing new after the second."""

from __future__ import annotations

import jax
import jax.monitoring
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx as gx
from gradtx import validation
from gradtx.optimizers import registry
from gradtx.optimizers.registry import OPTIMIZERS
from tests import helpers

BY_NAME = {"ids": lambda info: info.name}
PARAMS = helpers.make_params()
GRADS = helpers.make_gradients(PARAMS, steps=8)


def _run(opt, steps=6, jit=False, like=lambda tree: tree):
    """``steps`` updates of ``opt`` from PARAMS on GRADS, each tree passed through ``like``
    (a registry entry's ``params_like``: Muon gets the same entries as matrices)."""
    update = jax.jit(opt.update) if jit else opt.update
    params = like(PARAMS)
    state = opt.init(params)
    outs = []
    for g in GRADS[:steps]:
        updates, state = update(like(g), state, params)
        outs.append(updates)
    return outs, state


# --- Re-injection: Optax's idiom -------------------------------------------------------------


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_reinjected_schedule_drives_the_step(jit):
    """The issue's example: this used to freeze the learning rate at its value at init."""
    opt = gx.inject_hyperparams(gx.sgd)(learning_rate=gx.linear_schedule(0.0, 1.0, 4))
    g = {k: np.ones_like(v) for k, v in PARAMS.items()}
    update = jax.jit(opt.update) if jit else opt.update
    state = opt.init(PARAMS)
    for step in range(6):
        updates, state = update(g, state, PARAMS)
        expected = min(step, 4) / 4
        np.testing.assert_allclose(updates["b"], -expected)
        assert float(gx.get_hyperparam(state, "learning_rate")) == pytest.approx(expected)
    state = gx.set_hyperparam(state, "learning_rate", 0.25)
    updates, state = update(g, state, PARAMS)
    np.testing.assert_allclose(updates["b"], -0.25)


@pytest.mark.parametrize("factory", [gx.rmsprop, gx.adamw, gx.adam])
def test_reinjected_zero_weight_decay_stays_out(factory):
    """A Python 0 still leaves the decay out, so update works without params."""
    opt = gx.inject_hyperparams(factory)(learning_rate=0.1, weight_decay=0.0)
    updates, _ = opt.update(GRADS[0], opt.init(PARAMS))
    assert np.all(np.isfinite(updates["w"]))


def test_reinjection_is_the_same_optimizer():
    plain, _ = _run(gx.adam(0.05, b1=0.8))
    again, state = _run(gx.inject_hyperparams(gx.adam)(0.05, b1=0.8))
    for a, b in zip(plain, again, strict=True):
        np.testing.assert_array_equal(a["w"], b["w"])
    assert float(gx.get_hyperparam(state, "b1")) == pytest.approx(0.8)


def test_reinjection_adds_static_args():
    opt = gx.inject_hyperparams(gx.adam, static_args=("eps",))(eps=1e-3)
    state = opt.init(PARAMS)
    with pytest.raises(KeyError, match="no hyperparameter 'eps'"):
        gx.get_hyperparam(state, "eps")


def test_hyperparam_dtype():
    opt = gx.inject_hyperparams(gx.sgd, hyperparam_dtype=jnp.float32)(learning_rate=0.1)
    assert gx.get_hyperparam(opt.init(PARAMS), "learning_rate").dtype == jnp.float32


# --- Built once, checked once ----------------------------------------------------------------


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_update_neither_rebuilds_nor_validates(jit, monkeypatch):
    builds = []

    def my_scale(step_size=1.0):
        builds.append(step_size)
        validation.check_non_negative("step_size", step_size)
        return gx.scale(step_size)

    opts = [
        gx.inject_hyperparams(my_scale)(step_size=0.5),
        gx.adam(0.1),
        gx.sgd(0.1, momentum=0.9, nesterov=True),
        gx.chain(gx.clip_by_global_norm(1.0), gx.adamw(0.1)),
    ]
    built = len(builds)
    checks = []
    real = validation.check_interval
    monkeypatch.setattr(
        validation, "check_interval", lambda *a, **k: (checks.append(a), real(*a, **k))[1]
    )
    for opt in opts:
        _run(opt, jit=jit)
    assert len(builds) == built
    assert checks == []


def test_decorator_names_are_checked_when_decorating():
    def factory(step_size=1.0):
        return gx.scale(step_size)

    for kwargs in ({"static_args": ("stepsize",)}, {"omit_when_zero": ("nope",)},
                   {"declarations": {"step_size": gx.Hyperparam(), "other": gx.Hyperparam()}}):
        with pytest.raises(ValueError, match="does not take"):
            gx.inject_hyperparams(factory, **kwargs)
    with pytest.raises(ValueError, match="not declared"):
        gx.inject_hyperparams(lambda a=1.0, b=2.0: gx.scale(a), declarations={"a": gx.Hyperparam()})


# --- Foreign states --------------------------------------------------------------------------


def test_a_state_of_another_optimizer_is_refused_naming_both():
    with pytest.raises(ValueError, match=r"adam\(\).update got a state made by sgd\(\)"):
        gx.adam().update(GRADS[0], gx.sgd().init(PARAMS), PARAMS)
    with pytest.raises(ValueError, match=r"adam\(amsgrad=True\).*made by adam\(\)"):
        gx.adam(amsgrad=True).update(GRADS[0], gx.adam().init(PARAMS), PARAMS)
    with pytest.raises(ValueError, match=r"sgd\(\).update got a tuple"):
        gx.sgd().update(GRADS[0], (), PARAMS)


def test_same_configuration_shares_the_state_type():
    """Two optimizers built alike accept each other's states (a checkpoint restored into a
    fresh optimizer), and their states have the same tree structure (no recompilation)."""
    a, b = gx.adam(0.1), gx.adam(0.2)
    sa = a.init(PARAMS)
    b.update(GRADS[0], sa, PARAMS)
    assert jax.tree_util.tree_structure(sa) == jax.tree_util.tree_structure(b.init(PARAMS))


# --- set_hyperparam applies the constructor's rules ------------------------------------------


@pytest.mark.parametrize(
    ("factory", "name", "value"),
    [
        (gx.adafactor, "decay_rate", 1.5),
        (registry.lookahead_sgd, "alpha", 1.5),
        (gx.sign_sgd, "momentum", 1.0),
        (lambda: gx.sign_sgd(momentum=0.5), "momentum", 1.0),
        (gx.adam, "b1", 1.0),
        (lambda: gx.sgd(momentum=0.9, nesterov=True), "dampening", 0.1),
        (lambda: gx.sgd(momentum=0.9, nesterov=True), "momentum", 0.0),
    ],
)
def test_set_refuses_what_the_constructor_refuses(factory, name, value):
    state = factory().init(PARAMS)
    with pytest.raises(ValueError, match=name):
        gx.set_hyperparam(state, name, value)
    # ... and the constructor refuses it too, with the same rules.
    kwargs = {"momentum": 0.9, "nesterov": True} if name in ("dampening",) else {}
    if factory in (gx.adafactor, gx.adam, gx.sign_sgd, registry.lookahead_sgd):
        with pytest.raises(ValueError, match=name):
            factory(**kwargs, **{name: value})


def test_set_accepts_what_the_constructor_accepts():
    state = registry.param_average_adam().init(PARAMS)
    state = gx.set_hyperparam(state, "decay", 1.0)  # [0, 1] for with_param_average
    assert float(gx.get_hyperparam(state, "decay")) == 1.0
    registry.param_average_adam(decay=1.0)


def test_set_on_an_undeclared_factory_runs_its_own_checks():
    def halve_or(step_size=0.5):
        if validation.concrete(step_size) is not None and float(step_size) > 1:
            raise ValueError("`step_size` must be at most 1 here")
        return gx.scale(step_size)

    state = gx.inject_hyperparams(halve_or)().init(PARAMS)
    with pytest.raises(ValueError, match="at most 1"):
        gx.set_hyperparam(state, "step_size", 2.0)
    gx.set_hyperparam(state, "step_size", 0.75)


# --- Every numeric hyperparameter may be a schedule ------------------------------------------


def _live_arguments(info):
    kwargs = dict(info.example)
    return [
        name for name, d in info.factory._injection.declarations.items()
        if d.live and not isinstance(kwargs.get(name, 1.0), bool)
    ], kwargs


@pytest.mark.parametrize("info", OPTIMIZERS, **BY_NAME)
def test_every_numeric_hyperparameter_may_be_a_schedule(info):
    """A schedule that returns the value it replaces gives the same trajectory, and
    get_hyperparam reads the value used at the latest step."""
    names, kwargs = _live_arguments(info)
    defaults = {**registry._defaults(info.factory), **info.fixed}  # fixed: required ones
    reference, _ = _run(info.build(**kwargs), steps=4, like=info.params_like)
    for name in names:
        value = kwargs.get(name, defaults[name])
        if value is None or callable(value):
            continue
        scheduled = {**kwargs, name: lambda count, v=value: v + 0.0 * count}
        got, state = _run(info.build(**scheduled), steps=4, jit=True, like=info.params_like)
        for a, b in zip(reference, got, strict=True):
            # Prodigy / D-Adaptation: the schedule's value enters their tree-wide sums through
            # another compiled program, and an entry that cancels to ~1e-8 of the others keeps
            # only ~1e-10 of its relative precision (measured 2.8e-10); 1e-12 of the largest.
            atol = 1e-12 * float(np.max(np.abs(a["w"]))) if info.name in TREE_WIDE else 0
            np.testing.assert_allclose(a["w"], b["w"], rtol=1e-12, atol=atol, err_msg=name)
        assert float(gx.get_hyperparam(state, name)) == pytest.approx(value)


def test_momentum_schedule_matches_torch_changing_param_groups(torch_float64):
    """OneCycleLR-style cycling of SGD's momentum (and Adam's b1) equals torch when torch's
    param_groups are changed at the same steps."""
    torch = torch_float64
    momentum = gx.linear_schedule(0.95, 0.85, 5)
    b1 = gx.linear_schedule(0.9, 0.5, 5)
    cases = [
        ("SGD", gx.sgd(0.05, momentum=momentum), {"lr": 0.05, "momentum": 0.95},
         lambda group, k: group.update(momentum=float(momentum(k)))),
        ("Adam", gx.adam(0.05, b1=b1), {"lr": 0.05},
         lambda group, k: group.update(betas=(float(b1(k)), 0.999))),
    ]
    for cls, opt, kwargs, change in cases:
        tensor = torch.tensor(np.asarray(PARAMS["w"]), requires_grad=True)
        ref = getattr(torch.optim, cls)([tensor], **kwargs)
        params = {"w": jnp.asarray(PARAMS["w"])}
        state = opt.init(params)
        for k, g in enumerate(GRADS):
            change(ref.param_groups[0], k)
            tensor.grad = torch.tensor(np.asarray(g["w"]))
            ref.step()
            updates, state = opt.update({"w": g["w"]}, state, params)
            params = gx.apply_updates(params, updates)
            np.testing.assert_allclose(params["w"], tensor.detach().numpy(), rtol=1e-10, atol=0)


# --- One step count --------------------------------------------------------------------------


def _integer_leaves(state):
    return [x for x in jax.tree_util.tree_leaves(state) if jnp.issubdtype(x.dtype, jnp.integer)]


# Integer state that is not a step count: L-BFGS keeps torch's func_evals and n_iter and the
# start and length of its history ring buffer.
# Prodigy and D-Adaptation count the steps they did not skip (k, which their bias
# correction reads).
OTHER_INTEGERS = {"lbfgs": 4, "prodigy": 1, "dadapt_adamw": 1}
TREE_WIDE = ("prodigy", "dadapt_adamw")


@pytest.mark.parametrize("info", OPTIMIZERS, **BY_NAME)
def test_one_step_count(info):
    state = info.build(**info.example).init(info.params_like(PARAMS))
    counts = _integer_leaves(state)
    assert len(counts) == 1 + OTHER_INTEGERS.get(info.name, 0), info.name
    assert gx.tree_get(state, "count").shape == ()
    _, state = _run(info.build(**info.example), steps=3, like=info.params_like)
    assert int(state.count) == 3


def test_adam_state_holds_one_integer_scalar_also_with_amsgrad():
    assert len(_integer_leaves(gx.adam(amsgrad=True).init(PARAMS))) == 1


def test_a_transform_on_its_own_keeps_its_own_count():
    opt = gx.chain(gx.ema(0.9), gx.bias_correction(0.9))
    state = opt.init(PARAMS)
    assert len(_integer_leaves(state)) == 1
    updates, state = opt.update(GRADS[0], state)
    np.testing.assert_allclose(updates["w"], GRADS[0]["w"], rtol=1e-12)


def test_skipping_wrappers_keep_inner_counts_apart():
    """Inside an optimizer, a wrapper that skips steps gives its inner transforms their own
    counts, since the optimizer's count also counts the skipped steps."""

    def accumulated_adam(learning_rate=0.1):
        return gx.accumulate_gradients(gx.adam.__wrapped__(learning_rate), every_k=2)

    opt = gx.inject_hyperparams(accumulated_adam)()
    plain = gx.accumulate_gradients(gx.adam(0.1), every_k=2)
    a, _ = _run(opt, steps=6)
    b, _ = _run(plain, steps=6)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x["w"], y["w"], rtol=1e-12)


# --- Eager steps compile nothing new ---------------------------------------------------------


class _CompileCounter:
    def __init__(self):
        self.count = 0
        jax.monitoring.register_event_duration_secs_listener(self._on_event)

    def _on_event(self, name, secs, **kwargs):
        if name == "/jax/core/compile/backend_compile_duration":
            self.count += 1


_COUNTER = _CompileCounter()


@pytest.mark.parametrize("info", OPTIMIZERS, **BY_NAME)
def test_eager_steps_compile_nothing_after_the_second(info):
    opt = info.build(**info.example)
    params = jax.tree_util.tree_map(jnp.asarray, info.params_like(PARAMS))
    state = opt.init(params)
    for k in range(5):
        if k == 2:
            before = _COUNTER.count
        updates, state = opt.update(info.params_like(GRADS[k]), state, params)
        params = gx.apply_updates(params, updates)
    assert _COUNTER.count == before, f"{info.name}: {_COUNTER.count - before} new compilations"


def test_eager_steps_run_op_by_op_under_disable_jit():
    """jax.disable_jit() turns the compiled eager update off, for debugging; same result."""
    opt = gx.adam(0.1)
    compiled, _ = _run(opt, steps=3)
    with jax.disable_jit():
        plain, _ = _run(opt, steps=3)
    for a, b in zip(compiled, plain, strict=True):
        np.testing.assert_allclose(a["w"], b["w"], rtol=1e-12)


@pytest.mark.parametrize(
    "make",
    [lambda: gx.adam(0.1, amsgrad=True), lambda: gx.sgd(0.1, momentum=0.9, nesterov=True),
     registry.lookahead_sgd, lambda: gx.inject_hyperparams(gx.sgd)(0.1)],
    ids=["adam", "sgd", "lookahead_sgd", "reinjected"],
)
def test_states_pickle_and_copy(make):
    import copy
    import pickle

    opt = make()
    _, state = _run(opt, steps=2)
    for restored in (pickle.loads(pickle.dumps(state)), copy.deepcopy(state)):
        assert type(restored) is type(state)
        a, _ = opt.update(GRADS[2], state, PARAMS)
        b, _ = opt.update(GRADS[2], restored, PARAMS)
        np.testing.assert_array_equal(a["w"], b["w"])


def test_a_reinjected_optimizer_shares_the_state_type():
    again = gx.inject_hyperparams(gx.sgd)(0.1, momentum=0.5)
    assert type(again.init(PARAMS)) is type(gx.sgd(0.3, momentum=0.9).init(PARAMS))


# --- Factories of transforms that are not gradtx's -------------------------------------------


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_an_optax_factory_is_rebuilt_with_the_current_values(jit):
    """Optax's transforms cannot read placeholders, so such a factory is built again with the
    state's values at each step (as Optax's own injection does): schedules and set values
    drive the step, nothing is frozen."""
    import optax

    opt = gx.inject_hyperparams(optax.sgd)(learning_rate=gx.linear_schedule(0.0, 1.0, 4))
    g = {k: np.ones_like(v) for k, v in PARAMS.items()}
    update = jax.jit(opt.update) if jit else opt.update
    state = opt.init(PARAMS)
    for step in range(6):
        updates, state = update(g, state, PARAMS)
        np.testing.assert_allclose(updates["b"], -min(step, 4) / 4)
    updates, _ = update(g, gx.set_hyperparam(state, "learning_rate", 0.125), PARAMS)
    np.testing.assert_allclose(updates["b"], -0.125)


def test_an_optax_adam_under_gx_injection_matches_optax():
    import optax

    ours = gx.inject_hyperparams(optax.adam)(learning_rate=0.05, b1=0.8)
    theirs = optax.adam(0.05, b1=0.8)
    a, _ = _run(ours, steps=5)
    b, _ = _run(theirs, steps=5)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x["w"], y["w"], rtol=1e-12)


def test_a_placeholder_used_as_a_number_says_how_to_read_it():
    from gradtx.live import Live, UnreadPlaceholder

    with pytest.raises(UnreadPlaceholder, match="gradtx.hyperparams.read"):
        2.0 * Live("b1", object())
    with pytest.raises(UnreadPlaceholder):
        jnp.asarray(Live("b1", object()))

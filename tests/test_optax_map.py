"""docs/_ext/optax_map.py maps every public name of the installed Optax and optax.contrib to its
gradtx form, or says why there is none; docs/optax.md renders it ("Every Optax name").

These tests fail when a new Optax release adds a name (naming it), when an entry names
something Optax does not have, when an entry cites a gradtx name that does not exist, and when
a composed gradtx form stops computing what the Optax name computes.
"""

from __future__ import annotations

import importlib.util
import pathlib
import re
import sys
import types
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib  # the names mapped are those of the installed Optax (a test dependency)
import pytest

import gradtx as gx

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _load_map():
    path = ROOT / "docs" / "_ext" / "optax_map.py"
    spec = importlib.util.spec_from_file_location("optax_map", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("optax_map", module)
    spec.loader.exec_module(module)
    return module


optax_map = _load_map()

# The optimizers the issue lists by name: each must have an entry like every other name.
ISSUE_OPTIMIZERS = (
    "optax.adan", "optax.novograd", "optax.sm3", "optax.fromage", "optax.noisy_sgd",
    "optax.polyak_sgd", "optax.optimistic_gradient_descent", "optax.optimistic_adam",
    "optax.adamaxw", "optax.nadamw", "optax.contrib.sophia", "optax.contrib.cocob",
    "optax.contrib.dog", "optax.contrib.dowg", "optax.contrib.mechanize", "optax.contrib.momo",
    "optax.contrib.madgrad", "optax.contrib.acprop", "optax.contrib.galore",
)
# The transforms and wrappers it names.
ISSUE_TRANSFORMS = (
    "optax.scale_by_schedule", "optax.flatten", "optax.selective_transform", "optax.MultiSteps",
    "optax.partition", "optax.apply_every", "optax.linear_onecycle_schedule",
    "optax.LookaheadParams", "optax.value_and_grad_from_state",
)


@pytest.fixture(scope="module")
def names() -> dict[str, list[str]]:
    return optax_map.optax_names()


# ---------------------------------------------------------------------------------------------
# The rule for "public"

def test_public_names_rule():
    pkg = types.ModuleType("pkg")
    sub = types.ModuleType("pkg.sub")
    pkg.visible = lambda: None
    pkg._private = 1
    pkg.sub = sub  # its own submodule: public
    pkg.functools = __import__("functools")  # imported from elsewhere: not public
    pkg.__all__ = ["visible", "served_by_getattr", "broken"]  # a deprecated name, a stale one
    pkg.__getattr__ = lambda name: _served(name)
    assert optax_map.public_names(pkg) == ["served_by_getattr", "sub", "visible"]


def _served(name):
    if name == "served_by_getattr":
        return lambda: None
    raise AttributeError(name)


def test_every_name_of_optax_and_contrib_is_counted(names):
    """Every public name of ``optax`` and ``optax.contrib`` (by ``public_names``) has an entry
    or is shown with the entry of the same object."""
    covered = set(names) | {alias for aliases in names.values() for alias in aliases}
    for module in (optax, optax.contrib):
        for name in optax_map.public_names(module):
            assert f"{module.__name__}.{name}" in covered
    # Names of the top level and contrib are never folded into another entry unless deprecated.
    for module in (optax, optax.contrib):
        for name in set(dir(module)) & set(optax_map.public_names(module)):
            assert f"{module.__name__}.{name}" in names


# ---------------------------------------------------------------------------------------------
# (a) every public name has an entry

def test_every_public_optax_name_has_an_entry(names):
    missing = sorted(set(names) - set(optax_map.MAP))
    assert not missing, (
        f"Optax {optax.__version__} has public names with no entry in docs/_ext/optax_map.py "
        f"(add each, with its gradtx form or why there is none): {missing}"
    )


def test_the_names_the_issue_lists_are_mapped():
    for name in ISSUE_OPTIMIZERS + ISSUE_TRANSFORMS:
        assert name in optax_map.MAP, name


def test_a_new_optax_name_would_be_reported(monkeypatch):
    """The check can fail: a name added to optax.contrib is missing from the map."""
    monkeypatch.setattr(optax.contrib, "brand_new_optimizer", lambda: None, raising=False)
    assert "optax.contrib.brand_new_optimizer" in optax_map.optax_names()
    assert "optax.contrib.brand_new_optimizer" not in optax_map.MAP


# ---------------------------------------------------------------------------------------------
# (b) no entry names an Optax attribute that does not exist

def test_every_entry_names_an_optax_name(names):
    stale = sorted(set(optax_map.MAP) - set(names))
    details = [f"{n} ({'another name of an entry' if optax_map.resolve_optax(n) else 'absent'})"
               for n in stale]
    assert not stale, (
        f"docs/_ext/optax_map.py has entries for names Optax {optax.__version__} does not list "
        f"as entries of their own: {details}"
    )
    for name in optax_map.MAP:
        assert optax_map.resolve_optax(name), name


def test_optax_names_cited_in_the_texts_exist():
    bad = sorted(
        (name, ref) for name, entry in optax_map.MAP.items()
        for ref in optax_map.optax_references(entry) if not optax_map.resolve_optax(ref)
    )
    assert not bad, f"entries cite Optax names that do not exist: {bad}"


def test_resolve_optax_can_fail():
    assert optax_map.resolve_optax("optax.tree.get")
    assert not optax_map.resolve_optax("optax.no_such_optimizer")
    assert not optax_map.resolve_optax("optax.tree.no_such_function")


# ---------------------------------------------------------------------------------------------
# (c) every gradtx name cited exists

def test_every_cited_gradtx_name_exists():
    public = set(gx.__all__)
    unknown = sorted(
        (name, cited) for name, entry in optax_map.MAP.items()
        for cited in optax_map.gradtx_names(entry)
        if cited not in public
    )
    assert not unknown, f"entries cite gradtx names that are not in gradtx.__all__: {unknown}"
    for cited in set().union(*(optax_map.gradtx_names(e) for e in optax_map.MAP.values())):
        if cited in public:
            assert hasattr(gx, cited), cited


def test_gradtx_names_are_found_in_forms_and_notes():
    entry = optax_map.Entry("`gx.chain(gx.ema(d), gx.no_such_thing(d))`", "see `gx.ema_update`")
    assert optax_map.gradtx_names(entry) == {"chain", "ema", "no_such_thing", "ema_update"}


# ---------------------------------------------------------------------------------------------
# (d) every entry says something

REASON_STARTS = ("Not in gradtx", "Not needed", "Not exported", "By design", "Out of scope",
                 "Mapped name by name", "No class of that name")


def test_every_entry_has_a_form_or_a_reason():
    for name, entry in optax_map.MAP.items():
        if optax_map.has_form(entry):
            assert "`" in entry.gradtx, f"{name}: the gradtx form should be code"
            assert entry.gradtx.count("`") % 2 == 0, name
        else:
            assert entry.note.strip(), f"{name}: no gradtx form and no reason"
            assert entry.note.startswith(REASON_STARTS), (
                f"{name}: a reason should start with one of {REASON_STARTS}: {entry.note!r}")
        assert entry.note.count("`") % 2 == 0, name


def test_every_section_is_on_the_page():
    page = (ROOT / "docs" / "optax.md").read_text()
    for section in ("summary", *optax_map.SECTIONS):
        assert f"```{{gradtx-optax-map}} {section}\n```" in page, section


# ---------------------------------------------------------------------------------------------
# The composed gradtx forms compute what the Optax names compute. Each form is evaluated as
# written on the page, with the Optax function's arguments as its variables.

PARAMS = {"w": jnp.asarray([[1.0, 2.0, -3.0], [0.5, -1.0, 2.0]]), "b": jnp.asarray([0.1, 0.0])}
LABELS = {"w": "train", "b": "freeze"}
COSINE_KWARGS = [
    dict(init_value=0.0, peak_value=1.0, warmup_steps=5, decay_steps=30, end_value=0.1),
    dict(init_value=0.1, peak_value=0.5, warmup_steps=2, decay_steps=40),
]


def _onecycle(**kw):
    v0 = kw["peak_value"] / kw["div_factor"]
    a = int(kw["pct_start"] * kw["transition_steps"])
    b = int(kw["pct_final"] * kw["transition_steps"])
    return dict(kw, v0=v0, a=a, b=b)


_ONECYCLE = dict(transition_steps=100, peak_value=1.0, pct_start=0.3, pct_final=0.85,
                 div_factor=25.0, final_div_factor=1e4)

# Optax name -> (kind, the Optax object or schedule or function call, the form's variables)
RECIPES = {
    "optax.adamaxw": ("tx", lambda: optax.adamaxw(0.1, 0.9, 0.999, 1e-8, 1e-2),
                      dict(learning_rate=0.1, b1=0.9, b2=0.999, eps=1e-8, weight_decay=1e-2)),
    "optax.fromage": ("tx", lambda: optax.fromage(0.05, 1e-6),
                      dict(learning_rate=0.05, min_norm=1e-6)),
    "optax.signum": ("tx", lambda: optax.signum(0.1, 0.8), dict(learning_rate=0.1, beta=0.8)),
    "optax.MultiSteps": ("tx", lambda: optax.MultiSteps(optax.adam(0.1), 3),
                         dict(inner=gx.adam(0.1), every_k=3)),
    "optax.apply_every": ("tx", lambda: optax.apply_every(3), dict(k=3)),
    "optax.ema": ("tx", lambda: optax.ema(0.8), dict(decay=0.8)),
    "optax.flatten": ("tx", lambda: optax.flatten(optax.adam(0.1)), dict(inner=gx.adam(0.1))),
    "optax.scale_by_adadelta": ("tx", lambda: optax.scale_by_adadelta(0.9, 1e-6),
                                dict(rho=0.9, eps=1e-6)),
    "optax.scale_by_rms": ("tx", lambda: optax.scale_by_rms(0.9, 1e-8),
                           dict(decay=0.9, eps=1e-8)),
    "optax.scale_by_schedule": ("tx", lambda: optax.scale_by_schedule(lambda c: 0.1 * (c + 1)),
                                dict(step_size_fn=lambda c: 0.1 * (c + 1))),
    "optax.scale_by_stddev": ("tx", lambda: optax.scale_by_stddev(0.9, 1e-8),
                              dict(decay=0.9, eps=1e-8)),
    "optax.selective_transform": (
        "tx", lambda: optax.selective_transform(optax.adam(0.1),
                                                freeze_mask={"w": False, "b": True}),
        dict(optimizer=gx.adam(0.1), labels=LABELS)),
    "optax.trace": ("tx", lambda: optax.trace(0.9, nesterov=True),
                    dict(decay=0.9, nesterov=True)),
    "optax.contrib.schedule_free": (
        "tx", lambda: optax.contrib.schedule_free(optax.sign_sgd(0.1), 0.1, 0.9),
        dict(base=gx.scale_by_sign(), learning_rate=0.1, b1=0.9)),
    "optax.warmup_constant_schedule": (
        "schedule", lambda: optax.warmup_constant_schedule(0.0, 1.0, 10),
        dict(init_value=0.0, peak_value=1.0, warmup_steps=10)),
    "optax.warmup_exponential_decay_schedule": (
        "schedule", lambda: optax.warmup_exponential_decay_schedule(
            0.0, 1.0, 10, 5, 0.5, 3, True, 0.01),
        dict(init_value=0.0, peak_value=1.0, warmup_steps=10, transition_steps=5,
             decay_rate=0.5, transition_begin=3, staircase=True, end_value=0.01)),
    "optax.linear_onecycle_schedule": (
        "schedule", lambda: optax.linear_onecycle_schedule(**_ONECYCLE), _onecycle(**_ONECYCLE)),
    "optax.sgdr_schedule": ("schedule", lambda: optax.sgdr_schedule(COSINE_KWARGS),
                            dict(cosine_kwargs=COSINE_KWARGS, boundaries=[30])),
    "optax.incremental_update": (
        "value", lambda: optax.incremental_update(PARAMS, jax.tree.map(jnp.zeros_like, PARAMS),
                                                  0.3),
        dict(new_tensors=PARAMS, old_tensors=jax.tree.map(jnp.zeros_like, PARAMS),
             step_size=0.3)),
    "optax.update_moment": (
        "value", lambda: optax.update_moment(PARAMS, jax.tree.map(jnp.ones_like, PARAMS), 0.9, 2),
        dict(updates=PARAMS, moments=jax.tree.map(jnp.ones_like, PARAMS), decay=0.9, order=2)),
    "optax.update_moment_per_elem_norm": (
        "value", lambda: optax.update_moment_per_elem_norm(
            PARAMS, jax.tree.map(jnp.ones_like, PARAMS), 0.9, 3),
        dict(updates=PARAMS, moments=jax.tree.map(jnp.ones_like, PARAMS), decay=0.9, order=3)),
    "optax.init_empty_state": ("value", lambda: optax.init_empty_state(PARAMS), {}),
}
# Forms written as one call that are not checked against Optax above, and why.
UNCHECKED = {
    "optax.amsgrad": "differs by design (torch's running max)",
    "optax.scale_by_amsgrad": "differs by design (torch's running max)",
    "optax.nadamw": "differs by design (torch's momentum schedule)",
    "optax.lookahead": "another parameter layout (no LookaheadParams)",
    "optax.cosine_onecycle_schedule": "torch's OneCycleLR, documented to differ",
    "optax.contrib.reduce_on_plateau": "lowers the learning rate instead of scaling updates",
    "optax.contrib.scale_by_muon": "torch's Muon, documented to differ",
}


def _form(name: str) -> str:
    match = re.fullmatch(r"`([^`]*)`", optax_map.MAP[name].gradtx)
    assert match, f"{name}: the form is not one code span"
    return match.group(1)


def _evaluate(name: str, variables: dict):
    if name == "optax.init_empty_state":
        return eval(_form(name), {"gx": gx, "jax": jax})(PARAMS)  # noqa: S307
    return eval(_form(name), {"gx": gx, "jax": jax, **variables})  # noqa: S307


def _close(a, b, rtol=1e-4, atol=1e-6):
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(leaves_a) == len(leaves_b)
    for x, y in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_composed_form_computes_the_same(name):
    kind, make_optax, variables = RECIPES[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        theirs = make_optax()
    ours = _evaluate(name, variables)
    if kind == "value":
        _close(ours, theirs)
        return
    if kind == "schedule":
        counts = range(0, 130)
        _close([ours(c) for c in counts], [theirs(c) for c in counts], atol=1e-6)
        return
    ours_state, theirs_state = ours.init(PARAMS), theirs.init(PARAMS)
    for step in range(7):
        key = jax.random.PRNGKey(step)
        grads = {k: jax.random.normal(jax.random.fold_in(key, i), v.shape)
                 for i, (k, v) in enumerate(sorted(PARAMS.items()))}
        u, ours_state = ours.update(grads, ours_state, PARAMS)
        v, theirs_state = theirs.update(grads, theirs_state, PARAMS)
        _close(u, v)


def test_every_composed_form_is_checked_or_explained():
    composed = sorted(
        name for name, entry in optax_map.MAP.items()
        if re.fullmatch(r"`[^`]*\([^`]*`", entry.gradtx)
    )
    unaccounted = [n for n in composed if n not in RECIPES and n not in UNCHECKED]
    assert not unaccounted, (
        f"composed gradtx forms with no check against Optax in RECIPES (or a reason in "
        f"UNCHECKED): {unaccounted}"
    )

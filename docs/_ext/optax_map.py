"""Every public name of Optax and its gradtx form, or why there is none.

Plain data, read by the ``gradtx-optax-map`` directive (``gradtx_tables.py``), which renders it
on ``docs/optax.md``, and by ``tests/test_optax_map.py``, which checks it against the installed
Optax and gradtx. Optax is imported only inside the functions below, never at import time.

Which names count as public is decided in one place, :func:`public_names`; which modules are
mapped name by name is :data:`NAME_BY_NAME`. Every other submodule of Optax has one entry of its
own (``"optax.losses"``) that covers it whole.

An entry is an :class:`Entry`: ``gradtx`` is the gradtx form (empty when there is none) and
``note`` says how it differs or why there is none. Both are short texts in which `` `...` ``
spans are code; a ``gx.<name>`` inside a code span links to gradtx's API reference once the
name is public. A name with no gradtx form says so plainly: "Not in gradtx yet." for what
could be added, "Not needed" or "By design" where gradtx does it another way, "Out of scope"
for what is not a gradient transformation.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
import types
import warnings
from typing import Any

# The modules mapped name by name, in order. In the first two every public name has an entry
# of its own. The others re-export most of their names from the top level: a name of theirs
# bound to an object that already has an entry (``optax.transforms.chain`` is
# ``optax.chain``, ``optax.tree_utils.tree_get`` is ``optax.tree.get``) is listed as another
# name of that entry, and only the rest have entries of their own. See optax_names.
OWN_ENTRIES = ("optax", "optax.contrib")
RE_EXPORTING = ("optax.schedules", "optax.transforms", "optax.tree", "optax.tree_utils")
NAME_BY_NAME = OWN_ENTRIES + RE_EXPORTING


def public_names(module: types.ModuleType) -> list[str]:
    """The public names of ``module``, sorted: every name in ``dir(module)`` or in its
    ``__all__`` (Optax serves deprecated names through a module ``__getattr__``, listed only
    there) that does not start with an underscore and can be read, less the modules imported
    from outside its package (``optax.tree_utils`` exposes ``functools`` and ``typing``). Its
    own submodules are public names."""
    names = set(dir(module)) | set(getattr(module, "__all__", ()))
    package = module.__name__.split(".")[0]
    missing = object()
    out = []
    for name in names:
        if name.startswith("_"):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # deprecated names warn when read
            value = getattr(module, name, missing)
        if value is missing:  # listed in __all__ but not there: nothing to map
            continue
        if isinstance(value, types.ModuleType) and not (
            value.__name__ == package or value.__name__.startswith(package + ".")
        ):
            continue
        out.append(name)
    return sorted(out)


def _is_shared_object(value: Any) -> bool:
    """Whether two names bound to ``value`` are two names of one thing (a function, a class, a
    type alias), rather than two equal constants."""
    return not isinstance(value, (types.ModuleType, int, float, str, bytes, type(None)))


def optax_names() -> dict[str, list[str]]:
    """Every name that needs an entry, qualified (``"optax.tree.get"``), mapped to its other
    names, which share its entry: the names in :data:`RE_EXPORTING` modules bound to an object
    that has an entry already, and the deprecated names (in a module's ``__all__`` but not in
    its ``dir()``, served by ``__getattr__``) of an object that has one. Imports Optax."""
    found: list[tuple[str, str, Any, bool]] = []  # (module, name, value, current)
    for module_name in NAME_BY_NAME:
        module = importlib.import_module(module_name)
        listed = set(dir(module))
        for name in public_names(module):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                value = getattr(module, name)
            found.append((module_name, name, value, name in listed))
    # id of an object -> the qualified names whose entries describe it
    owners: dict[int, list[str]] = {}
    out: dict[str, list[str]] = {}
    # Current names first, module by module in order; then the deprecated ones.
    for module_name, name, value, current in sorted(
        found, key=lambda f: (not f[3], NAME_BY_NAME.index(f[0]))
    ):
        qualified = f"{module_name}.{name}"
        shared = _is_shared_object(value)
        others = owners.get(id(value), []) if shared else []
        if others and (module_name in RE_EXPORTING or not current):
            # Prefer the entry of the same name, then the object's own name (EmptyState).
            own = getattr(value, "__name__", None)
            owner = next((q for q in others if q.rsplit(".", 1)[1] == name),
                         next((q for q in others if q.rsplit(".", 1)[1] == own), others[0]))
            out[owner].append(qualified)
            continue
        out[qualified] = []
        if shared:
            owners.setdefault(id(value), []).append(qualified)
    return out


def resolve_optax(qualified: str) -> bool:
    """Whether ``qualified`` (``"optax.tree.get"``) names something in the installed Optax."""
    parts = qualified.split(".")
    try:
        value: Any = importlib.import_module(parts[0])
    except ImportError:
        return False
    for i, part in enumerate(parts[1:], start=1):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if hasattr(value, part):
                value = getattr(value, part)
                continue
        if inspect.ismodule(value):
            try:
                value = importlib.import_module(".".join(parts[: i + 1]))
                continue
            except ImportError:
                return False
        return False
    return True


# ---------------------------------------------------------------------------------------------
# Entries

@dataclasses.dataclass(frozen=True)
class Entry:
    gradtx: str = ""  # the gradtx form, code in backticks; "" when there is none
    note: str = ""  # how it differs, or why there is none


def eq(gradtx: str, note: str = "") -> Entry:
    """An Optax name with a gradtx form."""
    return Entry(gradtx, note)


def none(reason: str) -> Entry:
    """An Optax name with no gradtx form, and why."""
    return Entry("", reason)


def not_yet(what: str = "") -> Entry:
    """An Optax name gradtx could have and does not."""
    return Entry("", "Not in gradtx yet." + (" " + what if what else ""))


LOSS = none("Out of scope: a loss function. gradtx transforms gradients and ships no losses; "
            "use `optax.losses` alongside it.")
TREE_MATH = none("Out of scope: pytree arithmetic. gradtx has no tree-math library; use "
                 "`jax.tree.map`, or `optax.tree` alongside gradtx.")
LINALG = none("Out of scope: a linear-algebra routine, not a gradient transformation; use "
              "Optax's alongside gradtx.")
NUMERICS = none("Out of scope: a numerics helper; gradtx's are internal. Use Optax's "
                "alongside gradtx.")
LINE_SEARCH = none("Not in gradtx as a transformation: gradtx's line search (strong Wolfe) "
                   "runs inside `gx.lbfgs(line_search_fn=\"strong_wolfe\")`.")
NAME_BY_NAME_MODULE = none(
    "Mapped name by name: a name of something mapped already (at the top level, or in "
    "`optax.tree` for `optax.tree_utils`) is shown under that entry, and the other names have "
    "entries of their own.")
EMPTY = eq("`gx.EmptyState`", "Optax's name for the empty state of one transformation; "
           "gradtx's stateless transformations all keep `gx.EmptyState()`.")


OPTIMIZERS = {
    "optax.adabelief": eq(
        "`gx.adabelief`",
        "Same update, eps in the same places; gradtx adds an L2 `weight_decay`, Optax has "
        "`nesterov`."),
    "optax.adadelta": eq(
        "`gx.adadelta`",
        "Optax's default `learning_rate=None` applies no step size and no sign flip (its "
        "updates ascend); gradtx's default is torch's 1.0."),
    "optax.adafactor": eq(
        "`gx.adafactor`",
        "Optax factors only leaves whose two largest axes are at least 128 long, gradtx the "
        "last two axes of every leaf of two or more dimensions; the default learning rate and "
        "the decay differ (see Optimizers above). torch's variant: `gx.adafactor_torch`."),
    "optax.adagrad": eq(
        "`gx.adagrad`",
        "torch's Adagrad: accumulator from 0 and eps (1e-10) outside the root; Optax starts at "
        "0.1 and puts eps (1e-7) inside it."),
    "optax.adam": eq(
        "`gx.adam`",
        "Same update; gradtx adds `amsgrad`, an L2 `weight_decay` and `maximize`, Optax has "
        "`eps_root` and `nesterov`."),
    "optax.adamax": eq(
        "`gx.adamax`",
        "Same update; gradtx adds an L2 `weight_decay` and `maximize`."),
    "optax.adamaxw": eq(
        "`gx.chain(gx.scale_by_adamax(b1, b2, eps), gx.add_decayed_weights(weight_decay), "
        "gx.scale_by_learning_rate(learning_rate))`",
        "Optax's own chain; `gx.adamax` has L2 decay only. Optax's `weight_decay` defaults to "
        "1e-4; its `mask` is `gx.add_decayed_weights`'s `mask`."),
    "optax.adamw": eq(
        "`gx.adamw`",
        "Optax's `weight_decay` defaults to 1e-4, gradtx's to torch's 1e-2. For Optax's decay "
        "`mask`, chain `gx.add_decayed_weights(mask=...)` or use `gx.multi_transform` groups."),
    "optax.adan": eq(
        "`gx.adan`",
        "Same update; default learning rate 1e-3 (Optax requires one); a mask function gets the "
        "parameters; a bare bool mask and complex parameters are refused.",
    ),
    "optax.amsgrad": eq(
        "`gx.adam(amsgrad=True)`",
        "torch's AMSGrad keeps the running max of the raw second moment, Optax's that of the "
        "bias-corrected one: the steps differ."),
    "optax.fromage": eq(
        "`gx.chain(gx.scale_by_trust_ratio(min_norm), gx.scale_by_learning_rate(learning_rate "
        "/ (1 + learning_rate**2) ** 0.5, flip_sign=False), gx.add_decayed_weights(1 - 1 / "
        "(1 + learning_rate**2) ** 0.5), gx.scale(-1.0))`",
        "Optax's chain for a constant learning rate, with the sign flipped around the decay "
        "(gradtx refuses a negative `weight_decay`); no single gradtx function."),
    "optax.lamb": eq(
        "`gx.lamb`",
        "Same update; Optax has `eps_root` and a decay `mask`."),
    "optax.lars": eq(
        "`gx.lars`",
        "Optax applies the learning rate before its momentum (the same for a constant rate) "
        "and has Nesterov momentum and masks for the decay and the trust ratio."),
    "optax.lbfgs": eq(
        "`gx.lbfgs`",
        "torch's L-BFGS: one `update` is a whole torch step (up to `max_iter` iterations, "
        "optional strong-Wolfe search) and takes `value=` and `value_and_grad_fn=`. Optax's "
        "`update` is one iteration with a zoom line search."),
    "optax.lion": eq(
        "`gx.lion`",
        "Same update; Optax's `weight_decay` defaults to 1e-3, gradtx's to 0."),
    "optax.nadam": eq(
        "`gx.nadam`",
        "torch's NAdam, with its momentum schedule; Optax's is Adam with a Nesterov "
        "look-ahead and no schedule. The steps differ from the first."),
    "optax.nadamw": eq(
        "`gx.nadam(decoupled_weight_decay=True)`",
        "torch's NAdamW, with the momentum schedule of `gx.nadam`: the steps differ from "
        "Optax's."),
    "optax.noisy_sgd": eq(
        "`gx.noisy_sgd`",
        "Same noise bit for bit for the same key or seed; default learning rate 1e-3; complex "
        "parameters refused.",
    ),
    "optax.novograd": eq(
        "`gx.novograd`",
        "Same update; default learning rate 1e-3; `weight_decay` may be a schedule.",
    ),
    "optax.optimistic_adam": eq(
        "`gx.optimistic_adam`",
        "Same update; no deprecation warning, and a learning-rate schedule is accepted (Optax "
        "refuses one).",
    ),
    "optax.optimistic_adam_v2": eq(
        "`gx.optimistic_adam_v2`",
        "Same update, arguments and defaults.",
    ),
    "optax.optimistic_gradient_descent": eq(
        "`gx.optimistic_gradient_descent`",
        "Same; `alpha`/`beta` may also be schedules.",
    ),
    "optax.polyak_sgd": eq(
        "`gx.polyak_sgd`",
        "Same update, arguments and defaults; pass the loss as `update(..., value=loss)`.",
    ),
    "optax.radam": eq(
        "`gx.radam`",
        "torch's RAdam: eps is added to the root of the uncorrected second moment and the "
        "adaptive step starts when rho_t > 5; Optax adds eps after the bias correction and "
        "starts at rho_t >= 5."),
    "optax.rmsprop": eq(
        "`gx.rmsprop`",
        "torch's defaults (decay 0.99) and eps outside the root, learning rate after the "
        "momentum; Optax's decay is 0.9, eps inside the root, learning rate before the "
        "momentum."),
    "optax.rprop": eq(
        "`gx.rprop`",
        "torch's Rprop, which clips the step size also on the first step and after a sign "
        "change; Optax leaves it unclipped there."),
    "optax.sgd": eq(
        "`gx.sgd`",
        "torch's SGD, with `dampening` and `weight_decay`; without dampening the momentum "
        "steps equal Optax's. Optax's `momentum` defaults to None (no momentum)."),
    "optax.sign_sgd": eq(
        "`gx.sign_sgd`",
        "Same update; gradtx's also takes a `momentum` (Signum)."),
    "optax.signum": eq(
        "`gx.sign_sgd(learning_rate, momentum=beta)`",
        "The same chain (uncorrected moving average, sign, learning rate); Optax's `beta` "
        "defaults to 0.9, gradtx's `momentum` to 0."),
    "optax.sm3": eq(
        "`gx.sm3`",
        "Same update; default learning rate 1e-2; scalar leaves work (Optax fails on them).",
    ),
    "optax.yogi": eq(
        "`gx.yogi`",
        "The paper's Algorithm 2: first moment from 0 and no bias correction; Optax starts "
        "both moments at 1e-6 and bias-corrects them."),
}

TRANSFORMS = {
    # States of transformations
    "optax.AdaptiveGradClipState": eq(
        "`gx.EmptyState`",
        "The empty state under another name (`gx.adaptive_grad_clip` keeps it)."),
    "optax.AddDecayedWeightsState": EMPTY,
    "optax.AddNoiseState": eq(
        "`gx.AddNoiseState`",
        "`count`, and `rng_key` as raw key data (`jax.random.wrap_key_data` gives the typed key).",
    ),
    "optax.ApplyEvery": eq(
        "`gx.AccumulationState`",
        "`ApplyEvery` is the state of `optax.apply_every`; the gradtx form of that keeps an "
        "`gx.AccumulationState`."),
    "optax.ApplyIfFiniteState": eq("`gx.ApplyIfFiniteState`", "Same fields."),
    "optax.ClipByGlobalNormState": EMPTY,
    "optax.ClipState": EMPTY,
    "optax.ConditionallyMaskState": eq(
        "`gx.ConditionallyMaskState`",
        "Same fields, same order.",
    ),
    "optax.ConditionallyTransformState": eq(
        "`gx.ConditionallyTransformState`",
        "Same fields, same order.",
    ),
    "optax.EmptyState": eq("`gx.EmptyState`", "Same: the state of a transformation that keeps "
                           "none."),
    "optax.EmaState": eq(
        "`gx.FirstMomentState`",
        "The state of `gx.ema` (`mu`); the count Optax keeps for its debiasing is the "
        "`gx.CountState` of `gx.bias_correction`."),
    "optax.FactoredState": eq(
        "`gx.FactoredRmsState`",
        "The state of `gx.scale_by_factored_rms`: `count`, `row`, `col`, `full` (Optax: "
        "`v_row`, `v_col`, `v`)."),
    "optax.LookaheadParams": none(
        "By design: `gx.lookahead` keeps the slow weights in its state "
        "(`gx.LookaheadState.slow`), so the parameters stay a plain tree, with no pair of "
        "fast and slow ones to build and unpack."),
    "optax.LookaheadState": eq(
        "`gx.LookaheadState`",
        "Holds the slow weights as well (`inner_state`, `slow`, `fast_steps`)."),
    "optax.MaskedNode": none(
        "By design: gradtx's masked states hold `None` for the leaves outside the mask, not a "
        "placeholder class."),
    "optax.MaskedState": eq("`gx.MaskedState`", "Same field (`inner_state`), without "
                            "`optax.MaskedNode` placeholders."),
    "optax.MonitorState": eq(
        "`gx.MonitorState`",
        "Same fields.",
    ),
    "optax.MultiStepsState": eq(
        "`gx.AccumulationState`",
        "`micro_step`, `grad_sum`, `inner_state`, `emitted`."),
    "optax.MultiTransformState": eq(
        "`gx.MultiTransformState`",
        "Each group's state directly, with no `gx.MaskedState` level and no placeholders."),
    "optax.NonNegativeParamsState": eq(
        "`gx.EmptyState`",
        "The empty state under another name (`gx.keep_params_nonnegative` keeps it)."),
    "optax.PartitionState": eq(
        "`gx.MultiTransformState`",
        "Each group's state directly, with no `gx.MaskedState` level and no placeholders."),
    "optax.ScaleByAdaDeltaState": eq(
        "`gx.SecondMomentState` and `gx.PastUpdateRmsState`",
        "gradtx's Adadelta keeps the states of its two steps."),
    "optax.ScaleByAdamState": eq(
        "`gx.FirstMomentState`, `gx.SecondMomentState` and `gx.CountState`",
        "The states of the pieces of `gx.scale_by_adam` (inside an optimizer, one count for "
        "all)."),
    "optax.ScaleByAdanState": eq(
        "`gx.ScaleByAdanState`",
        "Fields `m`, `v`, `n`, `g`; Optax's `t` is `count`.",
    ),
    "optax.ScaleByAmsgradState": eq(
        "`gx.RunningMaxState`",
        "Beside the moment states of `gx.scale_by_adam(amsgrad=True)`."),
    "optax.ScaleByBacktrackingLinesearchState": LINE_SEARCH,
    "optax.ScaleByBeliefState": eq("`gx.BeliefState`", "Same fields."),
    "optax.ScaleByLBFGSState": eq(
        "`gx.LbfgsRunState`",
        "torch's L-BFGS state (`old_dirs`, `old_stps`, `ro`, ...), not Optax's layout."),
    "optax.ScaleByLionState": eq(
        "`gx.FirstMomentState`",
        "`gx.scale_by_lion` keeps its moment `mu` and no count."),
    "optax.ScaleByNovogradState": eq(
        "`gx.ScaleByNovogradState`",
        "Same fields.",
    ),
    "optax.ScaleByRStdDevState": eq(
        "`gx.SecondMomentState` and `gx.FirstMomentState`",
        "The state of `gx.scale_by_rms(centered=True)`."),
    "optax.ScaleByRmsState": eq("`gx.SecondMomentState`", "The state of `gx.scale_by_rms`."),
    "optax.ScaleByRpropState": eq(
        "`gx.RpropState`",
        "Keeps the previous gradient (`prev`) and the step sizes; Optax keeps the previous "
        "step."),
    "optax.ScaleByRssState": eq("`gx.SumOfSquaresState`", "The state of `gx.scale_by_rss`."),
    "optax.ScaleBySM3State": eq(
        "`gx.ScaleBySM3State`",
        "Same fields `mu` (per-axis vectors) and `nu`.",
    ),
    "optax.ScaleByScheduleState": eq(
        "`gx.ScheduleState`",
        "The state of `gx.scale_by_learning_rate` with a schedule: the count."),
    "optax.ScaleByTrustRatioState": EMPTY,
    "optax.ScaleByZoomLinesearchState": LINE_SEARCH,
    "optax.ScaleState": EMPTY,
    "optax.ShouldSkipUpdateFunction": eq(
        "`gx.ShouldSkipUpdateFunction`",
        "The same protocol, for `gx.accumulate_gradients(..., should_skip_update_fn=...)`."),
    "optax.SnapshotState": eq(
        "`gx.SnapshotState`",
        "Same field, `measurement`.",
    ),
    "optax.TraceState": eq(
        "`gx.MomentumState`",
        "The buffer is `momentum_buffer` (Optax: `trace`), beside the step count."),
    "optax.ZeroNansState": eq(
        "`gx.ZeroNansState`",
        "Same field, `found_nan`.",
    ),
    "optax.ZoomLinesearchInfo": LINE_SEARCH,
    # Transformations and wrappers
    "optax.MultiSteps": eq(
        "`gx.accumulate_gradients(inner, every_k)`",
        "A function, not a class: `every_k` is a fixed int (Optax: also a schedule), the "
        "gradients are always averaged (summed, then divided: Optax keeps a running mean) in "
        "each parameter's dtype. `should_skip_update_fn=` is Optax's; "
        "`gx.AccumulationState.emitted` is Optax's `has_updated`."),
    "optax.adaptive_grad_clip": eq(
        "`gx.adaptive_grad_clip`",
        "Same clipping per unit.",
    ),
    "optax.add_decayed_weights": eq(
        "`gx.add_decayed_weights`",
        "The same step, with a `mask` as in Optax."),
    "optax.add_noise": eq(
        "`gx.add_noise`",
        "Same noise bit for bit.",
    ),
    "optax.apply_every": eq(
        "`gx.accumulate_gradients(gx.scale(float(k)), every_k=k)`",
        "Placed where `optax.apply_every(k)` is, it emits the sum of the last `k` updates every "
        "`k` calls and zeros in between. To step an optimizer on the mean of `k` gradients, "
        "wrap the optimizer instead (`optax.MultiSteps`)."),
    "optax.apply_if_finite": eq("`gx.apply_if_finite`", "Same semantics and state fields."),
    "optax.centralize": eq(
        "`gx.centralize`",
        "Same.",
    ),
    "optax.chain": eq(
        "`gx.chain`",
        "Passes extra arguments (`value=`) to every transformation that takes them, Optax's "
        "`GradientTransformationExtraArgs` included; `optax.chain` passes them only to "
        "instances of that class."),
    "optax.clip": eq("`gx.clip`", "Same step."),
    "optax.clip_by_block_rms": eq("`gx.clip_by_block_rms`", "Same step."),
    "optax.clip_by_global_norm": eq(
        "`gx.clip_by_global_norm`",
        "torch's `clip_grad_norm_`: the factor is `max_norm / (norm + 1e-6)`, capped at 1; "
        "Optax divides by the norm itself. They agree to about 1e-6 / norm."),
    "optax.conditionally_mask": eq(
        "`gx.conditionally_mask`",
        "Same: zero updates on the skipped steps.",
    ),
    "optax.conditionally_transform": eq(
        "`gx.conditionally_transform`",
        "Same; the condition gets the number of earlier updates.",
    ),
    "optax.ema": eq(
        "`gx.chain(gx.ema(decay), gx.bias_correction(decay))`",
        "Optax debiases by default; `gx.ema` alone is `optax.ema(decay, debias=False)`."),
    "optax.flatten": eq(
        "`gx.multi_tensor(inner)`",
        "One buffer per dtype (and per split leaf, given `shardings=`), and only "
        "transformations declared flattenable; `optax.flatten` concatenates every leaf and "
        "takes any transformation."),
    "optax.freeze": eq("`gx.freeze`", "Same semantics."),
    "optax.identity": eq("`gx.identity`", "Same."),
    "optax.keep_params_nonnegative": eq(
        "`gx.keep_params_nonnegative`",
        "Same; needs the parameters.",
    ),
    "optax.lookahead": eq(
        "`gx.lookahead(inner, sync_period, alpha)`",
        "The slow weights live in the state and the parameters stay a plain tree (no "
        "`optax.LookaheadParams`); `alpha` is Optax's `slow_step_size`; no `reset_state`."),
    "optax.masked": eq(
        "`gx.masked`",
        "The same selection; the mask must be static bools, and the inner state holds nothing "
        "for the other leaves."),
    "optax.measure_with_ema": eq(
        "`gx.measure_with_ema`",
        "Same average; one `gx.MeasureWithEmaState(count, ema)` in place of Optax's chain state, "
        "a float from the start.",
    ),
    "optax.monitor": eq(
        "`gx.monitor`",
        "Same measurements; the state starts with zeros shaped like a measurement (Optax's starts"
        " empty and changes structure at its first step, so it cannot run in `lax.scan`).",
    ),
    "optax.multi_transform": eq(
        "`gx.multi_transform`",
        "Each group's state is kept directly, without placeholders; the labels qualify "
        "hyperparameter names (`\"decay/learning_rate\"`)."),
    "optax.named_chain": eq(
        "`gx.named_chain`",
        "Same state (an `OrderedDict` by name); a state of other names is refused."),
    "optax.normalize_by_update_norm": eq(
        "`gx.normalize_by_update_norm`",
        "Same; the norm is summed in float32 or wider.",
    ),
    "optax.partition": eq(
        "`gx.multi_transform`",
        "Each group's state is kept directly, without placeholders."),
    "optax.per_example_global_norm_clip": eq(
        "`gx.per_example_global_norm_clip`",
        "Same results; takes any tree (Optax: a list of leaves) and names a leaf with a "
        "missing or different batch axis."),
    "optax.per_example_layer_norm_clip": eq(
        "`gx.per_example_layer_norm_clip`",
        "Same results; takes any tree (Optax: a list of leaves)."),
    "optax.scale": eq("`gx.scale`", "Same step."),
    "optax.scale_by_adadelta": eq(
        "`gx.chain(gx.scale_by_rms(rho, eps, eps_in_sqrt=True), "
        "gx.scale_by_past_update_rms(rho, eps))`",
        "The two steps of `gx.adadelta`."),
    "optax.scale_by_adam": eq(
        "`gx.scale_by_adam`",
        "Same scaling, with Optax's `eps_root` and `nesterov` (keyword arguments) and "
        "`amsgrad=True` for torch's AMSGrad."),
    "optax.scale_by_adamax": eq("`gx.scale_by_adamax`", "Same scaling."),
    "optax.scale_by_adan": eq(
        "`gx.scale_by_adan`",
        "Same scaling.",
    ),
    "optax.scale_by_amsgrad": eq(
        "`gx.scale_by_adam(amsgrad=True)`",
        "The running max of the raw second moment (torch), not of the bias-corrected one."),
    "optax.scale_by_backtracking_linesearch": LINE_SEARCH,
    "optax.scale_by_belief": eq("`gx.scale_by_belief`", "Same scaling; Optax has `nesterov`."),
    "optax.scale_by_distance_over_gradients": eq(
        "`gx.scale_by_distance_over_gradients`",
        "Layer-wise DoG; a 0-d leaf's update stays 0-d (Optax: shape (1,)).",
    ),
    "optax.scale_by_factored_rms": eq(
        "`gx.scale_by_factored_rms`",
        "Factors every leaf of two or more dimensions over its last two axes (Optax: only "
        "leaves whose two largest axes are at least `min_dim_size_to_factor`); no "
        "`step_offset` or `decay_rate_fn`."),
    "optax.scale_by_lbfgs": none(
        "Not in gradtx as a separate transformation: `gx.lbfgs` runs torch's whole step "
        "(directions, step length, optional line search)."),
    "optax.scale_by_learning_rate": eq(
        "`gx.scale_by_learning_rate`",
        "The learning rate is required; Optax's `None` means no scaling."),
    "optax.scale_by_lion": eq(
        "`gx.scale_by_lion`",
        "Optax's default `mode=\"hard\"`; gradtx has no `\"smooth\"` or `\"refined\"` mode."),
    "optax.scale_by_novograd": eq(
        "`gx.scale_by_novograd`",
        "Same scaling; with a narrower `mu_dtype` the output is the unrounded moment.",
    ),
    "optax.scale_by_optimistic_gradient": eq(
        "`gx.scale_by_optimistic_gradient`",
        "Same; Optax's `is_initial_step` is `count == 0`.",
    ),
    "optax.scale_by_param_block_norm": eq(
        "`gx.scale_by_param_block_norm`",
        "Same.",
    ),
    "optax.scale_by_param_block_rms": eq("`gx.scale_by_param_block_rms`", "Same step."),
    "optax.scale_by_polyak": eq(
        "`gx.scale_by_polyak`",
        "Same; takes `value=`.",
    ),
    "optax.scale_by_radam": eq(
        "`gx.scale_by_radam`",
        "torch's eps placement and threshold (see `optax.radam`)."),
    "optax.scale_by_rms": eq(
        "`gx.scale_by_rms(decay, eps, eps_in_sqrt=True)`",
        "gradtx's defaults are torch's (decay 0.99, eps outside the root): pass `decay=0.9` "
        "and `eps_in_sqrt=True` for Optax's. No `initial_scale` or `bias_correction`."),
    "optax.scale_by_rprop": eq(
        "`gx.scale_by_rprop`",
        "torch's step-size clipping (see `optax.rprop`)."),
    "optax.scale_by_rss": eq(
        "`gx.scale_by_rss`",
        "torch's Adagrad scaling: accumulator from 0 and eps outside the root (Optax: 0.1, "
        "eps inside)."),
    "optax.scale_by_schedule": eq(
        "`gx.scale_by_learning_rate(step_size_fn, flip_sign=False)`",
        "The schedule's value multiplies the updates, sign unchanged."),
    "optax.scale_by_sign": eq("`gx.scale_by_sign`", "Same step."),
    "optax.scale_by_sm3": eq(
        "`gx.scale_by_sm3`",
        "Same; a scalar leaf is a vector of one entry.",
    ),
    "optax.scale_by_stddev": eq(
        "`gx.scale_by_rms(decay, eps, centered=True, eps_in_sqrt=True)`",
        "Centered RMSProp's scaling, eps inside the root as Optax's; no `initial_scale` or "
        "`bias_correction`."),
    "optax.scale_by_trust_ratio": eq(
        "`gx.scale_by_trust_ratio`",
        "Same ratio; gradtx adds LARS's `weight_decay` inside it."),
    "optax.scale_by_yogi": eq(
        "`gx.scale_by_yogi`",
        "The paper's Algorithm 2: first moment from 0 and no bias correction (see "
        "`optax.yogi`)."),
    "optax.scale_by_zoom_linesearch": LINE_SEARCH,
    "optax.selective_transform": eq(
        "`gx.multi_transform({\"train\": optimizer, \"freeze\": gx.set_to_zero()}, labels)`",
        "With `labels` a tree of `\"train\"` and `\"freeze\"` (Optax builds it from "
        "`freeze_mask`); the frozen leaves keep no optimizer state. `gx.freeze` keeps it for "
        "them instead."),
    "optax.set_to_zero": eq("`gx.set_to_zero`", "Same."),
    "optax.skip_large_updates": eq(
        "`gx.skip_large_updates`",
        "Same decision and `skip_state`, for `gx.accumulate_gradients`."),
    "optax.skip_not_finite": eq(
        "`gx.skip_not_finite`",
        "Same decision and `skip_state`, for `gx.accumulate_gradients`; to skip whole "
        "optimizer steps instead, wrap the optimizer in `gx.apply_if_finite`."),
    "optax.snapshot": eq(
        "`gx.snapshot`",
        "Same.",
    ),
    "optax.stateless": eq(
        "`gx.stateless`",
        "`fn(updates, params)`; `needs_params=True` checks that the params are given."),
    "optax.stateless_with_tree_map": eq(
        "`gx.stateless`",
        "Map the leaves inside the function (`jax.tree.map`)."),
    "optax.trace": eq(
        "`gx.scale_by_momentum(momentum=decay, nesterov=nesterov)`",
        "The same steps (the buffer starts at the first update in both); gradtx adds torch's "
        "`dampening`."),
    "optax.with_extra_args_support": none(
        "Not needed: every gradtx transformation takes extra keyword arguments, and "
        "`gx.chain` calls a three-argument (Optax) transformation without them."),
    "optax.zero_nans": eq(
        "`gx.zero_nans`",
        "Same; `gx.ZeroNansState` holds one bool per leaf.",
    ),
    "optax.transforms.ConditionFn": eq(
        "`gradtx.wrappers.conditional.ConditionFn`",
        "The same type: a function of the step count.",
    ),
    "optax.transforms.unitwise_clip": eq(
        "`gx.unitwise_clip`",
        "Same.",
    ),
    "optax.transforms.unitwise_norm": eq(
        "`gx.unitwise_norm`",
        "Same.",
    ),
}

SCHEDULES = {
    "optax.InjectHyperparamsState": eq(
        "`gx.HyperparamsState`",
        "`(count, hyperparams, scheduled, fixed, inner_state)`; every gradtx optimizer's "
        "state is one."),
    "optax.InjectStatefulHyperparamsState": eq(
        "`gx.HyperparamsState`",
        "gradtx's schedules keep no state of their own."),
    "optax.ScalarOrSchedule": eq("`gx.ScalarOrSchedule`", "Same meaning."),
    "optax.Schedule": eq("`gx.Schedule`", "A function of the step count."),
    "optax.WrappedSchedule": none(
        "By design: gradtx's schedules are plain functions of the step count; there are no "
        "stateful schedules to wrap."),
    "optax.constant_schedule": eq("`gx.constant_schedule`", "Same values."),
    "optax.cosine_decay_schedule": eq(
        "`gx.cosine_decay_schedule`",
        "Same values; no `exponent`."),
    "optax.cosine_onecycle_schedule": eq(
        "`gx.one_cycle_schedule(peak_value, transition_steps, pct_start, div_factor, "
        "final_div_factor)`",
        "torch's `OneCycleLR` (also linear and three-phase); Optax's peaks one step later "
        "and ends at another value."),
    "optax.exponential_decay": eq("`gx.exponential_decay`", "Same values."),
    "optax.inject_hyperparams": eq(
        "`gx.inject_hyperparams`",
        "Same idiom and arguments; every gradtx optimizer is already built this way, and "
        "`gx.set_hyperparam` checks the values."),
    "optax.inject_stateful_hyperparams": eq(
        "`gx.inject_hyperparams`",
        "For schedules that are functions of the step count; gradtx has no stateful "
        "schedules."),
    "optax.join_schedules": eq("`gx.join_schedules`", "Same values."),
    "optax.linear_onecycle_schedule": eq(
        "`gx.join_schedules([gx.linear_schedule(v0, peak_value, a), "
        "gx.linear_schedule(peak_value, v0, b - a), gx.linear_schedule(v0, v0 / "
        "final_div_factor, transition_steps - b)], [a, b])`",
        "With `v0 = peak_value / div_factor`, `a = int(pct_start * transition_steps)`, "
        "`b = int(pct_final * transition_steps)`. torch's variant, with other phase ends: "
        "`gx.one_cycle_schedule(..., anneal_strategy=\"linear\", three_phase=True)`."),
    "optax.linear_schedule": eq("`gx.linear_schedule`", "Same values."),
    "optax.piecewise_constant_schedule": eq("`gx.piecewise_constant_schedule`",
                                            "Same values."),
    "optax.piecewise_interpolate_schedule": eq(
        "`gx.join_schedules` of `gx.linear_schedule` pieces",
        "One piece per interval, from the value at its start to the value at its end; for "
        "`\"cosine\"` interpolation, `gx.cosine_decay_schedule(start, length, alpha=end / "
        "start)` pieces."),
    "optax.polynomial_schedule": eq("`gx.polynomial_schedule`", "Same values."),
    "optax.sgdr_schedule": eq(
        "`gx.join_schedules([gx.warmup_cosine_decay_schedule(**kw) for kw in cosine_kwargs], "
        "boundaries)`",
        "With `boundaries` the running sums of the cycles' `decay_steps`, the last left out "
        "(gradtx's cosine schedules have no `exponent`). Equal cycles without warm-up: "
        "`gx.cosine_warm_restarts_schedule`."),
    "optax.warmup_constant_schedule": eq(
        "`gx.linear_schedule(init_value, peak_value, warmup_steps)`",
        "It holds `peak_value` after the warm-up, as Optax's does."),
    "optax.warmup_cosine_decay_schedule": eq(
        "`gx.warmup_cosine_decay_schedule`",
        "Same values; no `exponent`."),
    "optax.warmup_exponential_decay_schedule": eq(
        "`gx.join_schedules([gx.linear_schedule(init_value, peak_value, warmup_steps), "
        "gx.exponential_decay(peak_value, transition_steps, decay_rate, transition_begin, "
        "staircase, end_value)], [warmup_steps])`",
        "Optax's own composition."),
    "optax.schedules.StatefulSchedule": none(
        "By design: gradtx's schedules are plain functions of the step count."),
}

OTHER = {
    # Types
    "optax.GradientTransformation": eq(
        "`gx.GradientTransformation`",
        "The same NamedTuple layout; each library's transformations go into the other's "
        "`chain`."),
    "optax.GradientTransformationExtraArgs": eq(
        "`gx.GradientTransformationExtraArgs`",
        "Another name of `gx.GradientTransformation`: every gradtx `update` takes extra "
        "arguments."),
    "optax.MaskOrFn": none(
        "Not exported: gradtx's `mask` arguments take the same (a tree of bools, or a "
        "function of the params returning one)."),
    "optax.OptState": eq("`gx.OptState`", "Same meaning."),
    "optax.Params": eq("`gx.Params`", "Same meaning."),
    "optax.TransformInitFn": none(
        "Not exported: the `init` signature is described on `gx.GradientTransformation`."),
    "optax.TransformUpdateExtraArgsFn": none(
        "Not exported: the `update` signature is described on `gx.GradientTransformation`."),
    "optax.TransformUpdateFn": none(
        "Not exported: the `update` signature is described on `gx.GradientTransformation`."),
    "optax.Updates": eq("`gx.Updates`", "Same meaning."),
    # Functions
    "optax.apply_updates": eq(
        "`gx.apply_updates`",
        "Each result in its parameter's dtype; `None` leaves pass through."),
    "optax.bias_correction": none(
        "Not in gradtx as a function: `gx.bias_correction` is a transformation of the same "
        "name, placed after a moving average. For one array: `moment / (1 - decay**count)`."),
    "optax.global_norm": eq(
        "`gx.global_norm`",
        "Same norm, in float32 or wider."),
    "optax.incremental_update": eq(
        "`jax.tree.map(lambda new, old: gx.ema_update(old, new, 1 - step_size), "
        "new_tensors, old_tensors)`",
        "Or keep such an average of the parameters in the optimizer state: "
        "`gx.with_param_average`."),
    "optax.init_empty_state": eq(
        "`lambda params: gx.EmptyState()`",
        "Write it in place; gradtx's stateless transformations do."),
    "optax.matrix_inverse_pth_root": LINALG,
    "optax.microbatch": none(
        "Not in gradtx: `optax.microbatch` splits one batch inside a gradient function; "
        "gradtx accumulates across `update` calls (`gx.accumulate_gradients`)."),
    "optax.multi_normal": none("Out of scope: a diagonal Gaussian distribution helper, not a "
                               "gradient transformation."),
    "optax.nnls": LINALG,
    "optax.periodic_update": eq(
        "`gx.periodic_update`",
        "Same.",
    ),
    "optax.power_iteration": LINALG,
    "optax.safe_increment": NUMERICS,
    "optax.safe_int32_increment": NUMERICS,
    "optax.safe_norm": NUMERICS,
    "optax.safe_root_mean_squares": NUMERICS,
    "optax.scale_gradient": none(
        "Out of scope: a custom-gradient helper used in the model's forward pass, not a "
        "transformation of gradients; use Optax's alongside gradtx."),
    "optax.tree_map_params": eq(
        "`gx.tree_map_params`",
        "Same arguments and result."),
    "optax.update_infinity_moment": none(
        "Not in gradtx as a tree function: the transformation `gx.weighted_infinity_norm` "
        "keeps this moment."),
    "optax.update_moment": eq(
        "`jax.tree.map(lambda g, m: gx.ema_update(m, g**order, decay), updates, moments)`",
        "`gx.ema_update` is one step for one array, in the moment's dtype; the "
        "transformations `gx.ema` and `gx.ema_of_squares` keep such moments."),
    "optax.update_moment_per_elem_norm": eq(
        "`jax.tree.map(lambda g, m: gx.ema_update(m, g ** order, decay), updates, moments)`",
        "For real leaves; a complex leaf's statistic is `abs(g) ** order` (Optax: the squared "
        "modulus to the power `order / 2`)."),
    "optax.value_and_grad_from_state": none(
        "Not needed: `gx.lbfgs` takes `value=` and `value_and_grad_fn=` in `update` and "
        "evaluates the function itself."),
    # Losses
    "optax.convex_kl_divergence": LOSS,
    "optax.cosine_distance": LOSS,
    "optax.cosine_similarity": LOSS,
    "optax.ctc_loss": LOSS,
    "optax.ctc_loss_with_forward_probs": LOSS,
    "optax.generalized_kl_divergence": LOSS,
    "optax.hinge_loss": LOSS,
    "optax.huber_loss": LOSS,
    "optax.kl_divergence": LOSS,
    "optax.l2_loss": LOSS,
    "optax.log_cosh": LOSS,
    "optax.ntxent": LOSS,
    "optax.safe_softmax_cross_entropy": LOSS,
    "optax.sigmoid_binary_cross_entropy": LOSS,
    "optax.sigmoid_focal_loss": LOSS,
    "optax.smooth_labels": LOSS,
    "optax.softmax_cross_entropy": LOSS,
    "optax.softmax_cross_entropy_with_integer_labels": LOSS,
    "optax.squared_error": LOSS,
    # Submodules
    "optax.assignment": none(
        "Out of scope: assignment problems (the Hungarian algorithm), not gradient "
        "transformations; use `optax.assignment` alongside gradtx."),
    "optax.contrib": none("Mapped name by name in the table of `optax.contrib` below."),
    "optax.experimental": none(
        "Out of scope: Optax's experimental API (aggregators of per-example gradient "
        "statistics, `optax.experimental.aggregating`)."),
    "optax.losses": none(
        "Out of scope: loss functions. gradtx transforms gradients and ships no losses; use "
        "`optax.losses` alongside it. (Its names at Optax's top level are listed one by one "
        "in this table.)"),
    "optax.microbatching": none(
        "Out of scope: splitting a batch inside a gradient function; gradtx accumulates "
        "across `update` calls (`gx.accumulate_gradients`). Its `microbatch` is listed "
        "above."),
    "optax.perturbations": none(
        "Out of scope: smoothing a function by random perturbations to get gradients of it "
        "(`optax.perturbations.make_perturbed_fun`), a way to compute gradients, not to "
        "transform them."),
    "optax.projections": none(
        "Out of scope: Euclidean projections onto sets (simplex, balls, boxes) for projected "
        "gradient methods; apply `optax.projections` to the parameters after "
        "`gx.apply_updates`."),
    "optax.schedules": NAME_BY_NAME_MODULE,
    "optax.second_order": none(
        "Out of scope: Hessian-vector products and Hessian and Fisher diagonals, tools that "
        "compute curvature rather than transform gradients; use `optax.second_order` "
        "alongside gradtx."),
    "optax.transforms": NAME_BY_NAME_MODULE,
    "optax.tree": NAME_BY_NAME_MODULE,
    "optax.tree_utils": NAME_BY_NAME_MODULE,
    # optax.tree (optax.tree_utils holds the same functions as tree_<name>)
    "optax.tree.add": TREE_MATH,
    "optax.tree.add_scale": TREE_MATH,
    "optax.tree.allclose": TREE_MATH,
    "optax.tree.batch_shape": TREE_MATH,
    "optax.tree.cast": TREE_MATH,
    "optax.tree.cast_like": TREE_MATH,
    "optax.tree.clip": TREE_MATH,
    "optax.tree.conj": TREE_MATH,
    "optax.tree.div": TREE_MATH,
    "optax.tree.dtype": TREE_MATH,
    "optax.tree.full_like": TREE_MATH,
    "optax.tree.get": eq(
        "`gx.tree_get`",
        "Names may be qualified (`\"mu/w\"`) instead of a `filtering=` function; an unknown "
        "name raises a `KeyError` listing the names there are, instead of returning a "
        "default."),
    "optax.tree.get_all_with_path": none(
        "Not in gradtx: `gx.tree_get` returns one entry, and when several match, its "
        "`KeyError` lists their qualified names."),
    "optax.tree.max": TREE_MATH,
    "optax.tree.min": TREE_MATH,
    "optax.tree.mul": TREE_MATH,
    "optax.tree.norm": eq(
        "`gx.global_norm`",
        "The L2 norm of the whole tree; no `ord` or `squared`."),
    "optax.tree.ones_like": TREE_MATH,
    "optax.tree.random_like": TREE_MATH,
    "optax.tree.real": TREE_MATH,
    "optax.tree.scale": TREE_MATH,
    "optax.tree.set": eq(
        "`gx.tree_set`",
        "Refuses a value of another shape, dtype or structure, naming the entry, so that a "
        "jitted step is never compiled again; names may be qualified."),
    "optax.tree.size": TREE_MATH,
    "optax.tree.split_key_like": TREE_MATH,
    "optax.tree.sub": TREE_MATH,
    "optax.tree.sum": TREE_MATH,
    "optax.tree.unwrap_random_key_data": TREE_MATH,
    "optax.tree.vdot": TREE_MATH,
    "optax.tree.where": TREE_MATH,
    "optax.tree.zeros_like": TREE_MATH,
    "optax.tree_utils.NamedTupleKey": none(
        "Not needed: `gx.tree_get` names NamedTuple fields by their names; there is no key "
        "class."),
}

CONTRIB = {
    "optax.contrib.COCOBState": eq(
        "`gx.ScaleByCocobState`",
        "The same fields.",
    ),
    "optax.contrib.DAdaptAdamWState": eq(
        "`gx.DAdaptAdamState`",
        "Fields `mu`, `nu`, `s`, `d`, `numerator`, `k`, `count` (Optax: `exp_avg`, "
        "`exp_avg_sq`, `grad_sum`, `estim_lr`, `numerator_weighted`, `count`)."),
    "optax.contrib.DifferentiallyPrivateAggregateState": eq(
        "`gx.DifferentiallyPrivateAggregateState`",
        "The same field `rng_key`, as raw key data (Optax: the typed key)."),
    "optax.contrib.DoGState": eq(
        "`gx.ScaleByDogState`",
        "The same fields (`gx.scale_by_dog` is the scaling, private in Optax).",
    ),
    "optax.contrib.DoWGState": eq(
        "`gx.ScaleByDowgState`",
        "The same fields (`gx.scale_by_dowg` is the scaling, private in Optax).",
    ),
    "optax.contrib.GaLoreDimensionNumbers": eq(
        "`gx.GaLoreDimensionNumbers`",
        "The same fields, `reduction_axis` and `output_axis`."),
    "optax.contrib.GaLoreState": eq(
        "`gx.GaLoreState`",
        "The same fields; `count` is the optimizer's one count inside an optimizer."),
    "optax.contrib.HutchinsonState": eq(
        "`gx.HutchinsonState`",
        "The same field `key`, as raw key data."),
    "optax.contrib.MadgradState": eq(
        "`gx.MadgradState`",
        "Same fields.",
    ),
    "optax.contrib.MechanicState": eq(
        "`gx.MechanizeState`",
        "The same fields: `base_optimizer_state`, `count`, `r`, `m`, `v`, `s`, `x0`.",
    ),
    "optax.contrib.MomoAdamState": eq(
        "`gx.MomoAdamState`",
        "Same fields.",
    ),
    "optax.contrib.MomoState": eq(
        "`gx.MomoState`",
        "Same fields; `count` is the optimizer's one count inside an optimizer.",
    ),
    "optax.contrib.MuonDimensionNumbers": not_yet(
        "Kernels go to Muon with their output channels first or last and every other axis "
        "merged into the other side (`gx.matrix_view(gx.muon(...), layout)`, or "
        "`gx.muon_with_adamw(..., conv_kernels=layout)`); orthogonalising along any chosen "
        "reduction and output axes is not in gradtx."),
    "optax.contrib.MuonState": eq(
        "`gx.MuonMomentumState`",
        "The momentum buffer only; Optax's also holds a count and the coefficients."),
    "optax.contrib.NormalizeState": eq(
        "`gx.EmptyState`",
        "The empty state under another name (`gx.normalize` keeps it)."),
    "optax.contrib.ProdigyState": eq(
        "`gx.ProdigyState`",
        "Fields `mu`, `nu`, `s`, `p0`, `d`, `d_max`, `numerator`, `k`, `count` (Optax: "
        "`exp_avg`, `exp_avg_sq`, `grad_sum`, `params0`, `estim_lr`, ...)."),
    "optax.contrib.ReduceLROnPlateauState": eq(
        "`gx.ReduceOnPlateauState`",
        "torch's names: `best`, `num_bad_epochs`, `cooldown_counter`, `last_epoch`, around the "
        "inner optimizer's state."),
    "optax.contrib.SAMState": eq(
        "`gx.SAMState`",
        "The same fields: `steps_since_sync`, `opt_state`, `adv_state`, `cache`."),
    "optax.contrib.ScaleByAdemamixState": eq(
        "`gx.AdemamixState`",
        "`mu`, `nu`, `mu_slow`, `count` (Optax: `m1`, `nu`, `m2`, counts)."),
    "optax.contrib.ScaleBySimplifiedAdEMAMixState": eq(
        "`gx.ScaleBySimplifiedAdEMAMixState`",
        "`m`, `n`, and `count` (Optax's `t`).",
    ),
    "optax.contrib.ScheduleFreeState": eq(
        "`gx.ScheduleFreeState`",
        "`z`, `weight_sum`, `lr_max`, `interpolation`, `count`; no base optimizer state "
        "inside (it sits beside it in the chain)."),
    "optax.contrib.SophiaState": eq(
        "`gx.SophiaState`",
        "The same fields; `count` is the optimizer's one count inside an optimizer."),
    "optax.contrib.SplitRealAndImaginaryState": none(
        "Not needed: see `optax.contrib.split_real_and_imaginary`."),
    "optax.contrib.acprop": eq(
        "`gx.acprop`",
        "Same update; default learning rate 1e-3; a mask function gets the parameters; complex "
        "parameters refused.",
    ),
    "optax.contrib.ademamix": eq(
        "`gx.ademamix`",
        "The warm-ups of alpha and beta3 over one horizon `t_alpha_beta3` (Optax: two "
        "schedules); weight decay L2 or decoupled (Optax: decoupled)."),
    "optax.contrib.adopt": eq(
        "`gx.adopt`",
        "`clip_value_fn` is called with the step number from 1 (Optax: from 0); gradtx adds "
        "weight decay, Optax has `nesterov`."),
    "optax.contrib.cocob": eq(
        "`gx.cocob`",
        "Same update, arguments and defaults; `eps` must be > 0.",
    ),
    "optax.contrib.dadapt_adamw": eq(
        "`gx.dadapt_adamw`",
        "Optax always bias-corrects (gradtx: `use_bias_correction=True`) and has no "
        "`growth_rate`; gradtx skips the step of a first all-zero gradient, where Optax's "
        "estimate becomes NaN."),
    "optax.contrib.differentially_private_aggregate": eq(
        "`gx.differentially_private_aggregate`",
        "Same noise bit for bit for the same key; `key=None` is seed 0 without a warning; the "
        "batch axes are checked against the params."),
    "optax.contrib.dog": eq(
        "`gx.dog`",
        "Same update, arguments and defaults; `init_step` is fixed at build time.",
    ),
    "optax.contrib.dowg": eq(
        "`gx.dowg`",
        "Same update, arguments and defaults.",
    ),
    "optax.contrib.dpsgd": eq(
        "`gx.dpsgd`",
        "Same steps and noise; `seed` may also be a key."),
    "optax.contrib.galore": eq(
        "`gx.galore`",
        "Same steps (the SVD in float32 on both sides); default learning rate 1e-3; `scale` "
        "may be live; complex parameters refused."),
    "optax.contrib.hutchinson_estimator_diag_hessian": eq(
        "`gx.hutchinson_estimator_diag_hessian`",
        "The same signs for the same key; each leaf's signs in its own dtype (Optax: the "
        "narrowest leaf dtype, which fails on mixed dtypes)."),
    "optax.contrib.madgrad": eq(
        "`gx.madgrad`",
        "Same steps as Optax given an array learning rate; with a Python number Optax computes "
        "(η+ε)√(k+1) in float32 (about 1e-6 of the distance travelled, in float64). Default "
        "learning rate 1e-2.",
    ),
    "optax.contrib.mechanize": eq(
        "`gx.mechanize`",
        "Same update, arguments and defaults.",
    ),
    "optax.contrib.momo": eq(
        "`gx.momo`",
        "Same update, arguments and defaults; `value=loss`.",
    ),
    "optax.contrib.momo_adam": eq(
        "`gx.momo_adam`",
        "Same update, arguments and defaults; `value=loss`.",
    ),
    "optax.contrib.muon": eq(
        "`gx.muon_with_adamw`",
        "Like Optax's `muon`, it trains the other leaves with AdamW (`gx.muon` takes "
        "matrices only), and also splits by name (embeddings, heads). torch's Muon: momentum "
        "not bias-corrected, eps a floor on the norm, torch's shape factor (see `gx.muon`)."),
    "optax.contrib.normalize": eq(
        "`gx.normalize`",
        "Same, NaN on all-zero updates included.",
    ),
    "optax.contrib.prodigy": eq(
        "`gx.prodigy`",
        "Optax always bias-corrects (gradtx: `use_bias_correction=True`) and has no "
        "`growth_rate` or `slice_p`; gradtx skips the step of a first all-zero gradient."),
    "optax.contrib.reduce_on_plateau": eq(
        "`gx.reduce_on_plateau(inner)`",
        "Wraps the optimizer and lowers its stored learning rates, with torch's arguments; "
        "Optax's is chained after the optimizer and scales its updates."),
    "optax.contrib.sam": eq(
        "`gx.sam`",
        "Optax's arguments, and `adv_optimizer` may be left out for the built-in ascent "
        "(`rho`, `adaptive` for ASAM, `eps`). Given one, the parameters move as Optax's in "
        "both modes, to rounding; with `sync_period=1` every call is a plain step."),
    "optax.contrib.scale_by_acprop": eq(
        "`gx.scale_by_acprop`",
        "Same; its state is `gx.BeliefState` (`mu`, `nu`, `count`).",
    ),
    "optax.contrib.scale_by_ademamix": eq(
        "`gx.scale_by_ademamix`",
        "The warm-ups over one horizon `t_alpha_beta3` (Optax: two schedules)."),
    "optax.contrib.scale_by_adopt": eq(
        "`gx.scale_by_adopt`",
        "`clip_value_fn` is called with the step number from 1 (Optax: from 0)."),
    "optax.contrib.scale_by_cocob": eq(
        "`gx.scale_by_cocob`",
        "Same step.",
    ),
    "optax.contrib.scale_by_galore": eq(
        "`gx.scale_by_galore`",
        "Same steps; bad dimension numbers are refused naming the leaf."),
    "optax.contrib.scale_by_madgrad": eq(
        "`gx.scale_by_madgrad`",
        "Same step, typed as Optax's.",
    ),
    "optax.contrib.scale_by_muon": eq(
        "`gx.chain(gx.scale_by_muon_momentum(), gx.orthogonalize_by_newton_schulz(), "
        "gx.adjust_muon_learning_rate())`",
        "torch's Muon pieces (momentum not bias-corrected, eps a floor on the norm, torch's "
        "shape factor), for matrices only."),
    "optax.contrib.scale_by_simplified_ademamix": eq(
        "`gx.scale_by_simplified_ademamix`",
        "Same.",
    ),
    "optax.contrib.schedule_free": eq(
        "`gx.chain(base, gx.scale_by_schedule_free(learning_rate, b1))`",
        "With `base` the base optimizer's steps without their learning rate: gradtx's "
        "Schedule-Free step applies the learning rate itself. Read the parameters to "
        "evaluate with `gx.schedule_free_eval_params`."),
    "optax.contrib.schedule_free_adamw": eq(
        "`gx.schedule_free_adamw`",
        "The authors' `schedulefree` package step for step; Optax has no `r` and applies "
        "its warm-up one step later."),
    "optax.contrib.schedule_free_eval_params": eq(
        "`gx.schedule_free_eval_params`",
        "Finds the Schedule-Free state anywhere inside the state."),
    "optax.contrib.schedule_free_sgd": eq(
        "`gx.schedule_free_sgd`",
        "The authors' `schedulefree` package step for step; Optax calls `momentum` `b1`, has "
        "no `r` and applies its warm-up one step later."),
    "optax.contrib.simplified_ademamix": eq(
        "`gx.simplified_ademamix`",
        "Same update; default learning rate 1e-5; a mask function gets the parameters; complex "
        "parameters refused.",
    ),
    "optax.contrib.sophia": eq(
        "`gx.sophia`",
        "Same steps, signs and `update(..., obj_fn=f)`; default learning rate 1e-3; the "
        "default estimator is built per call; complex parameters refused."),
    "optax.contrib.split_real_and_imaginary": none(
        "Not needed in gradtx's optimizers: they step a complex leaf as its real and "
        "imaginary parts already (a few refuse complex leaves). There is no such wrapper for "
        "other transformations."),
}

# Section key -> (title, entries), in the order of the page.
SECTIONS = {
    "optimizers": ("Optimizers", OPTIMIZERS),
    "transforms": ("Transforms, wrappers and their states", TRANSFORMS),
    "schedules": ("Schedules and injected hyperparameters", SCHEDULES),
    "other": ("Types, utilities and the other submodules", OTHER),
    "contrib": ("optax.contrib", CONTRIB),
}


def _merge() -> dict[str, Entry]:
    merged: dict[str, Entry] = {}
    for key, (_, entries) in SECTIONS.items():
        for name, entry in entries.items():
            if name in merged:
                raise ValueError(f"optax_map: {name} is listed twice (again in {key!r})")
            merged[name] = entry
    return merged


MAP: dict[str, Entry] = _merge()

_CODE = re.compile(r"`([^`]*)`")
_GX_NAME = re.compile(r"\bgx\.([A-Za-z_]\w*)")
_OPTAX_NAME = re.compile(r"\boptax(?:\.[A-Za-z_]\w*)+")


def gradtx_names(entry: Entry) -> set[str]:
    """The gradtx names (``gx.<name>``) an entry cites, in its form or its note."""
    return set(_GX_NAME.findall(entry.gradtx + " " + entry.note))


def optax_references(entry: Entry) -> set[str]:
    """The Optax names an entry's texts cite in code (``optax.add_noise``)."""
    found = set()
    for span in _CODE.findall(entry.gradtx + " " + entry.note):
        found.update(_OPTAX_NAME.findall(span))
    return found


def has_form(entry: Entry) -> bool:
    return bool(entry.gradtx.strip())


def kind(entry: Entry) -> str:
    """What an entry says, in one word: ``"form"`` (a gradtx form), ``"not yet"`` (gradtx
    could have it and does not), ``"out of scope"`` (not a gradient transformation),
    ``"module"`` (a submodule mapped name by name) or ``"other"`` (done another way in gradtx,
    or not needed there)."""
    if has_form(entry):
        return "form"
    if entry.note.startswith("Not in gradtx yet"):
        return "not yet"
    if entry.note.startswith("Out of scope"):
        return "out of scope"
    if entry.note.startswith("Mapped name by name"):
        return "module"
    return "other"

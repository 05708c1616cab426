"""Tables generated from the code at build time, so that they cannot drift from it.

Directives (usable from MyST as ```` ```{name} ````):

``gradtx-torch-optimizer NAME``
    Every argument of ``torch.optim.<torch_class>`` next to its gradtx counterpart, for the
    registry entry ``NAME`` (``gradtx.optimizers.registry``): names from the entry's
    ``torch_names``, defaults from ``inspect.signature`` of both, and whether the value is live
    (read from the optimizer's declarations). A torch argument with no counterpart must have an
    explanation in ``TORCH_ONLY`` below, and every gradtx argument must be reached, or the
    build warns (and fails: it runs with ``-W``). It also warns when a registry entry with a
    torch class has no table anywhere in the docs.
``gradtx-torch-only``
    The torch arguments that no gradtx optimizer needs (``TORCH_ONLY``), which optimizers take
    them, and why.
``gradtx-torch-schedulers``
    Every scheduler class in ``torch.optim.lr_scheduler`` with its gradtx equivalent and an
    argument-by-argument mapping from ``SCHEDULERS`` below; a torch class or argument missing
    from it, or a gradtx name that does not exist, is a warning.
``gradtx-torch-classes``
    Every optimizer class in ``torch.optim`` with its gradtx form, how exactly it is matched
    and whether the state_dict bridge carries its state, from the registry entry with that
    ``torch_class`` (its ``tolerance_note`` where it is not matched to rtol 1e-9 everywhere); a
    class without one is a warning.
``gradtx-hyperparams NAME``
    The arguments of the registry entry ``NAME``, read from its declarations
    (``gradtx.hyperparams.declarations``): default (``inspect.signature``), accepted values
    (``Hyperparam.describe()``), whether ``set_hyperparam`` can change it, and the first sentence
    of each cross-argument rule's docstring. Warns when a registry entry has no such table
    anywhere in the docs.
``gradtx-optax-defaults``
    For each gradtx function that Optax also has, the arguments whose names or defaults differ,
    read from the installed Optax (option ``:group:`` ``optimizers`` or ``others``).
``gradtx-optax-map SECTION``
    Every public name of the installed Optax and ``optax.contrib`` with its gradtx form or why
    there is none, from ``optax_map.py`` (one section of it per table; ``summary`` for the
    counts). An Optax name without an entry, or an entry for a name Optax lacks, is a warning.

torch and optax are imported only here, at documentation time; gradtx never imports them.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
from collections.abc import Callable, Sequence
from typing import Any

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# Building docutils tables from short strings. A string is plain text in which `...` spans
# become code, and a code span that starts with ``gx.<public name>`` links to its API entry.

_CODE_LINK = re.compile(r"^gx\.(\w+)")


def _inline(text: str, docname: str) -> list[nodes.Node]:
    import gradtx

    out: list[nodes.Node] = []
    for i, part in enumerate(text.split("`")):
        if not part:
            continue
        if i % 2 == 0:
            out.append(nodes.Text(part))
            continue
        match = _CODE_LINK.match(part)
        if match and match.group(1) in gradtx.__all__:
            ref = addnodes.pending_xref(
                "", refdomain="py", reftype="obj", reftarget=f"gradtx.{match.group(1)}",
                refexplicit=True, refdoc=docname,
            )
            ref += nodes.literal(part, part)
            out.append(ref)
        else:
            out.append(nodes.literal(part, part))
    return out


def _cell(content: str | Sequence[str], docname: str, inline=_inline) -> nodes.entry:
    entry = nodes.entry()
    for text in [content] if isinstance(content, str) else content:
        entry += nodes.paragraph("", "", *inline(text, docname))
    return entry


def _table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], widths: Sequence[int], docname: str,
    inline=_inline,
) -> nodes.table:
    table = nodes.table(classes=["gradtx-generated"])
    group = nodes.tgroup(cols=len(headers))
    table += group
    for width in widths:
        group += nodes.colspec(colwidth=width)
    head, body = nodes.thead(), nodes.tbody()
    group += head
    group += body
    head += nodes.row("", *(_cell(h, docname, inline) for h in headers))
    for row in rows:
        body += nodes.row("", *(_cell(c, docname, inline) for c in row))
    return table


def _paragraph(text: str, docname: str) -> nodes.paragraph:
    return nodes.paragraph("", "", *_inline(text, docname))


def _fmt(value: Any) -> str:
    if value is inspect.Parameter.empty:
        return "required"
    if inspect.isclass(value) or inspect.isfunction(value):
        return value.__name__
    return repr(value)


def _same_default(a: Any, b: Any) -> bool:
    if a is inspect.Parameter.empty or b is inspect.Parameter.empty:
        return a is b
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    try:
        return bool(a == b)
    except Exception:  # arrays, exotic objects: compare by their printed form
        return repr(a) == repr(b)


def _import(module: str, docname: str, what: str):
    try:
        return importlib.import_module(module)
    except ImportError as err:
        logger.warning(
            "%s needs %s at documentation time (%s)", what, module, err,
            location=docname, type="gradtx", subtype="tables",
        )
        return None


def _warn(directive: SphinxDirective, message: str, *args) -> None:
    logger.warning(message, *args, location=directive.get_location(), type="gradtx",
                   subtype="tables")


# ---------------------------------------------------------------------------------------------
# torch.optim optimizers

# torch arguments with no gradtx counterpart, and why there is none.
TORCH_ONLY = {
    "foreach": (
        "Picks torch's implementation (a Python loop over tensors, or batched `_foreach` "
        "kernels): speed only, same result. Under `jax.jit` the whole update, over all "
        "leaves, is compiled into one XLA program, and XLA chooses how to fuse it."
    ),
    "fused": (
        "Picks torch's single fused kernel for the step: speed only. `jax.jit` compiles and "
        "fuses the step itself, so there is no switch."
    ),
    "capturable": (
        "Keeps torch's step counters on the device so the step can be captured in a CUDA "
        "graph. A gradtx state is arrays only (step counts included), and a step under "
        "`jax.jit` is one compiled program with no round trips to the host."
    ),
    "differentiable": (
        "Lets autograd trace through `optimizer.step()`. A gradtx update is a pure JAX "
        "function, so `jax.grad` differentiates through it as it is (with respect to the "
        "gradients, the state, or a hyperparameter passed as an array)."
    ),
}
TORCH_ONLY_BY_CLASS = {
    ("Adam", "decoupled_weight_decay"): (
        "torch's switch to AdamW: `Adam(..., decoupled_weight_decay=True)` is `gx.adamw`. "
        "Pass `weight_decay` explicitly: Adam's default is 0, AdamW's 1e-2."
    ),
    ("pytorch_optimizer.ADOPT", "kwargs"): (
        "pytorch-optimizer's extra group options (`cautious`, `stable_adamw`): variants outside "
        "ADOPT's paper, not in gradtx."
    ),
    ("prodigyopt.Prodigy", "fsdp_in_use"): (
        "Sums the estimate's numerator and denominator across the processes of a sharded "
        "(FSDP) model. gradtx's sums are over whole arrays, sharded or not, so under `jax.jit` "
        "they already cover every shard: no switch."
    ),
    ("dadaptation.DAdaptAdam", "fsdp_in_use"): (
        "Sums the estimate's numerator and denominator across the processes of a sharded "
        "(FSDP) model. gradtx's sums are over whole arrays, sharded or not, so under `jax.jit` "
        "they already cover every shard: no switch."
    ),
    ("dadaptation.DAdaptAdam", "decouple"): (
        "`decouple=True` (AdamW's decoupled decay) is `gx.dadapt_adamw`. `decouple=False` (L2 "
        "decay) is `gx.chain(gx.add_decayed_weights(wd), gx.scale_by_dadapt_adam(...))`."
    ),
    ("dadaptation.DAdaptAdam", "log_every"): (
        "Logs the estimate every so many steps: read it from the state instead, "
        "`gx.tree_get(state, \"d\")`."
    ),
    ("pytorch_optimizer.AdEMAMix", "kwargs"): (
        "pytorch-optimizer's extra group options (`cautious`, `stable_adamw`): variants outside "
        "AdEMAMix's paper, not in gradtx."
    ),
    ("pytorch_optimizer.MARS", "kwargs"): (
        "pytorch-optimizer's catch-all for extra group options, stored in each group and not "
        "read by MARS's step: nothing to map."
    ),
    ("pytorch_optimizer.SOAP", "kwargs"): (
        "pytorch-optimizer's catch-all for extra group options, stored in each group and not "
        "read by SOAP's step: nothing to map."
    ),
    ("lion_pytorch.Lion", "use_triton"): (
        "A CUDA kernel for the same step; XLA compiles gradtx's step for the device."
    ),
    ("lion_pytorch.Lion", "decoupled_weight_decay"): (
        "Divides the decay by the initial learning rate, so the decay per step follows the "
        "schedule's ratio `lr_t / lr_0`: pass `weight_decay=wd / lr_0` for the same step "
        "(exact with a constant learning rate, which is what the parity runs check)."
    ),
}
NOTES = {
    "params": (
        "Not a constructor argument: `opt.init(params)` builds the state and "
        "`opt.update(grads, state, params)` takes them at each step. Param groups: "
        "`gx.multi_transform`."
    ),
    "lr": "Also a schedule `count -> value` (see the scheduler table of From torch.optim).",
    "betas": "The tuple, as separate arguments.",
}
TORCH_ONLY_SEE_ABOVE = "None needed (see the arguments without a counterpart, above)."
LIVE = "yes"
LIVE_UNLESS_ZERO = "yes, unless built as a Python `0`"
LIVE_UNLESS_NONE = "yes, unless given as `None`"
FIXED = "no (fixed when built)"


def _declarations(factory: Callable) -> dict[str, Any] | None:
    """The optimizer's declarations (argument -> ``Hyperparam``), or None for a factory that
    was not declared."""
    injection = getattr(factory, "_injection", None)
    return getattr(injection, "declarations", None)


def _live_kind(declaration) -> str:
    """Whether ``set_hyperparam`` can change the argument mid-run, in words."""
    if not declaration.live:
        return FIXED
    if declaration.omit_when_zero:
        return LIVE_UNLESS_ZERO
    if declaration.none_allowed:
        return LIVE_UNLESS_NONE
    return LIVE


def _live_kinds(factory: Callable) -> dict[str, str]:
    """For each argument of an optimizer, whether ``set_hyperparam`` can change it mid-run, read
    from its declarations (an undeclared argument, or factory, is reported as fixed)."""
    declarations = _declarations(factory) or {}
    return {
        name: _live_kind(declarations[name]) if name in declarations else FIXED
        for name in inspect.signature(factory).parameters
    }


def _call(name: str, kwargs: dict[str, Any], *positional: str) -> str:
    args = [*positional, *(f"{k}={v!r}" for k, v in kwargs.items())]
    return f"{name}({', '.join(args)})"


class TorchOptimizerTable(SphinxDirective):
    required_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        from gradtx.optimizers import registry

        docname = self.env.docname
        name = self.arguments[0]
        try:
            info = registry.get(name)
        except KeyError as err:
            _warn(self, "gradtx-torch-optimizer: %s", err)
            return []
        self.env.note_dependency(registry.__file__)
        self.env.note_dependency(__file__)
        _shown(self.env).setdefault(docname, set()).add(name)
        if info.torch_class is None:
            _warn(self, "gradtx-torch-optimizer: %s has no torch reference", name)
            return []
        module = _import(info.torch_module, docname, f"the {info.torch_module} tables")
        if module is None:
            return []
        torch_cls = getattr(module, info.torch_class_name)
        torch_sig = inspect.signature(torch_cls.__init__).parameters
        gx_sig = inspect.signature(info.factory).parameters
        to_gradtx = {torch: gx for gx, torch in info.torch_names.items()}
        kinds = _live_kinds(info.factory)

        rows, reached = [], set()
        for arg, parameter in torch_sig.items():
            if arg == "self":
                continue
            torch_default = _fmt(parameter.default)
            if arg == "params":
                rows.append([f"`{arg}`", "required", "—", "", "", NOTES["params"]])
            elif arg in info.tuples and set(info.tuples[arg]) <= gx_sig.keys():
                members = info.tuples[arg]
                reached |= set(members)
                joined = tuple(gx_sig[name].default for name in members)
                note = [NOTES["betas"]]
                if not _same_default(joined, parameter.default):
                    note.append("Different default.")
                rows.append([f"`{arg}`", f"`{torch_default}`",
                             ", ".join(f"`{name}`" for name in members),
                             f"`{joined!r}`", kinds[members[0]], note])
            elif to_gradtx.get(arg, arg) in gx_sig:
                gx_arg = to_gradtx.get(arg, arg)
                reached.add(gx_arg)
                gx_default = gx_sig[gx_arg].default
                note = [NOTES[arg]] if arg in NOTES else []
                if gx_arg != arg and arg != "lr":
                    note.append(f"Renamed: `{gx_arg}` is Optax's name.")
                if not _same_default(gx_default, parameter.default):
                    note.append("Different default.")
                rows.append([f"`{arg}`", f"`{torch_default}`", f"`{gx_arg}`",
                             f"`{_fmt(gx_default)}`", kinds[gx_arg], note])
            else:
                why = TORCH_ONLY_BY_CLASS.get((info.torch_class, arg))
                if why is None and arg in TORCH_ONLY:
                    why = TORCH_ONLY_SEE_ABOVE
                if why is None:
                    _warn(self, "%s.%s argument %r has no gradtx counterpart and no "
                          "explanation in docs/_ext/gradtx_tables.py", info.torch_module,
                          info.torch_class_name, arg)
                    why = "No counterpart (not yet explained)."
                rows.append([f"`{arg}`", f"`{torch_default}`", "—", "", "", why])
        for gx_arg in sorted(gx_sig.keys() - reached):
            if gx_arg in GRADTX_ONLY:
                rows.append(["—", "", f"`{gx_arg}`", f"`{_fmt(gx_sig[gx_arg].default)}`", "no",
                             GRADTX_ONLY[gx_arg]])
                continue
            if gx_arg.endswith("_dtype"):
                # Storage only, no torch counterpart: torch keeps every state in its
                # parameter's dtype, which is what the default None does.
                rows.append(["—", "", f"`{gx_arg}`", f"`{_fmt(gx_sig[gx_arg].default)}`", "no",
                             "gradtx only: the dtype this moment is stored in (e.g. "
                             "`jnp.bfloat16` halves it). torch keeps the parameter's dtype, "
                             "as the default `None` does."])
                continue
            _warn(self, "gradtx.%s argument %r matches no %s.%s argument", name,
                  gx_arg, info.torch_module, info.torch_class_name)

        torch_call = _call(f"{info.torch_module}.{info.torch_class_name}",
                           info.torch_kwargs(info.example), "params")
        gx_call = _call(f"gx.{name}", {**info.fixed, **info.example})
        example = nodes.literal_block(
            "", f"{torch_call}\n{gx_call}", language="python", classes=["gradtx-example"]
        )
        headers = ["torch argument", "torch default", "gradtx argument", "gradtx default",
                   "live (`set_hyperparam`)", "notes"]
        return [example, _table(headers, rows, [12, 12, 12, 12, 14, 38], docname)]


def _shown(env, kind: str = "torch") -> dict[str, set[str]]:
    """docname -> the registry names that have a table of ``kind`` (``"torch"`` or
    ``"hyperparams"``) on that page."""
    attr = f"gradtx_{kind}_tables"
    if not hasattr(env, attr):
        setattr(env, attr, {})
    return getattr(env, attr)


_TABLE_KINDS = ("torch", "hyperparams")


class TorchOnlyTable(SphinxDirective):
    """The torch arguments in ``TORCH_ONLY``, the optimizers that take them, and why gradtx
    has no counterpart."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        from gradtx.optimizers import registry

        docname = self.env.docname
        self.env.note_dependency(__file__)
        optim = _import("torch.optim", docname, "the torch.optim tables")
        if optim is None:
            return []
        rows = []
        for arg, why in TORCH_ONLY.items():
            takers = [
                f"`{info.torch_class}`" for info in registry.in_torch_optim()
                if arg in inspect.signature(getattr(optim, info.torch_class).__init__).parameters
            ]
            rows.append([f"`{arg}`", ", ".join(takers) or "none", why])
        return [_table(["torch argument", "taken by", "why gradtx has none"], rows, [14, 30, 56],
                       docname)]


# torch.optim classes whose gradtx form is not a registry entry: name -> (gradtx, status).
# gradtx-only arguments that are not a state's storage dtype: argument -> the note.
GRADTX_ONLY = {
    "ns_dtype": "gradtx only: the dtype Newton–Schulz runs in. torch always runs it in "
                "bfloat16, as the default does; `None` keeps the parameter's dtype.",
    "batch_by_shape": "gradtx only: one batched Newton–Schulz per matrix shape instead of one "
                      "per matrix (the same step).",
}



class TorchClassesTable(SphinxDirective):
    """Every ``torch.optim`` optimizer class, its gradtx form and its status."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        from gradtx.optimizers import registry

        docname = self.env.docname
        self.env.note_dependency(__file__)
        optim = _import("torch.optim", docname, "the torch.optim class table")
        if optim is None:
            return []
        classes = sorted(
            name for name, cls in vars(optim).items()
            if inspect.isclass(cls) and issubclass(cls, optim.Optimizer)
            and cls is not optim.Optimizer and not name.startswith("_")
        )
        by_class = {info.torch_class: info for info in registry.in_torch_optim()}
        rows = []
        for name in classes:
            info = by_class.get(name)
            if info is not None:
                status = (info.tolerance_note
                          or "equal step for step (float64, rtol 1e-9, every argument)")
                bridge = "yes" if info.torch_state else "no"
                rows.append([f"`{name}`", f"`gx.{info.name}`",
                             status, bridge])
            else:
                _warn(self, "torch.optim.%s has no registry entry", name)
                rows.append([f"`{name}`", "none yet", "missing", "no"])
        return [_table(["torch.optim", "gradtx", "status", "state_dict bridge"], rows,
                       [16, 30, 40, 14], docname)]


def check_torch_tables(app: Sphinx, env) -> None:
    from gradtx.optimizers import registry

    shown = set().union(*_shown(env).values())
    missing = [i.name for i in registry.with_torch_equivalent() if i.name not in shown]
    if missing:
        logger.warning(
            "torch tables: no `gradtx-torch-optimizer` table for %s (registry entries "
            "with a torch_class)", ", ".join(missing), type="gradtx", subtype="tables",
        )


def _purge(app: Sphinx, env, docname: str) -> None:
    # A page read again notes its tables again.
    for kind in _TABLE_KINDS:
        _shown(env, kind).pop(docname, None)


def _merge(app: Sphinx, env, docnames, other) -> None:
    for kind in _TABLE_KINDS:
        for docname in docnames:
            if docname in _shown(other, kind):
                _shown(env, kind)[docname] = _shown(other, kind)[docname]


# ---------------------------------------------------------------------------------------------
# Hyperparameter declarations

_ROLE = re.compile(r":\w+:`~?([^`]+)`")


def _first_sentence(doc: str | None) -> str:
    """The first sentence of a docstring's first paragraph, in this module's markup (reST
    roles and double backquotes become single backquotes)."""
    paragraph = " ".join((doc or "").strip().split("\n\n")[0].split())
    sentence = re.split(r"(?<=\.)\s", paragraph, maxsplit=1)[0]
    return _ROLE.sub(r"`\1`", sentence).replace("``", "`")


def _default(value: Any) -> str:
    """A default value as a code span; a public gradtx function links to its entry."""
    import gradtx

    if inspect.isfunction(value) and value.__name__ in gradtx.__all__ and getattr(
        gradtx, value.__name__
    ) is value:
        return f"`gx.{value.__name__}`"
    return f"`{_fmt(value)}`"


class HyperparamsTable(SphinxDirective):
    """One optimizer's arguments, read from its declarations: default, accepted values,
    whether ``set_hyperparam`` can change it, and the rules that tie arguments together."""

    required_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        from gradtx.optimizers import registry

        docname = self.env.docname
        name = self.arguments[0]
        try:
            info = registry.get(name)
        except KeyError as err:
            _warn(self, "gradtx-hyperparams: %s", err)
            return []
        self.env.note_dependency(registry.__file__)
        self.env.note_dependency(__file__)
        _shown(self.env, "hyperparams").setdefault(docname, set()).add(name)
        declarations = _declarations(info.factory)
        if declarations is None:
            _warn(self, "gradtx-hyperparams: %s is not declared (built without "
                  "`declarations=`), so it has no argument table", name)
            return []
        rows = []
        for arg, parameter in inspect.signature(info.factory).parameters.items():
            declaration = declarations.get(arg)
            if declaration is None:
                _warn(self, "gradtx-hyperparams: %s argument %r has no declaration", name, arg)
                continue
            rows.append([f"`{arg}`", _default(parameter.default), declaration.describe(),
                         _live_kind(declaration)])
        headers = ["argument", "default", "accepted values", "live (`set_hyperparam`)"]
        out: list[nodes.Node] = [_table(headers, rows, [22, 22, 34, 22], docname)]
        rules = [_first_sentence(inspect.getdoc(rule)) for rule in info.factory._injection.rules]
        if rules:
            out.append(_paragraph("Rules across arguments, checked when the optimizer is built "
                                  "and by `gx.set_hyperparam`:", docname))
            items = nodes.bullet_list()
            for text in rules:
                items += nodes.list_item("", _paragraph(text or "(undocumented rule)", docname))
            out.append(items)
        return out


def check_hyperparams_tables(app: Sphinx, env) -> None:
    from gradtx.optimizers import registry

    shown = set().union(*_shown(env, "hyperparams").values())
    missing = [info.name for info in registry.OPTIMIZERS if info.name not in shown]
    if missing:
        logger.warning(
            "hyperparameter tables: no `gradtx-hyperparams` table for %s (registry entries)",
            ", ".join(missing), type="gradtx", subtype="tables",
        )


# ---------------------------------------------------------------------------------------------
# torch.optim.lr_scheduler

@dataclasses.dataclass(frozen=True)
class Scheduler:
    gradtx: str  # the gradtx expression, `gx.` names link to the API
    args: dict[str, str]  # torch argument -> its gradtx counterpart or what to do instead
    note: str = ""
    uses: tuple[str, ...] = ()  # gradtx names the expression relies on (checked to exist)


# Arguments every scheduler has.
COMMON_SCHEDULER_ARGS = {
    "optimizer": "Its base `lr` is the schedule's first argument (written `lr` here); give the "
    "schedule as the optimizer's `learning_rate`.",
    "last_epoch": "None needed: the step count lives in the optimizer state, so restoring a "
    "saved state resumes the schedule.",
}

SCHEDULERS = {
    "StepLR": Scheduler(
        "`gx.step_schedule(lr, step_size, gamma)`",
        {"step_size": "`step_size`", "gamma": "`gamma`"}, uses=("step_schedule",),
    ),
    "MultiStepLR": Scheduler(
        "`gx.multistep_schedule(lr, milestones, gamma)`",
        {"milestones": "`milestones`", "gamma": "`gamma`"}, uses=("multistep_schedule",),
    ),
    "ExponentialLR": Scheduler(
        "`gx.exponential_decay(lr, 1, gamma)`", {"gamma": "`decay_rate`"},
        uses=("exponential_decay",),
    ),
    "CosineAnnealingLR": Scheduler(
        "`gx.cosine_decay_schedule(lr, T_max, alpha=eta_min / lr)`",
        {"T_max": "`decay_steps`", "eta_min": "`alpha = eta_min / lr`"},
        "Equal up to `T_max`. After it torch's rate climbs back along the cosine while "
        "gradtx's stays at `eta_min`; for restarts use `gx.cosine_warm_restarts_schedule`.",
        uses=("cosine_decay_schedule",),
    ),
    "LinearLR": Scheduler(
        "`gx.linear_schedule(lr * start_factor, lr * end_factor, total_iters)`",
        {"start_factor": "`init_value = lr * start_factor`",
         "end_factor": "`end_value = lr * end_factor`", "total_iters": "`transition_steps`"},
        uses=("linear_schedule",),
    ),
    "OneCycleLR": Scheduler(
        "`gx.one_cycle_schedule(max_lr, total_steps, pct_start, div_factor, final_div_factor, "
        "anneal_strategy, three_phase)`",
        {"max_lr": "`max_value`", "total_steps": "`total_steps`",
         "epochs": "`total_steps = epochs * steps_per_epoch`",
         "steps_per_epoch": "`total_steps = epochs * steps_per_epoch`",
         "pct_start": "`pct_start`", "anneal_strategy": "`anneal_strategy`",
         "cycle_momentum": "`momentum=gx.one_cycle_momentum_schedule(total_steps, "
         "base_momentum, max_momentum, pct_start, anneal_strategy, three_phase)` (or `b1=` for "
         "Adam), as torch's default `True` does; leave it out for `False`.",
         "base_momentum": "`base_momentum` of `gx.one_cycle_momentum_schedule`",
         "max_momentum": "`max_momentum` of `gx.one_cycle_momentum_schedule`",
         "div_factor": "`div_factor`", "final_div_factor": "`final_div_factor`",
         "three_phase": "`three_phase`",
         "optimizer": "Its `lr` is not used: `max_lr` sets the rates, as in torch."},
        uses=("one_cycle_schedule", "one_cycle_momentum_schedule"),
    ),
    "CosineAnnealingWarmRestarts": Scheduler(
        "`gx.cosine_warm_restarts_schedule(lr, T_0, T_mult, eta_min)`",
        {"T_0": "`first_period`", "T_mult": "`period_multiplier`", "eta_min": "`min_value`"},
        uses=("cosine_warm_restarts_schedule",),
    ),
    "LambdaLR": Scheduler(
        "any callable, e.g. `learning_rate=lambda count: lr * lr_lambda(count)`",
        {"lr_lambda": "The factor, as a function of `count` (an int32 array under `jit`: write "
         "it with `jax.numpy`). One function per param group: one optimizer per group in "
         "`gx.multi_transform`."},
    ),
    "PolynomialLR": Scheduler(
        "`gx.polynomial_schedule(lr, 0.0, power, total_iters)`",
        {"total_iters": "`transition_steps`", "power": "`power`"},
        uses=("polynomial_schedule",),
    ),
    "ConstantLR": Scheduler(
        "`gx.join_schedules([gx.constant_schedule(lr * factor), gx.constant_schedule(lr)], "
        "[total_iters])`",
        {"factor": "`lr * factor` for the first `total_iters` steps",
         "total_iters": "the boundary"},
        uses=("join_schedules", "constant_schedule"),
    ),
    "SequentialLR": Scheduler(
        "`gx.join_schedules(schedules, milestones)`",
        {"schedulers": "`schedules` (each restarts its count at its boundary, as in torch)",
         "milestones": "`boundaries`"},
        uses=("join_schedules",),
    ),
    "ChainedScheduler": Scheduler(
        "`gx.multiply_schedules([a(lr), b(1.0), ...])`",
        {"schedulers": "`schedules`: the first one's form on `lr`, the others' on a base of 1. "
         "Exact for schedulers that rescale the current rate (ConstantLR, LinearLR, "
         "ExponentialLR, StepLR, MultiStepLR, PolynomialLR, MultiplicativeLR)."},
        uses=("multiply_schedules",),
    ),
    "MultiplicativeLR": Scheduler(
        "a callable for `lr * f(1) * ... * f(count)`; for a constant factor `f`, "
        "`gx.exponential_decay(lr, 1, f)`",
        {"lr_lambda": "The factor `f`."},
        uses=("exponential_decay",),
    ),
    "CyclicLR": Scheduler(
        "`gx.cyclic_schedule(base_lr, max_lr, step_size_up, step_size_down, mode, gamma, "
        "scale_fn, scale_mode)`",
        {"base_lr": "`init_value`", "max_lr": "`peak_value`", "step_size_up": "`step_size_up`",
         "step_size_down": "`step_size_down`", "mode": "`mode`", "gamma": "`gamma`",
         "scale_fn": "`scale_fn` (written with `jax.numpy`)", "scale_mode": "`scale_mode`",
         "cycle_momentum": "`momentum=gx.cyclic_schedule(max_momentum, base_momentum, ...)` "
         "(or `b1=`) with the same cycle arguments, as torch's default `True` does; leave it "
         "out for `False`.",
         "base_momentum": "the second argument of the momentum's `gx.cyclic_schedule`",
         "max_momentum": "the first argument of the momentum's `gx.cyclic_schedule`",
         "optimizer": "Its `lr` is not used: `base_lr` and `max_lr` set the rates."},
        uses=("cyclic_schedule",),
    ),
    "ReduceLROnPlateau": Scheduler(
        "`gx.reduce_on_plateau(inner, mode, factor, patience, threshold, threshold_mode, "
        "cooldown, min_lr, eps)` around the optimizer; `update(grads, state, params, "
        "value=metric)` is torch's `opt.step(); scheduler.step(metric)`, an update without "
        "`value` steps the optimizer only",
        {"mode": "`mode`", "factor": "`factor`", "patience": "`patience`",
         "threshold": "`threshold`", "threshold_mode": "`threshold_mode`",
         "cooldown": "`cooldown`", "min_lr": "`min_lr` (a float, or a dict of "
         "`gx.multi_transform` labels for per-group values)", "eps": "`eps`",
         "optimizer": "`inner`: every `learning_rate` in its state is lowered, and "
         "`gx.get_hyperparam` shows the lowered rate."},
        uses=("reduce_on_plateau", "get_hyperparam"),
    ),
}


class TorchSchedulerTable(SphinxDirective):
    has_content = False

    def run(self) -> list[nodes.Node]:
        import gradtx

        docname = self.env.docname
        self.env.note_dependency(__file__)
        module = _import("torch.optim.lr_scheduler", docname, "the scheduler table")
        if module is None:
            return []
        base = module.LRScheduler
        classes = {
            name: cls for name, cls in vars(module).items()
            if inspect.isclass(cls) and issubclass(cls, base) and cls is not base
            and not name.startswith("_") and cls.__module__ == module.__name__
        }
        for name in sorted(classes.keys() - SCHEDULERS.keys()):
            _warn(self, "torch.optim.lr_scheduler.%s is missing from SCHEDULERS in "
                  "docs/_ext/gradtx_tables.py", name)
        for name in sorted(SCHEDULERS.keys() - classes.keys()):
            _warn(self, "SCHEDULERS lists %s, which torch.optim.lr_scheduler does not have",
                  name)
        rows = []
        for name in [n for n in SCHEDULERS if n in classes]:
            entry = SCHEDULERS[name]
            for used in entry.uses:
                if used not in gradtx.__all__:
                    _warn(self, "SCHEDULERS[%r] uses gx.%s, which is not public", name, used)
            args, common = [], []
            for arg in inspect.signature(classes[name].__init__).parameters:
                if arg == "self":
                    continue
                if arg in entry.args:
                    args.append(f"`{arg}`: {entry.args[arg]}")
                elif arg in COMMON_SCHEDULER_ARGS:
                    common.append(f"`{arg}`")
                else:
                    _warn(self, "torch.optim.lr_scheduler.%s argument %r is not mapped in "
                          "docs/_ext/gradtx_tables.py", name, arg)
                    args.append(f"`{arg}`: (not yet mapped)")
            if common:
                args.append(", ".join(common) + ": as for every scheduler (above).")
            gradtx_cell = [entry.gradtx] + ([entry.note] if entry.note else [])
            rows.append([f"`{name}`", gradtx_cell, args])
        intro = nodes.bullet_list()
        for arg, text in COMMON_SCHEDULER_ARGS.items():
            intro += nodes.list_item("", _paragraph(f"`{arg}`: {text}", docname))
        return [
            _paragraph("Arguments every scheduler has:", docname),
            intro,
            _table(["torch.optim.lr_scheduler", "gradtx", "arguments"], rows, [18, 40, 42],
                   docname),
        ]


# ---------------------------------------------------------------------------------------------
# Optax defaults

# gradtx name -> Optax name, where they differ.
OPTAX_NAMES = {"scale_by_momentum": "trace", "accumulate_gradients": "MultiSteps"}
# (gradtx function, gradtx argument) -> Optax's name for the same argument.
OPTAX_ARGS = {
    ("adafactor", "b1"): "momentum",
    ("adafactor", "weight_decay"): "weight_decay_rate",
    ("scale_by_factored_rms", "eps"): "epsilon",
    ("scale_by_momentum", "momentum"): "decay",
    ("lookahead", "inner"): "fast_optimizer",
    ("lookahead", "alpha"): "slow_step_size",
    ("accumulate_gradients", "inner"): "opt",
    ("accumulate_gradients", "every_k"): "every_k_schedule",
    ("stateless", "fn"): "f",
    ("inject_hyperparams", "factory"): "inner_factory",
}
# Same name, different things: compared in prose on the page instead.
OPTAX_SKIP = frozenset({"bias_correction"})


def _optax_pairs(group: str) -> list[tuple[str, str]]:
    import gradtx
    import gradtx.optimizers

    optimizers = [n for n in gradtx.optimizers.__all__ if n != "relative_step_size"]
    names = optimizers if group == "optimizers" else [
        n for n in gradtx.__all__ if n not in optimizers and n not in OPTAX_SKIP
        and inspect.isfunction(getattr(gradtx, n))
    ]
    return [(n, OPTAX_NAMES.get(n, n)) for n in names]


def _signature(fn) -> dict[str, inspect.Parameter]:
    target = fn.__init__ if inspect.isclass(fn) else fn
    return {k: p for k, p in inspect.signature(target).parameters.items()
            if k != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


class OptaxDefaultsTable(SphinxDirective):
    has_content = False
    option_spec = {"group": lambda arg: directives.choice(arg, ("optimizers", "others"))}

    def run(self) -> list[nodes.Node]:
        import gradtx

        docname = self.env.docname
        self.env.note_dependency(__file__)
        optax = _import("optax", docname, "the Optax comparison")
        if optax is None:
            return []
        rows, same, absent = [], [], []
        for gx_name, optax_name in _optax_pairs(self.options.get("group", "optimizers")):
            theirs = getattr(optax, optax_name, None)
            if theirs is None:
                absent.append(f"`gx.{gx_name}`")
                continue
            ours_sig, theirs_sig = _signature(getattr(gradtx, gx_name)), _signature(theirs)
            matched, diffs = set(), []
            for arg, parameter in ours_sig.items():
                other = OPTAX_ARGS.get((gx_name, arg), arg)
                if other in theirs_sig:
                    matched.add(other)
                    theirs_default = theirs_sig[other].default
                    label = f"`{arg}`" if other == arg else f"`{arg}` (Optax: `{other}`)"
                    if other != arg or not _same_default(parameter.default, theirs_default):
                        diffs.append([label, f"`{_fmt(parameter.default)}`",
                                      f"`{_fmt(theirs_default)}`"])
                else:
                    diffs.append([f"`{arg}`", f"`{_fmt(parameter.default)}`", "—"])
            for arg in theirs_sig.keys() - matched:
                diffs.append([f"`{arg}`", "—", f"`{_fmt(theirs_sig[arg].default)}`"])
            if not diffs:
                same.append(f"`gx.{gx_name}`")
                continue
            title = f"`gx.{gx_name}`" + ("" if optax_name == gx_name else
                                         f" / `optax.{optax_name}`")
            for i, diff in enumerate(sorted(diffs, key=lambda d: d[0])):
                rows.append([title if i == 0 else "", *diff])
        out: list[nodes.Node] = [
            _table(["function", "argument", "gradtx default", "Optax default"], rows,
                   [28, 30, 21, 21], docname),
            _paragraph(f"Generated from the installed Optax {optax.__version__}. "
                       "\"required\": no default; \"—\": no such argument.", docname),
        ]
        if same:
            out.append(_paragraph("Same arguments and defaults: " + ", ".join(same) + ".",
                                  docname))
        if absent:
            out.append(_paragraph("Not in Optax under the same name: " + ", ".join(absent)
                                  + ".", docname))
        return out


# ---------------------------------------------------------------------------------------------
# Every Optax name, from the mapping in optax_map.py

_GX_IN_CODE = re.compile(r"\bgx\.([A-Za-z_]\w*)")


def _code_with_links(code: str, docname: str) -> nodes.literal:
    """A code span in which every public ``gx.<name>`` links to its API entry (a name not yet
    public stays plain code)."""
    import gradtx

    literal = nodes.literal(code, "")
    pos = 0
    for match in _GX_IN_CODE.finditer(code):
        if match.group(1) not in gradtx.__all__:
            continue
        if match.start() > pos:
            literal += nodes.Text(code[pos:match.start()])
        ref = addnodes.pending_xref(
            "", refdomain="py", reftype="obj", reftarget=f"gradtx.{match.group(1)}",
            refexplicit=True, refdoc=docname,
        )
        ref += nodes.Text(match.group(0))
        literal += ref
        pos = match.end()
    if pos < len(code):
        literal += nodes.Text(code[pos:])
    return literal


def _inline_all_links(text: str, docname: str) -> list[nodes.Node]:
    """Like ``_inline``, but a code span links each ``gx.`` name in it (compositions such as
    ``gx.chain(gx.ema(d), gx.bias_correction(d))``)."""
    return [
        nodes.Text(part) if i % 2 == 0 else _code_with_links(part, docname)
        for i, part in enumerate(text.split("`")) if part
    ]


OPTAX_MAP_SOURCE = "docs/_ext/optax_map.py"


class OptaxMapTable(SphinxDirective):
    """``gradtx-optax-map SECTION``: the entries of one section of ``optax_map.SECTIONS``
    (``optimizers``, ``transforms``, ``schedules``, ``other``, ``contrib``) as a table, or,
    for ``summary``, the counts. Warns (and so fails the build) when the installed Optax has a
    public name without an entry, when an entry names something Optax does not have, or when
    an entry's text cites an Optax name that does not exist."""

    required_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        import optax_map

        docname = self.env.docname
        self.env.note_dependency(__file__)
        self.env.note_dependency(optax_map.__file__)
        section = self.arguments[0]
        if section != "summary" and section not in optax_map.SECTIONS:
            _warn(self, "gradtx-optax-map: unknown section %r (known: summary, %s)", section,
                  ", ".join(optax_map.SECTIONS))
            return []
        optax = _import("optax", docname, "the map of every Optax name")
        if optax is None:
            return []
        names = optax_map.optax_names()
        if section == "summary":
            return self._summary(optax, names, optax_map)
        _, entries = optax_map.SECTIONS[section]
        for name in sorted(entries.keys() - names.keys()):
            _warn(self, "%s maps %s, which Optax %s does not have (or which is another name of "
                  "an entry)", OPTAX_MAP_SOURCE, name, optax.__version__)
        rows = []
        for name in sorted(entries, key=str.lower):
            entry = entries[name]
            also = names.get(name, [])
            optax_cell = [f"`{name}`"] + (
                ["also " + ", ".join(f"`{a}`" for a in also)] if also else [])
            rows.append([optax_cell, entry.gradtx or "—", entry.note])
        return [_table(["Optax", "gradtx", "notes"], rows, [26, 34, 40], docname,
                       inline=_inline_all_links)]

    def _summary(self, optax, names, optax_map) -> list[nodes.Node]:
        docname = self.env.docname
        for name in sorted(names.keys() - optax_map.MAP.keys()):
            _warn(self, "Optax %s has %s, which has no entry in %s", optax.__version__, name,
                  OPTAX_MAP_SOURCE)
        for name, entry in optax_map.MAP.items():
            for ref in sorted(optax_map.optax_references(entry)):
                if not optax_map.resolve_optax(ref):
                    _warn(self, "%s: the entry for %s cites %s, which Optax %s does not have",
                          OPTAX_MAP_SOURCE, name, ref, optax.__version__)
        kinds = [optax_map.kind(e) for n, e in optax_map.MAP.items() if n in names]
        per_module = {
            module: sum(n.rsplit(".", 1)[0] == module for n in names)
            for module in optax_map.NAME_BY_NAME
        }
        aliases = sum(len(a) for a in names.values())
        text = (
            f"Generated from the installed Optax {optax.__version__}: {len(names)} entries ("
            + ", ".join(f"{count} in `{module}`" for module, count in per_module.items())
            + f"), and {aliases} more names shown with the entry of the same object. "
            f"{kinds.count('form')} have a gradtx form; {kinds.count('not yet')} are not in "
            f"gradtx yet; {kinds.count('out of scope')} are out of scope (not gradient "
            f"transformations); {kinds.count('other')} are done another way in gradtx or not "
            f"needed there; {kinds.count('module')} are submodules mapped name by name."
        )
        return [_paragraph(text, docname)]


def _check_references() -> None:
    """The tables are generated from torch and the reference packages: without them, one clear
    error rather than a warning per table."""
    import importlib.util

    from sphinx.errors import ExtensionError

    missing = [name for name in ("torch", "optax", "schedulefree", "prodigyopt",
                                 "pytorch_optimizer", "lion_pytorch", "dadaptation")
               if importlib.util.find_spec(name) is None]
    if missing:
        raise ExtensionError(
            "the docs' tables are generated from torch, Optax and the reference packages; "
            f"missing: {', '.join(missing)}. Build the docs after the test install: "
            'pip install -e ".[test]"')


def setup(app: Sphinx) -> dict:
    _check_references()
    app.add_directive("gradtx-torch-optimizer", TorchOptimizerTable)
    app.add_directive("gradtx-torch-only", TorchOnlyTable)
    app.add_directive("gradtx-torch-schedulers", TorchSchedulerTable)
    app.add_directive("gradtx-torch-classes", TorchClassesTable)
    app.add_directive("gradtx-optax-defaults", OptaxDefaultsTable)
    app.add_directive("gradtx-hyperparams", HyperparamsTable)
    app.add_directive("gradtx-optax-map", OptaxMapTable)
    app.connect("env-check-consistency", check_torch_tables)
    app.connect("env-check-consistency", check_hyperparams_tables)
    app.connect("env-purge-doc", _purge)
    app.connect("env-merge-info", _merge)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}

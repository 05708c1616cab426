"""The torch state_dict bridge: move a training run between torch.optim and gradtx mid-way.

:func:`to_torch_state_dict` writes a gradtx optimizer state in the layout of
``torch.optim.Optimizer.state_dict()``; :func:`from_torch_state_dict` reads one back into a
gradtx state. The registry says, for each optimizer, which torch state key is which gradtx
state entry (``OptimizerInfo.torch_state``) and which torch argument is which gradtx argument
(``torch_names`` and the tuple pairs), so the bridge itself knows no optimizer.

gradtx does not import torch. Arrays are read with NumPy (a CPU tensor, a NumPy array and a
float all work); they are written as tensors of the torch module the caller has already
imported, or with the ``as_tensor`` function given.
"""

from __future__ import annotations

import math
import sys
import types
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradtx import tree as _tree
from gradtx.core import GradientTransformation, OptState, PyTree
from gradtx.hyperparams.inject import HyperparamsState
from gradtx.named_state import tree_get, tree_set
from gradtx.wrappers.masking import MultiTransformState

__all__ = ["from_torch_state_dict", "to_torch_state_dict"]

# Param-group entries of torch's that select an implementation, not a result.
_TORCH_ONLY = {"foreach", "capturable", "differentiable", "fused", "params", "param_names",
               "initial_lr"}


# --------------------------------------------------------------------------------------------
# What a state is: one optimizer, or a multi_transform of several (torch's param groups)


class _Group:
    """One torch param group: a registry optimizer's state over some of the leaves."""

    def __init__(self, label, tx, state, leaves: list[int]):
        from gradtx.optimizers import registry

        self.label, self.tx, self.state, self.leaves = label, tx, state, leaves
        where = "" if label is None else f" (multi_transform group {label!r})"
        if not isinstance(state, HyperparamsState) or not hasattr(type(state), "_injection"):
            raise ValueError(
                f"the torch state_dict bridge reads gradtx optimizers (gx.adam, gx.sgd, ...) "
                f"and multi_transforms of them; got a {type(state).__name__}{where}."
            )
        if _is_lbfgs(state):
            raise ValueError(
                "torch.optim.LBFGS has one param group: pass gx.lbfgs itself, not a "
                "multi_transform of it."
            )
        factory = type(state)._injection.factory
        matches = [
            info for info in registry.OPTIMIZERS
            if getattr(info.factory, "_injection", None) is not None
            and info.factory._injection.factory is factory and info.torch_class is not None
        ]
        if not matches:
            raise ValueError(
                f"{getattr(factory, '__name__', factory)}{where} has no torch equivalent, so "
                "it has no torch state_dict."
            )
        self.info = matches[0]
        if not self.info.torch_state:
            raise ValueError(
                f"the torch state_dict bridge does not carry {self.info.name}'s state yet{where}."
            )
        self.static = dict(type(state)._static)
        self.where = where

    @property
    def torch_name(self) -> str:
        return f"{self.info.torch_module}.{self.info.torch_class_name}"


def _leaf_labels(tx: GradientTransformation, params: PyTree) -> tuple[Mapping, list] | None:
    groups = getattr(tx.update, "_gradtx_groups", None)
    if groups is None:
        return None
    transforms, labels_of = groups
    labels = [x for x, leaf in zip(labels_of(params, "params"), _all_leaves(params), strict=True)
              if leaf is not None]
    return transforms, labels


def _all_leaves(tree: PyTree) -> list:
    return jax.tree_util.tree_leaves(tree, is_leaf=_tree.is_none)


def _groups(tx: GradientTransformation, params: PyTree, state: OptState) -> list[_Group]:
    n = len(jax.tree_util.tree_leaves(params))
    if isinstance(state, MultiTransformState):
        found = _leaf_labels(tx, params)
        if found is None:
            raise ValueError(
                "the state is a multi_transform's, but tx is not that multi_transform: pass "
                "the transformation that made the state."
            )
        transforms, labels = found
        groups = []
        for label, inner in transforms.items():
            leaves = [i for i, x in enumerate(labels) if x == label]
            if leaves:  # torch has no empty param group
                groups.append(_Group(label, inner, state.inner_states[label], leaves))
        classes = {g.info.torch_class for g in groups}
        if len(classes) > 1:
            raise ValueError(
                "a torch optimizer runs one algorithm for all its param groups; this "
                f"multi_transform's groups are {sorted(classes)}."
            )
        return groups
    return [_Group(None, tx, state, list(range(n)))]


# --------------------------------------------------------------------------------------------
# Hyperparameters <-> param groups


def _torch_names(info) -> dict[str, str]:
    """gradtx argument -> torch param-group key, for arguments torch has; a pair that torch
    takes as one tuple maps both members to the tuple's key."""
    names = {}
    for name in info.declarations:
        if name.endswith("_dtype") or name in info.gradtx_only:
            continue
        names[name] = info.torch_names.get(name, name)
    for torch_name, pair in info.tuples.items():
        for member in pair:
            if member in names:
                names[member] = torch_name
    return names


def _python(value) -> Any:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    array = np.asarray(value)
    if array.shape == () and array.dtype.kind in "iu":
        return int(array)
    if array.shape == () and array.dtype.kind == "f":
        return float(array)
    return value


def _schedules(group: _Group) -> Mapping[str, Callable]:
    return getattr(group.tx.update, "_gradtx_schedules", {})


def _current_values(group: _Group, count=None) -> dict[str, Any]:
    """Every argument's value for the next step: live values, schedules at the count (the
    state's by default), fixed numbers and static choices."""
    state = group.state
    count = state.count if count is None else jnp.asarray(count, state.count.dtype)
    values = {k: _python(v) for k, v in state.hyperparams.items()}
    for name, schedule in _schedules(group).items():
        if bool(state.scheduled[name]):
            values[name] = _python(schedule(count))
    values.update({k: _python(v) for k, v in state.fixed.items()})
    values.update(group.static)
    return values


def _param_group(group: _Group) -> dict[str, Any]:
    values = _current_values(group)
    names = _torch_names(group.info)
    tuples = group.info.tuples
    out: dict[str, Any] = {}
    for name, torch_name in names.items():
        if name in tuples.get(torch_name, ()):
            out[torch_name] = tuple(values[member] for member in tuples[torch_name])
        else:
            out[torch_name] = values[name]
    out.update(group.info.torch_group)
    schedules = _schedules(group)
    lr_name = next(k for k, v in names.items() if v == "lr")
    if lr_name in schedules:
        out["initial_lr"] = _python(schedules[lr_name](jnp.zeros((), jnp.int32)))
    return out


def _check_keys(saved: Mapping[str, Any], required: set, optional: set, torch_name: str,
                where: str) -> None:
    """Raises unless a torch param group has every ``required`` key and nothing beyond
    ``optional`` and torch's implementation switches: naming what it has and lacks."""
    unknown = sorted(set(saved) - required - optional - _TORCH_ONLY)
    missing = sorted(required - set(saved))
    if unknown or missing:
        raise ValueError(
            f"the state_dict is not one of {torch_name}: {where} "
            + (f"has {unknown}, which it has not" if unknown else "")
            + (" and " if unknown and missing else "")
            + (f"lacks {missing}" if missing else "")
            + "."
        )


def _check_group_keys(group: _Group, saved: Mapping[str, Any], index: int) -> None:
    """Raises unless the param group has exactly this optimizer's torch keys."""
    names = _torch_names(group.info)
    where = f"param_groups[{index}]"
    _check_keys(saved, set(names.values()), set(group.info.torch_group),
                f"{group.torch_name}{group.where}", where)
    for key, expected in group.info.torch_group.items():
        if key in saved and saved[key] != expected:
            raise ValueError(
                f"{where}[{key!r}] is {saved[key]!r}; {group.torch_name} has {expected!r}: "
                "the state_dict is another optimizer's."
            )


def _read_param_group(
    group: _Group, saved: Mapping[str, Any], index: int, count: int
) -> dict[str, Any]:
    """The live values a torch param group sets; raises if it disagrees with what the gradtx
    optimizer cannot change (its static choices and fixed numbers) or is another optimizer's."""
    names = _torch_names(group.info)
    tuples = group.info.tuples
    where = f"param_groups[{index}]"
    values = {}
    for name, torch_name in names.items():
        value = saved[torch_name]
        if name in tuples.get(torch_name, ()):
            value = value[tuples[torch_name].index(name)]
        values[name] = value
    current = _current_values(group, count)
    live = set(group.state.hyperparams)
    for name, value in values.items():
        if name in live and name not in _schedules(group):
            continue
        if not _same_value(value, current[name]):
            what = ("follows a schedule whose value at step "
                    f"{count} is {current[name]!r}") if name in live else (
                f"was built with {name}={current[name]!r}, which cannot change")
            raise ValueError(
                f"{where}[{names[name]!r}] gives {name}={value!r}, but this optimizer"
                f"{group.where} {what}. Build the gradtx optimizer with the torch "
                "optimizer's arguments."
            )
    return {name: values[name] for name in live if name not in _schedules(group)}


def _same_value(a, b) -> bool:
    if isinstance(a, (bool, np.bool_)) or isinstance(b, (bool, np.bool_)) or a is None or b is None:
        return a == b if not (a is None or b is None) else a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=0.0) or a == b
    return a == b


# --------------------------------------------------------------------------------------------
# Per-parameter state


def _entry(state, name):
    try:
        return tree_get(state, name)
    except KeyError:
        return None


def _per_leaf(entry, params_with_none) -> list | None:
    """The entry's value for each non-None leaf of params, or None when it is one scalar
    (a tree of another structure than the parameters')."""
    def structure(tree):
        return jax.tree_util.tree_structure(tree, is_leaf=_tree.is_none)

    if structure(entry) != structure(params_with_none):
        return None
    leaves = _all_leaves(entry)
    return [x for x, p in zip(leaves, _all_leaves(params_with_none), strict=True)
            if p is not None]


def _to_torch_value(value, param, as_tensor):
    array = np.asarray(value)
    if np.iscomplexobj(param) and array.shape == (2, *np.shape(param)):
        array = array[0] + 1j * array[1]
    return as_tensor(array)


def _from_torch_value(value, param, key, index, path, shape=None):
    try:
        # A copy: torch updates its state in place, and JAX may share a NumPy array's memory.
        array = np.asarray(value).copy()
    except Exception as error:  # a tensor NumPy cannot read (on a GPU, requiring grad)
        raise ValueError(
            f"state[{index}][{key!r}] ({path}) cannot be read by NumPy ({error}); move it to "
            "the CPU and detach it first."
        ) from None
    expected = np.shape(param) if shape is None else tuple(shape)
    if array.shape != expected:
        needs = "" if expected == np.shape(param) else f", whose {key!r} has shape {expected}"
        raise ValueError(
            f"state[{index}][{key!r}] has shape {array.shape}, but parameter {index} ({path}) "
            f"has shape {np.shape(param)}{needs}: the state_dict is for other parameters."
        )
    if np.iscomplexobj(param):
        return np.stack([array.real, array.imag])
    return array


def _default_as_tensor() -> Callable:
    torch = sys.modules.get("torch")
    if torch is None:
        return np.array
    return lambda x: torch.tensor(np.array(x))


def to_torch_state_dict(
    tx: GradientTransformation,
    params: PyTree,
    state: OptState,
    *,
    as_tensor: Callable[[np.ndarray], Any] | None = None,
) -> dict[str, Any]:
    """The state of a gradtx optimizer as a ``torch.optim`` ``state_dict()``.

    ``torch_optimizer.load_state_dict(gx.to_torch_state_dict(tx, params, state))`` continues
    the run in torch exactly where gradtx left it.

    Args:
        tx: the optimizer (a registry optimizer with a torch equivalent, or a
            ``gx.multi_transform`` of several of one kind: its groups become torch's param
            groups, in the order of its ``transforms`` dict, groups without leaves left out).
        params: the parameters, for the order of the leaves: torch's parameter ``i`` is
            ``jax.tree_util.tree_leaves(params)[i]``.
        state: the optimizer's state.
        as_tensor: turns a NumPy array into a tensor. By default ``torch.tensor`` when torch is
            already imported (gradtx never imports it), else the arrays stay NumPy arrays.

    Returns:
        ``{"state": {i: {torch key: tensor}}, "param_groups": [{torch argument: value,
        "params": [i, ...]}]}``: torch's names, torch's per-parameter layout (scalars gradtx
        keeps once, such as NAdam's ``mu_product``, are repeated per parameter; ``step`` is a
        float tensor, as torch keeps it). A learning rate that follows a schedule is written
        at its value for the next step, with ``initial_lr`` at step 0, as a torch scheduler
        leaves them; ``"lr_scheduler"`` then holds the scheduler's position
        (``scheduler.load_state_dict(sd["lr_scheduler"])``; torch's optimizer ignores it).

    Raises:
        ValueError: the optimizer has no torch equivalent, or a multi_transform mixes several.
    """
    as_tensor = as_tensor or _default_as_tensor()
    if _is_lbfgs(state):
        return _lbfgs_to_torch(tx, params, state, as_tensor)
    param_leaves = jax.tree_util.tree_leaves(params)
    groups = _groups(tx, params, state)
    out_state: dict[int, dict[str, Any]] = {}
    param_groups = []
    position = None
    for group in groups:
        count = int(group.state.count)
        params_here = _group_params(params, group.leaves)
        entries = {}
        for torch_key, name in group.info.torch_state.items():
            entry = _entry(group.state, name)
            if entry is None:
                continue
            entries[torch_key] = entry
        for k, leaf_index in enumerate(group.leaves):
            if count == 0:
                break  # torch creates its per-parameter state at the first step
            param = param_leaves[leaf_index]
            per_param = {}
            for torch_key, entry in entries.items():
                if torch_key == "step":
                    per_param["step"] = as_tensor(np.asarray(float(count)))
                    continue
                if not group.info.torch_state_kept(torch_key, np.shape(param)):
                    continue
                values = _per_leaf(entry, params_here)
                value = entry if values is None else values[k]
                per_param[torch_key] = _to_torch_value(value, param, as_tensor)
            if per_param:
                out_state[leaf_index] = per_param
        param_group = _param_group(group)
        param_group["params"] = list(group.leaves)
        param_groups.append(param_group)
        if "initial_lr" in param_group:
            position = count
    result: dict[str, Any] = {"state": out_state, "param_groups": param_groups}
    if position is not None:
        result["lr_scheduler"] = {
            "last_epoch": position,
            "_step_count": position + 1,
            "_last_lr": [g["lr"] for g in param_groups],
        }
    return result


def _group_params(params: PyTree, leaves: list[int]) -> PyTree:
    """``params`` with the leaves outside the group as None (how a group's state holds them)."""
    flat, treedef = jax.tree_util.tree_flatten(params, is_leaf=_tree.is_none)
    chosen, i = [], 0
    for leaf in flat:
        if leaf is None:
            chosen.append(None)
            continue
        chosen.append(leaf if i in leaves else None)
        i += 1
    return treedef.unflatten(chosen)


def from_torch_state_dict(
    tx: GradientTransformation,
    params: PyTree,
    state_dict: Mapping[str, Any],
    *,
    step: int | None = None,
) -> OptState:
    """The gradtx state equal to a ``torch.optim`` optimizer's ``state_dict()``.

    Continuing with ``tx.update`` from this state gives the steps the torch optimizer would
    have taken.

    Args:
        tx: the gradtx optimizer equal to the torch one (same arguments; a
            ``gx.multi_transform`` for several param groups, its ``transforms`` in the order of
            torch's groups).
        params: the parameters: torch's parameter ``i`` (numbered group after group, as torch
            does) is the ``i``-th leaf of ``jax.tree_util.tree_leaves(params)`` among those of
            its group.
        state_dict: ``torch_optimizer.state_dict()``, or anything of that layout whose arrays
            NumPy can read.
        step: the number of steps taken, for optimizers whose torch state has no step count
            (SGD): needed when a schedule drives it. Where torch's state has ``step``, a
            different ``step`` raises.

    Returns:
        the state, ``tx.init(params)`` with every entry replaced by torch's: the step count,
        the per-parameter state and the current values of the hyperparameters torch lets
        change (a torch scheduler's learning rate).

    Raises:
        ValueError: naming what differs, when the state_dict is another optimizer's (other
            param-group keys or state keys), has another number of parameters or groups,
            another shape for a parameter's state, arguments the gradtx optimizer was not built
            with, or a learning rate its schedule does not give at this step.
    """
    template = tx.init(params)
    if _is_lbfgs(template):
        return _lbfgs_from_torch(tx, params, template, state_dict, step)
    param_leaves = jax.tree_util.tree_leaves(params)
    paths = [_tree.path_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    groups = _groups(tx, params, template)
    saved_groups = list(state_dict["param_groups"])
    if len(saved_groups) != len(groups):
        raise ValueError(
            f"the state_dict has {len(saved_groups)} param group(s); this optimizer has "
            f"{len(groups)} (a multi_transform has one per label with parameters)."
        )
    saved_state = state_dict["state"]
    new_groups = {}
    for g, (group, saved) in enumerate(zip(groups, saved_groups, strict=True)):
        ids = list(saved["params"])
        if len(ids) != len(group.leaves):
            raise ValueError(
                f"param_groups[{g}] has {len(ids)} parameters; {group.torch_name}{group.where} "
                f"here has {len(group.leaves)}."
            )
        _check_group_keys(group, saved, g)
        per_param = _saved_entries(group, ids, saved_state)
        count = _count(group, per_param, step)
        live = _read_param_group(group, saved, g, count)
        new_groups[group.label] = _read_group_state(
            group, params, param_leaves, paths, ids, per_param, count, live
        )
    if isinstance(template, MultiTransformState):
        inner = dict(template.inner_states)
        inner.update(new_groups)
        return MultiTransformState(inner_states=inner)
    return new_groups[None]


def _saved_entries(group, ids, saved_state) -> list[dict]:
    """torch's state of each parameter of the group, checked to be this optimizer's kind."""
    known = set(group.info.torch_state)
    per_param = []
    for torch_id in ids:
        entry = dict(saved_state.get(torch_id, {}))
        unknown = sorted(set(entry) - known)
        if unknown:
            raise ValueError(
                f"state[{torch_id}] has {unknown}, which {group.torch_name} does not keep: "
                "the state_dict is another optimizer's."
            )
        per_param.append(entry)
    started = [bool(e) for e in per_param]
    if any(started) and not all(started):
        raise ValueError(
            "some parameters have torch state and others none; gradtx steps every parameter "
            "together, so it cannot continue such a run."
        )
    return per_param


def _count(group, per_param, step) -> int:
    """The number of steps taken: torch's ``step``, or ``step=`` where torch keeps none."""
    if not any(per_param):
        return step or 0
    steps = {float(np.asarray(e["step"])) for e in per_param if "step" in e}
    if len(steps) > 1:
        raise ValueError(
            f"the parameters' torch step counts differ ({sorted(steps)}); gradtx keeps one."
        )
    if steps:
        count = int(steps.pop())
        if step is not None and step != count:
            raise ValueError(f"step={step}, but the state_dict's step is {count}.")
        return count
    if step is not None:
        return step
    if _schedules(group):
        raise ValueError(
            f"{group.torch_name} keeps no step count and this optimizer follows a schedule: "
            "pass step= (the number of steps taken)."
        )
    return 1  # any count past the first step: the state exists


def _read_group_state(group, params, param_leaves, paths, ids, per_param, count, live):
    state = group.state
    params_here = _group_params(params, group.leaves)
    started = any(per_param)
    replacements: dict[str, Any] = {}
    for torch_key, name in group.info.torch_state.items():
        if torch_key == "step":
            continue
        entry = _entry(state, name)
        has = [torch_key in e for e in per_param]
        if entry is None:
            if any(has):
                raise ValueError(
                    f"the state_dict has {torch_key!r}, which this optimizer{group.where} "
                    f"does not keep: was the torch optimizer built with other arguments?"
                )
            continue
        if not started:
            continue
        kept = [group.info.torch_state_kept(torch_key, np.shape(param_leaves[leaf]))
                for leaf in group.leaves]
        for i, h, k in zip(ids, has, kept, strict=True):
            if k and not h:
                raise ValueError(
                    f"state[{i}] lacks {torch_key!r}, which this optimizer{group.where} "
                    "keeps: was the torch optimizer built with other arguments?"
                )
            if h and not k:
                raise ValueError(
                    f"state[{i}] has {torch_key!r}, which {group.torch_name} does not keep "
                    "for a parameter of its shape: the state_dict is for other parameters."
                )
        leaves = _per_leaf(entry, params_here)
        if leaves is None:  # one scalar in gradtx, one copy per parameter in torch
            values = {float(np.asarray(e[torch_key])) for e in per_param}
            if len(values) > 1:
                raise ValueError(
                    f"the parameters' {torch_key!r} differ ({sorted(values)}); gradtx keeps "
                    "one for all."
                )
            replacements[name] = jnp.asarray(values.pop(), dtype=entry.dtype)
            continue
        flat, treedef = jax.tree_util.tree_flatten(entry, is_leaf=_tree.is_none)
        templates = [x for x in flat if x is not None]  # this group's leaves, in order
        arrays = iter(
            _from_torch_value(
                e[torch_key], param_leaves[leaf], torch_key, i, paths[leaf],
                None if np.iscomplexobj(param_leaves[leaf]) else np.shape(t),
            ) if k else t
            for e, i, leaf, k, t in zip(per_param, ids, group.leaves, kept, templates,
                                        strict=True)
        )
        new = [None if x is None else jnp.asarray(next(arrays), dtype=x.dtype) for x in flat]
        replacements[name] = treedef.unflatten(new)
    hyperparams = dict(state.hyperparams)
    for name, value in live.items():
        hyperparams[name] = jnp.asarray(value, dtype=hyperparams[name].dtype)
    if count > 0:  # a scheduled value reads as that of the last step taken, as after updates
        last = jnp.asarray(count - 1, state.count.dtype)
        for name, schedule in _schedules(group).items():
            hyperparams[name] = jnp.asarray(schedule(last), dtype=hyperparams[name].dtype)
    state = state._replace(
        count=jnp.asarray(count, dtype=state.count.dtype), hyperparams=hyperparams
    )
    return tree_set(state, replacements) if replacements else state


# --------------------------------------------------------------------------------------------
# LBFGS: one state for all parameters, kept by torch under the first parameter


_LBFGS_ARGS = {"learning_rate": "lr", "max_iter": "max_iter", "max_eval": "max_eval",
               "tolerance_grad": "tolerance_grad", "tolerance_change": "tolerance_change",
               "history_size": "history_size", "line_search_fn": "line_search_fn"}


def _is_lbfgs(state) -> bool:
    from gradtx.optimizers.lbfgs import lbfgs

    injection = getattr(type(state), "_injection", None)
    return injection is not None and injection.factory is lbfgs._injection.factory


def _lbfgs_values(tx, state, count=None) -> dict[str, Any]:
    # What _current_values reads of a group.
    group = types.SimpleNamespace(state=state, static=dict(type(state)._static), tx=tx)
    values = _current_values(group, count)
    if values["max_eval"] is None:  # torch stores the value it derives
        values["max_eval"] = values["max_iter"] * 5 // 4
    return values


def _lbfgs_to_torch(tx, params, state, as_tensor) -> dict[str, Any]:
    from gradtx.optimizers.lbfgs import _find_run_state, history_as_lists

    values = _lbfgs_values(tx, state)
    group = {torch: values[name] for name, torch in _LBFGS_ARGS.items()}
    group["params"] = list(range(len(jax.tree_util.tree_leaves(params))))
    out: dict[int, dict[str, Any]] = {}
    run = _find_run_state(state)
    if int(state.count) > 0:
        entry: dict[str, Any] = {"func_evals": int(run.func_evals), "n_iter": int(run.n_iter)}
        if int(run.n_iter) > 0:
            dirs, stps, ro = history_as_lists(state)
            entry.update(
                d=as_tensor(np.asarray(run.d)),
                t=float(run.t),
                old_dirs=[as_tensor(row) for row in dirs],
                old_stps=[as_tensor(row) for row in stps],
                ro=[as_tensor(np.asarray(x)) for x in ro],
                H_diag=as_tensor(np.asarray(run.h_diag)),
                prev_flat_grad=as_tensor(np.asarray(run.prev_flat_grad)),
                prev_loss=float(run.prev_loss),
            )
        out[0] = entry
    return {"state": out, "param_groups": [group]}


def _lbfgs_from_torch(tx, params, template, state_dict, step) -> OptState:
    from gradtx.optimizers.lbfgs import _find_run_state, state_with_history

    groups = list(state_dict["param_groups"])
    if len(groups) != 1:
        raise ValueError(f"torch.optim.LBFGS has one param group; the state_dict has "
                         f"{len(groups)}.")
    saved = groups[0]
    _check_keys(saved, set(_LBFGS_ARGS.values()), set(), "torch.optim.LBFGS", "param_groups[0]")
    n = len(jax.tree_util.tree_leaves(params))
    ids = list(saved["params"])
    if len(ids) != n:
        raise ValueError(f"param_groups[0] has {len(ids)} parameters; lbfgs here has {n}.")
    entry = dict(state_dict["state"].get(ids[0], {})) if ids else {}
    others = [i for i in ids[1:] if state_dict["state"].get(i)]
    if others:
        raise ValueError(f"state[{others[0]}] is not empty: torch.optim.LBFGS keeps its state "
                         "under its first parameter only.")
    count = (step if step is not None else 1) if entry else (step or 0)
    values = _lbfgs_values(tx, template, count)
    live = set(template.hyperparams) - set(getattr(tx.update, "_gradtx_schedules", {}))
    hyperparams = dict(template.hyperparams)
    for name, torch_name in _LBFGS_ARGS.items():
        value = saved[torch_name]
        if name in live:
            hyperparams[name] = jnp.asarray(value, dtype=hyperparams[name].dtype)
        elif not _same_value(value, values[name]):
            raise ValueError(
                f"param_groups[0][{torch_name!r}] gives {name}={value!r}, but this lbfgs has "
                f"{name}={values[name]!r}. Build the gradtx optimizer with the torch "
                "optimizer's arguments."
            )
    run = _find_run_state(template)
    new = run
    if entry:
        new = new._replace(func_evals=jnp.asarray(int(entry["func_evals"]), jnp.int32),
                           n_iter=jnp.asarray(int(entry["n_iter"]), jnp.int32))
    if "d" in entry:
        size = run.d.shape[0]
        flat = {}
        for key in ("d", "prev_flat_grad"):
            array = np.asarray(entry[key]).copy()
            if array.shape != (size,):
                raise ValueError(
                    f"state[{ids[0]}][{key!r}] has shape {array.shape}, but these parameters "
                    f"flatten to ({size},): the state_dict is for other parameters."
                )
            flat[key] = jnp.asarray(array, run.d.dtype)
        new = new._replace(
            d=flat["d"], prev_flat_grad=flat["prev_flat_grad"],
            t=jnp.asarray(float(np.asarray(entry["t"])), run.t.dtype),
            h_diag=jnp.asarray(float(np.asarray(entry["H_diag"])), run.h_diag.dtype),
            prev_loss=jnp.asarray(float(np.asarray(entry["prev_loss"])), run.prev_loss.dtype),
        )
    state = jax.tree_util.tree_map(lambda x: new if x is run else x, template,
                                   is_leaf=lambda x: x is run)
    if "d" in entry:
        def rows(key):
            items = [np.asarray(x).copy() for x in entry[key]]
            return np.stack(items) if items else np.zeros((0, run.d.shape[0]))

        for key in ("old_dirs", "old_stps"):
            if len(entry[key]) and rows(key).shape[1:] != run.d.shape:
                raise ValueError(f"state[{ids[0]}][{key!r}] holds vectors of another size "
                                 "than these parameters flatten to.")
        state = state_with_history(state, rows("old_dirs"), rows("old_stps"),
                                   np.asarray([float(np.asarray(x)) for x in entry["ro"]]))
    return state._replace(count=jnp.asarray(count, state.count.dtype), hyperparams=hyperparams)

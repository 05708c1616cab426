"""Which optimizer, with which hyperparameters, each ``--optimizers`` name means on each task.

Two sources of names:

* :data:`PRESETS`, the optimizers the comparison's seed articles pit against each other (SGD,
  momentum, Nesterov, Adagrad, RMSprop, Adadelta, Adam, AdamW, NAdam). A preset fixes the
  non-learning-rate hyperparameters and gives a learning rate per task. ``sgd`` here is plain
  SGD; with momentum it is ``momentum``.
* the registry names in :data:`REGISTRY_PRESETS`, which mean a recipe rather than the bare
  registry optimizer: ``muon`` is :func:`gradtx.muon_with_adamw` (Muon on the hidden matrices,
  AdamW, as the ``adamw`` preset, on everything else), since :func:`gradtx.muon` alone refuses
  anything but matrices, and every task has other parameters.
* every other name in :data:`gradtx.optimizers.registry.OPTIMIZERS`, built with the registry's
  ``fixed`` arguments (L-BFGS's ``max_iter=1``: one gradient per step), its ``example``
  hyperparameters and the learning rate from :data:`REGISTRY_LEARNING_RATES`. A registry entry
  with no row there, or a row without the task, still works, with its example learning rate.

A group name in :data:`GROUPS` stands for several names (``--optimizers frontier``); see
:func:`expand`. The Schedule-Free optimizers are evaluated (final loss, test accuracy) at
:func:`gradtx.schedule_free_eval_params`, as their authors evaluate them (:data:`EVAL_PARAMS`).

The learning rates come from a sweep over {1, 3} x 10^k up to 1, with each task's default
steps and seed 0: the value with the lowest mean of log(loss) over the run (rewarding both speed
and a stable end), clipped below at target / 1000 so that digits of precision far below the
target do not count. On the digits tasks, whose seeds change the weights and the batches, the
value one notch lower is taken where the next value up diverged or did more than three times
worse (a mean log-loss 0.5 higher): the winner there is on the edge of stability, and another
seed can push it over.

char-transformer (added later, with the frontier optimizers) was swept the same way, with its
default 200 steps and seed 0, over three to five values per optimizer around the usual ones
({1, 3} x 10^k, extended by one notch where the best was at an end of the range). The rule is
the digits tasks' (its seed also changes the weights and the batches). The scores and the
held-out losses behind each choice are in the comment "char-transformer sweep" below.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gradtx.core import GradientTransformation
from gradtx.optimizers import registry
from gradtx.optimizers.adagrad import adagrad
from gradtx.optimizers.adam import adam, adamw, nadam
from gradtx.optimizers.muon import is_hidden_matrix, muon_with_adamw
from gradtx.optimizers.rmsprop import adadelta, rmsprop
from gradtx.optimizers.schedule_free import schedule_free_eval_params
from gradtx.optimizers.sgd import sgd

TASK_ORDER = ("cnn-digits", "mlp-digits", "rosenbrock", "quadratic", "char-transformer")


def _per_task(
    cnn: float, mlp: float, rosenbrock: float, quadratic: float, char: float
) -> dict[str, float]:
    return dict(zip(TASK_ORDER, (cnn, mlp, rosenbrock, quadratic, char), strict=True))


@dataclass(frozen=True)
class Preset:
    """A named optimizer setting:
    ``factory(learning_rate=learning_rates[task], **per_task.get(task, {}), **fixed)``.

    ``per_task`` holds other keyword arguments that change with the task (a second learning
    rate, say); empty for most presets.
    """

    factory: Callable[..., GradientTransformation]
    fixed: Mapping[str, Any]
    learning_rates: Mapping[str, float]
    per_task: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


# Learning rates, per task: cnn-digits, mlp-digits, rosenbrock, quadratic, char-transformer.
PRESETS: dict[str, Preset] = {
    "sgd": Preset(sgd, {}, _per_task(0.1, 0.3, 1e-3, 1e-2, 0.3)),
    "momentum": Preset(sgd, {"momentum": 0.9}, _per_task(0.03, 0.1, 1e-3, 3e-3, 0.1)),
    "nesterov": Preset(
        sgd, {"momentum": 0.9, "nesterov": True}, _per_task(0.03, 0.1, 1e-3, 1e-2, 0.03)
    ),
    "adagrad": Preset(adagrad, {}, _per_task(0.03, 0.1, 1.0, 1.0, 0.03)),
    "rmsprop": Preset(rmsprop, {}, _per_task(1e-3, 1e-2, 1e-2, 0.03, 3e-3)),
    "adadelta": Preset(adadelta, {}, _per_task(1.0, 1.0, 1.0, 1.0, 1.0)),
    "adam": Preset(adam, {}, _per_task(3e-3, 1e-2, 1.0, 0.3, 3e-3)),
    "adamw": Preset(adamw, {"weight_decay": 1e-2}, _per_task(3e-3, 1e-2, 0.1, 1.0, 3e-3)),
    "nadam": Preset(nadam, {}, _per_task(1e-2, 1e-2, 0.03, 0.1, 1e-2)),
}

# The seed articles' line-up: the default of --optimizers.
DEFAULT_OPTIMIZERS: tuple[str, ...] = tuple(PRESETS)


def _is_hidden_layer_matrix(path: Any, leaf: Any) -> bool:
    """:func:`gradtx.is_hidden_matrix`, and not the models' output layer: their key ``"out"``
    is a head, which the recipe trains with AdamW, but contains none of ``NON_MUON_NAMES``
    (``"output"`` is not in ``"out"``)."""
    names = [getattr(key, "key", None) for key in path]
    return is_hidden_matrix(path, leaf) and "out" not in names


def muon_recipe(**hyperparameters: Any) -> GradientTransformation:
    """``muon_with_adamw(**hyperparameters)`` with :func:`_is_hidden_layer_matrix` choosing
    Muon's leaves: on the digits MLP, its hidden layer's weight matrix; on char-transformer,
    the blocks' eight matrices (attention's qkv and projection, the MLP's two); every other
    leaf of every task (biases, norm scales, embeddings, 4-D convolution kernels, the output
    layer, the 1-D Rosenbrock and quadratic points) goes to AdamW."""
    return muon_with_adamw(muon_leaves=_is_hidden_layer_matrix, **hyperparameters)


_ADAMW = PRESETS["adamw"]

# Registry names that mean a recipe here; resolved like PRESETS, listed where the registry
# lists them (not in the default line-up).
REGISTRY_PRESETS: dict[str, Preset] = {
    # Muon's learning rate is swept as above with AdamW's part fixed at the adamw preset's, so
    # that what Muon does not take trains as the adamw line does. Only mlp-digits has a hidden
    # matrix (its 64x128 layer): there 0.03 won and 0.1 had a mean log-loss 1.1 higher, so
    # 0.01. On cnn-digits (4-D kernels, the output layer, biases), rosenbrock and quadratic (one
    # 1-D point) no leaf goes to Muon: "muon" trains exactly as "adamw" there, and its Muon
    # learning rate, the registry example's 0.02, is unused. On char-transformer Muon takes the
    # blocks' matrices (most of the weights): see CHAR_SWEEP. Muon's other settings are torch's
    # defaults.
    "muon": Preset(
        muon_recipe,
        {"adamw_weight_decay": _ADAMW.fixed["weight_decay"]},
        _per_task(0.02, 1e-2, 0.02, 0.02, 0.03),
        {task: {"adamw_learning_rate": lr} for task, lr in _ADAMW.learning_rates.items()},
    ),
}

# Learning rates for the registry's other optimizers, per task as above. The rows of the
# optimizers added with char-transformer (the frontier group's) have that task only: on the
# others they use the registry's example learning rate.
REGISTRY_LEARNING_RATES: dict[str, dict[str, float]] = {
    "adamax": _per_task(1e-2, 0.03, 1.0, 1.0, 1e-2),
    "radam": _per_task(1e-2, 0.03, 1e-2, 0.03, 0.1),
    "adabelief": _per_task(3e-3, 1e-2, 1.0, 0.3, 3e-3),
    "yogi": _per_task(3e-3, 1e-2, 0.1, 0.1, 3e-3),
    "lion": _per_task(1e-3, 3e-3, 3e-3, 0.03, 3e-3),
    "sign_sgd": _per_task(1e-3, 3e-3, 3e-3, 0.03, 3e-3),
    "lamb": _per_task(3e-3, 3e-3, 0.1, 0.3, 1e-2),
    "lars": _per_task(1e-2, 0.03, 0.1, 0.3, 0.1),
    "adafactor": _per_task(1e-2, 1e-2, 1e-2, 0.03, 1e-2),
    "lookahead_sgd": _per_task(0.1, 0.3, 1e-3, 1e-2, 0.1),
    "param_average_adam": _per_task(3e-3, 1e-2, 1.0, 0.3, 3e-3),
    "adopt": {"char-transformer": 1e-2},
    "ademamix": {"char-transformer": 3e-3},
    "mars": {"char-transformer": 0.03},
    "soap": {"char-transformer": 3e-2},
    "schedule_free_adamw": {"char-transformer": 1e-2},
    "prodigy": {"char-transformer": 0.3},
    "dadapt_adamw": {"char-transformer": 0.1},
}

# char-transformer sweep: seed 0, 200 steps; per learning rate, the mean log training loss
# over the run (the criterion) / the held-out loss at the end (nats/char); * the choice.
# Run with each optimizer built as resolve() builds it, the learning rate swept (muon: Muon's,
# AdamW's part at the adamw preset's 3e-3), from compare's start and batches, the 200 steps as
# one jitted lax.scan vmapped over the learning rates (the same arithmetic as compare's loop up
# to float rounding). "9e-3" is an extension step that should have been 1e-2.
#   adamw         1e-3 1.113/2.468  *3e-3 0.995/2.355  1e-2 1.020/2.481  3e-2 1.036/2.545
#   muon          3e-3 0.957/2.232  1e-2 0.947/2.177  *3e-2 0.937/2.181  0.1 0.939/2.222
#   lion          3e-4 1.286/3.035  1e-3 1.072/2.405  *3e-3 0.965/2.296  1e-2 0.969/2.395
#   adopt         1e-3 1.101/2.473  3e-3 1.014/2.325  *1e-2 0.988/2.390  3e-2 1.028/2.510
#   ademamix      1e-3 1.112/2.465  *3e-3 0.995/2.365  1e-2 1.021/2.460  3e-2 1.040/2.580
#   mars          1e-3 1.141/2.581  3e-3 1.037/2.429  1e-2 1.033/2.475  *3e-2 0.994/2.441
#                 0.1 1.076/2.739
#   sf_adamw      1e-3 1.200/2.829  3e-3 1.029/2.395  *1e-2 0.935/2.311  3e-2 0.985/2.398
#                 (held-out at schedule_free_eval_params)
#   prodigy       0.1 1.038/2.421  *0.3 1.022/2.496  1 1.130/2.811
#   dadapt_adamw  3e-2 1.233/2.497  *0.1 1.066/2.613  0.3 1.080/2.710  1 1.157/3.024
#   adam          1e-3 1.112/2.467  *3e-3 0.995/2.350  1e-2 1.020/2.461  3e-2 1.054/2.614
#   nadam         1e-3 1.104/2.443  3e-3 0.973/2.278  *1e-2 0.947/2.303  3e-2 1.001/2.436
#   sgd           0.1 1.060/2.548  *0.3 1.036/2.453  1 1.160/2.780
#   momentum      3e-2 1.045/2.467  *0.1 1.028/2.468  0.3 1.115/2.726  1 7.849/14.87
#   nesterov      9e-3 1.090/2.613  *3e-2 1.006/2.390  0.1 1.009/2.380  0.3 1.131/2.737  1 diverged
#   adagrad       1e-2 0.991/2.379  *3e-2 0.967/2.318  0.1 1.047/2.582  0.3 1.109/2.746
#   rmsprop       1e-3 0.983/2.355  *3e-3 0.965/2.342  1e-2 1.014/2.489  3e-2 1.085/2.678
#   adadelta      0.3 1.105/2.518  *1 0.990/2.318  (1 is the sweep's ceiling)
#   adamax        1e-3 1.198/2.842  3e-3 1.059/2.448  *1e-2 1.002/2.351  3e-2 1.013/2.432
#   radam         1e-3 1.372/3.344  3e-3 1.249/2.741  1e-2 1.094/2.364  3e-2 1.043/2.358
#                 *0.1 0.993/2.433  (0.3 not tried)
#   adabelief     1e-3 1.054/2.406  *3e-3 0.990/2.348  1e-2 1.003/2.399  3e-2 1.071/2.674
#   yogi          1e-3 1.053/2.478  *3e-3 1.013/2.413  1e-2 1.025/2.460  3e-2 1.069/2.598
#   sign_sgd      3e-4 1.285/3.021  1e-3 1.055/2.350  *3e-3 0.933/2.240  1e-2 0.943/2.309
#   lamb          3e-3 1.391/3.540  *1e-2 1.124/2.414  3e-2 1.066/2.725  0.1 1.540/18.36
#                 (0.03 won, but 0.1 blew up, held-out 18 nats: diverged, so one notch lower)
#   soap          1e-3 1.335/3.239  3e-3 1.080/2.311  1e-2 0.918/2.177  *3e-2 0.917/2.273
#                 0.1 1.080/2.656
#   lars          3e-2 1.069/2.531  *0.1 1.051/2.604  0.3 1.110/3.009  1 diverged
#   adafactor     3e-3 0.966/2.308  *1e-2 0.950/2.332  3e-2 1.022/2.532  0.1 1.114/2.755
#   lookahead_sgd 3e-2 1.051/2.502  *0.1 1.010/2.381  0.3 1.092/2.693  1 4.001/4.076
#   param_average_adam  1e-3 1.112/2.467  *3e-3 0.995/2.350  1e-2 1.020/2.461  3e-2 1.054/2.614
#                 (held-out at the training parameters, not the average)

# Parameters to evaluate at, for optimizers whose training parameters are not those:
# ``eval_params(state, params)`` (see gradtx.compare.train.train).
EVAL_PARAMS: dict[str, Callable[[Any, Any], Any]] = {
    "schedule_free_sgd": schedule_free_eval_params,
    "schedule_free_adamw": schedule_free_eval_params,
}

# The frontier group: AdamW, the baseline, then the newer optimizers gradtx has, in the order
# they are printed.
FRONTIER: tuple[str, ...] = (
    "adamw",
    "muon",
    "lion",
    "adopt",
    "ademamix",
    "mars",
    "soap",
    "schedule_free_adamw",
    "prodigy",
    "dadapt_adamw",
)


def frontier() -> list[str]:
    """The ``frontier`` group: :data:`FRONTIER`."""
    return list(FRONTIER)


# Group names accepted by --optimizers, each expanding to a list of names.
GROUPS: dict[str, Callable[[], list[str]]] = {"frontier": frontier}


def expand(names: list[str]) -> list[str]:
    """``names`` with each group name replaced by its members, in place; a name that appears
    again after expansion (``adamw,frontier``) is kept once, where it first appears."""
    out: list[str] = []
    for name in names:
        for member in GROUPS[name]() if name in GROUPS else [name]:
            if member not in out:
                out.append(member)
    return out


@dataclass(frozen=True)
class Resolved:
    """An optimizer ready to build for one task."""

    name: str
    factory: Callable[..., GradientTransformation]
    hyperparameters: dict[str, Any]
    # (state, params) -> the parameters to evaluate at; None: params themselves.
    eval_params: Callable[[Any, Any], Any] | None = None
    # How the learning rate was chosen: "sweep" (tuned for the task) or "example" (the
    # registry's example value, for an optimizer not swept on this task).
    lr_source: str = "sweep"

    def build(self) -> GradientTransformation:
        return self.factory(**self.hyperparameters)


def names() -> list[str]:
    """Every accepted name: the presets, then the registry's names that are not presets."""
    return [*PRESETS, *(n for n in registry.names() if n not in PRESETS)]


def resolve(name: str, task: str) -> Resolved:
    """The optimizer ``name`` means on ``task``; ``KeyError`` for an unknown name (group names
    included: :func:`expand` them first)."""
    eval_params = EVAL_PARAMS.get(name)
    preset = PRESETS.get(name) or REGISTRY_PRESETS.get(name)
    if preset is not None:
        kwargs = {
            "learning_rate": preset.learning_rates[task],
            **preset.per_task.get(task, {}),
            **preset.fixed,
        }
        return Resolved(name, preset.factory, kwargs, eval_params)
    info = registry.get(name)
    kwargs = {**info.fixed, **info.example}  # as info.build(**info.example)
    swept = task in REGISTRY_LEARNING_RATES.get(name, {})
    if swept:
        kwargs["learning_rate"] = REGISTRY_LEARNING_RATES[name][task]
    return Resolved(name, info.factory, kwargs, eval_params, "sweep" if swept else "example")

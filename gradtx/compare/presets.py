"""Which optimizer, with which hyperparameters, each ``--optimizers`` name means on each task.

Two sources of names:

* :data:`PRESETS`, the optimizers the comparison's seed articles pit against each other (SGD,
  momentum, Nesterov, Adagrad, RMSprop, Adadelta, Adam, AdamW, NAdam). A preset fixes the
  non-learning-rate hyperparameters and gives a learning rate per task. ``sgd`` here is plain
  SGD; with momentum it is ``momentum``.
* every other name in :data:`gradtx.optimizers.registry.OPTIMIZERS`, built with the registry's
  ``example`` hyperparameters and the learning rate from :data:`REGISTRY_LEARNING_RATES`. A
  registry entry with no row there still works, with its example learning rate.

The learning rates come from a sweep over {1, 3} x 10^k up to 1, with each task's default
steps and seed 0: the value with the lowest mean of log(loss) over the run (rewarding both speed
and a stable end), clipped below at target / 1000 so that digits of precision far below the
target do not count. On the digits tasks, whose seeds change the weights and the batches, the
value one notch lower is taken where the next value up diverged or did more than three times
worse (a mean log-loss 0.5 higher): the winner there is on the edge of stability, and another
seed can push it over.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gradtx.core import GradientTransformation
from gradtx.optimizers import registry
from gradtx.optimizers.adagrad import adagrad
from gradtx.optimizers.adam import adam, adamw, nadam
from gradtx.optimizers.rmsprop import adadelta, rmsprop
from gradtx.optimizers.sgd import sgd

TASK_ORDER = ("cnn-digits", "mlp-digits", "rosenbrock", "quadratic")


def _per_task(cnn: float, mlp: float, rosenbrock: float, quadratic: float) -> dict[str, float]:
    return dict(zip(TASK_ORDER, (cnn, mlp, rosenbrock, quadratic), strict=True))


@dataclass(frozen=True)
class Preset:
    """A named optimizer setting: ``factory(learning_rate=learning_rates[task], **fixed)``."""

    factory: Callable[..., GradientTransformation]
    fixed: Mapping[str, Any]
    learning_rates: Mapping[str, float]


# Learning rates, per task: cnn-digits, mlp-digits, rosenbrock, quadratic.
PRESETS: dict[str, Preset] = {
    "sgd": Preset(sgd, {}, _per_task(0.1, 0.3, 1e-3, 1e-2)),
    "momentum": Preset(sgd, {"momentum": 0.9}, _per_task(0.03, 0.1, 1e-3, 3e-3)),
    "nesterov": Preset(sgd, {"momentum": 0.9, "nesterov": True}, _per_task(0.03, 0.1, 1e-3, 1e-2)),
    "adagrad": Preset(adagrad, {}, _per_task(0.03, 0.1, 1.0, 1.0)),
    "rmsprop": Preset(rmsprop, {}, _per_task(1e-3, 1e-2, 1e-2, 0.03)),
    "adadelta": Preset(adadelta, {}, _per_task(1.0, 1.0, 1.0, 1.0)),
    "adam": Preset(adam, {}, _per_task(3e-3, 1e-2, 1.0, 0.3)),
    "adamw": Preset(adamw, {"weight_decay": 1e-2}, _per_task(3e-3, 1e-2, 0.1, 1.0)),
    "nadam": Preset(nadam, {}, _per_task(1e-2, 1e-2, 0.03, 0.1)),
}

# The seed articles' line-up: the default of --optimizers.
DEFAULT_OPTIMIZERS: tuple[str, ...] = tuple(PRESETS)

# Learning rates for the registry's other optimizers, per task as above.
REGISTRY_LEARNING_RATES: dict[str, dict[str, float]] = {
    "adamax": _per_task(1e-2, 0.03, 1.0, 1.0),
    "radam": _per_task(1e-2, 0.03, 1e-2, 0.03),
    "adabelief": _per_task(3e-3, 1e-2, 1.0, 0.3),
    "yogi": _per_task(3e-3, 1e-2, 0.1, 0.1),
    "lion": _per_task(1e-3, 3e-3, 3e-3, 0.03),
    "sign_sgd": _per_task(1e-3, 3e-3, 3e-3, 0.03),
    "lamb": _per_task(3e-3, 3e-3, 0.1, 0.3),
    "lars": _per_task(1e-2, 0.03, 0.1, 0.3),
    "adafactor": _per_task(1e-2, 1e-2, 1e-2, 0.03),
    "lookahead_sgd": _per_task(0.1, 0.3, 1e-3, 1e-2),
    "param_average_adam": _per_task(3e-3, 1e-2, 1.0, 0.3),
}


@dataclass(frozen=True)
class Resolved:
    """An optimizer ready to build for one task."""

    name: str
    factory: Callable[..., GradientTransformation]
    hyperparameters: dict[str, Any]

    def build(self) -> GradientTransformation:
        return self.factory(**self.hyperparameters)


def names() -> list[str]:
    """Every accepted name: the presets, then the registry's names that are not presets."""
    return [*PRESETS, *(n for n in registry.names() if n not in PRESETS)]


def resolve(name: str, task: str) -> Resolved:
    """The optimizer ``name`` means on ``task``; ``KeyError`` for an unknown name."""
    if name in PRESETS:
        preset = PRESETS[name]
        kwargs = {"learning_rate": preset.learning_rates[task], **preset.fixed}
        return Resolved(name, preset.factory, kwargs)
    info = registry.get(name)
    kwargs = dict(info.example)
    if task in REGISTRY_LEARNING_RATES.get(name, {}):
        kwargs["learning_rate"] = REGISTRY_LEARNING_RATES[name][task]
    return Resolved(name, info.factory, kwargs)

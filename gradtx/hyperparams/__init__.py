"""Live hyperparameters: values kept in the optimizer state, declared once, readable and
changeable mid-run, and schedulable.

* :mod:`~gradtx.hyperparams.declarations`: one declaration per hyperparameter (kind, range,
  live or fixed), read by the constructor, ``set_hyperparam``, the registry and the docs.
* :mod:`~gradtx.live`: how a chain built once reads this step's values, and the
  optimizer's one step count.
* :mod:`~gradtx.hyperparams.inject`: :func:`inject_hyperparams` and :class:`HyperparamsState`.
* :mod:`~gradtx.hyperparams.access`: :func:`get_hyperparam` and :func:`set_hyperparam`.
"""

from gradtx import live
from gradtx.hyperparams.access import get_hyperparam, set_hyperparam
from gradtx.hyperparams.declarations import Hyperparam
from gradtx.hyperparams.inject import HyperparamsState, inject_hyperparams
from gradtx.live import read, step_count

__all__ = [
    "get_hyperparam",
    "Hyperparam",
    "HyperparamsState",
    "inject_hyperparams",
    "live",
    "read",
    "set_hyperparam",
    "step_count",
]

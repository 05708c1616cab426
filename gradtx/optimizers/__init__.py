"""The seed optimizers, each a short chain of public transforms."""

from gradtx.optimizers.adam import adam, adamw, nadam
from gradtx.optimizers.adaptive import adadelta, adagrad, rmsprop
from gradtx.optimizers.sgd import sgd

__all__ = ["adadelta", "adagrad", "adam", "adamw", "nadam", "rmsprop", "sgd"]

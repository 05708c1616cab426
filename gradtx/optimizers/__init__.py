"""The seed optimizers, each a short chain of public transforms."""

from gradtx.optimizers.adafactor import adafactor, relative_step_size
from gradtx.optimizers.adafactor_torch import adafactor_torch
from gradtx.optimizers.adagrad import adagrad
from gradtx.optimizers.adam import adam, adamw, nadam
from gradtx.optimizers.adam_variants import adabelief, adamax, radam, yogi
from gradtx.optimizers.asgd import asgd
from gradtx.optimizers.layerwise import lamb, lars
from gradtx.optimizers.lbfgs import lbfgs
from gradtx.optimizers.muon import is_hidden_matrix, muon, muon_with_adamw
from gradtx.optimizers.rmsprop import adadelta, rmsprop
from gradtx.optimizers.rprop import rprop
from gradtx.optimizers.sgd import sgd
from gradtx.optimizers.sign import lion, sign_sgd
from gradtx.optimizers.sparse_adam import sparse_adam

__all__ = [
    "adabelief",
    "adadelta",
    "adafactor",
    "adafactor_torch",
    "adagrad",
    "adam",
    "adamax",
    "adamw",
    "asgd",
    "lamb",
    "lars",
    "lbfgs",
    "is_hidden_matrix",
    "lion",
    "muon",
    "muon_with_adamw",
    "nadam",
    "radam",
    "relative_step_size",
    "rmsprop",
    "rprop",
    "sgd",
    "sign_sgd",
    "sparse_adam",
    "yogi",
]

"""The seed optimizers, each a short chain of public transforms."""

from gradtx.optimizers.adafactor import adafactor, relative_step_size
from gradtx.optimizers.adafactor_torch import adafactor_torch
from gradtx.optimizers.adagrad import adagrad
from gradtx.optimizers.adam import adam, adamw, nadam
from gradtx.optimizers.adam_variants import adabelief, adamax, ademamix, adopt, radam, yogi
from gradtx.optimizers.asgd import asgd
from gradtx.optimizers.d_adaptation import dadapt_adamw, prodigy
from gradtx.optimizers.layerwise import lamb, lars
from gradtx.optimizers.lbfgs import lbfgs
from gradtx.optimizers.mars import mars
from gradtx.optimizers.muon import is_hidden_matrix, muon, muon_with_adamw
from gradtx.optimizers.rmsprop import adadelta, rmsprop
from gradtx.optimizers.rprop import rprop
from gradtx.optimizers.schedule_free import (
    schedule_free_adamw,
    schedule_free_eval_params,
    schedule_free_sgd,
)
from gradtx.optimizers.sgd import sgd
from gradtx.optimizers.sign import lion, sign_sgd
from gradtx.optimizers.soap import soap
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
    "ademamix",
    "adopt",
    "asgd",
    "dadapt_adamw",
    "lamb",
    "lars",
    "lbfgs",
    "is_hidden_matrix",
    "lion",
    "mars",
    "muon",
    "muon_with_adamw",
    "nadam",
    "prodigy",
    "radam",
    "relative_step_size",
    "rmsprop",
    "rprop",
    "schedule_free_adamw",
    "schedule_free_eval_params",
    "schedule_free_sgd",
    "sgd",
    "sign_sgd",
    "soap",
    "sparse_adam",
    "yogi",
]

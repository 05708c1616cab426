"""The seed optimizers, each a short chain of public transforms."""

from gradtx.optimizers.acprop import acprop
from gradtx.optimizers.adafactor import adafactor, relative_step_size
from gradtx.optimizers.adafactor_torch import adafactor_torch
from gradtx.optimizers.adagrad import adagrad
from gradtx.optimizers.adam import adam, adamw, nadam
from gradtx.optimizers.adam_variants import adabelief, adamax, ademamix, adopt, radam, yogi
from gradtx.optimizers.adan import adan
from gradtx.optimizers.asgd import asgd
from gradtx.optimizers.d_adaptation import dadapt_adamw, prodigy
from gradtx.optimizers.dpsgd import dpsgd
from gradtx.optimizers.galore import galore
from gradtx.optimizers.layerwise import lamb, lars
from gradtx.optimizers.lbfgs import lbfgs
from gradtx.optimizers.madgrad import madgrad
from gradtx.optimizers.mars import mars
from gradtx.optimizers.muon import is_hidden_matrix, muon, muon_with_adamw
from gradtx.optimizers.noisy_sgd import noisy_sgd
from gradtx.optimizers.novograd import novograd
from gradtx.optimizers.optimistic import (
    optimistic_adam,
    optimistic_adam_v2,
    optimistic_gradient_descent,
)
from gradtx.optimizers.parameter_free import cocob, dog, dowg
from gradtx.optimizers.polyak import momo, momo_adam, polyak_sgd
from gradtx.optimizers.rmsprop import adadelta, rmsprop
from gradtx.optimizers.rprop import rprop
from gradtx.optimizers.schedule_free import (
    schedule_free_adamw,
    schedule_free_eval_params,
    schedule_free_sgd,
)
from gradtx.optimizers.sgd import sgd
from gradtx.optimizers.sign import lion, sign_sgd
from gradtx.optimizers.simplified_ademamix import simplified_ademamix
from gradtx.optimizers.sm3 import sm3
from gradtx.optimizers.soap import soap
from gradtx.optimizers.sophia import sophia
from gradtx.optimizers.sparse_adam import sparse_adam

__all__ = [
    "galore",
    "sophia",
    "dpsgd",
    "acprop",
    "adan",
    "madgrad",
    "noisy_sgd",
    "novograd",
    "optimistic_adam",
    "optimistic_adam_v2",
    "optimistic_gradient_descent",
    "cocob",
    "dog",
    "dowg",
    "momo",
    "momo_adam",
    "polyak_sgd",
    "simplified_ademamix",
    "sm3",
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

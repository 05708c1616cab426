"""gradtx: composable gradient transformations for JAX whose optimizers match torch.optim.

Everything public is importable from here: ``import gradtx as gx``.
"""

from gradtx.core import (
    EmptyState,
    GradientTransformation,
    OptState,
    Params,
    ScalarOrSchedule,
    Schedule,
    Updates,
    apply_updates,
    chain,
    identity,
    parallel,
)
from gradtx.hyperparams import (
    HyperparamsState,
    get_hyperparam,
    inject_hyperparams,
    set_hyperparam,
)
from gradtx.optimizers import adadelta, adagrad, adam, adamw, nadam, rmsprop, sgd
from gradtx.schedules import (
    constant_schedule,
    cosine_decay_schedule,
    cosine_warm_restarts_schedule,
    exponential_decay,
    join_schedules,
    linear_schedule,
    multistep_schedule,
    one_cycle_schedule,
    piecewise_constant_schedule,
    polynomial_schedule,
    step_schedule,
    warmup_cosine_decay_schedule,
)
from gradtx.transforms.clipping import clip, clip_by_block_rms, clip_by_global_norm, global_norm
from gradtx.transforms.decay import add_decayed_weights
from gradtx.transforms.moments import (
    CountState,
    MomentState,
    bias_correction,
    ema,
    ema_of_squares,
    ema_update,
    ema_variance,
    running_max,
    sum_of_squares,
)
from gradtx.transforms.momentum import (
    MomentumState,
    NadamMomentumState,
    nadam_momentum,
    scale_by_momentum,
)
from gradtx.transforms.normalization import (
    PastUpdateRmsState,
    normalize,
    scale_by_adam,
    scale_by_past_update_rms,
    scale_by_rms,
    scale_by_rss,
)
from gradtx.transforms.scaling import ScheduleState, scale, scale_by_learning_rate
from gradtx.wrappers.accumulation import AccumulationState, accumulate_gradients
from gradtx.wrappers.averaging import ParamAverageState, averaged_params, with_param_average
from gradtx.wrappers.finite import ApplyIfFiniteState, apply_if_finite
from gradtx.wrappers.lookahead import LookaheadState, lookahead
from gradtx.wrappers.masking import (
    MaskedState,
    MultiTransformState,
    freeze,
    masked,
    multi_transform,
    set_to_zero,
)

__version__ = "0.1.0"

__all__ = [
    "AccumulationState",
    "ApplyIfFiniteState",
    "CountState",
    "EmptyState",
    "GradientTransformation",
    "HyperparamsState",
    "LookaheadState",
    "MaskedState",
    "MomentState",
    "MomentumState",
    "MultiTransformState",
    "NadamMomentumState",
    "OptState",
    "ParamAverageState",
    "Params",
    "PastUpdateRmsState",
    "ScalarOrSchedule",
    "Schedule",
    "ScheduleState",
    "Updates",
    "accumulate_gradients",
    "adadelta",
    "adagrad",
    "adam",
    "adamw",
    "add_decayed_weights",
    "apply_if_finite",
    "apply_updates",
    "averaged_params",
    "bias_correction",
    "chain",
    "clip",
    "clip_by_block_rms",
    "clip_by_global_norm",
    "constant_schedule",
    "cosine_decay_schedule",
    "cosine_warm_restarts_schedule",
    "ema",
    "ema_of_squares",
    "ema_update",
    "ema_variance",
    "exponential_decay",
    "freeze",
    "get_hyperparam",
    "global_norm",
    "identity",
    "inject_hyperparams",
    "join_schedules",
    "linear_schedule",
    "lookahead",
    "masked",
    "multi_transform",
    "multistep_schedule",
    "nadam",
    "nadam_momentum",
    "normalize",
    "one_cycle_schedule",
    "parallel",
    "piecewise_constant_schedule",
    "polynomial_schedule",
    "rmsprop",
    "running_max",
    "scale",
    "scale_by_adam",
    "scale_by_learning_rate",
    "scale_by_momentum",
    "scale_by_past_update_rms",
    "scale_by_rms",
    "scale_by_rss",
    "set_hyperparam",
    "set_to_zero",
    "sgd",
    "step_schedule",
    "sum_of_squares",
    "warmup_cosine_decay_schedule",
    "with_param_average",
]

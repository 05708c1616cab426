"""The four benchmarked optimizers with the same hyperparameters in gradtx, Optax and torch."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import optax

import gradtx as gx

LEARNING_RATE = 1e-3
ADAMW_DECAY = 1e-2  # torch's AdamW default; Optax's default is 1e-4, so it is passed explicitly
MOMENTUM = 0.9
RMS_DECAY = 0.99  # torch's RMSprop ``alpha``; Optax's default decay is 0.9


class OptimizerSpec(NamedTuple):
    """One optimizer as each library spells it.

    Attributes:
        name: the row label.
        bytes_per_param: fp32 bytes an ideal fused step moves per parameter (the roofline).
        gradtx: keyword arguments -> a gradtx transformation (the keywords let a gradtx variant
            contender pass extra options).
        optax: () -> the Optax transformation with the same hyperparameters.
        torch_class: name of the class in ``torch.optim``.
        torch_kwargs: its hyperparameters (besides ``lr``).
    """

    name: str
    bytes_per_param: int
    gradtx: Callable[..., gx.GradientTransformation]
    optax: Callable[[], optax.GradientTransformation]
    torch_class: str
    torch_kwargs: dict[str, Any]


# Bytes per parameter: Adam/AdamW read p, g, m, v and write p, m, v (7 × 4 B); SGD with
# momentum and RMSProp read p, g and one buffer and write p and the buffer (5 × 4 B).
OPTIMIZERS: dict[str, OptimizerSpec] = {
    spec.name: spec
    for spec in (
        OptimizerSpec(
            "Adam", 28, lambda **kw: gx.adam(LEARNING_RATE, **kw),
            lambda: optax.adam(LEARNING_RATE), "Adam", {},
        ),
        OptimizerSpec(
            "AdamW", 28, lambda **kw: gx.adamw(LEARNING_RATE, weight_decay=ADAMW_DECAY, **kw),
            lambda: optax.adamw(LEARNING_RATE, weight_decay=ADAMW_DECAY), "AdamW",
            {"weight_decay": ADAMW_DECAY},
        ),
        OptimizerSpec(
            "SGD-momentum", 20, lambda **kw: gx.sgd(LEARNING_RATE, momentum=MOMENTUM, **kw),
            lambda: optax.sgd(LEARNING_RATE, momentum=MOMENTUM), "SGD",
            {"momentum": MOMENTUM},
        ),
        OptimizerSpec(
            "RMSProp", 20, lambda **kw: gx.rmsprop(LEARNING_RATE, decay=RMS_DECAY, eps=1e-8, **kw),
            lambda: optax.rmsprop(LEARNING_RATE, decay=RMS_DECAY, eps=1e-8, eps_in_sqrt=False),
            "RMSprop", {"alpha": RMS_DECAY, "eps": 1e-8},
        ),
    )
}

SEMANTIC_NOTES = [
    f"All contenders use lr = {LEARNING_RATE:g} and torch's defaults otherwise: Adam/AdamW "
    f"β = (0.9, 0.999), ε = 1e-8; AdamW weight decay {ADAMW_DECAY:g} (passed to Optax, whose "
    f"default is 1e-4); SGD momentum {MOMENTUM} with no dampening or Nesterov; RMSProp "
    f"decay (α) {RMS_DECAY}, ε = 1e-8 outside the square root (Optax is called with "
    "`decay=0.99, eps_in_sqrt=False`; its defaults are 0.9 and ε inside the root).",
    "With these settings the four libraries compute the same update rule. Remaining "
    "differences: gradtx keeps its hyperparameters as arrays in the optimizer state (so they "
    "can be changed without recompiling) and keeps one step counter per bias correction; "
    "Optax bakes the hyperparameters into the compiled step as constants; torch keeps the "
    "step count as a tensor per parameter.",
]

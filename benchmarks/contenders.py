"""The contenders: who performs each optimizer step. Adding a gradtx variant is one line in
``CONTENDERS``, e.g. ``Contender("gradtx fast", "gradtx", lambda spec: spec.gradtx(fast=True))``
(a factory returns ``None`` where the contender has no version of that optimizer: "n/a")."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import optax
import torch

import gradtx as gx
from benchmarks.optimizers import LEARNING_RATE, OptimizerSpec


class Contender(NamedTuple):
    """A column of the results.

    Attributes:
        name: label in the report.
        library: ``"gradtx"`` or ``"optax"`` (the factory returns a gradient transformation,
            stepped under ``jax.jit`` with donation) or ``"torch"`` (the factory returns
            ``params -> torch.optim.Optimizer``).
        factory: optimizer spec -> that object, or ``None`` for "n/a".
    """

    name: str
    library: str
    factory: Callable[[OptimizerSpec], Any | None]


def has_fused(spec: OptimizerSpec) -> bool:
    """Whether torch has a fused implementation of this optimizer."""
    cls = getattr(torch.optim, spec.torch_class)
    return "fused" in inspect.signature(cls).parameters


def torch_optimizer(spec: OptimizerSpec, **flags: bool) -> Callable | None:
    """``params -> torch optimizer`` with ``flags`` (``foreach``/``fused``), or ``None`` when
    torch has no fused version of it."""
    if flags.get("fused") and not has_fused(spec):
        return None
    cls = getattr(torch.optim, spec.torch_class)
    return lambda params: cls(params, lr=LEARNING_RATE, **spec.torch_kwargs, **flags)


BASELINE = "gradtx"
# The optimizer run on one concatenated buffer per dtype instead of leaf by leaf: gradtx's
# ``multi_tensor`` and Optax's ``flatten``.
MULTI_TENSOR = "gradtx multi-tensor"
OPTAX = "optax"
OPTAX_FLATTEN = "optax flatten"
TORCH_FUSED = "torch fused"

CONTENDERS: tuple[Contender, ...] = (
    Contender(BASELINE, "gradtx", lambda spec: spec.gradtx()),
    Contender(MULTI_TENSOR, "gradtx", lambda spec: gx.multi_tensor(spec.gradtx())),
    Contender(OPTAX, "optax", lambda spec: spec.optax()),
    Contender(OPTAX_FLATTEN, "optax", lambda spec: optax.flatten(spec.optax())),
    Contender("torch foreach", "torch", lambda spec: torch_optimizer(spec, foreach=True)),
    Contender(TORCH_FUSED, "torch", lambda spec: torch_optimizer(spec, fused=True)),
)

# How each JAX library applies updates to parameters.
APPLY_UPDATES: dict[str, Callable] = {"gradtx": gx.apply_updates, "optax": optax.apply_updates}


def is_jax(contender: Contender) -> bool:
    """Whether the contender is a JAX gradient transformation (compiled and memory-analysed)."""
    return contender.library in APPLY_UPDATES

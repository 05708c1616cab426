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
from benchmarks import ffi_adam
from benchmarks.optimizers import LEARNING_RATE, OptimizerSpec


class Contender(NamedTuple):
    """A column of the results.

    Attributes:
        name: label in the report.
        library: ``"gradtx"`` or ``"optax"`` (the factory returns a gradient transformation,
            stepped under ``jax.jit`` with donation), ``"jax.ffi"`` (an object with ``init``
            and ``fused_step``, jitted the same way) or ``"torch"`` (the factory returns
            ``params -> torch.optim.Optimizer``).
        factory: optimizer spec -> that object, or ``None`` for "n/a".
        packed: the parameters and gradients reach the step as :func:`gradtx.pack_leaves`
            buffers (a model that reads ``unpack(buffers)`` gets its gradient so), and the
            optimizer runs on those buffers as it would on any tree. The step's compile time
            and speed are then those of a step with no per-leaf work.
    """

    name: str
    library: str
    factory: Callable[[OptimizerSpec], Any | None]
    packed: bool = False


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
# The parameters kept as ``pack_leaves`` buffers for the whole run: no per-leaf work in the step.
PACKED = "gradtx packed"
OPTAX = "optax"
OPTAX_FLATTEN = "optax flatten"
TORCH_FUSED = "torch fused"
# Adam as a C++ custom call through jax.ffi (benchmarks/ffi_adam.py), one per leaf or on the
# packed buffers: measured, not shipped.
FFI_FUSED = "C++ fused (jax.ffi)"
FFI_PACKED = "C++ fused packed (jax.ffi)"


def ffi_fused(spec: OptimizerSpec) -> Any | None:
    """The jax.ffi fused Adam for the Adam rows (n/a elsewhere, or where it cannot be built)."""
    return ffi_adam.fused_adam(LEARNING_RATE) if spec.name == "Adam" else None


CONTENDERS: tuple[Contender, ...] = (
    Contender(BASELINE, "gradtx", lambda spec: spec.gradtx()),
    Contender(MULTI_TENSOR, "gradtx", lambda spec: gx.multi_tensor(spec.gradtx())),
    Contender(PACKED, "gradtx", lambda spec: spec.gradtx(), packed=True),
    Contender(OPTAX, "optax", lambda spec: spec.optax()),
    Contender(OPTAX_FLATTEN, "optax", lambda spec: optax.flatten(spec.optax())),
    Contender(FFI_FUSED, "jax.ffi", ffi_fused),
    Contender(FFI_PACKED, "jax.ffi", ffi_fused, packed=True),
    Contender("torch foreach", "torch", lambda spec: torch_optimizer(spec, foreach=True)),
    Contender(TORCH_FUSED, "torch", lambda spec: torch_optimizer(spec, fused=True)),
)

# How each JAX library applies updates to parameters (``None``: its step applies them itself,
# see ``runners.jax_step``).
APPLY_UPDATES: dict[str, Callable | None] = {
    "gradtx": gx.apply_updates, "optax": optax.apply_updates, "jax.ffi": None,
}


def is_jax(contender: Contender) -> bool:
    """Whether the contender is a JAX gradient transformation (compiled and memory-analysed)."""
    return contender.library in APPLY_UPDATES

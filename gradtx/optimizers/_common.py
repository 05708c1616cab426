"""Pieces every torch-style optimizer shares: maximisation, L2 weight decay, the optional steps,
and the validation of the common hyperparameters."""

from __future__ import annotations

import jax

from gradtx import tree as _tree
from gradtx import validation
from gradtx.core import GradientTransformation, ScalarOrSchedule, chain
from gradtx.optimizers import _leaves
from gradtx.transforms.decay import add_decayed_weights
from gradtx.transforms.scaling import scale


def pipeline(
    *steps: GradientTransformation | None, real_only: str | None = None
) -> GradientTransformation:
    """``chain`` of the steps that are present (``None`` marks a step left out), behind the
    checks every optimizer shares (see :mod:`gradtx.optimizers._leaves`).

    * ``init`` refuses integer and bool parameters, naming the path.
    * When ``params`` are passed to ``update``, the gradients are checked against them first
      (structure and shapes, so every optimizer names the offending path of a mismatched tree,
      even one that keeps no per-parameter state), a gradient of another kind than its
      parameter (integer, bool, real for complex) is refused, and one of another floating-point
      width is cast to its parameter's dtype. These checks read static information only: free
      under jit.
    * Complex leaves reach the steps as real ``(2, *shape)`` leaves (real and imaginary parts,
      as torch.optim treats them); ``real_only``, the optimizer's name, refuses them instead.
    """
    inner = chain(*(s for s in steps if s is not None))

    def init(params):
        _leaves.check_params(params, real_only)
        return inner.init(_leaves.as_real(params))

    def update(updates, state, params=None):
        if params is not None:
            _tree.check_match(params, updates, reference_name="params", other_name="gradient")
            updates = _leaves.cast_gradients(updates, params, real_only)
        else:
            _leaves.check_gradients(updates, real_only)
        out, state = inner.update(_leaves.as_real(updates), state, _leaves.as_real(params))
        return _leaves.from_real(out, updates), state

    return GradientTransformation(init, update)


def negate_if(maximize: bool) -> GradientTransformation | None:
    """torch's ``maximize=True``: ascend the objective by descending its negation."""
    check_bool("maximize", maximize)
    return scale(-1.0) if maximize else None


def weight_decay_if(weight_decay: float | jax.Array) -> GradientTransformation | None:
    """``add_decayed_weights``, left out for a Python zero, as torch skips it."""
    return None if validation.is_static_zero(weight_decay) else add_decayed_weights(weight_decay)


def check_common(learning_rate: ScalarOrSchedule, weight_decay, eps=None) -> None:
    validation.check_non_negative("learning_rate", learning_rate)
    validation.check_non_negative("weight_decay", weight_decay)
    if eps is not None:
        validation.check_non_negative("eps", eps)


check_bool = validation.check_bool

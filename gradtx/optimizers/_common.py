"""Pieces every torch-style optimizer shares: the checks of parameter and gradient leaves
around its chain, maximisation, weight decay left out for a Python 0, and the declarations
of the common hyperparameters (with :func:`optimizer`, the decorator that wraps each one)."""

from __future__ import annotations

import jax

from gradtx import tree as _tree
from gradtx import validation
from gradtx.core import GradientTransformation, chain, flattenable, is_flattenable
from gradtx.hyperparams.declarations import (
    NON_NEGATIVE,
    STATE_DTYPE,
    SWITCH,
    UNIT_INTERVAL,
    WEIGHT_DECAY,
    Hyperparam,
)
from gradtx.hyperparams.inject import inject_hyperparams
from gradtx.optimizers import leaf_kinds
from gradtx.transforms.decay import add_decayed_weights
from gradtx.transforms.scaling import scale


def optimizer_chain(
    *steps: GradientTransformation | None, real_only: str | None = None
) -> GradientTransformation:
    """``chain`` of the steps that are present (``None`` marks a step left out), behind the
    checks every optimizer shares (see :mod:`gradtx.optimizers.leaf_kinds`).

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
        leaf_kinds.check_params(params, real_only)
        return inner.init(leaf_kinds.as_real(params))

    def update(updates, state, params=None, **extra_args):
        if params is not None:
            _tree.check_match(params, updates, reference_name="params", other_name="gradient")
            updates = leaf_kinds.cast_gradients(updates, params, real_only)
        else:
            leaf_kinds.check_gradients(updates, real_only)
        out, state = inner.update(
            leaf_kinds.as_real(updates), state, leaf_kinds.as_real(params), **extra_args
        )
        return leaf_kinds.from_real(out, updates), state

    return flattenable(GradientTransformation(init, update), is_flattenable(inner))


def negate_if(maximize: bool) -> GradientTransformation | None:
    """torch's ``maximize=True``: ascend the objective by descending its negation."""
    return scale(-1.0) if maximize else None


def weight_decay_if(weight_decay: float | jax.Array) -> GradientTransformation | None:
    """``add_decayed_weights``, left out for a Python zero, as torch skips it."""
    return None if validation.is_static_zero(weight_decay) else add_decayed_weights(weight_decay)


def optimizer(**declarations: Hyperparam):
    """``inject_hyperparams`` with one declaration per argument: how every gradtx optimizer is
    wrapped. ``rules=`` takes the cross-argument rules."""
    rules = declarations.pop("rules", ())
    return inject_hyperparams(declarations=declarations, rules=rules)


# The declarations optimizers share (see gradtx.hyperparams.declarations).
LEARNING_RATE = NON_NEGATIVE
BETA = UNIT_INTERVAL
EPS = NON_NEGATIVE
MAXIMIZE = SWITCH
ADAM_LIKE = dict(
    learning_rate=LEARNING_RATE, b1=BETA, b2=BETA, eps=EPS, weight_decay=WEIGHT_DECAY,
    mu_dtype=STATE_DTYPE, nu_dtype=STATE_DTYPE,
)

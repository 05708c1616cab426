"""One description per optimizer: how to build it, what it equals in torch.optim, and which
hyperparameter values are valid and invalid.

The test suite's generic matrix (parity with torch, jit against eager, dtypes, odd trees, error
inputs, convergence) and the command-line comparison both read this table, so adding an
optimizer means adding its transforms and one entry here. Nothing here imports torch: the
torch equivalent is named, not loaded.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax

from gradtx.core import GradientTransformation, ScalarOrSchedule
from gradtx.hyperparams.declarations import (
    CLOSED_UNIT_INTERVAL,
    NON_NEGATIVE,
    PERIOD,
    POSITIVE,
    Hyperparam,
)
from gradtx.optimizers._common import LEARNING_RATE, optimizer
from gradtx.optimizers.acprop import acprop
from gradtx.optimizers.adafactor import adafactor
from gradtx.optimizers.adafactor_torch import adafactor_torch
from gradtx.optimizers.adagrad import adagrad
from gradtx.optimizers.adam import adam, adamw, nadam
from gradtx.optimizers.adam_variants import adabelief, adamax, ademamix, adopt, radam, yogi
from gradtx.optimizers.adan import adan
from gradtx.optimizers.asgd import asgd
from gradtx.optimizers.d_adaptation import dadapt_adamw, prodigy
from gradtx.optimizers.layerwise import lamb, lars
from gradtx.optimizers.lbfgs import lbfgs
from gradtx.optimizers.madgrad import madgrad
from gradtx.optimizers.mars import mars
from gradtx.optimizers.muon import muon
from gradtx.optimizers.novograd import novograd
from gradtx.optimizers.optimistic import (
    optimistic_adam,
    optimistic_adam_v2,
    optimistic_gradient_descent,
)
from gradtx.optimizers.parameter_free import cocob, dog, dowg
from gradtx.optimizers.rmsprop import adadelta, rmsprop
from gradtx.optimizers.rprop import rprop
from gradtx.optimizers.schedule_free import schedule_free_adamw, schedule_free_sgd
from gradtx.optimizers.sgd import sgd
from gradtx.optimizers.sign import lion, sign_sgd
from gradtx.optimizers.simplified_ademamix import simplified_ademamix
from gradtx.optimizers.sm3 import sm3
from gradtx.optimizers.soap import soap
from gradtx.optimizers.sparse_adam import sparse_adam
from gradtx.transforms.adam_scalings import _adopt_clip
from gradtx.wrappers.averaging import with_param_average
from gradtx.wrappers.lookahead import lookahead
from gradtx.wrappers.mechanize import mechanize


@dataclasses.dataclass(frozen=True)
class OptimizerInfo:
    """A description of one optimizer.

    Attributes:
        name: the public name, e.g. ``"adam"``.
        factory: the function that builds it, e.g. :func:`gradtx.adam`.
        torch_class: the torch reference it equals: a class of ``torch.optim`` by its name
            (``"Adam"``), or a class of the authors' reference package by its dotted path
            (``"schedulefree.AdamWScheduleFree"``; those packages are test-only extras). None
            when neither exists (the optimizer is then checked against a NumPy implementation
            of its paper).
        torch_names: gradtx argument name -> torch argument name, where they differ
            (``b1``/``b2`` become torch's ``betas`` pair).
        grid: values of every hyperparameter for the parity sweep (booleans both ways).
        rule_invalid: ``(kwargs, argument)`` pairs that break a rule tying several arguments
            together (``nesterov=True`` without momentum); the values each declaration refuses
            on its own are derived from the declarations (:attr:`invalid`).
        example: well-behaved hyperparameters for demos and the convergence test.
        torch_extra: fixed extra arguments for the torch constructor.
        constraint: a predicate on full keyword arguments; grid points failing it are skipped
            (combinations torch itself refuses, such as Nesterov without momentum).
        torch_state: torch's per-parameter state key -> the gradtx state entry (a
            :func:`gradtx.tree_get` name) holding it, for the state_dict bridge; ``"step"``
            is the step count. Entries an optimizer keeps only for some arguments (AMSGrad's
            max) are listed too.
        torch_group: constant entries of torch's param groups that are not arguments here
            (Adam's ``decoupled_weight_decay``): written on export, checked on import.
        torch_state_kept: ``(torch key, parameter shape) -> bool``, whether torch keeps that
            key for a parameter of that shape (Adafactor: ``row_var``/``col_var`` for
            matrices, ``variance`` otherwise); by default every key for every parameter.
        tolerance_note: how closely the optimizer is matched, where it is not to rtol 1e-9 on
            every test (the docs' torch table shows it); None otherwise.
        fixed: arguments every construction in the tests passes (:meth:`build`), and torch's
            constructor too: L-BFGS is checked with ``max_iter=1``, the one setting in which a
            step needs nothing but the gradients.
        grid_strength: how the parity sweep combines the grid's axes: None, their full
            product; 2, a set of points in which every pair of values of any two arguments
            occurs together (all pairs), for optimizers with so many arguments that the
            product would take CI minutes (Prodigy: 2^9 points for each of 16 switch
            settings). The switches (each setting a program of its own) and the traced
            numbers are paired separately: every pair of switch values is run, and at each,
            every pair of numbers.
        torch_patch: a function of the torch module that returns a context manager every
            step of the reference runs in (:func:`tests.helpers.torch_optimizer` wraps
            ``step``): SOAP's, which makes the reference's one cast to float32 (its QR) a
            no-op for float64 tensors, with ``qr_dtype=None`` :attr:`fixed` here to match.
            None: the reference as it is.
        parity_atol: the absolute term of the parity bound, as a fraction of ``max(1, the
            leaf's largest entry)`` (the relative term is always 1e-9): 1e-12, or larger where
            the step runs through an eigendecomposition or QR (SOAP), with the reason in
            :attr:`tolerance_note`.
        torch_tuples: torch arguments that take several gradtx arguments as one tuple, where
            they differ from ``TORCH_PAIRS`` (AdEMAMix's ``betas`` is ``(b1, b2, b3)``).
        first_moving_step: the step at which a non-zero gradient first moves the parameters
            (ADOPT's first step only fills its second moment: 2).
        gradtx_only: arguments with no counterpart in the reference that choose how the step
            is computed, not what it computes (Muon's ``batch_by_shape``): left out of the
            reference's constructor (state dtypes, ``*_dtype``, always are).
        params_like: turns a test tree into one the optimizer accepts, keeping its structure,
            leaf names and values (Muon takes matrices only: every other leaf is reshaped
            into one by :func:`as_matrices`); by default the tree itself.
    """

    name: str
    factory: Callable[..., GradientTransformation]
    torch_class: str | None
    grid: Mapping[str, Sequence[Any]]
    example: Mapping[str, Any]
    rule_invalid: Sequence[tuple[Mapping[str, Any], str]] = ()
    torch_names: Mapping[str, str] = dataclasses.field(default_factory=dict)
    torch_extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    constraint: Callable[[Mapping[str, Any]], bool] = lambda kwargs: True
    torch_state: Mapping[str, str] = dataclasses.field(default_factory=dict)
    torch_group: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    torch_state_kept: Callable[[str, tuple[int, ...]], bool] = lambda key, shape: True
    tolerance_note: str | None = None
    fixed: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    gradtx_only: Sequence[str] = ()
    params_like: Callable[[Any], Any] = lambda tree: tree
    first_moving_step: int = 1
    grid_strength: int | None = None
    torch_tuples: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    torch_patch: Callable[[Any], Any] | None = None
    parity_atol: float = 1e-12

    @property
    def torch_module(self) -> str | None:
        """The module that holds :attr:`torch_class`: ``"torch.optim"`` or the reference
        package's."""
        if self.torch_class is None:
            return None
        module, _, _ = self.torch_class.rpartition(".")
        return module or "torch.optim"

    @property
    def torch_class_name(self) -> str | None:
        """:attr:`torch_class` without its module."""
        return None if self.torch_class is None else self.torch_class.rpartition(".")[2]

    def build(self, **kwargs: Any) -> GradientTransformation:
        """The optimizer with ``kwargs`` and the :attr:`fixed` arguments."""
        return self.factory(**{**self.fixed, **kwargs})

    @property
    def declarations(self) -> Mapping[str, Hyperparam]:
        """The optimizer's declaration of each argument."""
        return self.factory._injection.declarations

    @property
    def invalid(self) -> tuple[tuple[Mapping[str, Any], str], ...]:
        """``(kwargs, argument)`` pairs that must raise ``ValueError`` naming ``argument``:
        each declaration's refused values, then the rules' cases."""
        derived = tuple(
            ({name: value}, name)
            for name, declaration in self.declarations.items()
            for value in declaration.invalid_values()
        )
        return derived + tuple(self.rule_invalid)

    @property
    def tuples(self) -> dict[str, tuple[str, ...]]:
        """torch argument -> the gradtx arguments it takes as one tuple (``TORCH_PAIRS``,
        with :attr:`torch_tuples` in place of any it redefines)."""
        return {**TORCH_PAIRS, **self.torch_tuples}

    def torch_kwargs(self, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """The keyword arguments of the reference's constructor (``torch.optim``'s or the
        reference package's). Arguments that it takes as one tuple (:attr:`tuples`) are
        joined. State dtypes (``mu_dtype``, ``nu_dtype``) have no counterpart: the reference
        keeps each state in its parameter's dtype, which is gradtx's default."""
        out = dict(self.torch_extra)
        kwargs = {**self.fixed, **kwargs}
        tuples = self.tuples
        joined = {name for members in tuples.values() for name in members}
        for key, value in kwargs.items():
            if key in joined or key.endswith("_dtype") or key in self.gradtx_only:
                continue
            out[self.torch_names.get(key, key)] = value
        for torch_name, members in tuples.items():
            if any(name in kwargs for name in members):
                defaults = _defaults(self.factory)
                out[torch_name] = tuple(kwargs.get(name, defaults[name]) for name in members)
        return out


# gradtx argument pairs that torch takes as one tuple: torch name -> (first, second).
TORCH_PAIRS = {
    "betas": ("b1", "b2"),
    "etas": ("eta_minus", "eta_plus"),
    "step_sizes": ("min_step_size", "max_step_size"),
    "eps": ("eps1", "eps2"),
}


def _defaults(fn) -> dict[str, Any]:
    import inspect

    return {
        k: p.default
        for k, p in inspect.signature(fn).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


def _adam_grid(weight_decay: list[float]) -> dict[str, list]:
    return {
        "learning_rate": [1e-3, 0.1],
        "b1": [0.0, 0.5, 0.9],
        "b2": [0.0, 0.9, 0.999],
        "eps": [1e-8, 1e-4, 0.1],
        "weight_decay": weight_decay,
        "amsgrad": [False, True],
        "maximize": [False, True],
    }


def _soap_merge_runs(kwargs) -> bool:
    """pytorch-optimizer's SOAP with ``merge_dims`` fails on a leaf that merges into one
    dimension (it reshapes it to ``(1,)``): with the test tree's vector of 3 entries, on every
    ``max_precondition_dim`` above 2."""
    return not kwargs.get("merge_dims") or kwargs.get("max_precondition_dim", 10000) <= 2


def _float64_qr(torch):
    """pytorch-optimizer's SOAP with its QR in float64: within the block, ``Tensor.to`` with
    ``torch.float32`` returns a float64 tensor itself (SOAP's one such cast is that of the
    power iterate before ``torch.linalg.qr``; its other casts are to the statistics' own
    dtype)."""
    import contextlib

    @contextlib.contextmanager
    def patched():
        original = torch.Tensor.to

        def to(self, *args, **kwargs):
            if args and args[0] is torch.float32 and self.dtype == torch.float64:
                return self
            return original(self, *args, **kwargs)

        torch.Tensor.to = to
        try:
            yield
        finally:
            torch.Tensor.to = original

    return patched()


def _decay_mode_exists(kwargs) -> bool:
    """pytorch-optimizer's ``fixed_decay`` changes nothing without ``weight_decouple``."""
    return not kwargs.get("fixed_decay") or kwargs.get("weight_decouple", False)


# torch's Adam and AdamW state: key -> gradtx entry (max_exp_avg_sq with amsgrad only).
_ADAM_STATE = {"step": "count", "exp_avg": "mu", "exp_avg_sq": "nu", "max_exp_avg_sq": "nu_max"}


def as_matrices(tree):
    """Every leaf of ``tree`` as a matrix with the same entries: a scalar as ``(1, 1)``, a
    vector as one row, a higher-dimensional array with its trailing axes flattened."""
    import numpy as np  # NumPy or JAX leaves alike; the test trees are NumPy

    def matrix(leaf):
        shape = np.shape(leaf)
        if len(shape) == 2:
            return leaf
        if len(shape) > 2:  # sizes given: -1 beside a 0 is ambiguous
            return leaf.reshape(shape[0], int(np.prod(shape[1:])))
        return leaf.reshape(1, -1) if len(shape) else leaf.reshape(1, 1)

    return jax.tree_util.tree_map(matrix, tree)


def _nesterov_ok(kw) -> bool:
    return not kw.get("nesterov") or (kw.get("momentum", 0) > 0 and kw.get("dampening", 0) == 0)


# The wrappers enter the matrix around a fixed inner optimizer. The inner one is built from the
# raw (``__wrapped__``) factory so that one HyperparamsState holds every live value.


@optimizer(
    learning_rate=LEARNING_RATE,
    momentum=NON_NEGATIVE.omitted_when_zero(),
    alpha=CLOSED_UNIT_INTERVAL,
    sync_period=PERIOD,
)
def lookahead_sgd(
    learning_rate: ScalarOrSchedule = 0.1,
    momentum: float = 0.9,
    alpha: float = 0.5,
    sync_period: int = 5,
) -> GradientTransformation:
    """:func:`gradtx.lookahead` around SGD with momentum (a registry entry)."""
    return lookahead(sgd.__wrapped__(learning_rate, momentum=momentum), sync_period, alpha)


@optimizer(learning_rate=LEARNING_RATE, decay=CLOSED_UNIT_INTERVAL)
def param_average_adam(
    learning_rate: ScalarOrSchedule = 1e-3, decay: float = 0.99
) -> GradientTransformation:
    """:func:`gradtx.with_param_average` around Adam (a registry entry)."""
    return with_param_average(adam.__wrapped__(learning_rate), decay)


@optimizer(
    learning_rate=LEARNING_RATE,
    momentum=NON_NEGATIVE.omitted_when_zero(),
    weight_decay=NON_NEGATIVE,
    eps=POSITIVE,
    s_init=POSITIVE,
    num_betas=PERIOD,
)
def mechanize_sgd(
    learning_rate: ScalarOrSchedule = 0.01,
    momentum: float = 0.9,
    weight_decay: float = 1e-2,
    eps: float = 1e-8,
    s_init: float = 1e-6,
    num_betas: int = 6,
) -> GradientTransformation:
    """:func:`gradtx.mechanize` around SGD with momentum (a registry entry)."""
    return mechanize(sgd.__wrapped__(learning_rate, momentum=momentum), weight_decay, eps,
                     s_init, num_betas)


def _matrices_only(params):
    """A weight-decay mask function: the leaves of two or more dimensions (a named function,
    for readable test ids)."""
    return jax.tree_util.tree_map(lambda p: jax.numpy.ndim(p) > 1, params)


OPTIMIZERS: tuple[OptimizerInfo, ...] = (
    OptimizerInfo(
        name="sgd",
        factory=sgd,
        torch_class="SGD",
        torch_state={"momentum_buffer": "momentum_buffer"},
        torch_names={"learning_rate": "lr"},
        grid={
            "learning_rate": [1e-3, 0.1, 1.0],
            "momentum": [0.0, 0.5, 0.9],
            "dampening": [0.0, 0.1, 0.5],
            "weight_decay": [0.0, 0.1],
            "nesterov": [False, True],
            "maximize": [False, True],
        },
        rule_invalid=(
            ({"nesterov": True}, "nesterov"),
            ({"nesterov": True, "momentum": 0.9, "dampening": 0.1}, "nesterov"),
        ),
        example={"learning_rate": 0.01, "momentum": 0.9},
        constraint=_nesterov_ok,
    ),
    OptimizerInfo(
        name="adagrad",
        factory=adagrad,
        torch_class="Adagrad",
        torch_state={"step": "count", "sum": "sum_of_squares"},
        torch_names={"learning_rate": "lr"},
        grid={
            "learning_rate": [1e-2, 0.1, 1.0],
            "lr_decay": [0.0, 1e-3, 0.1],
            "weight_decay": [0.0, 0.1],
            "initial_accumulator_value": [0.0, 0.1, 1.0],
            "eps": [1e-10, 1e-6, 0.1],
            "maximize": [False, True],
        },
        example={"learning_rate": 0.5},
    ),
    OptimizerInfo(
        name="rmsprop",
        factory=rmsprop,
        torch_class="RMSprop",
        torch_state={"step": "count", "square_avg": "nu", "momentum_buffer": "momentum_buffer",
                     "grad_avg": "mu"},
        torch_names={"learning_rate": "lr", "decay": "alpha"},
        grid={
            "learning_rate": [1e-3, 1e-2, 0.1],
            "decay": [0.0, 0.9, 0.99],
            "eps": [1e-8, 1e-4, 0.1],
            "weight_decay": [0.0, 0.1],
            "momentum": [0.0, 0.5, 0.9],
            "centered": [False, True],
            "maximize": [False, True],
        },
        example={"learning_rate": 0.01},
        # Centered with decay 0 has a variance of exactly zero (v = g², m = g), so both libraries
        # divide by sqrt(rounding noise): not a configuration anyone can compare.
        constraint=lambda kw: not (kw.get("centered") and kw.get("decay", 0.99) == 0),
    ),
    OptimizerInfo(
        name="adadelta",
        factory=adadelta,
        torch_class="Adadelta",
        torch_state={"step": "count", "square_avg": "nu", "acc_delta": "acc_delta"},
        torch_names={"learning_rate": "lr"},
        grid={
            "learning_rate": [1.0, 0.1, 0.01],
            "rho": [0.0, 0.5, 0.9, 0.99],
            "eps": [1e-6, 1e-3, 0.1],
            "weight_decay": [0.0, 0.1],
            "maximize": [False, True],
        },
        example={"learning_rate": 1.0, "rho": 0.95},
    ),
    OptimizerInfo(
        name="adam",
        factory=adam,
        torch_class="Adam",
        torch_state=_ADAM_STATE,
        torch_group={"decoupled_weight_decay": False},
        torch_names={"learning_rate": "lr"},
        grid=_adam_grid(weight_decay=[0.0, 0.1]),
        example={"learning_rate": 0.05},
        # b2 = 0 with L2 decay on 1e-9 gradients makes v = g² and the step sign-like in the
        # parameter, so the trajectory is chaotic: a last-bit difference grows past 1e-9
        # (measured: 3 of 432 grid points, all b2=0, weight_decay=0.1). b2 = 0 stays in the grid
        # without weight decay, and in AdamW's and NAdam's grids, where it matches.
        constraint=lambda kw: not (kw.get("b2") == 0 and kw.get("weight_decay", 0) > 0),
    ),
    OptimizerInfo(
        name="adamw",
        factory=adamw,
        torch_class="AdamW",
        torch_state=_ADAM_STATE,
        torch_group={"decoupled_weight_decay": True},
        torch_names={"learning_rate": "lr"},
        grid=_adam_grid(weight_decay=[0.0, 1e-2, 0.1]),
        example={"learning_rate": 0.05},
    ),
    OptimizerInfo(
        name="nadam",
        factory=nadam,
        torch_class="NAdam",
        torch_state={
            "step": "count", "mu_product": "mu_product", "exp_avg": "mu", "exp_avg_sq": "nu"
        },
        torch_names={"learning_rate": "lr"},
        grid={
            "learning_rate": [2e-3, 0.1],
            "b1": [0.0, 0.5, 0.9],
            "b2": [0.0, 0.9, 0.999],
            "eps": [1e-8, 0.1],
            "weight_decay": [0.0, 0.1],
            "momentum_decay": [0.0, 4e-3, 0.1],
            "decoupled_weight_decay": [False, True],
            "maximize": [False, True],
        },
        example={"learning_rate": 0.05},
    ),
    OptimizerInfo(
        name="adamax",
        factory=adamax,
        torch_class="Adamax",
        torch_state={"step": "count", "exp_avg": "mu", "exp_inf": "nu"},
        torch_names={"learning_rate": "lr"},
        grid={
            "learning_rate": [2e-3, 0.1],
            "b1": [0.0, 0.5, 0.9],
            "b2": [0.0, 0.9, 0.999],
            "eps": [1e-8, 1e-4, 0.1],
            "weight_decay": [0.0, 0.1],
            "maximize": [False, True],
        },
        example={"learning_rate": 0.05},
        # As for Adam: b2 = 0 makes s_t = |g_t| + eps, so with L2 decay on 1e-9 gradients the
        # step is sign-like in the parameter and the trajectory chaotic (measured: 3 of 216
        # points; torch and a NumPy transcription part by 1e-7 there too).
        constraint=lambda kw: not (kw.get("b2") == 0 and kw.get("weight_decay", 0) > 0),
    ),
    OptimizerInfo(
        name="radam",
        factory=radam,
        torch_class="RAdam",
        torch_state={"step": "count", "exp_avg": "mu", "exp_avg_sq": "nu"},
        torch_names={"learning_rate": "lr"},
        grid={
            "learning_rate": [1e-3, 0.1],
            "b1": [0.0, 0.5, 0.9],
            # rho_inf <= 5 for b2 = 0 and 0.5 (momentum steps only); 0.9 to 0.999 switch to
            # rectified adaptive steps after step 5.
            "b2": [0.0, 0.5, 0.9, 0.99, 0.999],
            "eps": [1e-8, 1e-4, 0.1],
            "weight_decay": [0.0, 0.1],
            "decoupled_weight_decay": [False, True],
            "maximize": [False, True],
        },
        example={"learning_rate": 0.02},
    ),
    OptimizerInfo(
        name="adabelief",
        factory=adabelief,
        torch_class=None,
        grid={
            "learning_rate": [1e-3, 0.1],
            # b1 = 0 is degenerate (g - m = 0, so s is eps_root alone and the step g / eps).
            "b1": [0.5, 0.9, 0.99],
            "b2": [0.0, 0.9, 0.999],
            "eps": [1e-16, 1e-8, 0.1],
            "eps_root": [0.0, 1e-16, 1e-8],
            "weight_decay": [0.0, 0.1],
        },
        example={"learning_rate": 0.05},
        # b2 = 0 with L2 decay: chaotic as for Adam and Adamax (a sign-like step).
        constraint=lambda kw: not (kw.get("b2") == 0 and kw.get("weight_decay", 0) > 0),
    ),
    OptimizerInfo(
        name="yogi",
        factory=yogi,
        torch_class=None,
        grid={
            "learning_rate": [1e-2, 0.1],
            "b1": [0.0, 0.5, 0.9],
            "b2": [0.0, 0.9, 0.999],
            "eps": [1e-3, 1e-6, 0.1],
            "initial_accumulator_value": [0.0, 1e-6, 0.1],
        },
        example={"learning_rate": 0.05},
    ),
    OptimizerInfo(
        name="rprop",
        factory=rprop,
        torch_class="Rprop",
        torch_state={"step": "count", "prev": "prev", "step_size": "step_size"},
        torch_names={"learning_rate": "lr"},
        grid={
            "learning_rate": [1e-3, 0.1, 100.0],
            "eta_minus": [0.1, 0.5, 0.9],
            "eta_plus": [1.1, 1.2, 2.0],
            # 2e-3 (not 1e-3, the grid's smallest learning rate): a learning rate equal to a
            # bound would put the finite-difference test on the kink of the clip.
            "min_step_size": [0.0, 1e-6, 2e-3],
            # 1e-4 < 2e-3: torch's clamp then gives every step size the max.
            "max_step_size": [1e-4, 1.0, 50.0],
            "maximize": [False, True],
        },
        example={"learning_rate": 0.01},
    ),
    OptimizerInfo(
        name="asgd",
        factory=asgd,
        torch_class="ASGD",
        torch_state={"step": "count", "eta": "eta", "mu": "mu", "ax": "ax"},
        torch_names={"learning_rate": "lr"},
        grid={
            "learning_rate": [1e-3, 0.01, 0.1],
            "lambd": [0.0, 1e-4, 0.1],
            "alpha": [0.0, 0.75, 1.0],
            "t0": [0.0, 7.5, 1e6],
            "weight_decay": [0.0, 0.1],
            "maximize": [False, True],
        },
        example={"learning_rate": 0.01},
    ),
    OptimizerInfo(
        name="sparse_adam",
        factory=sparse_adam,
        torch_class="SparseAdam",
        torch_names={"learning_rate": "lr"},
        torch_state={"step": "count", "exp_avg": "mu", "exp_avg_sq": "nu"},
        grid={
            "learning_rate": [1e-3, 0.1],
            "b1": [0.0, 0.5, 0.9],
            "b2": [0.0, 0.9, 0.999],
            "eps": [1e-8, 0.1],
            "maximize": [False, True],
        },
        example={"learning_rate": 0.05},
    ),
    OptimizerInfo(
        name="adafactor_torch",
        factory=adafactor_torch,
        torch_class="Adafactor",
        torch_names={"learning_rate": "lr"},
        grid={
            # 0.5 reaches torch's relative step cap 1/sqrt(t) from step 5 on.
            "learning_rate": [1e-3, 0.1, 0.5],
            "beta2_decay": [-0.8, -0.5],
            "eps1": [1e-30, 1e-3],
            "eps2": [1e-3, 0.1],
            "d": [1.0, 1.5],
            "weight_decay": [0.0, 0.1],
            "maximize": [False, True],
        },
        example={"learning_rate": 0.05},
        torch_state={"step": "count", "row_var": "row_var", "col_var": "col_var",
                     "variance": "variance"},
        # torch keeps row_var and col_var for parameters of 2 or more dims, variance for the
        # others; gradtx holds (1,) placeholders in the slots torch has no key for.
        torch_state_kept=lambda key, shape: (
            key not in ("row_var", "col_var", "variance") or (key == "variance") == (len(shape) < 2)
        ),
    ),
    OptimizerInfo(
        name="muon",
        factory=muon,
        torch_class="Muon",
        torch_names={"learning_rate": "lr"},
        torch_state={"momentum_buffer": "momentum_buffer"},
        grid={
            "learning_rate": [1e-3, 0.02],
            "weight_decay": [0.0, 0.1],
            "momentum": [0.0, 0.5, 0.95],
            "nesterov": [False, True],
            "eps": [1e-7, 0.1],
            "ns_steps": [1, 5],
            "adjust_lr_fn": [None, "original", "match_rms_adamw"],
        },
        example={"learning_rate": 0.02},
        gradtx_only=("batch_by_shape",),
        params_like=as_matrices,
    ),
    OptimizerInfo(
        name="lbfgs",
        factory=lbfgs,
        torch_class="LBFGS",
        torch_names={"learning_rate": "lr"},
        # One iteration per update needs only the gradients (torch's closure is called once,
        # for them); tests/test_lbfgs.py checks max_iter 5 and 20 and the line search with a
        # value_and_grad_fn, on real objectives.
        fixed={"max_iter": 1},
        tolerance_note=(
            "equal step for step on Rosenbrock, an ill-conditioned quadratic and an MLP, every "
            "max_iter/history_size/line search (float64, rtol 1e-9 but for ten configurations "
            "at 1e-8 to 1e-5, listed with their measured error in `tests/test_lbfgs.py`: "
            "cancellation near the minimum, and chaotic iterations that torch itself, moved by "
            "one ulp, changes by as much); the generic matrix here runs `max_iter=1` at 1e-9"
        ),
        torch_state={"func_evals": "func_evals", "n_iter": "n_iter", "d": "d", "t": "t",
                     "old_dirs": "old_dirs", "old_stps": "old_stps", "ro": "ro",
                     "H_diag": "h_diag", "prev_flat_grad": "prev_flat_grad",
                     "prev_loss": "prev_loss"},
        grid={
            "learning_rate": [1e-3, 0.1, 1.0],
            "tolerance_grad": [1e-7, 0.5],
            "tolerance_change": [1e-9, 0.1],
            "history_size": [3, 100],
        },
        example={"learning_rate": 0.5},
    ),
    # Beyond torch.optim: checked against their authors' reference packages (test extras).
    OptimizerInfo(
        name="lion",
        factory=lion,
        torch_class="lion_pytorch.Lion",
        torch_names={"learning_rate": "lr"},
        torch_state={"exp_avg": "mu"},
        grid={
            "learning_rate": [1e-4, 3e-3, 0.1],
            "b1": [0.0, 0.5, 0.9],
            "b2": [0.0, 0.9, 0.99],
            "weight_decay": [0.0, 0.1, 1.0],
        },
        # Sign steps circle the minimum of the test quadratic. With the paper's b2 = 0.99 the
        # slow momentum carries Lion far past it (a limit cycle with loss ~1e-2 of the start);
        # a shorter memory settles within a few steps of size lr (measured: loss below 2e-5 of
        # the start at every step from 400 to 700, for any lr in [2.7e-3, 3.7e-3]).
        example={"learning_rate": 3e-3, "b1": 0.5, "b2": 0.95},
    ),
    # The scalars d, d_max, the numerator and k live in prodigyopt's and dadaptation's param
    # groups, which the state_dict bridge does not carry (it writes only constant group
    # entries): no torch_state, so the bridge refuses them.
    OptimizerInfo(
        name="prodigy",
        factory=prodigy,
        torch_class="prodigyopt.Prodigy",
        torch_names={"learning_rate": "lr"},
        grid_strength=2,
        grid={
            "learning_rate": [1.0, 0.5],
            "b1": [0.0, 0.9],
            "b2": [0.9, 0.999],
            # None (sqrt(b2), the default) is not a number to vmap over: the Python-number
            # parity runs take it, with every combination of the switches.
            "beta3": [0.5, 0.9],
            "eps": [1e-8, 1e-3],
            "weight_decay": [0.0, 0.1],
            "decouple": [False, True],
            "use_bias_correction": [False, True],
            "safeguard_warmup": [False, True],
            "d0": [1e-6, 1e-3],
            "d_coef": [1.0, 0.5],
            "growth_rate": [float("inf"), 1.02],
            # 1 last: the multi-tensor test runs every axis at its last value, and a stride over
            # each leaf (slice_p > 1) is not flattenable.
            "slice_p": [3, 1],
        },
        # d0 = 1e-4 (default 1e-6): the first step, about 3 d0 lr per entry, then moves a
        # parameter visibly (the odd-tree test's check); d grows to the problem's scale anyway.
        example={"learning_rate": 1.0, "d0": 1e-4},
        # Without momentum, bias correction or a growth cap, decoupled decay diverges: once
        # lambda * d * lr > 2 each step multiplies theta by less than -1, and d, the distance
        # travelled, grows with it. Both libraries then overflow to inf within 50 steps, each at
        # its own step (measured: 36 of 8192 grid points, all b1=0, weight_decay=0.1,
        # decouple, growth_rate=inf, no bias correction; every other point matches to 1e-9).
        constraint=lambda kw: not (
            kw.get("b1", 0.9) == 0 and kw.get("weight_decay", 0) > 0 and kw.get("decouple", True)
            and kw.get("growth_rate", math.inf) == math.inf
            and not kw.get("use_bias_correction", False)
        ),
    ),
    OptimizerInfo(
        name="dadapt_adamw",
        factory=dadapt_adamw,
        torch_class="dadaptation.DAdaptAdam",
        torch_names={"learning_rate": "lr"},
        grid_strength=2,
        torch_extra={"decouple": True},
        grid={
            "learning_rate": [1.0, 0.5],
            "b1": [0.0, 0.9],
            "b2": [0.9, 0.999],
            "eps": [1e-8, 1e-3],
            "weight_decay": [0.0, 0.1],
            "use_bias_correction": [False, True],
            "d0": [1e-6, 1e-3],
            "growth_rate": [float("inf"), 1.02],
        },
        # d0 = 1e-4 as for Prodigy: a first step of about 3 d0 lr per entry.
        example={"learning_rate": 1.0, "d0": 1e-4},
    ),
    OptimizerInfo(
        name="adopt",
        factory=adopt,
        torch_class="pytorch_optimizer.ADOPT",
        torch_names={"learning_rate": "lr", "clip_value_fn": "clip_lambda"},
        grid={
            "learning_rate": [1e-3, 0.1],
            "b1": [0.0, 0.5, 0.9],
            "b2": [0.5, 0.9999],
            "eps": [1e-6, 0.1],
            "clip_value_fn": [_adopt_clip, None],
            "weight_decay": [0.0, 0.1],
            "weight_decouple": [False, True],
            "fixed_decay": [False, True],
            "maximize": [False, True],
        },
        constraint=_decay_mode_exists,  # fixed_decay only acts on decoupled decay
        example={"learning_rate": 1e-2},
        first_moving_step=2,
    ),
    OptimizerInfo(
        name="ademamix",
        factory=ademamix,
        torch_class="pytorch_optimizer.AdEMAMix",
        torch_names={"learning_rate": "lr"},
        grid_strength=2,  # 7 traced axes: 192 points for each of 12 switch settings
        grid={
            "learning_rate": [1e-3, 0.1],
            "b1": [0.0, 0.5, 0.9],
            "b2": [0.5, 0.999],
            "b3": [0.9, 0.9999],
            "alpha": [0.0, 5.0],
            "t_alpha_beta3": [None, 4.0],
            "eps": [1e-8, 0.1],
            "weight_decay": [0.0, 0.1],
            "weight_decouple": [False, True],
            "fixed_decay": [False, True],
            "maximize": [False, True],
        },
        # b1 = 0 has no log: the beta3 warmup needs b1 > 0 (the reference divides by log b1);
        # fixed_decay only acts on decoupled decay
        constraint=lambda kw: (kw.get("t_alpha_beta3") is None or kw.get("b1", 0.9) > 0)
        and _decay_mode_exists(kw),
        example={"learning_rate": 1e-2, "alpha": 1.0},
        rule_invalid=(({"t_alpha_beta3": 4.0, "b1": 0.0}, "b1"),
                      ({"t_alpha_beta3": 4.0, "b3": 0.0}, "b3")),
        torch_tuples={"betas": ("b1", "b2", "b3")},
    ),
    OptimizerInfo(
        name="mars",
        factory=mars,
        torch_class="pytorch_optimizer.MARS",
        torch_names={"learning_rate": "lr"},
        torch_tuples={"betas": ("b1", "b2"), "betas_1d": ("b1_1d", "b2_1d")},
        # Every leaf takes MARS's own step here: with the AdamW step for vectors and scalars
        # (optimize_1d=False, the default), the reference scales lr_1d with any change of lr
        # (a LambdaLR), which gradtx leaves to lr_1d's own schedule. tests/test_mars.py checks
        # that path (lr_1d, b1_1d, b2_1d, weight_decay_1d) against the reference.
        fixed={"optimize_1d": True},
        grid_strength=2,  # 6 switch settings x 3 types and 6 numbers: all pairs of both
        grid={
            "learning_rate": [1e-3, 0.1],
            "b1": [0.0, 0.5, 0.95],
            "b2": [0.5, 0.99],
            "gamma": [0.0, 0.025, 0.5],
            "eps": [1e-8, 0.1],
            "weight_decay": [0.0, 0.1],
            "mars_type": ["adamw", "lion", "shampoo"],
            "weight_decouple": [False, True],
            "fixed_decay": [False, True],
            "ams_bound": [False, True],
            "cautious": [False, True],
            "maximize": [False, True],
        },
        constraint=_decay_mode_exists,  # fixed_decay only acts on decoupled decay
        example={"learning_rate": 1e-2},
    ),
    OptimizerInfo(
        name="soap",
        factory=soap,
        torch_class="pytorch_optimizer.SOAP",
        torch_names={"learning_rate": "lr"},
        grid_strength=2,  # 7 switches and counts, 6 numbers: all pairs of both
        grid={
            "learning_rate": [1e-3, 0.1],
            "b1": [0.0, 0.5, 0.95],
            "b2": [0.5, 0.95],
            "shampoo_beta": [None, 0.5, 0.9],
            "weight_decay": [0.0, 0.1],
            "eps": [1e-8, 0.1],
            "precondition_frequency": [1, 3, 10],
            "max_precondition_dim": [2, 3, 10000],
            "merge_dims": [False, True],
            "correct_bias": [False, True],
            "normalize_gradient": [False, True],
            "data_format": ["channels_first", "channels_last"],
            "maximize": [False, True],
        },
        constraint=_soap_merge_runs,
        first_moving_step=2,  # the first step only starts the statistics and bases
        # The reference runs its QR refresh in float32 whatever the parameters' dtype (as
        # gradtx does by default). The two float32 QRs (MKL's in torch, jaxlib's LAPACK)
        # differ in their last bits, and the test data's 1e4 and 1e-9 gradient entries carry
        # a 1e-7 turn of a basis into O(1) changes of the later steps (measured: 6e-2 of the
        # leaf's largest entry). The sweep therefore runs the QR in float64 on both sides:
        # gradtx's qr_dtype=None, and the reference with that one cast made a no-op.
        fixed={"qr_dtype": None, "precondition_1d": False},
        torch_patch=_float64_qr,
        # Even in float64 the two LAPACKs' eigendecompositions and QRs differ in the last
        # bits, which later steps carry: measured up to 8.9e-12 of the leaf's largest entry
        # over this sweep (entries near zero by cancellation: 6.6e-8 relative), hence 1e-10.
        parity_atol=1e-10,
        tolerance_note=(
            "equal to rtol 1e-9 plus 1e-10 of the leaf's largest entry with the QR refresh in "
            "float64 on both sides (`qr_dtype=None`; the reference with its one float32 cast "
            "made float64): the two float64 LAPACKs (MKL's, jaxlib's) differ in last bits, "
            "measured 8.9e-12 of the largest entry. `precondition_1d=True` is checked in "
            "`tests/test_soap.py` at rtol 1e-9 on vectors whose statistic is well "
            "conditioned; on the sweep's vector (entries 1e4 and 1e-9) its eigenvalues span "
            "more than float64 holds, so its small eigenvectors are rounding, different in "
            "every LAPACK (measured 4e-4 of the largest entry). With the reference's float32 "
            "QR (the default), the two float32 QRs differ in their last bits: 8e-10 of the "
            "leaf's largest entry on gradients of one scale (`tests/test_soap.py`), O(1) on "
            "the sweep's data"
        ),
        # No state_dict bridge yet: the reference keeps its step in the param group and its
        # statistics and bases as per-parameter lists (empty for a dimension it skips), which
        # the bridge's one-tensor-per-entry layout does not describe. Refused by name.
        torch_state={},
        example={"learning_rate": 1e-2, "weight_decay": 0.0},
    ),
    OptimizerInfo(
        name="schedule_free_sgd",
        factory=schedule_free_sgd,
        torch_class="schedulefree.SGDScheduleFree",
        torch_names={"learning_rate": "lr"},
        grid={
            "learning_rate": [0.1, 1.0],
            "momentum": [0.5, 0.9],
            "weight_decay": [0.0, 0.1],
            "warmup_steps": [0, 3],
            "r": [0.0, 1.0],
            "weight_lr_power": [0.0, 2.0],
        },
        # reaches 2.8e-5 of the start loss on the convergence test's quadratic (0.01: 7.2e-5)
        example={"learning_rate": 0.015},
    ),
    OptimizerInfo(
        name="schedule_free_adamw",
        factory=schedule_free_adamw,
        torch_class="schedulefree.AdamWScheduleFree",
        torch_names={"learning_rate": "lr"},
        grid={
            "learning_rate": [0.0025, 0.1],
            "b1": [0.5, 0.9],
            "b2": [0.9, 0.999],
            "eps": [1e-8, 0.1],
            "weight_decay": [0.0, 0.1],
            "warmup_steps": [0, 3],
            "r": [0.0, 1.0],
            "weight_lr_power": [0.0, 2.0],
        },
        example={"learning_rate": 0.05},
    ),
    # No reference package: tests/test_sign_layerwise_adafactor.py and others check the entries
    # below against NumPy implementations of their papers over this grid.
    OptimizerInfo(
        name="sign_sgd",
        factory=sign_sgd,
        torch_class=None,
        grid={"learning_rate": [1e-3, 3e-3, 0.1], "momentum": [0.0, 0.5, 0.9]},
        # lr = 3e-3 covers the distance 1 to the minimum in ~330 steps and then oscillates at
        # amplitude ~lr (loss below 2e-5 of the start from step 400 on).
        example={"learning_rate": 3e-3, "momentum": 0.5},
    ),
    OptimizerInfo(
        name="lamb",
        factory=lamb,
        torch_class=None,
        grid={
            "learning_rate": [1e-3, 0.03, 0.1],
            "b1": [0.0, 0.5, 0.9],
            "b2": [0.0, 0.9, 0.999],
            "eps": [1e-6, 1e-3, 0.1],
            "weight_decay": [0.0, 0.01, 0.1],
        },
        example={"learning_rate": 0.03},
    ),
    OptimizerInfo(
        name="lars",
        factory=lars,
        torch_class=None,
        grid={
            "learning_rate": [1e-3, 0.1, 1.0],
            "momentum": [0.0, 0.5, 0.9],
            "weight_decay": [0.0, 1e-4, 0.1],
            "trust_coefficient": [1e-3, 0.01, 1.0],
            "eps": [0.0, 1e-8, 0.1],
        },
        # Steps are lr * trust_coefficient * ||theta|| (here 0.01 ||theta||); a leaf at zero
        # falls back to a plain lr step (ratio 1), so lr itself stays moderate.
        example={"learning_rate": 0.1, "trust_coefficient": 0.1},
    ),
    OptimizerInfo(
        name="adafactor",
        factory=adafactor,
        torch_class=None,
        # learning_rate=None (the paper's relative step) and clipping_threshold=None are
        # checked separately: the grid holds numbers only, so that it can be traced.
        grid={
            "learning_rate": [1e-3, 0.01, 0.05],
            "decay_rate": [0.0, 0.5, 0.8, 1.0],
            "clipping_threshold": [0.5, 1.0, 10.0],
            "multiply_by_parameter_scale": [False, True],
            "b1": [0.0, 0.9],
            "weight_decay": [0.0, 0.1],
            "eps": [1e-30, 1e-3],
            "min_param_scale": [1e-3, 0.5],
            "factored": [False, True],
        },
        # An absolute step: with the paper's parameter scaling steps shrink with ||theta|| and
        # 500 steps reach only ~2e-3 of the start loss.
        example={"learning_rate": 0.01, "multiply_by_parameter_scale": False},
    ),
    # Optax's optimizers that neither torch.optim nor an authors' package has: each is checked
    # step for step against Optax 0.2.8 in float64 by its own test file (tests/test_adan_
    # novograd_madgrad.py, test_parameter_free.py, test_acprop_ademamix.py,
    # test_sm3_noise_norms.py, test_optimistic.py). Left out of this table: polyak_sgd, momo
    # and momo_adam (their update needs value=loss, which the generic matrix does not pass;
    # tests/test_polyak_momo.py) and noisy_sgd (random by design).
    OptimizerInfo(
        name="adan",
        factory=adan,
        torch_class=None,
        grid={
            "learning_rate": [1e-3, 0.1],
            "b1": [0.0, 0.5, 0.98],
            "b2": [0.0, 0.5, 0.92],
            "b3": [0.0, 0.5, 0.99],
            "eps": [1e-8, 0.1],
            "eps_root": [0.0, 1e-8],
            "weight_decay": [0.0, 0.1],
            # None last: the generic tests build each argument's last value, and a mask makes
            # the step unflattenable.
            "mask": [_matrices_only, None],
        },
        example={"learning_rate": 0.05},
    ),
    OptimizerInfo(
        name="novograd",
        factory=novograd,
        torch_class=None,
        grid={
            "learning_rate": [1e-3, 0.1],
            "b1": [0.0, 0.5, 0.9],
            "b2": [0.0, 0.25, 0.9],
            "eps": [1e-6, 0.1],
            "eps_root": [0.0, 1e-8],
            "weight_decay": [0.0, 0.1],
        },
        example={"learning_rate": 0.01},
    ),
    OptimizerInfo(
        name="madgrad",
        factory=madgrad,
        torch_class=None,
        grid={
            "learning_rate": [1e-3, 0.1, 1.0],
            "momentum": [0.0, 0.5, 0.9],
            "weight_decay": [0.0, 0.1],
            "eps": [1e-6, 0.1],
        },
        example={"learning_rate": 0.1},
    ),
    OptimizerInfo(
        name="cocob",
        factory=cocob,
        torch_class=None,
        grid={
            "learning_rate": [1.0, 0.05],
            "alpha": [100.0, 10.0, 0.0],
            "eps": [1e-8, 1e-3],
            "weight_decay": [0.0, 0.1],
        },
        # eps 0.1: COCOB ignores the gradient's scale (and so nearly the learning rate) but
        # for eps; with 1e-8 the derivative in the learning rate is 4e-16 against a finite
        # difference of exactly 0.
        example={"learning_rate": 1.0, "eps": 0.1},
    ),
    OptimizerInfo(
        name="dog",
        factory=dog,
        torch_class=None,
        # Not 1.0: with lr = 1 the first step moves exactly r_0 sqrt(G / (G + eps)), so the
        # running max of the distance sits at its kink and finite differences in lr straddle it.
        grid={
            "learning_rate": [0.5, 0.8],
            "init_step": [("heuristic", 1e-6), ("distance", 0.1), ("learning_rate", 0.01)],
            "eps": [1e-8, 1e-4],
            "weight_decay": [0.0, 0.01],
        },
        # The default ("heuristic", 1e-6) reaches 3.6e-4 of the start loss in 500 steps.
        example={"learning_rate": 1.0, "init_step": ("distance", 0.1)},
    ),
    OptimizerInfo(
        name="dowg",
        factory=dowg,
        torch_class=None,
        grid={
            "learning_rate": [0.5, 0.8],
            "init_estim_sq_dist": [0.1, 1e-3],
            "eps": [1e-4, 1e-8],
            "weight_decay": [0.0, 0.01],
        },
        example={"learning_rate": 1.0},
    ),
    OptimizerInfo(
        name="mechanize_sgd",
        factory=mechanize_sgd,
        torch_class=None,
        grid={
            "learning_rate": [0.01, 0.1],
            "momentum": [0.0, 0.9],
            "weight_decay": [0.0, 1e-2, 0.1],
            "eps": [1e-8, 1e-4],
            "s_init": [1e-6, 1e-3, 0.1],
            "num_betas": [1, 6],
        },
        # With the default s_init 1e-6 the loss reaches 7e-3 of the start in 500 steps.
        example={"learning_rate": 0.01, "momentum": 0.9, "s_init": 0.1},
    ),
    OptimizerInfo(
        name="sm3",
        factory=sm3,
        torch_class=None,
        grid={"learning_rate": [1e-3, 0.1, 1.0], "momentum": [0.0, 0.5, 0.9]},
        example={"learning_rate": 0.1},
    ),
    OptimizerInfo(
        name="acprop",
        factory=acprop,
        torch_class=None,
        grid={
            "learning_rate": [1e-3, 0.1],
            "b1": [0.0, 0.5, 0.9],
            "b2": [0.0, 0.9, 0.999],
            "eps": [0.0, 1e-16, 1e-3],
            "eps_root": [0.0, 1e-16, 1e-3],
            "weight_decay": [0.0, 0.1],
        },
        # eps = eps_root = 0: a first all-zero gradient divides 0 by 0 (Optax's NaN too).
        constraint=lambda kw: kw.get("eps", 1e-16) > 0 or kw.get("eps_root", 1e-16) > 0,
        example={"learning_rate": 0.01},
    ),
    OptimizerInfo(
        name="simplified_ademamix",
        factory=simplified_ademamix,
        torch_class=None,
        grid={
            "learning_rate": [1e-4, 1e-2],
            "b1": [0.0, 0.5, 0.99],
            "b2": [0.0, 0.5, 0.95],
            "alpha": [0.0, 1.0, 8.0],
            "eps": [0.0, 1e-8, 1e-3],
            "eps_root": [0.0, 1e-8, 1e-2],
            "weight_decay": [0.0, 0.1],
        },
        constraint=lambda kw: kw.get("eps", 1e-8) > 0 or kw.get("eps_root", 0.0) > 0,
        # b1 0.9: with the default 0.99 the loss falls to 1e-3 of the start in 500 steps.
        example={"learning_rate": 1e-3, "b1": 0.9},
    ),
    OptimizerInfo(
        name="optimistic_gradient_descent",
        factory=optimistic_gradient_descent,
        torch_class=None,
        fixed={"learning_rate": 0.005},  # required, as in Optax
        grid={"learning_rate": [1e-3, 0.1, 1.0], "alpha": [0.0, 0.5, 1.0],
              "beta": [0.0, 1.0, 2.0]},
        example={"learning_rate": 0.005},
    ),
    OptimizerInfo(
        name="optimistic_adam",
        factory=optimistic_adam,
        torch_class=None,
        fixed={"learning_rate": 0.03},
        grid={
            "learning_rate": [1e-3, 0.1],
            "optimism": [None, 0.0, 0.5],
            "b1": [0.0, 0.9],
            "b2": [0.0, 0.999],
            "eps": [1e-8, 0.1],
            "eps_root": [0.0, 1e-8],
            "nesterov": [False, True],
        },
        example={"learning_rate": 0.03},
    ),
    OptimizerInfo(
        name="optimistic_adam_v2",
        factory=optimistic_adam_v2,
        torch_class=None,
        fixed={"learning_rate": 0.03},
        grid={
            "learning_rate": [1e-3, 0.1],
            "alpha": [0.01, 1.0],
            "beta": [0.0, 1.0],
            "b1": [0.0, 0.9],
            "b2": [0.0, 0.999],
            "eps": [1e-8, 0.1],
            "eps_root": [0.0, 1e-8],
            "nesterov": [False, True],
        },
        example={"learning_rate": 0.03},
    ),
    OptimizerInfo(
        name="lookahead_sgd",
        factory=lookahead_sgd,
        torch_class=None,
        grid={
            "learning_rate": [1e-3, 0.05],
            "momentum": [0.0, 0.9],
            "alpha": [0.0, 0.5, 1.0],
        },
        example={"learning_rate": 0.01, "momentum": 0.9, "alpha": 0.5},
    ),
    OptimizerInfo(
        name="param_average_adam",
        factory=param_average_adam,
        torch_class=None,
        grid={"learning_rate": [1e-3, 0.05], "decay": [0.0, 0.9, 0.99, 1.0]},
        example={"learning_rate": 0.05},
    ),
)


def with_torch_equivalent() -> list[OptimizerInfo]:
    """The entries with a torch reference (torch.optim or a reference package): the parity
    tests' subjects."""
    return [info for info in OPTIMIZERS if info.torch_class is not None]


def in_torch_optim() -> list[OptimizerInfo]:
    """The entries whose reference is a class of ``torch.optim`` itself."""
    return [info for info in OPTIMIZERS if info.torch_module == "torch.optim"]


def get(name: str) -> OptimizerInfo:
    """The registry entry called ``name``; ``KeyError`` lists the known names."""
    for info in OPTIMIZERS:
        if info.name == name:
            return info
    raise KeyError(f"unknown optimizer {name!r}; known: {', '.join(names())}")


def names() -> list[str]:
    return [info.name for info in OPTIMIZERS]

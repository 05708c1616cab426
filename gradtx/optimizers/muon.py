"""Muon (momentum orthogonalised by Newton–Schulz) for the hidden matrices of a network, and
the usual recipe that trains every other parameter with AdamW."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike

from gradtx.core import GradientTransformation, PyTree, ScalarOrSchedule
from gradtx.hyperparams.declarations import (
    STATE_DTYPE,
    SWITCH,
    WEIGHT_DECAY,
    FixedArgument,
)
from gradtx.optimizers._common import (
    BETA,
    EPS,
    LEARNING_RATE,
    optimizer,
    optimizer_chain,
    weight_decay_if,
)
from gradtx.optimizers.adam import adamw
from gradtx.transforms import orthogonalize as _ortho
from gradtx.transforms.orthogonalize import (
    DEFAULT_NS_COEFFICIENTS,
    adjust_muon_learning_rate,
    orthogonalize_by_newton_schulz,
    scale_by_muon_momentum,
)
from gradtx.transforms.scaling import scale_by_learning_rate
from gradtx.wrappers.masking import multi_transform
from gradtx.wrappers.matrix_view import check_kernel_layout, matrix_shape, matrix_view

# -- declarations of Muon's fixed arguments -----------------------------------------------------


NS_COEFFICIENTS = FixedArgument(
    checker=_ortho.check_ns_coefficients,
    text="tuple of 3 finite numbers (a, b, c)",
    refused=((3.4445, -4.775), (3.4445, float("nan"), 2.0315)),
)
NS_STEPS = FixedArgument(
    kind="int",
    checker=_ortho.check_ns_steps,
    text=f"int in [1, {_ortho.MAX_NS_STEPS}]",
    refused=(0, _ortho.MAX_NS_STEPS + 1),
)
ADJUST_LR_FN = FixedArgument(
    checker=_ortho.check_adjust_lr_fn,
    text="None, 'original' or 'match_rms_adamw'",
    refused=("adamw", "Original"),
    none_allowed=True,
)

_NOT_A_MATRIX_HINT = (
    " Train the other parameters with another optimizer: gradtx."
    "muon_with_adamw(...) sends hidden matrices to Muon and the rest to AdamW (or build "
    "your own split with gradtx.multi_transform)."
)


@optimizer(
    learning_rate=LEARNING_RATE,
    weight_decay=WEIGHT_DECAY,
    momentum=BETA,
    nesterov=SWITCH,
    ns_coefficients=NS_COEFFICIENTS,
    eps=EPS,
    ns_steps=NS_STEPS,
    adjust_lr_fn=ADJUST_LR_FN,
    ns_dtype=STATE_DTYPE,
    batch_by_shape=SWITCH,
)
def muon(
    learning_rate: ScalarOrSchedule = 1e-3,
    weight_decay: float | jax.Array = 0.1,
    momentum: float | jax.Array = 0.95,
    nesterov: bool = True,
    ns_coefficients: Sequence[float] = DEFAULT_NS_COEFFICIENTS,
    eps: float | jax.Array = 1e-7,
    ns_steps: int = 5,
    adjust_lr_fn: str | None = None,
    ns_dtype: DTypeLike | None = jnp.bfloat16,
    batch_by_shape: bool = False,
) -> GradientTransformation:
    r"""Muon (Jordan et al., 2024), momentum orthogonalised by Newton–Schulz, equal step for
    step to ``torch.optim.Muon``. For the hidden matrices of a network: every leaf must be a
    matrix; see :func:`muon_with_adamw` for a whole model.

    For a parameter :math:`\theta \in \mathbb{R}^{A \times B}` with gradient :math:`g_t`:

    .. math::
        B_t &= \mu B_{t-1} + (1-\mu)\, g_t, \qquad B_0 = 0 \\
        \tilde B_t &= (1-\mu)\, g_t + \mu B_t \ \text{(Nesterov)} \quad\text{or}\quad B_t \\
        O_t &= \mathrm{NS}^{(a,b,c)}_k\bigl(\tilde B_t;\ \epsilon\bigr) \\
        \theta_t &= \theta_{t-1}(1 - \eta\lambda) - \eta\, r(A, B)\, O_t

    where :math:`\mathrm{NS}^{(a,b,c)}_k` is ``ns_steps`` quintic Newton–Schulz steps from
    :math:`\tilde B_t / \max(\lVert\tilde B_t\rVert_F, \epsilon)` (see
    ``newton_schulz``), and :math:`r(A, B)` is
    ``adjust_lr_fn``'s factor: :math:`\sqrt{\max(1, A/B)}` for None and ``"original"``,
    :math:`0.2\sqrt{\max(A, B)}` for ``"match_rms_adamw"``. Weight decay is decoupled (torch
    applies :math:`\theta(1-\eta\lambda)` before the orthogonalised step).

    Chain: ``scale_by_muon_momentum(μ, nesterov) →
    orthogonalize_by_newton_schulz((a, b, c), ε, k, dtype=ns_dtype, batch_by_shape) →
    adjust_muon_learning_rate(adjust_lr_fn) → [add_decayed_weights(λ)] →
    scale_by_learning_rate(η)``, behind a check that every leaf is a matrix.

    Args:
        learning_rate: :math:`\eta \ge 0`, a number or a schedule.
        weight_decay: :math:`\lambda \ge 0`, decoupled; a Python 0 leaves the step out.
        momentum: :math:`\mu \in [0, 1)`.
        nesterov: use the Nesterov look-ahead :math:`\tilde B_t`.
        ns_coefficients: :math:`(a, b, c)`, fixed.
        eps: :math:`\epsilon \ge 0`, the floor of the Frobenius norm (with 0, a zero gradient
            gives NaN, as in torch).
        ns_steps: :math:`k \in [1, 99]`, fixed (torch refuses 100 or more).
        adjust_lr_fn: None, ``"original"`` or ``"match_rms_adamw"``, fixed.
        ns_dtype: the dtype Newton–Schulz runs in. ``jnp.bfloat16`` (the default) is torch's:
            torch casts the momentum to bfloat16 for the iteration whatever the parameters'
            dtype, so :math:`O_t` has bfloat16 precision (about 3 significant digits) even for
            float32 or float64 parameters. None runs it in the parameters' dtype (more exact,
            and slower on accelerators). Not a torch argument.
        batch_by_shape: run one batched Newton–Schulz per distinct matrix shape (the
            matrices of one shape stacked and vmapped, :func:`gradtx.map_by_shape`) instead of
            one per matrix: the same step, traced once per shape, and fewer, larger kernels on
            accelerators. Off by default: on XLA:CPU it compiled slower and stepped no faster
            (BENCHMARKS.md, "Muon: compile and step time"). Not a torch argument.

    A leaf that is not a matrix (``ndim != 2``: a bias, a norm's scale, a scalar, a
    convolution kernel) raises ``ValueError`` naming its path, at ``init`` and ``update``, as
    torch refuses it at construction. Complex parameters are refused (torch too).

    State (named, for :func:`gradtx.tree_get`): ``count``, the one step count (torch keeps
    none), and ``momentum_buffer`` (torch's ``momentum_buffer``).

    torch.optim: ``Muon(params, lr, weight_decay, momentum, nesterov, ns_coefficients, eps,
    ns_steps, adjust_lr_fn)``; ``ns_dtype=jnp.bfloat16`` is what torch does. torch checks
    ``lr >= 0``, ``momentum >= 0``, ``weight_decay >= 0``, ``adjust_lr_fn``, and at its first
    step ``ns_steps < 100`` and three coefficients; gradtx checks these at construction and
    also refuses ``momentum >= 1``, a negative ``eps``, ``ns_steps < 1`` and non-finite
    coefficients. Layout: torch's linear weights are ``(out_features, in_features)``, and
    :math:`r(A, B)` reads the shape as it is; a Flax ``Dense`` kernel is ``(in, out)``, so
    ``"original"`` there scales by :math:`\sqrt{\max(1, \text{in}/\text{out})}`.

    Differences from ``optax.contrib.muon`` (read in Optax 0.2.8's source): Optax has no
    default learning rate, its ``weight_decay`` defaults to 0 and its ``eps`` to 1e-8, *added*
    to the norm (:math:`X / (\lVert X\rVert_F + \epsilon)`; torch and gradtx take
    :math:`\max(\lVert X\rVert_F, \epsilon)`). Its momentum is bias-corrected
    (:math:`B_t / (1-\mu^t)`, and its Nesterov term combines bias-corrected terms); torch's is
    not. It runs Newton–Schulz in the update's dtype, torch in bfloat16. It trains the
    non-matrix leaves itself, with AdamW (Nesterov's NAdamW when ``nesterov=True``) sharing
    Muon's learning rate and ``eps`` by default, and chooses them by dimension only, so
    embeddings and output heads go to Muon (here: :func:`muon_with_adamw`, which also splits
    by name). Its shape factor reads a kernel as ``(fan_in, fan_out)``,
    :math:`\sqrt{\max(1, \text{fan\_out}/\text{fan\_in})}` (``consistent_rms=0.2`` for
    Moonshot's), torch's reads ``(A, B)`` as it is. Optax also orthogonalises higher-rank
    leaves along chosen axes (``muon_weight_dimension_numbers``; gradtx: convolution kernels
    through :func:`gradtx.matrix_view`) and has other preconditionings and coefficient
    presets; gradtx has torch's arguments only.

    Example:
        >>> import gradtx as gx, jax.numpy as jnp
        >>> from gradtx.optimizers.muon import muon
        >>> opt = muon(learning_rate=0.02, weight_decay=0.0, ns_dtype=None)
        >>> params = {"w": jnp.zeros((2, 2))}
        >>> state = opt.init(params)
        >>> updates, state = opt.update({"w": jnp.asarray([[2.0, 0.0], [0.0, -0.5]])}, state)
        >>> [round(x, 4) for x in jnp.diag(updates["w"]).tolist()]  # both about -lr * sign
        [-0.0147, 0.0149]
        >>> [round(x, 4) for x in jnp.diag(gx.tree_get(state, "momentum_buffer")["w"]).tolist()]
        [0.1, -0.025]
    """
    return optimizer_chain(
        _ortho.matrices_only("muon", _NOT_A_MATRIX_HINT),
        scale_by_muon_momentum(momentum, nesterov),
        orthogonalize_by_newton_schulz(ns_coefficients, eps, ns_steps, dtype=ns_dtype,
                                       batch_by_shape=batch_by_shape),
        adjust_muon_learning_rate(adjust_lr_fn),
        weight_decay_if(weight_decay),
        scale_by_learning_rate(learning_rate),
        real_only="muon",
    )


# -- the recipe ---------------------------------------------------------------------------------

NON_MUON_NAMES = ("embed", "wte", "wpe", "head", "classifier", "output", "logits")
"""Parts of parameter names that mark a matrix for AdamW in :func:`muon_with_adamw`'s default
split: embeddings (``embed`` also matches ``embedding``, ``tok_embeddings``, ``Embed_0``,
``unembed``; ``wte``/``wpe`` are GPT-2's token and position tables) and output layers
(``head`` matches ``lm_head``; ``classifier``, ``output``, ``logits``)."""


def _key_names(path) -> list[str]:
    names = []
    for key in path:
        for attribute in ("key", "name"):  # DictKey.key, GetAttrKey.name
            value = getattr(key, attribute, None)
            if isinstance(value, str):
                names.append(value)
    return names


def is_hidden_matrix(path, leaf) -> bool:
    """:func:`muon_with_adamw`'s default split: True for a matrix (``ndim == 2``) none of
    whose path's key names (dict keys and attribute names; sequence indices are ignored)
    contains, case-insensitively, one of ``NON_MUON_NAMES``.

    The match is by substring and errs towards AdamW: ``lm_head``, ``tok_embeddings`` and a
    Llama-style ``output`` are caught, and so are, harmlessly, matrices inside a module named
    e.g. ``MultiHeadAttention`` or BERT's per-layer ``output.dense``. Use your own predicate
    (``muon_leaves``) when your names differ.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from gradtx.optimizers.muon import is_hidden_matrix
        >>> params = {"lm_head": jnp.ones((4, 9)), "mlp": {"w": jnp.ones((4, 4)),
        ...           "b": jnp.ones(4)}}
        >>> jax.tree_util.tree_map_with_path(is_hidden_matrix, params)
        {'lm_head': False, 'mlp': {'b': False, 'w': True}}
    """
    if jnp.ndim(leaf) != 2:
        return False
    lowered = [name.lower() for name in _key_names(path)]
    return not any(part in name for name in lowered for part in NON_MUON_NAMES)


def _check_with(factory, prefix: str, values: dict[str, Any]) -> None:
    """Checks ``values`` against ``factory``'s declarations, naming each ``prefix + name``."""
    declarations = factory._injection.declarations
    for name, value in values.items():
        declarations[name].check(prefix + name, value)


def muon_with_adamw(
    learning_rate: ScalarOrSchedule = 1e-3,
    weight_decay: float | jax.Array = 0.1,
    momentum: float | jax.Array = 0.95,
    nesterov: bool = True,
    ns_coefficients: Sequence[float] = DEFAULT_NS_COEFFICIENTS,
    eps: float | jax.Array = 1e-7,
    ns_steps: int = 5,
    adjust_lr_fn: str | None = None,
    ns_dtype: DTypeLike | None = jnp.bfloat16,
    batch_by_shape: bool = False,
    *,
    adamw_learning_rate: ScalarOrSchedule = 1e-3,
    adamw_b1: float | jax.Array = 0.9,
    adamw_b2: float | jax.Array = 0.999,
    adamw_eps: float | jax.Array = 1e-8,
    adamw_weight_decay: float | jax.Array = 1e-2,
    muon_leaves: Callable[[Any, jax.Array], bool] | None = None,
    conv_kernels: str | None = None,
) -> GradientTransformation:
    r"""The usual way to train a whole network with Muon: :func:`muon` on the hidden matrices,
    :func:`gradtx.adamw` on everything else (embeddings, output heads, biases, norm scales,
    scalars, and convolution kernels unless ``conv_kernels`` says how to see them as
    matrices).

    It is ``multi_transform({"muon": muon(...), "adamw": adamw(...)}, labels)``, with a
    leaf labelled ``"muon"`` when ``muon_leaves(path, leaf)`` is True. In torch terms, two
    optimizers stepped together::

        torch.optim.Muon(hidden, lr, weight_decay, momentum, nesterov, ns_coefficients, eps,
                         ns_steps, adjust_lr_fn)
        torch.optim.AdamW(rest, lr=adamw_learning_rate, betas=(adamw_b1, adamw_b2),
                          eps=adamw_eps, weight_decay=adamw_weight_decay)

    Muon's arguments (``learning_rate`` to ``batch_by_shape``) are those of :func:`muon`, with the
    same defaults (torch's). With ``adjust_lr_fn="match_rms_adamw"`` the two learning rates may
    be equal (Liu et al., 2025).

    Args:
        adamw_learning_rate: AdamW's ``learning_rate``, as in :func:`gradtx.adamw`.
        adamw_b1: AdamW's ``b1``.
        adamw_b2: AdamW's ``b2``.
        adamw_eps: AdamW's ``eps``.
        adamw_weight_decay: AdamW's ``weight_decay`` (torch's default, 1e-2).
        muon_leaves: ``(path, leaf) -> bool`` (a key path as
            ``jax.tree_util.tree_map_with_path`` gives it), True for the leaves Muon trains.
            It must return a Python bool, from static information (names, shapes). Default:
            :func:`is_hidden_matrix`, matrices whose path names contain none of
            ``NON_MUON_NAMES``; pass your own when your model names its embedding or its
            output layer otherwise. A leaf it selects that is not a matrix raises
            ``ValueError`` naming its path (a kernel of three or more dimensions is a matrix
            with ``conv_kernels``).
        conv_kernels: None (kernels of three or more dimensions go to AdamW), ``"torch"`` or
            ``"flax"``: Muon trains them too, each seen as a matrix with its output channels
            on one side, as :func:`gradtx.matrix_view` with that ``layout`` (torch's
            ``(out, in, kh, kw)`` as ``(out, in·kh·kw)``, Keller Jordan's recipe; Flax's
            ``(kh, kw, in, out)`` as ``(kh·kw·in, out)``). The default split then also takes
            kernels whose path names are not in ``NON_MUON_NAMES``.

    Hyperparameters are read and set per group: ``gx.get_hyperparam(state,
    "muon/learning_rate")``, ``"adamw/learning_rate"``. Bad arguments raise naming the
    argument as given here (``adamw_b1``, not ``b1``).

    State: :class:`gradtx.wrappers.masking.MultiTransformState` with ``inner_states["muon"]``
    (``momentum_buffer`` for the matrices) and ``inner_states["adamw"]`` (``mu``, ``nu``
    for the rest).

    Example:
        >>> import gradtx as gx, jax.numpy as jnp
        >>> from gradtx.optimizers.muon import muon_with_adamw
        >>> params = {"embed": jnp.ones((10, 4)), "mlp": {"w": jnp.ones((4, 4)),
        ...           "b": jnp.zeros(4)}, "lm_head": jnp.ones((4, 10))}
        >>> opt = muon_with_adamw(learning_rate=0.02, adamw_learning_rate=3e-4)
        >>> state = opt.init(params)
        >>> buffer = gx.tree_get(state, "momentum_buffer")  # Muon's: the hidden matrix only
        >>> buffer["mlp"]["w"].shape, buffer["mlp"]["b"], buffer["embed"], buffer["lm_head"]
        ((4, 4), None, None, None)
        >>> gx.tree_get(state, "mu")["mlp"]["w"] is None  # AdamW's: everything else
        True
        >>> round(float(gx.get_hyperparam(state, "adamw/learning_rate")), 6)
        0.0003
    """
    _check_with(adamw, "adamw_", dict(
        learning_rate=adamw_learning_rate, b1=adamw_b1, b2=adamw_b2, eps=adamw_eps,
        weight_decay=adamw_weight_decay,
    ))
    if muon_leaves is not None and not callable(muon_leaves):
        raise TypeError(
            f"`muon_leaves` must be a function (path, leaf) -> bool or None, got {muon_leaves!r}."
        )
    if conv_kernels is not None:
        conv_kernels = check_kernel_layout("conv_kernels", conv_kernels)
    if muon_leaves is not None:
        predicate = muon_leaves
    elif conv_kernels is None:
        predicate = is_hidden_matrix
    else:
        def predicate(path, leaf) -> bool:
            return jnp.ndim(leaf) >= 2 and is_hidden_matrix(
                path, jax.ShapeDtypeStruct(matrix_shape(jnp.shape(leaf), conv_kernels),
                                           jnp.result_type(leaf)))
    hidden = muon(
        learning_rate=learning_rate, weight_decay=weight_decay, momentum=momentum,
        nesterov=nesterov, ns_coefficients=ns_coefficients, eps=eps, ns_steps=ns_steps,
        adjust_lr_fn=adjust_lr_fn, ns_dtype=ns_dtype, batch_by_shape=batch_by_shape,
    )
    if conv_kernels is not None:
        hidden = matrix_view(hidden, conv_kernels)
    rest = adamw(
        learning_rate=adamw_learning_rate, b1=adamw_b1, b2=adamw_b2, eps=adamw_eps,
        weight_decay=adamw_weight_decay,
    )

    def label(path, leaf) -> str:
        chosen = predicate(path, leaf)
        if not isinstance(chosen, (bool, np.bool_)):
            raise TypeError(
                f"muon_leaves must return a Python bool, got {chosen!r} at "
                f"{jax.tree_util.keystr(path) or '<root>'}."
            )
        return "muon" if bool(chosen) else "adamw"

    def labels(tree: PyTree) -> PyTree:
        return jax.tree_util.tree_map_with_path(label, tree)

    return multi_transform({"muon": hidden, "adamw": rest}, labels)
